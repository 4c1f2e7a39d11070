//! Tessera's durable state: the [`Store`] contract, split by concern ([`Claims`], [`Tasks`],
//! [`Logs`], [`Cache`], [`ObjectIndex`], [`Registry`], [`Callbacks`], [`BatchCheckpoints`], [`LoopCheckpoints`], [`Schedules`], [`Events`], [`PoolSlots`]),
//! its implementations on SQLite ([`SqliteStore`], embedded) and PostgreSQL ([`PgStore`], for
//! several processes), and the object store for binary values.
//!
//! SQL lives only in this crate. Every method is synchronous: the engine calls it from its
//! blocking threads.

mod error;
mod group;
mod json;
mod objects;
mod postgres;
mod sqlite;
mod types;
mod words;

pub use error::{ErrorKind, StoreError};
pub use objects::{ObjectMeta, Objects, PutStreamError};
pub use postgres::{PgStore, redact_url};
pub use sqlite::{Durability, SqliteStore};
pub use types::*;

/// Every part of the [`Store`] contract, for code that calls them on a `dyn Store`.
pub mod prelude {
    pub use crate::{
        BatchCheckpoints, Cache, Callbacks, Claims, Events, Logs, LoopCheckpoints, ObjectIndex,
        PoolSlots, Registry, Schedules, Store, Tasks,
    };
}

use serde_json::Value;
use tessera_core::scheduler::PastRun;

/// A count or a time (ms) as a column's signed 64-bit integer, clamped.
pub(crate) fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// What a store's hint is about (see [`Claims::changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Tasks nobody holds appeared (recorded for workers, handed back): for claim loops.
    Claimable,
    /// A cancel request or a callback for a held task: for the holders' watch.
    ForHolders,
    /// A task ended: for whoever follows it.
    Ended,
    /// Live events were shared (see [`Events`]): for servers relaying them.
    Events,
}

impl Change {
    pub const ALL: [Change; 4] = [
        Change::Claimable,
        Change::ForHolders,
        Change::Ended,
        Change::Events,
    ];

    /// Its word in a notification.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Claimable => "claimable",
            Change::ForHolders => "holders",
            Change::Ended => "ended",
            Change::Events => "events",
        }
    }
}

/// Durable state, split by concern: one implementation per database (see [`SqliteStore`])
/// implements every part, and code that needs only some asks only for those. Every method is
/// synchronous: the engine calls it off its async threads.
pub trait Store:
    Claims
    + Tasks
    + Logs
    + Cache
    + ObjectIndex
    + Registry
    + Callbacks
    + BatchCheckpoints
    + LoopCheckpoints
    + Schedules
    + Events
    + PoolSlots
    + Send
    + Sync
{
}

impl<
    T: Claims
        + Tasks
        + Logs
        + Cache
        + ObjectIndex
        + Registry
        + Callbacks
        + BatchCheckpoints
        + LoopCheckpoints
        + Schedules
        + Events
        + PoolSlots
        + Send
        + Sync,
> Store for T
{
}

/// Who holds a task: creation with its first claim, claims on resume, lease renewal, giving up, the tasks nobody holds, and cancel requests (asked of the holder through the store).
pub trait Claims: Send + Sync {
    /// Records a new task (state `pending`) with its pipeline definition and input.
    fn create_task(&self, task: &NewTask) -> Result<(), StoreError>;

    /// Claims a task to resume it, atomically: only if its state and fence are still the
    /// ones observed (two resumes cannot both win) and nobody's lease on it runs at `now`.
    /// State back to `pending`, `runner` holds it until `lease_until`, the fence goes up by
    /// one (the previous holder's commits fail from now on), cancel request cleared, attempts
    /// left `running` by a crash marked failed (interrupted) — except `service` attempts, which
    /// keep waiting for their callback. The new fence, or `None` if it changed or is held.
    fn reopen_task(&self, task_id: &str, claim: &Claim<'_>) -> Result<Option<u64>, StoreError>;

    /// Extends the leases `runner` holds (`(task, fence)`) to `until`, in one transaction; the
    /// tasks it no longer holds (claimed by another since) are returned. A task that ended is
    /// not among them: its holder is done with it.
    fn renew_leases(
        &self,
        runner: &str,
        held: &[(String, u64)],
        until: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// Records a process's heartbeat (inserted or refreshed), and forgets processes whose
    /// last heartbeat is older than `forget_before` (ms).
    fn heartbeat(&self, worker: &WorkerRow, forget_before: u64) -> Result<(), StoreError>;

    /// Processes whose last heartbeat is at `since` or later, with the tasks each holds at
    /// `now`.
    fn workers(&self, since: u64, now: u64) -> Result<Vec<WorkerRow>, StoreError>;

    /// Whether `runner` leads `role` (a chore done once for the whole cluster: sweeps,
    /// retention): it takes the role if nobody holds it at `now` or it held it already, until
    /// `until`. One leader at a time, whatever the number of processes.
    fn lead(&self, role: &str, runner: &str, now: u64, until: u64) -> Result<bool, StoreError>;

    /// Gives up every claim of `runner` without ending the tasks: each becomes claimable at
    /// once by any runner (a process stopping hands its work back). How many.
    fn release_leases(&self, runner: &str) -> Result<u64, StoreError>;

    /// Marks a task its driver had to give up (a store error, a panic) as failed with the
    /// cause, and releases it, so that it can be resumed, cancelled or deleted. Only while
    /// the claim `fence` still holds it; false if not (claimed again, or already ended).
    fn fail_task(&self, task_id: &str, fence: u64, error: &str) -> Result<bool, StoreError>;

    /// Asks the process running a task to cancel it; returns false for an unknown task.
    fn request_cancel(&self, task_id: &str) -> Result<bool, StoreError>;

    fn cancel_requested(&self, task_id: &str) -> Result<bool, StoreError>;

    /// The tasks `runner` holds whose cancel was requested (one indexed query for all the
    /// tasks of a process, however many it runs).
    fn cancel_requests(&self, runner: &str) -> Result<Vec<String>, StoreError>;

    /// Marks a task that nobody holds (no lease running at `now`) as cancelled; false if it
    /// is held (then ask its holder: [`Store::request_cancel`]) or has ended.
    fn mark_cancelled(&self, task_id: &str, reason: &str, now: u64) -> Result<bool, StoreError>;

    /// Tasks that have not ended and that nobody holds at `now` (their holder's lease ran
    /// out: it was killed, or lost the store): any runner may claim and continue them.
    /// At most `limit`, oldest first: a round of claims stays bounded however many wait.
    fn claimable_tasks(&self, now: u64, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Claims at most `limit` tasks that have not ended and that nobody holds at `now`, oldest
    /// first, for `runner` until `lease_until` — each as [`Claims::reopen_task`] would (fence
    /// up by one, interrupted attempts marked failed) — and returns their rows as claimed. Tasks
    /// `runner` itself was last given are left alone (its drivers renew their own claims).
    /// Each comes with its past attempts. On PostgreSQL one statement claims them all (rows
    /// another runner is claiming skipped, not waited for) and one reads their history.
    fn claim_tasks(&self, claim: &ClaimMany<'_>) -> Result<Vec<ClaimedTask>, StoreError>;

    /// A hint that something of `about` may have changed in another process (PostgreSQL's
    /// `LISTEN/NOTIFY`): waiters wake early instead of at their next poll. `None` when every
    /// change comes through this process (SQLite): it wakes its own.
    fn changes(&self, about: Change) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        let _ = about;
        None
    }
}

/// A task's state: step commits (fenced), its row, revisions, node runs and history, listing, statistics, deletion and retention.
pub trait Tasks: Send + Sync {
    /// Commits, in one transaction, every record of a scheduler step: task and node states and
    /// cache entries. Nothing of the step is acted upon before this returns.
    fn commit(&self, batch: &CommitBatch<'_>) -> Result<(), StoreError>;

    fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        self.task_read(id, ValueRead::Whole)
    }

    /// A task's row; with [`ValueRead::Sizes`] a big input or result is left out, its size
    /// given in `input_bytes` / `result_bytes`.
    fn task_read(&self, id: &str, values: ValueRead) -> Result<Option<TaskRow>, StoreError>;

    /// Replaces a task's definition (and input, when given), keeping the current ones as a
    /// revision; for a resume with a fix, by the process that reopened the task.
    fn revise_task(
        &self,
        task_id: &str,
        definition: &Value,
        input: Option<&tessera_core::Data>,
        at: u64,
    ) -> Result<(), StoreError>;

    /// The definitions a task ran with before, oldest first.
    fn task_revisions(&self, task_id: &str) -> Result<Vec<TaskRevision>, StoreError>;

    /// Tasks newest first, filtered.
    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>, StoreError>;

    /// Every recorded attempt of every node of a task, in order of key, iteration, attempt.
    fn node_runs(&self, task_id: &str) -> Result<Vec<NodeRunRow>, StoreError> {
        self.node_runs_read(task_id, ValueRead::Whole)
    }

    /// [`Tasks::node_runs`]; with [`ValueRead::Sizes`] big inputs and outputs are left out,
    /// their sizes given in `input_bytes` / `output_bytes` (save the output of a finished
    /// loop recorded without its tally, by a version before tallies: it is how its items are
    /// counted).
    fn node_runs_read(
        &self,
        task_id: &str,
        values: ValueRead,
    ) -> Result<Vec<NodeRunRow>, StoreError>;

    /// The output of one attempt of one node instance, whole (`None`: no such run, or no
    /// output): what a read by size left out.
    fn node_output(
        &self,
        task_id: &str,
        key: &str,
        iteration: u32,
        attempt: u32,
    ) -> Result<Option<tessera_core::Data>, StoreError>;

    /// Whether the database answers (for health checks): its file is still the one opened,
    /// and a read through the connection succeeds.
    fn check(&self) -> Result<(), StoreError>;

    /// The distinct node instance keys of a task's recorded runs (`id`, `id#i` in a loop),
    /// without their values.
    fn node_keys(&self, task_id: &str) -> Result<Vec<String>, StoreError>;

    /// What a resumed scheduler needs: each attempt's state, and outputs of finished ones.
    fn past_runs(&self, task_id: &str) -> Result<Vec<PastRun>, StoreError>;

    /// Deletes an ended task with its node runs, logs and callbacks; returns the ids of its
    /// objects (their metadata is deleted too; the caller deletes the bytes). A task that has
    /// not ended (or was reopened meanwhile) is a `Conflict`: deleting and resuming one task
    /// at once, exactly one wins.
    fn delete_task(&self, task_id: &str) -> Result<Vec<String>, StoreError>;

    /// Ids of tasks that ended (finished, failed, cancelled) before `before` (ms).
    fn ended_before(&self, before: u64) -> Result<Vec<String>, StoreError>;

    /// Task counts per pipeline and state; only `owner`'s tasks when given.
    fn task_stats(&self, owner: Option<&str>) -> Result<Vec<StatRow>, StoreError>;
}

/// Node log lines.
pub trait Logs: Send + Sync {
    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError>;

    /// Log lines of one node instance (all attempts), or of the whole task when `key` is None.
    fn logs(&self, task_id: &str, key: Option<&str>) -> Result<Vec<LogLine>, StoreError>;

    /// Lines of one node instance stored after line number `after` (numbers increase in the
    /// order lines are stored; 0 is before the first), at most `limit`, each with its number:
    /// what a follower of a running node's log has not seen yet.
    fn logs_after(
        &self,
        task_id: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LogLine)>, StoreError>;
}

/// Cached node outputs.
pub trait Cache: Send + Sync {
    /// A cached output for `task_id`: only if every object it names still exists, in which
    /// case those objects are linked to the task too (kept while any linked task is). An
    /// entry whose objects are gone is forgotten and `None` returned: the node runs again.
    fn cache_hit(&self, key: &str, task_id: &str)
    -> Result<Option<tessera_core::Data>, StoreError>;
}

/// Object metadata and which task each object belongs to (the bytes are in [`Objects`]).
pub trait ObjectIndex: Send + Sync {
    fn put_object(&self, meta: &ObjectMeta, task_id: Option<&str>) -> Result<(), StoreError>;

    fn object(&self, id: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// The task an object belongs to (`None` for an upload not attached yet).
    fn object_task(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Whether an object belongs to a task, or is linked to it by a cache hit.
    fn object_in_task(&self, id: &str, task_id: &str) -> Result<bool, StoreError>;

    /// Objects stored before `before` (ms) and never attached to a task: uploads of requests
    /// that were refused or interrupted. The retention sweep deletes them.
    fn unattached_objects(&self, before: u64) -> Result<Vec<String>, StoreError>;

    /// Forgets objects (their bytes are deleted by the caller): those of a refused request.
    fn delete_objects(&self, ids: &[String]) -> Result<(), StoreError>;

    /// Attaches uploaded objects to the task they started (deleted with it).
    fn attach_objects(&self, task_id: &str, ids: &[String]) -> Result<(), StoreError>;
}

/// Stored pipelines and announced services.
pub trait Registry: Send + Sync {
    /// Creates or replaces a pipeline; true when it was created.
    fn put_pipeline(&self, pipeline: &PipelineRow) -> Result<bool, StoreError>;

    fn pipeline(&self, name: &str) -> Result<Option<PipelineRow>, StoreError>;

    /// The current version of a stored pipeline (`None` when there is none): a cheap check
    /// that a cached copy is still the stored one.
    fn pipeline_version(&self, name: &str) -> Result<Option<String>, StoreError>;

    fn list_pipelines(&self) -> Result<Vec<PipelineRow>, StoreError>;

    /// Every stored pipeline's name and current version, by name, without definitions: what
    /// a reader polling for changes (the schedules' loop) reads each round.
    fn pipeline_versions(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Deletes a pipeline; false when there was none.
    fn delete_pipeline(&self, name: &str) -> Result<bool, StoreError>;

    /// Records a service's announcement (creating or refreshing it).
    fn announce_service(&self, service: &ServiceRow) -> Result<(), StoreError>;

    fn list_services(&self) -> Result<Vec<ServiceRow>, StoreError>;

    /// Forgets a service and deletes the pipelines made from its announcements.
    fn remove_service(&self, name: &str) -> Result<(), StoreError>;
}

/// Callback tokens of service nodes.
pub trait Callbacks: Send + Sync {
    /// Records a dispatched service attempt and its callback token; older tokens of the same
    /// node instance are superseded in the same transaction.
    /// Only while the task's claim is still `fence` ([`StoreError::Fenced`] otherwise): a
    /// holder dispossessed meanwhile must not supersede the token its successor dispatched.
    fn create_callback(&self, row: &CallbackRow, fence: u64) -> Result<(), StoreError>;

    fn callback(&self, token: &str) -> Result<Option<CallbackRow>, StoreError>;

    /// The token of a node attempt, if it was dispatched.
    fn callback_for_attempt(
        &self,
        task_id: &str,
        key: &str,
        iteration: u32,
        attempt: u32,
    ) -> Result<Option<CallbackRow>, StoreError>;

    /// Stores a callback's result if the token is still expected; false (nothing changed) for
    /// an unknown, superseded or already answered token.
    fn complete_callback(
        &self,
        token: &str,
        result: &Value,
        failed: bool,
    ) -> Result<bool, StoreError>;

    /// The service accepted the dispatch: `dispatching` → `waiting`.
    fn mark_dispatched(&self, token: &str) -> Result<(), StoreError>;

    /// The token is about to be dispatched again with another callback base (the listener
    /// the service was given is gone, e.g. a `tessera run` resumed by a new process): back to
    /// `dispatching` with the new base. False (nothing changed) if it is no longer expected.
    fn redispatch_callback(&self, token: &str, callback_base: &str) -> Result<bool, StoreError>;

    /// The attempt ended without its callback (timeout, cancel): the token is refused from now.
    /// Callbacks received after arrival number `after` for tasks `runner` holds (however
    /// they arrived: through this process or another), with their numbers, oldest first.
    fn received_callbacks(
        &self,
        runner: &str,
        after: u64,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// The highest arrival number of a callback so far (0 when none arrived).
    fn last_callback_seq(&self) -> Result<u64, StoreError>;

    /// Retires a token, only while its task's claim is still `fence` (a holder dispossessed
    /// meanwhile retires nothing: the token is the new holder's to wait on).
    fn supersede_callback(&self, token: &str, fence: u64) -> Result<(), StoreError>;
}

/// Batch jobs, their chunks' checkpoints and their bad lines.
/// Checkpoints of loops whose items run in chunks: each chunk's values and failed items,
/// committed together, so that a resumed loop computes only the chunks it lacks.
pub trait LoopCheckpoints: Send + Sync {
    /// Commits chunks (replacing a chunk of the same index) and their failed items, in one
    /// transaction, refused as a whole ([`StoreError::Fenced`]) when the task's fence moved.
    /// A loop's chunks of another fingerprint (an earlier run on other data) are dropped.
    fn put_loop_chunks(&self, commits: &[LoopChunkCommit<'_>]) -> Result<(), StoreError>;

    /// The loop's committed chunks of this fingerprint, in index order, with their values.
    fn loop_chunks(
        &self,
        key: &LoopKey,
        fingerprint: &str,
    ) -> Result<Vec<LoopChunkRow>, StoreError>;

    /// The committed chunks holding items `first..first + count` (any fingerprint: the
    /// latest run's), in index order, with their values.
    fn loop_chunks_over(
        &self,
        key: &LoopKey,
        first: u64,
        count: u64,
    ) -> Result<Vec<LoopChunkRow>, StoreError>;

    /// Failed items in item order, `limit` of them from the `offset`-th.
    fn loop_failures(
        &self,
        key: &LoopKey,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<LoopFailureRow>, StoreError>;

    /// Every chunked loop of a task, summarised.
    fn loop_summaries(&self, task_id: &str) -> Result<Vec<LoopSummary>, StoreError>;
}

pub trait BatchCheckpoints: Send + Sync {
    /// Records a new batch job with its planned chunks (all `pending`), replacing any job of
    /// the same node instance.
    fn create_batch_job(
        &self,
        job: &BatchJobRow,
        chunks: &[BatchChunkRow],
    ) -> Result<(), StoreError>;

    fn batch_job(&self, key: &BatchKey) -> Result<Option<BatchJobRow>, StoreError>;

    /// Every batch job of a task.
    fn batch_jobs(&self, task_id: &str) -> Result<Vec<BatchJobRow>, StoreError>;

    /// Counts a start of the job (state `running`); returns the number of starts so far.
    fn start_batch_job(&self, key: &BatchKey, now: u64) -> Result<u32, StoreError>;

    /// Ends a job: `finished` with its output, or `failed` with the error.
    fn end_batch_job(
        &self,
        key: &BatchKey,
        state: BatchJobState,
        output: Option<&Value>,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError>;

    fn batch_chunks(&self, key: &BatchKey) -> Result<Vec<BatchChunkRow>, StoreError>;

    /// The job's skipped and failed lines, in line order.
    fn batch_lines(&self, key: &BatchKey) -> Result<Vec<BatchLineRow>, StoreError>;

    /// Chunks' checkpoints (or failures) and their lines, all in one durable transaction.
    fn put_batch_chunks(&self, commits: &[ChunkCommit<'_>]) -> Result<(), StoreError>;

    /// The input changed after its first `keep` chunks (which are committed and unchanged):
    /// records the job's new source and plan and replaces its other chunks by `chunks`, in
    /// one transaction.
    fn replan_batch_job(
        &self,
        job: &BatchJobRow,
        keep: u32,
        chunks: &[BatchChunkRow],
    ) -> Result<(), StoreError>;

    /// One chunk's checkpoint (or failure) and its lines.
    fn put_batch_chunk(&self, commit: &ChunkCommit<'_>) -> Result<(), StoreError> {
        self.put_batch_chunks(std::slice::from_ref(commit))
    }
}

/// Schedules' ticks: one task per pipeline and tick, however many processes create them.
pub trait Schedules: Send + Sync {
    /// Records `task` (its `scheduled_at` set: the tick) unless a task of the same pipeline
    /// and tick exists, in one transaction; false when one does (another process created it).
    /// With `advance` (the scheduler's own ticks), the schedule's last tick moves to this one,
    /// and only forward: a tick at or before the last one is refused (false) even if its task
    /// was deleted since, so ticks are created once and in order. Backfills do not advance.
    fn create_tick(&self, task: &NewTask, advance: bool) -> Result<bool, StoreError>;

    /// A pipeline's schedule state (a default row, not paused, if none was recorded).
    fn schedule(&self, pipeline: &str) -> Result<ScheduleRow, StoreError>;

    /// Every recorded schedule state, by pipeline name.
    fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError>;

    /// Pauses (no tick is created while paused) or resumes a pipeline's schedule.
    fn set_schedule_paused(&self, pipeline: &str, paused: bool, now: u64)
    -> Result<(), StoreError>;

    /// The ticks of `pipeline` within `from..=to` that have a task, with its id, in order.
    fn ticks_taken(
        &self,
        pipeline: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>, StoreError>;
}

/// Followers of events whose last word is older than this are forgotten.
pub(crate) const FORGET_FOLLOWERS_MS: u64 = 60_000;

/// Live events shared between the processes of a store: a process running tasks writes the
/// events of its commits here while another process follows them (a server with clients on
/// `GET /api/v1/events`), which reads them in order. Kept for a short while only: they are
/// hints for live displays; the task's rows are the truth.
pub trait Events: Send + Sync {
    /// Appends events, numbered in the order they become visible to readers (a reader that
    /// saw number N never sees a smaller one appear later); events older than `trim_before`
    /// (ms) are deleted in the same transaction.
    fn append_events(&self, events: &[NewEvent], trim_before: u64) -> Result<(), StoreError>;

    /// Events numbered after `after`, oldest first, at most `limit`.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>, StoreError>;

    /// The highest event number so far (0 when none).
    fn last_event_seq(&self) -> Result<u64, StoreError>;

    /// Records that `runner` follows the events of other processes until `until` (ms).
    fn follow_events(&self, runner: &str, until: u64) -> Result<(), StoreError>;

    /// Whether a process other than `runner` follows events at `now`: only then are events
    /// worth writing.
    fn events_followed(&self, runner: &str, now: u64) -> Result<bool, StoreError>;
}

/// Named pools as cluster-wide limits: a pool of size N has N slots in the store, each held by
/// one job at a time under its process's lease (a killed process's slots free themselves when
/// it runs out; a live one renews them with its claims).
pub trait PoolSlots: Send + Sync {
    /// Takes a slot of `pool` (slots `0..size`) for `holder` (a job: task, node key,
    /// attempt), held by `runner` until `until`: the first slot that is free, expired at `now`,
    /// or already `holder`'s. Which slot, or `None` when all are taken.
    fn take_pool_slot(&self, take: &PoolTake<'_>) -> Result<Option<u32>, StoreError>;

    /// Gives a slot back (only if `holder` still holds it).
    fn release_pool_slot(&self, pool: &str, slot: u32, holder: &str) -> Result<(), StoreError>;

    /// Extends every slot `runner` holds to `until`.
    fn renew_pool_slots(&self, runner: &str, until: u64) -> Result<(), StoreError>;

    /// Slots held at `now`, per pool.
    fn pool_usage(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;
}
