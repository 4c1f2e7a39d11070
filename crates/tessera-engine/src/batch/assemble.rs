//! Assembling a batch's output in input order while chunks are still being processed: each
//! finished chunk's bytes (still in memory) are appended as soon as every chunk before it is
//! in, chunks committed by an earlier start are copied from their files, and workers never run
//! more than a window of chunks ahead, so memory stays bounded. The output is written to a
//! temporary file renamed over the target once complete and synced: a crash leaves the target
//! untouched, and the next start rebuilds the temporary file from scratch.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use tessera_core::scheduler::JobError;

pub(super) struct Assembler {
    state: Mutex<State>,
    appended: Condvar,
    tmp: PathBuf,
    target: PathBuf,
    /// Chunks a worker may run ahead of the assembly.
    window: usize,
    /// Flushes the output to disk in the background while it grows, so the final sync has
    /// little left to wait for (None without checkpoints).
    syncer: Option<Syncer>,
}

/// A thread syncing the output file whenever asked (requests coalesce).
struct Syncer {
    requests: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Bytes appended between two background syncs.
const SYNC_EVERY: u64 = 16 << 20;

struct State {
    file: File,
    /// The next chunk to append.
    next: usize,
    total: usize,
    /// Finished chunks waiting for their predecessors: bytes and command output header.
    waiting: BTreeMap<usize, (Vec<u8>, Option<String>)>,
    /// Chunks committed by an earlier start: their file, and command output header.
    earlier: Vec<Option<(PathBuf, Option<String>)>>,
    /// The output's header, once written (command outputs: the first chunk's).
    header: Option<String>,
    bytes: u64,
    /// Size at the last background sync request.
    synced: u64,
    error: Option<String>,
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> JobError {
    let msg = format!("{what} {}", path.display());
    move |e| JobError::retryable(format!("{msg}: {e}"))
}

impl Assembler {
    /// `header`: the output's first line when known in advance (row processors); `None` for
    /// command processors, whose chunks each bring theirs.
    pub fn new(
        target: PathBuf,
        header: Option<Vec<u8>>,
        earlier: Vec<Option<(PathBuf, Option<String>)>>,
        window: usize,
        sync: bool,
    ) -> Result<Assembler, JobError> {
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let tmp = target.with_file_name(format!(".{name}.tessera-tmp"));
        let mut file = File::create(&tmp).map_err(io_err("cannot write", &tmp))?;
        let mut bytes = 0;
        let fixed_header = header.is_some();
        if let Some(h) = &header {
            file.write_all(h).map_err(io_err("cannot write", &tmp))?;
            bytes = h.len() as u64;
        }
        let total = earlier.len();
        let syncer = if sync {
            let clone = file.try_clone().map_err(io_err("cannot write", &tmp))?;
            let (requests, rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::Builder::new()
                .name("batch-sync".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        while rx.try_recv().is_ok() {}
                        // Errors surface in the final sync, which must succeed.
                        let _ = clone.sync_data();
                    }
                })
                .map_err(|e| JobError::retryable(format!("cannot start a sync thread: {e}")))?;
            Some(Syncer { requests, thread })
        } else {
            None
        };
        let assembler = Assembler {
            state: Mutex::new(State {
                file,
                next: 0,
                total,
                waiting: BTreeMap::new(),
                earlier,
                header: fixed_header.then(String::new),
                bytes,
                synced: 0,
                error: None,
            }),
            appended: Condvar::new(),
            tmp,
            target,
            window: window.max(1),
            syncer,
        };
        assembler.drain()?;
        Ok(assembler)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until chunk `index` is within the window ahead of the assembly, or `stop()`.
    pub fn wait_turn(&self, index: usize, stop: impl Fn() -> bool) {
        let mut state = self.lock();
        while index >= state.next + self.window && state.error.is_none() && !stop() {
            let (s, _) = self
                .appended
                .wait_timeout(state, std::time::Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner());
            state = s;
        }
    }

    /// Hands over a finished chunk; appends it (and any successors waiting) when its turn has
    /// come.
    pub fn push(
        &self,
        index: usize,
        bytes: Vec<u8>,
        header: Option<String>,
    ) -> Result<(), JobError> {
        self.lock().waiting.insert(index, (bytes, header));
        self.drain()
    }

    fn drain(&self) -> Result<(), JobError> {
        let mut state = self.lock();
        let result: Result<(), JobError> = (|| {
            while state.next < state.total {
                let next = state.next;
                if let Some((bytes, header)) = state.waiting.remove(&next) {
                    append_header(&mut state, header, &self.tmp)?;
                    state
                        .file
                        .write_all(&bytes)
                        .map_err(io_err("cannot write", &self.tmp))?;
                    state.bytes += bytes.len() as u64;
                } else if let Some((path, header)) = state.earlier[next].take() {
                    append_header(&mut state, header, &self.tmp)?;
                    let mut f = File::open(&path).map_err(|e| {
                        JobError::permanent(format!(
                            "chunk {next} output {} is missing: {e}",
                            path.display()
                        ))
                    })?;
                    state.bytes += std::io::copy(&mut f, &mut state.file)
                        .map_err(io_err("cannot write", &self.tmp))?;
                } else {
                    break;
                }
                state.next += 1;
                if let Some(syncer) = &self.syncer
                    && state.bytes - state.synced >= SYNC_EVERY
                {
                    state.synced = state.bytes;
                    let _ = syncer.requests.send(());
                }
            }
            Ok(())
        })();
        if let Err(e) = &result {
            state.error.get_or_insert(e.message.clone());
        }
        drop(state);
        self.appended.notify_all();
        result
    }

    /// Syncs the complete output and renames it over the target; returns its size.
    pub fn finish(self) -> Result<u64, JobError> {
        let sync = self.syncer.is_some();
        if let Some(syncer) = self.syncer {
            drop(syncer.requests);
            let _ = syncer.thread.join();
        }
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = state.error {
            return Err(JobError::permanent(e));
        }
        if state.next < state.total {
            return Err(JobError::permanent(format!(
                "internal: the output was assembled up to chunk {} of {}",
                state.next, state.total
            )));
        }
        if let Some(marker) = std::env::var_os("TESSERA_TEST_STALL_ASSEMBLY") {
            // Test aid: lets an end-to-end test kill the process before the output is complete.
            let _ = std::fs::write(marker, b"assembling");
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        if sync {
            state
                .file
                .sync_all()
                .map_err(io_err("cannot sync", &self.tmp))?;
        }
        drop(state.file);
        std::fs::rename(&self.tmp, &self.target)
            .map_err(io_err("cannot rename into", &self.target))?;
        if sync {
            let parent = match self.target.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err("cannot sync", parent))?;
        }
        Ok(state.bytes)
    }
}

/// A command output's header: written before the first chunk that has one; every later one
/// must be the same.
fn append_header(state: &mut State, header: Option<String>, tmp: &Path) -> Result<(), JobError> {
    let Some(h) = header.filter(|h| !h.is_empty()) else {
        return Ok(());
    };
    match &state.header {
        None => {
            state
                .file
                .write_all(h.as_bytes())
                .map_err(io_err("cannot write", tmp))?;
            state.bytes += h.len() as u64;
            state.header = Some(h);
            Ok(())
        }
        // A fixed header (row processors) was written up front.
        Some(first) if first.is_empty() || *first == h => Ok(()),
        Some(first) => Err(JobError::permanent(format!(
            "the command's output header differs between chunks: `{}` and `{}`",
            first.trim_end(),
            h.trim_end()
        ))),
    }
}
