//! `tessera run` and `tessera resume`: start or continue a task in this process, show progress
//! on stderr, print the result on stdout.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tessera_core::Data;
use tessera_core::scheduler::TaskState;
use tessera_engine::TaskHandle;

use crate::config::{Callbacks, Settings, open_engine, open_engine_on};
use crate::progress::ProgressView;

pub fn run(
    settings: &Settings,
    file: &Path,
    input: Option<&str>,
    files: &[String],
) -> Result<ExitCode> {
    let (pipeline, doc) = match crate::cli::load_or_report(file)? {
        Ok(p) => p,
        Err(report) => {
            report_invalid(file, &report, "nothing was run");
            return Ok(ExitCode::from(2));
        }
    };
    let mut input = match input {
        Some(text) => parse_input(text)?,
        None => Data::from_value(default_input(&pipeline)),
    };
    let opened = open_engine(settings, callbacks_for(&pipeline.nodes))?;
    // Known before the task exists: its files are stored as its own.
    let task_id = uuid::Uuid::new_v4().to_string();
    if !files.is_empty() {
        let Some(mut fields) = input.entries() else {
            bail!("--file needs the --input to be a JSON object");
        };
        for f in files {
            let (name, path) = f
                .split_once("=@")
                .with_context(|| format!("--file {f}: expected NAME=@PATH"))?;
            let meta = opened
                .runtime
                .block_on(
                    opened
                        .engine
                        .objects()
                        .put_file(Path::new(path), None, None),
                )
                .with_context(|| format!("--file {name}: cannot store {path}"))?;
            opened.engine.store().put_object(&meta, Some(&task_id))?;
            fields.retain(|(k, _)| k != name);
            fields.push((name.to_string(), Data::from_value(meta.to_json())));
        }
        input = Data::object(fields);
    }
    let handle = opened.engine.submit(tessera_engine::Submission {
        definition: doc,
        pipeline,
        input,
        owner: None,
        id: Some(task_id),
    })?;
    follow(handle, &opened.runtime, !settings.ephemeral)
}

pub fn resume(
    settings: &Settings,
    task_id: &str,
    pipeline: Option<&Path>,
    input: Option<&str>,
) -> Result<ExitCode> {
    if settings.ephemeral {
        bail!("--ephemeral keeps no tasks, so there is nothing to resume");
    }
    let definition = match pipeline {
        None => None,
        Some(file) => match crate::cli::load_or_report(file)? {
            Ok((pipeline, doc)) => Some((doc, pipeline)),
            Err(report) => {
                report_invalid(file, &report, "the task was not resumed");
                return Ok(ExitCode::from(2));
            }
        },
    };
    let store = settings.open_store()?;
    // Its service nodes may be waiting for callbacks: they need this process's listener.
    let callbacks = match (&definition, store.task(task_id)?) {
        (Some((_, fixed)), _) => callbacks_for(&fixed.nodes),
        (None, Some(task)) => {
            let mut report = tessera_core::Report::default();
            match tessera_core::parse::pipeline_from_value(&task.definition, &mut report) {
                Some(p) => callbacks_for(&p.nodes),
                None => Callbacks::None,
            }
        }
        (None, None) => Callbacks::None,
    };
    let fix = tessera_engine::Fix {
        definition,
        input: input.map(parse_input).transpose()?,
    };
    let opened = open_engine_on(settings, store, callbacks)?;
    let handle = opened.engine.resume(task_id, fix)?;
    follow(handle, &opened.runtime, true)
}

/// Prints every problem of an invalid pipeline file.
fn report_invalid(file: &Path, report: &tessera_core::Report, outcome: &str) {
    eprintln!("{}: invalid pipeline:", file.display());
    for e in &report.errors {
        eprintln!("  {e}");
    }
    eprintln!(
        "error: {} has {} problem(s); {outcome}",
        file.display(),
        report.errors.len()
    );
}

/// A loopback listener for callbacks only when the pipeline calls services.
fn callbacks_for(nodes: &[tessera_core::Node]) -> Callbacks {
    if tessera_core::services::has_service_nodes(nodes) {
        Callbacks::Listen
    } else {
        Callbacks::None
    }
}

/// Without `--input`, the entry's example body (`api.body` when it is an object) is used.
fn default_input(pipeline: &tessera_core::Pipeline) -> Value {
    match pipeline.entry().map(|e| &e.kind) {
        Some(tessera_core::NodeKind::Entry(api)) => match &api.body {
            Some(body @ Value::Object(_)) => body.clone(),
            _ => Value::Object(Default::default()),
        },
        _ => Value::Object(Default::default()),
    }
}

/// `--input`: JSON text, or `@file` (a big one is kept as its text, never as a tree).
fn parse_input(input: &str) -> Result<Data> {
    let text = match input.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("--input: cannot read {path}"))?
        }
        None => input.to_string(),
    };
    Data::from_json(&text).map_err(|e| {
        let shown: String = text.chars().take(80).collect();
        let more = if text.len() > shown.len() { "…" } else { "" };
        anyhow::anyhow!("--input is not valid JSON ({e}): {shown}{more}")
    })
}

/// Shows progress until the task ends; Ctrl-C cancels it (resumable later).
/// `resumable`: the task is kept (not `--ephemeral`), so `tessera resume` can continue it.
fn follow(
    handle: TaskHandle,
    runtime: &tokio::runtime::Runtime,
    resumable: bool,
) -> Result<ExitCode> {
    eprintln!("task {}", handle.id);
    let (cancel_tx, cancel_rx) = std::sync::mpsc::channel::<()>();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(());
        }
    });
    let mut view = ProgressView::new();
    let outcome = loop {
        if cancel_rx.try_recv().is_ok() {
            handle.cancel("interrupted (Ctrl-C)");
        }
        match handle.wait_timeout(Duration::from_millis(100)) {
            Some(result) => break result?,
            None => view.update(&handle.progress()),
        }
    };
    view.finish(&handle.progress());
    match outcome.state {
        TaskState::Finished => {
            let result = outcome.result.unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        TaskState::Cancelled => {
            if resumable {
                eprintln!(
                    "task {} cancelled; continue it with: tessera resume {}",
                    handle.id, handle.id
                );
            } else {
                eprintln!(
                    "task {} cancelled (--ephemeral: nothing was kept)",
                    handle.id
                );
            }
            eprintln!(
                "error: {}",
                outcome.error.unwrap_or_else(|| "cancelled".into())
            );
            Ok(ExitCode::from(130))
        }
        _ => {
            if resumable {
                eprintln!(
                    "task {} failed; after fixing the cause: tessera resume {} \
                     (--pipeline FILE to resume with a fixed pipeline)",
                    handle.id, handle.id
                );
            } else {
                eprintln!(
                    "task {} failed (--ephemeral: nothing was kept; run it again after fixing the cause)",
                    handle.id
                );
            }
            eprintln!(
                "error: {}",
                outcome.error.unwrap_or_else(|| "task failed".into())
            );
            Ok(ExitCode::from(1))
        }
    }
}
