#!/usr/bin/env bash
# Property-based API test of `tessera serve` with schemathesis, against the server's own
# /openapi.json: no 5xx, and every status, content type, header and body as the document says.
#
#   scripts/schemathesis/run.sh            (after `cargo build -p tessera`)
#
# Environment:
#   TESSERA_BIN           the binary (default: ${CARGO_TARGET_DIR:-target}/debug/tessera)
#   SCHEMATHESIS_VENV     the venv, made or updated only when requirements.txt changed
#                         (default /var/tmp/tessera-schemathesis-venv)
#   SCHEMATHESIS_EXAMPLES test cases per operation and phase (default 200: about 45 s)
#   SCHEMATHESIS_SEED     hypothesis seed (default 20261121, fixed so runs are reproducible)
#   SCHEMATHESIS_CHECKS   override the list of checks (e.g. `all` to explore)
#   SCHEMATHESIS_KEEP=1   keep the work dir (server log, reports) even when all passed
#
# It starts a fresh server (temp data dir, no tokens, free loopback port), a do-nothing service
# (fake_service.py, also loopback only), seeds pipelines and tasks through the API so the fuzzed
# operations reach real data, runs schemathesis, stops everything it started, and closes with
# `schemathesis: N passed, N failed` (N = API operations, plus the stateful scenarios as one).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

venv="${SCHEMATHESIS_VENV:-/var/tmp/tessera-schemathesis-venv}"
bin="${TESSERA_BIN:-${CARGO_TARGET_DIR:-target}/debug/tessera}"
examples="${SCHEMATHESIS_EXAMPLES:-200}"
seed="${SCHEMATHESIS_SEED:-20261121}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "schemathesis: no tessera binary at $bin (run: cargo build -p tessera, or set TESSERA_BIN)" >&2
  echo "schemathesis: 0 passed, 1 failed"
  exit 1
fi

# --- the venv: (re)installed only when missing or when requirements.txt changed ---------------
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$venv/.tessera-requirements" 2>/dev/null)" != "$want" ]; then
  echo "schemathesis: installing into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$venv/.tessera-requirements"
fi
py="$venv/bin/python"

# --- processes, cleaned up on any exit -------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/tessera-schemathesis.XXXXXX")"
server_pid=""
service_pid=""
status=1
cleanup() {
  for pid in $service_pid $server_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $service_pid $server_pid; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -eq 0 ] && [ "${SCHEMATHESIS_KEEP:-0}" != 1 ]; then
    rm -rf "$work"
  else
    echo "schemathesis: server log, seed and reports kept in $work" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
mkdir -p "$work/data"
# A clean environment for the server: no tokens, no tessera.toml (cwd is the work dir), its own
# data dir; a long announce period so the seeded service stays registered for the whole run.
(cd "$work" && exec env -u TESSERA_TOKENS -u TESSERA_CONFIG -u TESSERA_DB -u TESSERA_STORE \
  -u TESSERA_DATA_DIR -u TESSERA_PUBLIC_URL -u TESSERA_ADDR \
  "$bin" serve --addr "127.0.0.1:$port" --data-dir "$work/data" --announce-period 3600 \
  >"$work/server.log" 2>&1) &
server_pid=$!

for _ in $(seq 1 100); do
  if curl -fsS "$base/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis: the server exited at start:" >&2; cat "$work/server.log" >&2
    echo "schemathesis: 0 passed, 1 failed"; exit 1
  fi
  sleep 0.2
done
curl -fsS "$base/health" >/dev/null

"$py" "$here/fake_service.py" "$work/service.port" "$work/callbacks.txt" &
service_pid=$!
for _ in $(seq 1 50); do [ -s "$work/service.port" ] && break; sleep 0.1; done
service_port="$(cat "$work/service.port")"

# --- seed: pipelines, a service, tasks, objects and live callback tokens ---------------------
if ! TESSERA_BASE="$base" SERVICE_URL="http://127.0.0.1:$service_port" WORK="$work" \
  "$py" "$here/seed.py"; then
  echo "schemathesis: seeding through the API failed (server log: $work/server.log)" >&2
  echo "schemathesis: 0 passed, 1 failed"; exit 1
fi

# --- the run ---------------------------------------------------------------------------------
# Excluded operations, and why:
#   GET /api/v1/events  server-sent events: an endless stream, a request never completes.
# Every other operation terminates (object bytes are finite, logs are read once, not followed).
# Checks: no_5xx, and the response conformance ones; `negative_data_rejection` and
# `positive_data_acceptance` are left out: the document is deliberately loose on some bodies
# (a pipeline definition is validated by the engine, not by the schema), so they would only
# report that looseness. `use_after_free` is left out too: hooks.py posts the seeded pipelines
# again after a DELETE of one, so it would see a deleted pipeline come back.
# One worker: runs are reproducible for a seed, and the hooks' restore cannot race a fuzzed call.
# `timeout 240`: a hard stop well above the usual ~40 s, so a hung request cannot stall CI.
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks=${SCHEMATHESIS_CHECKS:-$checks,response_headers_conformance,response_schema_conformance}
set +e
(cd "$work" && TESSERA_ST_SEED="$work/seed.json" TESSERA_ST_HOOKLOG="$work/hooks.log" \
  SCHEMATHESIS_HOOKS="$here/hooks.py" \
  timeout 240 "$venv/bin/schemathesis" --no-color --config-file "$work/schemathesis.toml" run \
  "$base/openapi.json" \
  --exclude-path /api/v1/events \
  --checks "$checks" \
  --max-examples "$examples" --seed "$seed" --generation-database none \
  --continue-on-failure --workers 1 --request-timeout 20 --wait-for-schema 10 \
  --report junit --report-junit-path "$work/junit.xml" \
  2>&1 | tee "$work/schemathesis.log")
st_status=${PIPESTATUS[0]}
set -e

if [ ! -s "$work/junit.xml" ]; then
  echo "schemathesis: no report (exit $st_status; 124 means it ran past 240 s)" >&2
  echo "schemathesis: 0 passed, 1 failed"; exit 1
fi
read -r passed failed < <(python3 - "$work/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
bad = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
skipped = [c for c in cases if c.find("skipped") is not None]
print(len(cases) - len(bad) - len(skipped), len(bad))
EOF
)
if [ "$failed" -eq 0 ] && [ "$st_status" -ne 0 ]; then failed=1; fi  # an error outside any case
if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then status=0; fi
echo "schemathesis: $passed passed, $failed failed"
exit "$status"
