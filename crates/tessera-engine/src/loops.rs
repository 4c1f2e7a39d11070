//! Loops whose items run in chunks (see `tessera_core::loops`): the items are cut into chunks
//! of a size fixed by their count, each chunk evaluated on a blocking thread under the
//! engine's CPU pool and committed with its failed items (fenced, as a step is), and the
//! loop's output assembled from the chunks in item order. A resumed loop reuses the chunks
//! committed for the same items and template (their fingerprint) and computes the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tessera_core::Data;
use tessera_core::loops::{ChunkValues, ItemFailure, LoopWork, assemble};
use tessera_core::scheduler::{Event, Job, JobError, LoopProgress};
use tessera_store::{LoopChunkCommit, LoopChunkRow, LoopFailureRow, LoopKey, StoreError};

use crate::jobs::{CancelFlag, CancelOnDrop};
use crate::{RunContext, Shared, now_millis};

/// Items per chunk: about an eighth of the list, so that two cores share the work and a
/// resume redoes little, within bounds that keep a commit's cost small against its work.
/// Fixed by the item count: a resumed loop cuts its items where the first run did.
pub(crate) fn chunk_size(items: usize) -> usize {
    (items / 8).clamp(MIN_CHUNK, MAX_CHUNK)
}

const MIN_CHUNK: usize = 32 << 10;
const MAX_CHUNK: usize = 128 << 10;

/// Live counts of the chunked loops of one task, by loop key.
#[derive(Debug, Default)]
pub(crate) struct LoopBoard {
    loops: Mutex<BTreeMap<String, Arc<LoopCounters>>>,
}

#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    done: AtomicU64,
    total: AtomicU64,
}

impl LoopBoard {
    fn counters(&self, key: &str) -> Arc<LoopCounters> {
        let mut loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops.entry(key.to_string()).or_default().clone()
    }

    fn forget(&self, key: &str) {
        let mut loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops.remove(key);
    }

    pub fn snapshot(&self) -> Vec<LoopProgress> {
        let loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops
            .iter()
            .map(|(key, c)| LoopProgress {
                key: key.clone(),
                done: c.done.load(Ordering::Relaxed) as usize,
                total: c.total.load(Ordering::Relaxed) as usize,
            })
            .collect()
    }
}

/// How a chunked loop ended without its output.
enum LoopEnd {
    /// Items failed beyond `max_failed_items`: the task's error.
    Items(String),
    /// The job itself failed (the store, a cancel): retried as any job.
    Job(JobError),
}

/// Runs a chunked loop as a job; its end is sent as the job's event.
pub(crate) fn spawn(
    engine: Arc<Shared>,
    run: &Arc<RunContext>,
    job: Job,
    work: Arc<LoopWork>,
    events: crate::events::EventSender,
) -> tokio::task::JoinHandle<()> {
    let run = run.clone();
    engine.clone().runtime.spawn(async move {
        // Aborting the job (a cancel) drops this future: the chunks under way stop.
        let cancel = Arc::new(CancelFlag::default());
        let _stop = CancelOnDrop(cancel.clone());
        let board = engine.loop_board(&run.task_id);
        let event = match run_loop(&engine, &run, &job, &work, &cancel, &board).await {
            Ok(output) => Event::JobSucceeded {
                job: job.id,
                output,
                cached: false,
            },
            Err(LoopEnd::Items(error)) => Event::ItemsFailed { job: job.id, error },
            Err(LoopEnd::Job(error)) => Event::JobFailed { job: job.id, error },
        };
        board.forget(&job.key);
        events.send(event);
    })
}

fn store_error(what: &str) -> impl Fn(StoreError) -> LoopEnd + '_ {
    move |e| {
        tracing::warn!(error = %e, "{what}");
        LoopEnd::Job(JobError::retryable(format!("{what}: {e}")))
    }
}

fn panicked(e: tokio::task::JoinError) -> LoopEnd {
    LoopEnd::Job(JobError::retryable(format!(
        "a chunk of the loop stopped: {e}"
    )))
}

async fn run_loop(
    engine: &Arc<Shared>,
    run: &Arc<RunContext>,
    job: &Job,
    work: &Arc<LoopWork>,
    cancel: &Arc<CancelFlag>,
    board: &LoopBoard,
) -> Result<Data, LoopEnd> {
    let n = work.items.len();
    let size = chunk_size(n);
    let count = n.div_ceil(size);
    let counters = board.counters(&job.key);
    counters.total.store(n as u64, Ordering::Relaxed);
    let key = Arc::new(LoopKey {
        task_id: run.task_id.clone(),
        key: job.key.clone(),
        iteration: job.iteration,
    });
    let mut values: Vec<Option<String>> = vec![None; count];
    let mut failed: Vec<ItemFailure> = Vec::new();
    // A loop of one chunk is computed and committed with its step, as any node: chunks are
    // checkpoints of longer loops.
    let checkpoints = count > 1;
    let fingerprint = if checkpoints {
        let w = work.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || fingerprint(&w))
                .await
                .map_err(panicked)?,
        )
    } else {
        Arc::default()
    };
    if checkpoints {
        let (store, k, fp) = (engine.store.clone(), key.clone(), fingerprint.clone());
        let (chunks, failures) = tokio::task::spawn_blocking(move || {
            let chunks = store.loop_chunks(&k, &fp)?;
            let failures = if chunks.iter().any(|c| c.failed > 0) {
                store.loop_failures(&k, 0, u64::MAX)?
            } else {
                Vec::new()
            };
            Ok::<_, StoreError>((chunks, failures))
        })
        .await
        .map_err(panicked)?
        .map_err(store_error("cannot read the loop's committed chunks"))?;
        for c in chunks {
            let i = c.index as usize;
            if i < count
                && c.first as usize == i * size
                && c.count as usize == size.min(n - i * size)
            {
                counters.done.fetch_add(c.count, Ordering::Relaxed);
                values[i] = Some(c.values);
            }
        }
        failed.extend(failures.into_iter().filter_map(|f| {
            let item = f.item as usize;
            values.get(item / size)?.as_ref()?;
            Some(ItemFailure {
                index: item,
                node: f.node,
                error: f.error,
            })
        }));
        if let Some(error) = work.failure_error(&job.key, &failed) {
            log_failures(engine, run, &failed).await;
            return Err(LoopEnd::Items(error));
        }
    }
    let pending: Vec<usize> = (0..count).filter(|&i| values[i].is_none()).collect();
    let mut next = 0;
    let mut running = tokio::task::JoinSet::new();
    let parallel = engine.pools.cpu_size();
    while next < pending.len() || !running.is_empty() {
        while running.len() < parallel && next < pending.len() {
            let index = pending[next];
            next += 1;
            let chunk = ChunkJob {
                engine: engine.clone(),
                work: work.clone(),
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                fence: run.fence,
                index,
                range: index * size..((index + 1) * size).min(n),
                commit: checkpoints,
                cancel: cancel.clone(),
            };
            let cpu = engine.pools.cpu();
            running.spawn(async move {
                let _permit = cpu.acquire_owned().await.expect("pools are never closed");
                tokio::task::spawn_blocking(move || chunk.run()).await
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (index, chunk) = done.map_err(panicked)?.map_err(panicked)??;
        counters
            .done
            .fetch_add(chunk_len(index, size, n) as u64, Ordering::Relaxed);
        failed.extend(chunk.failed);
        values[index] = Some(chunk.values);
        if let Some(error) = work.failure_error(&job.key, &failed) {
            cancel.flag.store(true, Ordering::SeqCst);
            log_failures(engine, run, &failed).await;
            return Err(LoopEnd::Items(error));
        }
    }
    if !failed.is_empty() {
        log_failures(engine, run, &failed).await;
    }
    // A 90 MB result is built off the async threads.
    tokio::task::spawn_blocking(move || {
        assemble(values.iter().map(|v| v.as_deref().unwrap_or("")), &failed)
    })
    .await
    .map_err(panicked)
}

fn chunk_len(index: usize, size: usize, n: usize) -> usize {
    size.min(n - index * size)
}

/// One chunk: computed, then committed with its failed items.
struct ChunkJob {
    engine: Arc<Shared>,
    work: Arc<LoopWork>,
    key: Arc<LoopKey>,
    fingerprint: Arc<String>,
    fence: u64,
    index: usize,
    range: std::ops::Range<usize>,
    commit: bool,
    cancel: Arc<CancelFlag>,
}

impl ChunkJob {
    fn run(self) -> Result<(usize, ChunkValues), LoopEnd> {
        let scripts = &self.engine.scripts;
        let chunk =
            self.work
                .program
                .run_chunk(&self.work, scripts, self.range.clone(), &self.cancel.flag);
        // A chunk cut short by a cancel is not committed: it is redone on resume.
        if self.cancel.flag.load(Ordering::SeqCst) {
            return Err(LoopEnd::Job(JobError::retryable("the loop was cancelled")));
        }
        if self.commit {
            let row = LoopChunkRow {
                index: self.index as u32,
                first: self.range.start as u64,
                count: self.range.len() as u64,
                fingerprint: self.fingerprint.to_string(),
                values: chunk.values,
                failed: chunk.failed.len() as u64,
                committed_at: now_millis(),
            };
            let failures: Vec<LoopFailureRow> = chunk
                .failed
                .iter()
                .map(|f| LoopFailureRow {
                    item: f.index as u64,
                    node: f.node.clone(),
                    error: f.error.clone(),
                    attempts: 1,
                })
                .collect();
            self.engine
                .store
                .put_loop_chunks(&[LoopChunkCommit {
                    loop_key: &self.key,
                    chunk: &row,
                    failures: &failures,
                    fence: self.fence,
                }])
                .map_err(store_error("cannot commit a chunk of the loop"))?;
            return Ok((
                self.index,
                ChunkValues {
                    values: row.values,
                    failed: chunk.failed,
                },
            ));
        }
        Ok((self.index, chunk))
    }
}

/// What a chunk's values were computed from: the items, the template, what the items read
/// outside it. Chunks of another fingerprint are not reused.
fn fingerprint(work: &LoopWork) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(work.items.range_text(0..work.items.len()).as_bytes());
    h.update(&[0]);
    h.update(work.program.definition().as_bytes());
    let mut outer: Vec<(&String, &Data)> = work.outer.iter().collect();
    outer.sort_by(|a, b| a.0.cmp(b.0));
    for (id, view) in outer {
        h.update(&[0]);
        h.update(id.as_bytes());
        h.update(view.json().as_bytes());
    }
    for (item, index) in &work.around {
        h.update(&[0]);
        h.update(item.json().as_bytes());
        h.update(&index.to_le_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// A failed item's log: its error under the node instance that failed (`check#41`), so that
/// the item's logs (`each#41`) show it.
async fn log_failures(engine: &Arc<Shared>, run: &Arc<RunContext>, failed: &[ItemFailure]) {
    let lines: Vec<tessera_store::LogLine> = failed
        .iter()
        .map(|f| tessera_store::LogLine {
            task_id: run.task_id.clone(),
            key: f.node.clone(),
            attempt: 1,
            stream: "engine".into(),
            line: format!("attempt 1 failed: {}", f.error),
            at: now_millis(),
        })
        .collect();
    let store = engine.store.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.append_logs(&lines)).await {
        tracing::warn!(error = %e, "could not store the logs of failed items");
    }
}
