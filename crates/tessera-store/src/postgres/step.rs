//! PostgreSQL side of task writes: creation, a scheduler step's records (fenced: the task row
//! is locked while its fence is checked, so a claim cannot slip in before the commit), and
//! revisions. Node runs of a step go in one statement, however many.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tessera_core::Data;
use tessera_core::scheduler::{Arm, Record};

use super::{int, json_text, notify};
use crate::error::StoreError;
use crate::group::Json;
use crate::types::{CommitBatch, NewTask};

/// What a column holds for a value of `task_id`: its JSON, or for a big value `#<hash>` after
/// storing it once in `big_values` (`hashes` remembers the values of this transaction).
async fn column(
    tx: &mut PgConnection,
    task_id: &str,
    value: &Json,
    hashes: &mut HashMap<(usize, usize), String>,
) -> Result<String, StoreError> {
    let text = value.text();
    if !value.big() {
        return Ok(text.to_string());
    }
    let id = (text.as_ptr() as usize, text.len());
    if let Some(h) = hashes.get(&id) {
        return Ok(format!("#{h}"));
    }
    let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
    sqlx::query(
        "INSERT INTO big_values (task_id, hash, json) VALUES ($1, $2, $3)
         ON CONFLICT (task_id, hash) DO NOTHING",
    )
    .bind(task_id)
    .bind(&hash)
    .bind(text)
    .execute(&mut *tx)
    .await?;
    let column = format!("#{hash}");
    hashes.insert(id, hash);
    Ok(column)
}

async fn optional_column(
    tx: &mut PgConnection,
    task_id: &str,
    value: Option<&Json>,
    hashes: &mut HashMap<(usize, usize), String>,
) -> Result<Option<String>, StoreError> {
    match value {
        Some(v) => Ok(Some(column(tx, task_id, v, hashes).await?)),
        None => Ok(None),
    }
}

pub(super) async fn create_task(pool: &PgPool, t: &NewTask) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let mut hashes = HashMap::new();
    let input = column(&mut tx, &t.id, &Json::of(&t.input), &mut hashes).await?;
    sqlx::query(
        "INSERT INTO tasks (id, pipeline, definition, input, state, created_at, updated_at, owner,
            runner, base_dir, fence, lease_until)
         VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6, $7, $8, 1, $9)",
    )
    .bind(&t.id)
    .bind(&t.pipeline)
    .bind(json_text(&t.definition))
    .bind(input)
    .bind(int(t.created_at))
    .bind(&t.owner)
    .bind(&t.runner)
    .bind(&t.base_dir)
    .bind(int(t.lease_until))
    .execute(&mut *tx)
    .await?;
    // Workers waiting for work wake up (a task recorded for them has no lease running).
    notify(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn revise_task(
    pool: &PgPool,
    task_id: &str,
    definition: &Value,
    input: Option<&Data>,
    at: u64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "INSERT INTO task_revisions (task_id, revision, definition, input, replaced_at)
         SELECT id, 1 + (SELECT COUNT(*) FROM task_revisions WHERE task_id = $1),
                definition, input, $2
         FROM tasks WHERE id = $1",
    )
    .bind(task_id)
    .bind(int(at))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "task",
            id: task_id.to_string(),
        });
    }
    let mut hashes = HashMap::new();
    let input = match input {
        Some(d) => Some(column(&mut tx, task_id, &Json::of(d), &mut hashes).await?),
        None => None,
    };
    sqlx::query("UPDATE tasks SET definition = $2, input = COALESCE($3, input) WHERE id = $1")
        .bind(task_id)
        .bind(json_text(definition))
        .bind(input)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Node-run columns of a step, one vector per column (bound as arrays).
#[derive(Default)]
struct NodeColumns {
    key: Vec<String>,
    iteration: Vec<i64>,
    attempt: Vec<i64>,
    node_id: Vec<String>,
    node_type: Vec<&'static str>,
    state: Vec<&'static str>,
    input: Vec<Option<String>>,
    output: Vec<Option<String>>,
    error: Vec<Option<String>>,
    decision: Vec<Option<&'static str>>,
    started_at: Vec<Option<i64>>,
    finished_at: Vec<Option<i64>>,
    cached: Vec<bool>,
}

const UPSERT_NODES: &str = "
    INSERT INTO node_runs (task_id, key, iteration, attempt, node_id, node_type, state, input,
        output, error, decision, started_at, finished_at, cached)
    SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[],
        $13::bigint[], $14::boolean[])
    ON CONFLICT (task_id, key, iteration, attempt) DO UPDATE SET
        state = excluded.state,
        input = COALESCE(excluded.input, node_runs.input),
        output = excluded.output,
        error = excluded.error,
        decision = excluded.decision,
        started_at = COALESCE(node_runs.started_at, excluded.started_at),
        finished_at = excluded.finished_at,
        cached = excluded.cached";

/// Commits a scheduler step, if the committer still holds the task.
pub(super) async fn commit(pool: &PgPool, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
    let task_id = batch.task_id;
    let mut tx = pool.begin().await?;
    // Locks the row until commit: a claim (which bumps the fence) waits for this step.
    let fence: Option<i64> = sqlx::query_scalar("SELECT fence FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
    if fence != Some(int(batch.fence)) {
        return Err(StoreError::Fenced(task_id.to_string()));
    }
    let mut hashes = HashMap::new();
    // One UNNEST statement cannot touch a row twice: a step that records the same attempt
    // more than once is written in rounds, each holding a key at most once, in order.
    let mut rounds: Vec<NodeColumns> = Vec::new();
    let mut seen: HashMap<(&str, u32, u32), usize> = HashMap::new();
    for record in &batch.records {
        let Record::Node(n) = record else { continue };
        let round = seen
            .entry((n.key.as_str(), n.iteration, n.attempt))
            .and_modify(|r| *r += 1)
            .or_insert(0);
        if rounds.len() <= *round {
            rounds.push(NodeColumns::default());
        }
        let input = n.input.as_ref().map(Json::of);
        let output = n.output.as_ref().map(Json::of);
        let c = &mut rounds[*round];
        c.key.push(n.key.clone());
        c.iteration.push(n.iteration as i64);
        c.attempt.push(n.attempt as i64);
        c.node_id.push(n.node_id.clone());
        c.node_type.push(n.node_type);
        c.state.push(n.state.as_str());
        c.input
            .push(optional_column(&mut tx, task_id, input.as_ref(), &mut hashes).await?);
        c.output
            .push(optional_column(&mut tx, task_id, output.as_ref(), &mut hashes).await?);
        c.error.push(n.error.clone());
        c.decision.push(n.decision.map(Arm::as_str));
        c.started_at.push(n.started_at.map(int));
        c.finished_at.push(n.finished_at.map(int));
        c.cached.push(n.cached);
    }
    for c in &rounds {
        sqlx::query(UPSERT_NODES)
            .bind(task_id)
            .bind(&c.key)
            .bind(&c.iteration)
            .bind(&c.attempt)
            .bind(&c.node_id)
            .bind(&c.node_type)
            .bind(&c.state)
            .bind(&c.input)
            .bind(&c.output)
            .bind(&c.error)
            .bind(&c.decision)
            .bind(&c.started_at)
            .bind(&c.finished_at)
            .bind(&c.cached)
            .execute(&mut *tx)
            .await?;
    }
    let mut ended = false;
    for record in &batch.records {
        let Record::Task {
            state,
            result,
            error,
        } = record
        else {
            continue;
        };
        let result = result.as_ref().map(Json::of);
        let result = optional_column(&mut tx, task_id, result.as_ref(), &mut hashes).await?;
        ended |= state.is_terminal();
        sqlx::query(
            "UPDATE tasks SET state = $2, result = $3, error = $4, updated_at = $5,
                lease_until = CASE WHEN $2 IN ('finished', 'failed', 'cancelled') THEN NULL
                    ELSE lease_until END
             WHERE id = $1",
        )
        .bind(task_id)
        .bind(state.as_str())
        .bind(result)
        .bind(error)
        .bind(int(batch.now))
        .execute(&mut *tx)
        .await?;
    }
    for (key, node, output) in &batch.cache {
        sqlx::query(
            "INSERT INTO cache (key, node_id, output, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET node_id = excluded.node_id,
                output = excluded.output, created_at = excluded.created_at",
        )
        .bind(*key)
        .bind(*node)
        .bind(Json::of(output).text())
        .bind(int(batch.now))
        .execute(&mut *tx)
        .await?;
    }
    if ended {
        // Whoever follows the task (another instance's event stream, a `wait`) learns of it.
        notify(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
