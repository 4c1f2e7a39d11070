//! Templates in command lines, environments, working directories, URLs, headers and paths:
//! `{{…}}` placeholders and `${env:NAME}` secret references. A placeholder names what the node
//! sees: `{{x.y}}` or `{{input.x.y}}` (its input), `{{params.x}}`, `{{tessera.task_id}}` and
//! `{{pipeline.name}}` (set by the engine), a data path — `{{in.out.dir}}`, `{{loop.item}}`,
//! `{{loop.index}}`, `{{loop.<node>.out…}}` — resolved by the scheduler when the node is
//! dispatched.

use std::collections::HashSet;

use crate::datapath::{DataPath, Section};
use crate::model::{
    BatchProcessor, BatchSource, BatchTarget, CommandLine, CommandSpec, Node, NodeKind,
    RasterInput, RasterTarget, ServiceTarget,
};

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'t> {
    Text(&'t str),
    /// `{{…}}`, trimmed.
    Placeholder(&'t str),
    /// `${env:NAME}`
    Env(&'t str),
}

/// Splits a template into text and placeholders.
pub fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    loop {
        let next_braces = rest.find("{{");
        let next_env = rest.find("${env:");
        let (at, is_env) = match (next_braces, next_env) {
            (None, None) => break,
            (Some(a), None) => (a, false),
            (None, Some(b)) => (b, true),
            (Some(a), Some(b)) => (a.min(b), b < a),
        };
        if at > 0 {
            out.push(Piece::Text(&rest[..at]));
        }
        if is_env {
            let after = &rest[at + 6..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{env:` in `{template}`"))?;
            out.push(Piece::Env(after[..end].trim()));
            rest = &after[end + 1..];
        } else {
            let after = &rest[at + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
            out.push(Piece::Placeholder(after[..end].trim()));
            rest = &after[end + 2..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// What a placeholder reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The node's input: `{{x.y}}`, `{{input.x.y}}` (`input` alone: the whole input).
    Input(Vec<String>),
    /// `{{params.x…}}`
    Params(Vec<String>),
    /// `{{tessera.task_id|node|attempt|scratch}}`, filled by the engine.
    Tessera(Vec<String>),
    /// `{{pipeline.task_id|name|scheduled_at}}`: the task's pipeline, as scripts see it
    /// ([`pipeline_values`]), filled by the engine.
    Pipeline(Vec<String>),
    /// A data path, resolved by the scheduler at dispatch.
    Path(DataPath),
}

/// What `placeholder` reads, given the ids a node may name (`ids`: the pipeline's nodes, and
/// the loop template's inside one). `{{a.out}}` is a data path when `a` names a node, else the
/// input field `a`'s field `out`.
pub fn source(placeholder: &str, ids: &dyn Fn(&str) -> bool) -> Result<Source, String> {
    let parts: Vec<&str> = placeholder.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "placeholder `{{{{{placeholder}}}}}` has an empty segment"
        ));
    }
    let rest = |from: usize| parts[from..].iter().map(|s| s.to_string()).collect();
    Ok(match parts[0] {
        "input" => Source::Input(rest(1)),
        "params" => Source::Params(rest(1)),
        "tessera" => Source::Tessera(rest(1)),
        "loop" => Source::Path(DataPath::parse(placeholder).map_err(|e| e.to_string())?),
        first if parts.len() >= 2 && ids(first) && section(parts[1]) => {
            Source::Path(DataPath::parse(placeholder).map_err(|e| e.to_string())?)
        }
        // After node ids: `{{pipeline.out.x}}` reads a node whose id is `pipeline`.
        "pipeline" => Source::Pipeline(rest(1)),
        _ => Source::Input(rest(0)),
    })
}

/// What `pipeline` holds for a task, in scripts (`pipeline.scheduled_at`) and templates
/// (`{{pipeline.scheduled_at}}`): `task_id`, `name` (the pipeline's), and `scheduled_at`, the
/// tick a schedule created the task for as RFC 3339 (`2026-03-29T01:00:00.000Z`), `null` for a
/// task not created by a schedule.
pub fn pipeline_values(task_id: &str, name: &str, scheduled_at: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "task_id": task_id,
        "name": name,
        "scheduled_at": crate::time::json(scheduled_at),
    })
}

/// The fields of [`pipeline_values`].
pub const PIPELINE_FIELDS: [&str; 3] = ["task_id", "name", "scheduled_at"];

fn section(word: &str) -> bool {
    [Section::Out, Section::Input, Section::Params]
        .iter()
        .any(|s| s.as_str() == word)
}

/// Every template of a node, with the field it is in (for error messages).
pub fn node_templates(node: &Node) -> Vec<(String, &str)> {
    fn command<'a>(prefix: &str, spec: &'a CommandSpec, out: &mut Vec<(String, &'a str)>) {
        match &spec.command {
            CommandLine::Argv(argv) => {
                for (i, a) in argv.iter().enumerate() {
                    out.push((format!("{prefix}command[{i}]"), a));
                }
            }
            CommandLine::Shell(s) => out.push((format!("{prefix}command"), s)),
        }
        for (k, v) in &spec.env {
            out.push((format!("{prefix}env.{k}"), v));
        }
        if let Some(c) = &spec.cwd {
            out.push((format!("{prefix}cwd"), c));
        }
    }
    let mut out = Vec::new();
    match &node.kind {
        NodeKind::Command(spec) => command("", spec, &mut out),
        NodeKind::Http(spec) => {
            out.push(("url".into(), spec.url.as_str()));
            for (k, v) in &spec.headers {
                out.push((format!("headers.{k}"), v.as_str()));
            }
        }
        NodeKind::Service(spec) => {
            if let ServiceTarget::Url(url) = &spec.target {
                out.push(("url".into(), url.as_str()));
            }
        }
        NodeKind::Batch(b) => {
            if let BatchSource::Path(p) = &b.reader.source {
                out.push(("reader.path".into(), p.as_str()));
            }
            if let BatchTarget::Path(p) = &b.writer.target {
                out.push(("writer.path".into(), p.as_str()));
            }
            if let BatchProcessor::Command { command: c, .. } = &b.processor {
                command("processor.", c, &mut out);
            }
        }
        NodeKind::Raster(r) => {
            for (name, input) in &r.inputs {
                if let RasterInput::Path(p) = input {
                    out.push((format!("inputs.{name}"), p.as_str()));
                }
            }
            if let RasterTarget::Path(p) = &r.output {
                out.push(("output".into(), p.as_str()));
            }
            if let Some(c) = &r.cache_dir {
                out.push(("cache_dir".into(), c.as_str()));
            }
        }
        _ => {}
    }
    out
}

/// The data paths a node's templates read (each once, with its placeholder text).
pub fn node_paths(node: &Node, ids: &dyn Fn(&str) -> bool) -> Vec<(String, DataPath)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (_, template) in node_templates(node) {
        let Ok(pieces) = pieces(template) else {
            continue;
        };
        for piece in pieces {
            if let Piece::Placeholder(p) = piece
                && let Ok(Source::Path(path)) = source(p, ids)
                && seen.insert(p.to_string())
            {
                out.push((p.to_string(), path));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_classified_by_the_ids_in_scope() {
        let ids = |id: &str| id == "in" || id == "make";
        let src = |p: &str| source(p, &ids).unwrap();
        assert_eq!(src("name"), Source::Input(vec!["name".into()]));
        assert_eq!(
            src("input.a.0"),
            Source::Input(vec!["a".into(), "0".into()])
        );
        assert_eq!(src("params.mode"), Source::Params(vec!["mode".into()]));
        assert_eq!(
            src("tessera.task_id"),
            Source::Tessera(vec!["task_id".into()])
        );
        assert_eq!(
            src("pipeline.scheduled_at"),
            Source::Pipeline(vec!["scheduled_at".into()])
        );
        assert!(matches!(src("in.out.dir"), Source::Path(p) if p.as_str() == "in.out.dir"));
        assert!(matches!(src("loop.item.x"), Source::Path(_)));
        // Not a node: an input field that happens to have a field `out`.
        assert_eq!(
            src("config.out"),
            Source::Input(vec!["config".into(), "out".into()])
        );
        // A node named `pipeline` is read as any node.
        let with_pipeline_node = |id: &str| id == "pipeline";
        assert!(matches!(
            source("pipeline.out.x", &with_pipeline_node).unwrap(),
            Source::Path(_)
        ));
        assert_eq!(
            source("pipeline.name", &with_pipeline_node).unwrap(),
            Source::Pipeline(vec!["name".into()])
        );
        assert!(source("loop", &ids).is_err());
        assert!(source("a..b", &ids).is_err());
    }

    #[test]
    fn pipeline_values_hold_the_tick_as_rfc3339_or_null() {
        assert_eq!(
            pipeline_values("t-1", "nightly", Some(1_774_746_000_000)),
            serde_json::json!({"task_id": "t-1", "name": "nightly", "scheduled_at": "2026-03-29T01:00:00.000Z"})
        );
        assert_eq!(
            pipeline_values("t-1", "p", None)["scheduled_at"],
            serde_json::Value::Null
        );
        let keys: Vec<String> = pipeline_values("t", "p", None)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, PIPELINE_FIELDS);
    }

    #[test]
    fn templates_split_into_text_placeholders_and_secrets() {
        assert_eq!(
            pieces("a {{ x }} b ${env:K}").unwrap(),
            vec![
                Piece::Text("a "),
                Piece::Placeholder("x"),
                Piece::Text(" b "),
                Piece::Env("K"),
            ]
        );
        assert!(pieces("{{oops").is_err());
    }
}
