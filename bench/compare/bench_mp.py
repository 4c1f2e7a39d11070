"""Comparison benchmark: Python's multiprocessing.Pool(2) on workloads W1-W7.

Idioms (the pool is created once, before timing, and reused across runs):
  W1 fan-out  entry via apply_async, then 1,000 apply_async(fan, (entry, i)),
              results fetched in the driver, end task via apply(gather, ...).
  W2 chain    200 sequential pool.apply(inc, (x,)) calls, each fed the
              previous result (a round trip to a worker per link).
  W3 spawn    100 apply_async(run_true) (each worker runs `true`), gathered.
  W4-W7 loops pool.map with chunksize = n // (4 * 2) (multiprocessing's own
              default heuristic for 2 workers: 1,250 for W4, 12,500 for W5,
              125,000 for W6, 1,250,000 for W7), over an input list made
              before timing (W5-W7: the odd numbers 1, 3, 5, ...).
Usage: python bench_mp.py --workload W1 [--runs 5]
"""

import multiprocessing as mp

import common
import workloads as wl

TOOL = "multiprocessing"
PROCS = 2


def make_run(pool, workload):
    if workload == "W1":
        def run():
            e = pool.apply_async(wl.entry).get()
            mids = [pool.apply_async(wl.fan, (e, i)) for i in range(wl.FANOUT)]
            return pool.apply(wl.gather, ([m.get() for m in mids],))
    elif workload == "W2":
        def run():
            x = 0
            for _ in range(wl.CHAIN):
                x = pool.apply(wl.inc, (x,))
            return x
    elif workload == "W3":
        def run():
            rs = [pool.apply_async(wl.run_true, (i,)) for i in range(wl.SPAWN)]
            return [r.get() for r in rs]
    elif workload in ("W4", "W5", "W6", "W7"):
        items = wl.strings() if workload == "W4" else wl.loop_items(workload)
        fn = wl.length if workload == "W4" else wl.identity
        chunk = max(1, len(items) // (4 * PROCS))

        def run():
            return pool.map(fn, items, chunksize=chunk)
    else:
        raise ValueError(workload)
    return run


def main():
    args = common.parse_args()
    pool = mp.Pool(PROCS)
    try:
        common.measure(TOOL, args.workload, make_run(pool, args.workload), args)
    finally:
        pool.terminate()
        pool.join()


if __name__ == "__main__":
    main()
