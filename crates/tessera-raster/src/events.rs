//! What the engine reports while it works: tile state changes (for progress bars, the server's
//! live events and the web UI's execution view) and pool usage.

use crate::error::TileIndex;

/// Which tiling a tile belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// A computation tile (what the compute function receives).
    Compute,
    /// A cache tile (one file in the cache directory).
    Cache,
}

/// The life of a tile, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileState {
    /// Waiting for a worker (its inputs are ready).
    Queued,
    /// A cache tile's file is being read and checked.
    Reading,
    /// The compute function is running on it.
    Computing,
    /// A cache tile is being written.
    Writing,
    /// A cache tile is valid on disk (found, or just written).
    Cached,
    /// A computation tile's array went to its consumers.
    Delivered,
    Failed,
}

impl TileState {
    pub fn name(self) -> &'static str {
        match self {
            TileState::Queued => "queued",
            TileState::Reading => "reading",
            TileState::Computing => "computing",
            TileState::Writing => "writing",
            TileState::Cached => "cached",
            TileState::Delivered => "delivered",
            TileState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TileEvent {
    /// The raster's name.
    pub raster: String,
    pub tiling: Tiling,
    pub tile: TileIndex,
    pub state: TileState,
    /// Why, for `Failed` (and for a cache tile found corrupt on `Reading`).
    pub message: Option<String>,
}
