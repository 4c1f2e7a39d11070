//! SQLite side of batch jobs: job → chunks → bad lines, and each chunk's checkpoint written
//! in one transaction with its skipped lines.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::words::Word;
use super::{json_text, parse_json};
use crate::error::StoreError;
use crate::types::*;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS batch_jobs (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    state TEXT NOT NULL,
    starts INTEGER NOT NULL,
    source TEXT NOT NULL,
    plan TEXT NOT NULL,
    output TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, key, iteration)
);
CREATE TABLE IF NOT EXISTS batch_chunks (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    start_byte INTEGER NOT NULL,
    end_byte INTEGER NOT NULL,
    first_line INTEGER NOT NULL,
    records INTEGER NOT NULL,
    state TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0,
    written INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    filtered INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    input_hash TEXT,
    line_hashes BLOB,
    output_bytes INTEGER,
    output_header TEXT,
    error TEXT,
    committed_at INTEGER,
    PRIMARY KEY (task_id, key, iteration, idx)
);
CREATE TABLE IF NOT EXISTS batch_lines (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    line INTEGER NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    raw TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (task_id, key, iteration, line)
);
"#;

pub(super) fn create_job(
    conn: &mut Connection,
    job: &BatchJobRow,
    chunks: &[BatchChunkRow],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let k = &job.id;
    // A job planned again (its plan was refused) starts from a clean slate.
    for table in ["batch_jobs", "batch_chunks", "batch_lines"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE task_id = ?1 AND key = ?2 AND iteration = ?3"),
            params![k.task_id, k.key, k.iteration],
        )?;
    }
    tx.execute(
        "INSERT INTO batch_jobs (task_id, key, iteration, state, starts, source, plan, output, error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?8)",
        params![
            k.task_id,
            k.key,
            k.iteration,
            Word(job.state),
            job.starts,
            json_text(&job.source),
            json_text(&job.plan),
            job.created_at as i64
        ],
    )?;
    insert_pending(&tx, k, chunks)?;
    tx.commit()?;
    Ok(())
}

/// Keeps the first `keep` chunks of a job (committed, from an input whose start is
/// unchanged) and replaces the rest by `chunks`, planned again over the changed input.
pub(super) fn replan_job(
    conn: &mut Connection,
    job: &BatchJobRow,
    keep: u32,
    chunks: &[BatchChunkRow],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let k = &job.id;
    tx.execute(
        "DELETE FROM batch_chunks WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND idx >= ?4",
        params![k.task_id, k.key, k.iteration, keep],
    )?;
    tx.execute(
        "DELETE FROM batch_lines WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND chunk >= ?4",
        params![k.task_id, k.key, k.iteration, keep],
    )?;
    let n = tx.execute(
        "UPDATE batch_jobs SET source = ?4, plan = ?5 WHERE task_id = ?1 AND key = ?2 AND iteration = ?3",
        params![
            k.task_id,
            k.key,
            k.iteration,
            json_text(&job.source),
            json_text(&job.plan)
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "batch job",
            id: format!("{}/{}", k.task_id, k.key),
        });
    }
    insert_pending(&tx, k, chunks)?;
    tx.commit()?;
    Ok(())
}

fn insert_pending(
    tx: &rusqlite::Transaction<'_>,
    k: &BatchKey,
    chunks: &[BatchChunkRow],
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO batch_chunks (task_id, key, iteration, idx, start_byte, end_byte, first_line, records, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending')",
    )?;
    for c in chunks {
        stmt.execute(params![
            k.task_id,
            k.key,
            k.iteration,
            c.index,
            c.start as i64,
            c.end as i64,
            c.first_line as i64,
            c.records as i64
        ])?;
    }
    Ok(())
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<(BatchJobRow, String, String, Option<String>)> {
    Ok((
        BatchJobRow {
            id: BatchKey {
                task_id: r.get(0)?,
                key: r.get(1)?,
                iteration: r.get(2)?,
            },
            state: r.get::<_, Word<_>>(3)?.0,
            starts: r.get(4)?,
            source: serde_json::Value::Null,
            plan: serde_json::Value::Null,
            output: None,
            error: r.get(8)?,
            created_at: r.get::<_, i64>(9)? as u64,
            updated_at: r.get::<_, i64>(10)? as u64,
        },
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

const JOB_COLUMNS: &str =
    "task_id, key, iteration, state, starts, source, plan, output, error, created_at, updated_at";

fn finish_job(
    (mut job, source, plan, output): (BatchJobRow, String, String, Option<String>),
) -> Result<BatchJobRow, StoreError> {
    job.source = parse_json(Some(source), "batch job source")?.unwrap_or_default();
    job.plan = parse_json(Some(plan), "batch job plan")?.unwrap_or_default();
    job.output = parse_json(output, "batch job output")?;
    Ok(job)
}

pub(super) fn job(conn: &Connection, k: &BatchKey) -> Result<Option<BatchJobRow>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM batch_jobs WHERE task_id = ?1 AND key = ?2 AND iteration = ?3"
        ))?
        .query_row(params![k.task_id, k.key, k.iteration], job_from_row)
        .optional()?;
    row.map(finish_job).transpose()
}

pub(super) fn jobs(conn: &Connection, task_id: &str) -> Result<Vec<BatchJobRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM batch_jobs WHERE task_id = ?1 ORDER BY key, iteration"
    ))?;
    let rows = stmt
        .query_map([task_id], job_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(finish_job).collect()
}

pub(super) fn start_job(conn: &Connection, k: &BatchKey, now: u64) -> Result<u32, StoreError> {
    let starts: Option<u32> = conn
        .prepare_cached(
            "UPDATE batch_jobs SET starts = starts + 1, state = 'running', error = NULL, updated_at = ?4
             WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 RETURNING starts",
        )?
        .query_row(params![k.task_id, k.key, k.iteration, now as i64], |r| {
            r.get(0)
        })
        .optional()?;
    starts.ok_or_else(|| StoreError::NotFound {
        what: "batch job",
        id: format!("{}/{}", k.task_id, k.key),
    })
}

pub(super) fn end_job(
    conn: &Connection,
    k: &BatchKey,
    state: BatchJobState,
    output: Option<&serde_json::Value>,
    error: Option<&str>,
    now: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE batch_jobs SET state = ?4, output = ?5, error = ?6, updated_at = ?7
         WHERE task_id = ?1 AND key = ?2 AND iteration = ?3",
    )?
    .execute(params![
        k.task_id,
        k.key,
        k.iteration,
        Word(state),
        output.map(json_text),
        error,
        now as i64
    ])?;
    Ok(())
}

pub(super) fn chunks(conn: &Connection, k: &BatchKey) -> Result<Vec<BatchChunkRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, start_byte, end_byte, first_line, records, state, read, written, skipped, filtered,
                attempts, input_hash, output_bytes, output_header, error, committed_at, line_hashes
         FROM batch_chunks WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 ORDER BY idx",
    )?;
    let rows = stmt
        .query_map(params![k.task_id, k.key, k.iteration], |r| {
            Ok(BatchChunkRow {
                index: r.get(0)?,
                start: r.get::<_, i64>(1)? as u64,
                end: r.get::<_, i64>(2)? as u64,
                first_line: r.get::<_, i64>(3)? as u64,
                records: r.get::<_, i64>(4)? as u64,
                state: r.get::<_, Word<_>>(5)?.0,
                read: r.get::<_, i64>(6)? as u64,
                written: r.get::<_, i64>(7)? as u64,
                skipped: r.get::<_, i64>(8)? as u64,
                filtered: r.get::<_, i64>(9)? as u64,
                attempts: r.get(10)?,
                input_hash: r.get(11)?,
                output_bytes: r.get::<_, Option<i64>>(12)?.map(|n| n as u64),
                output_header: r.get(13)?,
                error: r.get(14)?,
                committed_at: r.get::<_, Option<i64>>(15)?.map(|n| n as u64),
                line_hashes: r.get(16)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn lines(conn: &Connection, k: &BatchKey) -> Result<Vec<BatchLineRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT chunk, line, state, kind, raw, reason FROM batch_lines
         WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 ORDER BY line",
    )?;
    let rows = stmt
        .query_map(params![k.task_id, k.key, k.iteration], |r| {
            Ok(BatchLineRow {
                chunk: r.get(0)?,
                line: r.get::<_, i64>(1)? as u64,
                state: r.get::<_, Word<_>>(2)?.0,
                kind: r.get(3)?,
                raw: r.get(4)?,
                reason: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Writes chunks' new states (committed or failed) and replaces their recorded lines, in one
/// transaction.
pub(super) fn put_chunks(
    conn: &mut Connection,
    commits: &[ChunkCommit<'_>],
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for c in commits {
        let fence: Option<i64> = tx
            .prepare_cached("SELECT fence FROM tasks WHERE id = ?1")?
            .query_row([&c.job.task_id], |r| r.get(0))
            .optional()?;
        if fence != Some(c.fence as i64) {
            return Err(StoreError::Fenced(c.job.task_id.clone()));
        }
        put_chunk(&tx, c)?;
    }
    tx.commit()?;
    Ok(())
}

fn put_chunk(tx: &rusqlite::Transaction<'_>, c: &ChunkCommit<'_>) -> Result<(), StoreError> {
    let (k, chunk) = (c.job, c.chunk);
    let n = tx
        .prepare_cached(
            "UPDATE batch_chunks SET state = ?5, read = ?6, written = ?7, skipped = ?8, filtered = ?9,
                attempts = ?10, input_hash = ?11, output_bytes = ?12, output_header = ?13,
                error = ?14, committed_at = ?15, line_hashes = ?16
             WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND idx = ?4",
        )?
        .execute(params![
            k.task_id,
            k.key,
            k.iteration,
            chunk.index,
            Word(chunk.state),
            chunk.read as i64,
            chunk.written as i64,
            chunk.skipped as i64,
            chunk.filtered as i64,
            chunk.attempts,
            chunk.input_hash,
            chunk.output_bytes.map(|n| n as i64),
            chunk.output_header,
            chunk.error,
            chunk.committed_at.map(|n| n as i64),
            chunk.line_hashes
        ])?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "batch chunk",
            id: format!("{}/{}#{}", k.task_id, k.key, chunk.index),
        });
    }
    tx.prepare_cached(
        "DELETE FROM batch_lines WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND chunk = ?4",
    )?
    .execute(params![k.task_id, k.key, k.iteration, chunk.index])?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO batch_lines (task_id, key, iteration, chunk, line, state, kind, raw, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for l in c.skipped {
            stmt.execute(params![
                k.task_id,
                k.key,
                k.iteration,
                l.chunk,
                l.line as i64,
                Word(l.state),
                l.kind,
                l.raw,
                l.reason
            ])?;
        }
    }
    Ok(())
}
