//! The scheduler: a pure state machine for one task. Events go in (a job succeeded,
//! failed, a retry is due, cancel), effects come out (records to commit, jobs to run, jobs to
//! cancel, retries to arm, the task's end). It does no I/O; the engine drives it.
//!
//! Nodes whose work is in-engine (entry, end, node, branch, loop) complete inline; `command`
//! and `http` nodes, and any node with `cache: true`, become jobs run by the engine.

mod data;
mod types;
mod view;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::data::Data;

pub(crate) use self::data::merge_outputs;
pub use self::types::*;
pub use self::view::cache_key;
use crate::model::{Node, NodeKind, Readiness, ReadyRule};
use crate::plan::{NodeRef, Plan};
use crate::script::Scripts;

#[derive(Debug)]
struct Instance {
    key: Arc<str>,
    node: NodeRef,
    state: NodeState,
    iteration: u32,
    attempt: u32,
    attempts_this_run: u32,
    input: Option<Data>,
    /// Latest finished output; kept when a cycle iteration resets the node.
    output: Option<Data>,
    unresolved_preds: u32,
    /// For a finished branch: the arm it took in this iteration.
    decision: Option<Arm>,
    /// A back edge into this node fired in this iteration; its source branch.
    back_from: Option<usize>,
    /// For a branch: back edges taken so far.
    jumps: u32,
    /// A retry delay is armed for this instance.
    waiting_retry: bool,
    /// For a template node: (loop instance, item index, first instance of the branch).
    branch: Option<(usize, usize, usize)>,
    started_at: Option<u64>,
    error: Option<String>,
    cache_key: Option<String>,
    /// It ran (or was skipped) anew in this run instead of being replayed: what follows it
    /// runs again too.
    tainted: bool,
    /// Its branch ended and its slot waits for reuse (see `Scheduler::free_blocks`).
    retired: bool,
}

/// Instances of finished loop branches whose slots were reused, by final state.
#[derive(Debug, Default)]
struct Retired {
    total: usize,
    finished: usize,
    failed: usize,
    skipped: usize,
}

#[derive(Debug)]
struct LoopRun {
    items: Vec<Data>,
    next_item: usize,
    in_flight: usize,
    done: usize,
    collected: Vec<Data>,
    /// Unresolved template instances per started item.
    unresolved: HashMap<usize, usize>,
    max_parallel: usize,
    /// Items whose branch failed, tolerated by `max_failed_items`, in the order they failed,
    /// and their indexes (looked up once per branch).
    failed: Vec<FailedItem>,
    failed_index: std::collections::HashSet<usize>,
    max_failed: u64,
}

/// An item of a loop whose branch failed: its index, the node instance that failed, why.
#[derive(Debug)]
struct FailedItem {
    index: usize,
    node: Arc<str>,
    error: String,
}

/// Effects one step may gather before it yields (see `Scheduler::drain`).
pub const STEP_BUDGET: usize = 4096;

/// What happened earlier to a node instance, from the store, for `resume`.
#[derive(Debug, Clone)]
pub struct PastRun {
    pub key: String,
    pub iteration: u32,
    pub attempt: u32,
    pub state: NodeState,
    pub output: Option<Data>,
    pub decision: Option<Arm>,
}

/// The state machine of one task.
pub struct Scheduler {
    ctx: TaskContext,
    plan: Arc<Plan>,
    scripts: Arc<Scripts>,
    inst: Vec<Instance>,
    loops: HashMap<usize, LoopRun>,
    /// Instance slots of finished loop branches, by template: a new branch of the same
    /// template reuses one, so memory follows the branches in flight, not the items.
    free_blocks: HashMap<usize, Vec<usize>>,
    /// Counts of the instances whose slots were reused (for progress).
    retired: Retired,
    /// Tallies of loops that finished their items, until their end is recorded.
    tallies: HashMap<usize, crate::loops::LoopTally>,
    /// Finished outputs of an earlier run, replayed instead of running again.
    replay: HashMap<(Arc<str>, u32), PastRun>,
    /// Ids of nodes whose definition changed since the earlier run (a resume with a new
    /// definition; the entry when the input changed): they and what follows them run again.
    changed: std::collections::HashSet<String>,
    last_attempt: HashMap<(Arc<str>, u32), u32>,
    /// Attempts left running by an earlier process: a `service` attempt keeps waiting for its
    /// callback (its token is durable) instead of being dispatched again.
    running_attempt: HashMap<(Arc<str>, u32), u32>,
    queue: VecDeque<usize>,
    effects: Vec<Effect>,
    rng: fastrand::Rng,
    state: TaskState,
    ends_reached: usize,
    last_end_output: Option<Data>,
    active_jobs: usize,
    retries_pending: usize,
    now: u64,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("task", &self.ctx.task_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler for a new task, or for a resumed one when `past` holds its earlier runs.
    pub fn new(
        ctx: TaskContext,
        plan: Arc<Plan>,
        scripts: Arc<Scripts>,
        past: Vec<PastRun>,
    ) -> Self {
        let seed = ctx.task_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut s = Scheduler {
            ctx,
            plan: plan.clone(),
            scripts,
            inst: Vec::with_capacity(plan.nodes.len()),
            free_blocks: HashMap::new(),
            retired: Retired::default(),
            tallies: HashMap::new(),
            loops: HashMap::new(),
            replay: HashMap::new(),
            changed: Default::default(),
            last_attempt: HashMap::new(),
            running_attempt: HashMap::new(),
            queue: VecDeque::new(),
            effects: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            state: TaskState::Pending,
            ends_reached: 0,
            last_end_output: None,
            active_jobs: 0,
            retries_pending: 0,
            now: 0,
        };
        for (i, node) in plan.nodes.iter().enumerate() {
            let preds = plan.topo.preds[i].len() as u32;
            s.push_instance(node.id.as_str().into(), NodeRef::Top(i), preds, None);
        }
        for run in past {
            let key: Arc<str> = run.key.as_str().into();
            let slot = s
                .last_attempt
                .entry((key.clone(), run.iteration))
                .or_insert(0);
            *slot = (*slot).max(run.attempt);
            match run.state {
                NodeState::Finished => {
                    s.replay.insert((key, run.iteration), run);
                }
                NodeState::Running => {
                    s.running_attempt.insert((key, run.iteration), run.attempt);
                }
                _ => {}
            }
        }
        s
    }

    fn push_instance(
        &mut self,
        key: Arc<str>,
        node: NodeRef,
        preds: u32,
        branch: Option<(usize, usize, usize)>,
    ) -> usize {
        let idx = self.inst.len();
        self.inst.push(Instance {
            key,
            node,
            state: NodeState::Waiting,
            iteration: 0,
            attempt: 0,
            attempts_this_run: 0,
            input: None,
            output: None,
            unresolved_preds: preds,
            decision: None,
            back_from: None,
            jumps: 0,
            waiting_retry: false,
            branch,
            started_at: None,
            error: None,
            cache_key: None,
            tainted: false,
            retired: false,
        });
        idx
    }

    /// A resume with a new definition: the ids of the nodes that changed (see
    /// [`crate::plan::changed_nodes`]) run again, with everything downstream of them.
    pub fn with_changes(mut self, changed: std::collections::HashSet<String>) -> Self {
        self.changed = changed;
        self
    }

    /// Whether an instance with a finished past run may be replayed: its definition is the
    /// same and nothing it depends on ran anew.
    fn may_replay(&self, idx: usize) -> bool {
        let i = &self.inst[idx];
        if self.changed.contains(&self.plan.node(i.node).id) {
            return false;
        }
        if i.back_from.is_some_and(|b| self.inst[b].tainted) {
            return false;
        }
        if self.preds_of(idx).iter().any(|&p| self.inst[p].tainted) {
            return false;
        }
        // A branch's members see the item of their loop and of the loops around it, and
        // what those loops saw.
        let mut at = idx;
        while let Some((loop_idx, _, _)) = self.inst[at].branch {
            if self
                .changed
                .contains(&self.plan.node(self.inst[loop_idx].node).id)
                || self
                    .preds_of(loop_idx)
                    .iter()
                    .any(|&p| self.inst[p].tainted)
            {
                return false;
            }
            at = loop_idx;
        }
        true
    }

    pub fn state(&self) -> TaskState {
        self.state
    }

    /// Starts the task: the entry node finishes with the task input.
    pub fn start(&mut self, now: u64) -> Vec<Effect> {
        self.now = now;
        self.state = TaskState::Running;
        self.effects.push(Effect::Record(Record::Task {
            state: TaskState::Running,
            result: None,
            error: None,
        }));
        let entry = self.plan.entry;
        self.inst[entry].state = NodeState::Ready;
        self.queue.push_back(entry);
        self.drain();
        std::mem::take(&mut self.effects)
    }

    /// Whether inline work is left over from the last step (see [`STEP_BUDGET`]): the driver
    /// then calls [`Scheduler::proceed`] before waiting for events.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() && !self.state.is_terminal()
    }

    /// Goes on with the inline work a step left (see [`Scheduler::has_work`]).
    pub fn proceed(&mut self, now: u64) -> Vec<Effect> {
        self.now = now;
        if !self.state.is_terminal() {
            self.drain();
        }
        std::mem::take(&mut self.effects)
    }

    /// Applies one event; returns the effects to commit and carry out.
    pub fn handle(&mut self, event: Event, now: u64) -> Vec<Effect> {
        self.now = now;
        if self.state.is_terminal() {
            return Vec::new();
        }
        match event {
            Event::JobSucceeded {
                job,
                output,
                cached,
            } => {
                if let Some(idx) = self.current_job(job) {
                    self.active_jobs -= 1;
                    self.complete_external(idx, output, cached);
                }
            }
            Event::JobFailed { job, error } => {
                if let Some(idx) = self.current_job(job) {
                    self.active_jobs -= 1;
                    self.job_failed(idx, error);
                }
            }
            Event::ItemsDone { job, output, tally } => {
                if let Some(idx) = self.current_job(job) {
                    self.active_jobs -= 1;
                    self.tallies.insert(idx, tally);
                    self.complete_external(idx, output, false);
                }
            }
            Event::ItemsFailed { job, error } => {
                if let Some(idx) = self.current_job(job) {
                    self.active_jobs -= 1;
                    self.items_failed(idx, error);
                }
            }
            Event::RetryDue { job } => {
                let idx = job.instance as usize;
                if idx < self.inst.len()
                    && self.inst[idx].waiting_retry
                    && self.inst[idx].attempt == job.attempt
                    && self.inst[idx].iteration == job.iteration
                {
                    self.inst[idx].waiting_retry = false;
                    self.retries_pending -= 1;
                    self.dispatch(idx);
                }
            }
            Event::Cancel { reason } => self.terminate(TaskState::Cancelled, reason),
        }
        self.drain();
        std::mem::take(&mut self.effects)
    }

    fn current_job(&self, job: JobId) -> Option<usize> {
        let idx = job.instance as usize;
        let i = self.inst.get(idx)?;
        (i.state == NodeState::Running && i.attempt == job.attempt && i.iteration == job.iteration)
            .then_some(idx)
    }

    /// Runs the ready queue until nothing inline is left, then checks whether the task ended;
    /// or until the step holds [`STEP_BUDGET`] effects (a loop of a million inline items), the
    /// rest left for [`Scheduler::proceed`]: a step's records, and so the memory they take
    /// and the commit that holds them, stay bounded, and a cancel is heard between steps.
    fn drain(&mut self) {
        while self.effects.len() < STEP_BUDGET
            && let Some(idx) = self.queue.pop_front()
        {
            if self.state.is_terminal() {
                self.queue.clear();
                break;
            }
            if self.inst[idx].state == NodeState::Ready {
                self.start_node(idx);
            }
        }
        if !self.queue.is_empty() && !self.state.is_terminal() {
            return;
        }
        if self.state == TaskState::Running && self.active_jobs == 0 && self.retries_pending == 0 {
            // Nothing left to run. With `wait_all`, the last end may have been skipped: the
            // task ends with the output of the last end reached.
            match self.last_end_output.clone() {
                Some(out) => self.finish_task(TaskState::Finished, Some(out), None),
                None => {
                    let msg = "no end node was reached: every path to an end was skipped";
                    self.finish_task(TaskState::Failed, None, Some(msg.to_string()));
                }
            }
        }
    }

    fn node_of(&self, idx: usize) -> Arc<Node> {
        self.plan.node(self.inst[idx].node).clone()
    }

    /// A ready node: replay it, run it inline, or hand it to the engine.
    fn start_node(&mut self, idx: usize) {
        let replay_key = (self.inst[idx].key.clone(), self.inst[idx].iteration);
        if let Some(past) = self.replay.remove(&replay_key)
            && self.may_replay(idx)
        {
            self.replay_node(idx, past);
            return;
        }
        // The entry only passes the task input on: it taints nothing unless that changed.
        let entry_as_before = matches!(self.inst[idx].node, NodeRef::Top(n) if n == self.plan.entry)
            && !self.changed.contains(&self.plan.nodes[self.plan.entry].id);
        self.inst[idx].tainted = !entry_as_before;
        let node = self.node_of(idx);
        let input = match self.prepare_input(idx, &node) {
            Ok(v) => v,
            Err(e) => return self.fail_node(idx, e, false),
        };
        self.inst[idx].input = Some(input);
        if node.kind.is_external() || node.cache {
            let last = self.last_attempt.get(&replay_key).copied().unwrap_or(0);
            let waiting = self.running_attempt.remove(&replay_key);
            self.inst[idx].attempt = match (&node.kind, waiting) {
                // `dispatch` counts up to the same attempt, which keeps waiting for its callback.
                (NodeKind::Service(_), Some(a)) => a - 1,
                _ => last,
            };
            self.dispatch(idx);
        } else {
            self.inst[idx].attempt = self.last_attempt.get(&replay_key).copied().unwrap_or(0) + 1;
            self.inst[idx].started_at = Some(self.now);
            match self.run_inline(idx, &node) {
                Ok(Some(out)) => self.after_and_finish(idx, &node, out, false),
                Ok(None) => {} // a loop: it finishes when its branches do
                Err(e) => self.fail_node(idx, e, false),
            }
        }
    }

    /// The node's input: directives or merged predecessors, then its `before` script.
    fn prepare_input(&mut self, idx: usize, node: &Node) -> Result<Data, String> {
        let mut input = self.resolve_input(idx, node);
        if let Some(src) = &node.before {
            let mut ctx = self.script_context(idx, node, src, input, Data::null());
            self.scripts
                .run(src, &mut ctx)
                .map_err(|e| format!("`before` script: {e}"))?;
            input = ctx.input;
        }
        Ok(input)
    }

    fn dispatch(&mut self, idx: usize) {
        let node = self.node_of(idx);
        let i = &mut self.inst[idx];
        i.attempt += 1;
        i.attempts_this_run += 1;
        i.state = NodeState::Running;
        i.started_at = Some(self.now);
        i.error = None;
        let input = i.input.clone().unwrap_or_default();
        let node_ref = i.node;
        let scope: Vec<(String, Data)> = self
            .plan
            .template_paths(node_ref)
            .iter()
            .map(|(raw, path)| (raw.clone(), self.resolve_path(idx, path)))
            .collect();
        let i = &mut self.inst[idx];
        if node.cache && i.cache_key.is_none() {
            i.cache_key = Some(cache_key(&node, &input, &scope, self.ctx.owner.as_deref()));
        }
        self.run_job(idx, node, input, scope, None);
    }

    /// Hands instance `idx` (running) to the engine as a job, its `running` record first.
    fn run_job(
        &mut self,
        idx: usize,
        node: Arc<Node>,
        input: Data,
        scope: Vec<(String, Data)>,
        chunked: Option<Arc<crate::loops::LoopWork>>,
    ) {
        let i = &self.inst[idx];
        let job = Job {
            id: JobId {
                instance: idx as u32,
                iteration: i.iteration,
                attempt: i.attempt,
            },
            key: i.key.to_string(),
            iteration: i.iteration,
            node,
            input,
            scope,
            cache_key: i.cache_key.clone(),
            chunked,
        };
        self.active_jobs += 1;
        self.record_node(idx, true);
        self.effects.push(Effect::Run(job));
    }

    /// Runs an in-engine node; `None` when it finishes later (a loop waiting for its branches).
    fn run_inline(&mut self, idx: usize, node: &Node) -> Result<Option<Data>, String> {
        let input = self.inst[idx].input.clone().unwrap_or_default();
        match &node.kind {
            // Shared, not copied: a 9 MB input passes through any number of these.
            NodeKind::Entry(_) => Ok(Some(self.ctx.input.clone())),
            NodeKind::End(_) | NodeKind::Node => Ok(Some(input)),
            NodeKind::Branch(b) => {
                let ctx = self.script_context(idx, node, &b.condition, input.clone(), Data::null());
                let taken = self
                    .scripts
                    .eval_bool(&b.condition, &ctx)
                    .map_err(|e| format!("`if` expression: {e}"))?;
                let (arm_name, arm) = if taken {
                    (Arm::Then, &b.then)
                } else {
                    (Arm::Else, &b.otherwise)
                };
                self.inst[idx].decision = Some(arm_name);
                let mut out = match &arm.out {
                    Some(spec) => self.resolve_spec(idx, spec),
                    None => input.clone(),
                };
                if let Some(src) = &arm.exec {
                    let mut ctx = self.script_context(idx, node, src, input.clone(), out);
                    self.scripts
                        .run(src, &mut ctx)
                        .map_err(|e| format!("`{}.exec` script: {e}", arm_name.as_str()))?;
                    out = ctx.out;
                }
                Ok(Some(out))
            }
            NodeKind::Loop(spec) => self.start_loop(idx, spec),
            NodeKind::Command(_)
            | NodeKind::Http(_)
            | NodeKind::Service(_)
            | NodeKind::Batch(_)
            | NodeKind::Raster(_) => {
                unreachable!("external kinds are dispatched")
            }
        }
    }

    fn complete_external(&mut self, idx: usize, output: Data, cached: bool) {
        let node = self.node_of(idx);
        if cached {
            self.finish_node(idx, output, true);
        } else {
            self.after_and_finish(idx, &node, output, false);
        }
    }

    /// Runs the `after` script (which may rewrite `out`), then finishes the node.
    fn after_and_finish(&mut self, idx: usize, node: &Node, out: Data, cached: bool) {
        let mut out = out;
        if let Some(src) = &node.after {
            let input = self.inst[idx].input.clone().unwrap_or_default();
            let mut ctx = self.script_context(idx, node, src, input, out);
            if let Err(e) = self.scripts.run(src, &mut ctx) {
                return self.fail_node(idx, format!("`after` script: {e}"), false);
            }
            out = ctx.out;
        }
        if let Some(key) = self.inst[idx].cache_key.clone() {
            self.effects.push(Effect::CacheStore {
                key,
                node: node.id.clone(),
                output: out.clone(),
            });
        }
        self.finish_node(idx, out, cached);
    }

    fn replay_node(&mut self, idx: usize, past: PastRun) {
        // Inputs are recomputed, not stored for every node: resolution and `before` scripts are
        // deterministic, so `x.input` paths see what the first run saw.
        let node = self.node_of(idx);
        if let Ok(input) = self.prepare_input(idx, &node) {
            self.inst[idx].input = Some(input);
        }
        let i = &mut self.inst[idx];
        i.tainted = false;
        i.attempt = past.attempt;
        i.decision = past.decision;
        i.started_at = Some(self.now);
        let output = past.output.unwrap_or_default();
        self.finish_node_inner(idx, output, false, false);
    }

    fn finish_node(&mut self, idx: usize, output: Data, cached: bool) {
        self.finish_node_inner(idx, output, cached, true);
    }

    fn finish_node_inner(&mut self, idx: usize, output: Data, cached: bool, record: bool) {
        let i = &mut self.inst[idx];
        i.state = NodeState::Finished;
        i.output = Some(output.clone());
        if record {
            self.record_node_cached(idx, cached);
        }
        let node = self.node_of(idx);
        if let NodeKind::End(spec) = &node.kind {
            self.ends_reached += 1;
            self.last_end_output = Some(output.clone());
            let all_ends_done = !spec.wait_all || self.all_ends_resolved();
            if all_ends_done {
                return self.finish_task(TaskState::Finished, Some(output), None);
            }
        }
        if let NodeKind::Branch(b) = &node.kind {
            let arm = self.inst[idx].decision.unwrap_or(Arm::Else);
            let arm_spec = if arm == Arm::Then {
                &b.then
            } else {
                &b.otherwise
            };
            if let NodeRef::Top(n) = self.inst[idx].node {
                let jumps: Vec<(usize, usize)> = self
                    .plan
                    .topo
                    .back_edges_from(n)
                    .filter(|(_, to)| {
                        arm_spec
                            .next
                            .iter()
                            .any(|id| *id == self.plan.nodes[*to].id)
                    })
                    .collect();
                if !jumps.is_empty() {
                    self.inst[idx].jumps += 1;
                    if self.inst[idx].jumps > b.max_iterations {
                        let msg = format!("max_iterations ({}) reached", b.max_iterations);
                        return self.fail_node(idx, msg, false);
                    }
                    for (edge, head) in jumps {
                        self.start_iteration(edge, head, idx);
                    }
                    return;
                }
            }
        }
        self.resolved(idx);
    }

    fn all_ends_resolved(&self) -> bool {
        self.plan.nodes.iter().enumerate().all(|(n, node)| {
            !matches!(node.kind, NodeKind::End(_)) || self.inst[n].state.is_resolved()
        })
    }

    /// Cancels an instance's running job or armed retry (its iteration is being replaced).
    fn abandon(&mut self, idx: usize) {
        if self.inst[idx].waiting_retry {
            self.inst[idx].waiting_retry = false;
            self.retries_pending -= 1;
        }
        if self.inst[idx].state == NodeState::Running && !self.loops.contains_key(&idx) {
            let i = &self.inst[idx];
            let job = JobId {
                instance: idx as u32,
                iteration: i.iteration,
                attempt: i.attempt,
            };
            self.effects.push(Effect::CancelJob(job));
            self.record_node_state(idx, NodeState::Cancelled);
            self.active_jobs -= 1;
            self.inst[idx].state = NodeState::Cancelled;
        }
    }

    /// A back edge fired: reset the cycle body to a new iteration and start its head.
    fn start_iteration(&mut self, edge: usize, head: usize, from: usize) {
        let body = self.plan.topo.cycle_bodies[edge].clone();
        // Work of the previous iteration still under way in the body (possible with `ready`
        // expressions) is cancelled: its results belong to no current instance.
        let stale: Vec<usize> = (0..self.inst.len())
            .filter(|&i| body.contains(&self.top_node_of(i)))
            .collect();
        for i in stale {
            self.abandon(i);
        }
        for &n in &body {
            let unresolved = self.plan.topo.preds[n]
                .iter()
                .filter(|&&p| body.contains(&p) || !self.inst[p].state.is_resolved())
                .count() as u32;
            let i = &mut self.inst[n];
            i.iteration += 1;
            i.state = NodeState::Waiting;
            i.unresolved_preds = unresolved;
            i.attempts_this_run = 0;
            i.decision = None;
            i.back_from = None;
            i.cache_key = None;
            i.tainted = false;
        }
        self.inst[head].back_from = Some(from);
        self.inst[head].state = NodeState::Ready;
        self.queue.push_back(head);
    }

    /// A node finished or was skipped: tell its successors.
    fn resolved(&mut self, idx: usize) {
        let succs: Vec<usize> = match self.inst[idx].node {
            NodeRef::Top(n) => self.plan.topo.succs[n].clone(),
            NodeRef::Template { template, index } => {
                let base = self.inst[idx].branch.map(|b| b.2).unwrap_or(0);
                self.plan.templates[template].topo.succs[index]
                    .iter()
                    .map(|&t| base + t)
                    .collect()
            }
        };
        for s in succs {
            self.notify(s);
        }
        if let Some((loop_idx, item, base)) = self.inst[idx].branch {
            self.branch_member_resolved(loop_idx, item, base);
        }
    }

    fn notify(&mut self, idx: usize) {
        if self.inst[idx].state != NodeState::Waiting {
            return;
        }
        let scan = matches!(self.inst[idx].node, NodeRef::Top(n) if self.plan.scan_readiness[n]);
        let all_resolved = if scan {
            self.preds_of(idx)
                .iter()
                .all(|&p| self.inst[p].state.is_resolved())
        } else {
            self.inst[idx].unresolved_preds = self.inst[idx].unresolved_preds.saturating_sub(1);
            self.inst[idx].unresolved_preds == 0
        };
        let node = self.node_of(idx);
        if let Some(Readiness::Rule(rule)) = &node.ready {
            return self.apply_rule(idx, *rule);
        }
        if let Some(Readiness::Expression(src)) = &node.ready {
            let ctx = self.script_context(idx, &node, src, Data::null(), Data::null());
            match self.scripts.eval_bool(src, &ctx) {
                Ok(true) => return self.make_ready(idx),
                Ok(false) if all_resolved => return self.skip(idx),
                Ok(false) => return,
                Err(e) => return self.fail_node(idx, format!("`ready` expression: {e}"), false),
            }
        }
        if !all_resolved {
            return;
        }
        if self.preds_of(idx).iter().any(|&p| self.edge_taken(p, idx))
            || self.inst[idx].back_from.is_some()
        {
            self.make_ready(idx);
        } else {
            self.skip(idx);
        }
    }

    /// A named readiness rule, from the states of the predecessors (a branch's arm not taken
    /// counts as skipped).
    fn apply_rule(&mut self, idx: usize, rule: ReadyRule) {
        let (mut finished, mut skipped, mut failed, mut pending) = (0, 0, 0, 0);
        for p in self.preds_of(idx) {
            match self.inst[p].state {
                NodeState::Finished if self.edge_taken(p, idx) => finished += 1,
                NodeState::Finished | NodeState::Skipped => skipped += 1,
                NodeState::Failed => failed += 1,
                _ => pending += 1,
            }
        }
        let again = self.inst[idx].back_from.is_some();
        let start = match rule {
            ReadyRule::AllDone => (pending == 0).then_some(true),
            ReadyRule::OneFinished if finished > 0 || again => Some(true),
            ReadyRule::OneFinished => (pending == 0).then_some(false),
            ReadyRule::AllFinished => {
                (pending == 0).then_some(again || (skipped == 0 && failed == 0))
            }
            ReadyRule::NoneFailed => (pending == 0).then_some(failed == 0),
        };
        match start {
            Some(true) => self.make_ready(idx),
            Some(false) => self.skip(idx),
            None => {}
        }
    }

    /// Whether a failure of `idx` is handled downstream: every successor runs `all_done`.
    fn failure_is_handled(&self, idx: usize) -> bool {
        let succs: Vec<&Node> = match self.inst[idx].node {
            NodeRef::Top(n) => self.plan.topo.succs[n]
                .iter()
                .map(|&s| &*self.plan.nodes[s])
                .collect(),
            NodeRef::Template { template, index } => {
                let t = &self.plan.templates[template];
                t.topo.succs[index].iter().map(|&s| &*t.nodes[s]).collect()
            }
        };
        !succs.is_empty()
            && succs
                .iter()
                .all(|n| n.ready == Some(Readiness::Rule(ReadyRule::AllDone)))
    }

    /// The pipeline node an instance belongs to: itself, or the top-level loop around it.
    fn top_node_of(&self, idx: usize) -> usize {
        let mut at = idx;
        while let Some((loop_idx, _, _)) = self.inst[at].branch {
            at = loop_idx;
        }
        match self.inst[at].node {
            NodeRef::Top(n) => n,
            NodeRef::Template { .. } => unreachable!("an instance outside a branch is top-level"),
        }
    }

    fn make_ready(&mut self, idx: usize) {
        self.inst[idx].state = NodeState::Ready;
        self.queue.push_back(idx);
    }

    fn skip(&mut self, idx: usize) {
        self.inst[idx].tainted = self.preds_of(idx).iter().any(|&p| self.inst[p].tainted);
        self.inst[idx].state = NodeState::Skipped;
        self.inst[idx].started_at = None;
        self.record_node(idx, false);
        self.resolved(idx);
    }

    fn preds_of(&self, idx: usize) -> Vec<usize> {
        match self.inst[idx].node {
            NodeRef::Top(n) => self.plan.topo.preds[n].clone(),
            NodeRef::Template { template, index } => {
                let base = self.inst[idx].branch.map(|b| b.2).unwrap_or(0);
                self.plan.templates[template].topo.preds[index]
                    .iter()
                    .map(|&t| base + t)
                    .collect()
            }
        }
    }

    /// Whether the edge `pred → succ` carries data: the predecessor finished and, for a branch,
    /// `succ` is on the arm it took.
    fn edge_taken(&self, pred: usize, succ: usize) -> bool {
        let p = &self.inst[pred];
        if p.state != NodeState::Finished {
            return false;
        }
        let node = self.plan.node(p.node);
        match (&node.kind, p.decision) {
            (NodeKind::Branch(b), Some(arm)) => {
                let arm = if arm == Arm::Then {
                    &b.then
                } else {
                    &b.otherwise
                };
                let succ_id = &self.plan.node(self.inst[succ].node).id;
                arm.next.iter().any(|id| id == succ_id)
            }
            _ => true,
        }
    }

    fn job_failed(&mut self, idx: usize, error: JobError) {
        let node = self.node_of(idx);
        let i = &mut self.inst[idx];
        i.error = Some(error.message.clone());
        let attempts_left = i.attempts_this_run < node.retry.attempts;
        if error.retryable && attempts_left {
            self.record_node_state(idx, NodeState::Failed);
            let next_attempt = self.inst[idx].attempts_this_run + 1;
            let delay = node.retry.delay_before(next_attempt, self.rng.f64());
            let i = &mut self.inst[idx];
            i.state = NodeState::Ready;
            i.waiting_retry = true;
            self.retries_pending += 1;
            self.effects.push(Effect::RetryAfter {
                job: JobId {
                    instance: idx as u32,
                    iteration: i.iteration,
                    attempt: i.attempt,
                },
                delay,
            });
        } else {
            self.fail_node(idx, error.message, true);
        }
    }

    /// A node failed for good: the task fails, naming node, attempt and cause.
    fn fail_node(&mut self, idx: usize, message: String, attempted: bool) {
        self.fail_node_as(idx, message, attempted, None);
    }

    /// As `fail_node`, with the task's error given (`None`: it names the node and attempt).
    fn fail_node_as(
        &mut self,
        idx: usize,
        message: String,
        attempted: bool,
        task_error: Option<String>,
    ) {
        let i = &mut self.inst[idx];
        if !attempted && i.attempt == 0 {
            i.attempt = 1;
        }
        i.state = NodeState::Failed;
        i.error = Some(message.clone());
        let attempt = i.attempt;
        let key = i.key.clone();
        self.record_node(idx, false);
        if self.failure_is_handled(idx) {
            return self.resolved(idx);
        }
        let mut err = task_error
            .unwrap_or_else(|| format!("node `{key}` failed (attempt {attempt}): {message}"));
        // A failed item tolerated by its loop (`max_failed_items`): the branch ends (what
        // follows the failed node is skipped), the item collects null, the loop goes on.
        if let Some((loop_idx, item, _)) = self.inst[idx].branch
            && let Some(l) = self.loops.get_mut(&loop_idx)
            && l.max_failed > 0
        {
            // Another node of the same branch failed already: the item is listed once.
            if l.failed_index.contains(&item) {
                return self.resolved(idx);
            }
            if (l.failed.len() as u64) < l.max_failed {
                l.failed_index.insert(item);
                l.failed.push(FailedItem {
                    index: item,
                    node: key,
                    error: message,
                });
                return self.resolved(idx);
            }
            err.push_str(&format!(
                "; more items of loop `{}` failed than its max_failed_items ({}) allows",
                self.inst[loop_idx].key, l.max_failed
            ));
        }
        self.terminate(TaskState::Failed, err);
    }

    /// A chunked loop failed because of its items: as any failed node (a loop of branches
    /// around it may tolerate it), but the task's error is the item's (`node \`m#5\` failed
    /// (attempt 1): …`), as it is for a loop of branches.
    fn items_failed(&mut self, idx: usize, error: String) {
        self.fail_node_as(idx, error.clone(), true, Some(error));
    }

    /// Ends the task as failed or cancelled: running jobs are cancelled.
    fn terminate(&mut self, state: TaskState, error: String) {
        for idx in 0..self.inst.len() {
            match self.inst[idx].state {
                NodeState::Running if self.loops.contains_key(&idx) => {
                    self.inst[idx].state = NodeState::Cancelled;
                }
                NodeState::Running => {
                    let job = JobId {
                        instance: idx as u32,
                        iteration: self.inst[idx].iteration,
                        attempt: self.inst[idx].attempt,
                    };
                    self.effects.push(Effect::CancelJob(job));
                    self.record_node_state(idx, NodeState::Cancelled);
                    self.inst[idx].state = NodeState::Cancelled;
                }
                NodeState::Ready => self.inst[idx].state = NodeState::Cancelled,
                _ => {}
            }
        }
        self.active_jobs = 0;
        self.retries_pending = 0;
        self.finish_task(state, None, Some(error));
    }

    fn finish_task(&mut self, state: TaskState, result: Option<Data>, error: Option<String>) {
        if self.state.is_terminal() {
            return;
        }
        if state == TaskState::Finished {
            for idx in 0..self.inst.len() {
                if self.inst[idx].state == NodeState::Running {
                    let job = JobId {
                        instance: idx as u32,
                        iteration: self.inst[idx].iteration,
                        attempt: self.inst[idx].attempt,
                    };
                    self.effects.push(Effect::CancelJob(job));
                    self.record_node_state(idx, NodeState::Cancelled);
                    self.inst[idx].state = NodeState::Cancelled;
                }
            }
        }
        self.state = state;
        self.effects.push(Effect::Record(Record::Task {
            state,
            result: result.clone(),
            error: error.clone(),
        }));
        self.effects.push(Effect::Done(Outcome {
            state,
            result,
            error,
        }));
    }
}

#[cfg(test)]
mod tests;
