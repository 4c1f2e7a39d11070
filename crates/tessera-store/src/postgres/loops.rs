//! PostgreSQL side of chunked loops: each chunk's values and failed items, committed together.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::int;
use crate::error::StoreError;
use crate::types::*;

/// Chunks of loops and their failed items (schema step 5).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS loop_chunks (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    first BIGINT NOT NULL,
    count BIGINT NOT NULL,
    total BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    vals TEXT NOT NULL,
    failed BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (task_id, key, iteration, idx)
);
CREATE TABLE IF NOT EXISTS loop_failures (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    item BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    node TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (task_id, key, iteration, item)
);";

pub(super) async fn put_chunks(
    pool: &PgPool,
    commits: &[LoopChunkCommit<'_>],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for c in commits {
        let k = c.loop_key;
        // Locked until commit: a claim of the task waits for this checkpoint, and a
        // checkpoint of a dispossessed writer is refused.
        let fence: Option<i64> =
            sqlx::query_scalar("SELECT fence FROM tasks WHERE id = $1 FOR SHARE")
                .bind(&k.task_id)
                .fetch_optional(&mut *tx)
                .await?;
        if fence != Some(int(c.fence)) {
            return Err(StoreError::Fenced(k.task_id.clone()));
        }
        let chunk = c.chunk;
        for stale in [
            "DELETE FROM loop_chunks WHERE task_id = $1 AND key = $2 AND iteration = $3
                AND fingerprint <> $4",
            "DELETE FROM loop_failures WHERE task_id = $1 AND key = $2 AND iteration = $3
                AND fingerprint <> $4",
        ] {
            sqlx::query(stale)
                .bind(&k.task_id)
                .bind(&k.key)
                .bind(i64::from(k.iteration))
                .bind(&chunk.fingerprint)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO loop_chunks
                (task_id, key, iteration, idx, first, count, fingerprint, vals, failed, committed_at,
                 total)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (task_id, key, iteration, idx) DO UPDATE SET first = $5, count = $6,
                fingerprint = $7, vals = $8, failed = $9, committed_at = $10, total = $11",
        )
        .bind(&k.task_id)
        .bind(&k.key)
        .bind(i64::from(k.iteration))
        .bind(i64::from(chunk.index))
        .bind(int(chunk.first))
        .bind(int(chunk.count))
        .bind(&chunk.fingerprint)
        .bind(&chunk.values)
        .bind(int(chunk.failed))
        .bind(int(chunk.committed_at))
        .bind(int(chunk.total))
        .execute(&mut *tx)
        .await?;
        if !c.failures.is_empty() {
            let items: Vec<i64> = c.failures.iter().map(|f| int(f.item)).collect();
            let nodes: Vec<&str> = c.failures.iter().map(|f| f.node.as_str()).collect();
            let errors: Vec<&str> = c.failures.iter().map(|f| f.error.as_str()).collect();
            let attempts: Vec<i64> = c.failures.iter().map(|f| i64::from(f.attempts)).collect();
            sqlx::query(
                "INSERT INTO loop_failures
                    (task_id, key, iteration, item, fingerprint, node, error, attempts)
                 SELECT $1, $2, $3, f.item, $4, f.node, f.error, f.attempts
                 FROM unnest($5::bigint[], $6::text[], $7::text[], $8::bigint[])
                    AS f(item, node, error, attempts)
                 ON CONFLICT (task_id, key, iteration, item) DO UPDATE SET
                    fingerprint = EXCLUDED.fingerprint, node = EXCLUDED.node,
                    error = EXCLUDED.error, attempts = EXCLUDED.attempts",
            )
            .bind(&k.task_id)
            .bind(&k.key)
            .bind(i64::from(k.iteration))
            .bind(&chunk.fingerprint)
            .bind(&items)
            .bind(&nodes)
            .bind(&errors)
            .bind(&attempts)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn chunk_row(r: &PgRow) -> Result<LoopChunkRow, StoreError> {
    Ok(LoopChunkRow {
        index: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(u32::MAX),
        first: r.try_get::<i64, _>(1)? as u64,
        count: r.try_get::<i64, _>(2)? as u64,
        fingerprint: r.try_get(3)?,
        values: r.try_get(4)?,
        failed: r.try_get::<i64, _>(5)? as u64,
        committed_at: r.try_get::<i64, _>(6)? as u64,
        total: r.try_get::<i64, _>(7)? as u64,
    })
}

pub(super) async fn chunks(
    pool: &PgPool,
    k: &LoopKey,
    fingerprint: &str,
) -> Result<Vec<LoopChunkRow>, StoreError> {
    sqlx::query(
        "SELECT idx, first, count, fingerprint, vals, failed, committed_at, total FROM loop_chunks
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND fingerprint = $4 ORDER BY idx",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(fingerprint)
    .fetch_all(pool)
    .await?
    .iter()
    .map(chunk_row)
    .collect()
}

pub(super) async fn chunks_over(
    pool: &PgPool,
    k: &LoopKey,
    first: u64,
    count: u64,
) -> Result<Vec<LoopChunkRow>, StoreError> {
    sqlx::query(
        "SELECT idx, first, count, fingerprint, vals, failed, committed_at, total FROM loop_chunks
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND first < $5
            AND first + count > $4
         ORDER BY idx",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(int(first))
    .bind(int(first.saturating_add(count)))
    .fetch_all(pool)
    .await?
    .iter()
    .map(chunk_row)
    .collect()
}

pub(super) async fn failures(
    pool: &PgPool,
    k: &LoopKey,
    offset: u64,
    limit: u64,
) -> Result<Vec<LoopFailureRow>, StoreError> {
    sqlx::query(
        "SELECT item, node, error, attempts FROM loop_failures
         WHERE task_id = $1 AND key = $2 AND iteration = $3 ORDER BY item LIMIT $4 OFFSET $5",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(int(limit))
    .bind(int(offset))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(LoopFailureRow {
            item: r.try_get::<i64, _>(0)? as u64,
            node: r.try_get(1)?,
            error: r.try_get(2)?,
            attempts: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
        })
    })
    .collect()
}

pub(super) async fn summaries(
    pool: &PgPool,
    task_id: &str,
) -> Result<Vec<LoopSummary>, StoreError> {
    sqlx::query(
        "SELECT key, iteration, COUNT(*), SUM(count)::bigint, SUM(failed)::bigint,
            MAX(committed_at), MAX(total)
         FROM loop_chunks WHERE task_id = $1 GROUP BY key, iteration ORDER BY key, iteration",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(LoopSummary {
            key: r.try_get(0)?,
            iteration: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(u32::MAX),
            chunks: r.try_get::<i64, _>(2)? as u64,
            items: r.try_get::<i64, _>(3)? as u64,
            failed: r.try_get::<i64, _>(4)? as u64,
            last_commit: r.try_get::<i64, _>(5)? as u64,
            total: r.try_get::<i64, _>(6)? as u64,
        })
    })
    .collect()
}
