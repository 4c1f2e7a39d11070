//! Engine errors, split into the user's fault, retryable and internal.

use tessera_store::{ErrorKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("task `{0}` not found")]
    NotFound(String),
    #[error("task `{id}` cannot be resumed: {reason}")]
    NotResumable { id: String, reason: String },
    /// `tasks logs ID NODE` for a node the task does not have; `nodes` lists those it has.
    #[error("task `{task}` has no node `{node}`; its nodes: {}", nodes.join(", "))]
    UnknownNode {
        task: String,
        node: String,
        nodes: Vec<String>,
    },
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
            | EngineError::UnknownNode { .. } => ErrorKind::User,
            EngineError::Store(e) => e.kind(),
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }
}
