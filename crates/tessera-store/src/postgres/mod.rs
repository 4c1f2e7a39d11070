//! The PostgreSQL implementation of [`Store`], for several servers and workers sharing one
//! database: a connection pool on a private async runtime behind the synchronous contract,
//! fenced step commits (the task row locked while its fence is checked), claims with
//! `FOR UPDATE SKIP LOCKED`, and `LISTEN/NOTIFY` as a hint that something changed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use tessera_core::Data;
use tessera_core::scheduler::{NodeState, PastRun, TaskState};

use crate::error::StoreError;
use crate::json::{json_text, output_read, parse_data, parse_json, parse_tally};
use crate::prelude::*;
use crate::types::*;
use crate::words::parse_word;

mod batch;
mod claims;
mod events;
mod loops;
mod objects;
mod pools;
mod registry;
mod schedules;
mod schema;
mod step;
mod tasks;

/// PostgreSQL's errors in backend-neutral terms: SQLSTATE classes decide what is worth
/// retrying (serialisation failures, deadlocks, lost connections) and what means "full".
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) => match d.code().as_deref() {
                // disk_full
                Some("53100") => StoreError::Full(e.to_string()),
                // serialization_failure, deadlock_detected, lock_not_available,
                // too_many_connections, admin/crash shutdown, cannot_connect_now
                Some("40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03") => {
                    StoreError::Busy(e.to_string())
                }
                Some(code) if code.starts_with("08") => StoreError::Busy(e.to_string()),
                // unique_violation: the row exists (a tick created by another process)
                Some("23505") => StoreError::Conflict(e.to_string()),
                _ => StoreError::Database(e.to_string()),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Busy(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// The notification channel: a payload-less hint that tasks, cancels or callbacks changed.
const CHANNEL: &str = "tessera_changes";

/// The store of a cluster.
pub struct PgStore {
    pool: PgPool,
    /// Connections of their own for what keeps claims alive (renewals, heartbeats, claims,
    /// cancel and callback watches): never queued behind a burst of step commits and reads,
    /// or a busy process would lose its leases.
    leases: PgPool,
    /// Where the pool's connections and the listener live; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// One per [`crate::Change`], in its order.
    changes: [Arc<tokio::sync::Notify>; 4],
    group: crate::group::GroupCommit,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The last handle may go away on an async thread, where a blocking shutdown panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`), brings the schema
    /// up to date and starts listening for change notifications.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        Self::open_with(url, 16)
    }

    /// [`PgStore::open`] with at most `connections` connections in the pool.
    pub fn open_with(url: &str, connections: u32) -> Result<PgStore, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            StoreError::Conflict(format!(
                "bad PostgreSQL URL: {}",
                redact_url(&e.to_string())
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tessera-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the database runtime: {e}")))?;
        let (pool, leases) = {
            let _entered = runtime.enter();
            let pool = PgPoolOptions::new()
                .max_connections(connections.max(2))
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_lazy_with(options.clone());
            let leases = PgPoolOptions::new()
                .max_connections(2)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_lazy_with(options);
            (pool, leases)
        };
        let store = PgStore {
            pool,
            leases,
            runtime: Some(runtime),
            changes: Default::default(),
            group: crate::group::GroupCommit::default(),
        };
        store.block(schema::migrate(&store.pool))?;
        store.spawn_listener();
        Ok(store)
    }

    /// Runs a query future to its end on the calling thread. The pool's connections belong
    /// to this store's runtime (whose threads drive their I/O), so any thread may wait here:
    /// a blocking thread of another runtime, or a plain one.
    fn block<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let _entered = self.runtime.as_ref().expect("running").enter();
        futures::executor::block_on(f)
    }

    /// Runs a query future on this store's runtime and waits for it: every round trip of it
    /// is driven there, with no thread hand-over per round trip (what [`PgStore::block`]
    /// costs); for the calls made per task and per step.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let handle = self.runtime.as_ref().expect("running").spawn(f);
        futures::executor::block_on(handle)
            .map_err(|e| StoreError::Database(format!("a database call failed: {e}")))?
    }

    /// Writes `op` through the group commit: whoever leads writes every queued write in one
    /// transaction on this store's runtime.
    fn write(&self, op: crate::group::Op) -> Result<(), StoreError> {
        self.group.write(op, |ops| {
            let tickets: Vec<u64> = ops.iter().map(|(t, _)| *t).collect();
            let pool = self.pool.clone();
            self.run(async move { Ok(step::write_all(pool, ops).await) })
                .unwrap_or_else(|e| {
                    // The runtime lost the batch (a panic): every writer of it hears so.
                    let failed = crate::group::Failed::Described(e.kind(), false, e.to_string());
                    tickets.iter().map(|t| (*t, Err(failed.clone()))).collect()
                })
        })
    }

    /// Listens on [`CHANNEL`] for as long as the store lives, waking the waiters of
    /// [`Claims::changes`] of the kind each notification names (and all of them after every
    /// reconnection: something may have been missed meanwhile). A hint only: waiters poll
    /// anyway.
    fn spawn_listener(&self) {
        let pool = self.pool.clone();
        let changes = self.changes.clone().map(|c| Arc::downgrade(&c));
        self.runtime.as_ref().expect("running").spawn(async move {
            let wake = |about: Option<&str>| {
                let mut alive = false;
                for (change, waiters) in crate::Change::ALL.iter().zip(&changes) {
                    if let Some(w) = waiters.upgrade() {
                        alive = true;
                        if about.is_none_or(|a| a == change.as_str()) {
                            // A permit for a waiter busy with its previous round (stored when
                            // nobody waits), then every waiter: no hint is lost between rounds.
                            w.notify_one();
                            w.notify_waiters();
                        }
                    }
                }
                alive
            };
            loop {
                if let Ok(mut listener) = sqlx::postgres::PgListener::connect_with(&pool).await
                    && listener.listen(CHANNEL).await.is_ok()
                {
                    if !wake(None) {
                        return;
                    }
                    while let Ok(n) = listener.recv().await {
                        if !wake(Some(n.payload())) {
                            return;
                        }
                    }
                }
                if !wake(None) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Creates the database `name` on the server `url` points at (connecting to `url`'s own
    /// database), and returns the URL of the new one: for tests and set-up tools that give
    /// each run a database of its own. `name` is letters, digits and `_` only.
    pub fn create_database(url: &str, name: &str) -> Result<String, StoreError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Conflict(format!("bad database name {name:?}")));
        }
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            StoreError::Conflict(format!(
                "bad PostgreSQL URL: {}",
                redact_url(&e.to_string())
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async {
            use sqlx::{ConnectOptions, Executor};
            let mut conn = options.connect().await?;
            // A name checked above: quoting it as an identifier is enough.
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .await?;
            Ok::<_, StoreError>(())
        })?;
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (url, String::new()),
        };
        let server = match base.rfind('/') {
            Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
            _ => base,
        };
        Ok(format!("{server}/{name}{query}"))
    }

    /// The database's size now, in bytes.
    pub fn size(&self) -> Result<u64, StoreError> {
        self.block(async {
            let n: i64 = sqlx::query("SELECT pg_database_size(current_database())")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            Ok(n as u64)
        })
    }
}

/// A database URL (or a message quoting one) as it may be shown: without its password.
/// Everything between the scheme and the last `@` is hidden but the user name, so a password
/// holding an `@` is hidden whole.
pub fn redact_url(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = text[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}://{user}:…{}", &text[..scheme], &text[at..])
        }
        _ => text.to_string(),
    }
}

/// A task's stored value: inline JSON, or `#<hash>` naming one of its `big_values`.
pub(super) async fn task_data<'e>(
    db: impl sqlx::PgExecutor<'e>,
    task_id: &str,
    text: Option<String>,
    what: &str,
) -> Result<Option<Data>, StoreError> {
    Ok(task_value(db, task_id, text, what, ValueRead::Whole)
        .await?
        .0)
}

/// A column holding a task's value (or `#<hash>` naming a big one): the value, or with
/// [`ValueRead::Sizes`] a big one's size instead.
pub(super) async fn task_value<'e>(
    db: impl sqlx::PgExecutor<'e>,
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
        // Rows from before sizes were kept are measured by the server.
        let bytes: Option<i64> = sqlx::query_scalar(
            "SELECT COALESCE(bytes, octet_length(json)) FROM big_values
             WHERE task_id = $1 AND hash = $2",
        )
        .bind(task_id)
        .bind(hash)
        .fetch_optional(db)
        .await?;
        return Ok((None, Some(bytes.ok_or_else(missing)? as u64)));
    }
    let json: Option<String> =
        sqlx::query_scalar("SELECT json FROM big_values WHERE task_id = $1 AND hash = $2")
            .bind(task_id)
            .bind(hash)
            .fetch_optional(db)
            .await?;
    match json {
        Some(json) => Ok((parse_data(Some(json), what)?, None)),
        None => Err(missing()),
    }
}

/// Text as PostgreSQL can hold it: a NUL byte (a binary line of a command's output or of a
/// batch input) becomes U+FFFD, where SQLite would have kept it; the rest is unchanged.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A task's row, from the columns `id, pipeline, definition, input, state, result, error,
/// created_at, updated_at, runner, owner, base_dir, fence, lease_until, scheduled_at` in that
/// order.
async fn task_row(
    conn: &mut sqlx::PgConnection,
    r: &PgRow,
    values: ValueRead,
) -> Result<TaskRow, StoreError> {
    let id: String = r.try_get(0)?;
    let input: String = r.try_get(3)?;
    let result: Option<String> = r.try_get(5)?;
    let (input, input_bytes) =
        task_value(&mut *conn, &id, Some(input), "task input", values).await?;
    let (result, result_bytes) = task_value(&mut *conn, &id, result, "task result", values).await?;
    Ok(TaskRow {
        pipeline: r.try_get(1)?,
        definition: parse_json(Some(r.try_get(2)?), "task definition")?.unwrap_or(Value::Null),
        input: input.unwrap_or_default(),
        input_bytes,
        state: parse_word::<TaskState>(r.try_get(4)?)?,
        result,
        result_bytes,
        error: r.try_get(6)?,
        created_at: r.try_get::<i64, _>(7)? as u64,
        updated_at: r.try_get::<i64, _>(8)? as u64,
        runner: r.try_get(9)?,
        owner: r.try_get(10)?,
        base_dir: r.try_get(11)?,
        fence: r.try_get::<i64, _>(12)? as u64,
        lease_until: r.try_get::<Option<i64>, _>(13)?.map(|t| t as u64),
        scheduled_at: r.try_get::<Option<i64>, _>(14)?.map(|t| t as u64),
        id,
    })
}

/// One past attempt, from the columns `key, iteration, attempt, state, output, decision`
/// starting at column `at`.
async fn past_run(
    conn: &mut sqlx::PgConnection,
    task_id: &str,
    r: &PgRow,
    at: usize,
) -> Result<PastRun, StoreError> {
    let key: String = r.try_get(at)?;
    let state: String = r.try_get(at + 3)?;
    let state = NodeState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        what: format!("state of node `{key}`"),
        detail: format!("unknown state `{state}`"),
    })?;
    let decision: Option<String> = r.try_get(at + 5)?;
    Ok(PastRun {
        iteration: r.try_get::<i64, _>(at + 1)? as u32,
        attempt: r.try_get::<i64, _>(at + 2)? as u32,
        state,
        output: task_data(&mut *conn, task_id, r.try_get(at + 4)?, "node output").await?,
        decision: decision
            .as_deref()
            .and_then(tessera_core::scheduler::Arm::parse),
        key,
    })
}

pub(super) use crate::int;

/// Tells every process listening that something of `about` changed (a hint; sent at
/// commit, once per transaction and kind however often it is asked).
pub(super) async fn notify(
    tx: &mut sqlx::PgConnection,
    about: crate::Change,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(about.as_str())
        .execute(tx)
        .await?;
    Ok(())
}

impl Cache for PgStore {
    fn cache_hit(&self, key: &str, task_id: &str) -> Result<Option<Data>, StoreError> {
        self.block(objects::cache_hit(&self.pool, key, task_id))
    }
}

impl ObjectIndex for PgStore {
    fn put_object(
        &self,
        meta: &crate::ObjectMeta,
        task_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.block(objects::put_object(&self.pool, meta, task_id))
    }

    fn object(&self, id: &str) -> Result<Option<crate::ObjectMeta>, StoreError> {
        self.block(objects::object(&self.pool, id))
    }

    fn object_task(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.block(objects::object_task(&self.pool, id))
    }

    fn object_in_task(&self, id: &str, task_id: &str) -> Result<bool, StoreError> {
        self.block(objects::object_in_task(&self.pool, id, task_id))
    }

    fn unattached_objects(&self, before: u64) -> Result<Vec<String>, StoreError> {
        self.block(objects::unattached_objects(&self.pool, before))
    }

    fn delete_objects(&self, ids: &[String]) -> Result<(), StoreError> {
        self.block(objects::delete_objects(&self.pool, ids))
    }

    fn attach_objects(&self, task_id: &str, ids: &[String]) -> Result<(), StoreError> {
        self.block(objects::attach_objects(&self.pool, task_id, ids))
    }
}

impl Registry for PgStore {
    fn put_pipeline(&self, pipeline: &PipelineRow) -> Result<bool, StoreError> {
        self.block(registry::put_pipeline(&self.pool, pipeline))
    }

    fn pipeline(&self, name: &str) -> Result<Option<PipelineRow>, StoreError> {
        self.block(registry::pipeline(&self.pool, name))
    }

    fn pipeline_version(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.block(registry::pipeline_version(&self.pool, name))
    }

    fn list_pipelines(&self) -> Result<Vec<PipelineRow>, StoreError> {
        self.block(registry::list_pipelines(&self.pool))
    }

    fn pipeline_versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.block(registry::pipeline_versions(&self.pool))
    }

    fn delete_pipeline(&self, name: &str) -> Result<bool, StoreError> {
        self.block(registry::delete_pipeline(&self.pool, name))
    }

    fn announce_service(&self, service: &ServiceRow) -> Result<(), StoreError> {
        self.block(registry::announce_service(&self.pool, service))
    }

    fn list_services(&self) -> Result<Vec<ServiceRow>, StoreError> {
        self.block(registry::list_services(&self.pool))
    }

    fn remove_service(&self, name: &str) -> Result<(), StoreError> {
        self.block(registry::remove_service(&self.pool, name))
    }
}

impl Callbacks for PgStore {
    fn create_callback(&self, row: &CallbackRow, fence: u64) -> Result<(), StoreError> {
        self.block(registry::create_callback(&self.pool, row, fence))
    }

    fn callback(&self, token: &str) -> Result<Option<CallbackRow>, StoreError> {
        self.block(registry::callback(&self.pool, token))
    }

    fn callback_for_attempt(
        &self,
        task_id: &str,
        key: &str,
        iteration: u32,
        attempt: u32,
    ) -> Result<Option<CallbackRow>, StoreError> {
        self.block(registry::callback_for_attempt(
            &self.pool, task_id, key, iteration, attempt,
        ))
    }

    fn complete_callback(
        &self,
        token: &str,
        result: &Value,
        failed: bool,
    ) -> Result<bool, StoreError> {
        self.block(registry::complete_callback(
            &self.pool, token, result, failed,
        ))
    }

    fn mark_dispatched(&self, token: &str) -> Result<(), StoreError> {
        self.block(registry::mark_dispatched(&self.pool, token))
    }

    fn redispatch_callback(&self, token: &str, callback_base: &str) -> Result<bool, StoreError> {
        self.block(registry::redispatch_callback(
            &self.pool,
            token,
            callback_base,
        ))
    }

    fn received_callbacks(
        &self,
        runner: &str,
        after: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let (pool, runner) = (self.leases.clone(), runner.to_string());
        self.run(async move { registry::received_callbacks(&pool, &runner, after).await })
    }

    fn last_callback_seq(&self) -> Result<u64, StoreError> {
        self.block(registry::last_callback_seq(&self.pool))
    }

    fn supersede_callback(&self, token: &str, fence: u64) -> Result<(), StoreError> {
        self.block(registry::supersede_callback(&self.pool, token, fence))
    }
}

impl LoopCheckpoints for PgStore {
    fn put_loop_chunks(&self, commits: &[LoopChunkCommit<'_>]) -> Result<(), StoreError> {
        self.block(loops::put_chunks(&self.pool, commits))
    }

    fn loop_chunks(
        &self,
        key: &LoopKey,
        fingerprint: &str,
    ) -> Result<Vec<LoopChunkRow>, StoreError> {
        self.block(loops::chunks(&self.pool, key, fingerprint))
    }

    fn loop_chunks_over(
        &self,
        key: &LoopKey,
        first: u64,
        count: u64,
    ) -> Result<Vec<LoopChunkRow>, StoreError> {
        self.block(loops::chunks_over(&self.pool, key, first, count))
    }

    fn loop_failures(
        &self,
        key: &LoopKey,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<LoopFailureRow>, StoreError> {
        self.block(loops::failures(&self.pool, key, offset, limit))
    }

    fn loop_summaries(&self, task_id: &str) -> Result<Vec<LoopSummary>, StoreError> {
        self.block(loops::summaries(&self.pool, task_id))
    }
}

impl BatchCheckpoints for PgStore {
    fn create_batch_job(
        &self,
        job: &BatchJobRow,
        chunks: &[BatchChunkRow],
    ) -> Result<(), StoreError> {
        self.block(batch::create_job(&self.pool, job, chunks))
    }

    fn batch_job(&self, key: &BatchKey) -> Result<Option<BatchJobRow>, StoreError> {
        self.block(batch::job(&self.pool, key))
    }

    fn batch_jobs(&self, task_id: &str) -> Result<Vec<BatchJobRow>, StoreError> {
        self.block(batch::jobs(&self.pool, task_id))
    }

    fn start_batch_job(&self, key: &BatchKey, now: u64) -> Result<u32, StoreError> {
        self.block(batch::start_job(&self.pool, key, now))
    }

    fn end_batch_job(
        &self,
        key: &BatchKey,
        state: BatchJobState,
        output: Option<&Value>,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.block(batch::end_job(&self.pool, key, state, output, error, now))
    }

    fn batch_chunks(&self, key: &BatchKey) -> Result<Vec<BatchChunkRow>, StoreError> {
        self.block(batch::chunks(&self.pool, key))
    }

    fn batch_lines(&self, key: &BatchKey) -> Result<Vec<BatchLineRow>, StoreError> {
        self.block(batch::lines(&self.pool, key))
    }

    fn put_batch_chunks(&self, commits: &[ChunkCommit<'_>]) -> Result<(), StoreError> {
        self.block(batch::put_chunks(&self.pool, commits))
    }

    fn replan_batch_job(
        &self,
        job: &BatchJobRow,
        keep: u32,
        chunks: &[BatchChunkRow],
    ) -> Result<(), StoreError> {
        self.block(batch::replan_job(&self.pool, job, keep, chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/t"),
            "postgres://app:…@db:5432/t"
        );
        // A raw `@` in the password: hidden whole, up to the host.
        let shown = redact_url("postgres://app:p@ss@db/t");
        assert!(!shown.contains("ss"), "{shown}");
        assert_eq!(redact_url("sqlite:/data/t.db"), "sqlite:/data/t.db");
    }
}
