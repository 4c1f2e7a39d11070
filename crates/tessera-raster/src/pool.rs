//! Worker pools: a fixed number of threads taking jobs from a priority queue (lowest priority
//! value first), with cancellation before start and live usage counters. Jobs never wait on
//! other jobs — the scheduler only submits a job once its inputs are ready — so a pool of any
//! size cannot deadlock.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Orders jobs: the consumer's earliest need first (query order, then position in the query).
pub type Priority = (u64, u64);

type Task = Box<dyn FnOnce() + Send>;

struct Queued {
    priority: Priority,
    /// Submission order, so equal priorities run first come first served.
    seq: u64,
    cancelled: Option<Arc<AtomicBool>>,
    task: Task,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // BinaryHeap is a max-heap: reverse so the smallest (priority, seq) pops first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.priority, other.seq).cmp(&(self.priority, self.seq))
    }
}

struct Queue {
    heap: BinaryHeap<Queued>,
    seq: u64,
    closed: bool,
}

struct Inner {
    name: String,
    queue: Mutex<Queue>,
    ready: Condvar,
    busy: AtomicUsize,
    done: AtomicUsize,
}

/// Live figures of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    pub threads: usize,
    pub busy: usize,
    pub queued: usize,
    pub done: usize,
}

/// A named pool of worker threads.
pub struct Pool {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pool({}, {} threads)",
            self.inner.name,
            self.threads.len()
        )
    }
}

impl Pool {
    pub fn new(name: &str, threads: usize) -> std::io::Result<Pool> {
        let inner = Arc::new(Inner {
            name: name.to_string(),
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                seq: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            busy: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        });
        let threads = (0..threads.max(1))
            .map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("raster-{name}-{i}"))
                    .spawn(move || work(&inner))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool { inner, threads })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Queues `task`; it is skipped if `cancelled` is set before it starts.
    pub fn submit(
        &self,
        priority: Priority,
        cancelled: Option<Arc<AtomicBool>>,
        task: impl FnOnce() + Send + 'static,
    ) {
        let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.seq += 1;
        let seq = queue.seq;
        queue.heap.push(Queued {
            priority,
            seq,
            cancelled,
            task: Box::new(task),
        });
        drop(queue);
        self.inner.ready.notify_one();
    }

    pub fn usage(&self) -> PoolUsage {
        let queued = self.inner.queue.lock().map(|q| q.heap.len()).unwrap_or(0);
        PoolUsage {
            name: self.inner.name.clone(),
            threads: self.threads.len(),
            busy: self.inner.busy.load(Ordering::Relaxed),
            queued,
            done: self.inner.done.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Jobs not started are abandoned (a closed dataset answers no one): only the running
        // ones are waited for.
        let abandoned = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.closed = true;
            std::mem::take(&mut queue.heap)
        };
        drop(abandoned);
        self.inner.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn work(inner: &Inner) {
    loop {
        let job = {
            let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = queue.heap.pop() {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue = inner.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        if job
            .cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            continue;
        }
        inner.busy.fetch_add(1, Ordering::Relaxed);
        // A panicking job must not take the worker down; the scheduler hears about it through
        // the job's own result channel being dropped.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.task));
        inner.busy.fetch_sub(1, Ordering::Relaxed);
        inner.done.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_by_priority_then_submission_order_and_cancelled_ones_are_skipped() {
        let pool = Pool::new("t", 1).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let (held_tx, held_rx) = mpsc::channel();
        // Hold the only worker so the next jobs queue up.
        pool.submit((0, 0), None, move || {
            held_tx.send(()).unwrap();
            let _ = gate_rx.recv();
        });
        held_rx.recv().unwrap();
        let cancelled = Arc::new(AtomicBool::new(false));
        for (p, label) in [((2, 0), "c"), ((1, 5), "b2"), ((1, 1), "b1"), ((2, 0), "d")] {
            let tx = tx.clone();
            pool.submit(p, None, move || {
                let _ = tx.send(label);
            });
        }
        let tx2 = tx.clone();
        pool.submit((0, 9), Some(cancelled.clone()), move || {
            tx2.send("x").unwrap()
        });
        cancelled.store(true, Ordering::SeqCst);
        assert_eq!(pool.usage().queued, 5);
        gate_tx.send(()).unwrap();
        drop(tx);
        let order: Vec<_> = rx.iter().collect();
        assert_eq!(order, ["b1", "b2", "c", "d"]);
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let pool = Pool::new("t", 1).unwrap();
        pool.submit((0, 0), None, || panic!("boom"));
        let (tx, rx) = mpsc::channel();
        pool.submit((0, 1), None, move || tx.send(1).unwrap());
        assert_eq!(rx.recv().unwrap(), 1);
    }
}
