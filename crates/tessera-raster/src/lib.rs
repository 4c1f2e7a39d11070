//! Tessera's raster engine: rasters larger than memory, read window by window from files or
//! computed tile by tile from primitive rasters, with a disk cache of tiles.
//!
//! This crate knows nothing of the other Tessera crates: pipelines use it through the engine's
//! `raster` node, the command line through `tessera raster`.

pub mod array;
pub mod cache;
pub mod calc;
pub mod dataset;
pub mod error;
pub mod events;
pub mod focal;
pub mod footprint;
#[cfg(feature = "gdal")]
pub mod gdal_source;
pub mod geotiff;
pub mod job;
pub mod memory;
pub mod pool;
pub mod recipe;
pub mod resample;
mod scheduler;
pub mod source;

pub use array::{Array, DType, Data, Pixel, Shape};
pub use dataset::{DataQueue, Dataset, DatasetOptions, Raster, RasterInfo};
pub use error::{RasterError, TileIndex};
pub use events::{TileEvent, TileState, Tiling};
pub use footprint::{
    BoundaryEffect, BoundaryEffectLocus, Extent, FootprintError, PixelWindow, Tiles,
};
pub use footprint::{Footprint, GeoTransform};
#[cfg(feature = "gdal")]
pub use gdal_source::GdalSource;
pub use geotiff::{Compression, GeoKeys, GeoTiff, StripWriter, WriteOptions, write_geotiff};
pub use memory::MemorySource;
pub use pool::PoolUsage;
pub use recipe::{ComputeInput, Conversion, PrimitiveArray, Recipe};
pub use resample::{Interpolation, SourceWindow, resample};
pub use source::{Projection, RasterSource, ReadRequest, SourceError};
