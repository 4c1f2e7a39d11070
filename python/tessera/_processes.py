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
        except Exception as e:  # the function cannot be imported here (defined in __main__…)
            conn.send(("error", RuntimeError(f"the worker cannot load the function: {e!r}")))
            continue
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

    ``context``: ``"spawn"`` (default: safe whatever threads the caller runs; the script needs
    ``if __name__ == "__main__":``, as with any spawned process), ``"forkserver"`` or
    ``"fork"`` (fastest to start; only before any Dataset or other thread exists). The compute
    function must be importable (no lambda) and its arguments picklable. A worker that dies is
    replaced. Close it (or use ``with``) when done.
    """

    def __init__(self, processes: int | None = None, context: str = "spawn"):
        self._ctx = multiprocessing.get_context(context)
        count = processes or multiprocessing.cpu_count()
        if count < 1:
            raise ValueError(f"ProcessPool needs at least one process, not {count}")
        self._idle: queue.Queue = queue.Queue()
        self._workers: list = []
        self._closed = False
        for _ in range(count):
            self._idle.put(self._start())
        self.processes = count

    def _start(self):
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_serve, args=(child,), daemon=True)
        process.start()
        child.close()
        self._workers.append((process, parent))
        return parent

    def _replace(self, conn) -> None:
        """A worker died (killed, out of memory, a script without `if __name__ ==
        "__main__":` under spawn…): a new one takes its place, so waiting callers go on."""
        for i, (process, c) in enumerate(self._workers):
            if c is conn:
                process.join(timeout=1)
                del self._workers[i]
                break
        conn.close()
        if not self._closed:
            self._idle.put(self._start())

    def apply(self, function, args=(), kwargs=None):
        """``function(*args)`` in an idle worker (waiting for one), as ``Pool.apply``."""
        if kwargs:
            raise TypeError("ProcessPool.apply takes no keyword arguments")
        if self._closed:
            raise RuntimeError("this ProcessPool is closed")
        conn = self._idle.get()
        try:
            # Pickled whole before anything is written: a failure here leaves the worker idle.
            conn.send((function, tuple(args)))
        except BaseException:
            self._idle.put(conn)
            raise
        try:
            status, value = conn.recv()
        except (EOFError, OSError) as e:
            self._replace(conn)
            raise RuntimeError(f"the worker process died while computing ({e!r})") from None
        except BaseException as e:
            # The answer came but cannot be read here (e.g. an exception type whose
            # constructor wants other arguments): the worker itself is fine.
            self._idle.put(conn)
            raise RuntimeError(f"cannot read the worker's answer: {e!r}") from e
        self._idle.put(conn)
        if status == "error":
            text = getattr(value, "__traceback_text__", None)
            if text and hasattr(value, "add_note"):
                value.add_note("in the worker process:\n" + text.rstrip())
            raise value
        return value

    def close(self) -> None:
        """No more work: the workers exit once their pipe closes."""
        self._closed = True
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
