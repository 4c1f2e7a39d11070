//! Starting tasks: a submission recorded (its driver started while the creation commits),
//! a task recorded for any runner to claim, a schedule's tick, and the driver of each.

use std::sync::{Arc, Mutex};

use tessera_core::scheduler::Progress;
use tessera_store::NewTask;

use crate::{
    DriverSlot, DriverStart, Engine, EngineError, History, RunContext, Submission, TaskHandle,
    context, driver, events, now_millis,
};

impl Engine {
    /// Starts a new task. Its driver starts while the task's creation is committed (see
    /// [`context::Recorded`]); the task is in the store when this returns `Ok`.
    pub fn submit(&self, mut submission: Submission) -> Result<TaskHandle, EngineError> {
        if self.is_draining() {
            return Err(EngineError::Stopping);
        }
        if submission.tick.is_some() {
            let (id, submission) = self
                .record(submission, true)?
                .ok_or_else(|| EngineError::Internal("the tick has a task already".into()))?;
            return self.start_recorded(id, submission, None);
        }
        let id = submission
            .id
            .take()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let task = self.new_task(&id, &mut submission, true);
        let recorded = Arc::new(context::Recorded::default());
        let handle = self.start_recorded(id, submission, Some(recorded.clone()))?;
        // The driver waits for this outcome before any write: it is given even on a panic.
        let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.shared.store.create_task(&task)
        }));
        recorded.settle(matches!(created, Ok(Ok(()))));
        match created {
            Ok(created) => created?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        Ok(handle)
    }

    /// Starts the driver of a task recorded (or being recorded: `recorded`) as claimed by
    /// this engine.
    fn start_recorded(
        &self,
        id: String,
        submission: Submission,
        recorded: Option<Arc<context::Recorded>>,
    ) -> Result<TaskHandle, EngineError> {
        let Submission {
            pipeline,
            input,
            owner,
            base_dir,
            tick,
            ..
        } = submission;
        let slot = DriverSlot::reserve(&self.shared, &id)
            .ok_or_else(|| EngineError::Internal(format!("task id {id} is already driven here")))?;
        self.start_driver(DriverStart {
            slot,
            owner,
            plan: pipeline.into_plan(),
            input,
            history: History::default(),
            base_dir,
            // A new task's first claim.
            fence: 1,
            scheduled_at: tick,
            recorded,
        })
    }

    /// Records a new task for any runner to claim (an API-only server: `serve --no-work`);
    /// nothing runs here. Its id.
    pub fn enqueue(&self, submission: Submission) -> Result<String, EngineError> {
        Ok(self
            .record(submission, false)?
            .ok_or_else(|| EngineError::Internal("the tick has a task already".into()))?
            .0)
    }

    /// Creates the task of a schedule's tick (`submission.tick`), unless the tick has one
    /// already or lies at or before the schedule's last tick (`None`: another instance, or an
    /// earlier round, created it); the schedule's last tick moves to it. It starts here when
    /// this engine runs tasks, else any runner claims it. Its id, and its handle when it runs
    /// here.
    pub fn create_tick(
        &self,
        submission: Submission,
    ) -> Result<Option<(String, Option<TaskHandle>)>, EngineError> {
        if self.is_draining() {
            return Err(EngineError::Stopping);
        }
        let here = self.runs_needs(&submission.pipeline.needs());
        let Some((id, submission)) = self.record(submission, here)? else {
            return Ok(None);
        };
        if !here {
            return Ok(Some((id, None)));
        }
        let handle = self.start_recorded(id.clone(), submission, None)?;
        Ok(Some((id, Some(handle))))
    }

    /// Records a submission's task: claimed by this engine (fence 1, a lease it renews), or by
    /// nobody (claimable at once). Its id, and what the submission still holds; `None` when
    /// the submission's tick has a task already.
    fn record(
        &self,
        mut submission: Submission,
        claimed: bool,
    ) -> Result<Option<(String, Submission)>, EngineError> {
        let id = submission
            .id
            .take()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let task = self.new_task(&id, &mut submission, claimed);
        match submission.tick {
            None => self.shared.store.create_task(&task)?,
            Some(_) => {
                if !self.shared.store.create_tick(&task, true)? {
                    return Ok(None);
                }
            }
        }
        Ok(Some((id, submission)))
    }

    /// The row of a submission's task: claimed by this engine (fence 1, a lease it renews),
    /// or by nobody (claimable at once). Takes the submission's definition.
    fn new_task(&self, id: &str, submission: &mut Submission, claimed: bool) -> NewTask {
        let (runner, lease_until) = match claimed {
            true => (Some(self.shared.runner.clone()), self.shared.lease_until()),
            false => (None, 0),
        };
        NewTask {
            id: id.to_string(),
            pipeline: submission.pipeline.name().to_string(),
            definition: std::mem::take(&mut submission.definition),
            input: submission.input.clone(),
            created_at: now_millis(),
            owner: submission.owner.clone(),
            runner,
            lease_until,
            base_dir: submission
                .base_dir
                .as_ref()
                .map(|d| d.display().to_string()),
            scheduled_at: submission.tick,
            needs: submission.pipeline.needs().into_owned(),
        }
    }

    pub(crate) fn start_driver(&self, start: DriverStart) -> Result<TaskHandle, EngineError> {
        let DriverStart {
            slot,
            owner,
            plan,
            input,
            history,
            base_dir,
            fence,
            scheduled_at,
            recorded,
        } = start;
        let id = slot.task_id.clone();
        let (events_tx, events_rx) = events::channel();
        let done = events::DoneSlot::new();
        let done_tx = done.clone();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let batches = self.shared.batch_board(&id);
        let loops = self.shared.loop_board(&id);
        let rasters = self.shared.raster_board(&id);
        let shared = self.shared.clone();
        let board_id = id.clone();
        let driver = driver::Driver::new(driver::DriverContext {
            engine: self.shared.clone(),
            task_id: id.clone(),
            run: Arc::new(RunContext {
                pipeline: tessera_core::template::pipeline_values(
                    &id,
                    &plan.pipeline.name,
                    scheduled_at,
                ),
                task_id: id.clone(),
                base_dir,
                fence,
                scheduled_at,
                recorded: recorded.clone(),
            }),
            fence,
            owner,
            plan,
            input,
            past: history.past,
            changed: history.changed,
            events_tx: events_tx.clone(),
            events_rx,
            progress: progress.clone(),
        });
        // Set for a task submitted here, whose creation commits while it starts.
        let creation = recorded.clone();
        self.shared.hold(&id, fence, events_tx.clone(), recorded);
        // An async task: a driver waiting for its jobs or callbacks holds no thread.
        let driver = Box::new(driver);
        self.shared.runtime.spawn(async move {
            // A panic outside a step (steps catch their own) must still release the task and
            // hand its result over.
            let run = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(driver.run()));
            let (driver, result) = match run.await {
                Ok((driver, result)) => (Some(driver), result),
                Err(_) => (
                    None,
                    Err(EngineError::Internal("the task driver panicked".into())),
                ),
            };
            // A task submitted here that ran only work inside the process (nodes, scripts,
            // chunked loops) has no files to remove and, unless it failed, nothing to record:
            // its caller hears at once, with no hop to a blocking thread.
            let quick = creation.is_some()
                && result.is_ok()
                && driver.as_ref().is_some_and(|d| !d.ran_outside_work());
            if quick {
                shared.drop_batch_board(&board_id);
                shared.release(&board_id);
                drop(slot);
                shared.scratch.task_ended_without_files(&board_id);
                done_tx.set(result);
                // Freeing a big task's state takes a while: after the caller has its result
                // (and not at all if the process exits first).
                drop(tokio::task::spawn_blocking(move || drop(driver)));
                return;
            }
            // What follows blocks (a store write, freeing a big task's state, removing
            // files): off the async threads.
            let ended = tokio::task::spawn_blocking(move || {
                shared.drop_batch_board(&board_id);
                shared.release(&board_id);
                drop(slot);
                // A driver whose claim was taken over has nothing to record: the task is
                // another runner's now. Nor has one whose task could not be created (a step
                // that panicked may end it before the creation is committed: waited for).
                let fenced = matches!(
                    &result,
                    Err(EngineError::Store(tessera_store::StoreError::Fenced(_)))
                ) || creation.as_ref().is_some_and(|c| !c.wait());
                if let Err(e) = &result
                    && !fenced
                    && !shared.stopping.load(std::sync::atomic::Ordering::SeqCst)
                {
                    shared.give_up(&board_id, fence, &e.to_string());
                }
                done_tx.set(result);
                // Freeing a big task's state takes a while: after the caller has its result.
                drop(driver);
                shared.scratch.task_ended(&board_id);
            })
            .await;
            if let Err(e) = ended {
                tracing::error!(error = %e, "a task's end could not be recorded");
            }
        });
        Ok(TaskHandle {
            id,
            progress,
            batches,
            loops,
            rasters,
            events: events_tx,
            done,
        })
    }
}
