//! The driver of one task: feeds events to the scheduler, commits each step's records in one
//! transaction (events that arrive together are handled as one step: group commit), then runs,
//! cancels or re-arms jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_core::Data;
use tessera_core::Plan;
use tessera_core::scheduler::{
    Effect, Event, JobId, Outcome, PastRun, Progress, Record, Scheduler, TaskContext,
};
use tessera_store::CommitBatch;

use crate::error::EngineError;
use crate::events::{EventReceiver, EventSender};
use crate::{Shared, now_millis};

pub(crate) struct DriverContext {
    pub engine: Arc<Shared>,
    pub task_id: String,
    /// The fence of this process's claim on the task: every commit carries it.
    pub fence: u64,
    /// Shared with every job of the task.
    pub run: Arc<crate::RunContext>,
    pub owner: Option<String>,
    pub plan: Arc<Plan>,
    pub input: Data,
    pub past: Vec<PastRun>,
    /// Nodes whose definition changed since the past runs (a resume with a fix).
    pub changed: std::collections::HashSet<String>,
    pub events_tx: EventSender,
    pub events_rx: EventReceiver,
    pub progress: Arc<Mutex<Progress>>,
}

pub(crate) struct Driver {
    ctx: DriverContext,
    scheduler: Scheduler,
    jobs: HashMap<JobId, tokio::task::JoinHandle<()>>,
    /// When progress was last published; counting is O(nodes), so it is throttled.
    progress_at: Option<Instant>,
    /// Whether a job ran outside the process's own work (a command, a request, a batch or
    /// raster job: anything but a chunked loop), which may leave files in the work directory.
    outside: bool,
    /// Records of steps that acted on nothing yet (group commit), and since when.
    pending: Vec<Effect>,
    pending_since: Option<Instant>,
}

/// Most events handled in one step; bounds the latency of a commit under a flood of events.
const MAX_EVENTS_PER_STEP: usize = 4096;

/// Group commit: records of a step that starts nothing (e.g. one of many parallel commands
/// finished) may wait this long for later steps, so one fsync covers them all. Anything that
/// acts — a job to start, a retry, the task's end — commits everything pending first.
const COMMIT_WINDOW: Duration = Duration::from_millis(5);
const MAX_PENDING: usize = 20_000;

/// How long an idle driver waits for an event before looking again (nothing is polled).
const IDLE_WAIT: Duration = Duration::from_secs(5);

impl Driver {
    pub fn new(mut ctx: DriverContext) -> Driver {
        let past = std::mem::take(&mut ctx.past);
        let scheduler = Scheduler::new(
            TaskContext {
                task_id: ctx.task_id.clone(),
                input: ctx.input.clone(),
                owner: ctx.owner.clone(),
                scheduled_at: ctx.run.scheduled_at,
            },
            ctx.plan.clone(),
            ctx.engine.scripts.clone(),
            past,
        )
        .with_changes(std::mem::take(&mut ctx.changed));
        Driver {
            ctx,
            scheduler,
            jobs: HashMap::new(),
            progress_at: None,
            outside: false,
            pending: Vec::new(),
            pending_since: None,
        }
    }

    /// Drives the task to its end, as an async task that holds no thread while it waits:
    /// each step (scheduler, commit, starting jobs) runs on a blocking thread, the driver moved
    /// there and back. On a store error the task is left as last committed and its jobs are
    /// stopped; the engine then fails it with the cause (so that it can be resumed, cancelled or
    /// deleted). A panic in a step stops the jobs too and ends the task with the panic's text.
    pub async fn run(self: Box<Self>) -> (Box<Self>, Result<Outcome, EngineError>) {
        let (mut driver, mut outcome) = step(self, |d| {
            let effects = d.scheduler.start(now_millis());
            d.apply(effects)
        })
        .await;
        loop {
            match outcome {
                // The step that ended the task stopped its jobs left (see `step`).
                Ok(Some(o)) => return (driver, Ok(o)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(task = %driver.ctx.task_id, error = %e, "task driver stopped");
                    let (d, ()) = step_infallible(driver, |d| d.finish_jobs()).await;
                    return (d, Err(e));
                }
            }
            // Events wake it (a cancel asked through the store comes as one too, from the
            // engine's cancel watch); the timeout only flushes a pending group commit. Inline
            // work a step left (a long loop) goes on at once, after the events already queued.
            let wait = match driver.pending_since {
                _ if driver.scheduler.has_work() => Duration::ZERO,
                Some(t) => COMMIT_WINDOW.saturating_sub(t.elapsed()),
                None => IDLE_WAIT,
            };
            let batch = driver
                .ctx
                .events_rx
                .recv_batch(wait, MAX_EVENTS_PER_STEP)
                .await;
            (driver, outcome) = step(driver, move |d| {
                let mut effects = Vec::new();
                let now = now_millis();
                for e in batch {
                    if let Event::JobSucceeded { job, .. } | Event::JobFailed { job, .. } = &e {
                        d.jobs.remove(job);
                    }
                    effects.extend(d.scheduler.handle(e, now));
                }
                if d.scheduler.has_work() {
                    effects.extend(d.scheduler.proceed(now));
                }
                d.apply(effects)
            })
            .await;
        }
    }

    /// Commits the step's records, then carries out the rest in order. A step that only
    /// records, or only starts loops computed in the process, leaves its records pending (group
    /// commit; see [`may_precede_its_records`]).
    fn apply(&mut self, effects: Vec<Effect>) -> Result<Option<Outcome>, EngineError> {
        if effects.iter().all(may_precede_its_records) {
            let mut runs = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Run(job) => runs.push(job),
                    record => self.pending.push(record),
                }
            }
            if !self.pending.is_empty() {
                self.pending_since.get_or_insert_with(Instant::now);
            }
            // While inline work goes on (a long loop, step after step), records are committed
            // by the MAX_PENDING, not every COMMIT_WINDOW: one flush per 20,000 records.
            let due = !self.scheduler.has_work()
                && self
                    .pending_since
                    .is_some_and(|t| t.elapsed() >= COMMIT_WINDOW);
            if due || self.pending.len() >= MAX_PENDING {
                let pending = std::mem::take(&mut self.pending);
                self.pending_since = None;
                self.commit(&pending)?;
            }
            for job in runs {
                self.start_job(job);
            }
            self.publish_progress(false);
            return Ok(None);
        }
        let mut effects = effects;
        if !self.pending.is_empty() {
            let mut all = std::mem::take(&mut self.pending);
            all.append(&mut effects);
            effects = all;
            self.pending_since = None;
        }
        self.commit(&effects)?;
        self.publish_progress(effects.iter().any(|e| matches!(e, Effect::Done(_))));
        let mut outcome = None;
        for effect in effects {
            match effect {
                Effect::Record(_) | Effect::CacheStore { .. } => {}
                Effect::Run(job) => self.start_job(job),
                Effect::CancelJob(id) => {
                    if let Some(h) = self.jobs.remove(&id) {
                        h.abort();
                        self.wait_aborted(h);
                    }
                }
                Effect::RetryAfter { job, delay } => {
                    let tx = self.ctx.events_tx.clone();
                    self.ctx.engine.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        tx.send(Event::RetryDue { job });
                    });
                }
                Effect::Done(o) => outcome = Some(o),
            }
        }
        Ok(outcome)
    }

    /// Publishes the scheduler's counts at the task's end, else at most every 50 ms
    /// (counting is O(nodes)).
    fn publish_progress(&mut self, done: bool) {
        if done
            || self
                .progress_at
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(50))
        {
            self.progress_at = Some(Instant::now());
            if let Ok(mut p) = self.ctx.progress.lock() {
                *p = self.scheduler.progress();
            }
        }
    }

    fn start_job(&mut self, job: tessera_core::scheduler::Job) {
        self.outside |= job.chunked.is_none();
        let id = job.id;
        let handle = crate::jobs::spawn(
            self.ctx.engine.clone(),
            &self.ctx.run,
            &self.ctx.plan,
            job,
            self.ctx.events_tx.clone(),
        );
        self.jobs.insert(id, handle);
    }

    fn commit(&self, effects: &[Effect]) -> Result<(), EngineError> {
        let mut records: Vec<&Record> = Vec::new();
        let mut cache = Vec::new();
        for e in effects {
            match e {
                Effect::Record(r) => records.push(r),
                Effect::CacheStore { key, node, output } => {
                    cache.push((key.as_str(), node.as_str(), output))
                }
                _ => {}
            }
        }
        if records.is_empty() && cache.is_empty() {
            return Ok(());
        }
        if self
            .ctx
            .engine
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // What the stop did (commands killed) is not the task's history.
            return Err(EngineError::Internal("the engine is stopping".into()));
        }
        // A new task's creation may still be under way: its writes come after it.
        self.ctx.run.wait_recorded()?;
        let observed = records.clone();
        let batch = CommitBatch {
            task_id: &self.ctx.task_id,
            fence: self.ctx.fence,
            records,
            cache,
            now: now_millis(),
            lease_until: Some(self.ctx.engine.lease_until()),
        };
        let mut delay = Duration::from_millis(20);
        let mut tries = 0;
        loop {
            match self.ctx.engine.store.commit(&batch) {
                Ok(()) => break,
                // A full disk does not free itself in seconds: the engine fails the task with
                // the cause, and the user resumes it once space is freed.
                Err(e)
                    if e.kind() == tessera_store::ErrorKind::Retryable
                        && !e.is_full()
                        && tries < 8 =>
                {
                    tracing::warn!(task = %self.ctx.task_id, error = %e, "commit failed, retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                    tries += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let task = crate::ObservedTask {
            id: &self.ctx.task_id,
            owner: self.ctx.owner.as_deref(),
        };
        if let Some(observer) = &self.ctx.engine.config.observer {
            observer(&task, &observed);
        }
        let engine = &self.ctx.engine;
        engine.events.push(&engine.runner, &task, &observed);
        Ok(())
    }

    /// Whether a job ran outside the process's own work (see `outside`).
    pub fn ran_outside_work(&self) -> bool {
        self.outside
    }

    /// Blocks until an aborted job has dropped its future (and so killed its processes).
    /// The driver thread is not a runtime thread, so it may block on the runtime here.
    fn wait_aborted(&self, handle: tokio::task::JoinHandle<()>) {
        let _ = self.ctx.engine.runtime.block_on(handle);
    }

    /// Jobs still running when the task ends (siblings of a failure) are cancelled.
    fn finish_jobs(&mut self) {
        for (_, h) in self.jobs.drain() {
            h.abort();
            let _ = self.ctx.engine.runtime.block_on(h);
        }
    }
}

/// Whether an effect may be carried out before the records of its step are durable: records,
/// and loops whose items are computed in the process. Such a loop touches nothing outside the
/// process but its own chunks (fenced), so if the process dies before its records are committed
/// the loop is simply run again on resume — and reuses those chunks. Its step's records then
/// go with the next commit (within [`COMMIT_WINDOW`], or with the loop's end): one fsync less
/// per loop. Anything seen outside — a process, a request, a retry timer, the task's end —
/// commits what is pending first.
fn may_precede_its_records(effect: &Effect) -> bool {
    match effect {
        Effect::Record(_) | Effect::CacheStore { .. } => true,
        Effect::Run(job) => job.chunked.is_some(),
        Effect::CancelJob(_) | Effect::RetryAfter { .. } | Effect::Done(_) => false,
    }
}

type StepResult = Result<Option<Outcome>, EngineError>;

/// Runs one step of `driver` on a blocking thread (scheduler work, the commit's fsync and
/// starting jobs block); a panic in it becomes an error, after the task's jobs are stopped.
async fn step(
    driver: Box<Driver>,
    f: impl FnOnce(&mut Driver) -> StepResult + Send + 'static,
) -> (Box<Driver>, StepResult) {
    let (driver, result) = tokio::task::spawn_blocking(move || {
        let mut driver = driver;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ended = f(&mut driver);
            // Jobs still running when the task ends (siblings of a failure) are cancelled
            // here, not in a step of their own: one hop between threads less per task.
            if matches!(ended, Ok(Some(_))) {
                driver.finish_jobs();
            }
            ended
        }));
        let result = result.unwrap_or_else(|panic| {
            // Its jobs must not outlive it (nor hold pool slots).
            driver.finish_jobs();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(task = %driver.ctx.task_id, panic = %what, "task driver panicked");
            Err(EngineError::Internal(format!(
                "the task driver panicked: {what}"
            )))
        });
        (driver, result)
    })
    .await
    .expect("a driver step is never cancelled, and catches its panics");
    (driver, result)
}

async fn step_infallible<T: Send + 'static>(
    driver: Box<Driver>,
    f: impl FnOnce(&mut Driver) -> T + Send + 'static,
) -> (Box<Driver>, T) {
    tokio::task::spawn_blocking(move || {
        let mut driver = driver;
        let value = f(&mut driver);
        (driver, value)
    })
    .await
    .expect("a driver step is never cancelled")
}
