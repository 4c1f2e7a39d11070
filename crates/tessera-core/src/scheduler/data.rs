//! Data flow inside the scheduler: resolving inputs and paths, and loops fanning out
//! one branch per item and collecting results in item order.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::data::Data;

use super::{LoopRun, Scheduler};
use crate::datapath::{DataPath, PathRoot, Section};
use crate::model::{Directive, InputSpec, LoopSpec, Node, NodeKind};
use crate::plan::NodeRef;
use crate::scheduler::NodeState;

impl Scheduler {
    /// The input of a node: its directives, or the merge of the outputs of the predecessors
    /// whose edge carried data (declaration order; a non-object output goes under the
    /// predecessor's id). The first node of a loop branch gets `{item, index}`. A single
    /// object output is passed on as it is (shared, never copied).
    pub(super) fn resolve_input(&self, idx: usize, node: &Node) -> Data {
        if let Some(spec) = &node.input {
            return self.resolve_spec(idx, spec);
        }
        let inst = &self.inst[idx];
        if let Some((loop_idx, item, base)) = inst.branch
            && base == idx
        {
            return Data::object(vec![
                ("item".into(), self.loops[&loop_idx].items[item].clone()),
                ("index".into(), Data::from_value(Value::from(item))),
            ]);
        }
        let mut sources: Vec<usize> = self
            .preds_of(idx)
            .into_iter()
            .filter(|&p| self.edge_taken(p, idx))
            .collect();
        if let Some(from) = inst.back_from {
            sources.push(from);
        }
        merge_outputs(sources.iter().filter_map(|&p| {
            let output = self.inst[p].output.as_ref()?;
            Some((self.plan.node(self.inst[p].node).id.as_str(), output))
        }))
    }

    pub(super) fn resolve_spec(&self, idx: usize, spec: &InputSpec) -> Data {
        match spec {
            InputSpec::Path(p) => self.resolve_path(idx, p),
            InputSpec::Map(entries) => Data::object(
                entries
                    .iter()
                    .map(|(name, d)| {
                        let v = match d {
                            Directive::Path(p) => self.resolve_path(idx, p),
                            Directive::Literal(v) => Data::from_value(v.clone()),
                        };
                        (name.clone(), v)
                    })
                    .collect(),
            ),
        }
    }

    /// The value at `path` seen from instance `idx`; missing data (a node not run yet, a
    /// missing key) reads as `null`.
    pub(super) fn resolve_path(&self, idx: usize, path: &DataPath) -> Data {
        self.path_root(idx, path)
            .and_then(|r| r.walk(&path.segments))
            .unwrap_or_default()
    }

    /// What `path` starts from, seen from instance `idx`.
    fn path_root(&self, idx: usize, path: &DataPath) -> Option<Data> {
        match &path.root {
            PathRoot::Node { id, section } => self
                .lookup_node(idx, id)
                .map(|t| self.section_of(t, *section)),
            PathRoot::LoopNode { id, section } => self
                .lookup_in_branch(idx, id)
                .map(|t| self.section_of(t, *section)),
            PathRoot::LoopItem { up } => self
                .enclosing_branch(idx, *up)
                .map(|(l, item, _)| self.loops[&l].items[item].clone()),
            PathRoot::LoopIndex { up } => self
                .enclosing_branch(idx, *up)
                .map(|(_, item, _)| Data::from_value(Value::from(item))),
        }
    }

    fn section_of(&self, idx: usize, section: Section) -> Data {
        let i = &self.inst[idx];
        match section {
            Section::Out => i.output.clone().unwrap_or_default(),
            Section::Input => i.input.clone().unwrap_or_default(),
            Section::Params => {
                Data::from_value(Value::Object(self.plan.node(i.node).params.clone()))
            }
        }
    }

    /// The branch `up` loops out from instance `idx` (0: the branch it is in): (loop
    /// instance, item, first instance of the branch).
    pub(super) fn enclosing_branch(&self, idx: usize, up: u32) -> Option<(usize, usize, usize)> {
        let mut branch = self.inst.get(idx)?.branch?;
        for _ in 0..up {
            branch = self.inst[branch.0].branch?;
        }
        Some(branch)
    }

    /// A node id seen from instance `idx`: a node of the same loop branch first, then of the
    /// branches around it, then the pipeline's nodes.
    pub(super) fn lookup_node(&self, idx: usize, id: &str) -> Option<usize> {
        let mut at = idx;
        loop {
            if let Some(found) = self.lookup_in_branch(at, id) {
                return Some(found);
            }
            match self.inst.get(at)?.branch {
                Some((loop_idx, _, _)) => at = loop_idx,
                None => return self.plan.index.get(id).copied(),
            }
        }
    }

    fn lookup_in_branch(&self, idx: usize, id: &str) -> Option<usize> {
        let (_, _, base) = self.inst.get(idx)?.branch?;
        let NodeRef::Template { template, .. } = self.inst[idx].node else {
            return None;
        };
        self.plan.templates[template]
            .index
            .get(id)
            .map(|&t| base + t)
    }

    /// Starts a loop: resolves its items and opens the first branches.
    pub(super) fn start_loop(
        &mut self,
        idx: usize,
        spec: &LoopSpec,
    ) -> Result<Option<Data>, String> {
        if let Some(program) = self.plan.programs.get(&self.inst[idx].node).cloned()
            && let Some(items) = self
                .path_root(idx, &spec.items)
                .and_then(|r| r.walk_list(&spec.items.segments))
            && !items.is_empty()
        {
            self.start_chunked(idx, program, items, spec);
            return Ok(None);
        }
        let list = self.resolve_path(idx, &spec.items);
        let items = match list.items() {
            Some(items) => items,
            None if list.is_null() => {
                return Err(format!(
                    "`items` path `{}` gave nothing; expected a list",
                    spec.items
                ));
            }
            None => {
                return Err(format!(
                    "`items` path `{}` gave {}; expected a list",
                    spec.items,
                    list.type_name()
                ));
            }
        };
        if items.is_empty() {
            return Ok(Some(Data::object(vec![(
                "items".into(),
                Data::from_value(Value::Array(Vec::new())),
            )])));
        }
        let n = items.len();
        // Without a limit, branches open as they can, at most DEFAULT_IN_FLIGHT at once: the
        // engine's pools bound the work anyway, and memory follows the branches open.
        let max_parallel = match spec.max_parallel {
            0 => DEFAULT_IN_FLIGHT,
            m => m,
        };
        self.inst[idx].state = NodeState::Running;
        // Recorded as running with its item count: a document shows the loop's progress
        // (n of m items) from the store, whichever process runs it.
        self.tallies
            .insert(idx, crate::loops::LoopTally::of(n, &[]));
        self.record_node_state(idx, NodeState::Running);
        self.loops.insert(
            idx,
            LoopRun {
                items,
                next_item: 0,
                in_flight: 0,
                done: 0,
                collected: vec![Data::null(); n],
                unresolved: HashMap::new(),
                max_parallel,
                failed: Vec::new(),
                failed_index: Default::default(),
                max_failed: spec.max_failed_items,
            },
        );
        self.open_branches(idx);
        Ok(None)
    }

    /// A loop whose items run in chunks: one job for the engine, with everything its items
    /// read from outside the template frozen now.
    fn start_chunked(
        &mut self,
        idx: usize,
        program: Arc<crate::loops::ItemProgram>,
        items: crate::data::ListText,
        spec: &LoopSpec,
    ) {
        let (names, wants_all) = program.outer_names();
        let mut outer = HashMap::new();
        for name in names {
            if let Some(n) = self.lookup_node(idx, &name) {
                outer.insert(name, self.node_view(n));
            }
        }
        if wants_all {
            for (id, &n) in &self.plan.index {
                outer.entry(id.clone()).or_insert_with(|| self.node_view(n));
            }
        }
        let around = (0..)
            .map_while(|up| self.enclosing_branch(idx, up))
            .map(|(l, item, _)| (self.loops[&l].items[item].clone(), item))
            .collect();
        let key_prefix = match self.inst[idx].branch {
            Some(_) => format!("{}/", self.inst[idx].key),
            None => String::new(),
        };
        let work = crate::loops::LoopWork {
            program,
            items,
            outer,
            around,
            key_prefix,
            task_id: self.ctx.task_id.clone(),
            pipeline_name: self.plan.pipeline.name.clone(),
            scheduled_at: self.ctx.scheduled_at,
            max_failed: spec.max_failed_items,
        };
        let node = self.node_of(idx);
        self.inst[idx].state = NodeState::Running;
        self.tallies
            .insert(idx, crate::loops::LoopTally::of(work.items.len(), &[]));
        let input = self.inst[idx].input.clone().unwrap_or_default();
        self.run_job(idx, node, input, Vec::new(), Some(Arc::new(work)));
    }

    /// Opens branches until `max_parallel` are in flight or every item has one.
    fn open_branches(&mut self, loop_idx: usize) {
        let Some(&template) = self.plan.loop_templates.get(&self.inst[loop_idx].node) else {
            return;
        };
        let template_len = self.plan.templates[template].nodes.len();
        // Keys name the path through nested loops: `cells#3/cell#7`.
        let prefix = match self.inst[loop_idx].branch {
            Some(_) => format!("{}/", self.inst[loop_idx].key),
            None => String::new(),
        };
        loop {
            let l = self.loops.get_mut(&loop_idx).expect("loop run");
            if l.in_flight >= l.max_parallel || l.next_item >= l.items.len() {
                break;
            }
            let item = l.next_item;
            l.next_item += 1;
            l.in_flight += 1;
            l.unresolved.insert(item, template_len);
            // A block of a finished branch of the same template, else new slots.
            let reused = self.free_blocks.get_mut(&template).and_then(Vec::pop);
            let base = reused.unwrap_or(self.inst.len());
            // A loop inside a cycle runs again: its branches belong to the loop's iteration.
            let iteration = self.inst[loop_idx].iteration;
            for t in 0..template_len {
                let plan = &self.plan.templates[template];
                let key: Arc<str> = format!("{prefix}{}#{item}", plan.nodes[t].id).into();
                let preds = plan.topo.preds[t].len() as u32;
                let node = NodeRef::Template { template, index: t };
                let branch = Some((loop_idx, item, base));
                let idx = match reused {
                    Some(_) => self.reset_instance(base + t, key, node, preds, branch),
                    None => self.push_instance(key, node, preds, branch),
                };
                self.inst[idx].iteration = iteration;
            }
            self.make_ready(base);
        }
    }

    /// A node of a loop branch finished or was skipped; when the branch is complete its value
    /// is collected, and when every branch is, the loop finishes.
    pub(super) fn branch_member_resolved(&mut self, loop_idx: usize, item: usize, base: usize) {
        let l = self.loops.get_mut(&loop_idx).expect("loop run");
        let left = l.unresolved.get_mut(&item).expect("open branch");
        *left -= 1;
        if *left > 0 {
            return;
        }
        l.unresolved.remove(&item);
        let loop_ref = self.inst[loop_idx].node;
        let node = self.plan.node(loop_ref).clone();
        let NodeKind::Loop(spec) = &node.kind else {
            return;
        };
        let Some(template) = self.plan.template_of(loop_ref) else {
            return;
        };
        let template_len = template.nodes.len();
        // A failed item (tolerated by `max_failed_items`) collects null, whatever the nodes
        // of its branch that did not depend on the failed one gave.
        let failed = self.loops[&loop_idx].failed_index.contains(&item);
        let value = match &spec.collect {
            _ if failed => Data::null(),
            Some(path) => self.resolve_path(base, path),
            None => self.inst[base + template_len - 1]
                .output
                .clone()
                .unwrap_or_default(),
        };
        self.retire_block(template_ref(loop_ref, &self.plan), base, template_len);
        let l = self.loops.get_mut(&loop_idx).expect("loop run");
        l.collected[item] = value;
        l.done += 1;
        l.in_flight -= 1;
        if l.done == l.items.len() {
            let collected = std::mem::take(&mut l.collected);
            let tally = crate::loops::LoopTally::of_failures(
                collected.len(),
                l.failed
                    .iter()
                    .map(|f| (f.index, &*f.node, f.error.as_str())),
            );
            let mut fields = vec![("items".into(), Data::array(collected))];
            // Tolerated failures are listed, in item order, so that the next nodes can see
            // which items have no value and why.
            if !l.failed.is_empty() {
                let mut failed = std::mem::take(&mut l.failed);
                failed.sort_by_key(|f| f.index);
                let list = failed
                    .into_iter()
                    .map(|f| {
                        Data::from_value(serde_json::json!({
                            "index": f.index, "node": &*f.node, "error": f.error,
                        }))
                    })
                    .collect();
                fields.push(("failed".into(), Data::array(list)));
            }
            let out = Data::object(fields);
            self.tallies.insert(loop_idx, tally);
            self.after_and_finish(loop_idx, &node, out, false);
        } else {
            self.open_branches(loop_idx);
        }
    }
}

/// The input of a node with several predecessors (or one whose output is not an object): the
/// outputs of those whose edge carried data, merged in declaration order (a later one's field
/// replaces an earlier one's, in place; a non-object output goes under its node's id). A
/// single object output is passed on as it is (shared, never copied).
pub(crate) fn merge_outputs<'a>(outputs: impl Iterator<Item = (&'a str, &'a Data)>) -> Data {
    let outputs: Vec<(&str, &Data)> = outputs.collect();
    if let [(_, only)] = outputs.as_slice()
        && only.is_object()
    {
        return (*only).clone();
    }
    let mut merged: Vec<(String, Data)> = Vec::new();
    for (id, output) in outputs {
        let parts = match output.entries() {
            Some(entries) => entries,
            None => vec![(id.to_string(), output.clone())],
        };
        for (k, v) in parts {
            match merged.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => merged.push((k, v)),
            }
        }
    }
    Data::object(merged)
}

/// Branches a loop without `max_parallel` has open at once.
const DEFAULT_IN_FLIGHT: usize = 4096;

/// The template index of a loop node.
fn template_ref(loop_ref: NodeRef, plan: &crate::plan::Plan) -> usize {
    *plan
        .loop_templates
        .get(&loop_ref)
        .expect("a loop node has a template")
}

impl Scheduler {
    /// A branch ended (its value collected): its instances' slots go to the template's free
    /// list, their values dropped, their final states counted for progress. Nothing refers to
    /// them any more: every instance of the branch is resolved (no job runs, no retry is
    /// armed), and a loop among them has finished.
    fn retire_block(&mut self, template: usize, base: usize, len: usize) {
        for idx in base..base + len {
            self.loops.remove(&idx);
            let i = &mut self.inst[idx];
            debug_assert!(
                i.state.is_resolved() || i.state == NodeState::Failed,
                "retiring a live instance"
            );
            self.retired.total += 1;
            match i.state {
                NodeState::Finished => self.retired.finished += 1,
                NodeState::Failed => self.retired.failed += 1,
                NodeState::Skipped => self.retired.skipped += 1,
                _ => {}
            }
            i.retired = true;
            i.input = None;
            i.output = None;
            i.error = None;
            i.cache_key = None;
        }
        self.free_blocks.entry(template).or_default().push(base);
    }

    /// Makes a retired slot a new instance (as `push_instance` makes a new slot).
    fn reset_instance(
        &mut self,
        idx: usize,
        key: Arc<str>,
        node: NodeRef,
        preds: u32,
        branch: Option<(usize, usize, usize)>,
    ) -> usize {
        debug_assert!(self.inst[idx].retired);
        let i = &mut self.inst[idx];
        i.key = key;
        i.node = node;
        i.state = NodeState::Waiting;
        i.iteration = 0;
        i.attempt = 0;
        i.attempts_this_run = 0;
        i.input = None;
        i.output = None;
        i.unresolved_preds = preds;
        i.decision = None;
        i.back_from = None;
        i.jumps = 0;
        i.waiting_retry = false;
        i.branch = branch;
        i.started_at = None;
        i.error = None;
        i.cache_key = None;
        i.tainted = false;
        i.retired = false;
        idx
    }
}

/// A value with every object reference replaced by its content hash, so that cache keys
/// depend on bytes, not on object ids.
pub(crate) fn content_form(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("$object") => {
            let mut out = Map::new();
            out.insert(
                "$sha256".into(),
                m.get("sha256").cloned().unwrap_or(Value::Null),
            );
            Value::Object(out)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), content_form(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(content_form).collect()),
        other => other.clone(),
    }
}
