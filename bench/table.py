"""Prints the JSON lines of bench/run-all.sh as a Markdown table: tools × workloads, median ms.

Only the workloads present in the lines get a column (run-all.sh may be restricted by
WORKLOADS). Peak RSS is reported for the loops W5–W7, where both sides measure it; a pair
not run (idiom not applicable) is "–", one that ran past the timeout "timeout", one skipped
by run.sh because it would have (its note says why) "skipped".
"""
import json
import sys

ALL = ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]
RSS = ["W5", "W6", "W7"]

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
present = {r["workload"] for r in rows}
workloads = [w for w in ALL if w in present]
rss_workloads = [w for w in RSS if w in present]
tools = []
cells = {}
rss = {}
for r in rows:
    tool = r["tool"] + (f" ({r['mode']})" if r.get("mode") else "")
    if tool not in tools:
        tools.append(tool)
    med = r.get("median_ms")
    if med is not None:
        cells[(tool, r["workload"])] = f"{med:,.1f}"
    else:
        cells[(tool, r["workload"])] = "skipped" if r.get("note", "").startswith("skipped") else "timeout"
    if r["workload"] in RSS and r.get("peak_rss_mb") is not None:
        rss[(tool, r["workload"])] = f"{r['peak_rss_mb']:,.0f}"
head = workloads + [f"{w} peak RSS (MB)" for w in rss_workloads]
print("| tool | " + " | ".join(head) + " |")
print("|---|" + "---:|" * len(head))
for t in tools:
    print(f"| {t} | "
          + " | ".join([cells.get((t, w), "–") for w in workloads]
                       + [rss.get((t, w), "–") for w in rss_workloads]) + " |")
