//! Settings from flags, `TESSERA_*` variables and `tessera.toml` (flags win), and opening the
//! store, object store, runtime and engine they describe.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tessera_engine::{Engine, EngineConfig};
use tessera_store::{Durability, Objects, PgStore, SqliteStore, Store, redact_url};

use crate::cli::{DataArgs, DurabilityArg, EngineArgs};

/// Where the state database is.
#[derive(Debug, Clone)]
pub enum Database {
    /// `<data_dir>/tessera.db`.
    Default,
    Sqlite(PathBuf),
    /// A `postgres://` URL (it may hold a password: never printed whole).
    Postgres(String),
}

impl Database {
    /// Where the state is, for messages (a PostgreSQL URL without its password).
    pub fn describe(&self, data_dir: &std::path::Path) -> String {
        match self {
            Database::Default => data_dir
                .join(tessera_engine::local::DB_FILE)
                .display()
                .to_string(),
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact_url(url),
        }
    }

    fn parse(text: &str) -> Result<Database> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Database::Postgres(text.to_string()));
        }
        match text.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => Ok(Database::Sqlite(
                std::path::absolute(path.strip_prefix("//").unwrap_or(path))
                    .with_context(|| format!("--db: bad path {path}"))?,
            )),
            _ => bail!(
                "--db: expected sqlite:PATH or postgres://user:password@host:port/database, \
                 not {:?}",
                redact_url(text)
            ),
        }
    }
}

/// Where the object store is.
#[derive(Debug, Clone)]
pub enum ObjectsAt {
    /// `<data_dir>/store`.
    Default,
    Dir(PathBuf),
    /// `s3://bucket/prefix`.
    S3(String),
}

impl ObjectsAt {
    fn parse(text: &str) -> Result<ObjectsAt> {
        if text.starts_with("s3://") {
            return Ok(ObjectsAt::S3(text.to_string()));
        }
        let dir = text.strip_prefix("file://").unwrap_or(text);
        if dir.contains("://") || dir.is_empty() {
            bail!("--store {text}: expected a directory, file://DIR or s3://bucket/prefix");
        }
        Ok(ObjectsAt::Dir(
            std::path::absolute(dir).with_context(|| format!("--store: bad path {dir}"))?,
        ))
    }
}

/// The optional `tessera.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    pub max_processes: Option<usize>,
    pub durability: Option<String>,
    #[serde(default)]
    pub pools: BTreeMap<String, usize>,
    /// Variables of Tessera's environment that commands get.
    pub command_env: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub ephemeral: bool,
    pub max_processes: usize,
    pub pools: BTreeMap<String, usize>,
    pub durability: Durability,
    /// The state database.
    pub db: Database,
    /// The object store.
    pub objects: ObjectsAt,
    /// Variables of Tessera's environment that commands get.
    pub command_env: Vec<String>,
    /// How long a claim on a task lasts without renewal.
    pub lease: std::time::Duration,
    /// The pools and node kinds this process runs (`--pools`, `--node-types`).
    pub serves: tessera_store::Serves,
}

impl Settings {
    pub fn resolve(data: &DataArgs, engine: Option<&EngineArgs>) -> Result<Settings> {
        let config = Config::load(data.config.as_deref())?;
        let mut pools = config.pools.clone();
        let mut max_processes = config.max_processes.unwrap_or(32);
        let mut durability = match config.durability.as_deref() {
            None | Some("full") => Durability::Full,
            Some("process") => Durability::Process,
            Some(other) => {
                bail!("tessera.toml: durability must be \"full\" or \"process\", not {other:?}")
            }
        };
        let mut command_env = config.command_env.clone().unwrap_or_else(|| {
            tessera_engine::DEFAULT_COMMAND_ENV
                .map(String::from)
                .to_vec()
        });
        let mut lease = tessera_engine::DEFAULT_LEASE;
        let mut serves = tessera_store::Serves::default();
        if let Some(e) = engine {
            serves = serves_of(e)?;
            if let Some(l) = e.lease {
                lease = l;
            }
            if !e.command_env.is_empty() {
                command_env = e.command_env.clone();
            }
            if let Some(n) = e.max_processes {
                max_processes = n;
            }
            for p in &e.pools {
                let (name, size) = p
                    .split_once('=')
                    .with_context(|| format!("--pool {p}: expected NAME=SIZE"))?;
                let size: usize = size
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("--pool {p}: size must be a positive integer"))?;
                pools.insert(name.to_string(), size);
            }
            match e.durability {
                Some(DurabilityArg::Full) => durability = Durability::Full,
                Some(DurabilityArg::Process) => durability = Durability::Process,
                None => {}
            }
        }
        if max_processes == 0 {
            bail!("max_processes must be at least 1");
        }
        let data_dir = data
            .data_dir
            .clone()
            .or(config.data_dir)
            .unwrap_or_else(|| PathBuf::from(".tessera"));
        // Absolute, so object paths handed to commands work from any working directory.
        let data_dir = std::path::absolute(&data_dir)
            .with_context(|| format!("bad data dir {}", data_dir.display()))?;
        let db = match &data.db {
            Some(text) => Database::parse(text)?,
            None => Database::Default,
        };
        let objects = match &data.store {
            Some(text) => ObjectsAt::parse(text)?,
            None => ObjectsAt::Default,
        };
        if data.ephemeral && !matches!((&db, &objects), (Database::Default, ObjectsAt::Default)) {
            bail!("--ephemeral keeps nothing: it cannot be given with --db or --store");
        }
        Ok(Settings {
            data_dir,
            ephemeral: data.ephemeral,
            max_processes,
            pools,
            durability,
            db,
            objects,
            command_env,
            lease,
            serves,
        })
    }

    /// The store alone (for read-only commands).
    pub fn open_store(&self) -> Result<Arc<dyn Store>> {
        if self.ephemeral {
            return Ok(Arc::new(SqliteStore::in_memory()?));
        }
        let path = match &self.db {
            Database::Postgres(url) => {
                let store = PgStore::open(url)
                    .with_context(|| format!("cannot open {}", redact_url(url)))?;
                return Ok(Arc::new(store));
            }
            Database::Sqlite(path) => path.clone(),
            Database::Default => self.data_dir.join(tessera_engine::local::DB_FILE),
        };
        create_private_dir(&self.data_dir)?;
        let store = SqliteStore::open(&path, self.durability)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Arc::new(store))
    }
}

/// Creates the data directory readable by its owner only (it holds every task's data).
fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    tessera_engine::local::create_private_dir(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

/// A running engine and what keeps it alive.
pub struct Opened {
    pub engine: Engine,
    /// The loopback listener for service callbacks, when the task has `service` nodes; it
    /// stops when this is dropped (before the runtime it runs on).
    pub _callbacks: Option<tessera_server::ServingCallbacks>,
    pub runtime: tokio::runtime::Runtime,
    /// Deleted on drop in ephemeral mode.
    pub _scratch: Option<TempDir>,
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Settings {
    /// The object store of a non-ephemeral run.
    pub fn open_objects(&self) -> Result<Objects> {
        let dir = match &self.objects {
            ObjectsAt::S3(url) => {
                return Objects::s3(url, &[]).with_context(|| format!("--store {url}"));
            }
            ObjectsAt::Dir(dir) => dir.clone(),
            ObjectsAt::Default => self.data_dir.join(tessera_engine::local::OBJECTS_DIR),
        };
        Ok(Objects::local(&dir)?)
    }

    /// The engine's settings, its scratch files under `root/work`.
    pub fn engine_config(&self, root: &std::path::Path) -> EngineConfig {
        let mut config = EngineConfig::new(root.join(tessera_engine::local::WORK_DIR));
        config.max_processes = self.max_processes;
        config.pools = self.pools.clone();
        config.command_env = self.command_env.clone();
        config.lease = self.lease;
        config.serves = self.serves.clone();
        config
    }
}

/// The pools and node kinds of `--pools` and `--node-types`, checked: names of pools, kinds
/// of external nodes; `--pools ''` (or `--node-types ''`) is the empty list.
fn serves_of(e: &EngineArgs) -> Result<tessera_store::Serves> {
    const KINDS: [&str; 5] = ["command", "http", "service", "batch", "raster"];
    let clean = |flag: &str, list: &Vec<String>| -> Result<Vec<String>> {
        let items: Vec<String> = list.iter().map(|s| s.trim().to_string()).collect();
        // `--pools ''` is one empty item: no pool at all.
        if items.iter().all(String::is_empty) {
            return Ok(Vec::new());
        }
        for item in &items {
            let name_like = !item.is_empty()
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_like {
                bail!(
                    "{flag} {}: `{item}` is not a name (letters, digits, `_`, `-`)",
                    list.join(",")
                );
            }
        }
        Ok(items)
    };
    let pools = e
        .serve_pools
        .as_ref()
        .map(|l| clean("--pools", l))
        .transpose()?;
    let node_types = e
        .node_types
        .as_ref()
        .map(|l| clean("--node-types", l))
        .transpose()?;
    for kind in node_types.iter().flatten() {
        if !KINDS.contains(&kind.as_str()) {
            bail!(
                "--node-types {kind}: not a kind of external node; expected some of {}",
                KINDS.join(", ")
            );
        }
    }
    Ok(tessera_store::Serves { pools, node_types })
}

/// Services answer by callback: with `listen`, the engine gets a loopback listener of its
/// own for them, for as long as it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callbacks {
    Listen,
    None,
}

pub fn open_engine(settings: &Settings, callbacks: Callbacks) -> Result<Opened> {
    open_engine_on(settings, settings.open_store()?, callbacks)
}

/// [`open_engine`] on a store already opened.
pub fn open_engine_on(
    settings: &Settings,
    store: Arc<dyn Store>,
    callbacks: Callbacks,
) -> Result<Opened> {
    let (root, scratch) = if settings.ephemeral {
        let dir = std::env::temp_dir().join(format!("tessera-{}", uuid::Uuid::new_v4()));
        (dir.clone(), Some(TempDir(dir)))
    } else {
        (settings.data_dir.clone(), None)
    };
    let objects = if settings.ephemeral {
        Objects::local(&root.join(tessera_engine::local::OBJECTS_DIR))?
    } else {
        settings.open_objects()?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(num_cpus::get().max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut config = settings.engine_config(&root);
    // Bound before the engine exists: its URL is the engine's callback base.
    let listener = match callbacks {
        Callbacks::Listen => Some(
            tessera_server::CallbackListener::bind()
                .context("cannot listen for service callbacks")?,
        ),
        Callbacks::None => None,
    };
    config.callback_base = listener.as_ref().map(|l| l.url().to_string());
    let engine = Engine::new(store, objects, runtime.handle().clone(), config)?;
    let serving = match listener {
        Some(l) => Some(
            l.serve(
                engine.clone(),
                tessera_server::Limits::default(),
                runtime.handle(),
            )
            .context("cannot listen for service callbacks")?,
        ),
        None => None,
    };
    Ok(Opened {
        engine,
        _callbacks: serving,
        runtime,
        _scratch: scratch,
    })
}
