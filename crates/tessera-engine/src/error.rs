//! Engine errors, split into the user's fault, retryable and internal.

use tessera_store::{ErrorKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("task `{0}` not found")]
    NotFound(String),
    #[error("task `{id}` cannot be resumed: {reason}")]
    NotResumable { id: String, reason: String },
    /// Another runner's lease on the task runs until `until` (ms): it may still be working
    /// on it; once the lease runs out (a holder that was killed renews nothing), any runner
    /// may claim it.
    #[error(
        "task `{id}` is held by {runner} until {}: resume it once that lease has run out (a killed process lets go of its tasks when their lease expires)",
        tessera_core::time::rfc3339(*until)
    )]
    Held {
        id: String,
        runner: String,
        until: u64,
    },
    /// `tasks logs ID NODE` for a node the task does not have; `nodes` lists those it has.
    #[error("task `{task}` has no node `{node}`; its nodes: {}", nodes.join(", "))]
    UnknownNode {
        task: String,
        node: String,
        nodes: Vec<String>,
    },
    /// `tasks items ID LOOP` for a node that is not a loop (or that the task does not have);
    /// `loops` lists the loops it has.
    #[error("task `{task}` has no loop `{node}`; its loops: {}", if loops.is_empty() { "none".to_string() } else { loops.join(", ") })]
    NotALoop {
        task: String,
        node: String,
        loops: Vec<String>,
    },
    /// The engine is stopping (draining): it starts nothing new; another instance, or this
    /// one once restarted, will.
    #[error("this engine is stopping and starts no new work; try again on another instance")]
    Stopping,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotFound(_)
            | EngineError::NotResumable { .. }
            | EngineError::Held { .. }
            | EngineError::UnknownNode { .. }
            | EngineError::NotALoop { .. } => ErrorKind::User,
            EngineError::Stopping => ErrorKind::Retryable,
            EngineError::Store(e) => e.kind(),
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }
}
