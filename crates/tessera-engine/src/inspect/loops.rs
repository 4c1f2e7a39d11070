//! Loops as the task document and the items pages show them: a loop summarised (counts per
//! state, first failures) instead of listing its instances, and its items paged by index —
//! from its output once it finished, from its committed chunks while it runs in chunks, from
//! its branches' node instances when it runs as branches.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tessera_core::Data;
use tessera_core::scheduler::NodeState;
use tessera_store::{LoopKey, NodeRunRow, Store};

use crate::error::EngineError;

/// Failures a loop's summary shows; the items pages list them all.
const FIRST_FAILURES: usize = tessera_core::loops::LoopTally::FIRST_FAILED;

/// One loop of a task, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct LoopSummary {
    /// The loop's instance key (`each`, or `cells#3` inside another loop's branch).
    pub key: String,
    /// `chunks` (its items evaluated in chunks) or `branches` (node instances per item).
    pub mode: &'static str,
    /// Its items, when known (a finished loop, or one whose branches ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// Items per state (`pending`, `running`, `finished`, `failed`).
    pub counts: BTreeMap<String, u64>,
    /// Chunks committed (chunks mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
    /// The first failed items, in item order.
    pub failed: Vec<FailedItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedItem {
    pub index: u64,
    /// The node instance that failed (`check#41`).
    pub node: String,
    pub error: String,
}

/// What an item is, as the items pages filter them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Running,
    Finished,
    Failed,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Running => "running",
            ItemState::Finished => "finished",
            ItemState::Failed => "failed",
        }
    }

    pub fn parse(word: &str) -> Option<ItemState> {
        Some(match word {
            "pending" => ItemState::Pending,
            "running" => ItemState::Running,
            "finished" => ItemState::Finished,
            "failed" => ItemState::Failed,
            _ => return None,
        })
    }
}

/// One item of a loop.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub index: u64,
    pub state: ItemState,
    /// Its collected value (finished items whose value is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Data>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A page of a loop's items.
#[derive(Debug, Clone, Serialize)]
pub struct ItemPage {
    pub key: String,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    pub offset: u64,
    pub limit: u64,
    pub items: Vec<Item>,
}

/// The instance keys of a loop's branches start with this (`cells#3/` inside another loop).
fn branch_prefix(loop_key: &str) -> String {
    if loop_key.contains('#') {
        format!("{loop_key}/")
    } else {
        String::new()
    }
}

/// The item index of an instance of `loop_key`'s branches, when `key` is one.
fn item_of(key: &str, prefix: &str, templates: &[String]) -> Option<u64> {
    let rest = key.strip_prefix(prefix)?;
    let first = rest.split('/').next()?;
    let (id, i) = first.split_once('#')?;
    templates.iter().any(|t| t == id).then(|| i.parse().ok())?
}

/// The template node ids of the loop whose node id is `id`, anywhere in the definition.
/// How many loops hold node `id` in a definition (0 for a node of the pipeline itself).
fn loop_depth(definition: &Value, id: &str) -> Option<usize> {
    fn find(nodes: &Value, id: &str, depth: usize) -> Option<usize> {
        for n in nodes.as_array()? {
            if n["id"].as_str() == Some(id) {
                return Some(depth);
            }
            if let Some(found) = find(&n["nodes"], id, depth + 1) {
                return Some(found);
            }
        }
        None
    }
    find(&definition["nodes"], id, 0)
}

pub(crate) fn templates_of(definition: &Value, id: &str) -> Option<Vec<String>> {
    fn find<'a>(nodes: &'a Value, id: &str) -> Option<&'a Value> {
        for n in nodes.as_array()? {
            if n["id"].as_str() == Some(id) {
                return Some(n);
            }
            if let Some(found) = find(&n["nodes"], id) {
                return Some(found);
            }
        }
        None
    }
    let node = find(&definition["nodes"], id)?;
    let ids: Vec<String> = node["nodes"]
        .as_array()?
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// The ids of the loops a definition declares, nested ones too (`rows`, `cells`).
fn loop_ids(definition: &Value) -> Vec<String> {
    fn walk(nodes: &Value, out: &mut Vec<String>) {
        for n in nodes.as_array().into_iter().flatten() {
            if n["type"] == "loop"
                && let Some(id) = n["id"].as_str()
            {
                out.push(id.to_string());
            }
            walk(&n["nodes"], out);
        }
    }
    let mut out = Vec::new();
    walk(&definition["nodes"], &mut out);
    out
}

/// The node id of an instance key (`cells#3/cell#7` → `cell`).
fn node_id(key: &str) -> &str {
    let last = key.rsplit('/').next().unwrap_or(key);
    last.split_once('#').map_or(last, |(id, _)| id)
}

/// The `failed` entries of a loop's output.
fn failed_of(output: &Data) -> Vec<FailedItem> {
    output
        .get("failed")
        .map(|f| f.into_value())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|f| FailedItem {
            index: f["index"].as_u64().unwrap_or(0),
            node: f["node"].as_str().unwrap_or_default().to_string(),
            error: f["error"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Every loop instance among `top` (rows of instances that are not in a loop's branch) and
/// `instances` (the rest), summarised.
pub(crate) fn summaries(
    store: &dyn Store,
    task_id: &str,
    definition: &Value,
    runs: &[NodeRunRow],
) -> Result<Vec<LoopSummary>, EngineError> {
    let chunked: BTreeMap<(String, u32), tessera_store::LoopSummary> = store
        .loop_summaries(task_id)?
        .into_iter()
        .map(|s| ((s.key.clone(), s.iteration), s))
        .collect();
    // The latest attempt of each loop instance (runs are sorted by key, then attempt).
    let mut loops: Vec<&NodeRunRow> = Vec::new();
    for r in runs.iter().filter(|r| r.node_type == "loop") {
        match loops.last_mut() {
            Some(last) if last.key == r.key => *last = r,
            _ => loops.push(r),
        }
    }
    // Each branch instance under its loop, in one pass: `cells#3/cell#7` is loop `cells#3`'s
    // (item 7); `measure#2` is the top-level loop's whose template holds `measure`.
    let mut owner_of_template: std::collections::HashMap<String, String> = Default::default();
    for l in &loops {
        if !l.key.contains('#')
            && let Some(templates) = templates_of(definition, &l.key)
        {
            for t in templates {
                owner_of_template.insert(t, l.key.clone());
            }
        }
    }
    let mut members: std::collections::HashMap<&str, Vec<(u64, &NodeRunRow)>> = Default::default();
    for r in runs {
        let (parent, last) = match r.key.rsplit_once('/') {
            Some((parent, last)) => (Some(parent), last),
            None => (None, r.key.as_str()),
        };
        let Some((id, i)) = last.split_once('#') else {
            continue;
        };
        let Ok(i) = i.parse::<u64>() else { continue };
        let owner = match parent {
            Some(p) => p,
            None => match owner_of_template.get(id) {
                Some(o) => o.as_str(),
                None => continue,
            },
        };
        members.entry(owner).or_default().push((i, r));
    }
    let mut out = Vec::new();
    for l in loops {
        out.push(match members.get(l.key.as_str()) {
            Some(m) => branches_summary(l, m),
            None => chunked_summary(
                store,
                task_id,
                l,
                chunked.get(&(l.key.clone(), l.iteration)),
            )?,
        });
    }
    Ok(out)
}

fn chunked_summary(
    store: &dyn Store,
    task_id: &str,
    l: &NodeRunRow,
    chunks: Option<&tessera_store::LoopSummary>,
) -> Result<LoopSummary, EngineError> {
    let mut counts = BTreeMap::new();
    let finished = match (l.state, &l.tally, &l.output) {
        (NodeState::Finished, Some(tally), _) => Some((
            tally.items,
            tally.failed,
            tally
                .first_failed
                .iter()
                .map(|f| FailedItem {
                    index: f.index as u64,
                    node: f.node.clone(),
                    error: f.error.clone(),
                })
                .collect(),
        )),
        // Recorded before loops had tallies: counted in its output, in place (the million
        // values are not copied to be counted).
        (NodeState::Finished, None, Some(output)) => {
            let mut failed = failed_of(output);
            let n = output.member_list_len("items").unwrap_or(0) as u64;
            let failed_n = failed.len() as u64;
            failed.truncate(FIRST_FAILURES);
            Some((n, failed_n, failed))
        }
        _ => None,
    };
    if let Some((n, failed_n, failed)) = finished {
        counts.insert("finished".into(), n.saturating_sub(failed_n));
        if failed_n > 0 {
            counts.insert("failed".into(), failed_n);
        }
        return Ok(LoopSummary {
            key: l.key.clone(),
            mode: "chunks",
            items: Some(n),
            counts,
            chunks: chunks.map(|c| c.chunks),
            failed,
        });
    }
    let (done, failed_n, total) =
        chunks.map_or((0, 0, None), |c| (c.items, c.failed, Some(c.total)));
    // Before its first chunk is committed, its running record says how many items it has.
    let total = total.or(l.tally.as_ref().map(|t| t.items));
    counts.insert("finished".into(), done - failed_n);
    if failed_n > 0 {
        counts.insert("failed".into(), failed_n);
    }
    if let Some(total) = total {
        counts.insert("pending".into(), total.saturating_sub(done));
    }
    let key = LoopKey {
        task_id: task_id.to_string(),
        key: l.key.clone(),
        iteration: l.iteration,
    };
    let failed = store
        .loop_failures(&key, 0, FIRST_FAILURES as u64)?
        .into_iter()
        .map(|f| FailedItem {
            index: f.item,
            node: f.node,
            error: f.error,
        })
        .collect();
    Ok(LoopSummary {
        key: l.key.clone(),
        mode: "chunks",
        items: total,
        counts,
        chunks: chunks.map(|c| c.chunks),
        failed,
    })
}

fn branches_summary(l: &NodeRunRow, members: &[(u64, &NodeRunRow)]) -> LoopSummary {
    // Each instance's latest attempt, then each item's state from its instances'.
    let mut latest: BTreeMap<&str, (u64, &NodeRunRow)> = BTreeMap::new();
    for &(i, r) in members {
        latest.insert(r.key.as_str(), (i, r));
    }
    let mut items: BTreeMap<u64, (ItemState, Option<&NodeRunRow>)> = BTreeMap::new();
    for &(i, r) in latest.values() {
        let state = match r.state {
            NodeState::Failed => ItemState::Failed,
            NodeState::Running | NodeState::Ready | NodeState::Waiting => ItemState::Running,
            _ => ItemState::Finished,
        };
        let entry = items.entry(i).or_insert((ItemState::Finished, None));
        // Failed wins over running, running over finished.
        let rank = |s: ItemState| match s {
            ItemState::Failed => 2,
            ItemState::Running | ItemState::Pending => 1,
            ItemState::Finished => 0,
        };
        if rank(state) > rank(entry.0) {
            *entry = (state, (state == ItemState::Failed).then_some(r));
        }
    }
    let mut counts = BTreeMap::new();
    let mut failed = Vec::new();
    for (&i, (state, row)) in &items {
        *counts.entry(state.as_str().to_string()).or_insert(0) += 1;
        if let Some(r) = row {
            failed.push(FailedItem {
                index: i,
                node: r.key.clone(),
                error: r.error.clone().unwrap_or_default(),
            });
        }
    }
    let total = match (l.state, &l.tally, &l.output) {
        (_, Some(tally), _) => Some(tally.items as usize),
        (NodeState::Finished, None, Some(o)) => o.member_list_len("items"),
        _ => None,
    };
    let total = total.map_or(items.len() as u64, |n| n as u64);
    let seen: u64 = counts.values().sum();
    if total > seen && l.state == NodeState::Running {
        counts.insert("pending".into(), total - seen);
    }
    failed.truncate(FIRST_FAILURES);
    LoopSummary {
        key: l.key.clone(),
        mode: "branches",
        items: Some(total),
        counts,
        chunks: None,
        failed,
    }
}

/// A page of loop `loop_key`'s items (see the module documentation).
pub fn loop_items(
    store: &dyn Store,
    task_id: &str,
    loop_key: &str,
    state: Option<ItemState>,
    offset: u64,
    limit: u64,
) -> Result<ItemPage, EngineError> {
    let task = store
        .task_read(task_id, tessera_store::ValueRead::Sizes)?
        .ok_or_else(|| EngineError::NotFound(task_id.to_string()))?;
    let unknown = || EngineError::NotALoop {
        task: task_id.to_string(),
        node: loop_key.to_string(),
        loops: loop_ids(&task.definition),
    };
    // A loop's key holds one `#i` per loop around it (`cells#29`: the loop `cells` in item 29
    // of the loop holding it); `each#5` of a top-level loop names an item, not a loop.
    if loop_depth(&task.definition, node_id(loop_key)) != Some(loop_key.matches('#').count()) {
        return Err(unknown());
    }
    let templates = templates_of(&task.definition, node_id(loop_key)).ok_or_else(unknown)?;
    // By size: a million-item loop's output is read once below, not with every run's values.
    let runs = store.node_runs_read(task_id, tessera_store::ValueRead::Sizes)?;
    let Some(l) = runs
        .iter()
        .filter(|r| r.key == loop_key)
        .max_by_key(|r| (r.iteration, r.attempt))
    else {
        // Not started: nothing to page through yet.
        return Ok(page(loop_key, "chunks", None, offset, limit, Vec::new()));
    };
    let prefix = branch_prefix(loop_key);
    let mut members: BTreeMap<u64, Vec<&NodeRunRow>> = BTreeMap::new();
    for r in &runs {
        if let Some(i) = item_of(&r.key, &prefix, &templates) {
            members.entry(i).or_default().push(r);
        }
    }
    let output = match (&l.output, l.output_bytes) {
        (None, Some(_)) if l.state == NodeState::Finished => {
            store.node_output(task_id, &l.key, l.iteration, l.attempt)?
        }
        (o, _) => o.clone(),
    };
    let finished = match (l.state, &output) {
        (NodeState::Finished, Some(o)) => Some((o.get("items"), failed_of(o))),
        _ => None,
    };
    if let Some((Some(values), failed)) = &finished {
        // Done: its output holds every value; failed items collected null.
        let list = values.list_text().ok_or_else(unknown)?;
        let failed: BTreeMap<u64, &FailedItem> = failed.iter().map(|f| (f.index, f)).collect();
        let all = (0..list.len() as u64).map(|i| match failed.get(&i) {
            Some(f) => failed_item(i, &f.node, &f.error),
            None => finished_item(i, None),
        });
        let mut items = select(all, state, offset, limit);
        for it in &mut items {
            if it.state == ItemState::Finished {
                it.value = Some(list.item(it.index as usize));
            }
        }
        let mode = if members.is_empty() {
            "chunks"
        } else {
            "branches"
        };
        return Ok(page(
            loop_key,
            mode,
            Some(list.len() as u64),
            offset,
            limit,
            items,
        ));
    }
    if !members.is_empty() {
        let all = members.iter().map(|(&i, rs)| {
            let mut latest: BTreeMap<&str, &NodeRunRow> = BTreeMap::new();
            for r in rs {
                latest.insert(r.key.as_str(), r);
            }
            let failed = latest.values().find(|r| r.state == NodeState::Failed);
            let running = latest
                .values()
                .any(|r| matches!(r.state, NodeState::Running | NodeState::Ready));
            Item {
                index: i,
                state: match (failed, running) {
                    (Some(_), _) => ItemState::Failed,
                    (None, true) => ItemState::Running,
                    (None, false) => ItemState::Finished,
                },
                value: None,
                node: failed.map(|r| r.key.clone()),
                error: failed.and_then(|r| r.error.clone()),
            }
        });
        let items = select(all, state, offset, limit);
        return Ok(page(loop_key, "branches", None, offset, limit, items));
    }
    // Running (or stopped) in chunks: the committed chunks' values and failed items; the
    // other items, up to the loop's total, are pending.
    let key = LoopKey {
        task_id: task_id.to_string(),
        key: loop_key.to_string(),
        iteration: l.iteration,
    };
    let total = store
        .loop_summaries(task_id)?
        .into_iter()
        .find(|s| s.key == loop_key && s.iteration == l.iteration)
        .map(|s| s.total);
    if state == Some(ItemState::Failed) {
        let items = store
            .loop_failures(&key, offset, limit)?
            .into_iter()
            .map(|f| failed_item(f.item, &f.node, &f.error))
            .collect();
        return Ok(page(loop_key, "chunks", total, offset, limit, items));
    }
    // Pages of one state are counted through the chunks from the start; an unfiltered page
    // reads only the chunks over its range.
    let (first, count) = match state {
        None => (offset, limit),
        Some(_) => (0, u64::MAX),
    };
    let end = total.unwrap_or(0).min(first.saturating_add(count));
    let chunks = store.loop_chunks_over(&key, first, count)?;
    let failures: BTreeMap<u64, tessera_store::LoopFailureRow> =
        if chunks.iter().any(|c| c.failed > 0) {
            store
                .loop_failures(&key, 0, u64::MAX)?
                .into_iter()
                .map(|f| (f.item, f))
                .collect()
        } else {
            BTreeMap::new()
        };
    // Items are produced in order and kept only when on the page (no list of a million).
    let mut page_items: Vec<Item> = Vec::new();
    let mut skipped = 0u64;
    let mut take = |item: Item| -> bool {
        if state.is_some_and(|s| s != item.state) {
            return true;
        }
        match state {
            None if item.index < offset => {}
            Some(_) if skipped < offset => skipped += 1,
            _ => page_items.push(item),
        }
        page_items.len() < limit as usize
    };
    let mut stopped = false;
    let mut at = first;
    'chunks: for c in &chunks {
        for i in at..c.first {
            if !take(pending(i)) {
                stopped = true;
                break 'chunks;
            }
        }
        let list = Data::from_json(&format!("[{}]", c.values))
            .ok()
            .and_then(|d| d.list_text());
        for k in 0..c.count {
            let i = c.first + k;
            let item = match failures.get(&i) {
                Some(f) => failed_item(i, &f.node, &f.error),
                None => finished_item(i, list.as_ref().map(|l| l.item(k as usize))),
            };
            if !take(item) {
                stopped = true;
                break 'chunks;
            }
        }
        at = c.first + c.count;
    }
    if !stopped {
        for i in at.max(first)..end {
            if !take(pending(i)) {
                break;
            }
        }
    }
    Ok(page(loop_key, "chunks", total, offset, limit, page_items))
}

fn failed_item(index: u64, node: &str, error: &str) -> Item {
    Item {
        index,
        state: ItemState::Failed,
        value: None,
        node: Some(node.to_string()),
        error: Some(error.to_string()),
    }
}

fn finished_item(index: u64, value: Option<Data>) -> Item {
    Item {
        index,
        state: ItemState::Finished,
        value,
        node: None,
        error: None,
    }
}

fn pending(index: u64) -> Item {
    Item {
        index,
        state: ItemState::Pending,
        value: None,
        node: None,
        error: None,
    }
}

/// The items of `state` (all when `None`), `limit` of them from the `offset`-th.
fn select(
    all: impl Iterator<Item = Item>,
    state: Option<ItemState>,
    offset: u64,
    limit: u64,
) -> Vec<Item> {
    all.filter(|i| state.is_none_or(|s| s == i.state))
        .skip(offset as usize)
        .take(limit as usize)
        .collect()
}

fn page(
    key: &str,
    mode: &'static str,
    total: Option<u64>,
    offset: u64,
    limit: u64,
    items: Vec<Item>,
) -> ItemPage {
    ItemPage {
        key: key.to_string(),
        mode,
        total,
        offset,
        limit,
        items,
    }
}
