//! `tessera serve`: the engine server on the local data dir (SQLite + objects) by default.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tessera_server::{Limits, ServerConfig, Tokens};

use crate::cli::{DataArgs, EngineArgs};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TESSERA_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// URL services use to call back (default: http://<addr>).
    #[arg(long, env = "TESSERA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Access token `role:name:secret` (roles: admin, user, service); repeatable, or
    /// comma-separated in TESSERA_TOKENS.
    #[arg(
        long = "token",
        env = "TESSERA_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// File of access tokens, one `role:name:secret` per line; must not be readable by group
    /// or others (keeps secrets out of the command line and the environment).
    #[arg(long, env = "TESSERA_TOKENS_FILE", value_name = "PATH")]
    tokens_file: Option<std::path::PathBuf>,
    /// Listen on a non-loopback address without tokens.
    #[arg(long)]
    insecure: bool,
    /// API only: submissions are recorded for `tessera worker` processes on the same store to
    /// claim; this server runs no task itself (a resume asked of it still runs here).
    #[arg(long)]
    no_work: bool,
    /// On SIGTERM or Ctrl-C: how long running tasks may take to end here before their
    /// commands are killed and the tasks handed back (claimable at once by any instance, or by
    /// this one once restarted), e.g. `10s`. Nothing new starts meanwhile.
    #[arg(long, env = "TESSERA_GRACE", default_value = "10s", value_parser = parse_grace)]
    grace: std::time::Duration,
    /// Serve /metrics, /openapi.json and /docs without a token when tokens are on.
    #[arg(long, env = "TESSERA_PUBLIC_INFO")]
    public_info: bool,
    /// Largest JSON/YAML request body, in MiB.
    #[arg(long, default_value_t = 16)]
    max_body_mb: usize,
    /// Largest upload, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_upload_mb: usize,
    /// Seconds a client has to send a request's headers (and to start its next request on a
    /// kept-alive connection).
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds without a byte either way after which a connection is closed.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// Connections served at once; beyond, new ones get 503 and are closed.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Most nodes a stored pipeline may have (loop templates included).
    #[arg(long, default_value_t = 10_000)]
    max_nodes: usize,
    /// Services announce this often (seconds); silent for 3 periods = removed.
    #[arg(long, default_value_t = 30.0)]
    announce_period: f64,
    /// Ended tasks and their objects are deleted after this many days.
    #[arg(long, default_value_t = 7.0)]
    retention_days: f64,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    // Its commands run as its user: they must not read its environment (tokens) in /proc.
    tessera_engine::hide_own_environment()?;
    let settings = Settings::resolve(&args.data, Some(&args.engine))?;
    let mut entries = args.tokens.clone();
    if let Some(path) = &args.tokens_file {
        entries.extend(Tokens::entries_from_file(path).map_err(anyhow::Error::msg)?);
    }
    let tokens = Tokens::parse(&entries).map_err(anyhow::Error::msg)?;
    if !(args.announce_period > 0.0 && args.retention_days > 0.0) {
        bail!("--announce-period and --retention-days must be positive");
    }
    if !(args.header_timeout > 0.0 && args.idle_timeout > 0.0 && args.max_connections > 0) {
        bail!("--header-timeout, --idle-timeout and --max-connections must be positive");
    }
    let connections = tessera_server::ConnectionLimits {
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        max_connections: args.max_connections,
    };
    let limits = Limits {
        max_body: args.max_body_mb << 20,
        max_upload: args.max_upload_mb << 20,
        max_nodes: args.max_nodes,
        announce_period: Duration::from_secs_f64(args.announce_period),
        retention: Duration::from_secs_f64(args.retention_days * 86400.0),
    };
    if args.no_work && !settings.serves.all() {
        anyhow::bail!(
            "--no-work runs no task: --pools and --node-types have no meaning with it (give them to the workers)"
        );
    }
    let store = settings.open_store()?;
    let objects = settings.open_objects()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(num_cpus::get().max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = ServerConfig {
        addr: args.addr,
        public_url: args.public_url.clone(),
        tokens,
        insecure: args.insecure,
        public_info: args.public_info,
        limits,
        connections,
        engine: {
            let mut engine = settings.engine_config(&settings.data_dir);
            engine.run_tasks = !args.no_work;
            engine
        },
    };
    let args_grace = args.grace;
    runtime.block_on(async move {
        let server = tessera_server::start(config, store, objects).await?;
        errln!(
            "tessera serving on {} (docs: {}/docs)",
            server.url,
            server.url
        );
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot watch for SIGTERM")?;
        let engine = server.engine.clone();
        tokio::select! {
            r = server.wait() => r?,
            _ = tokio::signal::ctrl_c() => errln!("stopping"),
            _ = terminate.recv() => errln!("stopping (SIGTERM)"),
        }
        // Nothing new starts; what ends within the grace period ends here; the rest is handed
        // back (commands killed: none outlives the server), to continue elsewhere or at the
        // next start without waiting for its lease.
        let grace = args_grace;
        let (ended, handed_back) = tokio::task::spawn_blocking(move || engine.drain(grace)).await?;
        errln!(
            "{ended} task(s) ended during the grace period, {handed_back} handed back (they \
             continue on another instance or at the next start)"
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parse_grace(text: &str) -> Result<std::time::Duration, String> {
    tessera_core::model::parse_duration_str(text)
}
