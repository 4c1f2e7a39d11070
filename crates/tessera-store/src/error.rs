//! Store errors, split into the user's fault, worth retrying, and internal.

/// How a caller should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input or unknown id: report to the user.
    User,
    /// Transient (database busy, I/O hiccup): may succeed if tried again.
    Retryable,
    /// A bug or corrupt state.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    /// The row is not in a state that allows the change (e.g. deleting a running task).
    #[error("{0}")]
    Conflict(String),
    #[error("database busy: {0}")]
    Busy(String),
    /// The database or the object store has no room left: nothing was written.
    #[error("storage full: {0}")]
    Full(String),
    /// An error of the database itself, described by its backend (any backend: this type
    /// names none).
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is invalid ({what}): {detail}")]
    Corrupt { what: String, detail: String },
    #[error("object store: {0}")]
    Object(String),
    /// The task was claimed by another runner since this one claimed it (its lease expired):
    /// the write was refused, and the caller must stop working on the task.
    #[error("task `{0}` is now held by another runner (its lease expired); nothing was written")]
    Fenced(String),
    /// An operation of a group commit failed (the error is shared by description).
    #[error("{message}")]
    Batch {
        kind: ErrorKind,
        full: bool,
        message: String,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store is out of room (database or objects): the caller answers "storage
    /// full", and retrying helps only once space is freed.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Full(_) => true,
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            StoreError::Batch { full, .. } => *full,
            _ => false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } | StoreError::Conflict(_) => ErrorKind::User,
            StoreError::Fenced(_) => ErrorKind::Internal,
            StoreError::Busy(_)
            | StoreError::Full(_)
            | StoreError::Io { .. }
            | StoreError::Object(_) => ErrorKind::Retryable,
            StoreError::Database(_) | StoreError::Corrupt { .. } => ErrorKind::Internal,
            StoreError::Batch { kind, .. } => *kind,
        }
    }
}
