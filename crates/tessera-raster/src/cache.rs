//! A recipe's tile cache on disk: one GeoTIFF per cache tile, named
//! `{fingerprint}_x{col}_y{row}_{hash}.tif` — the recipe's fingerprint (a changed recipe never
//! reuses tiles), the tile's index, and the xxh3-128 hash of its samples. Written to a temporary
//! file and renamed; validated when first used (size, georeferencing, hash), corrupt or partial
//! files deleted so the tile is computed again. Processes sharing a directory hold a shared
//! lock on it; cleaning stale temporary files and `overwrite` need it exclusively. The directory
//! is listed once, at open: a tile another process writes later is not seen and is computed
//! again (same content, same name — harmless).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{RasterError, TileIndex};
use crate::geotiff::{GeoTiff, WriteOptions, write_geotiff};
use crate::source::{RasterSource, ReadRequest};
use crate::{Array, DType, Footprint, with_data};

const LOCK_FILE: &str = ".tessera-cache.lock";
const TEMP_MARK: &str = ".tmp-";

/// What every tile of a cache must be.
#[derive(Debug, Clone)]
pub struct TileSpec {
    pub dtype: DType,
    pub bands: usize,
    pub nodata: Option<f64>,
}

#[derive(Debug)]
pub struct TileCache {
    dir: PathBuf,
    fingerprint: String,
    spec: TileSpec,
    /// This recipe's tile files, listed at open and kept up to date.
    files: Mutex<HashMap<TileIndex, Vec<PathBuf>>>,
    /// Held (shared) for the cache's lifetime.
    lock: File,
}

/// What a tile file held.
#[derive(Debug)]
pub enum Loaded {
    Valid(Array, PathBuf),
    /// No file for this tile.
    Missing,
    /// A file that failed validation (deleted); the reason, for the logs and tile events.
    Corrupt(String),
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> RasterError {
    RasterError::Io(format!("cache: {what} {}: {e}", path.display()))
}

/// The xxh3-128 of an array's samples (little-endian bytes) and its shape.
pub fn content_hash(array: &Array) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let shape = array.shape();
    for n in [shape.height, shape.width, shape.bands] {
        hasher.update(&(n as u64).to_le_bytes());
    }
    hasher.update(array.dtype().name().as_bytes());
    with_data!(array.data(), v => hasher.update(bytemuck::cast_slice(v)));
    format!("{:032x}", hasher.digest128())
}

impl TileCache {
    /// Opens (creating) `dir` for tiles of a recipe with `fingerprint`.
    pub fn open(
        dir: &Path,
        fingerprint: &str,
        spec: TileSpec,
        overwrite: bool,
    ) -> Result<TileCache, RasterError> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("cannot open", &lock_path, e))?;
        let cache = TileCache {
            dir: dir.to_path_buf(),
            fingerprint: fingerprint.to_string(),
            spec,
            files: Mutex::default(),
            lock,
        };
        let exclusive = cache.lock.try_lock().is_ok();
        if overwrite && !exclusive {
            // Deleting tiles another dataset or process may be reading would corrupt its reads.
            return Err(RasterError::Invalid(format!(
                "cache: cannot overwrite {}: another recipe or process is using it",
                dir.display()
            )));
        }
        // With the exclusive lock no other process uses the directory: temporary files are
        // leftovers of a crash.
        cache.scan(exclusive, overwrite)?;
        if exclusive {
            cache
                .lock
                .unlock()
                .map_err(|e| io("cannot unlock", &lock_path, e))?;
        }
        cache
            .lock
            .lock_shared()
            .map_err(|e| io("cannot lock", &lock_path, e))?;
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn prefix(&self, tile: TileIndex) -> String {
        format!("{}_x{:04}_y{:04}_", self.fingerprint, tile.col, tile.row)
    }

    /// Lists the directory once: indexes this recipe's tiles, removes stale temporary files
    /// (`clean`) and with `overwrite` this recipe's tiles.
    fn scan(&self, clean: bool, overwrite: bool) -> Result<(), RasterError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io("cannot list", &self.dir, e))?;
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(TEMP_MARK) {
                if clean {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            let Some(tile) = self.tile_of(&name) else {
                continue;
            };
            if overwrite {
                let _ = std::fs::remove_file(entry.path());
            } else {
                files.entry(tile).or_default().push(entry.path());
            }
        }
        Ok(())
    }

    /// The tile a file of this recipe holds, from its name.
    fn tile_of(&self, name: &str) -> Option<TileIndex> {
        let rest = name
            .strip_prefix(self.fingerprint.as_str())?
            .strip_prefix("_x")?
            .strip_suffix(".tif")?;
        let (col, rest) = rest.split_once("_y")?;
        let (row, _hash) = rest.split_once('_')?;
        Some(TileIndex {
            col: col.parse().ok()?,
            row: row.parse().ok()?,
        })
    }

    /// Reads and validates `tile` (expected at `footprint`); a file that fails is deleted.
    pub fn load(&self, tile: TileIndex, footprint: &Footprint) -> Result<Loaded, RasterError> {
        let mut result = Loaded::Missing;
        let candidates = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tile)
            .unwrap_or_default();
        for path in candidates {
            if matches!(result, Loaded::Valid(..)) {
                // A duplicate (two processes computed the tile): keep one.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match self.validate(&path, footprint) {
                Ok(array) => result = Loaded::Valid(array, path),
                Err(reason) => {
                    let _ = std::fs::remove_file(&path);
                    result = Loaded::Corrupt(format!("{}: {reason}", path.display()));
                }
            }
        }
        Ok(result)
    }

    fn validate(&self, path: &Path, footprint: &Footprint) -> Result<Array, String> {
        let tiff = GeoTiff::open(path).map_err(|e| e.to_string())?;
        if tiff.dtype() != self.spec.dtype || tiff.bands() != self.spec.bands {
            return Err(format!(
                "holds {} band(s) of {}, expected {} of {}",
                tiff.bands(),
                tiff.dtype(),
                self.spec.bands,
                self.spec.dtype
            ));
        }
        if !tiff.footprint().almost_equals(footprint) {
            return Err(format!(
                "lies at {}, expected {footprint}",
                tiff.footprint()
            ));
        }
        let array = tiff
            .read(&ReadRequest::new(
                *footprint,
                (0..self.spec.bands).collect(),
            ))
            .map_err(|e| e.to_string())?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let expected = name
            .as_deref()
            .and_then(|n| n.strip_suffix(".tif"))
            .and_then(|n| n.rsplit('_').next())
            .unwrap_or_default();
        let actual = content_hash(&array);
        if actual != expected {
            return Err(format!("content hash {actual} does not match its name"));
        }
        Ok(array)
    }

    /// Writes `tile` atomically (temporary file, then rename); returns its path.
    pub fn store(
        &self,
        tile: TileIndex,
        footprint: &Footprint,
        array: &Array,
    ) -> Result<PathBuf, RasterError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!("{}{}.tif", self.prefix(tile), content_hash(array));
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(
            "{name}{TEMP_MARK}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let options = WriteOptions {
            nodata: self.spec.nodata,
            ..WriteOptions::default()
        };
        if let Err(e) = write_geotiff(&tmp, footprint, array, &options) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot write", &tmp, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &tmp, e))?;
        Ok(path)
    }
}
