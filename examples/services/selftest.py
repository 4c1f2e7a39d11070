"""Self-test of the example services (faces.py, imaging.py) against a fake Tessera engine.

Starts a fake engine (a local HTTP server on 127.0.0.1 that records announcements and callbacks),
starts both services on free ports pointing at it, and checks the protocol end to end: the
announcement payload and its period, every endpoint with multipart input (JSON fields in the
``data`` part), JSON bodies, chunked request bodies, 4xx refusals at dispatch time, a processing
failure reported by a callback with ``Tessera-Status: failed``, callback retries on 503 and no
retry on 404, the bearer token, an unreachable engine, and a clean stop on SIGTERM.

    python examples/services/selftest.py      # runs setup.sh first if the venv is missing

Takes a few seconds; prints one line per check and ``N passed, N failed``; exits 1 on failure.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.client
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PYTHON = os.path.join(HERE, ".venv", "bin", "python")

try:
    from PIL import Image, ImageStat
    from skimage import data as skdata
except ImportError:  # not in the venv: make it (idempotent) and run again inside it
    if os.environ.get("TESSERA_SELFTEST_REEXEC"):
        raise
    subprocess.run(["bash", os.path.join(HERE, "setup.sh")], check=True, stdout=subprocess.DEVNULL)
    os.environ["TESSERA_SELFTEST_REEXEC"] = "1"
    os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])

TOKEN = "selftest-" + uuid.uuid4().hex
WAIT = 15.0  # seconds to wait for any one callback


# ------------------------------------------------------------------------------ fake engine

class FakeEngine:
    """Records announcements and callbacks; /cb/flaky-* answers 503 twice, /cb/gone-* 404."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.announcements: list[tuple[dict, dict]] = []  # (headers, payload)
        self.callbacks: dict[str, list[dict]] = {}  # key -> requests
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = urllib.parse.urlsplit(self.path).path
                status = 200
                with engine.lock:
                    if path == "/api/v1/registry/announce":
                        engine.announcements.append((headers, json.loads(body)))
                    elif path.startswith("/cb/"):
                        key = path[4:]
                        seen = engine.callbacks.setdefault(key, [])
                        seen.append({"headers": headers, "body": body, "at": time.monotonic()})
                        if key.startswith("flaky-") and len(seen) <= 2:
                            status = 503
                        elif key.startswith("gone-"):
                            status = 404
                    else:
                        status = 404
                    engine.lock.notify_all()
                out = b'{"ok": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def callback(self, key: str, count: int = 1, timeout: float = WAIT) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.callbacks.get(key, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no callback {key!r} (#{count}) within {timeout}s")
                self.lock.wait(left)
            return list(self.callbacks[key])

    def announced(self, name: str, count: int, timeout: float = 8.0) -> list[tuple[dict, dict]]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                got = [a for a in self.announcements if a[1].get("name") == name]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} announcement(s) of {name!r} within {timeout}s, "
                                         f"wanted {count}")
                self.lock.wait(left)


# ------------------------------------------------------------------------------ services

class Proc:
    def __init__(self, script: str, *args: str, env: dict | None = None) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, script), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline().strip()  # "listening on http://host:port"
        if not line.startswith("listening on http://"):
            raise AssertionError(f"{script}: first stdout line {line!r}; log:\n{self.logs()}")
        self.url = line.split(" ", 2)[2]
        self.port = int(self.url.rsplit(":", 1)[1])

    def logs(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def request(url: str, body: bytes = b"", headers: dict | None = None, method: str = "POST",
            chunked: bool = False) -> tuple[int, dict]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    target = u.path + ("?" + u.query if u.query else "")
    if chunked:
        pieces = [body[i:i + 7000] for i in range(0, len(body), 7000)]
        conn.request(method, target, body=iter(pieces), headers=headers or {}, encode_chunked=True)
    else:
        conn.request(method, target, body=body, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, {"raw": raw.decode(errors="replace")}


def multipart(files: dict[str, tuple[str, str, bytes]], data: dict | None) -> tuple[bytes, dict]:
    """Encodes like the engine does: one part per file, plus a JSON `data` part."""
    boundary = "selftest" + uuid.uuid4().hex
    out = io.BytesIO()
    for name, (filename, ctype, content) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                  f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode())
        out.write(content + b"\r\n")
    if data is not None:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="data"\r\n'
                  f"Content-Type: application/json\r\n\r\n{json.dumps(data)}\r\n".encode())
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def parse_callback_multipart(cb: dict) -> tuple[dict, dict]:
    """Parses a multipart callback with the stdlib email parser: (binary parts, data JSON)."""
    ctype = cb["headers"]["content-type"]
    assert ctype.startswith("multipart/form-data; boundary="), ctype
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + cb["body"])
    files, data = {}, None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "data":
            data = json.loads(part.get_payload(decode=True))
        else:
            files[name] = {"filename": part.get_filename(), "content_type": part.get_content_type(),
                           "bytes": part.get_payload(decode=True)}
    return files, data


def image_bytes(image: "Image.Image", fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


# ------------------------------------------------------------------------------ the checks

class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    def run(self, name: str, fn, *args) -> None:
        started = time.monotonic()
        try:
            fn(*args)
        except Exception as e:
            self.failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {name} ({time.monotonic() - started:.2f}s)", flush=True)


def main() -> int:
    engine = FakeEngine()
    env = {"TESSERA_TOKEN": TOKEN}
    photo = Image.fromarray(skdata.astronaut())  # 512x512, one face
    jpeg = image_bytes(photo, "JPEG", quality=90)
    png = image_bytes(photo, "PNG")
    gradient = Image.linear_gradient("L").resize((320, 200)).convert("RGB")  # no face
    procs: list[Proc] = []
    checks = Checks()
    try:
        faces = Proc("faces.py", "--engine", engine.url, "--announce-every", "1", env=env)
        procs.append(faces)
        imaging = Proc("imaging.py", "--engine", engine.url, "--announce-every", "1", env=env)
        procs.append(imaging)

        def dispatch(svc: Proc, path: str, files: dict | None, data: dict | None, key: str,
                     prefix: str = "", chunked: bool = False) -> str:
            key = prefix + key + "-" + uuid.uuid4().hex[:8]
            cb = urllib.parse.quote(f"{engine.url}/cb/{key}", safe="")
            if files is None:
                body, headers = json.dumps(data).encode(), {"Content-Type": "application/json"}
            else:
                body, headers = multipart(files, data)
            status, answer = request(f"{svc.url}/{path}?task_id={key}&callback_url={cb}", body,
                                     headers, chunked=chunked)
            assert status == 202, f"dispatch {path}: {status} {answer}"
            assert answer.get("accepted") is True and answer.get("task_id") == key, answer
            return key

        def image_result(key: str, ctype: str, filename_end: str) -> tuple["Image.Image", dict, dict]:
            [cb] = engine.callback(key)
            assert cb["headers"].get("authorization") == f"Bearer {TOKEN}", "no bearer token"
            assert "tessera-status" not in cb["headers"], cb["headers"]
            files, data = parse_callback_multipart(cb)
            assert set(files) == {"image"}, files.keys()
            f = files["image"]
            assert f["content_type"] == ctype, f["content_type"]
            assert f["filename"].endswith(filename_end), f["filename"]
            im = Image.open(io.BytesIO(f["bytes"]))
            im.load()
            assert data["width"] == im.width and data["height"] == im.height, (data, im.size)
            return im, data, cb

        # --- dispatch everything first (the services work in parallel), then check results
        jpg = {"image": ("astronaut.jpg", "image/jpeg", jpeg)}
        k_detect = dispatch(faces, "detect", jpg, None, "detect")
        k_noface = dispatch(faces, "detect", {"image": ("grad.png", "image/png",
                                                        image_bytes(gradient, "PNG"))}, None, "noface")
        k_crop = dispatch(imaging, "crop", jpg, {"box": {"x": 176, "y": 65, "w": 96, "h": 96}}, "crop")
        k_grey = dispatch(imaging, "greyscale", {"image": ("a.png", "image/png", png)}, None, "grey",
                          chunked=True)
        k_resize1 = dispatch(imaging, "resize", jpg, {"width": 256}, "resize1")
        k_resize2 = dispatch(imaging, "resize", {"image": ("a.png", "image/png", png)},
                             {"width": 100, "height": 50}, "resize2")
        k_webp = dispatch(imaging, "convert", jpg, {"format": "webp", "quality": 80}, "webp")
        k_png = dispatch(imaging, "convert", jpg, {"format": "png"}, "png")
        wide = image_bytes(Image.new("RGB", (17000, 2), "red"), "PNG")
        k_fail = dispatch(imaging, "convert", {"image": ("wide.png", "image/png", wide)},
                          {"format": "webp"}, "fail")
        k_flaky = dispatch(imaging, "greyscale", jpg, None, "x", prefix="flaky-")
        k_gone = dispatch(faces, "detect", jpg, None, "x", prefix="gone-")

        def check_announcement(svc: Proc, name: str, paths: list[str]) -> None:
            got = engine.announced(name, 2)  # at start, then again after --announce-every 1
            headers, payload = got[-1]
            assert headers.get("authorization") == f"Bearer {TOKEN}", "announcement without token"
            assert headers.get("content-type") == "application/json", headers.get("content-type")
            assert set(payload) == {"name", "url", "endpoints"}, payload.keys()
            assert payload["url"] == svc.url, (payload["url"], svc.url)
            assert [e["path"] for e in payload["endpoints"]] == paths, payload["endpoints"]
            for e in payload["endpoints"]:
                assert set(e) == {"route", "path", "summary", "description", "body"}, e.keys()
                assert e["route"] == f"{name}-{e['path'][1:]}", e["route"]
                assert e["body"] == "image" and e["summary"] and e["description"], e

        checks.run("announce faces (payload, token, period)", check_announcement, faces, "faces",
                   ["/detect"])
        checks.run("announce imaging", check_announcement, imaging, "imaging",
                   ["/blur", "/crop", "/greyscale", "/resize", "/convert"])

        found: dict = {}

        def check_detect() -> None:
            [cb] = engine.callback(k_detect)
            assert cb["headers"]["content-type"] == "application/json", cb["headers"]
            assert cb["headers"].get("authorization") == f"Bearer {TOKEN}"
            result = json.loads(cb["body"])
            assert result["count"] == 1 and len(result["areas"]) == 1, result
            assert (result["width"], result["height"]) == (512, 512), result
            a = result["areas"][0]
            assert set(a) == {"x", "y", "w", "h"}, a
            assert abs(a["x"] - 177) < 10 and abs(a["y"] - 66) < 10 and 80 < a["w"] < 115, a
            found.update(a)

        def check_noface() -> None:
            result = json.loads(engine.callback(k_noface)[0]["body"])
            assert result == {"areas": [], "count": 0, "width": 320, "height": 200}, result

        checks.run("faces /detect: one face in the astronaut photo (JSON callback)", check_detect)
        checks.run("faces /detect: no face in a gradient", check_noface)

        def check_blur() -> None:
            area = found or {"x": 177, "y": 66, "w": 95, "h": 95}
            key = dispatch(imaging, "blur", jpg, {"areas": [area]}, "blur")
            im, data, _ = image_result(key, "image/jpeg", "astronaut-blur.jpg")
            assert data == {"width": 512, "height": 512, "format": "jpeg", "blurred": 1}, data
            x, y, w, h = area["x"], area["y"], area["w"], area["h"]
            before = Image.open(io.BytesIO(jpeg))
            inside = (x + 10, y + 10, x + w - 10, y + h - 10)
            sharp = ImageStat.Stat(before.crop(inside).convert("L")).stddev[0]
            soft = ImageStat.Stat(im.crop(inside).convert("L")).stddev[0]
            assert soft < sharp * 0.6, f"face not blurred: stddev {sharp:.1f} -> {soft:.1f}"
            outside = (300, 300, 500, 500)
            d = [abs(p - q) for p, q in zip(before.crop(outside).convert("L").getdata(),
                                            im.crop(outside).convert("L").getdata())]
            assert sum(d) / len(d) < 3, f"outside the face changed: mean diff {sum(d) / len(d):.1f}"

        def check_crop() -> None:
            im, data, _ = image_result(k_crop, "image/jpeg", ".jpg")
            assert im.size == (96, 96), im.size
            assert data["box"] == {"x": 176, "y": 65, "w": 96, "h": 96}, data

        def check_grey() -> None:
            im, data, _ = image_result(k_grey, "image/png", "a-greyscale.png")
            assert im.mode == "L" and im.size == (512, 512) and data["format"] == "png", (im.mode, data)

        def check_resize() -> None:
            im, data, _ = image_result(k_resize1, "image/jpeg", ".jpg")
            assert im.size == (256, 256), im.size
            im, data, _ = image_result(k_resize2, "image/png", ".png")
            assert im.size == (100, 50), im.size

        def check_convert() -> None:
            im, data, _ = image_result(k_webp, "image/webp", "astronaut-convert.webp")
            assert im.format == "WEBP" and data["format"] == "webp", (im.format, data)
            im, data, _ = image_result(k_png, "image/png", ".png")
            assert im.format == "PNG" and im.size == (512, 512), (im.format, im.size)

        def check_failure() -> None:
            [cb] = engine.callback(k_fail)
            assert cb["headers"].get("tessera-status") == "failed", cb["headers"]
            assert cb["headers"]["content-type"] == "application/json", cb["headers"]
            body = json.loads(cb["body"])
            assert list(body) == ["error"] and "WebP" in body["error"], body

        checks.run("imaging /blur: face area blurred, rest kept (multipart + data)", check_blur)
        checks.run("imaging /crop", check_crop)
        checks.run("imaging /greyscale (chunked request body, png)", check_grey)
        checks.run("imaging /resize (aspect kept; both sides)", check_resize)
        checks.run("imaging /convert (webp, png)", check_convert)
        checks.run("processing error -> callback with Tessera-Status: failed", check_failure)

        def check_refusals() -> None:
            cb = urllib.parse.quote(f"{engine.url}/cb/never", safe="")
            url = f"{imaging.url}/crop?task_id=t1&callback_url={cb}"
            body, headers = multipart(jpg, {"box": [0, 0, 5, 5]})
            bad_data = (body.replace(b'{"box": [0, 0, 5, 5]}', b'{"box": [0, 0, 5, 5'), headers)
            cases = [
                ("JSON body without the image part", url, json.dumps({"box": [0, 0, 5, 5]}).encode(),
                 {"Content-Type": "application/json"}, 400, "missing binary field 'image'"),
                ("bad JSON", url, b"{nope", {"Content-Type": "application/json"}, 400, "invalid JSON"),
                ("JSON array", url, b"[1]", {"Content-Type": "application/json"}, 400, "JSON object"),
                ("image as a JSON value", url, b'{"image": {"$object": "x"}, "box": [0,0,1,1]}',
                 {"Content-Type": "application/json"}, 400, "multipart file part"),
                ("no callback_url", f"{imaging.url}/crop?task_id=t1", b"{}",
                 {"Content-Type": "application/json"}, 400, "callback_url"),
                ("unreadable image", url, *multipart({"image": ("x.jpg", "image/jpeg", b"not an image")},
                                                     {"box": [0, 0, 5, 5]}), 400, "unreadable image"),
                ("box outside the image", url, *multipart(jpg, {"box": {"x": 600, "y": 0, "w": 5, "h": 5}}),
                 400, "outside"),
                ("crop without box", url, *multipart(jpg, None), 400, "missing field 'box'"),
                ("data part not JSON", url, *bad_data, 400, "part 'data': invalid JSON"),
                ("bad areas", f"{imaging.url}/blur?callback_url={cb}",
                 *multipart(jpg, {"areas": [{"x": 1}]}), 400, "missing key"),
                ("bad format", f"{imaging.url}/convert?callback_url={cb}",
                 *multipart(jpg, {"format": "gif"}), 400, "format"),
                ("unknown endpoint", f"{imaging.url}/sharpen?callback_url={cb}", b"{}",
                 {"Content-Type": "application/json"}, 404, "no endpoint"),
                ("text/plain body", url, b"hi", {"Content-Type": "text/plain"}, 415, "Content-Type"),
                ("faces without image", f"{faces.url}/detect?callback_url={cb}", b"{}",
                 {"Content-Type": "application/json"}, 400, "image"),
            ]
            for what, u, body, headers, want, text in cases:
                status, answer = request(u, body, headers)
                assert status == want and text in answer.get("error", ""), \
                    f"{what}: {status} {answer}, wanted {want} with {text!r}"
            time.sleep(0.2)
            assert "never" not in engine.callbacks, "a refused request was called back"

        def check_retry() -> None:
            got = engine.callback(k_flaky, 3)
            assert len(got) == 3, len(got)
            gaps = [b["at"] - a["at"] for a, b in zip(got, got[1:])]
            assert 0.4 < gaps[0] < 0.9 and 0.9 < gaps[1] < 1.5, f"retry delays {gaps}"
            assert got[0]["body"] == got[2]["body"], "retried body differs"

        def check_no_retry_on_404() -> None:
            engine.callback(k_gone)
            time.sleep(0.8)
            assert len(engine.callbacks[k_gone]) == 1, "a 404 callback was retried"

        def check_get() -> None:
            status, answer = request(f"{faces.url}/health", method="GET")
            assert status == 200 and answer["ok"] is True, answer
            status, answer = request(f"{imaging.url}/", method="GET")
            assert status == 200 and answer["name"] == "imaging" and answer["url"] == imaging.url

        def check_unreachable_engine() -> None:
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
            s.close()
            p = Proc("faces.py", "--engine", dead, "--announce-every", "0.3", "--name", "faces2")
            procs.append(p)
            time.sleep(0.8)
            assert p.proc.poll() is None, "service died when the engine was unreachable"
            key = dispatch(p, "detect", jpg, None, "unreach")
            assert json.loads(engine.callback(key)[0]["body"])["count"] == 1
            logs = p.logs()
            assert "announcement to" in logs and "failed" in logs, logs
            assert p.stop() == 0, "SIGTERM did not stop it cleanly"

        checks.run("4xx refusals at dispatch time (JSON and multipart)", check_refusals)
        checks.run("callback retried on 503 after 0.5 s, 1 s", check_retry)
        checks.run("callback not retried on 404", check_no_retry_on_404)
        checks.run("GET / and /health", check_get)
        checks.run("unreachable engine: logged, not fatal; SIGTERM stops", check_unreachable_engine)
    except Exception as e:
        checks.failed += 1
        print(f"FAIL setup: {e}", flush=True)
        traceback.print_exc()
    finally:
        for p in procs:
            code = p.stop()
            if checks.failed:
                print(f"--- {os.path.basename(p.proc.args[1])} (exit {code}) log:\n{p.logs()}",
                      file=sys.stderr)
        engine.server.shutdown()
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
