//! Schedules over HTTP (`/api/v1/schedules`: list, one, pause, resume, backfill) and the
//! schedules' loop every server runs, creating ticks only while it leads `schedules`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tessera_engine::schedules::{self, Backfill, ScheduleBook};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// How often the loop looks at the schedules at the latest (pauses, new pipelines, a leader
/// that went away); it wakes sooner for a tick due earlier.
const ROUND: Duration = Duration::from_secs(1);
/// While due ticks wait for a free task slot: how soon to look again.
const BEHIND_ROUND: Duration = Duration::from_millis(100);

/// Creates the ticks' tasks of every schedule, once cluster-wide: each round, only the
/// instance that leads `schedules` creates them (a leader killed is replaced within the lease);
/// the store's unique key on pipeline and tick makes a tick's task unique even when two
/// instances lead one after the other.
pub(crate) async fn schedule_loop(state: AppState) {
    let mut book = Some(ScheduleBook::default());
    loop {
        if state.engine.is_draining() {
            return;
        }
        let mut wait = ROUND;
        if crate::state::leads(&state, "schedules", ROUND).await {
            let engine = state.engine.clone();
            let mut b = book.take().unwrap_or_default();
            let joined = tokio::task::spawn_blocking(move || {
                let round = engine.schedule_round(&mut b, super::pipelines::now_millis());
                (b, round)
            })
            .await;
            match joined {
                Ok((b, Ok(round))) => {
                    book = Some(b);
                    for handle in round.started {
                        super::tasks::track(&state, handle);
                    }
                    let now = super::pipelines::now_millis();
                    if let Some(at) = round.wake_at {
                        wait = wait.min(Duration::from_millis(at.saturating_sub(now)));
                    }
                    if round.behind {
                        wait = wait.min(BEHIND_ROUND);
                    }
                }
                Ok((b, Err(e))) => {
                    book = Some(b);
                    tracing::warn!(error = %e, "schedules: a round failed; trying again");
                }
                Err(e) => tracing::error!(error = %e, "schedules: a round panicked"),
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// `GET /api/v1/schedules`: every stored pipeline's schedule, its next and last tick, the last
/// tick's task and its state, whether it is paused.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::User])?;
    let scripts = state.engine.scripts().clone();
    let items = state
        .blocking(move |s| schedules::schedule_views(s, &scripts, super::pipelines::now_millis()))
        .await?;
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/schedules/{pipeline}`.
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(pipeline): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::User])?;
    let scripts = state.engine.scripts().clone();
    let name = pipeline.clone();
    let view = state
        .blocking(move |s| {
            schedules::schedule_view(s, &scripts, &name, super::pipelines::now_millis())
        })
        .await?
        .ok_or_else(|| ApiError::not_found("schedule", &pipeline))?;
    Ok(Json(json!(view)))
}

/// `POST /api/v1/schedules/{pipeline}/pause`: no tick is created until it is resumed.
pub async fn pause(
    state: State<AppState>,
    caller: Caller,
    pipeline: Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, caller, pipeline, true).await
}

/// `POST /api/v1/schedules/{pipeline}/resume`: ticks missed while paused follow the
/// schedule's `catchup`.
pub async fn resume(
    state: State<AppState>,
    caller: Caller,
    pipeline: Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, caller, pipeline, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    caller: Caller,
    Path(pipeline): Path<String>,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let scripts = state.engine.scripts().clone();
    let view = run_blocking(
        move |store| {
            schedules::set_paused(
                store,
                &scripts,
                &pipeline,
                paused,
                super::pipelines::now_millis(),
            )
        },
        &state,
    )
    .await?;
    Ok(Json(json!(view)))
}

/// The body of a backfill.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    from: String,
    to: String,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/schedules/{pipeline}/backfill` with `{"from": RFC3339, "to": RFC3339,
/// "dry_run": false}`: a task for each tick of the range that has none, for any runner to
/// claim. 201 with the ticks and what became of each (`created`, `exists`, `would_create`).
pub async fn backfill(
    State(state): State<AppState>,
    caller: Caller,
    Path(pipeline): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Admin])?;
    let body: BackfillBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"from\": RFC 3339, \"to\": RFC 3339, \"dry_run\": bool}}: {e}"
        ))
    })?;
    let time = |field: &str, text: &str| {
        tessera_core::time::parse_rfc3339(text).map_err(|message| ApiError::BadRequest {
            message: format!("{field}: {message}"),
            details: json!([{"field": field, "message": message}]),
        })
    };
    let (from, to) = (time("from", &body.from)?, time("to", &body.to)?);
    let dry_run = body.dry_run;
    let owner = caller.name.clone();
    let scripts = state.engine.scripts().clone();
    let ticks = run_blocking(
        move |store| {
            schedules::backfill(
                store,
                &scripts,
                &Backfill {
                    pipeline: &pipeline,
                    from,
                    to,
                    dry_run,
                    owner,
                    now: super::pipelines::now_millis(),
                },
            )
        },
        &state,
    )
    .await?;
    let created = ticks
        .iter()
        .filter(|t| t.outcome == schedules::TickOutcome::Created)
        .count();
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({"dry_run": dry_run, "created": created, "ticks": ticks})),
    ))
}

/// Schedule commands off the async threads, their refusals as API errors.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce(&dyn tessera_store::Store) -> Result<T, schedules::ScheduleCommandError>
    + Send
    + 'static,
    state: &AppState,
) -> Result<T, ApiError> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(Into::into)
}
