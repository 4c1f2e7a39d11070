//! The scheduler's vocabulary: task and node states, events in, effects out, jobs and records.

use std::sync::Arc;
use std::time::Duration;

use crate::data::Data;

use crate::model::Node;

/// What a scheduler needs to know about its task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub task_id: String,
    /// The task's input: the entry node's output.
    pub input: Data,
    /// Who started the task. Cache entries are per owner: a cached output (and the objects
    /// it names) is reused only by tasks of the same owner.
    pub owner: Option<String>,
    /// The tick (ms since the epoch) a schedule created the task for; `None` for a task
    /// started otherwise. Scripts read it as `pipeline.scheduled_at`.
    pub scheduled_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Finished => "finished",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        Some(match s {
            "pending" => TaskState::Pending,
            "running" => TaskState::Running,
            "finished" => TaskState::Finished,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished | TaskState::Failed | TaskState::Cancelled
        )
    }
}

impl serde::Serialize for TaskState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for NodeState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    Waiting,
    Ready,
    Running,
    Finished,
    Failed,
    Skipped,
    Cancelled,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Waiting => "waiting",
            NodeState::Ready => "ready",
            NodeState::Running => "running",
            NodeState::Finished => "finished",
            NodeState::Failed => "failed",
            NodeState::Skipped => "skipped",
            NodeState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        Some(match s {
            "waiting" => NodeState::Waiting,
            "ready" => NodeState::Ready,
            "running" => NodeState::Running,
            "finished" => NodeState::Finished,
            "failed" => NodeState::Failed,
            "skipped" => NodeState::Skipped,
            "cancelled" => NodeState::Cancelled,
            _ => return None,
        })
    }

    /// Finished or skipped: successors may look at it.
    pub fn is_resolved(self) -> bool {
        matches!(self, NodeState::Finished | NodeState::Skipped)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            NodeState::Finished | NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
        )
    }
}

/// The arm a branch took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    Then,
    Else,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Then => "then",
            Arm::Else => "else",
        }
    }

    pub fn parse(s: &str) -> Option<Arm> {
        match s {
            "then" => Some(Arm::Then),
            "else" => Some(Arm::Else),
            _ => None,
        }
    }
}

/// Identifies one attempt of one node instance; events for an older attempt are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId {
    pub instance: u32,
    /// A new cycle iteration restarts attempt numbers: the iteration tells them apart.
    pub iteration: u32,
    pub attempt: u32,
}

/// Work for the engine: run `node` (a command, an HTTP call, or a cached node) on `input`.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    /// Instance key: the node id, suffixed `#<index>` inside a loop branch.
    pub key: String,
    /// Cycle iteration of the instance (0 outside cycles).
    pub iteration: u32,
    pub node: Arc<Node>,
    pub input: Data,
    /// The values of the data paths its templates name (`{{in.out.dir}}`, `{{loop.item}}`),
    /// by placeholder text, resolved when it was dispatched.
    pub scope: Vec<(String, Data)>,
    /// Set for `cache: true` nodes: look it up before running, store the output after.
    pub cache_key: Option<String>,
    /// For a loop whose items run in chunks (see [`crate::loops`]): its items and what they
    /// read, frozen when it started. Its output is the loop's (`{items, failed?}`).
    pub chunked: Option<Arc<crate::loops::LoopWork>>,
}

/// Why a job failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    pub retryable: bool,
}

impl JobError {
    pub fn retryable(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retryable: false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    JobSucceeded {
        job: JobId,
        output: Data,
        cached: bool,
    },
    JobFailed {
        job: JobId,
        error: JobError,
    },
    /// A chunked loop finished its items: as [`Event::JobSucceeded`], with their tally.
    ItemsDone {
        job: JobId,
        output: Data,
        tally: crate::loops::LoopTally,
    },
    /// A chunked loop's items failed beyond its `max_failed_items`: the loop fails, and the
    /// task with `error` (which names the item's node instance, as a branch's failure does).
    ItemsFailed {
        job: JobId,
        error: String,
    },
    /// The delay armed by [`Effect::RetryAfter`] has passed.
    RetryDue {
        job: JobId,
    },
    Cancel {
        reason: String,
    },
}

/// What the engine must do; every `Record` of one batch is committed before anything else.
#[derive(Debug, Clone)]
pub enum Effect {
    Record(Record),
    Run(Job),
    CancelJob(JobId),
    RetryAfter {
        job: JobId,
        delay: Duration,
    },
    CacheStore {
        key: String,
        node: String,
        output: Data,
    },
    Done(Outcome),
}

#[derive(Debug, Clone)]
pub enum Record {
    Task {
        state: TaskState,
        result: Option<Data>,
        error: Option<String>,
    },
    Node(NodeRecord),
}

/// The durable state of one attempt of one node instance.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub key: String,
    pub node_id: String,
    pub node_type: &'static str,
    pub iteration: u32,
    pub attempt: u32,
    pub state: NodeState,
    pub input: Option<Data>,
    pub output: Option<Data>,
    pub error: Option<String>,
    pub decision: Option<Arm>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub cached: bool,
    /// A finished loop's items, counted (its output may hold a million of them).
    pub tally: Option<crate::loops::LoopTally>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: TaskState,
    pub result: Option<Data>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: usize,
    pub finished: usize,
    pub running: usize,
    pub failed: usize,
    pub skipped: usize,
    pub loops: Vec<LoopProgress>,
    /// Batch jobs under way (filled by the engine, which runs them).
    pub batches: Vec<BatchProgress>,
    /// Raster jobs' tile maps (filled by the engine, which runs them).
    pub rasters: Vec<RasterProgress>,
}

/// A raster job's tiles: a grid of `cols` × `rows`, each tile's latest state as one letter,
/// row by row (see [`RasterProgress::STATES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasterProgress {
    pub key: String,
    pub cols: usize,
    pub rows: usize,
    pub done: usize,
    pub total: usize,
    pub tiles: String,
}

impl RasterProgress {
    /// The letters of a tile map and the states they stand for.
    pub const STATES: [(char, &'static str); 8] = [
        ('.', "waiting"),
        ('q', "queued"),
        ('r', "reading"),
        ('c', "computing"),
        ('w', "writing"),
        ('C', "cached"),
        ('d', "delivered"),
        ('f', "failed"),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProgress {
    pub key: String,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub rows_done: u64,
    pub rows_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopProgress {
    pub key: String,
    pub done: usize,
    pub total: usize,
}
