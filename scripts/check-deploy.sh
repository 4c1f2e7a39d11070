#!/usr/bin/env bash
# Checks the deployment files (Dockerfile, deploy/compose.yaml, deploy/kubernetes/) without a
# Docker engine or a Kubernetes cluster: schemas (kubernetes-validate for two Kubernetes
# versions, the Compose specification's JSON schema), consistency between the files, pod
# security, and every tessera command line they hold, parsed by the real binary (`--help`).
# See scripts/check_deploy.py for the list. Exits 1 naming each file and problem.
#
#   bash scripts/check-deploy.sh          (after `cargo build -p tessera`)
#
# Environment:
#   TESSERA_BIN                  the binary (default ${CARGO_TARGET_DIR:-/var/tmp/tessera-target}/debug/tessera)
#   TESSERA_DEPLOY_K8S_VERSIONS  Kubernetes versions to validate against (default "1.29 1.35")
#   TESSERA_TEST_VENV            the Python venv of scripts/test-env/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TESSERA_BIN="${TESSERA_BIN:-${CARGO_TARGET_DIR:-/var/tmp/tessera-target}/debug/tessera}"
venv_bin="$(bash scripts/test-env/setup.sh | tail -n 1)"
exec "$venv_bin/python" scripts/check_deploy.py
