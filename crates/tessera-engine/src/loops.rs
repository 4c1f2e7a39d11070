//! Loops whose items run in chunks (see `tessera_core::loops`): the items are cut into chunks
//! of a size fixed by their count, each chunk evaluated on a blocking thread under the
//! engine's CPU pool and committed with its failed items (fenced, as a step is), and the
//! loop's output assembled from the chunks in item order. A resumed loop reuses the chunks
//! committed for the same items and template (their fingerprint) and computes the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tessera_core::Data;
use tessera_core::loops::{ChunkValues, ItemFailure, LoopTally, LoopWork, assemble};
use tessera_core::scheduler::{Event, Job, JobError, LoopProgress};
use tessera_store::{LoopChunkCommit, LoopChunkRow, LoopFailureRow, LoopKey, StoreError};

use crate::jobs::{CancelFlag, CancelOnDrop};
use crate::{RunContext, Shared, now_millis};

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
            Ok((output, tally)) => Event::ItemsDone {
                job: job.id,
                output,
                tally,
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
) -> Result<(Data, LoopTally), LoopEnd> {
    let n = work.items.len();
    let counters = board.counters(&job.key);
    counters.total.store(n as u64, Ordering::Relaxed);
    let key = Arc::new(LoopKey {
        task_id: run.task_id.clone(),
        key: job.key.clone(),
        iteration: job.iteration,
    });
    // One blocking call reads what an earlier run committed and, on a first run, computes the
    // probe chunk (see PROBE) too: each hop between threads costs tens of microseconds.
    // The first attempt of a loop of a task just submitted has nothing committed: it reads
    // nothing (the task's creation may still be committing, and the store busy with it).
    let fresh = run.recorded.is_some() && job.id.attempt <= 1;
    let (w, store, k) = (work.clone(), engine.store.clone(), key.clone());
    let (scripts, cancel_flag) = (engine.scripts.clone(), cancel.clone());
    let (fingerprint, committed, failures, early_probe) = tokio::task::spawn_blocking(move || {
        let fingerprint = fingerprint(&w);
        let chunks = match fresh {
            true => Vec::new(),
            false => store.loop_chunks(&k, &fingerprint)?,
        };
        let failures = if chunks.iter().any(|c| c.failed > 0) {
            store.loop_failures(&k, 0, u64::MAX)?
        } else {
            Vec::new()
        };
        let probe = chunks.is_empty().then(|| {
            let range = 0..PROBE.min(w.items.len());
            let started = std::time::Instant::now();
            let values = evaluate(&w, &scripts, range.clone(), &cancel_flag);
            (range, values, started.elapsed())
        });
        Ok::<_, StoreError>((fingerprint, chunks, failures, probe))
    })
    .await
    .map_err(panicked)?
    .map_err(store_error("cannot read the loop's committed chunks"))?;
    let fingerprint = Arc::new(fingerprint);
    // Values by first item: the chunks committed by an earlier run of the same loop on the
    // same data, then the ones computed now.
    let mut values: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    let mut failed: Vec<ItemFailure> = Vec::new();
    let mut covered = 0;
    for c in committed {
        let (first, count) = (c.first as usize, c.count as usize);
        // Chunks never overlap; one that would (or lies outside the items) is not trusted.
        if first < covered || first + count > n {
            continue;
        }
        covered = first + count;
        counters.done.fetch_add(c.count, Ordering::Relaxed);
        values.insert(first, (count, c.values));
    }
    failed.extend(failures.into_iter().filter_map(|f| {
        let item = f.item as usize;
        let (&first, (count, _)) = values.range(..=item).next_back()?;
        // Only failures of the chunks kept.
        (item < first + count).then_some(ItemFailure {
            index: item,
            node: f.node,
            error: f.error,
        })
    }));
    if !values.is_empty() {
        let reused: usize = values.values().map(|(count, _)| count).sum();
        let line = format!(
            "{reused} of {n} items taken from {} chunks committed by an earlier run",
            values.len()
        );
        log_lines(engine, run, job.id.attempt, &job.key, vec![line]).await;
    }
    if let Some(error) = work.failure_error(&job.key, &failed) {
        log_failures(engine, run, job.id.attempt, &failed).await;
        return Err(LoopEnd::Items(error));
    }
    let mut gaps = gaps(&values, n);
    let parallel = engine.pools.cpu_size();
    let chunk = |range: std::ops::Range<usize>, commit: bool| ChunkJob {
        engine: engine.clone(),
        run: run.clone(),
        work: work.clone(),
        key: key.clone(),
        fingerprint: fingerprint.clone(),
        fence: run.fence,
        range,
        commit,
        cancel: cancel.clone(),
    };
    // A first, small chunk measures what an item costs; the rest is cut to that measure.
    let Some(first_gap) = gaps.first_mut() else {
        return finish(engine, run, job.id.attempt, values, failed).await;
    };
    let probe = first_gap.start..(first_gap.start + PROBE).min(first_gap.end);
    first_gap.start = probe.end;
    let (probe_values, took) = match early_probe {
        // Computed with the read (nothing was committed, so the first gap starts at 0).
        Some((range, values, took)) if range == probe => (values?, took),
        _ => {
            let probe_job = chunk(probe.clone(), false);
            let started = std::time::Instant::now();
            let (_, values) = tokio::task::spawn_blocking(move || probe_job.run())
                .await
                .map_err(panicked)??;
            (values, started.elapsed())
        }
    };
    let per_item = took.as_secs_f64() / probe.len() as f64;
    let left: usize = gaps.iter().map(|g| g.len()).sum();
    // Short loops (all the rest within one chunk's time per core) run without checkpoints:
    // their values are committed with the loop's step. Longer ones commit every chunk.
    let checkpoints = left as f64 * per_item > CHUNK_TIME.as_secs_f64() * parallel as f64;
    let size = if checkpoints {
        ((CHUNK_TIME.as_secs_f64() / per_item.max(1e-9)) as usize).clamp(PROBE, MAX_CHUNK)
    } else {
        left.div_ceil(parallel).max(1)
    };
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    for g in gaps.iter().filter(|g| !g.is_empty()) {
        let mut at = g.start;
        while at < g.end {
            let end = (at + size).min(g.end);
            pending.push(at..end);
            at = end;
        }
    }
    let probe_values = if checkpoints {
        // The probe is a chunk like the others: committed.
        let job = chunk(probe.clone(), true);
        let vals = probe_values;
        tokio::task::spawn_blocking(move || job.commit(vals))
            .await
            .map_err(panicked)??
            .1
    } else {
        probe_values
    };
    counters
        .done
        .fetch_add(probe.len() as u64, Ordering::Relaxed);
    failed.extend(probe_values.failed);
    values.insert(probe.start, (probe.len(), probe_values.values));
    if let Some(error) = work.failure_error(&job.key, &failed) {
        log_failures(engine, run, job.id.attempt, &failed).await;
        return Err(LoopEnd::Items(error));
    }
    let mut next = 0;
    let mut running = tokio::task::JoinSet::new();
    while next < pending.len() || !running.is_empty() {
        while running.len() < parallel && next < pending.len() {
            let job = chunk(pending[next].clone(), checkpoints);
            next += 1;
            let cpu = engine.pools.cpu();
            running.spawn(async move {
                let _permit = cpu.acquire_owned().await.expect("pools are never closed");
                tokio::task::spawn_blocking(move || job.run()).await
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (range, chunk) = done.map_err(panicked)?.map_err(panicked)??;
        counters
            .done
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        failed.extend(chunk.failed);
        values.insert(range.start, (range.len(), chunk.values));
        if let Some(error) = work.failure_error(&job.key, &failed) {
            cancel.flag.store(true, Ordering::SeqCst);
            log_failures(engine, run, job.id.attempt, &failed).await;
            return Err(LoopEnd::Items(error));
        }
    }
    finish(engine, run, job.id.attempt, values, failed).await
}

/// Items of the first chunk, which measures what an item costs.
const PROBE: usize = 1024;
/// What a committed chunk's work takes, about: cancels and resumes lose at most this per core.
const CHUNK_TIME: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_CHUNK: usize = 4 << 20;

/// The items no committed chunk holds, in order.
fn gaps(values: &BTreeMap<usize, (usize, String)>, n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    for (&first, (count, _)) in values {
        if first > at {
            out.push(at..first);
        }
        at = first + count;
    }
    if at < n {
        out.push(at..n);
    }
    out
}

/// The loop's output from its values in item order, with the failures listed and logged.
async fn finish(
    engine: &Arc<Shared>,
    run: &Arc<RunContext>,
    attempt: u32,
    values: BTreeMap<usize, (usize, String)>,
    failed: Vec<ItemFailure>,
) -> Result<(Data, LoopTally), LoopEnd> {
    if !failed.is_empty() {
        log_failures(engine, run, attempt, &failed).await;
    }
    // A 90 MB result is built off the async threads.
    let output = tokio::task::spawn_blocking(move || {
        let items = values.values().map(|(n, _)| n).sum();
        let output = assemble(values.values().map(|(_, v)| v.as_str()), &failed);
        (output, LoopTally::of(items, &failed))
    });
    output.await.map_err(panicked)
}

/// Evaluates items `range`. A chunk cut short by a cancel is an error: never committed, it is
/// redone on resume.
fn evaluate(
    work: &LoopWork,
    scripts: &tessera_core::Scripts,
    range: std::ops::Range<usize>,
    cancel: &CancelFlag,
) -> Result<ChunkValues, LoopEnd> {
    let chunk = work.program.run_chunk(work, scripts, range, &cancel.flag);
    if cancel.flag.load(Ordering::SeqCst) {
        return Err(LoopEnd::Job(JobError::retryable("the loop was cancelled")));
    }
    Ok(chunk)
}

/// One chunk: computed, then committed with its failed items.
struct ChunkJob {
    engine: Arc<Shared>,
    run: Arc<RunContext>,
    work: Arc<LoopWork>,
    key: Arc<LoopKey>,
    fingerprint: Arc<String>,
    fence: u64,
    range: std::ops::Range<usize>,
    commit: bool,
    cancel: Arc<CancelFlag>,
}

type ChunkDone = (std::ops::Range<usize>, ChunkValues);

impl ChunkJob {
    fn run(self) -> Result<ChunkDone, LoopEnd> {
        let chunk = evaluate(
            &self.work,
            &self.engine.scripts,
            self.range.clone(),
            &self.cancel,
        )?;
        if self.commit {
            return self.commit(chunk);
        }
        Ok((self.range, chunk))
    }

    /// Commits the chunk's values and failed items.
    fn commit(self, chunk: ChunkValues) -> Result<ChunkDone, LoopEnd> {
        let row = LoopChunkRow {
            index: self.range.start as u32,
            first: self.range.start as u64,
            count: self.range.len() as u64,
            total: self.work.items.len() as u64,
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
        self.run
            .wait_recorded()
            .map_err(store_error("cannot commit a chunk of the loop"))?;
        self.engine
            .store
            .put_loop_chunks(&[LoopChunkCommit {
                loop_key: &self.key,
                chunk: &row,
                failures: &failures,
                fence: self.fence,
            }])
            .map_err(store_error("cannot commit a chunk of the loop"))?;
        Ok((
            self.range,
            ChunkValues {
                values: row.values,
                failed: chunk.failed,
            },
        ))
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
async fn log_failures(
    engine: &Arc<Shared>,
    run: &Arc<RunContext>,
    attempt: u32,
    failed: &[ItemFailure],
) {
    let lines: Vec<tessera_store::LogLine> = failed
        .iter()
        .map(|f| tessera_store::LogLine {
            task_id: run.task_id.clone(),
            key: f.node.clone(),
            attempt,
            stream: "engine".into(),
            line: format!("failed (the loop's attempt {attempt}): {}", f.error),
            at: now_millis(),
        })
        .collect();
    append_logs(engine, run, lines).await;
}

/// Lines of the engine's own under the loop's key.
async fn log_lines(
    engine: &Arc<Shared>,
    run: &Arc<RunContext>,
    attempt: u32,
    key: &str,
    lines: Vec<String>,
) {
    let lines = lines
        .into_iter()
        .map(|line| tessera_store::LogLine {
            task_id: run.task_id.clone(),
            key: key.to_string(),
            attempt,
            stream: "engine".into(),
            line,
            at: now_millis(),
        })
        .collect();
    append_logs(engine, run, lines).await;
}

/// Stores lines once the task is in the store (a task whose creation failed keeps none).
async fn append_logs(
    engine: &Arc<Shared>,
    run: &Arc<RunContext>,
    lines: Vec<tessera_store::LogLine>,
) {
    let (store, run) = (engine.store.clone(), run.clone());
    let stored = tokio::task::spawn_blocking(move || {
        run.wait_recorded()?;
        store.append_logs(&lines)
    });
    if let Ok(Err(e)) = stored.await {
        tracing::warn!(error = %e, "could not store the logs of failed items");
    }
}
