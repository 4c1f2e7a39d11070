#!/usr/bin/env python3
"""Runs the batch job "add `length` = Unicode characters of `patronyme`, write CSV" with every
tool on every input file, RUNS times each; prints one JSON line per (tool, file) on stdout,
then a Markdown table. Progress goes to stderr. Invoked by run.sh (which prepares the venv,
the Rust binary and the data).

    bench.py [--runs 3] [--tools polars,csv,pandas,rust] [--tool NAME='CMD {in} {out}'] FILE...

--tool adds a tool (e.g. the Tessera batch node later); its command is run through the shell
with {in} and {out} replaced by the input and output paths, and must write exactly the
reference format described in README.md.
"""
import argparse
import csv
import hashlib
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, ".venv", "bin", "python")
TOOLS = {
    "polars": f"{PY} {HERE}/tools/polars_len.py {{in}} {{out}}",
    "csv": f"{PY} {HERE}/tools/csv_len.py {{in}} {{out}}",
    "pandas": f"{PY} {HERE}/tools/pandas_len.py {{in}} {{out}}",
    "rust": f"{HERE}/rust-csv/target/release/rust-csv-len {{in}} {{out}}",
}
LABEL = {
    "polars": "polars streaming (scan_csv→sink_csv)",
    "csv": "Python csv module",
    "pandas": "pandas chunksize=160000",
    "rust": "Rust csv crate, 1 thread",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 22), b""):
            h.update(b)
    return h.hexdigest()


def same_records(a, b):
    """Record-level comparison (ignores quoting differences). Returns None or first difference."""
    with open(a, newline="", encoding="utf-8") as fa, open(b, newline="", encoding="utf-8") as fb:
        for i, (ra, rb) in enumerate(itertools.zip_longest(csv.reader(fa), csv.reader(fb))):
            if ra != rb:
                return f"record {i}: {ra!r} != {rb!r}"
    return None


def count_rows(path):
    with open(path, "rb") as f:
        n = sum(b.count(b"\n") for b in iter(lambda: f.read(1 << 22), b""))
    return n - 1  # header; the generator never puts newlines inside fields


def run_once(cmd, out):
    if os.path.exists(out):
        os.remove(out)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%e %M %U %S", "-o", tf.name, "sh", "-c", cmd]
        t0 = time.perf_counter()
        p = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stderr[-2000:]}")
        e, rss_kb, u, s = tf.read().split()[-4:]
    return wall, int(rss_kb) / 1024.0, float(u) + float(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--tool", action="append", default=[], help="NAME='CMD {in} {out}'")
    ap.add_argument("--outdir", default=os.path.join(HERE, "data", "out"))
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    tools = {t: TOOLS[t] for t in a.tools.split(",") if t}
    for spec in a.tool:
        name, cmd = spec.split("=", 1)
        tools[name] = cmd
        LABEL.setdefault(name, name)
    os.makedirs(a.outdir, exist_ok=True)
    env = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    results = []
    for path in a.files:
        size = os.path.getsize(path)
        rows = count_rows(path)  # also warms the page cache: every run reads a cached file
        base = os.path.splitext(os.path.basename(path))[0]
        outs = {}
        for name, tmpl in tools.items():
            out = os.path.join(a.outdir, f"{base}.{name}.csv")
            cmd = tmpl.replace("{in}", shlex.quote(path)).replace("{out}", shlex.quote(out))
            walls, rsss, cpus = [], [], []
            for i in range(a.runs):
                w, r, c = run_once(cmd, out)
                walls.append(w); rsss.append(r); cpus.append(c)
                print(f"[bench] {base} {name} run {i + 1}/{a.runs}: {w:.2f} s, {r:.0f} MiB",
                      file=sys.stderr)
            outs[name] = out
            med = statistics.median(walls)
            results.append({
                "tool": name, "file": os.path.basename(path), "rows": rows, "input_bytes": size,
                "runs": a.runs, "wall_s_median": round(med, 3),
                "wall_s_all": [round(w, 3) for w in walls],
                "cpu_s_median": round(statistics.median(cpus), 3),
                "rows_per_s": round(rows / med), "mb_per_s": round(size / 1e6 / med, 1),
                "peak_rss_mib": round(max(rsss), 1),
                "output_bytes": os.path.getsize(out), "output_sha256": sha256(out),
                **env,
            })
        # Byte-for-byte check against the reference (Python csv if run, else the first tool).
        ref = "csv" if "csv" in outs else next(iter(outs))
        ref_sha = sha256(outs[ref])
        for r in results[-len(tools):]:
            r["reference"] = ref
            if r["output_sha256"] == ref_sha:
                r["identical"] = "bytes"
            else:
                diff = same_records(outs[r["tool"]], outs[ref])
                r["identical"] = "records" if diff is None else "DIFFERS"
                if diff:
                    r["first_difference"] = diff
                    print(f"[bench] {r['tool']} output differs from {ref}: {diff}", file=sys.stderr)
            print(json.dumps(r, ensure_ascii=False), flush=True)
    print()
    print("| tool | file | rows | wall s (median of %d) | CPU s | rows/s | MB/s | peak RSS MiB | output |"
          % a.runs)
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        print(f"| {LABEL[r['tool']]} | {r['file']} | {r['rows']:,} | {r['wall_s_median']:.2f} | "
              f"{r['cpu_s_median']:.2f} | {r['rows_per_s']:,} | {r['mb_per_s']} | "
              f"{r['peak_rss_mib']:.0f} | {r['identical']} = {r['reference']} |")


if __name__ == "__main__":
    main()
