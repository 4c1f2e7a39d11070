//! PostgreSQL side of the server's state: stored pipelines, announced services, callback
//! tokens, task deletion.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::{int, json_text, parse_json};
use crate::error::StoreError;
use crate::types::*;

/// The advisory lock taken by every transaction that hands out a callback arrival number
/// (`received_seq`): held until commit, so numbers become visible in the order they were
/// handed out, and a reader that saw number N never sees a smaller one appear later.
/// Any number unused by other locks ("tessera callbacks" in spirit).
const CALLBACK_SEQ_LOCK: i64 = 0x7465_7373_6361_6c6c;

pub(super) async fn delete_task(pool: &PgPool, task_id: &str) -> Result<Vec<String>, StoreError> {
    let mut tx = pool.begin().await?;
    // First, and only if the task has ended: a resume that reopened it meanwhile wins, and a
    // resume that comes after finds nothing to reopen.
    let n = sqlx::query(
        "DELETE FROM tasks WHERE id = $1 AND state IN ('finished', 'failed', 'cancelled')",
    )
    .bind(task_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
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
    let owned: Vec<String> = sqlx::query_scalar("SELECT id FROM objects WHERE task_id = $1")
        .bind(task_id)
        .fetch_all(&mut *tx)
        .await?;
    // An object another task still uses (linked by a cache hit) passes to that task: one
    // heir per object (the first linked task by id), its link then dropped.
    let handed: Vec<(String, String)> = if owned.is_empty() {
        Vec::new()
    } else {
        let rows = sqlx::query(
            "WITH heirs AS (
                SELECT DISTINCT ON (object_id) object_id, task_id FROM object_links
                WHERE object_id = ANY($1::text[]) AND task_id != $2
                ORDER BY object_id, task_id
             )
             UPDATE objects o SET task_id = h.task_id FROM heirs h
             WHERE o.id = h.object_id
             RETURNING o.id, o.task_id",
        )
        .bind(&owned)
        .bind(task_id)
        .fetch_all(&mut *tx)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, StoreError>>()?
    };
    if !handed.is_empty() {
        let (ids, heirs): (Vec<&str>, Vec<&str>) = handed
            .iter()
            .map(|(id, heir)| (id.as_str(), heir.as_str()))
            .unzip();
        sqlx::query(
            "DELETE FROM object_links l USING UNNEST($1::text[], $2::text[]) AS h(object_id, task_id)
             WHERE l.object_id = h.object_id AND l.task_id = h.task_id",
        )
        .bind(&ids)
        .bind(&heirs)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM object_links WHERE task_id = $1")
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
    let handed: std::collections::HashSet<&str> =
        handed.iter().map(|(id, _)| id.as_str()).collect();
    let objects: Vec<String> = owned
        .iter()
        .filter(|id| !handed.contains(id.as_str()))
        .cloned()
        .collect();
    if !objects.is_empty() {
        sqlx::query("DELETE FROM objects WHERE id = ANY($1::text[])")
            .bind(&objects)
            .execute(&mut *tx)
            .await?;
    }
    for delete in [
        "DELETE FROM node_runs WHERE task_id = $1",
        "DELETE FROM task_revisions WHERE task_id = $1",
        "DELETE FROM logs WHERE task_id = $1",
        "DELETE FROM callbacks WHERE task_id = $1",
        "DELETE FROM big_values WHERE task_id = $1",
        "DELETE FROM batch_jobs WHERE task_id = $1",
        "DELETE FROM batch_chunks WHERE task_id = $1",
        "DELETE FROM batch_lines WHERE task_id = $1",
        "DELETE FROM loop_chunks WHERE task_id = $1",
        "DELETE FROM loop_failures WHERE task_id = $1",
    ] {
        sqlx::query(delete).bind(task_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(objects)
}

pub(super) async fn put_pipeline(pool: &PgPool, p: &PipelineRow) -> Result<bool, StoreError> {
    let definition = json_text(&p.definition);
    let version = uuid::Uuid::new_v4().simple().to_string();
    // Created or replaced, told apart without a race: the insert either makes the row (true)
    // or finds one, which is then updated (false); a delete in between means insert again.
    loop {
        let created = sqlx::query(
            "INSERT INTO pipelines (name, definition, source, owner, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO NOTHING
             RETURNING 1",
        )
        .bind(&p.name)
        .bind(&definition)
        .bind(&p.source)
        .bind(&p.owner)
        .bind(int(p.created_at))
        .bind(int(p.updated_at))
        .bind(&version)
        .fetch_optional(pool)
        .await?
        .is_some();
        if created {
            return Ok(true);
        }
        let n = sqlx::query(
            "UPDATE pipelines SET definition = $2, source = $3, owner = $4, updated_at = $5,
                version = $6
             WHERE name = $1",
        )
        .bind(&p.name)
        .bind(&definition)
        .bind(&p.source)
        .bind(&p.owner)
        .bind(int(p.updated_at))
        .bind(&version)
        .execute(pool)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(false);
        }
    }
}

fn pipeline_row(r: &PgRow) -> Result<PipelineRow, StoreError> {
    Ok(PipelineRow {
        name: r.try_get(0)?,
        definition: parse_json(Some(r.try_get(1)?), "pipeline definition")?.unwrap_or(Value::Null),
        source: r.try_get(2)?,
        owner: r.try_get(3)?,
        created_at: r.try_get::<i64, _>(4)? as u64,
        updated_at: r.try_get::<i64, _>(5)? as u64,
        version: r.try_get(6)?,
    })
}

pub(super) async fn pipeline(pool: &PgPool, name: &str) -> Result<Option<PipelineRow>, StoreError> {
    sqlx::query(
        "SELECT name, definition, source, owner, created_at, updated_at, version FROM pipelines WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(pipeline_row)
    .transpose()
}

pub(super) async fn pipeline_version(
    pool: &PgPool,
    name: &str,
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM pipelines WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn pipeline_versions(pool: &PgPool) -> Result<Vec<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT name, version FROM pipelines ORDER BY name")
            .fetch_all(pool)
            .await?,
    )
}

pub(super) async fn list_pipelines(pool: &PgPool) -> Result<Vec<PipelineRow>, StoreError> {
    sqlx::query(
        "SELECT name, definition, source, owner, created_at, updated_at, version FROM pipelines ORDER BY name",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(pipeline_row)
    .collect()
}

pub(super) async fn delete_pipeline(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let n = sqlx::query("DELETE FROM pipelines WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n > 0)
}

pub(super) async fn announce_service(pool: &PgPool, s: &ServiceRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO services (name, url, endpoints, last_seen) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET url = excluded.url, endpoints = excluded.endpoints,
            last_seen = excluded.last_seen",
    )
    .bind(&s.name)
    .bind(&s.url)
    .bind(json_text(&s.endpoints))
    .bind(int(s.last_seen))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn list_services(pool: &PgPool) -> Result<Vec<ServiceRow>, StoreError> {
    sqlx::query("SELECT name, url, endpoints, last_seen FROM services ORDER BY name")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ServiceRow {
                name: r.try_get(0)?,
                url: r.try_get(1)?,
                endpoints: parse_json(Some(r.try_get(2)?), "service endpoints")?
                    .unwrap_or(Value::Null),
                last_seen: r.try_get::<i64, _>(3)? as u64,
            })
        })
        .collect()
}

pub(super) async fn remove_service(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM services WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM pipelines WHERE source = $1")
        .bind(format!("service:{name}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn create_callback(
    pool: &PgPool,
    c: &CallbackRow,
    fence: u64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // The task row stays share-locked until commit: a claim (which moves the fence) waits,
    // and its driver then finds this token.
    let current: Option<i64> =
        sqlx::query_scalar("SELECT fence FROM tasks WHERE id = $1 FOR SHARE")
            .bind(&c.task_id)
            .fetch_optional(&mut *tx)
            .await?;
    if current != Some(super::int(fence)) {
        return Err(StoreError::Fenced(c.task_id.clone()));
    }
    sqlx::query(
        "UPDATE callbacks SET state = 'superseded'
         WHERE task_id = $1 AND key = $2 AND state IN ('waiting', 'dispatching')",
    )
    .bind(&c.task_id)
    .bind(&c.key)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO callbacks
            (token, task_id, key, iteration, attempt, state, result, failed, callback_base)
         VALUES ($1, $2, $3, $4, $5, 'dispatching', NULL, FALSE, $6)",
    )
    .bind(&c.token)
    .bind(&c.task_id)
    .bind(&c.key)
    .bind(i64::from(c.iteration))
    .bind(i64::from(c.attempt))
    .bind(&c.callback_base)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

fn callback_row(r: &PgRow) -> Result<CallbackRow, StoreError> {
    let state: String = r.try_get(5)?;
    let state = CallbackState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        what: "callback state".to_string(),
        detail: format!("unknown callback state `{state}`"),
    })?;
    Ok(CallbackRow {
        token: r.try_get(0)?,
        task_id: r.try_get(1)?,
        key: r.try_get(2)?,
        iteration: r.try_get::<i64, _>(3)? as u32,
        attempt: r.try_get::<i64, _>(4)? as u32,
        state,
        result: parse_json(r.try_get(6)?, "callback result")?,
        failed: r.try_get(7)?,
        callback_base: r.try_get(8)?,
    })
}

pub(super) async fn callback(
    pool: &PgPool,
    token: &str,
) -> Result<Option<CallbackRow>, StoreError> {
    sqlx::query(
        "SELECT token, task_id, key, iteration, attempt, state, result, failed, callback_base FROM callbacks WHERE token = $1",
    )
    .bind(token)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(callback_row)
    .transpose()
}

pub(super) async fn callback_for_attempt(
    pool: &PgPool,
    task_id: &str,
    key: &str,
    iteration: u32,
    attempt: u32,
) -> Result<Option<CallbackRow>, StoreError> {
    // `LIMIT 1`: SQLite's query_row takes the first row too, should there be several.
    sqlx::query(
        "SELECT token, task_id, key, iteration, attempt, state, result, failed, callback_base FROM callbacks
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND attempt = $4
         LIMIT 1",
    )
    .bind(task_id)
    .bind(key)
    .bind(i64::from(iteration))
    .bind(i64::from(attempt))
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(callback_row)
    .transpose()
}

pub(super) async fn complete_callback(
    pool: &PgPool,
    token: &str,
    result: &Value,
    failed: bool,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    // Arrival numbers in commit order: whoever numbers a callback holds the lock until its
    // commit, and the next one's MAX (read after it got the lock) sees that number.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CALLBACK_SEQ_LOCK)
        .execute(&mut *tx)
        .await?;
    let n = sqlx::query(
        "UPDATE callbacks SET state = 'received', result = $2, failed = $3,
            received_seq = (SELECT COALESCE(MAX(received_seq), 0) + 1 FROM callbacks
                            WHERE received_seq IS NOT NULL)
         WHERE token = $1 AND state IN ('waiting', 'dispatching')",
    )
    .bind(token)
    .bind(json_text(result))
    .bind(failed)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        // The process holding the task learns of it at once (a hint; it polls anyway).
        super::notify(&mut tx, crate::Change::ForHolders).await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// Callbacks received after `after` (their arrival number) for tasks `runner` holds, with
/// their numbers, oldest first.
pub(super) async fn received_callbacks(
    pool: &PgPool,
    runner: &str,
    after: u64,
) -> Result<Vec<(String, u64)>, StoreError> {
    sqlx::query(
        "SELECT c.token, c.received_seq FROM callbacks c JOIN tasks t ON t.id = c.task_id
         WHERE c.received_seq > $2 AND t.runner = $1 ORDER BY c.received_seq",
    )
    .bind(runner)
    .bind(int(after))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64)))
    .collect()
}

/// The highest arrival number of a callback so far (0 when none arrived).
pub(super) async fn last_callback_seq(pool: &PgPool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(received_seq), 0) FROM callbacks WHERE received_seq IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

pub(super) async fn mark_dispatched(pool: &PgPool, token: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE callbacks SET state = 'waiting' WHERE token = $1 AND state = 'dispatching'",
    )
    .bind(token)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn redispatch_callback(
    pool: &PgPool,
    token: &str,
    callback_base: &str,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE callbacks SET state = 'dispatching', callback_base = $2
         WHERE token = $1 AND state IN ('waiting', 'dispatching')",
    )
    .bind(token)
    .bind(callback_base)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub(super) async fn supersede_callback(
    pool: &PgPool,
    token: &str,
    fence: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE callbacks c SET state = 'superseded'
         WHERE c.token = $1 AND c.state IN ('waiting', 'dispatching')
           AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = c.task_id AND t.fence = $2)",
    )
    .bind(token)
    .bind(super::int(fence))
    .execute(pool)
    .await?;
    Ok(())
}
