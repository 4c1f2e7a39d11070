//! Resuming a task: finished nodes keep their outputs; with a fix (a new definition, a new
//! input), nodes whose definition or input changed run again with everything downstream of
//! them, and the task keeps the definitions it ran with before as revisions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_core::scheduler::{PastRun, TaskState};
use tessera_core::{Data, Pipeline, Plan};

use crate::{DriverSlot, Engine, EngineError, TaskHandle, command, now_millis};

/// What a resume changes, validated by the caller (as for a submission).
#[derive(Debug, Clone, Default)]
pub struct Fix {
    /// A new definition: its document (stored) and the pipeline parsed from it.
    pub definition: Option<(Value, Pipeline)>,
    /// A new task input.
    pub input: Option<Data>,
}

/// How long a resume waits for the driver of a task that has just ended to let it go.
const ENDING_DRIVER_WAIT: Duration = Duration::from_secs(3);

/// What a resumed scheduler starts from.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub past: Vec<PastRun>,
    pub changed: HashSet<String>,
}

impl Engine {
    /// Continues a failed, cancelled or interrupted task: finished nodes keep their outputs,
    /// unless `fix` changes them or what they depend on.
    pub fn resume(&self, task_id: &str, fix: Fix) -> Result<TaskHandle, EngineError> {
        self.reopen(task_id, fix, true)?
            .ok_or_else(|| EngineError::Internal("a resume here starts a driver".into()))
    }

    /// Reopens a task with `fix` for a worker to continue (an API-only server, `serve
    /// --no-work`): the same checks and claim as [`Engine::resume`], but the claim is made
    /// already expired and nothing runs here, so any worker claims it at once.
    pub fn reopen_for_workers(&self, task_id: &str, fix: Fix) -> Result<(), EngineError> {
        self.reopen(task_id, fix, false).map(|_| ())
    }

    fn reopen(
        &self,
        task_id: &str,
        fix: Fix,
        run_here: bool,
    ) -> Result<Option<TaskHandle>, EngineError> {
        if self.is_draining() {
            return Err(EngineError::Stopping);
        }
        // Reserved in this process before anything is read: a second resume here, or a
        // liveness check, sees the task as driven from now on.
        let Some(slot) = self.reserve_for_resume(task_id)? else {
            return Err(EngineError::NotResumable {
                id: task_id.to_string(),
                reason: "it is still being run by this process (or resumed by another request)"
                    .into(),
            });
        };
        let store = &self.shared.store;
        let task = store
            .task(task_id)?
            .ok_or_else(|| EngineError::NotFound(task_id.to_string()))?;
        match task.task_state() {
            TaskState::Finished => {
                return Err(EngineError::NotResumable {
                    id: task_id.to_string(),
                    reason: "it finished successfully".into(),
                });
            }
            TaskState::Running | TaskState::Pending => {
                // Our own reservation aside, does anyone's lease on it run?
                if let Some((runner, until)) = self.shared.held_elsewhere(&task) {
                    return Err(EngineError::Held {
                        id: task_id.to_string(),
                        runner,
                        until,
                    });
                }
            }
            TaskState::Failed | TaskState::Cancelled => {}
        }
        let stored = {
            let mut report = tessera_core::Report::default();
            let p = tessera_core::parse::pipeline_from_value(&task.definition, &mut report);
            match p {
                Some(p) if report.is_ok() => Some(p),
                // A new definition replaces it anyway (every node counts as changed).
                _ if fix.definition.is_some() => None,
                _ => {
                    return Err(EngineError::Internal(format!(
                        "stored definition of task {task_id} no longer parses: {report}"
                    )));
                }
            }
        };
        let (pipeline, document, mut changed) = match (fix.definition, stored) {
            (Some((document, pipeline)), Some(stored)) => {
                let changed = tessera_core::plan::changed_nodes(&stored, &pipeline);
                (pipeline, Some(document), changed)
            }
            (Some((document, pipeline)), None) => {
                let all = pipeline.nodes.iter().map(|n| n.id.clone()).collect();
                (pipeline, Some(document), all)
            }
            (None, Some(stored)) => (stored, None, HashSet::new()),
            (None, None) => unreachable!("refused above"),
        };
        let input = match &fix.input {
            Some(new) if *new != task.input => {
                // The entry hands the input on: what reads it runs again.
                if let Some(entry) = pipeline.entry() {
                    changed.insert(entry.id.clone());
                }
                new.clone()
            }
            _ => task.input.clone(),
        };
        let claim = tessera_store::Claim {
            observed_state: task.state,
            observed_fence: task.fence,
            runner: &self.shared.runner,
            now: now_millis(),
            lease_until: if run_here {
                self.shared.lease_until()
            } else {
                0
            },
        };
        let Some(fence) = store.reopen_task(task_id, &claim)? else {
            return Err(EngineError::NotResumable {
                id: task_id.to_string(),
                reason: "another runner claimed it meanwhile".into(),
            });
        };
        // Read once the claim holds: nothing of a previous holder can commit from now on.
        let past = store.past_runs(task_id)?;
        if document.is_some() || fix.input.is_some() {
            let definition = document.as_ref().unwrap_or(&task.definition);
            if let Err(e) = store.revise_task(task_id, definition, fix.input.as_ref(), now_millis())
            {
                // Released as it was found, so that it can be resumed again.
                let _ = store.fail_task(
                    task_id,
                    fence,
                    task.error.as_deref().unwrap_or("resume failed"),
                );
                return Err(e.into());
            }
        }
        if !run_here {
            return Ok(None);
        }
        // What an engine killed with -9 left running would overlap the node's next attempt.
        command::kill_leftovers(task_id, Duration::from_secs(5));
        self.shared.scratch.task_ended(task_id);
        let plan = Arc::new(Plan::new(Arc::new(pipeline)));
        // Relative paths stay those of the pipeline file the task was started from.
        let base_dir = task.base_dir.map(std::path::PathBuf::from);
        self.start_driver(crate::DriverStart {
            slot,
            owner: task.owner,
            plan,
            input,
            history: History { past, changed },
            base_dir,
            fence,
            scheduled_at: task.scheduled_at,
            recorded: None,
        })
        .map(Some)
    }

    /// Starts the driver of a task claimed by a round of claims (the claim made, its row as
    /// claimed): its history read now that nothing of a previous holder can commit.
    pub(crate) fn continue_claimed(
        &self,
        claimed: tessera_store::ClaimedTask,
    ) -> Result<TaskHandle, EngineError> {
        let tessera_store::ClaimedTask {
            task,
            past,
            previous,
        } = claimed;
        if let Some((runner, until)) = previous
            && until > 0
        {
            tracing::info!(
                task = %task.id,
                previous = %runner,
                lease_ran_out_ms_ago = now_millis().saturating_sub(until),
                "taking over a task whose holder's lease ran out"
            );
        }
        let store = &self.shared.store;
        let Some(slot) = DriverSlot::reserve(&self.shared, &task.id) else {
            // Its driver here is letting go of it; the claim runs out and it is claimed again.
            return Err(EngineError::NotResumable {
                id: task.id,
                reason: "its previous driver in this process has not let go of it yet".into(),
            });
        };
        let mut report = tessera_core::Report::default();
        let pipeline = match tessera_core::parse::pipeline_from_value(&task.definition, &mut report)
        {
            Some(p) if report.is_ok() => p,
            _ => {
                // Claimed again and again otherwise: it fails once, saying why.
                let error = format!("its stored definition no longer parses: {report}");
                store.fail_task(&task.id, task.fence, &error)?;
                return Err(EngineError::Internal(format!("task {}: {error}", task.id)));
            }
        };
        // A task with no recorded attempt never started a command (a step is committed before
        // it acts): nothing can be left over, and no scan is needed on this hot path.
        if !past.is_empty() {
            command::kill_leftovers(&task.id, Duration::from_secs(5));
            self.shared.scratch.task_ended(&task.id);
        }
        let plan = Arc::new(Plan::new(Arc::new(pipeline)));
        self.start_driver(crate::DriverStart {
            slot,
            owner: task.owner,
            plan,
            input: task.input,
            history: History {
                past,
                changed: HashSet::new(),
            },
            base_dir: task.base_dir.map(std::path::PathBuf::from),
            fence: task.fence,
            scheduled_at: task.scheduled_at,
            recorded: None,
        })
    }

    /// Reserves the task as driven here. A driver whose task has ended (its last state
    /// committed) releases it a moment later: a resume right after the end waits for that,
    /// rather than refusing a task that nobody runs any more.
    fn reserve_for_resume(&self, task_id: &str) -> Result<Option<DriverSlot>, EngineError> {
        if let Some(slot) = DriverSlot::reserve(&self.shared, task_id) {
            return Ok(Some(slot));
        }
        let ended = self
            .shared
            .store
            .task(task_id)?
            .is_some_and(|t| t.task_state().is_terminal());
        if !ended {
            return Ok(None);
        }
        let deadline = std::time::Instant::now() + ENDING_DRIVER_WAIT;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            if let Some(slot) = DriverSlot::reserve(&self.shared, task_id) {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }
}
