//! Live events shared with the other processes of a store: while another process follows
//! them (a server whose clients watch `GET /api/v1/events`), the events of this process's
//! commits are written to the store, a batch every [`FLUSH_EVERY`], for it to relay. Nothing
//! is written while nobody else follows, so a lone process pays nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::scheduler::Record;
use tessera_store::NewEvent;

use crate::{ObservedTask, Shared, now_millis};

/// How often written events reach the store (the delay a follower sees, at most).
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How often this process asks whether another one follows events: a follower that has just
/// arrived misses at most this much of this process's events.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long shared events are kept: long enough for a follower's next read.
const KEEP_MS: u64 = 60_000;
/// Most events waiting for a flush: beyond, the oldest are dropped (live displays catch up
/// from the task's rows).
const MAX_PENDING: usize = 100_000;

/// The JSON of one committed record, as sent on `GET /api/v1/events`.
pub fn record_event(task_id: &str, record: &Record) -> Value {
    match record {
        Record::Task { state, error, .. } => json!({
            "type": "task", "task_id": task_id, "state": state.as_str(), "error": error,
        }),
        Record::Node(n) => json!({
            "type": "node", "task_id": task_id, "key": n.key, "node": n.node_id,
            "state": n.state.as_str(), "attempt": n.attempt, "iteration": n.iteration,
            "error": n.error,
        }),
    }
}

#[derive(Default)]
pub(crate) struct SharedEvents {
    followed: AtomicBool,
    pending: Mutex<Vec<NewEvent>>,
}

impl SharedEvents {
    /// Queues the events of a commit, if another process follows them.
    pub(crate) fn push(&self, runner: &str, task: &ObservedTask<'_>, records: &[&Record]) {
        if !self.followed.load(Ordering::Relaxed) || records.is_empty() {
            return;
        }
        let at = now_millis();
        let events = records.iter().map(|r| NewEvent {
            task_id: task.id.to_string(),
            owner: task.owner.map(str::to_string),
            runner: runner.to_string(),
            data: record_event(task.id, r).to_string(),
            at,
        });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend(events);
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
        }
    }
}

/// Starts the loop that flushes shared events and watches for followers; it ends with the
/// engine.
pub(crate) fn start(shared: &Arc<Shared>) {
    shared.runtime.spawn(share_loop(Arc::downgrade(shared)));
}

async fn share_loop(engine: Weak<Shared>) {
    let mut checked: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(shared) = engine.upgrade() else {
            return;
        };
        let check = checked.is_none_or(|c| c.elapsed() >= CHECK_EVERY);
        let batch = std::mem::take(
            &mut *shared
                .events
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !check && batch.is_empty() {
            continue;
        }
        if check {
            checked = Some(std::time::Instant::now());
        }
        let s = shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let now = now_millis();
            if check {
                let followed = s.store.events_followed(&s.runner, now)?;
                s.events.followed.store(followed, Ordering::Relaxed);
            }
            if !batch.is_empty() {
                s.store.append_events(&batch, now.saturating_sub(KEEP_MS))?;
            }
            Ok::<(), tessera_store::StoreError>(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            // Live events are hints: a lost batch is not retried.
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot share live events"),
            Err(e) => tracing::debug!(error = %e, "cannot share live events"),
        }
    }
}
