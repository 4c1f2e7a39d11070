//! A running command's stdout and stderr lines, stored while it runs: lines are collected as
//! they arrive, and one flusher per engine writes the lines of every running command to the
//! store every [`FLUSH_EVERY`], in one transaction. A command costs no timer of its own (a
//! timer per command made 100 spawns of `true` 40 % slower); one that ends before a flush has
//! its lines written with the job's other log lines, in one transaction, as before.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tessera_store::{LogLine, Store};
use tokio::io::AsyncReadExt;

/// How often the lines of running commands are written to the store.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The engine's running commands with lines not written yet, and whether the flusher runs.
#[derive(Default)]
pub(crate) struct LiveLogs {
    inner: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    logs: Vec<Weak<LiveLog>>,
    flusher: bool,
}

impl LiveLogs {
    /// Hands `log` to the flusher (started when none runs: it stops once nothing is left).
    fn register(self: &Arc<Self>, log: &Arc<LiveLog>, store: &Arc<dyn Store>) {
        let mut waiting = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        waiting.logs.push(Arc::downgrade(log));
        if waiting.flusher {
            return;
        }
        // Outside a runtime (never for commands) the lines simply go with the job's.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        waiting.flusher = true;
        runtime.spawn(flush_loop(self.clone(), store.clone()));
    }
}

/// Every [`FLUSH_EVERY`]: takes the pending lines of every registered log and writes them in
/// one transaction; ends when no log is registered.
async fn flush_loop(board: Arc<LiveLogs>, store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let logs: Vec<Arc<LiveLog>> = {
            let mut waiting = board.inner.lock().unwrap_or_else(|p| p.into_inner());
            waiting.logs.retain(|l| l.strong_count() > 0);
            if waiting.logs.is_empty() {
                waiting.flusher = false;
                return;
            }
            waiting.logs.iter().filter_map(Weak::upgrade).collect()
        };
        let mut lines = Vec::new();
        for log in &logs {
            log.take_for_flush(&mut lines);
        }
        if !lines.is_empty() {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.append_logs(&lines)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not store log lines"),
                Err(e) => tracing::warn!(error = %e, "could not store log lines"),
            }
        }
        for log in &logs {
            log.flushed();
        }
    }
}

/// The lines of one command attempt not yet written.
pub(crate) struct LiveLog {
    board: Arc<LiveLogs>,
    store: Arc<dyn Store>,
    task_id: String,
    key: String,
    attempt: u32,
    pending: Mutex<Pending>,
    /// Signalled when a flush of this log's lines is written.
    written: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    lines: Vec<LogLine>,
    /// Handed to the flusher already (lines then go there).
    registered: bool,
    /// Lines taken by the flusher and not written yet: the last lines wait for them, so the
    /// store keeps the order they were printed in.
    in_flight: bool,
}

impl LiveLog {
    pub fn new(
        board: &Arc<LiveLogs>,
        store: Arc<dyn Store>,
        task_id: &str,
        key: &str,
        attempt: u32,
    ) -> Arc<LiveLog> {
        Arc::new(LiveLog {
            board: board.clone(),
            store,
            task_id: task_id.to_string(),
            key: key.to_string(),
            attempt,
            pending: Mutex::default(),
            written: tokio::sync::Notify::new(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(self: &Arc<Self>, stream: &str, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = LogLine {
            task_id: self.task_id.clone(),
            key: self.key.clone(),
            attempt: self.attempt,
            stream: stream.to_string(),
            line: String::from_utf8_lossy(line).into_owned(),
            at: crate::now_millis(),
        };
        let first = {
            let mut pending = self.pending();
            pending.lines.push(line);
            !std::mem::replace(&mut pending.registered, true)
        };
        if first {
            self.board.register(self, &self.store);
        }
    }

    fn take_for_flush(&self, out: &mut Vec<LogLine>) {
        let mut pending = self.pending();
        if !pending.lines.is_empty() {
            pending.in_flight = true;
            out.append(&mut pending.lines);
        }
    }

    fn flushed(&self) {
        let was = std::mem::take(&mut self.pending().in_flight);
        if was {
            self.written.notify_waiters();
        }
    }

    /// The lines not written yet, once any flush under way is written (the caller writes them
    /// with the job's other lines).
    pub async fn finish(&self) -> Vec<LogLine> {
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            // Registered before the check: a flush ending in between still wakes us.
            written.as_mut().enable();
            {
                let mut pending = self.pending();
                if !pending.in_flight {
                    return std::mem::take(&mut pending.lines);
                }
            }
            written.await;
        }
    }

    /// The lines not written yet (tests; commands use [`Self::finish`]).
    #[cfg(test)]
    pub fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.pending().lines)
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes (the rest is drained so the writer
/// never blocks on a full pipe); each complete line kept is also handed to `log` as it
/// arrives (a last line without a newline at the end).
pub(crate) async fn read_logged<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: usize,
    stream: &str,
    log: Option<&Arc<LiveLog>>,
) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut buf: Vec<u8> = Vec::new();
    // Start of the first line not handed to the log yet.
    let mut line_start = 0;
    while buf.len() < cap {
        // Read into the spare capacity (nothing zeroed: a command that prints nothing costs
        // no buffer).
        buf.reserve((8 << 10).min(cap - buf.len()));
        let scanned = buf.len();
        match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        buf.truncate(cap);
        if let Some(log) = log {
            for nl in memchr_all(&buf[scanned..]) {
                let end = scanned + nl;
                log.push(stream, &buf[line_start..end]);
                line_start = end + 1;
            }
        }
    }
    if let Some(log) = log
        && line_start < buf.len()
    {
        log.push(stream, &buf[line_start..]);
    }
    // Beyond the cap: drained, not kept.
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    buf
}

/// Offsets of every `\n` in `bytes`.
fn memchr_all(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_handed_over_as_read_and_the_cap_holds() {
        let store: Arc<dyn Store> = Arc::new(tessera_store::SqliteStore::in_memory().unwrap());
        let board = Arc::new(LiveLogs::default());
        let log = LiveLog::new(&board, store, "t", "k", 1);
        let text: &[u8] = b"one\r\ntwo\n\nlast without newline";
        let kept = read_logged(Some(text), usize::MAX, "stdout", Some(&log)).await;
        assert_eq!(kept, text);
        let lines: Vec<String> = log.take().into_iter().map(|l| l.line).collect();
        assert_eq!(lines, ["one", "two", "", "last without newline"]);
        let kept = read_logged(Some(text), 6, "stdout", Some(&log)).await;
        assert_eq!(kept, b"one\r\nt");
        let lines: Vec<String> = log.take().into_iter().map(|l| l.line).collect();
        assert_eq!(lines, ["one", "t"], "only what is kept is logged");
    }
}
