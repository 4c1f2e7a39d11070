#!/usr/bin/env bash
# Creates the test helpers' venv (moto's S3 server, the validators of scripts/check-deploy.sh) once;
# prints the venv's bin directory.
# Idempotent: nothing is installed when requirements.txt has not changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${TESSERA_TEST_VENV:-/var/tmp/tessera-test-venv}"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt" >&2
    echo "$want" > "$venv/.requirements.sha256"
fi
echo "$venv/bin"
