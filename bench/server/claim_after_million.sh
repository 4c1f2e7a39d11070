#!/usr/bin/env bash
# The claim query on PostgreSQL with 1,000,000 finished tasks in the table, against an empty
# table: the queue is the partial index of tasks not ended, so it costs the same.
#   bench/server/claim_after_million.sh TESSERA_BIN
# Starts a throw-away durable cluster (scripts/test-env/postgres.sh), creates two databases
# with `tessera migrate`, fills one with 1,000,000 finished tasks, adds 256 pending tasks to
# both, and times the claim statement Tessera runs (`EXPLAIN ANALYZE`, 20 times each, in a
# transaction rolled back so every round claims the same rows). Prints the median per database.
set -euo pipefail
BIN="${1:?usage: claim_after_million.sh TESSERA_BIN}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PSQL=/usr/lib/postgresql/15/bin/psql
dir="$(mktemp -d /tmp/tessera-claim.XXXXXX)"
trap 'bash "$ROOT/scripts/test-env/postgres.sh" stop "$dir"' EXIT
url="$(TESSERA_PG_DURABLE=1 bash "$ROOT/scripts/test-env/postgres.sh" start "$dir")"
base="${url%/*}"
for db in empty million; do
    "$PSQL" "$url" -qc "CREATE DATABASE $db"
    "$BIN" migrate --db "$base/$db" 2>/dev/null
done
"$PSQL" "$base/million" -qc "
  INSERT INTO tasks (id, pipeline, definition, input, state, created_at, updated_at, fence)
  SELECT 'done-' || g, 'p', '{}', '{}', 'finished', g, g, 2 FROM generate_series(1, 1000000) g;"
"$PSQL" "$base/million" -qc "VACUUM ANALYZE tasks"
claim="BEGIN;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) WITH picked AS (
    SELECT id FROM tasks WHERE state IN ('pending', 'running')
      AND (lease_until IS NULL OR lease_until < 9999999999999) AND runner IS DISTINCT FROM 'me'
    ORDER BY created_at LIMIT 256 FOR UPDATE SKIP LOCKED)
 UPDATE tasks t SET state = 'pending', runner = 'me', fence = t.fence + 1, lease_until = 1
 FROM picked WHERE t.id = picked.id RETURNING t.id;
ROLLBACK;"
for db in empty million; do
    "$PSQL" "$base/$db" -qc "
      INSERT INTO tasks (id, pipeline, definition, input, state, created_at, updated_at, fence, lease_until)
      SELECT 'new-' || g, 'p', '{}', '{}', 'pending', 2000000 + g, 2000000 + g, 1, 0
      FROM generate_series(1, 256) g; ANALYZE tasks;"
    rows="$("$PSQL" "$base/$db" -Atc "SELECT count(*) FROM tasks")"
    times=()
    for _ in $(seq 20); do
        t="$("$PSQL" "$base/$db" -At -c "$claim" | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p')"
        times+=("$t")
    done
    median="$(printf '%s\n' "${times[@]}" | sort -n | sed -n 10p)"
    echo "{\"database\": \"$db\", \"tasks\": $rows, \"claimed\": 256, \"claim_ms_median\": $median}"
done
