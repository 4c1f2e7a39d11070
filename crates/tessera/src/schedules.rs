//! `tessera schedules list|show|pause|resume` and `tessera backfill`: the schedules of the
//! stored pipelines — the data dir's (or `--db`'s), or a server's with `--server`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use tessera_core::Scripts;
use tessera_engine::schedules::{self, Backfill};

use crate::config::Settings;
use crate::remote::{Remote, segment};

#[derive(Debug, Subcommand)]
pub enum SchedulesAction {
    /// Every scheduled pipeline: cron, next tick, last tick and its task's state, paused or not.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One pipeline's schedule.
    Show {
        pipeline: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop creating ticks' tasks until resumed (tasks already created go on).
    Pause { pipeline: String },
    /// Create ticks' tasks again; ticks missed meanwhile follow the schedule's `catchup`.
    Resume { pipeline: String },
}

/// `tessera backfill`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The stored pipeline whose schedule's ticks to create.
    pub pipeline: String,
    /// The first instant of the range (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub from: String,
    /// The last instant of the range (RFC 3339), inclusive.
    #[arg(long)]
    pub to: String,
    /// List the ticks and which have a task already; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the ticks and what became of each as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The schedule commands on the data dir's store.
fn local(settings: &Settings, action: SchedulesAction) -> Result<ExitCode> {
    let store = settings.open_store()?;
    let scripts = Scripts::default();
    match action {
        SchedulesAction::List { json } => {
            let views =
                schedules::schedule_views(store.as_ref(), &scripts, crate::run::now_millis())?;
            print_views(&serde_json::to_value(views)?, json)?;
        }
        SchedulesAction::Show { pipeline, json } => {
            let view = schedules::schedule_view(
                store.as_ref(),
                &scripts,
                &pipeline,
                crate::run::now_millis(),
            )?
            .ok_or_else(|| {
                anyhow::anyhow!("pipeline `{pipeline}` has no schedule (or does not exist)")
            })?;
            print_view(&serde_json::to_value(view)?, json)?;
        }
        SchedulesAction::Pause { pipeline } => {
            schedules::set_paused(
                store.as_ref(),
                &scripts,
                &pipeline,
                true,
                crate::run::now_millis(),
            )?;
            errln!("schedule of {pipeline} paused");
        }
        SchedulesAction::Resume { pipeline } => {
            schedules::set_paused(
                store.as_ref(),
                &scripts,
                &pipeline,
                false,
                crate::run::now_millis(),
            )?;
            errln!("schedule of {pipeline} resumed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Dispatches a schedules command: to the server with `--server`, else on the data dir.
pub fn schedules(
    settings: impl FnOnce() -> Result<Settings>,
    remote: Option<Remote>,
    action: SchedulesAction,
) -> Result<ExitCode> {
    match remote {
        Some(remote) => on_server(&remote, action),
        None => local(&settings()?, action),
    }
}

fn on_server(remote: &Remote, action: SchedulesAction) -> Result<ExitCode> {
    let runtime = crate::remote::runtime()?;
    let call = |method: reqwest::Method, path: String| runtime.block_on(remote.json(method, &path));
    match action {
        SchedulesAction::List { json } => {
            let body = call(reqwest::Method::GET, "/api/v1/schedules".into())?;
            print_views(&body["items"], json)?;
        }
        SchedulesAction::Show { pipeline, json } => {
            let body = call(
                reqwest::Method::GET,
                format!("/api/v1/schedules/{}", segment(&pipeline)),
            )?;
            print_view(&body, json)?;
        }
        SchedulesAction::Pause { pipeline } => {
            call(
                reqwest::Method::POST,
                format!("/api/v1/schedules/{}/pause", segment(&pipeline)),
            )?;
            errln!("schedule of {pipeline} paused");
        }
        SchedulesAction::Resume { pipeline } => {
            call(
                reqwest::Method::POST,
                format!("/api/v1/schedules/{}/resume", segment(&pipeline)),
            )?;
            errln!("schedule of {pipeline} resumed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera backfill`: on the server with `--server`, else on the data dir's store (the tasks
/// are then run by whichever server or worker of that store claims them).
pub fn backfill(
    settings: impl FnOnce() -> Result<Settings>,
    remote: Option<Remote>,
    args: BackfillArgs,
) -> Result<ExitCode> {
    let time = |flag: &str, text: &str| {
        tessera_core::time::parse_rfc3339(text).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let (from, to) = (time("from", &args.from)?, time("to", &args.to)?);
    let result = match remote {
        Some(remote) => {
            let runtime = crate::remote::runtime()?;
            let path = format!("/api/v1/schedules/{}/backfill", segment(&args.pipeline));
            let req = remote.request(reqwest::Method::POST, &path).json(&json!({
                "from": args.from.trim(), "to": args.to.trim(), "dry_run": args.dry_run,
            }));
            runtime.block_on(async {
                let resp = remote.send(req).await?;
                Ok::<Value, anyhow::Error>(resp.json().await.unwrap_or(Value::Null))
            })?
        }
        None => {
            let settings = settings()?;
            let store = settings.open_store()?;
            let ticks = schedules::backfill(
                store.as_ref(),
                &Scripts::default(),
                &Backfill {
                    pipeline: &args.pipeline,
                    from,
                    to,
                    dry_run: args.dry_run,
                    owner: None,
                    now: crate::run::now_millis(),
                },
            )?;
            let created = ticks
                .iter()
                .filter(|t| t.outcome == schedules::TickOutcome::Created)
                .count();
            json!({"dry_run": args.dry_run, "created": created, "ticks": ticks})
        }
    };
    if args.json {
        crate::output::json(&result)?;
        return Ok(ExitCode::SUCCESS);
    }
    let ticks = result["ticks"].as_array().cloned().unwrap_or_default();
    outln!("{:<24}  {:<12}  TASK", "TICK", "OUTCOME")?;
    for t in &ticks {
        outln!(
            "{:<24}  {:<12}  {}",
            t["tick"].as_str().unwrap_or(""),
            t["outcome"].as_str().unwrap_or(""),
            t["task_id"].as_str().unwrap_or("-")
        )?;
    }
    let exists = ticks.iter().filter(|t| t["outcome"] == "exists").count();
    if args.dry_run {
        errln!(
            "dry run: {} tick(s) would be created, {exists} have a task already",
            ticks.len() - exists
        );
    } else {
        errln!(
            "{} task(s) created, {exists} tick(s) had one already; a server or worker of this store runs them",
            result["created"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_views(items: &Value, json: bool) -> Result<()> {
    if json {
        return crate::output::json(items);
    }
    outln!(
        "{:<20}  {:<28}  {:<7}  {:<24}  {:<24}  LAST TASK",
        "PIPELINE",
        "CRON (TIME ZONE)",
        "STATE",
        "NEXT TICK",
        "LAST TICK"
    )?;
    for v in items.as_array().into_iter().flatten() {
        let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
        let cron = format!(
            "{} ({})",
            s(&v["schedule"]["cron"]),
            s(&v["schedule"]["timezone"])
        );
        let state = if v["paused"] == true {
            "paused"
        } else {
            "active"
        };
        let last_task = match &v["last_task"] {
            Value::Object(t) => format!(
                "{} {}",
                t.get("state").and_then(Value::as_str).unwrap_or(""),
                t.get("id").and_then(Value::as_str).unwrap_or("")
            ),
            _ => "-".into(),
        };
        outln!(
            "{:<20}  {:<28}  {:<7}  {:<24}  {:<24}  {last_task}",
            s(&v["pipeline"]),
            cron,
            state,
            s(&v["next_tick"]),
            s(&v["last_tick"]),
        )?;
    }
    Ok(())
}

fn print_view(view: &Value, json: bool) -> Result<()> {
    if json {
        return crate::output::json(view);
    }
    print_views(&Value::Array(vec![view.clone()]), false)
}
