#!/usr/bin/env bash
# Tessera and the Python tools (Dask, Celery, multiprocessing) on W1–W5, side by side in one
# run on this machine; prints a Markdown table and keeps the JSON lines.
#   RUNS=5 TIMEOUT_S=60 bench/run-all.sh [OUT=bench/results-all.jsonl]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export RUNS="${RUNS:-5}"
OUT="${OUT:-$HERE/results-all.jsonl}"
cd "$ROOT"
cargo build --release -p tessera >&2
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT
echo "[run-all] tessera bench (durable and ephemeral)" >&2
target/release/tessera bench --json --runs "$RUNS" --mode both > "$TMP"
echo "[run-all] Python tools" >&2
OUT="$TMP.py" "$HERE/compare/run.sh" >/dev/null
cat "$TMP" "$TMP.py" > "$OUT"
rm -f "$TMP.py"
python3 "$HERE/table.py" "$OUT"
