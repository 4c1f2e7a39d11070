//! The embedded defaults of one machine: a data directory holding the SQLite store
//! (`tessera.db`), the objects (`store/`) and the commands' scratch files (`work/`). What
//! `tessera run` uses without flags, and what the Python package's `tessera.run` opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_store::{Durability, Objects, SqliteStore, Store};

use crate::{Engine, EngineConfig, EngineError};

/// The SQLite file in the data directory.
pub const DB_FILE: &str = "tessera.db";
/// The objects' directory in the data directory.
pub const OBJECTS_DIR: &str = "store";
/// The commands' scratch directories, under the data directory.
pub const WORK_DIR: &str = "work";

/// Creates the data directory readable by its owner only (it holds every task's data); an
/// existing one is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// An engine on a data directory's defaults, with the runtime its I/O runs on.
pub struct Local {
    pub engine: Engine,
    pub runtime: tokio::runtime::Runtime,
    pub data_dir: PathBuf,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Local({})", self.data_dir.display())
    }
}

impl Local {
    /// Opens (creating them when missing) the store, objects and scratch space of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Local, EngineError> {
        create_private_dir(data_dir).map_err(|e| {
            EngineError::Internal(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            &data_dir.join(DB_FILE),
            Durability::Full,
        )?);
        let objects = Objects::local(&data_dir.join(OBJECTS_DIR))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().max(2)))
            .enable_all()
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot start the async runtime: {e}")))?;
        let config = EngineConfig::new(data_dir.join(WORK_DIR));
        let engine = Engine::new(store, objects, runtime.handle().clone(), config)?;
        Ok(Local {
            engine,
            runtime,
            data_dir: data_dir.to_path_buf(),
        })
    }
}
