//! Running one job on the I/O side: cache lookup, pool permits (named pools, processes, HTTP),
//! the node's timeout, the executor for its kind, logs, and the result event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tessera_core::Data;
use tessera_core::Plan;
use tessera_core::model::{Node, NodeKind};
use tessera_core::scheduler::{Event, Job, JobError};
use tessera_store::LogLine;
use tokio::sync::Semaphore;

use crate::{EngineConfig, Shared, now_millis};

/// A named pool, its size, and the other sizes pipelines asked for (each told once).
struct NamedPool {
    permits: Arc<Semaphore>,
    size: usize,
    refused: std::collections::HashSet<usize>,
}

/// Concurrency limits shared by every task of the engine.
pub(crate) struct Pools {
    processes: Arc<Semaphore>,
    /// Chunks of loops computed at once: one per core, whatever the number of loops.
    cpu: Arc<Semaphore>,
    cpu_size: usize,
    http: Arc<Semaphore>,
    /// Named pools by name, with their size.
    named: Mutex<HashMap<String, NamedPool>>,
    configured: std::collections::BTreeMap<String, usize>,
}

impl Pools {
    pub fn new(config: &EngineConfig) -> Pools {
        let cpu_size = std::thread::available_parallelism().map_or(2, |n| n.get());
        Pools {
            processes: Arc::new(Semaphore::new(config.max_processes.max(1))),
            cpu: Arc::new(Semaphore::new(cpu_size)),
            cpu_size,
            http: Arc::new(Semaphore::new(config.max_http.max(1))),
            named: Mutex::new(HashMap::new()),
            configured: config.pools.clone(),
        }
    }

    /// The pool of CPU work (chunks of loops), and its size.
    pub fn cpu(&self) -> Arc<Semaphore> {
        self.cpu.clone()
    }

    pub fn cpu_size(&self) -> usize {
        self.cpu_size
    }

    /// The semaphore of a named pool: engine configuration first, then the pipeline's
    /// `pools`, else a pool of one. A pool is shared by every task of the engine and keeps
    /// the size it was created with; a pipeline asking for another size is told so in the log.
    fn named(&self, name: &str, pipeline_size: Option<usize>) -> (Arc<Semaphore>, usize) {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        let pool = named.entry(name.to_string()).or_insert_with(|| {
            let size = self
                .configured
                .get(name)
                .copied()
                .or(pipeline_size)
                .unwrap_or(1)
                .max(1);
            NamedPool {
                permits: Arc::new(Semaphore::new(size)),
                size,
                refused: Default::default(),
            }
        });
        if let Some(asked) = pipeline_size
            && asked.max(1) != pool.size
            && pool.refused.insert(asked)
        {
            tracing::warn!(
                pool = name,
                size = pool.size,
                asked,
                "a pipeline declares another size for a pool in use: the pool keeps its size (set it in the engine configuration to choose)"
            );
        }
        (pool.permits.clone(), pool.size)
    }
}

/// A slot of a named pool in the store: the pool's limit holds across every process of the
/// store (`gpu: 1` is one job at a time in the whole cluster). Given back when dropped; a
/// killed process's slots free themselves when its lease runs out.
struct ClusterSlot {
    engine: Arc<Shared>,
    pool: String,
    slot: u32,
    holder: String,
}

impl ClusterSlot {
    /// Waits for a free slot of `pool` (of `size`), polling the store with a growing pause
    /// (this process's own jobs queue on the pool's semaphore first, so at most `size` of them
    /// poll).
    async fn take(ctx: &JobContext, pool: &str, size: usize) -> Result<ClusterSlot, JobError> {
        let holder = format!("{}/{}/{}", ctx.task_id, ctx.key, ctx.attempt);
        let mut pause = std::time::Duration::from_millis(20);
        let mut waited = false;
        loop {
            let engine = ctx.engine.clone();
            let (p, h) = (pool.to_string(), holder.clone());
            let size = size.min(u32::MAX as usize) as u32;
            let taken = tokio::task::spawn_blocking(move || {
                engine.store.take_pool_slot(&tessera_store::PoolTake {
                    pool: &p,
                    size,
                    holder: &h,
                    runner: &engine.runner,
                    now: now_millis(),
                    until: engine.lease_until(),
                })
            })
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?
            .map_err(|e| {
                JobError::retryable(format!("cannot take a slot of pool `{pool}`: {e}"))
            })?;
            if let Some(slot) = taken {
                ctx.engine
                    .pool_slots
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Ok(ClusterSlot {
                    engine: ctx.engine.clone(),
                    pool: pool.to_string(),
                    slot,
                    holder,
                });
            }
            if !waited {
                tracing::debug!(task = %ctx.task_id, node = %ctx.key, pool, "waiting for a slot of the pool held elsewhere");
                waited = true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
        }
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        let engine = self.engine.clone();
        let (pool, slot, holder) = (
            std::mem::take(&mut self.pool),
            self.slot,
            std::mem::take(&mut self.holder),
        );
        self.engine.runtime.spawn_blocking(move || {
            if let Err(e) = engine.store.release_pool_slot(&pool, slot, &holder) {
                // It frees itself when this process's lease runs out.
                tracing::warn!(pool, error = %e, "cannot give a pool slot back");
            }
            engine
                .pool_slots
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
}

/// Set when a job's future is dropped (cancel, timeout), for work on blocking threads: a batch
/// stops between records and kills its commands, a raster job stops at its next tile.
#[derive(Debug, Default)]
pub(crate) struct CancelFlag {
    pub flag: AtomicBool,
    pub token: tokio_util::sync::CancellationToken,
}

pub(crate) struct CancelOnDrop(pub Arc<CancelFlag>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.token.cancel();
    }
}

/// What an executor gets.
pub(crate) struct JobContext {
    pub engine: Arc<Shared>,
    pub task_id: String,
    /// The task's run context: its base directory for relative paths.
    pub run: Arc<crate::RunContext>,
    pub key: String,
    pub iteration: u32,
    pub attempt: u32,
    pub node: Arc<Node>,
    pub input: Data,
    /// The data paths the node's templates name, resolved at dispatch.
    pub scope: Vec<(String, Data)>,
    pub logs: Vec<LogLine>,
}

impl JobContext {
    /// Records a stored object as belonging to this task (deleted with it later).
    pub async fn record_object(&self, meta: &tessera_store::ObjectMeta) -> Result<(), JobError> {
        let store = self.engine.store.clone();
        let (meta, task) = (meta.clone(), self.task_id.clone());
        tokio::task::spawn_blocking(move || store.put_object(&meta, Some(&task)))
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?
            .map_err(|e| JobError::retryable(format!("cannot record object: {e}")))
    }

    /// A local file holding the object that data path `path` (of `field`) names in the node's
    /// input: the store's own file when it has one, else a copy fetched into `work_dir`.
    pub async fn object_file(
        &self,
        field: &str,
        path: &tessera_core::datapath::DataPath,
        work_dir: &std::path::Path,
    ) -> Result<(std::path::PathBuf, tessera_store::ObjectMeta), JobError> {
        let user = |m: String| JobError::permanent(format!("{field}: {m}"));
        let value = path
            .walk_data(&self.input)
            .ok_or_else(|| user(format!("`{path}` is not in the node's input")))?;
        let meta = tessera_store::ObjectMeta::from_json(&value.value())
            .ok_or_else(|| user(format!("`{path}` is not an object reference")))?;
        if let Some(p) = self.engine.objects.local_path(&meta.id) {
            return Ok((p, meta));
        }
        let dest = work_dir.join(format!("input-{}", meta.id));
        if !dest.exists() {
            let retry =
                |what: &str, e: &dyn std::fmt::Display| JobError::retryable(format!("{what}: {e}"));
            tokio::fs::create_dir_all(work_dir)
                .await
                .map_err(|e| retry(&format!("cannot create {}", work_dir.display()), &e))?;
            let part = dest.with_extension("part");
            self.engine
                .objects
                .get_to_file(&meta.id, &part)
                .await
                .map_err(|e| retry(&format!("cannot fetch object {}", meta.id), &e))?;
            tokio::fs::rename(&part, &dest)
                .await
                .map_err(|e| retry(&format!("cannot keep {}", dest.display()), &e))?;
        }
        Ok((dest, meta))
    }

    /// The node's `params` with the task context under `tessera` (`{{tessera.task_id}}`,
    /// `node`, `attempt`), as every executor's templates see them; commands add `scratch`.
    pub fn template_params(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut p = self.node.params.clone();
        let mut t = serde_json::Map::new();
        t.insert("task_id".into(), Value::String(self.task_id.clone()));
        t.insert("node".into(), Value::String(self.key.clone()));
        t.insert("attempt".into(), Value::from(self.attempt));
        p.insert("tessera".into(), Value::Object(t));
        p.insert("pipeline".into(), self.run.pipeline.clone());
        p
    }

    /// The job's input, [`Self::template_params`] and resolved paths, for its templates.
    pub fn template_values(&self) -> crate::template::TemplateValues {
        crate::template::TemplateValues {
            input: self.input.clone(),
            params: self.template_params(),
            paths: self.scope.to_vec(),
        }
    }

    /// This job's scratch directory under the engine's work dir.
    pub fn work_dir(&self, kind: &str) -> std::path::PathBuf {
        self.engine
            .config
            .work_dir
            .join(&self.task_id)
            .join(format!(
                "{kind}-{}-{}",
                safe_name(&self.key),
                self.iteration
            ))
    }

    pub fn log(&mut self, stream: &str, line: impl Into<String>) {
        self.logs.push(LogLine {
            task_id: self.task_id.clone(),
            key: self.key.clone(),
            attempt: self.attempt,
            stream: stream.to_string(),
            line: line.into(),
            at: now_millis(),
        });
    }
}

pub(crate) fn spawn(
    engine: Arc<Shared>,
    task: &Arc<crate::RunContext>,
    plan: &Plan,
    job: Job,
    events: crate::events::EventSender,
) -> tokio::task::JoinHandle<()> {
    if let Some(work) = job.chunked.clone() {
        return crate::loops::spawn(engine, task, job, work, events);
    }
    let named = job.node.pool.as_ref().map(|name| {
        let size = plan.pipeline.pools.get(name).copied();
        engine.pools.named(name, size)
    });
    let ctx = JobContext {
        engine: engine.clone(),
        task_id: task.task_id.clone(),
        run: task.clone(),
        key: job.key.clone(),
        iteration: job.iteration,
        attempt: job.id.attempt,
        node: job.node.clone(),
        input: job.input.clone(),
        scope: job.scope.clone(),
        logs: Vec::new(),
    };
    engine.runtime.spawn(async move {
        let id = job.id;
        let (result, mut ctx) = run(ctx, job.cache_key, named).await;
        if let Err(e) = &result {
            ctx.log("engine", format!("attempt {} failed: {}", ctx.attempt, e.message));
        }
        let logs = std::mem::take(&mut ctx.logs);
        if !logs.is_empty() {
            let store = ctx.engine.store.clone();
            let written = tokio::task::spawn_blocking(move || store.append_logs(&logs)).await;
            if let Ok(Err(e)) = written {
                tracing::warn!(task = %ctx.task_id, node = %ctx.key, error = %e, "could not store logs");
            }
        }
        let event = match result {
            Ok((output, cached)) => Event::JobSucceeded {
                job: id,
                output,
                cached,
            },
            Err(error) => Event::JobFailed { job: id, error },
        };
        events.send(event);
    })
}

/// Every object a job's input names must be one of its task's (uploaded with it, made by its
/// nodes, returned by its services, or reused from the cache): a reference copied from
/// elsewhere — a client's data echoed by a command, a service's answer — never gives a
/// command the bytes of another task's object.
async fn check_objects(ctx: &JobContext) -> Result<(), JobError> {
    if !ctx.input.may_contain_key("$object") {
        return Ok(());
    }
    let mut ids = Vec::new();
    object_ids(&ctx.input.value(), &mut ids);
    if ids.is_empty() {
        return Ok(());
    }
    let (store, task) = (ctx.engine.store.clone(), ctx.task_id.clone());
    let foreign = tokio::task::spawn_blocking(move || {
        for id in ids {
            if !store.object_in_task(&id, &task)? {
                return Ok(Some(id));
            }
        }
        Ok::<_, tessera_store::StoreError>(None)
    })
    .await
    .map_err(|e| JobError::retryable(e.to_string()))?
    .map_err(|e| JobError::retryable(format!("cannot check the input's objects: {e}")))?;
    match foreign {
        None => Ok(()),
        Some(id) => Err(JobError::permanent(format!(
            "the input names object `{id}`, which is not one of this task's objects \
             (objects come from the task's uploads, its nodes and its services)"
        ))),
    }
}

pub(crate) fn object_ids(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => match m.get("$object") {
            Some(serde_json::Value::String(id)) => out.push(id.clone()),
            _ => m.values().for_each(|x| object_ids(x, out)),
        },
        serde_json::Value::Array(items) => items.iter().for_each(|x| object_ids(x, out)),
        _ => {}
    }
}

async fn run(
    mut ctx: JobContext,
    cache_key: Option<String>,
    named: Option<(Arc<Semaphore>, usize)>,
) -> (Result<(Data, bool), JobError>, JobContext) {
    if let Err(e) = check_objects(&ctx).await {
        return (Err(e), ctx);
    }
    if let Some(key) = cache_key {
        let store = ctx.engine.store.clone();
        let task = ctx.task_id.clone();
        match tokio::task::spawn_blocking(move || store.cache_hit(&key, &task)).await {
            Ok(Ok(Some(v))) => {
                ctx.log("engine", "output taken from the cache");
                return (Ok((v, true)), ctx);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cache lookup failed; running the node"),
            Err(e) => tracing::warn!(error = %e, "cache lookup panicked; running the node"),
        }
    }
    let _named_permit = match &named {
        Some((s, _)) => Some(
            s.clone()
                .acquire_owned()
                .await
                .expect("pools are never closed"),
        ),
        None => None,
    };
    // Then the pool's slot across the cluster (dropped with the permit, after the work).
    let _cluster_slot = match (&named, &ctx.node.pool) {
        (Some((_, size)), Some(pool)) => match ClusterSlot::take(&ctx, pool, *size).await {
            Ok(slot) => Some(slot),
            Err(e) => return (Err(e), ctx),
        },
        _ => None,
    };
    let kind_pool = match ctx.node.kind {
        NodeKind::Command(_) => Some(ctx.engine.pools.processes.clone()),
        NodeKind::Http(_) => Some(ctx.engine.pools.http.clone()),
        _ => None,
    };
    let mut kind_permit = match kind_pool {
        Some(s) => Some(s.acquire_owned().await.expect("pools are never closed")),
        None => None,
    };
    let timeout = ctx.node.timeout;
    let node = ctx.node.clone();
    // Each executor's future is boxed: a job's future is then the size of the executor it
    // runs, not of the largest one (100,000 jobs waiting on callbacks hold only the service's).
    let work = async {
        match &node.kind {
            NodeKind::Command(spec) => {
                Box::pin(crate::command::run(&mut ctx, spec, kind_permit.take())).await
            }
            NodeKind::Http(spec) => Box::pin(crate::http::run(&mut ctx, spec))
                .await
                .map(Data::from),
            NodeKind::Service(spec) => Box::pin(crate::service::run(&mut ctx, spec))
                .await
                .map(Data::from),
            NodeKind::Batch(spec) => Box::pin(crate::batch::run(&mut ctx, spec))
                .await
                .map(Data::from),
            NodeKind::Raster(spec) => Box::pin(crate::raster::run(&mut ctx, spec))
                .await
                .map(Data::from),
            _ => Ok(ctx.input.clone()),
        }
    };
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, work).await {
            Ok(r) => r,
            Err(_) => Err(JobError::retryable(format!("timed out after {}", human(t)))),
        },
        None => work.await,
    };
    (result.map(|v| (v, false)), ctx)
}

fn human(d: std::time::Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A node key as a file name (`loop[3]/x` → `loop_3__x`).
fn safe_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
