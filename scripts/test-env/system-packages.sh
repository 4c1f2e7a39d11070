#!/usr/bin/env bash
# Debian packages the test suite needs: gdal-bin (the raster tests check written GeoTIFFs with
# gdalinfo), libgdal-dev (tessera-raster's `gdal` feature), chromium and chromium-driver (the
# web UI's browser tests, headless). Installs only what is missing;
# needs root when something is missing (apt-get update first).
set -euo pipefail
missing=()
for pkg in gdal-bin libgdal-dev chromium chromium-driver; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "[system-packages] installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
