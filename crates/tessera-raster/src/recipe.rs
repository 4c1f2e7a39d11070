//! What a recipe is: a raster computed tile by tile from primitive rasters by a compute
//! function, optionally cached on disk. Pure description; the scheduler runs it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::dataset::Raster;
use crate::{Array, DType, Footprint};

/// What the compute function receives for one computation tile.
#[derive(Debug)]
pub struct ComputeInput<'a> {
    /// The tile to compute (on the recipe's grid).
    pub footprint: &'a Footprint,
    /// One entry per primitive, in declaration order.
    pub primitives: &'a [PrimitiveArray],
}

impl ComputeInput<'_> {
    /// The primitive declared under `name`.
    pub fn primitive(&self, name: &str) -> Option<&PrimitiveArray> {
        self.primitives.iter().find(|p| p.name == name)
    }
}

/// A primitive's pixels for one computation tile.
#[derive(Debug, Clone)]
pub struct PrimitiveArray {
    pub name: String,
    /// Where `array` lies: the tile's footprint converted by the primitive's [`Conversion`].
    pub footprint: Footprint,
    pub array: Arc<Array>,
}

/// Computes one tile: an array of the tile's height × width × the recipe's bands, of the
/// recipe's dtype; an `Err` fails the queries that need the tile (with its message).
pub type ComputeFn = Arc<dyn Fn(&ComputeInput<'_>) -> Result<Array, String> + Send + Sync>;

/// The footprint of a primitive a computation tile needs.
#[derive(Clone)]
pub enum Conversion {
    /// The tile's own footprint.
    Same,
    /// The tile grown by `n` pixels on every side (a halo for focal operations).
    Dilate(usize),
    Custom(Arc<dyn Fn(&Footprint) -> Footprint + Send + Sync>),
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conversion::Same => f.write_str("Same"),
            Conversion::Dilate(n) => write!(f, "Dilate({n})"),
            Conversion::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl Conversion {
    pub fn apply(&self, tile: &Footprint) -> Footprint {
        match self {
            Conversion::Same => *tile,
            Conversion::Dilate(n) => tile.dilate(*n),
            Conversion::Custom(f) => f(tile),
        }
    }

    /// Part of the recipe's fingerprint (a custom conversion is named by the recipe's version).
    pub(crate) fn describe(&self) -> String {
        format!("{self:?}")
    }
}

#[derive(Debug, Clone)]
pub struct Primitive {
    pub name: String,
    pub raster: Raster,
    pub conversion: Conversion,
}

/// Where and how a recipe caches its tiles.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub dir: PathBuf,
    /// Cache tile width and height in pixels.
    pub tile_size: (usize, usize),
    /// Deletes every tile of this recipe at open: everything is recomputed.
    pub overwrite: bool,
}

/// A recipe, built with [`Recipe::new`] and the builder methods, then given to
/// [`crate::Dataset::create_recipe`].
#[derive(Clone)]
pub struct Recipe {
    pub name: String,
    /// Names the compute function's behaviour: part of the cache fingerprint, so changing it
    /// makes cached tiles of an earlier version unusable.
    pub version: String,
    pub footprint: Footprint,
    pub dtype: DType,
    pub bands: usize,
    pub nodata: Option<f64>,
    pub primitives: Vec<Primitive>,
    pub compute: ComputeFn,
    /// Computation tile width and height in pixels.
    pub compute_tile_size: (usize, usize),
    pub cache: Option<CacheOptions>,
    /// The pool the compute function runs on (`"compute"` unless a named pool is given).
    pub pool: String,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipe")
            .field("name", &self.name)
            .field("footprint", &self.footprint)
            .field("dtype", &self.dtype)
            .field("bands", &self.bands)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Recipe {
    pub fn new(
        name: impl Into<String>,
        footprint: Footprint,
        dtype: DType,
        bands: usize,
        compute: impl Fn(&ComputeInput<'_>) -> Result<Array, String> + Send + Sync + 'static,
    ) -> Recipe {
        Recipe {
            name: name.into(),
            version: "1".into(),
            footprint,
            dtype,
            bands,
            nodata: None,
            primitives: Vec::new(),
            compute: Arc::new(compute),
            compute_tile_size: (256, 256),
            cache: None,
            pool: "compute".into(),
        }
    }

    pub fn version(mut self, version: impl Into<String>) -> Recipe {
        self.version = version.into();
        self
    }

    pub fn nodata(mut self, nodata: f64) -> Recipe {
        self.nodata = Some(nodata);
        self
    }

    pub fn primitive(
        mut self,
        name: impl Into<String>,
        raster: &Raster,
        conversion: Conversion,
    ) -> Recipe {
        self.primitives.push(Primitive {
            name: name.into(),
            raster: raster.clone(),
            conversion,
        });
        self
    }

    pub fn compute_tiles(mut self, width: usize, height: usize) -> Recipe {
        self.compute_tile_size = (width, height);
        self
    }

    pub fn cache(
        mut self,
        dir: impl Into<PathBuf>,
        tile_width: usize,
        tile_height: usize,
    ) -> Recipe {
        self.cache = Some(CacheOptions {
            dir: dir.into(),
            tile_size: (tile_width, tile_height),
            overwrite: false,
        });
        self
    }

    pub fn overwrite(mut self, overwrite: bool) -> Recipe {
        if let Some(c) = &mut self.cache {
            c.overwrite = overwrite;
        }
        self
    }

    pub fn pool(mut self, pool: impl Into<String>) -> Recipe {
        self.pool = pool.into();
        self
    }
}
