"""Comparison benchmark: Celery (redis broker + redis result backend) on W1-W5.

W6/W7 (1M / 10M items) are not run with Celery: one task per item already
runs past the timeout at W5, and the chunked form is left at W4/W5 too.

Needs a running redis-server (run.sh starts one on 127.0.0.1 and passes
BENCH_REDIS_URL and BENCH_REDIS_PID). This driver flushes redis, starts
`celery -A celery_tasks worker --concurrency 2 --pool prefork` as its child,
waits until it answers a ping task, measures one workload, then stops it.

Idioms (canvas primitives, results fetched with .get() in the driver):
  W1 fan-out  entry.s() | group(fan.s(i) x 1,000) | gather.s()   (a chord)
  W2 chain    chain(inc.s(0), inc.s() x 199)
  W3 spawn    group(run_true.s(i) x 100).get()
  W4/W5 loops group(length.s(s) for s in items).get()  -- one task (one
              broker message + one result key) per item, no chunking.
With --chunks (W4/W5 only; tool celery-chunks) the loop uses Celery's own
batching primitive instead: f.chunks(zip(items), n // 8).group(), i.e. 8
tasks like multiprocessing's chunksize n // 8, results flattened in order.
Results of a run are deleted (FLUSHDB of the result db) outside the timed span.
Usage: python bench_celery.py --workload W1 [--runs 5]
"""

import os
import signal
import subprocess
import sys
import time

import psutil
import redis
from celery import chain, group

import celery_tasks as ct
import common
import workloads as wl

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


CHUNKS = 8


def make_run_chunks(workload, timeout):
    if workload not in ("W4", "W5"):
        raise SystemExit("--chunks only applies to W4 and W5")
    items = wl.strings() if workload == "W4" else wl.loop_items(workload)
    task = ct.length if workload == "W4" else ct.identity
    size = max(1, len(items) // CHUNKS)

    def run():
        parts = task.chunks(zip(items), size).group().apply_async().get(timeout=timeout)
        return [x for part in parts for x in part]
    return run


def make_run(workload, timeout):
    if workload == "W1":
        def run():
            sig = ct.entry.s() | group(ct.fan.s(i) for i in range(wl.FANOUT)) | ct.gather.s()
            return sig.apply_async().get(timeout=timeout)
    elif workload == "W2":
        def run():
            sig = chain(ct.inc.s(0), *[ct.inc.s() for _ in range(wl.CHAIN - 1)])
            return sig.apply_async().get(timeout=timeout)
    elif workload == "W3":
        def run():
            return group(ct.run_true.s(i) for i in range(wl.SPAWN)).apply_async().get(timeout=timeout)
    elif workload == "W4":
        items = wl.strings()

        def run():
            return group(ct.length.s(s) for s in items).apply_async().get(timeout=timeout)
    elif workload == "W5":
        items = wl.loop_items(workload)

        def run():
            return group(ct.identity.s(i) for i in items).apply_async().get(timeout=timeout)
    else:
        raise ValueError(workload)
    return run


def start_worker():
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
         "--concurrency", "2", "--pool", "prefork", "-Q", "bench",
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "WARNING", "-n", f"bench{os.getpid()}@localhost"],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL)


def stop_worker(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    common.kill_tree()


def main():
    args = common.parse_args(lambda p: p.add_argument("--chunks", action="store_true"))
    tool = "celery-chunks" if args.chunks else "celery"
    if args.workload in ("W6", "W7"):
        raise SystemExit("bench_celery.py implements W1-W5 only")
    r_broker = redis.Redis.from_url(f"{REDIS_URL}/0")
    r_results = redis.Redis.from_url(f"{REDIS_URL}/1")
    r_broker.flushall()
    redis_pid = os.environ.get("BENCH_REDIS_PID")
    extra = [int(redis_pid)] if redis_pid and psutil.pid_exists(int(redis_pid)) else []
    worker = start_worker()
    try:
        deadline = time.monotonic() + 60
        while True:  # bounded wait for the worker to take tasks
            try:
                if ct.ping.delay().get(timeout=5) == "pong":
                    break
            except Exception:
                pass
            if worker.poll() is not None or time.monotonic() > deadline:
                common.emit({"tool": tool, "workload": args.workload, "runs": 0,
                             "median_ms": None, "min_ms": None, "peak_rss_mb": None,
                             "note": "error: celery worker did not start"})
                return
        r_results.flushdb()
        make = make_run_chunks if args.chunks else make_run
        common.measure(tool, args.workload, make(args.workload, args.timeout + 5), args,
                       extra_pids=extra, after=r_results.flushdb)
    finally:
        stop_worker(worker)
        r_broker.flushall()


if __name__ == "__main__":
    main()
