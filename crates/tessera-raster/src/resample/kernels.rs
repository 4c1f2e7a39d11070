//! The resampling kernels of [`super::resample`], one function per GDAL kernel: bilinear and
//! cubic "4-sample" formulas, the general (stretched) kernel used when downsampling, and the
//! area-weighted average; plus the source window as `f64` planes with per-band validity.

use super::Interpolation;
use crate::Array;

/// The source window as planes of `f64` plus GDAL's validity masks, one per band.
pub(super) struct Planes {
    pub(super) width: i64,
    pub(super) height: i64,
    planes: Vec<Vec<f64>>,
    /// Per band; `Some` when at least one sample of the window is nodata.
    pub(super) valid: Option<Vec<Vec<bool>>>,
}

impl Planes {
    pub(super) fn new(array: &Array, nodata: Option<f64>) -> Planes {
        let shape = array.shape();
        let pixels = shape.width * shape.height;
        let mut planes = vec![Vec::with_capacity(pixels); shape.bands];
        crate::with_data!(array.data(), v => {
            for pixel in v.chunks_exact(shape.bands.max(1)).take(pixels) {
                for (plane, &sample) in planes.iter_mut().zip(pixel) {
                    plane.push(crate::Pixel::to_f64(sample));
                }
            }
        });
        let valid = nodata.and_then(|nodata| {
            let is_nodata = |v: f64| v == nodata || (nodata.is_nan() && v.is_nan());
            let masks: Vec<Vec<bool>> = planes
                .iter()
                .map(|p| p.iter().map(|&v| !is_nodata(v)).collect())
                .collect();
            masks.iter().any(|m| m.contains(&false)).then_some(masks)
        });
        Planes {
            width: shape.width as i64,
            height: shape.height as i64,
            planes,
            valid,
        }
    }

    pub(super) fn inside(&self, x: i64, y: i64) -> bool {
        x >= 0 && y >= 0 && x < self.width && y < self.height
    }

    pub(super) fn is_valid(&self, band: usize, x: i64, y: i64) -> bool {
        self.valid
            .as_ref()
            .is_none_or(|m| m[band][(y * self.width + x) as usize])
    }

    /// GDAL's unified mask ("PARTIAL", its default with one nodata for all bands): a pixel is
    /// nodata when every band is; the pixel under a destination centre must not be.
    pub(super) fn centre_is_valid(&self, x: i64, y: i64) -> bool {
        let i = (y * self.width + x) as usize;
        self.valid
            .as_ref()
            .is_none_or(|m| m.iter().any(|band| band[i]))
    }

    pub(super) fn at(&self, band: usize, x: i64, y: i64) -> f64 {
        self.planes[band][(y * self.width + x) as usize]
    }
}

fn bilinear_weight(x: f64) -> f64 {
    let ax = x.abs();
    if ax <= 1.0 { 1.0 - ax } else { 0.0 }
}

fn cubic_weight(x: f64) -> f64 {
    let ax = x.abs();
    let x2 = x * x;
    if ax <= 1.0 {
        x2 * (1.5 * ax - 2.5) + 1.0
    } else if ax <= 2.0 {
        x2 * (-0.5 * ax + 2.5) - 4.0 * ax + 2.0
    } else {
        0.0
    }
}

/// GDAL's `GWKCubicComputeWeights`: the 4 Keys weights for a fractional offset `x` ∈ [0, 1).
fn cubic_coeffs(x: f64) -> [f64; 4] {
    let half = 0.5 * x;
    let three = 3.0 * x;
    let half2 = half * x;
    [
        half * (-1.0 + x * (2.0 - x)),
        1.0 + half2 * (-5.0 + three),
        half * (1.0 + x * (4.0 - three)),
        half2 * (-1.0 + x),
    ]
}

fn convol4(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]
}

/// The kernels, for one window and one destination grid.
pub(super) struct Kernels<'a> {
    pub(super) src: &'a Planes,
    pub(super) interpolation: Interpolation,
    pub(super) scale: (f64, f64),
    pub(super) radius: (i64, i64),
    pub(super) init: (i64, i64),
}

impl Kernels<'_> {
    pub(super) fn bilinear4(&self, band: usize, sx: f64, sy: f64) -> Option<f64> {
        let s = self.src;
        let mut ix = (sx - 0.5).floor() as i64;
        let mut iy = (sy - 0.5).floor() as i64;
        let all_in = ix >= 0 && iy >= 0 && ix + 1 < s.width && iy + 1 < s.height;
        let mut rx = 1.5 - (sx - ix as f64);
        let mut ry = 1.5 - (sy - iy as f64);
        if s.valid.is_none() {
            // GWKBilinearResampleNoMasks4SampleT.
            if all_in {
                let (p00, p01) = (s.at(band, ix, iy), s.at(band, ix + 1, iy));
                let (p10, p11) = (s.at(band, ix, iy + 1), s.at(band, ix + 1, iy + 1));
                return Some(
                    (p00 * rx + p01 * (1.0 - rx)) * ry + (p10 * rx + p11 * (1.0 - rx)) * (1.0 - ry),
                );
            }
            let (mut acc, mut div) = (0.0, 0.0);
            for (dx, dy, w) in [
                (0, 0, rx * ry),
                (1, 0, (1.0 - rx) * ry),
                (1, 1, (1.0 - rx) * (1.0 - ry)),
                (0, 1, rx * (1.0 - ry)),
            ] {
                if s.inside(ix + dx, iy + dy) {
                    div += w;
                    acc += s.at(band, ix + dx, iy + dy) * w;
                }
            }
            return if div < 0.00001 {
                None
            } else if div == 1.0 {
                Some(acc)
            } else {
                Some(acc / div)
            };
        }
        if ix == -1 {
            ix = 0;
            rx = 1.0;
        }
        if iy == -1 {
            iy = 0;
            ry = 1.0;
        }
        let (mut acc, mut div) = (0.0, 0.0);
        for (dx, dy, w) in [
            (0, 0, rx * ry),
            (1, 0, (1.0 - rx) * ry),
            (0, 1, rx * (1.0 - ry)),
            (1, 1, (1.0 - rx) * (1.0 - ry)),
        ] {
            let (x, y) = (ix + dx, iy + dy);
            if s.inside(x, y) && s.is_valid(band, x, y) {
                div += w;
                acc += s.at(band, x, y) * w;
            }
        }
        if div == 1.0 {
            Some(acc)
        } else if div < 0.00001 {
            None
        } else {
            Some(acc / div)
        }
    }

    pub(super) fn cubic4(&self, band: usize, sx: f64, sy: f64) -> Option<f64> {
        let s = self.src;
        // Truncation, not floor, as in GDAL (negative values end up at the border anyway).
        let ix = (sx - 0.5) as i64;
        let iy = (sy - 0.5) as i64;
        if ix - 1 < 0 || ix + 2 >= s.width || iy - 1 < 0 || iy + 2 >= s.height {
            return self.bilinear4(band, sx, sy);
        }
        if s.valid.is_some() && (-1..3).any(|j| (-1..3).any(|i| !s.is_valid(band, ix + i, iy + j)))
        {
            return self.bilinear4(band, sx, sy);
        }
        let dx = sx - 0.5 - ix as f64;
        let dy = sy - 0.5 - iy as f64;
        let cx = cubic_coeffs(dx);
        let mut rows = [0.0; 4];
        for (j, row) in rows.iter_mut().enumerate() {
            let y = iy - 1 + j as i64;
            let values = [0, 1, 2, 3].map(|i| s.at(band, ix - 1 + i, y));
            *row = convol4(&cx, &values);
        }
        if s.valid.is_some() {
            Some(convol4(&cubic_coeffs(dy), &rows))
        } else {
            let (d, d2, d3) = (dy, dy * dy, dy * dy * dy);
            let [f0, f1, f2, f3] = rows;
            Some(
                f1 + 0.5
                    * (d * (f2 - f0)
                        + d2 * (2.0 * f0 - 5.0 * f1 + 4.0 * f2 - f3)
                        + d3 * (3.0 * (f1 - f2) + f3 - f0)),
            )
        }
    }

    /// GDAL's general (stretched) kernel, `GWKResample` / `GWKResampleNoMasksT`.
    pub(super) fn general(&self, band: usize, sx: f64, sy: f64) -> Option<f64> {
        let s = self.src;
        let ix = (sx - 0.5).floor() as i64;
        let iy = (sy - 0.5).floor() as i64;
        let dx = sx - 0.5 - ix as f64;
        let dy = sy - 0.5 - iy as f64;
        let weight = match self.interpolation {
            Interpolation::Cubic => cubic_weight,
            _ => bilinear_weight,
        };
        let (xs, ys) = (self.scale.0.min(1.0), self.scale.1.min(1.0));
        if s.valid.is_none()
            && (ix >= s.width
                || iy >= s.height
                || self.radius.0 > s.width
                || self.radius.1 > s.height)
        {
            return self.bilinear4(band, sx, sy);
        }
        let i_min = self.init.0.max(-ix);
        let i_max = self.radius.0.min(s.width - ix - 1);
        let j_min = self.init.1.max(-iy);
        let j_max = self.radius.1.min(s.height - iy - 1);
        // Horizontal weights, on the stack for kernels up to 64 pixels wide.
        let (mut stack, mut heap) = ([0.0f64; 64], Vec::new());
        let n = (i_max - i_min + 1).max(0) as usize;
        let wx: &mut [f64] = if n <= stack.len() {
            &mut stack[..n]
        } else {
            heap.resize(n, 0.0);
            &mut heap
        };
        for (w, i) in wx.iter_mut().zip(i_min..=i_max) {
            *w = weight((i as f64 - dx) * xs);
        }
        let wx = &*wx;
        let (mut acc, mut acc_weight) = (0.0, 0.0);
        if s.valid.is_none() {
            let mut sum_wy = 0.0;
            for j in j_min..=j_max {
                let wy = weight((j as f64 - dy) * ys);
                let row: f64 = (i_min..=i_max)
                    .zip(wx)
                    .map(|(i, w)| s.at(band, ix + i, iy + j) * w)
                    .sum();
                acc += wy * row;
                sum_wy += wy;
            }
            return Some(acc / (wx.iter().sum::<f64>() * sum_wy));
        }
        for j in j_min..=j_max {
            let wy = weight((j as f64 - dy) * ys);
            let (mut row, mut row_weight) = (0.0, 0.0);
            for (i, w) in (i_min..=i_max).zip(wx) {
                if s.is_valid(band, ix + i, iy + j) {
                    row += s.at(band, ix + i, iy + j) * w;
                    row_weight += w;
                }
            }
            acc += row * wy;
            acc_weight += row_weight * wy;
        }
        // All valid pixels have density 1, so the density sum equals the weight sum.
        if acc_weight < 0.000001 {
            return None;
        }
        if !(0.99999..=1.00001).contains(&acc_weight) {
            Some(acc / acc_weight)
        } else {
            Some(acc)
        }
    }
}

/// gdalwarp's average for one destination pixel: writes the bands it computes into `values`,
/// says whether it computed any.
pub(super) fn average_pixel(
    s: &Planes,
    ((mut x0, mut y0), (mut x1, mut y1)): ((f64, f64), (f64, f64)),
    (off_x, off_y): (f64, f64),
    scale: (f64, f64),
    values: &mut [f64],
) -> bool {
    let (nsx, nsy) = (s.width as f64, s.height as f64);
    let margin_x = 2.0 * (1.0 / scale.0).ceil().max(1.0);
    let margin_y = 2.0 * (1.0 / scale.1).ceil().max(1.0);
    let ok = x0 - off_x >= -margin_x
        && x1 - off_x >= -margin_x
        && y0 - off_y >= -margin_y
        && y1 - off_y >= -margin_y
        && x0 - off_x - nsx <= margin_x
        && x1 - off_x - nsx <= margin_x
        && y0 - off_y - nsy <= margin_y
        && y1 - off_y - nsy <= margin_y;
    if !ok {
        return false;
    }
    if x0 > x1 {
        std::mem::swap(&mut x0, &mut x1);
    }
    if y0 > y1 {
        std::mem::swap(&mut y0, &mut y1);
    }
    const EPS: f64 = 1e-10;
    let (x_min, x_max) = (x0 - off_x, x1 - off_x);
    let (y_min, y_max) = (y0 - off_y, y1 - off_y);
    // GDAL 3.6 has no intersection test here: a destination pixel just outside the raster
    // (within the margins above) takes the value of the raster's edge pixels.
    let i_min = (x_min + EPS).floor().max(0.0) as i64;
    let mut i_max = ((x_max - EPS).ceil() as i64).min(s.width);
    if i_min == i_max && i_max < s.width {
        i_max += 1;
    }
    let j_min = (y_min + EPS).floor().max(0.0) as i64;
    let mut j_max = ((y_max - EPS).ceil() as i64).min(s.height);
    if j_min == j_max && j_max < s.height {
        j_max += 1;
    }
    let weight_y = |j: i64| {
        if j == j_min {
            if j_min + 1 == j_max {
                1.0
            } else {
                1.0 - (y_min - j_min as f64)
            }
        } else if j + 1 == j_max {
            1.0 - (j_max as f64 - y_max)
        } else {
            1.0
        }
    };
    let weight = |i: i64, wy: f64| {
        if i == i_min {
            if i_min + 1 == i_max {
                wy
            } else {
                wy * (1.0 - (x_min - i_min as f64))
            }
        } else if i + 1 == i_max {
            wy * (1.0 - (i_max as f64 - x_max))
        } else {
            wy
        }
    };
    let mut any = false;
    for (band, value) in values.iter_mut().enumerate() {
        let (mut total, mut sum) = (0.0, 0.0);
        for j in j_min..j_max {
            let wy = weight_y(j);
            for i in i_min..i_max {
                if !s.is_valid(band, i, j) {
                    continue;
                }
                let w = weight(i, wy);
                if w > 0.0 {
                    total += w;
                    sum += s.at(band, i, j) * w;
                }
            }
        }
        if total > 0.0 {
            *value = sum / total;
            any = true;
        }
    }
    any
}
