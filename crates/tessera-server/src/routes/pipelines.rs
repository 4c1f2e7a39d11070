//! `/api/v1/pipelines`: create or replace (JSON or YAML, every validation error at once), list,
//! read with stats and availability, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::time::rfc3339;
use tessera_core::{NodeKind, Pipeline};
use tessera_store::PipelineRow;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Problems listed in one 422 answer.
const MAX_LISTED_PROBLEMS: usize = 1000;

/// Reads a pipeline document (JSON or YAML) and validates it; 422 lists every problem. CPU
/// work: callers run it off the async threads ([`load_blocking`]).
pub(crate) fn load(state: &AppState, text: &str) -> Result<(Pipeline, Value), ApiError> {
    let report_error = |report: tessera_core::Report| {
        let syntax = report.errors.iter().any(|e| {
            e.field == "document"
                && (e.message.starts_with("invalid JSON") || e.message.starts_with("invalid YAML"))
        });
        let count = report.errors.len();
        let message = format!("invalid pipeline: {count} problem(s)");
        // A response of 10⁵ problems would cost more than the request: the first ones, and
        // how many more (`tessera validate` lists them all).
        let mut listed = &report.errors[..];
        if count > MAX_LISTED_PROBLEMS {
            listed = &listed[..MAX_LISTED_PROBLEMS];
        }
        let mut details = serde_json::to_value(listed).unwrap_or(Value::Null);
        if let Value::Array(items) = &mut details
            && count > MAX_LISTED_PROBLEMS
        {
            items.push(json!({
                "field": "",
                "message": format!("and {} more problem(s)", count - MAX_LISTED_PROBLEMS),
            }));
        }
        if syntax {
            ApiError::BadRequest { message, details }
        } else {
            ApiError::Invalid { message, details }
        }
    };
    let doc = tessera_core::parse::parse_document(text)
        .map_err(|issue| report_error(tessera_core::Report::single(issue)))?;
    let nodes = tessera_core::count_nodes(&doc);
    let limit = state.limits.max_nodes;
    if nodes > limit {
        let message = format!(
            "the pipeline has {nodes} nodes, more than this server accepts ({limit}, set by --max-nodes)"
        );
        return Err(ApiError::Invalid {
            details: json!([{"field": "nodes", "message": message}]),
            message,
        });
    }
    tessera_core::load_value(doc, state.engine.scripts()).map_err(|mut report| {
        report.locate(text);
        report_error(report)
    })
}

/// [`load`] on a blocking thread, so that checking a big pipeline never stalls other requests.
pub(crate) async fn load_blocking(
    state: &AppState,
    text: String,
) -> Result<(Pipeline, Value), ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || load(&state, &text))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let known = [
        "json",
        "yaml",
        "text/plain",
        "octet-stream",
        "x-www-form-urlencoded",
    ];
    if !content_type.is_empty() && !known.iter().any(|k| content_type.contains(k)) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the pipeline as application/json or application/yaml, not {content_type}"
        )));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let (pipeline, definition) = load_blocking(&state, text).await?;
    let has_route = pipeline
        .entry()
        .is_some_and(|e| matches!(&e.kind, NodeKind::Entry(api) if api.route.is_some()))
        || definition.get("name").is_some();
    if !has_route {
        return Err(ApiError::Invalid {
            message: "a stored pipeline needs a name: set the entry's `api.route` (or a top-level `name`)".into(),
            details: json!([{"field": "api.route", "message": "missing"}]),
        });
    }
    let now = now_millis();
    let row = PipelineRow {
        name: pipeline.name.clone(),
        definition,
        source: "user".into(),
        owner: caller.name.clone(),
        created_at: now,
        updated_at: now,
        version: String::new(),
    };
    let name = row.name.clone();
    let created = state.blocking(move |s| s.put_pipeline(&row)).await?;
    state.pipelines_changed();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/pipelines/{name}");
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(json!({"name": name, "created": created})),
    )
        .into_response())
}

pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let rows = state.blocking(|s| s.list_pipelines()).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|p| {
            let (summary, _) = api_text(&p.definition);
            json!({
                "name": p.name, "source": p.source, "summary": summary,
                "available": unavailable_services(&state, &p.definition).is_empty(),
                "created_at": rfc3339(p.created_at), "updated_at": rfc3339(p.updated_at),
            })
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = name.clone();
    let row = state
        .blocking(move |s| s.pipeline(&n))
        .await?
        .ok_or_else(|| ApiError::not_found("pipeline", &name))?;
    // A user counts its own tasks only.
    let owner = caller.owner_filter();
    let stats = state
        .blocking(move |s| s.task_stats(owner.as_deref()))
        .await?;
    let mut counts =
        json!({"total": 0, "pending": 0, "running": 0, "finished": 0, "failed": 0, "cancelled": 0});
    for s in stats.iter().filter(|s| s.pipeline == row.name) {
        counts[s.state.as_str()] = json!(counts[s.state.as_str()].as_u64().unwrap_or(0) + s.count);
        counts["total"] = json!(counts["total"].as_u64().unwrap_or(0) + s.count);
    }
    let unavailable = unavailable_services(&state, &row.definition);
    Ok(Json(json!({
        "name": row.name, "source": row.source, "definition": row.definition,
        "available": unavailable.is_empty(), "unavailable_services": unavailable,
        "stats": counts, "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
    })))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    let n = name.clone();
    if state.blocking(move |s| s.delete_pipeline(&n)).await? {
        state.pipelines_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("pipeline", &name))
    }
}

/// The entry's `api.summary` and `api.description` of a stored definition.
pub(crate) fn api_text(definition: &Value) -> (Option<String>, Option<String>) {
    let entry = definition["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["type"] == "entry"));
    let text = |k: &str| entry.and_then(|e| e["api"][k].as_str()).map(str::to_string);
    (text("summary"), text("description"))
}

/// URLs (or `name/endpoint`s) of `service` nodes whose service stopped announcing.
pub(crate) fn unavailable_services(state: &AppState, definition: &Value) -> Vec<String> {
    let expired = state
        .expired_services
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if expired.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for n in service_nodes(definition) {
        if let Some(url) = n["url"].as_str()
            && expired.has_url_prefix_of(url)
        {
            out.push(url.to_string());
        }
        if let Some(name) = n["service"].as_str()
            && let Some((service, _)) = name.split_once('/')
            && expired.has_name(service)
        {
            out.push(name.to_string());
        }
    }
    out
}

/// The `service` nodes of a stored definition, in loops at any depth too.
pub(crate) fn service_nodes(definition: &Value) -> Vec<&Value> {
    fn walk<'a>(nodes: &'a Value, out: &mut Vec<&'a Value>) {
        for n in nodes.as_array().into_iter().flatten() {
            if n["type"] == "service" {
                out.push(n);
            }
            walk(&n["nodes"], out);
        }
    }
    let mut out = Vec::new();
    walk(&definition["nodes"], &mut out);
    out
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
