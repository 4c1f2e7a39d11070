#!/usr/bin/env bash
# The task document of a 10,000-item loop (issue 12): runs a loop over ITEMS integers with a
# trivial `node` body to completion in a data dir (durable SQLite), then times
#   - GET /api/v1/tasks/{id} on `tessera serve` over that data dir (curl, keep-alive off), and
#   - `tessera tasks show ID --json` (a whole process: start, open the store, build, print),
# RUNS times each after two warm-up calls, and prints median, min and max in milliseconds.
#
#   bench/server/task_document.sh [BIN...]      (default: $CARGO_TARGET_DIR/release/tessera)
#   ITEMS=10000 RUNS=15 bench/server/task_document.sh before/tessera after/tessera
#
# Several binaries are measured one after the other, each on a task it ran itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bins=("$@")
[ ${#bins[@]} -eq 0 ] && bins=("${CARGO_TARGET_DIR:-$root/target}/release/tessera")
ITEMS="${ITEMS:-10000}"
RUNS="${RUNS:-15}"
work="$(mktemp -d /var/tmp/tessera-taskdoc.XXXXXX)"   # ext4, real fsync (not tmpfs)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat > "$work/loop.yaml" <<'EOF'
nodes:
  - {id: in, type: entry, api: {route: taskdoc, body: {items: [1]}}, next: [each]}
  - id: each
    type: loop
    items: in.out.items
    next: [end]
    nodes:
      - {id: body, type: node, after: "out = item;"}
  - {id: end, type: end}
EOF
python3 -c "import json,sys; json.dump({'items': list(range(int(sys.argv[1])))}, open(sys.argv[2], 'w'))" \
  "$ITEMS" "$work/input.json"

# Median, min and max of the numbers on stdin (ms).
stats() { python3 -c '
import statistics, sys
v = [float(x) for x in sys.stdin.read().split()]
print(f"median {statistics.median(v):8.1f} ms   min {min(v):8.1f}   max {max(v):8.1f}   ({len(v)} runs)")'; }

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "loop of $ITEMS items, $RUNS timed runs after 2 warm-ups"
for bin in "${bins[@]}"; do
  data="$work/data-$RANDOM"
  echo
  echo "== $bin"
  started=$(date +%s.%N)
  task=$("$bin" run "$work/loop.yaml" --input "@$work/input.json" --data-dir "$data" \
           2>&1 >/dev/null | awk '/^task /{print $2; exit}')
  echo "task $task ran in $(python3 -c "import time;print(f'{time.time()-$started:.1f}')") s"
  port=$(free_port)
  "$bin" serve --addr "127.0.0.1:$port" --data-dir "$data" 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  url="http://127.0.0.1:$port/api/v1/tasks/$task"
  size=$(curl -fsS "$url" | wc -c)
  curl -fsS -o /dev/null "$url"
  echo "document: $size bytes"
  printf 'GET /api/v1/tasks/{id}:        '
  for _ in $(seq "$RUNS"); do
    curl -fsS -o /dev/null -w '%{time_total}\n' "$url" | awk '{print $1 * 1000}'
  done | stats
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  "$bin" tasks show "$task" --json --data-dir "$data" >/dev/null
  "$bin" tasks show "$task" --json --data-dir "$data" >/dev/null
  printf 'tessera tasks show --json:     '
  for _ in $(seq "$RUNS"); do
    python3 -c '
import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print((time.perf_counter() - t) * 1000)' "$bin" tasks show "$task" --json --data-dir "$data"
  done | stats
done
