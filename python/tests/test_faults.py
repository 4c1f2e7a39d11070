"""Mistakes and faults: windows too big for memory, deadlocks refused, Ctrl-C, killed and
unusable worker processes, a closed dataset that stops at once."""

import _thread
import os
import signal
import threading
import time

import numpy as np
import pytest

import tessera
from recipes_helpers import compute_mandelbrot, compute_slowly

FP = tessera.Footprint(tl=(0.0, 0.0), size=(1.0, 1.0), rsize=(256, 256))


def slow(fp, *_):
    time.sleep(0.3)
    return np.zeros(fp.shape, np.float32)


def test_a_window_larger_than_memory_is_a_memory_error_not_a_crash():
    fp = tessera.Footprint(tl=(0, 0), size=(1000, 1000), rsize=(1000, 1000))
    with tessera.Dataset() as ds:
        ds.wrap_numpy_raster("a", fp, np.zeros((1000, 1000), np.float32))
        with pytest.raises(MemoryError, match="iter_data"):
            ds.a.get_data(fp.dilate(300_000))
        with pytest.raises(MemoryError):
            list(ds.a.iter_data([fp.dilate(300_000)]))
        assert ds.a.get_data().shape == (1000, 1000)


def test_reading_a_recipe_inside_compute_array_is_refused():
    with tessera.Dataset() as ds:
        ds.create_raster_recipe("b", FP, "float32", 1,
                                compute_array=lambda f, *_: np.ones(f.shape, np.float32))
        ds.create_raster_recipe("a", FP, "float32", 1, computation_tiles=(64, 64),
                                compute_array=lambda f, *_: ds.b.get_data(f) * 2)
        with pytest.raises(RuntimeError, match="queue_data_per_primitive"):
            ds.a.get_data()


def test_compute_returning_none_says_so():
    with tessera.Dataset() as ds:
        ds.create_raster_recipe("n", FP, "float32", 1, compute_array=lambda f, *_: None)
        with pytest.raises(TypeError, match="returned None"):
            ds.n.get_data()


def test_ctrl_c_interrupts_a_read_and_a_subscription():
    with tessera.Dataset(compute_threads=1) as ds:
        ds.create_raster_recipe("r", FP, "float32", 1, compute_array=slow,
                                computation_tiles=(32, 32))
        threading.Timer(0.5, _thread.interrupt_main).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            ds.r.get_data()  # 64 tiles of 0.3 s on one thread: 19 s
        assert time.monotonic() - started < 5
        events = ds.subscribe()
        threading.Timer(0.3, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            for _ in events:
                pass


def test_close_abandons_queued_tiles():
    computed = []

    def count(fp, *_):
        computed.append(fp)
        time.sleep(0.3)
        return np.zeros(fp.shape, np.float32)

    ds = tessera.Dataset(compute_threads=2)
    ds.create_raster_recipe("r", FP, "float32", 1, compute_array=count,
                            computation_tiles=(32, 32))
    errors = []

    def read():
        try:
            ds.r.get_data()
        except Exception as e:  # noqa: BLE001 - checked below
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    started = time.monotonic()
    ds.close()
    assert time.monotonic() - started < 2, "close waited for the queued tiles"
    reader.join(10)
    assert errors and len(computed) < 64, (errors, len(computed))
    with pytest.raises(RuntimeError, match="closed"):
        ds.r


def test_process_pool_survives_unpicklable_functions_and_killed_workers():
    with tessera.ProcessPool(2) as pool, tessera.Dataset() as ds:
        ds.create_raster_recipe("lam", FP, "float32", 1, computation_tiles=(64, 64),
                                compute_array=lambda f, *_: np.zeros(f.shape, np.float32),
                                computation_pool=pool)
        for _ in range(3):  # every worker is still there after each failure
            with pytest.raises(Exception, match="(?i)pickl"):
                ds.lam.get_data()
        ds.create_raster_recipe("slow", FP, "float32", 1, computation_tiles=(128, 128),
                                compute_array=compute_slowly, computation_pool=pool)
        pids = [p.pid for p, _ in pool._workers]
        threading.Timer(0.3, lambda: [os.kill(p, signal.SIGKILL) for p in pids]).start()
        with pytest.raises(RuntimeError, match="died"):
            ds.slow.get_data()
        # Replaced: the pool computes again.
        ds.create_raster_recipe("m", FP, "float32", 1, computation_tiles=(128, 128),
                                compute_array=compute_mandelbrot, computation_pool=pool)
        assert ds.m.get_data().shape == (256, 256)
