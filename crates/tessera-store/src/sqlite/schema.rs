//! The SQLite schema and its versions: numbered steps, each recorded in `PRAGMA user_version`
//! once applied, so a database is brought from whatever version made it to this one.

use rusqlite::Connection;

use crate::error::StoreError;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    runner TEXT,
    owner TEXT,
    base_dir TEXT
);
CREATE INDEX IF NOT EXISTS tasks_newest ON tasks(created_at DESC, id DESC);
-- Statistics (overall, and per owner) read these indexes only.
CREATE INDEX IF NOT EXISTS tasks_by_pipeline_state ON tasks(pipeline, state);
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks(owner, pipeline, state);
CREATE TABLE IF NOT EXISTS node_runs (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    state TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    decision TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    cached INTEGER NOT NULL DEFAULT 0,
    -- A rowid table: outputs can be large, and must not sit inside the primary-key b-tree.
    UNIQUE (task_id, key, iteration, attempt)
);
-- The definitions (and inputs) a task ran with before a resume replaced them.
CREATE TABLE IF NOT EXISTS task_revisions (
    task_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    replaced_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, revision)
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_node ON logs(task_id, key, id);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    output TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    source TEXT NOT NULL,
    owner TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks (
    token TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    failed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS callbacks_by_attempt ON callbacks(task_id, key, iteration, attempt);
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    task_id TEXT,
    name TEXT,
    size INTEGER NOT NULL,
    content_type TEXT,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_task ON objects(task_id);
-- Other tasks an object belongs to (a cache hit reuses another task's output): the object
-- is deleted with the last of them.
CREATE TABLE IF NOT EXISTS object_links (
    object_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (object_id, task_id)
);
CREATE INDEX IF NOT EXISTS object_links_by_task ON object_links(task_id);
-- Big JSON values of a task, stored once (a 9 MB input passed on by five nodes is written once);
-- the columns holding one hold `#<hash>` (no JSON text starts with `#`).
CREATE TABLE IF NOT EXISTS big_values (
    task_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    json TEXT NOT NULL,
    UNIQUE (task_id, hash)
);
"#;

/// One step of the schema: the version it brings a database to, what it is, and how. Every
/// step is idempotent (`IF NOT EXISTS`, columns added when missing), so a database made before
/// versions were recorded (version 0, whatever it holds) goes through all of them safely.
struct Step {
    version: u32,
    what: &'static str,
    apply: fn(&Connection) -> Result<(), StoreError>,
}

const STEPS: &[Step] = &[
    Step {
        version: 1,
        what: "tables",
        apply: |c| {
            c.execute_batch(SCHEMA)?;
            Ok(c.execute_batch(super::batch::SCHEMA)?)
        },
    },
    Step {
        version: 2,
        what: "pipeline versions",
        apply: |c| add_column_if_missing(c, "pipelines", "version", "TEXT NOT NULL DEFAULT ''"),
    },
    Step {
        version: 3,
        what: "hashes of batch lines",
        apply: |c| add_column_if_missing(c, "batch_chunks", "line_hashes", "BLOB"),
    },
    Step {
        version: 4,
        what: "callback bases",
        apply: |c| add_column_if_missing(c, "callbacks", "callback_base", "TEXT"),
    },
    Step {
        version: 5,
        what: "base directories of tasks",
        apply: |c| add_column_if_missing(c, "tasks", "base_dir", "TEXT"),
    },
    Step {
        version: 6,
        what: "leases and fences",
        apply: |c| {
            // The holder (`runner`) until `lease_until` (ms); `fence` counts the claims.
            add_column_if_missing(c, "tasks", "fence", "INTEGER NOT NULL DEFAULT 0")?;
            add_column_if_missing(c, "tasks", "lease_until", "INTEGER")?;
            // What the claim loop reads every few seconds: only tasks that have not ended.
            Ok(c.execute_batch(
                "CREATE INDEX IF NOT EXISTS tasks_unended ON tasks(lease_until)
                 WHERE state IN ('pending', 'running')",
            )?)
        },
    },
    Step {
        version: 7,
        what: "cancel requests by holder",
        // What each process's cancel watch reads several times a second.
        apply: |c| {
            Ok(c.execute_batch(
                "CREATE INDEX IF NOT EXISTS tasks_cancel_requested ON tasks(runner)
                 WHERE cancel_requested = 1",
            )?)
        },
    },
    Step {
        version: 8,
        what: "workers",
        apply: |c| {
            Ok(c.execute_batch(
                "CREATE TABLE IF NOT EXISTS workers (
                    runner TEXT PRIMARY KEY,
                    host TEXT NOT NULL,
                    pid INTEGER NOT NULL,
                    started_at INTEGER NOT NULL,
                    heartbeat_at INTEGER NOT NULL,
                    lease_ms INTEGER NOT NULL,
                    pools TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS tasks_by_runner ON tasks(runner)
                    WHERE state IN ('pending', 'running');",
            )?)
        },
    },
    Step {
        version: 9,
        what: "callbacks in arrival order",
        apply: |c| {
            // Numbered as they arrive, so the process holding a task learns of its callbacks
            // received by another process: "what arrived after N for my tasks".
            add_column_if_missing(c, "callbacks", "received_seq", "INTEGER")?;
            Ok(c.execute_batch(
                "CREATE INDEX IF NOT EXISTS callbacks_received ON callbacks(received_seq)
                 WHERE received_seq IS NOT NULL",
            )?)
        },
    },
    Step {
        version: 10,
        what: "leaders of cluster-wide chores",
        apply: |c| {
            Ok(c.execute_batch(
                "CREATE TABLE IF NOT EXISTS leaders (
                    role TEXT PRIMARY KEY,
                    runner TEXT NOT NULL,
                    until INTEGER NOT NULL
                 );",
            )?)
        },
    },
    Step {
        version: 11,
        what: "schedules",
        apply: |c| {
            // A task's tick: one task per pipeline and tick, whoever creates it; per schedule,
            // whether it is paused and the latest tick the scheduler created.
            add_column_if_missing(c, "tasks", "scheduled_at", "INTEGER")?;
            Ok(c.execute_batch(
                "CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_tick ON tasks(pipeline, scheduled_at)
                    WHERE scheduled_at IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS schedules (
                    pipeline TEXT PRIMARY KEY,
                    paused INTEGER NOT NULL DEFAULT 0,
                    last_tick INTEGER,
                    updated_at INTEGER NOT NULL
                 );",
            )?)
        },
    },
    Step {
        version: 12,
        what: "shared live events",
        apply: |c| {
            Ok(c.execute_batch(
                "CREATE TABLE IF NOT EXISTS events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    task_id TEXT NOT NULL,
                    owner TEXT,
                    runner TEXT NOT NULL,
                    data TEXT NOT NULL,
                    at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS events_by_time ON events(at);
                 CREATE TABLE IF NOT EXISTS event_followers (
                    runner TEXT PRIMARY KEY,
                    until INTEGER NOT NULL
                 );",
            )?)
        },
    },
    Step {
        version: 13,
        what: "cluster-wide pools",
        apply: |c| {
            c.execute_batch(POOL_SLOTS)?;
            // What a process needs to run the task (JSON array), for restricted processes.
            add_column_if_missing(c, "tasks", "needs", "TEXT")
        },
    },
    Step {
        version: 14,
        what: "chunked loops",
        apply: |c| Ok(c.execute_batch(super::loops::SCHEMA)?),
    },
    Step {
        version: 15,
        what: "values by their size",
        apply: |c| {
            // A big value's size, and a finished loop's tally: a task's document gives both
            // without reading the value (a million items' text).
            add_column_if_missing(c, "big_values", "bytes", "INTEGER")?;
            add_column_if_missing(c, "node_runs", "tally", "TEXT")
        },
    },
];

/// Slots of named pools taken by jobs, each under its process's lease.
const POOL_SLOTS: &str = "CREATE TABLE IF NOT EXISTS pool_slots (
    pool TEXT NOT NULL,
    slot INTEGER NOT NULL,
    holder TEXT NOT NULL,
    runner TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (pool, slot)
);
CREATE INDEX IF NOT EXISTS pool_slots_by_runner ON pool_slots(runner);";

/// The schema version this build writes.
pub(super) const LATEST: u32 = 15;

/// Brings the database to [`LATEST`], one step per transaction; refuses a database made by a
/// newer version (its data may mean what this one cannot know).
pub(super) fn create(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::Conflict(format!(
            "this database has schema version {current}, made by a newer Tessera; this one \
             knows versions up to {LATEST}"
        )));
    }
    for step in STEPS.iter().filter(|s| s.version > current) {
        let tx = conn.transaction()?;
        (step.apply)(&tx).map_err(|e| {
            StoreError::Database(format!(
                "schema step {} ({}) failed: {e}",
                step.version, step.what
            ))
        })?;
        tx.pragma_update(None, "user_version", step.version)?;
        tx.commit()?;
    }
    Ok(())
}

fn add_column_if_missing(
    conn: &Connection,
    table: &str,
    column: &str,
    declaration: &str,
) -> Result<(), StoreError> {
    let exists = conn
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?
        .exists([column])?;
    if !exists {
        conn.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
        ))?;
    }
    Ok(())
}
