//! The PostgreSQL schema and its versions: numbered steps recorded in `tessera_schema`, applied
//! under an advisory lock so that instances starting together migrate once.

use sqlx::{Executor, PgPool, Row};

use crate::error::StoreError;

/// Tables as in the SQLite schema; integers are `BIGINT` (milliseconds, counts), flags
/// `BOOLEAN`, JSON kept as the text written (key order, big values stored once).
const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    runner TEXT,
    owner TEXT,
    base_dir TEXT,
    fence BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT
);
CREATE INDEX IF NOT EXISTS tasks_newest ON tasks(created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_by_pipeline_state ON tasks(pipeline, state);
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks(owner, pipeline, state);
-- The queue: only tasks that have not ended are in it, so claims cost the same after a
-- million finished tasks as before the first.
CREATE INDEX IF NOT EXISTS tasks_unended ON tasks(created_at)
    WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS tasks_cancel_requested ON tasks(runner) WHERE cancel_requested;
CREATE INDEX IF NOT EXISTS tasks_by_runner ON tasks(runner) WHERE state IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS node_runs (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    state TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    decision TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    cached BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (task_id, key, iteration, attempt)
);
CREATE TABLE IF NOT EXISTS task_revisions (
    task_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    replaced_at BIGINT NOT NULL,
    PRIMARY KEY (task_id, revision)
);
CREATE TABLE IF NOT EXISTS logs (
    id BIGSERIAL PRIMARY KEY,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_node ON logs(task_id, key, id);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    output TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    source TEXT NOT NULL,
    owner TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks (
    token TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    failed BOOLEAN NOT NULL DEFAULT FALSE,
    callback_base TEXT,
    received_seq BIGINT
);
CREATE INDEX IF NOT EXISTS callbacks_by_attempt ON callbacks(task_id, key, iteration, attempt);
CREATE INDEX IF NOT EXISTS callbacks_received ON callbacks(received_seq)
    WHERE received_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    task_id TEXT,
    name TEXT,
    size BIGINT NOT NULL,
    content_type TEXT,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_task ON objects(task_id);
CREATE TABLE IF NOT EXISTS object_links (
    object_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (object_id, task_id)
);
CREATE INDEX IF NOT EXISTS object_links_by_task ON object_links(task_id);
CREATE TABLE IF NOT EXISTS big_values (
    task_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (task_id, hash)
);
CREATE TABLE IF NOT EXISTS workers (
    runner TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_ms BIGINT NOT NULL,
    pools TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leaders (
    role TEXT PRIMARY KEY,
    runner TEXT NOT NULL,
    until BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    state TEXT NOT NULL,
    starts BIGINT NOT NULL,
    source TEXT NOT NULL,
    plan TEXT NOT NULL,
    output TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (task_id, key, iteration)
);
CREATE TABLE IF NOT EXISTS batch_chunks (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    start_byte BIGINT NOT NULL,
    end_byte BIGINT NOT NULL,
    first_line BIGINT NOT NULL,
    records BIGINT NOT NULL,
    state TEXT NOT NULL,
    read BIGINT NOT NULL DEFAULT 0,
    written BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    filtered BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    input_hash TEXT,
    line_hashes BYTEA,
    output_bytes BIGINT,
    output_header TEXT,
    error TEXT,
    committed_at BIGINT,
    PRIMARY KEY (task_id, key, iteration, idx)
);
CREATE TABLE IF NOT EXISTS batch_lines (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration BIGINT NOT NULL,
    chunk BIGINT NOT NULL,
    line BIGINT NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    raw TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (task_id, key, iteration, line)
);
"#;

/// One step of the schema: the version it brings a database to, what it is, its SQL.
struct Step {
    version: i64,
    what: &'static str,
    sql: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        version: 1,
        what: "tables",
        sql: TABLES,
    },
    Step {
        version: 2,
        what: "schedules",
        sql: SCHEDULES,
    },
    Step {
        version: 3,
        what: "shared live events",
        sql: EVENTS,
    },
    Step {
        version: 4,
        what: "cluster-wide pools",
        sql: "CREATE TABLE IF NOT EXISTS pool_slots (
            pool TEXT NOT NULL,
            slot BIGINT NOT NULL,
            holder TEXT NOT NULL,
            runner TEXT NOT NULL,
            until BIGINT NOT NULL,
            PRIMARY KEY (pool, slot)
        );
        CREATE INDEX IF NOT EXISTS pool_slots_by_runner ON pool_slots(runner);
        ALTER TABLE tasks ADD COLUMN IF NOT EXISTS needs JSONB;",
    },
    Step {
        version: 5,
        what: "chunked loops",
        sql: super::loops::SCHEMA,
    },
    Step {
        version: 6,
        what: "values by their size",
        // A big value's size, and a finished loop's tally: a task's document gives both
        // without reading the value (a million items' text).
        sql: "ALTER TABLE big_values ADD COLUMN IF NOT EXISTS bytes BIGINT;
        ALTER TABLE node_runs ADD COLUMN IF NOT EXISTS tally TEXT;",
    },
];

/// Live events shared between processes (numbered from a sequence under an advisory lock),
/// and the processes following them.
const EVENTS: &str = r#"
CREATE SEQUENCE IF NOT EXISTS events_seq;
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT PRIMARY KEY,
    task_id TEXT NOT NULL,
    owner TEXT,
    runner TEXT NOT NULL,
    data TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events(at);
CREATE TABLE IF NOT EXISTS event_followers (
    runner TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
"#;

/// Ticks of schedules: a task's tick (one task per pipeline and tick, whoever creates it),
/// and per schedule whether it is paused and the latest tick the scheduler created.
const SCHEDULES: &str = r#"
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS scheduled_at BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_tick ON tasks(pipeline, scheduled_at)
    WHERE scheduled_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS schedules (
    pipeline TEXT PRIMARY KEY,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    last_tick BIGINT,
    updated_at BIGINT NOT NULL
);
"#;

/// The schema version this build writes.
pub(super) const LATEST: i64 = 6;

/// Any number: the advisory lock key of migrations ("tessera" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x0074_6573_7365_7261;

/// Brings the database to [`LATEST`], each step in its own transaction, under a lock held by
/// one process at a time; refuses a database made by a newer version.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS tessera_schema (
            version BIGINT PRIMARY KEY, what TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .or_else(already_created)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = apply_steps(&mut conn).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

/// Two processes creating the version table at once: one of them gets a unique violation
/// (`CREATE … IF NOT EXISTS` is not atomic in PostgreSQL); the table exists, all is well.
fn already_created(e: sqlx::Error) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => Ok(Default::default()),
        _ => Err(e),
    }
}

async fn apply_steps(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM tessera_schema")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if current > LATEST {
        return Err(StoreError::Conflict(format!(
            "this database has schema version {current}, made by a newer Tessera; this one \
             knows versions up to {LATEST}"
        )));
    }
    for step in STEPS.iter().filter(|s| s.version > current) {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        tx.execute(step.sql).await.map_err(|e| {
            StoreError::Database(format!(
                "schema step {} ({}) failed: {e}",
                step.version, step.what
            ))
        })?;
        sqlx::query("INSERT INTO tessera_schema (version, what) VALUES ($1, $2)")
            .bind(step.version)
            .bind(step.what)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}
