"""Measurement harness shared by the comparison benchmark drivers.

One driver process measures one (tool, workload): ``measure()`` does one
warm-up run (not reported), then RUNS timed runs, and prints one JSON line:

  {"tool": ..., "workload": "W1", "runs": N, "median_ms": ..., "min_ms": ...,
   "peak_rss_mb": ...}                      (+ "note" when something went wrong)

Timing is wall time (time.perf_counter) from the start of building/submitting
the workload to having the checked-for final result in the driver. Tool
start-up (pool, cluster, workers) and input data creation are excluded.

peak_rss_mb is the largest, over the timed runs, of the peak of the summed RSS
of the driver's whole process tree (+ extra pids such as redis-server),
sampled every 20 ms by rss_monitor.py in a separate process.

Bounds: a watchdog ends the driver if one run takes longer than --timeout
seconds (reported as "median_ms": null with a note); once the timed runs have
used up --budget seconds, the remaining runs are skipped (noted).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil

import workloads

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(extra=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", required=True, choices=workloads.WORKLOADS)
    p.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "5")))
    p.add_argument("--timeout", type=float, default=float(os.environ.get("TIMEOUT_S", "120")))
    p.add_argument("--budget", type=float, default=float(os.environ.get("BUDGET_S", "300")))
    if extra:
        extra(p)
    return p.parse_args()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def kill_tree():
    """SIGKILL every descendant of this process (workers, monitor, ...)."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for c in children:
        try:
            c.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=5)


class RssMonitor:
    """Talks to rss_monitor.py: mark() returns the peak MiB since the last mark."""

    def __init__(self, extra_pids=()):
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "rss_monitor.py"), str(os.getpid()),
             *[str(p) for p in extra_pids]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def mark(self):
        with self.lock:
            try:
                self.proc.stdin.write("mark\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
                return float(line) if line.strip() else None
            except (OSError, ValueError):
                return None

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()


def measure(tool, workload, run_once, args, extra_pids=(), after=None):
    """Warm up once, time args.runs runs of run_once(), print the JSON line.

    run_once() must build + submit the workload and return its final result;
    the result is checked (outside the timed span) with workloads.check().
    after(), if given, runs after each run outside the timed span (clean-up).
    """
    out = {"tool": tool, "workload": workload, "runs": 0,
           "median_ms": None, "min_ms": None, "peak_rss_mb": None}
    mon = RssMonitor(extra_pids)
    times, peaks = [], []

    def on_timeout():
        out["runs"] = len(times)
        out["peak_rss_mb"] = mon.mark()
        out["note"] = (f"timeout: a single run took longer than {args.timeout:.0f} s; "
                       f"stopped ({len(times)} timed runs had finished)")
        emit(out)
        kill_tree()
        os._exit(0)

    def timed():
        dog = threading.Timer(args.timeout, on_timeout)
        dog.daemon = True
        dog.start()
        try:
            t0 = time.perf_counter()
            result = run_once()
            dt = time.perf_counter() - t0
        finally:
            dog.cancel()
        workloads.check(workload, result)
        del result
        if after:
            after()
        return dt

    try:
        timed()  # warm-up, not reported
        start = time.monotonic()
        for i in range(args.runs):
            mon.mark()
            times.append(timed())
            peaks.append(mon.mark())
            if time.monotonic() - start > args.budget and i + 1 < args.runs:
                out["note"] = (f"budget: stopped after {i + 1} of {args.runs} timed runs "
                               f"({args.budget:.0f} s budget used up)")
                break
    except Exception as e:  # report and let the driver tear down
        out["note"] = f"error: {type(e).__name__}: {str(e)[:300]}"
    out["runs"] = len(times)
    if times:
        out["median_ms"] = round(statistics.median(times) * 1000, 2)
        out["min_ms"] = round(min(times) * 1000, 2)
    vals = [p for p in peaks if p is not None]
    out["peak_rss_mb"] = max(vals) if vals else None
    mon.close()
    emit(out)
    return out
