#!/usr/bin/env python3
"""Machine-load helpers for run.sh (the benchmark host may be shared).

  machine.py busy                 -> print total busy CPU jiffies so far (all cores)
  machine.py quiet MAX_S          -> wait until the machine is idle (< 0.25 busy cores for 3 s in
                                     a row) or MAX_S passed; print the busy cores seen last
  machine.py run OUTFILE CMD...   -> run CMD, write its CPU seconds (user+sys) to OUTFILE
"""
import os
import resource
import subprocess
import sys
import time


def busy_idle():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, idle


if sys.argv[1] == "busy":
    print(busy_idle()[0])
elif sys.argv[1] == "quiet":
    limit = time.monotonic() + float(sys.argv[2])
    tick = os.sysconf("SC_CLK_TCK")
    calm = 0
    while True:
        b0, _ = busy_idle()
        time.sleep(1)
        b1, _ = busy_idle()
        cores = (b1 - b0) / tick
        calm = calm + 1 if cores < 0.25 else 0
        if calm >= 3 or time.monotonic() > limit:
            print(f"{cores:.2f}")
            break
elif sys.argv[1] == "run":
    rc = subprocess.call(sys.argv[3:])
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(sys.argv[2], "w") as f:
        f.write(f"{u.ru_utime + u.ru_stime:.3f}\n")
    sys.exit(rc)
