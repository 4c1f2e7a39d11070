"""Pipelines in this process: ``tessera.run`` and ``tessera.resume`` on a data directory's
embedded defaults (SQLite store and objects under ``.tessera``), as ``tessera run`` does."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from . import _native
from .client import TaskFailed


def _objects_as(value: Any, data_dir: str, objects: str) -> Any:
    """Object references (``{"$object": id, …}``) as their file's path or their bytes."""
    if isinstance(value, dict):
        if "$object" in value and isinstance(value["$object"], str):
            path = _native.object_path(value["$object"], data_dir)
            if path is None or objects == "reference":
                return value
            if objects == "bytes":
                with open(path, "rb") as f:
                    return f.read()
            return str(path)
        return {k: _objects_as(v, data_dir, objects) for k, v in value.items()}
    if isinstance(value, list):
        return [_objects_as(v, data_dir, objects) for v in value]
    return value


def _ended(ended, data_dir: str, objects: str) -> Any:
    task_id, state, error, result = ended
    if state != "finished":
        raise TaskFailed({"id": task_id, "state": state, "error": error})
    return _objects_as(json.loads(result) if result else None, data_dir, objects)


def run(pipeline: str | os.PathLike, input: Mapping[str, Any] | None = None,
        files: Mapping[str, str | os.PathLike] | None = None, *,
        data_dir: str | os.PathLike = ".tessera", objects: str = "path") -> Any:
    """Runs the pipeline file in this process and returns the end node's output.

    ``input`` is checked against the entry's ``api.body`` (its example when not given);
    ``files`` maps file fields to paths. Objects in the result come back as their file's path
    (``objects="path"``), their bytes (``"bytes"``) or the reference itself
    (``"reference"``). A failed or cancelled task raises :class:`tessera.TaskFailed` with the
    CLI's message (node, attempt, cause); Ctrl-C cancels the task (``tessera.resume``
    continues it).
    """
    if objects not in ("path", "bytes", "reference"):
        raise ValueError("objects must be 'path', 'bytes' or 'reference'")
    if input is not None and not isinstance(input, Mapping):
        raise TypeError(f"input must be a dict (the entry's fields), not {type(input).__name__}")
    text = None if input is None else json.dumps(dict(input))
    pairs = [(name, os.path.abspath(path)) for name, path in (files or {}).items()]
    # Absolute, as `tessera run` makes it: commands run in other directories.
    data_dir = os.path.abspath(data_dir)
    ended = _native.run_local(os.fspath(pipeline), text, pairs, data_dir)
    return _ended(ended, data_dir, objects)


def resume(task_id: str, *, data_dir: str | os.PathLike = ".tessera",
           objects: str = "path") -> Any:
    """Resumes a failed, cancelled or interrupted task of ``data_dir``: finished nodes are
    not run again. Returns its result as :func:`run` does."""
    data_dir = os.path.abspath(data_dir)
    ended = _native.resume_local(task_id, data_dir)
    return _ended(ended, data_dir, objects)
