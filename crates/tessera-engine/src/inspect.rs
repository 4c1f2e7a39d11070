//! Read-side views of tasks shared by the CLI and the HTTP API: the task document of
//! `tasks show --json` / `GET /api/v1/tasks/{id}`, and the pages of a loop's items.

mod loops;

pub use loops::{FailedItem, Item, ItemPage, ItemState, LoopSummary, loop_items};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tessera_core::{Data, time};
use tessera_store::{NodeRunRow, Store, ValueRead};

use crate::error::EngineError;

/// The task document. Serialised as it is, its big values go out as the text they are kept
/// as (never expanded into JSON trees).
#[derive(Debug, Serialize)]
pub struct TaskDocument {
    pub id: String,
    pub pipeline: String,
    pub state: tessera_core::scheduler::TaskState,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub created_at: u64,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub updated_at: u64,
    pub input: Data,
    pub result: Option<Data>,
    /// With [`Values::Sizes`]: the size of a big input or result left out (`null` above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
    pub error: Option<String>,
    /// The schedule's tick the task was created for; absent for a task started by hand.
    #[serde(
        serialize_with = "tessera_core::time::ser_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_at: Option<u64>,
    pub counts: Map<String, Value>,
    /// The nodes outside loop branches (a loop's items are summarised under `loops` and
    /// paged through `…/nodes/{loop}/items`).
    pub nodes: Vec<NodeSummary>,
    pub runs: Vec<NodeRunRow>,
    pub loops: Vec<LoopSummary>,
    pub batches: Vec<Value>,
    /// The definitions (and inputs) the task ran with before a resume with a fix replaced
    /// them, oldest first; the current definition is the pipeline's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<tessera_store::TaskRevision>,
}

/// A node instance's latest attempt: a struct, not a JSON map, so that a 10,000-item loop's
/// document costs no per-field allocations.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    pub key: String,
    pub node: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub state: tessera_core::scheduler::NodeState,
    pub iteration: u32,
    pub attempt: u32,
    /// Attempts of its latest iteration.
    pub attempts: usize,
    pub iterations: u32,
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub started_at: Option<u64>,
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub finished_at: Option<u64>,
    pub duration_ms: Option<u64>,
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// The task with its nodes: for each node outside loop branches its latest attempt (state,
/// timings, attempts, error), every attempt of every iteration under `runs`, and its loops
/// summarised. Linear in the runs
/// (after one sort): each instance's runs are contiguous once sorted, so no map is needed.
/// How a task document shows big values (over 64 KiB of JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// As they are: the input and the result whole (`?values=full`, `--full`).
    Full,
    /// By their size: a million-item task's document stays small (the result has its own
    /// route, a loop's items their pages).
    Sizes,
}

pub fn task_document(
    store: &dyn Store,
    task_id: &str,
    values: Values,
) -> Result<TaskDocument, EngineError> {
    let read = match values {
        Values::Full => ValueRead::Whole,
        Values::Sizes => ValueRead::Sizes,
    };
    let task = store
        .task_read(task_id, read)?
        .ok_or_else(|| EngineError::NotFound(task_id.to_string()))?;
    // Runs' big values (a loop's million items, passed on by its successors) are given by
    // their size only, whatever `values` says: the result has its own route.
    let mut runs = store.node_runs_read(task_id, ValueRead::Sizes)?;
    let order = declaration_order(&task.definition);
    // The key is computed once per run (not per comparison); the key itself breaks ties
    // between ids the pipeline does not declare.
    runs.sort_by_cached_key(|r| {
        (
            position(&order, &r.key),
            r.key.clone(),
            r.iteration,
            r.attempt,
        )
    });
    let loops = loops::summaries(store, task_id, &task.definition, &runs)?;
    // Instances of loop branches are counted in their loop's summary, not listed; big values
    // read whole (a loop's without a tally) by their size only.
    runs.retain(|r| !r.key.contains('#'));
    for r in &mut runs {
        if r.input.as_ref().is_some_and(Data::is_text) {
            r.input_bytes = r.input.take().map(|d| d.json_len() as u64);
        }
        if r.output.as_ref().is_some_and(Data::is_text) {
            r.output_bytes = r.output.take().map(|d| d.json_len() as u64);
        }
    }
    let mut nodes = Vec::new();
    let mut counts = Map::new();
    for group in runs.chunk_by(|a, b| a.key == b.key) {
        let latest = group.last().expect("chunks are not empty");
        let attempts = group
            .iter()
            .rev()
            .take_while(|r| r.iteration == latest.iteration)
            .count();
        let c = counts.entry(latest.state.to_string()).or_insert(json!(0));
        *c = json!(c.as_u64().unwrap_or(0) + 1);
        nodes.push(NodeSummary {
            key: latest.key.clone(),
            node: latest.node.clone(),
            node_type: latest.node_type.clone(),
            state: latest.state,
            iteration: latest.iteration,
            attempt: latest.attempt,
            attempts,
            iterations: latest.iteration + 1,
            started_at: latest.started_at,
            finished_at: latest.finished_at,
            duration_ms: match (latest.started_at, latest.finished_at) {
                (Some(s), Some(f)) => Some(f.saturating_sub(s)),
                _ => None,
            },
            cached: latest.cached,
            error: latest.error.clone(),
            decision: latest.decision.clone(),
        });
    }
    let batches = batch_documents(store, task_id)?;
    let revisions = store.task_revisions(task_id)?;
    Ok(TaskDocument {
        id: task.id,
        pipeline: task.pipeline,
        state: task.state,
        created_at: task.created_at,
        updated_at: task.updated_at,
        input: task.input,
        result: task.result,
        input_bytes: task.input_bytes,
        result_bytes: task.result_bytes,
        error: task.error,
        scheduled_at: task.scheduled_at,
        counts,
        nodes,
        runs,
        loops,
        batches,
        revisions,
    })
}

/// Each batch job of the task: state, totals, chunks, and every skipped or failed line.
fn batch_documents(store: &dyn Store, task_id: &str) -> Result<Vec<Value>, EngineError> {
    let mut out = Vec::new();
    for job in store.batch_jobs(task_id)? {
        let chunks = store.batch_chunks(&job.id)?;
        let lines = store.batch_lines(&job.id)?;
        let committed: Vec<_> = chunks
            .iter()
            .filter(|c| c.state == tessera_store::ChunkState::Committed)
            .collect();
        let sum = |f: fn(&tessera_store::BatchChunkRow) -> u64| -> u64 {
            committed.iter().map(|c| f(c)).sum()
        };
        let mut states = Map::new();
        for c in &chunks {
            let n = states.entry(c.state.to_string()).or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
        let chunk_docs: Vec<Value> = chunks
            .iter()
            .map(|c| {
                json!({
                    "index": c.index,
                    "state": c.state,
                    "first_line": c.first_line,
                    "records": c.records,
                    "bytes": [c.start, c.end],
                    "read": c.read,
                    "written": c.written,
                    "skipped": c.skipped,
                    "filtered": c.filtered,
                    "attempts": c.attempts,
                    "error": c.error,
                    "committed_at": time::json(c.committed_at),
                })
            })
            .collect();
        out.push(json!({
            "key": job.id.key,
            "iteration": job.id.iteration,
            "state": job.state,
            "starts": job.starts,
            "source": job.source,
            "counts": {
                "records": job.plan["records"],
                "read": sum(|c| c.read),
                "written": sum(|c| c.written),
                "skipped": sum(|c| c.skipped),
                "filtered": sum(|c| c.filtered),
                "chunks": chunks.len(),
                "chunk_states": states,
            },
            "error": job.error,
            "output": job.output,
            "chunks": chunk_docs,
            "lines": lines,
        }));
    }
    Ok(out)
}

/// Position of each node id in the pipeline document: top-level nodes in order, a loop's
/// template nodes right after their loop (`(top, 1 + template index)`).
fn declaration_order(definition: &Value) -> std::collections::HashMap<String, (usize, usize)> {
    // Each id: the top-level node it is in, and its rank in declaration order (loop bodies,
    // nested ones too, right after their loop).
    fn walk(
        nodes: &[Value],
        top: Option<usize>,
        rank: &mut usize,
        order: &mut std::collections::HashMap<String, (usize, usize)>,
    ) {
        for (i, node) in nodes.iter().enumerate() {
            let top = top.unwrap_or(i);
            if let Some(id) = node["id"].as_str() {
                order.insert(id.to_string(), (top, *rank));
                *rank += 1;
            }
            if let Some(inner) = node["nodes"].as_array() {
                walk(inner, Some(top), rank, order);
            }
        }
    }
    let mut order = std::collections::HashMap::new();
    let nodes = definition["nodes"].as_array().cloned().unwrap_or_default();
    walk(&nodes, None, &mut 0, &mut order);
    order
}

/// Sort key of a node instance key (`id`, `id#index`, `loop#i/inner#j` in nested loops): the
/// top-level node, then per level the loop index and the declaration rank.
fn position(order: &std::collections::HashMap<String, (usize, usize)>, key: &str) -> Vec<usize> {
    let mut out = Vec::with_capacity(4);
    for (level, segment) in key.split('/').enumerate() {
        let (id, index) = match segment.split_once('#') {
            Some((id, i)) => (id, i.parse::<usize>().unwrap_or(0)),
            None => (segment, 0),
        };
        let (top, rank) = order.get(id).copied().unwrap_or((usize::MAX, 0));
        if level == 0 {
            out.push(top);
        }
        out.push(index);
        out.push(rank);
    }
    out
}
