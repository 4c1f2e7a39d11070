#!/usr/bin/env python3
"""Benchmark (e) of the raster issue: Tessera's `raster_bench` scenarios on buzzard 0.6 itself.

    buzzard_mandelbrot.py mandelbrot [SIZE] [--pool thread|process]   # default 8192, thread
    buzzard_mandelbrot.py compute [SIZE]      # the compute function alone, no buzzard (floor)
    buzzard_mandelbrot.py warm [SIZE] [--repeat N]                    # default 4096, 1
    buzzard_mandelbrot.py check                                       # compute self-check only

Same scenarios as crates/tessera-raster/examples/raster_bench.rs, with buzzard's API:
- `mandelbrot SIZE`: a cached raster recipe (`Dataset.create_cached_raster_recipe`) of
  SIZE x SIZE uint8, 1 channel, geotransform origin (0, SIZE), pixel size 1, north-up,
  `cache_tiles=(512, 512)`, `computation_tiles=(256, 256)`; compute = Mandelbrot escape count
  (max 64 iterations, x0 = col/SIZE*3-2, y0 = row/SIZE*3-1.5, the same per-pixel loop),
  vectorised with numpy (the natural way for a buzzard user: Python driving numpy's C loops).
  Read with `queue_data` over the 512x512 tiles in row order, `max_queue_size = 2*workers+2`;
  cold with a computation pool of 1 then 2 workers (each in a new cache dir), then a warm re-run
  (a new Dataset on the same cache dir, computations counted: should be 0,
  `max_queue_size=4`).
- `warm SIZE`: fill a cache with 2 workers, write the same pixels as one plain GeoTIFF per 512x512
  tile (GDAL), then for 512x512, 128x128 and 1-pixel windows (up to 4 per tile along its
  diagonal): open the tile's file with `gdal.Open` and `ReadAsArray(x, y, w, h)` ("direct",
  median of 5 passes), vs `get_data` through the cached recipe of a new Dataset: a first pass
  (the first read of each cache file validates its checksum, as in Tessera) and a second pass
  on the same Dataset (validated files), then `queue_data(max_queue_size=8)` of all the
  windows; medians of `--repeat` new Datasets (Tessera: 5; buzzard: default 1, each pass costs
  ~0.1 s per window). The 1-pixel windows give the fixed cost per query.

Pools: `--pool thread` = `multiprocessing.pool.ThreadPool(n)` (buzzard's documented default
choice; numpy releases the GIL inside its ufunc loops), `--pool process` =
`multiprocessing.Pool(n)` (fork; the compute function is a picklable partial, computations are
counted through a shared `multiprocessing.Value`). Only `computation_pool` changes; the io,
merge and resample pools are buzzard's defaults (ThreadPools of `cpu_count()` = 2 threads, like
Tessera's `io_threads: 2`). `Dataset(max_active=--max-active)` (default 256: every cache file of
an 8192x8192 raster can stay open, as Tessera has no such limit).

Where the time goes: buzzard's scheduler thread sleeps 1/20 s whenever it has no message, and
notices a finished pool job only by polling; `--scheduler-idle-sleep S` (diagnostic, patched
at run time) shortens that sleep. `compute SIZE` times the compute function alone, without
buzzard (the floor of the buzzard side).

Cache dirs and GeoTIFFs go to `tempfile` dirs (run.sh sets TMPDIR to bench/raster/data/tmp, the
same place as Tessera's). Output lines follow raster_bench's, prefixed with `buzzard`.

Compatibility shim (at import time, buzzard's files are not patched): buzzard 0.6.5 (2020) uses
`numpy.typeDict` (removed in numpy 1.24; same object as `numpy.sctypeDict`), `numpy.warnings`
(the stdlib `warnings` module, removed from numpy's namespace in 1.24), the `np.object`/
`np.bool`/... aliases (removed in numpy 1.24) and `collections.Iterable`/`Mapping` (moved to
`collections.abc`, removed from `collections` in Python 3.10) and `threading.Thread.isAlive`
(removed in Python 3.9; `is_alive`). `_compat_shim()` puts those names back before
`import buzzard`.
"""
import argparse
import functools
import multiprocessing as mp
import multiprocessing.pool
import os
import platform
import queue
import statistics
import sys
import tempfile
import time


def _compat_shim():
    import collections
    import collections.abc
    import threading
    import warnings
    import numpy as np

    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive

    for name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable", "Hashable", "Set"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    if not hasattr(np, "typeDict"):
        np.typeDict = np.sctypeDict
    if "warnings" not in np.__dict__:
        np.warnings = warnings
    # buzzard reads shapely 1.8 geometries through the numpy array interface (deprecated in
    # shapely 1.8, gone in 2.0, hence shapely 1.8 in requirements.txt): silence the warning,
    # printed on every Footprint intersection.
    from shapely.errors import ShapelyDeprecationWarning
    warnings.filterwarnings("ignore", category=ShapelyDeprecationWarning)
    for name, alias in (("bool", bool), ("int", int), ("float", float), ("complex", complex),
                        ("object", object), ("str", str)):
        if name not in np.__dict__:
            setattr(np, name, alias)


_compat_shim()

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402
import buzzard as buz  # noqa: E402

gdal.UseExceptions()

COMPUTE_LANG = "Python + numpy (vectorised, float64)"
DIRECT_REPEAT = 5

# Counter of computations, shared with the pool's workers (threads or forked processes).
_COUNTER = None


def _init_worker(counter):
    global _COUNTER
    _COUNTER = counter


def mandelbrot_tile(size, fp, primitive_fps, primitive_arrays, raster):
    """buzzard compute_array: the escape counts of the pixels of `fp` (a computation tile)."""
    with _COUNTER.get_lock():
        _COUNTER.value += 1
    # Grid: origin (0, size), pixel size 1, north-up => col = tlx, row = size - tly.
    c0 = int(round(fp.tlx))
    r0 = int(round(size - fp.tly))
    h, w = fp.shape
    # Same expressions, same evaluation order as the Rust loop: (col / size) * 3 - 2.
    x0 = np.broadcast_to((np.arange(c0, c0 + w, dtype=np.float64) / size * 3.0 - 2.0)[None, :], (h, w))
    y0 = np.broadcast_to((np.arange(r0, r0 + h, dtype=np.float64) / size * 3.0 - 1.5)[:, None], (h, w))
    x = np.zeros((h, w))
    y = np.zeros((h, w))
    n = np.zeros((h, w), np.uint8)
    for _ in range(64):
        xx = x * x
        yy = y * y
        m = xx + yy <= 4.0  # still iterating (escaped points stay frozen, hence stay escaped)
        if not m.any():
            break
        n += m
        y = np.where(m, 2.0 * x * y + y0, y)
        x = np.where(m, xx - yy + x0, x)
    return n


def _scalar_reference(size, col, row):
    """The per-pixel loop of raster_bench.rs, in plain Python (for the self-check)."""
    x0 = col / size * 3.0 - 2.0
    y0 = row / size * 3.0 - 1.5
    x = y = 0.0
    i = 0
    while x * x + y * y <= 4.0 and i < 64:
        xt = x * x - y * y + x0
        y = 2.0 * x * y + y0
        x = xt
        i += 1
    return i


def self_check(size=8192):
    """The vectorised compute gives the scalar loop's counts on a few windows."""
    global _COUNTER
    saved, _COUNTER = _COUNTER, mp.Value("q", 0)
    fp = grid(size)
    for (c, r) in ((0, 0), (size // 4, size // 2 - 8), (size // 2 + 100, size // 3)):
        win = fp.clip(c, r, c + 24, r + 16)
        got = mandelbrot_tile(size, win, {}, {}, None)
        want = np.array([[_scalar_reference(size, c + j, r + i) for j in range(24)] for i in range(16)],
                        np.uint8)
        if not np.array_equal(got, want):
            raise SystemExit(f"self-check failed at ({c}, {r}): vectorised compute != scalar loop")
    _COUNTER = saved


def grid(size):
    return buz.Footprint(gt=(0.0, 1.0, 0.0, float(size), 0.0, -1.0), rsize=(size, size))


def tiles_of(fp, tile):
    """Tiles of `tile` x `tile` pixels in row order (last row/column shrunk), like raster_bench."""
    out = []
    w, h = fp.rsize
    for r in range(0, h, tile):
        for c in range(0, w, tile):
            out.append(fp.clip(c, r, min(c + tile, w), min(r + tile, h)))
    return out


def make_pool(kind, workers, counter):
    if kind == "thread":
        return mp.pool.ThreadPool(workers, initializer=_init_worker, initargs=(counter,))
    return mp.Pool(workers, initializer=_init_worker, initargs=(counter,))


def pool_label(kind, workers):
    return f"ThreadPool({workers})" if kind == "thread" else f"Pool({workers}) (processes)"


class Recipe:
    """A buzzard Dataset + the cached Mandelbrot recipe on `cache_dir` + its computation pool."""

    def __init__(self, size, cache_dir, kind, workers, max_active):
        _init_worker(mp.Value("q", 0))
        self.counter = _COUNTER
        # The process pool is forked before the Dataset starts its scheduler thread.
        self.pool = make_pool(kind, workers, self.counter)
        self.ds = buz.Dataset(max_active=max_active)
        self.r = self.ds.create_cached_raster_recipe(
            "mandelbrot",
            fp=grid(size),
            dtype="uint8",
            channel_count=1,
            compute_array=functools.partial(mandelbrot_tile, size),
            cache_dir=cache_dir,
            computation_pool=self.pool,
            cache_tiles=(512, 512),
            computation_tiles=(256, 256),
        )

    def queue_all(self, fps, max_queue_size):
        q = self.r.queue_data(fps, max_queue_size=max_queue_size)
        for _ in fps:
            while True:
                try:
                    yield q.get(timeout=1.0)
                    break
                except queue.Empty:
                    # As buzzard's own `iter_data` does: re-raise if the scheduler thread died
                    # (a plain `q.get()` would then wait forever).
                    self.r._back.back_ds.ensure_scheduler_still_alive()

    def close(self):
        self.ds.close()
        self.pool.close()
        self.pool.join()


def bench_mandelbrot(size, kind, max_active):
    fp = grid(size)
    windows = tiles_of(fp, 512)
    times = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="buzzard-mandelbrot-") as cache_dir:
            rec = Recipe(size, cache_dir, kind, workers, max_active)
            started = time.perf_counter()
            for a in rec.queue_all(windows, 2 * workers + 2):
                assert a.dtype == np.uint8
            cold = time.perf_counter() - started
            computed = rec.counter.value
            rec.close()
            # Warm: a new Dataset on the same cache directory.
            rec = Recipe(size, cache_dir, kind, workers, max_active)
            started = time.perf_counter()
            for a in rec.queue_all(windows, 4):
                pass
            warm = time.perf_counter() - started
            warm_computed = rec.counter.value
            rec.close()
        print(f"buzzard mandelbrot {size}² computation_pool={pool_label(kind, workers)}: "
              f"cold {cold:.3f} s ({computed} compute tiles), warm re-run {warm:.3f} s "
              f"({warm_computed} computations)", flush=True)
        times.append(cold)
    print(f"buzzard mandelbrot speed-up 1 → 2 workers ({pool_label(kind, 'n')}): "
          f"{times[0] / times[1]:.2f}×  [compute: {COMPUTE_LANG}]", flush=True)


def bench_compute(size):
    """The floor: the same compute function over the same 256² tiles, without buzzard
    (`ThreadPool(1)` then `ThreadPool(2)` `.map`, chunksize 1), nothing cached or written. (A
    loop in the main thread was ~20 % slower than ThreadPool(1) here: glibc's main arena.)"""
    _init_worker(mp.Value("q", 0))
    tiles = tiles_of(grid(size), 256)
    compute = functools.partial(mandelbrot_tile, size, primitive_fps={}, primitive_arrays={},
                                raster=None)
    times = []
    for workers in (1, 2):
        with mp.pool.ThreadPool(workers) as pool:
            started = time.perf_counter()
            pool.map(compute, tiles, chunksize=1)
            times.append(time.perf_counter() - started)
    one, two = times
    print(f"buzzard compute alone (no buzzard) {size}²: {len(tiles)} compute tiles, ThreadPool(1) "
          f"{one:.3f} s, ThreadPool(2) {two:.3f} s ({one / two:.2f}×)  [compute: {COMPUTE_LANG}]",
          flush=True)


def write_geotiff(path, fp, arr):
    drv = gdal.GetDriverByName("GTiff")
    h, w = arr.shape
    out = drv.Create(path, w, h, 1, gdal.GDT_Byte)
    out.SetGeoTransform(fp.gt)
    out.GetRasterBand(1).WriteArray(arr)
    out.FlushCache()
    out = None


def bench_warm(size, kind, max_active, repeat):
    fp = grid(size)
    whole_tiles = tiles_of(fp, 512)
    with tempfile.TemporaryDirectory(prefix="buzzard-warm-") as cache_dir, \
            tempfile.TemporaryDirectory(prefix="buzzard-tiles-") as files_dir:
        rec = Recipe(size, cache_dir, kind, 2, max_active)
        for _ in rec.queue_all(whole_tiles, 6):
            pass
        rec.close()
        # The same pixels as plain GeoTIFF files, one per 512² tile.
        rec = Recipe(size, cache_dir, kind, 2, max_active)
        files = []
        for i, t in enumerate(whole_tiles):
            path = os.path.join(files_dir, f"t{i}.tif")
            write_geotiff(path, t, rec.r.get_data(t))
            files.append(path)
        rec.close()
        computed = 0
        fixed = (0.0, 0.0)
        for label, window in (("512² windows (one cache tile each)", 512), ("128² windows", 128),
                              ("1-pixel windows", 1)):
            # Up to 4 windows per tile, along its diagonal: the same list for both ways.
            wins = []
            for i, t in enumerate(whole_tiles):
                for k in range(4):
                    p = k * window
                    if p + window > min(t.rsizex, t.rsizey):
                        break
                    wins.append((i, p, t.clip(p, p, p + window, p + window)))
            n = len(wins)
            # Direct: open the file with GDAL, read the window (median of DIRECT_REPEAT passes).
            direct = []
            for _ in range(DIRECT_REPEAT):
                started = time.perf_counter()
                for i, p, _ in wins:
                    f = gdal.Open(files[i])
                    a = f.ReadAsArray(p, p, window, window)
                    f = None
                direct.append((time.perf_counter() - started) * 1e6 / n)
            direct = statistics.median(direct)
            # Through the cached recipe: a new Dataset's first pass validates each cache file
            # (checksum) on its first read; the second pass reads validated files.
            first, second, queued = [], [], []
            for _ in range(repeat):
                rec = Recipe(size, cache_dir, kind, 2, max_active)
                for passes in (first, second):
                    started = time.perf_counter()
                    for _, _, w in wins:
                        a = rec.r.get_data(w)
                    passes.append((time.perf_counter() - started) * 1e6 / n)
                started = time.perf_counter()
                for a in rec.queue_all([w for _, _, w in wins], 8):
                    pass
                queued.append((time.perf_counter() - started) * 1e6 / n)
                computed += rec.counter.value
                rec.close()
            first, second, queued = map(statistics.median, (first, second, queued))

            def versus(t):
                return f"{(t / direct - 1) * 100:+.1f} %, {t - direct:+.1f} µs per query"

            print(f"buzzard warm {label}: {n} windows; direct GDAL file reads {direct:.1f} "
                  f"µs/window; get_data through the cache: first pass (validates each tile) "
                  f"{first:.1f} µs/window ({versus(first)}), second pass {second:.1f} µs/window "
                  f"({versus(second)}); queue_data {queued:.1f} µs/window", flush=True)
            if window == 1:
                fixed = (first - direct, second - direct)
        print(f"buzzard warm fixed cost per query (1-pixel windows, vs direct GDAL reads): "
              f"{fixed[0]:+.1f} µs on first use of a tile, {fixed[1]:+.1f} µs once validated; "
              f"{computed} computations (direct: medians of {DIRECT_REPEAT} passes, cache: of "
              f"{repeat})", flush=True)


def patch_scheduler_idle_sleep(seconds):
    """buzzard's scheduler loop (`_dataset_back_scheduler.py`) calls `time.sleep(1 / 20)` when
    no message is pending, and learns that a pool job has finished only by polling: a query that
    finds it asleep waits. Give that module a `time` whose `sleep` sleeps `seconds` instead."""
    import types
    import buzzard._dataset_back_scheduler as scheduler

    real = scheduler.time
    patched = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
    patched.sleep = lambda s: real.sleep(seconds if s == 1 / 20 else s)
    scheduler.time = patched
    print(f"buzzard scheduler idle sleep: {seconds * 1e3:g} ms instead of 50 ms (diagnostic)",
          flush=True)


def versions():
    import cv2
    import shapely
    return (f"Python {platform.python_version()} ({sys.executable}), buzzard "
            f"{getattr(buz, '__version__', '?')}, numpy {np.__version__}, GDAL "
            f"{gdal.__version__}, shapely {shapely.__version__}, opencv {cv2.__version__}, "
            f"compute: {COMPUTE_LANG}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["mandelbrot", "compute", "warm", "check", "versions"])
    ap.add_argument("size", type=int, nargs="?")
    ap.add_argument("--pool", choices=["thread", "process"], default="thread")
    ap.add_argument("--max-active", type=int, default=256)
    ap.add_argument("--scheduler-idle-sleep", type=float, metavar="S",
                    help="diagnostic: replace the 1/20 s that buzzard's scheduler thread sleeps "
                         "when it has no message (at run time, its files untouched)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="warm: passes through the cache per window size (median); each costs "
                         "~0.1 s per window on buzzard")
    args = ap.parse_args()
    if args.what == "versions":
        print("buzzard versions: " + versions(), flush=True)
        return
    if args.scheduler_idle_sleep is not None:
        patch_scheduler_idle_sleep(args.scheduler_idle_sleep)
    self_check()
    if args.what == "check":
        print("buzzard self-check: vectorised compute == scalar loop of raster_bench.rs")
    elif args.what == "compute":
        bench_compute(args.size or 8192)
    elif args.what == "mandelbrot":
        bench_mandelbrot(args.size or 8192, args.pool, args.max_active)
    else:
        bench_warm(args.size or 4096, args.pool, args.max_active, args.repeat)


if __name__ == "__main__":
    main()
