//! Tessera's runtime. An [`Engine`] starts tasks: each task's scheduler (the pure state machine
//! of `tessera-core`) runs on its own driver thread, which commits every step to the store
//! before acting on it; commands and HTTP calls run on the async I/O side (tokio), bounded by
//! pools, and report back as events.

mod batch;
mod command;
mod context;
mod driver;
mod error;
mod events;
mod http;
mod inputs;
pub mod inspect;
mod jobs;
mod leases;
mod live_log;
pub mod local;
mod loops;
pub mod node_logs;
mod raster;
mod resume;
pub mod schedules;
mod scratch;
mod service;
mod shared_events;
mod start;
mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tessera_core::scheduler::{Event, Outcome, Progress};
use tessera_core::{Data, Pipeline, Plan, Scripts};
use tessera_store::{Objects, Store};

pub use context::RunContext;
pub use error::EngineError;
pub use raster::{report_json as raster_report_json, summary as raster_summary};
pub use resume::Fix;
use resume::History;
pub use shared_events::record_event;

/// Engine settings.
#[derive(Clone)]
pub struct EngineConfig {
    /// Commands running at once across all tasks.
    pub max_processes: usize,
    /// HTTP calls in flight at once across all tasks.
    pub max_http: usize,
    /// Sizes of named pools, overriding the pipelines' `pools`.
    pub pools: BTreeMap<String, usize>,
    /// Where tasks get scratch files (objects fetched for commands).
    pub work_dir: PathBuf,
    /// How often the engine reads the cancel requests recorded in the store for the tasks it
    /// runs (one query for all of them; a driver polls nothing itself).
    pub cancel_poll: Duration,
    /// How long a claim on a task lasts without renewal (renewed every third of it while the
    /// task runs here). A process killed with -9 lets go of its tasks when it runs out.
    pub lease: Duration,
    /// Whether this process runs tasks; false for an API-only server (`serve --no-work`),
    /// whose submissions are recorded for workers to claim.
    pub run_tasks: bool,
    /// Base URL services call back (`<base>/api/v1/callbacks/<token>`); `None` without a server.
    pub callback_base: Option<String>,
    /// Told of every committed state change (the server's live events).
    pub observer: Option<Observer>,
    /// The pools and node kinds this process runs (`--pools`, `--node-types`): it claims only
    /// tasks needing no others, and leaves submissions of other pipelines to other processes.
    pub serves: tessera_store::Serves,
    /// Variables of the engine's environment that commands get (the rest of the environment,
    /// where secrets such as `TESSERA_TOKENS` live, is never passed on).
    pub command_env: Vec<String>,
}

/// Most tasks one round of `Engine::claim_available` takes: a worker facing a long queue
/// claims it over several rounds (one at most every second), leaving some to other workers.
const CLAIMS_PER_ROUND: usize = 256;

/// Most tasks one process claims for itself (a round of claims stops there): a busy worker
/// leaves the rest of the queue to the others instead of holding it all.
const MAX_HELD: usize = 2_048;

/// Claimed tasks started at once by a round of claims.
const CLAIM_LANES: usize = 8;

/// How long a claim on a task lasts without renewal, unless configured otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// What commands get from the engine's environment unless configured otherwise.
pub const DEFAULT_COMMAND_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("max_processes", &self.max_processes)
            .field("max_http", &self.max_http)
            .field("pools", &self.pools)
            .field("work_dir", &self.work_dir)
            .field("callback_base", &self.callback_base)
            .field("command_env", &self.command_env)
            .finish_non_exhaustive()
    }
}

/// Receives the records of each committed step of a task.
pub type Observer =
    Arc<dyn Fn(&ObservedTask<'_>, &[&tessera_core::scheduler::Record]) + Send + Sync>;

/// The task an observed step belongs to.
#[derive(Debug, Clone, Copy)]
pub struct ObservedTask<'a> {
    pub id: &'a str,
    /// Who started it: live events go to its owner (and admins) only.
    pub owner: Option<&'a str>,
}

impl EngineConfig {
    pub fn new(work_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            max_processes: 32,
            max_http: 256,
            pools: BTreeMap::new(),
            work_dir,
            cancel_poll: Duration::from_millis(200),
            lease: DEFAULT_LEASE,
            run_tasks: true,
            callback_base: None,
            observer: None,
            serves: Default::default(),
            command_env: DEFAULT_COMMAND_ENV.map(String::from).to_vec(),
        }
    }
}

struct Shared {
    store: Arc<dyn Store>,
    objects: Objects,
    scripts: Arc<Scripts>,
    runtime: tokio::runtime::Handle,
    http: reqwest::Client,
    config: EngineConfig,
    pools: jobs::Pools,
    runner: String,
    callbacks: events::Waiters,
    /// Live batch counters of running tasks, by task id.
    batch_boards: Mutex<std::collections::HashMap<String, Arc<batch::BatchBoard>>>,
    /// Chunked loops under way, per task (for progress).
    loop_boards: Mutex<std::collections::HashMap<String, Arc<loops::LoopBoard>>>,
    raster_boards: Mutex<std::collections::HashMap<String, Arc<raster::RasterBoard>>>,
    /// Tasks whose driver runs in this process now: a task recorded as ours but missing here
    /// was given up (its driver stopped) and can be taken over.
    drivers: Mutex<std::collections::HashSet<String>>,
    /// The claims this process holds (task → fence, and how to stop its driver): renewed
    /// together every third of the lease.
    held: Mutex<std::collections::HashMap<String, leases::Held>>,
    scratch: scratch::ScratchDirs,
    /// Running commands' log lines waiting for the next write.
    live_logs: Arc<live_log::LiveLogs>,
    /// When this engine started (ms), for its heartbeat.
    started_at: u64,
    /// [`Engine::drain`] was called: no new task is claimed or started here.
    draining: std::sync::atomic::AtomicBool,
    /// The process is stopping: drivers commit nothing more (a command killed by the stop
    /// must not be recorded as failed), and give nothing up.
    stopping: std::sync::atomic::AtomicBool,
    /// Events of this process's commits, shared while another process follows them.
    events: shared_events::SharedEvents,
    /// Slots of cluster-wide pools held by this process's jobs (renewed with its claims).
    pool_slots: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// The batch progress board of a task (created on first use).
    fn batch_board(&self, task_id: &str) -> Arc<batch::BatchBoard> {
        let mut boards = self.batch_boards.lock().unwrap_or_else(|p| p.into_inner());
        boards.entry(task_id.to_string()).or_default().clone()
    }

    fn drop_batch_board(&self, task_id: &str) {
        let mut boards = self.batch_boards.lock().unwrap_or_else(|p| p.into_inner());
        boards.remove(task_id);
        let mut loops = self.loop_boards.lock().unwrap_or_else(|p| p.into_inner());
        loops.remove(task_id);
        let mut rasters = self.raster_boards.lock().unwrap_or_else(|p| p.into_inner());
        rasters.remove(task_id);
    }

    /// The raster tile maps of a task (created on first use).
    fn raster_board(&self, task_id: &str) -> Arc<raster::RasterBoard> {
        let mut boards = self.raster_boards.lock().unwrap_or_else(|p| p.into_inner());
        boards.entry(task_id.to_string()).or_default().clone()
    }

    fn loop_board(&self, task_id: &str) -> Arc<loops::LoopBoard> {
        let mut boards = self.loop_boards.lock().unwrap_or_else(|p| p.into_inner());
        boards.entry(task_id.to_string()).or_default().clone()
    }

    fn driving(&self, task_id: &str) -> bool {
        self.drivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(task_id)
    }

    /// A driver that stopped without ending its task (a store error, a panic) fails it with
    /// the cause, so that it can be resumed, cancelled or deleted at once. While the store
    /// refuses (a full disk), this is retried in the background.
    fn give_up(self: &Arc<Self>, task_id: &str, fence: u64, cause: &str) {
        let error = format!("the engine stopped running this task: {cause}");
        let attempt = |shared: &Shared| shared.store.fail_task(task_id, fence, &error);
        match attempt(self) {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(task = task_id, error = %e, "cannot record that the task stopped; retrying")
            }
        }
        let shared = self.clone();
        let task_id = task_id.to_string();
        self.runtime.spawn(async move {
            let mut delay = Duration::from_millis(100);
            let give_up_at = std::time::Instant::now() + Duration::from_secs(3600);
            while std::time::Instant::now() < give_up_at {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                if shared.driving(&task_id) {
                    return; // resumed meanwhile
                }
                let (s, t, e) = (shared.clone(), task_id.clone(), error.clone());
                let done =
                    tokio::task::spawn_blocking(move || s.store.fail_task(&t, fence, &e)).await;
                if let Ok(Ok(_)) = done {
                    return;
                }
            }
            tracing::error!(task = %task_id, "gave up recording that the task stopped");
        });
    }
}

/// A task reserved as driven by this process; the reservation ends when this is dropped
/// (the driver thread holds it while it runs).
struct DriverSlot {
    shared: Arc<Shared>,
    task_id: String,
}

impl DriverSlot {
    /// `None` when the task is already driven (or being resumed) here.
    fn reserve(shared: &Arc<Shared>, task_id: &str) -> Option<DriverSlot> {
        let mut drivers = shared.drivers.lock().unwrap_or_else(|p| p.into_inner());
        drivers.insert(task_id.to_string()).then(|| DriverSlot {
            shared: shared.clone(),
            task_id: task_id.to_string(),
        })
    }
}

impl Drop for DriverSlot {
    fn drop(&mut self) {
        self.shared
            .drivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.task_id);
    }
}

/// What a driver starts from: the reservation, the task's plan and input, its history (on
/// resume), where its paths resolve, and the fence of this process's claim.
pub(crate) struct DriverStart {
    slot: DriverSlot,
    owner: Option<String>,
    plan: Arc<Plan>,
    input: Data,
    history: History,
    base_dir: Option<PathBuf>,
    fence: u64,
    /// The schedule's tick the task was created for, if any.
    scheduled_at: Option<u64>,
    /// Set when the task's creation is committed while its driver starts.
    recorded: Option<Arc<context::Recorded>>,
}

/// Runs tasks. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("runner", &self.shared.runner)
            .finish()
    }
}

/// What starts a task: a validated pipeline, its document (stored with the task so it can be
/// resumed from the store alone), the input, and who asked.
#[derive(Debug, Clone)]
pub struct Submission {
    pub definition: Value,
    /// The validated pipeline, or its plan: a caller starting many tasks of one pipeline (a
    /// server's cached copy) shares one plan between them instead of a copy each.
    pub pipeline: Planned,
    /// The input (kept as its text when big).
    pub input: Data,
    pub owner: Option<String>,
    /// The task id to use (a fresh UUID v4 when `None`).
    pub id: Option<String>,
    /// Where the pipeline's relative paths resolve (see [`RunContext::base_dir`]): the
    /// pipeline file's directory; `None` for a pipeline without a file (HTTP).
    pub base_dir: Option<PathBuf>,
    /// The schedule's tick it is created for by the schedules' loop (ms since the epoch; see
    /// [`Engine::create_tick`]); `None` for a task started by hand.
    pub tick: Option<u64>,
}

/// A pipeline to run: as parsed, or already planned (shared).
#[derive(Debug, Clone)]
pub enum Planned {
    Pipeline(Pipeline),
    Plan(Arc<Plan>),
}

impl Planned {
    fn into_plan(self) -> Arc<Plan> {
        match self {
            Planned::Pipeline(p) => Arc::new(Plan::new(Arc::new(p))),
            Planned::Plan(plan) => plan,
        }
    }

    fn name(&self) -> &str {
        &self.pipeline().name
    }

    /// What a process needs to run its tasks: the plan's, computed once, or the pipeline's.
    fn needs(&self) -> std::borrow::Cow<'_, [String]> {
        match self {
            Planned::Pipeline(p) => std::borrow::Cow::Owned(p.needs()),
            Planned::Plan(plan) => std::borrow::Cow::Borrowed(&plan.needs),
        }
    }

    fn pipeline(&self) -> &Pipeline {
        match self {
            Planned::Pipeline(p) => p,
            Planned::Plan(plan) => &plan.pipeline,
        }
    }
}

impl From<Pipeline> for Planned {
    fn from(p: Pipeline) -> Self {
        Planned::Pipeline(p)
    }
}

/// A task started by this engine.
pub struct TaskHandle {
    pub id: String,
    progress: Arc<Mutex<Progress>>,
    batches: Arc<batch::BatchBoard>,
    loops: Arc<loops::LoopBoard>,
    rasters: Arc<raster::RasterBoard>,
    events: events::EventSender,
    done: Arc<events::DoneSlot<Result<Outcome, EngineError>>>,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id).finish()
    }
}

impl TaskHandle {
    pub fn progress(&self) -> Progress {
        let mut p = self.progress.lock().map(|p| p.clone()).unwrap_or_default();
        p.batches = self.batches.snapshot();
        p.loops.extend(self.loops.snapshot());
        p.loops.sort_by(|a, b| a.key.cmp(&b.key));
        p.rasters = self.rasters.snapshot();
        p
    }

    /// Waits up to `timeout` for the task to end; `None` if it is still running. The result
    /// is handed out once.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Outcome, EngineError>> {
        self.done.take(Some(timeout))
    }

    pub fn wait(&self) -> Result<Outcome, EngineError> {
        self.done.take(None).unwrap_or_else(|| {
            Err(EngineError::Internal(
                "the task result was already taken".into(),
            ))
        })
    }

    /// Whether the task has ended (its result is waiting to be taken).
    pub fn is_done(&self) -> bool {
        self.done.is_set()
    }

    /// Cancels the task: running commands are killed with their process group.
    pub fn cancel(&self, reason: &str) {
        self.events.send(Event::Cancel {
            reason: reason.to_string(),
        });
    }
}

pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// `host:pid:nonce` of a new engine: what its claims on tasks are recorded under. The nonce
/// tells it from an earlier process that had the same pid (a container restarted as pid 1),
/// and from another engine of the same process (tests).
fn runner_name() -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{}:{}:{}", hostname(), std::process::id(), &nonce[..12])
}

/// Makes this process's `/proc` entries (environment, memory) unreadable to other processes of
/// its user — its commands included, which run as that user: a server's tokens in its
/// environment are not theirs to read. Root still can.
pub fn hide_own_environment() -> Result<(), EngineError> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| EngineError::Internal(format!("cannot protect the process: {e}")))
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// An engine on the given store and object store; `runtime` runs the I/O side.
    pub fn new(
        store: Arc<dyn Store>,
        objects: Objects,
        runtime: tokio::runtime::Handle,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EngineError::Internal(format!("HTTP client: {e}")))?;
        let scratch = scratch::ScratchDirs::new(&config.work_dir);
        let engine = Engine {
            shared: Arc::new(Shared {
                store,
                objects,
                scripts: Arc::new(Scripts::default()),
                runtime,
                http,
                pools: jobs::Pools::new(&config),
                config,
                runner: runner_name(),
                callbacks: events::Waiters::default(),
                batch_boards: Mutex::default(),
                loop_boards: Mutex::default(),
                raster_boards: Mutex::default(),
                drivers: Mutex::default(),
                held: Mutex::default(),
                scratch,
                live_logs: Arc::default(),
                started_at: now_millis(),
                draining: std::sync::atomic::AtomicBool::new(false),
                stopping: std::sync::atomic::AtomicBool::new(false),
                events: Default::default(),
                pool_slots: Default::default(),
            }),
        };
        leases::start_renewing(&engine.shared);
        shared_events::start(&engine.shared);
        Ok(engine)
    }

    /// This process's runner name (`host:pid:nonce`): what its claims are recorded under.
    pub fn runner(&self) -> &str {
        &self.shared.runner
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The processes running tasks on this store (servers and workers) that are alive: heard
    /// from within their own lease (they beat every third of it), with the tasks each holds.
    pub fn workers(&self) -> Result<Vec<tessera_store::WorkerRow>, EngineError> {
        let now = now_millis();
        let mut rows = self
            .shared
            .store
            .workers(now.saturating_sub(3_600_000), now)?;
        rows.retain(|w| w.heartbeat_at + w.lease_ms >= now);
        Ok(rows)
    }

    /// Whether this process leads `role` now (a chore done once cluster-wide: the registry
    /// sweep, retention, run every `every`), taking or renewing it. A store error counts as not
    /// leading: the chore waits for the next round.
    pub fn lead(&self, role: &str, every: Duration) -> bool {
        let now = now_millis();
        // Held past the next round (rounds may be longer than a lease), so that leadership
        // does not lapse between them and pass from instance to instance.
        let until = now + (2 * every).max(self.shared.config.lease).as_millis() as u64;
        match self
            .shared
            .store
            .lead(role, &self.shared.runner, now, until)
        {
            Ok(leads) => leads,
            Err(e) => {
                tracing::warn!(role, error = %e, "cannot tell who leads");
                false
            }
        }
    }

    /// Whether this process runs tasks (see [`EngineConfig::run_tasks`]).
    pub fn runs_tasks(&self) -> bool {
        self.shared.config.run_tasks
    }

    /// Whether this process runs the tasks of a pipeline that `needs` these pools and node
    /// kinds (`Plan::needs`): it runs tasks, and serves them (see [`EngineConfig::serves`]).
    pub fn runs_needs(&self, needs: &[String]) -> bool {
        self.runs_tasks() && self.shared.config.serves.serves(needs)
    }

    /// How often to look for tasks nobody holds: a third of the lease, at most a second, so
    /// that a killed holder's task is claimed again within its lease plus one second.
    pub fn claim_every(&self) -> Duration {
        (self.shared.config.lease / 3)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(100))
    }

    /// How long this engine's claims on tasks last without renewal.
    pub fn lease(&self) -> Duration {
        self.shared.config.lease
    }

    pub fn objects(&self) -> &Objects {
        &self.shared.objects
    }

    pub fn scripts(&self) -> &Arc<Scripts> {
        &self.shared.scripts
    }

    /// Claims and starts every task nobody holds (not ended, lease run out or never taken):
    /// what a server or worker does at start and every third of its lease. Tasks claimed by
    /// another runner meanwhile are skipped. Nothing while draining.
    /// Waits until the next round of claims: `every`, or sooner when the store hints that
    /// something changed in another process (a task recorded for workers, one handed back),
    /// bursts of hints coalesced into one round.
    pub async fn next_round(&self, every: Duration) {
        wait_for_changes(self.shared.store.as_ref(), every).await
    }

    /// Claims and starts what nobody holds: one claim of up to [`CLAIMS_PER_ROUND`] tasks in
    /// the store (on PostgreSQL, one statement that skips what other workers are claiming),
    /// then each task's history read and its driver started, several at once (each waits on
    /// the store, not on the CPU).
    pub fn claim_available(&self) -> Vec<TaskHandle> {
        if self.is_draining() {
            return Vec::new();
        }
        let shared = &self.shared;
        // A process holds at most MAX_HELD tasks: the rest stay for other workers (and for
        // this one, as its tasks end).
        let held = shared.held.lock().unwrap_or_else(|p| p.into_inner()).len();
        let room = MAX_HELD.saturating_sub(held).min(CLAIMS_PER_ROUND);
        if room == 0 {
            return Vec::new();
        }
        // Tasks still driven here (a driver that lost its claim, stopping) are left alone:
        // claimed now, they could not start again here yet.
        // (Those it holds are left alone by the store already: they are claimed by this runner.)
        let driving: Vec<String> = {
            let held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
            shared
                .drivers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|t| !held.contains_key(*t))
                .cloned()
                .collect()
        };
        let claimed = match shared.store.claim_tasks(&tessera_store::ClaimMany {
            runner: &shared.runner,
            now: now_millis(),
            lease_until: shared.lease_until(),
            limit: room,
            skip: &driving,
            serves: &shared.config.serves,
        }) {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim the tasks nobody holds");
                return Vec::new();
            }
        };
        if claimed.is_empty() {
            return Vec::new();
        }
        let lanes = claimed.len().clamp(1, CLAIM_LANES);
        let mut queues: Vec<Vec<tessera_store::ClaimedTask>> =
            (0..lanes).map(|_| Vec::new()).collect();
        for (i, task) in claimed.into_iter().enumerate() {
            queues[i % lanes].push(task);
        }
        std::thread::scope(|scope| {
            let lanes: Vec<_> = queues
                .into_iter()
                .map(|queue| {
                    scope.spawn(move || {
                        let mut started = Vec::new();
                        for task in queue {
                            let id = task.task.id.clone();
                            match self.continue_claimed(task) {
                                Ok(handle) => {
                                    tracing::debug!(task = %id, "claimed a task nobody held");
                                    started.push(handle);
                                }
                                Err(e) => {
                                    tracing::warn!(task = %id, error = %e, "cannot continue a claimed task")
                                }
                            }
                        }
                        started
                    })
                })
                .collect();
            lanes
                .into_iter()
                .flat_map(|lane| lane.join().unwrap_or_default())
                .collect()
        })
    }

    /// Delivers a service's callback for `token` (objects already stored and referenced in
    /// `result`). Accepted only while the token's attempt is waiting: unknown, superseded or
    /// already answered tokens are refused without touching any state.
    pub fn deliver_callback(
        &self,
        token: &str,
        result: &Value,
        failed: bool,
    ) -> Result<bool, EngineError> {
        if !self.shared.store.complete_callback(token, result, failed)? {
            return Ok(false);
        }
        self.shared.callbacks.notify(token);
        Ok(true)
    }

    /// Whether this process drives the task now (its driver runs here): a callback listener
    /// of one run takes callbacks for its own tasks only.
    pub fn is_driving(&self, task_id: &str) -> bool {
        self.shared.driving(task_id)
    }

    /// Removes a deleted task's files under the work directory (objects fetched for commands,
    /// scratch directories, batch and raster work files).
    pub fn forget_task_files(&self, task_id: &str) {
        let dir = self.shared.config.work_dir.join(task_id);
        // A task id names one directory, never a path.
        if !task_id.is_empty() && !task_id.contains(['/', '.']) && dir.exists() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Stops this engine within `grace`: it claims and starts nothing more; tasks that end
    /// within `grace` end here; then running commands are killed and the claims on the tasks
    /// left are released, so any other runner (or this one's next start) continues them at once
    /// instead of after their lease. Returns how many tasks ended and how many were handed
    /// back.
    pub fn drain(&self, grace: Duration) -> (usize, usize) {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let held = || {
            self.shared
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
        };
        let at_start = held();
        let deadline = std::time::Instant::now() + grace;
        while held() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop_commands();
        // Every claim of this runner, also of drivers that ended on the stop just now; and
        // nothing renews them afterwards.
        let left = self.shared.held_claims().len();
        self.shared
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Err(e) = self.shared.store.release_leases(&self.shared.runner) {
            // Their leases then run out by themselves.
            tracing::warn!(error = %e, "cannot hand back the tasks still running");
        }
        (at_start.saturating_sub(left), left)
    }

    /// Whether [`Engine::drain`] was called: nothing new is claimed or started.
    pub fn is_draining(&self) -> bool {
        self.shared
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The process is stopping: kills every running command with its process group, so none
    /// outlives it. The tasks stay as committed and continue at the next start.
    pub fn stop_commands(&self) -> usize {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        command::kill_running_commands()
    }

    /// Cancels a task run by another process (or by nobody any more).
    pub fn cancel_elsewhere(&self, task_id: &str) -> Result<(), EngineError> {
        let store = &self.shared.store;
        let task = store
            .task_read(task_id, tessera_store::ValueRead::Sizes)?
            .ok_or_else(|| EngineError::NotFound(task_id.to_string()))?;
        if task.task_state().is_terminal() {
            return Ok(());
        }
        // Held (here or elsewhere): its holder cancels it. Otherwise nobody runs it: marked
        // now — unless someone claimed it meanwhile, who is then asked.
        let held = self.shared.held_elsewhere(&task).is_some() || self.shared.driving(task_id);
        if held
            || !store.mark_cancelled(
                task_id,
                "cancelled while no process was running it",
                now_millis(),
            )?
        {
            store.request_cancel(task_id)?;
        }
        Ok(())
    }
}

/// Rounds woken by the store's hints are at least this far apart: a burst of changes (a
/// thousand submissions a second) costs one round, not a thousand.
const MIN_ROUND: Duration = Duration::from_millis(10);

/// Sleeps `every`, or less when the store hints at a change made elsewhere (then
/// [`MIN_ROUND`] more, so that a burst of changes costs one round: fewer, larger claims leave
/// the cores to the work).
pub(crate) async fn wait_for_changes(store: &dyn tessera_store::Store, every: Duration) {
    match store.changes(tessera_store::Change::Claimable) {
        Some(changes) => {
            tokio::select! {
                _ = changes.notified() => tokio::time::sleep(MIN_ROUND).await,
                _ = tokio::time::sleep(every) => {}
            }
        }
        None => tokio::time::sleep(every).await,
    }
}
