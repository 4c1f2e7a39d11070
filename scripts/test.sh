#!/usr/bin/env bash
# Runs Tessera's whole test suite: formatting, lints, then every test of every crate.
# Works on a fresh clone; builds go to a persistent target dir so CI re-runs stay fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tessera-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The interpreter pyo3 (crates/tessera-py) builds against, whatever python3 comes first later.
export PYO3_PYTHON="${PYO3_PYTHON:-$(command -v python3)}"
# Debian packages: GDAL's tools and library (raster tests, the `gdal` feature).
bash scripts/test-env/system-packages.sh
# Python environment of the example services (OpenCV, Pillow): the end-to-end tests run them.
bash examples/services/setup.sh
# An S3-compatible server (moto) for the object store tests.
TESSERA_MOTO_SERVER="$(bash scripts/test-env/setup.sh | tail -n 1)/moto_server"
export TESSERA_MOTO_SERVER
# A throw-away PostgreSQL cluster: the store contract and the scale-out tests run against it.
pg_dir="$(mktemp -d /tmp/tessera-pg.XXXXXX)"
trap 'bash scripts/test-env/postgres.sh stop "$pg_dir"' EXIT
TESSERA_TEST_PG="$(bash scripts/test-env/postgres.sh start "$pg_dir")"
export TESSERA_TEST_PG
cargo fmt --all -- --check
# The layering rules of ARCHITECTURE.md, from the dependency graph.
bash scripts/check-layers.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# tessera-raster's optional GDAL source (every format GDAL reads), against Debian's libgdal.
cargo clippy -p tessera-raster --features gdal --all-targets --locked -- -D warnings
cargo test -p tessera-raster --features gdal --locked
# The Python bindings with that source (a wheel built with `--features gdal`).
cargo clippy -p tessera-py --features gdal --all-targets --locked -- -D warnings
# The Python package: the abi3 wheel built by maturin in a fresh venv, then pytest.
bash scripts/test-python.sh
# The deployment files (Dockerfile, deploy/): schemas, consistency, their tessera command lines.
bash scripts/check-deploy.sh
# The API against its own OpenAPI document (no 5xx, responses as documented).
TESSERA_BIN="$CARGO_TARGET_DIR/debug/tessera" scripts/schemathesis/run.sh
