"""Reference benchmark: plain Python spawning 100 `true` processes (W3 baseline).

No task framework: this is the floor that W3's per-task process spawn costs
from Python on this machine.
  subprocess-p2         at most 2 at a time: ThreadPoolExecutor(2), each
                        thread doing subprocess.run([true]).
  subprocess-unbounded  subprocess.Popen all 100 at once, then wait for each.
Usage: python bench_subprocess.py --workload W3 --mode p2|unbounded [--runs 5]
"""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import common
import workloads as wl


def run_p2():
    with ThreadPoolExecutor(max_workers=2) as ex:
        return list(ex.map(wl.run_true, range(wl.SPAWN)))


def run_unbounded():
    procs = [subprocess.Popen([wl.TRUE_BIN]) for _ in range(wl.SPAWN)]
    return [p.wait() for p in procs]


def main():
    args = common.parse_args(
        lambda p: p.add_argument("--mode", choices=("p2", "unbounded"), required=True))
    if args.workload != "W3":
        raise SystemExit("bench_subprocess.py only implements W3")
    run = run_p2 if args.mode == "p2" else run_unbounded
    common.measure(f"subprocess-{args.mode}", "W3", run, args)


if __name__ == "__main__":
    main()
