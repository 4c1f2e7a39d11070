//! What every job of a task shares about where the task runs: its id, the directory its
//! pipeline's relative paths resolve against, and whether the task is recorded yet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Whether a task just submitted is in the store yet. A new task's driver starts while its
/// creation is being committed, so that work done in the process (a loop of scripts) overlaps
/// that commit's fsync; every write of the task waits here first, so nothing is written — and
/// nothing outside the process is started, which always follows a commit — for a task whose
/// creation failed.
#[derive(Debug, Default)]
pub struct Recorded {
    state: Mutex<Option<bool>>,
    settled: Condvar,
}

impl Recorded {
    /// Says how the creation ended; wakes the writers waiting.
    pub fn settle(&self, created: bool) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(created);
        self.settled.notify_all();
    }

    /// `None` while the creation is under way.
    pub fn created(&self) -> Option<bool> {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until the creation ended; whether it succeeded.
    pub fn wait(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(created) = *state {
                return created;
            }
            state = self.settled.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The run context of one task, shared by its driver and its jobs.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    pub task_id: String,
    /// Relative paths of the pipeline (a command's `cwd` and `files_from`, batch reader and
    /// writer paths, raster inputs, output and cache directory) resolve against this: the
    /// pipeline file's directory for `tessera run FILE`, so a run does not depend on where it
    /// was started. `None` (a pipeline sent over HTTP has no file): the process's working
    /// directory, as the operating system resolves them.
    pub base_dir: Option<PathBuf>,
    /// The fence of this process's claim on the task: writes a job makes outside the step
    /// commits (retiring a callback token) carry it too.
    pub fence: u64,
    /// The schedule's tick the task was created for, if any.
    pub scheduled_at: Option<u64>,
    /// What `{{pipeline.…}}` reads: `task_id`, `name`, `scheduled_at` (see
    /// [`tessera_core::template::pipeline_values`]).
    pub pipeline: serde_json::Value,
    /// Set for a task whose creation is committed while its driver starts (see [`Recorded`]).
    pub recorded: Option<Arc<Recorded>>,
}

impl RunContext {
    /// Blocks (a blocking thread only) until the task is in the store. A task whose creation
    /// failed is not this process's to write: the same error as a claim taken over.
    pub fn wait_recorded(&self) -> Result<(), tessera_store::StoreError> {
        match &self.recorded {
            Some(r) if !r.wait() => Err(tessera_store::StoreError::Fenced(self.task_id.clone())),
            _ => Ok(()),
        }
    }

    /// `path` against the base directory (an absolute path, or no base, leaves it as it is).
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The working directory of a command: its `cwd` resolved, else the base directory
    /// (`None`: the engine's own).
    pub fn command_dir(&self, cwd: Option<&str>) -> Option<PathBuf> {
        match cwd {
            Some(c) => Some(self.resolve(c)),
            None => self.base_dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_base() {
        let run = RunContext {
            task_id: "t".into(),
            base_dir: Some("/pipelines/p".into()),
            fence: 1,
            ..Default::default()
        };
        assert_eq!(
            run.resolve("data/in.csv"),
            Path::new("/pipelines/p/data/in.csv")
        );
        assert_eq!(run.resolve("../x"), Path::new("/pipelines/p/../x"));
        assert_eq!(run.resolve("/abs/y"), Path::new("/abs/y"));
        assert_eq!(run.command_dir(None), Some("/pipelines/p".into()));
        let none = RunContext::default();
        assert_eq!(none.resolve("data/in.csv"), Path::new("data/in.csv"));
        assert_eq!(none.command_dir(None), None);
    }
}
