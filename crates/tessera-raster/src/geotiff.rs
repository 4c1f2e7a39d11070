//! GeoTIFF files in pure Rust: [`GeoTiff`] reads windows of striped or tiled, chunky or planar
//! TIFFs and BigTIFFs (uncompressed, deflate, LZW, PackBits; predictors 2 and 3; any byte
//! order) from many threads at once; [`write_geotiff`] writes files GDAL reads back.
//!
//! Opening parses the first IFD once (layout, chunk offsets and byte counts, georeferencing,
//! GDAL_NODATA, GeoTIFF keys); a read then fetches only the chunks its window touches with
//! positioned reads (`pread`) and decodes them chunk by chunk, uncompressed rows going straight
//! into the output buffer.

mod decode;
mod geokeys;
mod ifd;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use geokeys::GeoKeys;
pub(crate) use geokeys::wkt_epsg;
pub use write::{Compression, StripWriter, WriteOptions, write_geotiff};

use decode::{Codec, Layout, Out, Sample};
use ifd::{Ifd, tag_name};

use crate::source::{
    PixelWindow, Projection, RasterSource, ReadRequest, SourceError, WindowRead, read_windowed,
};
use crate::{Array, DType, Footprint};

/// A GeoTIFF opened for reading. Cheap to share between threads (`Arc<GeoTiff>`): reads take
/// `&self` and never seek.
#[derive(Debug)]
pub struct GeoTiff {
    path: PathBuf,
    file: File,
    layout: Layout,
    footprint: Footprint,
    nodata: Option<f64>,
    keys: Option<GeoKeys>,
}

fn compression_name(value: u64) -> &'static str {
    match value {
        2..=4 => "CCITT",
        6 | 7 => "JPEG",
        34887 => "LERC",
        34925 => "LZMA",
        50000 => "ZSTD",
        50001 => "WebP",
        _ => "unknown",
    }
}

/// Parses GDAL_NODATA (`"-9999"`, `"nan"`, `"-inf"`…).
fn parse_nodata(text: &str) -> Option<f64> {
    let text = text.trim().trim_end_matches('\0');
    if text.to_ascii_lowercase().contains("nan") {
        return Some(f64::NAN);
    }
    text.parse().ok()
}

impl GeoTiff {
    /// Opens `path`, reading its structure and georeferencing (not its pixels).
    pub fn open(path: impl AsRef<Path>) -> Result<GeoTiff, SourceError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| SourceError::io(&path, e))?;
        let len = file
            .metadata()
            .map_err(|e| SourceError::io(&path, e))?
            .len();
        let ifd = Ifd::read(&file, &path, len)?;
        let layout = layout(&ifd, &path)?;
        decode::check_chunks(&layout, &path, len)?;
        let keys = GeoKeys::from_ifd(&ifd);
        let gt = geokeys::geotransform(&ifd, keys.as_ref(), &path)?;
        let footprint = Footprint::new(gt, layout.width, layout.height)
            .map_err(|e| SourceError::corrupt(&path, e.to_string()))?;
        let nodata = ifd.ascii(ifd::GDAL_NODATA).and_then(|t| parse_nodata(&t));
        let mut layout = layout;
        layout.sparse_fill = nodata.unwrap_or(0.0);
        Ok(GeoTiff {
            path,
            file,
            layout,
            footprint,
            nodata,
            keys,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the pixels are stored in tiles (else in strips).
    pub fn is_tiled(&self) -> bool {
        self.layout.tiled
    }

    /// Width and height of a tile or strip.
    pub fn block_size(&self) -> (usize, usize) {
        (self.layout.chunk_w, self.layout.chunk_h)
    }

    fn read_typed<T: Sample>(
        &self,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Array,
        at: (usize, usize),
    ) -> Result<(), SourceError> {
        let shape = out.shape();
        let (w, h) = (self.layout.width as i64, self.layout.height as i64);
        let fits = window.col >= 0
            && window.row >= 0
            && window.col + window.width as i64 <= w
            && window.row + window.height as i64 <= h
            && at.0 + window.width <= shape.width
            && at.1 + window.height <= shape.height
            && shape.bands == bands.len()
            && out.dtype() == self.layout.dtype;
        if !fits {
            return Err(SourceError::BadRequest {
                path: self.path.clone(),
                message: format!(
                    "window {window:?} of a {w}×{h} raster cannot be copied to ({}, {}) of a {} {shape} array",
                    at.0,
                    at.1,
                    out.dtype()
                ),
            });
        }
        crate::source::check_bands(&self.path, bands, self.layout.spp)?;
        if window.width == 0 || window.height == 0 {
            return Ok(());
        }
        let data = out.as_slice_mut::<T>().expect("dtype checked above");
        let mut out = Out {
            data,
            width: shape.width,
            bands: shape.bands,
            at,
        };
        self.layout
            .read(&self.file, &self.path, window, bands, &mut out)
    }
}

/// The pixel layout of the first image of a TIFF.
fn layout(ifd: &Ifd, path: &Path) -> Result<Layout, SourceError> {
    let required = |tag| {
        ifd.uint(tag).ok_or_else(|| {
            SourceError::corrupt(path, format!("missing or malformed {}", tag_name(tag)))
        })
    };
    let width = required(ifd::IMAGE_WIDTH)? as usize;
    let height = required(ifd::IMAGE_LENGTH)? as usize;
    if width == 0 || height == 0 {
        return Err(SourceError::corrupt(
            path,
            format!("image of {width}×{height} pixels"),
        ));
    }
    let spp = ifd.uint(ifd::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as usize;
    let unsupported =
        |tag: u16, value: String| SourceError::unsupported(path, tag_name(tag), value);
    let uniform = |tag, default| -> Result<u64, SourceError> {
        let values = ifd.uints(tag).unwrap_or_else(|| vec![default]);
        match values.first() {
            Some(&v) if values.iter().all(|&x| x == v) => Ok(v),
            _ => Err(unsupported(
                tag,
                format!("{values:?} (samples of different kinds)"),
            )),
        }
    };
    let bits = uniform(ifd::BITS_PER_SAMPLE, 1)?;
    let format = uniform(ifd::SAMPLE_FORMAT, 1)?;
    let dtype = match (format, bits) {
        (1, 8) => DType::U8,
        (1, 16) => DType::U16,
        (2, 16) => DType::I16,
        (1, 32) => DType::U32,
        (2, 32) => DType::I32,
        (3, 32) => DType::F32,
        (3, 64) => DType::F64,
        (_, 8 | 16 | 32 | 64) => {
            let kind = match format {
                2 => "signed integer",
                3 => "floating point",
                _ => "unsigned integer",
            };
            return Err(unsupported(
                ifd::SAMPLE_FORMAT,
                format!("{format} ({kind}) with {bits}-bit samples"),
            ));
        }
        _ => return Err(unsupported(ifd::BITS_PER_SAMPLE, bits.to_string())),
    };
    let compression = ifd.uint(ifd::COMPRESSION).unwrap_or(1);
    let codec = Codec::from_tag(compression).ok_or_else(|| {
        unsupported(
            ifd::COMPRESSION,
            format!("{compression} ({})", compression_name(compression)),
        )
    })?;
    let predictor = ifd.uint(ifd::PREDICTOR).unwrap_or(1) as u16;
    match (predictor, dtype.is_float()) {
        (1, _) | (2, false) | (3, true) => {}
        _ => {
            return Err(unsupported(
                ifd::PREDICTOR,
                format!("{predictor} with {dtype} samples"),
            ));
        }
    }
    if ifd.uint(ifd::PHOTOMETRIC) == Some(6) {
        return Err(unsupported(ifd::PHOTOMETRIC, "6 (YCbCr)".into()));
    }
    let planar = spp > 1 && ifd.uint(ifd::PLANAR_CONFIGURATION) == Some(2);
    let tiled = ifd.has(ifd::TILE_WIDTH);
    let (chunk_w, chunk_h, offsets_tag, counts_tag) = if tiled {
        let w = required(ifd::TILE_WIDTH)? as usize;
        let h = required(ifd::TILE_LENGTH)? as usize;
        (w, h, ifd::TILE_OFFSETS, ifd::TILE_BYTE_COUNTS)
    } else {
        let rps = ifd.uint(ifd::ROWS_PER_STRIP).unwrap_or(height as u64);
        (
            width,
            rps.min(height as u64) as usize,
            ifd::STRIP_OFFSETS,
            ifd::STRIP_BYTE_COUNTS,
        )
    };
    if chunk_w == 0 || chunk_h == 0 {
        return Err(SourceError::corrupt(
            path,
            format!("blocks of {chunk_w}×{chunk_h} pixels"),
        ));
    }
    let (across, down) = (width.div_ceil(chunk_w), height.div_ceil(chunk_h));
    let expected = across * down * if planar { spp } else { 1 };
    let offsets = ifd.uints(offsets_tag).unwrap_or_default();
    let counts = ifd.uints(counts_tag).unwrap_or_default();
    if offsets.len() < expected || counts.len() < expected {
        return Err(SourceError::corrupt(
            path,
            format!(
                "{} and {} list {} and {} blocks, {expected} expected",
                tag_name(offsets_tag),
                tag_name(counts_tag),
                offsets.len(),
                counts.len()
            ),
        ));
    }
    Ok(Layout {
        width,
        height,
        spp,
        dtype,
        planar,
        tiled,
        chunk_w,
        chunk_h,
        across,
        down,
        offsets,
        counts,
        codec,
        predictor,
        order: ifd.order,
        sparse_fill: 0.0,
    })
}

impl RasterSource for GeoTiff {
    fn footprint(&self) -> Footprint {
        self.footprint
    }

    fn dtype(&self) -> DType {
        self.layout.dtype
    }

    fn bands(&self) -> usize {
        self.layout.spp
    }

    fn nodata(&self) -> Option<f64> {
        self.nodata
    }

    fn projection(&self) -> Option<Projection> {
        self.keys.clone().map(Projection::GeoKeys)
    }

    fn read(&self, request: &ReadRequest) -> Result<Array, SourceError> {
        read_windowed(self, request)
    }
}

impl WindowRead for GeoTiff {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read_window_into(
        &self,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Array,
        at: (usize, usize),
    ) -> Result<(), SourceError> {
        match self.layout.dtype {
            DType::U8 => self.read_typed::<u8>(window, bands, out, at),
            DType::U16 => self.read_typed::<u16>(window, bands, out, at),
            DType::I16 => self.read_typed::<i16>(window, bands, out, at),
            DType::U32 => self.read_typed::<u32>(window, bands, out, at),
            DType::I32 => self.read_typed::<i32>(window, bands, out, at),
            DType::F32 => self.read_typed::<f32>(window, bands, out, at),
            DType::F64 => self.read_typed::<f64>(window, bands, out, at),
        }
    }
}
