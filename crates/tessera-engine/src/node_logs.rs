//! The logs `tessera tasks logs ID NODE` and `GET /api/v1/tasks/{id}/nodes/{node}/log` show:
//! one node instance (`measure#3`), every instance of a loop's template node (`measure`), or
//! every instance inside a loop (`each`). A name the task does not have is an error listing
//! the names it has, loops with their instances.

use serde_json::Value;
use tessera_store::{LogLine, Store};

use crate::error::EngineError;

/// What a node name selected, and its lines (in the order they were written).
#[derive(Debug)]
pub struct NodeLogs {
    /// The instance keys selected: one, or a loop's instances (`measure#0`, `measure#1`…).
    pub keys: Vec<String>,
    /// True when `node` named several instances (lines then carry their `key`).
    pub instances: bool,
    pub lines: Vec<LogLine>,
}

/// The node ids a pipeline document declares, each with its loop's template ids when it is
/// a loop.
fn declared(definition: &Value) -> Vec<(String, Vec<String>)> {
    fn ids(nodes: &Value) -> impl Iterator<Item = &Value> {
        nodes.as_array().into_iter().flatten()
    }
    ids(&definition["nodes"])
        .filter_map(|n| {
            let id = n["id"].as_str()?.to_string();
            let templates = ids(&n["nodes"])
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            Some((id, templates))
        })
        .collect()
}

/// The template id of an instance key (`measure#3` → `measure`).
fn template_of(key: &str) -> &str {
    key.split_once('#').map_or(key, |(id, _)| id)
}

/// The logs of `node` in task `task_id` (see the module documentation).
pub fn node_logs(store: &dyn Store, task_id: &str, node: &str) -> Result<NodeLogs, EngineError> {
    let task = store
        .task(task_id)?
        .ok_or_else(|| EngineError::NotFound(task_id.to_string()))?;
    let keys = store.node_keys(task_id)?;
    let nodes = declared(&task.definition);
    if keys.iter().any(|k| k == node) || nodes.iter().any(|(id, _)| id == node) {
        // An instance, or a top-level node (that may not have run yet: no lines).
        if nodes.iter().any(|(id, t)| id == node && !t.is_empty()) {
            // A loop: every instance of its templates.
            let templates = &nodes.iter().find(|(id, _)| id == node).expect("found").1;
            return instances(store, task_id, &keys, |k| {
                templates.iter().any(|t| t == template_of(k))
            });
        }
        return Ok(NodeLogs {
            keys: vec![node.to_string()],
            instances: false,
            lines: store.logs(task_id, Some(node))?,
        });
    }
    if nodes.iter().any(|(_, t)| t.iter().any(|t| t == node)) {
        return instances(store, task_id, &keys, |k| {
            k != node && template_of(k) == node
        });
    }
    Err(EngineError::UnknownNode {
        task: task_id.to_string(),
        node: node.to_string(),
        nodes: nodes
            .iter()
            .map(|(id, templates)| describe(id, templates, &keys))
            .collect(),
    })
}

/// The instances whose key `selected`, with their lines.
fn instances(
    store: &dyn Store,
    task_id: &str,
    keys: &[String],
    selected: impl Fn(&str) -> bool,
) -> Result<NodeLogs, EngineError> {
    let mut chosen: Vec<String> = keys.iter().filter(|k| selected(k)).cloned().collect();
    chosen.sort_by_key(|k| instance_order(k));
    let mut lines: Vec<LogLine> = store
        .logs(task_id, None)?
        .into_iter()
        .filter(|l| selected(&l.key))
        .collect();
    // Instances in item order, each one's lines in the order they were written (a stable
    // sort: instances of a loop run in parallel and interleave in the store).
    lines.sort_by_cached_key(|l| instance_order(&l.key));
    Ok(NodeLogs {
        keys: chosen,
        instances: true,
        lines,
    })
}

/// Instances in item order (`x#2` before `x#10`).
fn instance_order(key: &str) -> (String, u64) {
    match key.split_once('#') {
        Some((id, i)) => (id.to_string(), i.parse().unwrap_or(u64::MAX)),
        None => (key.to_string(), 0),
    }
}

/// `id`, or for a loop `each (loop: measure; instances measure#0 … measure#9999, 10000)`.
fn describe(id: &str, templates: &[String], keys: &[String]) -> String {
    if templates.is_empty() {
        return id.to_string();
    }
    let mut inst: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains('#') && templates.iter().any(|t| t == template_of(k)))
        .collect();
    inst.sort_by_key(|k| instance_order(k));
    let runs = match inst.as_slice() {
        [] => "no instance has run".to_string(),
        [one] => format!("instance {one}"),
        [first, .., last] => format!("instances {first} … {last}, {}", inst.len()),
    };
    format!("{id} (loop: {}; {runs})", templates.join(", "))
}
