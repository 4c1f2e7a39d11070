//! The `tessera` command line: run and resume pipelines in-process, validate and draw them,
//! inspect tasks in the local data dir, compute rasters, and benchmark the engine.

#[macro_use]
mod output;
mod bench;
mod cli;
mod config;
mod objects;
mod progress;
mod raster;
mod remote;
mod remote_run;
mod run;
mod schedules;
mod serve;
mod services;
mod tasks;
mod worker;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: the engine allocates and frees millions of small
/// values (node instances, records, JSON), and glibc spent up to 40 % of a long loop in
/// `malloc`, `free` and `malloc_consolidate`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log timestamps in the one format of Tessera's documents (RFC 3339, UTC, milliseconds).
struct Rfc3339Timer;

impl tracing_subscriber::fmt::time::FormatTime for Rfc3339Timer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        write!(w, "{}", tessera_core::time::Rfc3339(ms))
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Logs: TESSERA_LOG sets the filter (default warn; `tessera serve` defaults to info),
    // TESSERA_LOG_FORMAT=json gives one JSON object per line with task and node ids as fields.
    let default = if matches!(cli.command, cli::Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    // PostgreSQL's notices ("relation … already exists, skipping" of idempotent migrations)
    // are not the user's concern.
    let default = format!("{default},sqlx::postgres::notice=warn");
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(Rfc3339Timer)
        .with_writer(std::io::stderr);
    if std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        // The reader of the output went away (`| head -1`): nothing to say, nobody to hear it.
        Err(e) if output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
