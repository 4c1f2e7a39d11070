#!/usr/bin/env bash
# bench/batch: the batch job "add `length` (Unicode characters of `patronyme`), write CSV" with
# polars streaming, the Python csv module, pandas (chunksize=160000) and a single-threaded Rust
# csv-crate program, side by side on the same generated files. Idempotent: the venv, the Rust
# binary and the data files are only (re)built when missing. The data comes from
# `tessera sample patronymes` (built with `cargo build --release -p tessera` when a file is missing;
# CARGO_TARGET_DIR is respected, TESSERA_BIN=/path/to/tessera skips the build).
#   bench/batch/run.sh                  # 800k + 8M rows, 3 runs each
#   RUNS=5 SIZES=800k bench/batch/run.sh
#   TESSERA_BIN=/path/to/tessera bench/batch/run.sh
#   EXTRA_TOOL="tessera=/work/main/target/release/tessera ... {in} {out}" bench/batch/run.sh
# Stdout: one JSON line per (tool, file), then a Markdown table. Also kept in data/results.jsonl.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
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
# 3. the Rust baseline (standalone project, own target dir whatever CARGO_TARGET_DIR says: bench.py
#    runs rust-csv/target/release/rust-csv-len)
cargo build -q --release --manifest-path rust-csv/Cargo.toml --target-dir rust-csv/target >&2
# 4. data: `tessera sample patronymes` (deterministic: same rows + seed -> same bytes)
tessera_bin() {
  if [ -z "${TESSERA_BIN:-}" ]; then
    echo "[run] cargo build --release -p tessera" >&2
    (cd "$REPO" && cargo build -q --release -p tessera) >&2
    # A relative CARGO_TARGET_DIR is relative to the directory cargo ran in: the repo root.
    local dir="${CARGO_TARGET_DIR:-target}"
    case "$dir" in /*) ;; *) dir="$REPO/$dir" ;; esac
    TESSERA_BIN="$dir/release/tessera"
  fi
  if [ ! -x "$TESSERA_BIN" ]; then
    echo "[run] no tessera binary at $TESSERA_BIN" >&2
    exit 1
  fi
}
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
    tessera_bin
    echo "[run] tessera sample patronymes --rows $n --seed $SEED --out $f" >&2
    "$TESSERA_BIN" sample patronymes --rows "$n" --seed "$SEED" --out "$f.tmp" >&2
    mv "$f.tmp" "$f"
  fi
  FILES+=("$HERE/$f")
done
# 5. the benchmark
EXTRA=()
tessera_bin
# Tessera's batch node, with checkpoints (the default) and without, side by side.
EXTRA+=(--tool "tessera=$HERE/tools/tessera_len.sh $TESSERA_BIN {in} {out} true")
EXTRA+=(--tool "tessera-no-checkpoints=$HERE/tools/tessera_len.sh $TESSERA_BIN {in} {out} false")
if [ -n "${EXTRA_TOOL:-}" ]; then EXTRA+=(--tool "$EXTRA_TOOL"); fi
.venv/bin/python bench.py --runs "$RUNS" "${EXTRA[@]}" "${FILES[@]}" | tee data/results.txt
grep '^{' data/results.txt > data/results.jsonl || true
