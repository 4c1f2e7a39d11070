//! Group commit across tasks, for any backend: writers queue their operations; whoever finds
//! no commit under way becomes the leader and writes everything queued in one transaction (one
//! fsync), each operation under its own savepoint so one failure fails only its own writer.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::error::{ErrorKind, StoreError};
use tessera_core::Data;

/// A JSON value to write: a small one serialised by the caller's thread (the leader only
/// writes), a big one kept as the text it already is (never copied).
pub(crate) enum Json {
    Serialised(String),
    Text(Data),
}

impl Json {
    pub fn of(d: &Data) -> Json {
        if d.is_text() {
            Json::Text(d.clone())
        } else {
            Json::Serialised(d.json().into_owned())
        }
    }

    /// Whether it is a big value (kept as text, stored once per task).
    pub(crate) fn big(&self) -> bool {
        matches!(self, Json::Text(_))
    }

    pub(crate) fn text(&self) -> &str {
        match self {
            Json::Serialised(s) => s,
            Json::Text(d) => d.as_text().expect("kept as text"),
        }
    }
}

/// A task to create, owned (serialised by the caller's thread).
pub(crate) struct TaskInsert {
    pub id: String,
    pub pipeline: String,
    pub definition: String,
    pub input: Json,
    pub created_at: i64,
    pub owner: Option<String>,
    pub runner: Option<String>,
    pub lease_until: i64,
    pub base_dir: Option<String>,
    pub scheduled_at: Option<i64>,
    /// JSON array of the task's needs (`None` when it has none).
    pub needs: Option<String>,
}

/// One node-run upsert, owned.
pub(crate) struct NodeUpsert {
    pub key: String,
    pub iteration: u32,
    pub attempt: u32,
    pub node_id: String,
    pub node_type: &'static str,
    pub state: &'static str,
    pub input: Option<Json>,
    pub output: Option<Json>,
    pub error: Option<String>,
    pub decision: Option<&'static str>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub cached: bool,
    /// A finished loop's tally, as JSON.
    pub tally: Option<String>,
}

pub(crate) struct TaskUpdate {
    pub state: &'static str,
    pub result: Option<Json>,
    pub error: Option<String>,
}

/// A scheduler step's records, owned.
pub(crate) struct StepWrite {
    pub task_id: String,
    pub fence: u64,
    pub now: i64,
    /// The committer's lease extended to this, if it ran shorter (see `CommitBatch`).
    pub lease_until: Option<i64>,
    pub nodes: Vec<NodeUpsert>,
    pub tasks: Vec<TaskUpdate>,
    pub cache: Vec<(String, String, Json)>,
}

impl TaskInsert {
    /// Serialised on the caller's thread.
    pub(crate) fn of(task: &crate::types::NewTask) -> TaskInsert {
        TaskInsert {
            id: task.id.clone(),
            pipeline: task.pipeline.clone(),
            definition: serde_json::to_string(&task.definition)
                .expect("JSON values always serialise"),
            input: Json::of(&task.input),
            created_at: crate::int(task.created_at),
            owner: task.owner.clone(),
            runner: task.runner.clone(),
            lease_until: crate::int(task.lease_until),
            base_dir: task.base_dir.clone(),
            scheduled_at: task.scheduled_at.map(crate::int),
            needs: (!task.needs.is_empty())
                .then(|| serde_json::to_string(&task.needs).expect("strings serialise")),
        }
    }
}

impl StepWrite {
    /// A step's records, serialised on the caller's thread (the leader only writes).
    pub(crate) fn of(batch: &crate::types::CommitBatch<'_>) -> StepWrite {
        use tessera_core::scheduler::{Arm, Record};
        let mut step = StepWrite {
            task_id: batch.task_id.to_string(),
            fence: batch.fence,
            now: crate::int(batch.now),
            lease_until: batch.lease_until.map(crate::int),
            nodes: Vec::new(),
            tasks: Vec::new(),
            cache: Vec::new(),
        };
        for record in &batch.records {
            match record {
                Record::Node(n) => step.nodes.push(NodeUpsert {
                    key: n.key.clone(),
                    iteration: n.iteration,
                    attempt: n.attempt,
                    node_id: n.node_id.clone(),
                    node_type: n.node_type,
                    state: n.state.as_str(),
                    input: n.input.as_ref().map(Json::of),
                    output: n.output.as_ref().map(Json::of),
                    error: n.error.clone(),
                    decision: n.decision.map(Arm::as_str),
                    started_at: n.started_at.map(|t| t as i64),
                    finished_at: n.finished_at.map(|t| t as i64),
                    cached: n.cached,
                    tally: n
                        .tally
                        .as_ref()
                        .map(|t| serde_json::to_string(t).expect("a tally always serialises")),
                }),
                Record::Task {
                    state,
                    result,
                    error,
                } => step.tasks.push(TaskUpdate {
                    state: state.as_str(),
                    result: result.as_ref().map(Json::of),
                    error: error.clone(),
                }),
            }
        }
        for (key, node, output) in &batch.cache {
            step.cache
                .push((key.to_string(), node.to_string(), Json::of(output)));
        }
        step
    }
}

pub(crate) enum Op {
    CreateTask(TaskInsert),
    Step(StepWrite),
    Revise(TaskRevise),
}

/// A resume with a new definition (and maybe input): the current ones are kept as a revision.
pub(crate) struct TaskRevise {
    pub task_id: String,
    pub definition: String,
    pub input: Option<Json>,
    pub at: i64,
}

#[derive(Default)]
struct State {
    queue: Vec<(u64, Op)>,
    done: HashMap<u64, Outcome>,
    leader: bool,
    next_ticket: u64,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    finished: Condvar,
}

impl GroupCommit {
    /// Writes `op` durably, together with whatever other writers queued meanwhile.
    /// `write_all` writes a batch of operations in one transaction and gives each its outcome;
    /// it runs on the thread of whichever writer leads.
    pub fn write(
        &self,
        op: Op,
        write_all: impl Fn(Vec<(u64, Op)>) -> Vec<(u64, Outcome)>,
    ) -> Result<(), StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, op));
        loop {
            if let Some(result) = st.done.remove(&ticket) {
                return result.map_err(|failed| match failed {
                    Failed::Described(kind, full, message) => StoreError::Batch {
                        kind,
                        full,
                        message,
                    },
                    Failed::Fenced(task_id) => StoreError::Fenced(task_id),
                });
            }
            if !st.leader {
                st.leader = true;
                let ops = std::mem::take(&mut st.queue);
                drop(st);
                let tickets: Vec<u64> = ops.iter().map(|(t, _)| *t).collect();
                // A panic while writing must not leave the leader's place taken: every writer
                // of the batch gets an error instead, and the next batch gets a leader.
                let results =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_all(ops)))
                .unwrap_or_else(|_| {
                    let failed = Failed::Described(
                        ErrorKind::Internal,
                        false,
                        "the group commit failed unexpectedly (a panic); nothing of it may have been written".into(),
                    );
                    tickets.iter().map(|t| (*t, Err(failed.clone()))).collect()
                });
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.done.extend(results);
                st.leader = false;
                self.finished.notify_all();
                continue;
            }
            st = self.finished.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A write's result; a failure is shared by description with every writer of the batch.
pub(crate) type Outcome = Result<(), Failed>;

#[derive(Clone)]
pub(crate) enum Failed {
    Described(ErrorKind, bool, String),
    /// The writer no longer holds the task (see [`StoreError::Fenced`]).
    Fenced(String),
}

impl Op {
    pub(crate) fn task_id(&self) -> &str {
        match self {
            Op::CreateTask(t) => &t.id,
            Op::Step(s) => &s.task_id,
            Op::Revise(r) => &r.task_id,
        }
    }
}

/// A task given to `Schedules::create_tick` without its tick: a caller's mistake.
pub(crate) fn no_tick(task: &crate::types::NewTask) -> StoreError {
    StoreError::Database(format!("task {} of a tick has no tick", task.id))
}

/// Which slot of a pool `take` gets, given the pool's rows `(slot, holder, until)`: the one
/// its holder has already (a take asked again), else the first of `0..size` that nobody
/// holds at `take.now`; `None` when all are taken.
pub(crate) fn slot_to_take(
    take: &crate::types::PoolTake<'_>,
    rows: &[(u32, String, i64)],
) -> Option<u32> {
    if let Some((slot, _, _)) = rows.iter().find(|(_, holder, _)| holder == take.holder) {
        return Some(*slot);
    }
    let now = crate::int(take.now);
    let busy: std::collections::HashSet<u32> = rows
        .iter()
        .filter(|(_, _, until)| *until >= now)
        .map(|(slot, _, _)| *slot)
        .collect();
    (0..take.size).find(|slot| !busy.contains(slot))
}
