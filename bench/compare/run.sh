#!/usr/bin/env bash
# Python comparison benchmarks for Tessera (see README.md in this folder).
# Runs every tool on every workload it implements and prints one JSON line per
# (tool, workload).
#
# Environment (all optional):
#   RUNS=5           timed runs per (tool, workload), after one warm-up run
#   TIMEOUT_S=120    a single run longer than this is recorded as a timeout
#   BUDGET_S=300     once timed runs have used this much, remaining runs are skipped
#   TOOLS="subprocess multiprocessing dask-threads dask-distributed celery
#          dask-threads-bag dask-distributed-bag celery-chunks"
#                    subprocess: W3 only; dask-threads, dask-distributed, celery:
#                    W1-W5; dask-threads-bag: W4-W7; dask-distributed-bag: W4-W6
#                    (W7 is emitted as skipped); celery-chunks: W4/W5;
#                    multiprocessing: all
#   WORKLOADS="W1 W2 W3 W4 W5 W6 W7"   (spaces or commas)
#   OUT=path         also write the JSON lines to this file (truncated first;
#                    relative to the caller's working directory)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RUNS="${RUNS:-5}" TIMEOUT_S="${TIMEOUT_S:-120}" BUDGET_S="${BUDGET_S:-300}"
TOOLS="${TOOLS:-subprocess multiprocessing dask-threads dask-distributed celery dask-threads-bag dask-distributed-bag celery-chunks}"
WORKLOADS="${WORKLOADS:-W1 W2 W3 W4 W5 W6 W7}"
WORKLOADS="${WORKLOADS//,/ }"   # run-all.sh passes the same list to tessera bench, comma-separated
OUT="${OUT:-}"
# Hard cap per driver process: warm-up + runs up to the budget + start/stop.
HARD_S=$(( 2 * ${TIMEOUT_S%.*} + ${BUDGET_S%.*} + 120 ))

VENV="$HERE/.venv"
PY="$VENV/bin/python"
WORK="$(mktemp -d /tmp/tessera-compare.XXXXXX)"
REDIS_PID=""
DRIVER_PID=""

log() { echo "[compare] $*" >&2; }

cleanup() {
    local rc=$?
    if [[ -n "$DRIVER_PID" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill "$DRIVER_PID" 2>/dev/null || true   # timeout(1) passes it on to the driver's group
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$REDIS_PID" ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$REDIS_PID" 2>/dev/null || true
    fi
    log "driver logs kept in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Python environment (idempotent: reinstalls only when requirements change)
REQ_SUM="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$PY" || "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_SUM" ]]; then
    log "creating venv in $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
    echo "$REQ_SUM" > "$VENV/.requirements.sha256"
fi

# --- redis-server for Celery (installed only if missing)
if [[ " $TOOLS " == *" celery"* ]]; then
    if ! command -v redis-server >/dev/null 2>&1; then
        log "installing redis-server"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
    fi
    PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes --save '' \
        --appendonly no --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 100); do
        redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    redis-cli -h 127.0.0.1 -p "$PORT" ping | grep -q PONG || { log "redis-server did not start"; exit 1; }
    export BENCH_REDIS_URL="redis://127.0.0.1:$PORT" BENCH_REDIS_PID="$REDIS_PID"
    log "redis-server pid $REDIS_PID on 127.0.0.1:$PORT"
fi

export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
[[ -n "$OUT" ]] && : > "$OUT"

emit() {
    echo "$1"
    if [[ -n "$OUT" ]]; then echo "$1" >> "$OUT"; fi
}

# skip TOOL WORKLOAD WHY: emit a line saying the pair was not run, and why.
skip() {
    log "$1 $2 skipped"
    emit "{\"tool\": \"$1\", \"workload\": \"$2\", \"runs\": 0, \"median_ms\": null, \"min_ms\": null, \"peak_rss_mb\": null, \"note\": \"skipped: $3\"}"
}

# run_one TOOL WORKLOAD CMD... : run one driver under a hard timeout, emit its JSON line.
run_one() {
    local tool="$1" wl="$2"; shift 2
    local logf="$WORK/$tool-$wl.log" rc=0 line
    log "$tool $wl"
    (cd "$HERE" && exec timeout -k 10 "$HARD_S" "$@" --workload "$wl" --runs "$RUNS") \
        > "$WORK/$tool-$wl.out" 2> "$logf" &
    DRIVER_PID=$!
    wait "$DRIVER_PID" || rc=$?
    DRIVER_PID=""
    line="$(grep '^{"tool"' "$WORK/$tool-$wl.out" | tail -n 1 || true)"
    if [[ -z "$line" ]]; then
        local note="error: driver exited with status $rc, see $logf"
        [[ $rc -eq 124 || $rc -eq 137 ]] && note="timeout: driver exceeded the hard cap of ${HARD_S} s"
        line="{\"tool\": \"$tool\", \"workload\": \"$wl\", \"runs\": 0, \"median_ms\": null, \"min_ms\": null, \"peak_rss_mb\": null, \"note\": \"$note\"}"
    fi
    emit "$line"
}

for tool in $TOOLS; do
    for wl in $WORKLOADS; do
        case "$tool" in
            subprocess)
                if [[ "$wl" == W3 ]]; then
                    run_one subprocess-p2 W3 "$PY" bench_subprocess.py --mode p2
                    run_one subprocess-unbounded W3 "$PY" bench_subprocess.py --mode unbounded
                fi ;;
            multiprocessing)  run_one "$tool" "$wl" "$PY" bench_mp.py ;;
            dask-threads|dask-distributed|celery)
                # One task per item: already past the timeout at W5, so not run at W6/W7.
                case "$wl" in W6|W7) continue ;; esac
                case "$tool" in
                    dask-threads)     run_one "$tool" "$wl" "$PY" bench_dask.py --scheduler threads ;;
                    dask-distributed) run_one "$tool" "$wl" "$PY" bench_dask.py --scheduler distributed ;;
                    celery)           run_one "$tool" "$wl" "$PY" bench_celery.py ;;
                esac ;;
            dask-threads-bag)
                case "$wl" in W4|W5|W6|W7) run_one "$tool" "$wl" "$PY" bench_dask.py --scheduler threads --bag ;; esac ;;
            dask-distributed-bag)
                case "$wl" in
                    W4|W5|W6) run_one "$tool" "$wl" "$PY" bench_dask.py --scheduler distributed --bag ;;
                    # The collected list goes back to the driver serialized item by item:
                    # about a minute per run at W6 already, so W7 would pass the timeout.
                    W7) skip "$tool" "$wl" "W6 already takes about a minute per run, so W7 would pass the timeout" ;;
                esac ;;
            celery-chunks)
                case "$wl" in W4|W5) run_one "$tool" "$wl" "$PY" bench_celery.py --chunks ;; esac ;;
            *) log "unknown tool $tool"; exit 2 ;;
        esac
    done
done
