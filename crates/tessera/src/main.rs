//! The `tessera` command line: run and resume pipelines in-process, validate and draw them,
//! inspect tasks in the local data dir, compute rasters, and benchmark the engine.

mod bench;
mod cli;
mod config;
mod progress;
mod raster;
mod run;
mod serve;
mod services;
mod tasks;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Logs: TESSERA_LOG sets the filter (default warn; `tessera serve` defaults to info),
    // TESSERA_LOG_FORMAT=json gives one JSON object per line with task and node ids as fields.
    let default = if matches!(cli.command, cli::Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
