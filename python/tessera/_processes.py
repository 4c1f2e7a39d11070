"""Worker processes for ``compute_array`` functions that hold the GIL: one pipe per worker,
no pool threads in between (``multiprocessing.Pool.apply`` costs milliseconds per call in
thread hand-offs; this costs one pickle each way)."""

from __future__ import annotations

import multiprocessing
import queue
import traceback


def _serve(conn) -> None:
    """A worker: runs ``function(*args)`` for each message until the pipe closes."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        function, args = message
        try:
            result = ("ok", function(*args))
        except BaseException as e:  # noqa: BLE001 - sent back to the caller as raised
            e.__traceback_text__ = traceback.format_exc()
            result = ("error", e)
        try:
            conn.send(result)
        except Exception as e:  # an unpicklable result or exception
            conn.send(("error", RuntimeError(f"cannot send the result back: {e!r}")))


class ProcessPool:
    """``processes`` worker processes for ``computation_pool=`` (GIL-bound compute functions).

    ``context``: ``"spawn"`` (default: safe whatever threads the caller runs), ``"forkserver"``
    or ``"fork"`` (fastest to start; only before any Dataset or other thread exists). The
    compute function and its arguments must be picklable. Close it (or use ``with``) when done.
    """

    def __init__(self, processes: int | None = None, context: str = "spawn"):
        ctx = multiprocessing.get_context(context)
        count = processes or multiprocessing.cpu_count()
        self._idle: queue.Queue = queue.Queue()
        self._workers = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_serve, args=(child,), daemon=True)
            process.start()
            child.close()
            self._workers.append((process, parent))
            self._idle.put(parent)
        self.processes = count
        self._alive = count

    def apply(self, function, args=(), kwargs=None):
        """``function(*args)`` in an idle worker (waiting for one), as ``Pool.apply``."""
        if kwargs:
            raise TypeError("ProcessPool.apply takes no keyword arguments")
        if self._alive == 0:
            raise RuntimeError("every worker process of this ProcessPool has died or is closed")
        conn = self._idle.get()
        try:
            conn.send((function, tuple(args)))
            status, value = conn.recv()
        except (EOFError, OSError) as e:
            # The worker died (killed, out of memory…): it is not given work again.
            self._alive -= 1
            raise RuntimeError(f"a worker process died while computing ({e!r})") from None
        self._idle.put(conn)
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        """No more work: the workers exit once their pipe closes."""
        self._alive = 0
        for _, conn in self._workers:
            conn.close()

    def join(self) -> None:
        """Waits for the workers to exit (after ``close``), as ``Pool.join``."""
        for process, _ in self._workers:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
        self._workers = []

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self.join()
