//! Scratch directories for commands: each running command has a directory of its own, empty
//! when it starts (`$TESSERA_SCRATCH`), the only place its `{"$file": …}` outputs are taken
//! from (with the node's `files_from`). A directory left empty is reused by the task's next
//! command: `mkdir` and `rmdir` per command would cost more than spawning `true`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct ScratchDirs {
    /// The engine's work directory: a task's scratch directories are in `<task>/scratch/`.
    work_dir: PathBuf,
    free: Mutex<HashMap<String, Vec<PathBuf>>>,
    next: AtomicU64,
}

impl ScratchDirs {
    pub fn new(work_dir: &Path) -> ScratchDirs {
        ScratchDirs {
            work_dir: work_dir.to_path_buf(),
            free: Mutex::default(),
            next: AtomicU64::new(0),
        }
    }

    fn root(&self, task_id: &str) -> PathBuf {
        self.work_dir.join(task_id).join("scratch")
    }

    /// An empty directory for a command of `task_id`.
    pub fn take(&self, task_id: &str) -> std::io::Result<PathBuf> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(task_id)
            .and_then(Vec::pop);
        if let Some(dir) = reused {
            return Ok(dir);
        }
        let root = self.root(task_id);
        loop {
            let dir = root.join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&root)?;
                }
                // Left by an earlier process: not empty, not ours.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A command is done with its directory: reused if it is empty, else removed (on a
    /// blocking thread, not waited for).
    pub fn give_back(&self, task_id: &str, dir: PathBuf) {
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        if empty {
            self.free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(task_id.to_string())
                .or_default()
                .push(dir);
        } else {
            drop(tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(dir);
            }));
        }
    }

    /// A task that never made files here ended (it ran only work inside the process).
    pub fn task_ended_without_files(&self, task_id: &str) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }

    /// The task's driver stopped: its scratch directories go (what a failed command left
    /// included; its output is in the node's log).
    pub fn task_ended(&self, task_id: &str) {
        self.task_ended_without_files(task_id);
        let root = self.root(task_id);
        if root.exists() {
            let _ = std::fs::remove_dir_all(&root);
        }
        // Copies of objects a killed process left (each command removes its own).
        if let Ok(entries) = std::fs::read_dir(self.work_dir.join(task_id)) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("inputs-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // The task's directory too, if nothing else is in it.
        if let Some(task_dir) = root.parent() {
            let _ = std::fs::remove_dir(task_dir);
        }
    }
}
