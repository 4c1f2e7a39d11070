//! The HTTP routes of SPEC §7, assembled with their body limits.

mod callbacks;
mod objects;
pub(crate) mod pipelines;
mod submit;
mod system;
pub(crate) mod tasks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let max_body = state.limits.max_body;
    let max_upload = state.limits.max_upload;
    let json_routes = Router::new()
        .route(
            "/api/v1/pipelines",
            post(pipelines::create).get(pipelines::list),
        )
        .route(
            "/api/v1/pipelines/{name}",
            get(pipelines::read).delete(pipelines::delete),
        )
        .route("/api/v1/tasks", get(tasks::list))
        .route("/api/v1/tasks/{id}", get(tasks::read).delete(tasks::delete))
        .route("/api/v1/tasks/{id}/result", get(tasks::result))
        .route("/api/v1/tasks/{id}/nodes/{node}/log", get(tasks::log))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/{id}/resume", post(tasks::resume))
        .route("/api/v1/objects/{id}", get(objects::read))
        .route("/api/v1/registry/announce", post(crate::registry::announce))
        .route("/api/v1/stats", get(system::stats))
        .route("/api/v1/events", get(system::events))
        .route("/health", get(system::health))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .layer(DefaultBodyLimit::max(max_body));
    // Uploads are streamed to the object store, so their limit can be much larger.
    let upload_routes = Router::new()
        .route("/api/v1/services/{route}", post(submit::submit))
        .route("/api/v1/callbacks/{token}", post(callbacks::callback))
        .layer(DefaultBodyLimit::max(max_upload));
    Router::new()
        .merge(json_routes)
        .merge(upload_routes)
        .merge(crate::docs::router())
        .fallback(|| async { ApiError::not_found("route", "this path") })
        .with_state(state)
}

/// Parses a JSON request body with our error shape (line and column on failure).
pub(crate) fn parse_json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
        message: format!(
            "malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
        details: Value::Null,
    })
}

/// Adds `"url": "/api/v1/objects/<id>"` to every object reference in a value.
pub(crate) fn link_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(id) = m.get("$object").and_then(Value::as_str) {
                let url = format!("/api/v1/objects/{id}");
                m.insert("url".into(), Value::String(url));
            } else {
                for x in m.values_mut() {
                    link_objects(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(link_objects),
        _ => {}
    }
}
