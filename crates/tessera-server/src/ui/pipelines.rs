//! The pipelines list (`/`) and a pipeline's page: its graph with the definition beside it,
//! each node's definition, its schedule, and its tasks page by page.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use tessera_store::{TaskFilter, TaskSummary};

use super::html::{Page, badge, count, esc, json_block, seg, text_block, time};
use super::session::Viewer;
use super::{UiError, forged};
use crate::auth::Role;
use crate::error::ApiError;
use crate::routes::pipelines::{api_text, now_millis, unavailable_services};
use crate::state::AppState;

/// Pipelines per page of the list.
const PIPELINES_PER_PAGE: usize = 50;
/// Runs in a pipeline's strip of recent runs.
const RECENT_RUNS: usize = 12;
/// Tasks per page of a pipeline's tasks.
const TASKS_PER_PAGE: usize = 25;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<usize>,
}

/// `/`: every pipeline with its route, summary, schedule, services, counts and recent runs.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Page, UiError> {
    let owner = viewer.caller.owner_filter();
    let page_no = q.page.unwrap_or(0);
    let scripts = state.engine.scripts().clone();
    let (rows, stats, schedules, recent, announced) = state
        .blocking(move |s| {
            let announced: std::collections::HashSet<String> =
                s.list_services()?.into_iter().map(|r| r.name).collect();
            let rows = s.list_pipelines()?;
            let stats = s.task_stats(owner.as_deref())?;
            let schedules = tessera_engine::schedules::schedule_views(s, &scripts, now_millis())?;
            let shown: Vec<_> = rows
                .iter()
                .skip(page_no * PIPELINES_PER_PAGE)
                .take(PIPELINES_PER_PAGE)
                .map(|p| p.name.clone())
                .collect();
            let mut recent = HashMap::new();
            for name in shown {
                let tasks = s.list_tasks(&TaskFilter {
                    pipeline: Some(name.clone()),
                    limit: RECENT_RUNS,
                    owner: owner.clone(),
                    ..TaskFilter::default()
                })?;
                recent.insert(name, tasks);
            }
            Ok((rows, stats, schedules, recent, announced))
        })
        .await?;
    let mut counts: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
    for s in &stats {
        *counts
            .entry(s.pipeline.as_str())
            .or_default()
            .entry(s.state.as_str())
            .or_default() += s.count;
    }
    let schedule_of: HashMap<&str, Value> = schedules
        .iter()
        .map(|v| {
            (
                v.pipeline.as_str(),
                serde_json::to_value(v).unwrap_or_default(),
            )
        })
        .collect();
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Pipelines</h1>\n<p class=\"lead\">{} pipeline{}. Each runs as <code>POST /api/v1/services/ROUTE</code>.</p>\n",
        count(rows.len() as u64),
        if rows.len() == 1 { "" } else { "s" }
    );
    if rows.is_empty() {
        b.push_str(
            "<p>No pipeline yet: create one with <code>POST /api/v1/pipelines</code> \
             (a YAML or JSON document), or start a service that announces itself.</p>",
        );
    }
    b.push_str(
        "<div class=\"table-wrap\"><table class=\"pipelines\">\n<thead><tr><th scope=\"col\">Pipeline</th>\
         <th scope=\"col\">Schedule</th><th scope=\"col\">Services</th><th scope=\"col\">Tasks</th>\
         <th scope=\"col\">Recent runs</th></tr></thead>\n<tbody>\n",
    );
    for p in rows
        .iter()
        .skip(page_no * PIPELINES_PER_PAGE)
        .take(PIPELINES_PER_PAGE)
    {
        let (summary, _) = api_text(&p.definition);
        let href = format!("/ui/pipelines/{}", seg(&p.name));
        let _ = write!(
            b,
            "<tr><td><a class=\"name\" href=\"{href}\">{}</a>",
            esc(&p.name)
        );
        if let Some(s) = summary {
            let _ = write!(b, "<div class=\"summary\">{}</div>", esc(&s));
        }
        if p.source != "user" {
            let _ = write!(b, "<div class=\"note\">from {}</div>", esc(&p.source));
        }
        let _ = write!(
            b,
            "<div class=\"route\"><code>POST /api/v1/services/{}</code></div></td>",
            esc(&p.name)
        );
        b.push_str("<td>");
        b.push_str(&schedule_cell(schedule_of.get(p.name.as_str())));
        b.push_str("</td><td>");
        b.push_str(&services_cell(&state, &p.definition, &announced));
        b.push_str("</td><td class=\"counts\">");
        let c = counts.get(p.name.as_str());
        let n = |k: &str| c.and_then(|c| c.get(k)).copied().unwrap_or(0);
        let _ = write!(
            b,
            "<span>{} finished</span> <span>{} running</span> <span>{} failed</span>",
            count(n("finished")),
            count(n("running") + n("pending")),
            count(n("failed"))
        );
        b.push_str("</td><td>");
        b.push_str(&run_strip(recent.get(&p.name).map_or(&[][..], |v| v)));
        b.push_str("</td></tr>\n");
    }
    b.push_str("</tbody></table></div>\n");
    let pages = rows.len().div_ceil(PIPELINES_PER_PAGE);
    if pages > 1 {
        b.push_str("<nav class=\"pager\" aria-label=\"pages\">");
        if page_no > 0 {
            let _ = write!(b, "<a href=\"/?page={}\">Previous</a> ", page_no - 1);
        }
        let _ = write!(b, "<span>page {} of {pages}</span>", page_no + 1);
        if page_no + 1 < pages {
            let _ = write!(b, " <a href=\"/?page={}\">Next</a>", page_no + 1);
        }
        b.push_str("</nav>");
    }
    Ok(shell(&state, &viewer, "Pipelines", "pipelines", b))
}

/// A page with the viewer's name and CSRF token.
pub(super) fn shell(
    state: &AppState,
    viewer: &Viewer,
    title: &str,
    nav: &'static str,
    body: String,
) -> Page {
    let mut p = Page::new(title, nav, body);
    p.user = viewer.shown_name(state);
    p.csrf = viewer.csrf.clone();
    p
}

/// The services a pipeline calls and whether they answer: a name nobody announced, or a
/// service that stopped announcing, is unavailable; a pipeline calling none says so.
fn services_cell(
    state: &AppState,
    definition: &Value,
    announced: &std::collections::HashSet<String>,
) -> String {
    let called: Vec<(String, bool)> = crate::routes::pipelines::service_nodes(definition)
        .into_iter()
        .map(|n| {
            let target = n["service"].as_str().or(n["url"].as_str()).unwrap_or("?");
            (target.to_string(), n["service"].is_string())
        })
        .collect();
    if called.is_empty() {
        return "<span class=\"note\">calls none</span>".into();
    }
    let stopped = unavailable_services(state, definition);
    let missing: Vec<String> = called
        .iter()
        .filter_map(|(target, by_name)| {
            let name = target.split('/').next().unwrap_or(target);
            if stopped.contains(target) {
                Some(format!("{target} (stopped announcing)"))
            } else if *by_name && !announced.contains(name) {
                Some(format!("{target} (not announced)"))
            } else {
                None
            }
        })
        .collect();
    let names: Vec<&str> = called.iter().map(|(t, _)| t.as_str()).collect();
    if missing.is_empty() {
        format!(
            "{} <span class=\"note\">{}</span>",
            badge("available"),
            esc(&names.join(", "))
        )
    } else {
        format!(
            "{} <span class=\"note\">{}</span>",
            badge("unavailable"),
            esc(&missing.join(", "))
        )
    }
}

fn schedule_cell(view: Option<&Value>) -> String {
    let Some(v) = view else {
        return "<span class=\"note\">by hand</span>".into();
    };
    let cron = v["schedule"]["cron"].as_str().unwrap_or("?");
    let mut s = format!("<code>{}</code>", esc(cron));
    if v["paused"] == true {
        s.push(' ');
        s.push_str(&badge("paused"));
    } else if let Some(next) = v["next_tick"].as_str() {
        let _ = write!(
            s,
            " <span class=\"note\">next <time datetime=\"{0}\">{0}</time></span>",
            esc(next)
        );
    }
    s
}

/// Recent runs, newest first: a square per task with its state as text (for screen readers
/// and on hover) and as a symbol.
fn run_strip(tasks: &[TaskSummary]) -> String {
    if tasks.is_empty() {
        return "<span class=\"note\">none yet</span>".into();
    }
    let mut s = String::from("<ol class=\"strip\">");
    for t in tasks {
        let state = t.state.as_str();
        let symbol = match state {
            "finished" => "✓",
            "failed" => "✗",
            "running" => "▶",
            "cancelled" => "⊘",
            _ => "·",
        };
        let _ = write!(
            s,
            "<li><a class=\"run s-{}\" href=\"/ui/tasks/{}\" title=\"{} · {}\"><span aria-hidden=\"true\">{symbol}</span><span class=\"sr\">{} task {}</span></a></li>",
            super::html::css_word(state),
            seg(&t.id),
            esc(state),
            esc(&tessera_core::time::rfc3339(t.created_at)),
            esc(state),
            esc(&t.id.chars().take(8).collect::<String>()),
        );
    }
    s.push_str("</ol>");
    s
}

#[derive(Debug, Deserialize)]
pub struct PipelineQuery {
    /// Tasks created before this task (`created_at,id`): the next page of tasks.
    before: Option<String>,
    /// `yaml` (default) or `json`: the definition's form beside the graph.
    format: Option<String>,
}

/// A pipeline's page.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(q): Query<PipelineQuery>,
) -> Result<Page, UiError> {
    let before = match q.before.as_deref() {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            let shown: String = text.chars().take(40).filter(|c| !c.is_control()).collect();
            ApiError::bad_request(format!("`before` must be `created_at,id`, not `{shown}`"))
        })?),
    };
    let owner = viewer.caller.owner_filter();
    let scripts = state.engine.scripts().clone();
    let n = name.clone();
    let (row, tasks, schedule, announced) = state
        .blocking(move |s| {
            let announced: std::collections::HashSet<String> =
                s.list_services()?.into_iter().map(|r| r.name).collect();
            let row = s.pipeline(&n)?;
            let tasks = s.list_tasks(&TaskFilter {
                pipeline: Some(n.clone()),
                limit: TASKS_PER_PAGE + 1,
                owner,
                before,
                ..TaskFilter::default()
            })?;
            let schedule = tessera_engine::schedules::schedule_view(s, &scripts, &n, now_millis())?;
            Ok((row, tasks, schedule, announced))
        })
        .await?;
    let row = row.ok_or_else(|| ApiError::not_found("pipeline", &name))?;
    let pipeline = super::tasks::parse_definition(&state, &row.definition)?;
    let (summary, description) = api_text(&row.definition);
    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>\n", esc(&row.name));
    if let Some(s) = summary {
        let _ = write!(b, "<p class=\"lead\">{}</p>\n", esc(&s));
    }
    if let Some(d) = description {
        let _ = write!(b, "<p>{}</p>\n", esc(&d));
    }
    let _ = write!(
        b,
        "<p class=\"actions\"><a class=\"button\" href=\"/ui/pipelines/{}/run\">Run…</a> \
         <code>POST /api/v1/services/{}</code></p>\n<p>Services: {}</p>\n",
        seg(&row.name),
        esc(&row.name),
        services_cell(&state, &row.definition, &announced)
    );
    // The graph, and beside it the definition.
    let svg = super::tasks::graph_svg(&pipeline, &|_| None);
    let yaml = q.format.as_deref() != Some("json");
    let definition_text = if yaml {
        serde_yaml_ng::to_string(&row.definition).unwrap_or_default()
    } else {
        serde_json::to_string_pretty(&row.definition).unwrap_or_default()
    };
    let _ = write!(
        b,
        "<div class=\"split\">\n<section class=\"graph\" aria-label=\"graph\"><h2>Graph</h2>\
         <div class=\"graph-box\">{svg}</div>\
         <p class=\"note\">Select a node for its definition.</p></section>\n\
         <section class=\"definition\"><h2>Definition</h2><p class=\"tabs\">{} · {}</p>{}</section>\n</div>\n",
        if yaml {
            "<strong>YAML</strong>".to_string()
        } else {
            format!(
                "<a href=\"/ui/pipelines/{}?format=yaml\">YAML</a>",
                seg(&row.name)
            )
        },
        if yaml {
            format!(
                "<a href=\"/ui/pipelines/{}?format=json\">JSON</a>",
                seg(&row.name)
            )
        } else {
            "<strong>JSON</strong>".to_string()
        },
        text_block(&definition_text, 512 * 1024)
    );
    b.push_str(&node_definitions(&row.definition, yaml));
    // The schedule.
    if let Some(view) = schedule {
        let v = serde_json::to_value(&view).unwrap_or_default();
        let _ = write!(
            b,
            "<section id=\"schedule\"><h2>Schedule</h2><p>{} · last tick {} · {} active</p>",
            schedule_cell(Some(&v)),
            esc(v["last_tick"].as_str().unwrap_or("none yet")),
            view.active
        );
        if viewer.caller.role == Role::Admin {
            let (action, label) = if view.paused {
                ("resume", "Resume the schedule")
            } else {
                ("pause", "Pause the schedule")
            };
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/ui/pipelines/{}/schedule\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"action\" value=\"{action}\">\
                 <button type=\"submit\">{label}</button></form>",
                seg(&row.name),
                esc(&viewer.csrf)
            );
        }
        b.push_str("</section>\n");
    }
    // Its tasks.
    b.push_str("<section id=\"tasks\"><h2>Tasks</h2>\n");
    let more = tasks.len() > TASKS_PER_PAGE;
    b.push_str(&task_table(&tasks[..tasks.len().min(TASKS_PER_PAGE)]));
    if more || q.before.is_some() {
        b.push_str("<nav class=\"pager\" aria-label=\"tasks pages\">");
        if q.before.is_some() {
            let _ = write!(
                b,
                "<a href=\"/ui/pipelines/{}#tasks\">Newest tasks</a>",
                seg(&row.name)
            );
        }
        if more {
            let last = &tasks[TASKS_PER_PAGE - 1];
            let _ = write!(
                b,
                "<a href=\"/ui/pipelines/{}?before={},{}#tasks\">Older tasks</a>",
                seg(&row.name),
                last.created_at,
                seg(&last.id)
            );
        }
        b.push_str("</nav>");
    }
    b.push_str("</section>\n");
    Ok(shell(&state, &viewer, &row.name, "pipelines", b))
}

fn parse_cursor(text: &str) -> Option<(u64, String)> {
    let (t, id) = text.split_once(',')?;
    Some((t.parse().ok()?, id.to_string()))
}

/// Tasks as a table: id (linked), state, created, updated.
pub(super) fn task_table(tasks: &[TaskSummary]) -> String {
    if tasks.is_empty() {
        return "<p class=\"note\">No task.</p>".into();
    }
    let mut s = String::from(
        "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Task</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Created</th><th scope=\"col\">Updated</th></tr></thead><tbody>",
    );
    for t in tasks {
        let _ = write!(
            s,
            "<tr><td><a href=\"/ui/tasks/{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            seg(&t.id),
            esc(&t.id),
            badge(t.state.as_str()),
            time(Some(t.created_at)),
            time(Some(t.updated_at))
        );
    }
    s.push_str("</tbody></table></div>");
    s
}

/// Each node's definition (template nodes of loops too), folded, with the anchor the graph's
/// nodes link to: `node-KEY`, a template node's key being its loop's, `/`, its id
/// (`node-each/clean`), as the graph keys them.
pub(super) fn node_definitions(definition: &Value, yaml: bool) -> String {
    fn walk(nodes: &Value, prefix: &str, out: &mut String, depth: usize, yaml: bool) {
        for n in nodes.as_array().into_iter().flatten() {
            let id = n["id"].as_str().unwrap_or("?");
            let ty = n["type"].as_str().unwrap_or("?");
            let key = format!("{prefix}{id}");
            let _ = write!(
                out,
                "<details class=\"node-def depth-{}\" id=\"node-{}\"><summary><code>{}</code> <span class=\"note\">{}</span></summary>{}</details>\n",
                depth.min(4),
                esc(&key),
                esc(&key),
                esc(ty),
                if yaml {
                    text_block(&serde_yaml_ng::to_string(n).unwrap_or_default(), 64 * 1024)
                } else {
                    json_block(n, 64 * 1024)
                }
            );
            walk(&n["nodes"], &format!("{key}/"), out, depth + 1, yaml);
        }
    }
    let mut out = String::from("<section id=\"definitions\"><h2>Node definitions</h2>\n");
    walk(&definition["nodes"], "", &mut out, 0, yaml);
    out.push_str("</section>\n");
    out
}

#[derive(Debug, Deserialize)]
pub struct ScheduleForm {
    csrf: Option<String>,
    action: String,
}

/// Pauses or resumes a pipeline's schedule (admins), then back to its page.
pub async fn schedule(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<ScheduleForm>,
) -> Result<Response, UiError> {
    if !super::session::csrf_ok(&headers, form.csrf.as_deref()) {
        return Err(forged());
    }
    viewer.caller.require(&[Role::Admin])?;
    let paused = match form.action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action `{other}` (pause or resume)"
            ))
            .into());
        }
    };
    let scripts = state.engine.scripts().clone();
    let n = name.clone();
    crate::routes::schedules::run_blocking(
        move |s| tessera_engine::schedules::set_paused(s, &scripts, &n, paused, now_millis()),
        &state,
    )
    .await?;
    Ok(Redirect::to(&format!("/ui/pipelines/{}#schedule", seg(&name))).into_response())
}
