//! Whether a batch job started again may reuse its committed chunks: the input's committed
//! bytes unchanged (hashes), its output prefix intact, the same processing. An input fixed
//! after the committed part (seed 004: a bad line corrected) keeps the committed chunks and is
//! planned again from there; a change inside committed bytes is refused with its line number.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use tessera_core::scheduler::JobError;
use tessera_store::{BatchChunkRow, BatchJobRow, ChunkState};

use super::assemble::temp_path;
use super::job::{JobRun, Source, StoredPlan};

/// What the check of an earlier start found.
pub(super) enum Reuse {
    /// The input is as it was: go on with the recorded chunks.
    Same,
    /// The input changed after the first `committed` chunks, which are intact.
    ChangedAfter { committed: usize },
    /// The processing changed (reader, processor, writer, chunk size): start over.
    Redo,
}

/// A 32-bit hash of each physical line of `bytes` (little-endian), stored with a committed
/// chunk: 4 bytes a line, enough to name the first line that changed.
pub(super) fn line_hashes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 16);
    for line in lines(bytes) {
        out.extend_from_slice(&(xxhash_rust::xxh3::xxh3_64(line) as u32).to_le_bytes());
    }
    out
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
}

/// The number of the first line of `bytes` (a chunk starting at line `first_line`) whose hash
/// differs from `stored`.
fn first_changed_line(bytes: &[u8], first_line: u64, stored: &[u8]) -> u64 {
    let mut n = 0u64;
    for (line, old) in lines(bytes).zip(stored.chunks_exact(4)) {
        if (xxhash_rust::xxh3::xxh3_64(line) as u32).to_le_bytes() != old {
            return first_line + n;
        }
        n += 1;
    }
    first_line + n
}

impl JobRun {
    /// Checks what an earlier start left against the input as it is now.
    pub(super) fn check_reuse(
        &self,
        job: &BatchJobRow,
        now: &Source,
        chunks: &[BatchChunkRow],
    ) -> Result<Reuse, JobError> {
        let then: Source = serde_json::from_value(job.source.clone())
            .map_err(|e| JobError::permanent(format!("stored batch source is invalid: {e}")))?;
        let plan: StoredPlan = serde_json::from_value(job.plan.clone())
            .map_err(|e| JobError::permanent(format!("stored batch plan is invalid: {e}")))?;
        if plan.processing.as_deref() != Some(self.processing.as_str()) {
            return Ok(Reuse::Redo);
        }
        let refuse = |what: String| {
            JobError::permanent(format!(
                "cannot resume batch node `{}`: {what}; its committed chunks cannot be reused — \
                 put the input back as it was to resume, or start a new run",
                self.node_id
            ))
        };
        if then.path != now.path {
            return Err(refuse(format!(
                "the input is now {} (it was {})",
                now.path, then.path
            )));
        }
        let committed = chunks
            .iter()
            .take_while(|c| c.state == ChunkState::Committed)
            .count();
        if let Some(c) = chunks[committed..]
            .iter()
            .find(|c| c.state == ChunkState::Committed)
        {
            return Err(refuse(format!(
                "chunk {} is committed but chunk {committed} before it is not",
                c.index
            )));
        }
        if committed > 0 {
            let out = temp_path(self.final_path());
            let needed: u64 = chunks[..committed]
                .iter()
                .filter_map(|c| c.output_bytes)
                .sum();
            match std::fs::metadata(&out).map(|m| m.len()) {
                Err(_) => {
                    return Err(refuse(format!(
                        "the committed output of chunks 0..{committed} ({}) is missing",
                        out.display()
                    )));
                }
                Ok(size) if size < needed => {
                    return Err(refuse(format!(
                        "the committed output of chunks 0..{committed} ({}) has {size} bytes, \
                         fewer than the {needed} committed",
                        out.display()
                    )));
                }
                Ok(_) => {}
            }
        }
        // The bytes the committed chunks came from must be the same, whatever the size and
        // modification time say.
        let file = File::open(&self.source).map_err(io_err(&self.source))?;
        let size = file.metadata().map_err(io_err(&self.source))?.len();
        let mut buf = Vec::new();
        for c in &chunks[..committed] {
            if c.end > size {
                return Err(refuse(format!(
                    "the input {} is now shorter ({size} bytes) than its committed part (up to byte {})",
                    now.path, c.end
                )));
            }
            buf.resize((c.end - c.start) as usize, 0);
            file.read_exact_at(&mut buf, c.start)
                .map_err(io_err(&self.source))?;
            if c.input_hash.as_deref() != Some(&super::job::hash(&buf)) {
                let place = match &c.line_hashes {
                    Some(stored) => format!(
                        "line {} changed",
                        first_changed_line(&buf, c.first_line, stored)
                    ),
                    None => format!("lines {}.. of chunk {} changed", c.first_line, c.index),
                };
                return Err(refuse(format!(
                    "the input {} changed inside its committed part: {place}",
                    now.path
                )));
            }
        }
        if then == *now {
            Ok(Reuse::Same)
        } else {
            Ok(Reuse::ChangedAfter { committed })
        }
    }

    /// Plans the input again after its first `committed` chunks and records the new plan:
    /// the committed chunks stay, the others are replaced.
    pub(super) fn replan_after(
        &self,
        job: &BatchJobRow,
        now: &Source,
        chunks: &[BatchChunkRow],
        committed: usize,
        logs: &mut Vec<String>,
    ) -> Result<(BatchJobRow, Vec<BatchChunkRow>), JobError> {
        let mut plan: StoredPlan = serde_json::from_value(job.plan.clone())
            .map_err(|e| JobError::permanent(format!("stored batch plan is invalid: {e}")))?;
        let kept = &chunks[..committed];
        // Where the first uncommitted record starts: after the last committed chunk, or
        // after the header when nothing was committed.
        let (offset, line) = match kept.last() {
            Some(last) => (last.end, None),
            None => match chunks.first() {
                Some(first) => (first.start, Some(first.first_line)),
                None => (0, Some(1)),
            },
        };
        let mut file = File::open(&self.source).map_err(io_err(&self.source))?;
        let line = match line {
            Some(l) => l,
            None => 1 + count_newlines(&file, offset).map_err(io_err(&self.source))?,
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(&self.source))?;
        let path = &now.path;
        let rest = tessera_batch::plan_chunks(
            BufReader::with_capacity(1 << 20, file),
            tessera_batch::PlanOptions {
                format: self.reader_layout().plan_format(),
                chunk_size: self.spec.chunk_size,
                header: false,
            },
        )
        .map_err(|e| JobError::permanent(format!("reader: {path}: {e}")))?;
        let new_chunks: Vec<BatchChunkRow> = rest
            .chunks
            .iter()
            .map(|c| {
                BatchChunkRow::pending(
                    (committed + c.index) as u32,
                    offset + c.start,
                    offset + c.end,
                    line - 1 + c.first_line,
                    c.records,
                )
            })
            .collect();
        plan.records = kept.iter().map(|c| c.records).sum::<u64>() + rest.records;
        plan.bytes = offset + rest.bytes;
        let mut job = job.clone();
        job.source = serde_json::to_value(now).unwrap_or_default();
        job.plan = serde_json::to_value(&plan).unwrap_or_default();
        self.engine
            .store
            .replan_batch_job(&job, committed as u32, &new_chunks)
            .map_err(|e| JobError::retryable(format!("batch state: {e}")))?;
        logs.push(format!(
            "the input {path} changed after its {committed} committed chunk(s), which are \
             unchanged: they are kept, and the rest is planned again ({} chunk(s))",
            new_chunks.len()
        ));
        let mut all = kept.to_vec();
        all.extend(new_chunks);
        Ok((job, all))
    }
}

fn count_newlines(file: &File, end: u64) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, file.take(end));
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = reader.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::retryable(format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_changed_line_is_named() {
        let before = b"a,1\nb,2\nc,3\n";
        let stored = line_hashes(before);
        assert_eq!(stored.len(), 12);
        assert_eq!(first_changed_line(b"a,1\nb,X\nc,3\n", 10, &stored), 11);
        assert_eq!(first_changed_line(b"a,1\nb,2\nc,3\n", 10, &stored), 13);
        assert_eq!(first_changed_line(b"Z\n", 1, &stored), 1);
    }
}
