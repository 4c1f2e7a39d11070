//! `/api/v1/tasks`: list (newest first, keyset pages), read, result, node logs, loop items,
//! cancel, resume, delete; and the retention sweep that deletes ended tasks with their objects.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::scheduler::TaskState;
use tessera_core::time::rfc3339;
use tessera_engine::inspect::ItemState;
use tessera_engine::{EngineError, TaskHandle};
use tessera_store::{TaskFilter, TaskRow};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Keeps the handle of a task started here until it ends, so it can be cancelled directly.
pub(crate) fn track(state: &AppState, handle: TaskHandle) {
    state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(handle.id.clone(), handle);
}

/// Forgets the handles of ended tasks, once a second.
pub(crate) async fn forget_ended_loop(state: AppState) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let mut running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, h| !h.is_done());
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pipeline: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::User, Role::Admin])?;
    // Parsed here so a bad query gets our JSON error, not the extractor's plain text.
    let q: ListQuery = serde_urlencoded_query(uri.query().unwrap_or(""))?;
    let wanted = match &q.state {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state `{s}` (pending, running, finished, failed, cancelled)"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let before = match &q.cursor {
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::bad_request("invalid cursor"))?),
        None => None,
    };
    let filter = TaskFilter {
        pipeline: q.pipeline.clone(),
        state: wanted,
        limit: limit + 1,
        before,
        owner: caller.owner_filter(),
    };
    let mut rows = state.blocking(move |s| s.list_tasks(&filter)).await?;
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        let last = rows.last().expect("limit >= 1");
        format!("{}.{}", last.created_at, last.id)
    });
    let items: Vec<Value> = rows
        .iter()
        .map(|t| json!({"id": t.id, "pipeline": t.pipeline, "state": t.state, "created_at": rfc3339(t.created_at), "updated_at": rfc3339(t.updated_at)}))
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

fn serde_urlencoded_query<Q: serde::de::DeserializeOwned>(query: &str) -> Result<Q, ApiError> {
    axum::extract::Query::<Q>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::bad_request("malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
}

fn decode_cursor(c: &str) -> Option<(u64, String)> {
    let (t, id) = c.split_once('.')?;
    Some((t.parse().ok()?, id.to_string()))
}

/// The task if it exists and the caller may see it (404 otherwise: no existence leak).
pub(crate) async fn visible_task(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<TaskRow, ApiError> {
    visible_task_read(state, caller, id, tessera_store::ValueRead::Sizes).await
}

/// The task, if the caller may see it; its big input and result read as `values` says (by
/// their size unless a route serves them).
pub(crate) async fn visible_task_read(
    state: &AppState,
    caller: &Caller,
    id: &str,
    values: tessera_store::ValueRead,
) -> Result<TaskRow, ApiError> {
    let i = id.to_string();
    let task = state.blocking(move |s| s.task_read(&i, values)).await?;
    match task {
        Some(t) if caller.can_see(t.owner.as_deref()) => Ok(t),
        _ => Err(ApiError::not_found("task", id)),
    }
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    values: Option<String>,
}

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<axum::response::Response, ApiError> {
    let q: ReadQuery = serde_urlencoded_query(uri.query().unwrap_or(""))?;
    let values = match q.values.as_deref() {
        None | Some("sizes") => tessera_engine::inspect::Values::Sizes,
        Some("full") => tessera_engine::inspect::Values::Full,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown values `{other}` (sizes, full)"
            )));
        }
    };
    visible_task(&state, &caller, &id).await?;
    let i = id.clone();
    // Read and serialised off the async threads: a task's document can be tens of MB.
    let body = state
        .blocking(move |s| {
            let mut doc =
                tessera_engine::inspect::task_document(s, &i, values).map_err(|e| match e {
                    tessera_engine::EngineError::Store(s) => s,
                    other => tessera_store::StoreError::Corrupt {
                        what: "task".into(),
                        detail: other.to_string(),
                    },
                })?;
            doc.result = doc.result.map(super::link_objects_in);
            serde_json::to_vec(&doc).map_err(|e| tessera_store::StoreError::Corrupt {
                what: "task document".into(),
                detail: e.to_string(),
            })
        })
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The task's row alone (state, error, times): what a client following a task polls, without
/// building its whole document.
pub async fn state(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = visible_task(&state, &caller, &id).await?;
    Ok(Json(json!({
        "id": t.id, "pipeline": t.pipeline, "state": t.state, "error": t.error,
        "created_at": rfc3339(t.created_at), "updated_at": rfc3339(t.updated_at),
    })))
}

pub async fn result(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<tessera_core::Data>, ApiError> {
    let task = visible_task_read(&state, &caller, &id, tessera_store::ValueRead::Whole).await?;
    if task.task_state() != TaskState::Finished {
        return Err(ApiError::Conflict(format!(
            "task {id} is {}; its result exists once it has finished",
            task.state
        )));
    }
    let result = super::link_objects_in(task.result.unwrap_or_default());
    Ok(Json(result))
}

pub async fn log(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, node)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    visible_task(&state, &caller, &id).await?;
    let engine = state.engine.clone();
    let logs = tokio::task::spawn_blocking(move || {
        tessera_engine::node_logs::node_logs(engine.store().as_ref(), &id, &node)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let lines: Vec<Value> = logs
        .lines
        .into_iter()
        .map(|l| json!({"key": l.key, "attempt": l.attempt, "stream": l.stream, "line": l.line, "at": rfc3339(l.at)}))
        .collect();
    Ok(Json(
        json!({"keys": logs.keys, "instances": logs.instances, "lines": lines}),
    ))
}

#[derive(Debug, Deserialize)]
struct ItemsQuery {
    state: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
}

/// A page of a loop's items (`?state=&offset=&limit=`).
pub async fn items(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, loop_key)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<axum::response::Response, ApiError> {
    let q: ItemsQuery = serde_urlencoded_query(uri.query().unwrap_or(""))?;
    let wanted = match &q.state {
        None => None,
        Some(s) => Some(ItemState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown item state `{s}` (pending, running, finished, failed)"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    let offset = q.offset.unwrap_or(0);
    visible_task(&state, &caller, &id).await?;
    let engine = state.engine.clone();
    // Read and serialised off the async threads: a page reads a loop's output or chunks.
    let body = tokio::task::spawn_blocking(move || {
        let page = tessera_engine::inspect::loop_items(
            engine.store().as_ref(),
            &id,
            &loop_key,
            wanted,
            offset,
            limit,
        )?;
        serde_json::to_vec(&page).map_err(|e| EngineError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    cancel_task(&state, &caller, &id, "cancelled through the API").await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"task_id": id, "state": "cancelling"})),
    ))
}

/// Asks the task's holder to cancel it (this process, another, or none: then marked here).
/// The API and the web UI cancel through this.
pub(crate) async fn cancel_task(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &'static str,
) -> Result<(), ApiError> {
    let (state, id) = (state.clone(), id.to_string());
    let task = visible_task(&state, caller, &id).await?;
    if task.task_state().is_terminal() {
        return Err(ApiError::Conflict(format!(
            "task {id} already {}",
            task.state
        )));
    }
    let local = {
        let running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        // A handle whose driver stopped would swallow the request: the store decides then.
        running
            .get(&id)
            .filter(|h| !h.is_done())
            .map(|h| h.cancel(reason))
            .is_some()
    };
    if !local {
        let engine = state.engine.clone();
        let i = id.clone();
        tokio::task::spawn_blocking(move || engine.cancel_elsewhere(&i))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    }
    Ok(())
}

/// `POST /api/v1/tasks/{id}/resume`, with an optional JSON body `{"pipeline": …, "input": …}`:
/// a fixed definition (a document, or its JSON/YAML text) and/or a new input, checked as a
/// submission's are.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    resume_task(&state, &caller, &id, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task_id": id}))))
}

/// Resumes a task, with the fix `body` asks for (see [`resume`]); the API and the web UI
/// resume through this.
pub(crate) async fn resume_task(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let (state, id) = (state.clone(), id.to_string());
    let task = visible_task_read(&state, caller, &id, tessera_store::ValueRead::Sizes).await?;
    let fix = resume_fix(&state, body, &task.definition, &task.pipeline).await?;
    // A new definition is a new pipeline: its commands run on this machine, so only those
    // who may store pipelines may bring one (a user may still resume, or give a new input).
    if fix.definition.is_some() {
        caller.require(&[Role::Admin]).map_err(|_| {
            ApiError::Forbidden(
                "resuming with a changed definition needs the admin role (it is a new \
                 pipeline); resume without one, or with a new input only"
                    .into(),
            )
        })?;
    }
    let engine = state.engine.clone();
    let i = id.clone();
    // An API-only server reopens the task for a worker; otherwise it runs it.
    let handle = tokio::task::spawn_blocking(move || {
        if engine.runs_tasks() {
            engine.resume(&i, fix).map(Some)
        } else {
            engine.reopen_for_workers(&i, fix).map(|()| None)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if let Some(handle) = handle {
        track(&state, handle);
    }
    Ok(())
}

/// The fix a resume body asks for; a new input is checked against the entry's `api.body` of
/// the new definition, else of the task's `stored` one.
async fn resume_fix(
    state: &AppState,
    body: &[u8],
    stored: &Value,
    pipeline: &str,
) -> Result<tessera_engine::Fix, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(tessera_engine::Fix::default());
    }
    if body.len() > state.limits.max_body {
        return Err(ApiError::TooLarge {
            limit: state.limits.max_body,
        });
    }
    let mut request: serde_json::Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a JSON object: {e}")))?;
    if let Some(extra) = request
        .keys()
        .find(|k| !matches!(k.as_str(), "pipeline" | "input"))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field `{extra}`; a resume takes `pipeline` and `input`"
        )));
    }
    let definition = match request.remove("pipeline") {
        None | Some(Value::Null) => None,
        // Blank: unchanged (as a form's empty box says).
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(super::pipelines::load_blocking(state, text).await?),
        Some(doc @ Value::Object(_)) => {
            Some(super::pipelines::load_blocking(state, doc.to_string()).await?)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`pipeline` must be a pipeline document or its JSON/YAML text",
            ));
        }
    };
    // The definition the task has, sent again, changes nothing (and needs no admin).
    let definition = definition.filter(|(_, doc)| doc != stored);
    let example = match &definition {
        Some((p, _)) => match p.entry().map(|e| &e.kind) {
            Some(tessera_core::NodeKind::Entry(api)) => api.body.clone(),
            _ => None,
        },
        None => stored["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["type"] == "entry"))
            .and_then(|entry| entry["api"].get("body"))
            .cloned(),
    };
    let input = match request.remove("input") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let bytes = v.to_string().into_bytes();
            let pipeline = pipeline.to_string();
            Some(
                tokio::task::spawn_blocking(move || {
                    super::body::check_json_body(&bytes, example.as_ref(), &pipeline)
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??,
            )
        }
    };
    Ok(tessera_engine::Fix {
        definition: definition.map(|(p, doc)| (doc, p)),
        input,
    })
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let task = visible_task(&state, &caller, &id).await?;
    if !task.task_state().is_terminal() {
        return Err(ApiError::Conflict(format!(
            "task {id} is {}; cancel it first",
            task.state
        )));
    }
    delete_with_objects(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_with_objects(state: &AppState, id: &str) -> Result<(), ApiError> {
    let i = id.to_string();
    let objects = state.blocking(move |s| s.delete_task(&i)).await?;
    let (engine, i) = (state.engine.clone(), id.to_string());
    let _ = tokio::task::spawn_blocking(move || engine.forget_task_files(&i)).await;
    for object in objects {
        if let Err(e) = state.objects().delete(&object).await {
            tracing::warn!(%object, error = %e, "could not delete object bytes");
        }
    }
    Ok(())
}

/// Deletes tasks that ended more than the retention period ago, with their objects.
pub(crate) async fn retention_loop(state: AppState) {
    let every = (state.limits.retention / 24).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    );
    loop {
        // Once for the cluster: only the instance leading the chore deletes.
        if !crate::state::leads(&state, "retention", every).await {
            tokio::time::sleep(every).await;
            continue;
        }
        let cutoff = crate::routes::pipelines::now_millis()
            .saturating_sub(state.limits.retention.as_millis() as u64);
        match state.blocking(move |s| s.ended_before(cutoff)).await {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = delete_with_objects(&state, &id).await {
                        tracing::warn!(task = %id, error = %e, "retention: could not delete task");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        // Uploads whose request died before its task was made (an hour is plenty).
        let stale = crate::routes::pipelines::now_millis().saturating_sub(3_600_000);
        match state.blocking(move |s| s.unattached_objects(stale)).await {
            Ok(ids) => crate::routes::discard_objects(&state, &ids).await,
            Err(e) => tracing::warn!(error = %e, "sweep of unattached uploads failed"),
        }
        tokio::time::sleep(every).await;
    }
}
