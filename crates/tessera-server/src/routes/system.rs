//! Health, Prometheus metrics, statistics, live events (server-sent events) and the OpenAPI
//! document.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::openapi::PipelineDoc;
use crate::state::AppState;

/// Whether the parts the server needs answer: the store (database) and the object store.
/// 200 `{"status": "ok", "store": "ok", "objects": "ok"}`; 503 with `"error"` for each part
/// that failed and an `error_id` whose log line has the details (paths and causes stay there).
pub async fn health(State(state): State<AppState>) -> axum::response::Response {
    let timeout = Duration::from_secs(5);
    let store = {
        let s = state.store().clone();
        match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || s.check())).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(format!("the check panicked: {e}")),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    };
    let objects = match tokio::time::timeout(timeout, state.objects().check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    let word = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "error" };
    let mut body = json!({"status": "ok", "store": word(&store), "objects": word(&objects)});
    if store.is_ok() && objects.is_ok() {
        return Json(body).into_response();
    }
    let id = crate::error::new_error_id();
    tracing::error!(
        error_id = %id,
        store = store.as_ref().err().map(String::as_str).unwrap_or("ok"),
        objects = objects.as_ref().err().map(String::as_str).unwrap_or("ok"),
        "health check failed"
    );
    let failed: Vec<&str> = [("the store", &store), ("the object store", &objects)]
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name)
        .collect();
    // The shape of every error (`error.code`, `message`, `error_id`), plus each part's word.
    body["error"] = json!({
        "code": "unavailable",
        "message": format!("{} does not answer (error {id}); the details are in the server's log", failed.join(" and ")),
        "details": {"store": body["store"], "objects": body["objects"]},
        "error_id": id,
    });
    body["status"] = json!("unavailable");
    body["error_id"] = json!(id);
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `GET /api/v1/workers`: the live processes running tasks on this store (servers and
/// workers): their runner name, host, pid, start, last heartbeat, lease, limits, and the tasks
/// each holds now.
pub async fn workers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::User])?;
    let engine = state.engine.clone();
    let rows = tokio::task::spawn_blocking(move || engine.workers())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "items": rows })))
}

const STATES: [&str; 5] = ["pending", "running", "finished", "failed", "cancelled"];

/// Totals overall and per pipeline (a user's own tasks only), and the services known from
/// announcements.
pub async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::User])?;
    let owner = caller.owner_filter();
    let rows = state
        .blocking(move |s| s.task_stats(owner.as_deref()))
        .await?;
    let services = state.blocking(|s| s.list_services()).await?;
    let zero = || {
        let mut m = serde_json::Map::new();
        m.insert("total".into(), json!(0));
        for s in STATES {
            m.insert(s.into(), json!(0));
        }
        Value::Object(m)
    };
    let bump = |v: &mut Value, state: &str, n: u64| {
        v[state] = json!(v[state].as_u64().unwrap_or(0) + n);
        v["total"] = json!(v["total"].as_u64().unwrap_or(0) + n);
    };
    let mut total = zero();
    let mut per = serde_json::Map::new();
    for r in &rows {
        bump(&mut total, r.state.as_str(), r.count);
        bump(
            per.entry(r.pipeline.clone()).or_insert_with(zero),
            r.state.as_str(),
            r.count,
        );
    }
    total["pipelines"] = Value::Object(per);
    total["services"] = serde_json::to_value(&services).unwrap_or(Value::Null);
    Ok(Json(total))
}

/// Prometheus text format: everyone's totals, so an admin's token is needed when tokens are
/// on (unless the server was started with `--public-info`).
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let rows = state.blocking(|s| s.task_stats(None)).await?;
    let services = state.blocking(|s| s.list_services()).await?;
    let running = state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let mut out = String::new();
    out.push_str("# HELP tessera_tasks Tasks by pipeline and state.\n# TYPE tessera_tasks gauge\n");
    for r in &rows {
        out.push_str(&format!(
            "tessera_tasks{{pipeline=\"{}\",state=\"{}\"}} {}\n",
            escape_label(&r.pipeline),
            r.state,
            r.count
        ));
    }
    out.push_str("# HELP tessera_tasks_in_process Tasks driven by this server process now.\n# TYPE tessera_tasks_in_process gauge\n");
    out.push_str(&format!("tessera_tasks_in_process {running}\n"));
    out.push_str(
        "# HELP tessera_services Services currently announced.\n# TYPE tessera_services gauge\n",
    );
    out.push_str(&format!("tessera_services {}\n", services.len()));
    out.push_str("# HELP tessera_event_subscribers Clients following /api/v1/events.\n# TYPE tessera_event_subscribers gauge\n");
    out.push_str(&format!(
        "tessera_event_subscribers {}\n",
        state.events.receiver_count()
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Task and node state changes, live; a user sees only its own tasks.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(&[Role::Admin, Role::User])?;
    let rx = state.events.subscribe();
    let stream =
        futures::stream::unfold((rx, state, caller), |(mut rx, state, caller)| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let visible = match caller.owner_filter() {
                            None => true,
                            Some(me) => ev.owner.as_deref() == Some(me.as_str()),
                        };
                        if visible {
                            let kind = ev.data["type"].as_str().unwrap_or("event").to_string();
                            let event = Event::default().event(kind).data(ev.data.to_string());
                            return Some((Ok(event), (rx, state, caller)));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let event = Event::default()
                            .event("lagged")
                            .data(json!({"missed": n}).to_string());
                        return Some((Ok(event), (rx, state, caller)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The OpenAPI document, with one route per stored pipeline.
pub async fn openapi(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let public_info = state.public_info;
    let rows = state.blocking(|s| s.list_pipelines()).await?;
    let docs: Vec<PipelineDoc> = rows
        .iter()
        .map(|p| {
            let (summary, description) = super::pipelines::api_text(&p.definition);
            let body = p.definition["nodes"]
                .as_array()
                .and_then(|nodes| nodes.iter().find(|n| n["type"] == "entry"))
                .and_then(|e| e["api"].get("body").cloned());
            PipelineDoc {
                name: p.name.clone(),
                summary,
                description,
                body,
            }
        })
        .collect();
    let mut doc = crate::openapi::document(&docs, None);
    if !public_info && state.tokens.enabled() {
        crate::openapi::protect_info_routes(&mut doc);
    }
    Ok(Json(doc))
}
