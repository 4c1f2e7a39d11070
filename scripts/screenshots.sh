#!/usr/bin/env bash
# Regenerates the web UI's screenshots in docs/screenshots/: starts `tessera serve` on a
# throw-away data dir, stores the example pipelines, runs a few tasks (one finished, one
# failed), then has headless Chromium (Debian's `chromium`) photograph each main page.
#
#   scripts/screenshots.sh            # builds the debug binary first
#   TESSERA_BIN=path/to/tessera scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tessera-target}"
if [ -z "${TESSERA_BIN:-}" ]; then
    cargo build -p tessera >&2
    TESSERA_BIN="$CARGO_TARGET_DIR/debug/tessera"
fi
command -v chromium >/dev/null || { echo "chromium is missing: bash scripts/test-env/system-packages.sh" >&2; exit 1; }
out="docs/screenshots"
mkdir -p "$out"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
"$TESSERA_BIN" serve --addr "127.0.0.1:$port" --data-dir "$work/data" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 100); do curl -fs "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done

post() { curl -fsS -X POST "$url/api/v1/pipelines" -H 'content-type: application/yaml' --data-binary "@$1" >/dev/null; }
for p in examples/pipelines/word-lengths.yaml examples/pipelines/branch-loop.yaml \
         examples/pipelines/command-chain.yaml examples/services/pipelines/face-blur.yaml; do
    post "$p"
done
cat > "$work/flaky.yaml" <<'EOF'
nodes:
  - {id: in, type: entry, api: {route: flaky, summary: "A command that fails until fixed"}, next: [check]}
  - {id: check, type: command, shell: true, command: "echo checking; echo 'missing input file' >&2; exit 3", next: [end]}
  - {id: end, type: end}
EOF
post "$work/flaky.yaml"
start() { curl -fsS -X POST "$url/api/v1/services/$1" -H 'content-type: application/json' -d "$2" |
          python3 -c 'import json,sys;print(json.load(sys.stdin)["task_id"])'; }
words=$(start word-lengths '{"words": ["tessera", "pipeline", "loop", "branch", "chunk"]}')
start count-up '{"n": 4}' >/dev/null
failed=$(start flaky '{}')
sleep 2

shot() {
    rm -f "$out/$1.png"
    timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-background-networking \
        --hide-scrollbars --window-size="${3:-1280,900}" --virtual-time-budget=3000 \
        --screenshot="$out/$1.png" "$url$2" >/dev/null 2>&1 || true
    [ -s "$out/$1.png" ] || { echo "no screenshot of $2" >&2; exit 1; }
    echo "$out/$1.png"
}
# Live pages keep a connection open; `?live=off` photographs them as served.
live_off() { case "$1" in *\?*) echo "$1&live=off" ;; *) echo "$1?live=off" ;; esac
}
shot pipelines /
shot pipeline-graph /ui/pipelines/count-up
shot run-form /ui/pipelines/word-lengths/run
shot task "$(live_off "/ui/tasks/$words")" 1280,1400
shot task-failed "$(live_off "/ui/tasks/$failed")"
shot engine "$(live_off /ui/engine)"
shot narrow / 420,900
