"""tessera.Footprint against buzzard's semantics."""

import pickle

import numpy as np
import pytest

import tessera


def fp10():
    return tessera.Footprint(tl=(100.0, 200.0), size=(10.0, 20.0), rsize=(10, 10))


def test_constructors_and_properties():
    fp = fp10()
    assert tuple(fp.rsize) == (10, 10)
    assert fp.shape == (10, 10)
    assert tuple(fp.size) == (10.0, 20.0)
    assert tuple(fp.tl) == (100.0, 200.0)
    assert tuple(fp.br) == (110.0, 180.0)
    assert (fp.tlx, fp.tly, fp.brx, fp.bry) == (100.0, 200.0, 110.0, 180.0)
    assert (fp.rsizex, fp.rsizey, fp.sizex, fp.sizey) == (10, 10, 10.0, 20.0)
    assert tuple(fp.pxsize) == (1.0, 2.0)
    assert tuple(fp.gt) == (100.0, 1.0, 0.0, 200.0, 0.0, -2.0)
    assert tuple(fp.extent) == (100.0, 110.0, 180.0, 200.0)
    assert tuple(fp.bounds) == (100.0, 180.0, 110.0, 200.0)
    np.testing.assert_array_equal(fp.coords, [[100, 200], [110, 200], [110, 180], [100, 180]])
    same = tessera.Footprint(gt=fp.gt, rsize=fp.rsize)
    assert same == fp and hash(same) == hash(fp)
    assert pickle.loads(pickle.dumps(fp)) == fp


def test_bad_constructors_name_the_problem():
    with pytest.raises(TypeError, match="rsize"):
        tessera.Footprint(tl=(0, 0), size=(1, 1))
    with pytest.raises(ValueError, match="empty"):
        tessera.Footprint(tl=(0, 0), size=(1, 1), rsize=(0, 3))
    with pytest.raises(ValueError, match="degenerate"):
        tessera.Footprint(gt=(0, 0, 0, 0, 0, 0), rsize=(2, 2))


def test_tile_clip_dilate_erode():
    fp = fp10()
    tiles = fp.tile((4, 4))
    assert tiles.shape == (3, 3)
    assert tuple(tiles[0, 0].rsize) == (4, 4)
    assert tuple(tiles[2, 2].tl) == (108.0, 184.0)  # extended at the bottom right: overlaps
    shrunk = fp.tile((4, 4), boundary_effect="shrink")
    assert tuple(shrunk[2, 2].rsize) == (2, 2)
    assert fp.tile_count(2, 5).shape == (2, 5)
    with pytest.raises(ValueError, match="boundary_effect"):
        fp.tile((4, 4), boundary_effect="bogus")
    assert tuple(fp.clip(2, 3, 5, 7).rsize) == (3, 4)
    assert tuple(fp.clip(-3, None, None, None).rsize) == (3, 10)
    assert tuple(fp.dilate(2).rsize) == (14, 14)
    assert tuple(fp.erode(1).rsize) == (8, 8)
    assert tuple(fp.dilate(1, 0, 0, 0).rsize) == (11, 10)
    with pytest.raises(ValueError, match="no pixel"):
        fp.erode(5)


def test_intersection_and_grid():
    fp = fp10()
    other = fp.clip(5, 5, None, None).dilate(3)
    inter = fp & other
    assert tuple(inter.rsize) == (8, 8)
    assert tuple(inter.tl) == (102.0, 196.0)
    assert fp.intersection(other) == inter
    assert fp.same_grid(inter)
    far = fp.move((1000.0, 1000.0))
    with pytest.raises(ValueError, match="share no area"):
        fp & far


def test_coordinates_round_trip():
    fp = fp10()
    xy = np.array([[100.5, 199.0], [109.9, 180.1]])
    px = fp.spatial_to_raster(xy)
    assert px.dtype == np.int64
    np.testing.assert_array_equal(px, [[0, 0], [9, 9]])
    exact = fp.spatial_to_raster(xy, op=None)
    np.testing.assert_allclose(exact, [[0.5, 0.5], [9.9, 9.95]])
    np.testing.assert_allclose(fp.raster_to_spatial(exact), xy)
    with pytest.raises(ValueError, match="last dimension"):
        fp.spatial_to_raster(np.zeros((3, 3)))


class Box:
    """A geometry as shapely gives it: only its bounds are read."""

    def __init__(self, minx, miny, maxx, maxy):
        self.bounds = (minx, miny, maxx, maxy)


def test_buzzard_forms_scale_geometries_and_arrays():
    fp = tessera.Footprint(tl=np.array([100.0, 200.0]), size=np.array([10.0, 20.0]),
                           rsize=np.array([10, 10]))
    assert fp == fp10()
    assert tuple(fp.scale) == (1.0, -2.0)
    # Vectors are numpy arrays, as in buzzard: arithmetic, not tuple repetition.
    np.testing.assert_array_equal(fp.scale * 2, [2.0, -4.0])
    assert fp.rsize.dtype == np.int64 and fp.tl.dtype == np.float64
    assert fp.intersection(fp, scale=fp.scale) == fp
    with pytest.raises(ValueError, match="homogeneous"):
        fp.intersection(fp, homogeneous=True)
    # A geometry's bounding box, rounded outwards to whole pixels.
    inside = fp & Box(101.5, 190.5, 103.2, 195.0)
    assert tuple(inside.tl) == (101.0, 196.0) and tuple(inside.rsize) == (3, 3)
    assert fp.intersection(Box(101.5, 190.5, 103.2, 195.0), scale="self") == inside
    with pytest.raises(ValueError, match="not supported"):
        fp.intersection(inside, scale=(2.0, -2.0))
    with pytest.raises(TypeError, match="geometry"):
        fp & 3
