"""A raster as a dask array chunked on its cache tiles (``dask`` is optional)."""


def to_dask(raster, chunks=None):
    """``raster`` as a lazy ``dask.array``: one chunk per cache tile of a cached recipe (or
    per ``chunks=(columns, rows)`` pixels; 512 × 512 by default), each read with
    ``get_data`` when dask computes it."""
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_dask needs dask: pip install 'dask[array]'") from e
    if chunks is not None:
        tiles = raster.fp.tile(tuple(chunks), boundary_effect="shrink")
    else:
        tiles = raster.cache_tiles_fps
        if tiles is None:
            tiles = raster.fp.tile((512, 512), boundary_effect="shrink")
    channels = len(raster)
    read = dask.delayed(_read, pure=True)
    rows = []
    for row in tiles:
        blocks = []
        for fp in row:
            shape = (fp.rh, fp.rw) if channels == 1 else (fp.rh, fp.rw, channels)
            blocks.append(da.from_delayed(read(raster, fp), shape=shape, dtype=raster.dtype))
        rows.append(blocks)
    return da.block(rows)


def _read(raster, fp):
    return raster.get_data(fp)
