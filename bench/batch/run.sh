#!/usr/bin/env bash
# bench/batch: the batch job "add `length` (Unicode characters of `patronyme`), write CSV" with
# polars streaming, the Python csv module, pandas (chunksize=160000) and a single-threaded Rust
# csv-crate program, side by side on the same generated files. Idempotent: the venv, the Rust
# binary and the data files are only (re)built when missing.
#   bench/batch/run.sh                  # 800k + 8M rows, 3 runs each
#   RUNS=5 SIZES=800k bench/batch/run.sh
#   EXTRA_TOOL="tessera=/work/main/target/release/tessera ... {in} {out}" bench/batch/run.sh
# Stdout: one JSON line per (tool, file), then a Markdown table. Also kept in data/results.jsonl.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
RUNS="${RUNS:-3}"
SIZES="${SIZES:-800k 8m}"
SEED="${SEED:-42}"

# 1. venv with the pinned tools
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import polars, pandas' 2>/dev/null; then
  echo "[run] creating .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -r requirements.txt >&2
fi
# 2. GNU time for peak RSS
if [ ! -x /usr/bin/time ]; then
  echo "[run] installing GNU time" >&2
  apt-get install -y time >&2
fi
# 3. the Rust baseline (standalone project, own target dir, not part of the workspace)
cargo build -q --release --manifest-path rust-csv/Cargo.toml >&2
# 4. data (deterministic: same seed -> same bytes)
mkdir -p data
FILES=()
for s in $SIZES; do
  case "$s" in
    800k) n=800000 ;;
    8m) n=8000000 ;;
    *) echo "unknown size $s (800k|8m)" >&2; exit 2 ;;
  esac
  f="data/patronymes_${s}.csv"
  if [ ! -s "$f" ]; then
    python3 gen_patronymes.py --rows "$n" --seed "$SEED" --out "$f.tmp" && mv "$f.tmp" "$f"
  fi
  FILES+=("$HERE/$f")
done
# 5. the benchmark
EXTRA=()
if [ -n "${EXTRA_TOOL:-}" ]; then EXTRA=(--tool "$EXTRA_TOOL"); fi
.venv/bin/python bench.py --runs "$RUNS" "${EXTRA[@]}" "${FILES[@]}" | tee data/results.txt
grep '^{' data/results.txt > data/results.jsonl || true
