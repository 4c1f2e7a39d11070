//! One batch job on blocking threads: plan (or verify the plan of an earlier start), process
//! the chunks not yet committed on `parallelism` workers, and assemble the output in input
//! order — the assembler syncs it as it grows and commits the chunks it holds (checkpoints).

use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tessera_batch::chunk::{IssueKind, Layout, header_names};
use tessera_core::model::{BatchSpec, RecordFormat, RetryPolicy};
use tessera_core::scheduler::JobError;
use tessera_store::{
    BatchChunkRow, BatchJobRow, BatchJobState, BatchKey, BatchLineRow, ChunkCommit, ChunkState,
    LineState, ObjectMeta, StoreError,
};

use super::BatchCounters;
use super::assemble::{Assembler, AssemblyPlan, Finished, Prefix, lock_output};
use super::resume::Reuse;
use super::work::{Failure, Gate, Work, WorkKind, line_row};
use crate::command::ChunkCommand;
use crate::jobs::CancelFlag;
use crate::{Shared, now_millis};

pub(crate) enum Target {
    Path(PathBuf),
    Object { file: PathBuf, name: Option<String> },
}

pub(crate) struct JobRun {
    pub engine: Arc<Shared>,
    pub runtime: tokio::runtime::Handle,
    pub key: BatchKey,
    pub node_id: String,
    /// The fence of this process's claim on the task: checkpoints carry it.
    pub fence: u64,
    pub spec: BatchSpec,
    pub retry: RetryPolicy,
    pub source: PathBuf,
    pub target: Target,
    pub work_dir: PathBuf,
    pub command: Option<ChunkCommand>,
    pub counters: Arc<BatchCounters>,
    pub cancel: Arc<CancelFlag>,
    /// A hash of what makes the committed output (reader, processor, writer, chunk size, the
    /// rendered command): committed chunks are reused only under the same processing.
    pub processing: String,
}

/// Facts fixed when the job is planned, kept in the job row.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredPlan {
    pub names: Vec<String>,
    pub records: u64,
    pub bytes: u64,
    /// [`JobRun::processing`] when planned (absent in jobs planned by older versions).
    #[serde(default)]
    pub processing: Option<String>,
}

/// The input as first seen.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Source {
    pub path: String,
    pub size: u64,
    pub mtime_ns: u128,
}

/// The job's record counts, summed over its chunks' checkpoint rows.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    read: u64,
    written: u64,
    skipped: u64,
    filtered: u64,
}

impl Totals {
    fn add(&mut self, c: &BatchChunkRow) {
        self.read += c.read;
        self.written += c.written;
        self.skipped += c.skipped;
        self.filtered += c.filtered;
    }
}

type Output = (Value, Option<ObjectMeta>);

fn store_err(e: StoreError) -> JobError {
    JobError::retryable(format!("batch state: {e}"))
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> JobError {
    let msg = format!("{what} {}", path.display());
    move |e| JobError::retryable(format!("{msg}: {e}"))
}

fn layout(format: RecordFormat, delimiter: u8) -> Layout {
    match format {
        RecordFormat::Csv => Layout::Csv { delimiter },
        RecordFormat::Jsonl => Layout::Jsonl,
        RecordFormat::Lines => Layout::Lines,
    }
}

impl JobRun {
    pub fn run(self) -> (Result<Output, JobError>, Vec<String>) {
        let mut logs = Vec::new();
        let result = self.execute(&mut logs);
        if let Err(e) = &result
            && !self.cancel.flag.load(Ordering::SeqCst)
        {
            let _ = self.engine.store.end_batch_job(
                &self.key,
                BatchJobState::Failed,
                None,
                Some(&e.message),
                now_millis(),
            );
        }
        (result, logs)
    }

    pub(super) fn reader_layout(&self) -> Layout {
        layout(self.spec.reader.format, self.spec.reader.delimiter)
    }

    pub(super) fn writer_layout(&self) -> Layout {
        layout(self.spec.writer.format, self.spec.writer.delimiter)
    }

    pub(super) fn final_path(&self) -> &Path {
        match &self.target {
            Target::Path(p) => p,
            Target::Object { file, .. } => file,
        }
    }

    fn execute(&self, logs: &mut Vec<String>) -> Result<Output, JobError> {
        let _lock = match &self.target {
            Target::Path(p) => Some(lock_output(
                p,
                &format!("task {} (node `{}`)", self.key.task_id, self.node_id),
            )?),
            // Its own file in the task's work directory.
            Target::Object { .. } => None,
        };
        let store = &self.engine.store;
        let path = self.source.display().to_string();
        let meta = std::fs::metadata(&self.source)
            .map_err(|e| JobError::permanent(format!("reader: cannot open {path}: {e}")))?;
        let source = Source {
            path: path.clone(),
            size: meta.len(),
            mtime_ns: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
        };
        let existing = store.batch_job(&self.key).map_err(store_err)?;
        let (job, chunks) = match existing {
            Some(job) if self.spec.checkpoints && job.state == BatchJobState::Finished => {
                if let Some(out) = job.output {
                    logs.push("batch already finished: its recorded output is reused".into());
                    return Ok((out, None));
                }
                self.plan(&source, logs)?
            }
            Some(job) if self.spec.checkpoints => {
                let chunks = store.batch_chunks(&self.key).map_err(store_err)?;
                match self.check_reuse(&job, &source, &chunks)? {
                    Reuse::Same => (job, chunks),
                    Reuse::ChangedAfter { committed } => {
                        self.replan_after(&job, &source, &chunks, committed, logs)?
                    }
                    Reuse::Redo => {
                        logs.push(
                            "the node's processing changed: its committed chunks are dropped \
                             and the input is processed again"
                                .into(),
                        );
                        self.plan(&source, logs)?
                    }
                }
            }
            _ => self.plan(&source, logs)?,
        };
        let starts = store
            .start_batch_job(&self.key, now_millis())
            .map_err(store_err)?;
        if let Some(limit) = self.spec.start_limit
            && starts > limit
        {
            return Err(JobError::permanent(format!(
                "batch node `{}` has been started {starts} times; its start_limit is {limit}",
                self.node_id
            )));
        }
        let plan: StoredPlan = serde_json::from_value(job.plan.clone())
            .map_err(|e| JobError::permanent(format!("stored batch plan is invalid: {e}")))?;
        let committed: Vec<&BatchChunkRow> = chunks
            .iter()
            .filter(|c| c.state == ChunkState::Committed)
            .collect();
        if !committed.is_empty() {
            logs.push(format!(
                "resuming: {} of {} chunks already committed",
                committed.len(),
                chunks.len()
            ));
        }
        self.counters
            .chunks_total
            .store(chunks.len() as u64, Ordering::Relaxed);
        self.counters
            .rows_total
            .store(plan.records, Ordering::Relaxed);
        self.counters
            .chunks_done
            .store(committed.len() as u64, Ordering::Relaxed);
        self.counters
            .rows_done
            .store(committed.iter().map(|c| c.records).sum(), Ordering::Relaxed);

        let work = Work::new(self, &plan.names, logs)?;
        let gate = Gate {
            policy: self.spec.skip,
            used: AtomicU64::new(committed.iter().map(|c| c.skipped).sum()),
        };
        let mut totals = Totals::default();
        committed.iter().for_each(|c| totals.add(c));
        let totals = Mutex::new(totals);
        let pending: Vec<&BatchChunkRow> = chunks
            .iter()
            .filter(|c| c.state != ChunkState::Committed)
            .collect();
        let started = Instant::now();
        let parallelism = match self.spec.parallelism {
            0 => num_cpus::get(),
            n => n,
        }
        .clamp(1, pending.len().max(1));
        let header = match &work.kind {
            WorkKind::Rows(p) => Some(p.header()),
            WorkKind::Command { .. } => None,
        };
        let prefix = Prefix {
            chunks: committed.len(),
            bytes: header.as_ref().map_or(0, |h| h.len() as u64)
                + committed.iter().filter_map(|c| c.output_bytes).sum::<u64>(),
            header: committed.iter().find_map(|c| c.output_header.clone()),
        };
        let commit = self.spec.checkpoints.then(|| {
            let (engine, key, fence) = (self.engine.clone(), self.key.clone(), self.fence);
            Box::new(move |chunks: &[(BatchChunkRow, Vec<BatchLineRow>)]| {
                let commits: Vec<ChunkCommit<'_>> = chunks
                    .iter()
                    .map(|(chunk, skipped)| ChunkCommit {
                        job: &key,
                        chunk,
                        skipped,
                        fence,
                    })
                    .collect();
                engine.store.put_batch_chunks(&commits).map_err(store_err)
            }) as super::assemble::CommitFn
        });
        let assembler = Assembler::new(AssemblyPlan {
            target: self.final_path().to_path_buf(),
            fixed_header: header,
            prefix,
            total: chunks.len(),
            window: 2 * parallelism,
            commit,
        })?;
        if let Err(e) = self.process_all(&pending, parallelism, &work, &gate, &totals, &assembler) {
            // What was appended before the failure stays committed: the next start goes on
            // from there.
            assembler.stop();
            return Err(e);
        }
        logs.push(format!(
            "processed {} chunks in {} ms",
            pending.len(),
            started.elapsed().as_millis()
        ));
        let totals = totals.into_inner().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let bytes = assembler.finish()?;
        let result = self.finish(&chunks, totals, bytes)?;
        logs.push(format!(
            "output complete and synced in {} ms",
            started.elapsed().as_millis()
        ));
        Ok(result)
    }

    /// Scans the input once and records the job with its chunks (all pending).
    fn plan(
        &self,
        source: &Source,
        logs: &mut Vec<String>,
    ) -> Result<(BatchJobRow, Vec<BatchChunkRow>), JobError> {
        let started = Instant::now();
        let path = &source.path;
        let file = File::open(&self.source)
            .map_err(|e| JobError::permanent(format!("reader: cannot open {path}: {e}")))?;
        let reader = self.reader_layout();
        let csv_header = matches!(reader, Layout::Csv { .. }) && self.spec.reader.header;
        let plan = tessera_batch::plan_chunks(
            BufReader::with_capacity(1 << 20, file),
            tessera_batch::PlanOptions {
                format: reader.plan_format(),
                chunk_size: self.spec.chunk_size,
                header: csv_header,
            },
        )
        .map_err(|e| JobError::permanent(format!("reader: {path}: {e}")))?;
        if csv_header && plan.header.is_none() {
            return Err(JobError::permanent(format!(
                "reader: {path} is empty: a CSV file with `header: true` needs a header line"
            )));
        }
        let first_record = match plan.chunks.first() {
            Some(c) => {
                let mut buf = vec![0u8; (c.end - c.start).min(1 << 20) as usize];
                let f = File::open(&self.source).map_err(io_err("cannot read", &self.source))?;
                f.read_exact_at(&mut buf, c.start)
                    .map_err(io_err("cannot read", &self.source))?;
                let end = memchr_newline(&buf);
                buf.truncate(end);
                Some(buf)
            }
            None => None,
        };
        let names = header_names(plan.header.as_deref(), first_record.as_deref(), reader)
            .map_err(|e| JobError::permanent(format!("reader: {path}: {e}")))?;
        let stored = StoredPlan {
            names,
            records: plan.records,
            bytes: plan.bytes,
            processing: Some(self.processing.clone()),
        };
        let now = now_millis();
        let job = BatchJobRow {
            id: self.key.clone(),
            state: BatchJobState::Running,
            starts: 0,
            source: serde_json::to_value(source).unwrap_or_default(),
            plan: serde_json::to_value(&stored).unwrap_or_default(),
            output: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        let rows: Vec<BatchChunkRow> = plan
            .chunks
            .iter()
            .map(|c| {
                BatchChunkRow::pending(c.index as u32, c.start, c.end, c.first_line, c.records)
            })
            .collect();
        std::fs::create_dir_all(&self.work_dir).map_err(io_err("cannot create", &self.work_dir))?;
        self.engine
            .store
            .create_batch_job(&job, &rows)
            .map_err(store_err)?;
        logs.push(format!(
            "planned {} chunks of up to {} records ({} records, {} bytes) in {} ms",
            rows.len(),
            self.spec.chunk_size,
            plan.records,
            plan.bytes,
            started.elapsed().as_millis()
        ));
        Ok((job, rows))
    }

    fn process_all(
        &self,
        pending: &[&BatchChunkRow],
        parallelism: usize,
        work: &Work,
        gate: &Gate,
        totals: &Mutex<Totals>,
        assembler: &Assembler,
    ) -> Result<(), JobError> {
        if pending.is_empty() {
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<JobError>> = Mutex::new(None);
        let input = File::open(&self.source).map_err(io_err("cannot read", &self.source))?;
        std::thread::scope(|s| {
            for _ in 0..parallelism {
                s.spawn(|| {
                    let mut buf = Vec::new();
                    loop {
                        let failed = failure.lock().map(|f| f.is_some()).unwrap_or(true);
                        if failed || self.cancel.flag.load(Ordering::SeqCst) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(chunk) = pending.get(i) else {
                            return;
                        };
                        let stop = || {
                            self.cancel.flag.load(Ordering::SeqCst)
                                || failure.lock().map(|f| f.is_some()).unwrap_or(true)
                        };
                        assembler.wait_turn(chunk.index as usize, stop);
                        let processed = self
                            .process_chunk(chunk, &input, &mut buf, work, gate)
                            .and_then(|finished| {
                                // Counted before the push: a failing push fails the job anyway.
                                totals
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .add(&finished.row);
                                assembler.push(finished)
                            });
                        match processed {
                            Ok(()) => {
                                self.counters.chunks_done.fetch_add(1, Ordering::Relaxed);
                                self.counters
                                    .rows_done
                                    .fetch_add(chunk.records, Ordering::Relaxed);
                            }
                            Err(e) => {
                                let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                                f.get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if self.cancel.flag.load(Ordering::SeqCst) {
            return Err(JobError::retryable("cancelled"));
        }
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads and processes one chunk; its checkpoint row comes with its bytes.
    fn process_chunk(
        &self,
        chunk: &BatchChunkRow,
        input: &File,
        buf: &mut Vec<u8>,
        work: &Work,
        gate: &Gate,
    ) -> Result<Finished, JobError> {
        buf.resize((chunk.end - chunk.start) as usize, 0);
        input
            .read_exact_at(buf, chunk.start)
            .map_err(io_err("cannot read", &self.source))?;
        let input_hash = self.spec.checkpoints.then(|| hash(buf));
        let line_hashes = self
            .spec
            .checkpoints
            .then(|| super::resume::line_hashes(buf));
        let mut attempts = chunk.attempts;
        let outcome = loop {
            attempts += 1;
            match work.process(self, buf, chunk.first_line, gate) {
                Err(Failure::Transient(msg)) if attempts - chunk.attempts < self.retry.attempts => {
                    let delay = self
                        .retry
                        .delay_before(attempts - chunk.attempts + 1, fastrand::f64());
                    tracing::warn!(node = %self.node_id, chunk = chunk.index, error = %msg, "chunk failed; retrying in {delay:?}");
                    let cancelled = self.runtime.block_on(async {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => false,
                            _ = self.cancel.token.cancelled() => true,
                        }
                    });
                    if cancelled {
                        break Err(Failure::Cancelled);
                    }
                }
                other => break other,
            }
        };
        let (out, header) = match outcome {
            Ok(v) => v,
            Err(Failure::Cancelled) => return Err(JobError::retryable("cancelled")),
            Err(failure) => return Err(self.fail_chunk(chunk, attempts, failure)),
        };
        let row = BatchChunkRow {
            state: ChunkState::Committed,
            read: out.read,
            written: out.written,
            skipped: out.skipped.len() as u64,
            filtered: out.filtered,
            attempts,
            input_hash,
            line_hashes,
            output_header: header.clone(),
            error: None,
            ..chunk.clone()
        };
        let lines = out
            .skipped
            .iter()
            .map(|i| line_row(chunk.index, LineState::Skipped, i))
            .collect();
        Ok(Finished {
            bytes: out.bytes,
            header,
            row,
            lines,
        })
    }

    /// Records a failed chunk (with its failing line) and says why the job fails.
    fn fail_chunk(&self, chunk: &BatchChunkRow, attempts: u32, failure: Failure) -> JobError {
        let path = self.source.display();
        let (message, lines) = match &failure {
            Failure::Line(issue, skipped) => {
                let r = &issue.record;
                let mut lines: Vec<BatchLineRow> = skipped
                    .iter()
                    .map(|i| line_row(chunk.index, LineState::Skipped, i))
                    .collect();
                lines.push(line_row(chunk.index, LineState::Failed, issue));
                let hint = match issue.kind {
                    IssueKind::Parse
                        if !self.spec.skip.parse_errors || self.spec.skip.limit == 0 =>
                    {
                        " (bad rows can be skipped with `skip: {limit: N}`)"
                    }
                    IssueKind::Expression
                        if !self.spec.skip.expression_errors || self.spec.skip.limit == 0 =>
                    {
                        " (bad rows can be skipped with `skip: {limit: N}`)"
                    }
                    _ => " (skip limit reached)",
                };
                (
                    format!(
                        "line {} of {path}: {}{hint}; the line: {}",
                        r.line,
                        r.reason,
                        clip(&r.raw)
                    ),
                    lines,
                )
            }
            Failure::Transient(m) | Failure::Permanent(m) => (
                format!(
                    "chunk {} (lines {}..) of {path}: {m}{}",
                    chunk.index,
                    chunk.first_line,
                    if matches!(failure, Failure::Transient(_)) && attempts > 1 {
                        format!(" (after {attempts} attempts)")
                    } else {
                        String::new()
                    }
                ),
                Vec::new(),
            ),
            // Stopped (a cancel, the process draining): not the chunk's failure. It stays
            // pending, its attempts uncounted, for whoever continues the job.
            Failure::Cancelled => return JobError::permanent("cancelled".to_string()),
        };
        let row = BatchChunkRow {
            state: ChunkState::Failed,
            attempts,
            error: Some(message.clone()),
            ..chunk.clone()
        };
        if let Err(e) = self.engine.store.put_batch_chunk(&ChunkCommit {
            job: &self.key,
            chunk: &row,
            skipped: &lines,
            fence: self.fence,
        }) {
            tracing::warn!(node = %self.node_id, error = %e, "cannot record the failed chunk");
        }
        JobError::permanent(message)
    }

    /// The output is complete: store it as an object if asked, record the job finished, and
    /// remove the temporary files.
    fn finish(
        &self,
        chunks: &[BatchChunkRow],
        totals: Totals,
        bytes: u64,
    ) -> Result<Output, JobError> {
        let (output_ref, object) = match &self.target {
            Target::Path(p) => (Value::String(p.display().to_string()), None),
            Target::Object { file, name } => {
                let content_type = match self.spec.writer.format {
                    RecordFormat::Jsonl => "application/x-ndjson",
                    _ => "text/csv",
                };
                let meta = self
                    .runtime
                    .block_on(self.engine.objects.put_file(
                        file,
                        name.clone(),
                        Some(content_type.to_string()),
                    ))
                    .map_err(|e| JobError::retryable(format!("cannot store the output: {e}")))?;
                (meta.to_json(), Some(meta))
            }
        };
        let output = json!({
            "output": output_ref,
            "format": self.spec.writer.format.as_str(),
            "read": totals.read,
            "written": totals.written,
            "skipped": totals.skipped,
            "filtered": totals.filtered,
            "chunks": chunks.len(),
            "bytes": bytes,
        });
        self.engine
            .store
            .end_batch_job(
                &self.key,
                BatchJobState::Finished,
                Some(&output),
                None,
                now_millis(),
            )
            .map_err(store_err)?;
        // Temporary files go once the job is durably finished (the task's work directory too,
        // when nothing else is in it).
        let _ = std::fs::remove_dir_all(&self.work_dir);
        if let Some(task_dir) = self.work_dir.parent() {
            let _ = std::fs::remove_dir(task_dir);
        }
        Ok((output, object))
    }
}

pub(super) fn hash(bytes: &[u8]) -> String {
    format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

fn clip(raw: &str) -> String {
    if raw.chars().count() <= 200 {
        return raw.to_string();
    }
    let cut: String = raw.chars().take(200).collect();
    format!("{cut}…")
}

fn memchr_newline(buf: &[u8]) -> usize {
    buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len())
}
