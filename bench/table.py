"""Prints the JSON lines of bench/run-all.sh as a Markdown table: tools × workloads, median ms."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
workloads = ["W1", "W2", "W3", "W4", "W5"]
tools = []
cells = {}
rss = {}
for r in rows:
    tool = r["tool"] + (f" ({r['mode']})" if r.get("mode") else "")
    if tool not in tools:
        tools.append(tool)
    med = r.get("median_ms")
    cells[(tool, r["workload"])] = "timeout" if med is None else f"{med:,.1f}"
    if r["workload"] == "W5" and r.get("peak_rss_mb") is not None:
        rss[tool] = f"{r['peak_rss_mb']:,.0f}"
print("| tool | " + " | ".join(workloads) + " | W5 peak RSS (MB) |")
print("|---|" + "---:|" * (len(workloads) + 1))
for t in tools:
    print(f"| {t} | " + " | ".join(cells.get((t, w), "–") for w in workloads) + f" | {rss.get(t, '–')} |")
