//! `tessera tasks list|show|logs|result|cancel` on the local data dir, or on a server with
//! `--server`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tessera_core::scheduler::TaskState;
use tessera_core::time::rfc3339 as iso;
use tessera_store::TaskFilter;

use crate::cli::TasksAction;
use crate::config::Settings;
use crate::objects::Source;
use crate::remote::{Remote, segment};

pub fn tasks(settings: &Settings, action: TasksAction) -> Result<ExitCode> {
    if settings.ephemeral {
        bail!("--ephemeral keeps no tasks to inspect");
    }
    let store = settings.open_store()?;
    match action {
        TasksAction::List {
            json,
            pipeline,
            state,
            limit,
        } => {
            let list = store.list_tasks(&TaskFilter {
                pipeline,
                state,
                limit,
                before: None,
                owner: None,
            })?;
            if json {
                let docs: Vec<Value> = list
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "pipeline": t.pipeline, "state": t.state,
                            "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
                        })
                    })
                    .collect();
                crate::output::json(&docs)?;
            } else {
                print_list(list.iter().map(|t| {
                    (
                        t.id.as_str(),
                        t.pipeline.as_str(),
                        t.state.as_str(),
                        iso(t.created_at),
                    )
                }))?;
            }
        }
        TasksAction::Show {
            task_id,
            json,
            full,
        } => {
            let values = if full && json {
                tessera_engine::inspect::Values::Full
            } else {
                tessera_engine::inspect::Values::Sizes
            };
            let mut doc = tessera_engine::inspect::task_document(store.as_ref(), &task_id, values)?;
            if json {
                // Streamed as it is: a big task's document is never turned into a tree.
                crate::output::json(&doc)?;
            } else {
                // The text shows no values: a million-item task's are not made a tree.
                doc.input = tessera_core::Data::null();
                doc.result = None;
                doc.runs.clear();
                for r in &mut doc.revisions {
                    r.input = tessera_core::Data::null();
                    r.definition = Value::Null;
                }
                print_task(&serde_json::to_value(&doc)?)?;
            }
        }
        TasksAction::Logs {
            task_id,
            node,
            json,
        } => {
            let (lines, prefix) = match &node {
                Some(node) => {
                    let logs =
                        tessera_engine::node_logs::node_logs(store.as_ref(), &task_id, node)?;
                    (logs.lines, logs.instances)
                }
                None => {
                    if store
                        .task_read(&task_id, tessera_store::ValueRead::Sizes)?
                        .is_none()
                    {
                        bail!("task `{task_id}` not found");
                    }
                    (store.logs(&task_id, None)?, true)
                }
            };
            let lines: Vec<Value> = lines
                .into_iter()
                .map(|l| json!({"key": l.key, "attempt": l.attempt, "stream": l.stream, "line": l.line, "at": iso(l.at)}))
                .collect();
            print_logs(&lines, prefix, json)?;
        }
        TasksAction::Items {
            task_id,
            loop_key,
            state,
            offset,
            limit,
            json,
        } => {
            let page = tessera_engine::inspect::loop_items(
                store.as_ref(),
                &task_id,
                &loop_key,
                state,
                offset,
                limit,
            )?;
            print_items(&serde_json::to_value(&page)?, json)?;
        }
        TasksAction::Result { task_id, save } => {
            let Some(task) = store.task(&task_id)? else {
                bail!("task `{task_id}` not found");
            };
            if task.task_state() != TaskState::Finished {
                bail!(
                    "task {task_id} is {}; its result exists once it has finished",
                    task.state
                );
            }
            let result = task.result.unwrap_or_default().into_value();
            let runtime = crate::remote::runtime()?;
            print_result(&runtime, result, save.as_deref(), || {
                Source::local(settings)
            })?;
        }
        TasksAction::Cancel { task_id } => {
            let opened = crate::config::open_engine(settings, crate::config::Callbacks::None)?;
            opened.engine.cancel_elsewhere(&task_id)?;
            errln!("cancel requested for task {task_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The same commands against a server's API.
pub fn remote(remote: &Remote, action: TasksAction) -> Result<ExitCode> {
    let runtime = crate::remote::runtime()?;
    let get = |path: String| runtime.block_on(remote.json(reqwest::Method::GET, &path));
    match action {
        TasksAction::List {
            json,
            pipeline,
            state,
            limit,
        } => {
            let mut path = format!("/api/v1/tasks?limit={limit}");
            if let Some(p) = pipeline {
                path.push_str(&format!("&pipeline={}", segment(&p)));
            }
            if let Some(s) = state {
                path.push_str(&format!("&state={}", s.as_str()));
            }
            let page = get(path)?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if json {
                crate::output::json(&items)?;
            } else {
                print_list(items.iter().map(|t| {
                    let s = |k: &str| t[k].as_str().unwrap_or("");
                    (
                        s("id"),
                        s("pipeline"),
                        s("state"),
                        s("created_at").to_string(),
                    )
                }))?;
            }
        }
        TasksAction::Show {
            task_id,
            json,
            full,
        } => {
            let values = if full && json { "?values=full" } else { "" };
            let doc = get(format!("/api/v1/tasks/{}{values}", segment(&task_id)))?;
            if json {
                crate::output::json(&doc)?;
            } else {
                print_task(&doc)?;
            }
        }
        TasksAction::Logs {
            task_id,
            node,
            json,
        } => {
            let Some(node) = node else {
                bail!("with --server, name the node: tessera tasks logs ID NODE");
            };
            let path = format!(
                "/api/v1/tasks/{}/nodes/{}/log",
                segment(&task_id),
                segment(&node)
            );
            let body = match get(path) {
                Ok(body) => body,
                Err(e) => return Err(unknown_node(e)),
            };
            let lines = body["lines"].as_array().cloned().unwrap_or_default();
            print_logs(&lines, body["instances"] == true, json)?;
        }
        TasksAction::Items {
            task_id,
            loop_key,
            state,
            offset,
            limit,
            json,
        } => {
            let mut path = format!(
                "/api/v1/tasks/{}/nodes/{}/items?offset={offset}&limit={limit}",
                segment(&task_id),
                segment(&loop_key),
            );
            if let Some(s) = state {
                path.push_str(&format!("&state={}", s.as_str()));
            }
            print_items(&get(path)?, json)?;
        }
        TasksAction::Result { task_id, save } => {
            let result = get(format!("/api/v1/tasks/{}/result", segment(&task_id)))?;
            print_result(&runtime, result, save.as_deref(), || {
                Ok(Source::Remote(remote.clone()))
            })?;
        }
        TasksAction::Cancel { task_id } => {
            runtime.block_on(remote.json(
                reqwest::Method::POST,
                &format!("/api/v1/tasks/{}/cancel", segment(&task_id)),
            ))?;
            errln!("cancel requested for task {task_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A server's 404 for an unknown node already lists the task's nodes in its message.
fn unknown_node(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<crate::remote::ServerRefused>() {
        Ok(refused) if refused.status == reqwest::StatusCode::NOT_FOUND => {
            anyhow::anyhow!("{}", refused.message)
        }
        Ok(refused) => refused.into(),
        Err(e) => e,
    }
}

/// The result as JSON; with `save`, its objects written into that directory first (each
/// reference then says where: `saved_to`).
fn print_result(
    runtime: &tokio::runtime::Runtime,
    mut result: Value,
    save: Option<&Path>,
    source: impl FnOnce() -> Result<Source>,
) -> Result<()> {
    if let Some(dir) = save {
        let source = source()?;
        let count = runtime.block_on(crate::objects::save_result(&source, &mut result, dir))?;
        errln!("saved {count} object(s) to {}", dir.display());
    }
    crate::output::json(&result)
}

/// Log lines as JSON, or one per line (`[stream#attempt] line`, prefixed by the instance key
/// when several instances are shown).
fn print_logs(lines: &[Value], with_key: bool, json: bool) -> Result<()> {
    if json {
        return crate::output::json(lines);
    }
    if lines.is_empty() {
        // Said on stderr: stdout stays the (empty) log for scripts.
        errln!("(no log lines: the node printed nothing, or has not run yet)");
    }
    for l in lines {
        let who = if with_key {
            format!("{} ", l["key"].as_str().unwrap_or(""))
        } else {
            String::new()
        };
        outln!(
            "{who}[{}#{}] {}",
            l["stream"].as_str().unwrap_or(""),
            l["attempt"],
            l["line"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

/// The task table of `tasks list`: id, pipeline, state, creation time.
fn print_list<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a str, String)>) -> Result<()> {
    outln!("{:<36}  {:<20}  {:<9}  CREATED", "ID", "PIPELINE", "STATE")?;
    for (id, pipeline, state, created) in rows {
        outln!("{id:<36}  {pipeline:<20}  {state:<9}  {created}")?;
    }
    Ok(())
}

/// A page of a loop's items: one line per item, or the page as JSON.
fn print_items(page: &Value, json: bool) -> Result<()> {
    if json {
        return crate::output::json(page);
    }
    if page["items"].as_array().is_none_or(Vec::is_empty) {
        errln!("no items on this page (offset {})", page["offset"]);
        return Ok(());
    }
    for it in page["items"].as_array().into_iter().flatten() {
        let state = it["state"].as_str().unwrap_or("");
        let detail = match state {
            "failed" => format!(
                "{}: {}",
                it["node"].as_str().unwrap_or(""),
                it["error"].as_str().unwrap_or("")
            ),
            _ if it.get("value").is_some() => it["value"].to_string(),
            _ => String::new(),
        };
        outln!("{:>8}  {:<9} {detail}", it["index"], state)?;
    }
    Ok(())
}

fn print_task(doc: &Value) -> Result<()> {
    let s = |k: &str| doc[k].as_str().unwrap_or("").to_string();
    outln!("task      {}", s("id"))?;
    outln!("pipeline  {}", s("pipeline"))?;
    outln!("state     {}", s("state"))?;
    outln!("created   {}", s("created_at"))?;
    if let Some(tick) = doc["scheduled_at"].as_str() {
        outln!("tick      {tick} (created by the pipeline's schedule)")?;
    }
    if let Some(e) = doc["error"].as_str() {
        outln!("error     {e}")?;
    }
    // Resumes that changed the definition or the input (the old ones under `--json`).
    for r in doc["revisions"].as_array().into_iter().flatten() {
        outln!(
            "revision  {} replaced at {} (its definition and input: --json, `revisions`)",
            r["revision"],
            r["replaced_at"].as_str().unwrap_or("")
        )?;
    }
    outln!()?;
    outln!(
        "{:<28} {:<8} {:<10} {:>4} {:>4} {:>9}  ERROR",
        "NODE",
        "TYPE",
        "STATE",
        "ITER",
        "TRY",
        "MS"
    )?;
    for n in doc["nodes"].as_array().into_iter().flatten() {
        let ms = n["duration_ms"]
            .as_u64()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let cached = if n["cached"].as_bool() == Some(true) {
            " (cached)"
        } else {
            ""
        };
        outln!(
            "{:<28} {:<8} {:<10} {:>4} {:>4} {:>9}  {}{}",
            n["key"].as_str().unwrap_or(""),
            n["type"].as_str().unwrap_or(""),
            n["state"].as_str().unwrap_or(""),
            n["iteration"].to_string(),
            n["attempt"].to_string(),
            ms,
            n["error"].as_str().unwrap_or(""),
            cached
        )?;
    }
    for l in doc["loops"].as_array().into_iter().flatten() {
        let counts: Vec<String> = l["counts"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        let items = match l["items"].as_u64() {
            Some(n) => format!("{n} items"),
            None => "items".to_string(),
        };
        outln!()?;
        outln!(
            "loop {} ({}): {items}: {}",
            l["key"].as_str().unwrap_or(""),
            l["mode"].as_str().unwrap_or(""),
            counts.join(", ")
        )?;
        for f in l["failed"].as_array().into_iter().flatten() {
            outln!(
                "  item {} failed in {}: {}",
                f["index"],
                f["node"].as_str().unwrap_or(""),
                f["error"].as_str().unwrap_or("")
            )?;
        }
        outln!(
            "  (every item: tessera tasks items {} {} [--state failed])",
            doc["id"].as_str().unwrap_or(""),
            l["key"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}
