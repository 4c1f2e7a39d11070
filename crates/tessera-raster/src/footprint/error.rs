//! Errors of footprint operations, each naming the values that make the operation impossible.

use std::fmt;

use super::BoundaryEffect;

/// One of the two raster directions, to name it in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    /// Columns (width).
    X,
    /// Rows (height).
    Y,
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Axis::X => "x (columns)",
            Axis::Y => "y (rows)",
        })
    }
}

/// A footprint that cannot exist, or an operation on one that has no answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FootprintError {
    #[error("geotransform {0:?} is degenerate (zero or non-finite pixel size)")]
    Degenerate([f64; 6]),
    #[error("a footprint of {width}×{height} pixels is empty: both sizes must be at least 1")]
    EmptySize { width: usize, height: usize },
    #[error(
        "changing the sides of a {width}×{height} px footprint by {left} left, {right} right, \
         {top} top, {bottom} bottom leaves no pixel"
    )]
    ErodedAway {
        width: usize,
        height: usize,
        left: i64,
        right: i64,
        top: i64,
        bottom: i64,
    },
    #[error(
        "clipping a {width}×{height} px footprint to columns {col0}..{col1}, rows {row0}..{row1} \
         leaves no pixel"
    )]
    EmptyClip {
        width: usize,
        height: usize,
        col0: i64,
        row0: i64,
        col1: i64,
        row1: i64,
    },
    #[error("tile size {width}×{height} px: both sizes must be at least 1")]
    ZeroTileSize { width: usize, height: usize },
    #[error("overlap of {overlap} px along {axis} must be smaller than the tile's {tile} px")]
    OverlapTooLarge {
        axis: Axis,
        overlap: usize,
        tile: usize,
    },
    #[error(
        "boundary effect `{effect}`: a tile of {tile} px along {axis} is larger than the \
         raster's {raster} px"
    )]
    TileLargerThanRaster {
        effect: BoundaryEffect,
        axis: Axis,
        tile: usize,
        raster: usize,
    },
    #[error(
        "boundary effect `exception`: there is a gap of {gap} px along {axis}: the raster's \
         {raster} px are not one {tile} px tile plus a whole number of strides of {tile} - \
         {overlap} px"
    )]
    TileGap {
        axis: Axis,
        gap: usize,
        raster: usize,
        tile: usize,
        overlap: usize,
    },
    #[error("tile count {cols}×{rows}: both counts must be at least 1")]
    ZeroTileCount { cols: usize, rows: usize },
    #[error(
        "{count} tiles overlapping by {overlap} px do not fit in the raster's {raster} px along \
         {axis}"
    )]
    TileCountDoesNotFit {
        axis: Axis,
        count: usize,
        overlap: usize,
        raster: usize,
    },
}
