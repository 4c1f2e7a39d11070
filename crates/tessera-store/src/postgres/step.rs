//! PostgreSQL side of task writes, group-committed: the creations, scheduler steps and
//! revisions queued by every thread meanwhile go in one transaction — one flush, the fences of
//! all its steps checked (and their rows locked) in one query, the node runs of all its steps
//! in one statement. A batch that fails is written again one write per transaction, so each
//! writer gets its own outcome.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tessera_core::Data;

use super::{int, json_text, notify};
use crate::error::StoreError;
use crate::group::{Failed, Json, Op, Outcome, StepWrite, TaskRevise};

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
        "INSERT INTO big_values (task_id, hash, json, bytes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (task_id, hash) DO NOTHING",
    )
    .bind(task_id)
    .bind(&hash)
    .bind(text)
    .bind(text.len() as i64)
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

/// A resume's new definition (and input), serialised on the caller's thread.
pub(super) fn revise(task_id: &str, definition: &Value, input: Option<&Data>, at: u64) -> Op {
    Op::Revise(TaskRevise {
        task_id: task_id.to_string(),
        definition: json_text(definition),
        input: input.map(Json::of),
        at: int(at),
    })
}

async fn apply_revise(
    tx: &mut PgConnection,
    r: &TaskRevise,
    hashes: &mut HashMap<(usize, usize), String>,
) -> Result<(), StoreError> {
    let task_id = r.task_id.as_str();
    let n = sqlx::query(
        "INSERT INTO task_revisions (task_id, revision, definition, input, replaced_at)
         SELECT id, 1 + (SELECT COUNT(*) FROM task_revisions WHERE task_id = $1),
                definition, input, $2
         FROM tasks WHERE id = $1",
    )
    .bind(task_id)
    .bind(r.at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "task",
            id: task_id.to_string(),
        });
    }
    let input = optional_column(tx, task_id, r.input.as_ref(), hashes).await?;
    sqlx::query("UPDATE tasks SET definition = $2, input = COALESCE($3, input) WHERE id = $1")
        .bind(task_id)
        .bind(&r.definition)
        .bind(input)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Writes a batch of queued operations: in one transaction when it can, else one by one.
pub(super) async fn write_all(pool: PgPool, ops: Vec<(u64, Op)>) -> Vec<(u64, Outcome)> {
    if ops.len() > 1 {
        // When one write of the batch is refused (a duplicate id, a revise of a task deleted
        // meanwhile) or the connection failed, each write alone tells whose it was.
        if let Ok(outcomes) = write_batch(&pool, &ops).await {
            return outcomes;
        }
    }
    let mut outcomes = Vec::with_capacity(ops.len());
    for (ticket, op) in &ops {
        let outcome = write_one(&pool, op).await.map_err(|e| match e {
            StoreError::Fenced(task) => Failed::Fenced(task),
            e => Failed::Described(e.kind(), e.is_full(), e.to_string()),
        });
        outcomes.push((*ticket, outcome));
    }
    outcomes
}

async fn write_one(pool: &PgPool, op: &Op) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    if let Op::Step(s) = op {
        let fence: Option<i64> =
            sqlx::query_scalar("SELECT fence FROM tasks WHERE id = $1 FOR UPDATE")
                .bind(&s.task_id)
                .fetch_optional(&mut *tx)
                .await?;
        if fence != Some(int(s.fence)) {
            return Err(StoreError::Fenced(s.task_id.clone()));
        }
    }
    apply(&mut tx, &[op]).await?;
    tx.commit().await?;
    Ok(())
}

async fn write_batch(pool: &PgPool, ops: &[(u64, Op)]) -> Result<Vec<(u64, Outcome)>, StoreError> {
    let mut tx = pool.begin().await?;
    // Only the holder of the current claim writes: every step's fence, checked with its row
    // locked until commit (a claim, which moves the fence, waits for this batch).
    let mut step_tasks: Vec<&str> = ops
        .iter()
        .filter_map(|(_, op)| match op {
            Op::Step(s) => Some(s.task_id.as_str()),
            _ => None,
        })
        .collect();
    step_tasks.sort_unstable();
    step_tasks.dedup();
    let fences: HashMap<String, i64> = if step_tasks.is_empty() {
        HashMap::new()
    } else {
        // Looked up by key, one by one in the (sorted) array's order, which is the lock
        // order: `id = ANY($1)` with `ORDER BY id` let the planner walk the whole primary key
        // and test every id against the array (a cost growing with the table).
        sqlx::query_as::<_, (String, i64)>(
            "SELECT t.id, t.fence FROM unnest($1::text[]) WITH ORDINALITY AS c(id, n)
             JOIN tasks t ON t.id = c.id ORDER BY c.n FOR UPDATE OF t",
        )
        .bind(&step_tasks)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect()
    };
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut writes = Vec::with_capacity(ops.len());
    for (ticket, op) in ops {
        match op {
            Op::Step(s) if fences.get(&s.task_id) != Some(&int(s.fence)) => {
                outcomes.push((*ticket, Err(Failed::Fenced(s.task_id.clone()))));
            }
            _ => {
                outcomes.push((*ticket, Ok(())));
                writes.push(op);
            }
        }
    }
    apply(&mut tx, &writes).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Applies writes in one transaction: creations in one statement, revisions one by one, the
/// steps' node runs, task updates and cache entries each in as few statements as the
/// writes allow (one, unless the same row is written twice: then in rounds, in order).
async fn apply(tx: &mut PgConnection, ops: &[&Op]) -> Result<(), StoreError> {
    let mut hashes = HashMap::new();
    let mut creates = Creates::default();
    let mut nodes: Vec<NodeColumns> = Vec::new();
    let mut node_round: HashMap<(&str, &str, u32, u32), usize> = HashMap::new();
    let mut updates: Vec<TaskColumns> = Vec::new();
    let mut update_round: HashMap<&str, usize> = HashMap::new();
    let mut cache: Vec<CacheColumns> = Vec::new();
    // Leases the steps' committers extend (see `CommitBatch::lease_until`).
    let (mut extend_ids, mut extend_until, mut extend_now): (Vec<String>, Vec<i64>, Vec<i64>) =
        Default::default();
    let mut cache_round: HashMap<&str, usize> = HashMap::new();
    let (mut claimable, mut ended) = (false, false);
    for op in ops {
        match op {
            Op::CreateTask(t) => {
                creates.push(tx, t, &mut hashes).await?;
                // Workers waiting for work wake up.
                claimable = true;
            }
            Op::Revise(r) => apply_revise(tx, r, &mut hashes).await?,
            Op::Step(s) => {
                let StepWrite {
                    task_id,
                    now,
                    nodes: step_nodes,
                    tasks,
                    cache: step_cache,
                    lease_until,
                    ..
                } = s;
                if let Some(until) = lease_until {
                    extend_ids.push(task_id.clone());
                    extend_until.push(*until);
                    extend_now.push(*now);
                }
                for n in step_nodes {
                    let input = optional_column(tx, task_id, n.input.as_ref(), &mut hashes).await?;
                    let output =
                        optional_column(tx, task_id, n.output.as_ref(), &mut hashes).await?;
                    let c = round(
                        &mut nodes,
                        &mut node_round,
                        (task_id.as_str(), n.key.as_str(), n.iteration, n.attempt),
                    );
                    c.task_id.push(task_id.clone());
                    c.key.push(n.key.clone());
                    c.iteration.push(n.iteration as i64);
                    c.attempt.push(n.attempt as i64);
                    c.node_id.push(n.node_id.clone());
                    c.node_type.push(n.node_type);
                    c.state.push(n.state);
                    c.input.push(input);
                    c.output.push(output);
                    c.error
                        .push(n.error.as_deref().map(|e| super::text(e).into_owned()));
                    c.decision.push(n.decision);
                    c.started_at.push(n.started_at);
                    c.finished_at.push(n.finished_at);
                    c.cached.push(n.cached);
                    c.tally.push(n.tally.clone());
                }
                for t in tasks {
                    let result =
                        optional_column(tx, task_id, t.result.as_ref(), &mut hashes).await?;
                    let c = round(&mut updates, &mut update_round, task_id.as_str());
                    c.id.push(task_id.clone());
                    c.state.push(t.state);
                    c.result.push(result);
                    c.error
                        .push(t.error.as_deref().map(|e| super::text(e).into_owned()));
                    c.now.push(*now);
                    ended |= matches!(t.state, "finished" | "failed" | "cancelled");
                }
                for (key, node, output) in step_cache {
                    let c = round(&mut cache, &mut cache_round, key.as_str());
                    c.key.push(key.clone());
                    c.node.push(node.clone());
                    c.output.push(output.text().to_string());
                    c.now.push(*now);
                }
            }
        }
    }
    // A creation refused by the unique tick key (only `create_tick` sets one, and it inserts
    // on its own) is an error here, as on SQLite, never a task silently missing.
    if creates.insert(tx).await? != creates.len() as u64 {
        return Err(StoreError::Conflict(
            "a task of the same pipeline and tick exists already".into(),
        ));
    }
    for c in &nodes {
        sqlx::query(UPSERT_NODES)
            .bind(&c.task_id)
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
            .bind(&c.tally)
            .execute(&mut *tx)
            .await?;
    }
    if !extend_ids.is_empty() {
        // Rows locked already (the fence check): before the task updates, so an end clears it.
        // Only leases with less than half their length left: with renewals on time (every
        // third of the lease) a commit writes no more than before.
        sqlx::query(
            "UPDATE tasks t SET lease_until = u.until
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS u(id, until, now)
             WHERE t.id = u.id AND t.state IN ('pending', 'running')
               AND COALESCE(t.lease_until, 0) < (u.now + u.until) / 2",
        )
        .bind(&extend_ids)
        .bind(&extend_until)
        .bind(&extend_now)
        .execute(&mut *tx)
        .await?;
    }
    for c in &updates {
        sqlx::query(
            "UPDATE tasks t SET state = u.state, result = u.result, error = u.error,
                updated_at = u.now,
                lease_until = CASE WHEN u.state IN ('finished', 'failed', 'cancelled') THEN NULL
                    ELSE t.lease_until END
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                AS u(id, state, result, error, now)
             WHERE t.id = u.id",
        )
        .bind(&c.id)
        .bind(&c.state)
        .bind(&c.result)
        .bind(&c.error)
        .bind(&c.now)
        .execute(&mut *tx)
        .await?;
    }
    for c in &cache {
        sqlx::query(
            "INSERT INTO cache (key, node_id, output, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (key) DO UPDATE SET node_id = excluded.node_id,
                output = excluded.output, created_at = excluded.created_at",
        )
        .bind(&c.key)
        .bind(&c.node)
        .bind(&c.output)
        .bind(&c.now)
        .execute(&mut *tx)
        .await?;
    }
    // Workers learn of new tasks, and whoever follows a task of its end.
    if claimable {
        notify(tx, crate::Change::Claimable).await?;
    }
    if ended {
        notify(tx, crate::Change::Ended).await?;
    }
    Ok(())
}

/// The round a row goes in: the first that does not hold it yet (one statement cannot write
/// a row twice), created when needed.
fn round<'r, K: std::hash::Hash + Eq, C: Default>(
    rounds: &'r mut Vec<C>,
    seen: &mut HashMap<K, usize>,
    key: K,
) -> &'r mut C {
    let r = *seen.entry(key).and_modify(|r| *r += 1).or_insert(0);
    if rounds.len() <= r {
        rounds.resize_with(r + 1, C::default);
    }
    &mut rounds[r]
}

/// Tasks to create, as columns for one `UNNEST` insert.
#[derive(Default)]
pub(super) struct Creates {
    id: Vec<String>,
    pipeline: Vec<String>,
    definition: Vec<String>,
    input: Vec<String>,
    created_at: Vec<i64>,
    owner: Vec<Option<String>>,
    runner: Vec<Option<String>>,
    base_dir: Vec<Option<String>>,
    lease_until: Vec<i64>,
    scheduled_at: Vec<Option<i64>>,
    needs: Vec<Option<String>>,
}

impl Creates {
    /// Adds a task (its big input stored once in `big_values` first).
    pub(super) async fn push(
        &mut self,
        tx: &mut PgConnection,
        t: &crate::group::TaskInsert,
        hashes: &mut HashMap<(usize, usize), String>,
    ) -> Result<(), StoreError> {
        self.id.push(t.id.clone());
        self.pipeline.push(t.pipeline.clone());
        self.definition.push(t.definition.clone());
        self.input.push(column(tx, &t.id, &t.input, hashes).await?);
        self.created_at.push(t.created_at);
        self.owner.push(t.owner.clone());
        self.runner.push(t.runner.clone());
        self.base_dir.push(t.base_dir.clone());
        self.lease_until.push(t.lease_until);
        self.scheduled_at.push(t.scheduled_at);
        self.needs.push(t.needs.clone());
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.id.len()
    }

    /// Inserts them all in one statement (nothing when there are none); a task whose tick
    /// (pipeline and `scheduled_at`) has a task already is left out. How many were inserted.
    pub(super) async fn insert(&self, tx: &mut PgConnection) -> Result<u64, StoreError> {
        if self.id.is_empty() {
            return Ok(0);
        }
        let n = sqlx::query(
            "INSERT INTO tasks (id, pipeline, definition, input, state, created_at, updated_at,
                owner, runner, base_dir, fence, lease_until, scheduled_at, needs)
             SELECT id, pipeline, definition, input, 'pending', created_at, created_at, owner,
                runner, base_dir, 1, lease_until, scheduled_at, needs::jsonb
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[])
                AS c(id, pipeline, definition, input, created_at, owner, runner, base_dir,
                     lease_until, scheduled_at, needs)
             ON CONFLICT (pipeline, scheduled_at) WHERE scheduled_at IS NOT NULL DO NOTHING",
        )
        .bind(&self.id)
        .bind(&self.pipeline)
        .bind(&self.definition)
        .bind(&self.input)
        .bind(&self.created_at)
        .bind(&self.owner)
        .bind(&self.runner)
        .bind(&self.base_dir)
        .bind(&self.lease_until)
        .bind(&self.scheduled_at)
        .bind(&self.needs)
        .execute(&mut *tx)
        .await?;
        Ok(n.rows_affected())
    }
}

#[derive(Default)]
struct TaskColumns {
    id: Vec<String>,
    state: Vec<&'static str>,
    result: Vec<Option<String>>,
    error: Vec<Option<String>>,
    now: Vec<i64>,
}

#[derive(Default)]
struct CacheColumns {
    key: Vec<String>,
    node: Vec<String>,
    output: Vec<String>,
    now: Vec<i64>,
}

/// Node-run columns, one vector per column (bound as arrays).
#[derive(Default)]
struct NodeColumns {
    task_id: Vec<String>,
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
    tally: Vec<Option<String>>,
}

const UPSERT_NODES: &str = "
    INSERT INTO node_runs (task_id, key, iteration, attempt, node_id, node_type, state, input,
        output, error, decision, started_at, finished_at, cached, tally)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[],
        $13::bigint[], $14::boolean[], $15::text[])
    ON CONFLICT (task_id, key, iteration, attempt) DO UPDATE SET
        state = excluded.state,
        input = COALESCE(excluded.input, node_runs.input),
        output = excluded.output,
        error = excluded.error,
        decision = excluded.decision,
        started_at = COALESCE(node_runs.started_at, excluded.started_at),
        finished_at = excluded.finished_at,
        cached = excluded.cached,
        tally = excluded.tally";
