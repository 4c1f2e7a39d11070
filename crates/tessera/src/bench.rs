//! `tessera bench`: the standard workloads (W1–W8 of BENCHMARKS.md), timed in-process through
//! the real engine. Every result is checked, so a broken engine cannot produce a figure.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tessera_core::Data;
use tessera_core::scheduler::{Progress, TaskState};
use tessera_engine::{Engine, EngineConfig};
use tessera_store::{Durability, Objects, SqliteStore, Store};

/// The standard workloads (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Workload {
    /// Fan-out: 1,000 no-op nodes between one entry and one end.
    W1,
    /// Chain: 200 no-op nodes.
    W2,
    /// 100 independent `command` nodes running `true`, against plain Rust spawning them.
    W3,
    /// A loop over 10,000 strings computing their lengths, collected in order.
    W4,
    /// A loop over 100,000 items (one no-op node each), collected in order; peak memory.
    W5,
    /// W5 with 1,000,000 items; each run in a process of its own, its peak memory measured.
    W6,
    /// W5 with 10,000,000 items; each run in a process of its own, its peak memory measured.
    W7,
    /// A loop over 100,000 items whose body is a `command` running `true`, against plain Rust
    /// spawning them at the same parallelism; each run in a process of its own, its peak
    /// memory measured.
    W8,
}

impl Workload {
    /// Runs in processes of their own, one per run (no warm-up), under a memory budget.
    fn isolated(self) -> bool {
        matches!(self, Workload::W6 | Workload::W7 | Workload::W8)
    }
}

/// The memory a run of an isolated workload may take (`RLIMIT_DATA`): beyond it the run fails
/// cleanly, where a runaway engine would otherwise take the machine's memory.
const ISOLATED_BUDGET: u64 = 8 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// SQLite file, every commit fsynced (`Durability::Full`).
    Durable,
    /// In-memory state (`--ephemeral`).
    Ephemeral,
    /// Durable and ephemeral.
    Both,
    /// PostgreSQL (the server `--postgres` names; a fresh database per run of a workload).
    Postgres,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true, default_values = ["W1", "W2", "W3", "W4", "W5"])]
    pub workload: Vec<Workload>,
    /// Timed runs per workload and mode (after one warm-up run).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    #[arg(long, value_enum, default_value = "both")]
    pub mode: ModeArg,
    /// Print one JSON line per workload and mode on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Commands running at once in the engine (and threads of the W3 baseline).
    #[arg(long, default_value_t = 2)]
    pub max_processes: usize,
    /// The PostgreSQL server of `--mode postgres`: a URL whose user may create databases.
    #[arg(long, env = "TESSERA_BENCH_PG", hide_env_values = true)]
    pub postgres: Option<String>,
    /// Internal: run this workload once, no warm-up, and print the time and this process's
    /// peak RSS as JSON.
    #[arg(long, hide = true, value_enum, ignore_case = true)]
    pub child: Option<Workload>,
}

impl ModeArg {
    fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Runtime = tokio::runtime::Runtime;

/// An engine on fresh state, built as `config::open_engine` does, with what keeps it alive.
fn open(
    mode: ModeArg,
    max_processes: usize,
    postgres: Option<&str>,
) -> Result<(Engine, Runtime, Scratch)> {
    let dir = std::env::temp_dir().join(format!("tessera-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = Scratch(dir);
    let db = dir.0.join("tessera.db");
    let store: Arc<dyn Store> = match mode {
        ModeArg::Ephemeral => Arc::new(SqliteStore::in_memory()?),
        ModeArg::Postgres => {
            let server = postgres.context("--mode postgres needs --postgres URL")?;
            let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let url = tessera_store::PgStore::create_database(server, &name)?;
            Arc::new(tessera_store::PgStore::open(&url)?)
        }
        _ => Arc::new(SqliteStore::open(&db, Durability::Full)?),
    };
    let objects = Objects::local(&dir.0.join("store"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(num_cpus::get().max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut config = EngineConfig::new(dir.0.join("work"));
    config.max_processes = max_processes;
    let engine = Engine::new(store, objects, runtime.handle().clone(), config)?;
    Ok((engine, runtime, dir))
}

/// One workload's pipeline text and input.
fn build(w: Workload) -> (String, Data) {
    let mut y = String::from("type: pipeline\nnodes:\n");
    let entry = |y: &mut String, route: &str, next: &str| {
        let _ = writeln!(
            y,
            "  - {{id: in, type: entry, api: {{route: {route}}}, next: [{next}]}}"
        );
    };
    let n = size(w).0;
    let input = match w {
        Workload::W1 | Workload::W3 => {
            let (p, body) = match w {
                Workload::W1 => ("n", "type: node"),
                _ => ("c", "type: command, command: [\"true\"], stdin: false"),
            };
            let ids: Vec<String> = (0..n).map(|i| format!("{p}{i}")).collect();
            entry(&mut y, &format!("bench-{w:?}"), &ids.join(", "));
            for id in &ids {
                let _ = writeln!(y, "  - {{id: {id}, {body}, next: [end]}}");
            }
            json!({"bench": format!("{w:?}")})
        }
        Workload::W2 => {
            entry(&mut y, "bench-W2", "n0");
            for i in 0..n {
                let next = if i + 1 == n {
                    "end".into()
                } else {
                    format!("n{}", i + 1)
                };
                let _ = writeln!(y, "  - {{id: n{i}, type: node, next: [{next}]}}");
            }
            json!({"bench": "W2"})
        }
        Workload::W8 => {
            entry(&mut y, "bench-W8", "each");
            y.push_str(
                "  - id: each\n    type: loop\n    items: in.out.items\n    next: [end]\n    \
                 nodes:\n      - {id: c, type: command, command: [\"true\"]}\n",
            );
            y.push_str("  - {id: end, type: end}\n");
            return (y, odd_numbers(n));
        }
        Workload::W4 | Workload::W5 | Workload::W6 | Workload::W7 => {
            let (after, collect, items): (_, _, Vec<Value>) = if w == Workload::W4 {
                let words = (0..n).map(|i| Value::String(w4_word(i))).collect();
                (
                    "\n        after: \"out = item.len();\"",
                    "loop.m.out",
                    words,
                )
            } else {
                // The items of W5–W7 are made as text by `input_of` (ten million values
                // would cost the bench more memory than the engine).
                ("", "loop.m.out.item", Vec::new())
            };
            entry(&mut y, &format!("bench-{w:?}"), "each");
            let _ = write!(
                y,
                "  - id: each\n    type: loop\n    items: in.out.items\n    collect: {collect}\n    \
                 next: [end]\n    nodes:\n      - id: m\n        type: node{after}\n"
            );
            if w == Workload::W4 {
                json!({ "items": items })
            } else {
                y.push_str("  - {id: end, type: end}\n");
                return (y, odd_numbers(n));
            }
        }
    };
    y.push_str("  - {id: end, type: end}\n");
    (y, Data::from_value(input))
}

/// `{"items": [1, 3, 5, …]}` with `n` items, as JSON text (kept as text by the engine).
fn odd_numbers(n: usize) -> Data {
    let mut text = String::with_capacity(n * 9 + 16);
    text.push_str("{\"items\":[");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{}", 2 * i as u64 + 1);
    }
    text.push_str("]}");
    Data::from_json(&text).expect("valid JSON")
}

/// The i-th W4 string: lengths 1 to 24, some non-ASCII (lengths count characters).
fn w4_word(i: usize) -> String {
    let base = if i.is_multiple_of(3) { "é" } else { "w" };
    base.repeat(1 + i % 24)
}

/// Work units of a workload, their name, and the node instances its task must finish.
fn size(w: Workload) -> (usize, &'static str, usize) {
    match w {
        Workload::W1 => (1_000, "node", 1_002),
        Workload::W2 => (200, "hop", 202),
        Workload::W3 => (100, "cmd", 102),
        // A loop of in-process nodes runs its items in chunks: entry, loop and end.
        Workload::W4 => (10_000, "item", 3),
        Workload::W5 => (100_000, "item", 3),
        Workload::W6 => (1_000_000, "item", 3),
        Workload::W7 => (10_000_000, "item", 3),
        // A body of commands runs as branches: one node instance per item.
        Workload::W8 => (100_000, "cmd", 100_003),
    }
}

/// Checks a task's result and that every node ran.
fn check(w: Workload, input: &Data, result: &Data, progress: &Progress) -> Result<()> {
    let (n, _, want) = size(w);
    ensure!(
        progress.total == want && progress.finished == want,
        "{w:?}: {} of {} nodes finished, expected {want} of {want}",
        progress.finished,
        progress.total
    );
    match w {
        Workload::W1 | Workload::W2 => ensure!(
            result.value() == input.value(),
            "{w:?}: result {}",
            result.json()
        ),
        Workload::W3 => ensure!(
            result.value().as_ref() == &json!({"stdout": "", "exit_code": 0}),
            "W3: result {} is not the output of `true`",
            result.json()
        ),
        // The loop collects its items in order: its result is the input, item for item.
        Workload::W5 | Workload::W6 | Workload::W7 => {
            let (got, expected) = (result.json(), input.json());
            ensure!(
                got == expected,
                "{w:?}: the collected items differ from the input ({} bytes, expected {})",
                got.len(),
                expected.len()
            );
        }
        Workload::W8 => {
            let result = result.value();
            let items = result["items"]
                .as_array()
                .ok_or_else(|| anyhow!("W8: no `items` list in the result"))?;
            ensure!(items.len() == n, "W8: {} items, expected {n}", items.len());
            let want = json!({"stdout": "", "exit_code": 0});
            ensure!(
                items.iter().all(|i| *i == want),
                "W8: an item is not the output of `true`"
            );
        }
        Workload::W4 => {
            let result = result.value();
            let items = result["items"]
                .as_array()
                .ok_or_else(|| anyhow!("{w:?}: no `items` list in the result"))?;
            ensure!(
                items.len() == n,
                "{w:?}: {} items, expected {n}",
                items.len()
            );
            for (i, got) in items.iter().enumerate() {
                let want = w4_word(i).chars().count() as u64;
                ensure!(
                    got.as_u64() == Some(want),
                    "{w:?}: item {i} is {got}, not {want}"
                );
            }
        }
    }
    Ok(())
}

/// One timed run: (total ms from the pipeline text to the checked result's arrival, load ms).
fn run_once(engine: &Engine, w: Workload, yaml: &str, input: &Data) -> Result<(f64, f64)> {
    let input_copy = input.clone();
    let t0 = Instant::now();
    let (pipeline, doc) = tessera_core::load_document(yaml, engine.scripts())
        .map_err(|r| anyhow!("{w:?}: generated pipeline is invalid: {r}"))?;
    let load = t0.elapsed();
    let handle = engine.submit(tessera_engine::Submission {
        definition: doc,
        pipeline: pipeline.into(),
        input: input_copy,
        owner: None,
        id: None,
        base_dir: None,
        tick: None,
    })?;
    let outcome = handle.wait()?;
    let total = t0.elapsed();
    if outcome.state != TaskState::Finished {
        let error = outcome.error.unwrap_or_default();
        bail!("{w:?}: task ended {:?}: {error}", outcome.state);
    }
    let result = outcome.result.unwrap_or_default();
    check(w, input, &result, &handle.progress())?;
    Ok((ms(total), ms(load)))
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Plain Rust: `count` processes of `true` on a pool of `threads` threads, each spawned with
/// stdin closed and stdout/stderr captured (as the engine does), then waited for.
fn spawn_baseline(count: usize, threads: usize) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    let work = || -> Result<()> {
        while next.fetch_add(1, Ordering::Relaxed) < count {
            let out = Command::new("true").stdin(Stdio::null()).output()?;
            ensure!(out.status.success(), "baseline: `true` failed");
        }
        Ok(())
    };
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        for h in workers {
            h.join()
                .map_err(|_| anyhow!("baseline thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(ms(t0.elapsed()))
}

/// Median, min and max.
fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    ((v[(n - 1) / 2] + v[n / 2]) / 2.0, v[0], v[n - 1])
}

/// One line of the report.
struct Row {
    workload: Workload,
    mode: ModeArg,
    runs: usize,
    /// Median, min and max ms.
    ms: (f64, f64, f64),
    load: f64,
    baseline: Option<f64>,
    rss_mb: Option<f64>,
}

impl Row {
    /// Median cost per work unit, in µs.
    fn per_unit(&self) -> f64 {
        self.ms.0 * 1e3 / size(self.workload).0 as f64
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline.map(|b| self.ms.0 / b)
    }

    /// The target (stated for durable mode on 2 cores) and whether it is met.
    fn target(&self) -> (&'static str, bool) {
        match self.workload {
            Workload::W1 | Workload::W2 => ("≤ 20 ms", self.ms.0 <= 20.0),
            Workload::W3 => ("≤ 1.5× spawn", self.ratio().is_some_and(|r| r <= 1.5)),
            Workload::W4 => ("≤ 5 ms", self.ms.0 <= 5.0),
            Workload::W5 => (
                "≤ 15 ms, ≤ 300 MB",
                self.ms.0 <= 15.0 && self.rss_mb.is_some_and(|m| m <= 300.0),
            ),
            Workload::W6 => (
                "≤ 150 ms, ≤ 300 MB",
                self.ms.0 <= 150.0 && self.rss_mb.is_some_and(|m| m <= 300.0),
            ),
            Workload::W7 => (
                "≤ 2 s, ≤ 2 GB",
                self.ms.0 <= 2000.0 && self.rss_mb.is_some_and(|m| m <= 2048.0),
            ),
            Workload::W8 => (
                "≤ 1.5× spawn, ≤ 200 MB",
                self.ratio().is_some_and(|r| r <= 1.5) && self.rss_mb.is_some_and(|m| m <= 200.0),
            ),
        }
    }

    fn json(&self) -> Value {
        let r3 = |x: f64| (x * 1e3).round() / 1e3;
        let (target, met) = self.target();
        json!({
            "tool": "tessera",
            "mode": self.mode.name(),
            "workload": format!("{:?}", self.workload),
            "runs": self.runs,
            "median_ms": r3(self.ms.0),
            "min_ms": r3(self.ms.1),
            "max_ms": r3(self.ms.2),
            "peak_rss_mb": self.rss_mb.map(r3),
            "load_ms": r3(self.load),
            "per_unit_us": r3(self.per_unit()),
            "baseline_median_ms": self.baseline.map(r3),
            "ratio": self.ratio().map(r3),
            "target": target,
            "met": met,
        })
    }
}

fn measure(args: &BenchArgs, w: Workload, mode: ModeArg) -> Result<Row> {
    if w.isolated() {
        return measure_isolated(args, w, mode);
    }
    let (engine, runtime, dir) = open(mode, args.max_processes, args.postgres.as_deref())?;
    let (yaml, input) = build(w);
    let (mut times, mut loads, mut baselines) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=args.runs {
        let (t, load) = run_once(&engine, w, &yaml, &input)
            .with_context(|| format!("{} run {run}", mode.name()))?;
        let base = (w == Workload::W3).then(|| spawn_baseline(100, args.max_processes));
        let base = base.transpose()?;
        if run > 0 {
            times.push(t);
            loads.push(load);
            baselines.extend(base);
        }
    }
    drop((engine, runtime, dir));
    let rss_mb = (w == Workload::W5)
        .then(|| in_child(w, mode, args.postgres.as_deref()).map(|(_, _, rss)| rss))
        .transpose()?;
    Ok(Row {
        workload: w,
        mode,
        runs: args.runs,
        ms: stats(&times),
        load: stats(&loads).0,
        baseline: (!baselines.is_empty()).then(|| stats(&baselines).0),
        rss_mb,
    })
}

/// W6–W8: every run in a fresh process (no warm-up: a process is as cold as a user's),
/// the time its median, the memory the highest peak.
fn measure_isolated(args: &BenchArgs, w: Workload, mode: ModeArg) -> Result<Row> {
    let (mut times, mut loads, mut peak) = (Vec::new(), Vec::new(), 0f64);
    let mut baselines = Vec::new();
    for run in 1..=args.runs {
        let (t, load, rss) = in_child(w, mode, args.postgres.as_deref())
            .with_context(|| format!("{} run {run}", mode.name()))?;
        times.push(t);
        loads.push(load);
        peak = peak.max(rss);
        // The same commands spawned by plain Rust, right after (same machine state).
        if w == Workload::W8 {
            baselines.push(spawn_baseline(size(w).0, args.max_processes)?);
        }
    }
    Ok(Row {
        workload: w,
        mode,
        runs: args.runs,
        ms: stats(&times),
        load: stats(&loads).0,
        baseline: (!baselines.is_empty()).then(|| stats(&baselines).0),
        rss_mb: Some(peak),
    })
}

/// Runs `w` once in a fresh `tessera bench` process (an isolated workload under
/// [`ISOLATED_BUDGET`] of memory, which the child sets itself), and reads its time, load time and peak RSS (so the figure is not inflated by this
/// process's other workloads).
fn in_child(w: Workload, mode: ModeArg, postgres: Option<&str>) -> Result<(f64, f64, f64)> {
    let exe = std::env::current_exe().context("cannot find the tessera executable")?;
    let mut child = Command::new(exe);
    if let Some(url) = postgres {
        // Passed in the environment: a URL may hold a password, never shown by `ps`.
        child.env("TESSERA_BENCH_PG", url);
    }
    child
        .args([
            "bench",
            "--runs",
            "1",
            "--child",
            &format!("{w:?}"),
            "--mode",
        ])
        .arg(mode.name())
        .stderr(Stdio::inherit());
    let out = child
        .output()
        .with_context(|| format!("cannot start the {w:?} run"))?;
    ensure!(
        out.status.success(),
        "the {w:?} run failed ({}); a run may use at most {} GiB of memory",
        out.status,
        ISOLATED_BUDGET >> 30
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("the {w:?} run printed no JSON"))?;
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| anyhow!("the {w:?} run gave no {k}"))
    };
    Ok((num("ms")?, num("load_ms")?, num("peak_rss_mb")?))
}

/// `VmHWM` of this process in MiB.
fn peak_rss_mb() -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kb / 1024.0)
}

/// Cells padded to `WIDTHS` (negative: left-aligned).
fn line(cells: &[String]) -> String {
    const WIDTHS: [i32; 11] = [-4, -9, 4, 10, 10, 10, 8, 14, 9, -16, -4];
    let mut out = String::new();
    for (c, w) in cells.iter().zip(WIDTHS) {
        let pad = " ".repeat((w.unsigned_abs() as usize).saturating_sub(c.chars().count()));
        out += &if w < 0 {
            format!("{c}{pad} ")
        } else {
            format!("{pad}{c} ")
        };
    }
    out.trim_end().to_string() + "\n"
}

fn table(rows: &[Row]) -> String {
    let head = "wl mode runs median_ms min_ms max_ms load_ms per_unit peak_RSS target met";
    let mut t = line(&head.split(' ').map(String::from).collect::<Vec<_>>());
    for r in rows {
        let (target, met) = r.target();
        let f = |x: f64| format!("{x:.2}");
        t += &line(&[
            format!("{:?}", r.workload),
            r.mode.name(),
            r.runs.to_string(),
            f(r.ms.0),
            f(r.ms.1),
            f(r.ms.2),
            f(r.load),
            format!("{:.2} µs/{}", r.per_unit(), size(r.workload).1),
            r.rss_mb.map_or("-".into(), |m| format!("{m:.1} MB")),
            target.into(),
            (if met { "yes" } else { "MISS" }).into(),
        ]);
        if let (Some(b), Some(ratio)) = (r.baseline, r.ratio()) {
            t += &format!(
                "     └ plain-Rust spawn baseline {b:.2} ms; engine/baseline {ratio:.2}×\n"
            );
        }
    }
    t + "targets are stated for durable mode on 2 cores; times include parsing and validating the pipeline\n"
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.max_processes >= 1, "--max-processes must be ≥ 1");
    let modes: &[ModeArg] = match args.mode {
        ModeArg::Durable => &[ModeArg::Durable],
        ModeArg::Ephemeral => &[ModeArg::Ephemeral],
        ModeArg::Both => &[ModeArg::Durable, ModeArg::Ephemeral],
        ModeArg::Postgres => &[ModeArg::Postgres],
    };
    if let Some(w) = args.child {
        ensure!(modes.len() == 1, "--child needs one --mode");
        // The child limits itself before allocating anything of the run.
        if w.isolated() {
            use nix::sys::resource::{Resource, setrlimit};
            setrlimit(Resource::RLIMIT_DATA, ISOLATED_BUDGET, ISOLATED_BUDGET)
                .context("cannot limit the run's memory")?;
        }
        let (engine, _runtime, _dir) =
            open(modes[0], args.max_processes, args.postgres.as_deref())?;
        let (yaml, input) = build(w);
        let (t, load) = run_once(&engine, w, &yaml, &input)?;
        outln!(
            "{}",
            json!({"ms": t, "load_ms": load, "peak_rss_mb": peak_rss_mb()?})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut workloads = args.workload.clone();
    workloads.dedup();
    let mut rows = Vec::new();
    for &w in &workloads {
        for &mode in modes {
            let (m, runs) = (mode.name(), args.runs);
            if w.isolated() {
                errln!("tessera bench: {w:?} {m} ({runs} runs, each in a process of its own)…");
            } else {
                errln!("tessera bench: {w:?} {m} ({runs} runs + 1 warm-up)…");
            }
            let row = measure(&args, w, mode).with_context(|| format!("{w:?}"))?;
            if args.json {
                outln!("{}", row.json())?;
            }
            rows.push(row);
        }
    }
    if args.json {
        errln!("{}", table(&rows).trim_end());
    } else {
        outln!("{}", table(&rows).trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}
