//! `POST /api/v1/callbacks/{token}`: a service delivers a result (JSON, or multipart with
//! binary parts and a `data` part) or a failure (`Tessera-Status: failed`). Unknown, superseded
//! and already answered tokens are refused before anything is stored.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header;
use serde_json::{Map, Value, json};

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
        Some(r) if r.state == "waiting" || r.state == "dispatching" => r,
        Some(r) => {
            return Err(ApiError::Conflict(format!(
                "this callback is no longer expected ({})",
                if r.state == "received" {
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
    let result = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        read_parts(&state, multipart, &row.task_id).await?
    } else {
        let bytes = axum::body::Bytes::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let v = super::parse_json_body(&bytes)?;
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "a callback body must be a JSON object",
            ));
        }
        v
    };
    let engine = state.engine.clone();
    let accepted =
        tokio::task::spawn_blocking(move || engine.deliver_callback(&token, &result, failed))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    if !accepted {
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
) -> Result<Value, ApiError> {
    let mut out = Map::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    })? {
        let name = field.name().unwrap_or("").to_string();
        if name == "data" {
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => out.extend(m),
                _ => return Err(ApiError::bad_request("part `data` must be a JSON object")),
            }
            continue;
        }
        let meta = super::store_field(state, field, Some(task_id.to_string())).await?;
        out.insert(name, meta.to_json());
    }
    Ok(Value::Object(out))
}
