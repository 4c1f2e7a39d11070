#!/usr/bin/env bash
# Peak memory of `tessera serve` per request: a 9 MB JSON body to a one-node pipeline, without
# and with a script (`after: out.seen = true`), one request and four at once, for three shapes
# of body (records, one long string, a list of numbers). Reports the growth of the server's
# peak RSS (VmHWM, reset before each request) over the body's size.
#
#   bench/server/memory.sh [BIN...]      (default: target/release/tessera)
#
# Several binaries are measured side by side, one after the other on the same bodies.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bins=("$@")
[ ${#bins[@]} -eq 0 ] && bins=("${CARGO_TARGET_DIR:-$root/target}/release/tessera")
work="$(mktemp -d "${TMPDIR:-/tmp}/tessera-memory.XXXXXX")"
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
target = 9_000_000
rows, size, i = [], 0, 0
while size < target:
    r = {"id": i, "name": f"name-{i}", "score": i * 0.5, "ok": i % 2 == 0}
    rows.append(r); size += len(json.dumps(r)) + 2; i += 1
bodies = {
    "records": {"rows": rows},
    "string": {"text": "x" * target},
    "numbers": {"nums": list(range(target // 8))},
}
for name, body in bodies.items():
    with open(f"{work}/{name}.json", "w") as f:
        json.dump(body, f)
EOF
cat > "$work/plain.yaml" <<'EOF'
nodes:
  - {id: in, type: entry, api: {route: plain}, next: [work]}
  - {id: work, type: node, next: [end]}
  - {id: end, type: end}
EOF
cat > "$work/script.yaml" <<'EOF'
nodes:
  - {id: in, type: entry, api: {route: script}, next: [work]}
  - {id: work, type: node, after: "out.seen = true;", next: [end]}
  - {id: end, type: end}
EOF

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }

# measure BIN ROUTE BODY PARALLEL → "growth_MiB ratio state"
measure() {
  local bin=$1 route=$2 body=$3 parallel=$4
  local data="$work/data-$RANDOM" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve --addr "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>"$work/serve.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  for p in plain script; do
    curl -sf -X POST --data-binary @"$work/$p.yaml" -H 'content-type: application/yaml' \
      "127.0.0.1:$port/api/v1/pipelines" >/dev/null
  done
  sleep 0.3
  echo 5 > "/proc/$pid/clear_refs"
  local before
  before=$(kib VmRSS "$pid")
  for _ in $(seq "$parallel"); do
    curl -sf -X POST -H 'content-type: application/json' --data-binary @"$body" \
      "127.0.0.1:$port/api/v1/services/$route" >/dev/null &
  done
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
  # Until every task has ended (the list holds states only: no big documents read).
  local state=""
  for _ in $(seq 600); do
    state=$(curl -sf "127.0.0.1:$port/api/v1/stats" | python3 -c \
      'import json,sys; s=json.load(sys.stdin); print("done" if s["total"] and s["total"] == s["finished"] + s["failed"] else "running")')
    [ "$state" = done ] && break
    sleep 0.1
  done
  local peak size
  peak=$(kib VmHWM "$pid")
  size=$(stat -c %s "$body")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  python3 -c "g=($peak-$before)*1024; print(f'{g/2**20:8.0f} MiB {g/($size*$parallel):6.1f}x')"
}

printf '%-44s %-8s %-7s %-4s %16s\n' binary body script at_once "peak RSS growth"
for bin in "${bins[@]}"; do
  for shape in records string numbers; do
    for route in plain script; do
      for parallel in 1 4; do
        printf '%-44s %-8s %-7s %-4s %s\n' "$(basename "$(dirname "$(dirname "$bin")")")/$(basename "$bin")" \
          "$shape" "$([ $route = script ] && echo yes || echo no)" "$parallel" \
          "$(measure "$bin" "$route" "$work/$shape.json" "$parallel")"
      done
    done
  done
done
echo "growth = peak RSS during the requests minus RSS before; x = growth / (body size × requests)"
