//! Events of tasks run elsewhere: while clients watch `GET /api/v1/events` here, this server
//! follows the live events other processes of its store share (see `tessera_store::Events`)
//! and passes them on to its clients with its own. Idle (no store traffic) without clients.

use std::time::{Duration, Instant};

use tessera_store::{Change, EventRow};

use crate::state::{AppState, LiveEvent};

/// How often the store is read while following, at most (sooner on PostgreSQL's hint).
const POLL: Duration = Duration::from_millis(100);
/// While following, it says so this often, for a little longer each time: processes that
/// run tasks then share their events.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
const FOLLOW_FOR_MS: u64 = 3_000;
/// Most events read at once.
const BATCH: usize = 1_000;

pub(crate) async fn relay_loop(state: AppState) {
    let runner = state.engine.runner().to_string();
    // The last event number passed on; `None` while nobody watches (then the next watcher
    // starts from the events shared after it arrived, not from old ones).
    let mut after: Option<u64> = None;
    let mut followed: Option<Instant> = None;
    loop {
        if state.events.receiver_count() == 0 {
            after = None;
            followed = None;
            tokio::time::sleep(POLL * 2).await;
            continue;
        }
        let follow = followed.is_none_or(|f| f.elapsed() >= FOLLOW_EVERY);
        if follow {
            followed = Some(Instant::now());
        }
        let (r, from) = (runner.clone(), after);
        let read = state
            .blocking(move |store| {
                if follow {
                    let until = crate::routes::pipelines::now_millis() + FOLLOW_FOR_MS;
                    store.follow_events(&r, until)?;
                }
                let from = match from {
                    Some(seq) => seq,
                    None => store.last_event_seq()?,
                };
                Ok((from, store.events_after(from, BATCH)?))
            })
            .await;
        let rows = match read {
            Ok((from, rows)) => {
                after = Some(rows.last().map_or(from, |e| e.seq));
                rows
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read shared live events");
                Vec::new()
            }
        };
        let full = rows.len() == BATCH;
        for row in rows {
            relay(&state, &runner, row);
        }
        if full {
            continue;
        }
        match state.store().changes(Change::Events) {
            Some(hint) => {
                tokio::select! {
                    _ = hint.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// Passes on an event another process shared (this process's own went out as they happened).
fn relay(state: &AppState, runner: &str, row: EventRow) {
    if row.runner == runner {
        return;
    }
    let Ok(data) = serde_json::from_str(&row.data) else {
        return;
    };
    let _ = state.events.send(LiveEvent {
        task_id: row.task_id,
        owner: row.owner,
        data,
    });
}
