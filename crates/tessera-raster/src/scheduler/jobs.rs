//! The work the scheduler hands to pools. Every job has all its inputs when it starts and never
//! waits for another job; it reports through the scheduler's channel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::TileCache;
use crate::error::{RasterError, Result, TileIndex};
use crate::footprint::PixelWindow;
use crate::recipe::{ComputeInput, PrimitiveArray};
use crate::source::{self, RasterSource, ReadRequest, SourceError, WindowRead};
use crate::{Array, DType, Footprint, Pixel, Shape, with_data};

use super::RecipeNode;

/// A part of a product: a tile's pixels, in memory or in a validated cache file.
#[derive(Debug, Clone)]
pub(super) enum Part {
    Memory(PixelWindow, Arc<Array>),
    File(PixelWindow, TileIndex),
}

/// Copies the overlap of `src` (covering `src_win`) into `dst` (covering `dst_win`); both on
/// the same grid, same dtype and bands.
pub(super) fn paste(src: &Array, src_win: PixelWindow, dst: &mut Array, dst_win: PixelWindow) {
    let Some(overlap) = src_win.intersection(&dst_win) else {
        return;
    };
    let (ss, ds) = (src.shape(), dst.shape());
    let n = overlap.width * ss.bands;
    let sc = (overlap.col - src_win.col) as usize;
    let dc = (overlap.col - dst_win.col) as usize;
    with_data!(src.data(), s => {
        let d = Pixel::slice_mut(dst.data_mut()).expect("paste: same dtype");
        for r in 0..overlap.height {
            let sr = (overlap.row - src_win.row) as usize + r;
            let dr = (overlap.row - dst_win.row) as usize + r;
            let from = ss.index(sr, sc, 0);
            let to = ds.index(dr, dc, 0);
            d[to..to + n].copy_from_slice(&s[from..from + n]);
        }
    })
}

/// Builds the array of `window` (all bands, the raster's dtype) from its parts (`cache`: where
/// file parts are).
pub(super) fn assemble(
    window: PixelWindow,
    dtype: DType,
    bands: usize,
    fill: f64,
    cache: Option<&TileCache>,
    parts: &[Part],
) -> Result<Arc<Array>> {
    if let [Part::Memory(w, array)] = parts
        && *w == window
    {
        return Ok(array.clone());
    }
    let mut out = Array::filled(dtype, Shape::new(window.height, window.width, bands), fill);
    let all: Vec<usize> = (0..bands).collect();
    for part in parts {
        match part {
            Part::Memory(w, array) => paste(array, *w, &mut out, window),
            Part::File(w, tile) => {
                let Some(overlap) = w.intersection(&window) else {
                    continue;
                };
                let Some(cache) = cache else {
                    return Err(RasterError::Internal("a file part without a cache".into()));
                };
                // The file holds the tile `w`: read the overlap, in the tile's own pixels.
                let tiff = cache.open_valid(*tile)?;
                let local = PixelWindow::new(
                    overlap.col - w.col,
                    overlap.row - w.row,
                    overlap.width,
                    overlap.height,
                );
                let at = (
                    (overlap.col - window.col) as usize,
                    (overlap.row - window.row) as usize,
                );
                tiff.read_window_into(local, &all, &mut out, at)?;
            }
        }
    }
    Ok(Arc::new(out))
}

/// A window of a recipe held in memory, read like a file so that band selection, dtype,
/// nodata and resampling behave exactly as for files.
pub(crate) struct ArraySource {
    pub(crate) name: PathBuf,
    pub(crate) footprint: Footprint,
    pub(crate) dtype: DType,
    pub(crate) bands: usize,
    pub(crate) nodata: Option<f64>,
    /// Which pixels `array` holds (inside the raster), if any.
    pub(crate) held: Option<(PixelWindow, Arc<Array>)>,
}

impl RasterSource for ArraySource {
    fn footprint(&self) -> Footprint {
        self.footprint
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn bands(&self) -> usize {
        self.bands
    }
    fn nodata(&self) -> Option<f64> {
        self.nodata
    }
    fn projection(&self) -> Option<source::Projection> {
        None
    }
    fn read(&self, request: &ReadRequest) -> Result<Array, SourceError> {
        source::read_windowed(self, request)
    }
}

impl WindowRead for ArraySource {
    fn path(&self) -> &Path {
        &self.name
    }

    fn read_window_into(
        &self,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Array,
        at: (usize, usize),
    ) -> Result<(), SourceError> {
        let Some((held, array)) = &self.held else {
            return Err(SourceError::BadRequest {
                path: self.name.clone(),
                message: "internal: window read with no pixels held".into(),
            });
        };
        let inside = held.intersection(&window) == Some(window);
        if !inside {
            return Err(SourceError::BadRequest {
                path: self.name.clone(),
                message: format!("internal: window {window:?} outside the pixels held {held:?}"),
            });
        }
        let target = PixelWindow::new(
            window.col - at.0 as i64,
            window.row - at.1 as i64,
            out.shape().width,
            out.shape().height,
        );
        if *held == window && bands.iter().copied().eq(0..self.bands) {
            // All the pixels held, all bands in order: whole rows at once.
            paste(array, *held, out, target);
            return Ok(());
        }
        let (hs, os) = (array.shape(), out.shape());
        with_data!(array.data(), s => {
            let d = Pixel::slice_mut(out.data_mut()).expect("read_window_into: same dtype");
            for r in 0..window.height {
                for c in 0..window.width {
                    let src = hs.index(
                        (window.row - held.row) as usize + r,
                        (window.col - held.col) as usize + c,
                        0,
                    );
                    let dst = os.index(at.1 + r, at.0 + c, 0);
                    for (k, &b) in bands.iter().enumerate() {
                        d[dst + k] = s[src + b];
                    }
                }
            }
        });
        Ok(())
    }
}

/// Runs a recipe's compute function on one tile and checks what it returns.
pub(super) fn compute(
    recipe: &RecipeNode,
    tile: TileIndex,
    footprint: &Footprint,
    primitives: &[PrimitiveArray],
) -> Result<Array> {
    let input = ComputeInput {
        footprint,
        primitives,
    };
    let fail = |message: String| RasterError::Compute {
        raster: recipe.name.clone(),
        tile,
        footprint: footprint.to_string(),
        message,
    };
    let f = recipe.compute.clone();
    let array = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&input))) {
        Ok(Ok(array)) => array,
        Ok(Err(message)) => return Err(fail(message)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            return Err(fail(format!("the compute function panicked: {what}")));
        }
    };
    let expected = Shape::new(footprint.height(), footprint.width(), recipe.bands);
    if array.shape() != expected || array.dtype() != recipe.dtype {
        return Err(RasterError::Invalid(format!(
            "raster `{}`: the compute function returned a {} array of {} for tile {tile}; \
             expected {expected} of {}",
            recipe.name,
            array.shape(),
            array.dtype(),
            recipe.dtype
        )));
    }
    Ok(array)
}
