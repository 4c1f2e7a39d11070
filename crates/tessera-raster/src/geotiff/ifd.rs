//! TIFF structure: the header and first image file directory (classic TIFF and BigTIFF, either
//! byte order), read with positioned reads, and typed access to the tag values.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::source::SourceError;

pub(crate) const IMAGE_WIDTH: u16 = 256;
pub(crate) const IMAGE_LENGTH: u16 = 257;
pub(crate) const BITS_PER_SAMPLE: u16 = 258;
pub(crate) const COMPRESSION: u16 = 259;
pub(crate) const PHOTOMETRIC: u16 = 262;
pub(crate) const STRIP_OFFSETS: u16 = 273;
pub(crate) const SAMPLES_PER_PIXEL: u16 = 277;
pub(crate) const ROWS_PER_STRIP: u16 = 278;
pub(crate) const STRIP_BYTE_COUNTS: u16 = 279;
pub(crate) const PLANAR_CONFIGURATION: u16 = 284;
pub(crate) const PREDICTOR: u16 = 317;
pub(crate) const TILE_WIDTH: u16 = 322;
pub(crate) const TILE_LENGTH: u16 = 323;
pub(crate) const TILE_OFFSETS: u16 = 324;
pub(crate) const TILE_BYTE_COUNTS: u16 = 325;
pub(crate) const EXTRA_SAMPLES: u16 = 338;
pub(crate) const SAMPLE_FORMAT: u16 = 339;
pub(crate) const MODEL_PIXEL_SCALE: u16 = 33550;
pub(crate) const MODEL_TIEPOINT: u16 = 33922;
pub(crate) const MODEL_TRANSFORMATION: u16 = 34264;
pub(crate) const GEO_KEY_DIRECTORY: u16 = 34735;
pub(crate) const GEO_DOUBLE_PARAMS: u16 = 34736;
pub(crate) const GEO_ASCII_PARAMS: u16 = 34737;
pub(crate) const GDAL_NODATA: u16 = 42113;

/// TIFF field types.
pub(crate) const BYTE: u16 = 1;
pub(crate) const ASCII: u16 = 2;
pub(crate) const SHORT: u16 = 3;
pub(crate) const LONG: u16 = 4;
pub(crate) const DOUBLE: u16 = 12;
pub(crate) const LONG8: u16 = 16;

/// A tag's name for messages: `"Compression (259)"`.
pub(crate) fn tag_name(tag: u16) -> String {
    let name = match tag {
        IMAGE_WIDTH => "ImageWidth",
        IMAGE_LENGTH => "ImageLength",
        BITS_PER_SAMPLE => "BitsPerSample",
        COMPRESSION => "Compression",
        PHOTOMETRIC => "PhotometricInterpretation",
        STRIP_OFFSETS => "StripOffsets",
        SAMPLES_PER_PIXEL => "SamplesPerPixel",
        ROWS_PER_STRIP => "RowsPerStrip",
        STRIP_BYTE_COUNTS => "StripByteCounts",
        PLANAR_CONFIGURATION => "PlanarConfiguration",
        PREDICTOR => "Predictor",
        TILE_WIDTH => "TileWidth",
        TILE_LENGTH => "TileLength",
        TILE_OFFSETS => "TileOffsets",
        TILE_BYTE_COUNTS => "TileByteCounts",
        SAMPLE_FORMAT => "SampleFormat",
        MODEL_PIXEL_SCALE => "ModelPixelScale",
        MODEL_TIEPOINT => "ModelTiepoint",
        MODEL_TRANSFORMATION => "ModelTransformation",
        GEO_KEY_DIRECTORY => "GeoKeyDirectory",
        GDAL_NODATA => "GDAL_NODATA",
        _ => "tag",
    };
    format!("{name} ({tag})")
}

/// Byte order of a TIFF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    pub(crate) fn is_native(self) -> bool {
        (self == ByteOrder::Little) == cfg!(target_endian = "little")
    }
}

fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

/// One tag: its type and raw value bytes, in the file's byte order.
struct Entry {
    typ: u16,
    count: u64,
    bytes: Vec<u8>,
}

/// The first image file directory of a TIFF file.
pub(crate) struct Ifd {
    pub(crate) order: ByteOrder,
    entries: BTreeMap<u16, Entry>,
}

/// Bytes read at once from the start of a file when opening it.
const HEAD_BYTES: usize = 16 * 1024;

/// Reads exactly `buf.len()` bytes at `offset`; a short file is corrupt, not an I/O error.
pub(crate) fn read_exact_at(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<(), SourceError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            SourceError::corrupt(
                path,
                format!(
                    "truncated: {what} ({} bytes at offset {offset}) lies beyond the end of the file",
                    buf.len()
                ),
            )
        } else {
            SourceError::io(path, e)
        }
    })
}

impl Ifd {
    /// Parses the header and the first IFD of `file` (`len` bytes long).
    pub(crate) fn read(file: &File, path: &Path, len: u64) -> Result<Ifd, SourceError> {
        if len < 8 {
            return Err(SourceError::corrupt(
                path,
                format!("{len} bytes: not a TIFF file"),
            ));
        }
        // The start of the file, where IFD and tag values usually are, in one read.
        let mut head = vec![0u8; (len as usize).min(HEAD_BYTES)];
        read_exact_at(file, path, &mut head, 0, "header")?;
        let read_exact_at =
            |file: &File, path: &Path, buf: &mut [u8], offset: u64, what: &str| match head
                .get(offset as usize..offset as usize + buf.len())
            {
                Some(cached) if offset < HEAD_BYTES as u64 => {
                    buf.copy_from_slice(cached);
                    Ok(())
                }
                _ => read_exact_at(file, path, buf, offset, what),
            };
        let mut header = [0u8; 16];
        let n = (len as usize).min(16);
        header[..n].copy_from_slice(&head[..n]);
        let order = match &header[..2] {
            b"II" => ByteOrder::Little,
            b"MM" => ByteOrder::Big,
            _ => return Err(SourceError::corrupt(path, "no TIFF signature (II or MM)")),
        };
        let r = Reader { order };
        let (bigtiff, mut offset) = match r.u16(&header[2..4]) {
            42 => (false, r.u32(&header[4..8]) as u64),
            43 if n == 16 => (true, r.u64(&header[8..16])),
            magic => {
                return Err(SourceError::corrupt(
                    path,
                    format!("TIFF magic number {magic}, expected 42 or 43"),
                ));
            }
        };
        // Skip nothing: only the first IFD (full resolution image) is read.
        let (count_size, entry_size, inline) = if bigtiff { (8, 20, 8) } else { (2, 12, 4) };
        if offset < 8 || offset + count_size > len {
            return Err(SourceError::corrupt(
                path,
                format!("first IFD offset {offset} outside the file"),
            ));
        }
        let mut count_bytes = [0u8; 8];
        read_exact_at(
            file,
            path,
            &mut count_bytes[..count_size as usize],
            offset,
            "IFD",
        )?;
        let count = if bigtiff {
            r.u64(&count_bytes)
        } else {
            r.u16(&count_bytes) as u64
        };
        if count == 0 || count > 4096 {
            return Err(SourceError::corrupt(
                path,
                format!("IFD with {count} entries"),
            ));
        }
        offset += count_size;
        let mut table = vec![0u8; (count * entry_size) as usize];
        read_exact_at(file, path, &mut table, offset, "IFD entries")?;
        let mut entries = BTreeMap::new();
        for raw in table.chunks_exact(entry_size as usize) {
            let tag = r.u16(&raw[0..2]);
            let typ = r.u16(&raw[2..4]);
            let count = if bigtiff {
                r.u64(&raw[4..12])
            } else {
                r.u32(&raw[4..8]) as u64
            };
            let Some(size) = type_size(typ) else { continue };
            let total = count.checked_mul(size).filter(|&t| t <= len);
            let Some(total) = total else {
                return Err(SourceError::corrupt(
                    path,
                    format!(
                        "{} has {count} values, more than the file holds",
                        tag_name(tag)
                    ),
                ));
            };
            let value_field = &raw[if bigtiff { 12..20 } else { 8..12 }];
            let bytes = if total <= inline {
                value_field[..total as usize].to_vec()
            } else {
                let at = if bigtiff {
                    r.u64(value_field)
                } else {
                    r.u32(value_field) as u64
                };
                let mut bytes = vec![0u8; total as usize];
                read_exact_at(
                    file,
                    path,
                    &mut bytes,
                    at,
                    &format!("value of {}", tag_name(tag)),
                )?;
                bytes
            };
            entries.insert(tag, Entry { typ, count, bytes });
        }
        Ok(Ifd { order, entries })
    }

    pub(crate) fn has(&self, tag: u16) -> bool {
        self.entries.contains_key(&tag)
    }

    /// Unsigned integer values (BYTE, SHORT, LONG, LONG8, IFD, IFD8).
    pub(crate) fn uints(&self, tag: u16) -> Option<Vec<u64>> {
        let e = self.entries.get(&tag)?;
        let r = Reader { order: self.order };
        let size = type_size(e.typ)? as usize;
        let chunks = e.bytes.chunks_exact(size).take(e.count as usize);
        Some(match e.typ {
            1 | 7 => chunks.map(|c| c[0] as u64).collect(),
            3 => chunks.map(|c| r.u16(c) as u64).collect(),
            4 | 13 => chunks.map(|c| r.u32(c) as u64).collect(),
            16 | 18 => chunks.map(|c| r.u64(c)).collect(),
            _ => return None,
        })
    }

    pub(crate) fn uint(&self, tag: u16) -> Option<u64> {
        self.uints(tag)?.first().copied()
    }

    /// Floating-point values (DOUBLE, FLOAT, RATIONAL and integers converted).
    pub(crate) fn doubles(&self, tag: u16) -> Option<Vec<f64>> {
        let e = self.entries.get(&tag)?;
        let r = Reader { order: self.order };
        let size = type_size(e.typ)? as usize;
        let chunks = e.bytes.chunks_exact(size).take(e.count as usize);
        Some(match e.typ {
            12 => chunks.map(|c| f64::from_bits(r.u64(c))).collect(),
            11 => chunks.map(|c| f32::from_bits(r.u32(c)) as f64).collect(),
            5 => chunks
                .map(|c| r.u32(&c[..4]) as f64 / r.u32(&c[4..]) as f64)
                .collect(),
            _ => self.uints(tag)?.into_iter().map(|v| v as f64).collect(),
        })
    }

    /// An ASCII value, up to its first NUL.
    pub(crate) fn ascii(&self, tag: u16) -> Option<String> {
        let e = self.entries.get(&tag)?;
        if e.typ != ASCII && e.typ != BYTE && e.typ != 7 {
            return None;
        }
        let end = e
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(e.bytes.len());
        Some(String::from_utf8_lossy(&e.bytes[..end]).into_owned())
    }
}

/// Decodes integers in a byte order.
#[derive(Clone, Copy)]
struct Reader {
    order: ByteOrder,
}

impl Reader {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self.order {
            ByteOrder::Little => u16::from_le_bytes(a),
            ByteOrder::Big => u16::from_be_bytes(a),
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self.order {
            ByteOrder::Little => u32::from_le_bytes(a),
            ByteOrder::Big => u32::from_be_bytes(a),
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let a: [u8; 8] = b[..8].try_into().expect("8 bytes");
        match self.order {
            ByteOrder::Little => u64::from_le_bytes(a),
            ByteOrder::Big => u64::from_be_bytes(a),
        }
    }
}
