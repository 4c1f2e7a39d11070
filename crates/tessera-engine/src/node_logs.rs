//! The logs `tessera tasks logs ID NODE` and `GET /api/v1/tasks/{id}/nodes/{node}/log` show:
//! one node instance (`measure#3`), every instance of a loop's template node (`measure`, at
//! any depth of nested loops), every instance inside a loop (`each`) or inside one instance of
//! a nested loop (`cells#3`: `cells#3/cell#0`…), one item of a loop (`each#3`: its template
//! nodes' instances `measure#3`, `check#3`…). A name the task does not have is an error listing
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

/// The node ids a pipeline document declares: the top-level ones, each with its loop's
/// template ids when it is a loop, and every template id at any depth.
struct Declared {
    top: Vec<(String, Vec<String>)>,
    templates: std::collections::HashSet<String>,
}

fn declared(definition: &Value) -> Declared {
    fn ids(nodes: &Value) -> impl Iterator<Item = &Value> {
        nodes.as_array().into_iter().flatten()
    }
    fn walk(nodes: &Value, out: &mut std::collections::HashSet<String>) {
        for n in ids(nodes) {
            if let Some(id) = n["id"].as_str() {
                out.insert(id.to_string());
            }
            walk(&n["nodes"], out);
        }
    }
    let mut templates = std::collections::HashSet::new();
    let top = ids(&definition["nodes"])
        .filter_map(|n| {
            let id = n["id"].as_str()?.to_string();
            walk(&n["nodes"], &mut templates);
            let direct = ids(&n["nodes"])
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            Some((id, direct))
        })
        .collect();
    Declared { top, templates }
}

/// The levels of an instance key: `cells#3/tag#7` → `[("cells", 3), ("tag", 7)]`.
fn levels(key: &str) -> impl Iterator<Item = (&str, Option<u64>)> {
    key.split('/').map(|segment| match segment.split_once('#') {
        Some((id, i)) => (id, Some(i.parse().unwrap_or(u64::MAX))),
        None => (segment, None),
    })
}

/// The template id of an instance key's outermost level (`cells#3/tag#7` → `cells`).
fn template_of(key: &str) -> &str {
    levels(key).next().map_or(key, |(id, _)| id)
}

/// The logs of `node` in task `task_id` (see the module documentation).
pub fn node_logs(store: &dyn Store, task_id: &str, node: &str) -> Result<NodeLogs, EngineError> {
    let task = store
        .task_read(task_id, tessera_store::ValueRead::Sizes)?
        .ok_or_else(|| EngineError::NotFound(task_id.to_string()))?;
    let keys = store.node_keys(task_id)?;
    let declared = declared(&task.definition);
    if let Some((_, templates)) = declared.top.iter().find(|(id, _)| id == node) {
        if !templates.is_empty() {
            // A loop: its own lines (a chunked loop's) and every instance of its templates,
            // nested ones too.
            return instances(store, task_id, &keys, |k| {
                k == node || templates.iter().any(|t| t == template_of(k))
            });
        }
        // A node that may not have run yet: no lines.
        return one(store, task_id, node);
    }
    // An item of a loop (`each#5`): the instances of its templates for that item, and what
    // runs inside them (a loop run in chunks has no instances: the logs of its failed items
    // are kept under the node instance that failed, `m#5`).
    if let Some((id, i)) = node.split_once('#')
        && let Ok(item) = i.parse::<u64>()
        && let Some((_, templates)) = declared.top.iter().find(|(t, _)| t == id)
        && !templates.is_empty()
    {
        let of_item = |k: &str| {
            levels(k)
                .next()
                .is_some_and(|(t, at)| at == Some(item) && templates.iter().any(|x| x == t))
        };
        return instances(store, task_id, &keys, of_item);
    }
    if node.contains('#') {
        // An instance; one of a nested loop shows the instances inside it too.
        let inside = format!("{node}/");
        if keys.iter().any(|k| k.starts_with(&inside)) {
            return instances(store, task_id, &keys, |k| {
                k == node || k.starts_with(&inside)
            });
        }
        if keys.iter().any(|k| k == node) {
            return one(store, task_id, node);
        }
        // An item's node in a loop run in chunks: no instance row, its lines only.
        let lines = store.logs(task_id, Some(node))?;
        if !lines.is_empty() {
            return Ok(NodeLogs {
                keys: vec![node.to_string()],
                instances: false,
                lines,
            });
        }
    } else if declared.templates.contains(node) {
        // A template node, at any depth: its instances (and, for a loop, what runs in them).
        return instances(store, task_id, &keys, |k| {
            k.contains('#') && levels(k).any(|(id, _)| id == node)
        });
    }
    Err(EngineError::UnknownNode {
        task: task_id.to_string(),
        node: node.to_string(),
        nodes: declared
            .top
            .iter()
            .map(|(id, templates)| describe(id, templates, &keys))
            .collect(),
    })
}

/// One instance's (or top-level node's) lines.
fn one(store: &dyn Store, task_id: &str, key: &str) -> Result<NodeLogs, EngineError> {
    Ok(NodeLogs {
        keys: vec![key.to_string()],
        instances: false,
        lines: store.logs(task_id, Some(key))?,
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

/// Instances in item order at each level (`x#2` before `x#10`, `x#1/y#9` before `x#2/y#0`).
fn instance_order(key: &str) -> Vec<(String, u64)> {
    levels(key)
        .map(|(id, i)| (id.to_string(), i.unwrap_or(0)))
        .collect()
}

/// `id`, or for a loop `each (loop: measure; instances measure#0 … measure#9999, 10000)`.
fn describe(id: &str, templates: &[String], keys: &[String]) -> String {
    if templates.is_empty() {
        return id.to_string();
    }
    let mut inst: Vec<&String> = keys
        .iter()
        .filter(|k| {
            // The loop's own items (instances nested in them are listed by their template).
            k.contains('#') && !k.contains('/') && templates.iter().any(|t| t == template_of(k))
        })
        .collect();
    inst.sort_by_key(|k| instance_order(k));
    let runs = match inst.as_slice() {
        [] => "no instance has run".to_string(),
        [one] => format!("instance {one}"),
        [first, .., last] => format!("instances {first} … {last}, {}", inst.len()),
    };
    format!("{id} (loop: {}; {runs})", templates.join(", "))
}
