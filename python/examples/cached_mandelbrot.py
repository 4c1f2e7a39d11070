"""buzzard's "Part 4: Mandelbrot 10 mega pixels computed on the fly and cached on disk", on
Tessera.

Source: buzzard 0.6.5, `doc/notebook2/part4.py` (cell 9 of `doc/notebook2/async_rasters.ipynb`,
the "async rasters in depth" notebook linked from buzzard's README), with the two functions it
imports from `doc/notebook2/part3.py` (`mandelbrot_of_footprint`, `mandelbrot_jit`).
https://github.com/preligens-lab/buzzard (formerly earthcube-lab/buzzard, airware/buzzard),
git tag 0.6.5. Copyright the buzzard authors, Apache License 2.0; modified as marked.

What it shows: a cached raster recipe (`create_cached_raster_recipe`) with a cache tiling and a
finer computation tiling; a window computed, then read again from the cache; a cache file
corrupted between two openings; and (the part buzzard 0.6.5 had disabled) a derived recipe fed
by the cached one through `queue_data_per_primitive`.

Every change from buzzard's code is marked `# tessera: <why>`; python/examples/README.md lists
them. It imports example_tools.py from this directory. Run it from a scratch directory (the
cache goes to ./mandelbrot_100mpx_tiles), it takes a few seconds:

    cd "$(mktemp -d)" && python /path/to/python/examples/cached_mandelbrot.py
"""

import os

import tessera as buzz
import numpy as np
# tessera: shapely is not a dependency: `import shapely.geometry` when it is installed, else a
#   stand-in for the one call below, `shapely.geometry.Point(x, y).buffer(r)`, giving only what
#   `fp & geom` reads of a geometry: its `bounds` (minx, miny, maxx, maxy), here the disc's
try:
    import shapely.geometry
except ImportError:
    import types

    class _Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def buffer(self, r):
            return types.SimpleNamespace(bounds=(self.x - r, self.y - r, self.x + r, self.y + r))

    shapely = types.SimpleNamespace(geometry=types.SimpleNamespace(Point=_Point))

import example_tools
# tessera: `from part3 import mandelbrot_of_footprint` replaced by a copy of part3.py's two
#   functions below: part3.py imports numba

CACHE_DIR = 'mandelbrot_100mpx_tiles'

# tessera: buzzard's 100 mega pixels (10000 x 10000, up to 10000 iterations a pixel, with numba)
#   take minutes in numpy; 1 mega pixel (1000 x 1000, up to 1000 iterations) takes seconds.
#   Every other number is buzzard's.
RSIZE = 1000


# From doc/notebook2/part3.py ************************************************** **
def mandelbrot_of_footprint(fp, *_):
    """A function to be fed to `compute_array` when constructing a recipe"""
    maxit = int(np.ceil(4 / fp.pxsizex))
    array = np.empty(fp.shape, 'uint32')
    mandelbrot_jit(array, fp.tl, fp.scale, maxit)
    array = array.astype('float32') / maxit
    return array

# tessera: `@jit(nopython=True, nogil=True, cache=True)` dropped: numba is not installed. The
#   same iteration, vectorized with numpy over the pixels still iterating (same counts).
def mandelbrot_jit(array, tl, scale, maxit):
    """Compute a https://en.wikipedia.org/wiki/Mandelbrot_set"""
    j, i = np.indices(array.shape)
    y0 = (tl[1] + j * scale[1]).ravel()
    x0 = (tl[0] + i * scale[0]).ravel()
    x, y, x2, y2 = (np.zeros(x0.shape) for _ in range(4))
    iteration = np.zeros(x0.shape, 'uint32')
    todo = np.arange(x0.size)  # the pixels where `x2 + y2 < 4 and iteration < maxit`
    for _ in range(maxit):
        y[todo] = 2 * x[todo] * y[todo] + y0[todo]
        x[todo] = x2[todo] - y2[todo] + x0[todo]
        x2[todo] = x[todo] * x[todo]
        y2[todo] = y[todo] * y[todo]
        iteration[todo] += 1
        todo = todo[x2[todo] + y2[todo] < 4]
        if not todo.size:
            break
    array[...] = iteration.reshape(array.shape)


# doc/notebook2/part4.py ******************************************************* **
def colorize_mandelbrot(fp, primitive_fps, primitive_arrays, raster):
    arr = primitive_arrays['mand']

    # Colorize converging pixels
    arr[arr == 1.] = 0.

    # Colorize diverging pixels
    maxit = 4 / fp.pxsizex
    arr = np.floor((arr * maxit * 7.) % 256.)
    # arr = np.floor((maxit * 100. / arr) % 256.)

    # Turn to rgb
    res = np.zeros(np.r_[fp.shape, 3], 'uint8')
    res[..., 0] = arr
    return res

def example():
    ds = buzz.Dataset()
    events = ds.subscribe()  # tessera: check (which tiles get computed), not in buzzard

    # Create a Footprint that ranges from -2 to 2 on both x and y axes
    fp = buzz.Footprint(
        gt=(-2, 4 / RSIZE, 0, -2, 0, 4 / RSIZE),  # tessera: RSIZE for 10000
        rsize=(RSIZE, RSIZE),  # tessera: RSIZE for 10000
    )
    cache_tiling = fp.tile((512, 512), boundary_effect='shrink')
    computation_tiling = fp.tile((128, 128), boundary_effect='shrink')
    cached_recipe_params = dict(
        key='mand_100mpx',

        fp=fp,
        dtype='float32',
        channel_count=1,
        compute_array=mandelbrot_of_footprint,

        cache_dir=CACHE_DIR,
        cache_tiles=cache_tiling,
        computation_tiles=computation_tiling,
    )
    ds.create_cached_raster_recipe(**cached_recipe_params)

    # Test 1 - Timings before and after caching ***************************** **
    print('Test 1 - Read mandelbrot 100mpx twice and compare timings')
    fp = ds.mand_100mpx.fp
    fp = fp & shapely.geometry.Point(-1.1172, -0.221103).buffer(fp.pxsizex * 300)
    print(f'Getting Footprint at {fp.c}...')
    with example_tools.Timer() as t:
        first = ds.mand_100mpx.get_data(fp=fp)  # tessera: `first =`, for the checks
    print(f'  took {t}')

    print(f'Getting Footprint at {fp.c}...')
    with example_tools.Timer() as t:
        second = ds.mand_100mpx.get_data(fp=fp)  # tessera: `second =`, for the checks
    print(f'  took {t}')
    print('Tiles in `{}` directory:\n- {}'.format(
        CACHE_DIR,
        '\n- '.join(example_tools.list_cache_files_path_in_dir(CACHE_DIR)),
    ))
    print()

    # tessera: checks, not in buzzard ********************************************
    reference = _computed_tile_by_tile(ds.mand_100mpx.fp, computation_tiling, fp)
    assert first.shape == second.shape == reference.shape == fp.shape, (first.shape, fp)
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference)
    computed = [e for e in events.drain() if e['state'] == 'computing']
    touched = sum(_overlaps(tile, fp) for tile in cache_tiling.flat)
    assert len(example_tools.list_cache_files_path_in_dir(CACHE_DIR)) == touched == 4, touched
    # 16 computation tiles per cache tile, each computed once: the second read computed none
    assert len(computed) == touched * 16, len(computed)
    # **************************************************************************

    # Test 2 - Corrupt one cache file and try to reuse the file ************* **
    print('Test 2 - Corrupt one cache file and try to reuse the file')
    # tessera: `ds.mand_100mpx.close()`: a raster has no close(), and a Dataset refuses a key it
    #   already has; so close the whole Dataset and open a new one
    ds.close()
    ds = buzz.Dataset()
    events = ds.subscribe()  # tessera: check, not in buzzard

    # Pick one cache file and append one byte to it
    one_cache_tile_path = example_tools.list_cache_files_path_in_dir(CACHE_DIR)[0]
    print(f'Corrupting {one_cache_tile_path}...')
    with open(one_cache_tile_path, 'ba') as f:
        f.write(b'\0x42')
    ds.create_cached_raster_recipe(**cached_recipe_params)

    print(f'Getting Footprint at {fp.c}...')
    with example_tools.Timer() as t:
        arr = ds.mand_100mpx.get_data(fp=fp)
    print(f'  took {t}')

    example_tools.show_several_images((
        'part of mandelbrot 100 mega pixels',
        fp,
        arr,
    ))

    # tessera: checks, not in buzzard ********************************************
    np.testing.assert_array_equal(arr, reference)
    seen = events.drain()
    recomputed = [e for e in seen if e['state'] == 'computing']
    corrupt = [e['message'] for e in seen if e['state'] == 'reading' and e['message']]
    # buzzard names a cache file after a checksum of its bytes, so the appended bytes make it
    # delete and recompute that tile. Tessera's name holds a hash of the decoded pixels, which
    # the bytes appended after the TIFF's data leave intact: the tile is read as it is.
    # README.md lists this difference.
    print(f'  computation tiles recomputed: {len(recomputed)}, corrupt files found: {corrupt}')
    # **************************************************************************

    # tessera: buzzard 0.6.5 returned here (`return # The NEXT features are not yet
    #   implemented`: its `create_raster_recipe` raised NotImplementedError); Tessera has it,
    #   so the derived recipe below runs

    # Test 4 - Colorize mandelbrot 100mpx ************************************ **
    ds.create_raster_recipe(
        'mand_red',
        fp=fp,
        dtype='uint8',
        channel_count=3,
        compute_array=colorize_mandelbrot,
        queue_data_per_primitive={'mand': ds.mand_100mpx.queue_data},
        # tessera: `computation_tiles=computation_tiling`: that array tiles the 100mpx raster,
        #   so it covers this recipe's Footprint (the window) with pixels outside it, and
        #   Tessera takes only `fp.tile(size, boundary_effect='shrink')` of the recipe's own
        #   Footprint (buzzard's docstring asks for "a tiling of the `fp` parameter"). The same
        #   128 px tiling, of the window:
        computation_tiles=fp.tile((128, 128), boundary_effect='shrink'),
        # tessera: `automatic_remapping=False` dropped: Tessera refuses it (compute_array always
        #   gets tiles of the recipe's own grid). The result is the same: `get_data(fp=fp)`
        #   asks for the recipe's own Footprint, so there is nothing to remap either way.
    )
    red = ds.mand_red.get_data(fp=fp)  # tessera: `red =`, for the checks
    example_tools.show_several_images((
        'part of mandelbrot 10 mega pixels in red',
        fp,
        red,  # tessera: `ds.mand_red.get_data(fp=fp)`, read above
    ))

    # tessera: checks, not in buzzard ********************************************
    want = colorize_mandelbrot(fp, {'mand': fp}, {'mand': reference.copy()}, None)
    assert red.shape == fp.shape + (3,) and red.dtype == np.uint8
    np.testing.assert_array_equal(red, want)
    assert red[..., 0].any() and not red[..., 1:].any()
    ds.close()
    print('OK')
    # **************************************************************************


def _computed_tile_by_tile(full, tiling, window):
    """tessera: check helper, not in buzzard: `window`'s pixels as the recipe computes them,
    one `compute_array` call per computation tile. (Each tile's pixels start from its own `tl`;
    computing `window` in one call would round some coordinates differently, and the escape
    count of a pixel near the set's border depends on its last bit.)"""
    out = np.full(full.shape, np.nan, 'float32')
    for tile in tiling.flat:
        if _overlaps(tile, window):
            (c, r), = full.spatial_to_raster([tile.tl], op=np.round)
            out[r:r + tile.rh, c:c + tile.rw] = mandelbrot_of_footprint(tile)
    (c, r), = full.spatial_to_raster([window.tl], op=np.round)
    return out[r:r + window.rh, c:c + window.rw]


def _overlaps(a, b):
    """tessera: check helper, not in buzzard: whether two footprints share pixels."""
    return (a.tlx < b.brx and b.tlx < a.brx
            and min(a.tly, a.bry) < max(b.tly, b.bry) and min(b.tly, b.bry) < max(a.tly, a.bry))


if __name__ == '__main__':
    if os.path.isdir(CACHE_DIR):
        for path in example_tools.list_cache_files_path_in_dir(CACHE_DIR):
            os.remove(path)
    with buzz.Env(allow_complex_footprint=True):
        example()
