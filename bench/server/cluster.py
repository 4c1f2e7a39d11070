"""One-node tasks end to end: submitted over HTTP, finished by whoever runs them.

usage: python3 bench/server/cluster.py TESSERA_BIN [TASKS] [RATE]   (default 5000, 500)

Side by side, in one run, on fresh state each:
  sqlite     `tessera serve` on its embedded SQLite (durable, the default), running the tasks;
  pg-1       `tessera serve --no-work` + 1 `tessera worker`, PostgreSQL 15 (durable: every
             commit flushed);
  pg-2       the same with 2 workers.
For each: (a) throughput — TASKS submissions as fast as 32 client threads send them; tasks/s
from the first submission to the last task finished; (b) latency at a fixed RATE/s for 10 s —
p50/p99 of submitted → finished, from the tasks' own timestamps (created_at, updated_at).
The PostgreSQL cluster is started here (scripts/test-env/postgres.sh, TESSERA_PG_DURABLE=1)
and stopped at the end.
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

BIN = sys.argv[1]
TASKS = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
RATE = int(sys.argv[3]) if len(sys.argv) > 3 else 500
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE = (
    "name: one\nnodes:\n"
    "  - {id: in, type: entry, api: {route: one}, next: [work]}\n"
    "  - {id: work, type: node, after: \"out = #{n: input.n};\", next: [end]}\n"
    "  - {id: end, type: end}\n"
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ms(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, ctype="application/json"):
        self.conn.request(method, path, body=body, headers={"content-type": ctype})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data or b"null")


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def submit_many(port, count, threads=32):
    ids = []
    lock = threading.Lock()
    per = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def run(n):
        c = Client(port)
        mine = [c.call("POST", "/api/v1/services/one", json.dumps({"n": i}))["task_id"] for i in range(n)]
        with lock:
            ids.extend(mine)

    ts = [threading.Thread(target=run, args=(n,)) for n in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ids


def submit_paced(port, rate, seconds):
    """Submissions at `rate`/s (two senders alternating, each on its own schedule)."""
    ids = []
    lock = threading.Lock()
    start = time.monotonic() + 0.1
    total = rate * seconds

    def run(k):
        c = Client(port)
        mine = []
        for i in range(k, total, 2):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            mine.append(c.call("POST", "/api/v1/services/one", json.dumps({"n": i}))["task_id"])
        with lock:
            ids.extend(mine)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ids, time.monotonic() - start


def finished_times(port, count, timeout=120):
    """(created_at, updated_at) of the newest `count` tasks once all have ended."""
    c = Client(port)
    deadline = time.time() + timeout
    # Counts only while waiting (one indexed query), so that waiting costs the store little.
    while True:
        total = c.call("GET", "/api/v1/stats")
        if total["pending"] + total["running"] == 0:
            break
        if time.time() > deadline:
            raise RuntimeError(f"tasks did not end in time: {total}")
        time.sleep(0.2)
    while True:
        rows, before = [], None
        while len(rows) < count:
            path = "/api/v1/tasks?limit=1000" + (f"&cursor={before}" if before else "")
            page = c.call("GET", path)
            items = page["items"]
            if not items:
                break
            rows.extend(items)
            before = page.get("next_cursor")
            if not before:
                break
        rows = rows[:count]
        if len(rows) == count and all(r["state"] in ("finished", "failed", "cancelled") for r in rows):
            bad = [r for r in rows if r["state"] != "finished"]
            if bad:
                raise RuntimeError(f"{len(bad)} tasks did not finish: {bad[0]}")
            return [(ms(r["created_at"]), ms(r["updated_at"])) for r in rows]
        if time.time() > deadline:
            states = {}
            for r in rows:
                states[r["state"]] = states.get(r["state"], 0) + 1
            raise RuntimeError(f"tasks did not end in time: {len(rows)} of {count} listed, {states}")
        time.sleep(0.2)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def run_mode(name, db_url, workers):
    data = tempfile.mkdtemp(prefix=f"tessera-cluster-{name}.", dir="/var/tmp")
    port = free_port()
    env = dict(os.environ, TESSERA_DATA_DIR=data)
    if db_url:
        env["TESSERA_DB"] = db_url
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    args = [BIN, "serve", "--addr", f"127.0.0.1:{port}"] + (["--no-work"] if workers else [])
    print(f"[{name}]", file=sys.stderr, flush=True)
    procs = [subprocess.Popen(args, **quiet)]
    try:
        wait_port(port)
        for _ in range(workers):
            procs.append(subprocess.Popen([BIN, "worker", "--callback-url", f"http://127.0.0.1:{port}"], **quiet))
        c = Client(port)
        c.call("POST", "/api/v1/pipelines", PIPELINE, "application/yaml")
        # Warm-up: connections, caches.
        submit_many(port, 200)
        finished_times(port, 200)
        t0 = time.time() * 1000
        submit_many(port, TASKS)
        times = finished_times(port, TASKS)
        first = min(c for c, _ in times)
        last = max(u for _, u in times)
        throughput = TASKS / ((last - first) / 1000)
        ids, took = submit_paced(port, RATE, 10)
        times = finished_times(port, len(ids))
        lat = [u - c for c, u in times]
        row = {
            "mode": name,
            "tasks": TASKS,
            "tasks_per_s": round(throughput),
            "rate": RATE,
            "sent_rate": round(len(ids) / took),
            "p50_ms": round(pct(lat, 50), 1),
            "p99_ms": round(pct(lat, 99), 1),
            "max_ms": round(max(lat), 1),
        }
        print(json.dumps(row), flush=True)
        return row
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    pg_dir = tempfile.mkdtemp(prefix="tessera-bench-pg.", dir="/tmp")
    script = os.path.join(ROOT, "scripts/test-env/postgres.sh")
    url = subprocess.check_output(
        ["bash", script, "start", pg_dir], env=dict(os.environ, TESSERA_PG_DURABLE="1"), text=True
    ).strip()
    try:
        base = url.rsplit("/", 1)[0]
        modes = os.environ.get("MODES", "sqlite pg-1 pg-2").split()
        for name, workers in [("sqlite", 0), ("pg-1", 1), ("pg-2", 2)]:
            if name not in modes:
                continue
            db = None
            if name != "sqlite":
                dbname = name.replace("-", "_")
                subprocess.check_call(
                    ["/usr/lib/postgresql/15/bin/psql", url, "-qc", f"CREATE DATABASE {dbname}"]
                )
                db = f"{base}/{dbname}"
            run_mode(name, db, workers)
    finally:
        subprocess.call(["bash", script, "stop", pg_dir])


if __name__ == "__main__":
    main()
