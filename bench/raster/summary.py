#!/usr/bin/env python3
"""Medians (and min–max spread) of the lines written by run.sh, as Markdown tables.

    summary.py data/results-<date>.txt

Reads Tessera's `raster_bench` lines (prefixed `tessera `), tessera_py_mandelbrot.py's
(`tessera-py `) and buzzard_mandelbrot.py's (`buzzard `); standard library only.
"""
import collections
import re
import statistics
import sys

MANDEL = re.compile(
    r"^(?P<side>tessera-py|tessera|buzzard) mandelbrot (?P<size>\d+)² (?P<cfg>[^:]+): cold (?P<cold>[\d.]+) s "
    r"\((?P<tiles>\d+) compute tiles\), warm re-run (?P<warm>[\d.]+) s \((?P<again>\d+) computations\)")
COMPUTE = re.compile(
    r"^buzzard compute alone \(no buzzard\) (?P<size>\d+)²: (?P<tiles>\d+) compute tiles, ThreadPool\(1\) "
    r"(?P<one>[\d.]+) s, ThreadPool\(2\) (?P<two>[\d.]+) s")
WARM = re.compile(r"^(?P<side>tessera-py|tessera|buzzard) warm (?P<label>[^:]+): (?P<n>\d+) windows; (?P<rest>.*)")
# Fields of a warm line, old (one get_data pass) and current (first/second pass) formats.
FIELDS = {
    "direct": re.compile(r"direct (?:GDAL )?file reads ([\d.]+) µs/window"),
    "first": re.compile(r"(?:first pass(?: \([^)]*\))?|get_data through the cache) ([\d.]+) µs/window"),
    "second": re.compile(r"second pass ([\d.]+) µs/window"),
    "queued": re.compile(r"queue_data ([\d.]+) µs/window"),
}


def spread(values, fmt):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def label(side, cfg):
    if side == "tessera-py":
        return "Tessera's Python package (the same numpy compute), " + cfg.replace(
            "compute_threads=", "compute threads = ")
    if side == "tessera":
        return "Tessera (Rust), " + cfg.replace("compute_threads=", "compute threads = ")
    return "buzzard 0.6.5 (numpy), " + cfg.replace("computation_pool=", "")


def main(path):
    mandel = collections.OrderedDict()
    warm = collections.OrderedDict()
    compute = collections.OrderedDict()
    for line in open(path, encoding="utf-8"):
        m = MANDEL.match(line)
        if m:
            mandel.setdefault((m["size"], m["side"], m["cfg"]), []).append(m.groupdict())
            continue
        m = COMPUTE.match(line)
        if m:
            compute.setdefault(m["size"], []).append(m.groupdict())
            continue
        m = WARM.match(line)
        if m:
            row = {"n": m["n"]}
            for name, rx in FIELDS.items():
                f = rx.search(m["rest"])
                if f:
                    row[name] = float(f.group(1))
            warm.setdefault((m["label"], m["side"]), []).append(row)
    if mandel or compute:
        print("| Mandelbrot | runs | cold s, median (min–max) | compute tiles | warm re-run s | "
              "computations on re-run | speed-up 1 → 2 (medians) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        colds = {k: statistics.median(float(r["cold"]) for r in v) for k, v in mandel.items()}
        for (size, side, cfg), rows in mandel.items():
            speedup = ""
            for one, two in (("=1", "=2"), ("(1)", "(2)")):
                if one in cfg:
                    other = (size, side, cfg.replace(one, two))
                    if other in colds:
                        speedup = f"{colds[(size, side, cfg)] / colds[other]:.2f}×"
            print(f"| {size}², {label(side, cfg)} | {len(rows)} | "
                  f"{spread([float(r['cold']) for r in rows], '{:.2f}')} | "
                  f"{'/'.join(sorted({r['tiles'] for r in rows}))} | "
                  f"{spread([float(r['warm']) for r in rows], '{:.3f}')} | "
                  f"{'/'.join(sorted({r['again'] for r in rows}))} | {speedup} |")
        for size, rows in compute.items():
            one = [float(r["one"]) for r in rows]
            two = [float(r["two"]) for r in rows]
            print(f"| {size}², the buzzard side's numpy compute alone (no buzzard, nothing "
                  f"cached), ThreadPool(1) / ThreadPool(2) | {len(rows)} | {spread(one, '{:.2f}')} / "
                  f"{spread(two, '{:.2f}')} | {rows[0]['tiles']} | | | "
                  f"{statistics.median(one) / statistics.median(two):.2f}× |")
        print()
    if warm:
        print("| warm cache, windows | side | runs | windows | direct file read µs | "
              "get_data 1st pass µs (validates) | 2nd pass µs | overhead per query µs, "
              "1st / 2nd pass | queue_data µs/window |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        labels = list(dict.fromkeys(lab for lab, _ in warm))
        names = {"tessera": "Tessera", "tessera-py": "Tessera's Python package",
                 "buzzard": "buzzard"}
        for lab, side in [(lab, side) for lab in labels for side in names]:
            rows = warm.get((lab, side))
            if not rows:
                continue

            def col(name, fmt="{:,.1f}"):
                vals = [r[name] for r in rows if name in r]
                return spread(vals, fmt) if vals else "–"

            def over(name):
                vals = [r[name] - r["direct"] for r in rows if name in r and "direct" in r]
                return spread(vals, "{:+,.1f}") if vals else "–"

            print(f"| {lab} | {names[side]} | {len(rows)} | "
                  f"{rows[0]['n']} | {col('direct')} | {col('first')} | {col('second')} | "
                  f"{over('first')} / {over('second')} | {col('queued')} |")


if __name__ == "__main__":
    main(sys.argv[1])
