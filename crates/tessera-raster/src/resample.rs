//! Resampling a window of a source raster onto an off-grid footprint, reproducing gdalwarp's
//! kernels bit for bit (`-r near|bilinear|cubic|average` of GDAL 3.6, warping in one chunk, same
//! target grid, same nodata rules; checked against gdalwarp outputs in `tests/sources.rs`).
//!
//! What GDAL 3.6 does, and so what this module does:
//! - destination pixel centres are mapped to source pixels through the two geotransforms
//!   (destination → georeferenced → the source's inverse, GDAL's coefficients), row by row
//!   with gdalwarp's approximate transformer (exact at both ends and the middle of a row,
//!   interpolated in between; a point just outside the raster is recomputed exactly);
//! - near, bilinear and cubic write a destination pixel only when its centre falls inside the
//!   raster and the source pixel under it is not nodata in every band (the "unified" mask);
//!   each band then uses its own mask: nodata samples get no weight, and a band without any
//!   valid sample under the kernel stays nodata;
//! - the scale (destination pixels per source pixel) is the destination size over the source
//!   extent it covers, that extent clipped to the raster on the right/bottom
//!   (`ComputeSourceWindow`), rounded to 1/n within 5 %;
//! - when not downsampling (scale ≥ 1) bilinear and cubic use the 2×2 / 4×4 "4-sample"
//!   formulas, cubic falling back to bilinear at the raster's border or when one of its 16
//!   samples is nodata; when downsampling the kernels are stretched by 1/scale and normalised;
//! - average is the mean of the source samples weighted by how much of each the destination
//!   pixel covers (GDAL's edge weights, including for pixels partly outside the raster);
//! - integers are rounded half up and clamped; on GDAL's masked paths a computed integer equal
//!   to the output nodata is moved by one so that it stays valid.
//!
//! Later GDAL versions (≥ 3.7) compute the scale from the grids alone and use the 4-sample
//! formulas down to scale 0.5: their results differ when downsampling.

mod kernels;

use kernels::{Kernels, Planes, average_pixel};

use crate::source::PixelWindow;
use crate::{Array, DType, Footprint, GeoTransform, Shape};

/// How off-grid reads compute a destination pixel from the source pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// The source pixel under the destination pixel centre (gdalwarp `-r near`).
    #[default]
    Nearest,
    /// Bilinear interpolation of the 2×2 source pixels around the centre (`-r bilinear`).
    Bilinear,
    /// Cubic convolution, Keys a = −0.5 / Catmull-Rom, over 4×4 pixels (`-r cubic`).
    Cubic,
    /// Area-weighted mean of the source pixels inside the destination pixel (`-r average`).
    Average,
}

impl Interpolation {
    pub const ALL: [Interpolation; 4] = [
        Interpolation::Nearest,
        Interpolation::Bilinear,
        Interpolation::Cubic,
        Interpolation::Average,
    ];

    /// The name used in recipes and error messages (`"nearest"`, `"bilinear"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Cubic => "cubic",
            Interpolation::Average => "average",
        }
    }

    /// Parses [`Interpolation::name`], also gdalwarp's `near`.
    pub fn parse(name: &str) -> Option<Interpolation> {
        Some(match name {
            "nearest" | "near" => Interpolation::Nearest,
            "bilinear" => Interpolation::Bilinear,
            "cubic" => Interpolation::Cubic,
            "average" => Interpolation::Average,
            _ => return None,
        })
    }

    fn filter_radius(self) -> i64 {
        match self {
            Interpolation::Bilinear => 1,
            Interpolation::Cubic => 2,
            Interpolation::Nearest | Interpolation::Average => 0,
        }
    }
}

/// A window of a source raster: `array` holds the raster's pixels from column `col` and row
/// `row` on (`array.shape()` wide and high, its bands being the bands to resample); `gt` is the
/// whole raster's geotransform, `raster` its width and height, `nodata` its nodata value.
#[derive(Clone, Copy, Debug)]
pub struct SourceWindow<'a> {
    pub array: &'a Array,
    pub gt: GeoTransform,
    pub raster: (usize, usize),
    pub col: i64,
    pub row: i64,
    pub nodata: Option<f64>,
}

/// GDAL's `GDALInvGeoTransform`, coefficient for coefficient (rounding included).
fn invert(gt: &GeoTransform) -> [f64; 6] {
    let g = gt.to_gdal();
    if g[2] == 0.0 && g[4] == 0.0 && g[1] != 0.0 && g[5] != 0.0 {
        return [-g[0] / g[1], 1.0 / g[1], 0.0, -g[3] / g[5], 0.0, 1.0 / g[5]];
    }
    let inv_det = 1.0 / (g[1] * g[5] - g[2] * g[4]);
    [
        (g[2] * g[3] - g[0] * g[5]) * inv_det,
        g[5] * inv_det,
        -g[2] * inv_det,
        (-g[1] * g[3] + g[0] * g[4]) * inv_det,
        -g[4] * inv_det,
        g[1] * inv_det,
    ]
}

/// Destination pixel coordinates → source pixel coordinates (of the whole source raster).
#[derive(Clone, Copy)]
struct DstToSrc {
    dst: [f64; 6],
    inv: [f64; 6],
}

impl DstToSrc {
    fn new(src: &GeoTransform, dst: &GeoTransform) -> DstToSrc {
        DstToSrc {
            dst: dst.to_gdal(),
            inv: invert(src),
        }
    }

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let (d, i) = (&self.dst, &self.inv);
        let gx = d[0] + x * d[1] + y * d[2];
        let gy = d[3] + x * d[4] + y * d[5];
        (i[0] + gx * i[1] + gy * i[2], i[3] + gx * i[4] + gy * i[5])
    }

    /// Points `(x0 + i, y)`, `i < n`, of a destination row as gdalwarp's approximate
    /// transformer computes them (error threshold 0.125 pixel): exactly at both ends and in the
    /// middle, interpolated linearly in between (which rounds differently from exact products).
    fn row(&self, x0: f64, y: f64, n: usize) -> Vec<(f64, f64)> {
        let exact = |i: usize| self.apply(x0 + i as f64, y);
        if n <= 5 {
            return (0..n).map(exact).collect();
        }
        let mid = (n - 1) / 2;
        let (a, m, b) = (exact(0), exact(mid), exact(n - 1));
        let dist = |i: usize| (x0 + i as f64) - x0;
        let dx = (b.0 - a.0) / dist(n - 1);
        let dy = (b.1 - a.1) / dist(n - 1);
        let error = (a.0 + dx * dist(mid) - m.0).abs() + (a.1 + dy * dist(mid) - m.1).abs();
        if error > 0.125 {
            return (0..n).map(exact).collect();
        }
        (0..n)
            .map(|i| (a.0 + dx * dist(i), a.1 + dy * dist(i)))
            .collect()
    }

    /// Bounding box, in source pixels, of the destination footprint `dst` (of `w × h` pixels).
    fn extent(&self, w: usize, h: usize) -> [f64; 4] {
        let (w, h) = (w as f64, h as f64);
        let corners = [
            self.apply(0.0, 0.0),
            self.apply(w, 0.0),
            self.apply(0.0, h),
            self.apply(w, h),
        ];
        let min = |f: fn(&(f64, f64)) -> f64| corners.iter().map(f).fold(f64::INFINITY, f64::min);
        let max =
            |f: fn(&(f64, f64)) -> f64| corners.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        [min(|c| c.0), min(|c| c.1), max(|c| c.0), max(|c| c.1)]
    }

    /// gdalwarp's per-axis scale (destination pixels per source pixel) as GDAL 3.6 computes it
    /// for a warp done in one chunk: the destination size over the source extent it covers,
    /// that extent clipped to the raster (`GDALWarpOperation::ComputeSourceWindow`), rounded to
    /// 1/n when within 5 % of it.
    fn scales(&self, dst: (usize, usize), raster: (usize, usize)) -> (f64, f64) {
        let [min_x, min_y, max_x, max_y] = self.extent(dst.0, dst.1);
        let scale = |n_dst: usize, min: f64, max: f64, size: usize| {
            let min_clamped = min.max(0.0).trunc();
            let raw = (size as f64 - min_clamped).min(max - min).max(0.0);
            let scale = n_dst as f64 / raw;
            if scale < 1.0 {
                let reciprocal = 1.0 / scale;
                let n = (reciprocal + 0.5) as i64;
                if (reciprocal - n as f64).abs() < 0.05 {
                    return 1.0 / n as f64;
                }
            }
            scale
        };
        (
            scale(dst.0, min_x, max_x, raster.0),
            scale(dst.1, min_y, max_y, raster.1),
        )
    }
}

/// The window of `src` (clipped to it) that resampling onto `dst` reads, kernel margin included;
/// `None` when `dst` does not touch `src`.
pub fn source_window(
    src: &Footprint,
    dst: &Footprint,
    interpolation: Interpolation,
) -> Option<PixelWindow> {
    let t = DstToSrc::new(&src.gt(), &dst.gt());
    let (sx, sy) = t.scales((dst.width(), dst.height()), (src.width(), src.height()));
    let radius = |scale: f64| {
        let filter = interpolation.filter_radius() as f64;
        (if scale < 1.0 {
            (filter / scale).ceil()
        } else {
            filter
        }) + 2.0
    };
    let [min_x, min_y, max_x, max_y] = t.extent(dst.width(), dst.height());
    if !(min_x.is_finite() && max_x.is_finite() && min_y.is_finite() && max_y.is_finite()) {
        return None;
    }
    let clip = |v: f64, size: usize| v.clamp(0.0, size as f64) as i64;
    let col0 = clip(min_x.floor() - radius(sx), src.width());
    let col1 = clip(max_x.ceil() + radius(sx), src.width());
    let row0 = clip(min_y.floor() - radius(sy), src.height());
    let row1 = clip(max_y.ceil() + radius(sy), src.height());
    if col1 <= col0 || row1 <= row0 {
        return None;
    }
    Some(PixelWindow {
        col: col0,
        row: row0,
        width: (col1 - col0) as usize,
        height: (row1 - row0) as usize,
    })
}

/// GDAL's conversion of a computed value to an output sample: integers clamped, then rounded
/// half up (`(T)(v + 0.5)` unsigned, `floor(v + 0.5)` signed); the result is exact in `f64`.
fn round_for(dtype: DType, value: f64) -> f64 {
    let (min, max, signed) = match dtype {
        DType::U8 => (u8::MIN as f64, u8::MAX as f64, false),
        DType::U16 => (u16::MIN as f64, u16::MAX as f64, false),
        DType::I16 => (i16::MIN as f64, i16::MAX as f64, true),
        DType::U32 => (u32::MIN as f64, u32::MAX as f64, false),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64, true),
        DType::F32 => return value as f32 as f64,
        DType::F64 => return value,
    };
    if value.is_nan() {
        return 0.0;
    }
    if value < min {
        min
    } else if value > max {
        max
    } else if signed {
        (value + 0.5).floor()
    } else {
        (value + 0.5).trunc()
    }
}

fn dtype_min(dtype: DType) -> f64 {
    match dtype {
        DType::I16 => i16::MIN as f64,
        DType::I32 => i32::MIN as f64,
        _ => 0.0,
    }
}

/// Resamples `src` onto `dst`. Destination pixels that no valid source pixel reaches are
/// `dst_nodata` (0 without one); the result has `src.array`'s bands, in `dtype`.
pub fn resample(
    src: &SourceWindow<'_>,
    dst: &Footprint,
    interpolation: Interpolation,
    dst_nodata: Option<f64>,
    dtype: DType,
) -> Array {
    let bands = src.array.shape().bands;
    let shape = Shape::new(dst.height(), dst.width(), bands);
    let fill = dst_nodata.unwrap_or(0.0);
    let mut out = vec![fill; shape.len()];
    let planes = Planes::new(src.array, src.nodata);
    let t = DstToSrc::new(&src.gt, &dst.gt());
    let scale = t.scales((dst.width(), dst.height()), src.raster);
    let filter = interpolation.filter_radius();
    let radius_for = |s: f64| {
        if s < 1.0 {
            (filter as f64 / s).ceil() as i64
        } else {
            filter
        }
    };
    let radius = (radius_for(scale.0), radius_for(scale.1));
    let init = ((filter + 1) % 2 - radius.0, (filter + 1) % 2 - radius.1);
    let kernels = Kernels {
        src: &planes,
        interpolation,
        scale,
        radius,
        init,
    };
    let four_samples = scale.0 >= 1.0 && scale.1 >= 1.0;
    let is_int = !dtype.is_float();
    let nudge = is_int
        && dst_nodata.is_some()
        && match interpolation {
            Interpolation::Nearest => false,
            Interpolation::Average => true,
            _ => planes.valid.is_some() || matches!(dtype, DType::U32 | DType::I32),
        };
    let (off_x, off_y) = (src.col as f64, src.row as f64);
    let (nsx, nsy) = (planes.width, planes.height);
    let w = dst.width();
    for y in 0..dst.height() {
        let (centres, corners) = if interpolation == Interpolation::Average {
            let top = t.row(0.0, y as f64, w);
            let bottom = t.row(1.0, y as f64 + 1.0, w);
            (Vec::new(), top.into_iter().zip(bottom).collect())
        } else {
            (t.row(0.5, y as f64 + 0.5, w), Vec::new())
        };
        for x in 0..w {
            let base = (y * w + x) * bands;
            let values = &mut out[base..base + bands];
            let computed = if interpolation == Interpolation::Average {
                average_pixel(&planes, corners[x], (off_x, off_y), scale, values)
            } else {
                let outside = |(sx, sy): (f64, f64)| {
                    !(sx >= 0.0 && sy >= 0.0) || sx + 1e-10 > nsx as f64 || sy + 1e-10 > nsy as f64
                };
                let (mut sx, mut sy) = (centres[x].0 - off_x, centres[x].1 - off_y);
                if outside((sx, sy)) {
                    // Like GDAL, retry a point just outside with the exact transformation.
                    let near =
                        sx > -1.0 && sy > -1.0 && sx < nsx as f64 + 1.0 && sy < nsy as f64 + 1.0;
                    let (ex, ey) = t.apply(x as f64 + 0.5, y as f64 + 0.5);
                    (sx, sy) = (ex - off_x, ey - off_y);
                    if !near || outside((sx, sy)) {
                        continue;
                    }
                }
                let ix = ((sx + 1e-10) as i64).min(nsx - 1);
                let iy = ((sy + 1e-10) as i64).min(nsy - 1);
                if !planes.centre_is_valid(ix, iy) {
                    continue;
                }
                let mut any = false;
                for (band, value) in values.iter_mut().enumerate() {
                    let v = if interpolation == Interpolation::Nearest || nsx == 1 || nsy == 1 {
                        planes
                            .is_valid(band, ix, iy)
                            .then(|| planes.at(band, ix, iy))
                    } else if four_samples && interpolation == Interpolation::Bilinear {
                        kernels.bilinear4(band, sx, sy)
                    } else if four_samples && interpolation == Interpolation::Cubic {
                        kernels.cubic4(band, sx, sy)
                    } else {
                        kernels.general(band, sx, sy)
                    };
                    if let Some(v) = v {
                        *value = v;
                        any = true;
                    }
                }
                any
            };
            if !computed {
                continue;
            }
            for value in values.iter_mut() {
                let mut v = round_for(dtype, *value);
                if nudge && Some(v) == dst_nodata {
                    v = if v == dtype_min(dtype) {
                        v + 1.0
                    } else {
                        v - 1.0
                    };
                }
                *value = v;
            }
        }
    }
    fn typed<T: crate::Pixel>(values: &[f64]) -> crate::Data {
        T::wrap(values.iter().map(|&v| T::from_f64(v)).collect())
    }
    let data = match dtype {
        DType::U8 => typed::<u8>(&out),
        DType::U16 => typed::<u16>(&out),
        DType::I16 => typed::<i16>(&out),
        DType::U32 => typed::<u32>(&out),
        DType::I32 => typed::<i32>(&out),
        DType::F32 => typed::<f32>(&out),
        DType::F64 => typed::<f64>(&out),
    };
    Array::new(shape, data).expect("shape and data agree")
}
