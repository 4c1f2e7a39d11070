"""Tasks waiting on service callbacks, held by one `tessera serve`: memory and threads.

usage: python3 bench/server/waiting_tasks.py TESSERA_BIN [N]   (default N = 100000)

Starts a service (an asyncio responder on 127.0.0.1 that accepts every call with 202 and never
calls back) and `tessera serve` on a fresh data dir (durable SQLite, under /var/tmp), stores a
one-service-node pipeline, submits N tasks over HTTP (16 keep-alive connections), waits until
the service has been called N times (every task is then waiting for its callback), and prints
the server's VmRSS, VmHWM and thread count from /proc, and the submission rate.
"""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
hits = 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def responder(reader, writer):
    global hits
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            hits += 1
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def run_service(port, ready):
    async def main():
        server = await asyncio.start_server(responder, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()
    asyncio.run(main())


async def submit(port, n, conns=16):
    body = json.dumps({"n": 1}).encode()
    request = (
        b"POST /api/v1/services/waiting HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    counter = iter(range(n))

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in counter:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            data = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 202"):
                raise SystemExit(f"submission refused: {head[:40]!r} {data[:200]!r}")
        writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = v.strip()
    return out


def main():
    service_port, engine_port = free_port(), free_port()
    ready = threading.Event()
    threading.Thread(target=run_service, args=(service_port, ready), daemon=True).start()
    ready.wait()
    data = tempfile.mkdtemp(prefix="tessera-waiting.", dir="/var/tmp")
    server = subprocess.Popen(
        [BIN, "serve", "--addr", f"127.0.0.1:{engine_port}", "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", engine_port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        pipeline = (
            "nodes:\n  - {id: in, type: entry, api: {route: waiting, body: {n: 1}}, next: [wait]}\n"
            f"  - {{id: wait, type: service, url: \"http://127.0.0.1:{service_port}/work\", timeout: 1h, next: [end]}}\n"
            "  - {id: end, type: end}\n")
        subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-H", "content-type: application/yaml",
                        "--data-binary", pipeline, f"http://127.0.0.1:{engine_port}/api/v1/pipelines"],
                       check=True)
        base = status(server.pid)
        started = time.time()
        asyncio.run(submit(engine_port, N))
        submitted = time.time() - started
        while hits < N:
            if time.time() - started > 900:
                raise SystemExit(f"only {hits} of {N} tasks dispatched after 900 s")
            time.sleep(0.5)
        waiting = time.time() - started
        time.sleep(2)
        st = status(server.pid)
        print(f"binary: {BIN}")
        print(f"machine: {os.cpu_count()} cores")
        print(f"{N} tasks submitted in {submitted:.1f} s ({N / submitted:.0f}/s); all waiting on "
              f"their callback after {waiting:.1f} s")
        print(f"idle server before: VmRSS {base['VmRSS']}, threads {base['Threads']}")
        print(f"with {N} waiting tasks: VmRSS {st['VmRSS']}, VmHWM {st['VmHWM']}, threads {st['Threads']}")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


main()
