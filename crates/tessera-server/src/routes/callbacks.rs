//! `POST /api/v1/callbacks/{token}`: a service delivers a result (JSON, or multipart with
//! binary parts and a `data` part) or a failure (`Tessera-Status: failed`). Unknown, superseded
//! and already answered tokens are refused before anything is stored.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header;
use serde_json::{Map, Value, json};
use tessera_store::CallbackState;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn callback(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Service, Role::Admin])?;
    let t = token.clone();
    let row = state.blocking(move |s| s.callback(&t)).await?;
    let row = match row {
        // A run's own listener knows no other run's tokens (a port it was given may have
        // been another run's before).
        Some(r) if state.own_tasks_only && !state.engine.is_driving(&r.task_id) => {
            return Err(ApiError::not_found("callback", "this token"));
        }
        Some(r) if r.state.is_expected() => r,
        Some(r) => {
            return Err(ApiError::Conflict(format!(
                "this callback is no longer expected ({})",
                if r.state == CallbackState::Received {
                    "already answered"
                } else {
                    "superseded by a newer attempt"
                }
            )));
        }
        None => return Err(ApiError::not_found("callback", "this token")),
    };
    let failed = request
        .headers()
        .get("tessera-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("failed"));
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut stored = Vec::new();
    let result = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let read = read_parts(&state, multipart, &row.task_id, &mut stored).await;
        match read {
            Ok(v) => v,
            Err(e) => {
                super::discard_objects(&state, &stored).await;
                return Err(e);
            }
        }
    } else {
        // Only binary parts may be large: JSON gets the JSON body limit.
        let limit = state.limits.max_body;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::TooLarge { limit })?;
        let v = super::parse_json_body(&bytes)?;
        let Value::Object(m) = v else {
            return Err(ApiError::bad_request(
                "a callback body must be a JSON object",
            ));
        };
        check_references(&state, &m, &row.task_id).await?;
        Value::Object(m)
    };
    let engine = state.engine.clone();
    let accepted =
        tokio::task::spawn_blocking(move || engine.deliver_callback(&token, &result, failed))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    if !accepted {
        super::discard_objects(&state, &stored).await;
        return Err(ApiError::Conflict(
            "this callback is no longer expected (answered meanwhile)".into(),
        ));
    }
    Ok(Json(json!({"accepted": true})))
}

async fn read_parts(
    state: &AppState,
    mut multipart: Multipart,
    task_id: &str,
    stored: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let mut out = Map::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(super::multipart_error)?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "data" {
            let text = super::read_text_field(field, state.limits.max_body).await?;
            let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) else {
                return Err(ApiError::bad_request("part `data` must be a JSON object"));
            };
            check_references(state, &m, task_id).await?;
            out.extend(m);
            continue;
        }
        let meta = super::store_field(state, field, Some(task_id.to_string())).await?;
        stored.push(meta.id.clone());
        out.insert(name, meta.to_json());
    }
    Ok(Value::Object(out))
}

/// A service's JSON may pass on objects of its own task (an image it was given), never name
/// another task's objects, nor files (`$file`): a path would make a later command hand the
/// server's files to the task's owner.
async fn check_references(
    state: &AppState,
    data: &Map<String, Value>,
    task_id: &str,
) -> Result<(), ApiError> {
    let mut refs = Vec::new();
    for key in ["$object", "$file"] {
        if data.contains_key(key) {
            refs.push(("(top level)".to_string(), key, None));
        }
    }
    for (k, v) in data {
        let mut path = k.clone();
        super::collect_references(v, &mut path, &mut refs);
    }
    for (field, key, id) in refs {
        let refused = |why: String| ApiError::BadRequest {
            message: format!("callback data, field `{field}`: {why}"),
            details: json!([{"field": field, "message": why}]),
        };
        let Some(id) = id.filter(|_| key == "$object") else {
            return Err(refused(format!(
                "`{key}` references cannot be sent as data; send files as multipart parts"
            )));
        };
        let (i, t) = (id.clone(), task_id.to_string());
        if !state.blocking(move |s| s.object_in_task(&i, &t)).await? {
            return Err(refused(format!(
                "object `{id}` does not belong to this task; send new files as multipart parts"
            )));
        }
    }
    Ok(())
}
