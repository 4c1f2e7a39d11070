"""A client of a Tessera server's HTTP API (standard library only): store pipelines, submit
inputs and files, follow tasks live, read results, cancel and resume."""

from __future__ import annotations

import json
import mimetypes
import os
import pathlib
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

#: Task states after which nothing more happens (until a resume).
ENDED = ("finished", "failed", "cancelled")


class TesseraError(Exception):
    """The server refused a request: ``status`` (HTTP), ``message`` and the ``details`` it gave
    (for a refused pipeline or input: the fields and their problems)."""

    def __init__(self, status: int, message: str, details: Any = None):
        self.status = status
        self.message = message
        self.details = details or []
        lines = [message] + [
            f"  field `{d.get('field', '')}`: {d.get('message', '')}"
            for d in self.details
            if isinstance(d, Mapping)
        ]
        super().__init__("\n".join(lines))


class TaskFailed(Exception):
    """A task ended failed or cancelled; the message is the task's error as the CLI prints it
    (node, attempt and cause). ``task`` is the task's document."""

    def __init__(self, task: Mapping[str, Any]):
        self.task = dict(task)
        self.task_id = task.get("id")
        self.state = task.get("state")
        super().__init__(task.get("error") or f"task {self.state}")


class Client:
    """``Client("http://127.0.0.1:8080", token=None)``; the token (or ``TESSERA_TOKEN``) is sent
    as a bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("TESSERA_TOKEN")
        self.timeout = timeout

    # -- requests -------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str | None = None, timeout: float | None = None):
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                answer = json.loads(raw)
                error = answer.get("error", answer)
                message = error.get("message") if isinstance(error, Mapping) else str(error)
                details = error.get("details") if isinstance(error, Mapping) else None
            except (ValueError, AttributeError):
                message, details = raw.decode("utf-8", "replace").strip() or e.reason, None
            raise TesseraError(e.code, f"{method} {path}: {e.code} {message}", details) from None

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        with self._request(method, path, body, "application/json" if body else None) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    @staticmethod
    def _quote(part: str) -> str:
        return urllib.parse.quote(str(part), safe="")

    # -- pipelines ------------------------------------------------------------------------

    def create_pipeline(self, definition: Mapping[str, Any] | str | os.PathLike) -> Any:
        """Stores a pipeline: a dict, YAML/JSON text, or a path to a ``.yaml``/``.json`` file.
        Returns the server's answer (its name and route)."""
        if isinstance(definition, Mapping):
            return self._json("POST", "/api/v1/pipelines", definition)
        text = os.fspath(definition) if isinstance(definition, os.PathLike) else str(definition)
        path = pathlib.Path(text)
        looks_like_a_path = "\n" not in text and path.suffix in (".yaml", ".yml", ".json")
        if isinstance(definition, os.PathLike) or looks_like_a_path:
            text = path.read_text(encoding="utf-8")  # FileNotFoundError names the path
        with self._request("POST", "/api/v1/pipelines", text.encode(),
                           "application/yaml") as r:
            return json.loads(r.read())

    def pipelines(self) -> Any:
        return self._json("GET", "/api/v1/pipelines")

    # -- tasks ----------------------------------------------------------------------------

    def submit(self, route: str, input: Mapping[str, Any] | None = None,
               files: Mapping[str, str | os.PathLike | bytes] | None = None) -> str:
        """Starts a task on ``route`` with ``input`` (JSON) and ``files`` (field → path or
        bytes, sent as multipart). Returns the task id."""
        path = f"/api/v1/services/{self._quote(route)}"
        if not files:
            answer = self._json("POST", path, dict(input or {}))
        else:
            body, content_type = _multipart(input, files)
            with self._request("POST", path, body, content_type) as r:
                answer = json.loads(r.read())
        return answer["task_id"]

    def task(self, task_id: str) -> Any:
        """The task's document (state, nodes, error, result)."""
        return self._json("GET", f"/api/v1/tasks/{self._quote(task_id)}")

    def tasks(self, **filters: Any) -> Iterator[dict]:
        """Tasks (id, pipeline, state, times), newest first, page after page; ``filters`` are
        the API's query parameters (``state=``, ``pipeline=``, ``limit=`` per page)."""
        query = {k: v for k, v in filters.items() if v is not None}
        while True:
            encoded = urllib.parse.urlencode(query)
            page = self._json("GET", "/api/v1/tasks" + (f"?{encoded}" if encoded else ""))
            yield from page.get("items", [])
            if not page.get("next_cursor"):
                return
            query["cursor"] = page["next_cursor"]

    def result(self, task_id: str) -> Any:
        """The end node's output of a finished task."""
        return self._json("GET", f"/api/v1/tasks/{self._quote(task_id)}/result")

    def cancel(self, task_id: str) -> Any:
        return self._json("POST", f"/api/v1/tasks/{self._quote(task_id)}/cancel")

    def resume(self, task_id: str, input: Mapping[str, Any] | None = None,
               pipeline: Mapping[str, Any] | str | None = None) -> Any:
        """Resumes a failed, cancelled or interrupted task, optionally with a new input or a
        fixed pipeline (a document or its YAML/JSON text; needs the admin role)."""
        payload: dict[str, Any] = {}
        if input is not None:
            payload["input"] = dict(input)
        if pipeline is not None:
            payload["pipeline"] = pipeline if isinstance(pipeline, str) else dict(pipeline)
        return self._json("POST", f"/api/v1/tasks/{self._quote(task_id)}/resume", payload or None)

    def object(self, object_id: str) -> bytes:
        """The bytes of a stored object (``{"$object": id, …}`` in a result)."""
        with self._request("GET", f"/api/v1/objects/{self._quote(object_id)}",
                           timeout=max(self.timeout, 300.0)) as r:
            return r.read()

    def events(self, task_id: str | None = None, timeout: float | None = None) -> Iterator[dict]:
        """Live events (``{"event": "task" | "node" | …, **data}``) from the moment the
        iteration starts, of one task when ``task_id`` is given, until that task ends (a task
        that has already ended gives one ``task`` event); ``timeout`` bounds each wait."""
        response = self._request("GET", "/api/v1/events", timeout=timeout or 3600.0)
        with response:
            if task_id is not None:
                # Subscribed first: a task that ended before is seen by its document.
                doc = self.task(task_id)
                if doc.get("state") in ENDED:
                    yield {"event": "task", "task_id": task_id, "state": doc["state"]}
                    return
            for kind, data in _server_sent_events(response):
                if task_id is not None and data.get("task_id") != task_id:
                    if kind == "lagged":
                        doc = self.task(task_id)
                        if doc.get("state") in ENDED:
                            yield {"event": "task", "task_id": task_id, "state": doc["state"]}
                            return
                    continue
                yield {"event": kind, **data}
                if task_id is not None and kind == "task" and data.get("state") in ENDED:
                    return

    def wait(self, task_id: str, timeout: float | None = None) -> Any:
        """Waits for the task to end and returns its result; raises :class:`TaskFailed` (the
        task's error: node, attempt, cause) when it failed or was cancelled, and
        ``TimeoutError`` when it has not ended after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if self.task(task_id).get("state") in ENDED:
                    break
                raise TimeoutError(f"task {task_id} did not end within {timeout} s")
            try:
                # Each read waits at most what is left (the server's keep-alives come every
                # 15 s), then the stream is opened again.
                for _ in self.events(task_id, timeout=None if left is None else max(left, 0.05)):
                    pass
                break
            except TimeoutError:
                continue
            except OSError as e:  # a read timeout surfaces as URLError or socket.timeout
                if "timed out" not in str(e):
                    raise
        doc = self.task(task_id)
        if doc.get("state") != "finished":
            raise TaskFailed(doc)
        return self.result(task_id)

    def run(self, route: str, input: Mapping[str, Any] | None = None,
            files: Mapping[str, str | os.PathLike | bytes] | None = None,
            timeout: float | None = None) -> Any:
        """``submit`` then ``wait``."""
        return self.wait(self.submit(route, input, files), timeout)


def _lines(response) -> Iterator[bytes]:
    """Lines as they arrive: ``read1`` returns what one chunk holds (iterating the response
    may wait for a full buffer, delaying events)."""
    pending = b""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            if pending:
                yield pending
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete


def _server_sent_events(response) -> Iterator[tuple[str, dict]]:
    kind, data = "message", []
    for raw in _lines(response):
        line = raw.decode("utf-8").rstrip("\r")
        if not line:
            if data:
                try:
                    yield kind, json.loads("\n".join(data))
                except ValueError:
                    pass
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def _multipart(input: Mapping[str, Any] | None,
               files: Mapping[str, str | os.PathLike | bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []

    def part(headers: str, content: bytes) -> None:
        parts.append(f"--{boundary}\r\n{headers}\r\n\r\n".encode() + content + b"\r\n")

    if input:
        part('Content-Disposition: form-data; name="data"\r\nContent-Type: application/json',
             json.dumps(dict(input)).encode())
    for field, source in files.items():
        if isinstance(source, (bytes, bytearray)):
            name, content = field, bytes(source)
        else:
            path = pathlib.Path(source)
            name, content = path.name, path.read_bytes()
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        part(f'Content-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
             f"Content-Type: {mime}", content)
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
