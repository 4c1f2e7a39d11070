//! The claims this process holds on tasks. A driver's claim is registered when it starts and
//! dropped when it ends; one loop renews every claim of the process together, in one
//! transaction, every third of the lease. A claim found lost (the lease ran out — the store
//! was unreachable, the process paused — and another runner took the task) stops its driver:
//! its commits would be refused anyway (the fence changed). Another loop reads the cancel
//! requests of every task held here in one query (a cancel asked through the store by another
//! process), instead of each driver polling for its own.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tessera_core::scheduler::Event;

use crate::events::EventSender;
use crate::{Shared, now_millis};

/// One claim: the fence its commits carry, and how to stop its driver.
pub(crate) struct Held {
    pub fence: u64,
    pub events: EventSender,
    /// A cancel request was passed on to the driver already.
    pub cancel_sent: bool,
    /// A task whose creation is being committed: its claim is not renewed (nor found lost)
    /// before it is in the store.
    pub recorded: Option<Arc<crate::context::Recorded>>,
}

impl Shared {
    pub(crate) fn hold(
        &self,
        task_id: &str,
        fence: u64,
        events: EventSender,
        recorded: Option<Arc<crate::context::Recorded>>,
    ) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(
            task_id.to_string(),
            Held {
                fence,
                events,
                cancel_sent: false,
                recorded,
            },
        );
    }

    /// Every claim held here: `(task, fence)`.
    pub(crate) fn held_claims(&self) -> Vec<(String, u64)> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, h)| {
                h.recorded
                    .as_ref()
                    .is_none_or(|r| r.created() == Some(true))
            })
            .map(|(task, h)| (task.clone(), h.fence))
            .collect()
    }

    pub(crate) fn release(&self, task_id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }

    /// Whether another runner's lease on `task` runs now: its holder and until when.
    pub(crate) fn held_elsewhere(&self, task: &tessera_store::TaskRow) -> Option<(String, u64)> {
        let until = task.lease_until?;
        let runner = task.runner.as_deref()?;
        (!task.task_state().is_terminal() && runner != self.runner && until >= now_millis())
            .then(|| (runner.to_string(), until))
    }

    /// When a claim made or renewed now runs out.
    pub(crate) fn lease_until(&self) -> u64 {
        now_millis() + self.config.lease.as_millis() as u64
    }
}

/// Processes not heard from for this long are forgotten by the next heartbeat of any other.
const FORGET_AFTER_MS: u64 = 3_600_000;

impl Shared {
    /// How this process describes itself in its heartbeat.
    fn worker_row(&self, now: u64) -> tessera_store::WorkerRow {
        tessera_store::WorkerRow {
            runner: self.runner.clone(),
            host: crate::hostname(),
            pid: std::process::id(),
            started_at: self.started_at,
            heartbeat_at: now,
            lease_ms: self.config.lease.as_millis() as u64,
            pools: serde_json::json!({
                "max_processes": self.config.max_processes,
                "max_http": self.config.max_http,
                "pools": self.config.pools,
                "serves": self.config.serves,
                "runs_tasks": self.config.run_tasks,
            }),
            held: 0,
            leases_until: None,
        }
    }
}

/// Starts the renewal and cancel-watch loops of an engine; they end with the engine.
pub(crate) fn start_renewing(shared: &Arc<Shared>) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(50));
    shared
        .runtime
        .spawn(renew_loop(Arc::downgrade(shared), every));
    let poll = shared.config.cancel_poll.max(Duration::from_millis(10));
    shared
        .runtime
        .spawn(cancel_watch(Arc::downgrade(shared), poll));
}

/// Passes cancel requests recorded in the store (`tessera tasks cancel`, another server
/// instance) to the drivers of this process, once each.
async fn cancel_watch(engine: Weak<Shared>, every: Duration) {
    // Callbacks numbered after this one are news (those before, a resumed job reads itself).
    let mut last_callback = match engine.upgrade() {
        Some(shared) => {
            let s = shared.clone();
            tokio::task::spawn_blocking(move || s.store.last_callback_seq())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0)
        }
        None => return,
    };
    let changes = match engine.upgrade() {
        Some(shared) => shared.store.changes(tessera_store::Change::ForHolders),
        None => return,
    };
    loop {
        // A cancel or callback recorded by another process wakes this loop at once where the
        // store can say so (PostgreSQL); the poll is the fallback.
        match &changes {
            Some(changes) => {
                tokio::select! {
                    _ = changes.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
                    _ = tokio::time::sleep(every) => {}
                }
            }
            None => tokio::time::sleep(every).await,
        }
        let Some(shared) = engine.upgrade() else {
            return;
        };
        let idle = shared
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if idle {
            continue;
        }
        let s = shared.clone();
        let after = last_callback;
        let requested = match tokio::task::spawn_blocking(move || {
            let callbacks = s.store.received_callbacks(&s.runner, after)?;
            Ok::<_, tessera_store::StoreError>((s.store.cancel_requests(&s.runner)?, callbacks))
        })
        .await
        {
            // Callbacks received by another process (a server taking them for a worker's
            // tasks) wake the jobs waiting here; this process's own are woken already.
            Ok(Ok((ids, callbacks))) => {
                for (token, seq) in callbacks {
                    shared.callbacks.notify(&token);
                    last_callback = last_callback.max(seq);
                }
                ids
            }
            // The next round asks again.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read cancel requests");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read cancel requests");
                continue;
            }
        };
        let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
        for id in requested {
            if let Some(h) = held.get_mut(&id)
                && !h.cancel_sent
            {
                h.cancel_sent = true;
                h.events.send(Event::Cancel {
                    reason: "cancelled on request".into(),
                });
            }
        }
    }
}

async fn renew_loop(engine: Weak<Shared>, every: Duration) {
    let mut last = std::time::Instant::now();
    // The first round at once: the process is listed among the workers from its start.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            tokio::time::sleep(every).await;
        }
        // A round that starts late (a starved runtime) eats into the lease too.
        let gap = last.elapsed();
        last = std::time::Instant::now();
        if gap > every * 2 {
            tracing::warn!(
                late_ms = (gap - every).as_millis() as u64,
                "a round of lease renewals started late"
            );
        }
        let Some(shared) = engine.upgrade() else {
            return;
        };
        let held = shared.held_claims();
        let fences: std::collections::HashMap<String, u64> = held.iter().cloned().collect();
        let until = shared.lease_until();
        let s = shared.clone();
        let round = std::time::Instant::now();
        let renewed = tokio::task::spawn_blocking(move || {
            // The process's heartbeat (what `GET /api/v1/workers` lists), then its claims.
            let now = now_millis();
            let worker = s.worker_row(now);
            if let Err(e) = s
                .store
                .heartbeat(&worker, now.saturating_sub(FORGET_AFTER_MS))
            {
                tracing::warn!(error = %e, "cannot record this process's heartbeat");
            }
            if s.pool_slots.load(std::sync::atomic::Ordering::SeqCst) > 0
                && let Err(e) = s.store.renew_pool_slots(&s.runner, until)
            {
                tracing::warn!(error = %e, "cannot renew this process's pool slots");
            }
            if held.is_empty() {
                return Ok(Vec::new());
            }
            s.store.renew_leases(&s.runner, &held, until)
        })
        .await;
        // A renewal slower than its period eats into the lease: worth knowing before it runs out.
        if round.elapsed() > every {
            tracing::warn!(
                took_ms = round.elapsed().as_millis() as u64,
                claims = fences.len(),
                "renewing this process's claims took longer than a third of the lease"
            );
        }
        let lost = match renewed {
            Ok(Ok(lost)) => lost,
            // The next round tries again; past the lease, the claims may be lost.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the leases of running tasks");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leases of running tasks");
                continue;
            }
        };
        for task in lost {
            // Only the claim that was renewed: a new claim of the same task (resumed here
            // meanwhile) is not the one lost.
            let fence = fences.get(&task).copied();
            let held = {
                let mut map = shared.held.lock().unwrap_or_else(|p| p.into_inner());
                match map.get(&task) {
                    Some(h) if Some(h.fence) == fence => map.remove(&task),
                    _ => None,
                }
            };
            let Some(held) = held else {
                continue;
            };
            // Ended meanwhile, or taken over: either way this driver has nothing left to do.
            tracing::warn!(task = %task, "lost the claim on a task; stopping its driver");
            held.events.send(Event::Cancel {
                reason: "this process lost its claim on the task (its lease ran out)".into(),
            });
        }
    }
}
