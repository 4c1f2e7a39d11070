//! Assembling a batch's output in input order while chunks are still being processed, and
//! checkpointing it: each finished chunk's bytes (still in memory) are appended to the output's
//! temporary file as soon as every chunk before it is in; workers never run more than a window
//! of chunks ahead, so memory stays bounded. With checkpoints, a background thread syncs the
//! file as it grows and then commits the chunks it holds, so a chunk's durable file is its byte
//! range of the temporary output, and every byte is written and synced once. The committed
//! chunks are always a prefix of the input: a later start truncates the temporary file to that
//! prefix and appends the rest. Once complete the file is renamed over the target: a crash
//! never leaves a partial target.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tessera_core::scheduler::JobError;
use tessera_store::{BatchChunkRow, BatchLineRow};

/// A processed chunk on its way into the output.
pub(super) struct Finished {
    pub bytes: Vec<u8>,
    /// The command output's header line, if it printed one.
    pub header: Option<String>,
    /// Its checkpoint row (state, counts, attempts, input hash): committed once synced.
    pub row: BatchChunkRow,
    pub lines: Vec<BatchLineRow>,
}

/// Records checkpoints durably (the bytes they point to are synced before it is called).
pub(super) type CommitFn =
    Box<dyn Fn(&[(BatchChunkRow, Vec<BatchLineRow>)]) -> Result<(), JobError> + Send>;

/// The committed prefix an earlier start left in the temporary output.
#[derive(Debug, Clone, Default)]
pub(super) struct Prefix {
    /// Chunks `0..chunks` are committed.
    pub chunks: usize,
    /// Their bytes (with the header) at the start of the temporary output.
    pub bytes: u64,
    /// The header line already written, for command outputs.
    pub header: Option<String>,
}

pub(super) struct AssemblyPlan {
    pub target: PathBuf,
    /// The output's first line when known in advance (row processors); `None` for command
    /// processors, whose chunks each bring theirs.
    pub fixed_header: Option<Vec<u8>>,
    pub prefix: Prefix,
    pub total: usize,
    /// Chunks a worker may run ahead of the assembly.
    pub window: usize,
    /// Checkpoints on: sync and commit as the output grows.
    pub commit: Option<CommitFn>,
}

/// Bytes appended, or time elapsed, between two checkpoints.
const CHECKPOINT_BYTES: u64 = 16 << 20;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The temporary file a target is assembled in (beside it, so the final rename is atomic).
pub(super) fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    target.with_file_name(format!(".{name}.tessera-tmp"))
}

/// Held while a job writes a file: a second job writing the same file (another task, another
/// process) fails at once instead of sharing the temporary file. An advisory `flock` on a
/// hidden file beside the output, released by the kernel when its holder dies (kill -9
/// included), and removed by its holder when done: a locker checks after locking that the
/// path still names the file it locked (else it was removed meanwhile, and it tries again).
pub(super) struct OutputLock {
    file: File,
    path: PathBuf,
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked: whoever opened it meanwhile sees it gone and retries.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

pub(super) fn lock_output(target: &Path, holder: &str) -> Result<OutputLock, JobError> {
    use std::os::unix::fs::MetadataExt;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let path = target.with_file_name(format!(".{name}.tessera-lock"));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    }
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("cannot create the lock", &path))?;
        match file.try_lock() {
            Ok(()) => {
                let same = match (file.metadata(), std::fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if !same {
                    continue;
                }
                file.set_len(0)
                    .and_then(|()| file.write_all(holder.as_bytes()))
                    .map_err(io_err("cannot write the lock", &path))?;
                return Ok(OutputLock { file, path });
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = std::io::Read::read_to_string(&mut file, &mut who);
                let who = if who.trim().is_empty() {
                    "another run".to_string()
                } else {
                    who.trim().to_string()
                };
                return Err(JobError::permanent(format!(
                    "writer.path: {} is being written by {who}; two runs cannot write one \
                     output at once — wait for that run to end, or write elsewhere",
                    target.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &path)(e)),
        }
    }
}

pub(super) struct Assembler {
    state: Mutex<State>,
    appended: Condvar,
    tmp: PathBuf,
    target: PathBuf,
    window: usize,
    checkpointer: Option<Checkpointer>,
}

/// The thread that syncs the output and then commits the chunks appended before the sync.
struct Checkpointer {
    requests: Sender<Vec<(BatchChunkRow, Vec<BatchLineRow>)>>,
    thread: std::thread::JoinHandle<()>,
    error: Arc<Mutex<Option<String>>>,
}

struct State {
    file: File,
    /// The next chunk to append.
    next: usize,
    total: usize,
    /// Finished chunks waiting for their predecessors.
    waiting: BTreeMap<usize, Finished>,
    /// The output's header, once written (command outputs: the first chunk's; `""` when fixed).
    header: Option<String>,
    bytes: u64,
    /// Appended chunks not yet handed to the checkpointer.
    unsynced: Vec<(BatchChunkRow, Vec<BatchLineRow>)>,
    unsynced_bytes: u64,
    last_checkpoint: Instant,
    error: Option<String>,
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> JobError {
    let msg = format!("{what} {}", path.display());
    move |e| JobError::retryable(format!("{msg}: {e}"))
}

impl Assembler {
    pub fn new(plan: AssemblyPlan) -> Result<Assembler, JobError> {
        let target = plan.target;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
        }
        let tmp = temp_path(&target);
        let prefix = plan.prefix;
        let mut file;
        if prefix.chunks > 0 {
            // Resuming: keep the committed prefix, drop whatever was appended after it.
            file = OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(io_err("cannot open the committed output", &tmp))?;
            let len = file
                .metadata()
                .map_err(io_err("cannot open the committed output", &tmp))?
                .len();
            if len < prefix.bytes {
                return Err(JobError::permanent(format!(
                    "the committed output {} has {len} bytes instead of at least {}",
                    tmp.display(),
                    prefix.bytes
                )));
            }
            file.set_len(prefix.bytes)
                .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
                .map_err(io_err("cannot truncate", &tmp))?;
        } else {
            file = File::create(&tmp).map_err(io_err("cannot write", &tmp))?;
            if let Some(h) = &plan.fixed_header {
                file.write_all(h).map_err(io_err("cannot write", &tmp))?;
            }
        }
        let bytes = match (prefix.chunks, &plan.fixed_header) {
            (0, Some(h)) => h.len() as u64,
            _ => prefix.bytes,
        };
        let header = match plan.fixed_header {
            Some(_) => Some(String::new()),
            None => prefix.header,
        };
        let checkpointer = match plan.commit {
            Some(commit) => Some(Checkpointer::start(
                file.try_clone().map_err(io_err("cannot write", &tmp))?,
                commit,
            )?),
            None => None,
        };
        Ok(Assembler {
            state: Mutex::new(State {
                file,
                next: prefix.chunks,
                total: plan.total,
                waiting: BTreeMap::new(),
                header,
                bytes,
                unsynced: Vec::new(),
                unsynced_bytes: 0,
                last_checkpoint: Instant::now(),
                error: None,
            }),
            appended: Condvar::new(),
            tmp,
            target,
            window: plan.window.max(1),
            checkpointer,
        })
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
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner());
            state = s;
        }
    }

    /// Hands over a finished chunk; appends it (and any successors waiting) when its turn has
    /// come.
    pub fn push(&self, finished: Finished) -> Result<(), JobError> {
        let mut state = self.lock();
        state.waiting.insert(finished.row.index as usize, finished);
        let result = self.drain(&mut state);
        if let Err(e) = &result {
            state.error.get_or_insert(e.message.clone());
        }
        drop(state);
        self.appended.notify_all();
        result
    }

    fn drain(&self, state: &mut State) -> Result<(), JobError> {
        if let Some(e) = &state.error {
            return Err(JobError::permanent(e.clone()));
        }
        while let Some(mut chunk) = state.waiting.remove(&state.next) {
            let header_bytes = append_header(state, chunk.header.take(), &self.tmp)?;
            state
                .file
                .write_all(&chunk.bytes)
                .map_err(io_err("cannot write", &self.tmp))?;
            let appended = header_bytes + chunk.bytes.len() as u64;
            state.bytes += appended;
            state.next += 1;
            if self.checkpointer.is_some() {
                chunk.row.output_bytes = Some(appended);
                state.unsynced.push((chunk.row, chunk.lines));
                state.unsynced_bytes += appended;
            }
        }
        if let Some(checkpointer) = &self.checkpointer
            && !state.unsynced.is_empty()
            && (state.unsynced_bytes >= CHECKPOINT_BYTES
                || state.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
        {
            state.unsynced_bytes = 0;
            state.last_checkpoint = Instant::now();
            let _ = checkpointer
                .requests
                .send(std::mem::take(&mut state.unsynced));
        }
        Ok(())
    }

    /// Commits what has been appended so far (the job stops: failed or cancelled), so the next
    /// start resumes after it.
    pub fn stop(self) {
        let Some(checkpointer) = self.checkpointer else {
            return;
        };
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = checkpointer.finish(state.unsynced) {
            tracing::warn!(error = %e.message, "cannot checkpoint the chunks appended before the stop");
        }
    }

    /// Syncs and commits the complete output and renames it over the target; returns its size.
    pub fn finish(self) -> Result<u64, JobError> {
        if let Some(marker) = std::env::var_os("TESSERA_TEST_STALL_ASSEMBLY") {
            // Test aid: lets an end-to-end test kill the process before the output is complete.
            let _ = std::fs::write(marker, b"assembling");
            std::thread::sleep(Duration::from_secs(60));
        }
        let mut state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        let synced = self.checkpointer.is_some();
        if let Some(checkpointer) = self.checkpointer {
            checkpointer.finish(std::mem::take(&mut state.unsynced))?;
        }
        if let Some(e) = state.error {
            return Err(JobError::permanent(e));
        }
        if state.next < state.total {
            return Err(JobError::permanent(format!(
                "internal: the output was assembled up to chunk {} of {}",
                state.next, state.total
            )));
        }
        drop(state.file);
        std::fs::rename(&self.tmp, &self.target)
            .map_err(io_err("cannot rename into", &self.target))?;
        if synced {
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

impl Checkpointer {
    fn start(file: File, commit: CommitFn) -> Result<Checkpointer, JobError> {
        let (requests, rx) = std::sync::mpsc::channel();
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        let thread = std::thread::Builder::new()
            .name("batch-checkpoint".into())
            .spawn(move || checkpoint_loop(&file, &commit, &rx, &slot))
            .map_err(|e| JobError::retryable(format!("cannot start a checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            requests,
            thread,
            error,
        })
    }

    /// Checkpoints the last chunks, waits for every checkpoint, and reports the first error.
    fn finish(self, last: Vec<(BatchChunkRow, Vec<BatchLineRow>)>) -> Result<(), JobError> {
        let _ = self.requests.send(last);
        drop(self.requests);
        let _ = self.thread.join();
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(JobError::retryable(e)),
            None => Ok(()),
        }
    }
}

/// Each request: sync the file (which holds every byte of the request's chunks), then commit
/// the chunks. Requests queued meanwhile share one sync and one transaction.
fn checkpoint_loop(
    file: &File,
    commit: &CommitFn,
    requests: &Receiver<Vec<(BatchChunkRow, Vec<BatchLineRow>)>>,
    error: &Mutex<Option<String>>,
) {
    while let Ok(mut chunks) = requests.recv() {
        while let Ok(more) = requests.try_recv() {
            chunks.extend(more);
        }
        if error.lock().map(|e| e.is_some()).unwrap_or(true) {
            continue;
        }
        let result = file
            .sync_data()
            .map_err(|e| JobError::retryable(format!("cannot sync the output: {e}")))
            .and_then(|()| {
                let now = crate::now_millis();
                for (row, _) in &mut chunks {
                    row.committed_at = Some(now);
                }
                if chunks.is_empty() {
                    Ok(())
                } else {
                    commit(&chunks)
                }
            });
        if let Err(e) = result {
            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.message);
        }
    }
}

/// A command output's header: written before the first chunk that has one; every later one
/// must be the same. Returns the bytes written.
fn append_header(state: &mut State, header: Option<String>, tmp: &Path) -> Result<u64, JobError> {
    let Some(h) = header.filter(|h| !h.is_empty()) else {
        return Ok(0);
    };
    match &state.header {
        None => {
            state
                .file
                .write_all(h.as_bytes())
                .map_err(io_err("cannot write", tmp))?;
            let written = h.len() as u64;
            state.header = Some(h);
            Ok(written)
        }
        // A fixed header (row processors) was written up front.
        Some(first) if first.is_empty() || *first == h => Ok(0),
        Some(first) => Err(JobError::permanent(format!(
            "the command's output header differs between chunks: `{}` and `{}`",
            first.trim_end(),
            h.trim_end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(index: u32, text: &str) -> Finished {
        Finished {
            bytes: text.as_bytes().to_vec(),
            header: None,
            row: BatchChunkRow {
                state: tessera_store::ChunkState::Committed,
                ..BatchChunkRow::pending(index, 0, 0, 1, 1)
            },
            lines: Vec::new(),
        }
    }

    type Commits = Arc<Mutex<Vec<(u32, u64, String)>>>;

    /// A commit function recording (chunk, output bytes, the synced file's content then).
    fn recorder(tmp: PathBuf) -> (CommitFn, Commits) {
        let commits: Commits = Arc::default();
        let sink = commits.clone();
        let commit: CommitFn = Box::new(move |chunks| {
            let content = std::fs::read_to_string(&tmp).unwrap();
            let mut sink = sink.lock().unwrap();
            for (row, _) in chunks {
                sink.push((row.index, row.output_bytes.unwrap(), content.clone()));
            }
            Ok(())
        });
        (commit, commits)
    }

    fn plan(target: &Path, prefix: Prefix, commit: Option<CommitFn>) -> AssemblyPlan {
        AssemblyPlan {
            target: target.to_path_buf(),
            fixed_header: Some(b"h\n".to_vec()),
            prefix,
            total: 4,
            window: 4,
            commit,
        }
    }

    #[test]
    fn chunks_are_appended_in_order_and_committed_only_once_their_bytes_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let (commit, commits) = recorder(temp_path(&target));
        let assembler = Assembler::new(plan(&target, Prefix::default(), Some(commit))).unwrap();
        for (i, text) in [(2, "c\n"), (0, "a\n"), (3, "d\n"), (1, "b\n")] {
            assembler.push(finished(i, text)).unwrap();
        }
        assert_eq!(assembler.finish().unwrap(), 10);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "h\na\nb\nc\nd\n");
        assert!(!temp_path(&target).exists());
        let commits = commits.lock().unwrap();
        let order: Vec<u32> = commits.iter().map(|c| c.0).collect();
        assert_eq!(order, [0, 1, 2, 3]);
        for (index, bytes, content) in commits.iter() {
            assert_eq!(*bytes, 2);
            let end = 2 + 2 * (*index as usize + 1);
            assert!(
                content.len() >= end,
                "chunk {index} committed before written"
            );
        }
    }

    #[test]
    fn a_stop_commits_the_appended_prefix_and_a_resume_truncates_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let tmp = temp_path(&target);
        let (commit, commits) = recorder(tmp.clone());
        let assembler = Assembler::new(plan(&target, Prefix::default(), Some(commit))).unwrap();
        assembler.push(finished(0, "a\n")).unwrap();
        assembler.push(finished(2, "c\n")).unwrap();
        assembler.stop();
        let committed: Vec<u32> = commits.lock().unwrap().iter().map(|c| c.0).collect();
        assert_eq!(committed, [0], "chunk 2 waited for chunk 1: not committed");
        // Bytes appended after the committed prefix (a crash between write and commit) go.
        std::fs::write(&tmp, "h\na\ngarbage").unwrap();
        let prefix = Prefix {
            chunks: 1,
            bytes: 4,
            header: None,
        };
        let assembler = Assembler::new(plan(&target, prefix.clone(), None)).unwrap();
        for (i, text) in [(3, "d\n"), (1, "b\n"), (2, "c\n")] {
            assembler.push(finished(i, text)).unwrap();
        }
        assembler.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "h\na\nb\nc\nd\n");
        // A temporary output shorter than its committed prefix is refused.
        std::fs::write(&tmp, "h\n").unwrap();
        let err = Assembler::new(plan(&target, prefix, None)).err().unwrap();
        assert!(
            err.message.contains("has 2 bytes instead of at least 4"),
            "{}",
            err.message
        );
    }
}
