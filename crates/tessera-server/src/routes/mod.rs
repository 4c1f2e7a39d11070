//! The HTTP routes, assembled with their body limits.

mod body;
mod callbacks;
mod objects;
pub(crate) mod pipelines;
pub(crate) mod schedules;
pub(crate) mod submit;
mod system;
pub(crate) mod tasks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
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
        .route("/api/v1/tasks/{id}/state", get(tasks::state))
        .route("/api/v1/tasks/{id}/nodes/{node}/log", get(tasks::log))
        .route("/api/v1/tasks/{id}/nodes/{loop}/items", get(tasks::items))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/{id}/resume", post(tasks::resume))
        .route("/api/v1/objects/{id}", get(objects::read))
        .route("/api/v1/registry/announce", post(crate::registry::announce))
        .route("/api/v1/registry/services", get(crate::registry::list))
        .route("/api/v1/stats", get(system::stats))
        .route("/api/v1/workers", get(system::workers))
        .route("/api/v1/schedules", get(schedules::list))
        .route("/api/v1/schedules/{name}", get(schedules::read))
        .route("/api/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{name}/resume", post(schedules::resume))
        .route(
            "/api/v1/schedules/{name}/backfill",
            post(schedules::backfill),
        )
        .route("/api/v1/events", get(system::events))
        .route("/health", get(system::health))
        .layer(DefaultBodyLimit::max(max_body));
    // What the server runs and how: a token is needed for these when tokens are on.
    let info_routes = Router::new()
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .merge(crate::docs::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            info_needs_token,
        ));
    // Uploads are streamed to the object store, so their limit can be much larger.
    let upload_routes = Router::new()
        .route("/api/v1/services/{route}", post(submit::submit))
        .route("/api/v1/callbacks/{token}", post(callbacks::callback))
        .layer(DefaultBodyLimit::max(max_upload));
    // Errors of the API are JSON; the web UI's pages have their own (HTML).
    let api = Router::new()
        .merge(json_routes)
        .merge(upload_routes)
        .merge(info_routes)
        .layer(axum::middleware::map_response(json_errors));
    Router::new()
        .merge(api)
        .merge(crate::ui::router(state.clone()))
        .fallback(|| async { ApiError::not_found("route", "this path") })
        .with_state(state)
}

/// The callback route alone, with the server's limits: a `tessera run`'s callback listener.
pub fn callback_router(state: AppState) -> Router {
    let max_upload = state.limits.max_upload;
    Router::new()
        .route("/api/v1/callbacks/{token}", post(callbacks::callback))
        .layer(DefaultBodyLimit::max(max_upload))
        .fallback(|| async { ApiError::not_found("route", "this path") })
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Unless `--public-info`, `/metrics` needs an admin's token and the API documents any
/// token, when tokens are on.
async fn info_needs_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    if state.public_info || !state.tokens.enabled() {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let caller = match crate::auth::Caller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if parts.uri.path() == "/metrics"
        && let Err(e) = caller.require(&[crate::auth::Role::Admin])
    {
        return e.into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// Errors produced by axum itself (bad path encoding, body limit, wrong method) come as plain
/// text; they get the same JSON shape as ours, so every error a client sees is JSON.
async fn json_errors(resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: 0 },
        StatusCode::NOT_FOUND => ApiError::not_found("route", "this path"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        StatusCode::METHOD_NOT_ALLOWED => {
            return (
                status,
                axum::Json(serde_json::json!({"error": {"code": "method_not_allowed", "message": "this method is not allowed on this path", "details": null}})),
            )
                .into_response();
        }
        s if s.is_server_error() => ApiError::Internal(text),
        // A path parameter that is not valid UTF-8 names nothing that exists.
        _ if text.starts_with("Invalid URL") => ApiError::not_found("resource", "this path"),
        _ => ApiError::bad_request(if text.is_empty() {
            status.to_string()
        } else {
            text
        }),
    };
    err.into_response()
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

/// Streams one multipart field into the object store and records the object (attached to
/// `task` when known). Nothing is held whole in memory.
pub(crate) async fn store_field(
    state: &AppState,
    field: axum::extract::multipart::Field<'_>,
    task: Option<String>,
) -> Result<tessera_store::ObjectMeta, ApiError> {
    let file_name = field.file_name().map(str::to_string);
    let content_type = field.content_type().map(str::to_string);
    let stream = Box::pin(futures::stream::unfold(field, |mut f| async move {
        f.chunk().await.transpose().map(|r| (r, f))
    }));
    let limit = state.limits.max_upload;
    let meta = match state
        .objects()
        .put_stream(stream, file_name, content_type, limit as u64)
        .await?
    {
        Ok(meta) => meta,
        Err(tessera_store::PutStreamError::TooLarge(_)) => {
            return Err(ApiError::TooLarge { limit });
        }
        Err(tessera_store::PutStreamError::Source(e)) => return Err(multipart_error(e)),
    };
    let m = meta.clone();
    if let Err(e) = state
        .blocking(move |s| s.put_object(&m, task.as_deref()))
        .await
    {
        // No bytes without their row (nor a row without bytes).
        let _ = state.objects().delete(&meta.id).await;
        return Err(e);
    }
    Ok(meta)
}

/// Reads a multipart text field (`data`, form fields) whole, refusing more than `limit` bytes
/// (the JSON body limit: only binary fields may be large, and they are streamed).
pub(crate) async fn read_text_field(
    mut field: axum::extract::multipart::Field<'_>,
    limit: usize,
) -> Result<String, ApiError> {
    let name = field.name().unwrap_or("").to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PartTooLarge { part: name, limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("part `{name}` is not UTF-8 text")))
}

pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { limit: 0 }
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Every `$object`/`$file` reference in `v`: its field path, key, and the id (a string) of an
/// `$object`.
pub(crate) fn collect_references(
    v: &Value,
    path: &mut String,
    out: &mut Vec<(String, &'static str, Option<String>)>,
) {
    match v {
        Value::Object(m) => {
            for key in ["$object", "$file"] {
                if let Some(x) = m.get(key) {
                    out.push((path.clone(), key, x.as_str().map(str::to_string)));
                    return;
                }
            }
            for (k, x) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                collect_references(x, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&i.to_string());
                collect_references(x, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Deletes objects stored for a request that was then refused: bytes and rows.
pub(crate) async fn discard_objects(state: &AppState, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let list = ids.to_vec();
    if let Err(e) = state.blocking(move |s| s.delete_objects(&list)).await {
        tracing::warn!(error = %e, "could not forget the objects of a refused request");
    }
    for id in ids {
        if let Err(e) = state.objects().delete(id).await {
            tracing::warn!(object = %id, error = %e, "could not delete object bytes");
        }
    }
}

pub(crate) fn reference_error(what: &str, field: String, key: &str) -> ApiError {
    let field = if field.is_empty() {
        "(top level)".to_string()
    } else {
        field
    };
    let message = match key {
        "$object" => format!(
            "{what}, field `{field}`: object references (`$object`) cannot be sent as data; upload files as multipart parts"
        ),
        _ => format!(
            "{what}, field `{field}`: file references (`$file`) cannot be sent as data; upload files as multipart parts"
        ),
    };
    ApiError::BadRequest {
        message: message.clone(),
        details: serde_json::json!([{"field": field, "message": message}]),
    }
}

/// [`link_objects`] on a task's value (a big one is read as a tree only if it may hold an
/// object reference).
pub(crate) fn link_objects_in(d: tessera_core::Data) -> tessera_core::Data {
    if !d.may_contain_key("$object") {
        return d;
    }
    let mut v = d.into_value();
    link_objects(&mut v);
    tessera_core::Data::from_value(v)
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
