//! `POST /api/v1/services/{route}`: start a task of a stored pipeline. The body follows the
//! entry's `api.body`: a JSON object checked field by field against the example, or multipart
//! whose binary fields are streamed to the object store (never held whole in memory).

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tessera_core::NodeKind;
use tessera_engine::Submission;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::routes::pipelines::{load, unavailable_services};
use crate::state::AppState;

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
    caller.require(&[Role::User, Role::Admin])?;
    let cached = state
        .pipelines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&route)
        .cloned();
    let cached = match cached {
        Some(c) => c,
        None => {
            let r = route.clone();
            let row = state
                .blocking(move |s| s.pipeline(&r))
                .await?
                .ok_or_else(|| ApiError::not_found("pipeline", &route))?;
            let (pipeline, definition) = load(&state, &row.definition.to_string())?;
            let c = std::sync::Arc::new(crate::state::CachedPipeline {
                row,
                pipeline,
                definition,
            });
            state
                .pipelines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(route.clone(), c.clone());
            c
        }
    };
    let row = &cached.row;
    let unavailable = unavailable_services(&state, &row.definition);
    if !unavailable.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "pipeline `{route}` calls services that stopped announcing: {}",
            unavailable.join(", ")
        )));
    }
    let (pipeline, definition) = (cached.pipeline.clone(), cached.definition.clone());
    let expected = match pipeline.entry().map(|e| &e.kind) {
        Some(NodeKind::Entry(api)) => match &api.body {
            Some(Value::String(field)) => Expected::Binary(vec![field.clone()]),
            Some(Value::Array(fields)) => Expected::Binary(
                fields
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect(),
            ),
            other => Expected::Json(other.clone()),
        },
        _ => Expected::Json(None),
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
            let value = if bytes.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                super::parse_json_body(&bytes)?
            };
            if !value.is_object() {
                return Err(ApiError::bad_request("the body must be a JSON object"));
            }
            if mentions_object(&value) {
                // References are made by the server only: a client must not name other objects.
                return Err(ApiError::Invalid {
                    message: "object references (`$object`) cannot be sent as JSON; upload files as multipart".into(),
                    details: Value::Null,
                });
            }
            if let Some(example @ Value::Object(_)) = &example {
                let mut problems = Vec::new();
                check_types(example, &value, "", &mut problems);
                if !problems.is_empty() {
                    return Err(ApiError::Invalid {
                        message: format!(
                            "the body does not match pipeline `{route}`: {}",
                            problems.len()
                        ),
                        details: Value::Array(problems),
                    });
                }
            }
            value
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
    // The owner is known before the task starts, so its first live events reach the owner.
    let id = uuid::Uuid::new_v4().to_string();
    state
        .owners
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), owner.clone());
    let submission = Submission {
        definition,
        pipeline,
        input,
        owner,
        id: Some(id.clone()),
    };
    let handle = tokio::task::spawn_blocking(move || engine.submit(submission))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    if !uploads.is_empty() {
        let task = id.clone();
        state
            .blocking(move |s| s.attach_objects(&task, &uploads))
            .await?;
    }
    super::tasks::track(&state, handle);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/tasks/{id}"))],
        Json(json!({"task_id": id})),
    )
        .into_response())
}

fn mentions_object(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("$object") || m.values().any(mentions_object),
        Value::Array(a) => a.iter().any(mentions_object),
        _ => false,
    }
}

/// Streams the binary fields to the object store; `data` (JSON) and text fields become input.
async fn read_multipart(
    state: &AppState,
    mut multipart: Multipart,
    fields: &[String],
) -> Result<(Value, Vec<String>), ApiError> {
    let mut input = Map::new();
    let mut stored = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                cleanup(state, &stored).await;
                return Err(super::multipart_error(e));
            }
        };
        let name = field.name().unwrap_or("").to_string();
        if fields.contains(&name) {
            let meta = match super::store_field(state, field, None).await {
                Ok(meta) => meta,
                Err(e) => {
                    cleanup(state, &stored).await;
                    return Err(e);
                }
            };
            stored.push(meta.id.clone());
            input.insert(name, meta.to_json());
        } else if name == "data" {
            let text = field.text().await.map_err(super::multipart_error)?;
            let m = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                _ => {
                    cleanup(state, &stored).await;
                    return Err(ApiError::bad_request("part `data` must be a JSON object"));
                }
            };
            // References are made by the server only, and `data` may not replace an upload.
            let clash = m.keys().any(|k| fields.contains(k));
            if clash || mentions_object(&Value::Object(m.clone())) {
                cleanup(state, &stored).await;
                return Err(ApiError::Invalid {
                    message: "part `data` may not hold object references or binary field names"
                        .into(),
                    details: Value::Null,
                });
            }
            input.extend(m);
        } else {
            let text = field.text().await.map_err(super::multipart_error)?;
            input.insert(name, Value::String(text));
        }
    }
    let missing: Vec<&String> = fields.iter().filter(|f| !input.contains_key(*f)).collect();
    if !missing.is_empty() {
        cleanup(state, &stored).await;
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
    Ok((Value::Object(input), stored))
}

/// Objects of a refused upload are deleted.
async fn cleanup(state: &AppState, ids: &[String]) {
    for id in ids {
        let _ = state.objects().delete(id).await;
    }
}

/// Checks `value` against the example's types; each problem names its field.
fn check_types(example: &Value, value: &Value, path: &str, problems: &mut Vec<Value>) {
    let name = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (example, value) {
        (Value::Object(ex), Value::Object(v)) => {
            for (k, exv) in ex {
                match v.get(k) {
                    None => problems.push(json!({"field": name(k), "message": "missing field"})),
                    Some(x) => check_types(exv, x, &name(k), problems),
                }
            }
        }
        (Value::Array(ex), Value::Array(v)) => {
            if let Some(first) = ex.first() {
                for (i, x) in v.iter().enumerate() {
                    check_types(first, x, &name(&i.to_string()), problems);
                }
            }
        }
        (Value::Number(e), Value::Number(v)) => {
            if (e.is_i64() || e.is_u64()) && !(v.is_i64() || v.is_u64()) {
                problems.push(json!({"field": path, "message": "expected an integer"}));
            }
        }
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) | (Value::Null, _) => {}
        (e, _) => problems.push(json!({"field": path, "message": format!("expected {}", tessera_core::model::json_type(e))})),
    }
}
