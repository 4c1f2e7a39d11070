#!/usr/bin/env bash
# bench/raster: benchmark (e) of the raster issue — the Mandelbrot recipe and the warm-cache
# per-query overhead on Tessera (`raster_bench`) and on buzzard 0.6.5 itself, side by side in
# one run, interleaved (Tessera, buzzard ThreadPool, buzzard process Pool, for each size).
#   bench/raster/run.sh                              # 8192² mandelbrot + 4096² warm, RUNS=3
#   RUNS=5 SIZE=2048 WARM_SIZE=1024 POOLS=thread bench/raster/run.sh
#   BENCHES=warm BUZZARD_ARGS="--scheduler-idle-sleep 0.001" bench/raster/run.sh   # diagnostic
# Tessera's Python package runs the same scenarios with buzzard's numpy compute function
# (tessera_py_mandelbrot.py; its release wheel is built into .venv; SKIP_TESSERA_PY=1 skips it).
# Idempotent set-up first (setup.sh: Debian packages, .venv with buzzard). Tessera's example is
# built with `cargo build --release -p tessera-raster --example raster_bench` (CARGO_TARGET_DIR
# respected; RASTER_BENCH=/path/to/raster_bench skips the build). Both sides put their cache
# dirs and GeoTIFFs in data/tmp (TMPDIR), on the same disk. Every line goes to stdout and to
# data/results-<date>.txt; then summary.py prints the medians of the runs as a Markdown table.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUNS="${RUNS:-3}"
SIZE="${SIZE:-8192}"
WARM_SIZE="${WARM_SIZE:-4096}"
POOLS="${POOLS:-thread process}"
BENCHES="${BENCHES:-mandelbrot warm}"
read -r -a BUZZARD_EXTRA <<< "${BUZZARD_ARGS:-}"

"$HERE/setup.sh"
if [ -z "${RASTER_BENCH:-}" ]; then
    echo "[run] cargo build --release -p tessera-raster --example raster_bench" >&2
    (cd "$REPO" && cargo build -q --release -p tessera-raster --example raster_bench) >&2
    # A relative CARGO_TARGET_DIR is relative to the directory cargo ran in: the repo root.
    dir="${CARGO_TARGET_DIR:-target}"
    case "$dir" in /*) ;; *) dir="$REPO/$dir" ;; esac
    RASTER_BENCH="$dir/release/examples/raster_bench"
fi
[ -x "$RASTER_BENCH" ] || { echo "[run] no raster_bench at $RASTER_BENCH" >&2; exit 1; }
# Tessera's Python package (release wheel) in the same venv as buzzard: same Python, same numpy.
if [ -z "${SKIP_TESSERA_PY:-}" ]; then
    echo "[run] maturin build --release (python/) into .venv" >&2
    "$HERE/.venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.9.4,<2" >&2
    wheels="$(mktemp -d)"
    (cd "$REPO/python" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/python-wheel" "$HERE/.venv/bin/maturin" build -q --locked --release \
        -i "$HERE/.venv/bin/python" --compatibility linux --out "$wheels") >&2
    "$HERE/.venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$wheels"/*.whl >&2
    rm -rf "$wheels"
fi

mkdir -p "$HERE/data/tmp"
export TMPDIR="$HERE/data/tmp"
OUT="$HERE/data/results-$(date +%Y%m%dT%H%M%S).txt"
PY="$HERE/.venv/bin/python"
emit() { tee -a "$OUT"; }
{
    echo "# bench/raster $(date -Is) on $(nproc) cores; RUNS=$RUNS SIZE=$SIZE WARM_SIZE=$WARM_SIZE POOLS=$POOLS BUZZARD_ARGS=${BUZZARD_ARGS:-}"
    echo "# tessera: $RASTER_BENCH ($(rustc --version 2>/dev/null || echo rustc ?))"
    "$PY" "$HERE/buzzard_mandelbrot.py" versions
} | emit
"$PY" "$HERE/buzzard_mandelbrot.py" check | emit
for run in $(seq 1 "$RUNS"); do
    for bench in $BENCHES; do
        case "$bench" in
            mandelbrot) size="$SIZE" ;;
            warm) size="$WARM_SIZE" ;;
            *) echo "unknown bench $bench (mandelbrot|warm)" >&2; exit 2 ;;
        esac
        echo "# run $run $bench $size, load average $(cut -d' ' -f1-3 /proc/loadavg)" | emit
        "$RASTER_BENCH" "$bench" "$size" | sed 's/^/tessera /' | emit
        if [ -z "${SKIP_TESSERA_PY:-}" ]; then
            for pool in $POOLS; do
                if [ "$bench" = warm ] && [ "$pool" != thread ]; then continue; fi
                "$PY" "$HERE/tessera_py_mandelbrot.py" "$bench" "$size" --pool "$pool" | emit
            done
        fi
        for pool in $POOLS; do
            # The warm scenario does not depend on the computation pool: ThreadPool only.
            if [ "$bench" = warm ] && [ "$pool" != thread ]; then continue; fi
            "$PY" "$HERE/buzzard_mandelbrot.py" "$bench" "$size" --pool "$pool" "${BUZZARD_EXTRA[@]}" | emit
        done
        if [ "$bench" = mandelbrot ]; then
            # The floor of the buzzard side: its numpy compute function alone, without buzzard.
            "$PY" "$HERE/buzzard_mandelbrot.py" compute "$size" | emit
        fi
    done
done
echo
python3 "$HERE/summary.py" "$OUT" | tee "${OUT%.txt}.md"
echo "[run] lines in $OUT, table in ${OUT%.txt}.md" >&2
