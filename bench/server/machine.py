#!/usr/bin/env python3
"""Machine-load helpers for run.sh (the benchmark host may be shared).

  machine.py busy                 -> print total busy CPU jiffies so far (all cores)
  machine.py quiet MAX_S          -> wait until the machine is idle (< 0.25 busy cores for 3 s in
                                     a row) or MAX_S passed; print the busy cores seen last
  machine.py run OUTFILE CMD...   -> run CMD, write its CPU seconds (user+sys) to OUTFILE
  machine.py snap FILE            -> save CPU ticks of every process (and kernel thread)
  machine.py top FILE SECONDS PID.. -> the 4 biggest CPU users since FILE, except PIDs (and the
                                     children of this script), as "name:cores" words
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
elif sys.argv[1] == "snap":
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    s = f.read()
            except OSError:
                continue
            name = s[s.index("(") + 1:s.rindex(")")]
            v = s[s.rindex(")") + 2:].split()
            out[p] = (name, int(v[11]) + int(v[12]))
    import json
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
elif sys.argv[1] == "top":
    import json
    before = json.load(open(sys.argv[2]))
    secs = float(sys.argv[3])
    skip = set(sys.argv[4:])
    tick = os.sysconf("SC_CLK_TCK")
    use = {}
    for p in os.listdir("/proc"):
        if not p.isdigit() or p in skip:
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        v = s[s.rindex(")") + 2:].split()
        t = int(v[11]) + int(v[12])
        t0 = before.get(p, (name, 0))[1] if before.get(p, [None])[0] == name else 0
        if t - t0 > 0:
            use[name] = use.get(name, 0) + (t - t0) / tick / secs
    top = sorted(use.items(), key=lambda kv: -kv[1])[:4]
    print(" ".join(f"{k.replace(' ', '_')}:{v:.2f}" for k, v in top if v >= 0.01) or "-")
