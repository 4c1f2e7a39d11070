//! A listener for service callbacks alone, on a loopback port of its own: what `tessera run`
//! and `tessera resume` serve while their task runs, so `service` nodes work without `tessera
//! serve`. The route is the server's own (`POST /api/v1/callbacks/{token}`: the same token
//! checks, body limits and object storage), restricted to the tasks its engine drives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessera_engine::Engine;

use crate::state::{AppState, Inner};
use crate::{ConnectionLimits, Limits, ServerError, Tokens};

/// A bound loopback port, not yet serving: its URL is the engine's callback base, so it is
/// known before the engine is built.
#[derive(Debug)]
pub struct CallbackListener {
    listener: std::net::TcpListener,
    url: String,
}

impl CallbackListener {
    /// Binds 127.0.0.1 on a port the system picks. Loopback only: services on this machine
    /// can answer; a service elsewhere needs `tessera serve` and its public URL.
    pub fn bind() -> Result<CallbackListener, ServerError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ServerError::Bind { addr, source })?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        Ok(CallbackListener { listener, url })
    }

    /// The base URL services call back (`<url>/api/v1/callbacks/<token>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves callbacks for the tasks `engine` drives, on `runtime`, until the returned
    /// handle is stopped or dropped. Without tokens: the callback token is the credential, as
    /// on a server without tokens (which also listens on loopback only).
    pub fn serve(
        self,
        engine: Engine,
        limits: Limits,
        runtime: &tokio::runtime::Handle,
    ) -> Result<ServingCallbacks, ServerError> {
        let _entered = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let (events, _) = tokio::sync::broadcast::channel(1);
        let mut inner = Inner::new(engine, Tokens::default(), limits, false, events);
        inner.own_tasks_only = true;
        let app = crate::routes::callback_router(AppState(Arc::new(inner)));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            crate::listen::serve(
                listener,
                app,
                ConnectionLimits::default(),
                stop,
                Duration::from_secs(2),
            )
            .await
        });
        Ok(ServingCallbacks {
            url: self.url,
            _task: task,
            _shutdown: tx,
        })
    }
}

/// A callback listener at work; dropping it stops accepting (requests under way may end).
#[derive(Debug)]
pub struct ServingCallbacks {
    pub url: String,
    _task: tokio::task::JoinHandle<std::io::Result<()>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}
