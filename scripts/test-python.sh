#!/usr/bin/env bash
# The Python package: builds the abi3 wheel with maturin (from PyPI) in a fresh venv, installs
# it, and runs pytest on python/tests. Called by scripts/test.sh; runs alone as well.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tessera-target}"
# The interpreter pyo3's build script asks; the same one the venv is made from.
export PYO3_PYTHON="${PYO3_PYTHON:-$(command -v python3)}"
venv="$(mktemp -d /tmp/tessera-py.XXXXXX)"
trap 'rm -rf "$venv"' EXIT
"$PYO3_PYTHON" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin numpy pytest "dask[array]"
# A target dir of its own: maturin's flags would otherwise rebuild pyo3 for cargo test.
(cd python && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/python-wheel" "$venv/bin/maturin" build \
  --locked --profile dev -i "$venv/bin/python" --compatibility linux --out "$venv/wheels" -q)
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$venv"/wheels/*.whl
# The client tests drive a real `tessera serve`: the suite's debug binary (built if missing).
if [ -z "${TESSERA_BIN:-}" ]; then
  cargo build -q --locked -p tessera
  export TESSERA_BIN="$CARGO_TARGET_DIR/debug/tessera"
fi
# From outside python/ so that the installed package, not the source folder, is imported.
root="$PWD"
(cd / && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests")
