//! Shared server state: the engine, auth tokens, live event fan-out, running task handles and
//! the services registry's view of what is unavailable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tessera_core::scheduler::Record;
use tessera_engine::{Engine, TaskHandle};
use tessera_store::{Objects, Store};
use tokio::sync::broadcast;

use crate::auth::Tokens;

/// Server settings that handlers need.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON/YAML request body.
    pub max_body: usize,
    /// Largest upload (multipart) request.
    pub max_upload: usize,
    /// Most nodes (loop templates included) a stored pipeline may have.
    pub max_nodes: usize,
    /// Services announce this often; silent for 3 periods = removed.
    pub announce_period: Duration,
    /// Ended tasks (and their objects) are deleted after this.
    pub retention: Duration,
}

/// One live event, as sent on `GET /api/v1/events`.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub task_id: String,
    /// The task's owner: a user sees the events of its own tasks only.
    pub owner: Option<String>,
    pub data: Value,
}

pub struct Inner {
    pub engine: Engine,
    pub tokens: Tokens,
    pub limits: Limits,
    /// Serve `/metrics`, `/openapi.json` and `/docs` without a token.
    pub public_info: bool,
    pub events: broadcast::Sender<LiveEvent>,
    /// Handles of tasks started here and not ended, to cancel them directly.
    pub running: Mutex<HashMap<String, TaskHandle>>,
    /// Services that stopped announcing: pipelines calling them are unavailable.
    pub expired_services: Mutex<Expired>,
    /// Validated pipelines by name, so a submission does not re-read and re-check its
    /// pipeline; an entry is used only while its version is the stored one.
    pub pipelines: Mutex<HashMap<String, Arc<CachedPipeline>>>,
    /// Counts writes of pipelines in this process (see [`CachedPipeline::generation`]).
    pub pipeline_generation: std::sync::atomic::AtomicU64,
    /// Callbacks are taken only for tasks this process drives (a `tessera run`'s listener:
    /// another run on the same data dir may have been given this port before).
    pub own_tasks_only: bool,
    /// The latest live snapshot of each task a web page follows, and when it was read:
    /// the pages following one task share one read of the store (see `ui/live.rs`).
    pub snapshots: Mutex<HashMap<String, (std::time::Instant, Arc<serde_json::Value>)>>,
}

impl Inner {
    /// The state of a server (or a callback listener) on `engine`.
    pub fn new(
        engine: Engine,
        tokens: Tokens,
        limits: Limits,
        public_info: bool,
        events: broadcast::Sender<LiveEvent>,
    ) -> Inner {
        Inner {
            engine,
            tokens,
            limits,
            public_info,
            events,
            running: Mutex::new(HashMap::new()),
            expired_services: Mutex::new(Expired::default()),
            pipelines: Mutex::new(HashMap::new()),
            pipeline_generation: std::sync::atomic::AtomicU64::new(0),
            own_tasks_only: false,
            snapshots: Mutex::new(HashMap::new()),
        }
    }
}

/// Services removed for silence, by base URL (nodes with `url`) and by name (nodes with
/// `service: name/endpoint`).
#[derive(Debug, Default)]
pub struct Expired {
    urls: HashSet<String>,
    names: HashSet<String>,
}

impl Expired {
    pub fn insert(&mut self, url: &str, name: &str) {
        self.urls.insert(url.to_string());
        self.names.insert(name.to_string());
    }

    /// The service announced again.
    pub fn forget(&mut self, url: &str, name: &str) {
        self.urls.remove(url);
        self.names.remove(name);
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.names.is_empty()
    }

    pub fn has_url_prefix_of(&self, url: &str) -> bool {
        self.urls.iter().any(|base| url.starts_with(base.as_str()))
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

/// A stored pipeline, parsed and validated.
pub struct CachedPipeline {
    pub row: tessera_store::PipelineRow,
    pub pipeline: tessera_core::Pipeline,
    /// Its plan, shared by every task started from this copy (one per pipeline version, not
    /// one per task).
    pub plan: std::sync::Arc<tessera_core::Plan>,
    pub definition: Value,
    /// `AppState::pipeline_generation` when the row was read: the copy is used only while no
    /// pipeline was written in this process since.
    pub generation: u64,
    /// When its version was last confirmed in the store (writes of other processes).
    pub checked: Mutex<std::time::Instant>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Forgets cached pipelines (after any change to the stored ones). A copy read before and
    /// cached after this (a race with the write) carries an older generation: never served.
    pub fn pipelines_changed(&self) {
        self.pipeline_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    pub fn objects(&self) -> &Objects {
        self.engine.objects()
    }

    /// Runs store work off the async threads.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, tessera_store::StoreError> + Send + 'static,
    ) -> Result<T, crate::error::ApiError> {
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?
            .map_err(Into::into)
    }
}

/// Turns committed records into live events (called on driver threads: must be quick).
pub fn publish(
    events: &broadcast::Sender<LiveEvent>,
    task: &tessera_engine::ObservedTask<'_>,
    records: &[&Record],
) {
    let task_id = task.id;
    for r in records {
        match r {
            // Failures at info; the rest at debug (thousands of tasks a second would flood).
            Record::Task { state, error, .. } if error.is_some() => {
                tracing::info!(
                    task_id,
                    state = state.as_str(),
                    error = error.as_deref(),
                    "task state"
                )
            }
            Record::Task { state, .. } => {
                tracing::debug!(task_id, state = state.as_str(), "task state")
            }
            Record::Node(n) => tracing::debug!(
                task_id,
                node = %n.key,
                state = n.state.as_str(),
                attempt = n.attempt,
                error = n.error.as_deref(),
                "node state"
            ),
        }
    }
    if events.receiver_count() == 0 {
        return;
    }
    for r in records {
        let _ = events.send(LiveEvent {
            task_id: task_id.to_string(),
            owner: task.owner.map(str::to_string),
            data: tessera_engine::record_event(task_id, r),
        });
    }
}

/// Whether this instance leads `role`, a chore done once for all the instances of a store
/// (asked off the async threads).
pub(crate) async fn leads(
    state: &AppState,
    role: &'static str,
    every: std::time::Duration,
) -> bool {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.lead(role, every))
        .await
        .unwrap_or(false)
}
