#!/usr/bin/env bash
# Runs Tessera's whole test suite: formatting, lints, then every test of every crate.
# Works on a fresh clone; builds go to a persistent target dir so CI re-runs stay fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tessera-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Python environment of the example services (OpenCV, Pillow): the end-to-end tests run them.
bash examples/services/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
