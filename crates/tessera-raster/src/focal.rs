//! Focal operations: each output pixel from its 3 × 3 neighbourhood (a recipe whose primitive
//! is read with a 1-pixel halo). Slope follows `gdaldem slope` (Horn's method): pixels on the
//! raster's edge or next to nodata are nodata.

use crate::{Array, DType, Footprint, Shape};

/// How slope is expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlopeUnit {
    Degrees,
    Percent,
}

/// Parameters of [`slope`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlopeOptions {
    /// Ratio of vertical units to horizontal ones (111120 for elevations in metres on a
    /// grid in degrees), as `gdaldem -s`.
    pub scale: f64,
    pub unit: SlopeUnit,
    /// Written where the slope is undefined.
    pub nodata: f64,
}

/// The slope of `tile` (on `raster`'s grid) from `halo`: band `band` of the elevation over the
/// tile grown by one pixel (`nodata` marks missing elevations). Returns one f32 band.
pub fn slope(
    raster: &Footprint,
    tile: &Footprint,
    halo: &Array,
    band: usize,
    nodata: Option<f64>,
    options: &SlopeOptions,
) -> Result<Array, String> {
    let (h, w) = (tile.height(), tile.width());
    let hs = halo.shape();
    if hs.height != h + 2 || hs.width != w + 2 || band >= hs.bands {
        return Err(format!(
            "slope: expected a halo of {} × {} with band {}, got {hs}",
            w + 2,
            h + 2,
            band + 1
        ));
    }
    let (c0, r0) = tile
        .pixel_offset_in(raster)
        .ok_or_else(|| format!("slope: tile {tile} is not on the raster's grid {raster}"))?;
    let (rw, rh) = (raster.width() as i64, raster.height() as i64);
    let gt = raster.gt();
    let (ewres, nsres) = (gt.to_gdal()[1], gt.to_gdal()[5]);
    let x_factor = 1.0 / (8.0 * ewres * options.scale);
    let y_factor = 1.0 / (8.0 * nsres * options.scale);
    // The elevations, with NaN for nodata and for pixels outside the raster.
    let mut z = vec![f64::NAN; (h + 2) * (w + 2)];
    for r in 0..h + 2 {
        let row = r0 + r as i64 - 1;
        if row < 0 || row >= rh {
            continue;
        }
        for c in 0..w + 2 {
            let col = c0 + c as i64 - 1;
            if col < 0 || col >= rw {
                continue;
            }
            let v = halo.get_f64(r, c, band);
            if nodata != Some(v) {
                z[r * (w + 2) + c] = v;
            }
        }
    }
    let mut out = vec![options.nodata as f32; h * w];
    for r in 0..h {
        for c in 0..w {
            let at = |dr: usize, dc: usize| z[(r + dr) * (w + 2) + c + dc];
            let win = [
                at(0, 0),
                at(0, 1),
                at(0, 2),
                at(1, 0),
                at(1, 1),
                at(1, 2),
                at(2, 0),
                at(2, 1),
                at(2, 2),
            ];
            if win.iter().any(|v| v.is_nan()) {
                continue;
            }
            let dx =
                ((win[0] + 2.0 * win[3] + win[6]) - (win[2] + 2.0 * win[5] + win[8])) * x_factor;
            let dy =
                ((win[6] + 2.0 * win[7] + win[8]) - (win[0] + 2.0 * win[1] + win[2])) * y_factor;
            let gradient = (dx * dx + dy * dy).sqrt();
            out[r * w + c] = match options.unit {
                SlopeUnit::Degrees => gradient.atan().to_degrees(),
                SlopeUnit::Percent => 100.0 * gradient,
            } as f32;
        }
    }
    Array::from_vec(Shape::new(h, w, 1), out).map_err(|e| e.to_string())
}

/// The dtype [`slope`] returns.
pub const SLOPE_DTYPE: DType = DType::F32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeoTransform, PixelWindow};

    fn plane(raster: &Footprint, tile: &Footprint, f: impl Fn(f64, f64) -> f64) -> Array {
        let halo = tile.dilate(1);
        let (c0, r0) = halo.pixel_offset_in(raster).unwrap();
        let mut a = Array::filled(DType::F64, Shape::new(halo.height(), halo.width(), 1), 0.0);
        for r in 0..halo.height() {
            for c in 0..halo.width() {
                let (x, y) = raster
                    .gt()
                    .pixel_to_spatial((c0 + c as i64) as f64 + 0.5, (r0 + r as i64) as f64 + 0.5);
                a.set_f64(r, c, 0, f(x, y));
            }
        }
        a
    }

    #[test]
    fn a_plane_has_its_slope_inside_and_nodata_on_the_edges() {
        let raster = Footprint::new(GeoTransform::north_up(100.0, 200.0, 2.0), 10, 8).unwrap();
        let tile = raster.window(PixelWindow::new(0, 0, 10, 8));
        // Rises 1 per horizontal unit eastwards: 45°, 100 %.
        let halo = plane(&raster, &tile, |x, _| x);
        let degrees = SlopeOptions {
            scale: 1.0,
            unit: SlopeUnit::Degrees,
            nodata: -9999.0,
        };
        let out = slope(&raster, &tile, &halo, 0, None, &degrees).unwrap();
        assert!((out.get_f64(3, 4, 0) - 45.0).abs() < 1e-4);
        assert_eq!(out.get_f64(0, 4, 0), -9999.0);
        assert_eq!(out.get_f64(3, 9, 0), -9999.0);
        let percent = SlopeOptions {
            unit: SlopeUnit::Percent,
            ..degrees
        };
        let out = slope(&raster, &tile, &halo, 0, None, &percent).unwrap();
        assert!((out.get_f64(3, 4, 0) - 100.0).abs() < 1e-3);
        // Scale: elevations in units 10× larger than the grid's.
        let scaled = SlopeOptions {
            scale: 10.0,
            ..percent
        };
        let out = slope(&raster, &tile, &halo, 0, None, &scaled).unwrap();
        assert!((out.get_f64(3, 4, 0) - 10.0).abs() < 1e-3);
    }

    #[test]
    fn nodata_spreads_to_neighbours_and_bad_halos_are_errors() {
        let raster = Footprint::new(GeoTransform::north_up(0.0, 8.0, 1.0), 8, 8).unwrap();
        let tile = raster.window(PixelWindow::new(2, 2, 4, 4));
        let mut halo = plane(&raster, &tile, |_, y| 2.0 * y);
        halo.set_f64(3, 3, 0, -1.0);
        let options = SlopeOptions {
            scale: 1.0,
            unit: SlopeUnit::Degrees,
            nodata: -9999.0,
        };
        let out = slope(&raster, &tile, &halo, 0, Some(-1.0), &options).unwrap();
        // The nodata pixel is at tile (2, 2): its 3 × 3 neighbourhood is nodata.
        for (r, c) in [(1, 1), (2, 2), (3, 3), (1, 3)] {
            assert_eq!(out.get_f64(r, c, 0), -9999.0, "({r}, {c})");
        }
        assert!((out.get_f64(0, 0, 0) - 2f64.atan().to_degrees()).abs() < 1e-4);
        let err = slope(&raster, &tile, &halo, 1, None, &options).unwrap_err();
        assert!(err.contains("band 2"), "{err}");
    }
}
