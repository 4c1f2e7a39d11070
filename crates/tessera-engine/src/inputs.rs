//! The files a command reads its input objects from: a fresh read-only copy of each object per
//! command, never the object store's own file.
//!
//! Why a copy: commands run as the engine's user, who owns the stored files, so no mode bits
//! keep a command from `chmod u+w` and writing (and root ignores them anyway); a hard link is
//! the same inode; a read-only bind mount needs privileges the engine does not have. A copy
//! is what a command can never write through. It is cheap where it can be: `std::fs::copy`
//! uses `copy_file_range`, which the kernel does without moving the bytes through user space
//! and which shares the extents (a reflink) on btrfs and XFS. Copies are made only for the
//! objects a command is given (its templates, and its stdin when it takes one), in a
//! directory of its own removed when it ends.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tessera_core::scheduler::JobError;
use tessera_store::Objects;

/// One command's copies: `<work>/<task>/inputs-<pid>-<n>/<object id>`, removed when the
/// command has exited ([`InputCopies::remove`]), or on drop (cancel, early failure).
pub(crate) struct InputCopies {
    dir: PathBuf,
    /// Object id → its copy's path (decided when the command line is rendered; made by
    /// [`InputCopies::make`]).
    planned: HashMap<String, PathBuf>,
    made: bool,
}

impl InputCopies {
    /// A directory for one command of `task_dir` (not created until a copy is made).
    pub fn new(task_dir: &Path) -> InputCopies {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InputCopies {
            dir: task_dir.join(format!("inputs-{}-{n}", std::process::id())),
            planned: HashMap::new(),
            made: false,
        }
    }

    /// The path the command gets for object `id` (its copy, made later by [`Self::make`]).
    pub fn path_of(&mut self, id: &str) -> PathBuf {
        self.planned
            .entry(id.to_string())
            .or_insert_with(|| self.dir.join(id))
            .clone()
    }

    /// The planned paths, by object id.
    pub fn paths(&self) -> &HashMap<String, PathBuf> {
        &self.planned
    }

    /// Copies every planned object, read-only (0444): from the local store's file, or
    /// fetched from a remote one.
    pub async fn make(&mut self, objects: &Objects) -> Result<(), JobError> {
        if self.planned.is_empty() {
            return Ok(());
        }
        let retry = |what: String| JobError::retryable(what);
        self.made = true;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| retry(format!("cannot create {}: {e}", self.dir.display())))?;
        for (id, dest) in &self.planned {
            match objects.local_path(id) {
                Some(src) => {
                    let (src, dst) = (src.clone(), dest.clone());
                    tokio::task::spawn_blocking(move || std::fs::copy(&src, &dst))
                        .await
                        .map_err(|e| retry(e.to_string()))?
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::NotFound => {
                                JobError::permanent(format!("object {id} is gone from the store"))
                            }
                            _ => retry(format!("cannot copy object {id}: {e}")),
                        })?;
                }
                None => objects
                    .get_to_file(id, dest)
                    .await
                    .map_err(|e| retry(format!("cannot fetch object {id}: {e}")))?,
            };
            tokio::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o444))
                .await
                .map_err(|e| retry(format!("cannot protect {}: {e}", dest.display())))?;
        }
        Ok(())
    }
}

impl InputCopies {
    /// Removes the copies (the command has exited), waiting for it.
    pub async fn remove(mut self) {
        if std::mem::take(&mut self.made) {
            let dir = self.dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }
}

impl Drop for InputCopies {
    fn drop(&mut self) {
        if self.made {
            let dir = std::mem::take(&mut self.dir);
            // Off the async threads when there is a runtime (a copy can be big to unlink).
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || std::fs::remove_dir_all(dir))),
                Err(_) => drop(std::fs::remove_dir_all(dir)),
            }
        }
    }
}
