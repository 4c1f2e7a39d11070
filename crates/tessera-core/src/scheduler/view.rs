//! What the scheduler tells the outside about its nodes: durable records, progress counters,
//! the scope scripts see, and cache keys.

use serde_json::Value;

use super::{Effect, LoopProgress, NodeRecord, NodeState, Progress, Record, Scheduler};
use crate::data::Data;
use crate::model::Node;
use crate::script::ScriptContext;

impl Scheduler {
    pub(super) fn record_node(&mut self, idx: usize, with_input: bool) {
        let state = self.inst[idx].state;
        self.push_record(idx, state, with_input, false);
    }

    pub(super) fn record_node_cached(&mut self, idx: usize, cached: bool) {
        let state = self.inst[idx].state;
        let node = self.node_of(idx);
        let with_input = node.kind.is_external() || node.cache;
        self.push_record(idx, state, with_input, cached);
    }

    pub(super) fn record_node_state(&mut self, idx: usize, state: NodeState) {
        self.push_record(idx, state, false, false);
    }

    pub(super) fn push_record(
        &mut self,
        idx: usize,
        state: NodeState,
        with_input: bool,
        cached: bool,
    ) {
        // A loop's tally goes with its running record (its item count) and with the record
        // of its end when it finished.
        let tally = match state {
            NodeState::Running => self.tallies.get(&idx).cloned(),
            s if s.is_terminal() => self
                .tallies
                .remove(&idx)
                .filter(|_| s == NodeState::Finished),
            _ => None,
        };
        let i = &self.inst[idx];
        let node = self.plan.node(i.node);
        let failed = matches!(state, NodeState::Failed);
        self.effects.push(Effect::Record(Record::Node(NodeRecord {
            key: i.key.to_string(),
            node_id: node.id.clone(),
            node_type: node.type_name(),
            iteration: i.iteration,
            attempt: i.attempt.max(u32::from(state != NodeState::Skipped)),
            state,
            input: if with_input || failed {
                i.input.clone()
            } else {
                None
            },
            output: if state == NodeState::Finished {
                i.output.clone()
            } else {
                None
            },
            error: if failed || state == NodeState::Cancelled {
                i.error.clone()
            } else {
                None
            },
            decision: i.decision,
            started_at: i.started_at,
            finished_at: state.is_terminal().then_some(self.now),
            cached,
            tally,
        })));
    }

    /// Progress counters for display.
    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            finished: self.retired.finished,
            failed: self.retired.failed,
            skipped: self.retired.skipped,
            ..Progress::default()
        };
        for i in self.inst.iter().filter(|i| !i.retired) {
            match i.state {
                NodeState::Finished => p.finished += 1,
                NodeState::Running => p.running += 1,
                NodeState::Failed => p.failed += 1,
                NodeState::Skipped => p.skipped += 1,
                _ => {}
            }
        }
        p.total = self.retired.total + self.inst.iter().filter(|i| !i.retired).count();
        for (&idx, l) in &self.loops {
            p.loops.push(LoopProgress {
                key: self.inst[idx].key.to_string(),
                done: l.done,
                total: l.items.len(),
            });
        }
        p.loops.sort_by(|a, b| a.key.cmp(&b.key));
        p
    }

    pub(super) fn script_context(
        &self,
        idx: usize,
        node: &Node,
        source: &str,
        input: Data,
        out: Data,
    ) -> ScriptContext {
        let mut nodes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let wants_all = crate::script::identifiers(source).any(|w| w == "nodes");
        for word in crate::script::node_words(source) {
            if seen.insert(word)
                && let Some(target) = self.lookup_node(idx, word)
            {
                nodes.push((word.to_string(), self.node_view(target)));
            }
        }
        if wants_all {
            for (id, &n) in &self.plan.index {
                if seen.insert(id.as_str()) {
                    nodes.push((id.clone(), self.node_view(n)));
                }
            }
        }
        let i = &self.inst[idx];
        ScriptContext {
            input,
            out,
            node_id: i.key.to_string(),
            node_params: node.params.clone(),
            node_state: i.state.as_str().to_string(),
            task_id: self.ctx.task_id.clone(),
            pipeline_name: self.plan.pipeline.name.clone(),
            scheduled_at: self.ctx.scheduled_at,
            nodes,
            loops: (0..)
                .map_while(|up| self.enclosing_branch(idx, up))
                .map(|(l, item, _)| (self.loops[&l].items[item].clone(), item))
                .collect(),
        }
    }

    /// `{out, input, params, state}` of a node, sharing its values.
    pub(super) fn node_view(&self, idx: usize) -> Data {
        let i = &self.inst[idx];
        let node = self.plan.node(i.node);
        Data::object(vec![
            ("out".into(), i.output.clone().unwrap_or_default()),
            ("input".into(), i.input.clone().unwrap_or_default()),
            (
                "params".into(),
                Data::from_value(Value::Object(node.params.clone())),
            ),
            (
                "state".into(),
                Data::from_value(Value::String(i.state.as_str().into())),
            ),
        ])
    }
}

/// The cache key of a node run: its definition and its resolved input, objects by content,
/// within the scope of the task's owner (`None`: local runs and servers without tokens).
pub fn cache_key(
    node: &Node,
    input: &Data,
    scope: &[(String, Data)],
    owner: Option<&str>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"tessera-cache-v2\0");
    match owner {
        Some(o) => {
            h.update(b"owner\0");
            h.update(o.as_bytes());
        }
        None => h.update(b"anyone"),
    }
    h.update(b"\0");
    h.update(node.definition.to_string().as_bytes());
    h.update(b"\0");
    hash_data(&mut h, input);
    // What its templates read from other nodes (`{{make.out.dir}}`) is part of what it does.
    for (raw, value) in scope {
        h.update(b"\0scope\0");
        h.update(raw.as_bytes());
        h.update(b"\0");
        hash_data(&mut h, value);
    }
    hex::encode(h.finalize())
}

/// Objects by content: only a value that may hold one is read as a tree.
fn hash_data(h: &mut sha2::Sha256, value: &Data) {
    use sha2::Digest;
    if value.may_contain_key("$object") {
        h.update(
            super::data::content_form(&value.value())
                .to_string()
                .as_bytes(),
        );
    } else {
        h.update(value.json().as_bytes());
    }
}
