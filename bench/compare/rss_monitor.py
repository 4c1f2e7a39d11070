"""Peak-RSS sampler for a benchmark's whole process tree (driver + workers).

Run as ``python rss_monitor.py ROOT_PID [EXTRA_PID ...]`` by a driver (see
common.py). Every INTERVAL seconds it sums the resident set size of ROOT_PID,
all its descendants (except this monitor) and the extra pids (e.g. the
redis-server used by Celery), and keeps the peak of that sum. Each line read
on stdin ("mark") makes it print the peak since the previous mark in MiB and
start a new window. It exits on EOF on stdin or when ROOT_PID is gone, so it
never outlives its driver.

Sampling a separate process keeps the sampler's work off the driver's GIL;
the process list is refreshed every REFRESH seconds and RSS read every tick.
"""

import os
import select
import sys
import time

import psutil

INTERVAL = 0.02
REFRESH = 0.25


def main():
    root_pid = int(sys.argv[1])
    extra = [int(p) for p in sys.argv[2:]]
    me = os.getpid()
    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return
    procs = []
    last_refresh = 0.0
    peak = 0
    while True:
        now = time.monotonic()
        if now - last_refresh >= REFRESH:
            last_refresh = now
            try:
                tree = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for pid in extra:
                try:
                    tree.append(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    pass
            procs = [p for p in tree if p.pid != me]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        peak = max(peak, total)
        ready, _, _ = select.select([sys.stdin], [], [], INTERVAL)
        if ready:
            line = sys.stdin.readline()
            if not line:
                return
            sys.stdout.write(f"{peak / 1048576:.1f}\n")
            sys.stdout.flush()
            peak = 0


if __name__ == "__main__":
    main()
