//! The SQLite implementation of [`Store`]: one WAL database file, one connection behind a
//! mutex, one transaction per scheduler step (group commit).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tessera_core::Data;
use tessera_core::scheduler::{Arm, NodeState, PastRun, TaskState};

use crate::prelude::*;
mod batch;
mod claims;
mod events;
mod group;
mod loops;
mod objects;
mod pools;
mod registry;
mod revisions;
mod schedules;
mod schema;
mod tasks;
mod words;

use crate::error::StoreError;
use crate::json::{json_text, output_read, parse_data, parse_json, parse_tally};
use crate::objects::ObjectMeta;
use crate::types::*;

/// SQLite's errors in backend-neutral terms: busy, full, or a database error.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e.to_string())
            }
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss (`synchronous=FULL`).
    Full,
    /// Survives a killed process, not a power cut (`synchronous=NORMAL`).
    Process,
    /// In memory only: `--ephemeral`.
    None,
}

/// The embedded default store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    group: crate::group::GroupCommit,
    /// The database file and its identity (device, inode) when opened: a file deleted or
    /// replaced under a running process keeps answering from the old inode, and everything
    /// written from then on is lost — [`Store::check`] says so.
    file: Option<(std::path::PathBuf, (u64, u64))>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        let mut store = Self::init(conn, durability)?;
        store.file = Some((path.to_path_buf(), file_identity(path)?));
        Ok(store)
    }

    /// A private in-memory database: nothing is kept.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory()?, Durability::None)
    }

    fn init(mut conn: Connection, durability: Durability) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if durability != Durability::None {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Process => "NORMAL",
            Durability::None => "OFF",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::create(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            group: crate::group::GroupCommit::default(),
            file: None,
        })
    }

    /// Caps the database's size (`None`: no cap). Beyond it, writes fail as on a full disk
    /// (`StoreError::Full`), which keeps a shared disk from being filled by one server.
    pub fn set_max_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        let conn = self.conn();
        let page = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
        let pages = bytes.map_or(u32::MAX as u64 - 1, |b| (b / page).max(1));
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// The database's size now, in bytes.
    pub fn size(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let pages = conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))?;
        let page = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?;
        Ok((pages * page) as u64)
    }

    /// Writes `op` through the group commit.
    fn write(&self, op: crate::group::Op) -> Result<(), StoreError> {
        self.group
            .write(op, |ops| group::write_all(&mut self.conn(), ops))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (it rolls back
        // on drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// (device, inode) of a file.
fn file_identity(path: &Path) -> Result<(u64, u64), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| StoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok((meta.dev(), meta.ino()))
}

/// A task's stored value: inline JSON, or `#<hash>` naming one of its `big_values`.
fn task_data(
    conn: &Connection,
    task_id: &str,
    text: Option<String>,
    what: &str,
) -> Result<Option<Data>, StoreError> {
    Ok(task_value(conn, task_id, text, what, ValueRead::Whole)?.0)
}

/// A column holding a task's value (or `#<hash>` naming a big one): the value, or with
/// [`ValueRead::Sizes`] a big one's size instead.
fn task_value(
    conn: &Connection,
    task_id: &str,
    text: Option<String>,
    what: &str,
    values: ValueRead,
) -> Result<(Option<Data>, Option<u64>), StoreError> {
    let Some(text) = text else {
        return Ok((None, None));
    };
    let Some(hash) = text.strip_prefix('#') else {
        return Ok((parse_data(Some(text), what)?, None));
    };
    let missing = || StoreError::Corrupt {
        what: what.to_string(),
        detail: format!("stored value {hash} is missing"),
    };
    if values == ValueRead::Sizes {
        // Rows from before sizes were kept are measured (read once, not parsed).
        let bytes: Option<i64> = conn
            .prepare_cached(
                "SELECT COALESCE(bytes, length(CAST(json AS BLOB))) FROM big_values
                 WHERE task_id = ?1 AND hash = ?2",
            )?
            .query_row(params![task_id, hash], |r| r.get(0))
            .optional()?;
        return Ok((None, Some(bytes.ok_or_else(missing)? as u64)));
    }
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM big_values WHERE task_id = ?1 AND hash = ?2")?
        .query_row(params![task_id, hash], |r| r.get(0))
        .optional()?;
    match json {
        Some(json) => Ok((parse_data(Some(json), what)?, None)),
        None => Err(missing()),
    }
}

impl Cache for SqliteStore {
    fn cache_hit(&self, key: &str, task_id: &str) -> Result<Option<Data>, StoreError> {
        objects::cache_hit(&mut self.conn(), key, task_id)
    }
}

impl ObjectIndex for SqliteStore {
    fn put_object(&self, meta: &ObjectMeta, task_id: Option<&str>) -> Result<(), StoreError> {
        objects::put_object(&self.conn(), meta, task_id)
    }

    fn object(&self, id: &str) -> Result<Option<ObjectMeta>, StoreError> {
        objects::object(&self.conn(), id)
    }

    fn object_task(&self, id: &str) -> Result<Option<String>, StoreError> {
        objects::object_task(&self.conn(), id)
    }

    fn object_in_task(&self, id: &str, task_id: &str) -> Result<bool, StoreError> {
        objects::object_in_task(&self.conn(), id, task_id)
    }

    fn unattached_objects(&self, before: u64) -> Result<Vec<String>, StoreError> {
        objects::unattached_objects(&self.conn(), before)
    }

    fn delete_objects(&self, ids: &[String]) -> Result<(), StoreError> {
        objects::delete_objects(&mut self.conn(), ids)
    }

    fn attach_objects(&self, task_id: &str, ids: &[String]) -> Result<(), StoreError> {
        objects::attach_objects(&mut self.conn(), task_id, ids)
    }
}

impl Registry for SqliteStore {
    fn put_pipeline(&self, pipeline: &PipelineRow) -> Result<bool, StoreError> {
        registry::put_pipeline(&self.conn(), pipeline)
    }

    fn pipeline(&self, name: &str) -> Result<Option<PipelineRow>, StoreError> {
        registry::pipeline(&self.conn(), name)
    }

    fn pipeline_version(&self, name: &str) -> Result<Option<String>, StoreError> {
        registry::pipeline_version(&self.conn(), name)
    }

    fn list_pipelines(&self) -> Result<Vec<PipelineRow>, StoreError> {
        registry::list_pipelines(&self.conn())
    }

    fn pipeline_versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        registry::pipeline_versions(&self.conn())
    }

    fn delete_pipeline(&self, name: &str) -> Result<bool, StoreError> {
        registry::delete_pipeline(&self.conn(), name)
    }

    fn announce_service(&self, service: &ServiceRow) -> Result<(), StoreError> {
        registry::announce_service(&self.conn(), service)
    }

    fn list_services(&self) -> Result<Vec<ServiceRow>, StoreError> {
        registry::list_services(&self.conn())
    }

    fn remove_service(&self, name: &str) -> Result<(), StoreError> {
        registry::remove_service(&mut self.conn(), name)
    }
}

impl Callbacks for SqliteStore {
    fn create_callback(&self, row: &CallbackRow, fence: u64) -> Result<(), StoreError> {
        registry::create_callback(&mut self.conn(), row, fence)
    }

    fn callback(&self, token: &str) -> Result<Option<CallbackRow>, StoreError> {
        registry::callback(&self.conn(), token)
    }

    fn callback_for_attempt(
        &self,
        task_id: &str,
        key: &str,
        iteration: u32,
        attempt: u32,
    ) -> Result<Option<CallbackRow>, StoreError> {
        registry::callback_for_attempt(&self.conn(), task_id, key, iteration, attempt)
    }

    fn complete_callback(
        &self,
        token: &str,
        result: &Value,
        failed: bool,
    ) -> Result<bool, StoreError> {
        registry::complete_callback(&self.conn(), token, result, failed)
    }

    fn mark_dispatched(&self, token: &str) -> Result<(), StoreError> {
        registry::mark_dispatched(&self.conn(), token)
    }

    fn redispatch_callback(&self, token: &str, callback_base: &str) -> Result<bool, StoreError> {
        registry::redispatch_callback(&self.conn(), token, callback_base)
    }

    fn supersede_callback(&self, token: &str, fence: u64) -> Result<(), StoreError> {
        registry::supersede_callback(&self.conn(), token, fence)
    }

    fn received_callbacks(
        &self,
        runner: &str,
        after: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        registry::received_callbacks(&self.conn(), runner, after)
    }

    fn last_callback_seq(&self) -> Result<u64, StoreError> {
        registry::last_callback_seq(&self.conn())
    }
}

impl BatchCheckpoints for SqliteStore {
    fn create_batch_job(
        &self,
        job: &BatchJobRow,
        chunks: &[BatchChunkRow],
    ) -> Result<(), StoreError> {
        batch::create_job(&mut self.conn(), job, chunks)
    }

    fn batch_job(&self, key: &BatchKey) -> Result<Option<BatchJobRow>, StoreError> {
        batch::job(&self.conn(), key)
    }

    fn batch_jobs(&self, task_id: &str) -> Result<Vec<BatchJobRow>, StoreError> {
        batch::jobs(&self.conn(), task_id)
    }

    fn start_batch_job(&self, key: &BatchKey, now: u64) -> Result<u32, StoreError> {
        batch::start_job(&self.conn(), key, now)
    }

    fn end_batch_job(
        &self,
        key: &BatchKey,
        state: BatchJobState,
        output: Option<&Value>,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        batch::end_job(&self.conn(), key, state, output, error, now)
    }

    fn batch_chunks(&self, key: &BatchKey) -> Result<Vec<BatchChunkRow>, StoreError> {
        batch::chunks(&self.conn(), key)
    }

    fn batch_lines(&self, key: &BatchKey) -> Result<Vec<BatchLineRow>, StoreError> {
        batch::lines(&self.conn(), key)
    }

    fn put_batch_chunks(&self, commits: &[ChunkCommit<'_>]) -> Result<(), StoreError> {
        batch::put_chunks(&mut self.conn(), commits)
    }

    fn replan_batch_job(
        &self,
        job: &BatchJobRow,
        keep: u32,
        chunks: &[BatchChunkRow],
    ) -> Result<(), StoreError> {
        batch::replan_job(&mut self.conn(), job, keep, chunks)
    }
}

impl LoopCheckpoints for SqliteStore {
    fn put_loop_chunks(&self, commits: &[LoopChunkCommit<'_>]) -> Result<(), StoreError> {
        loops::put_chunks(&mut self.conn(), commits)
    }

    fn loop_chunks(
        &self,
        key: &LoopKey,
        fingerprint: &str,
    ) -> Result<Vec<LoopChunkRow>, StoreError> {
        loops::chunks(&self.conn(), key, fingerprint)
    }

    fn loop_chunks_over(
        &self,
        key: &LoopKey,
        first: u64,
        count: u64,
    ) -> Result<Vec<LoopChunkRow>, StoreError> {
        loops::chunks_over(&self.conn(), key, first, count)
    }

    fn loop_failures(
        &self,
        key: &LoopKey,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<LoopFailureRow>, StoreError> {
        loops::failures(&self.conn(), key, offset, limit)
    }

    fn loop_summaries(&self, task_id: &str) -> Result<Vec<LoopSummary>, StoreError> {
        loops::summaries(&self.conn(), task_id)
    }
}
