//! Processing one chunk's bytes: the row program, or the command fed the chunk (with its
//! retries decided by the caller), plus the job-wide skip policy and bad-line rows.

use std::sync::atomic::{AtomicU64, Ordering};

use tessera_batch::chunk::{
    ChunkError, ChunkOutput, IssueKind, Layout, LineIssue, RowProcessor, SkipGate, command_stdin,
    command_stdout,
};
use tessera_batch::expr::{ExprSpec, RowProgram};
use tessera_core::model::{BatchProcessor, RecordFormat, SkipPolicy};
use tessera_core::scheduler::JobError;
use tessera_store::{BatchLineRow, LineState};

use super::job::JobRun;

/// How a chunk is processed: row expressions, or a command.
pub(super) struct Work {
    pub kind: WorkKind,
    reader: Layout,
    writer: Layout,
    names: Vec<String>,
}

pub(super) enum WorkKind {
    Rows(Box<RowProcessor>),
    Command {
        to: Layout,
        from: Layout,
        filters: bool,
    },
}

pub(super) enum Failure {
    /// A bad line not skipped (with the lines skipped before it in the chunk).
    Line(Box<LineIssue>, Vec<LineIssue>),
    Transient(String),
    Permanent(String),
    Cancelled,
}

impl Work {
    pub fn new(run: &JobRun, names: &[String], logs: &mut Vec<String>) -> Result<Work, JobError> {
        let reader = run.reader_layout();
        let writer = run.writer_layout();
        let kind = match &run.spec.processor {
            BatchProcessor::Rows { columns, filter } => {
                let program = if columns.is_empty() && filter.is_none() {
                    None
                } else {
                    let spec = ExprSpec {
                        columns: columns.clone(),
                        filter: filter.clone(),
                    };
                    let text = !matches!(reader, Layout::Jsonl);
                    let program = RowProgram::compile(
                        &spec,
                        text.then_some(names),
                        &tessera_core::script::ScriptLimits::default(),
                    )
                    .map_err(|e| {
                        JobError::permanent(format!("processor.{}: {}", e.field, e.message))
                    })?;
                    let (native, rhai) = program.native_count();
                    logs.push(format!(
                        "expressions: {native} compiled natively, {rhai} run by Rhai"
                    ));
                    Some(program)
                };
                let computed = columns.iter().map(|(n, _)| n.clone()).collect();
                WorkKind::Rows(Box::new(RowProcessor::new(
                    reader,
                    writer,
                    names.to_vec(),
                    program,
                    computed,
                )))
            }
            BatchProcessor::Command {
                input,
                output,
                filters,
                ..
            } => {
                let to = match input.or(Some(run.spec.reader.format)) {
                    Some(RecordFormat::Jsonl) => Layout::Jsonl,
                    _ => Layout::Csv { delimiter: b',' },
                };
                let from = match output.or(Some(run.spec.writer.format)) {
                    Some(RecordFormat::Jsonl) => Layout::Jsonl,
                    _ => Layout::Csv { delimiter: b',' },
                };
                WorkKind::Command {
                    to,
                    from,
                    filters: *filters,
                }
            }
        };
        Ok(Work {
            kind,
            reader,
            writer,
            names: names.to_vec(),
        })
    }

    pub fn process(
        &self,
        run: &JobRun,
        data: &[u8],
        first_line: u64,
        gate: &Gate,
    ) -> Result<(ChunkOutput, Option<String>), Failure> {
        let lift = |e: ChunkError, skipped: Vec<LineIssue>| match e {
            ChunkError::Line(issue) => Failure::Line(issue, skipped),
            ChunkError::Cancelled => Failure::Cancelled,
        };
        match &self.kind {
            WorkKind::Rows(p) => p
                .process(data, first_line, gate, &run.cancel.flag)
                .map(|o| (o, None))
                .map_err(|e| lift(e, Vec::new())),
            WorkKind::Command { to, from, filters } => {
                let (stdin, sent) = command_stdin(
                    self.reader,
                    &self.names,
                    *to,
                    data,
                    first_line,
                    gate,
                    &run.cancel.flag,
                )
                .map_err(|e| lift(e, Vec::new()))?;
                let command = run
                    .command
                    .as_ref()
                    .ok_or(Failure::Permanent("no command".into()))?;
                let answer = run.runtime.block_on(async {
                    tokio::select! {
                        r = command.run(stdin) => Some(r),
                        _ = run.cancel.token.cancelled() => None,
                    }
                });
                let stdout = match answer {
                    None => return Err(Failure::Cancelled),
                    Some(Ok(s)) => s,
                    Some(Err(e)) if e.transient => return Err(Failure::Transient(e.message)),
                    Some(Err(e)) => return Err(Failure::Permanent(e.message)),
                };
                let (header, mut out) = command_stdout(&stdout, *from, self.writer)
                    .map_err(|e| Failure::Permanent(format!("the command's output: {e}")))?;
                if !filters && out.written != sent.written {
                    return Err(Failure::Permanent(format!(
                        "the command answered {} rows for {} (set `filters: true` if it may drop rows)",
                        out.written, sent.written
                    )));
                }
                out.filtered = sent.written.saturating_sub(out.written);
                out.read = sent.read;
                out.skipped = sent.skipped;
                Ok((out, Some(String::from_utf8_lossy(&header).into_owned())))
            }
        }
    }
}

/// The skip policy, shared by the chunks of one job.
pub(super) struct Gate {
    pub policy: SkipPolicy,
    pub used: AtomicU64,
}

impl SkipGate for Gate {
    fn try_skip(&self, kind: IssueKind) -> bool {
        let allowed = match kind {
            IssueKind::Parse => self.policy.parse_errors,
            IssueKind::Expression => self.policy.expression_errors,
        };
        allowed
            && self
                .used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < self.policy.limit).then_some(n + 1)
                })
                .is_ok()
    }
}

pub(super) fn line_row(chunk: u32, state: LineState, issue: &LineIssue) -> BatchLineRow {
    BatchLineRow {
        chunk,
        line: issue.record.line,
        state,
        kind: match issue.kind {
            IssueKind::Parse => "parse",
            IssueKind::Expression => "expression",
        }
        .into(),
        raw: issue.record.raw.clone(),
        reason: issue.record.reason.clone(),
    }
}
