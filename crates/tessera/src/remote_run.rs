//! `tessera run --server URL PIPELINE`: the pipeline is checked here, stored on the server
//! under its name (`POST /api/v1/pipelines`), the input is submitted to its route (JSON, or
//! multipart with the `--file`s streamed), and the task is followed live through the server's
//! events until it ends. Output and exit codes are those of a local run.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;
use tessera_core::scheduler::{NodeState, Progress, TaskState};

use crate::progress::ProgressView;
use crate::remote::{Remote, ServerRefused};

pub fn run(
    remote: &Remote,
    file: &Path,
    input: Option<&str>,
    files: &[String],
) -> Result<ExitCode> {
    let (pipeline, mut definition) = match crate::cli::load_or_report(file)? {
        Ok(p) => p,
        Err(report) => return Ok(crate::run::invalid_pipeline(file, &report)),
    };
    let checked = match crate::run::check_input(&pipeline, input, files)? {
        Ok(c) => c,
        Err(refusal) => return Ok(crate::run::refused(&refusal)),
    };
    // A stored pipeline is named by its route; a file without one is named after the file.
    let has_name = definition.get("name").is_some() || pipeline.name != "pipeline";
    let name = if has_name {
        pipeline.name.clone()
    } else {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(problem) = tessera_core::parse::name_problem(&stem) {
            bail!(
                "{}: a pipeline run on a server needs a name ({problem}): set the entry's `api.route`",
                file.display()
            );
        }
        definition["name"] = Value::String(stem.clone());
        stem
    };
    let runtime = crate::remote::runtime()?;
    runtime.block_on(async {
        let stored = remote
            .send(
                remote
                    .request(reqwest::Method::POST, "/api/v1/pipelines")
                    .json(&definition),
            )
            .await;
        if let Err(e) = stored {
            return refused_by_server(e, "the pipeline");
        }
        errln!("pipeline `{name}` stored on {}", remote.base);
        // Subscribed before the task exists, so none of its events can be missed.
        let events = remote
            .send(remote.request(reqwest::Method::GET, "/api/v1/events"))
            .await?;
        let task_id = match submit(remote, &name, checked).await {
            Ok(id) => id,
            Err(e) => return refused_by_server(e, "the input"),
        };
        errln!("task {task_id}");
        follow(remote, &task_id, events).await
    })
}

/// A server's 400/422 (the pipeline or input it refused) is exit 2 with its problems, like a
/// local refusal; other errors stay errors.
fn refused_by_server(e: anyhow::Error, what: &str) -> Result<ExitCode> {
    let refused = e.downcast::<ServerRefused>()?;
    if !matches!(refused.status.as_u16(), 400 | 413 | 415 | 422) {
        return Err(refused.into());
    }
    for d in refused.details.as_array().into_iter().flatten() {
        errln!(
            "  field `{}`: {}",
            d["field"].as_str().unwrap_or(""),
            d["message"].as_str().unwrap_or("")
        );
    }
    errln!(
        "error: the server refused {what}: {}; nothing was run",
        refused.message
    );
    Ok(ExitCode::from(2))
}

/// Posts the input to the pipeline's route: JSON, or multipart when files are given (each
/// streamed from its file, the JSON fields as the `data` part). Returns the task id.
async fn submit(remote: &Remote, route: &str, checked: crate::run::Checked) -> Result<String> {
    let path = format!("/api/v1/services/{route}");
    let req = remote.request(reqwest::Method::POST, &path);
    let req = if checked.files.is_empty() {
        req.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(checked.input.json().into_owned())
    } else {
        let mut form = reqwest::multipart::Form::new();
        if checked.input.entries().is_some_and(|e| !e.is_empty()) {
            form = form.part(
                "data",
                reqwest::multipart::Part::text(checked.input.json().into_owned())
                    .mime_str("application/json")?,
            );
        }
        for (field, file) in checked.files {
            let opened = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("--file {field}: cannot read {}", file.display()))?;
            let len = opened.metadata().await?.len();
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| field.clone());
            let part = reqwest::multipart::Part::stream_with_length(opened, len).file_name(name);
            form = form.part(field, part);
        }
        req.multipart(form)
    };
    let answer: Value = remote.send(req).await?.json().await?;
    answer["task_id"]
        .as_str()
        .map(str::to_string)
        .context("the server's answer names no task")
}

/// One server-sent event: its `event:` name and `data:` JSON.
fn parse_event(block: &str) -> Option<(String, Value)> {
    let mut kind = String::from("message");
    let mut data = String::new();
    for line in block.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data).ok().map(|v| (kind, v))
}

/// Follows the task through the server's live events until it ends (Ctrl-C cancels it on the
/// server); prints its result, or its error as a local run does.
async fn follow(remote: &Remote, task_id: &str, events: reqwest::Response) -> Result<ExitCode> {
    let mut view = ProgressView::new();
    let mut nodes: HashMap<String, NodeState> = HashMap::new();
    let mut stream = events.bytes_stream();
    let mut buffer = String::new();
    let mut cancelled = false;
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let (state, error) = loop {
        tokio::select! {
            chunk = stream.next() => {
                let chunk = match chunk {
                    Some(Ok(chunk)) => chunk,
                    lost => {
                        // The stream broke or ended (the server stopped?): the task
                        // document decides, if the server still answers.
                        let cause = match lost {
                            Some(Err(e)) => format!("{e:#}"),
                            _ => "the event stream ended".to_string(),
                        };
                        match ended(remote, task_id).await {
                            Ok(Some(end)) => break end,
                            Ok(None) => return Ok(lost_server(remote, task_id, &cause)),
                            Err(e) => {
                                return Ok(lost_server(remote, task_id, &format!("{cause}; then {e:#}")));
                            }
                        }
                    }
                };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                let mut end = None;
                while let Some(at) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..at + 2).collect();
                    let Some((kind, data)) = parse_event(&block) else { continue };
                    if kind == "lagged" {
                        // Events were dropped: the task document says whether it ended.
                        end = ended(remote, task_id).await?;
                        continue;
                    }
                    if data["task_id"] != task_id {
                        continue;
                    }
                    let state = data["state"].as_str().unwrap_or("");
                    match kind.as_str() {
                        "node" => {
                            if let Some(s) = NodeState::parse(state) {
                                nodes.insert(data["key"].as_str().unwrap_or("").to_string(), s);
                            }
                        }
                        "task" => {
                            if let Some(s) = TaskState::parse(state).filter(|s| s.is_terminal()) {
                                end = Some((s, data["error"].as_str().map(str::to_string)));
                            }
                        }
                        _ => {}
                    }
                }
                view.update(&progress(&nodes));
                if let Some(end) = end {
                    break end;
                }
            }
            _ = poll.tick() => {
                // Keep-alives aside, a quiet stream is checked against the task itself.
                if let Some(end) = ended(remote, task_id).await? {
                    break end;
                }
            }
            _ = &mut ctrl_c, if !cancelled => {
                cancelled = true;
                let path = format!("/api/v1/tasks/{task_id}/cancel");
                if let Err(e) = remote.json(reqwest::Method::POST, &path).await {
                    errln!("cannot cancel task {task_id}: {e:#}");
                }
            }
        }
    };
    view.finish(&progress(&nodes));
    match state {
        TaskState::Finished => {
            let path = format!("/api/v1/tasks/{task_id}/result");
            let result = remote.json(reqwest::Method::GET, &path).await?;
            crate::output::json(&result)?;
            Ok(ExitCode::SUCCESS)
        }
        TaskState::Cancelled => {
            errln!(
                "task {task_id} cancelled; continue it with: curl -X POST {}/api/v1/tasks/{task_id}/resume",
                remote.base
            );
            errln!("error: {}", error.unwrap_or_else(|| "cancelled".into()));
            Ok(ExitCode::from(130))
        }
        _ => {
            errln!(
                "task {task_id} failed; after fixing the cause: curl -X POST {}/api/v1/tasks/{task_id}/resume",
                remote.base
            );
            errln!("error: {}", error.unwrap_or_else(|| "task failed".into()));
            Ok(ExitCode::from(1))
        }
    }
}

/// The server went away before the task ended: its outcome is unknown here (exit 3), the
/// task itself goes on there (and continues after a restart of the server).
fn lost_server(remote: &Remote, task_id: &str, cause: &str) -> ExitCode {
    errln!(
        "error: lost the connection to {} before task {task_id} ended ({cause}); the task goes on \
         on the server, also after it restarts: tessera tasks show {task_id} --server {}",
        remote.base,
        remote.base
    );
    ExitCode::from(3)
}

/// The task's end state and error from the server (its row, not its whole document), `None`
/// while it runs.
async fn ended(remote: &Remote, task_id: &str) -> Result<Option<(TaskState, Option<String>)>> {
    let doc = remote
        .json(
            reqwest::Method::GET,
            &format!("/api/v1/tasks/{task_id}/state"),
        )
        .await?;
    let state = doc["state"].as_str().and_then(TaskState::parse);
    Ok(state
        .filter(|s| s.is_terminal())
        .map(|s| (s, doc["error"].as_str().map(str::to_string))))
}

/// Node counts from the latest state of each node instance seen.
fn progress(nodes: &HashMap<String, NodeState>) -> Progress {
    let mut p = Progress {
        total: nodes.len(),
        ..Progress::default()
    };
    for state in nodes.values() {
        match state {
            NodeState::Finished => p.finished += 1,
            NodeState::Running | NodeState::Waiting => p.running += 1,
            NodeState::Failed => p.failed += 1,
            NodeState::Skipped => p.skipped += 1,
            NodeState::Ready | NodeState::Cancelled => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_parsed_from_their_blocks() {
        let (kind, data) = parse_event("event: task\ndata: {\"state\": \"finished\"}\n\n").unwrap();
        assert_eq!(kind, "task");
        assert_eq!(data, json!({"state": "finished"}));
        assert!(parse_event(": keep-alive\n\n").is_none());
    }
}
