//! Reads of a cached recipe answered on the caller's thread when the cache tiles they need are
//! valid: no scheduler, no pool, no channel — what reading the tile files directly costs. A tile
//! not validated yet is validated here on first use, and the whole tile read for its hash serves
//! the window. Anything else (a tile missing, duplicated or corrupt, more tiles to validate than
//! is worth doing here) goes to the scheduler, which computes, deletes and reports.

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::jobs::{self, Part};
use super::{Answer, Msg, RasterId, RecipeNode, answer, needed_window};
use crate::Array;
use crate::cache::TileCache;
use crate::error::{RasterError, Result};
use crate::events::Tiling;
use crate::source::{RasterSource, ReadRequest};

/// Tiles one read validates on the caller's thread at most: a read needing more leaves them to
/// the scheduler, which validates them in parallel on the I/O pool.
const CALLER_CHECKS: usize = 2;

/// The caller-thread reader of one cached recipe.
pub(crate) struct Direct {
    raster: RasterId,
    recipe: Arc<RecipeNode>,
    cache: Arc<TileCache>,
}

impl Direct {
    /// The reader of `recipe`, if it has a cache.
    pub(super) fn new(raster: RasterId, recipe: &Arc<RecipeNode>) -> Option<Direct> {
        Some(Direct {
            raster,
            cache: recipe.cache.clone()?,
            recipe: recipe.clone(),
        })
    }

    /// Whether every cache tile over `window` is validated (a read needs no scheduler).
    pub(super) fn all_valid(&self, window: crate::footprint::PixelWindow) -> bool {
        self.recipe
            .tiles_of(Tiling::Cache, window)
            .into_iter()
            .all(|t| self.cache.is_valid(t))
    }

    pub(super) fn name(&self) -> &str {
        &self.recipe.name
    }

    /// The answer to `request`, exactly as the scheduler would give it, or `None` when the
    /// scheduler must give it. `scheduler` hears of the tiles validated here (its tile events
    /// and its own record of valid tiles).
    pub(crate) fn read(
        &self,
        request: &ReadRequest,
        scheduler: &Sender<Msg>,
    ) -> Option<Result<Array>> {
        let recipe = &*self.recipe;
        let held = match needed_window(recipe, request) {
            Some(window) => Some((window, self.product(window, scheduler)?)),
            // Entirely outside the recipe: nodata, nothing to read.
            None => None,
        };
        Some(match answer(recipe, request, held) {
            Answer::Ready(array) => Ok(Arc::try_unwrap(array).unwrap_or_else(|a| (*a).clone())),
            Answer::Read(source) => source.read(request).map_err(RasterError::from),
        })
    }

    /// The recipe's pixels over `window` (inside it) from its cache tiles, as the scheduler
    /// assembles them.
    fn product(
        &self,
        window: crate::footprint::PixelWindow,
        scheduler: &Sender<Msg>,
    ) -> Option<Arc<Array>> {
        let (recipe, cache) = (&*self.recipe, &*self.cache);
        let tiles: Vec<_> = recipe
            .tiles_of(Tiling::Cache, window)
            .into_iter()
            .map(|t| (t, cache.is_valid(t)))
            .collect();
        if tiles.iter().filter(|(_, valid)| !valid).count() > CALLER_CHECKS {
            return None;
        }
        let mut parts = Vec::with_capacity(tiles.len());
        for (tile, valid) in tiles {
            let w = recipe.tile_window(Tiling::Cache, tile);
            if valid {
                parts.push(Part::File(w, tile));
                continue;
            }
            let array = cache.check(tile, &recipe.footprint.window(w))?;
            let _ = scheduler.send(Msg::CacheValidated(self.raster, tile));
            parts.push(Part::Memory(w, Arc::new(array)));
        }
        // A file that cannot be read: the scheduler reports it as for its own reads.
        jobs::assemble(
            window,
            recipe.dtype,
            recipe.bands,
            recipe.fill(),
            Some(cache),
            &parts,
        )
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::PixelWindow;
    use crate::{
        DType, Dataset, DatasetOptions, Footprint, GeoTransform, Interpolation, Raster, Recipe,
        Shape,
    };

    fn recipe(fp: Footprint, dir: &std::path::Path, computes: bool) -> Recipe {
        Recipe::new("direct", fp, DType::F32, 3, move |input| {
            if !computes {
                return Err("must not be called".into());
            }
            let (c0, r0) = input.footprint.pixel_offset_in(&fp).ok_or("off grid")?;
            let t = input.footprint;
            let mut out = Array::filled(DType::F32, Shape::new(t.height(), t.width(), 3), 0.0);
            for r in 0..t.height() {
                for c in 0..t.width() {
                    for b in 0..3 {
                        let v = ((r0 + r as i64) * 1000 + c0 + c as i64) as f64 + b as f64 * 0.5;
                        out.set_f64(r, c, b, v);
                    }
                }
            }
            Ok(out)
        })
        .nodata(-1.0)
        .compute_tiles(16, 16)
        .cache(dir, 32, 16)
    }

    fn open(fp: Footprint, dir: &std::path::Path, computes: bool) -> (Dataset, Raster) {
        let ds = Dataset::new(DatasetOptions {
            io_threads: 2,
            compute_threads: 2,
            pools: Vec::new(),
        })
        .unwrap();
        let r = ds.create_recipe(recipe(fp, dir, computes)).unwrap();
        (ds, r)
    }

    /// The scheduler's answer (a query never takes the caller-thread path).
    fn scheduled(r: &Raster, request: &ReadRequest) -> Result<Array> {
        r.queue_requests(vec![request.clone()], 1).next().unwrap()
    }

    #[test]
    fn caller_thread_reads_equal_the_schedulers_on_first_use_and_once_validated() {
        let dir = tempfile::tempdir().unwrap();
        let fp = Footprint::new(GeoTransform::north_up(1000.0, 2000.0, 2.0), 100, 70).unwrap();
        open(fp, dir.path(), true).1.get_data(&fp).unwrap();
        // A compute function that fails: every answer below comes from the cache.
        let (_ds, r) = open(fp, dir.path(), false);
        let direct = r
            .direct
            .clone()
            .expect("a cached recipe has a direct reader");
        let (tx, _rx) = crossbeam_channel::unbounded();
        let win = |c, r, w, h| fp.window(PixelWindow::new(c, r, w, h));
        let shifted = Footprint::new(GeoTransform::north_up(1003.3, 1990.1, 1.3), 17, 9).unwrap();
        let coarse = Footprint::new(GeoTransform::north_up(990.0, 2010.0, 6.0), 12, 10).unwrap();
        let all = vec![0, 1, 2];
        let requests = vec![
            // Inside one tile; across two; partly outside; entirely outside.
            ReadRequest::new(win(3, 2, 20, 10), all.clone()),
            ReadRequest::new(win(40, 20, 40, 8), all.clone()),
            ReadRequest::new(win(90, 65, 20, 10), all.clone()),
            ReadRequest::new(win(-5, -4, 10, 6), all.clone()),
            ReadRequest::new(win(200, 0, 8, 8), all.clone()),
            // Bands repeated, dtype converted, another nodata.
            ReadRequest::new(win(33, 17, 30, 14), vec![2, 0, 2]),
            ReadRequest::new(win(33, 17, 30, 14), all.clone()).dtype(DType::U8),
            ReadRequest::new(win(95, 1, 10, 10), vec![1])
                .dtype(DType::F64)
                .dst_nodata(-9.0),
            // Off the grid.
            ReadRequest::new(shifted, vec![1, 0]).interpolation(Interpolation::Bilinear),
            ReadRequest::new(coarse, all.clone())
                .interpolation(Interpolation::Average)
                .dst_nodata(-9.0),
            // Across four tiles.
            ReadRequest::new(win(20, 10, 30, 20), all.clone()),
            ReadRequest::new(fp, all.clone()),
            ReadRequest::new(win(0, 0, 1, 1), all),
        ];
        // First pass: tiles validated on first use (here or by the scheduler); reads needing
        // more than `CALLER_CHECKS` unvalidated tiles go to the scheduler.
        let mut first = 0;
        for request in &requests {
            if let Some(got) = direct.read(request, &tx) {
                assert_eq!(got.unwrap(), scheduled(&r, request).unwrap(), "{request:?}");
                first += 1;
            }
        }
        assert!(
            first >= 10,
            "{first} of {} read on the caller's thread",
            requests.len()
        );
        // Every tile validated now: every read takes the caller's thread.
        r.get_data(&fp).unwrap();
        for request in &requests {
            let got = direct.read(request, &tx).expect("all tiles valid");
            assert_eq!(got.unwrap(), scheduled(&r, request).unwrap(), "{request:?}");
        }
        let bad = ReadRequest::new(win(0, 0, 4, 4), vec![3]);
        let err = direct.read(&bad, &tx).unwrap().unwrap_err();
        assert_eq!(err, scheduled(&r, &bad).unwrap_err());
    }
}
