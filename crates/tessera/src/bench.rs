//! `tessera bench`: the standard workloads (W1–W5 of BENCHMARKS.md), timed in-process.

use std::process::ExitCode;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn bench(_args: BenchArgs) -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
