//! PostgreSQL side of batch jobs: job → chunks → bad lines, and each chunk's checkpoint
//! written in one transaction with its skipped lines.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::{int, json_text, parse_json};
use crate::error::StoreError;
use crate::types::*;
use crate::words::parse_word;

pub(super) async fn create_job(
    pool: &PgPool,
    job: &BatchJobRow,
    chunks: &[BatchChunkRow],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let k = &job.id;
    // A job planned again (its plan was refused) starts from a clean slate.
    for delete in [
        "DELETE FROM batch_jobs WHERE task_id = $1 AND key = $2 AND iteration = $3",
        "DELETE FROM batch_chunks WHERE task_id = $1 AND key = $2 AND iteration = $3",
        "DELETE FROM batch_lines WHERE task_id = $1 AND key = $2 AND iteration = $3",
    ] {
        sqlx::query(delete)
            .bind(&k.task_id)
            .bind(&k.key)
            .bind(i64::from(k.iteration))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO batch_jobs (task_id, key, iteration, state, starts, source, plan, output,
            error, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $8)",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(job.state.as_str())
    .bind(i64::from(job.starts))
    .bind(json_text(&job.source))
    .bind(json_text(&job.plan))
    .bind(int(job.created_at))
    .execute(&mut *tx)
    .await?;
    insert_pending(&mut tx, k, chunks).await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps the first `keep` chunks of a job (committed, from an input whose start is
/// unchanged) and replaces the rest by `chunks`, planned again over the changed input.
pub(super) async fn replan_job(
    pool: &PgPool,
    job: &BatchJobRow,
    keep: u32,
    chunks: &[BatchChunkRow],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let k = &job.id;
    sqlx::query(
        "DELETE FROM batch_chunks
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND idx >= $4",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(i64::from(keep))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM batch_lines
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND chunk >= $4",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(i64::from(keep))
    .execute(&mut *tx)
    .await?;
    let n = sqlx::query(
        "UPDATE batch_jobs SET source = $4, plan = $5
         WHERE task_id = $1 AND key = $2 AND iteration = $3",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(json_text(&job.source))
    .bind(json_text(&job.plan))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "batch job",
            id: format!("{}/{}", k.task_id, k.key),
        });
    }
    insert_pending(&mut tx, k, chunks).await?;
    tx.commit().await?;
    Ok(())
}

/// Planned chunks, all `pending`: one statement however many (thousands for a big input).
async fn insert_pending(
    tx: &mut PgConnection,
    k: &BatchKey,
    chunks: &[BatchChunkRow],
) -> Result<(), StoreError> {
    if chunks.is_empty() {
        return Ok(());
    }
    let idx: Vec<i64> = chunks.iter().map(|c| i64::from(c.index)).collect();
    let start: Vec<i64> = chunks.iter().map(|c| int(c.start)).collect();
    let end: Vec<i64> = chunks.iter().map(|c| int(c.end)).collect();
    let first_line: Vec<i64> = chunks.iter().map(|c| int(c.first_line)).collect();
    let records: Vec<i64> = chunks.iter().map(|c| int(c.records)).collect();
    sqlx::query(
        "INSERT INTO batch_chunks (task_id, key, iteration, idx, start_byte, end_byte,
            first_line, records, state)
         SELECT $1, $2, $3, c.idx, c.start_byte, c.end_byte, c.first_line, c.records, 'pending'
         FROM UNNEST($4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
            AS c(idx, start_byte, end_byte, first_line, records)",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(&idx)
    .bind(&start)
    .bind(&end)
    .bind(&first_line)
    .bind(&records)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn job_from_row(r: &PgRow) -> Result<BatchJobRow, StoreError> {
    Ok(BatchJobRow {
        id: BatchKey {
            task_id: r.try_get(0)?,
            key: r.try_get(1)?,
            iteration: r.try_get::<i64, _>(2)? as u32,
        },
        state: parse_word(r.try_get(3)?)?,
        starts: r.try_get::<i64, _>(4)? as u32,
        source: parse_json(Some(r.try_get(5)?), "batch job source")?.unwrap_or_default(),
        plan: parse_json(Some(r.try_get(6)?), "batch job plan")?.unwrap_or_default(),
        output: parse_json(r.try_get(7)?, "batch job output")?,
        error: r.try_get(8)?,
        created_at: r.try_get::<i64, _>(9)? as u64,
        updated_at: r.try_get::<i64, _>(10)? as u64,
    })
}

pub(super) async fn job(pool: &PgPool, k: &BatchKey) -> Result<Option<BatchJobRow>, StoreError> {
    sqlx::query(
        "SELECT task_id, key, iteration, state, starts, source, plan, output, error, created_at, updated_at FROM batch_jobs WHERE task_id = $1 AND key = $2 AND iteration = $3",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(job_from_row)
    .transpose()
}

pub(super) async fn jobs(pool: &PgPool, task_id: &str) -> Result<Vec<BatchJobRow>, StoreError> {
    sqlx::query(
        "SELECT task_id, key, iteration, state, starts, source, plan, output, error, created_at, updated_at FROM batch_jobs WHERE task_id = $1 ORDER BY key, iteration",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(job_from_row)
    .collect()
}

pub(super) async fn start_job(pool: &PgPool, k: &BatchKey, now: u64) -> Result<u32, StoreError> {
    let starts: Option<i64> = sqlx::query_scalar(
        "UPDATE batch_jobs SET starts = starts + 1, state = 'running', error = NULL,
            updated_at = $4
         WHERE task_id = $1 AND key = $2 AND iteration = $3 RETURNING starts",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(int(now))
    .fetch_optional(pool)
    .await?;
    starts
        .map(|n| n as u32)
        .ok_or_else(|| StoreError::NotFound {
            what: "batch job",
            id: format!("{}/{}", k.task_id, k.key),
        })
}

pub(super) async fn end_job(
    pool: &PgPool,
    k: &BatchKey,
    state: BatchJobState,
    output: Option<&Value>,
    error: Option<&str>,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE batch_jobs SET state = $4, output = $5, error = $6, updated_at = $7
         WHERE task_id = $1 AND key = $2 AND iteration = $3",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(state.as_str())
    .bind(output.map(json_text))
    .bind(error)
    .bind(int(now))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn chunks(pool: &PgPool, k: &BatchKey) -> Result<Vec<BatchChunkRow>, StoreError> {
    sqlx::query(
        "SELECT idx, start_byte, end_byte, first_line, records, state, read, written, skipped,
                filtered, attempts, input_hash, output_bytes, output_header, error, committed_at,
                line_hashes
         FROM batch_chunks WHERE task_id = $1 AND key = $2 AND iteration = $3 ORDER BY idx",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(BatchChunkRow {
            index: r.try_get::<i64, _>(0)? as u32,
            start: r.try_get::<i64, _>(1)? as u64,
            end: r.try_get::<i64, _>(2)? as u64,
            first_line: r.try_get::<i64, _>(3)? as u64,
            records: r.try_get::<i64, _>(4)? as u64,
            state: parse_word(r.try_get(5)?)?,
            read: r.try_get::<i64, _>(6)? as u64,
            written: r.try_get::<i64, _>(7)? as u64,
            skipped: r.try_get::<i64, _>(8)? as u64,
            filtered: r.try_get::<i64, _>(9)? as u64,
            attempts: r.try_get::<i64, _>(10)? as u32,
            input_hash: r.try_get(11)?,
            output_bytes: r.try_get::<Option<i64>, _>(12)?.map(|n| n as u64),
            output_header: r.try_get(13)?,
            error: r.try_get(14)?,
            committed_at: r.try_get::<Option<i64>, _>(15)?.map(|n| n as u64),
            line_hashes: r.try_get(16)?,
        })
    })
    .collect()
}

pub(super) async fn lines(pool: &PgPool, k: &BatchKey) -> Result<Vec<BatchLineRow>, StoreError> {
    sqlx::query(
        "SELECT chunk, line, state, kind, raw, reason FROM batch_lines
         WHERE task_id = $1 AND key = $2 AND iteration = $3 ORDER BY line",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(BatchLineRow {
            chunk: r.try_get::<i64, _>(0)? as u32,
            line: r.try_get::<i64, _>(1)? as u64,
            state: parse_word(r.try_get(2)?)?,
            kind: r.try_get(3)?,
            raw: r.try_get(4)?,
            reason: r.try_get(5)?,
        })
    })
    .collect()
}

/// Writes chunks' new states (committed or failed) and replaces their recorded lines, in one
/// transaction.
pub(super) async fn put_chunks(
    pool: &PgPool,
    commits: &[ChunkCommit<'_>],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for c in commits {
        // Locked until commit: a claim of the task waits for this checkpoint, and a
        // checkpoint of a dispossessed writer is refused.
        let fence: Option<i64> =
            sqlx::query_scalar("SELECT fence FROM tasks WHERE id = $1 FOR SHARE")
                .bind(&c.job.task_id)
                .fetch_optional(&mut *tx)
                .await?;
        if fence != Some(c.fence as i64) {
            return Err(StoreError::Fenced(c.job.task_id.clone()));
        }
        put_chunk(&mut tx, c).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn put_chunk(tx: &mut PgConnection, c: &ChunkCommit<'_>) -> Result<(), StoreError> {
    let (k, chunk) = (c.job, c.chunk);
    let n = sqlx::query(
        "UPDATE batch_chunks SET state = $5, read = $6, written = $7, skipped = $8,
            filtered = $9, attempts = $10, input_hash = $11, output_bytes = $12,
            output_header = $13, error = $14, committed_at = $15, line_hashes = $16
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND idx = $4",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(i64::from(chunk.index))
    .bind(chunk.state.as_str())
    .bind(int(chunk.read))
    .bind(int(chunk.written))
    .bind(int(chunk.skipped))
    .bind(int(chunk.filtered))
    .bind(i64::from(chunk.attempts))
    .bind(&chunk.input_hash)
    .bind(chunk.output_bytes.map(int))
    .bind(&chunk.output_header)
    .bind(&chunk.error)
    .bind(chunk.committed_at.map(int))
    .bind(&chunk.line_hashes)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "batch chunk",
            id: format!("{}/{}#{}", k.task_id, k.key, chunk.index),
        });
    }
    sqlx::query(
        "DELETE FROM batch_lines
         WHERE task_id = $1 AND key = $2 AND iteration = $3 AND chunk = $4",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(i64::from(chunk.index))
    .execute(&mut *tx)
    .await?;
    if c.skipped.is_empty() {
        return Ok(());
    }
    let line_chunk: Vec<i64> = c.skipped.iter().map(|l| i64::from(l.chunk)).collect();
    let line: Vec<i64> = c.skipped.iter().map(|l| int(l.line)).collect();
    let state: Vec<&str> = c.skipped.iter().map(|l| l.state.as_str()).collect();
    let kind: Vec<&str> = c.skipped.iter().map(|l| l.kind.as_str()).collect();
    let raw: Vec<std::borrow::Cow<'_, str>> =
        c.skipped.iter().map(|l| super::text(&l.raw)).collect();
    let reason: Vec<std::borrow::Cow<'_, str>> =
        c.skipped.iter().map(|l| super::text(&l.reason)).collect();
    // SQLite's INSERT OR REPLACE, row after row: a line given twice keeps its last row (one
    // statement may not update a row twice, hence DISTINCT ON), and a line recorded before
    // (by another chunk) is replaced whole.
    sqlx::query(
        "INSERT INTO batch_lines (task_id, key, iteration, chunk, line, state, kind, raw, reason)
         SELECT DISTINCT ON (l.line) $1, $2, $3, l.chunk, l.line, l.state, l.kind, l.raw, l.reason
         FROM UNNEST($4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[])
            WITH ORDINALITY AS l(chunk, line, state, kind, raw, reason, n)
         ORDER BY l.line, l.n DESC
         ON CONFLICT (task_id, key, iteration, line) DO UPDATE SET chunk = excluded.chunk,
            state = excluded.state, kind = excluded.kind, raw = excluded.raw,
            reason = excluded.reason",
    )
    .bind(&k.task_id)
    .bind(&k.key)
    .bind(i64::from(k.iteration))
    .bind(&line_chunk)
    .bind(&line)
    .bind(&state)
    .bind(&kind)
    .bind(&raw)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
