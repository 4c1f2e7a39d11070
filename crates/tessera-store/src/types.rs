//! Rows and arguments of the [`crate::Store`] trait.

use serde::Serialize;
use serde_json::Value;
use tessera_core::Data;
use tessera_core::scheduler::{NodeState, Record, TaskState};

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub pipeline: String,
    /// The pipeline document (JSON form), so a task can be resumed from the store alone.
    pub definition: Value,
    pub input: Data,
    pub created_at: u64,
    /// Who started it (a token name); `None` when auth is off or for local runs.
    pub owner: Option<String>,
    /// The process that will run it (`host:pid:nonce`), recorded with the task: it holds the
    /// task's lease (fence 1) until `lease_until` (ms), and renews it while it works.
    pub runner: Option<String>,
    pub lease_until: u64,
    /// The directory relative paths of the pipeline resolve against (the pipeline file's, for
    /// `tessera run FILE`); `None`: the process's working directory (HTTP submissions).
    pub base_dir: Option<String>,
    /// The tick a schedule created it for (ms); `None` for a task started by hand. One task
    /// per pipeline and tick: see [`crate::Schedules::create_tick`].
    pub scheduled_at: Option<u64>,
    /// What a process needs to run it (`pool:gpu`, `type:raster`; see
    /// `tessera_core::Pipeline::needs`): only processes serving them claim it.
    pub needs: Vec<String>,
}

/// A process that runs tasks (a server or a worker), as its last heartbeat described it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    /// Its runner name (`host:pid:nonce`): what its claims are recorded under.
    pub runner: String,
    pub host: String,
    pub pid: u32,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub started_at: u64,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub heartbeat_at: u64,
    /// Its lease length in milliseconds.
    pub lease_ms: u64,
    /// Its limits: `max_processes` and named pools (JSON).
    pub pools: Value,
    /// Tasks it holds now (lease running); filled in by [`crate::Claims::workers`].
    pub held: u64,
    /// Until when its latest lease on a task runs, if it holds any.
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub leases_until: Option<u64>,
}

/// A claim of a task to resume it (see [`crate::Store::reopen_task`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The state and fence read just before: the claim fails if either changed.
    pub observed_state: TaskState,
    pub observed_fence: u64,
    pub runner: &'a str,
    pub now: u64,
    pub lease_until: u64,
}

/// Everything one scheduler step must make durable.
#[derive(Debug)]
pub struct CommitBatch<'a> {
    pub task_id: &'a str,
    /// The fencing token the committer got when it claimed the task: the commit is refused
    /// ([`crate::StoreError::Fenced`]) if the task was claimed again since.
    pub fence: u64,
    pub records: Vec<&'a Record>,
    pub cache: Vec<(&'a str, &'a str, &'a Data)>,
    pub now: u64,
    /// When given, the commit also extends the committer's lease to this (ms) if it ran
    /// shorter: a holder that commits is alive, and its renewal may be held up behind the
    /// very commits that prove it.
    pub lease_until: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub id: String,
    pub pipeline: String,
    #[serde(skip)]
    pub definition: Value,
    pub input: Data,
    pub state: TaskState,
    pub result: Option<Data>,
    pub error: Option<String>,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub created_at: u64,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub updated_at: u64,
    /// Which process runs (or last ran) the task: `host:pid:nonce`.
    #[serde(skip)]
    pub runner: Option<String>,
    /// Incremented by every claim: a holder's commits carry it, and fail once it changed.
    #[serde(skip)]
    pub fence: u64,
    /// Until when (ms) its holder's lease runs, if held: after that any runner may claim it.
    #[serde(skip)]
    pub lease_until: Option<u64>,
    pub owner: Option<String>,
    /// See [`NewTask::base_dir`]; kept so a resumed task resolves paths as its first run did.
    #[serde(skip)]
    pub base_dir: Option<String>,
    /// With [`ValueRead::Sizes`]: the size of a big input left out (`input` is `null`).
    #[serde(skip)]
    pub input_bytes: Option<u64>,
    /// With [`ValueRead::Sizes`]: the size of a big result left out (`result` is `None`).
    #[serde(skip)]
    pub result_bytes: Option<u64>,
    /// The tick a schedule created it for, if one did.
    #[serde(
        serialize_with = "tessera_core::time::ser_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_at: Option<u64>,
}

/// A round of claims (see [`crate::Claims::claim_tasks`]).
#[derive(Debug, Clone, Copy)]
pub struct ClaimMany<'a> {
    pub runner: &'a str,
    pub now: u64,
    pub lease_until: u64,
    pub limit: usize,
    /// Tasks not to claim: those the claimer still drives (a driver that lost its claim and
    /// is stopping), which it could not start again yet.
    pub skip: &'a [String],
    /// What the claimer runs: tasks needing other pools or node kinds are left alone.
    pub serves: &'a Serves,
}

/// The pools and node kinds a process runs (`--pools`, `--node-types`); `None`: all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Serves {
    pub pools: Option<Vec<String>>,
    pub node_types: Option<Vec<String>>,
}

impl Serves {
    /// Whether it runs everything (the default).
    pub fn all(&self) -> bool {
        self.pools.is_none() && self.node_types.is_none()
    }

    /// Whether a task with these needs (see [`NewTask::needs`]) may run here.
    pub fn serves(&self, needs: &[String]) -> bool {
        needs.iter().all(|need| match need.split_once(':') {
            Some(("pool", name)) => self
                .pools
                .as_ref()
                .is_none_or(|p| p.iter().any(|x| x == name)),
            Some(("type", kind)) => self
                .node_types
                .as_ref()
                .is_none_or(|t| t.iter().any(|x| x == kind)),
            _ => true,
        })
    }

    /// The restriction as SQL can check it: the categories restricted (`pool:%`, `type:%`
    /// patterns) and the words served in them.
    pub(crate) fn as_filter(&self) -> (Vec<String>, Vec<String>) {
        let mut patterns = Vec::new();
        let mut served = Vec::new();
        if let Some(pools) = &self.pools {
            patterns.push("pool:%".to_string());
            served.extend(pools.iter().map(|p| format!("pool:{p}")));
        }
        if let Some(types) = &self.node_types {
            patterns.push("type:%".to_string());
            served.extend(types.iter().map(|t| format!("type:{t}")));
        }
        (patterns, served)
    }
}

/// A task claimed by [`crate::Claims::claim_tasks`]: its row as claimed, and every attempt
/// recorded before (read once the claim holds: nothing of a previous holder commits after).
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub task: TaskRow,
    pub past: Vec<tessera_core::scheduler::PastRun>,
    /// Who held it before, and until when (ms): a take-over from a live process is worth
    /// telling operators about.
    pub previous: Option<(String, u64)>,
}

/// A definition a task ran with before a resume replaced it (with its input then).
#[derive(Debug, Clone, Serialize)]
pub struct TaskRevision {
    /// 1 for the task's first definition, then counting up.
    pub revision: u32,
    pub definition: Value,
    pub input: Data,
    /// When a resume replaced it (Unix milliseconds; RFC 3339 in documents).
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub replaced_at: u64,
}

impl TaskRow {
    pub fn task_state(&self) -> TaskState {
        self.state
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskSummary {
    pub id: String,
    pub pipeline: String,
    pub state: TaskState,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub created_at: u64,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub updated_at: u64,
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub pipeline: Option<String>,
    pub state: Option<TaskState>,
    pub limit: usize,
    /// Only tasks created strictly before this (created_at, id): keyset pagination.
    pub before: Option<(u64, String)>,
    /// Only this owner's tasks.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRunRow {
    pub key: String,
    pub node: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub iteration: u32,
    pub attempt: u32,
    pub state: NodeState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Data>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Data>,
    /// Set (with `input`/`output` left out) where a document shows a big value's size only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub started_at: Option<u64>,
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub finished_at: Option<u64>,
    pub cached: bool,
    /// A finished loop's items, counted when it finished (documents summarise loops apart).
    #[serde(skip)]
    pub tally: Option<tessera_core::loops::LoopTally>,
}

/// How a read gives a task's big values (over 64 KiB of JSON, stored once per task and named
/// by their hash in the rows that hold them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueRead {
    /// Every value whole.
    #[default]
    Whole,
    /// Big values left out, their sizes given instead: a document of a million-item task
    /// reads none of its millions.
    Sizes,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub task_id: String,
    pub key: String,
    pub attempt: u32,
    /// `stdout`, `stderr` or `engine`.
    pub stream: String,
    pub line: String,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub at: u64,
}

/// A stored pipeline, served at `POST /api/v1/services/{name}`.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRow {
    pub name: String,
    pub definition: Value,
    /// `user`, or `service:<name>` for a pipeline made from a service's announcement.
    pub source: String,
    pub owner: Option<String>,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub created_at: u64,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub updated_at: u64,
    /// A fresh random value on every write (set by the store; ignored when writing): a copy
    /// with an older version is stale, even after a delete and a re-creation.
    pub version: String,
}

/// A service known from its announcements.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub url: String,
    pub endpoints: Value,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub last_seen: u64,
}

/// One dispatch of a `service` node attempt, waiting for its callback.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRow {
    pub token: String,
    pub task_id: String,
    pub key: String,
    pub iteration: u32,
    pub attempt: u32,
    pub state: CallbackState,
    pub result: Option<Value>,
    pub failed: bool,
    /// The base URL the service was told to call back (`<base>/api/v1/callbacks/<token>`);
    /// `None` in rows stored before it was recorded.
    pub callback_base: Option<String>,
}

/// Where a callback token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Stored before the POST to the service; the service has not accepted it (yet).
    Dispatching,
    /// The service accepted the dispatch; its callback is expected.
    Waiting,
    /// The callback arrived and its result is stored.
    Received,
    /// Its attempt ended without it (timeout, cancel, failed dispatch, a newer attempt).
    Superseded,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Dispatching => "dispatching",
            CallbackState::Waiting => "waiting",
            CallbackState::Received => "received",
            CallbackState::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<CallbackState> {
        [
            CallbackState::Dispatching,
            CallbackState::Waiting,
            CallbackState::Received,
            CallbackState::Superseded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether a callback for this token would still be accepted.
    pub fn is_expected(self) -> bool {
        matches!(self, CallbackState::Dispatching | CallbackState::Waiting)
    }
}

/// Task counts per pipeline and state.
#[derive(Debug, Clone, Serialize)]
pub struct StatRow {
    pub pipeline: String,
    pub state: TaskState,
    pub count: u64,
}

/// Identifies one batch job: a `batch` node instance of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchKey {
    pub task_id: String,
    /// The node instance key (node id, or `loop[i]/id` inside a loop).
    pub key: String,
    pub iteration: u32,
}

/// A batch job: its input's identity and plan (fixed at the first start), state and counts.
#[derive(Debug, Clone, Serialize)]
pub struct BatchJobRow {
    #[serde(flatten)]
    pub id: BatchKey,
    pub state: BatchJobState,
    /// Times the job was started (first run and resumes).
    pub starts: u32,
    /// The input as first seen: path, size, mtime (JSON).
    pub source: Value,
    /// The column names, output header and other plan facts (JSON).
    pub plan: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub created_at: u64,
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub updated_at: u64,
}

/// One chunk of a batch job.
#[derive(Debug, Clone, Serialize)]
pub struct BatchChunkRow {
    pub index: u32,
    pub start: u64,
    pub end: u64,
    pub first_line: u64,
    pub records: u64,
    pub state: ChunkState,
    pub read: u64,
    pub written: u64,
    pub skipped: u64,
    pub filtered: u64,
    pub attempts: u32,
    /// Hash of the input bytes `start..end` as processed (checked on resume).
    pub input_hash: Option<String>,
    /// A 32-bit hash of each physical line of the chunk (little-endian), so that a resume
    /// after the input changed can name the first changed line.
    #[serde(skip)]
    pub line_hashes: Option<Vec<u8>>,
    /// The bytes the chunk appended to the output (its committed range of the output file).
    pub output_bytes: Option<u64>,
    /// The output's first line when a command produced it (CSV header), checked equal across
    /// chunks.
    pub output_header: Option<String>,
    pub error: Option<String>,
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub committed_at: Option<u64>,
}

impl BatchChunkRow {
    /// A planned chunk not processed yet.
    pub fn pending(
        index: u32,
        start: u64,
        end: u64,
        first_line: u64,
        records: u64,
    ) -> BatchChunkRow {
        BatchChunkRow {
            index,
            start,
            end,
            first_line,
            records,
            state: ChunkState::Pending,
            read: 0,
            written: 0,
            skipped: 0,
            filtered: 0,
            attempts: 0,
            input_hash: None,
            line_hashes: None,
            output_bytes: None,
            output_header: None,
            error: None,
            committed_at: None,
        }
    }
}

/// A bad line of a batch job: skipped (within the skip policy) or failing its chunk.
#[derive(Debug, Clone, Serialize)]
pub struct BatchLineRow {
    pub chunk: u32,
    pub line: u64,
    pub state: LineState,
    /// `parse` or `expression` (or `command`).
    pub kind: String,
    pub raw: String,
    pub reason: String,
}

/// Identifies a loop whose items run in chunks: a `loop` node instance of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopKey {
    pub task_id: String,
    /// The loop's instance key (its id, or `outer#3/inner` inside another loop's branch).
    pub key: String,
    pub iteration: u32,
}

/// A committed chunk of a loop's items: their values in order, as JSON text separated by
/// commas (a failed item's is `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopChunkRow {
    pub index: u32,
    /// The chunk's first item, and how many it holds.
    pub first: u64,
    pub count: u64,
    /// The loop's items in all (what a running loop's summary counts its pending items by).
    pub total: u64,
    /// What the items were computed from (their list, the template, what they read): chunks
    /// of another fingerprint belong to an earlier run of the loop on other data.
    pub fingerprint: String,
    #[serde(skip)]
    pub values: String,
    /// Items of the chunk that failed (listed in [`LoopFailureRow`]s).
    pub failed: u64,
    pub committed_at: u64,
}

/// A failed item of a chunked loop: its own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopFailureRow {
    pub item: u64,
    /// The node instance that failed (`check#41`).
    pub node: String,
    pub error: String,
    pub attempts: u32,
}

/// A chunk's checkpoint with its failed items, fenced as a step is.
#[derive(Debug, Clone)]
pub struct LoopChunkCommit<'a> {
    pub loop_key: &'a LoopKey,
    pub chunk: &'a LoopChunkRow,
    pub failures: &'a [LoopFailureRow],
    /// The fence of the writer's claim on the task ([`crate::StoreError::Fenced`]).
    pub fence: u64,
}

/// What a task's chunked loop has committed, without its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopSummary {
    pub key: String,
    pub iteration: u32,
    /// The loop's items in all.
    pub total: u64,
    pub chunks: u64,
    pub items: u64,
    pub failed: u64,
    pub last_commit: u64,
}

/// A chunk's durable checkpoint (its output bytes are already fsynced).
#[derive(Debug, Clone)]
pub struct ChunkCommit<'a> {
    pub job: &'a BatchKey,
    pub chunk: &'a BatchChunkRow,
    pub skipped: &'a [BatchLineRow],
    /// The fence of the writer's claim on the job's task: a writer whose task was claimed by
    /// another process since writes nothing ([`crate::StoreError::Fenced`]).
    pub fence: u64,
}

/// A closed set of states stored as words: `as_str`, `parse`, and serialised as the word.
macro_rules! stored_words {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            pub fn parse(word: &str) -> Option<$name> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_words!(
    /// Where a batch job is.
    BatchJobState {
        Running = "running",
        Finished = "finished",
        Failed = "failed",
    }
);

stored_words!(
    /// Where a chunk of a batch job is.
    ChunkState {
        Pending = "pending",
        Committed = "committed",
        Failed = "failed",
    }
);

stored_words!(
    /// What became of a bad line of a batch job.
    LineState {
        Skipped = "skipped",
        Failed = "failed",
    }
);

/// A schedule's state in the store: whether it is paused, the latest tick a task was created
/// for, that task, and how many of its tasks have not ended. A pipeline whose schedule never
/// ticked nor was paused has none (see [`crate::Schedules::schedule`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleRow {
    pub pipeline: String,
    pub paused: bool,
    /// The latest tick created by the scheduler (ms); backfills do not move it.
    pub last_tick: Option<u64>,
    /// The task of `last_tick`, and its state (none if it was deleted since).
    pub last_task: Option<(String, TaskState)>,
    /// Tasks the schedule created (ticks and backfills) that have not ended.
    pub active: u64,
}

/// A live event to share with the other processes of a store (see [`crate::Events`]).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub task_id: String,
    /// The task's owner: a user sees the events of its own tasks only.
    pub owner: Option<String>,
    /// The process that published it (it has shown it to its own followers already).
    pub runner: String,
    /// The event as sent on `GET /api/v1/events` (JSON text).
    pub data: String,
    pub at: u64,
}

/// A stored live event, numbered in the order it became visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub seq: u64,
    pub task_id: String,
    pub owner: Option<String>,
    pub runner: String,
    pub data: String,
}

/// A request for a slot of a cluster-wide pool (see [`crate::PoolSlots::take_pool_slot`]).
#[derive(Debug, Clone, Copy)]
pub struct PoolTake<'a> {
    pub pool: &'a str,
    pub size: u32,
    pub holder: &'a str,
    pub runner: &'a str,
    pub now: u64,
    pub until: u64,
}
