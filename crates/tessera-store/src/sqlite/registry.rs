//! SQLite side of the server's state: stored pipelines, announced services, callback tokens,
//! task deletion and statistics.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::words::Word;
use super::{json_text, parse_json};
use crate::error::StoreError;
use crate::types::*;

pub(super) fn delete_task(conn: &mut Connection, task_id: &str) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction()?;
    // First, and only if the task has ended: a resume that reopened it meanwhile wins, and a
    // resume that comes after finds nothing to reopen.
    let n = tx.execute(
        "DELETE FROM tasks WHERE id = ?1 AND state IN ('finished', 'failed', 'cancelled')",
        [task_id],
    )?;
    if n == 0 {
        let state: Option<String> = tx
            .query_row("SELECT state FROM tasks WHERE id = ?1", [task_id], |r| {
                r.get(0)
            })
            .optional()?;
        return Err(match state {
            None => StoreError::NotFound {
                what: "task",
                id: task_id.to_string(),
            },
            Some(state) => {
                StoreError::Conflict(format!("task {task_id} is {state}; cancel it first"))
            }
        });
    }
    let owned: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT id FROM objects WHERE task_id = ?1")?;
        stmt.query_map([task_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    // An object another task still uses (linked by a cache hit) passes to that task.
    let mut objects = Vec::new();
    {
        let mut heir = tx.prepare_cached(
            "SELECT task_id FROM object_links WHERE object_id = ?1 AND task_id != ?2 LIMIT 1",
        )?;
        let mut hand_over = tx.prepare_cached("UPDATE objects SET task_id = ?2 WHERE id = ?1")?;
        let mut unlink =
            tx.prepare_cached("DELETE FROM object_links WHERE object_id = ?1 AND task_id = ?2")?;
        for id in owned {
            let next: Option<String> = heir
                .query_row(params![id, task_id], |r| r.get(0))
                .optional()?;
            match next {
                Some(next) => {
                    hand_over.execute(params![id, next])?;
                    unlink.execute(params![id, next])?;
                }
                None => objects.push(id),
            }
        }
    }
    tx.execute("DELETE FROM object_links WHERE task_id = ?1", [task_id])?;
    {
        let mut forget = tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?;
        for id in &objects {
            forget.execute([id])?;
        }
    }
    for table in [
        "node_runs",
        "task_revisions",
        "logs",
        "callbacks",
        "big_values",
        "batch_jobs",
        "batch_chunks",
        "batch_lines",
        "loop_chunks",
        "loop_failures",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE task_id = ?1"),
            [task_id],
        )?;
    }
    tx.commit()?;
    Ok(objects)
}

pub(super) fn ended_before(conn: &Connection, before: u64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM tasks WHERE state IN ('finished', 'failed', 'cancelled') AND updated_at < ?1",
    )?;
    Ok(stmt
        .query_map([before as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

pub(super) fn claimable_tasks(
    conn: &Connection,
    now: u64,
    limit: usize,
    serves: &Serves,
) -> Result<Vec<String>, StoreError> {
    let (patterns, served) = serves.as_filter();
    let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialise");
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM tasks WHERE state IN ('pending', 'running')
           AND (lease_until IS NULL OR lease_until < ?1)
           AND (?3 = 0 OR needs IS NULL OR NOT EXISTS (
             SELECT 1 FROM json_each(tasks.needs) AS w
             WHERE EXISTS (SELECT 1 FROM json_each(?4) AS p WHERE w.value LIKE p.value)
               AND w.value NOT IN (SELECT value FROM json_each(?5))))
         ORDER BY created_at LIMIT ?2",
    )?;
    Ok(stmt
        .query_map(
            params![
                now.min(i64::MAX as u64) as i64,
                limit.min(i64::MAX as usize) as i64,
                !serves.all(),
                json(&patterns),
                json(&served),
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?)
}

pub(super) fn task_stats(
    conn: &Connection,
    owner: Option<&str>,
) -> Result<Vec<StatRow>, StoreError> {
    let mut stmt = match owner {
        None => conn.prepare_cached(
            "SELECT pipeline, state, COUNT(*) FROM tasks WHERE ?1 IS NULL
             GROUP BY pipeline, state ORDER BY pipeline, state",
        )?,
        Some(_) => conn.prepare_cached(
            "SELECT pipeline, state, COUNT(*) FROM tasks WHERE owner = ?1
             GROUP BY pipeline, state ORDER BY pipeline, state",
        )?,
    };
    Ok(stmt
        .query_map([owner], |r| {
            Ok(StatRow {
                pipeline: r.get(0)?,
                state: r.get::<_, Word<_>>(1)?.0,
                count: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?)
}

pub(super) fn put_pipeline(conn: &Connection, p: &PipelineRow) -> Result<bool, StoreError> {
    let existed: bool = conn
        .query_row("SELECT 1 FROM pipelines WHERE name = ?1", [&p.name], |_| {
            Ok(true)
        })
        .optional()?
        .unwrap_or(false);
    conn.execute(
        "INSERT INTO pipelines (name, definition, source, owner, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET definition = excluded.definition,
            source = excluded.source, owner = excluded.owner, updated_at = excluded.updated_at,
            version = excluded.version",
        params![
            p.name,
            json_text(&p.definition),
            p.source,
            p.owner,
            p.created_at as i64,
            p.updated_at as i64,
            uuid::Uuid::new_v4().simple().to_string()
        ],
    )?;
    Ok(!existed)
}

fn pipeline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(PipelineRow, String)> {
    Ok((
        PipelineRow {
            name: r.get(0)?,
            definition: Value::Null,
            source: r.get(2)?,
            owner: r.get(3)?,
            created_at: r.get::<_, i64>(4)? as u64,
            updated_at: r.get::<_, i64>(5)? as u64,
            version: r.get(6)?,
        },
        r.get(1)?,
    ))
}

fn with_definition((mut row, text): (PipelineRow, String)) -> Result<PipelineRow, StoreError> {
    row.definition = parse_json(Some(text), "pipeline definition")?.unwrap_or(Value::Null);
    Ok(row)
}

const PIPELINE_COLUMNS: &str = "name, definition, source, owner, created_at, updated_at, version";

pub(super) fn pipeline_version(
    conn: &Connection,
    name: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT version FROM pipelines WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

pub(super) fn pipeline_versions(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name, version FROM pipelines ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn pipeline(conn: &Connection, name: &str) -> Result<Option<PipelineRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE name = ?1"
    ))?
    .query_row([name], pipeline_row)
    .optional()?
    .map(with_definition)
    .transpose()
}

pub(super) fn list_pipelines(conn: &Connection) -> Result<Vec<PipelineRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PIPELINE_COLUMNS} FROM pipelines ORDER BY name"
    ))?;
    let rows = stmt.query_map([], pipeline_row)?;
    rows.map(|r| with_definition(r?)).collect()
}

pub(super) fn delete_pipeline(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM pipelines WHERE name = ?1", [name])? > 0)
}

pub(super) fn announce_service(conn: &Connection, s: &ServiceRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO services (name, url, endpoints, last_seen) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET url = excluded.url, endpoints = excluded.endpoints,
            last_seen = excluded.last_seen",
        params![s.name, s.url, json_text(&s.endpoints), s.last_seen as i64],
    )?;
    Ok(())
}

pub(super) fn list_services(conn: &Connection) -> Result<Vec<ServiceRow>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, url, endpoints, last_seen FROM services ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, url, endpoints, last_seen) = row?;
        out.push(ServiceRow {
            endpoints: parse_json(Some(endpoints), "service endpoints")?.unwrap_or(Value::Null),
            name,
            url,
            last_seen: last_seen as u64,
        });
    }
    Ok(out)
}

pub(super) fn remove_service(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM services WHERE name = ?1", [name])?;
    tx.execute(
        "DELETE FROM pipelines WHERE source = ?1",
        [format!("service:{name}")],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn create_callback(
    conn: &mut Connection,
    c: &CallbackRow,
    fence: u64,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let current: Option<i64> = tx
        .query_row("SELECT fence FROM tasks WHERE id = ?1", [&c.task_id], |r| {
            r.get(0)
        })
        .optional()?;
    if current != Some(fence as i64) {
        return Err(StoreError::Fenced(c.task_id.clone()));
    }
    tx.execute(
        "UPDATE callbacks SET state = 'superseded'
         WHERE task_id = ?1 AND key = ?2 AND state IN ('waiting', 'dispatching')",
        params![c.task_id, c.key],
    )?;
    tx.execute(
        "INSERT INTO callbacks
            (token, task_id, key, iteration, attempt, state, result, failed, callback_base)
         VALUES (?1, ?2, ?3, ?4, ?5, 'dispatching', NULL, 0, ?6)",
        params![
            c.token,
            c.task_id,
            c.key,
            c.iteration,
            c.attempt,
            c.callback_base
        ],
    )?;
    tx.commit()?;
    Ok(())
}

const CALLBACK_COLUMNS: &str =
    "token, task_id, key, iteration, attempt, state, result, failed, callback_base";

fn callback_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(CallbackRow, Option<String>)> {
    let state: String = r.get(5)?;
    let state = CallbackState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("unknown callback state `{state}`").into(),
        )
    })?;
    Ok((
        CallbackRow {
            token: r.get(0)?,
            task_id: r.get(1)?,
            key: r.get(2)?,
            iteration: r.get(3)?,
            attempt: r.get(4)?,
            state,
            result: None,
            failed: r.get(7)?,
            callback_base: r.get(8)?,
        },
        r.get(6)?,
    ))
}

fn with_result((mut row, text): (CallbackRow, Option<String>)) -> Result<CallbackRow, StoreError> {
    row.result = parse_json(text, "callback result")?;
    Ok(row)
}

pub(super) fn callback(conn: &Connection, token: &str) -> Result<Option<CallbackRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE token = ?1"),
        [token],
        callback_row,
    )
    .optional()?
    .map(with_result)
    .transpose()
}

pub(super) fn callback_for_attempt(
    conn: &Connection,
    task_id: &str,
    key: &str,
    iteration: u32,
    attempt: u32,
) -> Result<Option<CallbackRow>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {CALLBACK_COLUMNS} FROM callbacks
             WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND attempt = ?4"
        ),
        params![task_id, key, iteration, attempt],
        callback_row,
    )
    .optional()?
    .map(with_result)
    .transpose()
}

pub(super) fn complete_callback(
    conn: &Connection,
    token: &str,
    result: &Value,
    failed: bool,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE callbacks SET state = 'received', result = ?2, failed = ?3,
            received_seq = (SELECT COALESCE(MAX(received_seq), 0) + 1 FROM callbacks
                            WHERE received_seq IS NOT NULL)
         WHERE token = ?1 AND state IN ('waiting', 'dispatching')",
        params![token, json_text(result), failed],
    )?;
    Ok(n == 1)
}

/// Callbacks received after `after` (their arrival number) for tasks `runner` holds, with
/// their numbers, oldest first.
pub(super) fn received_callbacks(
    conn: &Connection,
    runner: &str,
    after: u64,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.token, c.received_seq FROM callbacks c JOIN tasks t ON t.id = c.task_id
         WHERE c.received_seq > ?2 AND t.runner = ?1 ORDER BY c.received_seq",
    )?;
    Ok(stmt
        .query_map(params![runner, after as i64], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?)
}

/// The highest arrival number of a callback so far (0 when none arrived).
pub(super) fn last_callback_seq(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(received_seq), 0) FROM callbacks WHERE received_seq IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

pub(super) fn mark_dispatched(conn: &Connection, token: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE callbacks SET state = 'waiting' WHERE token = ?1 AND state = 'dispatching'",
        [token],
    )?;
    Ok(())
}

pub(super) fn redispatch_callback(
    conn: &Connection,
    token: &str,
    callback_base: &str,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE callbacks SET state = 'dispatching', callback_base = ?2
         WHERE token = ?1 AND state IN ('waiting', 'dispatching')",
        params![token, callback_base],
    )?;
    Ok(n == 1)
}

pub(super) fn supersede_callback(
    conn: &Connection,
    token: &str,
    fence: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE callbacks SET state = 'superseded'
         WHERE token = ?1 AND state IN ('waiting', 'dispatching')
           AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = callbacks.task_id AND t.fence = ?2)",
        params![token, fence as i64],
    )?;
    Ok(())
}
