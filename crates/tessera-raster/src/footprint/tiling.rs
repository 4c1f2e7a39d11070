//! Tiling a footprint into a grid of tile footprints, with buzzard's `Footprint.tile` and
//! `Footprint.tile_count` semantics: tile size, overlap, what happens at the border where tiles
//! do not fit exactly (the boundary effect) and at which corner that happens (its locus).

use super::{Axis, BoundaryEffect, BoundaryEffectLocus, Footprint, FootprintError, PixelWindow};

/// Tiles of a footprint, row by row from the top, each row from the left (whatever the locus),
/// with each tile's window in the tiled footprint's grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiles {
    footprints: Vec<Footprint>,
    windows: Vec<PixelWindow>,
    rows: usize,
    cols: usize,
}

impl Tiles {
    /// Number of tile rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of tile columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of tiles (`rows × cols`).
    pub fn len(&self) -> usize {
        self.footprints.len()
    }

    /// True when no tile fits (only with [`BoundaryEffect::Exclude`]; then there are 0 rows and
    /// 0 columns).
    pub fn is_empty(&self) -> bool {
        self.footprints.is_empty()
    }

    /// Tile at tile row `row`, tile column `col`.
    pub fn get(&self, row: usize, col: usize) -> Option<&Footprint> {
        (row < self.rows && col < self.cols).then(|| &self.footprints[row * self.cols + col])
    }

    /// Window of the tile at `(row, col)` in the tiled footprint's grid (it may stick out of it
    /// with [`BoundaryEffect::Extend`]).
    pub fn window(&self, row: usize, col: usize) -> Option<PixelWindow> {
        (row < self.rows && col < self.cols).then(|| self.windows[row * self.cols + col])
    }

    /// Tiles in row-major order.
    pub fn iter(&self) -> std::slice::Iter<'_, Footprint> {
        self.footprints.iter()
    }

    /// Tile windows in row-major order.
    pub fn windows(&self) -> std::slice::Iter<'_, PixelWindow> {
        self.windows.iter()
    }

    pub fn as_slice(&self) -> &[Footprint] {
        &self.footprints
    }

    pub fn into_vec(self) -> Vec<Footprint> {
        self.footprints
    }
}

impl<'a> IntoIterator for &'a Tiles {
    type Item = &'a Footprint;
    type IntoIter = std::slice::Iter<'a, Footprint>;

    fn into_iter(self) -> Self::IntoIter {
        self.footprints.iter()
    }
}

impl IntoIterator for Tiles {
    type Item = Footprint;
    type IntoIter = std::vec::IntoIter<Footprint>;

    fn into_iter(self) -> Self::IntoIter {
        self.footprints.into_iter()
    }
}

/// Tile spans `(start, length)` along one axis of `raster` pixels, in increasing order of start.
/// Computed from the origin side (distances from it), then mirrored when `reversed` (the locus is
/// on the low side).
fn axis_spans(
    axis: Axis,
    raster: usize,
    tile: usize,
    overlap: usize,
    effect: BoundaryEffect,
    reversed: bool,
) -> Result<Vec<(i64, usize)>, FootprintError> {
    let stride = tile - overlap;
    // Tiles fitting entirely, and the pixels left after them (negative: tile larger than raster).
    let (count, gap) = if tile > raster {
        (0, raster as i64 - tile as i64)
    } else {
        let count = 1 + (raster - tile) / stride;
        (count, (raster - tile - (count - 1) * stride) as i64)
    };
    let larger = || FootprintError::TileLargerThanRaster {
        effect,
        axis,
        tile,
        raster,
    };
    let mut spans: Vec<(usize, usize)> = (0..count).map(|i| (i * stride, tile)).collect();
    match effect {
        BoundaryEffect::Extend if gap < 0 => spans.push((0, tile)),
        BoundaryEffect::Extend if gap > 0 => spans.push((count * stride, tile)),
        BoundaryEffect::Overlap if gap < 0 => return Err(larger()),
        BoundaryEffect::Overlap if gap > 0 => spans.push((raster - tile, tile)),
        BoundaryEffect::Shrink if gap < 0 => spans.push((0, raster)),
        BoundaryEffect::Shrink if gap > 0 => {
            spans.push((count * stride, gap as usize + overlap));
        }
        BoundaryEffect::Exception if gap < 0 => return Err(larger()),
        BoundaryEffect::Exception if gap > 0 => {
            return Err(FootprintError::TileGap {
                axis,
                gap: gap as usize,
                raster,
                tile,
                overlap,
            });
        }
        _ => {}
    }
    let mut spans: Vec<(i64, usize)> = spans
        .into_iter()
        .map(|(offset, len)| {
            let start = if reversed {
                raster as i64 - offset as i64 - len as i64
            } else {
                offset as i64
            };
            (start, len)
        })
        .collect();
    if reversed {
        spans.reverse();
    }
    Ok(spans)
}

/// Tile length along one axis for `count` tiles overlapping by `overlap` over `raster` pixels
/// (buzzard's `tile_count` arithmetic), checked to give exactly `count` tiles.
fn axis_tile_length(
    axis: Axis,
    raster: usize,
    count: usize,
    overlap: usize,
    effect: BoundaryEffect,
) -> Result<usize, FootprintError> {
    let total = raster + overlap * (count - 1);
    let tile = match effect {
        BoundaryEffect::Extend | BoundaryEffect::Overlap | BoundaryEffect::Shrink => {
            total.div_ceil(count)
        }
        BoundaryEffect::Exclude => total / count,
        BoundaryEffect::Exception => {
            if !total.is_multiple_of(count) {
                return Err(FootprintError::TileGap {
                    axis,
                    gap: total % count,
                    raster,
                    tile: total / count,
                    overlap,
                });
            }
            total / count
        }
    };
    let does_not_fit = FootprintError::TileCountDoesNotFit {
        axis,
        count,
        overlap,
        raster,
    };
    if tile <= overlap {
        return Err(does_not_fit);
    }
    let covered = (tile + (count - 1) * (tile - overlap)) as i64;
    if covered - raster as i64 >= (tile - overlap) as i64 {
        return Err(does_not_fit);
    }
    Ok(tile)
}

impl Footprint {
    /// Tiles of `size` = (width, height) pixels, consecutive tiles overlapping by `overlap` =
    /// (x, y) pixels, laid from the corner opposite to `locus`; at `locus`, where tiles do not
    /// fit exactly, `effect` decides (buzzard's `Footprint.tile`). Tiles are on self's grid.
    ///
    /// Fails when a size is 0, an overlap is not smaller than the tile, a tile is larger than
    /// self with [`BoundaryEffect::Overlap`] or [`BoundaryEffect::Exception`], or tiles do not
    /// fit exactly with [`BoundaryEffect::Exception`].
    pub fn tile(
        &self,
        size: (usize, usize),
        overlap: (usize, usize),
        effect: BoundaryEffect,
        locus: BoundaryEffectLocus,
    ) -> Result<Tiles, FootprintError> {
        let (tw, th) = size;
        if tw == 0 || th == 0 {
            return Err(FootprintError::ZeroTileSize {
                width: tw,
                height: th,
            });
        }
        for (axis, o, t) in [(Axis::X, overlap.0, tw), (Axis::Y, overlap.1, th)] {
            if o >= t {
                return Err(FootprintError::OverlapTooLarge {
                    axis,
                    overlap: o,
                    tile: t,
                });
            }
        }
        let xs = axis_spans(
            Axis::X,
            self.width(),
            tw,
            overlap.0,
            effect,
            locus.is_left(),
        )?;
        let ys = axis_spans(
            Axis::Y,
            self.height(),
            th,
            overlap.1,
            effect,
            locus.is_top(),
        )?;
        if xs.is_empty() || ys.is_empty() {
            // No tile at all (Exclude with tiles larger than self): no rows, no columns.
            return Ok(Tiles {
                footprints: Vec::new(),
                windows: Vec::new(),
                rows: 0,
                cols: 0,
            });
        }
        let windows: Vec<PixelWindow> = ys
            .iter()
            .flat_map(|&(row, height)| {
                xs.iter()
                    .map(move |&(col, width)| PixelWindow::new(col, row, width, height))
            })
            .collect();
        Ok(Tiles {
            footprints: windows.iter().map(|&w| self.window(w)).collect(),
            windows,
            rows: ys.len(),
            cols: xs.len(),
        })
    }

    /// `cols`×`rows` tiles overlapping by `overlap` = (x, y) pixels: the tile size is the
    /// smallest that covers self (the largest that fits for [`BoundaryEffect::Exclude`]), then
    /// as [`Footprint::tile`] (buzzard's `Footprint.tile_count(rowcount=cols, colcount=rows)`).
    /// Always exactly `rows`×`cols` tiles, never larger than self; fails when that many cannot
    /// be laid that way (as buzzard, also when the overlap is not smaller than that tile size,
    /// e.g. one tile per row with an overlap as wide as self), or when they do not fit exactly
    /// with [`BoundaryEffect::Exception`].
    pub fn tile_count(
        &self,
        cols: usize,
        rows: usize,
        overlap: (usize, usize),
        effect: BoundaryEffect,
        locus: BoundaryEffectLocus,
    ) -> Result<Tiles, FootprintError> {
        if cols == 0 || rows == 0 {
            return Err(FootprintError::ZeroTileCount { cols, rows });
        }
        let tw = axis_tile_length(Axis::X, self.width(), cols, overlap.0, effect)?;
        let th = axis_tile_length(Axis::Y, self.height(), rows, overlap.1, effect)?;
        let tiles = self.tile((tw, th), overlap, effect, locus)?;
        if tiles.rows == rows && tiles.cols == cols {
            return Ok(tiles);
        }
        // Exclude may fit more tiles than asked: keep those next to the origin corner.
        let row0 = if locus.is_top() { tiles.rows - rows } else { 0 };
        let col0 = if locus.is_left() {
            tiles.cols - cols
        } else {
            0
        };
        let kept: Vec<usize> = (row0..row0 + rows)
            .flat_map(|r| (col0..col0 + cols).map(move |c| r * tiles.cols + c))
            .collect();
        Ok(Tiles {
            footprints: kept.iter().map(|&i| tiles.footprints[i]).collect(),
            windows: kept.iter().map(|&i| tiles.windows[i]).collect(),
            rows,
            cols,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::GeoTransform;
    use BoundaryEffect::*;
    use BoundaryEffectLocus::*;

    fn unit(w: usize, h: usize) -> Footprint {
        Footprint::new(GeoTransform::north_up(0.0, 0.0, 1.0), w, h).unwrap()
    }

    fn spans(raster: usize, tile: usize, overlap: usize, e: BoundaryEffect) -> Vec<(i64, usize)> {
        axis_spans(Axis::X, raster, tile, overlap, e, false).unwrap()
    }

    #[test]
    fn axis_spans_per_effect() {
        // 10 px, tiles of 4, overlap 1: stride 3, tiles at 0, 3, 6 fit exactly.
        for e in BoundaryEffect::ALL {
            assert_eq!(spans(10, 4, 1, e), vec![(0, 4), (3, 4), (6, 4)], "{e}");
        }
        // 11 px: one pixel left after them.
        assert_eq!(
            spans(11, 4, 1, Extend),
            vec![(0, 4), (3, 4), (6, 4), (9, 4)]
        );
        assert_eq!(spans(11, 4, 1, Exclude), vec![(0, 4), (3, 4), (6, 4)]);
        assert_eq!(
            spans(11, 4, 1, Overlap),
            vec![(0, 4), (3, 4), (6, 4), (7, 4)]
        );
        assert!(axis_spans(Axis::X, 11, 4, 1, Exception, false).is_err());
        assert_eq!(spans(10, 4, 0, Overlap), vec![(0, 4), (4, 4), (6, 4)]);
        assert_eq!(spans(10, 4, 0, Shrink), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(spans(10, 4, 1, Shrink), vec![(0, 4), (3, 4), (6, 4)]);
        assert_eq!(
            spans(11, 4, 1, Shrink),
            vec![(0, 4), (3, 4), (6, 4), (9, 2)]
        );
        assert_eq!(
            spans(10, 4, 2, Exception),
            vec![(0, 4), (2, 4), (4, 4), (6, 4)]
        );
        // Tile larger than the raster.
        assert_eq!(spans(3, 5, 0, Extend), vec![(0, 5)]);
        assert_eq!(spans(3, 5, 0, Exclude), vec![]);
        assert_eq!(spans(3, 5, 0, Shrink), vec![(0, 3)]);
        assert!(axis_spans(Axis::Y, 3, 5, 0, Overlap, false).is_err());
        // Reversed: mirrored from the far edge, still in increasing order.
        let rev = axis_spans(Axis::X, 10, 4, 0, Extend, true).unwrap();
        assert_eq!(rev, vec![(-2, 4), (2, 4), (6, 4)]);
        let rev = axis_spans(Axis::X, 10, 4, 0, Shrink, true).unwrap();
        assert_eq!(rev, vec![(0, 2), (2, 4), (6, 4)]);
    }

    #[test]
    fn tile_errors_name_values() {
        let f = unit(10, 7);
        let e = f.tile((0, 3), (0, 0), Extend, BottomRight).unwrap_err();
        assert_eq!(
            e,
            FootprintError::ZeroTileSize {
                width: 0,
                height: 3
            }
        );
        let e = f.tile((3, 3), (0, 3), Extend, BottomRight).unwrap_err();
        assert_eq!(
            e.to_string(),
            "overlap of 3 px along y (rows) must be smaller than the tile's 3 px"
        );
        let e = f.tile((4, 7), (0, 0), Exception, TopLeft).unwrap_err();
        assert_eq!(
            e,
            FootprintError::TileGap {
                axis: Axis::X,
                gap: 2,
                raster: 10,
                tile: 4,
                overlap: 0
            }
        );
        assert!(e.to_string().contains("gap of 2 px"), "{e}");
        let e = f.tile((2, 8), (0, 0), Overlap, BottomRight).unwrap_err();
        assert!(e.to_string().contains("tile of 8 px along y (rows)"), "{e}");
        assert!(e.to_string().contains("raster's 7 px"), "{e}");
    }

    #[test]
    fn tiles_accessors() {
        let f = Footprint::new(GeoTransform::north_up(100.0, 50.0, 2.0), 5, 3).unwrap();
        let t = f.tile((2, 2), (0, 0), Shrink, BottomRight).unwrap();
        assert_eq!((t.rows(), t.cols(), t.len()), (2, 3, 6));
        assert!(!t.is_empty());
        assert_eq!(t.get(1, 2).unwrap().rsize(), (1, 1));
        assert_eq!(t.get(1, 2).unwrap().tl(), (108.0, 46.0));
        assert_eq!(t.window(1, 2), Some(PixelWindow::new(4, 2, 1, 1)));
        assert_eq!(t.get(2, 0), None);
        assert_eq!(t.window(0, 3), None);
        assert_eq!(t.iter().count(), 6);
        assert_eq!(t.windows().count(), 6);
        assert_eq!((&t).into_iter().next(), t.get(0, 0));
        assert_eq!(t.as_slice().len(), 6);
        for (fp, w) in t.iter().zip(t.windows()) {
            assert_eq!(fp.window_in(&f), Some(*w));
        }
        assert_eq!(t.clone().into_vec(), t.into_iter().collect::<Vec<_>>());
        let none = f.tile((6, 2), (0, 0), Exclude, BottomRight).unwrap();
        assert!(none.is_empty());
        assert_eq!((none.rows(), none.cols()), (0, 0));
    }

    #[test]
    fn locus_moves_the_odd_tiles() {
        let f = unit(5, 5);
        let w = |t: &Tiles, r, c| t.window(r, c).unwrap();
        let br = f.tile((2, 2), (0, 0), Shrink, BottomRight).unwrap();
        assert_eq!(w(&br, 0, 0), PixelWindow::new(0, 0, 2, 2));
        assert_eq!(w(&br, 2, 2), PixelWindow::new(4, 4, 1, 1));
        let tl = f.tile((2, 2), (0, 0), Shrink, TopLeft).unwrap();
        assert_eq!(w(&tl, 0, 0), PixelWindow::new(0, 0, 1, 1));
        assert_eq!(w(&tl, 2, 2), PixelWindow::new(3, 3, 2, 2));
        let tr = f.tile((2, 2), (0, 0), Shrink, TopRight).unwrap();
        assert_eq!(w(&tr, 0, 2), PixelWindow::new(4, 0, 1, 1));
        let bl = f.tile((2, 2), (0, 0), Shrink, BottomLeft).unwrap();
        assert_eq!(w(&bl, 2, 0), PixelWindow::new(0, 4, 1, 1));
    }

    #[test]
    fn tile_count_sizes() {
        let f = unit(10, 7);
        let t = f.tile_count(3, 2, (0, 0), Extend, BottomRight).unwrap();
        assert_eq!((t.rows(), t.cols()), (2, 3));
        assert_eq!(t.get(0, 0).unwrap().rsize(), (4, 4));
        // Tiles of 4 px overlapping by 2 fit 4 times in 10 px: 3 are kept.
        let t = f.tile_count(3, 2, (2, 1), Exclude, TopLeft).unwrap();
        assert_eq!((t.rows(), t.cols()), (2, 3));
        assert_eq!(t.get(1, 2).unwrap().rsize(), (4, 4));
        assert_eq!(f.tile((4, 4), (2, 1), Exclude, TopLeft).unwrap().cols(), 4);
        // Keeps the tiles next to the origin corner (bottom-right for a top-left locus).
        assert_eq!(t.window(1, 2), Some(PixelWindow::new(6, 3, 4, 4)));
        assert_eq!(t.window(0, 0), Some(PixelWindow::new(2, 0, 4, 4)));
        let t = f.tile_count(3, 2, (2, 1), Exclude, BottomRight).unwrap();
        assert_eq!(t.window(0, 0), Some(PixelWindow::new(0, 0, 4, 4)));
        assert_eq!(t.window(1, 2), Some(PixelWindow::new(4, 3, 4, 4)));
        let t = f.tile_count(2, 1, (0, 0), Exception, BottomRight).unwrap();
        assert_eq!(t.get(0, 1).unwrap().rsize(), (5, 7));
        let e = f
            .tile_count(3, 1, (0, 0), Exception, BottomRight)
            .unwrap_err();
        assert!(
            matches!(
                e,
                FootprintError::TileGap {
                    axis: Axis::X,
                    gap: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = f.tile_count(0, 1, (0, 0), Extend, BottomRight).unwrap_err();
        assert_eq!(e, FootprintError::ZeroTileCount { cols: 0, rows: 1 });
        let e = f
            .tile_count(11, 1, (0, 0), Extend, BottomRight)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "11 tiles overlapping by 0 px do not fit in the raster's 10 px along x (columns)"
        );
        assert!(f.tile_count(2, 1, (9, 0), Extend, BottomRight).is_err());
    }
}
