#!/usr/bin/env bash
# Tessera and the Python tools (Dask, Celery, multiprocessing) on W1–W7, side by side in one
# run on this machine; prints a Markdown table and keeps the JSON lines.
#   RUNS=5 TIMEOUT_S=60 bench/run-all.sh [OUT=bench/results-all.jsonl]
#   WORKLOADS=W6,W7 bench/run-all.sh     (a subset; spaces or commas; default W1–W7)
# W6/W7 (1M / 10M items) are run by tessera in both modes (each run a process of its own, a
# few seconds each) and, on the Python side, only by the chunked idioms (see compare/README.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export RUNS="${RUNS:-5}"
WORKLOADS="${WORKLOADS:-W1 W2 W3 W4 W5 W6 W7}"
read -ra WL <<< "${WORKLOADS//,/ }"
export WORKLOADS="${WL[*]}"   # single spaces: compare/run.sh's form; tessera's is commas
OUT="${OUT:-$HERE/results-all.jsonl}"
cd "$ROOT"
cargo build --release -p tessera >&2
TMP="$(mktemp)"
trap 'rm -f "$TMP" "$TMP.py"' EXIT
STATUS=0
echo "[run-all] tessera bench (durable and ephemeral): $WORKLOADS" >&2
# A failing workload ends tessera bench; the rows printed before it are kept, the Python tools
# still run, and this script exits non-zero at the end.
"${CARGO_TARGET_DIR:-target}/release/tessera" bench --json --runs "$RUNS" --mode both --workload "$(IFS=,; echo "${WL[*]}")" \
    > "$TMP" || { STATUS=$?; echo "[run-all] tessera bench failed (status $STATUS)" >&2; }
echo "[run-all] Python tools" >&2
OUT="$TMP.py" "$HERE/compare/run.sh" >/dev/null
cat "$TMP" "$TMP.py" > "$OUT"
python3 "$HERE/table.py" "$OUT"
exit "$STATUS"
