//! The one mapping from errors to HTTP responses: `{"error": {"code", "message", "details"}}`
//! with the right status. Handlers return `Result<_, ApiError>`. A server-side failure (5xx)
//! also gets an `error_id`, logged with the details: clients quote the id, and the details
//! (paths, SQL errors) stay in the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_engine::EngineError;
use tessera_store::{ErrorKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, details: Value },
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    /// Not found, with what exists instead in `details`.
    #[error("{message}")]
    Missing { message: String, details: Value },
    #[error("{0}")]
    Conflict(String),
    #[error("{}", if *limit > 0 { format!("request body larger than {limit} bytes") } else { "request body too large".to_string() })]
    TooLarge { limit: usize },
    #[error("part `{part}` is larger than {limit} bytes; only binary fields may be larger")]
    PartTooLarge { part: String, limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    Invalid { message: String, details: Value },
    #[error("{0}")]
    Unavailable(String),
    /// A transient failure inside (database busy, an I/O hiccup): the details are logged,
    /// the client is told to try again.
    #[error("temporarily unavailable: {0}")]
    Retryable(String),
    #[error(
        "storage full: the database or the object store has no room left; try again once space is freed"
    )]
    StorageFull,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn not_found(what: &'static str, id: &str) -> ApiError {
        ApiError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound { .. } | ApiError::Missing { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge { .. } | ApiError::PartTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::Unavailable(_) | ApiError::Retryable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// What a client is told of an error (the JSON API and the web UI's pages alike): server-side
/// failures are logged here under an id, and only the id goes out.
pub(crate) struct PublicError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub error_id: Option<String>,
}

impl ApiError {
    pub(crate) fn public(&self) -> PublicError {
        let (status, code) = self.status_and_code();
        let error_id = status.is_server_error().then(new_error_id);
        if let Some(id) = &error_id {
            tracing::error!(error_id = %id, error = %self, "request failed");
        }
        let details = match self {
            ApiError::BadRequest { details, .. }
            | ApiError::Invalid { details, .. }
            | ApiError::Missing { details, .. } => details.clone(),
            _ => Value::Null,
        };
        // What went wrong inside is for the server's log, not for clients: they get its id.
        let message = match (self, &error_id) {
            (ApiError::Internal(_), Some(id)) => {
                format!("internal error {id}; the details are in the server's log")
            }
            (ApiError::Retryable(_), Some(id)) => {
                format!("temporarily unavailable (error {id}); try again")
            }
            (other, _) => other.to_string(),
        };
        PublicError {
            status,
            code,
            message,
            details,
            error_id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let PublicError {
            status,
            code,
            message,
            details,
            error_id,
        } = self.public();
        let mut error = json!({"code": code, "message": message, "details": details});
        if let Some(id) = error_id {
            error["error_id"] = Value::String(id);
        }
        let mut resp = (status, axum::Json(json!({ "error": error }))).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// A short random id for one server-side failure (`e-` and 12 hex digits): enough to find its
/// log line, nothing to learn from.
pub fn new_error_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("e-{}", &hex[..12])
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if e.is_full() {
            tracing::error!(error = %e, "storage full");
            return ApiError::StorageFull;
        }
        match (&e, e.kind()) {
            (StoreError::NotFound { what, id }, _) => ApiError::NotFound {
                what,
                id: id.clone(),
            },
            (StoreError::Conflict(message), _) => ApiError::Conflict(message.clone()),
            (_, ErrorKind::Retryable) => ApiError::Retryable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<tessera_engine::schedules::ScheduleCommandError> for ApiError {
    fn from(e: tessera_engine::schedules::ScheduleCommandError) -> ApiError {
        use tessera_engine::schedules::ScheduleCommandError as E;
        match e {
            E::NoSchedule(pipeline) => ApiError::NotFound {
                what: "schedule",
                id: pipeline,
            },
            E::NoPipeline(pipeline) => ApiError::NotFound {
                what: "pipeline",
                id: pipeline,
            },
            E::EmptyRange { .. } => ApiError::BadRequest {
                message: e.to_string(),
                details: serde_json::json!([{"field": "from", "message": e.to_string()}]),
            },
            E::TooManyTicks { .. } => ApiError::bad_request(e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::NotFound(id) => ApiError::NotFound { what: "task", id },
            EngineError::NotResumable { .. } | EngineError::Held { .. } => {
                ApiError::Conflict(e.to_string())
            }
            EngineError::UnknownNode { ref nodes, .. } => ApiError::Missing {
                details: serde_json::json!({ "nodes": nodes }),
                message: e.to_string(),
            },
            EngineError::NotALoop { ref loops, .. } => ApiError::Missing {
                details: serde_json::json!({ "loops": loops }),
                message: e.to_string(),
            },
            EngineError::Stopping => ApiError::Unavailable(e.to_string()),
            EngineError::Store(s) => s.into(),
            EngineError::Internal(m) => ApiError::Internal(m),
        }
    }
}
