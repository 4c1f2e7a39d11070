"""Tessera from Python: raster recipes computed tile by tile by numpy functions, with buzzard's
names (``Dataset``, ``Footprint``, ``create_cached_raster_recipe``, ``get_data``,
``iter_data``, ``queue_data``), on Tessera's Rust engine. Reads, writes, scheduling and
waiting happen in Rust with the GIL released; ``compute_array`` holds it only while it runs.
``run`` and ``resume`` run pipeline files in this process; ``Client`` drives a Tessera
server's HTTP API.
"""

from ._native import DataQueue, Dataset, Footprint, Raster, TileEvents, __version__
from ._dask import to_dask
from .client import Client, TaskFailed, TesseraError
from ._pipelines import resume, run
from ._processes import ProcessPool

__all__ = [
    "Client",
    "DataQueue",
    "Dataset",
    "Env",
    "ProcessPool",
    "Footprint",
    "Raster",
    "TaskFailed",
    "TesseraError",
    "TileEvents",
    "resume",
    "run",
    "to_dask",
    "__version__",
]


class Env:
    """buzzard's ``Env`` (significant digits, warnings, complex footprints): accepted so that
    buzzard code runs; it changes nothing (Tessera compares coordinates with a tolerance of
    its own and accepts any footprint orientation)."""

    def __init__(self, **options):
        self.options = options

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _footprint_from_gt(gt, rsize):
    """Rebuilds a pickled Footprint (process pools send footprints to their workers)."""
    return Footprint(gt=tuple(gt), rsize=tuple(rsize))
