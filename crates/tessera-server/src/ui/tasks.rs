//! A task's page: its graph coloured by node state (with the state as text), its nodes'
//! timings and attempts, loop and batch progress, logs, the result (objects downloadable,
//! images shown), and cancel / resume / resume with a changed definition. Live through
//! `/ui/tasks/{id}/live` (see `live.rs`); everything reads without JavaScript.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use tessera_core::Pipeline;
use tessera_core::graph::{Annotation, SvgOptions};
use tessera_engine::inspect::{LoopSummary, TaskDocument, Values};

use super::html::{badge, count, duration, esc, json_block, seg, time};
use super::pipelines::shell as ui_page;
use super::session::Viewer;
use super::{UiError, forged};
use crate::error::ApiError;
use crate::routes::tasks::{cancel_task, resume_task, visible_task};
use crate::state::AppState;

/// Results up to this size are shown on the page; bigger ones are linked.
const RESULT_SHOWN: u64 = 1 << 20;
/// Failed items and skipped lines listed on the page (the API pages through all).
const LISTED: usize = 20;
/// Lines of a node's log a page shows, the last ones.
const LOG_LINES_SHOWN: usize = 10_000;

/// A stored definition as a pipeline (for its graph).
pub(super) fn parse_definition(
    _state: &AppState,
    definition: &Value,
) -> Result<Pipeline, ApiError> {
    let mut report = tessera_core::Report::default();
    tessera_core::parse::pipeline_from_value(definition, &mut report)
        .ok_or_else(|| ApiError::Internal(format!("a stored definition does not parse: {report}")))
}

/// The pipeline's graph for a page: left to right, each node linked to its definition.
pub(super) fn graph_svg(
    pipeline: &Pipeline,
    annotate: &dyn Fn(&str) -> Option<Annotation>,
) -> String {
    let link = |id: &str| Some(format!("#node-{id}"));
    tessera_core::graph::to_svg_with(
        pipeline,
        &SvgOptions {
            left_to_right: true,
            annotate,
            link: &link,
        },
    )
}

/// What the graph says of each node of a task (its state, attempts, a loop's progress), by
/// key: built once, so that drawing or sending a 2,000-node task costs lookups, not scans.
pub(super) fn annotations(doc: &TaskDocument) -> HashMap<&str, Annotation> {
    let loops: HashMap<&str, &LoopSummary> =
        doc.loops.iter().map(|l| (l.key.as_str(), l)).collect();
    doc.nodes
        .iter()
        .map(|node| {
            let text = match loops.get(node.key.as_str()) {
                Some(l) => loop_text(l),
                None if node.attempts > 1 => {
                    format!("{} · {} attempts", node.state, node.attempts)
                }
                None => node.state.to_string(),
            };
            let state = static_state(node.state.as_str());
            (node.key.as_str(), Annotation { state, text })
        })
        .collect()
}

/// A node state as the closed word CSS knows.
pub(super) fn static_state(state: &str) -> &'static str {
    match state {
        "pending" => "pending",
        "waiting" => "waiting",
        "ready" => "ready",
        "running" => "running",
        "finished" => "finished",
        "failed" => "failed",
        "skipped" => "skipped",
        "cancelled" => "cancelled",
        _ => "other",
    }
}

/// Items of a loop that ended, well or not.
pub(super) fn loop_done(l: &LoopSummary) -> u64 {
    l.counts
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "finished" | "failed"))
        .map(|(_, n)| n)
        .sum()
}

/// `412 of 1,000 items · 3 failed`.
pub(super) fn loop_text(l: &LoopSummary) -> String {
    let done = loop_done(l);
    let mut text = match l.items {
        Some(items) => format!("{} of {} items", count(done), count(items)),
        None => format!("{} items done", count(done)),
    };
    if let Some(failed) = l.counts.get("failed").filter(|n| **n > 0) {
        let _ = write!(text, " · {} failed", count(*failed));
    }
    text
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let task = visible_task(&state, &viewer.caller, &id).await?;
    let i = id.clone();
    let doc = state
        .blocking(move |s| {
            tessera_engine::inspect::task_document(s, &i, Values::Sizes).map_err(engine_store)
        })
        .await?;
    let pipeline = parse_definition(&state, &task.definition).ok();
    let mut b = String::new();
    let terminal = doc.state.is_terminal();
    let _ = write!(
        b,
        "<div class=\"task\" data-task=\"{}\" data-live=\"{}\">\n<h1>Task <code>{}</code></h1>\n\
         <p class=\"lead\">Pipeline <a href=\"/ui/pipelines/{}\">{}</a> · <span id=\"task-state\">{}</span> · \
         created {} · updated <span id=\"task-updated\">{}</span></p>\n",
        esc(&doc.id),
        if terminal { "" } else { "on" },
        esc(&doc.id),
        seg(&doc.pipeline),
        esc(&doc.pipeline),
        badge(doc.state.as_str()),
        time(Some(doc.created_at)),
        time(Some(doc.updated_at)),
    );
    let _ = write!(
        b,
        "<p id=\"task-error\" class=\"error\" role=\"alert\"{}>{}</p>\n",
        if doc.error.is_some() { "" } else { " hidden" },
        esc(doc.error.as_deref().unwrap_or(""))
    );
    b.push_str(&actions(&doc, &viewer, &task.definition));
    if let Some(p) = &pipeline {
        let notes = annotations(&doc);
        let svg = graph_svg(p, &|nid| notes.get(nid).cloned());
        let _ = write!(
            b,
            "<section class=\"graph\" aria-label=\"graph\"><h2>Graph</h2><div class=\"graph-box\">{svg}</div></section>\n"
        );
    }
    b.push_str(&nodes_table(&doc));
    b.push_str(&loops_section(&doc));
    b.push_str(&batches_section(&doc));
    let live_rasters = state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&doc.id)
        .map(|h| h.progress().rasters);
    b.push_str(&rasters_section(&doc, live_rasters.as_deref()));
    b.push_str(&result_section(&state, &doc).await?);
    b.push_str(&input_section(&doc));
    b.push_str(&super::pipelines::node_definitions(&task.definition, true));
    b.push_str("</div>\n");
    Ok(ui_page(
        &state,
        &viewer,
        &format!("Task {}", short(&doc.id)),
        "pipelines",
        b,
    )
    .into_response())
}

fn short(id: &str) -> &str {
    id.char_indices().nth(8).map_or(id, |(at, _)| &id[..at])
}

/// The engine's errors as the store's, for [`AppState::blocking`].
pub(super) fn engine_store(e: tessera_engine::EngineError) -> tessera_store::StoreError {
    match e {
        tessera_engine::EngineError::Store(s) => s,
        tessera_engine::EngineError::NotFound(id) => {
            tessera_store::StoreError::NotFound { what: "task", id }
        }
        other => tessera_store::StoreError::Corrupt {
            what: "task".into(),
            detail: other.to_string(),
        },
    }
}

fn actions(doc: &TaskDocument, viewer: &Viewer, definition: &Value) -> String {
    let mut s = String::from("<div class=\"actions\">");
    let csrf = esc(&viewer.csrf);
    if !doc.state.is_terminal() {
        let _ = write!(
            s,
            "<form method=\"post\" action=\"/ui/tasks/{}/cancel\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"danger\">Cancel</button></form>",
            seg(&doc.id)
        );
    }
    if matches!(doc.state.as_str(), "failed" | "cancelled") {
        let _ = write!(
            s,
            "<form method=\"post\" action=\"/ui/tasks/{}/resume\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Resume</button></form>",
            seg(&doc.id)
        );
    }
    s.push_str("</div>\n");
    let admin = viewer.caller.role == crate::auth::Role::Admin;
    if matches!(doc.state.as_str(), "failed" | "cancelled") && !admin {
        // A changed definition is a new pipeline: an admin's to bring.
        let _ = write!(
            s,
            "<details class=\"fix\"><summary>Resume with a new input…</summary>\
             <form method=\"post\" action=\"/ui/tasks/{}/resume\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"fix-input\">New input (JSON)</label>\
             <textarea id=\"fix-input\" name=\"input\" rows=\"4\" spellcheck=\"false\"></textarea>\
             <button type=\"submit\">Resume with it</button></form></details>\n",
            seg(&doc.id)
        );
    }
    if matches!(doc.state.as_str(), "failed" | "cancelled") && admin {
        let _ = write!(
            s,
            "<details class=\"fix\"><summary>Resume with a changed definition…</summary>\
             <form method=\"post\" action=\"/ui/tasks/{}/resume\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"fix-pipeline\">Definition (YAML or JSON); nodes that did not change and finished are not run again</label>\
             <textarea id=\"fix-pipeline\" name=\"pipeline\" rows=\"14\" spellcheck=\"false\">{}</textarea>\
             <label for=\"fix-input\">New input (JSON, optional)</label>\
             <textarea id=\"fix-input\" name=\"input\" rows=\"4\" spellcheck=\"false\"></textarea>\
             <button type=\"submit\">Resume with these</button></form></details>\n",
            seg(&doc.id),
            esc(&serde_yaml_ng::to_string(definition).unwrap_or_default())
        );
    }
    s
}

fn nodes_table(doc: &TaskDocument) -> String {
    let mut s = String::from(
        "<section id=\"nodes\"><h2>Nodes</h2><div class=\"table-wrap\"><table class=\"nodes\"><thead><tr>\
         <th scope=\"col\">Node</th><th scope=\"col\">Type</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Attempts</th><th scope=\"col\">Started</th><th scope=\"col\">Took</th>\
         <th scope=\"col\">Error</th><th scope=\"col\">Log</th></tr></thead><tbody>",
    );
    for n in &doc.nodes {
        let _ = write!(
            s,
            "<tr data-key=\"{}\"><th scope=\"row\"><code>{}</code></th><td>{}</td><td class=\"state\">{}</td>\
             <td class=\"attempts\">{}{}</td><td class=\"started\">{}</td><td class=\"took\">{}</td>\
             <td class=\"err\">{}</td><td><a href=\"/ui/tasks/{}/nodes/{}/log\">log</a></td></tr>",
            esc(&n.key),
            esc(&n.key),
            esc(&n.node_type),
            badge(n.state.as_str()),
            n.attempts,
            if n.iterations > 1 {
                format!(" · {} iterations", n.iterations)
            } else {
                String::new()
            },
            time(n.started_at),
            duration(n.duration_ms),
            esc(n.error.as_deref().unwrap_or("")),
            seg(&doc.id),
            seg(&n.key),
        );
    }
    s.push_str("</tbody></table></div></section>\n");
    s
}

fn loops_section(doc: &TaskDocument) -> String {
    if doc.loops.is_empty() {
        return String::new();
    }
    let mut s = String::from("<section id=\"loops\"><h2>Loops</h2>\n");
    for l in &doc.loops {
        let done = loop_done(l);
        let _ = write!(
            s,
            "<div class=\"loop\" data-loop=\"{}\"><h3><code>{}</code> <span class=\"note\">{}</span></h3>\
             <p><progress max=\"{}\" value=\"{done}\"></progress> <span class=\"loop-text\">{}</span></p><ul class=\"counts\">",
            esc(&l.key),
            esc(&l.key),
            if l.mode == "chunks" {
                "items evaluated in chunks"
            } else {
                "one branch per item"
            },
            l.items.unwrap_or(done.max(1)),
            esc(&loop_text(l)),
        );
        for (state, n) in &l.counts {
            let _ = write!(s, "<li>{} {}</li>", badge(state), count(*n));
        }
        s.push_str("</ul>");
        if !l.failed.is_empty() {
            s.push_str("<h4>Failed items</h4><ul class=\"failed\">");
            for f in l.failed.iter().take(LISTED) {
                let _ = write!(
                    s,
                    "<li>item {} · <a href=\"/ui/tasks/{}/nodes/{}/log\"><code>{}</code></a>: {}</li>",
                    f.index,
                    seg(&doc.id),
                    seg(&f.node),
                    esc(&f.node),
                    esc(&f.error)
                );
            }
            s.push_str("</ul>");
        }
        let _ = write!(
            s,
            "<p class=\"note\">Every item: <a href=\"/api/v1/tasks/{0}/nodes/{1}/items\">items</a> · \
             <a href=\"/api/v1/tasks/{0}/nodes/{1}/items?state=failed\">failed items</a> (JSON, paged)</p></div>\n",
            seg(&doc.id),
            seg(&l.key)
        );
    }
    s.push_str("</section>\n");
    s
}

fn batches_section(doc: &TaskDocument) -> String {
    if doc.batches.is_empty() {
        return String::new();
    }
    let mut s = String::from("<section id=\"batches\"><h2>Batches</h2>\n");
    for job in &doc.batches {
        let c = &job["counts"];
        let committed = c["chunk_states"]["committed"].as_u64().unwrap_or(0);
        let chunks = c["chunks"].as_u64().unwrap_or(0);
        let _ = write!(
            s,
            "<div class=\"batch\" data-batch=\"{}\"><h3><code>{}</code> {}</h3>\
             <p><progress max=\"{}\" value=\"{committed}\"></progress> {} of {} chunks committed · \
             {} read · {} written · {} skipped · {} filtered</p>",
            esc(job["key"].as_str().unwrap_or("")),
            esc(job["key"].as_str().unwrap_or("")),
            badge(job["state"].as_str().unwrap_or("other")),
            chunks.max(1),
            count(committed),
            count(chunks),
            count(c["read"].as_u64().unwrap_or(0)),
            count(c["written"].as_u64().unwrap_or(0)),
            count(c["skipped"].as_u64().unwrap_or(0)),
            count(c["filtered"].as_u64().unwrap_or(0)),
        );
        let lines = job["lines"].as_array().map_or(&[][..], |v| v);
        if !lines.is_empty() {
            s.push_str("<h4>Skipped or failed lines</h4><ul class=\"failed\">");
            for l in lines.iter().take(LISTED) {
                let _ = write!(
                    s,
                    "<li>line {}: {}</li>",
                    esc(&l["line"].to_string()),
                    esc(l["error"].as_str().unwrap_or(&l.to_string()))
                );
            }
            if lines.len() > LISTED {
                let _ = write!(
                    s,
                    "<li>… and {} more</li>",
                    count((lines.len() - LISTED) as u64)
                );
            }
            s.push_str("</ul>");
        }
        s.push_str("</div>\n");
    }
    s.push_str("</section>\n");
    s
}

/// Each raster node: its tile map while this server runs it; what its tiles were once done.
fn rasters_section(
    doc: &TaskDocument,
    // `Some` when this process runs the task: the tile maps of its raster jobs so far.
    live: Option<&[tessera_core::scheduler::RasterProgress]>,
) -> String {
    let here = live.is_some();
    let live = live.unwrap_or_default();
    let rasters: Vec<_> = doc
        .nodes
        .iter()
        .filter(|n| n.node_type == "raster")
        .collect();
    if rasters.is_empty() {
        return String::new();
    }
    let mut s = String::from("<section id=\"rasters\"><h2>Rasters</h2>\n");
    for n in rasters {
        if let Some(r) = live.iter().find(|r| r.key == n.key)
            && n.state.as_str() != "finished"
        {
            s.push_str(&super::tiles::map(r));
            continue;
        }
        let output = doc
            .runs
            .iter()
            .rev()
            .find(|r| r.key == n.key && r.output.is_some())
            .and_then(|r| r.output.as_ref())
            .map(|o| o.clone().into_value());
        let text = match (&output, n.state.as_str()) {
            (Some(o), "finished") => format!(
                "{} × {} pixels · {} {} tiles, {} computed, {} reused from the cache",
                o["width"],
                o["height"],
                count(o["tiles"]["total"].as_u64().unwrap_or(0)),
                esc(o["tiles"]["tiling"].as_str().unwrap_or("")),
                count(o["tiles"]["computed"].as_u64().unwrap_or(0)),
                count(o["tiles"]["reused"].as_u64().unwrap_or(0)),
            ),
            // Its map comes with the first tile (the page's script draws it then).
            (_, "running") if here => "starting…".into(),
            (_, "running") => {
                "running elsewhere: its tile map is drawn on the server that runs it".into()
            }
            (_, state) => esc(state).to_string(),
        };
        let _ = write!(
            s,
            "<div class=\"raster\" data-raster=\"{}\"><h3><code>{}</code></h3><p class=\"raster-text\">{text}</p></div>\n",
            esc(&n.key),
            esc(&n.key)
        );
    }
    s.push_str("</section>\n");
    s
}

async fn result_section(state: &AppState, doc: &TaskDocument) -> Result<String, UiError> {
    if doc.state.as_str() != "finished" {
        return Ok(String::new());
    }
    let mut s = String::from("<section id=\"result\"><h2>Result</h2>\n");
    if let Some(bytes) = doc.result_bytes.filter(|b| *b > RESULT_SHOWN) {
        let _ = write!(
            s,
            "<p>The result is {} bytes: <a href=\"/api/v1/tasks/{}/result\">download it</a>.</p></section>\n",
            count(bytes),
            seg(&doc.id)
        );
        return Ok(s);
    }
    let result = match &doc.result {
        Some(r) => r.clone(),
        None => {
            let i = doc.id.clone();
            state
                .blocking(move |st| st.task(&i))
                .await?
                .and_then(|t| t.result)
                .unwrap_or_default()
        }
    };
    let mut value = result.into_value();
    crate::routes::link_objects(&mut value);
    let mut objects = Vec::new();
    collect_objects(&value, &mut objects);
    for o in &objects {
        let url = o["url"].as_str().unwrap_or("");
        let name = o["name"].as_str().unwrap_or("object");
        let ctype = o["content_type"].as_str().unwrap_or("");
        let _ = write!(
            s,
            "<figure class=\"object\">{}<figcaption><a href=\"{}\" download=\"{}\">Download {}</a> · {} · {} bytes</figcaption></figure>\n",
            if ctype.starts_with("image/") {
                format!(
                    "<img src=\"{}\" alt=\"{}\" loading=\"lazy\">",
                    esc(url),
                    esc(name)
                )
            } else {
                String::new()
            },
            esc(url),
            esc(name),
            esc(name),
            esc(ctype),
            count(o["size"].as_u64().unwrap_or(0)),
        );
    }
    s.push_str(&json_block(&value, 256 * 1024));
    let _ = write!(
        s,
        "<p class=\"note\"><a href=\"/api/v1/tasks/{}/result\">The result as JSON</a></p></section>\n",
        seg(&doc.id)
    );
    Ok(s)
}

/// The task's input (a big one by its size, with where to read it whole).
fn input_section(doc: &TaskDocument) -> String {
    let body = match doc.input_bytes {
        Some(bytes) => format!(
            "<p>The input is {} bytes: <a href=\"/api/v1/tasks/{}?values=full\">the task with its input whole</a> (JSON).</p>",
            count(bytes),
            seg(&doc.id)
        ),
        None => json_block(&doc.input.clone().into_value(), 64 * 1024),
    };
    format!("<section id=\"input\"><h2>Input</h2>{body}</section>\n")
}

/// Object references (`{"$object": …}`) anywhere in a value, in order.
fn collect_objects<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) if m.contains_key("$object") => out.push(v),
        Value::Object(m) => m.values().for_each(|x| collect_objects(x, out)),
        Value::Array(items) => items.iter().for_each(|x| collect_objects(x, out)),
        _ => {}
    }
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    /// A changed definition (YAML or JSON text), for a resume.
    pipeline: Option<String>,
    /// A new input (JSON), for a resume.
    input: Option<String>,
}

pub async fn cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, UiError> {
    if !super::session::csrf_ok(&headers, form.csrf.as_deref()) {
        return Err(forged());
    }
    cancel_task(&state, &viewer.caller, &id, "cancelled from the web UI").await?;
    Ok(Redirect::to(&format!("/ui/tasks/{}", seg(&id))).into_response())
}

pub async fn resume(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, UiError> {
    if !super::session::csrf_ok(&headers, form.csrf.as_deref()) {
        return Err(forged());
    }
    // The API's resume body, from the form's fields (blank ones say "unchanged").
    let mut body = serde_json::Map::new();
    if let Some(p) = form.pipeline.filter(|p| !p.trim().is_empty()) {
        body.insert("pipeline".into(), Value::String(p));
    }
    if let Some(i) = form.input.filter(|i| !i.trim().is_empty()) {
        match serde_json::from_str::<Value>(&i) {
            Ok(v) => {
                body.insert("input".into(), v);
            }
            Err(e) => {
                body.insert("input".into(), Value::String(i));
                let e = ApiError::bad_request(format!("the new input is not JSON: {e}"));
                return Ok(resume_refused(&state, &viewer, &id, &body, e));
            }
        }
    }
    let bytes = if body.is_empty() {
        Vec::new()
    } else {
        Value::Object(body.clone()).to_string().into_bytes()
    };
    match resume_task(&state, &viewer.caller, &id, &bytes).await {
        Ok(()) => Ok(Redirect::to(&format!("/ui/tasks/{}", seg(&id))).into_response()),
        Err(e) => Ok(resume_refused(&state, &viewer, &id, &body, e)),
    }
}

/// A refused resume: why (each problem of a changed definition or input listed), and the
/// form again with what was sent.
fn resume_refused(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    sent: &serde_json::Map<String, Value>,
    e: ApiError,
) -> Response {
    let public = e.public();
    let mut b = format!(
        "<h1>Resume refused</h1>\n<p class=\"lead\">Task <a href=\"/ui/tasks/{}\"><code>{}</code></a></p>\n\
         <div class=\"error\" role=\"alert\"><p>{}</p>",
        seg(id),
        esc(id),
        esc(&public.message)
    );
    if let Some(list) = public.details.as_array().filter(|l| !l.is_empty()) {
        b.push_str("<ul>");
        for d in list {
            let place = [d["node"].as_str(), d["field"].as_str(), d["path"].as_str()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · ");
            let msg = d["message"]
                .as_str()
                .map_or_else(|| d.to_string(), str::to_string);
            let _ = write!(b, "<li><code>{}</code> {}</li>", esc(&place), esc(&msg));
        }
        b.push_str("</ul>");
    }
    b.push_str("</div>\n");
    let text = |k: &str| match sent.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/ui/tasks/{}/resume\" class=\"run\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"fix-pipeline\">Definition (YAML or JSON; blank: unchanged)</label>\
         <textarea id=\"fix-pipeline\" name=\"pipeline\" rows=\"14\" spellcheck=\"false\">{}</textarea>\
         <label for=\"fix-input\">New input (JSON; blank: unchanged)</label>\
         <textarea id=\"fix-input\" name=\"input\" rows=\"4\" spellcheck=\"false\">{}</textarea>\
         <button type=\"submit\">Resume with these</button></form>\n",
        seg(id),
        esc(&viewer.csrf),
        esc(&text("pipeline")),
        esc(&text("input")),
    );
    let mut page = ui_page(state, viewer, "Resume refused", "pipelines", b);
    page.status = public.status;
    page.into_response()
}

/// A node's log: its lines so far, then (with JavaScript) the lines to come, live.
pub async fn log_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, node)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let task = visible_task(&state, &viewer.caller, &id).await?;
    let (i, n) = (id.clone(), node.clone());
    let engine = state.engine.clone();
    let running = !task.task_state().is_terminal();
    // One instance's lines come with their numbers, so that the live view goes on from the
    // last one shown; a loop's (several instances) are shown as they are.
    let (logs, last) = tokio::task::spawn_blocking(move || {
        let store = engine.store();
        let mut logs = tessera_engine::node_logs::node_logs(store.as_ref(), &i, &n)?;
        let last = match (logs.keys.clone().as_slice(), logs.instances) {
            // Shown and followed from one read: no line is missed or shown twice.
            ([key], false) if running => {
                let numbered = store.logs_after(&i, key, 0, usize::MAX >> 1)?;
                let last = numbered.last().map_or(0, |(n, _)| *n);
                logs.lines = numbered.into_iter().map(|(_, l)| l).collect();
                Some(last)
            }
            _ => None,
        };
        Ok::<_, tessera_engine::EngineError>((logs, last))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Log of <code>{}</code></h1>\n<p class=\"lead\">Task <a href=\"/ui/tasks/{}\"><code>{}</code></a> · {}</p>\n",
        esc(&node),
        seg(&id),
        esc(&id),
        badge(task.state.as_str())
    );
    let live = match (last, logs.keys.first()) {
        (Some(after), Some(key)) => format!(
            " data-live=\"on\" data-src=\"/ui/tasks/{}/nodes/{}/log/live\" data-after=\"{after}\"",
            seg(&id),
            seg(key)
        ),
        _ => String::new(),
    };
    // A page shows the last lines of a long log; the API gives them all.
    let skipped = logs.lines.len().saturating_sub(LOG_LINES_SHOWN);
    if skipped > 0 {
        let _ = write!(
            b,
            "<p class=\"note\">The first {} lines are left out: <a href=\"/api/v1/tasks/{}/nodes/{}/log\">the whole log</a> (JSON).</p>",
            count(skipped as u64),
            seg(&id),
            seg(&node)
        );
    }
    let _ = write!(b, "<pre class=\"log\" id=\"log\"{live}>");
    let mut text = String::new();
    for l in &logs.lines[skipped..] {
        let _ = writeln!(text, "{}", super::live::log_line_text(l, logs.instances));
    }
    b.push_str(&esc(&text).to_string());
    b.push_str("</pre>\n");
    if logs.lines.is_empty() {
        let none = if running { "No line yet." } else { "No line." };
        let _ = write!(b, "<p class=\"note\" id=\"log-empty\">{none}</p>");
    }
    Ok(ui_page(&state, &viewer, &format!("Log of {node}"), "pipelines", b).into_response())
}
