//! The `batch` executor: resolves the node's input and output (paths or objects),
//! then runs the job (`job.rs`) on blocking threads — chunks in parallel, each committed
//! durably, the output assembled in input order — and publishes its progress.

mod assemble;
mod job;
mod resume;
mod work;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tessera_core::model::{BatchSource, BatchSpec, BatchTarget};
use tessera_core::scheduler::{BatchProgress, JobError};

use crate::jobs::{CancelFlag, CancelOnDrop, JobContext};
use crate::template::{no_objects, render};

/// Live counters of one batch job, read by progress displays.
#[derive(Debug, Default)]
pub(crate) struct BatchCounters {
    pub chunks_total: AtomicU64,
    pub chunks_done: AtomicU64,
    pub rows_total: AtomicU64,
    pub rows_done: AtomicU64,
}

/// The batch jobs of one task, by node key.
#[derive(Debug, Default)]
pub(crate) struct BatchBoard {
    jobs: Mutex<BTreeMap<String, Arc<BatchCounters>>>,
}

impl BatchBoard {
    fn counters(&self, key: &str) -> Arc<BatchCounters> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.entry(key.to_string()).or_default().clone()
    }

    pub fn snapshot(&self) -> Vec<BatchProgress> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .map(|(key, c)| BatchProgress {
                key: key.clone(),
                chunks_done: c.chunks_done.load(Ordering::Relaxed),
                chunks_total: c.chunks_total.load(Ordering::Relaxed),
                rows_done: c.rows_done.load(Ordering::Relaxed),
                rows_total: c.rows_total.load(Ordering::Relaxed),
            })
            .collect()
    }
}

pub(crate) async fn run(ctx: &mut JobContext, spec: &BatchSpec) -> Result<Value, JobError> {
    let values = ctx.template_values();
    let scope = values.scope();
    let user = |e: String| JobError::permanent(e);
    let work_dir = ctx.work_dir("batch");
    let mut no_objects =
        no_objects("object references cannot be used in a path; use `object:` instead");
    // Relative paths resolve against the pipeline file's directory (local runs).
    let source: PathBuf = match &spec.reader.source {
        BatchSource::Path(p) => ctx.run.resolve(
            render(p, &scope, &mut no_objects).map_err(|e| user(format!("reader.path: {e}")))?,
        ),
        BatchSource::Object(path) => ctx.object_file("reader.object", path, &work_dir).await?.0,
    };
    let target = match &spec.writer.target {
        BatchTarget::Path(p) => job::Target::Path(ctx.run.resolve(
            render(p, &scope, &mut no_objects).map_err(|e| user(format!("writer.path: {e}")))?,
        )),
        BatchTarget::Object { name } => job::Target::Object {
            file: work_dir.join("output"),
            name: name.clone(),
        },
    };
    let command = match &spec.processor {
        tessera_core::model::BatchProcessor::Command { command, .. } => Some(
            crate::command::ChunkCommand::render(ctx, command, &values.input, &work_dir)
                .map_err(|e| user(format!("processor.command: {e}")))?,
        ),
        _ => None,
    };
    let command_text = command
        .as_ref()
        .map(|c| format!("{:?} {:?} {:?}", c.program, c.args, c.cwd));
    let cancel = Arc::new(CancelFlag::default());
    let _guard = CancelOnDrop(cancel.clone());
    let board = ctx.engine.batch_board(&ctx.task_id);
    let run = job::JobRun {
        engine: ctx.engine.clone(),
        runtime: tokio::runtime::Handle::current(),
        key: tessera_store::BatchKey {
            task_id: ctx.task_id.clone(),
            key: ctx.key.clone(),
            iteration: ctx.iteration,
        },
        node_id: ctx.node.id.clone(),
        fence: ctx.run.fence,
        spec: spec.clone(),
        retry: ctx.node.retry,
        source,
        target,
        work_dir,
        command,
        counters: board.counters(&ctx.key),
        cancel,
        processing: processing_hash(&ctx.node.definition, command_text.as_deref()),
    };
    let (result, logs) = tokio::task::spawn_blocking(move || run.run())
        .await
        .map_err(|e| JobError::permanent(format!("the batch job panicked: {e}")))?;
    for line in logs {
        ctx.log("engine", line);
    }
    let (output, object) = result?;
    if let Some(meta) = object {
        ctx.record_object(&meta).await?;
    }
    Ok(output)
}

/// What decides the bytes a chunk commits: the node's reader, processor, writer and chunk size
/// as written, and its command as rendered. Not `skip`, `parallelism` or limits: changing those
/// on resume keeps the committed chunks.
fn processing_hash(definition: &Value, command: Option<&str>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for field in ["reader", "processor", "writer", "chunk_size"] {
        h.update(field.as_bytes());
        h.update(
            definition
                .get(field)
                .map(|v| v.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    h.update(command.unwrap_or("").as_bytes());
    format!("xxh3:{:016x}", h.digest())
}
