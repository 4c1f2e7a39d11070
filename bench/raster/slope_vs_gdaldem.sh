#!/usr/bin/env bash
# bench/raster: `tessera raster slope` vs `gdaldem slope` on the same synthetic DEM (f32,
# SIZE × SIZE, default 8192, deflate-free GeoTIFF made once with GDAL's Python bindings), side by
# side: wall time and peak RSS (GNU time), Tessera without a cache, with a cold cache, and warm
# (nothing computed). Outputs are compared (max abs difference over valid pixels).
#   bench/raster/slope_vs_gdaldem.sh            # SIZE=8192 RUNS=3
#   SIZE=4096 RUNS=5 TESSERA_BIN=/path/to/tessera bench/raster/slope_vs_gdaldem.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SIZE="${SIZE:-8192}"
RUNS="${RUNS:-3}"
DATA="$HERE/data"
mkdir -p "$DATA"
BIN="${TESSERA_BIN:-}"
if [ -z "$BIN" ]; then
  (cd "$REPO" && cargo build --release -q -p tessera)
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/tessera"
fi
DEM="$DATA/dem_$SIZE.tif"
if [ ! -f "$DEM" ]; then
  /usr/bin/python3 - "$DEM" "$SIZE" <<'PY'
import sys
import numpy as np
from osgeo import gdal
path, n = sys.argv[1], int(sys.argv[2])
gdal.UseExceptions()
ds = gdal.GetDriverByName("GTiff").Create(path, n, n, 1, gdal.GDT_Float32, ["TILED=YES"])
ds.SetGeoTransform([600000.0, 5.0, 0.0, 5000000.0, 0.0, -5.0])
band = ds.GetRasterBand(1)
band.SetNoDataValue(-9999)
for r0 in range(0, n, 1024):
    r, c = np.mgrid[r0:min(n, r0 + 1024), 0:n].astype("float64")
    z = 500 + 300 * np.sin(r / 700.0) * np.cos(c / 500.0) + 20 * np.sin(r / 37.0 + c / 53.0)
    band.WriteArray(z.astype("float32"), 0, r0)
ds = None
PY
fi
# Median wall time and peak RSS of RUNS runs of a command (after a `prepare` command each time).
measure() {
  local label="$1" prepare="$2"; shift 2
  local times=() rss=()
  for _ in $(seq "$RUNS"); do
    eval "$prepare"
    local out
    /usr/bin/time -o "$DATA/time.txt" -f "%e %M" "$@" >/dev/null 2>&1
    out=$(tail -1 "$DATA/time.txt")
    times+=("${out% *}"); rss+=("${out#* }")
  done
  local t m
  t=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  m=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  printf '| %s | %s s | %d MiB |\n' "$label" "$t" "$((m / 1024))"
}
OUT="$DATA/out"
mkdir -p "$OUT"
echo "slope of a ${SIZE}×${SIZE} f32 DEM, $(nproc) cores, median of $RUNS runs"
echo "| tool | time | peak RSS |"
echo "| --- | ---: | ---: |"
measure "gdaldem slope (GDAL $(gdal-config --version 2>/dev/null || echo ?))" "rm -f $OUT/gdal.tif" \
  gdaldem slope -q "$DEM" "$OUT/gdal.tif"
measure "tessera raster slope, no cache" "rm -f $OUT/tessera.tif" \
  "$BIN" raster slope "$DEM" -o "$OUT/tessera.tif"
measure "tessera raster slope, cold cache" "rm -rf $OUT/cache $OUT/cached.tif" \
  "$BIN" raster slope "$DEM" -o "$OUT/cached.tif" --cache-dir "$OUT/cache"
measure "tessera raster slope, warm cache (0 computed)" "rm -f $OUT/cached.tif" \
  "$BIN" raster slope "$DEM" -o "$OUT/cached.tif" --cache-dir "$OUT/cache"
/usr/bin/python3 - "$OUT/gdal.tif" "$OUT/tessera.tif" <<'PY'
import sys
import numpy as np
from osgeo import gdal
a = gdal.Open(sys.argv[1]).ReadAsArray()
b = gdal.Open(sys.argv[2]).ReadAsArray()
valid = a != -9999
print(f"same nodata mask: {bool(((b == -9999) == ~valid).all())}; "
      f"max abs difference over valid pixels: {float(np.abs(a[valid] - b[valid]).max()):.2e} degrees")
PY
