//! Writing GeoTIFFs that GDAL and [`super::GeoTiff`] read: little-endian, chunky, strips (or
//! tiles), uncompressed or deflate, georeferencing, GeoTIFF keys and GDAL_NODATA. The IFD comes
//! first; uncompressed strips are the array's bytes written as they are, in one call.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::geokeys::{GeoKeys, georeferencing_tags};
use super::ifd::{self, ASCII, DOUBLE, LONG, LONG8, SHORT};
use crate::source::{Projection, SourceError};
use crate::{Array, DType, Footprint};

/// Compression of written files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    /// zlib deflate, level 6 (GDAL's `COMPRESS=DEFLATE`).
    Deflate,
}

/// How [`write_geotiff`] writes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteOptions {
    /// Written as GDAL_NODATA.
    pub nodata: Option<f64>,
    /// Written as GeoTIFF keys.
    pub projection: Option<Projection>,
    pub compression: Compression,
    /// Square tiles of this many pixels (a multiple of 16); strips when `None`.
    pub tile_size: Option<usize>,
}

/// Target size of a strip.
const STRIP_BYTES: usize = 256 * 1024;

/// Writes `array` (of `footprint`'s height and width) to `path` as a GeoTIFF. The file is
/// written in place: write to a temporary name and rename for atomicity.
pub fn write_geotiff(
    path: impl AsRef<Path>,
    footprint: &Footprint,
    array: &Array,
    options: &WriteOptions,
) -> Result<(), SourceError> {
    let path = path.as_ref();
    let shape = array.shape();
    let bad = |message: String| SourceError::BadRequest {
        path: path.to_path_buf(),
        message,
    };
    if shape.height != footprint.height() || shape.width != footprint.width() {
        return Err(bad(format!(
            "array of shape {shape} does not match footprint {footprint}"
        )));
    }
    if shape.is_empty() {
        return Err(bad(format!("cannot write an empty array (shape {shape})")));
    }
    if let Some(t) = options.tile_size.filter(|t| *t == 0 || t % 16 != 0) {
        return Err(bad(format!(
            "tile size {t} is not a positive multiple of 16"
        )));
    }
    let dtype = array.dtype();
    let size = dtype.size();
    let bytes = le_bytes(array);
    let row_bytes = shape.width * shape.bands * size;
    let deflate = |chunk: &[u8]| -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        z.write_all(chunk).expect("writing to memory");
        z.finish().expect("writing to memory")
    };
    // The chunks, as slices of the array's bytes or as owned buffers.
    let mut owned: Vec<Vec<u8>> = Vec::new();
    let mut slices: Vec<&[u8]> = Vec::new();
    let (chunk_tags, rows_per_strip) = match options.tile_size {
        None => {
            let rps = (STRIP_BYTES / row_bytes).clamp(1, shape.height);
            for strip in bytes.chunks(rps * row_bytes) {
                match options.compression {
                    Compression::None => slices.push(strip),
                    Compression::Deflate => owned.push(deflate(strip)),
                }
            }
            ((ifd::STRIP_OFFSETS, ifd::STRIP_BYTE_COUNTS), Some(rps))
        }
        Some(t) => {
            let tile_row = t * shape.bands * size;
            for ty in 0..shape.height.div_ceil(t) {
                for tx in 0..shape.width.div_ceil(t) {
                    let mut tile = vec![0u8; t * tile_row];
                    let cols = t.min(shape.width - tx * t) * shape.bands * size;
                    for r in 0..t.min(shape.height - ty * t) {
                        let start = (ty * t + r) * row_bytes + tx * tile_row;
                        tile[r * tile_row..r * tile_row + cols]
                            .copy_from_slice(&bytes[start..start + cols]);
                    }
                    owned.push(match options.compression {
                        Compression::None => tile,
                        Compression::Deflate => deflate(&tile),
                    });
                }
            }
            ((ifd::TILE_OFFSETS, ifd::TILE_BYTE_COUNTS), None)
        }
    };
    if slices.is_empty() {
        slices = owned.iter().map(Vec::as_slice).collect();
    }
    let counts: Vec<u64> = slices.iter().map(|s| s.len() as u64).collect();

    let mut tags = base_tags(footprint, shape.bands, dtype, options);
    if let Some(rps) = rows_per_strip {
        tags.longs(ifd::ROWS_PER_STRIP, &[rps as u64]);
    }
    let header = tags.with_chunks(chunk_tags, &counts);

    let io = |e| SourceError::io(path, e);
    let mut file = File::create(path).map_err(io)?;
    file.write_all(&header).map_err(io)?;
    if options.compression == Compression::None && options.tile_size.is_none() {
        file.write_all(&bytes).map_err(io)?;
    } else {
        for chunk in slices {
            file.write_all(chunk).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes a GeoTIFF of uncompressed strips row by row, so rasters larger than memory can be
/// written as they are computed. The layout is fixed at creation (header first, strips in
/// order); [`StripWriter::finish`] checks every row came.
pub struct StripWriter {
    file: std::io::BufWriter<File>,
    path: std::path::PathBuf,
    footprint: Footprint,
    dtype: DType,
    bands: usize,
    rows_written: usize,
}

impl StripWriter {
    /// Creates `path`; `options` may not ask for compression or tiles.
    pub fn create(
        path: impl AsRef<Path>,
        footprint: &Footprint,
        dtype: DType,
        bands: usize,
        options: &WriteOptions,
    ) -> Result<StripWriter, SourceError> {
        let path = path.as_ref();
        let bad = |message: String| SourceError::BadRequest {
            path: path.to_path_buf(),
            message,
        };
        if options.compression != Compression::None || options.tile_size.is_some() {
            return Err(bad("a strip writer writes uncompressed strips only".into()));
        }
        if bands == 0 {
            return Err(bad("cannot write 0 bands".into()));
        }
        let row_bytes = (footprint.width() * bands * dtype.size()) as u64;
        let rps = (STRIP_BYTES as u64 / row_bytes).clamp(1, footprint.height() as u64);
        let height = footprint.height() as u64;
        let counts: Vec<u64> = (0..height.div_ceil(rps))
            .map(|i| rps.min(height - i * rps) * row_bytes)
            .collect();
        let mut tags = base_tags(footprint, bands, dtype, options);
        tags.longs(ifd::ROWS_PER_STRIP, &[rps]);
        let header = tags.with_chunks((ifd::STRIP_OFFSETS, ifd::STRIP_BYTE_COUNTS), &counts);
        let io = |e| SourceError::io(path, e);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        file.write_all(&header).map_err(io)?;
        Ok(StripWriter {
            file,
            path: path.to_path_buf(),
            footprint: *footprint,
            dtype,
            bands,
            rows_written: 0,
        })
    }

    /// Appends the next rows: an array of the raster's width, bands and dtype.
    pub fn write_rows(&mut self, rows: &Array) -> Result<(), SourceError> {
        let shape = rows.shape();
        if shape.width != self.footprint.width()
            || shape.bands != self.bands
            || rows.dtype() != self.dtype
            || self.rows_written + shape.height > self.footprint.height()
        {
            return Err(SourceError::BadRequest {
                path: self.path.clone(),
                message: format!(
                    "rows of shape {shape} and {} do not continue a {} × {} raster of {} band(s) of {} at row {}",
                    rows.dtype(),
                    self.footprint.width(),
                    self.footprint.height(),
                    self.bands,
                    self.dtype,
                    self.rows_written
                ),
            });
        }
        self.file
            .write_all(&le_bytes(rows))
            .map_err(|e| SourceError::io(&self.path, e))?;
        self.rows_written += shape.height;
        Ok(())
    }

    /// Flushes the file and makes it durable; an error if rows are missing.
    pub fn finish(self) -> Result<(), SourceError> {
        if self.rows_written != self.footprint.height() {
            return Err(SourceError::BadRequest {
                path: self.path.clone(),
                message: format!(
                    "only {} of {} rows written",
                    self.rows_written,
                    self.footprint.height()
                ),
            });
        }
        let io = |e| SourceError::io(&self.path, e);
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }
}

/// The tags of every file written here: size, samples, georeferencing, projection, nodata.
fn base_tags(footprint: &Footprint, bands: usize, dtype: DType, options: &WriteOptions) -> Tags {
    let size = dtype.size();
    let mut tags = Tags::default();
    tags.longs(ifd::IMAGE_WIDTH, &[footprint.width() as u64]);
    tags.longs(ifd::IMAGE_LENGTH, &[footprint.height() as u64]);
    tags.shorts(ifd::BITS_PER_SAMPLE, &vec![(size * 8) as u16; bands]);
    let compression = match options.compression {
        Compression::None => 1,
        Compression::Deflate => 8,
    };
    tags.shorts(ifd::COMPRESSION, &[compression]);
    tags.shorts(ifd::PHOTOMETRIC, &[1]);
    tags.shorts(ifd::SAMPLES_PER_PIXEL, &[bands as u16]);
    tags.shorts(ifd::PLANAR_CONFIGURATION, &[1]);
    if let Some(t) = options.tile_size {
        tags.longs(ifd::TILE_WIDTH, &[t as u64]);
        tags.longs(ifd::TILE_LENGTH, &[t as u64]);
    }
    if bands > 1 {
        tags.shorts(ifd::EXTRA_SAMPLES, &vec![0; bands - 1]);
    }
    let format = match dtype {
        DType::U8 | DType::U16 | DType::U32 => 1,
        DType::I16 | DType::I32 => 2,
        DType::F32 | DType::F64 => 3,
    };
    tags.shorts(ifd::SAMPLE_FORMAT, &vec![format; bands]);
    for (tag, values) in georeferencing_tags(&footprint.gt()) {
        tags.doubles(tag, &values);
    }
    let keys = match &options.projection {
        Some(projection) => GeoKeys::for_writing(projection),
        None => GeoKeys {
            directory: vec![1, 1, 0, 1, 1025, 0, 1, 1],
            ..GeoKeys::default()
        },
    };
    tags.shorts(ifd::GEO_KEY_DIRECTORY, &keys.directory);
    if !keys.doubles.is_empty() {
        tags.doubles(ifd::GEO_DOUBLE_PARAMS, &keys.doubles);
    }
    if !keys.ascii.is_empty() {
        tags.ascii(ifd::GEO_ASCII_PARAMS, &keys.ascii);
    }
    if let Some(nodata) = options.nodata {
        let text = if nodata.is_nan() {
            "nan".to_string()
        } else {
            format!("{nodata}")
        };
        tags.ascii(ifd::GDAL_NODATA, &text);
    }
    tags
}

/// The array's samples as little-endian bytes (borrowed on little-endian machines).
fn le_bytes(array: &Array) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        return crate::with_data!(array.data(), v => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())));
    }
    let mut out = Vec::with_capacity(array.shape().len() * array.dtype().size());
    crate::with_data!(array.data(), v => {
        for s in v.iter() {
            out.extend_from_slice(&s.to_le_bytes());
        }
    });
    Cow::Owned(out)
}

/// The IFD being built: tags with their type and little-endian values.
#[derive(Default)]
struct Tags {
    entries: std::collections::BTreeMap<u16, (u16, u64, Vec<u8>)>,
}

impl Tags {
    fn push(&mut self, tag: u16, typ: u16, values: Vec<u64>) {
        let mut bytes = Vec::new();
        for v in &values {
            match typ {
                SHORT => bytes.extend_from_slice(&(*v as u16).to_le_bytes()),
                LONG => bytes.extend_from_slice(&(*v as u32).to_le_bytes()),
                _ => bytes.extend_from_slice(&v.to_le_bytes()),
            }
        }
        self.entries.insert(tag, (typ, values.len() as u64, bytes));
    }

    fn shorts(&mut self, tag: u16, values: &[u16]) {
        self.push(tag, SHORT, values.iter().map(|&v| v as u64).collect());
    }

    fn longs(&mut self, tag: u16, values: &[u64]) {
        self.push(tag, LONG, values.to_vec());
    }

    fn doubles(&mut self, tag: u16, values: &[f64]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.entries
            .insert(tag, (DOUBLE, values.len() as u64, bytes));
    }

    fn ascii(&mut self, tag: u16, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.entries.insert(tag, (ASCII, bytes.len() as u64, bytes));
    }

    /// Header and IFD for chunks of `counts` bytes laid out right after it, in order.
    fn with_chunks(mut self, (offsets_tag, counts_tag): (u16, u16), counts: &[u64]) -> Vec<u8> {
        let data_len: u64 = counts.iter().sum();
        // Offsets are placeholders until the header's size is known; their size does not change.
        let bigtiff =
            data_len + self.estimate() + counts.len() as u64 * 16 > u32::MAX as u64 - 1024;
        let offset_type = if bigtiff { LONG8 } else { LONG };
        self.push(offsets_tag, offset_type, vec![0u64; counts.len()]);
        self.push(counts_tag, offset_type, counts.to_vec());
        let header_len = self.encode(bigtiff).len() as u64;
        let mut offsets = Vec::with_capacity(counts.len());
        let mut at = header_len;
        for &count in counts {
            offsets.push(at);
            at += count;
        }
        self.push(offsets_tag, offset_type, offsets);
        let header = self.encode(bigtiff);
        debug_assert_eq!(header.len() as u64, header_len);
        header
    }

    /// An upper bound of the encoded size (for the BigTIFF decision).
    fn estimate(&self) -> u64 {
        self.entries
            .values()
            .map(|e| 24 + e.2.len() as u64)
            .sum::<u64>()
            + 64
    }

    /// Header, IFD and out-of-line values.
    fn encode(&self, bigtiff: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let (ifd_at, entry_size, inline): (u64, u64, usize) = if bigtiff {
            out.extend_from_slice(b"II\x2b\x00\x08\x00\x00\x00");
            out.extend_from_slice(&16u64.to_le_bytes());
            (16, 20, 8)
        } else {
            out.extend_from_slice(b"II\x2a\x00");
            out.extend_from_slice(&8u32.to_le_bytes());
            (8, 12, 4)
        };
        let n = self.entries.len() as u64;
        let ifd_len = if bigtiff {
            8 + n * entry_size + 8
        } else {
            2 + n * entry_size + 4
        };
        let mut values_at = ifd_at + ifd_len;
        let mut values = Vec::new();
        if bigtiff {
            out.extend_from_slice(&n.to_le_bytes());
        } else {
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        for (&tag, (typ, count, bytes)) in &self.entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&typ.to_le_bytes());
            if bigtiff {
                out.extend_from_slice(&count.to_le_bytes());
            } else {
                out.extend_from_slice(&(*count as u32).to_le_bytes());
            }
            if bytes.len() <= inline {
                let mut field = bytes.clone();
                field.resize(inline, 0);
                out.extend_from_slice(&field);
            } else {
                if bigtiff {
                    out.extend_from_slice(&values_at.to_le_bytes());
                } else {
                    out.extend_from_slice(&(values_at as u32).to_le_bytes());
                }
                values.extend_from_slice(bytes);
                let pad = values.len().next_multiple_of(8) - values.len();
                values.resize(values.len() + pad, 0);
                values_at += (bytes.len() + pad) as u64;
            }
        }
        out.extend_from_slice(&vec![0u8; if bigtiff { 8 } else { 4 }]);
        out.extend_from_slice(&values);
        out
    }
}
