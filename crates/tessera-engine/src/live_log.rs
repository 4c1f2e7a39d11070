//! A running command's stdout and stderr lines, stored while it runs: lines are collected as
//! they arrive and written to the store every [`FLUSH_EVERY`], so `tessera tasks logs` (and
//! the log route) show a long command's progress. A command that ends sooner costs nothing
//! more: its lines are written with the job's other log lines, in one transaction, as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_store::{LogLine, Store};
use tokio::io::AsyncReadExt;

/// How often the lines of a running command are written to the store.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The lines of one command attempt not yet written.
pub(crate) struct LiveLog {
    store: Arc<dyn Store>,
    task_id: String,
    key: String,
    attempt: u32,
    pending: Mutex<Vec<LogLine>>,
}

impl LiveLog {
    pub fn new(store: Arc<dyn Store>, task_id: &str, key: &str, attempt: u32) -> LiveLog {
        LiveLog {
            store,
            task_id: task_id.to_string(),
            key: key.to_string(),
            attempt,
            pending: Mutex::default(),
        }
    }

    fn push(&self, stream: &str, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = LogLine {
            task_id: self.task_id.clone(),
            key: self.key.clone(),
            attempt: self.attempt,
            stream: stream.to_string(),
            line: String::from_utf8_lossy(line).into_owned(),
            at: crate::now_millis(),
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Writes the lines collected so far (off the async threads; a failure is logged, the
    /// command goes on).
    pub async fn flush(&self) {
        let lines = self.take();
        if lines.is_empty() {
            return;
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.append_logs(&lines)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(task = %self.task_id, node = %self.key, error = %e, "could not store log lines")
            }
            Err(e) => {
                tracing::warn!(task = %self.task_id, node = %self.key, error = %e, "could not store log lines")
            }
        }
    }

    /// The lines not written yet (the caller writes them with the job's other lines).
    pub fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes (the rest is drained so the writer
/// never blocks on a full pipe); each complete line kept is also handed to `log` as it
/// arrives (a last line without a newline at the end).
pub(crate) async fn read_logged<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: usize,
    stream: &str,
    log: Option<&LiveLog>,
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
        let store = Arc::new(tessera_store::SqliteStore::in_memory().unwrap());
        let log = LiveLog::new(store, "t", "k", 1);
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
