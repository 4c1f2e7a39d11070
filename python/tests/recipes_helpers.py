"""Compute functions shared by the tests (importable by process-pool workers)."""

import numpy as np


def mandelbrot(fp, iterations=30):
    """Escape counts over `fp`'s pixel centres: the reference the recipes must match."""
    cols = np.arange(fp.rw) + 0.5
    rows = np.arange(fp.rh) + 0.5
    cc, rr = np.meshgrid(cols, rows)
    xy = fp.raster_to_spatial(np.stack([cc, rr], axis=-1))
    c = xy[..., 0] + 1j * xy[..., 1]
    z = np.zeros_like(c)
    count = np.zeros(c.shape, dtype=np.float32)
    for _ in range(iterations):
        inside = np.abs(z) <= 2.0
        z[inside] = z[inside] ** 2 + c[inside]
        count += inside
    return count


def compute_mandelbrot(fp, primitive_fps, primitive_arrays, raster):
    return mandelbrot(fp)


def plane():
    """200 × 160 pixels over the Mandelbrot set. Pixels of 1/64: coordinates are exact in
    binary, so a tile's pixel centres are the same numbers as the whole plane's."""
    import tessera

    return tessera.Footprint(tl=(-2.25, 1.25), size=(200 / 64, 160 / 64), rsize=(200, 160))


class Refused(ValueError):
    pass


def compute_refusing_the_left_half(fp, primitive_fps, primitive_arrays, raster):
    """Fails for tiles left of x = -0.75 (runs in worker processes)."""
    if fp.tlx < -0.75:
        raise Refused(f"left half ({fp.tlx})")
    return mandelbrot(fp)


def compute_slowly(fp, primitive_fps, primitive_arrays, raster):
    """A tile a second, in zeros (for killed workers)."""
    import time

    time.sleep(1)
    return np.zeros(fp.shape, np.float32)
