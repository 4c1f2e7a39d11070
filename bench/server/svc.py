#!/usr/bin/env python3
"""Minimal Tessera callback service (stdlib only, binds 127.0.0.1).

POST /hop?task_id=..&callback_url=..  -> answers 202 at once, then POSTs `{}` to callback_url
from the same handler thread (after the 202 has been flushed). Keep-alive on both sides.
Usage: svc.py PORT
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_local = threading.local()
# task_id -> [received, callback sent, callback answered] (CLOCK_MONOTONIC, comparable across
# processes on this host); read and cleared by GET /timings.
TIMINGS = {}


def post_callback(url: str) -> None:
    u = urllib.parse.urlsplit(url)
    key = (u.hostname, u.port)
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    path = u.path + ("?" + u.query if u.query else "")
    for attempt in range(2):  # one retry on a stale keep-alive connection
        conn = conns.get(key)
        if conn is None:
            conn = conns[key] = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status >= 300:
                sys.stderr.write(f"callback {url} -> {r.status}\n")
            return
        except (http.client.HTTPException, OSError):
            conn.close()
            conns.pop(key, None)
            if attempt:
                raise


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else header/body writes meet delayed ACK: +40 ms

    def do_POST(self):
        t_recv = time.perf_counter()
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        cb = q.get("callback_url", [None])[0]
        body = b'{"accepted":true}'
        self.send_response(202)  # without callback_url: a plain round trip
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if cb:
            t_cb = time.perf_counter()
            post_callback(cb)
            task = q.get("task_id", ["?"])[0]
            TIMINGS[task] = [t_recv, t_cb, time.perf_counter()]

    def do_GET(self):
        body = b"ok"
        if self.path.startswith("/timings"):
            body = json.dumps(TIMINGS).encode()
            TIMINGS.clear()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Handler)
    sys.stderr.write(f"svc listening on 127.0.0.1:{port}\n")
    srv.serve_forever()
