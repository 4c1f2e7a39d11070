#!/usr/bin/env bash
# Creates examples/services/.venv and installs requirements.txt into it.
# Idempotent: does nothing (fast) when the venv exists and requirements.txt has not changed
# since the last successful install. Prints the venv's python path on the last line.
#   bash examples/services/setup.sh            # then: examples/services/.venv/bin/python ...
#   PYTHON=python3.11 bash examples/services/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv" >&2
    "$python" -m venv "$venv"
fi
echo "installing $(grep -cvE '^\s*(#|$)' "$req") packages from $req" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
