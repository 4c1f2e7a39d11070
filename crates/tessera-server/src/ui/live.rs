//! Server-sent events that keep the UI's pages live.
//!
//! - A task's page follows `/ui/tasks/{id}/live`: snapshots of the task's state (nodes,
//!   loops, batches), each sent when it differs from the last one sent. A snapshot is whole,
//!   so a reconnection misses nothing: the first snapshot after it is the current state. The
//!   store is the source (woken by the task's events, whoever runs it, and read at least once
//!   a second), so a page on any server instance sees a task run by any worker.
//! - A node's log follows `/ui/tasks/{id}/nodes/{node}/log/live`: each line once, with its
//!   line number as the event id; a reconnection (`Last-Event-ID`) resumes after the last
//!   line received, without a gap or a repeat.
//! - The engine page follows `/ui/engine/live`: its figures every two seconds.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_engine::inspect::{TaskDocument, Values};
use tessera_store::{LogLine, ValueRead};

use super::UiError;
use super::html::duration;
use super::session::Viewer;
use super::tasks::{annotations, engine_store, loop_done, loop_text};
use crate::routes::tasks::visible_task;
use crate::state::AppState;

/// At most this long between two reads of a live task's state.
const TASK_EVERY: Duration = Duration::from_secs(1);
/// Changes closer than this go out as one snapshot.
const COALESCE: Duration = Duration::from_millis(150);
/// How often a followed log is read while its node may still write.
const LOG_EVERY: Duration = Duration::from_millis(300);
/// Lines read (and sent) at once.
const LOG_BATCH: usize = 500;
const ENGINE_EVERY: Duration = Duration::from_secs(2);
/// A task's snapshot serves every page following it for this long.
const SHARED_FOR: Duration = Duration::from_millis(200);
const FORGET_AFTER: Duration = Duration::from_secs(30);

fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies must pass events on as they come.
    r.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    r
}

/// A task's state as its page shows it, with the time of its latest change (`seq`).
pub(super) fn snapshot(
    doc: &TaskDocument,
    progress: Option<&tessera_core::scheduler::Progress>,
) -> Value {
    let mut seq = doc.updated_at;
    let notes = annotations(doc);
    let nodes: Vec<Value> = doc
        .nodes
        .iter()
        .map(|n| {
            seq = seq
                .max(n.started_at.unwrap_or(0))
                .max(n.finished_at.unwrap_or(0));
            let label = notes.get(n.key.as_str()).map_or("", |a| a.text.as_str());
            json!({
                "key": n.key, "type": n.node_type, "state": n.state, "attempts": n.attempts,
                "iterations": n.iterations,
                "started_at": tessera_core::time::json(n.started_at),
                "took": duration(n.duration_ms), "error": n.error, "label": label,
            })
        })
        .collect();
    let loops: Vec<Value> = doc
        .loops
        .iter()
        .map(|l| {
            let mut done = loop_done(l);
            let mut items = l.items;
            let mut text = loop_text(l);
            // A loop run here: the engine's own count is fresher (items evaluated and not
            // committed yet) and knows the items no branch has started yet.
            if let Some(p) = progress.and_then(|p| p.loops.iter().find(|p| p.key == l.key)) {
                done = done.max(p.done as u64);
                items = Some(p.total as u64);
                text = format!(
                    "{} of {} items",
                    super::html::count(done),
                    super::html::count(p.total as u64)
                );
                if let Some(failed) = l.counts.get("failed").filter(|n| **n > 0) {
                    text.push_str(&format!(" · {} failed", super::html::count(*failed)));
                }
            }
            json!({"key": l.key, "done": done, "items": items, "text": text, "counts": l.counts})
        })
        .collect();
    json!({
        "seq": seq, "state": doc.state, "error": doc.error,
        "updated_at": tessera_core::time::json(Some(doc.updated_at)),
        "nodes": nodes, "loops": loops,
        "rasters": progress.map_or(Vec::new(), |p| p.rasters.iter().map(super::tiles::snapshot).collect()),
        "batches": doc.batches.iter().map(|b| json!({
            "key": b["key"], "state": b["state"],
            "committed": b["counts"]["chunk_states"]["committed"],
            "chunks": b["counts"]["chunks"],
        })).collect::<Vec<_>>(),
    })
}

/// The task's snapshot from the store (and this process's progress when it runs the task).
/// A snapshot read less than [`SHARED_FOR`] ago is shared: a hundred pages following one task
/// cost the store one read, not a hundred.
async fn read_snapshot(state: &AppState, id: &str) -> Result<Value, UiError> {
    let shared = state
        .snapshots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .filter(|(at, _)| at.elapsed() < SHARED_FOR)
        .map(|(_, s)| s.clone());
    if let Some(s) = shared {
        return Ok((*s).clone());
    }
    let snap = read_snapshot_now(state, id).await?;
    let mut all = state.snapshots.lock().unwrap_or_else(|p| p.into_inner());
    // Tasks nobody follows any more are forgotten.
    all.retain(|_, (at, _)| at.elapsed() < FORGET_AFTER);
    all.insert(
        id.to_string(),
        (std::time::Instant::now(), std::sync::Arc::new(snap.clone())),
    );
    Ok(snap)
}

async fn read_snapshot_now(state: &AppState, id: &str) -> Result<Value, UiError> {
    let i = id.to_string();
    let doc = state
        .blocking(move |s| {
            tessera_engine::inspect::task_document(s, &i, Values::Sizes).map_err(engine_store)
        })
        .await?;
    let progress = state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .map(|h| h.progress());
    Ok(snapshot(&doc, progress.as_ref()))
}

struct TaskFollow {
    state: AppState,
    id: String,
    events: tokio::sync::broadcast::Receiver<crate::state::LiveEvent>,
    last: Option<Value>,
    ended: bool,
}

impl TaskFollow {
    /// Waits until the task may have changed: one of its events, or [`TASK_EVERY`].
    async fn wait(&mut self) {
        let deadline = tokio::time::sleep(TASK_EVERY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                ev = self.events.recv() => match ev {
                    Ok(e) if e.task_id == self.id => break,
                    Ok(_) => continue,
                    // Missed some: the snapshot covers them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        (&mut deadline).await;
                        return;
                    }
                },
            }
        }
        tokio::time::sleep(COALESCE).await;
    }

    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            if self.last.is_some() {
                self.wait().await;
            }
            let snap = match read_snapshot(&self.state, &self.id).await {
                Ok(s) => s,
                Err(e) => {
                    self.ended = true;
                    let message = e.0.public().message;
                    return Some(
                        Event::default()
                            .event("gone")
                            .data(json!({"message": message}).to_string()),
                    );
                }
            };
            if self.last.as_ref() == Some(&snap) {
                continue;
            }
            let terminal = matches!(
                snap["state"].as_str(),
                Some("finished" | "failed" | "cancelled")
            );
            let event = Event::default()
                .event("state")
                .id(snap["seq"].to_string())
                .data(snap.to_string());
            self.last = Some(snap);
            if terminal {
                // The page reloads for its result and actions; nothing more will change.
                self.ended = true;
            }
            return Some(event);
        }
    }
}

/// `GET /ui/tasks/{id}/live`.
pub async fn task(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    visible_task(&state, &viewer.caller, &id).await?;
    let follow = TaskFollow {
        events: state.events.subscribe(),
        state,
        id,
        last: None,
        ended: false,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Ok(sse(stream))
}

/// A log line as the pages show it: `[key] stream: line` (the key when several instances).
pub(super) fn log_line_text(l: &LogLine, with_key: bool) -> String {
    let stream = match l.stream.as_str() {
        "stdout" => "",
        "stderr" => "stderr: ",
        _ => "engine: ",
    };
    if with_key {
        format!("[{} attempt {}] {stream}{}", l.key, l.attempt, l.line)
    } else {
        format!("{stream}{}", l.line)
    }
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// Lines after this number (what the page already shows); `Last-Event-ID` wins.
    after: Option<u64>,
}

/// `GET /ui/tasks/{id}/nodes/{node}/log/live`: the node's lines, then the ones to come until
/// the task ends.
pub async fn log(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, node)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, UiError> {
    visible_task(&state, &viewer.caller, &id).await?;
    let after = last_event_id(&headers).or(q.after).unwrap_or(0);
    struct Follow {
        state: AppState,
        id: String,
        node: String,
        after: u64,
        pending: std::collections::VecDeque<(u64, LogLine)>,
        /// Every line is read: what is pending goes out, then `end`.
        done: bool,
        ended: bool,
    }
    let follow = Follow {
        state,
        id,
        node,
        after,
        pending: Default::default(),
        done: false,
        ended: false,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some((n, line)) = f.pending.pop_front() {
                f.after = n;
                let data = json!({"text": log_line_text(&line, false)}).to_string();
                let event = Event::default().event("line").id(n.to_string()).data(data);
                return Some((Ok(event), f));
            }
            if f.done {
                if f.ended {
                    return None;
                }
                // Said once, after the last line: the page stops following.
                f.ended = true;
                return Some((Ok(Event::default().event("end").data("{}")), f));
            }
            let (i, k, after) = (f.id.clone(), f.node.clone(), f.after);
            let read = f
                .state
                .blocking(move |s| {
                    // Ended first, then read: lines stored before the end are all read.
                    let ended = s
                        .task_read(&i, ValueRead::Sizes)?
                        .is_none_or(|t| t.task_state().is_terminal());
                    Ok((ended, s.logs_after(&i, &k, after, LOG_BATCH)?))
                })
                .await;
            match read {
                Ok((ended, lines)) => {
                    let full = lines.len() == LOG_BATCH;
                    f.pending.extend(lines);
                    if ended && !full {
                        f.done = true;
                    } else if f.pending.is_empty() {
                        tokio::time::sleep(LOG_EVERY).await;
                    }
                }
                Err(_) => {
                    // The task is gone or the store fails: stop without `end`.
                    f.done = true;
                    f.ended = true;
                }
            }
        }
    });
    Ok(sse(stream))
}

/// `GET /ui/engine/live`: the engine page's figures, every two seconds.
pub async fn engine(State(state): State<AppState>, viewer: Viewer) -> Response {
    let caller = viewer.caller;
    let stream = futures::stream::unfold(
        (state, caller, None::<Value>),
        |(state, caller, last)| async move {
            loop {
                if last.is_some() {
                    tokio::time::sleep(ENGINE_EVERY).await;
                }
                let Ok(figures) = super::engine::figures(&state, &caller).await else {
                    tokio::time::sleep(ENGINE_EVERY).await;
                    continue;
                };
                if last.as_ref() == Some(&figures) {
                    continue;
                }
                let seq = crate::routes::pipelines::now_millis();
                let event = Event::default()
                    .event("engine")
                    .id(seq.to_string())
                    .data(figures.to_string());
                return Some((Ok(event), (state, caller, Some(figures))));
            }
        },
    );
    sse(stream)
}
