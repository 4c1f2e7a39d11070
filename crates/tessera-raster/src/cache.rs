//! A recipe's tile cache on disk: one GeoTIFF per cache tile, named
//! `{fingerprint}_x{col}_y{row}_{hash}.tif` — the recipe's fingerprint (a changed recipe never
//! reuses tiles), the tile's index, and the xxh3-128 hash of its samples. Written to a temporary
//! file and renamed; validated when first used (size, georeferencing, hash), corrupt or partial
//! files deleted so the tile is computed again. Validated tiles are remembered, with open handles
//! on the most recently read, so later reads neither hash nor reopen them. A read on the caller's
//! thread may validate a tile itself ([`TileCache::check`]) but deletes nothing: corrupt files
//! are left to [`TileCache::load`]. Processes sharing a directory hold a shared lock on it;
//! cleaning stale temporary files and `overwrite` need it exclusively. The directory is listed
//! once, at open: a tile another process writes later is not seen and is computed again (same
//! content, same name — harmless).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{RasterError, TileIndex};
use crate::geotiff::{GeoTiff, WriteOptions, write_geotiff};
use crate::source::{RasterSource, ReadRequest};
use crate::{Array, DType, Footprint, with_data};

const LOCK_FILE: &str = ".tessera-cache.lock";
const TEMP_MARK: &str = ".tmp-";
/// Open handles kept per cache, and by all the caches of the process: enough for the tiles a
/// few windows touch, few enough for the process's file descriptors (often 1024).
const OPEN_PER_CACHE: usize = 64;
const OPEN_IN_PROCESS: usize = 256;
static OPEN: AtomicUsize = AtomicUsize::new(0);

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
    /// Tiles validated (or written) by this cache.
    valid: Mutex<Valid>,
    /// Held (shared) for the cache's lifetime.
    lock: File,
}

/// Validated tile files, and open handles on the most recently used (`tick`: last use).
#[derive(Debug, Default)]
struct Valid {
    paths: HashMap<TileIndex, PathBuf>,
    open: HashMap<TileIndex, (Arc<GeoTiff>, u64)>,
    tick: u64,
}

/// What a tile file held.
#[derive(Debug)]
pub enum Loaded {
    /// Validated now: the whole tile.
    Valid(Array),
    /// Validated earlier (by a read on a caller's thread): read it with [`TileCache::open_valid`].
    AlreadyValid,
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
            valid: Mutex::default(),
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

    fn valid(&self) -> MutexGuard<'_, Valid> {
        self.valid.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `tile` was validated (or written) by this cache.
    pub fn is_valid(&self, tile: TileIndex) -> bool {
        self.valid().paths.contains_key(&tile)
    }

    /// Records `tile` valid at `path`, with its open handle if there is one.
    fn remember(&self, tile: TileIndex, path: PathBuf, handle: Option<GeoTiff>) {
        let mut valid = self.valid();
        if valid
            .paths
            .insert(tile, path.clone())
            .is_some_and(|old| old != path)
        {
            valid.close(tile);
        }
        if let Some(handle) = handle {
            valid.keep_open(tile, Arc::new(handle));
        }
    }

    /// An open handle on validated `tile`'s file, kept open for the next reads.
    pub fn open_valid(&self, tile: TileIndex) -> Result<Arc<GeoTiff>, RasterError> {
        let path = {
            let mut valid = self.valid();
            valid.tick += 1;
            let tick = valid.tick;
            if let Some((handle, used)) = valid.open.get_mut(&tile) {
                *used = tick;
                return Ok(handle.clone());
            }
            valid.paths.get(&tile).cloned().ok_or_else(|| {
                RasterError::Internal(format!("cache: tile {tile} read before it was validated"))
            })?
        };
        let handle = Arc::new(GeoTiff::open(&path)?);
        self.valid().keep_open(tile, handle.clone());
        Ok(handle)
    }

    /// Validates `tile`'s file (expected at `footprint`) on the caller's thread, exactly as
    /// [`TileCache::load`] does, and returns the whole tile; `None` when there is no single
    /// file for it or it fails. Deletes nothing: `load` will find the fault again, delete the
    /// file and report it.
    pub fn check(&self, tile: TileIndex, footprint: &Footprint) -> Option<Array> {
        let path = match self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tile)
            .map(Vec::as_slice)
        {
            Some([path]) => path.clone(),
            _ => return None,
        };
        let (handle, array) = self.validate(&path, footprint).ok()?;
        {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            // Unless `load` took it meanwhile (then it validates it too).
            if files
                .get(&tile)
                .is_some_and(|c| c.len() == 1 && c[0] == path)
            {
                files.remove(&tile);
            }
        }
        self.remember(tile, path, Some(handle));
        Some(array)
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
        let known = self.valid().paths.get(&tile).cloned();
        if known.is_some() {
            result = Loaded::AlreadyValid;
        }
        for path in candidates {
            if Some(&path) == known.as_ref() {
                continue;
            }
            if matches!(result, Loaded::Valid(..) | Loaded::AlreadyValid) {
                // A duplicate (two processes computed the tile): keep one.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match self.validate(&path, footprint) {
                Ok((handle, array)) => {
                    self.remember(tile, path, Some(handle));
                    result = Loaded::Valid(array);
                }
                Err(reason) => {
                    let _ = std::fs::remove_file(&path);
                    result = Loaded::Corrupt(format!("{}: {reason}", path.display()));
                }
            }
        }
        Ok(result)
    }

    /// Opens `path` and checks it holds `footprint` as specified, with the hash its name says;
    /// returns the open file and the whole tile.
    fn validate(&self, path: &Path, footprint: &Footprint) -> Result<(GeoTiff, Array), String> {
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
        Ok((tiff, array))
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
        self.remember(tile, path.clone(), None);
        Ok(path)
    }
}

impl Valid {
    /// Keeps `handle` open, closing the least recently used beyond the limits.
    fn keep_open(&mut self, tile: TileIndex, handle: Arc<GeoTiff>) {
        self.tick += 1;
        if self.open.insert(tile, (handle, self.tick)).is_none() {
            OPEN.fetch_add(1, Ordering::Relaxed);
        }
        if self.open.len() > OPEN_PER_CACHE || OPEN.load(Ordering::Relaxed) > OPEN_IN_PROCESS {
            // Possibly `tile` itself, when this cache held nothing else.
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.close(oldest);
            }
        }
    }

    fn close(&mut self, tile: TileIndex) {
        if self.open.remove(&tile).is_some() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Valid {
    fn drop(&mut self) {
        OPEN.fetch_sub(self.open.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeoTransform, PixelWindow, Shape};

    #[test]
    fn a_tile_checked_on_a_callers_thread_is_not_hashed_again_and_a_corrupt_one_is_left_to_load() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TileSpec {
            dtype: DType::U8,
            bands: 1,
            nodata: None,
        };
        let fp = Footprint::new(GeoTransform::north_up(0.0, 8.0, 1.0), 8, 4).unwrap();
        let (a, b) = (TileIndex { col: 0, row: 0 }, TileIndex { col: 1, row: 0 });
        let (fa, fb) = (
            fp.window(PixelWindow::new(0, 0, 4, 4)),
            fp.window(PixelWindow::new(4, 0, 4, 4)),
        );
        let array = |v| Array::filled(DType::U8, Shape::new(4, 4, 1), v);
        let writer = TileCache::open(dir.path(), "f", spec.clone(), false).unwrap();
        writer.store(a, &fa, &array(1.0)).unwrap();
        let damaged = writer.store(b, &fb, &array(2.0)).unwrap();
        drop(writer);
        let mut bytes = std::fs::read(&damaged).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&damaged, bytes).unwrap();

        let cache = TileCache::open(dir.path(), "f", spec, false).unwrap();
        assert_eq!(cache.check(a, &fa), Some(array(1.0)));
        assert!(cache.is_valid(a));
        assert!(matches!(cache.load(a, &fa), Ok(Loaded::AlreadyValid)));
        let mut out = array(0.0);
        let handle = cache.open_valid(a).unwrap();
        crate::source::WindowRead::read_window_into(
            &*handle,
            PixelWindow::new(0, 0, 4, 4),
            &[0],
            &mut out,
            (0, 0),
        )
        .unwrap();
        assert_eq!(out, array(1.0));

        assert_eq!(cache.check(b, &fb), None);
        assert!(damaged.exists(), "a failed check deletes nothing");
        assert!(!cache.is_valid(b));
        assert!(matches!(cache.load(b, &fb), Ok(Loaded::Corrupt(_))));
        assert!(!damaged.exists(), "load deletes it");
        assert!(cache.open_valid(b).is_err());
    }
}
