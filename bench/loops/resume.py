#!/usr/bin/env python3
"""Resume of a chunked loop after kill -9, against a clean run (issue: loops at a million items).

A loop of N items whose body runs a Rhai script (`out = #{...}`, so every item takes the
general path) is run once cleanly (`tessera run`), then again and killed with -9 once about
half of its items are committed, then resumed (`tessera resume`). Prints the clean run's time,
the resume's time and their ratio, and checks that the resumed result equals the clean one.

    python3 bench/loops/resume.py [--items 300000] [--binary target/release/tessera]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PIPELINE = """
nodes:
  - {id: in, type: entry, next: [each]}
  - id: each
    type: loop
    items: in.out.xs
    next: [end]
    nodes:
      - {id: a, type: node, after: 'out = #{v: item * 3, i: index};', next: [b]}
      - {id: b, type: node, after: 'out = #{sum: a.out.v + a.out.i};'}
  - {id: end, type: end}
"""


def tessera(binary, data, *args, **kw):
    env = dict(os.environ, TESSERA_DATA_DIR=data, TESSERA_LEASE="500ms")
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, **kw)


def committed(binary, data, task):
    r = tessera(binary, data, "tasks", "show", task, "--json")
    try:
        loop = json.loads(r.stdout)["loops"][0]
    except (ValueError, KeyError, IndexError):
        return 0
    return sum(n for state, n in loop.get("counts", {}).items() if state != "pending")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--binary", default="target/release/tessera")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = os.path.join(tmp, "loop.yaml")
        with open(pipeline, "w") as f:
            f.write(PIPELINE)
        inp = os.path.join(tmp, "input.json")
        with open(inp, "w") as f:
            json.dump({"xs": list(range(a.items))}, f)

        clean_dir = os.path.join(tmp, "clean")
        t0 = time.monotonic()
        clean = tessera(binary, clean_dir, "run", pipeline, "--input", "@" + inp)
        t_clean = time.monotonic() - t0
        if clean.returncode != 0:
            sys.exit("clean run failed: " + clean.stderr)

        data = os.path.join(tmp, "killed")
        env = dict(os.environ, TESSERA_DATA_DIR=data, TESSERA_LEASE="500ms")
        child = subprocess.Popen([binary, "run", pipeline, "--input", "@" + inp], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        task = None
        for line in child.stderr:
            if line.startswith("task "):
                task = line.split()[1]
                break
        if task is None:
            sys.exit("no task id printed")
        while committed(binary, data, task) < a.items // 2:
            if child.poll() is not None:
                sys.exit("the run ended before half its items were committed; use more items")
            time.sleep(0.02)
        done = committed(binary, data, task)
        child.send_signal(signal.SIGKILL)
        child.wait()
        t0 = time.monotonic()
        resumed = tessera(binary, data, "resume", task)
        t_resume = time.monotonic() - t0
        if resumed.returncode != 0:
            sys.exit("resume failed: " + resumed.stderr)
        same = json.loads(resumed.stdout) == json.loads(clean.stdout)
        print(json.dumps({
            "items": a.items,
            "committed_at_kill": done,
            "clean_s": round(t_clean, 3),
            "resume_s": round(t_resume, 3),
            "resume_over_clean": round(t_resume / t_clean, 3),
            "same_result": same,
        }))
        if not same:
            sys.exit("the resumed result differs from the clean run's")


if __name__ == "__main__":
    main()
