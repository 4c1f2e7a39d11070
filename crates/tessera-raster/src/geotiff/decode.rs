//! Pixel data of a TIFF: the chunk layout (strips or tiles, chunky or planar), decompression
//! (none, LZW, deflate, PackBits), predictors, byte order, and copying the chunks a window
//! touches into an output buffer — reading only those chunks, with positioned reads, so that
//! any number of threads read one file at once.

use std::fs::File;
use std::path::Path;

use bytemuck::Pod;

use super::ifd::{ByteOrder, read_exact_at};
use crate::source::{PixelWindow, SourceError};
use crate::{DType, Pixel};

/// A sample type as stored in files.
pub(crate) trait Sample: Pixel + Pod + Default {
    fn swap_bytes(self) -> Self;
    fn wrapping_add(self, other: Self) -> Self;
}

macro_rules! sample_int {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            fn swap_bytes(self) -> Self { <$t>::swap_bytes(self) }
            fn wrapping_add(self, other: Self) -> Self { <$t>::wrapping_add(self, other) }
        }
    )*};
}
sample_int!(u8, u16, i16, u32, i32);

impl Sample for f32 {
    fn swap_bytes(self) -> Self {
        f32::from_bits(self.to_bits().swap_bytes())
    }
    fn wrapping_add(self, other: Self) -> Self {
        self + other
    }
}

impl Sample for f64 {
    fn swap_bytes(self) -> Self {
        f64::from_bits(self.to_bits().swap_bytes())
    }
    fn wrapping_add(self, other: Self) -> Self {
        self + other
    }
}

/// Compression of the chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    None,
    Lzw,
    Deflate,
    PackBits,
}

impl Codec {
    pub(crate) fn from_tag(value: u64) -> Option<Codec> {
        Some(match value {
            1 => Codec::None,
            5 => Codec::Lzw,
            8 | 32946 => Codec::Deflate,
            32773 => Codec::PackBits,
            _ => return None,
        })
    }
}

/// Where the pixels are and how they are encoded.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// Samples per pixel (bands).
    pub(crate) spp: usize,
    pub(crate) dtype: DType,
    /// PlanarConfiguration = 2: one chunk set per band.
    pub(crate) planar: bool,
    pub(crate) tiled: bool,
    pub(crate) chunk_w: usize,
    pub(crate) chunk_h: usize,
    pub(crate) across: usize,
    pub(crate) down: usize,
    pub(crate) offsets: Vec<u64>,
    pub(crate) counts: Vec<u64>,
    pub(crate) codec: Codec,
    pub(crate) predictor: u16,
    pub(crate) order: ByteOrder,
    /// Value of missing (sparse) chunks: the nodata, else 0.
    pub(crate) sparse_fill: f64,
}

/// An output buffer: `data` is `height × width × bands` samples, pixel-interleaved.
pub(crate) struct Out<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) width: usize,
    pub(crate) bands: usize,
    /// Position of the window's top-left pixel in the buffer (column, row).
    pub(crate) at: (usize, usize),
}

/// The part of one chunk a window needs.
struct Part {
    index: usize,
    /// Rows and columns within the chunk.
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    /// Rows in the chunk as stored (strips at the bottom may be shorter).
    stored_rows: usize,
    /// Position of the part's first pixel in the window.
    win_row: usize,
    win_col: usize,
    /// Samples per pixel in the chunk.
    spp: usize,
}

impl Layout {
    /// Reads `window` of `bands` into `out`.
    pub(crate) fn read<T: Sample>(
        &self,
        file: &File,
        path: &Path,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Out<'_, T>,
    ) -> Result<(), SourceError> {
        let (col, row) = (window.col as usize, window.row as usize);
        let (col_end, row_end) = (col + window.width, row + window.height);
        let identity = !self.planar
            && bands.len() == self.spp
            && bands.iter().enumerate().all(|(i, &b)| i == b);
        for cy in row / self.chunk_h..=(row_end - 1) / self.chunk_h {
            for cx in col / self.chunk_w..=(col_end - 1) / self.chunk_w {
                let (y0, x0) = (cy * self.chunk_h, cx * self.chunk_w);
                let rows = row.max(y0) - y0..row_end.min(y0 + self.chunk_h) - y0;
                let cols = col.max(x0) - x0..col_end.min(x0 + self.chunk_w) - x0;
                let stored_rows = if self.tiled {
                    self.chunk_h
                } else {
                    self.chunk_h.min(self.height - y0)
                };
                let part = |index, spp| Part {
                    index,
                    rows: rows.clone(),
                    cols: cols.clone(),
                    stored_rows,
                    win_row: y0 + rows.start - row,
                    win_col: x0 + cols.start - col,
                    spp,
                };
                let index = cy * self.across + cx;
                if self.planar {
                    let plane = self.across * self.down;
                    for (k, &band) in bands.iter().enumerate() {
                        if bands[..k].contains(&band) {
                            continue;
                        }
                        let map: Vec<(usize, usize)> = bands
                            .iter()
                            .enumerate()
                            .filter(|(_, b)| **b == band)
                            .map(|(i, _)| (0, i))
                            .collect();
                        self.read_part(
                            file,
                            path,
                            &part(band * plane + index, 1),
                            &map,
                            false,
                            out,
                        )?;
                    }
                } else {
                    let map: Vec<(usize, usize)> =
                        bands.iter().enumerate().map(|(i, &b)| (b, i)).collect();
                    self.read_part(file, path, &part(index, self.spp), &map, identity, out)?;
                }
            }
        }
        Ok(())
    }

    fn read_part<T: Sample>(
        &self,
        file: &File,
        path: &Path,
        part: &Part,
        map: &[(usize, usize)],
        identity: bool,
        out: &mut Out<'_, T>,
    ) -> Result<(), SourceError> {
        let (offset, count) = (self.offsets[part.index], self.counts[part.index]);
        let row_len = self.chunk_w * part.spp;
        let n_rows = part.rows.len();
        let n_cols = part.cols.len();
        if count == 0 || offset == 0 {
            let fill = T::from_f64(self.sparse_fill);
            for r in 0..n_rows {
                for c in 0..n_cols {
                    let o = out_index(out, part.win_row + r, part.win_col + c);
                    for &(_, dst) in map {
                        out.data[o + dst] = fill;
                    }
                }
            }
            return Ok(());
        }
        let size = self.dtype.size() as u64;
        if self.codec == Codec::None {
            let needed = (part.stored_rows * row_len) as u64 * size;
            if count < needed {
                return Err(SourceError::corrupt(
                    path,
                    format!(
                        "chunk {} holds {count} bytes, {needed} expected",
                        part.index
                    ),
                ));
            }
            let native = self.order.is_native();
            let first = (part.rows.start * row_len + part.cols.start * part.spp) as u64;
            let span = ((n_rows - 1) * row_len + n_cols * part.spp) as u64;
            let wanted = (n_rows * n_cols * part.spp) as u64;
            // Direct reads into the output when rows are copied as they are.
            if identity && native {
                let o0 = out_index(out, part.win_row, part.win_col);
                if n_cols == self.chunk_w && out.width == n_cols {
                    let dst = &mut out.data[o0..o0 + (n_rows * row_len)];
                    return read_exact_at(
                        file,
                        path,
                        bytemuck::cast_slice_mut(dst),
                        offset + first * size,
                        "chunk",
                    );
                }
                if span > 4 * wanted {
                    for r in 0..n_rows {
                        let o = out_index(out, part.win_row + r, part.win_col);
                        let dst = &mut out.data[o..o + n_cols * part.spp];
                        let at = offset + (first + (r * row_len) as u64) * size;
                        read_exact_at(file, path, bytemuck::cast_slice_mut(dst), at, "chunk")?;
                    }
                    return Ok(());
                }
            }
            if span > 4 * wanted {
                let mut buf = vec![T::default(); n_cols * part.spp];
                for r in 0..n_rows {
                    let at = offset + (first + (r * row_len) as u64) * size;
                    read_exact_at(file, path, bytemuck::cast_slice_mut(&mut buf), at, "chunk")?;
                    if !native {
                        buf.iter_mut().for_each(|v| *v = v.swap_bytes());
                    }
                    copy_rows(
                        &buf,
                        0,
                        0..1,
                        0..n_cols,
                        part.spp,
                        map,
                        identity,
                        out,
                        part.win_row + r,
                        part.win_col,
                    );
                }
                return Ok(());
            }
            let mut buf = vec![T::default(); span as usize];
            read_exact_at(
                file,
                path,
                bytemuck::cast_slice_mut(&mut buf),
                offset + first * size,
                "chunk",
            )?;
            if !native {
                buf.iter_mut().for_each(|v| *v = v.swap_bytes());
            }
            copy_rows(
                &buf,
                row_len,
                0..n_rows,
                0..n_cols,
                part.spp,
                map,
                identity,
                out,
                part.win_row,
                part.win_col,
            );
            return Ok(());
        }
        let mut raw = vec![0u8; count as usize];
        read_exact_at(file, path, &mut raw, offset, "chunk")?;
        let mut buf = vec![T::default(); part.stored_rows * row_len];
        self.decompress(path, part.index, &raw, bytemuck::cast_slice_mut(&mut buf))?;
        self.unpredict(&mut buf, row_len, part.spp);
        copy_rows(
            &buf,
            row_len,
            part.rows.clone(),
            part.cols.clone(),
            part.spp,
            map,
            identity,
            out,
            part.win_row,
            part.win_col,
        );
        Ok(())
    }

    fn decompress(
        &self,
        path: &Path,
        index: usize,
        raw: &[u8],
        dst: &mut [u8],
    ) -> Result<(), SourceError> {
        let corrupt = |what: String| SourceError::corrupt(path, format!("chunk {index}: {what}"));
        let written = match self.codec {
            Codec::None => unreachable!("uncompressed chunks are read directly"),
            Codec::Deflate => {
                let mut z = flate2::Decompress::new(true);
                let deflate = |e: flate2::DecompressError| corrupt(format!("deflate: {e}"));
                let mut status = z
                    .decompress(raw, dst, flate2::FlushDecompress::Finish)
                    .map_err(deflate)?;
                let written = z.total_out() as usize;
                // The output is full: read the stream to its end so that its checksum is checked.
                let mut rest = [0u8; 256];
                while status != flate2::Status::StreamEnd {
                    let consumed = z.total_in() as usize;
                    status = z
                        .decompress(&raw[consumed..], &mut rest, flate2::FlushDecompress::Finish)
                        .map_err(deflate)?;
                    if z.total_in() as usize == consumed {
                        break;
                    }
                }
                written
            }
            Codec::Lzw => {
                let mut lzw =
                    weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
                let (mut read, mut written) = (0, 0);
                loop {
                    let r = lzw.decode_bytes(&raw[read..], &mut dst[written..]);
                    read += r.consumed_in;
                    written += r.consumed_out;
                    match r.status {
                        Ok(weezl::LzwStatus::Done) => break,
                        Ok(_) if written == dst.len() || read == raw.len() => break,
                        Ok(_) if r.consumed_in == 0 && r.consumed_out == 0 => break,
                        Ok(_) => {}
                        Err(e) => return Err(corrupt(format!("LZW: {e}"))),
                    }
                }
                written
            }
            Codec::PackBits => unpack_bits(raw, dst),
        };
        if written < dst.len() {
            return Err(corrupt(format!(
                "decompresses to {written} bytes, {} expected",
                dst.len()
            )));
        }
        Ok(())
    }

    /// Byte order and predictor of a decompressed chunk (`row_len` samples a row).
    fn unpredict<T: Sample>(&self, buf: &mut [T], row_len: usize, spp: usize) {
        if self.predictor == 3 {
            // Floating point predictor: per row, bytes differenced then grouped by significance
            // (most significant first), whatever the file's byte order.
            let size = self.dtype.size();
            let mut tmp = vec![0u8; row_len * size];
            for row in buf.chunks_exact_mut(row_len) {
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(row);
                for i in spp..bytes.len() {
                    bytes[i] = bytes[i].wrapping_add(bytes[i - spp]);
                }
                tmp.copy_from_slice(bytes);
                for (k, sample) in bytes.chunks_exact_mut(size).enumerate() {
                    for (b, byte) in sample.iter_mut().enumerate() {
                        let significance = if cfg!(target_endian = "little") {
                            size - 1 - b
                        } else {
                            b
                        };
                        *byte = tmp[significance * row_len + k];
                    }
                }
            }
            return;
        }
        if !self.order.is_native() {
            buf.iter_mut().for_each(|v| *v = v.swap_bytes());
        }
        if self.predictor == 2 {
            for row in buf.chunks_exact_mut(row_len) {
                for i in spp..row.len() {
                    row[i] = row[i].wrapping_add(row[i - spp]);
                }
            }
        }
    }
}

fn out_index<T>(out: &Out<'_, T>, win_row: usize, win_col: usize) -> usize {
    ((out.at.1 + win_row) * out.width + out.at.0 + win_col) * out.bands
}

/// Copies `rows × cols` of a chunk buffer (`row_len` samples a row, `spp` a pixel) to the
/// window position `(win_row, win_col)` of `out`, band `src` of the chunk going to band `dst`.
#[allow(clippy::too_many_arguments)]
fn copy_rows<T: Sample>(
    buf: &[T],
    row_len: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    spp: usize,
    map: &[(usize, usize)],
    identity: bool,
    out: &mut Out<'_, T>,
    win_row: usize,
    win_col: usize,
) {
    let n = cols.len() * spp;
    for (i, r) in rows.enumerate() {
        let start = r * row_len + cols.start * spp;
        let src = &buf[start..start + n];
        let o = out_index(out, win_row + i, win_col);
        if identity {
            out.data[o..o + n].copy_from_slice(src);
        } else {
            let bands = out.bands;
            let dst = &mut out.data[o..o + cols.len() * bands];
            for (pixel, to) in src.chunks_exact(spp).zip(dst.chunks_exact_mut(bands)) {
                for &(s, d) in map {
                    to[d] = pixel[s];
                }
            }
        }
    }
}

/// PackBits decompression; returns the bytes written.
fn unpack_bits(raw: &[u8], dst: &mut [u8]) -> usize {
    let (mut i, mut o) = (0, 0);
    while i < raw.len() && o < dst.len() {
        let n = raw[i] as i8;
        i += 1;
        if n >= 0 {
            let len = (n as usize + 1).min(raw.len() - i).min(dst.len() - o);
            dst[o..o + len].copy_from_slice(&raw[i..i + len]);
            i += n as usize + 1;
            o += len;
        } else if n != -128 {
            let len = ((1 - n as isize) as usize).min(dst.len() - o);
            if i < raw.len() {
                dst[o..o + len].fill(raw[i]);
                o += len;
            }
            i += 1;
        }
    }
    o
}

/// Checks every chunk lies inside a file of `len` bytes.
pub(crate) fn check_chunks(layout: &Layout, path: &Path, len: u64) -> Result<(), SourceError> {
    for (i, (&offset, &count)) in layout.offsets.iter().zip(&layout.counts).enumerate() {
        if count > 0 && offset.checked_add(count).is_none_or(|end| end > len) {
            return Err(SourceError::corrupt(
                path,
                format!(
                    "truncated: chunk {i} ({count} bytes at offset {offset}) lies beyond the end of the file ({len} bytes)"
                ),
            ));
        }
    }
    Ok(())
}
