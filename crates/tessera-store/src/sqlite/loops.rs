//! SQLite side of chunked loops: each chunk's values and failed items, committed together.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::int;
use crate::types::*;

/// Chunks of loops and their failed items (schema step 14).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS loop_chunks (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    first INTEGER NOT NULL,
    count INTEGER NOT NULL,
    total INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    vals TEXT NOT NULL,
    failed INTEGER NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, key, iteration, idx)
);
CREATE TABLE IF NOT EXISTS loop_failures (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    item INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    node TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (task_id, key, iteration, item)
);";

pub(super) fn put_chunks(
    conn: &mut Connection,
    commits: &[LoopChunkCommit<'_>],
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for c in commits {
        let k = c.loop_key;
        let fence: Option<i64> = tx
            .prepare_cached("SELECT fence FROM tasks WHERE id = ?1")?
            .query_row([&k.task_id], |r| r.get(0))
            .optional()?;
        if fence != Some(int(c.fence)) {
            return Err(StoreError::Fenced(k.task_id.clone()));
        }
        let chunk = c.chunk;
        for stale in [
            "DELETE FROM loop_chunks WHERE task_id = ?1 AND key = ?2 AND iteration = ?3
                AND fingerprint <> ?4",
            "DELETE FROM loop_failures WHERE task_id = ?1 AND key = ?2 AND iteration = ?3
                AND fingerprint <> ?4",
        ] {
            tx.prepare_cached(stale)?.execute(params![
                k.task_id,
                k.key,
                k.iteration,
                chunk.fingerprint
            ])?;
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO loop_chunks
                (task_id, key, iteration, idx, first, count, fingerprint, vals, failed, committed_at,
                 total)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            k.task_id,
            k.key,
            k.iteration,
            chunk.index,
            int(chunk.first),
            int(chunk.count),
            chunk.fingerprint,
            chunk.values,
            int(chunk.failed),
            int(chunk.committed_at),
            int(chunk.total)
        ])?;
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO loop_failures
                (task_id, key, iteration, item, fingerprint, node, error, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for f in c.failures {
            insert.execute(params![
                k.task_id,
                k.key,
                k.iteration,
                int(f.item),
                chunk.fingerprint,
                f.node,
                f.error,
                f.attempts
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn chunk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoopChunkRow> {
    Ok(LoopChunkRow {
        index: r.get(0)?,
        first: r.get::<_, i64>(1)? as u64,
        count: r.get::<_, i64>(2)? as u64,
        fingerprint: r.get(3)?,
        values: r.get(4)?,
        failed: r.get::<_, i64>(5)? as u64,
        committed_at: r.get::<_, i64>(6)? as u64,
        total: r.get::<_, i64>(7)? as u64,
    })
}

const CHUNK_COLUMNS: &str = "idx, first, count, fingerprint, vals, failed, committed_at, total";

pub(super) fn chunks(
    conn: &Connection,
    k: &LoopKey,
    fingerprint: &str,
) -> Result<Vec<LoopChunkRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM loop_chunks
         WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND fingerprint = ?4 ORDER BY idx"
    ))?;
    let rows = stmt
        .query_map(
            params![k.task_id, k.key, k.iteration, fingerprint],
            chunk_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn chunks_over(
    conn: &Connection,
    k: &LoopKey,
    first: u64,
    count: u64,
) -> Result<Vec<LoopChunkRow>, StoreError> {
    let end = first.saturating_add(count);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM loop_chunks
         WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND first < ?5 AND first + count > ?4
         ORDER BY idx"
    ))?;
    let rows = stmt
        .query_map(
            params![k.task_id, k.key, k.iteration, int(first), int(end)],
            chunk_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn failures(
    conn: &Connection,
    k: &LoopKey,
    offset: u64,
    limit: u64,
) -> Result<Vec<LoopFailureRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT item, node, error, attempts FROM loop_failures
         WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 ORDER BY item LIMIT ?4 OFFSET ?5",
    )?;
    let rows = stmt
        .query_map(
            params![k.task_id, k.key, k.iteration, int(limit), int(offset)],
            |r| {
                Ok(LoopFailureRow {
                    item: r.get::<_, i64>(0)? as u64,
                    node: r.get(1)?,
                    error: r.get(2)?,
                    attempts: r.get(3)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn summaries(conn: &Connection, task_id: &str) -> Result<Vec<LoopSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, iteration, COUNT(*), SUM(count), SUM(failed), MAX(committed_at), MAX(total)
         FROM loop_chunks WHERE task_id = ?1 GROUP BY key, iteration ORDER BY key, iteration",
    )?;
    let rows = stmt
        .query_map([task_id], |r| {
            Ok(LoopSummary {
                key: r.get(0)?,
                iteration: r.get(1)?,
                chunks: r.get::<_, i64>(2)? as u64,
                items: r.get::<_, i64>(3)? as u64,
                failed: r.get::<_, i64>(4)? as u64,
                last_commit: r.get::<_, i64>(5)? as u64,
                total: r.get::<_, i64>(6)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
