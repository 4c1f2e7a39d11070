//! Errors of the raster engine, split into the caller's mistakes, failures worth retrying
//! (I/O), failing compute functions, and internal faults. Cloneable: one failing tile may fail
//! several queries.

use crate::source::SourceError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RasterError {
    /// The caller's mistake: a bad recipe, window, band, or a compute function returning an
    /// array of the wrong shape or type.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written; trying again may work.
    #[error("{0}")]
    Io(String),
    /// A compute function failed on a tile.
    #[error("raster `{raster}`: computing tile {tile} ({footprint}) failed: {message}")]
    Compute {
        raster: String,
        /// `(column, row)` of the computation tile.
        tile: TileIndex,
        footprint: String,
        message: String,
    },
    /// The caller stopped the work.
    #[error("cancelled")]
    Cancelled,
    /// The dataset is gone (its scheduler stopped) or a bug.
    #[error("internal: {0}")]
    Internal(String),
}

/// Column and row of a tile in its tiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileIndex {
    pub col: usize,
    pub row: usize,
}

impl std::fmt::Display for TileIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(col {}, row {})", self.col, self.row)
    }
}

impl RasterError {
    pub fn is_user_error(&self) -> bool {
        matches!(self, RasterError::Invalid(_))
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, RasterError::Io(_))
    }
}

impl From<SourceError> for RasterError {
    fn from(e: SourceError) -> RasterError {
        match e {
            // A file that is not there will not appear by trying again.
            SourceError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                RasterError::Invalid(e.to_string())
            }
            SourceError::Io { .. } => RasterError::Io(e.to_string()),
            e if e.is_user_error() => RasterError::Invalid(e.to_string()),
            e => RasterError::Io(e.to_string()),
        }
    }
}

pub type Result<T, E = RasterError> = std::result::Result<T, E>;
