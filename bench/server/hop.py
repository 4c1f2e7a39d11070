#!/usr/bin/env python3
"""Service-hop latency: Tessera task end-to-end vs. the raw service round trip.

Measures, sequentially (one at a time), N samples each of:
  raw_post      plain POST to the service -> its 202 (one HTTP round trip)
  raw_callback  POST to the service with a callback_url pointing at a receiver in this process,
                until the service's callback `{}` has arrived (what a service hop is, minus Tessera)
  task_noop     Tessera task entry -> node -> end: submit -> `task finished` seen on /api/v1/events
  task_service  Tessera task entry -> service -> end: same, through the same service, with a
                breakdown by segment (the service records CLOCK_MONOTONIC times per task_id)
Prints one JSON document. Usage:
  hop.py --server http://127.0.0.1:P --service http://127.0.0.1:S/hop \
         --noop-route R1 --service-route R2 [-n 300] [--warmup 30]
"""
import argparse
import http.client
import json
import socket
import statistics
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

now = time.perf_counter


def pct(xs, p):
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))  # nearest rank
    return s[k]


def summary(xs):
    ms = [x * 1e3 for x in xs]
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 3),
        "p50_ms": round(statistics.median(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p90_ms": round(pct(ms, 90), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


class Waiter:
    """Arrival times by key, set from other threads."""

    def __init__(self):
        self.cv = threading.Condition()
        self.seen = {}

    def mark(self, key, value):
        t = now()
        with self.cv:
            self.seen[key] = (t, value)
            self.cv.notify_all()

    def wait(self, key, timeout=60.0):
        end = now() + timeout
        with self.cv:
            while key not in self.seen:
                left = end - now()
                if left <= 0:
                    raise TimeoutError(f"no completion for {key} within {timeout}s")
                self.cv.wait(left)
            return self.seen.pop(key)


# ---- raw: a callback receiver in this process ------------------------------------------------
RAW = Waiter()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else header/body writes meet delayed ACK: +40 ms

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        RAW.mark(self.path.rsplit("/", 1)[-1], None)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


class Conn:
    """A keep-alive HTTP/1.1 client connection with reconnect."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.c = None

    def post(self, path, body=b"{}"):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.c.connect()
                self.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                r = self.c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise


# ---- Tessera: follow /api/v1/events ----------------------------------------------------------
TASKS = Waiter()


def follow_events(server, ready):
    u = urllib.parse.urlsplit(server)
    s = socket.create_connection((u.hostname, u.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # HTTP/1.0: the stream is close-delimited, no chunk framing to undo.
    s.sendall(f"GET /api/v1/events HTTP/1.0\r\nHost: {u.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
    f = s.makefile("rb")
    status = f.readline()
    if b" 200" not in status:
        raise SystemExit(f"events: {status!r}")
    while f.readline() not in (b"\r\n", b"\n", b""):
        pass
    ready.set()
    for line in f:
        if line.startswith(b"data:"):
            try:
                ev = json.loads(line[5:])
            except ValueError:
                continue
            if ev.get("type") == "task" and ev.get("state") in ("finished", "failed", "cancelled"):
                TASKS.mark(ev["task_id"], ev["state"])


def run_tasks(server, route, n, marks=None):
    """End-to-end times; `marks` (if given) gets task_id -> (submitted, 202 received, finished)."""
    conn = Conn(server)
    out = []
    for _ in range(n):
        t0 = now()
        st, body = conn.post(f"/api/v1/services/{route}")
        ta = now()
        if st != 202:
            raise SystemExit(f"submit {route}: {st} {body[:300]!r}")
        tid = json.loads(body)["task_id"]
        t1, state = TASKS.wait(tid)
        if state != "finished":
            raise SystemExit(f"task {tid} {state}")
        out.append(t1 - t0)
        if marks is not None:
            marks[tid] = (t0, ta, t1)
    return out


def get_json(base, path):
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("GET", path)
    return json.loads(c.getresponse().read())


def breakdown(marks, svc_times):
    """Median/p99 of each segment of a service task (same monotonic clock in both processes)."""
    seg = {k: [] for k in ("submit_to_202", "submit_to_service_receives", "service_receives_to_callback_sent",
                           "callback_post_answered_by_tessera", "callback_answered_to_finished_event",
                           "callback_sent_to_finished_event")}
    for tid, (t0, ta, t1) in marks.items():
        s = svc_times.get(tid)
        if not s:
            continue
        r, c, d = s
        seg["submit_to_202"].append(ta - t0)
        seg["submit_to_service_receives"].append(r - t0)
        seg["service_receives_to_callback_sent"].append(c - r)
        seg["callback_post_answered_by_tessera"].append(d - c)
        seg["callback_answered_to_finished_event"].append(t1 - d)
        seg["callback_sent_to_finished_event"].append(t1 - c)
    return {k: {"p50_ms": round(statistics.median(v) * 1e3, 3), "p99_ms": round(pct(v, 99) * 1e3, 3)}
            for k, v in seg.items() if v}


def run_raw(service, recv_port, n, with_callback):
    u = urllib.parse.urlsplit(service)
    conn = Conn(service)
    out = []
    for i in range(n):
        key = f"r{i}"
        cb = urllib.parse.quote(f"http://127.0.0.1:{recv_port}/cb/{key}", safe="")
        path = f"{u.path}?task_id={key}&callback_url={cb}" if with_callback else f"{u.path}"
        t0 = now()
        st, _ = conn.post(path)
        if with_callback:
            if st != 202:
                raise SystemExit(f"service: {st}")
            t1, _ = RAW.wait(key)
        else:
            t1 = now()
        out.append(t1 - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--noop-route", required=True)
    ap.add_argument("--service-route", required=True)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    a = ap.parse_args()

    class Srv(ThreadingHTTPServer):
        daemon_threads = True

    recv = Srv(("127.0.0.1", 0), Receiver)
    threading.Thread(target=recv.serve_forever, daemon=True).start()
    ready = threading.Event()
    threading.Thread(target=follow_events, args=(a.server, ready), daemon=True).start()
    if not ready.wait(10):
        raise SystemExit("could not subscribe to /api/v1/events")
    port = recv.server_address[1]

    res = {}
    # Interleave nothing: each kind is run in its own block after a warm-up of that kind.
    run_raw(a.service, port, a.warmup, False)
    res["raw_post"] = summary(run_raw(a.service, port, a.n, False))
    run_raw(a.service, port, a.warmup, True)
    res["raw_callback"] = summary(run_raw(a.service, port, a.n, True))
    run_tasks(a.server, a.noop_route, a.warmup)
    res["task_noop"] = summary(run_tasks(a.server, a.noop_route, a.n))
    run_tasks(a.server, a.service_route, a.warmup)
    svc_base = a.service.rsplit("/", 1)[0]
    get_json(svc_base, "/timings")  # clear the warm-up's
    marks = {}
    res["task_service"] = summary(run_tasks(a.server, a.service_route, a.n, marks))
    res["task_service_breakdown"] = breakdown(marks, get_json(svc_base, "/timings"))
    d = lambda k, x, y: round(res[x][k] - res[y][k], 3)
    res["overhead_vs_raw_callback"] = {k: d(k, "task_service", "raw_callback") for k in ("p50_ms", "p99_ms")}
    res["hop_marginal"] = {  # task_service - task_noop: what the service hop adds to a task
        k: d(k, "task_service", "task_noop") for k in ("p50_ms", "p99_ms")}
    res["hop_marginal_minus_raw"] = {
        k: round(res["hop_marginal"][k] - res["raw_callback"][k], 3) for k in ("p50_ms", "p99_ms")}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
