//! `POST /api/v1/services/{route}`: start a task of a stored pipeline. The body follows the
//! entry's `api.body`: a JSON object checked field by field against the example, or multipart
//! whose binary fields are streamed to the object store (never held whole in memory).

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::Data;
use tessera_engine::Submission;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::routes::pipelines::{load_blocking, unavailable_services};
use crate::state::{AppState, CachedPipeline};

/// How long a cached pipeline is used before its version is confirmed in the store again: a
/// write made by another server process is seen within this (writes in this process at once).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The stored pipeline `route`, parsed and validated: the cached copy while no pipeline was
/// written in this process since it was read (and its version was confirmed in the store within
/// [`RECHECK`]), else read and checked again (off the async threads). A copy cached by a
/// request that raced with a replace or a delete is never served: it carries the generation
/// from before the write.
async fn current_pipeline(
    state: &AppState,
    route: &str,
) -> Result<std::sync::Arc<CachedPipeline>, ApiError> {
    use std::sync::atomic::Ordering;
    let generation = state.pipeline_generation.load(Ordering::SeqCst);
    let cached = state
        .pipelines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(route)
        .filter(|c| c.generation == generation)
        .cloned();
    if let Some(c) = cached {
        let fresh = c
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            < RECHECK;
        if fresh {
            return Ok(c);
        }
        let r = route.to_string();
        let version = state.blocking(move |s| s.pipeline_version(&r)).await?;
        if version.as_deref() == Some(c.row.version.as_str()) {
            *c.checked.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
            return Ok(c);
        }
    }
    let r = route.to_string();
    let row = state
        .blocking(move |s| s.pipeline(&r))
        .await?
        .ok_or_else(|| ApiError::not_found("pipeline", route))?;
    let (pipeline, definition) = load_blocking(state, row.definition.to_string()).await?;
    let plan = std::sync::Arc::new(tessera_core::Plan::new(std::sync::Arc::new(
        pipeline.clone(),
    )));
    let c = std::sync::Arc::new(CachedPipeline {
        row,
        plan,
        pipeline,
        definition,
        generation,
        checked: std::sync::Mutex::new(std::time::Instant::now()),
    });
    state
        .pipelines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(route.to_string(), c.clone());
    Ok(c)
}

/// What the entry expects.
enum Expected {
    Json(Option<Value>),
    Binary(Vec<String>),
}

pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path(route): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = start(&state, &caller, &route, request).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/tasks/{id}"))],
        Json(json!({"task_id": id})),
    )
        .into_response())
}

/// Starts a task of pipeline `route` from a request whose body follows the entry's
/// `api.body` (JSON, or multipart with its binary fields); returns the task's id. The API and
/// the web UI's form start tasks through this one path, with the same checks and messages.
pub(crate) async fn start(
    state: &AppState,
    caller: &Caller,
    route: &str,
    request: Request,
) -> Result<String, ApiError> {
    let (state, route) = (state.clone(), route.to_string());
    caller.require(&[Role::User, Role::Admin])?;
    let cached = current_pipeline(&state, &route).await?;
    let row = &cached.row;
    let unavailable = unavailable_services(&state, &row.definition);
    if !unavailable.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "pipeline `{route}` calls services that stopped announcing: {}",
            unavailable.join(", ")
        )));
    }
    let (pipeline, definition) = (&cached.pipeline, cached.definition.clone());
    // What the entry's `api.body` asks for, read as `tessera run` reads it.
    let fields = tessera_core::input::binary_fields(pipeline);
    let expected = if fields.is_empty() {
        Expected::Json(tessera_core::input::example_of(pipeline).cloned())
    } else {
        Expected::Binary(fields)
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut uploads: Vec<String> = Vec::new();
    let input = match expected {
        Expected::Json(example) => {
            if content_type.starts_with("multipart/") {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "pipeline `{route}` takes a JSON body, not multipart"
                )));
            }
            // JSON bodies get the small limit; only multipart uploads may be large.
            let limit = state.limits.max_body;
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| ApiError::TooLarge { limit })?;
            // One streaming pass, off the async threads when the body is big.
            let route_name = route.clone();
            if bytes.len() > 64 << 10 {
                tokio::task::spawn_blocking(move || {
                    super::body::check_json_body(&bytes, example.as_ref(), &route_name)
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??
            } else {
                super::body::check_json_body(&bytes, example.as_ref(), &route_name)?
            }
        }
        Expected::Binary(fields) => {
            if !content_type.starts_with("multipart/form-data") {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "pipeline `{route}` takes multipart/form-data with field(s) {}",
                    fields.join(", ")
                )));
            }
            let multipart = Multipart::from_request(request, &state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
            let (input, stored) = read_multipart(&state, multipart, &fields).await?;
            uploads = stored;
            input
        }
    };
    let owner = caller.name.clone();
    let engine = state.engine.clone();
    let id = uuid::Uuid::new_v4().to_string();
    let submission = Submission {
        definition,
        pipeline: tessera_engine::Planned::Plan(cached.plan.clone()),
        input,
        owner,
        id: Some(id.clone()),
        // No file: relative paths stay relative to the server's working directory.
        base_dir: None,
        tick: None,
    };
    // Attached first: the task's first command may use them at once.
    if !uploads.is_empty() {
        let (task, ids) = (id.clone(), uploads.clone());
        if let Err(e) = state.blocking(move |s| s.attach_objects(&task, &ids)).await {
            super::discard_objects(&state, &uploads).await;
            return Err(e);
        }
    }
    // An API-only server (or one that does not serve the pipeline's pools or node kinds)
    // records the task for a worker to claim; otherwise it runs it.
    let runs_here = engine.runs_needs(&cached.plan.needs);
    let submitted = tokio::task::spawn_blocking(move || {
        if runs_here {
            engine.submit(submission).map(Some)
        } else {
            engine.enqueue(submission).map(|_| None)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
    .and_then(|r| r.map_err(ApiError::from));
    match submitted {
        Ok(Some(handle)) => super::tasks::track(&state, handle),
        Ok(None) => {}
        Err(e) => {
            super::discard_objects(&state, &uploads).await;
            return Err(e);
        }
    }
    Ok(id)
}

/// Streams the binary fields to the object store; `data` (JSON) and text fields become input.
/// On any error, the objects already stored for this request are deleted.
async fn read_multipart(
    state: &AppState,
    multipart: Multipart,
    fields: &[String],
) -> Result<(Data, Vec<String>), ApiError> {
    let mut stored = Vec::new();
    match read_parts(state, multipart, fields, &mut stored).await {
        Ok(input) => Ok((input, stored)),
        Err(e) => {
            super::discard_objects(state, &stored).await;
            Err(e)
        }
    }
}

async fn read_parts(
    state: &AppState,
    mut multipart: Multipart,
    fields: &[String],
    stored: &mut Vec<String>,
) -> Result<Data, ApiError> {
    // Built from its parts: a big `data` part stays text.
    let mut input: Vec<(String, Data)> = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(super::multipart_error)?
    {
        let name = field.name().unwrap_or("").to_string();
        if fields.contains(&name) {
            let meta = super::store_field(state, field, None).await?;
            stored.push(meta.id.clone());
            set(&mut input, name, Data::from_value(meta.to_json()));
        } else if name == "data" {
            let text = super::read_text_field(field, state.limits.max_body).await?;
            // Checked in one streaming pass (no example: only that it is an object without
            // references), off the async threads when big.
            let data = if text.len() > 64 << 10 {
                tokio::task::spawn_blocking(move || {
                    super::body::check_json_body(text.as_bytes(), None, "")
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
            } else {
                super::body::check_json_body(text.as_bytes(), None, "")
            }
            .map_err(|e| match e {
                // The checker speaks of "the body": here it is this part.
                ApiError::BadRequest { message, details } => ApiError::BadRequest {
                    message: message.replacen("the body", "part `data`", 1),
                    details,
                },
                other => other,
            })?;
            let entries = data.entries().unwrap_or_default();
            // `data` may not replace an upload.
            if let Some((k, _)) = entries.iter().find(|(k, _)| fields.contains(k)) {
                return Err(ApiError::bad_request(format!(
                    "part `data`, field `{k}`: `{k}` is a binary field; upload it as its own part"
                )));
            }
            for (k, v) in entries {
                set(&mut input, k, v);
            }
        } else {
            let text = super::read_text_field(field, state.limits.max_body).await?;
            set(&mut input, name, Data::from_value(Value::String(text)));
        }
    }
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !input.iter().any(|(k, _)| k == *f))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::BadRequest {
            message: format!(
                "missing multipart field(s): {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            details: json!(missing),
        });
    }
    Ok(Data::object(input))
}

/// Sets a field of an input being built (a later part replaces an earlier one).
fn set(input: &mut Vec<(String, Data)>, key: String, value: Data) {
    match input.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => input.push((key, value)),
    }
}
