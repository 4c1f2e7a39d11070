"""How soon a killed worker's task is claimed again: lease + claim round.

usage: python3 bench/server/reclaim.py TESSERA_BIN [LEASE] [ROUNDS]   (default 2s, 5)

`tessera serve --no-work` and one `tessera worker --lease LEASE` on a fresh data dir (under
/var/tmp). Each round submits a task whose command sleeps 30 s, waits until the worker runs
it, kills the worker with -9, starts another worker at once, and measures the time from the
kill until the task's command runs again (a new attempt started). Prints each time and the
lease, so "within lease + 1 s" can be read off.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]
LEASE = sys.argv[2] if len(sys.argv) > 2 else "2s"
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(url, data=None, ctype="application/json"):
    req = urllib.request.Request(url, data=data, headers={"content-type": ctype})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def main():
    data = tempfile.mkdtemp(prefix="tessera-reclaim.", dir="/var/tmp")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TESSERA_DATA_DIR=data)
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    server = subprocess.Popen([BIN, "serve", "--no-work", "--addr", f"127.0.0.1:{port}"], **quiet)
    workers = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        marks = os.path.join(data, "marks")
        pipeline = (
            "nodes:\n  - {id: in, type: entry, api: {route: long}, next: [long]}\n"
            "  - id: long\n    type: command\n    shell: true\n"
            f"    command: \"echo {{{{tessera.attempt}}}} >> {marks}; sleep 30\"\n"
            "    next: [end]\n  - {id: end, type: end}\n")
        call(f"{base}/api/v1/pipelines", pipeline.encode(), "application/yaml")
        workers.append(subprocess.Popen([BIN, "worker", "--lease", LEASE], **quiet))
        times = []
        for _ in range(ROUNDS):
            if os.path.exists(marks):
                os.remove(marks)
            task = call(f"{base}/api/v1/services/long", b"{}")["task_id"]
            while not os.path.exists(marks):
                time.sleep(0.005)
            killed = time.time()
            workers[-1].send_signal(signal.SIGKILL)
            workers[-1].wait()
            workers.append(subprocess.Popen([BIN, "worker", "--lease", LEASE], **quiet))
            while True:
                with open(marks) as f:
                    if len(f.read().split()) >= 2:
                        break
                time.sleep(0.005)
            times.append(time.time() - killed)
            call(f"{base}/api/v1/tasks/{task}/cancel", b"")
        print(f"binary: {BIN}; lease {LEASE}; {ROUNDS} rounds")
        print("re-claimed after the kill: " + ", ".join(f"{t:.2f} s" for t in times))
        print(f"max {max(times):.2f} s")
    finally:
        for w in workers:
            w.kill()
        server.kill()
        for p in workers + [server]:
            p.wait()
        shutil.rmtree(data, ignore_errors=True)


main()
