#!/usr/bin/env bash
# The bench job on Tessera's `batch` node: tessera_len.sh TESSERA_BIN IN.csv OUT.csv [checkpoints]
# Same job as the other tools (add `length` = Unicode characters of `patronyme`), 160,000-row
# chunks, parallelism 2, a fresh durable data dir (SQLite, fsync) per run. checkpoints=false
# measures the same run without checkpoints (nothing synced, nothing committed per chunk).
set -euo pipefail
bin="$1"; in="$2"; out="$3"; checkpoints="${4:-true}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/job.yaml" <<YAML
nodes:
  - {id: start, type: entry, next: [lengths]}
  - id: lengths
    type: batch
    reader: {format: csv, path: "$in"}
    processor: {columns: {length: "row.patronyme.len()"}}
    writer: {format: csv, path: "$out"}
    chunk_size: 160000
    parallelism: 2
    checkpoints: $checkpoints
    next: [end]
  - {id: end, type: end}
YAML
"$bin" run --data-dir "$work/data" "$work/job.yaml" > /dev/null
