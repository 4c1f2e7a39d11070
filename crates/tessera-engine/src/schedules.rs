//! Schedules at work: the round of the loop that creates each tick's task (run by one process
//! of a cluster at a time, see `Engine::lead`), each schedule's state as shown by the CLI and
//! the API, and backfills of a range of ticks.
//!
//! The schedules are those of the stored pipelines (`PUT /api/v1/pipelines`), so every
//! instance sees the same ones. Which ticks to create is decided by the core
//! ([`tessera_core::Schedule::decide`]); the store creates each tick's task once, whoever asks
//! (a unique key on pipeline and tick), so two instances leading one after the other never
//! create a tick twice.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tessera_core::scheduler::TaskState;
use tessera_core::{Pipeline, Plan, Schedule, Scripts};
use tessera_store::{NewTask, Store, StoreError};

use crate::{Engine, EngineError, Planned, Submission, TaskHandle};

/// Most ticks one backfill creates (or lists): a range of a per-second schedule over a year
/// is refused with this number, rather than creating 31 million tasks.
pub const MAX_BACKFILL_TICKS: usize = 100_000;

/// A stored pipeline that has a schedule, parsed once per stored version.
struct Scheduled {
    pipeline: Arc<Pipeline>,
    plan: Arc<Plan>,
    definition: Value,
    owner: Option<String>,
}

impl Scheduled {
    fn schedule(&self) -> &Schedule {
        self.pipeline
            .schedule
            .as_deref()
            .expect("only pipelines with a schedule are kept")
    }
}

/// What the schedules' loop keeps between rounds: the stored pipelines parsed, by name, with
/// the version they were parsed at (`None`: no schedule, or no longer valid).
#[derive(Default)]
pub struct ScheduleBook {
    parsed: HashMap<String, (String, Option<Arc<Scheduled>>)>,
}

impl ScheduleBook {
    /// The stored pipelines that have a schedule. Each round reads the pipelines' versions
    /// only; a definition is read and parsed again only when its version changed.
    fn refresh(
        &mut self,
        store: &dyn Store,
        scripts: &Scripts,
    ) -> Result<Vec<Arc<Scheduled>>, StoreError> {
        let versions = store.pipeline_versions()?;
        let mut seen = HashMap::with_capacity(versions.len());
        for (name, version) in versions {
            let entry = match self.parsed.remove(&name) {
                Some((known, parsed)) if known == version => (known, parsed),
                // Written since (or deleted meanwhile: nothing to schedule).
                _ => match store.pipeline(&name)? {
                    Some(row) => (row.version.clone(), parse(row, scripts)),
                    None => continue,
                },
            };
            seen.insert(name, entry);
        }
        self.parsed = seen;
        Ok(self
            .parsed
            .values()
            .filter_map(|(_, s)| s.clone())
            .collect())
    }
}

/// A stored pipeline, if it has a schedule and still loads (a pipeline stored by an older
/// version under rules that changed is skipped, with a warning).
fn parse(row: tessera_store::PipelineRow, scripts: &Scripts) -> Option<Arc<Scheduled>> {
    row.definition.get("schedule")?;
    match tessera_core::load_value(row.definition, scripts) {
        Ok((pipeline, definition)) => {
            pipeline.schedule.as_ref()?;
            let pipeline = Arc::new(pipeline);
            Some(Arc::new(Scheduled {
                plan: Arc::new(Plan::new(pipeline.clone())),
                pipeline,
                definition,
                owner: row.owner,
            }))
        }
        Err(report) => {
            tracing::warn!(pipeline = %row.name, %report, "a stored pipeline no longer loads: its schedule is skipped");
            None
        }
    }
}

/// What a round of the schedules' loop did.
#[derive(Debug, Default)]
pub struct ScheduleRound {
    /// Tasks created for ticks (ids).
    pub created: Vec<String>,
    /// Those of them that run here.
    pub started: Vec<TaskHandle>,
    /// The earliest next tick of any schedule (ms): when to run a round again at the latest.
    pub wake_at: Option<u64>,
    /// Some due ticks wait for a task slot (`max_active_tasks`): run a round again as soon as
    /// a task ends.
    pub behind: bool,
}

impl Engine {
    /// One round of the schedules' loop at `now`: every stored pipeline's schedule that is not
    /// paused creates the ticks due now (see [`Schedule::decide`]), each a task that starts
    /// here when this engine runs tasks. A schedule whose ticks cannot be created now (a store
    /// error) is tried again at the next round; the others go on.
    pub fn schedule_round(
        &self,
        book: &mut ScheduleBook,
        now: u64,
    ) -> Result<ScheduleRound, EngineError> {
        let store = self.store().as_ref();
        let mut round = ScheduleRound::default();
        for scheduled in book.refresh(store, self.scripts())? {
            let schedule = scheduled.schedule();
            let name = &scheduled.pipeline.name;
            let state = store.schedule(name)?;
            if state.paused {
                continue;
            }
            let decision = schedule.decide(state.last_tick, now, state.active as usize);
            round.wake_at = match (round.wake_at, decision.wake_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            round.behind |= decision.behind;
            for tick in decision.ticks {
                let submission = Submission {
                    definition: scheduled.definition.clone(),
                    pipeline: Planned::Plan(scheduled.plan.clone()),
                    input: schedule.task_input(),
                    owner: scheduled.owner.clone(),
                    id: None,
                    base_dir: None,
                    tick: Some(tick),
                };
                match self.create_tick(submission) {
                    Ok(Some((id, handle))) => {
                        tracing::info!(pipeline = %name, tick = %tessera_core::time::rfc3339(tick), task = %id, "scheduled task created");
                        round.created.push(id);
                        round.started.extend(handle);
                    }
                    // Created by another instance, or an earlier round.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(pipeline = %name, tick = %tessera_core::time::rfc3339(tick), error = %e, "cannot create a scheduled task; trying again next round");
                        break;
                    }
                }
            }
        }
        Ok(round)
    }
}

/// A schedule as the CLI and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    pub pipeline: String,
    /// The document's `schedule` (cron, timezone, start, end, catchup, max_active_tasks, input).
    pub schedule: Schedule,
    pub paused: bool,
    /// The next tick after now (and after the last one), if the schedule has one left.
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub next_tick: Option<u64>,
    /// The latest tick the schedule created a task for.
    #[serde(serialize_with = "tessera_core::time::ser_opt")]
    pub last_tick: Option<u64>,
    /// That tick's task, if it was not deleted since.
    pub last_task: Option<TickTask>,
    /// The schedule's tasks that have not ended.
    pub active: u64,
}

/// A tick's task: its id and state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TickTask {
    pub id: String,
    pub state: TaskState,
}

/// Every stored pipeline's schedule at `now`, by pipeline name.
pub fn schedule_views(
    store: &dyn Store,
    scripts: &Scripts,
    now: u64,
) -> Result<Vec<ScheduleView>, StoreError> {
    let mut scheduled = ScheduleBook::default().refresh(store, scripts)?;
    scheduled.sort_by(|a, b| a.pipeline.name.cmp(&b.pipeline.name));
    scheduled.iter().map(|s| view(store, s, now)).collect()
}

/// One pipeline's schedule at `now`; `None` when it has none (or does not exist).
pub fn schedule_view(
    store: &dyn Store,
    scripts: &Scripts,
    pipeline: &str,
    now: u64,
) -> Result<Option<ScheduleView>, StoreError> {
    match scheduled(store, scripts, pipeline)? {
        Some(s) => view(store, &s, now).map(Some),
        None => Ok(None),
    }
}

fn scheduled(
    store: &dyn Store,
    scripts: &Scripts,
    pipeline: &str,
) -> Result<Option<Arc<Scheduled>>, StoreError> {
    Ok(store
        .pipeline(pipeline)?
        .and_then(|row| parse(row, scripts)))
}

/// A stored pipeline's schedule, or why there is none.
fn scheduled_or_refuse(
    store: &dyn Store,
    scripts: &Scripts,
    pipeline: &str,
) -> Result<Arc<Scheduled>, ScheduleCommandError> {
    let row = store
        .pipeline(pipeline)?
        .ok_or_else(|| ScheduleCommandError::NoPipeline(pipeline.to_string()))?;
    parse(row, scripts).ok_or_else(|| ScheduleCommandError::NoSchedule(pipeline.to_string()))
}

fn view(store: &dyn Store, s: &Scheduled, now: u64) -> Result<ScheduleView, StoreError> {
    let schedule = s.schedule();
    let state = store.schedule(&s.pipeline.name)?;
    let after = state.last_tick.map_or(now, |last| last.max(now));
    Ok(ScheduleView {
        pipeline: s.pipeline.name.clone(),
        schedule: schedule.clone(),
        paused: state.paused,
        next_tick: schedule.next_tick(after),
        last_tick: state.last_tick,
        last_task: state.last_task.map(|(id, state)| TickTask { id, state }),
        active: state.active,
    })
}

/// Why a schedule command was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleCommandError {
    #[error("pipeline `{0}` has no schedule")]
    NoSchedule(String),
    #[error("no pipeline `{0}` is stored")]
    NoPipeline(String),
    #[error("`from` ({from}) is after `to` ({to})")]
    EmptyRange { from: String, to: String },
    #[error(
        "the range from {from} to {to} holds more than {MAX_BACKFILL_TICKS} ticks; backfill it in smaller ranges"
    )]
    TooManyTicks { from: String, to: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ScheduleCommandError {
    pub fn kind(&self) -> tessera_store::ErrorKind {
        match self {
            ScheduleCommandError::Store(e) => e.kind(),
            _ => tessera_store::ErrorKind::User,
        }
    }
}

/// Pauses or resumes a pipeline's schedule.
pub fn set_paused(
    store: &dyn Store,
    scripts: &Scripts,
    pipeline: &str,
    paused: bool,
    now: u64,
) -> Result<ScheduleView, ScheduleCommandError> {
    let s = scheduled_or_refuse(store, scripts, pipeline)?;
    store.set_schedule_paused(&s.pipeline.name, paused, now)?;
    Ok(view(store, &s, now)?)
}

/// A backfill's request: the ticks of `pipeline`'s schedule within `from..=to` (ms).
#[derive(Debug, Clone)]
pub struct Backfill<'a> {
    pub pipeline: &'a str,
    pub from: u64,
    pub to: u64,
    /// List the ticks and whether each has a task, create nothing.
    pub dry_run: bool,
    /// Who asks (the tasks' owner); the pipeline's owner when `None`.
    pub owner: Option<String>,
    pub now: u64,
}

/// One tick of a backfill and what became of it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackfillTick {
    #[serde(serialize_with = "tessera_core::time::ser")]
    pub tick: u64,
    pub outcome: TickOutcome,
    /// Its task: the one this backfill created, or the one it had already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TickOutcome {
    /// A task was created for the tick.
    Created,
    /// The tick had a task already (a schedule's, or an earlier backfill's).
    Exists,
    /// A dry run: a task would be created.
    WouldCreate,
}

/// Creates a task for each tick of the range that has none (oldest first, left for any
/// runner to claim; the schedule's last tick and `max_active_tasks` are not involved), or
/// with `dry_run` only says which ticks would be created.
pub fn backfill(
    store: &dyn Store,
    scripts: &Scripts,
    request: &Backfill<'_>,
) -> Result<Vec<BackfillTick>, ScheduleCommandError> {
    if request.from > request.to {
        return Err(ScheduleCommandError::EmptyRange {
            from: tessera_core::time::rfc3339(request.from),
            to: tessera_core::time::rfc3339(request.to),
        });
    }
    let s = scheduled_or_refuse(store, scripts, request.pipeline)?;
    let schedule = s.schedule();
    let ticks = schedule.ticks_between(request.from, request.to, MAX_BACKFILL_TICKS + 1);
    if ticks.len() > MAX_BACKFILL_TICKS {
        return Err(ScheduleCommandError::TooManyTicks {
            from: tessera_core::time::rfc3339(request.from),
            to: tessera_core::time::rfc3339(request.to),
        });
    }
    let name = &s.pipeline.name;
    let taken: std::collections::HashMap<u64, String> = store
        .ticks_taken(name, request.from, request.to)?
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(ticks.len());
    for tick in ticks {
        let outcome = match (taken.get(&tick), request.dry_run) {
            (Some(id), _) => Some((TickOutcome::Exists, Some(id.clone()))),
            (None, true) => Some((TickOutcome::WouldCreate, None)),
            (None, false) => None,
        };
        if let Some((outcome, task_id)) = outcome {
            out.push(BackfillTick {
                tick,
                outcome,
                task_id,
            });
            continue;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let created = store.create_tick(
            &NewTask {
                id: id.clone(),
                pipeline: name.clone(),
                definition: s.definition.clone(),
                input: schedule.task_input(),
                created_at: request.now,
                owner: request.owner.clone().or_else(|| s.owner.clone()),
                runner: None,
                lease_until: 0,
                base_dir: None,
                scheduled_at: Some(tick),
                needs: s.plan.needs.clone(),
            },
            false,
        )?;
        // Not created: a schedule or another backfill made it since the ticks were read.
        out.push(BackfillTick {
            tick,
            outcome: match created {
                true => TickOutcome::Created,
                false => TickOutcome::Exists,
            },
            task_id: created.then_some(id),
        });
    }
    Ok(out)
}
