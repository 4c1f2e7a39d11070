"""Tessera service protocol, server side: a tiny stdlib-only framework for example micro-services.

A Tessera service is any HTTP server that speaks this protocol (SPEC.md §8):

1. Dispatch: the engine calls ``POST <url><path>?task_id=<id>&callback_url=<url>`` with either an
   ``application/json`` object body, or ``multipart/form-data`` with one part per binary object
   (part name = field name, with filename and content type) plus an optional part ``data`` holding
   a JSON object of the other fields. The service validates the request, answers at once
   ``202 {"accepted": true, "task_id": ...}`` (or a 4xx ``{"error": "..."}``), and does the work
   on a background worker thread.
2. Callback: the service then ``POST``s to ``callback_url`` either a JSON object (the result), or
   ``multipart/form-data`` (one part per binary result field, plus a ``data`` part with a JSON
   object of the other fields), or on failure ``{"error": "..."}`` with header
   ``Tessera-Status: failed``. Connection errors, 5xx, 408 and 429 are retried after 0.5, 1, 2 and
   4 s, then the callback is given up (logged).
3. Announcement: at start and every ``ANNOUNCE_EVERY`` seconds (default 30) the service ``POST``s
   ``{"name", "url", "endpoints": [{"route", "path", "summary", "description", "body"}]}`` to
   ``<engine>/api/v1/registry/announce``. Failures are logged and retried at the next period.

``TESSERA_TOKEN``, when set, is sent as ``Authorization: Bearer <token>`` on callbacks and
announcements. ``imaging.py`` and ``faces.py`` are built on this module; it has no dependency
outside the standard library.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import email.message
import http.server
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("tessera.service")

#: Delays before each retry of a callback that could not be delivered.
CALLBACK_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
#: Name of the multipart part that carries the non-binary fields as a JSON object.
DATA_PART = "data"
#: A request line's callback URL (its token is a credential), hidden in logs.
_CALLBACK_QUERY = re.compile(r"(callback_url=)[^&\s\"]*")


# --------------------------------------------------------------------------------------------
# Values and errors


@dataclass
class Blob:
    """A binary field: a multipart part received from the engine or sent back in a result."""

    name: str
    data: bytes
    filename: str = ""
    content_type: str = "application/octet-stream"

    def __repr__(self) -> str:  # never dump bytes into logs
        return f"Blob({self.name!r}, {len(self.data)} bytes, {self.filename!r}, {self.content_type!r})"


class BadRequest(Exception):
    """A request that cannot be accepted: answered at dispatch time with a 4xx JSON error."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Endpoint:
    """One operation of a service.

    ``prepare(fields)`` runs while the dispatch request is still open: it validates and decodes
    the input (``fields`` maps names to JSON values or ``Blob``s) and raises ``BadRequest`` to
    refuse it. ``run(prepared)`` runs later on a worker thread and returns the result: a dict whose
    ``Blob`` values are sent as binary parts, everything else as JSON. An exception in ``run``
    becomes a failed callback.
    """

    path: str
    summary: str
    description: str
    body: Any
    prepare: Callable[[dict], Any]
    run: Callable[[Any], dict]

    def describe(self, service_name: str) -> dict:
        return {
            "route": f"{service_name}-{self.path}",
            "path": "/" + self.path,
            "summary": self.summary,
            "description": self.description,
            "body": self.body,
        }


# --------------------------------------------------------------------------------------------
# Field helpers for endpoints


def require_blob(fields: dict, name: str) -> Blob:
    value = fields.get(name)
    if value is None:
        raise BadRequest(f"missing binary field '{name}': send it as a multipart part named '{name}'")
    if not isinstance(value, Blob):
        raise BadRequest(f"field '{name}' must be a multipart file part, not a JSON value")
    if not value.data:
        raise BadRequest(f"field '{name}' is empty")
    return value


def json_field(fields: dict, name: str, default: Any = None) -> Any:
    value = fields.get(name, default)
    if isinstance(value, Blob):
        raise BadRequest(f"field '{name}' must be JSON (in the '{DATA_PART}' part), not a file part")
    return value


def int_field(fields: dict, name: str, default: int | None = None, *, lo: int | None = None,
              hi: int | None = None, required: bool = False) -> int | None:
    value = json_field(fields, name)
    if value is None:
        if required:
            raise BadRequest(f"missing field '{name}'")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise BadRequest(f"field '{name}' must be an integer, got {json.dumps(value)[:60]}")
    value = int(value)
    if lo is not None and value < lo:
        raise BadRequest(f"field '{name}' must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise BadRequest(f"field '{name}' must be <= {hi}, got {value}")
    return value


def number_field(fields: dict, name: str, default: float | None = None, *, lo: float | None = None,
                 hi: float | None = None) -> float | None:
    value = json_field(fields, name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"field '{name}' must be a number, got {json.dumps(value)[:60]}")
    if lo is not None and value < lo:
        raise BadRequest(f"field '{name}' must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise BadRequest(f"field '{name}' must be <= {hi}, got {value}")
    return float(value)


def parse_box(value: Any, what: str) -> tuple[int, int, int, int]:
    """A box ``{"x", "y", "w", "h"}`` (or ``[x, y, w, h]``) as four ints; w and h must be > 0."""
    if isinstance(value, dict):
        try:
            raw = [value[k] for k in ("x", "y", "w", "h")]
        except KeyError as e:
            raise BadRequest(f"{what}: missing key {e.args[0]!r} (expected {{x, y, w, h}})") from None
    elif isinstance(value, (list, tuple)) and len(value) == 4:
        raw = list(value)
    else:
        raise BadRequest(f"{what}: expected an object {{x, y, w, h}}, got {json.dumps(value)[:80]}")
    out = []
    for k, v in zip("xywh", raw):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) > 1e9:
            raise BadRequest(f"{what}.{k}: expected a number, got {json.dumps(v)[:40]}")
        out.append(int(round(v)))
    if out[2] <= 0 or out[3] <= 0:
        raise BadRequest(f"{what}: w and h must be > 0")
    return out[0], out[1], out[2], out[3]


# --------------------------------------------------------------------------------------------
# multipart/form-data


def _header_params(name: str, value: str) -> email.message.Message:
    msg = email.message.Message()
    msg[name] = value
    return msg


def parse_multipart(body: bytes, content_type: str) -> list[Blob]:
    """Splits a multipart/form-data body into parts (``Blob``s; content type '' when absent)."""
    boundary = _header_params("content-type", content_type).get_param("boundary", header="content-type")
    if not boundary or not isinstance(boundary, str):
        raise BadRequest("multipart/form-data without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    pos = body.find(delim)
    if pos < 0 or (pos > 0 and body[pos - 2:pos] != b"\r\n"):
        raise BadRequest("malformed multipart body: no opening boundary")
    parts: list[Blob] = []
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return parts
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise BadRequest("malformed multipart body: bad boundary line")
        start = eol + 2
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise BadRequest("malformed multipart body: missing closing boundary")
        raw = body[start:end]
        if raw.startswith(b"\r\n"):
            head, content = b"", raw[2:]
        else:
            sep = raw.find(b"\r\n\r\n")
            if sep < 0:
                raise BadRequest("malformed multipart body: part without header end")
            head, content = raw[:sep], raw[sep + 4:]
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition")
        if not disp:
            raise BadRequest("multipart part without Content-Disposition")
        msg = _header_params("content-disposition", disp)
        name = msg.get_param("name", header="content-disposition")
        filename = msg.get_filename() or ""
        if not name or not isinstance(name, str):
            raise BadRequest("multipart part without a name")
        parts.append(Blob(name=name, data=content, filename=filename,
                          content_type=headers.get("content-type", "")))
        pos = end + 2


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def encode_multipart(blobs: list[Blob], data: dict | None) -> tuple[bytes, str]:
    """Builds a multipart/form-data body: an optional ``data`` JSON part, then one part per blob."""
    boundary = "tessera-" + uuid.uuid4().hex
    chunks: list[bytes] = []
    if data is not None:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{DATA_PART}"\r\n'
            f"Content-Type: application/json\r\n\r\n".encode()
            + json.dumps(data).encode() + b"\r\n")
    for blob in blobs:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(blob.name)}"; '
                f'filename="{_quote(blob.filename or blob.name)}"\r\n'
                f"Content-Type: {blob.content_type or 'application/octet-stream'}\r\n\r\n")
        chunks.append(head.encode("utf-8") + blob.data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def encode_result(result: dict) -> tuple[bytes, str]:
    """A result dict as a callback body: JSON when it holds no Blob, else multipart."""
    if not isinstance(result, dict):
        raise TypeError(f"a service result must be an object, got {type(result).__name__}")
    blobs = [Blob(k, v.data, v.filename, v.content_type) for k, v in result.items() if isinstance(v, Blob)]
    if not blobs:
        return json.dumps(result).encode(), "application/json"
    data = {k: v for k, v in result.items() if not isinstance(v, Blob)}
    return encode_multipart(blobs, data or None)


# --------------------------------------------------------------------------------------------
# Outgoing requests: callbacks and announcements


def _auth_headers() -> dict:
    token = os.environ.get("TESSERA_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def post(url: str, body: bytes, content_type: str, headers: dict | None = None,
         timeout: float = 30.0) -> int:
    """POSTs ``body``; returns the status (raises URLError/OSError when no answer was had)."""
    all_headers = {"Content-Type": content_type, "User-Agent": "tessera-example-service/1"}
    all_headers.update(_auth_headers())
    all_headers.update(headers or {})
    req = urllib.request.Request(url, data=body, method="POST", headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def send_callback(url: str, body: bytes, content_type: str, headers: dict | None, task_id: str,
                  delays: tuple[float, ...] = CALLBACK_RETRY_DELAYS) -> bool:
    """Delivers a callback, retrying on no answer / 5xx / 408 / 429. True when the engine took it."""
    for attempt in range(len(delays) + 1):
        try:
            status = post(url, body, content_type, headers)
        except (urllib.error.URLError, OSError) as e:
            why = f"no answer ({getattr(e, 'reason', e)})"
        else:
            if 200 <= status < 300:
                log.info("task %s: callback delivered (%d, %d bytes)", task_id, status, len(body))
                return True
            if status < 500 and status not in (408, 429):
                log.error("task %s: callback refused with %d, not retried", task_id, status)
                return False
            why = f"status {status}"
        if attempt < len(delays):
            log.warning("task %s: callback failed (%s), retry in %.1fs", task_id, why, delays[attempt])
            time.sleep(delays[attempt])
        else:
            log.error("task %s: callback failed (%s) after %d attempts, giving up",
                      task_id, why, attempt + 1)
    return False


class Announcer(threading.Thread):
    """Announces the service to the engine at start and then every ``every`` seconds."""

    def __init__(self, engine: str, payload: dict, every: float):
        super().__init__(name="announcer", daemon=True)
        self.url = engine.rstrip("/") + "/api/v1/registry/announce"
        self.payload = json.dumps(payload).encode()
        self.every = every
        self.stop = threading.Event()
        self.ok: bool | None = None

    def announce_once(self) -> bool:
        try:
            status = post(self.url, self.payload, "application/json", timeout=10.0)
            ok, why = 200 <= status < 300, f"status {status}"
        except (urllib.error.URLError, OSError) as e:
            ok, why = False, f"no answer ({getattr(e, 'reason', e)})"
        if ok and self.ok is not True:
            log.info("announced to %s", self.url)
        elif ok:
            log.debug("announced to %s", self.url)
        else:
            log.warning("announcement to %s failed: %s; retrying in %gs", self.url, why, self.every)
        self.ok = ok
        return ok

    def run(self) -> None:
        while not self.stop.is_set():
            self.announce_once()
            self.stop.wait(self.every)


# --------------------------------------------------------------------------------------------
# The HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` as curl sends it
    server_version = "tessera-example-service"
    service: "Service"  # set on the subclass made by Service.serve

    def log_message(self, fmt: str, *args: Any) -> None:
        # The request line holds the callback URL, whose token answers for the task: not logged.
        line = _CALLBACK_QUERY.sub(r"\1…", fmt % args)
        log.debug("%s %s", self.address_string(), line)

    def _reply(self, status: int, obj: Any, close: bool = False) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        limit = self.service.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise BadRequest(f"request body larger than {limit} bytes", 413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if n > limit:
            raise BadRequest(f"request body larger than {limit} bytes", 413)
        return self.rfile.read(n)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", ""):
            self._reply(200, self.service.description_payload())
        elif path == "/health":
            self._reply(200, {"ok": True, "name": self.service.name})
        else:
            self._reply(404, {"error": f"no such path {path}"})

    def do_POST(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        endpoint = self.service.endpoints.get(split.path.rstrip("/"))
        try:
            body = self._read_body()  # always read it, so a keep-alive connection stays usable
        except BadRequest as e:
            self._reply(e.status, {"error": str(e)}, close=True)
            return
        if endpoint is None:
            self._reply(404, {"error": f"no endpoint {split.path}; endpoints: "
                                       + ", ".join(sorted(self.service.endpoints))})
            return
        query = urllib.parse.parse_qs(split.query)
        task_id = (query.get("task_id") or [""])[0] or str(uuid.uuid4())
        callback_url = (query.get("callback_url") or [""])[0]
        try:
            if not callback_url:
                raise BadRequest("missing query parameter callback_url")
            if urllib.parse.urlsplit(callback_url).scheme not in ("http", "https"):
                raise BadRequest("callback_url must be an http(s) URL")
            fields = self._fields(body)
            prepared = endpoint.prepare(fields)
        except BadRequest as e:
            log.info("task %s: %s refused: %s", task_id, split.path, e)
            self._reply(e.status, {"error": str(e)})
            return
        except Exception as e:  # a bug in prepare: still a clean answer
            log.exception("task %s: %s: unexpected error", task_id, split.path)
            self._reply(500, {"error": f"{type(e).__name__}: {e}"})
            return
        self.service.submit(endpoint, prepared, task_id, callback_url)
        log.info("task %s: %s accepted", task_id, split.path)
        self._reply(202, {"accepted": True, "task_id": task_id})

    def _fields(self, body: bytes) -> dict:
        ctype = self.headers.get("Content-Type", "")
        mime = _header_params("content-type", ctype).get_content_type() if ctype else ""
        if mime == "multipart/form-data":
            parts = parse_multipart(body, ctype)
            names = [part.name for part in parts]
            for name in names:
                if names.count(name) > 1:
                    raise BadRequest(f"duplicate multipart part '{name}'")
            fields: dict = {part.name: part for part in parts if part.name != DATA_PART}
            for part in parts:
                if part.name == DATA_PART:
                    for k, v in _json_object(part.data, f"part '{DATA_PART}'").items():
                        if k in fields:
                            raise BadRequest(f"field '{k}' is both a file part and in '{DATA_PART}'")
                        fields[k] = v
            return fields
        if mime in ("application/json", "") or mime.endswith("+json"):
            if not body.strip() and mime == "":
                return {}
            return _json_object(body, "body")
        raise BadRequest(f"unsupported Content-Type {mime}: send application/json or multipart/form-data",
                         415)


def _json_object(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"{what}: invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


class Service:
    """A named set of endpoints served over HTTP with the Tessera protocol."""

    def __init__(self, name: str, description: str, endpoints: list[Endpoint], default_port: int):
        self.name = name
        self.description = description
        self.endpoint_list = endpoints
        self.endpoints = {"/" + e.path: e for e in endpoints}
        self.default_port = default_port
        self.url = ""
        self.max_body = 64 << 20
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None

    def description_payload(self) -> dict:
        return {"name": self.name, "url": self.url,
                "endpoints": [e.describe(self.name) for e in self.endpoint_list]}

    def submit(self, endpoint: Endpoint, prepared: Any, task_id: str, callback_url: str) -> None:
        assert self.pool is not None
        self.pool.submit(self._work, endpoint, prepared, task_id, callback_url)

    def _work(self, endpoint: Endpoint, prepared: Any, task_id: str, callback_url: str) -> None:
        started = time.monotonic()
        try:
            result = endpoint.run(prepared)
            body, ctype = encode_result(result)
            headers: dict = {}
            log.info("task %s: /%s done in %.0f ms", task_id, endpoint.path,
                     (time.monotonic() - started) * 1000)
        except Exception as e:
            log.warning("task %s: /%s failed: %s: %s", task_id, endpoint.path, type(e).__name__, e)
            body = json.dumps({"error": f"{endpoint.path}: {e}" if str(e) else type(e).__name__}).encode()
            ctype, headers = "application/json", {"Tessera-Status": "failed"}
        try:
            send_callback(callback_url, body, ctype, headers, task_id)
        except Exception:
            log.exception("task %s: callback crashed", task_id)

    def main(self, argv: list[str] | None = None) -> int:
        p = argparse.ArgumentParser(description=self.description)
        p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=self.default_port,
                       help=f"port to bind, 0 = any free port (default {self.default_port})")
        p.add_argument("--engine", default=os.environ.get("TESSERA_URL"),
                       help="engine base URL to announce to (env TESSERA_URL); none = no announcements")
        p.add_argument("--name", default=self.name, help=f"service name (default {self.name})")
        p.add_argument("--announce-every", type=float,
                       default=float(os.environ.get("ANNOUNCE_EVERY", "30")),
                       help="seconds between announcements (env ANNOUNCE_EVERY, default 30)")
        p.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"),
                       help="URL announced to the engine (env PUBLIC_URL; default http://host:port)")
        p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                       help="concurrent tasks (default min(4, cores))")
        p.add_argument("--max-body-mb", type=int, default=64, help="largest request body (MiB)")
        p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
        args = p.parse_args(argv)
        if args.announce_every <= 0:
            p.error("--announce-every must be > 0")
        logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                            format=f"%(asctime)s {args.name} %(levelname)s %(message)s")
        self.name = args.name
        self.max_body = args.max_body_mb << 20

        handler = type("Handler", (_Handler,), {"service": self})
        server_cls = type("Server", (http.server.ThreadingHTTPServer,), {"daemon_threads": True})
        if ":" in args.host:
            server_cls.address_family = socket.AF_INET6
        server = server_cls((args.host, args.port), handler)
        host, port = server.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"listening on http://{shown}:{port}", flush=True)
        if args.public_url:
            self.url = args.public_url.rstrip("/")
        else:
            public = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            self.url = f"http://[{public}]:{port}" if ":" in public else f"http://{public}:{port}"

        self.pool = concurrent.futures.ThreadPoolExecutor(args.workers, thread_name_prefix="task")
        announcer = None
        if args.engine:
            announcer = Announcer(args.engine, self.description_payload(), args.announce_every)
            announcer.start()
        else:
            log.info("no --engine / TESSERA_URL: announcements disabled")

        def stop(signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            if announcer:
                announcer.stop.set()
            server.server_close()
            self.pool.shutdown(wait=False, cancel_futures=True)
            log.info("stopped")
        return 0

