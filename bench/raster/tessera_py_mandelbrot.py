#!/usr/bin/env python3
"""The Mandelbrot scenarios of buzzard_mandelbrot.py on Tessera's Python package, with the very
same numpy compute function (imported from buzzard_mandelbrot.py) and buzzard's calls.

    tessera_py_mandelbrot.py mandelbrot [SIZE] [--pool thread|process]   # cold, 1 then 2 workers; warm re-run
    tessera_py_mandelbrot.py warm [SIZE] [--repeat N]  # per-query time on a warm cache

`mandelbrot`: `Dataset(compute_threads=n)` (`--pool process`: and `computation_pool=tessera.ProcessPool(n,
context="fork")`, made before the Dataset, as buzzard's side forks its Pool), `create_cached_raster_recipe` of SIZE² uint8,
`cache_tiles=(512, 512)`, `computation_tiles=(256, 256)`, read with `queue_data` over the 512²
tiles in row order, `max_queue_size = 2n + 2` (as buzzard's side); then a warm re-run (a new
Dataset on the same cache dir, computations counted: should be 0).
`warm`: fill a cache, then `get_data` of 1-pixel, 128² and 512² windows (up to 4 per tile along
its diagonal) through a new Dataset: first pass (validates each cache file), second pass;
medians of --repeat Datasets. Cache dirs go to TMPDIR (run.sh: bench/raster/data/tmp).
"""
import argparse
import statistics
import tempfile
import time

import numpy as np

import buzzard_mandelbrot as bz  # the compute function, its counter and the tiling (no buzzard call)
import tessera


def grid(size):
    return tessera.Footprint(gt=(0.0, 1.0, 0.0, float(size), 0.0, -1.0), rsize=(size, size))


class Recipe:
    def __init__(self, size, cache_dir, workers, kind="thread"):
        bz._init_worker(bz.mp.Value("q", 0))
        self.counter = bz._COUNTER
        # Worker processes forked before the Dataset starts its threads (as buzzard's side
        # forks its Pool); they inherit the shared counter.
        self.pool = tessera.ProcessPool(workers, context="fork") if kind == "process" else None
        self.ds = tessera.Dataset(compute_threads=workers)
        self.r = self.ds.create_cached_raster_recipe(
            "mandelbrot",
            fp=grid(size),
            dtype="uint8",
            channel_count=1,
            compute_array=bz.functools.partial(bz.mandelbrot_tile, size),
            cache_dir=cache_dir,
            cache_tiles=(512, 512),
            computation_tiles=(256, 256),
            computation_pool=self.pool,
        )

    def close(self):
        self.ds.close()
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def bench_mandelbrot(size, kind):
    windows = bz.tiles_of(grid(size), 512)
    times = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="tessera-py-mandelbrot-") as cache_dir:
            rec = Recipe(size, cache_dir, workers, kind)
            started = time.perf_counter()
            for a in rec.r.queue_data(windows, max_queue_size=2 * workers + 2):
                assert a.dtype == np.uint8
            cold = time.perf_counter() - started
            computed = rec.counter.value
            rec.close()
            rec = Recipe(size, cache_dir, workers, kind)
            started = time.perf_counter()
            for a in rec.r.queue_data(windows, max_queue_size=4):
                pass
            warm = time.perf_counter() - started
            warm_computed = rec.counter.value
            rec.close()
        config = f"compute_threads={workers}" if kind == "thread" else f"ProcessPool({workers})"
        print(f"tessera-py mandelbrot {size}² {config}: cold {cold:.3f} s "
              f"({computed} compute tiles), warm re-run {warm:.3f} s ({warm_computed} "
              f"computations)", flush=True)
        times.append(cold)
    print(f"tessera-py mandelbrot speed-up 1 → 2 workers ({kind}): {times[0] / times[1]:.2f}×  "
          f"[compute: {bz.COMPUTE_LANG}]", flush=True)


def bench_warm(size, repeat):
    fp = grid(size)
    whole = bz.tiles_of(fp, 512)
    with tempfile.TemporaryDirectory(prefix="tessera-py-warm-") as cache_dir:
        rec = Recipe(size, cache_dir, 2)
        for _ in rec.r.queue_data(whole, max_queue_size=6):
            pass
        rec.close()
        computed = 0
        for label, window in (("512² windows (one cache tile each)", 512), ("128² windows", 128),
                              ("1-pixel windows", 1)):
            wins = []
            for t in whole:
                for k in range(4):
                    p = k * window
                    if p + window > min(t.rsizex, t.rsizey):
                        break
                    wins.append(t.clip(p, p, p + window, p + window))
            first, second = [], []
            for _ in range(repeat):
                rec = Recipe(size, cache_dir, 2)
                for passes in (first, second):
                    started = time.perf_counter()
                    for w in wins:
                        rec.r.get_data(w)
                    passes.append((time.perf_counter() - started) * 1e6 / len(wins))
                computed += rec.counter.value
                rec.close()
            print(f"tessera-py warm {label}: {len(wins)} windows; get_data first pass "
                  f"{statistics.median(first):.1f} µs/window, second pass "
                  f"{statistics.median(second):.1f} µs/window", flush=True)
        print(f"tessera-py warm: {computed} computations (medians of {repeat})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["mandelbrot", "warm"])
    ap.add_argument("size", type=int, nargs="?")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pool", choices=["thread", "process"], default="thread")
    args = ap.parse_args()
    bz.self_check()
    if args.what == "mandelbrot":
        bench_mandelbrot(args.size or 8192, args.pool)
    else:
        bench_warm(args.size or 4096, args.repeat)


if __name__ == "__main__":
    main()
