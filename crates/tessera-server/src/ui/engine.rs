//! The engine page: task totals overall, per pipeline and per service; the services known
//! from their announcements; the processes running tasks (servers and workers) with their
//! leases, pools and heartbeats; named pools in use and the queue of tasks waiting. Live
//! through `/ui/engine/live`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use serde_json::{Value, json};

use super::UiError;
use super::html::{Page, count, esc};
use super::session::Viewer;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::routes::pipelines::now_millis;
use crate::state::AppState;

const STATES: [&str; 5] = ["pending", "running", "finished", "failed", "cancelled"];

/// The page's figures as JSON: what the page shows and what its live updates carry.
pub(super) async fn figures(state: &AppState, caller: &Caller) -> Result<Value, UiError> {
    caller.require(&[Role::Admin, Role::User])?;
    let owner = caller.owner_filter();
    let (stats, services, pools) = state
        .blocking(move |s| {
            Ok((
                s.task_stats(owner.as_deref())?,
                s.list_services()?,
                s.pool_usage(now_millis())?,
            ))
        })
        .await?;
    let engine = state.engine.clone();
    let workers = tokio::task::spawn_blocking(move || engine.workers())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut totals: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
    let mut per: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for r in &stats {
        *totals.entry(r.state.as_str()).or_default() += r.count;
        *per.entry(r.pipeline.as_str())
            .or_default()
            .entry(r.state.as_str())
            .or_default() += r.count;
    }
    let in_process = state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    // Per service: the tasks of its automatic pipelines (`name/endpoint`), one pass.
    let mut per_service: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for (pipeline, counts) in &per {
        if let Some((service, _)) = pipeline.split_once('/') {
            let entry = per_service.entry(service).or_default();
            for (state, n) in counts {
                *entry.entry(state).or_default() += n;
            }
        }
    }
    Ok(json!({
        "totals": totals,
        "queued": totals.get("pending").copied().unwrap_or(0),
        "in_process": in_process,
        "pipelines": per,
        "services": services.iter().map(|s| json!({
            "name": s.name, "url": s.url,
            "endpoints": s.endpoints.as_array().map_or(0, Vec::len),
            "last_seen": tessera_core::time::json(Some(s.last_seen)),
            "tasks": per_service.get(s.name.as_str()),
        })).collect::<Vec<_>>(),
        "workers": workers,
        "pools": pools.iter().map(|(p, n)| json!({"pool": p, "in_use": n})).collect::<Vec<_>>(),
    }))
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Page, UiError> {
    let f = figures(&state, &viewer.caller).await?;
    let mut b = String::from("<div class=\"engine\" data-live=\"on\">\n<h1>Engine</h1>\n");
    // Totals.
    b.push_str("<section id=\"totals\"><h2>Tasks</h2><dl class=\"totals\">");
    for s in STATES {
        let _ = write!(
            b,
            "<div><dt>{s}</dt><dd data-total=\"{s}\">{}</dd></div>",
            count(f["totals"][s].as_u64().unwrap_or(0))
        );
    }
    let _ = write!(
        b,
        "<div><dt>queued (waiting for a runner)</dt><dd data-figure=\"queued\">{}</dd></div>\
         <div><dt>driven by this server (everyone's)</dt><dd data-figure=\"in_process\">{}</dd></div></dl></section>\n",
        count(f["queued"].as_u64().unwrap_or(0)),
        count(f["in_process"].as_u64().unwrap_or(0)),
    );
    // Per pipeline.
    b.push_str(
        "<section id=\"per-pipeline\"><h2>Per pipeline</h2><div class=\"table-wrap\"><table><thead><tr>\
         <th scope=\"col\">Pipeline</th>",
    );
    for s in STATES {
        let _ = write!(b, "<th scope=\"col\">{s}</th>");
    }
    b.push_str("</tr></thead><tbody id=\"pipeline-rows\">");
    b.push_str(&pipeline_rows(&f["pipelines"]));
    b.push_str("</tbody></table></div></section>\n");
    // Services.
    b.push_str(
        "<section id=\"services\"><h2>Services</h2><div class=\"table-wrap\"><table><thead><tr>\
         <th scope=\"col\">Service</th><th scope=\"col\">URL</th><th scope=\"col\">Endpoints</th>\
         <th scope=\"col\">Last announcement</th><th scope=\"col\">Tasks</th></tr></thead><tbody id=\"service-rows\">",
    );
    b.push_str(&service_rows(&f["services"]));
    b.push_str("</tbody></table></div></section>\n");
    // Workers.
    b.push_str(
        "<section id=\"workers\"><h2>Processes running tasks</h2><div class=\"table-wrap\"><table><thead><tr>\
         <th scope=\"col\">Runner</th><th scope=\"col\">Started</th><th scope=\"col\">Heartbeat</th>\
         <th scope=\"col\">Tasks held</th><th scope=\"col\">Leases until</th><th scope=\"col\">Limits and pools</th></tr></thead>\
         <tbody id=\"worker-rows\">",
    );
    b.push_str(&worker_rows(&f["workers"]));
    b.push_str("</tbody></table></div></section>\n");
    // Pools.
    b.push_str("<section id=\"pools\"><h2>Named pools in use</h2><ul id=\"pool-rows\">");
    b.push_str(&pool_rows(&f["pools"]));
    b.push_str("</ul></section>\n</div>\n");
    Ok(super::pipelines::shell(
        &state, &viewer, "Engine", "engine", b,
    ))
}

/// Rows of the tables, also rendered by the page's script from live figures (same markup).
pub(super) fn pipeline_rows(per: &Value) -> String {
    let mut s = String::new();
    for (name, counts) in per.as_object().into_iter().flatten() {
        let _ = write!(
            s,
            "<tr><th scope=\"row\"><a href=\"/ui/pipelines/{}\">{}</a></th>",
            super::html::seg(name),
            esc(name)
        );
        for st in STATES {
            let _ = write!(s, "<td>{}</td>", count(counts[st].as_u64().unwrap_or(0)));
        }
        s.push_str("</tr>");
    }
    if s.is_empty() {
        s.push_str("<tr><td colspan=\"6\" class=\"note\">No task yet.</td></tr>");
    }
    s
}

fn service_rows(services: &Value) -> String {
    let mut s = String::new();
    for v in services.as_array().into_iter().flatten() {
        let tasks: u64 = v["tasks"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(v["name"].as_str().unwrap_or("")),
            esc(v["url"].as_str().unwrap_or("")),
            v["endpoints"],
            esc(v["last_seen"].as_str().unwrap_or("")),
            count(tasks)
        );
    }
    if s.is_empty() {
        s.push_str(
            "<tr><td colspan=\"5\" class=\"note\">No service has announced itself.</td></tr>",
        );
    }
    s
}

fn worker_rows(workers: &Value) -> String {
    let mut s = String::new();
    for w in workers.as_array().into_iter().flatten() {
        let _ = write!(
            s,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(w["runner"].as_str().unwrap_or("")),
            esc(w["started_at"].as_str().unwrap_or("")),
            esc(w["heartbeat_at"].as_str().unwrap_or("")),
            count(w["held"].as_u64().unwrap_or(0)),
            esc(w["leases_until"].as_str().unwrap_or("—")),
            esc(&w["pools"].to_string()),
        );
    }
    if s.is_empty() {
        s.push_str(
            "<tr><td colspan=\"6\" class=\"note\">No process has run tasks lately.</td></tr>",
        );
    }
    s
}

fn pool_rows(pools: &Value) -> String {
    let mut s = String::new();
    for p in pools.as_array().into_iter().flatten() {
        let _ = write!(
            s,
            "<li><code>{}</code>: {} slot(s) in use</li>",
            esc(p["pool"].as_str().unwrap_or("")),
            count(p["in_use"].as_u64().unwrap_or(0))
        );
    }
    if s.is_empty() {
        s.push_str("<li class=\"note\">No named pool slot is taken.</li>");
    }
    s
}
