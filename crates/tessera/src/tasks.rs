//! `tessera tasks list|show|logs|cancel` on the local data dir.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::Value;
use tessera_store::TaskFilter;

use crate::cli::TasksAction;
use crate::config::Settings;

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

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
                println!("{:<36}  {:<20}  {:<9}  CREATED", "ID", "PIPELINE", "STATE");
                for t in list {
                    println!(
                        "{:<36}  {:<20}  {:<9}  {}",
                        t.id,
                        t.pipeline,
                        t.state,
                        iso(t.created_at)
                    );
                }
            }
        }
        TasksAction::Show { task_id, json } => {
            let doc = tessera_engine::inspect::task_document(store.as_ref(), &task_id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print_task(&doc);
            }
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
            eprintln!("cancel requested for task {task_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_task(doc: &Value) {
    let s = |k: &str| doc[k].as_str().unwrap_or("").to_string();
    println!("task      {}", s("id"));
    println!("pipeline  {}", s("pipeline"));
    println!("state     {}", s("state"));
    println!("created   {}", iso(doc["created_at"].as_u64().unwrap_or(0)));
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
