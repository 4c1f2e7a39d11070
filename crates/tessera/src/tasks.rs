//! `tessera tasks list|show|logs|cancel` on the local data dir.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::Value;
use tessera_store::TaskFilter;

use crate::cli::TasksAction;
use crate::config::Settings;

use tessera_core::time::rfc3339 as iso;

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
                        serde_json::json!({
                            "id": t.id, "pipeline": t.pipeline, "state": t.state,
                            "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&docs)?);
            } else {
                print_list(list.iter().map(|t| {
                    (
                        t.id.as_str(),
                        t.pipeline.as_str(),
                        t.state.as_str(),
                        iso(t.created_at),
                    )
                }));
            }
        }
        TasksAction::Show { task_id, json } => {
            let doc = tessera_engine::inspect::task_document(store.as_ref(), &task_id)?;
            show(&serde_json::to_value(&doc)?, json)?;
        }
        TasksAction::Logs {
            task_id,
            node,
            json,
        } => {
            if store.task(&task_id)?.is_none() {
                bail!("task `{task_id}` not found");
            }
            let lines = store.logs(&task_id, node.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                for l in lines {
                    let who = if node.is_some() {
                        String::new()
                    } else {
                        format!("{} ", l.key)
                    };
                    println!("{who}[{}#{}] {}", l.stream, l.attempt, l.line);
                }
            }
        }
        TasksAction::Cancel { task_id } => {
            let opened = crate::config::open_engine(settings)?;
            opened.engine.cancel_elsewhere(&task_id)?;
            errln!("cancel requested for task {task_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The same commands against a server's API.
pub fn remote(base: &str, token: Option<&str>, action: TasksAction) -> Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let base = base.trim_end_matches('/');
    let call = |method: reqwest::Method, path: String| {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{base}: {e}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let msg = body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_string();
                bail!("{status}: {msg}");
            }
            Ok::<Value, anyhow::Error>(body)
        }
    };
    runtime.block_on(async {
        match action {
            TasksAction::List {
                json,
                pipeline,
                state,
                limit,
            } => {
                let mut path = format!("/api/v1/tasks?limit={limit}");
                if let Some(p) = pipeline {
                    path.push_str(&format!("&pipeline={p}"));
                }
                if let Some(s) = state {
                    path.push_str(&format!("&state={s}"));
                }
                let page = call(reqwest::Method::GET, path).await?;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                if json {
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    print_list(items.iter().map(|t| {
                        let s = |k: &str| t[k].as_str().unwrap_or("");
                        (
                            s("id"),
                            s("pipeline"),
                            s("state"),
                            s("created_at").to_string(),
                        )
                    }));
                }
            }
            TasksAction::Show { task_id, json } => {
                let doc = call(reqwest::Method::GET, format!("/api/v1/tasks/{task_id}")).await?;
                show(&doc, json)?;
            }
            TasksAction::Logs {
                task_id,
                node,
                json,
            } => {
                let Some(node) = node else {
                    bail!("with --server, name the node: tessera tasks logs ID NODE");
                };
                let body = call(
                    reqwest::Method::GET,
                    format!("/api/v1/tasks/{task_id}/nodes/{node}/log"),
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&body["lines"])?);
                } else {
                    for l in body["lines"].as_array().into_iter().flatten() {
                        println!(
                            "[{}#{}] {}",
                            l["stream"].as_str().unwrap_or(""),
                            l["attempt"],
                            l["line"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            TasksAction::Cancel { task_id } => {
                call(
                    reqwest::Method::POST,
                    format!("/api/v1/tasks/{task_id}/cancel"),
                )
                .await?;
                errln!("cancel requested for task {task_id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The task table of `tasks list`: id, pipeline, state, creation time.
fn print_list<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a str, String)>) {
    println!("{:<36}  {:<20}  {:<9}  CREATED", "ID", "PIPELINE", "STATE");
    for (id, pipeline, state, created) in rows {
        println!("{id:<36}  {pipeline:<20}  {state:<9}  {created}");
    }
}

/// `tasks show`: the task document as JSON, or as a table.
fn show(doc: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(doc)?);
    } else {
        print_task(doc);
    }
    Ok(())
}

fn print_task(doc: &Value) {
    let s = |k: &str| doc[k].as_str().unwrap_or("").to_string();
    println!("task      {}", s("id"));
    println!("pipeline  {}", s("pipeline"));
    println!("state     {}", s("state"));
    println!("created   {}", s("created_at"));
    if let Some(e) = doc["error"].as_str() {
        println!("error     {e}");
    }
    println!();
    println!(
        "{:<28} {:<8} {:<10} {:>4} {:>4} {:>9}  ERROR",
        "NODE", "TYPE", "STATE", "ITER", "TRY", "MS"
    );
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
        println!(
            "{:<28} {:<8} {:<10} {:>4} {:>4} {:>9}  {}{}",
            n["key"].as_str().unwrap_or(""),
            n["type"].as_str().unwrap_or(""),
            n["state"].as_str().unwrap_or(""),
            n["iteration"].to_string(),
            n["attempt"].to_string(),
            ms,
            n["error"].as_str().unwrap_or(""),
            cached
        );
    }
}
