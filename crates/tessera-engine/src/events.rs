//! The event queue of one task: job results and timers push, the driver (an async task)
//! takes them in batches. A waiting driver holds no thread: it awaits a `Notify`, whose
//! stored permit means a push between its check and its wait is never lost.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tessera_core::scheduler::Event;

#[derive(Default)]
struct Queue {
    events: Mutex<VecDeque<Event>>,
    ready: tokio::sync::Notify,
}

/// The sending side; cheap to clone, usable from any thread or async task.
#[derive(Clone, Default)]
pub(crate) struct EventSender(Arc<Queue>);

/// The driver's side.
pub(crate) struct EventReceiver(Arc<Queue>);

pub(crate) fn channel() -> (EventSender, EventReceiver) {
    let q = Arc::new(Queue::default());
    (EventSender(q.clone()), EventReceiver(q))
}

impl EventSender {
    pub fn send(&self, event: Event) {
        let mut events = self.0.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push_back(event);
        drop(events);
        self.0.ready.notify_one();
    }
}

impl EventReceiver {
    /// Waits up to `timeout` for at least one event, then takes up to `max` queued events.
    pub async fn recv_batch(&self, timeout: Duration, max: usize) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut events = self.0.events.lock().unwrap_or_else(|p| p.into_inner());
                if !events.is_empty() {
                    let n = events.len().min(max);
                    return events.drain(..n).collect();
                }
            }
            if tokio::time::timeout_at(deadline, self.0.ready.notified())
                .await
                .is_err()
            {
                return Vec::new();
            }
        }
    }
}

/// A one-shot slot for the task's final result, waited on without spinning.
pub(crate) struct DoneSlot<T> {
    value: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> DoneSlot<T> {
    pub fn new() -> Arc<DoneSlot<T>> {
        Arc::new(DoneSlot {
            value: Mutex::new(None),
            ready: Condvar::new(),
        })
    }

    pub fn set(&self, v: T) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        self.ready.notify_all();
    }

    pub fn is_set(&self) -> bool {
        self.value
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Takes the value, waiting up to `timeout` (forever with `None`).
    pub fn take(&self, timeout: Option<Duration>) -> Option<T> {
        let guard = self.value.lock().unwrap_or_else(|p| p.into_inner());
        let mut guard = match timeout {
            Some(t) => {
                self.ready
                    .wait_timeout_while(guard, t, |v| v.is_none())
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => self
                .ready
                .wait_while(guard, |v| v.is_none())
                .unwrap_or_else(|p| p.into_inner()),
        };
        guard.take()
    }
}

/// Jobs waiting for a service callback, by token, in this process.
#[derive(Default)]
pub(crate) struct Waiters(Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>);

/// Removes a waiter when its job ends (answered, timed out or cancelled).
pub(crate) struct Registration<'a> {
    waiters: &'a Waiters,
    token: String,
}

impl Waiters {
    pub fn register(&self, token: &str, notify: Arc<tokio::sync::Notify>) -> Registration<'_> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), notify);
        Registration {
            waiters: self,
            token: token.to_string(),
        }
    }

    pub fn notify(&self, token: &str) {
        if let Some(n) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(token) {
            n.notify_one();
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.waiters
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.token);
    }
}
