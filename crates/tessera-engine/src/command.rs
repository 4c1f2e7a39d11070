//! The `command` executor — the only place that spawns processes. Each command runs in its own
//! process group, killed whole on timeout or cancel; input JSON goes on stdin, stdout becomes
//! the output (a JSON object, or `{stdout, exit_code}`), `{"$file": path}` values are ingested
//! as objects, and both streams are kept in the node log.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Map, Value};
use tessera_core::Data;
use tessera_core::model::{CommandLine, CommandSpec};
use tessera_core::scheduler::JobError;
use tessera_store::ObjectMeta;
use tokio::io::AsyncWriteExt;

use crate::inputs::InputCopies;
use crate::jobs::JobContext;
use crate::live_log::{LiveLog, read_logged};
use crate::template::{Scope, render, render_shell};

/// Largest stdout kept as the node's output; beyond it the command fails.
const MAX_STDOUT: usize = 64 << 20;

/// Kills the whole process group when dropped (timeout, cancel, or normal end: stray
/// background children of the command do not outlive it).
struct ProcessGroup(Option<nix::unistd::Pid>);

impl ProcessGroup {
    fn new(pgid: Option<nix::unistd::Pid>) -> ProcessGroup {
        if let Some(p) = pgid {
            running_groups().insert(p.as_raw());
        }
        ProcessGroup(pgid)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            running_groups().remove(&pgid.as_raw());
        }
    }
}

/// The process groups of the commands running now.
fn running_groups() -> std::sync::MutexGuard<'static, std::collections::HashSet<i32>> {
    static GROUPS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<i32>>> =
        std::sync::OnceLock::new();
    GROUPS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Kills every running command with its process group (the process is stopping: its tasks
/// continue at the next start, and their commands run again).
pub(crate) fn kill_running_commands() -> usize {
    let groups: Vec<i32> = running_groups().drain().collect();
    for &g in &groups {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(g),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    groups.len()
}

/// Runs the command; `slot` (the process pool permit) is given back as soon as the process
/// exits, before its output is post-processed, so the next command starts at once.
pub(crate) async fn run(
    ctx: &mut JobContext,
    spec: &CommandSpec,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Data, JobError> {
    let input = ctx.input.clone();
    // Its own empty directory: nothing an earlier attempt left is in it.
    let scratch = ctx
        .engine
        .scratch
        .take(&ctx.task_id)
        .map_err(|e| JobError::retryable(format!("cannot create a scratch directory: {e}")))?;
    let params = with_context(&ctx.node.params, ctx, &scratch);
    let paths = ctx.scope.clone();
    let scope = Scope {
        input: &input,
        params: &params,
        paths: &paths,
    };
    let objects = ctx.engine.objects.clone();
    // Objects are given as read-only copies of their own, never the store's files (see
    // `inputs.rs`): removed when this command is done (dropped with this future).
    let mut copies = InputCopies::new(&ctx.engine.config.work_dir.join(&ctx.task_id));
    let mut object_path = |v: &Value| -> Result<String, String> {
        let meta = ObjectMeta::from_json(v).ok_or("malformed object reference")?;
        Ok(copies.path_of(&meta.id).display().to_string())
    };
    let bad = |e: String| JobError::permanent(e);
    let (program, args): (String, Vec<String>) = match &spec.command {
        CommandLine::Argv(argv) => {
            // One argument per element, whatever its placeholders hold.
            let rendered = argv
                .iter()
                .map(|a| render(a, &scope, &mut object_path))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            (rendered[0].clone(), rendered[1..].to_vec())
        }
        CommandLine::Shell(script) => {
            let sh = render_shell(script, &scope, &mut object_path).map_err(bad)?;
            (SHELL.into(), sh.argv())
        }
    };
    let mut env = Vec::new();
    for (k, v) in &spec.env {
        env.push((k.clone(), render(v, &scope, &mut object_path).map_err(bad)?));
    }
    let cwd = match &spec.cwd {
        Some(c) => Some(render(c, &scope, &mut object_path).map_err(bad)?),
        None => None,
    };
    // Relative to the pipeline file's directory, which is also the default (local runs).
    let cwd = ctx.run.command_dir(cwd.as_deref());
    // The objects of its stdin too (each reference there gains the `path` of its copy).
    if spec.stdin && input.may_contain_key("$object") {
        let mut ids = Vec::new();
        crate::jobs::object_ids(&input.value(), &mut ids);
        for id in ids {
            copies.path_of(&id);
        }
    }
    copies.make(&objects).await?;

    let identity = CommandIdentity {
        task_id: &ctx.task_id,
        key: &ctx.key,
        attempt: ctx.attempt,
        scratch: &scratch,
    };
    let mut cmd = new_command(
        &program,
        &args,
        &clean_env(&ctx.engine.config, &identity, &env),
    );
    cmd.stdin(if spec.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    if let Some(dir) = &cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            forget_programs();
        }
        // A missing working directory fails the spawn like a missing program: say which.
        let msg = match &cwd {
            Some(dir) if !dir.is_dir() => {
                format!("cwd: `{}` is not a directory ({e})", dir.display())
            }
            _ => format!("cannot start `{program}`: {e}"),
        };
        if start_failure_is_permanent(&e) {
            JobError::permanent(msg)
        } else {
            JobError::retryable(msg)
        }
    })?;
    // A command that is not given stdin gets no payload built.
    let payload = spec.stdin.then(|| stdin_payload(&input, copies.paths()));
    // Its lines reach the store while it runs; the last ones go with the job's other lines.
    let live = LiveLog::new(
        &ctx.engine.live_logs,
        ctx.engine.store.clone(),
        &ctx.task_id,
        &ctx.key,
        ctx.attempt,
    );
    let (status, stdout, stderr) = exchange(
        &mut child,
        payload,
        MAX_STDOUT + 1,
        move || drop(slot),
        Some(&live),
    )
    .await;
    ctx.logs.extend(live.finish().await);
    copies.remove().await;
    let status =
        status.map_err(|e| JobError::retryable(format!("waiting for `{program}`: {e}")))?;
    let stdout_text = String::from_utf8_lossy(&stdout).into_owned();
    let stderr_text = String::from_utf8_lossy(&stderr).into_owned();
    let code = status.code();
    if !status.success() {
        return Err(JobError::retryable(exit_failure(
            &program,
            status,
            &stderr_text,
        )));
    }
    if stdout.len() > MAX_STDOUT {
        return Err(JobError::permanent(format!(
            "stdout is larger than {} MiB; write big results to a file and return {{\"$file\": path}}",
            MAX_STDOUT >> 20
        )));
    }
    // A JSON object is the output as it is (a big one kept as its text); anything else is
    // wrapped.
    let parse = move || match Data::from_json(stdout_text.trim()) {
        Ok(d) if d.is_object() => d,
        _ => {
            let mut m = Map::new();
            m.insert("stdout".into(), Value::String(stdout_text));
            m.insert("exit_code".into(), Value::from(code.unwrap_or(0)));
            Data::from_value(Value::Object(m))
        }
    };
    // Parsing a big output is CPU work: keep it off the I/O threads.
    let output = if stdout.len() > (1 << 20) {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| JobError::permanent(format!("parsing stdout: {e}")))?
    } else {
        parse()
    };
    let base = cwd.unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let output = if output.may_contain_key("$file") {
        let files_from: Vec<PathBuf> = spec.files_from.iter().map(|d| ctx.run.resolve(d)).collect();
        let roots = FileRoots::new(&scratch, &files_from).await;
        Data::from_value(ingest_files(ctx, output.into_value(), &base, &roots).await?)
    } else {
        output
    };
    // Everything worth keeping was ingested; a failed attempt keeps its files until the task
    // ends.
    ctx.engine.scratch.give_back(&ctx.task_id, scratch);
    Ok(output)
}

/// The shell of `shell: true` commands.
const SHELL: &str = "/bin/sh";

/// Who a process is run for: it is tagged with it (environment), which lets a later run of the
/// same task find and kill what an engine killed with -9 left running.
struct CommandIdentity<'a> {
    task_id: &'a str,
    key: &'a str,
    attempt: u32,
    scratch: &'a Path,
}

/// The variable naming a command's task: the tag [`kill_leftovers`] looks for.
const TASK_VAR: &str = "TESSERA_TASK_ID";

/// A command's whole environment: the allowed variables of the engine's own environment
/// (never its secrets), the node's `env`, then Tessera's own variables (which `env` cannot
/// override, as the task tag must stay true).
fn clean_env(
    config: &crate::EngineConfig,
    who: &CommandIdentity<'_>,
    node_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config
        .command_env
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
        .collect();
    env.extend(node_env.iter().cloned());
    env.push((TASK_VAR.into(), who.task_id.to_string()));
    env.push(("TESSERA_NODE".into(), who.key.to_string()));
    env.push(("TESSERA_ATTEMPT".into(), who.attempt.to_string()));
    env.push(("TESSERA_SCRATCH".into(), who.scratch.display().to_string()));
    env
}

/// The program as a path, looked up in the command's own `PATH`. Given a bare name and a
/// changed environment, the standard library would fall back from `posix_spawn` to
/// fork-and-exec of this (big, threaded) process, which costs more than the command itself.
fn resolve_program(program: &str, path: Option<&str>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return PathBuf::from(program);
    }
    // Found paths are remembered (a few `stat`s per spawn add up over thousands of commands);
    // a path that stops working is forgotten when spawning it fails.
    let key = (path.unwrap_or("").to_string(), program.to_string());
    if let Some(found) = found_programs().get(&key) {
        return found.clone();
    }
    for dir in key.0.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            found_programs().insert(key, candidate.clone());
            return candidate;
        }
    }
    // Not found: spawning it fails with "not found", naming the program as given.
    PathBuf::from(program)
}

type FoundPrograms = std::collections::HashMap<(String, String), PathBuf>;

fn found_programs() -> std::sync::MutexGuard<'static, FoundPrograms> {
    static FOUND: std::sync::OnceLock<std::sync::Mutex<FoundPrograms>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Forgets where programs were found (one was not there any more).
fn forget_programs() {
    found_programs().clear();
}

/// A process in its own group (killed whole), with exactly `env`, stdout and stderr piped.
fn new_command(
    program: &str,
    args: &[String],
    env: &[(String, String)],
) -> tokio::process::Command {
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let mut cmd = tokio::process::Command::new(resolve_program(program, path));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// The node's params plus `tessera: {task_id, node, attempt, scratch}` for
/// `{{tessera.task_id}}`, and `pipeline: {task_id, name, scheduled_at}` for
/// `{{pipeline.scheduled_at}}`.
fn with_context(
    params: &Map<String, Value>,
    ctx: &JobContext,
    scratch: &Path,
) -> Map<String, Value> {
    let mut p = params.clone();
    let mut t = Map::new();
    t.insert("task_id".into(), Value::String(ctx.task_id.clone()));
    t.insert("node".into(), Value::String(ctx.key.clone()));
    t.insert("attempt".into(), Value::from(ctx.attempt));
    t.insert(
        "scratch".into(),
        Value::String(scratch.display().to_string()),
    );
    p.insert("tessera".into(), Value::Object(t));
    p.insert("pipeline".into(), ctx.run.pipeline.clone());
    p
}

/// The input as sent on stdin: object references gain the `path` of their copy to read the
/// bytes from (a big input without any is sent as the text it is).
fn stdin_payload(input: &Data, copies: &std::collections::HashMap<String, PathBuf>) -> Vec<u8> {
    type Copies = std::collections::HashMap<String, PathBuf>;
    fn with_paths(v: &Value, objects: &Copies) -> Value {
        match v {
            Value::Object(m) if m.contains_key("$object") => {
                let mut m = m.clone();
                if let Some(p) = m
                    .get("$object")
                    .and_then(Value::as_str)
                    .and_then(|id| objects.get(id))
                {
                    m.insert("path".into(), Value::String(p.display().to_string()));
                }
                Value::Object(m)
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), with_paths(v, objects)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| with_paths(v, objects)).collect()),
            other => other.clone(),
        }
    }
    let mut bytes = if input.may_contain_key("$object") {
        serde_json::to_vec(&with_paths(&input.value(), copies)).expect("JSON serialises")
    } else {
        input.json().as_bytes().to_vec()
    };
    bytes.push(b'\n');
    bytes
}

/// The directories a command's `{"$file": path}` outputs may come from, resolved (symlinks
/// included) once: its scratch directory and the node's `files_from`.
struct FileRoots(Vec<PathBuf>);

impl FileRoots {
    async fn new(scratch: &Path, files_from: &[PathBuf]) -> FileRoots {
        let mut roots = Vec::new();
        for dir in std::iter::once(scratch).chain(files_from.iter().map(PathBuf::as_path)) {
            // A listed directory that does not exist holds nothing to ingest.
            if let Ok(real) = tokio::fs::canonicalize(&dir).await {
                roots.push(real);
            }
        }
        FileRoots(roots)
    }

    /// Opens `path` for ingestion if it is a regular file whose real location (after every
    /// symlink) is inside one of the roots. The check is made on the opened file itself, so
    /// swapping the path afterwards cannot redirect the read.
    async fn open(&self, path: &Path) -> Result<tokio::fs::File, String> {
        let outside = || {
            format!(
                "`$file` {} is outside this command's scratch directory ($TESSERA_SCRATCH) and \
                 its `files_from` directories: write the file under $TESSERA_SCRATCH, or list \
                 its directory in the node's `files_from`",
                path.display()
            )
        };
        // Before opening: a FIFO or a device would block or never end.
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("cannot ingest `$file` {}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("`$file` {} is not a regular file", path.display()));
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot ingest `$file` {}: {e}", path.display()))?;
        use std::os::fd::AsRawFd;
        let real = tokio::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .await
            .map_err(|e| format!("cannot ingest `$file` {}: {e}", path.display()))?;
        if !self.0.iter().any(|root| real.starts_with(root)) {
            return Err(outside());
        }
        let opened = file
            .metadata()
            .await
            .map_err(|e| format!("cannot ingest `$file` {}: {e}", path.display()))?;
        if !opened.is_file() {
            return Err(format!("`$file` {} is not a regular file", path.display()));
        }
        Ok(file)
    }
}

/// Replaces every `{"$file": path}` in the output by an object holding the file's bytes.
/// Relative paths are relative to the command's working directory.
async fn ingest_files(
    ctx: &mut JobContext,
    value: Value,
    base: &Path,
    roots: &FileRoots,
) -> Result<Value, JobError> {
    match value {
        Value::Object(m) if m.len() == 1 && m.contains_key("$file") => {
            let Some(path) = m.get("$file").and_then(Value::as_str) else {
                return Err(JobError::permanent("`$file` must be a path string"));
            };
            let full = base.join(path);
            let file = roots.open(&full).await.map_err(JobError::permanent)?;
            let name = full.file_name().map(|n| n.to_string_lossy().into_owned());
            let meta = ctx
                .engine
                .objects
                .put_open_file(file, name, None)
                .await
                .map_err(|e| {
                    JobError::retryable(format!("cannot ingest `$file` {}: {e}", full.display()))
                })?;
            if let Err(e) = ctx.record_object(&meta).await {
                let _ = ctx.engine.objects.delete(&meta.id).await;
                return Err(e);
            }
            ctx.log(
                "engine",
                format!(
                    "ingested {} as object {} ({} bytes)",
                    full.display(),
                    meta.id,
                    meta.size
                ),
            );
            Ok(meta.to_json())
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k, Box::pin(ingest_files(ctx, v, base, roots)).await?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                out.push(Box::pin(ingest_files(ctx, v, base, roots)).await?);
            }
            Ok(Value::Array(out))
        }
        other => Ok(other),
    }
}

/// A `batch` node's command, argv rendered once for the whole job.
#[derive(Debug, Clone)]
pub(crate) struct ChunkCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

/// Why a chunk's command failed; `transient` failures (it ran and exited non-zero, or was
/// killed) are worth retrying, a missing program is not.
#[derive(Debug)]
pub(crate) struct ChunkCommandError {
    pub message: String,
    pub transient: bool,
}

impl ChunkCommand {
    /// Renders the processor's command line against the node's input (like a `command` node);
    /// `scratch` is the job's own directory.
    pub fn render(
        ctx: &JobContext,
        spec: &CommandSpec,
        input: &Data,
        scratch: &Path,
    ) -> Result<ChunkCommand, String> {
        let params = with_context(&ctx.node.params, ctx, scratch);
        let scope = &Scope {
            input,
            params: &params,
            paths: &ctx.scope,
        };
        let mut no_objects =
            crate::template::no_objects("object references cannot be used in a batch command line");
        let (program, args) = match &spec.command {
            CommandLine::Argv(argv) => {
                let r = argv
                    .iter()
                    .map(|a| render(a, scope, &mut no_objects))
                    .collect::<Result<Vec<_>, _>>()?;
                (r[0].clone(), r[1..].to_vec())
            }
            CommandLine::Shell(s) => (
                SHELL.to_string(),
                render_shell(s, scope, &mut no_objects)?.argv(),
            ),
        };
        let node_env = spec
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), render(v, scope, &mut no_objects)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let identity = CommandIdentity {
            task_id: &ctx.task_id,
            key: &ctx.key,
            attempt: ctx.attempt,
            scratch,
        };
        let env = clean_env(&ctx.engine.config, &identity, &node_env);
        let cwd = spec
            .cwd
            .as_deref()
            .map(|c| render(c, scope, &mut no_objects))
            .transpose()?;
        let cwd = ctx.run.command_dir(cwd.as_deref());
        Ok(ChunkCommand {
            program,
            args,
            env,
            cwd,
        })
    }

    /// Runs the command on one chunk: `stdin` in, stdout back. Its process group is killed if
    /// the future is dropped (cancel).
    pub async fn run(&self, stdin: Vec<u8>) -> Result<Vec<u8>, ChunkCommandError> {
        let mut cmd = new_command(&self.program, &self.args, &self.env);
        cmd.stdin(Stdio::piped());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().inspect_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                forget_programs();
            }
        });
        let mut child = child.map_err(|e| ChunkCommandError {
            message: format!("cannot start `{}`: {e}", self.program),
            transient: !start_failure_is_permanent(&e),
        })?;
        let (status, stdout, stderr) =
            exchange(&mut child, Some(stdin), usize::MAX, || (), None).await;
        let status = status.map_err(|e| ChunkCommandError {
            message: format!("waiting for `{}`: {e}", self.program),
            transient: true,
        })?;
        if status.success() {
            return Ok(stdout);
        }
        Err(ChunkCommandError {
            message: exit_failure(&self.program, status, &String::from_utf8_lossy(&stderr)),
            transient: true,
        })
    }
}

/// Kills every process an earlier run of `task_id` left behind (an engine killed with -9 does
/// not take its commands with it): processes tagged with the task in their environment, and
/// the process groups they lead. Waits, up to `patience`, until they are gone, so that a node
/// re-run next never overlaps its previous attempt (pool limits such as `gpu: 1` hold).
/// Returns how many processes were killed.
pub(crate) fn kill_leftovers(task_id: &str, patience: std::time::Duration) -> usize {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let tag = format!("{TASK_VAR}={task_id}");
    let my_group = nix::unistd::getpgrp();
    // Confirmed one by one: a pid seen in an earlier scan may have been reused since.
    let found: Vec<Pid> = tagged_processes()
        .get(task_id)
        .into_iter()
        .flatten()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == tag.as_bytes()))
        })
        .map(|&pid| Pid::from_raw(pid as i32))
        .collect();
    for &pid in &found {
        // Its group takes along children that cleared their environment.
        if let Ok(group) = nix::unistd::getpgid(Some(pid))
            && group != my_group
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + patience;
    while found.iter().any(|&pid| still_running(pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !found.is_empty() {
        tracing::warn!(
            task = task_id,
            processes = found.len(),
            "killed processes an earlier run of the task left running"
        );
    }
    found.len()
}

/// Processes tagged with a task (`TESSERA_TASK_ID` in their environment), by task, from one
/// scan of `/proc` reused for a second: a server continuing 10,000 tasks at start scans once,
/// not 10,000 times.
fn tagged_processes() -> std::sync::Arc<std::collections::HashMap<String, Vec<u32>>> {
    type Scan = (
        std::time::Instant,
        std::sync::Arc<std::collections::HashMap<String, Vec<u32>>>,
    );
    static LAST: std::sync::Mutex<Option<Scan>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, scan)) = last.as_ref()
        && at.elapsed() < std::time::Duration::from_secs(1)
    {
        return scan.clone();
    }
    let prefix = format!("{TASK_VAR}=");
    let me = std::process::id();
    let mut by_task: std::collections::HashMap<String, Vec<u32>> = Default::default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            // Unreadable (another user's process) or gone meanwhile: not ours.
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            for var in environ.split(|b| *b == 0) {
                if let Some(task) = var.strip_prefix(prefix.as_bytes()) {
                    by_task
                        .entry(String::from_utf8_lossy(task).into_owned())
                        .or_default()
                        .push(pid);
                }
            }
        }
    }
    let scan = std::sync::Arc::new(by_task);
    *last = Some((std::time::Instant::now(), scan.clone()));
    scan
}

/// Alive and not a zombie (a zombie holds nothing; its parent may never reap it).
pub(crate) fn still_running(pid: nix::unistd::Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A missing or forbidden program will not appear by retrying.
fn start_failure_is_permanent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    )
}

/// "`prog` failed with exit code 3: <last stderr line>" (or "killed by a signal").
fn exit_failure(program: &str, status: std::process::ExitStatus, stderr: &str) -> String {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let what = match status.code() {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_string(),
    };
    if last.is_empty() {
        format!("`{program}` failed with {what}")
    } else {
        format!("`{program}` failed with {what}: {last}")
    }
}

/// Feeds `stdin`, reads both outputs (stdout up to `stdout_cap` bytes, stderr up to 64 MiB) and
/// waits, all in the caller's task (no extra tasks to wake). When the command exits, `on_exit`
/// runs (giving back a pool slot) and its process group is killed: stray background children
/// die with it, which also closes their pipes. With `log`, each line is collected as it comes
/// (the engine's flusher writes them while the command runs).
async fn exchange(
    child: &mut tokio::process::Child,
    stdin: Option<Vec<u8>>,
    stdout_cap: usize,
    on_exit: impl FnOnce(),
    log: Option<&std::sync::Arc<LiveLog>>,
) -> (std::io::Result<std::process::ExitStatus>, Vec<u8>, Vec<u8>) {
    let mut group = ProcessGroup::new(child.id().map(|id| nix::unistd::Pid::from_raw(id as i32)));
    let pipe = child.stdin.take();
    let feed = async move {
        if let (Some(mut pipe), Some(payload)) = (pipe, stdin) {
            // A command that does not read its stdin closes the pipe: not an error.
            let _ = pipe.write_all(&payload).await;
            let _ = pipe.shutdown().await;
        }
    };
    let stdout = read_logged(child.stdout.take(), stdout_cap, "stdout", log);
    let stderr = read_logged(child.stderr.take(), MAX_STDOUT, "stderr", log);
    let exited = async {
        let status = child.wait().await;
        on_exit();
        drop(std::mem::replace(&mut group, ProcessGroup(None)));
        status
    };
    let (status, (), stdout, stderr) = tokio::join!(exited, feed, stdout, stderr);
    (status, stdout, stderr)
}
