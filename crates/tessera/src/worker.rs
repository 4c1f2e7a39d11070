//! `tessera worker`: runs tasks for the servers of a shared store without serving HTTP. It
//! claims every task nobody holds (submissions recorded by `serve --no-work`, tasks whose
//! holder was killed), renews its claims, learns of callbacks and cancels through the store,
//! and hands its tasks back on SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::{DataArgs, EngineArgs};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The URL of the server that takes service callbacks for this store's tasks (its
    /// `--public-url`); needed only by pipelines with `service` nodes.
    #[arg(long, env = "TESSERA_CALLBACK_URL")]
    callback_url: Option<String>,
    /// On SIGTERM or Ctrl-C: how long running tasks may take to end here before their
    /// commands are killed and the tasks handed back, e.g. `10s`.
    #[arg(long, env = "TESSERA_GRACE", default_value = "10s", value_parser = crate::serve::parse_grace)]
    grace: Duration,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    tessera_engine::hide_own_environment()?;
    let settings = Settings::resolve(&args.data, Some(&args.engine))?;
    if settings.ephemeral {
        anyhow::bail!("a worker shares its store with servers: --ephemeral has no meaning here");
    }
    let store = settings.open_store()?;
    let objects = settings.open_objects()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(num_cpus::get().max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut config = settings.engine_config(&settings.data_dir);
    config.callback_base = args.callback_url.clone();
    let engine = tessera_engine::Engine::new(store, objects, runtime.handle().clone(), config)?;
    errln!(
        "tessera worker on {} (lease {:?})",
        settings.db.describe(&settings.data_dir),
        engine.lease()
    );
    let every = engine.claim_every();
    let grace = args.grace;
    runtime.block_on(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot watch for SIGTERM")?;
        // Handles are kept until their tasks end (a dropped handle does not stop a task).
        let mut running: Vec<tessera_engine::TaskHandle> = Vec::new();
        loop {
            let e = engine.clone();
            let claimed = tokio::task::spawn_blocking(move || e.claim_available()).await?;
            running.retain(|h| !h.is_done());
            running.extend(claimed);
            tokio::select! {
                _ = engine.next_round(every) => {}
                _ = tokio::signal::ctrl_c() => { errln!("stopping"); break; }
                _ = terminate.recv() => { errln!("stopping (SIGTERM)"); break; }
            }
        }
        let (ended, handed_back) = tokio::task::spawn_blocking(move || engine.drain(grace)).await?;
        errln!("{ended} task(s) ended during the grace period, {handed_back} handed back");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
