#!/usr/bin/env bash
# Tessera server benchmark: (a) task submissions/s with wrk, (b) added latency of one service hop.
# Durable SQLite (the default data-dir mode, synchronous=FULL), everything on 127.0.0.1.
#
#   bench/server/run.sh                      # build if needed, run everything
#   CONNS="16 64" DURATION=10 HOP_N=300 PROFILE=auto bench/server/run.sh
#
# Env: CONNS (wrk connections per level), DURATION (s per level), THREADS (wrk threads),
#      HOP_N (sequential samples per kind), DRAIN_TIMEOUT (s), PROFILE (1|0|auto: profile when a
#      target is missed), BUILD (1 = always cargo build, 0 = never, default: when needed),
#      OUT (output directory, default bench/server/out), TESSERA_BIN (binary to test),
#      QUIET_WAIT (s to wait for a shared host to go idle before each measurement), REPEAT (runs
#      per wrk level, default 2), KEEP_PERF=1 (keep out/perf.data), TESSERA_LOG (server log level).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${TESSERA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tessera}"
CONNS="${CONNS:-16 64 256}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
HOP_N="${HOP_N:-300}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-180}"
PROFILE="${PROFILE:-auto}"
BUILD="${BUILD:-auto}"
OUT="${OUT:-$HERE/out}"
PY="${PYTHON:-python3}"

mkdir -p "$OUT"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---- prerequisites --------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null
fi
if [[ "$BUILD" == 1 ]] || { [[ "$BUILD" == auto ]] && ! "$BIN" serve --help >/dev/null 2>&1; }; then
  log "cargo build --release -p tessera"
  (cd "$ROOT" && cargo build --release -p tessera)
fi
"$BIN" serve --help >/dev/null

free_port() { "$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT="$(free_port)"
SVC_PORT="$(free_port)"
DATA="$(mktemp -d /var/tmp/tessera-bench.XXXXXX)"   # ext4, real fsync (not tmpfs)
URL="http://127.0.0.1:$PORT"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

# ---- servers --------------------------------------------------------------------------------
log "tessera serve on $URL, data dir $DATA"
"$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$DATA" 2>"$OUT/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
"$PY" "$HERE/svc.py" "$SVC_PORT" 2>"$OUT/svc.log" &
PIDS+=("$!")
for _ in $(seq 100); do
  curl -fs "$URL/health" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$SVC_PORT/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$URL/health" >/dev/null

create() { # name, middle node JSON
  curl -fsS -X POST "$URL/api/v1/pipelines" -H 'Content-Type: application/json' -d @- >/dev/null <<JSON
{"type": "pipeline", "nodes": [
  {"id": "in", "type": "entry", "next": ["mid"], "api": {"route": "$1", "summary": "bench"}},
  $2,
  {"id": "end", "type": "end"}]}
JSON
}
NOOP='{"id": "mid", "type": "node", "next": ["end"]}'

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The host may be shared (builds, other tests): wait up to QUIET_WAIT s for it to calm down and
# record how busy other processes were during each measurement.
QUIET_WAIT="${QUIET_WAIT:-120}"
quiet() { "$PY" "$HERE/machine.py" quiet "$QUIET_WAIT"; }
TICK="$(getconf CLK_TCK)"

# ---- (a) submissions/s ----------------------------------------------------------------------
echo "[]" >"$OUT/throughput.json"
REPEAT="${REPEAT:-2}"
for c in $CONNS; do
 for rep in $(seq "$REPEAT"); do
  route="noop-c$c-r$rep"
  create "$route" "$NOOP"
  curl -fsS -X POST "$URL/api/v1/services/$route" -H 'Content-Type: application/json' -d '{}' >/dev/null
  idle_before="$(quiet)"
  log "wrk -t$THREADS -c$c -d${DURATION}s POST /api/v1/services/$route (machine busy before: $idle_before cores)"
  "$PY" "$HERE/machine.py" snap "$OUT/procs.json"
  t0="$(cpu_ticks "$SERVER_PID")"; m0="$("$PY" "$HERE/machine.py" busy)"
  "$PY" "$HERE/machine.py" run "$OUT/wrk-c$c-r$rep.cpu" \
    wrk -t"$THREADS" -c"$c" -d"${DURATION}s" --timeout 30s --latency -s "$HERE/submit.lua" \
    "$URL/api/v1/services/$route" >"$OUT/wrk-c$c-r$rep.txt"
  t1="$(cpu_ticks "$SERVER_PID")"; m1="$("$PY" "$HERE/machine.py" busy)"
  others="$("$PY" "$HERE/machine.py" top "$OUT/procs.json" "$DURATION" "$SERVER_PID" $$)"
  wrkcpu="$(awk -v w="$(cat "$OUT/wrk-c$c-r$rep.cpu")" -v d="$DURATION" 'BEGIN{printf "%.2f", w/d}')"
  foreign="$(awk -v a="$m0" -v b="$m1" -v s0="$t0" -v s1="$t1" -v t="$TICK" -v d="$DURATION" -v w="$wrkcpu" \
    'BEGIN{f=(b-a-(s1-s0))/t/d-w; if (f<0) f=0; printf "%.2f", f}')"
  drain="$("$PY" "$HERE/stats.py" "$URL" "$route" "$DRAIN_TIMEOUT")"
  wrkjson="$(sed -n 's/^WRKJSON //p' "$OUT/wrk-c$c-r$rep.txt")"
  cpu="$(awk -v a="$t0" -v b="$t1" -v t="$TICK" -v d="$DURATION" 'BEGIN{printf "%.2f", (b-a)/t/d}')"
  "$PY" - "$OUT/throughput.json" "$c" "$cpu" "$wrkjson" "$drain" "$wrkcpu" "$foreign" "$others" <<'PYEOF'
import json, sys
path, c, cpu, w, d, wc, fc, others = sys.argv[1:]
rows = json.load(open(path))
w, d = json.loads(w), json.loads(d)
w["non_202"] = sum(v for k, v in w["statuses"].items() if k != "202")
rows.append({"connections": int(c), "server_cpu_cores": float(cpu), "wrk_cpu_cores": float(wc),
             "other_cpu_cores": float(fc), "top_other_processes": others, "wrk": w, "drain": d})
json.dump(rows, open(path, "w"), indent=1)
PYEOF
  log "c=$c: $(grep -E 'Requests/sec' "$OUT/wrk-c$c-r$rep.txt") CPU cores: server $cpu, wrk $wrkcpu, other $foreign ($others)"
 done
done

# ---- (b) service hop ------------------------------------------------------------------------
create hop-noop "$NOOP"
create hop-service "{\"id\": \"mid\", \"type\": \"service\", \"url\": \"http://127.0.0.1:$SVC_PORT/hop\", \"next\": [\"end\"]}"
log "hop: $HOP_N sequential samples each (raw post, raw callback, noop task, service task); machine busy before: $(quiet) cores"
m0="$("$PY" "$HERE/machine.py" busy)"; s0="$(date +%s.%N)"
"$PY" "$HERE/hop.py" --server "$URL" --service "http://127.0.0.1:$SVC_PORT/hop" \
  --noop-route hop-noop --service-route hop-service -n "$HOP_N" >"$OUT/hop.json"
m1="$("$PY" "$HERE/machine.py" busy)"; s1="$(date +%s.%N)"
log "hop phase: whole machine averaged $(awk -v a="$m0" -v b="$m1" -v t="$TICK" -v x="$s0" -v y="$s1" 'BEGIN{printf "%.2f", (b-a)/t/(y-x)}') busy cores (bench itself included)"

# ---- summary --------------------------------------------------------------------------------
{
  echo "binary: $BIN ($(stat -c %y "$BIN" | cut -d. -f1)); tree: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock | grep -q . && echo ' + uncommitted changes')"
  echo "host: $(nproc) cores, $(uname -r), data dir on $(df -T "$DATA" | awk 'NR==2{print $2}'), durability: default (full: synchronous=FULL)"
  echo
} >"$OUT/summary.txt"
"$PY" - "$OUT/throughput.json" "$OUT/hop.json" >>"$OUT/summary.txt" <<'PYEOF'
import json, sys
rows, hop = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print("(a) submissions (entry -> node -> end), durable SQLite")
print(f"{'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'202':>8} {'non-202':>7} {'sock err':>8} {'srv cpu':>7} {'wrk cpu':>7} {'other':>5} {'created':>8} {'fin@0s':>8} {'drain s':>7}")
for r in rows:
    w, d = r["wrk"], r["drain"]
    e = w["errors"]
    print(f"{r['connections']:>5} {w['rps']:>9.0f} {w['p50_ms']:>8.2f} {w['p99_ms']:>8.2f} {w['max_ms']:>8.1f} "
          f"{w['statuses'].get('202', 0):>8} {w['non_202']:>7} {e['connect']+e['read']+e['write']+e['timeout']:>8} "
          f"{r['server_cpu_cores']:>7.2f} {r['wrk_cpu_cores']:>7.2f} {r['other_cpu_cores']:>5.2f} {d['final']['total']:>8} {d['at_end_of_load']['finished']:>8} "
          f"{str(d['drain_s']) if d['all_ended'] else 'NOT ALL':>7}  failed={d['final']['failed']}  others: {r['top_other_processes']}")
print("\n(b) service hop, sequential, ms")
for k in ("raw_post", "raw_callback", "task_noop", "task_service"):
    s = hop[k]
    print(f"{k:>14}: p50 {s['p50_ms']:7.3f}  p99 {s['p99_ms']:7.3f}  mean {s['mean_ms']:7.3f}  min {s['min_ms']:7.3f}  (n={s['n']})")
for k in ("overhead_vs_raw_callback", "hop_marginal", "hop_marginal_minus_raw"):
    print(f"{k:>26}: p50 {hop[k]['p50_ms']:7.3f}  p99 {hop[k]['p99_ms']:7.3f}")
print("service task by segment (ms):")
for k, v in hop.get("task_service_breakdown", {}).items():
    print(f"  {k:>36}: p50 {v['p50_ms']:7.3f}  p99 {v['p99_ms']:7.3f}")
best = max(r["wrk"]["rps"] for r in rows)
print(f"\nTARGETS: submissions {best:.0f}/s vs 5000 -> {'MET' if best >= 5000 else 'MISSED'}; "
      f"hop overhead p50 {hop['overhead_vs_raw_callback']['p50_ms']:.3f} ms vs 2 ms -> "
      f"{'MET' if hop['overhead_vs_raw_callback']['p50_ms'] <= 2 else 'MISSED'}")
PYEOF
cat "$OUT/summary.txt"

# ---- profile (when a target is missed, or PROFILE=1) ----------------------------------------
if [[ "$PROFILE" == 1 ]] || { [[ "$PROFILE" == auto ]] && grep -q MISSED "$OUT/summary.txt"; }; then
  pc="${PROFILE_CONNS:-64}"
  create noop-prof "$NOOP"
  if perf stat -e instructions true >/dev/null 2>&1; then
    log "perf record (dwarf call graphs) on the server during wrk -c$pc -d${DURATION}s (machine busy before: $(quiet) cores)"
    perf record -F 499 -g --call-graph dwarf,16384 -o "$OUT/perf.data" -p "$SERVER_PID" \
      -- sleep "$((DURATION + 1))" >/dev/null 2>"$OUT/perf-record.log" &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.5
    wrk -t"$THREADS" -c"$pc" -d"${DURATION}s" --timeout 30s --latency -s "$HERE/submit.lua" \
      "$URL/api/v1/services/noop-prof" >"$OUT/wrk-perf.txt"
    wait "$PERF_PID" || true
    squeeze() { sed -e 's/   */  /g' -e 's/ *- *- *$//' | grep -v '^#' | grep -v '^$' | cut -c1-200; }
    perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio --percent-limit 0.7 \
      -g none 2>/dev/null | squeeze | head -40 >"$OUT/perf-self.txt" || true
    # Inclusive time of the interesting frames (Tessera code, SQLite, fsync, thread creation).
    perf report -i "$OUT/perf.data" --children --sort symbol --stdio --percent-limit 0.5 \
      -g none 2>/dev/null | squeeze \
      | grep -E '\] (<?tessera_[a-z_]+::[A-Za-z_:<> ]+(::[a-z_]+)?|sqlite3_step|sqlite3_prepare_v3|sqlite3WalFrames.*|__GI_fsync.*|__x64_sys_fsync|clone3|__pthread_create_2_1|malloc|_int_free|__x64_sys_futex|__x64_sys_mmap|__x64_sys_munmap|serde_json::de::from_trait.*|tracing_subscriber::fmt::[a-z_:]+)( |$)' \
      | head -60 >"$OUT/perf-children.txt" || true
    perf report -i "$OUT/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null \
      | squeeze | head -8 >"$OUT/perf-threads.txt" || true
    echo "perf: $(grep -c . "$OUT/perf-self.txt") self / $(grep -c . "$OUT/perf-children.txt") inclusive lines in $OUT/perf-*.txt" >&2
  else
    log "perf unavailable (perf stat -e instructions true failed): skipping perf record"
  fi
  "$PY" "$HERE/stats.py" "$URL" noop-prof "$DRAIN_TIMEOUT" >/dev/null
  if command -v strace >/dev/null; then
    log "strace -f -c (fsync/fdatasync/write/futex) on the server during wrk -c$pc -d5s"
    before="$("$PY" -c "import json,urllib.request;print(json.load(urllib.request.urlopen('$URL/api/v1/stats'))['pipelines']['noop-prof']['total'])")"
    strace -qq -f -c -e trace=fsync,fdatasync,pwrite64,write,futex -o "$OUT/strace.txt" -p "$SERVER_PID" &
    STRACE_PID=$!
    PIDS+=("$STRACE_PID")
    sleep 1
    wrk -t"$THREADS" -c"$pc" -d5s --timeout 30s -s "$HERE/submit.lua" \
      "$URL/api/v1/services/noop-prof" >"$OUT/wrk-strace.txt"
    "$PY" "$HERE/stats.py" "$URL" noop-prof "$DRAIN_TIMEOUT" >"$OUT/strace-drain.json"
    kill -INT "$STRACE_PID" 2>/dev/null || true
    wait "$STRACE_PID" 2>/dev/null || true
    after="$("$PY" -c "import json;print(json.load(open('$OUT/strace-drain.json'))['final']['total'])")"
    tasks=$((after - before))
    fs="$(awk '$NF=="fsync"||$NF=="fdatasync"{n+=$4} END{print n+0}' "$OUT/strace.txt")"
    echo "strace: $tasks tasks created and finished, $fs fsync+fdatasync calls -> $(awk -v a="$fs" -v b="$tasks" 'BEGIN{printf "%.2f", (b?a/b:0)}') per task" \
      | tee -a "$OUT/summary.txt"
  fi
fi
[[ "${KEEP_PERF:-0}" == 1 ]] || rm -f "$OUT/perf.data" "$OUT/perf.data.old"
# The server logs every task state at info (hundreds of MB here): keep the size and the tail.
log "server log: $(du -h "$OUT/server.log" | cut -f1) ($(wc -l <"$OUT/server.log") lines); keeping the last 50 lines"
tail -n 50 "$OUT/server.log" >"$OUT/server.log.tail" && rm -f "$OUT/server.log"
log "done; outputs in $OUT"
