//! Parsing pipeline definitions (JSON or YAML) into the typed model, collecting every shape
//! error (wrong types, unknown fields, bad paths) with its node id and field instead of stopping
//! at the first one.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::datapath::DataPath;
use crate::model::*;
use crate::report::{Issue, Report};

mod batch;
mod raster;
mod schedule;
mod service;
mod suggest;

use suggest::article;
pub(crate) use suggest::did_you_mean;

const COMMON_FIELDS: &[&str] = &[
    "id", "type", "params", "input", "next", "ready", "before", "after", "retry", "timeout",
    "cache", "pool",
];

fn kind_fields(type_name: &str) -> Option<&'static [&'static str]> {
    Some(match type_name {
        "entry" => &["api"],
        "end" => &["wait_all"],
        "node" => &[],
        "command" => &["command", "shell", "env", "cwd", "stdin", "files_from"],
        "http" => &["url", "verb", "headers"],
        "service" => service::FIELDS,
        "branch" => &["if", "then", "else", "max_iterations"],
        "loop" => &[
            "items",
            "nodes",
            "collect",
            "max_parallel",
            "max_failed_items",
        ],
        "batch" => batch::FIELDS,
        "raster" => raster::FIELDS,
        _ => return None,
    })
}

/// Reads JSON or YAML text into a JSON value; the error names line and column.
pub fn parse_document(text: &str) -> Result<Value, Issue> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            Issue::global(
                "document",
                format!(
                    "invalid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })
    } else {
        serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            Issue::global("document", format!("invalid YAML{at}: {e}"))
        })
    }
}

/// Parses a whole pipeline document. Shape errors are all collected into the report; a
/// pipeline is returned whenever the document was readable, so graph checks can still run.
pub fn parse_pipeline(text: &str) -> Result<(Pipeline, Report), Report> {
    let doc = parse_document(text).map_err(Report::single)?;
    let mut report = Report::default();
    let pipeline = pipeline_from_value(&doc, &mut report).ok_or(report.clone())?;
    Ok((pipeline, report))
}

pub fn pipeline_from_value(doc: &Value, report: &mut Report) -> Option<Pipeline> {
    let Some(obj) = doc.as_object() else {
        report.push(Issue::global(
            "document",
            format!("a pipeline must be an object, got {}", json_type(doc)),
        ));
        return None;
    };
    for key in obj.keys() {
        const TOP: [&str; 6] = ["type", "nodes", "pools", "name", "description", "schedule"];
        if !TOP.contains(&key.as_str()) {
            let hint = did_you_mean(key, TOP);
            report.push(Issue::global(key, format!("unknown field `{key}`{hint}")));
        }
    }
    match obj.get("type") {
        Some(Value::String(t)) if t == "pipeline" => {}
        None => {}
        Some(other) => report.push(Issue::global(
            "type",
            format!("expected \"pipeline\", got {other}"),
        )),
    }
    let mut pools = BTreeMap::new();
    if let Some(p) = obj.get("pools") {
        match p.as_object() {
            Some(map) => {
                for (name, size) in map {
                    match size.as_u64().filter(|s| *s > 0) {
                        Some(s) => {
                            pools.insert(name.clone(), s as usize);
                        }
                        None => report.push(Issue::global(
                            format!("pools.{name}"),
                            format!("pool size must be a positive integer, got {size}"),
                        )),
                    }
                }
            }
            None => report.push(Issue::global("pools", "expected an object of pool sizes")),
        }
    }
    let Some(nodes_value) = obj.get("nodes") else {
        report.push(Issue::global("nodes", "missing field `nodes`"));
        return None;
    };
    let Some(list) = nodes_value.as_array() else {
        report.push(Issue::global(
            "nodes",
            format!("expected a list of nodes, got {}", json_type(nodes_value)),
        ));
        return None;
    };
    let nodes = parse_node_list(list, "nodes", report);
    match obj.get("name") {
        None => {}
        Some(Value::String(n)) => {
            if let Some(problem) = name_problem(n) {
                report.push(Issue::global("name", problem));
            }
        }
        Some(other) => report.push(Issue::global(
            "name",
            format!("expected a string, got {}", json_type(other)),
        )),
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            nodes.iter().find_map(|n| match &n.kind {
                NodeKind::Entry(e) => e.route.clone(),
                _ => None,
            })
        })
        .unwrap_or_else(|| "pipeline".to_string());
    let mut p = Pipeline {
        name,
        nodes,
        pools,
        schedule: None,
    };
    p.schedule = obj
        .get("schedule")
        .and_then(|s| schedule::parse_schedule(s, &p, report))
        .map(Box::new);
    Some(p)
}

/// Longest pipeline name (and route): it is part of URLs and of every task's row.
pub const MAX_NAME_LEN: usize = 200;

/// Why a pipeline name or route is refused: names are routes (`/api/v1/services/{name}`), so
/// they are non-empty, at most [`MAX_NAME_LEN`] characters of letters, digits, `-`, `_`, `/`.
pub fn name_problem(name: &str) -> Option<String> {
    let shown: String = name
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if name.is_empty() {
        Some("a pipeline name (route) cannot be empty".into())
    } else if name.chars().count() > MAX_NAME_LEN {
        Some(format!(
            "`{shown}…` is longer than {MAX_NAME_LEN} characters"
        ))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
    {
        Some(format!(
            "`{shown}` may only use letters, digits, -, _ and /"
        ))
    } else {
        None
    }
}

fn parse_node_list(list: &[Value], where_: &str, report: &mut Report) -> Vec<Node> {
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| parse_node(v, &format!("{where_}[{i}]"), report))
        .collect()
}

/// Field readers that record an error (with node id and field) instead of failing.
struct Fields<'a> {
    node: String,
    obj: &'a Map<String, Value>,
    report: &'a mut Report,
    /// Prepended to field names in errors when reading a nested object (`reader.`).
    prefix: &'static str,
}

impl Fields<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        let name = format!("{}{field}", self.prefix);
        self.report.push(Issue::node(&self.node, &name, message));
    }

    fn string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let t = json_type(other);
                self.err(field, format!("expected a string, got {t}"));
                None
            }
        }
    }

    fn bool(&mut self, field: &str) -> Option<bool> {
        match self.obj.get(field)? {
            Value::Bool(b) => Some(*b),
            other => {
                let t = json_type(other);
                self.err(field, format!("expected true or false, got {t}"));
                None
            }
        }
    }

    fn uint(&mut self, field: &str) -> Option<u64> {
        let v = self.obj.get(field)?;
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.err(field, format!("expected a non-negative integer, got {v}"));
                None
            }
        }
    }

    fn string_list(&mut self, field: &str, value: Option<&Value>) -> Vec<String> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            let t = json_type(other);
                            self.err(
                                &format!("{field}[{i}]"),
                                format!("expected a string, got {t}"),
                            );
                        }
                    }
                }
                out
            }
            Some(other) => {
                let t = json_type(other);
                self.err(field, format!("expected a list of ids, got {t}"));
                Vec::new()
            }
        }
    }

    fn string_map(&mut self, field: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.obj.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        Value::Number(_) | Value::Bool(_) => {
                            out.insert(k.clone(), v.to_string());
                        }
                        other => {
                            let t = json_type(other);
                            self.err(
                                &format!("{field}.{k}"),
                                format!("expected a string, got {t}"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let t = json_type(other);
                self.err(field, format!("expected an object of strings, got {t}"));
            }
        }
        out
    }

    fn path(&mut self, field: &str, value: &Value) -> Option<DataPath> {
        match value {
            Value::String(s) => match DataPath::parse(s) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.err(field, e.to_string());
                    None
                }
            },
            other => {
                let t = json_type(other);
                self.err(field, format!("expected a data path string, got {t}"));
                None
            }
        }
    }

    fn input_spec(&mut self, field: &str, value: Option<&Value>) -> Option<InputSpec> {
        match value? {
            Value::Null => None,
            Value::String(_) => self.path(field, value?).map(InputSpec::Path),
            Value::Object(map) => {
                let mut entries = Vec::new();
                for (name, v) in map {
                    let d = match v {
                        // `'text'`: a literal string (a bare string is a data path).
                        Value::String(s)
                            if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') =>
                        {
                            Directive::Literal(Value::String(s[1..s.len() - 1].to_string()))
                        }
                        Value::String(_) => match self.path(&format!("{field}.{name}"), v) {
                            Some(p) => Directive::Path(p),
                            None => continue,
                        },
                        literal => Directive::Literal(literal.clone()),
                    };
                    entries.push((name.clone(), d));
                }
                Some(InputSpec::Map(entries))
            }
            other => {
                let t = json_type(other);
                self.err(
                    field,
                    format!("expected an object of directives or a path, got {t}"),
                );
                None
            }
        }
    }

    fn duration(&mut self, field: &str, value: Option<&Value>) -> Option<std::time::Duration> {
        match parse_duration(value?) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(field, e);
                None
            }
        }
    }
}

fn parse_node(value: &Value, where_: &str, report: &mut Report) -> Option<Node> {
    let Some(obj) = value.as_object() else {
        report.push(Issue::global(
            where_,
            format!("a node must be an object, got {}", json_type(value)),
        ));
        return None;
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            report.push(Issue::global(
                format!("{where_}.id"),
                format!("expected a string id, got {}", json_type(other)),
            ));
            return None;
        }
        None => {
            report.push(Issue::global(format!("{where_}.id"), "missing field `id`"));
            return None;
        }
    };
    if !valid_id(&id) {
        report.push(Issue::node(
            &id,
            "id",
            "ids must match [A-Za-z_][A-Za-z0-9_-]*",
        ));
    }
    let type_name = match obj.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            report.push(Issue::node(
                &id,
                "type",
                format!("expected a string, got {}", json_type(other)),
            ));
            return None;
        }
        None => {
            report.push(Issue::node(&id, "type", "missing field `type`"));
            return None;
        }
    };
    let Some(specific) = kind_fields(&type_name) else {
        const TYPES: [&str; 10] = [
            "entry", "end", "node", "command", "http", "service", "branch", "loop", "batch",
            "raster",
        ];
        let hint = did_you_mean(&type_name, TYPES);
        let msg = format!(
            "unknown node type `{type_name}`{hint} (expected entry, end, node, command, http, service, branch, loop, batch or raster)"
        );
        report.push(Issue::node(&id, "type", msg));
        return None;
    };
    for key in obj.keys() {
        if !COMMON_FIELDS.contains(&key.as_str()) && !specific.contains(&key.as_str()) {
            let hint = did_you_mean(key, COMMON_FIELDS.iter().chain(specific).copied());
            report.push(Issue::node(
                &id,
                key,
                format!(
                    "unknown field `{key}` for {} `{type_name}` node{hint}",
                    article(&type_name)
                ),
            ));
        }
    }

    let mut f = Fields {
        node: id.clone(),
        obj,
        report,
        prefix: "",
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            let t = json_type(other);
            f.err("params", format!("expected an object, got {t}"));
            Map::new()
        }
    };
    let input = f.input_spec("input", obj.get("input"));
    let next = f.string_list("next", obj.get("next"));
    let ready = parse_ready(&mut f);
    let before = f.string("before");
    let after = f.string("after");
    let timeout = f.duration("timeout", obj.get("timeout"));
    let cache = f.bool("cache").unwrap_or(false);
    let pool = f.string("pool");
    let retry = parse_retry(&mut f);

    // A kind whose own fields are wrong (errors already reported) stays in the graph as a
    // plain node, so that the edges to it are still checked instead of reported as unknown.
    let kind = match type_name.as_str() {
        "entry" => Some(NodeKind::Entry(parse_api(&mut f))),
        "end" => Some(NodeKind::End(EndSpec {
            wait_all: f.bool("wait_all").unwrap_or(false),
        })),
        "node" => Some(NodeKind::Node),
        "command" => parse_command(&mut f).map(NodeKind::Command),
        "http" => parse_http(&mut f).map(NodeKind::Http),
        "service" => service::parse_service(&mut f).map(NodeKind::Service),
        "branch" => parse_branch(&mut f, !next.is_empty()).map(NodeKind::Branch),
        "loop" => parse_loop(&mut f).map(NodeKind::Loop),
        "batch" => batch::parse_batch(&mut f).map(|b| NodeKind::Batch(Box::new(b))),
        "raster" => raster::parse_raster(&mut f).map(|r| NodeKind::Raster(Box::new(r))),
        _ => unreachable!("kind_fields accepted only known types"),
    }
    .unwrap_or(NodeKind::Node);
    Some(Node {
        id,
        kind,
        params,
        input,
        next,
        ready,
        before,
        after,
        retry,
        timeout,
        cache,
        pool,
        definition: value.clone(),
    })
}

pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `ready`: a rule's name, or an expression (anything that is not a single word).
fn parse_ready(f: &mut Fields) -> Option<Readiness> {
    let text = f.string("ready")?;
    let word = text.trim();
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return match ReadyRule::parse(word) {
            Some(rule) => Some(Readiness::Rule(rule)),
            None => {
                let names: Vec<&str> = ReadyRule::ALL.iter().map(|r| r.as_str()).collect();
                f.err(
                    "ready",
                    format!(
                        "unknown readiness rule `{word}`; use one of {} or a boolean expression",
                        names.join(", ")
                    ),
                );
                None
            }
        };
    }
    Some(Readiness::Expression(text))
}

fn parse_retry(f: &mut Fields) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    let Some(v) = f.obj.get("retry") else {
        return policy;
    };
    let Some(map) = v.as_object() else {
        let t = json_type(v);
        f.err(
            "retry",
            format!("expected an object like {{\"attempts\": 3}}, got {t}"),
        );
        return policy;
    };
    for key in map.keys() {
        if !["attempts", "backoff", "max_backoff"].contains(&key.as_str()) {
            f.err(&format!("retry.{key}"), format!("unknown field `{key}`"));
        }
    }
    if let Some(a) = map.get("attempts") {
        match a.as_u64().filter(|n| (1..=1000).contains(n)) {
            Some(n) => policy.attempts = n as u32,
            None => f.err(
                "retry.attempts",
                format!("expected an integer from 1 to 1000, got {a}"),
            ),
        }
    }
    if let Some(d) = f.duration("retry.backoff", map.get("backoff")) {
        policy.backoff = d;
    }
    if let Some(d) = f.duration("retry.max_backoff", map.get("max_backoff")) {
        policy.max_backoff = d;
    }
    policy
}

fn parse_api(f: &mut Fields) -> EntrySpec {
    let Some(v) = f.obj.get("api") else {
        return EntrySpec::default();
    };
    let Some(map) = v.as_object() else {
        let t = json_type(v);
        f.err("api", format!("expected an object, got {t}"));
        return EntrySpec::default();
    };
    for key in map.keys() {
        if !["route", "body", "summary", "description"].contains(&key.as_str()) {
            f.err(&format!("api.{key}"), format!("unknown field `{key}`"));
        }
    }
    let text = |f: &mut Fields, k: &str| match map.get(k) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            let t = json_type(other);
            f.err(&format!("api.{k}"), format!("expected a string, got {t}"));
            None
        }
    };
    let route = text(f, "route");
    if let Some(problem) = route.as_deref().and_then(name_problem) {
        f.err("api.route", problem);
    }
    let body = map.get("body").cloned();
    if let Some(b) = &body {
        let ok = match b {
            Value::Object(_) | Value::String(_) => true,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => false,
        };
        if !ok {
            f.err(
                "api.body",
                "expected an example object, a field name, or a list of field names",
            );
        }
    }
    EntrySpec {
        route,
        body,
        summary: text(f, "summary"),
        description: text(f, "description"),
    }
}

fn parse_command(f: &mut Fields) -> Option<CommandSpec> {
    let shell = f.bool("shell").unwrap_or(false);
    let command = match f.obj.get("command") {
        None => {
            f.err(
                "command",
                "missing field `command` (an argv list, or a string with shell: true)",
            );
            return None;
        }
        Some(Value::String(s)) if shell => CommandLine::Shell(s.clone()),
        Some(Value::String(_)) => {
            f.err(
                "command",
                "a command string needs `shell: true`; otherwise give an argv list",
            );
            return None;
        }
        Some(v @ Value::Array(_)) => {
            let argv = f.string_list("command", Some(v));
            if argv.is_empty() {
                f.err("command", "the argv list is empty");
                return None;
            }
            if shell {
                CommandLine::Shell(argv.join(" "))
            } else {
                CommandLine::Argv(argv)
            }
        }
        Some(other) => {
            let t = json_type(other);
            f.err(
                "command",
                format!("expected an argv list or a string, got {t}"),
            );
            return None;
        }
    };
    let files_from = f.string_list("files_from", f.obj.get("files_from"));
    for (i, dir) in files_from.iter().enumerate() {
        if dir.trim().is_empty() || dir.contains("{{") || dir.contains("${") {
            f.err(
                &format!("files_from[{i}]"),
                "expected a directory path (no placeholders: input data must not choose it)",
            );
        }
    }
    Some(CommandSpec {
        command,
        env: f.string_map("env"),
        cwd: f.string("cwd"),
        stdin: f.bool("stdin").unwrap_or(true),
        files_from,
    })
}

fn parse_url(f: &mut Fields) -> Option<String> {
    let Some(url) = f.string("url") else {
        if !f.obj.contains_key("url") {
            f.err("url", "missing field `url`");
        }
        return None;
    };
    let templated = url.starts_with("{{") || url.starts_with("${env:");
    if !(templated || url.starts_with("http://") || url.starts_with("https://")) {
        f.err("url", format!("`{url}` is not an http:// or https:// URL"));
    }
    Some(url)
}

fn parse_http(f: &mut Fields) -> Option<HttpSpec> {
    let url = parse_url(f)?;
    let verb = f
        .string("verb")
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&verb.as_str()) {
        f.err("verb", format!("unsupported HTTP verb `{verb}`"));
    }
    Some(HttpSpec {
        url,
        verb,
        headers: f.string_map("headers"),
    })
}

fn parse_branch(f: &mut Fields, has_next: bool) -> Option<BranchSpec> {
    if has_next {
        f.err(
            "next",
            "a branch chooses its successors in `then.next` and `else.next`",
        );
    }
    let condition = match f.string("if") {
        Some(c) => c,
        None => {
            if !f.obj.contains_key("if") {
                f.err("if", "missing field `if` (a boolean expression)");
            }
            return None;
        }
    };
    let then = parse_arm(f, "then");
    let otherwise = parse_arm(f, "else");
    let max_iterations = f
        .uint("max_iterations")
        .map(|n| n.clamp(1, u32::MAX as u64) as u32)
        .unwrap_or(1000);
    Some(BranchSpec {
        condition,
        then,
        otherwise,
        max_iterations,
    })
}

fn parse_arm(f: &mut Fields, name: &str) -> BranchArm {
    let Some(v) = f.obj.get(name) else {
        return BranchArm::default();
    };
    let Some(map) = v.as_object() else {
        let t = json_type(v);
        f.err(
            name,
            format!("expected an object with next/out/exec, got {t}"),
        );
        return BranchArm::default();
    };
    for key in map.keys() {
        if !["next", "out", "exec"].contains(&key.as_str()) {
            f.err(&format!("{name}.{key}"), format!("unknown field `{key}`"));
        }
    }
    let exec = match map.get("exec") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            let t = json_type(other);
            f.err(
                &format!("{name}.exec"),
                format!("expected a script string, got {t}"),
            );
            None
        }
    };
    BranchArm {
        next: f.string_list(&format!("{name}.next"), map.get("next")),
        out: f.input_spec(&format!("{name}.out"), map.get("out")),
        exec,
    }
}

fn parse_loop(f: &mut Fields) -> Option<LoopSpec> {
    let items = match f.obj.get("items") {
        Some(v) => f.path("items", v)?,
        None => {
            f.err("items", "missing field `items` (a path to a list)");
            return None;
        }
    };
    let collect = match f.obj.get("collect") {
        Some(v) => Some(f.path("collect", v)?),
        None => None,
    };
    let max_parallel = f.uint("max_parallel").unwrap_or(0) as usize;
    let max_failed_items = f.uint("max_failed_items").unwrap_or(0);
    let template = match f.obj.get("nodes") {
        Some(Value::Array(list)) if !list.is_empty() => list.clone(),
        Some(Value::Array(_)) => {
            f.err("nodes", "a loop needs at least one template node");
            return None;
        }
        Some(other) => {
            let t = json_type(other);
            f.err("nodes", format!("expected a list of nodes, got {t}"));
            return None;
        }
        None => {
            f.err(
                "nodes",
                "missing field `nodes` (the sub-graph run for each item)",
            );
            return None;
        }
    };
    let where_ = format!("{}.nodes", f.node);
    let nodes = parse_node_list(&template, &where_, f.report);
    Some(LoopSpec {
        items,
        nodes,
        collect,
        max_parallel,
        max_failed_items,
    })
}
