#!/usr/bin/env bash
# bench/raster: what the buzzard side needs. Idempotent: does nothing when all is in place.
# 1. Debian packages (python3, python3-venv, python3-gdal, python3-numpy), installed only when
#    missing, as root or through sudo (apt-get update first, as scripts/test-env/system-packages.sh).
# 2. .venv/ from Debian's /usr/bin/python3 with --system-site-packages (so `osgeo.gdal` and numpy
#    come from Debian; a pyenv/other python3 first on PATH would not see them), then the pinned
#    closure of requirements.txt with --no-deps (buzzard 0.6.5 from PyPI). Re-done when
#    requirements.txt changes (its hash is kept in .venv/.requirements.sha256).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PY=/usr/bin/python3

missing=()
for pkg in python3 python3-venv python3-gdal python3-numpy; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "[setup] missing Debian packages ${missing[*]}: run as root or install sudo" >&2
            exit 1
        fi
    fi
    echo "[setup] installing ${missing[*]}" >&2
    "${SUDO[@]}" apt-get update -qq >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

want="$(sha256sum requirements.txt | cut -d' ' -f1)"
have="$(cat .venv/.requirements.sha256 2>/dev/null || true)"
# (A bare `import buzzard` fails on numpy 1.24: the check goes through the script's shim.)
if [ "$want" != "$have" ] || ! .venv/bin/python buzzard_mandelbrot.py versions >/dev/null 2>&1; then
    echo "[setup] creating .venv (buzzard + pinned deps)" >&2
    rm -rf .venv
    "$PY" -m venv --system-site-packages .venv
    .venv/bin/pip install -q --disable-pip-version-check --prefer-binary --no-deps -r requirements.txt >&2
    .venv/bin/python buzzard_mandelbrot.py versions >&2
    echo "$want" > .venv/.requirements.sha256
fi
