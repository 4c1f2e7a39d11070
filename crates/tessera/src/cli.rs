//! Command-line arguments (clap) and dispatch to the subcommands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tessera_core::Scripts;

use crate::config::{Config, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Parallel data pipelines on every core, durable, with nothing to install"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// State directory (SQLite database and objects).
    #[arg(long, env = "TESSERA_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// State database: `sqlite:PATH`, or `postgres://user:password@host:port/database` for
    /// several servers and workers sharing one store (default: tessera.db in the data dir).
    #[arg(long, env = "TESSERA_DB", global = true, hide_env_values = true)]
    pub db: Option<String>,
    /// Object store: a directory, `file://DIR` or `s3://bucket/prefix` (credentials and
    /// endpoint from the AWS_* variables; default: store/ in the data dir).
    #[arg(long, env = "TESSERA_STORE", global = true)]
    pub store: Option<String>,
    /// Keep nothing: in-memory state, objects in a temporary directory.
    #[arg(long, global = true)]
    pub ephemeral: bool,
    /// Configuration file (default: ./tessera.toml when present).
    #[arg(long, env = "TESSERA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// A server to talk to instead of the local data dir.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// A Tessera server's base URL (e.g. http://127.0.0.1:8080) instead of the data dir.
    #[arg(long, env = "TESSERA_SERVER", global = true)]
    pub server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, env = "TESSERA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl RemoteArgs {
    /// The server to talk to, if `--server` was given.
    pub fn remote(&self) -> Result<Option<crate::remote::Remote>> {
        self.server
            .as_deref()
            .map(|url| crate::remote::Remote::new(url, self.token.as_deref()))
            .transpose()
    }
}

#[derive(Debug, Subcommand)]
pub enum ObjectsAction {
    /// Writes an object's bytes to stdout, or to a file with -o (into a directory: under the
    /// object's name, made safe, never replacing a file).
    Get {
        object_id: String,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DurabilityArg {
    /// fsync every commit (survives power loss).
    Full,
    /// Survives a killed process, not a power cut.
    Process,
}

#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Commands running at once.
    #[arg(long, env = "TESSERA_MAX_PROCESSES")]
    pub max_processes: Option<usize>,
    /// Named pool size, e.g. `--pool gpu=1` (repeatable).
    #[arg(long = "pool", value_name = "NAME=SIZE")]
    pub pools: Vec<String>,
    /// Run only tasks whose named pools are among these (comma-separated, e.g. `--pools gpu`;
    /// `--pools ''`: only tasks using no pool); the others are left to other servers and
    /// workers of the store. Default: every pool.
    #[arg(
        long = "pools",
        value_name = "NAMES",
        env = "TESSERA_SERVE_POOLS",
        value_delimiter = ','
    )]
    pub serve_pools: Option<Vec<String>>,
    /// Run only tasks whose external nodes are of these kinds (comma-separated among
    /// command, http, service, batch, raster); the others are left to other processes.
    /// Default: every kind.
    #[arg(
        long,
        value_name = "KINDS",
        env = "TESSERA_NODE_TYPES",
        value_delimiter = ','
    )]
    pub node_types: Option<Vec<String>>,
    /// How hard each commit works to survive a crash.
    #[arg(long, value_enum, env = "TESSERA_DURABILITY")]
    pub durability: Option<DurabilityArg>,
    /// Variables of Tessera's environment that commands get (repeatable or comma-separated;
    /// default PATH,HOME,LANG,TZ,TMPDIR). Nothing else reaches them.
    #[arg(
        long = "command-env",
        env = "TESSERA_COMMAND_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub command_env: Vec<String>,
    /// How long a claim on a task lasts without renewal (renewed every third of it while the
    /// task runs here), e.g. `10s`, `500ms`. After `kill -9`, a task continues elsewhere (or
    /// after a restart) once its lease has run out. Default 10s.
    #[arg(long, env = "TESSERA_LEASE", value_parser = parse_lease)]
    pub lease: Option<std::time::Duration>,
}

fn parse_task_state(text: &str) -> Result<tessera_core::scheduler::TaskState, String> {
    tessera_core::scheduler::TaskState::parse(text).ok_or_else(|| {
        format!("unknown state `{text}` (pending, running, finished, failed, cancelled)")
    })
}

fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let d = tessera_core::model::parse_duration_str(text)?;
    if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(86_400) {
        return Err("a lease is between 100ms and 1 day".into());
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline in this process (or on a server with --server); the result JSON goes to
    /// stdout.
    Run {
        /// Pipeline file (YAML or JSON).
        file: PathBuf,
        /// Task input: JSON text, or @file.json (default: the entry's `api.body` example).
        #[arg(long)]
        input: Option<String>,
        /// Binary input field from a file: `--file image=@photo.jpg` (repeatable).
        #[arg(long = "file", value_name = "NAME=@PATH")]
        files: Vec<String>,
        /// Submit to this Tessera server (the pipeline is stored there under its name) and
        /// follow the task until it ends, instead of running it here (TESSERA_SERVER is not
        /// read here: a local run never goes to a server unasked).
        #[arg(long)]
        server: Option<String>,
        /// Bearer token for --server.
        #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Continue a failed, cancelled or interrupted task; with `--pipeline` or `--input`, with
    /// a fix: changed nodes and everything after them run again, the rest keeps its outputs.
    Resume {
        task_id: String,
        /// The fixed pipeline file (the task keeps the definition it ran with before).
        #[arg(long, value_name = "FILE")]
        pipeline: Option<PathBuf>,
        /// A new input: JSON text, or @file.
        #[arg(long)]
        input: Option<String>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Check a pipeline and report every problem at once.
    Validate {
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also check `service: name/endpoint` nodes against this server's registry.
        #[arg(long, env = "TESSERA_SERVER")]
        server: Option<String>,
        /// Bearer token for --server.
        #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Draw a pipeline.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Inspect and control tasks of the data dir, or of a server with --server.
    Tasks {
        #[command(subcommand)]
        action: TasksAction,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Stored objects (files) of the data dir, or of a server with --server.
    Objects {
        #[command(subcommand)]
        action: ObjectsAction,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The services registry (`service: name/endpoint` nodes): the data dir's, or a server's
    /// with --server.
    Services {
        #[command(subcommand)]
        action: crate::services::ServicesAction,
        #[command(flatten)]
        data: DataArgs,
        /// A Tessera server's base URL instead of the data dir.
        #[arg(long, env = "TESSERA_SERVER", global = true)]
        server: Option<String>,
        /// Bearer token for --server.
        #[arg(long, env = "TESSERA_TOKEN", global = true, hide_env_values = true)]
        token: Option<String>,
    },
    /// Cron schedules of the stored pipelines (the data dir's, or a server's with --server):
    /// next and last ticks, pause, resume.
    Schedules {
        #[command(subcommand)]
        action: crate::schedules::SchedulesAction,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Create the tasks of a schedule's ticks within a range (those that have none), for the
    /// servers and workers of the store to run.
    Backfill {
        #[command(flatten)]
        args: crate::schedules::BackfillArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Run the engine server: REST API, live events, services, docs at /docs.
    Serve(crate::serve::ServeArgs),
    /// Run tasks for the servers of a shared store, without serving HTTP: claim what nobody
    /// holds (new submissions of `serve --no-work`, tasks of killed processes), renew, hand
    /// back on SIGTERM.
    Worker(crate::worker::WorkerArgs),
    /// Create the state database's tables, or bring them to this version's schema, then exit
    /// (servers and workers do it too when they start; this is for a deployment's migration
    /// step).
    Migrate {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Measure the engine on the standard workloads (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Compute rasters tile by tile, in parallel, cached: band math and slope over GeoTIFFs.
    Raster {
        #[command(subcommand)]
        command: crate::raster::RasterCommand,
    },
    /// Write sample data for the examples, tests and benchmarks.
    Sample {
        #[command(subcommand)]
        kind: SampleKind,
    },
}

#[derive(Debug, Subcommand)]
pub enum SampleKind {
    /// A "patronyme,count" CSV of realistic French surnames (accents, hyphens, apostrophes, a
    /// few quoted fields with commas); the same --rows and --seed give the same bytes.
    Patronymes {
        #[arg(long, default_value_t = 800_000)]
        rows: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Svg,
}

#[derive(Debug, Subcommand)]
pub enum TasksAction {
    /// Tasks, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        pipeline: Option<String>,
        /// pending, running, finished, failed or cancelled.
        #[arg(long, value_parser = parse_task_state)]
        state: Option<tessera_core::scheduler::TaskState>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One task with its nodes.
    Show {
        task_id: String,
        #[arg(long)]
        json: bool,
        /// With --json: the input and the result whole even when big (over 64 KiB), where
        /// the document otherwise gives their size (`input_bytes`, `result_bytes`).
        #[arg(long)]
        full: bool,
    },
    /// Captured output of a node (all of the task's with no node given). A loop, or a node
    /// of a loop's template, shows every instance (`measure#3` names one).
    Logs {
        task_id: String,
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A loop's items, a page at a time: index, state, value, and for a failed item the node
    /// that failed and why (`--state failed` lists the failures).
    Items {
        task_id: String,
        /// The loop (its id, or an instance key such as `cells#3` for a loop in a loop).
        #[arg(value_name = "LOOP")]
        loop_key: String,
        /// pending, running, finished or failed.
        #[arg(long, value_parser = parse_item_state)]
        state: Option<tessera_engine::inspect::ItemState>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Items per page, 1 to 10,000.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// The result of a finished task as JSON; `--save DIR` also writes each object it names
    /// into DIR (and says where in the JSON: `saved_to`).
    Result {
        task_id: String,
        /// Directory to write the result's objects into (created if missing; existing files
        /// are never replaced).
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
    },
    /// Cancel a running task (its commands are killed).
    Cancel { task_id: String },
}

fn parse_item_state(s: &str) -> Result<tessera_engine::inspect::ItemState, String> {
    tessera_engine::inspect::ItemState::parse(s)
        .ok_or_else(|| format!("`{s}`: expected pending, running, finished or failed"))
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            file,
            input,
            files,
            server,
            token,
            data,
            engine,
        } => match server {
            Some(url) => {
                let remote = crate::remote::Remote::new(&url, token.as_deref())?;
                crate::remote_run::run(&remote, &file, input.as_deref(), &files)
            }
            None => {
                let settings = Settings::resolve(&data, Some(&engine))?;
                crate::run::run(&settings, &file, input.as_deref(), &files)
            }
        },
        Command::Resume {
            task_id,
            pipeline,
            input,
            data,
            engine,
        } => {
            let settings = Settings::resolve(&data, Some(&engine))?;
            crate::run::resume(&settings, &task_id, pipeline.as_deref(), input.as_deref())
        }
        Command::Validate {
            file,
            json,
            server,
            token,
        } => validate(&file, json, server.as_deref(), token.as_deref()),
        Command::Services {
            action,
            data,
            server,
            token,
        } => {
            let settings = Settings::resolve(&data, None)?;
            crate::services::services(&settings, server.as_deref(), token.as_deref(), action)
        }
        Command::Graph { file, format } => {
            let pipeline = load_or_report(&file)?;
            match pipeline {
                Ok((p, _)) => {
                    let text = match format {
                        GraphFormat::Dot => tessera_core::graph::to_dot(&p),
                        GraphFormat::Svg => tessera_core::graph::to_svg(&p),
                    };
                    outln!("{text}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(report) => {
                    errln!("{}: invalid pipeline:\n{report}", file.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Schedules {
            action,
            data,
            remote,
        } => {
            crate::schedules::schedules(|| Settings::resolve(&data, None), remote.remote()?, action)
        }
        Command::Backfill { args, data, remote } => {
            crate::schedules::backfill(|| Settings::resolve(&data, None), remote.remote()?, args)
        }
        Command::Tasks {
            action,
            data,
            remote,
        } => match remote.server {
            Some(url) => {
                let remote = crate::remote::Remote::new(&url, remote.token.as_deref())?;
                crate::tasks::remote(&remote, action)
            }
            None => {
                let settings = Settings::resolve(&data, None)?;
                crate::tasks::tasks(&settings, action)
            }
        },
        Command::Objects {
            action,
            data,
            remote,
        } => {
            let source = match remote.server {
                Some(url) => crate::objects::Source::Remote(crate::remote::Remote::new(
                    &url,
                    remote.token.as_deref(),
                )?),
                None => crate::objects::Source::local(&Settings::resolve(&data, None)?)?,
            };
            match action {
                ObjectsAction::Get { object_id, output } => {
                    crate::objects::get(&source, &object_id, output.as_deref())
                }
            }
        }
        Command::Bench(args) => crate::bench::bench(args),
        Command::Sample {
            kind: SampleKind::Patronymes { rows, seed, out },
        } => sample_patronymes(rows, seed, out.as_deref()),
        Command::Serve(args) => crate::serve::serve(args),
        Command::Worker(args) => crate::worker::worker(args),
        Command::Migrate { data } => {
            let settings = Settings::resolve(&data, None)?;
            settings.open_store()?;
            errln!(
                "the schema of {} is up to date (tables created or upgraded as needed)",
                settings.db.describe(&settings.data_dir)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Raster { command } => crate::raster::raster(command),
    }
}

/// Reads and validates a pipeline file: `Ok(Err(report))` when the pipeline is invalid.
pub fn load_or_report(
    file: &std::path::Path,
) -> Result<std::result::Result<(tessera_core::Pipeline, serde_json::Value), tessera_core::Report>>
{
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let scripts = Scripts::default();
    Ok(
        tessera_core::load_document(&text, &scripts).map(|(mut pipeline, mut definition)| {
            // Without a name or a route, a pipeline is named after its file (as `run --server`
            // stores it), when the file's name is a valid pipeline name.
            if definition.get("name").is_none() && pipeline.name == "pipeline" {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if tessera_core::parse::name_problem(&stem).is_none() {
                    definition["name"] = serde_json::Value::String(stem.clone());
                    pipeline.name = stem;
                }
            }
            (pipeline, definition)
        }),
    )
}

fn validate(
    file: &std::path::Path,
    json: bool,
    server: Option<&str>,
    token: Option<&str>,
) -> Result<ExitCode> {
    let result = load_or_report(file)?;
    let mut report = match &result {
        Ok(_) => tessera_core::Report::default(),
        Err(r) => r.clone(),
    };
    // Names are checked once the pipeline is otherwise valid: a broken one has no nodes to
    // look names up for.
    if let (Ok((pipeline, _)), Some(server)) = (&result, server) {
        let known = crate::services::server_registry(server, token)
            .with_context(|| format!("cannot read the services registry of {server}"))?;
        report = tessera_core::services::check_names(pipeline, &known);
    }
    if json {
        crate::output::json(&report)?;
    } else if report.is_ok() {
        let (p, _) = result.as_ref().expect("ok");
        let checked = match server {
            Some(s) => format!(", service names found in {s}'s registry"),
            None => String::new(),
        };
        outln!(
            "{}: valid pipeline `{}` ({} nodes{checked})",
            file.display(),
            p.name,
            p.declared_nodes()
        )?;
    } else {
        errln!("{}: {} problem(s):", file.display(), report.errors.len());
        for e in &report.errors {
            errln!("  {e}");
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

impl Config {
    pub fn load(path: Option<&std::path::Path>) -> Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("tessera.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid configuration in {}", path.display())),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// Writes the patronymes sample atomically (temporary file renamed when complete).
fn sample_patronymes(rows: u64, seed: u64, out: Option<&Path>) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let stats = match out {
        None => tessera_batch::sample::write_patronymes(std::io::stdout().lock(), rows, seed)
            .map_err(crate::output::stdout_error)?,
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let tmp = path.with_extension("tmp");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let stats = tessera_batch::sample::write_patronymes(
                std::io::BufWriter::with_capacity(1 << 20, file),
                rows,
                seed,
            )?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            stats
        }
    };
    errln!(
        "{} rows, {} bytes, {} quoted, in {:.2} s",
        stats.rows,
        stats.bytes,
        stats.quoted,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
