//! Loops run in chunks: a loop whose template holds only in-process nodes (`node`, `branch`,
//! scripts) is not fanned out into node instances. Its items are evaluated by an
//! [`ItemProgram`], compiled once per template, a chunk of items at a time, by the engine on
//! its CPU threads; each chunk's values are committed together, and the loop's result is the
//! chunks' values in item order.
//!
//! The program is the scheduler's semantics for one branch, without instances or records:
//! the same input resolution, scripts, branch arms and skips, the same failure messages.
//! Templates it cannot run exactly so (another node kind, `cache`, `pool`, `ready` rules,
//! cycles, nested loops) keep the scheduler's per-item branches ([`ItemProgram::compile`]
//! says which).
//!
//! Pure: no I/O. Most templates also compile to a [`fast`] form (values built as text, scripts
//! of one assignment evaluated natively) that gives the same text as the general path.

mod fast;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::data::{Data, ListText};
use crate::datapath::{DataPath, PathRoot, Section};
use crate::model::{Directive, InputSpec, LoopSpec, Node, NodeKind};
use crate::plan::{NodeRef, Plan, TemplatePlan};
use crate::scheduler::{Arm, NodeState};
use crate::script::{ScriptContext, Scripts};

/// How a loop template runs, decided once per template.
#[derive(Debug)]
pub struct ItemProgram {
    /// The loop's template (a copy: the plan holds the programs).
    t: TemplatePlan,
    spec: LoopSpec,
    /// Template nodes in an order where each comes after its predecessors.
    order: Vec<usize>,
    fast: Option<fast::Fast>,
    /// The template and `collect` as text, for fingerprints of its chunks.
    definition: String,
}

/// What a loop's items read from outside its template, frozen when the loop starts (nothing
/// outside changes while it runs).
#[derive(Debug, Clone)]
pub struct LoopWork {
    pub program: Arc<ItemProgram>,
    pub items: ListText,
    /// `{out, input, params, state}` of the nodes outside the template that its scripts and
    /// paths name, by id.
    pub outer: HashMap<String, Data>,
    /// Item and index of the loop branches around the loop (a loop nested in another's
    /// template), innermost first.
    pub around: Vec<(Data, usize)>,
    /// Prefix of the instance keys of its items (`cells#3/` inside another loop's branch).
    pub key_prefix: String,
    pub task_id: String,
    pub pipeline_name: String,
    pub scheduled_at: Option<u64>,
    /// Items that may fail without failing the loop (`max_failed_items`).
    pub max_failed: u64,
}

/// An item whose branch failed: the node instance (`m#5`) and why, as the scheduler says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemFailure {
    pub index: usize,
    pub node: String,
    pub error: String,
}

impl ItemFailure {
    /// The task's error when this failure fails the loop.
    pub fn task_error(&self) -> String {
        format!("node `{}` failed (attempt 1): {}", self.node, self.error)
    }
}

/// What a finished loop did with its items, recorded with the loop's node run so that a
/// task's document summarises a million-item loop without reading its values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoopTally {
    pub items: u64,
    pub failed: u64,
    /// The first [`LoopTally::FIRST_FAILED`] failures, in item order.
    pub first_failed: Vec<ItemFailure>,
}

impl LoopTally {
    pub const FIRST_FAILED: usize = 10;

    /// The tally of `items` items of which `failed` failed (in any order).
    pub fn of(items: usize, failed: &[ItemFailure]) -> LoopTally {
        Self::of_failures(
            items,
            failed
                .iter()
                .map(|f| (f.index, f.node.as_str(), f.error.as_str())),
        )
    }

    /// The tally from failures as `(index, node, error)`: only the first ones are copied.
    pub fn of_failures<'a>(
        items: usize,
        failed: impl Iterator<Item = (usize, &'a str, &'a str)>,
    ) -> LoopTally {
        let mut all: Vec<(usize, &str, &str)> = failed.collect();
        let count = all.len() as u64;
        all.sort_unstable_by_key(|f| f.0);
        LoopTally {
            items: items as u64,
            failed: count,
            first_failed: all
                .into_iter()
                .take(Self::FIRST_FAILED)
                .map(|(index, node, error)| ItemFailure {
                    index,
                    node: node.to_string(),
                    error: error.to_string(),
                })
                .collect(),
        }
    }
}

/// The values of a chunk of items, in order, as JSON text separated by commas (`1,3,5`; a
/// failed item's value is `null`), and its failed items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkValues {
    pub values: String,
    pub failed: Vec<ItemFailure>,
}

impl ItemProgram {
    /// The program of a loop's template, or `None` when its items must run as branches of
    /// node instances.
    pub fn compile(plan: &Plan, loop_ref: NodeRef) -> Option<ItemProgram> {
        let NodeKind::Loop(spec) = &plan.node(loop_ref).kind else {
            return None;
        };
        let template = *plan.loop_templates.get(&loop_ref)?;
        let t = &plan.templates[template];
        if !t.topo.back_edges.is_empty() || t.nodes.is_empty() {
            return None;
        }
        let in_process = t.nodes.iter().all(|n| {
            matches!(n.kind, NodeKind::Node | NodeKind::Branch(_))
                && !n.cache
                && n.pool.is_none()
                && n.ready.is_none()
        });
        // The first node starts the branch; any other root would never start.
        let roots_ok =
            t.topo.preds[0].is_empty() && (1..t.nodes.len()).all(|i| !t.topo.preds[i].is_empty());
        if !in_process || !roots_ok {
            return None;
        }
        let order = topological(&t.topo.preds, &t.topo.succs)?;
        let mut program = ItemProgram {
            t: t.clone(),
            spec: spec.clone(),
            order,
            fast: None,
            definition: format!("{:?}", spec),
        };
        program.fast = fast::Fast::compile(&program);
        Some(program)
    }

    /// The template's definition as text: what a chunk's values were computed by.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// Whether items are built as text without the general path (for tests and benchmarks).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    fn nodes(&self) -> &[Arc<Node>] {
        &self.t.nodes
    }

    /// Every script of the template, and every data path its nodes and `collect` read: what
    /// the loop's [`LoopWork::outer`] must hold.
    pub fn outer_names(&self) -> (Vec<String>, bool) {
        let t = &self.t;
        let mut names: Vec<String> = Vec::new();
        let mut wants_all = false;
        let mut add = |id: &str| {
            if !t.index.contains_key(id) && !names.iter().any(|n| n == id) {
                names.push(id.to_string());
            }
        };
        let mut paths: Vec<&DataPath> = Vec::new();
        for node in &t.nodes {
            for src in scripts_of(node) {
                wants_all |= crate::script::identifiers(src).any(|w| w == "nodes");
                for word in crate::script::node_words(src) {
                    add(word);
                }
            }
            match &node.input {
                Some(InputSpec::Path(p)) => paths.push(p),
                Some(InputSpec::Map(m)) => paths.extend(m.iter().filter_map(|(_, d)| match d {
                    Directive::Path(p) => Some(p),
                    Directive::Literal(_) => None,
                })),
                None => {}
            }
            if let NodeKind::Branch(b) = &node.kind {
                for arm in [&b.then, &b.otherwise] {
                    match &arm.out {
                        Some(InputSpec::Path(p)) => paths.push(p),
                        Some(InputSpec::Map(m)) => {
                            paths.extend(m.iter().filter_map(|(_, d)| match d {
                                Directive::Path(p) => Some(p),
                                Directive::Literal(_) => None,
                            }))
                        }
                        None => {}
                    }
                }
            }
        }
        paths.extend(self.spec.collect.iter());
        for p in paths {
            if let PathRoot::Node { id, .. } = &p.root {
                add(id);
            }
        }
        (names, wants_all)
    }

    /// Evaluates items `range`, stopping early (with what it has) when `cancel` is set.
    pub fn run_chunk(
        &self,
        work: &LoopWork,
        scripts: &Scripts,
        range: std::ops::Range<usize>,
        cancel: &AtomicBool,
    ) -> ChunkValues {
        let mut out = ChunkValues {
            values: String::with_capacity(work.items.range_text(range.clone()).len() + 16),
            failed: Vec::new(),
        };
        if let Some(fast) = &self.fast
            && let Some(text) = fast.whole_range(work, range.clone())
        {
            out.values.push_str(text);
            return out;
        }
        for i in range.clone() {
            if i % 1024 == 0 && cancel.load(Ordering::Relaxed) {
                break;
            }
            if i > range.start {
                out.values.push(',');
            }
            let mark = out.values.len();
            if let Some(fast) = &self.fast
                && fast.write_item(work, i, &mut out.values)
            {
                continue;
            }
            out.values.truncate(mark);
            match self.run_item(work, scripts, i) {
                Ok(v) => out.values.push_str(&v.json()),
                Err(f) => {
                    out.values.push_str("null");
                    out.failed.push(f);
                }
            }
        }
        out
    }

    /// One item through the template, the general way (every script run by Rhai): its
    /// collected value, or the failure of its branch.
    pub fn run_item(
        &self,
        work: &LoopWork,
        scripts: &Scripts,
        index: usize,
    ) -> Result<Data, ItemFailure> {
        let mut b = Branch::new(self, work, index);
        for &k in &self.order {
            b.step(scripts, k)?;
        }
        Ok(match &self.spec.collect {
            Some(path) => b.path(path),
            None => b.out[self.nodes().len() - 1].clone().unwrap_or_default(),
        })
    }
}

impl LoopWork {
    /// The task's error when `failed` (every failure so far) is more than the loop tolerates:
    /// the first item beyond `max_failed_items`, in item order, as a loop of branches says it.
    pub fn failure_error(&self, loop_key: &str, failed: &[ItemFailure]) -> Option<String> {
        if failed.len() as u64 <= self.max_failed {
            return None;
        }
        let mut sorted: Vec<&ItemFailure> = failed.iter().collect();
        sorted.sort_by_key(|f| f.index);
        let mut error = sorted[self.max_failed as usize].task_error();
        if self.max_failed > 0 {
            error.push_str(&format!(
                "; more items of loop `{loop_key}` failed than its max_failed_items ({}) allows",
                self.max_failed
            ));
        }
        Some(error)
    }

    /// Every item in one chunk: the loop's output, or the task's error (tests, and loops too
    /// small to split).
    pub fn run_all(&self, scripts: &Scripts, loop_key: &str) -> Result<(Data, LoopTally), String> {
        let chunk =
            self.program
                .run_chunk(self, scripts, 0..self.items.len(), &AtomicBool::new(false));
        if let Some(e) = self.failure_error(loop_key, &chunk.failed) {
            return Err(e);
        }
        Ok((
            assemble(std::iter::once(chunk.values.as_str()), &chunk.failed),
            LoopTally::of(self.items.len(), &chunk.failed),
        ))
    }
}

/// The loop's result: `{"items": [...]}` from its chunks' values in order, with `failed`
/// listing the tolerated failures in item order.
pub fn assemble<'a>(values: impl Iterator<Item = &'a str>, failed: &[ItemFailure]) -> Data {
    let values: Vec<&str> = values.filter(|v| !v.is_empty()).collect();
    // Sized once: a 90 MB result is not grown by doubling.
    let size = values.iter().map(|v| v.len() + 1).sum::<usize>() + 32;
    let mut text = String::with_capacity(size);
    text.push_str("{\"items\":[");
    let mut first = true;
    for v in values {
        if !first {
            text.push(',');
        }
        first = false;
        text.push_str(v);
    }
    text.push(']');
    if !failed.is_empty() {
        let mut sorted: Vec<&ItemFailure> = failed.iter().collect();
        sorted.sort_by_key(|f| f.index);
        let list: Vec<Value> = sorted
            .iter()
            .map(|f| serde_json::json!({"index": f.index, "node": f.node, "error": f.error}))
            .collect();
        text.push_str(",\"failed\":");
        text.push_str(&Value::Array(list).to_string());
    }
    text.push('}');
    Data::from_compact_text_kept(text)
}

fn scripts_of(node: &Node) -> Vec<&str> {
    let mut s: Vec<&str> = node
        .before
        .iter()
        .chain(&node.after)
        .map(String::as_str)
        .collect();
    if let NodeKind::Branch(b) = &node.kind {
        s.push(&b.condition);
        s.extend(
            b.then
                .exec
                .iter()
                .chain(&b.otherwise.exec)
                .map(String::as_str),
        );
    }
    s
}

/// Kahn's order over forward edges; `None` if there is a cycle (there is none without back
/// edges, but a wrong topology must not loop).
fn topological(preds: &[Vec<usize>], succs: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut left: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..preds.len()).filter(|&i| left[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(preds.len());
    while let Some(n) = ready.pop() {
        order.push(n);
        for &s in &succs[n] {
            left[s] -= 1;
            if left[s] == 0 {
                ready.push(s);
            }
        }
    }
    (order.len() == preds.len()).then_some(order)
}

/// One item's branch being evaluated the general way.
struct Branch<'p> {
    program: &'p ItemProgram,
    work: &'p LoopWork,
    index: usize,
    item: Data,
    state: Vec<NodeState>,
    input: Vec<Option<Data>>,
    out: Vec<Option<Data>>,
    decision: Vec<Option<Arm>>,
}

impl<'p> Branch<'p> {
    fn new(program: &'p ItemProgram, work: &'p LoopWork, index: usize) -> Self {
        let n = program.nodes().len();
        Branch {
            program,
            work,
            index,
            item: work.items.item(index),
            state: vec![NodeState::Waiting; n],
            input: vec![None; n],
            out: vec![None; n],
            decision: vec![None; n],
        }
    }

    fn template(&self) -> &'p TemplatePlan {
        &self.program.t
    }

    fn key(&self, k: usize) -> String {
        format!(
            "{}{}#{}",
            self.work.key_prefix,
            self.template().nodes[k].id,
            self.index
        )
    }

    /// Whether `pred → succ` carried data (as the scheduler's `edge_taken`).
    fn edge_taken(&self, pred: usize, succ: usize) -> bool {
        if self.state[pred] != NodeState::Finished {
            return false;
        }
        let t = self.template();
        match (&t.nodes[pred].kind, self.decision[pred]) {
            (NodeKind::Branch(b), Some(arm)) => {
                let arm = if arm == Arm::Then {
                    &b.then
                } else {
                    &b.otherwise
                };
                arm.next.iter().any(|id| *id == t.nodes[succ].id)
            }
            _ => true,
        }
    }

    fn step(&mut self, scripts: &Scripts, k: usize) -> Result<(), ItemFailure> {
        let t = self.template();
        let preds = &t.topo.preds[k];
        if k != 0 && !preds.iter().any(|&p| self.edge_taken(p, k)) {
            self.state[k] = NodeState::Skipped;
            return Ok(());
        }
        let node = t.nodes[k].clone();
        let fail = |b: &Self, error: String| ItemFailure {
            index: b.index,
            node: b.key(k),
            error,
        };
        let mut input = self.resolve_input(k, &node);
        if let Some(src) = &node.before {
            let mut ctx = self.script_context(k, src, input, Data::null());
            scripts
                .run(src, &mut ctx)
                .map_err(|e| fail(self, format!("`before` script: {e}")))?;
            input = ctx.input;
        }
        self.input[k] = Some(input.clone());
        self.state[k] = NodeState::Running;
        let mut out = match &node.kind {
            NodeKind::Branch(b) => {
                let ctx = self.script_context(k, &b.condition, input.clone(), Data::null());
                let taken = scripts
                    .eval_bool(&b.condition, &ctx)
                    .map_err(|e| fail(self, format!("`if` expression: {e}")))?;
                let (arm_name, arm) = if taken {
                    (Arm::Then, &b.then)
                } else {
                    (Arm::Else, &b.otherwise)
                };
                self.decision[k] = Some(arm_name);
                let mut out = match &arm.out {
                    Some(spec) => self.resolve_spec(spec),
                    None => input.clone(),
                };
                if let Some(src) = &arm.exec {
                    let mut ctx = self.script_context(k, src, input.clone(), out);
                    scripts.run(src, &mut ctx).map_err(|e| {
                        fail(self, format!("`{}.exec` script: {e}", arm_name.as_str()))
                    })?;
                    out = ctx.out;
                }
                out
            }
            _ => input.clone(),
        };
        if let Some(src) = &node.after {
            let mut ctx = self.script_context(k, src, input, out);
            scripts
                .run(src, &mut ctx)
                .map_err(|e| fail(self, format!("`after` script: {e}")))?;
            out = ctx.out;
        }
        self.out[k] = Some(out);
        self.state[k] = NodeState::Finished;
        Ok(())
    }

    /// As the scheduler's `resolve_input`, for template node `k`.
    fn resolve_input(&self, k: usize, node: &Node) -> Data {
        if let Some(spec) = &node.input {
            return self.resolve_spec(spec);
        }
        if k == 0 {
            return Data::object(vec![
                ("item".into(), self.item.clone()),
                ("index".into(), Data::from_value(Value::from(self.index))),
            ]);
        }
        let t = self.template();
        crate::scheduler::merge_outputs(
            t.topo.preds[k]
                .iter()
                .filter(|&&p| self.edge_taken(p, k))
                .filter_map(|&p| Some((t.nodes[p].id.as_str(), self.out[p].as_ref()?))),
        )
    }

    fn resolve_spec(&self, spec: &InputSpec) -> Data {
        match spec {
            InputSpec::Path(p) => self.path(p),
            InputSpec::Map(entries) => Data::object(
                entries
                    .iter()
                    .map(|(name, d)| {
                        let v = match d {
                            Directive::Path(p) => self.path(p),
                            Directive::Literal(v) => Data::from_value(v.clone()),
                        };
                        (name.clone(), v)
                    })
                    .collect(),
            ),
        }
    }

    /// As the scheduler's `resolve_path` seen from the branch.
    fn path(&self, path: &DataPath) -> Data {
        let t = self.template();
        let section_of = |k: usize, section: Section| match section {
            Section::Out => self.out[k].clone().unwrap_or_default(),
            Section::Input => self.input[k].clone().unwrap_or_default(),
            Section::Params => Data::from_value(Value::Object(t.nodes[k].params.clone())),
        };
        let root: Option<Data> = match &path.root {
            PathRoot::Node { id, section } => match t.index.get(id.as_str()) {
                Some(&k) => Some(section_of(k, *section)),
                None => self.work.outer.get(id.as_str()).and_then(|view| {
                    view.get(match section {
                        Section::Out => "out",
                        Section::Input => "input",
                        Section::Params => "params",
                    })
                }),
            },
            PathRoot::LoopNode { id, section } => {
                t.index.get(id.as_str()).map(|&k| section_of(k, *section))
            }
            PathRoot::LoopItem { up: 0 } => Some(self.item.clone()),
            PathRoot::LoopIndex { up: 0 } => Some(Data::from_value(Value::from(self.index))),
            PathRoot::LoopItem { up } => self
                .work
                .around
                .get(*up as usize - 1)
                .map(|(item, _)| item.clone()),
            PathRoot::LoopIndex { up } => self
                .work
                .around
                .get(*up as usize - 1)
                .map(|(_, index)| Data::from_value(Value::from(*index))),
        };
        root.and_then(|r| r.walk(&path.segments))
            .unwrap_or_default()
    }

    /// `{out, input, params, state}` of template node `k`.
    fn view(&self, k: usize) -> Data {
        let node = &self.template().nodes[k];
        Data::object(vec![
            ("out".into(), self.out[k].clone().unwrap_or_default()),
            ("input".into(), self.input[k].clone().unwrap_or_default()),
            (
                "params".into(),
                Data::from_value(Value::Object(node.params.clone())),
            ),
            (
                "state".into(),
                Data::from_value(Value::String(self.state[k].as_str().into())),
            ),
        ])
    }

    /// As the scheduler's `script_context`: the template's nodes first, then the outer ones.
    fn script_context(&self, k: usize, source: &str, input: Data, out: Data) -> ScriptContext {
        let t = self.template();
        let mut nodes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let wants_all = crate::script::identifiers(source).any(|w| w == "nodes");
        for word in crate::script::node_words(source) {
            if !seen.insert(word) {
                continue;
            }
            if let Some(&n) = t.index.get(word) {
                nodes.push((word.to_string(), self.view(n)));
            } else if let Some(view) = self.work.outer.get(word) {
                nodes.push((word.to_string(), view.clone()));
            }
        }
        if wants_all {
            for (id, view) in &self.work.outer {
                if seen.insert(id.as_str()) {
                    nodes.push((id.clone(), view.clone()));
                }
            }
        }
        let mut loops = vec![(self.item.clone(), self.index)];
        loops.extend(self.work.around.iter().cloned());
        let node = &t.nodes[k];
        ScriptContext {
            input,
            out,
            node_id: self.key(k),
            node_params: node.params.clone(),
            node_state: NodeState::Running.as_str().to_string(),
            task_id: self.work.task_id.clone(),
            pipeline_name: self.work.pipeline_name.clone(),
            scheduled_at: self.work.scheduled_at,
            nodes,
            loops,
        }
    }
}

#[cfg(test)]
mod tests;
