"""buzzard's "Part 5 - Caching downloads", on Tessera.

Source: buzzard 0.6.5, `doc/notebook2/part5.py` (cell 11 of `doc/notebook2/async_rasters.ipynb`,
the "async rasters in depth" notebook linked from buzzard's README), with the function it
imports from `doc/notebook2/part1.py` (`test_raster`). https://github.com/preligens-lab/buzzard
(formerly earthcube-lab/buzzard, airware/buzzard), git tag 0.6.5. Copyright the buzzard authors,
Apache License 2.0; modified as marked.

What it shows: cached raster recipes whose `compute_array` downloads the tiles of a Zoomify
"zoomable image" (one recipe per zoom level, one cache file per image tile, downloads run on a
`multiprocessing.pool.ThreadPool`), reading them, then closing the Dataset and reopening the
rasters from their caches (`ow=False`) in a new one.

buzzard downloaded two Hubble images from spacetelescope.org. Here nothing comes from the
network: two synthetic zoomable images (same layout: ImageProperties.xml, TileGroupN/z-x-y
tiles) are written under ./zoomable/ and "downloaded" through file:// URLs by buzzard's own
code (example_tools.infos_of_zoomable_url and get_url).

Every change from buzzard's code is marked `# tessera: <why>`; python/examples/README.md lists
them. It imports example_tools.py from this directory. Run it from a scratch directory (it
writes ./zoomable and one cache directory per zoom level), it takes a few seconds:

    cd "$(mktemp -d)" && python /path/to/python/examples/cached_downloads.py
"""

import functools
import io  # tessera: to load the .npy tiles, see download_tile
import os
import multiprocessing as mp
import multiprocessing.pool
import pathlib  # tessera: to write the synthetic zoomable images
import threading  # tessera: to count downloads, see download_tile
import time  # tessera: from part1.py (test_raster), copied below

import tessera as buzz
import numpy as np
# tessera: `import skimage.io` dropped (not a dependency): the tiles are .npy files, see
#   download_tile

import example_tools

# tessera: `from part1 import test_raster` replaced by a copy below: part1.py's own example
#   needs example_tools.create_random_elevation_gtiff (numba, and writing a GeoTIFF)

# tessera: buzzard's ZOOMABLE_URLS pointed to spacetelescope.org; no network here, so two
#   synthetic zoomable images are written when the script starts (write_zoomable_image, at the
#   end) and ZOOMABLE_URLS gets their file:// URLs. Their sizes: andromeda has 6 zoom levels
#   (zoom5 is used below), monocerotis 5, and sizes that do not divide into tiles.
ZOOMABLE_URLS = {}
ZOOMABLE_SIZES = {
    'andromeda': (2048, 512),
    'monocerotis': (1000, 700),

}
TILE_SIZE = 64  # tessera: the images' TILESIZE (spacetelescope.org's are 256)
DOWNLOAD_POOL = mp.pool.ThreadPool(5)
DOWNLOADS = []  # tessera: check, the URLs fetched by download_tile
DOWNLOADS_LOCK = threading.Lock()  # tessera: check

def main():
    # tessera: the images are synthetic here, not ESA/Hubble's
    print("All images shown here belong to ESA/Hubble. See spacetelescope.org.\n")

    ds = buzz.Dataset(allow_interpolation=True)
    open_zoomable_rasters(ds, 'andromeda', overwrite=True)

    # Test 1 - Perform basic tests ****************************************** **
    print()
    print('Test 1 - Show andromeda with 3 resolutions')
    test_raster(ds.andromeda_zoom0)
    example_tools.show_several_images((
        'andromeda_zoom0', ds.andromeda_zoom0.fp,
        ds.andromeda_zoom0.get_data()
    ))
    print()

    test_raster(ds.andromeda_zoom1)
    example_tools.show_several_images((
        'andromeda_zoom1', ds.andromeda_zoom1.fp,
        ds.andromeda_zoom1.get_data()
    ))
    print()

    test_raster(ds.andromeda_zoom2)
    example_tools.show_several_images((
        'andromeda_zoom2', ds.andromeda_zoom2.fp,
        ds.andromeda_zoom2.get_data()
    ))
    print()

    # tessera: checks, not in buzzard ********************************************
    for zoom in range(3):
        raster = ds[f'andromeda_zoom{zoom}']
        np.testing.assert_array_equal(raster.get_data(), expected_pixels('andromeda', raster.fp))
    # **************************************************************************

    # Test 2 - Test `get_data` timings ************************************** **
    print()
    print('Test 2 - Read andromeda 4 times and compare timings')
    with example_tools.Timer() as t:
        ds.andromeda_zoom5.get_data()
    print(f'Getting andromeda_zoom5 took {t}, download was performed')

    with example_tools.Timer() as t:
        ds.andromeda_zoom5.get_data()
    print(f'Getting andromeda_zoom5 took {t}, data was directly fetched from cache')

    downloads = len(DOWNLOADS)  # tessera: check, not in buzzard
    assert downloads > 0 and len(os.listdir('andromeda_zoom5')) > 0  # tessera: check

    print('Closing and opening andromeda rasters again...')
    ds.close()
    ds = buzz.Dataset(allow_interpolation=True)
    open_zoomable_rasters(ds, 'andromeda', overwrite=False)

    with example_tools.Timer() as t:
        ds.andromeda_zoom5.get_data()
    print(f'Getting andromeda_zoom5 took {t}, cache files validity was checked'
          ' and data was fetched from cache')

    with example_tools.Timer() as t:
        ds.andromeda_zoom5.get_data()
    print(f'Getting andromeda_zoom5 took {t}, data was directly fetched from cache')

    example_tools.show_several_images((
        'andromeda_zoom5', ds.andromeda_zoom5.fp,
        ds.andromeda_zoom5.get_data()
    ))

    # tessera: checks, not in buzzard ********************************************
    assert len(DOWNLOADS) == downloads, 'the reopened caches were downloaded again'
    zoom5 = ds.andromeda_zoom5
    assert tuple(zoom5.fp.rsize) == tuple(ZOOMABLE_SIZES['andromeda']) and len(zoom5) == 3
    np.testing.assert_array_equal(zoom5.get_data(), expected_pixels('andromeda', zoom5.fp))
    # **************************************************************************

    # Test 3 **************************************************************** **
    print()
    print('Test 2 - Show monocerotis')
    open_zoomable_rasters(ds, 'monocerotis', overwrite=False)
    example_tools.show_several_images((
        'monocerotis_zoom3', ds.monocerotis_zoom3.fp,
        ds.monocerotis_zoom3.get_data()
    ))

    # tessera: checks, not in buzzard ********************************************
    zoom3 = ds.monocerotis_zoom3
    assert tuple(zoom3.fp.rsize) == (500, 350), zoom3.fp
    np.testing.assert_array_equal(zoom3.get_data(), expected_pixels('monocerotis', zoom3.fp))
    ds.close()
    DOWNLOAD_POOL.close()
    print(f'\n{len(DOWNLOADS)} tiles downloaded\nOK')
    # **************************************************************************

def open_zoomable_rasters(ds, name, overwrite):
    infos = example_tools.infos_of_zoomable_url(
        ZOOMABLE_URLS[name], max_zoom=8, verbose=False,
    )
    for zoom_level, (fp, tiles, url_per_tile) in enumerate(zip(*infos)):
        print('  Opening {} at zoom {}, {}x{} pixels split between {} files'.format(
            name, zoom_level, *fp.rsize, tiles.size,
        ))
        ds.create_cached_raster_recipe(
            key=f'{name}_zoom{zoom_level}',

            fp=fp,
            dtype='uint8',
            channel_count=3,
            compute_array=functools.partial(
                download_tile,
                url_per_tile=url_per_tile
            ),
            computation_pool=DOWNLOAD_POOL,

            cache_tiles=tiles,
            cache_dir=f'{name}_zoom{zoom_level}',
            ow=overwrite,
        )

def download_tile(fp, *_, url_per_tile):
    """A function to be fed to `compute_array` when constructing a recipe"""
    url = url_per_tile[fp]
    # tessera: `skimage.io.imread(url)`: skimage is not a dependency and the synthetic tiles
    #   are .npy files; buzzard's example_tools.get_url fetches them
    arr = np.load(io.BytesIO(example_tools.get_url(url)))
    with DOWNLOADS_LOCK:  # tessera: check, not in buzzard
        DOWNLOADS.append(url)
    return arr


# From doc/notebook2/part1.py ************************************************** **
def test_raster(r):
    """Basic testing functions. It will be reused throughout those tests"""
    print('| Print raster informations')
    fp = r.fp
    if r.get_keys():
        print(f'|   key: {r.get_keys()[0]}')
    print(f'|   type: {type(r).__name__}')
    print(f'|   dtype: {r.dtype}, channel-count: {len(r)}')
    print(f'|   Footprint: center:{fp.c}, scale:{fp.scale}')
    print(f'|              size(m):{fp.size}, raster-size(px):{fp.rsize}')
    # tessera: `fp.intersection(fp, scale=fp.scale * 2)`: intersection() refuses a `scale=`
    #   other than 'self' (its result is on self's grid), and Tessera's `fp.scale` is a tuple,
    #   so `fp.scale * 2` would repeat it rather than double it. The Footprint buzzard
    #   computes: fp's extent, from fp's top left, with pixels twice as large, rounded outwards
    fp_lowres = buzz.Footprint(
        gt=(fp.tlx, fp.scale[0] * 2, 0, fp.tly, 0, fp.scale[1] * 2),
        rsize=(-(-fp.rw // 2), -(-fp.rh // 2)),
    )

    # *********************************************************************** **
    print('| Test 2 - Getting the full raster')
    with example_tools.Timer() as t:
        arr = r.get_data()
    print(f'|   took {t}, {fp.rarea / float(t):_.0f} pixel/sec')

    # *********************************************************************** **
    print('| Test 3 - Getting and downsampling the full raster')
    with example_tools.Timer() as t:
        arr = r.get_data(fp=fp_lowres)
    print(f'|   took {t}, {fp_lowres.rarea / float(t):_.0f} pixel/sec')
    assert arr.shape == fp_lowres.shape + (len(r),), arr.shape  # tessera: check
    if fp.rw % 2 == 0 and fp.rh % 2 == 0:  # tessera: check, cv_area: the mean of 2x2 pixels
        blocks = r.get_data().reshape(fp.rh // 2, 2, fp.rw // 2, 2, len(r))
        assert np.abs(arr - blocks.mean((1, 3))).max() <= 0.5  # tessera: check

    # *********************************************************************** **
    print('| Test 4 - Getting the full raster in 9 tiles with a slow main'
          'thread')
    tiles = fp.tile_count(3, 3, boundary_effect='shrink').flatten()
    if hasattr(r, 'iter_data'):
        # Using `iter_data` of async rasters
        arr_iterator = r.iter_data(tiles)
    else:
        # Making up an `iter_data` for classic rasters
        arr_iterator = (
            r.get_data(fp=tile)
            for tile in tiles
        )
    with example_tools.Timer() as t:
        for tile, arr in zip(tiles, arr_iterator):
            time.sleep(1 / 9)
            assert arr.shape == tile.shape + (len(r),)  # tessera: check
    print(f'|   took {t}, {r.fp.rarea / float(t):_.0f} pixel/sec')


# tessera: the synthetic zoomable images, not in buzzard ************************ **
def expected_pixels(name, fp):
    """The RGB pixels of image `name` at `fp` (a zoom level's Footprint, or a window of it):
    a function of the position in the full resolution image, so that zoom levels agree."""
    width, height = ZOOMABLE_SIZES[name]
    pxsize = fp.pxsizex  # full resolution pixels per pixel (the full image's pixels are 1 wide)
    cols, rows = np.meshgrid(np.arange(fp.rw), np.arange(fp.rh))
    u = fp.tlx + width / 2 + (cols + 0.5) * pxsize  # from the image's left edge
    v = height / 2 - fp.tly + (rows + 0.5) * pxsize  # from the image's top edge
    rgb = np.stack([u * 256 / width, v * 256 / height, (u // 48 + v // 48) % 2 * 255], -1)
    return np.floor(rgb).astype('uint8')

def write_zoomable_image(name, directory):
    """Writes image `name` as Zoomify does (ImageProperties.xml, TileGroupN/zoom-x-y tiles,
    256 tiles a group, in zoom, row, column order) and returns its file:// URL."""
    width, height = ZOOMABLE_SIZES[name]
    root = pathlib.Path(directory, name).resolve()
    full_rsize = np.asarray([width, height])
    # Zoom levels as example_tools.infos_of_zoomable_url counts them
    tile_count = np.ceil(full_rsize / TILE_SIZE).astype(int)
    zoom_count = 1
    while sum(tile_count) != 2:
        zoom_count += 1
        tile_count = np.ceil(tile_count / 2).astype(int)
    index = 0
    for zoom in range(zoom_count):
        pxsize = 2 ** (zoom_count - zoom - 1)
        rw, rh = np.floor(full_rsize / pxsize).astype(int)
        fp = buzz.Footprint(tl=(-rw / 2 * pxsize, rh / 2 * pxsize), size=(rw * pxsize, rh * pxsize),
                            rsize=(int(rw), int(rh)))
        pixels = expected_pixels(name, fp)
        for y in range(-(-rh // TILE_SIZE)):
            for x in range(-(-rw // TILE_SIZE)):
                path = root / f'TileGroup{index // 256}' / f'{zoom}-{x}-{y}.npy'
                path.parent.mkdir(parents=True, exist_ok=True)
                tile = pixels[y * TILE_SIZE:(y + 1) * TILE_SIZE, x * TILE_SIZE:(x + 1) * TILE_SIZE]
                np.save(path, tile)
                index += 1
    (root / 'ImageProperties.xml').write_text(
        f'<IMAGE_PROPERTIES WIDTH="{width}" HEIGHT="{height}" NUMTILES="{index}" '
        f'NUMIMAGES="1" VERSION="1.8" TILESIZE="{TILE_SIZE}" />')
    return root.as_uri() + '/'

# **************************************************************************** **

if __name__ == '__main__':
    # tessera: write the synthetic zoomable images (buzzard's were online)
    ZOOMABLE_URLS.update({name: write_zoomable_image(name, 'zoomable') for name in ZOOMABLE_SIZES})
    with buzz.Env(allow_complex_footprint=True):
        main()
