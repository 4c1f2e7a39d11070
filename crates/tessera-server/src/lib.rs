//! Tessera's engine server: pipelines as HTTP endpoints, asynchronous tasks,
//! services answering by callback, objects, live events, OpenAPI and docs. HTTP serving lives
//! only here; the engine runs the tasks in this process.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "512"]

pub mod auth;
pub mod callback_listener;
pub mod docs;
pub mod error;
mod events_relay;
pub mod listen;
pub mod openapi;
pub mod registry;
mod routes;
pub mod state;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessera_engine::{Engine, EngineConfig};
use tessera_store::{Objects, Store};

pub use auth::Tokens;
pub use callback_listener::{CallbackListener, ServingCallbacks};
pub use listen::ConnectionLimits;
pub use state::Limits;
use state::{AppState, Inner};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0} without tokens: anyone on the network could run commands. \
         Configure tokens (--tokens-file FILE, --token role:name:secret or TESSERA_TOKENS), \
         listen on 127.0.0.1, or pass --insecure"
    )]
    InsecureAddress(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] tessera_engine::EngineError),
    #[error("server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// URL services use to reach this server (callbacks); default `http://<bound address>`.
    pub public_url: Option<String>,
    pub tokens: Tokens,
    /// Allow a non-loopback address without tokens.
    pub insecure: bool,
    /// Serve `/metrics`, `/openapi.json` and `/docs` without a token when tokens are on.
    pub public_info: bool,
    pub limits: Limits,
    /// Timeouts and the cap on connections.
    pub connections: ConnectionLimits,
    pub engine: EngineConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 << 20,
            max_upload: 1 << 30,
            max_nodes: 10_000,
            announce_period: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A server that is listening.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub url: String,
    pub engine: Engine,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("url", &self.url)
            .finish()
    }
}

impl RunningServer {
    /// Serves until the process is stopped.
    pub async fn wait(mut self) -> Result<(), ServerError> {
        let _keep = self.shutdown.take();
        Ok(self
            .task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??)
    }

    /// Stops accepting requests and returns when in-flight ones are done.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Binds, starts the engine (continuing unfinished tasks) and serves in the background.
pub async fn start(
    config: ServerConfig,
    store: Arc<dyn Store>,
    objects: Objects,
) -> Result<RunningServer, ServerError> {
    if !config.tokens.enabled() && !config.addr.ip().is_loopback() && !config.insecure {
        return Err(ServerError::InsecureAddress(config.addr));
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr()?;
    let url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let mut engine_config = config.engine.clone();
    engine_config.callback_base = Some(url.clone());
    let publisher = events.clone();
    engine_config.observer = Some(Arc::new(
        move |task: &tessera_engine::ObservedTask<'_>,
              records: &[&tessera_core::scheduler::Record]| {
            state::publish(&publisher, task, records)
        },
    ));
    let engine = Engine::new(
        store,
        objects,
        tokio::runtime::Handle::current(),
        engine_config,
    )?;
    let state = AppState(Arc::new(Inner::new(
        engine.clone(),
        config.tokens.clone(),
        config.limits.clone(),
        config.public_info,
        events,
    )));
    if state.engine.runs_tasks() {
        claim_unheld(&state).await;
        tokio::spawn(claim_loop(state.clone()));
    }
    tokio::spawn(registry::sweep_loop(state.clone()));
    tokio::spawn(routes::schedules::schedule_loop(state.clone()));
    tokio::spawn(events_relay::relay_loop(state.clone()));
    tokio::spawn(routes::tasks::retention_loop(state.clone()));
    tokio::spawn(routes::tasks::forget_ended_loop(state.clone()));
    let app = routes::router(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let connections = config.connections.clone();
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = rx.await;
        };
        listen::serve(listener, app, connections, stop, Duration::from_secs(10)).await
    });
    tracing::info!(%url, "tessera server listening");
    Ok(RunningServer {
        addr,
        url,
        engine,
        task,
        shutdown: Some(tx),
    })
}

/// Every third of the lease, tasks that have not ended and that nobody holds (their holder
/// was killed, or lost the store, and its lease ran out) are claimed and continue here:
/// after a restart, the tasks of the previous process continue once its leases expire;
/// service nodes keep waiting for their callbacks.
async fn claim_loop(state: AppState) {
    let every = state.engine.claim_every();
    loop {
        state.engine.next_round(every).await;
        if state.engine.is_draining() {
            return;
        }
        claim_unheld(&state).await;
    }
}

async fn claim_unheld(state: &AppState) {
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.claim_available()).await {
        Ok(handles) => {
            for handle in handles {
                routes::tasks::track(state, handle);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot claim tasks"),
    }
}
