#!/usr/bin/env bash
# Checks the layering rules of ARCHITECTURE.md ("must not depend on …") with `cargo tree`:
# for each crate, the crates it must not reach through its normal dependencies (at any depth),
# and those it must not use directly. Exits 1 naming every broken rule.
set -euo pipefail
cd "$(dirname "$0")/.."

# Normal (non-dev) dependencies of a crate: every one (any depth), or only its own (depth 1).
deps() { cargo tree -p "$1" -e normal --prefix none --locked ${2:+--depth "$2"} | awk '{print $1}' | sort -u; }

broken=0
# forbid CRATE DEPTH(all|1) DEP... — CRATE must not reach any DEP.
forbid() {
  local crate=$1 depth=$2; shift 2
  local found
  found=$(deps "$crate" "$([ "$depth" = 1 ] && echo 1)")
  for dep in "$@"; do
    if grep -qx "$dep" <<<"$found"; then
      echo "layering: $crate must not depend on $dep ($([ "$depth" = 1 ] && echo directly || echo at any depth))" >&2
      broken=1
    fi
  done
}

# The pure core: no I/O, no runtime, nothing above it.
forbid tessera-core all tokio rusqlite sqlx reqwest object_store hyper axum \
  tessera-store tessera-engine tessera-server tessera-batch
# The raster engine knows no other Tessera crate.
forbid tessera-raster all tessera-core tessera-store tessera-engine tessera-server tessera-batch \
  rusqlite sqlx axum
# The batch crate: no scheduler, store or server.
forbid tessera-batch all tessera-store tessera-engine tessera-server rusqlite sqlx axum
# The store: no engine, no serving.
forbid tessera-store all tessera-engine tessera-server axum
# The engine: SQL only through the store, no serving.
forbid tessera-engine 1 rusqlite sqlx axum
forbid tessera-engine all tessera-server
# The server: SQL only through the store.
forbid tessera-server 1 rusqlite sqlx
# The Python bindings: bindings only, no SQL, no serving (pipelines go through the binary).
forbid tessera-py 1 rusqlite sqlx axum tokio
forbid tessera-py all tessera-server

if [ "$broken" = 1 ]; then
  exit 1
fi
echo "layering: every rule of ARCHITECTURE.md holds"
