//! Pipelines from Python, in this process: `tessera.run` and `tessera.resume` on a data
//! directory's embedded defaults (`tessera_engine::local`), as `tessera run` and `tessera
//! resume` do without flags. Waiting happens with the GIL released; Ctrl-C cancels the task.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tessera_core::Data;
use tessera_core::input::{
    InputError, binary_fields, check_input, default_input, example_of, problem_lines,
};
use tessera_engine::local::Local;
use tessera_engine::{EngineError, Submission, TaskHandle};

/// How a task ended: `(task_id, state, error, result as JSON text)`.
type Ended = (String, String, Option<String>, Option<String>);

fn engine_error(e: EngineError) -> PyErr {
    match e.kind() {
        tessera_store::ErrorKind::User => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn open(py: Python<'_>, data_dir: &Path) -> PyResult<Local> {
    py.detach(|| Local::open(data_dir)).map_err(engine_error)
}

/// A pipeline file, parsed and validated: every problem in the message, as `tessera validate`.
fn load(local: &Local, file: &Path) -> PyResult<(tessera_core::Pipeline, serde_json::Value)> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        let message = format!("{}: {e}", file.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            PyFileNotFoundError::new_err(message)
        } else {
            PyValueError::new_err(message)
        }
    })?;
    let (pipeline, doc) = tessera_core::load_document(&text, local.engine.scripts())
        .map_err(|report| PyValueError::new_err(format!("{}: {report}", file.display())))?;
    if tessera_core::services::has_service_nodes(&pipeline.nodes) {
        return Err(PyValueError::new_err(format!(
            "{}: `service` nodes wait for callbacks, which tessera.run does not listen for: \
             run it with `tessera run` or on a server (tessera.Client)",
            file.display()
        )));
    }
    Ok((pipeline, doc))
}

/// The input checked against the entry's `api.body` as the CLI and the server check it.
fn checked_input(pipeline: &tessera_core::Pipeline, json: Option<&str>) -> PyResult<Data> {
    let Some(text) = json else {
        return Ok(Data::from_value(default_input(pipeline)));
    };
    check_input(text.as_bytes(), example_of(pipeline)).map_err(|e| match e {
        InputError::Mismatch { problems, more } => {
            let mut lines = vec![format!(
                "input does not match the entry's `api.body` of pipeline `{}`:",
                pipeline.name
            )];
            lines.extend(problem_lines(&problems, more));
            PyValueError::new_err(lines.join("\n"))
        }
        other => PyValueError::new_err(format!("input: {other}")),
    })
}

/// [`wait`], then the data directory's engine closed with the GIL released (closing waits for
/// its threads).
fn wait_then_close(py: Python<'_>, local: Local, handle: TaskHandle) -> PyResult<Ended> {
    let ended = wait(py, handle);
    py.detach(move || drop(local));
    ended
}

/// Waits for the task with the GIL released; Ctrl-C (or any signal handler raising) cancels
/// it, waits for the cancel, then lets the exception through.
fn wait(py: Python<'_>, handle: TaskHandle) -> PyResult<Ended> {
    let id = handle.id.clone();
    let mut interrupted = None;
    let outcome = loop {
        if let Some(result) = py.detach(|| handle.wait_timeout(Duration::from_millis(100))) {
            break result.map_err(engine_error)?;
        }
        if interrupted.is_none()
            && let Err(e) = py.check_signals()
        {
            handle.cancel("interrupted (Ctrl-C)");
            interrupted = Some(e);
        }
    };
    if let Some(e) = interrupted {
        // Which task to resume: a note on the exception (Python 3.11+), else on stderr.
        let note = format!(
            "task {id} was cancelled; tessera.resume({id:?}) continues it (finished nodes \
             are not run again)"
        );
        let value = e.value(py);
        if value.hasattr("add_note")? {
            value.call_method1("add_note", (note,))?;
        } else {
            eprintln!("{note}");
        }
        return Err(e);
    }
    let result = outcome.result.map(|r| r.json().into_owned());
    Ok((
        id,
        outcome.state.as_str().to_string(),
        outcome.error,
        result,
    ))
}

/// Runs the pipeline file on `data_dir` (created when missing) and waits for its end.
#[pyfunction]
#[pyo3(signature = (pipeline, input_json=None, files=Vec::new(), data_dir=PathBuf::from(".tessera")))]
pub fn run_local(
    py: Python<'_>,
    pipeline: PathBuf,
    input_json: Option<String>,
    files: Vec<(String, PathBuf)>,
    data_dir: PathBuf,
) -> PyResult<Ended> {
    let local = open(py, &data_dir)?;
    let (parsed, doc) = load(&local, &pipeline)?;
    let mut input = checked_input(&parsed, input_json.as_deref())?;
    let wanted = binary_fields(&parsed);
    if let Some(missing) = wanted.iter().find(|w| !files.iter().any(|(n, _)| n == *w)) {
        return Err(PyValueError::new_err(format!(
            "pipeline `{}` takes file field(s) {}: give `{missing}` in files=",
            parsed.name,
            wanted.join(", ")
        )));
    }
    let task_id = uuid::Uuid::new_v4().to_string();
    if !files.is_empty() {
        let mut fields = input.entries().ok_or_else(|| {
            PyValueError::new_err("files= needs the input to be a dict (or none)")
        })?;
        for (name, path) in files {
            let meta = py
                .detach(|| {
                    local
                        .runtime
                        .block_on(local.engine.objects().put_file(&path, None, None))
                })
                .map_err(|e| {
                    PyFileNotFoundError::new_err(format!(
                        "files[{name:?}]: cannot store {}: {e}",
                        path.display()
                    ))
                })?;
            local
                .engine
                .store()
                .put_object(&meta, Some(&task_id))
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            fields.retain(|(k, _)| *k != name);
            fields.push((name, Data::from_value(meta.to_json())));
        }
        input = Data::object(fields);
    }
    // Relative paths in the pipeline are the file's, as for `tessera run FILE`.
    let base_dir = std::path::absolute(&pipeline)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let handle = local
        .engine
        .submit(Submission {
            definition: doc,
            pipeline: parsed.into(),
            input,
            owner: None,
            id: Some(task_id),
            base_dir,
            tick: None,
        })
        .map_err(engine_error)?;
    wait_then_close(py, local, handle)
}

/// Resumes a failed, cancelled or interrupted task of `data_dir` and waits for its end.
#[pyfunction]
#[pyo3(signature = (task_id, data_dir=PathBuf::from(".tessera")))]
pub fn resume_local(py: Python<'_>, task_id: String, data_dir: PathBuf) -> PyResult<Ended> {
    let local = open(py, &data_dir)?;
    let handle = local
        .engine
        .resume(&task_id, tessera_engine::Fix::default())
        .map_err(engine_error)?;
    wait_then_close(py, local, handle)
}

/// The file of a stored object of `data_dir` (objects are kept as files there).
#[pyfunction]
#[pyo3(signature = (object_id, data_dir=PathBuf::from(".tessera")))]
pub fn object_path(object_id: &str, data_dir: PathBuf) -> PyResult<Option<PathBuf>> {
    let objects = tessera_store::Objects::local(&data_dir.join(tessera_engine::local::OBJECTS_DIR))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(objects.local_path(object_id).filter(|p| p.is_file()))
}
