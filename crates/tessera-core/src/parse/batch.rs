//! Parsing a `batch` node's fields (reader, processor, writer, chunking, skip policy), every
//! error named with its nested field (`reader.format`, `skip.on[1]`, …).

use serde_json::Value;

use super::Fields;
use crate::datapath::DataPath;
use crate::model::*;
use crate::report::Issue;

pub(super) const FIELDS: &[&str] = &[
    "reader",
    "processor",
    "writer",
    "chunk_size",
    "parallelism",
    "skip",
    "start_limit",
    "checkpoints",
];

const DEFAULT_CHUNK_SIZE: u64 = 10_000;

/// Readers of a nested object's fields (errors named `<prefix>.<field>`), for the `batch` node.
impl Fields<'_> {
    fn check_keys(&mut self, allowed: &[&str]) {
        for k in self.obj.keys() {
            if !allowed.contains(&k.as_str()) {
                let name = format!("{}{k}", self.prefix);
                let message = format!(
                    "unknown field `{k}` (expected one of: {})",
                    allowed.join(", ")
                );
                self.report.push(Issue::node(&self.node, &name, message));
            }
        }
    }

    fn format(&mut self, field: &str, allowed: &[RecordFormat]) -> Option<RecordFormat> {
        let text = self.string(field)?;
        let format = match text.as_str() {
            "csv" => RecordFormat::Csv,
            "jsonl" | "ndjson" => RecordFormat::Jsonl,
            "lines" => RecordFormat::Lines,
            _ => {
                self.err(
                    field,
                    format!("unknown format `{text}` (csv, jsonl or lines)"),
                );
                return None;
            }
        };
        if !allowed.contains(&format) {
            let names: Vec<&str> = allowed.iter().map(|f| f.as_str()).collect();
            self.err(
                field,
                format!(
                    "format `{text}` is not possible here (expected {})",
                    names.join(" or ")
                ),
            );
            return None;
        }
        Some(format)
    }

    fn delimiter(&mut self) -> Option<u8> {
        match self.string("delimiter") {
            None => None,
            Some(d) if d.len() == 1 && d != "\"" && d != "\n" && d != "\r" => Some(d.as_bytes()[0]),
            Some(d) if d == "\\t" => Some(b'\t'),
            Some(d) => {
                self.err(
                    "delimiter",
                    format!("`{d}` is not a one-byte delimiter (examples: \",\", \";\", \"\\t\")"),
                );
                None
            }
        }
    }
}

/// The readers of the nested object `field` (`None`, with an error, when it is not an object).
fn sub<'f>(f: &'f mut Fields<'_>, field: &'static str) -> Option<Fields<'f>> {
    let prefix = match field {
        "reader" => "reader.",
        "writer" => "writer.",
        "processor" => "processor.",
        "skip" => "skip.",
        _ => "",
    };
    match f.obj.get(field) {
        None => None,
        Some(Value::Object(obj)) => Some(Fields {
            node: f.node.clone(),
            obj,
            report: &mut *f.report,
            prefix,
        }),
        Some(other) => {
            let t = json_type(other);
            f.err(field, format!("expected an object, got {t}"));
            None
        }
    }
}

pub(super) fn parse_batch(f: &mut Fields) -> Option<BatchSpec> {
    let reader = parse_reader(f);
    let mut writer = parse_writer(f);
    // A CSV written from a CSV keeps its delimiter unless the writer names one.
    if let (Some(r), Some((w, explicit))) = (&reader, &mut writer)
        && !*explicit
        && r.format == RecordFormat::Csv
    {
        w.delimiter = r.delimiter;
    }
    let writer = writer.map(|(w, _)| w);
    let processor = parse_processor(f);
    let chunk_size = match f.uint("chunk_size") {
        Some(0) => {
            f.err("chunk_size", "must be at least 1 record");
            None
        }
        other => other,
    };
    let parallelism = f.uint("parallelism").unwrap_or(0) as usize;
    let start_limit = match f.uint("start_limit") {
        Some(0) => {
            f.err("start_limit", "must be at least 1 (the first run counts)");
            None
        }
        other => other.map(|n| n.min(u32::MAX as u64) as u32),
    };
    let checkpoints = f.bool("checkpoints").unwrap_or(true);
    let skip = parse_skip(f);
    Some(BatchSpec {
        reader: reader?,
        processor: processor?,
        writer: writer?,
        chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
        parallelism,
        skip,
        start_limit,
        checkpoints,
    })
}

fn parse_reader(f: &mut Fields) -> Option<BatchReader> {
    let Some(mut r) = sub(f, "reader") else {
        if !f.obj.contains_key("reader") {
            f.err(
                "reader",
                "missing field `reader` (e.g. {format: csv, path: data.csv})",
            );
        }
        return None;
    };
    r.check_keys(&["format", "path", "object", "delimiter", "header"]);
    let format = match r.obj.contains_key("format") {
        true => r.format(
            "format",
            &[RecordFormat::Csv, RecordFormat::Jsonl, RecordFormat::Lines],
        ),
        false => {
            r.err("format", "missing field `format` (csv, jsonl or lines)");
            None
        }
    };
    let delimiter = r.delimiter().unwrap_or(b',');
    let header = r.bool("header").unwrap_or(true);
    let source = match (r.string("path"), r.obj.get("object").cloned()) {
        (Some(p), None) if !p.trim().is_empty() => Some(BatchSource::Path(p)),
        (None, Some(Value::String(o))) => match DataPath::parse(&o) {
            Ok(p) => Some(BatchSource::Object(p)),
            Err(e) => {
                r.err("object", e.to_string());
                None
            }
        },
        (None, Some(other)) => {
            let t = json_type(&other);
            r.err(
                "object",
                format!("expected a data path to an object, got {t}"),
            );
            None
        }
        (Some(_), Some(_)) => {
            r.err("path", "give either `path` or `object`, not both");
            None
        }
        _ => {
            r.err(
                "path",
                "missing `path` (a file) or `object` (a data path to an object)",
            );
            None
        }
    };
    Some(BatchReader {
        format: format?,
        source: source?,
        delimiter,
        header,
    })
}

/// The writer, and whether it names its delimiter.
fn parse_writer(f: &mut Fields) -> Option<(BatchWriter, bool)> {
    let Some(mut w) = sub(f, "writer") else {
        if !f.obj.contains_key("writer") {
            f.err(
                "writer",
                "missing field `writer` (e.g. {format: csv, path: out.csv})",
            );
        }
        return None;
    };
    w.check_keys(&["format", "path", "object", "delimiter"]);
    let format = match w.obj.contains_key("format") {
        true => w.format("format", &[RecordFormat::Csv, RecordFormat::Jsonl]),
        false => {
            w.err("format", "missing field `format` (csv or jsonl)");
            None
        }
    };
    let explicit = w.delimiter();
    let delimiter = explicit.unwrap_or(b',');
    let target = match (w.string("path"), w.obj.get("object").cloned()) {
        (Some(p), None) if !p.trim().is_empty() => Some(BatchTarget::Path(p)),
        (None, Some(Value::Bool(true))) => Some(BatchTarget::Object { name: None }),
        (None, Some(Value::String(name))) => Some(BatchTarget::Object { name: Some(name) }),
        (None, Some(other)) => {
            w.err(
                "object",
                format!("expected true or a file name, got {}", json_type(&other)),
            );
            None
        }
        (Some(_), Some(_)) => {
            w.err("path", "give either `path` or `object`, not both");
            None
        }
        _ => {
            w.err(
                "path",
                "missing `path` (a file) or `object: true` (a new object)",
            );
            None
        }
    };
    Some((
        BatchWriter {
            format: format?,
            target: target?,
            delimiter,
        },
        explicit.is_some(),
    ))
}

fn parse_processor(f: &mut Fields) -> Option<BatchProcessor> {
    let Some(mut p) = sub(f, "processor") else {
        // No processor: records are copied (or converted from one format to the other).
        return (!f.obj.contains_key("processor")).then_some(BatchProcessor::Rows {
            columns: Vec::new(),
            filter: None,
        });
    };
    if p.obj.contains_key("command") {
        p.check_keys(&[
            "command", "shell", "env", "cwd", "input", "output", "filters",
        ]);
        // The same fields, rules and errors as a `command` node.
        let command = super::parse_command(&mut p);
        let formats = [RecordFormat::Csv, RecordFormat::Jsonl];
        let input = p
            .obj
            .contains_key("input")
            .then(|| p.format("input", &formats))
            .flatten();
        let output = p
            .obj
            .contains_key("output")
            .then(|| p.format("output", &formats))
            .flatten();
        return Some(BatchProcessor::Command {
            command: command?,
            input,
            output,
            filters: p.bool("filters").unwrap_or(false),
        });
    }
    p.check_keys(&["columns", "filter", "command"]);
    let mut columns = Vec::new();
    match p.obj.get("columns").cloned() {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, v) in m {
                match v {
                    Value::String(src) => columns.push((name, src)),
                    other => p.err(
                        &format!("columns.{name}"),
                        format!("expected an expression string, got {}", json_type(&other)),
                    ),
                }
            }
        }
        Some(other) => p.err(
            "columns",
            format!(
                "expected an object of column name → expression, got {}",
                json_type(&other)
            ),
        ),
    }
    let filter = p.string("filter");
    Some(BatchProcessor::Rows { columns, filter })
}

fn parse_skip(f: &mut Fields) -> SkipPolicy {
    let Some(mut s) = sub(f, "skip") else {
        return SkipPolicy::default();
    };
    s.check_keys(&["limit", "on"]);
    let limit = match s.obj.get("limit").cloned() {
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => {
                s.err("limit", format!("expected a non-negative integer, got {v}"));
                0
            }
        },
        None => {
            s.err(
                "limit",
                "missing field `limit` (how many bad rows may be skipped)",
            );
            0
        }
    };
    let mut policy = SkipPolicy {
        limit,
        parse_errors: true,
        expression_errors: true,
    };
    match s.obj.get("on").cloned() {
        None => {}
        Some(Value::Array(items)) => {
            policy.parse_errors = false;
            policy.expression_errors = false;
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some("parse") => policy.parse_errors = true,
                    Some("expression") => policy.expression_errors = true,
                    _ => s.err(
                        &format!("on[{i}]"),
                        format!("expected `parse` or `expression`, got {item}"),
                    ),
                }
            }
        }
        Some(other) => s.err(
            "on",
            format!(
                "expected a list of error kinds (parse, expression), got {}",
                json_type(&other)
            ),
        ),
    }
    policy
}
