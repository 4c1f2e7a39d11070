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
use crate::json::{json_text, parse_data, parse_json};
use crate::prelude::*;
use crate::types::*;
use crate::words::parse_word;

mod batch;
mod events;
mod objects;
mod pools;
mod registry;
mod schedules;
mod schema;
mod step;

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
    let Some(text) = text else {
        return Ok(None);
    };
    let Some(hash) = text.strip_prefix('#') else {
        return parse_data(Some(text), what);
    };
    let json: Option<String> =
        sqlx::query_scalar("SELECT json FROM big_values WHERE task_id = $1 AND hash = $2")
            .bind(task_id)
            .bind(hash)
            .fetch_optional(db)
            .await?;
    match json {
        Some(json) => parse_data(Some(json), what),
        None => Err(StoreError::Corrupt {
            what: what.to_string(),
            detail: format!("stored value {hash} is missing"),
        }),
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
async fn task_row(conn: &mut sqlx::PgConnection, r: &PgRow) -> Result<TaskRow, StoreError> {
    let id: String = r.try_get(0)?;
    let input: String = r.try_get(3)?;
    let result: Option<String> = r.try_get(5)?;
    Ok(TaskRow {
        pipeline: r.try_get(1)?,
        definition: parse_json(Some(r.try_get(2)?), "task definition")?.unwrap_or(Value::Null),
        input: task_data(&mut *conn, &id, Some(input), "task input")
            .await?
            .unwrap_or_default(),
        state: parse_word::<TaskState>(r.try_get(4)?)?,
        result: task_data(&mut *conn, &id, result, "task result").await?,
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

/// A count or time stored as `BIGINT`.
pub(super) fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

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

impl Claims for PgStore {
    fn create_task(&self, task: &NewTask) -> Result<(), StoreError> {
        self.write(crate::group::Op::CreateTask(crate::group::TaskInsert::of(
            task,
        )))
    }

    fn reopen_task(&self, task_id: &str, claim: &Claim<'_>) -> Result<Option<u64>, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET state = 'pending', error = NULL, runner = $4,
                    cancel_requested = CASE WHEN state IN ('pending', 'running')
                        THEN cancel_requested ELSE FALSE END,
                    fence = fence + 1, lease_until = $6
                 WHERE id = $1 AND state = $2 AND fence = $3
                   AND (state NOT IN ('pending', 'running') OR lease_until IS NULL
                        OR lease_until < $5 OR runner = $4)",
            )
            .bind(task_id)
            .bind(claim.observed_state.as_str())
            .bind(int(claim.observed_fence))
            .bind(claim.runner)
            .bind(int(claim.now))
            .bind(int(claim.lease_until))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                let exists = sqlx::query("SELECT 1 FROM tasks WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound {
                        what: "task",
                        id: task_id.to_string(),
                    });
                }
                return Ok(None);
            }
            sqlx::query(
                "UPDATE node_runs SET state = 'failed',
                    error = 'interrupted: the process running it stopped'
                 WHERE task_id = $1 AND state = 'running' AND node_type != 'service'",
            )
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(claim.observed_fence + 1))
        })
    }

    fn renew_leases(
        &self,
        runner: &str,
        held: &[(String, u64)],
        until: u64,
    ) -> Result<Vec<String>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = held.iter().map(|(t, _)| t.as_str()).collect();
        let fences: Vec<i64> = held.iter().map(|(_, f)| int(*f)).collect();
        // One statement for every claim, however many: the ones renewed come back.
        let renewed: Vec<String> = self.block(async {
            Ok(sqlx::query_scalar(
                // Rows locked in id order, as group commits lock them: two transactions
                // locking the same rows in different orders would deadlock (and PostgreSQL
                // takes a second to notice, longer than a short lease can spare).
                "WITH locked AS (
                    SELECT t.id FROM tasks t
                    JOIN UNNEST($1::text[], $2::bigint[]) AS h(id, fence)
                      ON t.id = h.id AND t.fence = h.fence
                    WHERE t.runner = $4 AND t.state IN ('pending', 'running')
                    ORDER BY t.id FOR UPDATE OF t SKIP LOCKED)
                 UPDATE tasks t SET lease_until = $3 FROM locked WHERE t.id = locked.id
                 RETURNING t.id",
            )
            .bind(&ids)
            .bind(&fences)
            .bind(int(until))
            .bind(runner)
            .fetch_all(&self.leases)
            .await?)
        })?;
        let renewed: std::collections::HashSet<String> = renewed.into_iter().collect();
        let missed: Vec<&str> = held
            .iter()
            .filter(|(t, _)| !renewed.contains(t))
            .map(|(t, _)| t.as_str())
            .collect();
        if missed.is_empty() {
            return Ok(Vec::new());
        }
        let missed_fences: Vec<i64> = held
            .iter()
            .filter(|(t, _)| !renewed.contains(t))
            .map(|(_, f)| int(*f))
            .collect();
        // Not renewed: lost if another runner claimed it since. A row a commit of this
        // process was writing was skipped (that commit extends the lease itself); an ended
        // task is not lost (its holder is done with it).
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT t.id FROM tasks t
                 JOIN UNNEST($1::text[], $2::bigint[]) AS h(id, fence) ON t.id = h.id
                 WHERE t.state IN ('pending', 'running')
                   AND (t.fence <> h.fence OR t.runner IS DISTINCT FROM $3)",
            )
            .bind(&missed)
            .bind(&missed_fences)
            .bind(runner)
            .fetch_all(&self.leases)
            .await?)
        })
    }

    fn heartbeat(&self, w: &WorkerRow, forget_before: u64) -> Result<(), StoreError> {
        self.block(async {
            let mut tx = self.leases.begin().await?;
            sqlx::query(
                "INSERT INTO workers (runner, host, pid, started_at, heartbeat_at, lease_ms, pools)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                    lease_ms = excluded.lease_ms, pools = excluded.pools",
            )
            .bind(&w.runner)
            .bind(&w.host)
            .bind(w.pid as i64)
            .bind(int(w.started_at))
            .bind(int(w.heartbeat_at))
            .bind(int(w.lease_ms))
            .bind(json_text(&w.pools))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
                .bind(int(forget_before))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn workers(&self, since: u64, now: u64) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = self.block(async {
            Ok(sqlx::query(
                "SELECT w.runner, w.host, w.pid, w.started_at, w.heartbeat_at, w.lease_ms, w.pools,
                    (SELECT COUNT(*) FROM tasks t WHERE t.runner = w.runner
                        AND t.state IN ('pending', 'running') AND t.lease_until >= $2),
                    (SELECT MAX(t.lease_until) FROM tasks t WHERE t.runner = w.runner
                        AND t.state IN ('pending', 'running') AND t.lease_until >= $2)
                 FROM workers w WHERE w.heartbeat_at >= $1 ORDER BY w.started_at, w.runner",
            )
            .bind(int(since))
            .bind(int(now))
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    runner: r.try_get(0)?,
                    host: r.try_get(1)?,
                    pid: r.try_get::<i64, _>(2)? as u32,
                    started_at: r.try_get::<i64, _>(3)? as u64,
                    heartbeat_at: r.try_get::<i64, _>(4)? as u64,
                    lease_ms: r.try_get::<i64, _>(5)? as u64,
                    pools: parse_json(Some(r.try_get(6)?), "worker pools")?.unwrap_or(Value::Null),
                    held: r.try_get::<i64, _>(7)? as u64,
                    leases_until: r.try_get::<Option<i64>, _>(8)?.map(|t| t as u64),
                })
            })
            .collect()
    }

    fn lead(&self, role: &str, runner: &str, now: u64, until: u64) -> Result<bool, StoreError> {
        self.block(async {
            let n = sqlx::query(
                "INSERT INTO leaders (role, runner, until) VALUES ($1, $2, $4)
                 ON CONFLICT (role) DO UPDATE SET runner = excluded.runner, until = excluded.until
                 WHERE leaders.until < $3 OR leaders.runner = excluded.runner",
            )
            .bind(role)
            .bind(runner)
            .bind(int(now))
            .bind(int(until))
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    fn release_leases(&self, runner: &str) -> Result<u64, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET lease_until = NULL
                 WHERE runner = $1 AND state IN ('pending', 'running')",
            )
            .bind(runner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                notify(&mut tx, crate::Change::Claimable).await?;
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    fn fail_task(&self, task_id: &str, fence: u64, error: &str) -> Result<bool, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET state = 'failed', error = $3, lease_until = NULL, updated_at = $4
                 WHERE id = $1 AND fence = $2 AND state IN ('pending', 'running')",
            )
            .bind(task_id)
            .bind(int(fence))
            .bind(error)
            .bind(int(crate::objects::now_millis()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE node_runs SET state = 'failed', error = $2
                     WHERE task_id = $1 AND state = 'running' AND node_type != 'service'",
                )
                .bind(task_id)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn request_cancel(&self, task_id: &str) -> Result<bool, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query("UPDATE tasks SET cancel_requested = TRUE WHERE id = $1")
                .bind(task_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                notify(&mut tx, crate::Change::ForHolders).await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn cancel_requested(&self, task_id: &str) -> Result<bool, StoreError> {
        self.block(async {
            Ok(
                sqlx::query_scalar::<_, bool>("SELECT cancel_requested FROM tasks WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .unwrap_or(false),
            )
        })
    }

    fn cancel_requests(&self, runner: &str) -> Result<Vec<String>, StoreError> {
        let (pool, runner) = (self.leases.clone(), runner.to_string());
        self.run(async move {
            Ok(sqlx::query_scalar(
                "SELECT id FROM tasks WHERE cancel_requested AND runner = $1
                   AND state IN ('pending', 'running')",
            )
            .bind(&runner)
            .fetch_all(&pool)
            .await?)
        })
    }

    fn mark_cancelled(&self, task_id: &str, reason: &str, now: u64) -> Result<bool, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET state = 'cancelled', error = $2, lease_until = NULL,
                    updated_at = $3, fence = fence + 1
                 WHERE id = $1 AND state IN ('pending', 'running')
                   AND (lease_until IS NULL OR lease_until < $3)",
            )
            .bind(task_id)
            .bind(reason)
            .bind(int(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE node_runs SET state = 'cancelled'
                     WHERE task_id = $1 AND state IN ('running', 'ready', 'waiting')",
                )
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn claimable_tasks(&self, now: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT id FROM tasks WHERE state IN ('pending', 'running')
                   AND (lease_until IS NULL OR lease_until < $1)
                 ORDER BY created_at LIMIT $2",
            )
            .bind(int(now))
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn claim_tasks(&self, many: &ClaimMany<'_>) -> Result<Vec<ClaimedTask>, StoreError> {
        let (pool, runner) = (self.leases.clone(), many.runner.to_string());
        let (now, lease_until, limit) = (many.now, many.lease_until, many.limit);
        let skip = many.skip.to_vec();
        // A restricted claimer (`--pools`, `--node-types`): the categories it restricts and
        // what it serves in them; NULL when it runs everything.
        let (patterns, served) = many.serves.as_filter();
        let patterns = (!many.serves.all()).then_some(patterns);
        self.run(async move {
            let mut tx = pool.begin().await?;
            // Rows another runner is claiming right now are skipped, not waited for: two
            // workers claiming at once get disjoint sets.
            let rows = sqlx::query(
                "WITH picked AS (
                    SELECT id, runner AS was_runner, lease_until AS was_until
                    FROM tasks WHERE state IN ('pending', 'running')
                      AND (lease_until IS NULL OR lease_until < $1)
                      AND runner IS DISTINCT FROM $3 AND NOT (id = ANY($5))
                      AND ($6::text[] IS NULL OR needs IS NULL OR NOT EXISTS (
                        SELECT 1 FROM jsonb_array_elements_text(tasks.needs) AS w(need)
                        WHERE need LIKE ANY($6) AND need <> ALL($7)))
                    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE tasks t SET state = 'pending', error = NULL, runner = $3,
                    fence = t.fence + 1, lease_until = $4
                 FROM picked WHERE t.id = picked.id
                 RETURNING t.id, t.pipeline, t.definition, t.input, t.state, t.result, t.error,
                    t.created_at, t.updated_at, t.runner, t.owner, t.base_dir, t.fence,
                    t.lease_until, t.scheduled_at, picked.was_runner, picked.was_until",
            )
            .bind(int(now))
            .bind(limit.min(i64::MAX as usize) as i64)
            .bind(&runner)
            .bind(int(lease_until))
            .bind(&skip)
            .bind(&patterns)
            .bind(&served)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let mut claimed = Vec::with_capacity(rows.len());
            let mut previous = std::collections::HashMap::new();
            let mut held_before = std::collections::HashSet::new();
            for r in &rows {
                let task = task_row(&mut tx, r).await?;
                let was: Option<String> = r.try_get(15)?;
                let until: Option<i64> = r.try_get(16)?;
                if was.is_some() {
                    held_before.insert(task.id.clone());
                }
                if let (Some(was), Some(until)) = (was, until) {
                    previous.insert(task.id.clone(), (was, until.max(0) as u64));
                }
                claimed.push(task);
            }
            // Only a task some runner held before can have attempts (a submission recorded
            // for workers has none): the common case reads no history at all.
            let ids: Vec<&str> = claimed
                .iter()
                .filter(|t| held_before.contains(t.id.as_str()))
                .map(|t| t.id.as_str())
                .collect();
            let mut past: std::collections::HashMap<String, Vec<PastRun>> = Default::default();
            let rows = if ids.is_empty() {
                Vec::new()
            } else {
                // Joined to the array (index lookups), not `task_id = ANY($1)`, which the
                // planner may turn into a scan of the whole table.
                sqlx::query(
                    "UPDATE node_runs r SET state = 'failed',
                        error = 'interrupted: the process running it stopped'
                     FROM unnest($1::text[]) AS c(id)
                     WHERE r.task_id = c.id AND r.state = 'running' AND r.node_type != 'service'",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
                // Their history, all in one query, read while the claims hold.
                sqlx::query(
                    "SELECT r.task_id, r.key, r.iteration, r.attempt, r.state, r.output, r.decision
                     FROM unnest($1::text[]) AS c(id) JOIN node_runs r ON r.task_id = c.id",
                )
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
            };
            for r in rows {
                let task_id: String = r.try_get(0)?;
                let run = past_run(&mut tx, &task_id, &r, 1).await?;
                past.entry(task_id).or_default().push(run);
            }
            tx.commit().await?;
            claimed.sort_by_key(|t| t.created_at);
            Ok(claimed
                .into_iter()
                .map(|task| ClaimedTask {
                    past: past.remove(&task.id).unwrap_or_default(),
                    previous: previous.remove(&task.id),
                    task,
                })
                .collect())
        })
    }

    fn changes(&self, about: crate::Change) -> Option<Arc<tokio::sync::Notify>> {
        let i = crate::Change::ALL.iter().position(|c| *c == about)?;
        Some(self.changes[i].clone())
    }
}

impl Tasks for PgStore {
    fn commit(&self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        self.write(crate::group::Op::Step(crate::group::StepWrite::of(batch)))
    }

    fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        let (pool, id) = (self.pool.clone(), id.to_string());
        self.run(async move {
            let mut conn = pool.acquire().await?;
            let Some(r) = sqlx::query(
                "SELECT id, pipeline, definition, input, state, result, error, created_at,
                        updated_at, runner, owner, base_dir, fence, lease_until, scheduled_at
                 FROM tasks WHERE id = $1",
            )
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(task_row(&mut conn, &r).await?))
        })
    }

    fn revise_task(
        &self,
        task_id: &str,
        definition: &Value,
        input: Option<&Data>,
        at: u64,
    ) -> Result<(), StoreError> {
        self.write(step::revise(task_id, definition, input, at))
    }

    fn task_revisions(&self, task_id: &str) -> Result<Vec<TaskRevision>, StoreError> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT revision, definition, input, replaced_at FROM task_revisions
                 WHERE task_id = $1 ORDER BY revision",
            )
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(TaskRevision {
                    revision: r.try_get::<i64, _>(0)? as u32,
                    definition: parse_json(Some(r.try_get(1)?), "task revision")?
                        .unwrap_or_default(),
                    input: task_data(
                        &self.pool,
                        task_id,
                        Some(r.try_get(2)?),
                        "task revision input",
                    )
                    .await?
                    .unwrap_or_default(),
                    replaced_at: r.try_get::<i64, _>(3)? as u64,
                });
            }
            Ok(out)
        })
    }

    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>, StoreError> {
        let (before_t, before_id) = filter
            .before
            .clone()
            .map(|(t, id)| (int(t), id))
            .unwrap_or((i64::MAX, String::new()));
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let rows = self.block(async {
            Ok(sqlx::query(
                "SELECT id, pipeline, state, created_at, updated_at, owner FROM tasks
                 WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR state = $2)
                   AND (created_at < $3 OR (created_at = $3 AND id < $4))
                   AND ($6::text IS NULL OR owner = $6)
                 ORDER BY created_at DESC, id DESC LIMIT $5",
            )
            .bind(&filter.pipeline)
            .bind(filter.state.map(TaskState::as_str))
            .bind(before_t)
            .bind(before_id)
            .bind(limit)
            .bind(&filter.owner)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(TaskSummary {
                    id: r.try_get(0)?,
                    pipeline: r.try_get(1)?,
                    state: parse_word(r.try_get(2)?)?,
                    created_at: r.try_get::<i64, _>(3)? as u64,
                    updated_at: r.try_get::<i64, _>(4)? as u64,
                    owner: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn node_runs(&self, task_id: &str) -> Result<Vec<NodeRunRow>, StoreError> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT key, node_id, node_type, iteration, attempt, state, input, output, error,
                        decision, started_at, finished_at, cached
                 FROM node_runs WHERE task_id = $1
                 ORDER BY started_at IS NULL, started_at, finished_at, key, iteration, attempt",
            )
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(NodeRunRow {
                    key: r.try_get(0)?,
                    node: r.try_get(1)?,
                    node_type: r.try_get(2)?,
                    iteration: r.try_get::<i64, _>(3)? as u32,
                    attempt: r.try_get::<i64, _>(4)? as u32,
                    state: parse_word::<NodeState>(r.try_get(5)?)?,
                    input: task_data(&self.pool, task_id, r.try_get(6)?, "node input").await?,
                    output: task_data(&self.pool, task_id, r.try_get(7)?, "node output").await?,
                    error: r.try_get(8)?,
                    decision: r.try_get(9)?,
                    started_at: r.try_get::<Option<i64>, _>(10)?.map(|t| t as u64),
                    finished_at: r.try_get::<Option<i64>, _>(11)?.map(|t| t as u64),
                    cached: r.try_get(12)?,
                });
            }
            Ok(out)
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        self.block(async {
            sqlx::query("SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1) t")
                .fetch_one(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn node_keys(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT key FROM node_runs WHERE task_id = $1 ORDER BY key",
            )
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn past_runs(&self, task_id: &str) -> Result<Vec<PastRun>, StoreError> {
        let (pool, task_id) = (self.pool.clone(), task_id.to_string());
        self.run(async move {
            let rows = sqlx::query(
                "SELECT key, iteration, attempt, state, output, decision
                 FROM node_runs WHERE task_id = $1",
            )
            .bind(&task_id)
            .fetch_all(&pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            let mut conn = pool.acquire().await?;
            for r in rows {
                out.push(past_run(&mut conn, &task_id, &r, 0).await?);
            }
            Ok(out)
        })
    }

    fn delete_task(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        self.block(registry::delete_task(&self.pool, task_id))
    }

    fn ended_before(&self, before: u64) -> Result<Vec<String>, StoreError> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT id FROM tasks WHERE state IN ('finished', 'failed', 'cancelled')
                   AND updated_at < $1",
            )
            .bind(int(before))
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn task_stats(&self, owner: Option<&str>) -> Result<Vec<StatRow>, StoreError> {
        let rows: Vec<PgRow> = self.block(async {
            Ok(sqlx::query(
                "SELECT pipeline, state, COUNT(*) FROM tasks WHERE ($1::text IS NULL OR owner = $1)
                 GROUP BY pipeline, state ORDER BY pipeline, state",
            )
            .bind(owner)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(StatRow {
                    pipeline: r.try_get(0)?,
                    state: parse_word(r.try_get(1)?)?,
                    count: r.try_get::<i64, _>(2)? as u64,
                })
            })
            .collect()
    }
}

impl Logs for PgStore {
    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let task: Vec<String> = lines.iter().map(|l| l.task_id.clone()).collect();
        let key: Vec<String> = lines.iter().map(|l| l.key.clone()).collect();
        let attempt: Vec<i64> = lines.iter().map(|l| l.attempt as i64).collect();
        let stream: Vec<String> = lines.iter().map(|l| l.stream.clone()).collect();
        let line: Vec<String> = lines.iter().map(|l| text(&l.line).into_owned()).collect();
        let at: Vec<i64> = lines.iter().map(|l| int(l.at)).collect();
        let pool = self.pool.clone();
        // One statement for the whole batch, in order (ids follow UNNEST's order).
        self.run(async move {
            sqlx::query(
                "INSERT INTO logs (task_id, key, attempt, stream, line, at)
                 SELECT t, k, a, s, x, w FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[],
                                      $5::text[], $6::bigint[]) WITH ORDINALITY AS l(t, k, a, s, x, w, n)
                 ORDER BY n",
            )
            .bind(&task)
            .bind(&key)
            .bind(&attempt)
            .bind(&stream)
            .bind(&line)
            .bind(&at)
            .execute(&pool)
            .await?;
            Ok(())
        })
    }

    fn logs(&self, task_id: &str, key: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        let rows: Vec<PgRow> = self.block(async {
            Ok(sqlx::query(
                "SELECT task_id, key, attempt, stream, line, at FROM logs
                 WHERE task_id = $1 AND ($2::text IS NULL OR key = $2) ORDER BY id",
            )
            .bind(task_id)
            .bind(key)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    task_id: r.try_get(0)?,
                    key: r.try_get(1)?,
                    attempt: r.try_get::<i64, _>(2)? as u32,
                    stream: r.try_get(3)?,
                    line: r.try_get(4)?,
                    at: r.try_get::<i64, _>(5)? as u64,
                })
            })
            .collect()
    }
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
