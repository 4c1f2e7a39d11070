//! Processing one chunk: records read from the chunk's bytes, passed through the row program
//! (`columns`, `filter`), written in the output format into one buffer; bad records either
//! skipped and reported (within the skip policy) or failing the chunk with their line.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};

use crate::expr::RowProgram;
use crate::records::{BadRecord, Splitter, csv_fields, json_record, utf8};
use crate::row::{Cell, Fields, RowRef};

/// How records are stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Csv { delimiter: u8 },
    Jsonl,
    Lines,
}

impl Layout {
    fn quote(self) -> Option<u8> {
        matches!(self, Layout::Csv { .. }).then_some(b'"')
    }

    /// The planner's view of the format.
    pub fn plan_format(self) -> crate::plan::Format {
        match self {
            Layout::Csv { .. } => crate::plan::Format::Csv { quote: b'"' },
            Layout::Jsonl | Layout::Lines => crate::plan::Format::Lines,
        }
    }
}

/// Why a record was bad: skippable by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    Parse,
    Expression,
}

/// A bad record, skipped or failing its chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIssue {
    pub kind: IssueKind,
    pub record: BadRecord,
}

/// Decides whether a bad record may be skipped (and counts it when it is).
pub trait SkipGate: Sync {
    fn try_skip(&self, kind: IssueKind) -> bool;
}

/// What a chunk produced.
#[derive(Debug, Default)]
pub struct ChunkOutput {
    pub bytes: Vec<u8>,
    pub read: u64,
    pub written: u64,
    pub filtered: u64,
    pub skipped: Vec<LineIssue>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("line {}: {}", .0.record.line, .0.record.reason)]
    Line(Box<LineIssue>),
    #[error("cancelled")]
    Cancelled,
}

/// One output column: an input column carried over, or a computed one.
#[derive(Debug, Clone, Copy)]
enum OutColumn {
    Input(usize),
    Computed(usize),
}

/// The row pipeline of a batch node: reader layout, row program, writer layout.
pub struct RowProcessor {
    reader: Layout,
    writer: Layout,
    /// Input column names (CSV header, `line`, or the first JSON record's keys).
    names: Vec<String>,
    program: Option<RowProgram>,
    computed: Vec<String>,
    columns: Vec<OutColumn>,
    out_names: Vec<String>,
    /// Computed columns are only appended (no input column replaced).
    append_only: bool,
}

impl RowProcessor {
    /// `computed`: the names of the program's columns, in order.
    pub fn new(
        reader: Layout,
        writer: Layout,
        names: Vec<String>,
        program: Option<RowProgram>,
        computed: Vec<String>,
    ) -> RowProcessor {
        let mut columns: Vec<OutColumn> = (0..names.len()).map(OutColumn::Input).collect();
        let mut out_names = names.clone();
        let mut append_only = true;
        for (j, name) in computed.iter().enumerate() {
            match out_names.iter().position(|n| n == name) {
                Some(i) => {
                    columns[i] = OutColumn::Computed(j);
                    append_only = false;
                }
                None => {
                    columns.push(OutColumn::Computed(j));
                    out_names.push(name.clone());
                }
            }
        }
        RowProcessor {
            reader,
            writer,
            names,
            program,
            computed,
            columns,
            out_names,
            append_only,
        }
    }

    /// The output file's first line (CSV header), empty for JSON Lines.
    pub fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Layout::Csv { delimiter } = self.writer {
            write_csv_record(
                &mut out,
                self.out_names.iter().map(String::as_str),
                delimiter,
            );
        }
        out
    }

    pub fn native_count(&self) -> (usize, usize) {
        self.program.as_ref().map_or((0, 0), |p| p.native_count())
    }

    /// Processes the records of `data` (whole records, starting at line `first_line`).
    pub fn process(
        &self,
        data: &[u8],
        first_line: u64,
        gate: &dyn SkipGate,
        cancel: &AtomicBool,
    ) -> Result<ChunkOutput, ChunkError> {
        let mut out = ChunkOutput {
            bytes: Vec::with_capacity(data.len() + data.len() / 4),
            ..Default::default()
        };
        // Validating the whole chunk at once is much faster than record by record; only a
        // chunk with a bad byte pays the per-record check.
        let whole = std::str::from_utf8(data).ok();
        let mut fields = Fields::default();
        let mut cells: Vec<Cell> = Vec::with_capacity(self.computed.len());
        let mut text_out = String::new();
        let expected = self.names.len();
        for (n, span) in Splitter::new(data, first_line, self.reader.quote()).enumerate() {
            if n % 4096 == 0 && cancel.load(Ordering::Relaxed) {
                return Err(ChunkError::Cancelled);
            }
            out.read += 1;
            let raw = &data[span.start..span.end];
            let bad = |kind: IssueKind, reason: String| LineIssue {
                kind,
                record: BadRecord {
                    line: span.line,
                    raw: String::from_utf8_lossy(raw).into_owned(),
                    reason,
                },
            };
            // Records start and end next to ASCII bytes (newlines), so slicing a valid chunk
            // on them is always on character boundaries.
            let valid = whole.and_then(|w| w.get(span.start..span.end));
            let text = match valid {
                Some(t) => t,
                None => match utf8(raw) {
                    Ok(t) => t,
                    Err(reason) => {
                        self.reject(bad(IssueKind::Parse, reason), gate, &mut out)?;
                        continue;
                    }
                },
            };
            let json: Map<String, Value>;
            let row = match self.reader {
                Layout::Csv { delimiter } => {
                    if let Err(reason) = csv_fields(text, delimiter, b'"', span.quoted, &mut fields)
                    {
                        self.reject(bad(IssueKind::Parse, reason), gate, &mut out)?;
                        continue;
                    }
                    if fields.len() != expected {
                        let reason = format!(
                            "expected {expected} fields ({}), found {}",
                            self.names.join(", "),
                            fields.len()
                        );
                        self.reject(bad(IssueKind::Parse, reason), gate, &mut out)?;
                        continue;
                    }
                    RowRef::Text {
                        names: &self.names,
                        fields: &fields,
                    }
                }
                Layout::Lines => {
                    fields.clear();
                    fields.push(text);
                    RowRef::Text {
                        names: &self.names,
                        fields: &fields,
                    }
                }
                Layout::Jsonl => match json_record(text) {
                    Ok(m) => {
                        json = m;
                        RowRef::Json(&json)
                    }
                    Err(reason) => {
                        self.reject(bad(IssueKind::Parse, reason), gate, &mut out)?;
                        continue;
                    }
                },
            };
            cells.clear();
            if let Some(program) = &self.program {
                match program.apply(&row, span.line, &mut cells) {
                    Ok(true) => {}
                    Ok(false) => {
                        out.filtered += 1;
                        continue;
                    }
                    Err(e) => {
                        let reason = format!("{}: {}", e.field, e.message);
                        self.reject(bad(IssueKind::Expression, reason), gate, &mut out)?;
                        continue;
                    }
                }
            }
            self.write_row(
                &row,
                raw,
                span.quoted,
                &cells,
                &mut text_out,
                &mut out.bytes,
            );
            out.written += 1;
        }
        Ok(out)
    }

    fn reject(
        &self,
        issue: LineIssue,
        gate: &dyn SkipGate,
        out: &mut ChunkOutput,
    ) -> Result<(), ChunkError> {
        if gate.try_skip(issue.kind) {
            out.skipped.push(issue);
            Ok(())
        } else {
            Err(ChunkError::Line(Box::new(issue)))
        }
    }

    fn write_row(
        &self,
        row: &RowRef<'_>,
        raw: &[u8],
        quoted: bool,
        cells: &[Cell],
        scratch: &mut String,
        out: &mut Vec<u8>,
    ) {
        match (self.writer, row) {
            (Layout::Csv { delimiter }, RowRef::Text { fields, .. }) => {
                let start = out.len();
                let same_layout =
                    matches!(self.reader, Layout::Csv { delimiter: d } if d == delimiter);
                if same_layout && self.append_only && !quoted {
                    // The record needs no re-quoting: copy it, append the computed cells.
                    out.extend_from_slice(raw);
                    for cell in cells {
                        out.push(delimiter);
                        scratch.clear();
                        cell.write_text(scratch);
                        write_csv_field(out, scratch, delimiter);
                    }
                    out.push(b'\n');
                    return;
                }
                for (k, col) in self.columns.iter().enumerate() {
                    if k > 0 {
                        out.push(delimiter);
                    }
                    match col {
                        OutColumn::Input(i) => {
                            write_csv_field(out, fields.get(*i).unwrap_or_default(), delimiter)
                        }
                        OutColumn::Computed(j) => {
                            scratch.clear();
                            cells[*j].write_text(scratch);
                            write_csv_field(out, scratch, delimiter);
                        }
                    }
                }
                finish_csv_record(out, start);
            }
            (Layout::Csv { delimiter }, RowRef::Json(map)) => {
                let start = out.len();
                for (k, col) in self.columns.iter().enumerate() {
                    if k > 0 {
                        out.push(delimiter);
                    }
                    scratch.clear();
                    match col {
                        OutColumn::Input(i) => json_text(map.get(&self.names[*i]), scratch),
                        OutColumn::Computed(j) => cells[*j].write_text(scratch),
                    }
                    write_csv_field(out, scratch, delimiter);
                }
                finish_csv_record(out, start);
            }
            (_, RowRef::Text { fields, .. }) => {
                let mut map = Map::with_capacity(self.out_names.len());
                for (i, name) in self.names.iter().enumerate() {
                    map.insert(
                        name.clone(),
                        Value::String(fields.get(i).unwrap_or_default().to_string()),
                    );
                }
                self.write_json(map, cells, out);
            }
            (_, RowRef::Json(map)) => self.write_json((*map).clone(), cells, out),
        }
    }

    fn write_json(&self, mut map: Map<String, Value>, cells: &[Cell], out: &mut Vec<u8>) {
        for (name, cell) in self.computed.iter().zip(cells) {
            map.insert(name.clone(), cell.to_json());
        }
        // Writing a map of JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &map);
        out.push(b'\n');
    }
}

/// A JSON value as CSV text: strings as they are, null empty, the rest as JSON.
fn json_text(v: Option<&Value>, out: &mut String) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push_str(s),
        Some(other) => out.push_str(&other.to_string()),
    }
}

/// Writes one field, quoted only when necessary (delimiter, quote, CR or LF inside).
pub fn write_csv_field(out: &mut Vec<u8>, field: &str, delimiter: u8) {
    let bytes = field.as_bytes();
    let needs_quotes = bytes
        .iter()
        .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for at in memchr::memchr_iter(b'"', bytes) {
        out.extend_from_slice(&bytes[start..=at]);
        out.push(b'"');
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Ends a record that started at `start`; a record made of one empty field is written `""` so
/// that it is not an empty line (which readers skip).
fn finish_csv_record(out: &mut Vec<u8>, start: usize) {
    if out.len() == start {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

/// Writes a whole record (used for headers).
pub fn write_csv_record<'a>(
    out: &mut Vec<u8>,
    fields: impl Iterator<Item = &'a str>,
    delimiter: u8,
) {
    let start = out.len();
    for (k, f) in fields.enumerate() {
        if k > 0 {
            out.push(delimiter);
        }
        write_csv_field(out, f, delimiter);
    }
    finish_csv_record(out, start);
}

/// Column names of a CSV header line (or `c1..cN` from a first record when there is none).
pub fn header_names(
    header: Option<&[u8]>,
    first_record: Option<&[u8]>,
    layout: Layout,
) -> Result<Vec<String>, String> {
    match layout {
        Layout::Lines => Ok(vec!["line".to_string()]),
        Layout::Jsonl => {
            let Some(rec) = first_record else {
                return Ok(Vec::new());
            };
            let text = utf8(trim_newline(rec))?;
            Ok(json_record(text)
                .map_err(|e| format!("line 1: {e}"))?
                .keys()
                .cloned()
                .collect())
        }
        Layout::Csv { delimiter } => {
            let mut fields = Fields::default();
            match (header, first_record) {
                (Some(h), _) => {
                    let text = utf8(trim_newline(h)).map_err(|e| format!("header: {e}"))?;
                    csv_fields(text, delimiter, b'"', text.contains('"'), &mut fields)
                        .map_err(|e| format!("header: {e}"))?;
                    let names: Vec<String> = fields.iter().map(str::to_string).collect();
                    if let Some(dup) = names
                        .iter()
                        .enumerate()
                        .find(|(i, n)| names[..*i].contains(n))
                    {
                        return Err(format!("header: column `{}` appears twice", dup.1));
                    }
                    Ok(names)
                }
                (None, Some(rec)) => {
                    let text = utf8(trim_newline(rec)).map_err(|e| format!("line 1: {e}"))?;
                    csv_fields(text, delimiter, b'"', text.contains('"'), &mut fields)
                        .map_err(|e| format!("line 1: {e}"))?;
                    Ok((1..=fields.len()).map(|i| format!("c{i}")).collect())
                }
                (None, None) => Ok(Vec::new()),
            }
        }
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Never skips: for data Tessera produced or a command answered (a bad record there is a bug
/// of the command, not of the input).
pub struct NoSkip;

impl SkipGate for NoSkip {
    fn try_skip(&self, _: IssueKind) -> bool {
        false
    }
}

/// What a `command` processor gets on stdin for one chunk: the chunk's records in the
/// command's format (with a header line for CSV), and how many records that is.
pub fn command_stdin(
    reader: Layout,
    names: &[String],
    to: Layout,
    data: &[u8],
    first_line: u64,
    gate: &dyn SkipGate,
    cancel: &AtomicBool,
) -> Result<(Vec<u8>, ChunkOutput), ChunkError> {
    let convert = RowProcessor::new(reader, to, names.to_vec(), None, Vec::new());
    let mut stdin = convert.header();
    let out = convert.process(data, first_line, gate, cancel)?;
    stdin.extend_from_slice(&out.bytes);
    Ok((stdin, out))
}

/// A command's answer for one chunk, in the writer's layout: the header line (CSV), the
/// records, and how many there are. Errors name the line of the command's output.
pub fn command_stdout(
    stdout: &[u8],
    from: Layout,
    writer: Layout,
) -> Result<(Vec<u8>, ChunkOutput), String> {
    let (header, body, first_line) = match from {
        Layout::Csv { .. } => {
            let mut split = Splitter::new(stdout, 1, Some(b'"'));
            let Some(first) = split.next() else {
                return Ok((Vec::new(), ChunkOutput::default()));
            };
            let rest = (first.end..stdout.len())
                .find(|&i| stdout[i] == b'\n')
                .map_or(stdout.len(), |i| i + 1);
            let lines_in_header = bytecount_newlines(&stdout[..rest]);
            (
                Some(&stdout[first.start..first.end]),
                &stdout[rest..],
                1 + lines_in_header,
            )
        }
        _ => (None, stdout, 1),
    };
    let first_record = match from {
        Layout::Jsonl => body
            .split(|&b| b == b'\n')
            .find(|l| !l.iter().all(u8::is_ascii_whitespace)),
        _ => None,
    };
    let names = header_names(header, first_record, from)?;
    let convert = RowProcessor::new(from, writer, names, None, Vec::new());
    let out = convert
        .process(body, first_line, &NoSkip, &AtomicBool::new(false))
        .map_err(|e| format!("its output, {e}"))?;
    Ok((convert.header(), out))
}

fn bytecount_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::ExprSpec;

    struct Limit(std::sync::atomic::AtomicU64);

    impl SkipGate for Limit {
        fn try_skip(&self, _: IssueKind) -> bool {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    fn processor(
        reader: Layout,
        writer: Layout,
        names: &[&str],
        cols: &[(&str, &str)],
    ) -> RowProcessor {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let spec = ExprSpec {
            columns: cols
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            filter: None,
        };
        let json = matches!(reader, Layout::Jsonl);
        let program = RowProgram::compile(
            &spec,
            (!json).then_some(&names[..]),
            &tessera_core::script::ScriptLimits::default(),
        )
        .unwrap();
        let computed = cols.iter().map(|(a, _)| a.to_string()).collect();
        RowProcessor::new(reader, writer, names, Some(program), computed)
    }

    fn run(p: &RowProcessor, data: &str, skips: u64) -> Result<(String, ChunkOutput), ChunkError> {
        let gate = Limit(skips.into());
        let out = p.process(data.as_bytes(), 2, &gate, &AtomicBool::new(false))?;
        Ok((String::from_utf8(out.bytes.clone()).unwrap(), out))
    }

    const CSV: Layout = Layout::Csv { delimiter: b',' };

    #[test]
    fn a_column_is_added_and_quoting_kept_minimal() {
        let p = processor(
            CSV,
            CSV,
            &["patronyme", "count"],
            &[("length", "row.patronyme.len()")],
        );
        assert_eq!(p.header(), b"patronyme,count,length\n");
        let (text, out) = run(
            &p,
            "Lefèvre,3\n\"Dupont, dit \"\"Le Grand\"\"\",12\r\nNA,NULL\n",
            0,
        )
        .unwrap();
        assert_eq!(
            text,
            "Lefèvre,3,7\n\"Dupont, dit \"\"Le Grand\"\"\",12,22\nNA,NULL,2\n"
        );
        assert_eq!((out.read, out.written, out.filtered), (3, 3, 0));
    }

    #[test]
    fn a_replaced_column_stays_in_place_and_json_output_is_typed() {
        let p = processor(
            CSV,
            Layout::Jsonl,
            &["a", "b"],
            &[("a", "row.a.len()"), ("c", "row.b + \"!\"")],
        );
        let (text, _) = run(&p, "xyz,q\n", 0).unwrap();
        assert_eq!(text, "{\"a\":3,\"b\":\"q\",\"c\":\"q!\"}\n");
        let p = processor(Layout::Jsonl, CSV, &["n", "s"], &[("m", "row.n * 2")]);
        let (text, _) = run(
            &p,
            "{\"n\": 2, \"s\": \"a,b\"}\n{\"s\": null, \"n\": 5}\n",
            0,
        )
        .unwrap();
        assert_eq!(text, "2,\"a,b\",4\n5,,10\n");
    }

    #[test]
    fn bad_records_fail_the_chunk_or_are_skipped_within_the_limit() {
        let p = processor(CSV, CSV, &["a", "b"], &[("n", "row.b.parse_int()")]);
        let data = "x,1\ny,2,3\nz,abc\nw,4\n";
        let err = run(&p, data, 0).unwrap_err();
        let ChunkError::Line(issue) = err else {
            panic!()
        };
        assert_eq!(issue.record.line, 3);
        assert_eq!(issue.record.raw, "y,2,3");
        assert!(
            issue
                .record
                .reason
                .contains("expected 2 fields (a, b), found 3"),
            "{issue:?}"
        );
        let err = run(&p, data, 1).unwrap_err();
        let ChunkError::Line(issue) = err else {
            panic!()
        };
        assert_eq!((issue.kind, issue.record.line), (IssueKind::Expression, 4));
        assert!(issue.record.reason.starts_with("columns.n: "), "{issue:?}");
        let (text, out) = run(&p, data, 2).unwrap();
        assert_eq!(text, "x,1,1\nw,4,4\n");
        assert_eq!((out.read, out.written, out.skipped.len()), (4, 2, 2));
        let raw: &[u8] = b"x,1\nq,\xff\n";
        let err = p
            .process(raw, 7, &NoSkip, &AtomicBool::new(false))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("line 8: invalid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn commands_get_and_give_records_in_their_formats() {
        let names = vec!["a".to_string(), "b".to_string()];
        let (stdin, out) = command_stdin(
            CSV,
            &names,
            Layout::Jsonl,
            b"1,x\n2,\"y,z\"\n",
            2,
            &NoSkip,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(out.written, 2);
        assert_eq!(
            stdin,
            b"{\"a\":\"1\",\"b\":\"x\"}\n{\"a\":\"2\",\"b\":\"y,z\"}\n"
        );
        let (header, out) = command_stdout(b"a,b,c\n1,x,X\n2,\"y,z\",Y\n", CSV, CSV).unwrap();
        assert_eq!(header, b"a,b,c\n");
        assert_eq!(out.bytes, b"1,x,X\n2,\"y,z\",Y\n");
        assert_eq!(out.written, 2);
        let err = command_stdout(b"a,b\n1\n", CSV, CSV).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let (header, out) = command_stdout(b"{\"k\":1}\n{\"k\":2}\n", Layout::Jsonl, CSV).unwrap();
        assert_eq!(
            (header.as_slice(), out.bytes.as_slice()),
            (&b"k\n"[..], &b"1\n2\n"[..])
        );
    }

    #[test]
    fn headers_name_columns() {
        assert_eq!(
            header_names(Some(b"a,\"b,c\"\r\n"), None, CSV).unwrap(),
            ["a", "b,c"]
        );
        assert_eq!(
            header_names(None, Some(b"1,2,3\n"), CSV).unwrap(),
            ["c1", "c2", "c3"]
        );
        assert!(
            header_names(Some(b"a,a\n"), None, CSV)
                .unwrap_err()
                .contains("twice")
        );
        assert_eq!(header_names(None, None, Layout::Lines).unwrap(), ["line"]);
    }
}
