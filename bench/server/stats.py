#!/usr/bin/env python3
"""Poll GET /api/v1/stats until every task of PIPELINE has ended (or TIMEOUT s passed).

Prints one JSON line: counts at the start, timeline of finished counts, seconds to drain.
Usage: stats.py SERVER PIPELINE TIMEOUT
"""
import json
import sys
import time
import urllib.request

server, pipeline, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])


def get():
    with urllib.request.urlopen(f"{server}/api/v1/stats", timeout=30) as r:
        s = json.load(r)
    p = s.get("pipelines", {}).get(pipeline, {})
    return {k: p.get(k, 0) for k in ("total", "pending", "running", "finished", "failed", "cancelled")}


t0 = time.monotonic()
first = get()
timeline = []
last = first
while True:
    t = time.monotonic() - t0
    ended = last["finished"] + last["failed"] + last["cancelled"]
    timeline.append([round(t, 2), last["finished"]])
    if ended >= last["total"] or t > timeout:
        break
    time.sleep(0.25)
    last = get()
done = last["finished"] + last["failed"] + last["cancelled"] >= last["total"]
at = lambda sec: max([f for (tt, f) in timeline if tt <= sec] or [first["finished"]])
print(json.dumps({
    "at_end_of_load": first,
    "final": last,
    "all_ended": done,
    "drain_s": round(timeline[-1][0], 2) if done else None,
    "finished_within": {"0s": first["finished"], "1s": at(1), "5s": at(5), "10s": at(10), "30s": at(30)},
}))
