"""Tessera from Python: raster recipes computed tile by tile by numpy functions, with buzzard's
names (``Dataset``, ``Footprint``, ``create_cached_raster_recipe``, ``get_data``,
``iter_data``, ``queue_data``), on Tessera's Rust engine. Reads, writes, scheduling and
waiting happen in Rust with the GIL released; ``compute_array`` holds it only while it runs.
``Client`` drives a Tessera server's HTTP API.
"""

from ._native import DataQueue, Dataset, Footprint, Raster, TileEvents, __version__
from ._dask import to_dask
from .client import Client, TaskFailed, TesseraError

__all__ = [
    "Client",
    "DataQueue",
    "Dataset",
    "Footprint",
    "Raster",
    "TaskFailed",
    "TesseraError",
    "TileEvents",
    "to_dask",
    "__version__",
]


def _footprint_from_gt(gt, rsize):
    """Rebuilds a pickled Footprint (process pools send footprints to their workers)."""
    return Footprint(gt=tuple(gt), rsize=tuple(rsize))
