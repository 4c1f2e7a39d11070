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
mod events;
mod group;
mod objects;
mod pools;
mod registry;
mod revisions;
mod schedules;
mod schema;
mod words;

use crate::error::StoreError;
use crate::json::{json_text, parse_data, parse_json};
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
    let Some(text) = text else {
        return Ok(None);
    };
    let Some(hash) = text.strip_prefix('#') else {
        return parse_data(Some(text), what);
    };
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM big_values WHERE task_id = ?1 AND hash = ?2")?
        .query_row(params![task_id, hash], |r| r.get(0))
        .optional()?;
    match json {
        Some(json) => parse_data(Some(json), what),
        None => Err(StoreError::Corrupt {
            what: what.to_string(),
            detail: format!("stored value {hash} is missing"),
        }),
    }
}

impl Claims for SqliteStore {
    fn create_task(&self, task: &NewTask) -> Result<(), StoreError> {
        let op = crate::group::Op::CreateTask(crate::group::TaskInsert::of(task));
        self.write(op)
    }

    fn fail_task(&self, task_id: &str, fence: u64, error: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET state = 'failed', error = ?3, lease_until = NULL, updated_at = ?4
             WHERE id = ?1 AND fence = ?2 AND state IN ('pending', 'running')",
            params![
                task_id,
                fence as i64,
                error,
                crate::objects::now_millis() as i64
            ],
        )?;
        if n > 0 {
            tx.execute(
                "UPDATE node_runs SET state = 'failed', error = ?2
                 WHERE task_id = ?1 AND state = 'running' AND node_type != 'service'",
                params![task_id, error],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn reopen_task(&self, task_id: &str, claim: &Claim<'_>) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET state = 'pending', error = NULL, runner = ?4,
                -- A takeover keeps a cancel asked of the previous holder; a resume of an
                -- ended task starts without one.
                cancel_requested = CASE WHEN state IN ('pending', 'running')
                    THEN cancel_requested ELSE 0 END,
                fence = fence + 1, lease_until = ?6
             WHERE id = ?1 AND state = ?2 AND fence = ?3
               AND (state NOT IN ('pending', 'running') OR lease_until IS NULL OR lease_until < ?5
                    OR runner = ?4)",
            params![
                task_id,
                words::Word(claim.observed_state),
                claim.observed_fence as i64,
                claim.runner,
                claim.now as i64,
                claim.lease_until as i64
            ],
        )?;
        if n == 0 {
            let exists = tx
                .query_row("SELECT 1 FROM tasks WHERE id = ?1", [task_id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound {
                    what: "task",
                    id: task_id.to_string(),
                });
            }
            return Ok(None);
        }
        // Attempts caught running by a crash will never report: say so in the history.
        tx.execute(
            "UPDATE node_runs SET state = 'failed', error = 'interrupted: the process running it stopped'
             WHERE task_id = ?1 AND state = 'running' AND node_type != 'service'",
            [task_id],
        )?;
        tx.commit()?;
        Ok(Some(claim.observed_fence + 1))
    }

    fn lead(&self, role: &str, runner: &str, now: u64, until: u64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO leaders (role, runner, until) VALUES (?1, ?2, ?4)
             ON CONFLICT (role) DO UPDATE SET runner = excluded.runner, until = excluded.until
             WHERE leaders.until < ?3 OR leaders.runner = excluded.runner",
            params![role, runner, now as i64, until as i64],
        )?;
        Ok(n == 1)
    }

    fn heartbeat(&self, w: &WorkerRow, forget_before: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO workers (runner, host, pid, started_at, heartbeat_at, lease_ms, pools)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                lease_ms = excluded.lease_ms, pools = excluded.pools",
        )?
        .execute(params![
            w.runner,
            w.host,
            w.pid,
            w.started_at as i64,
            w.heartbeat_at as i64,
            w.lease_ms as i64,
            json_text(&w.pools)
        ])?;
        tx.prepare_cached("DELETE FROM workers WHERE heartbeat_at < ?1")?
            .execute([forget_before as i64])?;
        tx.commit()?;
        Ok(())
    }

    fn workers(&self, since: u64, now: u64) -> Result<Vec<WorkerRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT w.runner, w.host, w.pid, w.started_at, w.heartbeat_at, w.lease_ms, w.pools,
                (SELECT COUNT(*) FROM tasks t WHERE t.runner = w.runner
                    AND t.state IN ('pending', 'running') AND t.lease_until >= ?2),
                (SELECT MAX(t.lease_until) FROM tasks t WHERE t.runner = w.runner
                    AND t.state IN ('pending', 'running') AND t.lease_until >= ?2)
             FROM workers w WHERE w.heartbeat_at >= ?1 ORDER BY w.started_at, w.runner",
        )?;
        let rows = stmt
            .query_map(params![since as i64, now as i64], |r| {
                Ok((
                    WorkerRow {
                        runner: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        started_at: r.get::<_, i64>(3)? as u64,
                        heartbeat_at: r.get::<_, i64>(4)? as u64,
                        lease_ms: r.get::<_, i64>(5)? as u64,
                        pools: Value::Null,
                        held: r.get::<_, i64>(7)? as u64,
                        leases_until: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
                    },
                    r.get::<_, String>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mut w, pools)| {
                w.pools = parse_json(Some(pools), "worker pools")?.unwrap_or(Value::Null);
                Ok(w)
            })
            .collect()
    }

    fn release_leases(&self, runner: &str) -> Result<u64, StoreError> {
        let n = self.conn().execute(
            "UPDATE tasks SET lease_until = NULL
             WHERE runner = ?1 AND state IN ('pending', 'running')",
            [runner],
        )?;
        Ok(n as u64)
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut lost = Vec::new();
        {
            let mut renew = tx.prepare_cached(
                "UPDATE tasks SET lease_until = ?4
                 WHERE id = ?1 AND fence = ?2 AND runner = ?3 AND state IN ('pending', 'running')",
            )?;
            let mut unended = tx.prepare_cached(
                "SELECT 1 FROM tasks WHERE id = ?1 AND state IN ('pending', 'running')",
            )?;
            for (task_id, fence) in held {
                if renew.execute(params![task_id, *fence as i64, runner, until as i64])? == 0
                    && unended.exists([task_id])?
                {
                    lost.push(task_id.clone());
                }
            }
        }
        tx.commit()?;
        Ok(lost)
    }

    fn request_cancel(&self, task_id: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE tasks SET cancel_requested = 1 WHERE id = ?1",
            [task_id],
        )?;
        Ok(n > 0)
    }

    fn cancel_requested(&self, task_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT cancel_requested FROM tasks WHERE id = ?1",
                [task_id],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    fn cancel_requests(&self, runner: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM tasks WHERE cancel_requested = 1 AND runner = ?1
               AND state IN ('pending', 'running')",
        )?;
        Ok(stmt
            .query_map([runner], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn mark_cancelled(&self, task_id: &str, reason: &str, now: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET state = 'cancelled', error = ?2, lease_until = NULL, updated_at = ?3,
                -- A holder whose lease ran out but who is still alive must not write over it.
                fence = fence + 1
             WHERE id = ?1 AND state IN ('pending', 'running')
               AND (lease_until IS NULL OR lease_until < ?3)",
            params![task_id, reason, now as i64],
        )?;
        if n > 0 {
            tx.execute(
                "UPDATE node_runs SET state = 'cancelled' WHERE task_id = ?1 AND state IN ('running', 'ready', 'waiting')",
                [task_id],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn claimable_tasks(&self, now: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        registry::claimable_tasks(&self.conn(), now, limit, &Serves::default())
    }

    fn claim_tasks(&self, many: &ClaimMany<'_>) -> Result<Vec<ClaimedTask>, StoreError> {
        let ClaimMany {
            runner,
            now,
            lease_until,
            limit,
            skip,
            serves,
        } = *many;
        // One writer: claims one by one, each conditional on what was just read.
        let mut claimed = Vec::new();
        let ids = registry::claimable_tasks(&self.conn(), now, limit + skip.len(), serves)?;
        for id in ids {
            if claimed.len() == limit || skip.contains(&id) {
                continue;
            }
            let Some(mut task) = self.task(&id)? else {
                continue;
            };
            if task.state.is_terminal() || task.runner.as_deref() == Some(runner) {
                continue;
            }
            let claim = Claim {
                observed_state: task.state,
                observed_fence: task.fence,
                runner,
                now,
                lease_until,
            };
            let previous = task.runner.clone().zip(task.lease_until);
            if let Some(fence) = self.reopen_task(&id, &claim)? {
                task.fence = fence;
                task.state = TaskState::Pending;
                task.error = None;
                task.runner = Some(runner.to_string());
                task.lease_until = Some(lease_until);
                let past = self.past_runs(&id)?;
                claimed.push(ClaimedTask {
                    task,
                    past,
                    previous,
                });
            }
        }
        Ok(claimed)
    }
}

impl Tasks for SqliteStore {
    fn revise_task(
        &self,
        task_id: &str,
        definition: &Value,
        input: Option<&Data>,
        at: u64,
    ) -> Result<(), StoreError> {
        let op = crate::group::Op::Revise(crate::group::TaskRevise {
            task_id: task_id.to_string(),
            definition: json_text(definition),
            input: input.map(crate::group::Json::of),
            at: at as i64,
        });
        self.write(op)
    }

    fn task_revisions(&self, task_id: &str) -> Result<Vec<TaskRevision>, StoreError> {
        revisions::task_revisions(&self.conn(), task_id)
    }

    fn commit(&self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        self.write(crate::group::Op::Step(crate::group::StepWrite::of(batch)))
    }

    fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, pipeline, definition, input, state, result, error, created_at, updated_at, runner,
                        owner, base_dir, fence, lease_until, scheduled_at
                 FROM tasks WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, words::Word<TaskState>>(4)?.0,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, Option<String>>(11)?,
                        r.get::<_, i64>(12)?,
                        r.get::<_, Option<i64>>(13)?,
                        r.get::<_, Option<i64>>(14)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            id,
            pipeline,
            definition,
            input,
            state,
            result,
            error,
            created,
            updated,
            runner,
            owner,
            base_dir,
            fence,
            lease_until,
            scheduled_at,
        )) = row
        else {
            return Ok(None);
        };
        Ok(Some(TaskRow {
            definition: parse_json(Some(definition), "task definition")?.unwrap_or(Value::Null),
            input: task_data(&conn, &id, Some(input), "task input")?.unwrap_or_default(),
            result: task_data(&conn, &id, result, "task result")?,
            id,
            pipeline,
            state,
            error,
            created_at: created as u64,
            updated_at: updated as u64,
            runner,
            owner,
            base_dir,
            fence: fence as u64,
            lease_until: lease_until.map(|t| t as u64),
            scheduled_at: scheduled_at.map(|t| t as u64),
        }))
    }

    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>, StoreError> {
        let conn = self.conn();
        let (before_t, before_id) = filter
            .before
            .clone()
            .map(|(t, id)| (t as i64, id))
            .unwrap_or((i64::MAX, String::new()));
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let mut stmt = conn.prepare_cached(
            "SELECT id, pipeline, state, created_at, updated_at, owner FROM tasks
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR state = ?2)
               AND (created_at < ?3 OR (created_at = ?3 AND id < ?4))
               AND (?6 IS NULL OR owner = ?6)
             ORDER BY created_at DESC, id DESC LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                filter.pipeline,
                filter.state.map(words::Word),
                before_t,
                before_id,
                limit,
                filter.owner
            ],
            |r| {
                Ok(TaskSummary {
                    id: r.get(0)?,
                    pipeline: r.get(1)?,
                    state: r.get::<_, words::Word<_>>(2)?.0,
                    created_at: r.get::<_, i64>(3)? as u64,
                    updated_at: r.get::<_, i64>(4)? as u64,
                    owner: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn node_runs(&self, task_id: &str) -> Result<Vec<NodeRunRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key, node_id, node_type, iteration, attempt, state, input, output, error,
                    decision, started_at, finished_at, cached
             FROM node_runs WHERE task_id = ?1 ORDER BY started_at IS NULL, started_at, finished_at, key, iteration, attempt",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok((
                NodeRunRow {
                    key: r.get(0)?,
                    node: r.get(1)?,
                    node_type: r.get(2)?,
                    iteration: r.get(3)?,
                    attempt: r.get(4)?,
                    state: r.get::<_, words::Word<_>>(5)?.0,
                    input: None,
                    output: None,
                    error: r.get(8)?,
                    decision: r.get(9)?,
                    started_at: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
                    finished_at: r.get::<_, Option<i64>>(11)?.map(|t| t as u64),
                    cached: r.get(12)?,
                },
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut run, input, output) = row?;
            run.input = task_data(&conn, task_id, input, "node input")?;
            run.output = task_data(&conn, task_id, output, "node output")?;
            out.push(run);
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), StoreError> {
        if let Some((path, identity)) = &self.file
            && file_identity(path)? != *identity
        {
            return Err(StoreError::Corrupt {
                what: "database file".into(),
                detail: format!(
                    "{} was replaced since it was opened: writes would be lost",
                    path.display()
                ),
            });
        }
        // A read of the header page and of the schema, through the connection writes use.
        let conn = self.conn();
        conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))?;
        conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1)",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(())
    }

    fn node_keys(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT key FROM node_runs WHERE task_id = ?1 ORDER BY key")?;
        let keys = stmt.query_map([task_id], |r| r.get(0))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }

    fn past_runs(&self, task_id: &str) -> Result<Vec<PastRun>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key, iteration, attempt, state, output, decision FROM node_runs WHERE task_id = ?1",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, iteration, attempt, state, output, decision) = row?;
            let state = NodeState::parse(&state).ok_or_else(|| StoreError::Corrupt {
                what: format!("state of node `{key}`"),
                detail: format!("unknown state `{state}`"),
            })?;
            out.push(PastRun {
                key,
                iteration,
                attempt,
                state,
                output: task_data(&conn, task_id, output, "node output")?,
                decision: decision.as_deref().and_then(Arm::parse),
            });
        }
        Ok(out)
    }

    fn delete_task(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        registry::delete_task(&mut self.conn(), task_id)
    }

    fn ended_before(&self, before: u64) -> Result<Vec<String>, StoreError> {
        registry::ended_before(&self.conn(), before)
    }

    fn task_stats(&self, owner: Option<&str>) -> Result<Vec<StatRow>, StoreError> {
        registry::task_stats(&self.conn(), owner)
    }
}

impl Logs for SqliteStore {
    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (task_id, key, attempt, stream, line, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for l in lines {
                stmt.execute(params![
                    l.task_id,
                    l.key,
                    l.attempt,
                    l.stream,
                    l.line,
                    l.at as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn logs(&self, task_id: &str, key: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT task_id, key, attempt, stream, line, at FROM logs
             WHERE task_id = ?1 AND (?2 IS NULL OR key = ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![task_id, key], |r| {
            Ok(LogLine {
                task_id: r.get(0)?,
                key: r.get(1)?,
                attempt: r.get(2)?,
                stream: r.get(3)?,
                line: r.get(4)?,
                at: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
