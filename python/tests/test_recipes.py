"""buzzard's recipe scenarios on tessera: values, cache reuse and repair, chains with halos,
concurrent and dropped queues, failures, back-pressure."""

import functools
import gc
import os
import pathlib
import threading
import time

import numpy as np
import pytest

import tessera
from recipes_helpers import (
    Refused,
    compute_mandelbrot,
    compute_refusing_the_left_half,
    mandelbrot,
    plane,
)

REPO = pathlib.Path(__file__).resolve().parents[2]


class Counter:
    """A compute_array that counts (and records) its calls."""

    def __init__(self, fail_if_called=False):
        self.fps = []
        self.lock = threading.Lock()
        self.fail = fail_if_called

    def __call__(self, fp, primitive_fps, primitive_arrays, raster):
        if self.fail:
            raise AssertionError(f"computed {fp} although the cache holds it")
        with self.lock:
            self.fps.append(fp)
        return mandelbrot(fp)

    @property
    def pixels(self):
        return sum(fp.rarea for fp in self.fps)


def test_values_match_numpy_and_arrays_are_not_copied(tmp_path):
    fp = plane()
    with tessera.Dataset() as ds:
        r = ds.create_cached_raster_recipe(
            "m", fp, "float32", 1, compute_array=compute_mandelbrot,
            cache_dir=str(tmp_path), cache_tiles=(64, 64))
        got = r.get_data()
        assert got.shape == (160, 200) and got.dtype == np.float32
        np.testing.assert_array_equal(got, mandelbrot(fp))
        # The numpy array owns nothing: it is a view of the Rust buffer.
        assert not got.flags.owndata and got.base is not None
        window = fp.clip(37, 11, 150, 99)
        np.testing.assert_array_equal(r.get_data(window), mandelbrot(window))
        assert r.get_data(window, channels=[0]).shape == (88, 113, 1)
        assert ds.m is r and ds["m"] is r and "m" in ds


def test_reopened_cache_is_not_recomputed_and_a_corrupt_tile_is(tmp_path):
    fp = plane()
    first = Counter()
    with tessera.Dataset() as ds:
        ds.create_cached_raster_recipe("m", fp, "float32", 1, compute_array=first,
                                       cache_dir=str(tmp_path), cache_tiles=(64, 64))
        reference = ds.m.get_data()
    assert first.pixels == fp.rarea
    with tessera.Dataset() as ds:
        ds.create_cached_raster_recipe("m", fp, "float32", 1,
                                       compute_array=Counter(fail_if_called=True),
                                       cache_dir=str(tmp_path), cache_tiles=(64, 64))
        np.testing.assert_array_equal(ds.m.get_data(), reference)
    tiles = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".tif")
    assert len(tiles) == 12, tiles
    victim = tiles[5]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    victim.write_bytes(bytes(data))
    again = Counter()
    with tessera.Dataset() as ds:
        ds.create_cached_raster_recipe("m", fp, "float32", 1, compute_array=again,
                                       cache_dir=str(tmp_path), cache_tiles=(64, 64))
        np.testing.assert_array_equal(ds.m.get_data(), reference)
    assert len(again.fps) == 1, again.fps


def test_chain_with_a_halo_computes_each_pixel_once_per_recipe(tmp_path):
    fp = plane()
    base = Counter()
    smooth_fps = []

    def smooth(fp, primitive_fps, primitive_arrays, raster):
        smooth_fps.append(fp)
        a = primitive_arrays["m"]
        assert primitive_fps["m"] == fp.dilate(1)
        assert raster is ds.s
        return sum(a[dy:dy + fp.rh, dx:dx + fp.rw] for dy in range(3) for dx in range(3)) / 9

    with tessera.Dataset() as ds:
        ds.create_cached_raster_recipe("m", fp.dilate(1), "float32", 1, compute_array=base,
                                       cache_dir=str(tmp_path / "m"), cache_tiles=(50, 40))
        ds.create_cached_raster_recipe(
            "s", fp, "float32", 1, compute_array=smooth,
            queue_data_per_primitive={"m": functools.partial(ds.m.queue_data, channels=0)},
            convert_footprint_per_primitive={"m": lambda f: f.dilate(1)},
            cache_dir=str(tmp_path / "s"), cache_tiles=(64, 64))
        got = ds.s.get_data()
    full = mandelbrot(fp.dilate(1))
    want = sum(full[dy:dy + fp.rh, dx:dx + fp.rw] for dy in range(3) for dx in range(3)) / 9
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert base.pixels == fp.dilate(1).rarea
    assert sum(f.rarea for f in smooth_fps) == fp.rarea


def test_four_concurrent_queues(tmp_path):
    fp = plane()
    with tessera.Dataset() as ds:
        r = ds.create_cached_raster_recipe("m", fp, "float32", 1, compute_array=Counter(),
                                           cache_dir=str(tmp_path), cache_tiles=(32, 32))
        reference = mandelbrot(fp)
        errors = []

        def reader(k):
            try:
                windows = list(fp.tile((30 + k * 7, 25 + k * 5), boundary_effect="shrink").flat)
                for w, array in zip(windows, r.queue_data(windows, max_queue_size=3)):
                    (c0, r0), = fp.spatial_to_raster(np.array([w.tl]))
                    np.testing.assert_array_equal(array, reference[r0:r0 + w.rh, c0:c0 + w.rw])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors


def test_dropped_queue_stops_the_work():
    fp = plane()
    counter = Counter()
    with tessera.Dataset(compute_threads=2) as ds:
        r = ds.create_raster_recipe("m", fp, "float32", 1, compute_array=counter,
                                    computation_tiles=(10, 10))
        windows = list(fp.tile((10, 10)).flat)
        q = r.queue_data(windows, max_queue_size=2)
        next(q)
        del q
        gc.collect()
        time.sleep(0.3)
        settled = len(counter.fps)
        time.sleep(0.3)
        assert len(counter.fps) == settled
        assert settled <= 1 + 2 + 2, settled  # taken + queue + in flight on 2 threads
        assert len(windows) == 320


class Boom(ValueError):
    pass


def test_a_failing_tile_fails_only_its_windows_with_the_same_exception_type():
    fp = plane()
    bad = fp.tile((50, 40))[1, 2]

    def compute(tile, primitive_fps, primitive_arrays, raster):
        if tile == bad:
            raise Boom("no data here")
        return mandelbrot(tile)

    with tessera.Dataset() as ds:
        r = ds.create_raster_recipe("m", fp, "float32", 1, compute_array=compute,
                                    computation_tiles=(50, 40))
        with pytest.raises(Boom) as info:
            r.get_data(bad.dilate(3) & fp)
        text = str(info.value)
        assert "`m`" in text and "col 2, row 1" in text and "no data here" in text
        assert isinstance(info.value.__cause__, Boom)
        np.testing.assert_array_equal(r.get_data(fp.tile((50, 40))[0, 0]),
                                      mandelbrot(fp.tile((50, 40))[0, 0]))
        out = []
        q = r.iter_data([fp.tile((50, 40))[0, 1], bad, fp.tile((50, 40))[3, 3]])
        out.append(next(q))
        with pytest.raises(Boom):
            next(q)
        out.append(next(q))
        assert len(out) == 2


def test_back_pressure_bounds_computations_ahead():
    fp = plane()
    started = []
    lock = threading.Lock()

    def compute(tile, primitive_fps, primitive_arrays, raster):
        with lock:
            started.append(tile)
        return np.zeros((tile.rh, tile.rw), np.float32)

    with tessera.Dataset(compute_threads=2) as ds:
        r = ds.create_raster_recipe("m", fp, "float32", 1, compute_array=compute,
                                    computation_tiles=(20, 20))
        windows = list(fp.tile((20, 20)).flat)
        consumed = 0
        for _ in r.queue_data(windows, max_queue_size=3):
            consumed += 1
            time.sleep(0.002)
            with lock:
                assert len(started) <= consumed + 3, (len(started), consumed)
        assert consumed == len(windows) == 80


def test_wrap_numpy_open_raster_and_events():
    fp = tessera.Footprint(tl=(0.0, 10.0), size=(10.0, 10.0), rsize=(10, 10))
    pixels = np.arange(300, dtype=np.uint16).reshape(10, 10, 3)
    with tessera.Dataset() as ds:
        events = ds.subscribe()
        w = ds.wrap_numpy_raster("w", fp, pixels, channels_schema={"nodata": 0})
        assert len(w) == 3 and w.dtype == np.uint16 and w.nodata == 0
        np.testing.assert_array_equal(w.get_data(), pixels)
        np.testing.assert_array_equal(w.get_data(fp.clip(2, 3, 5, 6), channels=1),
                                      pixels[3:6, 2:5, 1])
        off = fp.dilate(2)
        got = w.get_data(off, channels=[2, 0])
        assert got.shape == (14, 14, 2) and got[0, 0, 0] == 0
        np.testing.assert_array_equal(got[2:12, 2:12], pixels[..., [2, 0]])
        with pytest.raises(ValueError, match="channel 3 does not exist"):
            w.get_data(channels=3)
        with pytest.raises(ValueError, match="does not fit"):
            ds.wrap_numpy_raster("bad", fp, np.zeros((9, 10)))
        tif = REPO / "crates/tessera-raster/tests/fixtures/rs_f32_1b.tif"
        t = ds.open_raster("t", str(tif))
        assert t.get_data().dtype == np.float32 and t.get_data().ndim == 2
        with pytest.raises(FileNotFoundError, match="nope.tif"):
            ds.open_raster("missing", str(REPO / "nope.tif"))
        ds.create_raster_recipe("m", plane(), "float32", 1, compute_array=compute_mandelbrot)
        ds.m.get_data(plane().clip(0, 0, 10, 10))
        seen = events.drain()
        states = {e["state"] for e in seen if e["raster"] == "m"}
        assert "computing" in states, seen


def test_compute_array_in_worker_processes():
    import multiprocessing

    fp = plane()
    with multiprocessing.get_context("spawn").Pool(2) as pool, tessera.Dataset() as ds:
        r = ds.create_raster_recipe("m", fp, "float32", 1, compute_array=compute_mandelbrot,
                                    computation_pool=pool, computation_tiles=(100, 80))
        np.testing.assert_array_equal(r.get_data(), mandelbrot(fp))


def test_tessera_process_pool_computes_and_reraises_in_the_reader():
    fp = plane()
    with tessera.ProcessPool(2) as pool, tessera.Dataset() as ds:
        r = ds.create_raster_recipe("m", fp, "float32", 1, compute_array=compute_mandelbrot,
                                    computation_pool=pool, computation_tiles=(50, 40))
        np.testing.assert_array_equal(r.get_data(), mandelbrot(fp))
        bad = ds.create_raster_recipe("b", fp, "float32", 1,
                                      compute_array=compute_refusing_the_left_half,
                                      computation_pool=pool, computation_tiles=(50, 40))
        right = fp.clip(150, 0, None, None)
        np.testing.assert_array_equal(bad.get_data(right), mandelbrot(right))
        with pytest.raises(Refused, match="left half"):
            bad.get_data(fp.clip(0, 0, 10, 10))


def test_to_dask_is_chunked_on_cache_tiles(tmp_path):
    pytest.importorskip("dask")
    fp = plane()
    with tessera.Dataset() as ds:
        r = ds.create_cached_raster_recipe("m", fp, "float32", 1, compute_array=Counter(),
                                           cache_dir=str(tmp_path), cache_tiles=(64, 64))
        arr = r.to_dask()
        assert arr.chunks == ((64, 64, 32), (64, 64, 64, 8))
        np.testing.assert_array_equal(arr.compute(scheduler="threads"), mandelbrot(fp))


def test_closed_dataset_and_bad_recipes_say_why(tmp_path):
    ds = tessera.Dataset()
    with pytest.raises(TypeError, match="cache_dir"):
        ds.create_cached_raster_recipe("m", plane(), "float32", 1, compute_array=Counter())
    with pytest.raises(TypeError, match="not supported"):
        ds.create_raster_recipe("m", plane(), "complex64", 1, compute_array=Counter())
    ds.create_raster_recipe("m", plane(), "float32", 1, compute_array=compute_mandelbrot)
    with pytest.raises(ValueError, match="already has a raster"):
        ds.create_raster_recipe("m", plane(), "float32", 1, compute_array=compute_mandelbrot)
    with pytest.raises(TypeError, match="queue_data_per_primitive"):
        ds.create_raster_recipe("n", plane(), "float32", 1, compute_array=compute_mandelbrot,
                                queue_data_per_primitive={"x": print})
    r = ds.m
    ds.close()
    with pytest.raises(RuntimeError):
        r.get_data()


def test_wrong_shape_from_compute_array_is_a_value_error():
    with tessera.Dataset() as ds:
        ds.create_raster_recipe("m", plane(), "float32", 1,
                                compute_array=lambda fp, *_: np.zeros((3, 3)))
        with pytest.raises(ValueError, match="m"):
            ds.m.get_data()


def test_buzzard_forms_of_tilings_pools_and_options(tmp_path):
    import multiprocessing.pool

    fp = plane()
    seen = []

    def compute(tile, primitive_fps, primitive_arrays, raster):
        seen.append(raster)
        return mandelbrot(tile)

    with multiprocessing.pool.ThreadPool(2) as pool, \
            tessera.Dataset(sr_work=None, allow_interpolation=True) as ds:
        r = ds.create_cached_raster_recipe(
            "m", fp, "float32", 1, compute_array=compute, cache_dir=str(tmp_path),
            cache_tiles=fp.tile((64, 64), boundary_effect="shrink"),
            computation_tiles=fp.tile((32, 32), boundary_effect="shrink"),
            computation_pool=pool)
        np.testing.assert_array_equal(r.get_data(), mandelbrot(fp))
        assert seen and all(s is r for s in seen)  # threads get the raster
        assert r.get_keys() == ["m"]
        assert len(list(tmp_path.rglob("*.tif"))) == 12  # 64-pixel cache tiles
        with pytest.raises(ValueError, match="regular tiling"):
            ds.create_cached_raster_recipe("x", fp, "float32", 1, compute_array=compute,
                                           cache_dir=str(tmp_path / "x"),
                                           cache_tiles=fp.tile((64, 64)))
        with pytest.raises(ValueError, match="automatic_remapping"):
            ds.create_raster_recipe("y", fp, "float32", 1, compute_array=compute,
                                    automatic_remapping=False)
    with pytest.raises(TypeError, match="bogus"):
        tessera.Dataset(bogus=1)
    with tessera.Env(significant=9, allow_complex_footprint=True):
        pass
