//! Raster sources: the [`RasterSource`] trait (footprint, dtype, bands, nodata, projection and
//! window reads), the read request, the errors, and the driver shared by file-backed sources that
//! turns a request into an exact window copy (on the source's grid) or a resampling (off it).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::geotiff::GeoKeys;
use crate::resample::{self, Interpolation, SourceWindow};
use crate::{Array, DType, Footprint, GeoTransform, Pixel, Shape};

/// How far (in source pixels) a requested footprint may be from the source's grid and still be
/// read as an exact copy of a window: origin offset from an integer, and drift of the pixel size
/// accumulated over the requested width and height.
pub const GRID_TOLERANCE: f64 = 1e-4;

/// A raster's coordinate reference system, kept opaque: carried from a source to the files
/// written from it.
#[derive(Clone, Debug, PartialEq)]
pub enum Projection {
    /// GeoTIFF keys as stored in a file (GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams).
    GeoKeys(GeoKeys),
    /// An EPSG code.
    Epsg(u32),
    /// Well-known text, as GDAL reports it.
    Wkt(String),
}

impl Projection {
    /// The EPSG code, when the projection names one.
    pub fn epsg(&self) -> Option<u32> {
        match self {
            Projection::GeoKeys(keys) => keys.epsg(),
            Projection::Epsg(code) => Some(*code),
            Projection::Wkt(wkt) => crate::geotiff::wkt_epsg(wkt).map(|(code, _)| code),
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.epsg()) {
            (_, Some(code)) => write!(f, "EPSG:{code}"),
            (Projection::Wkt(wkt), None) => f.write_str(wkt),
            _ => f.write_str("user-defined GeoTIFF keys"),
        }
    }
}

/// A rectangle of pixels of a raster (the footprint module's, re-exported for sources).
pub use crate::footprint::PixelWindow;

/// What to read from a source.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadRequest {
    /// Where: on the source's grid, an exact copy of that window; elsewhere, a resampling.
    pub footprint: Footprint,
    /// Which bands, 0-based, in any order, repeats allowed.
    pub bands: Vec<usize>,
    /// How to resample when `footprint` is off the source's grid.
    pub interpolation: Interpolation,
    /// Nodata of the result: pixels outside the source or without a valid source pixel, and
    /// source nodata pixels (remapped). Defaults to the source's nodata, else 0 is used.
    pub dst_nodata: Option<f64>,
    /// Data type of the result; the source's by default.
    pub dtype: Option<DType>,
}

impl ReadRequest {
    /// `bands` of `footprint`, nearest neighbour, source nodata and dtype.
    pub fn new(footprint: Footprint, bands: Vec<usize>) -> ReadRequest {
        ReadRequest {
            footprint,
            bands,
            interpolation: Interpolation::Nearest,
            dst_nodata: None,
            dtype: None,
        }
    }

    pub fn interpolation(mut self, interpolation: Interpolation) -> ReadRequest {
        self.interpolation = interpolation;
        self
    }

    pub fn dst_nodata(mut self, nodata: f64) -> ReadRequest {
        self.dst_nodata = Some(nodata);
        self
    }

    pub fn dtype(mut self, dtype: DType) -> ReadRequest {
        self.dtype = Some(dtype);
        self
    }
}

/// Why a source could not be opened, read or written. [`SourceError::is_user_error`] separates
/// the caller's mistakes (bad band, unsupported file layout, bad request) from failures of the
/// machine (I/O) and damaged files.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: band {band} does not exist: the raster has {bands} band(s), numbered from 0", .path.display())]
    BadBand {
        path: PathBuf,
        band: usize,
        bands: usize,
    },
    #[error("{}: unsupported TIFF layout: {tag} = {value}", .path.display())]
    Unsupported {
        path: PathBuf,
        tag: String,
        value: String,
    },
    #[error("{}: {message}", .path.display())]
    BadRequest { path: PathBuf, message: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt file: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: GDAL: {message}", .path.display())]
    Gdal { path: PathBuf, message: String },
}

impl SourceError {
    /// True for the caller's mistakes: a band that does not exist, a file layout this crate does
    /// not read, a request that cannot be satisfied.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            SourceError::BadBand { .. }
                | SourceError::Unsupported { .. }
                | SourceError::BadRequest { .. }
        )
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SourceError::BadBand { path, .. }
            | SourceError::Unsupported { path, .. }
            | SourceError::BadRequest { path, .. }
            | SourceError::Io { path, .. }
            | SourceError::Corrupt { path, .. }
            | SourceError::Gdal { path, .. } => path,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> SourceError {
        SourceError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(
        path: &Path,
        tag: impl Into<String>,
        value: impl fmt::Display,
    ) -> SourceError {
        SourceError::Unsupported {
            path: path.to_path_buf(),
            tag: tag.into(),
            value: value.to_string(),
        }
    }
}

/// A raster that can be read window by window, from any number of threads at once.
pub trait RasterSource: Send + Sync {
    fn footprint(&self) -> Footprint;
    fn dtype(&self) -> DType;
    fn bands(&self) -> usize;
    fn nodata(&self) -> Option<f64>;
    fn projection(&self) -> Option<Projection>;
    /// Reads `request.bands` over `request.footprint` (see [`ReadRequest`]).
    fn read(&self, request: &ReadRequest) -> Result<Array, SourceError>;
}

/// The primitive of file-backed sources, from which [`read_windowed`] builds
/// [`RasterSource::read`].
pub trait WindowRead: RasterSource {
    /// The file, for error messages.
    fn path(&self) -> &Path;

    /// Copies `window` (inside the raster) of `bands` (valid indices) into `out` — of the
    /// source's dtype, `bands.len()` bands — with the window's top-left pixel at
    /// `(col, row) = at` of `out`.
    fn read_window_into(
        &self,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Array,
        at: (usize, usize),
    ) -> Result<(), SourceError>;
}

/// Where `dst`'s top-left pixel lies on the grid of `src` (column, row), when `dst` is on that
/// grid: same pixel size and orientation, integer offset (within [`GRID_TOLERANCE`]).
pub fn grid_offset(src: &GeoTransform, dst: &Footprint) -> Option<(i64, i64)> {
    let g = dst.gt();
    let (w, h) = (dst.width().max(1) as f64, dst.height().max(1) as f64);
    let at = |col: f64, row: f64| {
        let (x, y) = g.pixel_to_spatial(col, row);
        src.spatial_to_pixel(x, y)
    };
    let (c0, r0) = at(0.0, 0.0);
    let (c1, r1) = at(w, 0.0);
    let (c2, r2) = at(0.0, h);
    let near = |a: f64, b: f64| (a - b).abs() <= GRID_TOLERANCE;
    let (col, row) = (c0.round(), r0.round());
    let on_grid = near(c0, col)
        && near(r0, row)
        && near(c1 - c0, w)
        && near(r1 - r0, 0.0)
        && near(c2 - c0, 0.0)
        && near(r2 - r0, h);
    (on_grid && col.abs() < 1e15 && row.abs() < 1e15).then_some((col as i64, row as i64))
}

fn same_nodata(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Checks every requested band exists.
pub fn check_bands(path: &Path, bands: &[usize], count: usize) -> Result<(), SourceError> {
    match bands.iter().find(|&&b| b >= count) {
        Some(&band) => Err(SourceError::BadBand {
            path: path.to_path_buf(),
            band,
            bands: count,
        }),
        None => Ok(()),
    }
}

/// [`RasterSource::read`] for a source that reads windows inside its raster: exact copy with
/// fill on the grid, resampling off it; dtype conversion and nodata remapping.
pub fn read_windowed<S: WindowRead + ?Sized>(
    source: &S,
    request: &ReadRequest,
) -> Result<Array, SourceError> {
    check_bands(source.path(), &request.bands, source.bands())?;
    let fp = source.footprint();
    let dst = &request.footprint;
    let src_dtype = source.dtype();
    let dtype = request.dtype.unwrap_or(src_dtype);
    let src_nodata = source.nodata();
    let out_nodata = request.dst_nodata.or(src_nodata);
    let fill = out_nodata.unwrap_or(0.0);
    let nb = request.bands.len();
    let shape = Shape::new(dst.height(), dst.width(), nb);
    let Some((c0, r0)) = grid_offset(&fp.gt(), dst) else {
        let Some(window) = resample::source_window(&fp, dst, request.interpolation) else {
            return Ok(Array::filled(dtype, shape, fill));
        };
        let mut tmp = Array::filled(src_dtype, Shape::new(window.height, window.width, nb), 0.0);
        source.read_window_into(window, &request.bands, &mut tmp, (0, 0))?;
        let src = SourceWindow {
            array: &tmp,
            gt: fp.gt(),
            raster: (fp.width(), fp.height()),
            col: window.col,
            row: window.row,
            nodata: src_nodata,
        };
        return Ok(resample::resample(
            &src,
            dst,
            request.interpolation,
            out_nodata,
            dtype,
        ));
    };
    let (w, h) = (dst.width() as i64, dst.height() as i64);
    let (ic0, ir0) = (c0.max(0), r0.max(0));
    let ic1 = (c0 + w).min(fp.width() as i64);
    let ir1 = (r0 + h).min(fp.height() as i64);
    if ic1 <= ic0 || ir1 <= ir0 || nb == 0 {
        return Ok(Array::filled(dtype, shape, fill));
    }
    let window = PixelWindow {
        col: ic0,
        row: ir0,
        width: (ic1 - ic0) as usize,
        height: (ir1 - ir0) as usize,
    };
    let at = ((ic0 - c0) as usize, (ir0 - r0) as usize);
    let full = window.width == dst.width() && window.height == dst.height();
    let remap = match (src_nodata, request.dst_nodata) {
        (Some(s), Some(d)) if !same_nodata(s, d) => Some((s, d)),
        _ => None,
    };
    if dtype == src_dtype && remap.is_none() {
        let mut out = Array::filled(dtype, shape, if full { 0.0 } else { fill });
        source.read_window_into(window, &request.bands, &mut out, at)?;
        return Ok(out);
    }
    let mut tmp = Array::filled(src_dtype, Shape::new(window.height, window.width, nb), 0.0);
    source.read_window_into(window, &request.bands, &mut tmp, (0, 0))?;
    let mut out = Array::filled(dtype, shape, fill);
    convert_into(&tmp, &mut out, at, remap);
    Ok(out)
}

/// Copies `src` into `out` at `(col, row)`, converting samples (see [`Pixel::from_f64`]) and
/// replacing `remap.0` by `remap.1`.
fn convert_into(src: &Array, out: &mut Array, at: (usize, usize), remap: Option<(f64, f64)>) {
    let s_shape = src.shape();
    let o_shape = out.shape();
    crate::with_data!(src.data(), s => {
        crate::with_data!(out.data_mut(), o => {
            convert_typed(s, s_shape, o, o_shape, at, remap)
        })
    })
}

fn convert_typed<S: Pixel, D: Pixel>(
    src: &[S],
    s_shape: Shape,
    out: &mut [D],
    o_shape: Shape,
    (col, row): (usize, usize),
    remap: Option<(f64, f64)>,
) {
    let n = s_shape.width * s_shape.bands;
    for r in 0..s_shape.height {
        let from = &src[r * n..(r + 1) * n];
        let start = o_shape.index(row + r, col, 0);
        for (o, s) in out[start..start + n].iter_mut().zip(from) {
            let v = s.to_f64();
            *o = match remap {
                Some((nodata, to)) if same_nodata(v, nodata) => D::from_f64(to),
                _ => D::from_f64(v),
            };
        }
    }
}
