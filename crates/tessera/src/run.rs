//! `tessera run` and `tessera resume`: start or continue a task in this process, show progress
//! on stderr, print the result on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
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
        Err(report) => return Ok(invalid_pipeline(file, &report)),
    };
    let Checked { input, files } = match check_input(&pipeline, input, files)? {
        Ok(checked) => checked,
        Err(refusal) => return Ok(refused(&refusal)),
    };
    let opened = open_engine(settings, callbacks_for(&pipeline.nodes))?;
    // Known before the task exists: its files are stored as its own.
    let task_id = uuid::Uuid::new_v4().to_string();
    let mut input = input;
    if !files.is_empty() {
        let mut fields = input.entries().unwrap_or_default();
        for (name, path) in files {
            let meta = opened
                .runtime
                .block_on(opened.engine.objects().put_file(&path, None, None))
                .with_context(|| format!("--file {name}: cannot store {}", path.display()))?;
            opened.engine.store().put_object(&meta, Some(&task_id))?;
            fields.retain(|(k, _)| *k != name);
            fields.push((name, Data::from_value(meta.to_json())));
        }
        input = Data::object(fields);
    }
    // Relative paths in the pipeline are the file's: a run works from any directory.
    let base_dir = std::path::absolute(file)
        .with_context(|| format!("bad pipeline path {}", file.display()))?
        .parent()
        .map(Path::to_path_buf);
    let handle = opened.engine.submit(tessera_engine::Submission {
        definition: doc,
        pipeline: pipeline.into(),
        input,
        owner: None,
        id: Some(task_id),
        base_dir,
        tick: None,
    })?;
    follow(handle, &opened.runtime, !settings.ephemeral)
}

/// Prints every problem of an invalid pipeline: exit code 2, nothing was run.
pub fn invalid_pipeline(file: &Path, report: &tessera_core::Report) -> ExitCode {
    report_invalid(file, report, "nothing was run");
    ExitCode::from(2)
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
    let stored = store
        .task_read(task_id, tessera_store::ValueRead::Sizes)?
        .and_then(|task| {
            let mut report = tessera_core::Report::default();
            tessera_core::parse::pipeline_from_value(&task.definition, &mut report)
        });
    let target = definition.as_ref().map(|(_, p)| p).or(stored.as_ref());
    // Its service nodes may be waiting for callbacks: they need this process's listener.
    let callbacks = target.map_or(Callbacks::None, |p| callbacks_for(&p.nodes));
    // A new input is checked against the entry's `api.body`, as for `run`.
    let input = match (input, target) {
        (Some(text), Some(pipeline)) => match check_input(pipeline, Some(text), &[])? {
            Ok(checked) => Some(checked.input),
            Err(refusal) => return Ok(refused(&refusal)),
        },
        (Some(_), None) => bail!("no task {task_id} in this data directory"),
        (None, _) => None,
    };
    let fix = tessera_engine::Fix { definition, input };
    let opened = open_engine_on(settings, store, callbacks)?;
    let handle = match opened.engine.resume(task_id, fix.clone()) {
        // Held by a process that may have been killed: its lease tells by when it lets go.
        // Waited for once; held again after that, its holder is alive and renewing.
        Err(tessera_engine::EngineError::Held { runner, until, .. })
            if until.saturating_sub(now_millis()) <= 120_000 =>
        {
            let wait = Duration::from_millis(until.saturating_sub(now_millis()) + 50);
            errln!(
                "task {task_id} is held by {runner}; waiting {:.1} s for its lease to run out \
                 (a killed process renews nothing)",
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
            opened.engine.resume(task_id, fix)?
        }
        other => other?,
    };
    follow(handle, &opened.runtime, true)
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prints every problem of an invalid pipeline file.
fn report_invalid(file: &Path, report: &tessera_core::Report, outcome: &str) {
    errln!("{}: invalid pipeline:", file.display());
    for e in &report.errors {
        errln!("  {e}");
    }
    errln!(
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

/// A task's input and its files, checked against the pipeline's entry.
pub struct Checked {
    /// The JSON input (kept as its text when big), without the files.
    pub input: Data,
    /// `--file NAME=@PATH`: each field and its file.
    pub files: Vec<(String, PathBuf)>,
}

/// Why an input was refused: a one-line summary (naming the field) and detail lines.
pub struct Refusal {
    pub summary: String,
    pub details: Vec<String>,
}

impl Refusal {
    fn new(summary: String) -> Refusal {
        Refusal {
            summary,
            details: Vec::new(),
        }
    }
}

/// `--input` (JSON text, or `@file`) and `--file`s checked against the entry's `api.body` by
/// the check the server makes of an HTTP submission (`tessera_core::input`): fields and types
/// against an example, no `$object`/`$file` references, every binary field given as a file.
/// `Ok(Err(_))` is a refusal to print (exit 2, nothing run).
pub fn check_input(
    pipeline: &tessera_core::Pipeline,
    input: Option<&str>,
    files: &[String],
) -> Result<std::result::Result<Checked, Refusal>> {
    use tessera_core::input::{InputError, binary_fields, example_of};
    let binary = binary_fields(pipeline);
    let input = match input {
        None => Data::from_value(tessera_core::input::default_input(pipeline)),
        Some(arg) => {
            let text = match arg.strip_prefix('@') {
                Some(path) => match std::fs::read(path) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        return Ok(Err(Refusal::new(format!(
                            "--input: cannot read {path}: {e}"
                        ))));
                    }
                },
                None => arg.as_bytes().to_vec(),
            };
            match tessera_core::input::check_input(&text, example_of(pipeline)) {
                Ok(d) => d,
                Err(InputError::Mismatch { problems, more }) => {
                    let count = problems.len() + more;
                    let first = &problems[0];
                    let others = match count - 1 {
                        0 => String::new(),
                        n => format!(" (and {n} more problem(s), listed above)"),
                    };
                    // One problem is said once, in the summary line.
                    let mut details = Vec::new();
                    if count > 1 {
                        details.push(format!(
                        "--input does not match the entry's `api.body` of pipeline `{}`: {count} problem(s):",
                            pipeline.name
                        ));
                        details.extend(tessera_core::input::problem_lines(&problems, more));
                    }
                    return Ok(Err(Refusal {
                        summary: format!(
                            "--input, field `{}`: {}{others}",
                            first.field, first.message
                        ),
                        details,
                    }));
                }
                Err(e @ InputError::Malformed { .. }) => {
                    let text = String::from_utf8_lossy(&text);
                    let shown: String = text.chars().take(80).collect();
                    let more = if text.len() > shown.len() { "…" } else { "" };
                    return Ok(Err(Refusal::new(format!(
                        "--input is not valid JSON ({e}): {shown}{more}"
                    ))));
                }
                Err(e) => return Ok(Err(Refusal::new(format!("--input: {e}")))),
            }
        }
    };
    let mut parsed = Vec::new();
    for f in files {
        let Some((name, path)) = f.split_once("=@") else {
            return Ok(Err(Refusal::new(format!(
                "--file {f}: expected NAME=@PATH"
            ))));
        };
        parsed.push((name.to_string(), PathBuf::from(path)));
    }
    let missing: Vec<&str> = binary
        .iter()
        .filter(|b| !parsed.iter().any(|(n, _)| n == *b))
        .map(String::as_str)
        .collect();
    if let Some(first) = missing.first() {
        return Ok(Err(Refusal::new(format!(
            "pipeline `{}` takes file field(s) {}: give each with --file {first}=@PATH",
            pipeline.name,
            missing.join(", "),
        ))));
    }
    if !parsed.is_empty() && !input.is_object() {
        return Ok(Err(Refusal::new(
            "--file needs the --input to be a JSON object".into(),
        )));
    }
    Ok(Ok(Checked {
        input,
        files: parsed,
    }))
}

/// Prints a refused input, the summary last: exit code 2, nothing was run.
pub fn refused(refusal: &Refusal) -> ExitCode {
    for line in &refusal.details {
        errln!("{line}");
    }
    errln!("error: {}; nothing was run", refusal.summary);
    ExitCode::from(2)
}

/// Shows progress until the task ends; Ctrl-C cancels it (resumable later).
/// `resumable`: the task is kept (not `--ephemeral`), so `tessera resume` can continue it.
fn follow(
    handle: TaskHandle,
    runtime: &tokio::runtime::Runtime,
    resumable: bool,
) -> Result<ExitCode> {
    errln!("task {}", handle.id);
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
            crate::output::json(&result)?;
            Ok(ExitCode::SUCCESS)
        }
        TaskState::Cancelled => {
            if resumable {
                errln!(
                    "task {} cancelled; continue it with: tessera resume {}",
                    handle.id,
                    handle.id
                );
            } else {
                errln!(
                    "task {} cancelled (--ephemeral: nothing was kept)",
                    handle.id
                );
            }
            errln!(
                "error: {}",
                outcome.error.unwrap_or_else(|| "cancelled".into())
            );
            Ok(ExitCode::from(130))
        }
        _ => {
            if resumable {
                errln!(
                    "task {} failed; after fixing the cause: tessera resume {} \
                     (--pipeline FILE to resume with a fixed pipeline)",
                    handle.id,
                    handle.id
                );
            } else {
                errln!(
                    "task {} failed (--ephemeral: nothing was kept; run it again after fixing the cause)",
                    handle.id
                );
            }
            errln!(
                "error: {}",
                outcome.error.unwrap_or_else(|| "task failed".into())
            );
            Ok(ExitCode::from(1))
        }
    }
}
