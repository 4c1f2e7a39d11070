//! SQLite's side of the group commit: one transaction for a batch of queued writes, each
//! under its own savepoint.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::StoreError;
use crate::group::{Failed, Json, Op, Outcome};

/// Why applying one write failed.
enum Failure {
    Sql(rusqlite::Error),
    Fenced,
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

fn describe(e: rusqlite::Error) -> Failed {
    let e = StoreError::from(e);
    Failed::Described(e.kind(), e.is_full(), e.to_string())
}

pub(super) fn write_all(conn: &mut Connection, ops: Vec<(u64, Op)>) -> Vec<(u64, Outcome)> {
    let tickets: Vec<u64> = ops.iter().map(|(t, _)| *t).collect();
    let fail_all = |e: rusqlite::Error| {
        let err = describe(e);
        tickets.iter().map(|t| (*t, Err(err.clone()))).collect()
    };
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(e),
    };
    let mut results = Vec::with_capacity(ops.len());
    for (ticket, op) in ops {
        let outcome = match tx.execute_batch("SAVEPOINT op") {
            Ok(()) => match apply(&tx, &op) {
                Ok(()) => tx.execute_batch("RELEASE op").map_err(describe),
                Err(Failure::Fenced) => {
                    let _ = tx.execute_batch("ROLLBACK TO op; RELEASE op");
                    Err(Failed::Fenced(op.task_id().to_string()))
                }
                Err(Failure::Sql(e)) => {
                    let err = describe(e);
                    // A full disk (or an I/O error) makes SQLite roll the whole transaction
                    // back: every write of the batch is lost, and fails with the cause.
                    if tx.is_autocommit() {
                        return tickets.iter().map(|t| (*t, Err(err.clone()))).collect();
                    }
                    let _ = tx.execute_batch("ROLLBACK TO op; RELEASE op");
                    Err(err)
                }
            },
            Err(e) => Err(describe(e)),
        };
        results.push((ticket, outcome));
    }
    if let Err(e) = tx.commit() {
        return fail_all(e);
    }
    results
}

/// A statement: the cached one, or — when the write carries a big value — a fresh one, so
/// that SQLite's copy of the value (bindings, the record built) goes with the statement
/// instead of staying in the cache until its next use.
enum Stmt<'a> {
    Cached(rusqlite::CachedStatement<'a>),
    Fresh(rusqlite::Statement<'a>),
}

impl<'a> Stmt<'a> {
    fn new(tx: &'a Transaction<'_>, sql: &str, big: bool) -> rusqlite::Result<Stmt<'a>> {
        Ok(if big {
            Stmt::Fresh(tx.prepare(sql)?)
        } else {
            Stmt::Cached(tx.prepare_cached(sql)?)
        })
    }
}

impl<'a> std::ops::Deref for Stmt<'a> {
    type Target = rusqlite::Statement<'a>;

    fn deref(&self) -> &Self::Target {
        match self {
            Stmt::Cached(s) => s,
            Stmt::Fresh(s) => s,
        }
    }
}

impl std::ops::DerefMut for Stmt<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Stmt::Cached(s) => s,
            Stmt::Fresh(s) => s,
        }
    }
}

/// What a column holds for a value of task `task_id`: its JSON, or for a big value `#<hash>`
/// after storing it once in `big_values` (`hashes` remembers the values of this batch).
fn column<'j>(
    tx: &Transaction<'_>,
    task_id: &str,
    value: &'j Json,
    hashes: &mut HashMap<(usize, usize), String>,
) -> rusqlite::Result<std::borrow::Cow<'j, str>> {
    let text = value.text();
    if !value.big() {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    let id = (text.as_ptr() as usize, text.len());
    if let Some(h) = hashes.get(&id) {
        return Ok(std::borrow::Cow::Owned(format!("#{h}")));
    }
    let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
    let stored = tx
        .prepare_cached("SELECT 1 FROM big_values WHERE task_id = ?1 AND hash = ?2")?
        .exists(params![task_id, hash])?;
    if !stored {
        // A fresh statement: SQLite's copies of the value go with it.
        tx.prepare("INSERT INTO big_values (task_id, hash, json, bytes) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![task_id, hash, text, text.len() as i64])?;
    }
    let column = format!("#{hash}");
    hashes.insert(id, hash);
    Ok(std::borrow::Cow::Owned(column))
}

fn apply(tx: &Transaction<'_>, op: &Op) -> Result<(), Failure> {
    let mut hashes = HashMap::new();
    match op {
        Op::CreateTask(t) => {
            let input = column(tx, &t.id, &t.input, &mut hashes)?;
            Stmt::new(tx,
                "INSERT INTO tasks (id, pipeline, definition, input, state, created_at, updated_at, owner, runner, base_dir,
                    fence, lease_until, scheduled_at, needs)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?11)",
                false,
            )?
            .execute(params![t.id, t.pipeline, t.definition, input, t.created_at, t.owner, t.runner, t.base_dir, t.lease_until, t.scheduled_at, t.needs])?;
        }
        Op::Revise(r) => {
            let n = Stmt::new(
                tx,
                "INSERT INTO task_revisions (task_id, revision, definition, input, replaced_at)
                 SELECT id, 1 + (SELECT COUNT(*) FROM task_revisions WHERE task_id = ?1),
                        definition, input, ?2
                 FROM tasks WHERE id = ?1",
                false,
            )?
            .execute(params![r.task_id, r.at])?;
            if n == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows.into());
            }
            let input = match &r.input {
                Some(j) => Some(column(tx, &r.task_id, j, &mut hashes)?),
                None => None,
            };
            Stmt::new(
                tx,
                "UPDATE tasks SET definition = ?2, input = COALESCE(?3, input) WHERE id = ?1",
                false,
            )?
            .execute(params![r.task_id, r.definition, input])?;
        }
        Op::Step(s) => {
            // Only the holder of the current claim writes (checked in this transaction).
            let fence: Option<i64> = tx
                .prepare_cached("SELECT fence FROM tasks WHERE id = ?1")?
                .query_row([&s.task_id], |r| r.get(0))
                .optional()?;
            if fence != Some(s.fence as i64) {
                return Err(Failure::Fenced);
            }
            if let Some(until) = s.lease_until {
                tx.prepare_cached(
                    "UPDATE tasks SET lease_until = ?2
                     WHERE id = ?1 AND state IN ('pending', 'running')
                       AND COALESCE(lease_until, 0) < (?3 + ?2) / 2",
                )?
                .execute(params![s.task_id, until, s.now])?;
            }
            let big = s.nodes.iter().any(|n| {
                n.input.as_ref().is_some_and(Json::big) || n.output.as_ref().is_some_and(Json::big)
            }) || s
                .tasks
                .iter()
                .any(|t| t.result.as_ref().is_some_and(Json::big))
                || s.cache.iter().any(|(_, _, o)| o.big());
            let mut upsert = Stmt::new(
                tx,
                "INSERT INTO node_runs (task_id, key, iteration, attempt, node_id, node_type, state,
                    input, output, error, decision, started_at, finished_at, cached, tally)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (task_id, key, iteration, attempt) DO UPDATE SET
                    state = excluded.state,
                    input = COALESCE(excluded.input, node_runs.input),
                    output = excluded.output,
                    error = excluded.error,
                    decision = excluded.decision,
                    started_at = COALESCE(node_runs.started_at, excluded.started_at),
                    finished_at = excluded.finished_at,
                    cached = excluded.cached,
                    tally = excluded.tally",
                big,
            )?;
            for n in &s.nodes {
                let input = match &n.input {
                    Some(j) => Some(column(tx, &s.task_id, j, &mut hashes)?),
                    None => None,
                };
                let output = match &n.output {
                    Some(j) => Some(column(tx, &s.task_id, j, &mut hashes)?),
                    None => None,
                };
                upsert.execute(params![
                    s.task_id,
                    n.key,
                    n.iteration,
                    n.attempt,
                    n.node_id,
                    n.node_type,
                    n.state,
                    input,
                    output,
                    n.error,
                    n.decision,
                    n.started_at,
                    n.finished_at,
                    n.cached,
                    n.tally,
                ])?;
            }
            let mut task_update = Stmt::new(
                tx,
                "UPDATE tasks SET state = ?2, result = ?3, error = ?4, updated_at = ?5,
                    lease_until = CASE WHEN ?2 IN ('finished', 'failed', 'cancelled') THEN NULL ELSE lease_until END
                 WHERE id = ?1",
                big,
            )?;
            for t in &s.tasks {
                let result = match &t.result {
                    Some(j) => Some(column(tx, &s.task_id, j, &mut hashes)?),
                    None => None,
                };
                task_update.execute(params![s.task_id, t.state, result, t.error, s.now])?;
            }
            let mut cache = Stmt::new(
                tx,
                "INSERT OR REPLACE INTO cache (key, node_id, output, created_at) VALUES (?1, ?2, ?3, ?4)",
                big,
            )?;
            for (key, node, output) in &s.cache {
                cache.execute(params![key, node, output.text(), s.now])?;
            }
        }
    }
    Ok(())
}

/// Inserts a new task within `tx` as the group commit does (its big input stored once).
pub(super) fn insert_task(
    tx: &Transaction<'_>,
    task: crate::group::TaskInsert,
) -> Result<(), StoreError> {
    match apply(tx, &Op::CreateTask(task)) {
        Ok(()) => Ok(()),
        Err(Failure::Sql(e)) => Err(e.into()),
        Err(Failure::Fenced) => Err(StoreError::Database(
            "a task creation cannot be fenced".into(),
        )),
    }
}
