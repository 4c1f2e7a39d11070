//! Graph and content checks of a parsed pipeline: entry/end, unique and known ids, cycles only
//! through branches, reachability, data paths and script syntax — all reported at once.

use std::collections::{HashMap, HashSet};

use crate::datapath::{DataPath, PathRoot, Section};
use crate::model::{BatchSource, Node, NodeKind, Pipeline, RasterInput};
use crate::parse::parse_pipeline;
use crate::report::{Issue, Report};
use crate::script::Scripts;
use crate::topology::{Ancestry, Topology};

/// Parses and validates a pipeline document; `Err` holds every problem found.
pub fn load_pipeline(text: &str, scripts: &Scripts) -> Result<Pipeline, Report> {
    let located = |mut report: Report| {
        report.locate(text);
        report
    };
    let (pipeline, mut report) = parse_pipeline(text).map_err(located)?;
    validate_into(&pipeline, scripts, &mut report);
    if report.is_ok() {
        Ok(pipeline)
    } else {
        Err(located(report))
    }
}

/// Like [`load_pipeline`], also returning the document as JSON (stored with each task).
pub fn load_document(
    text: &str,
    scripts: &Scripts,
) -> Result<(Pipeline, serde_json::Value), Report> {
    let doc = crate::parse::parse_document(text).map_err(Report::single)?;
    load_value(doc, scripts).map_err(|mut report| {
        report.locate(text);
        report
    })
}

/// [`load_document`] for a document already read (e.g. to count its nodes first).
pub fn load_value(
    doc: serde_json::Value,
    scripts: &Scripts,
) -> Result<(Pipeline, serde_json::Value), Report> {
    let mut report = Report::default();
    let pipeline = crate::parse::pipeline_from_value(&doc, &mut report).ok_or(report.clone())?;
    validate_into(&pipeline, scripts, &mut report);
    if report.is_ok() {
        Ok((pipeline, doc))
    } else {
        Err(report)
    }
}

/// How many nodes a pipeline document declares, loop templates included (before parsing it:
/// the cost of checking a pipeline grows with this).
pub fn count_nodes(doc: &serde_json::Value) -> usize {
    doc.get("nodes")
        .and_then(serde_json::Value::as_array)
        .map(|nodes| nodes.len() + nodes.iter().map(count_nodes).sum::<usize>())
        .unwrap_or(0)
}

pub fn validate(pipeline: &Pipeline, scripts: &Scripts) -> Report {
    let mut report = Report::default();
    validate_into(pipeline, scripts, &mut report);
    report
}

fn validate_into(pipeline: &Pipeline, scripts: &Scripts, report: &mut Report) {
    let mut issues = Vec::new();
    let nodes = &pipeline.nodes;

    let mut seen = HashSet::new();
    for node in nodes {
        if !seen.insert(node.id.as_str()) {
            issues.push(Issue::node(
                &node.id,
                "id",
                format!("duplicate node id `{}`", node.id),
            ));
        }
    }
    let entries: Vec<&Node> = nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Entry(_)))
        .collect();
    match entries.len() {
        0 => issues.push(Issue::global("nodes", "missing `entry` node")),
        1 => {}
        _ => {
            for extra in &entries[1..] {
                issues.push(Issue::node(
                    &extra.id,
                    "type",
                    "a pipeline has exactly one `entry` node",
                ));
            }
        }
    }
    if !nodes.iter().any(|n| matches!(n.kind, NodeKind::End(_))) {
        issues.push(Issue::global("nodes", "missing `end` node"));
    }

    let start = nodes
        .iter()
        .position(|n| matches!(n.kind, NodeKind::Entry(_)))
        .unwrap_or(0);
    let topo = Topology::build(nodes, start, &mut issues);
    check_graph(nodes, &topo, start, &mut issues);

    let top: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let top_ancestry = Ancestry::build(&topo, start);
    for (i, node) in nodes.iter().enumerate() {
        let scope = PathScope {
            frames: vec![Frame {
                ids: &top,
                ancestry: &top_ancestry,
                me: i,
            }],
        };
        check_node_paths(node, &scope, &mut issues);
        let is_node = |id: &str| top.contains_key(id);
        let names = crate::script::NameScope {
            is_node: &is_node,
            in_loop: false,
            row_expression: false,
        };
        check_scripts(node, scripts, &names, &mut issues);
        if let NodeKind::Loop(spec) = &node.kind {
            check_loop(node, spec, &scope, scripts, &mut issues);
        }
    }
    for issue in issues {
        report.push(issue);
    }
}

fn check_graph(nodes: &[Node], topo: &Topology, start: usize, issues: &mut Vec<Issue>) {
    for &(from, to) in &topo.back_edges {
        if !matches!(nodes[from].kind, NodeKind::Branch(_)) {
            issues.push(Issue::node(
                &nodes[from].id,
                "next",
                format!(
                    "edge to `{}` closes a cycle; cycles must be closed by a `branch` node",
                    nodes[to].id
                ),
            ));
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        if !topo.reachable[i] && i != start {
            issues.push(Issue::node(
                &node.id,
                "id",
                "unreachable from the entry node",
            ));
        }
        let has_preds = !topo.preds[i].is_empty() || topo.back_edges.iter().any(|&(_, t)| t == i);
        match node.kind {
            NodeKind::Entry(_) if has_preds => issues.push(Issue::node(
                &node.id,
                "id",
                "the entry node cannot have predecessors",
            )),
            NodeKind::End(_) if !node.next.is_empty() => issues.push(Issue::node(
                &node.id,
                "next",
                "an end node has no successors",
            )),
            _ => {}
        }
    }
}

/// One level of ids a node may name: the pipeline's, or a loop's `nodes`.
#[derive(Clone, Copy)]
struct Frame<'a> {
    ids: &'a HashMap<&'a str, usize>,
    ancestry: &'a Ancestry,
    /// The index, at this level, of the node checked or of the loop it is inside.
    me: usize,
}

/// Where a node sits, for checking the paths and placeholders it names: the levels around it,
/// the pipeline first, the loop body it is in last.
struct PathScope<'a> {
    frames: Vec<Frame<'a>>,
}

impl PathScope<'_> {
    fn is_id(&self, id: &str) -> bool {
        self.frames.iter().any(|f| f.ids.contains_key(id))
    }

    /// How many loops the node is inside.
    fn loops(&self) -> usize {
        self.frames.len() - 1
    }
}

/// Every data path of a node with the field it sits in (templates apart).
fn node_data_paths(node: &Node) -> Vec<(String, &DataPath)> {
    let mut paths: Vec<(String, &DataPath)> = Vec::new();
    if let Some(input) = &node.input {
        for (suffix, p) in input.named_paths() {
            paths.push((format!("input{suffix}"), p));
        }
    }
    match &node.kind {
        NodeKind::Branch(b) => {
            for (name, arm) in [("then", &b.then), ("else", &b.otherwise)] {
                if let Some(out) = &arm.out {
                    for (suffix, p) in out.named_paths() {
                        paths.push((format!("{name}.out{suffix}"), p));
                    }
                }
            }
        }
        NodeKind::Loop(l) => paths.push(("items".into(), &l.items)),
        NodeKind::Batch(b) => {
            if let BatchSource::Object(p) = &b.reader.source {
                paths.push(("reader.object".into(), p));
            }
        }
        NodeKind::Raster(r) => {
            for (name, input) in &r.inputs {
                if let RasterInput::Object(p) = input {
                    paths.push((format!("inputs.{name}.object"), p));
                }
            }
        }
        _ => {}
    }
    paths
}

/// Checks every path and placeholder of node `me` (its index in the pipeline or template):
/// known node ids that can have run before it, and `loop.*` only inside a loop's `nodes`.
fn check_node_paths(node: &Node, scope: &PathScope<'_>, issues: &mut Vec<Issue>) {
    for (field, path) in node_data_paths(node) {
        if let Some(msg) = path_problem(path, scope) {
            issues.push(Issue::node(&node.id, field, msg));
        }
    }
    for (field, text) in crate::template::node_templates(node) {
        let pieces = match crate::template::pieces(text) {
            Ok(p) => p,
            Err(e) => {
                issues.push(Issue::node(&node.id, field, e));
                continue;
            }
        };
        for piece in pieces {
            let crate::template::Piece::Placeholder(p) = piece else {
                continue;
            };
            let problem = match crate::template::source(p, &|id| scope.is_id(id)) {
                Err(e) => Some(e),
                Ok(crate::template::Source::Path(path)) => path_problem(&path, scope),
                Ok(crate::template::Source::Input(segments)) => {
                    // `{{x.out.y}}` with no node `x` is almost surely a typo of a node id.
                    (segments.len() >= 2 && ["out", "input", "params"].contains(&segments[1].as_str()))
                        .then(|| {
                            format!(
                                "placeholder `{{{{{p}}}}}` names unknown node `{}`; for a field of the input, write `{{{{input.{p}}}}}`",
                                segments[0]
                            )
                        })
                }
                Ok(crate::template::Source::Tessera(segments)) => {
                    tessera_problem(node, &field, &segments, p)
                }
                Ok(crate::template::Source::Params(segments)) => {
                    params_problem(&node.params, &segments, p)
                }
                Ok(crate::template::Source::Pipeline(segments)) => pipeline_problem(&segments, p),
            };
            if let Some(msg) = problem {
                issues.push(Issue::node(&node.id, &field, msg));
            }
        }
    }
}

/// `{{params.…}}`: params are written in the node, so a missing one is known now.
fn params_problem(
    params: &serde_json::Map<String, serde_json::Value>,
    segments: &[String],
    text: &str,
) -> Option<String> {
    let mut at = match segments.first() {
        None => return None,
        Some(first) => match params.get(first) {
            Some(v) => v,
            None => {
                let known: Vec<&str> = params.keys().map(String::as_str).collect();
                let has = if known.is_empty() {
                    "the node has no `params`".to_string()
                } else {
                    format!("its params: {}", known.join(", "))
                };
                return Some(format!(
                    "placeholder `{{{{{text}}}}}`: no param `{first}` ({has})"
                ));
            }
        },
    };
    for (i, segment) in segments.iter().enumerate().skip(1) {
        let next = match at {
            serde_json::Value::Object(m) => m.get(segment),
            serde_json::Value::Array(a) => segment.parse::<usize>().ok().and_then(|n| a.get(n)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => {
                return Some(format!(
                    "placeholder `{{{{{text}}}}}`: `params.{}` has no `{segment}`",
                    segments[..i].join(".")
                ));
            }
        }
    }
    None
}

/// `{{tessera.…}}`: the task context every executor fills (`task_id`, `node`, `attempt`), and
/// a command's scratch directory.
fn tessera_problem(node: &Node, field: &str, segments: &[String], text: &str) -> Option<String> {
    let command_field =
        matches!(node.kind, NodeKind::Command(_)) || field.starts_with("processor.");
    match segments {
        [key] if matches!(key.as_str(), "task_id" | "node" | "attempt") => None,
        [key] if key == "scratch" && command_field => None,
        [key] if key == "scratch" => Some(format!(
            "placeholder `{{{{{text}}}}}` exists only in a command's `command`, `env` and `cwd` (its scratch directory)"
        )),
        _ => Some(format!(
            "unknown placeholder `{{{{{text}}}}}`: `tessera.` offers `task_id`, `node`, `attempt` and, in commands, `scratch`"
        )),
    }
}

/// `{{pipeline.…}}`: the task's pipeline (`task_id`, `name`, `scheduled_at`), as in scripts.
fn pipeline_problem(segments: &[String], text: &str) -> Option<String> {
    match segments {
        [key] if crate::template::PIPELINE_FIELDS.contains(&key.as_str()) => None,
        _ => Some(format!(
            "unknown placeholder `{{{{{text}}}}}`: `pipeline.` offers `task_id`, `name` and `scheduled_at`; for a field of the input, write `{{{{input.{text}}}}}`"
        )),
    }
}

fn path_problem(path: &DataPath, scope: &PathScope<'_>) -> Option<String> {
    let own_io = |section: Section| matches!(section, Section::Input | Section::Params);
    // A node of level `k` of the scope: known there, and able to have run before.
    let check = |id: &str, section: Section, k: usize| -> Option<String> {
        let frame = &scope.frames[k];
        let &j = frame.ids.get(id)?;
        let innermost = k + 1 == scope.frames.len();
        if j == frame.me {
            return (!own_io(section)).then(|| {
                if innermost {
                    format!(
                        "path `{path}` names this node's own output, which does not exist before it runs"
                    )
                } else {
                    format!(
                        "path `{path}` names the output of loop `{id}`, which exists only once all its branches finished"
                    )
                }
            });
        }
        (!frame.ancestry.ran_before(j, frame.me)).then(|| {
            format!(
                "path `{path}` names `{id}`, which cannot have run before this node (no chain of `next` edges leads from it here)"
            )
        })
    };
    let outside_loops = || {
        Some(format!(
            "path `{path}` uses `loop.`, which exists only inside a loop's `nodes`"
        ))
    };
    match &path.root {
        PathRoot::Node { id, section } => {
            // The innermost level that knows the id: ids are distinct across levels.
            match (0..scope.frames.len())
                .rev()
                .find(|&k| scope.frames[k].ids.contains_key(id.as_str()))
            {
                Some(k) => check(id, *section, k),
                None => Some(format!("path `{path}` names unknown node `{id}`")),
            }
        }
        PathRoot::LoopNode { .. } | PathRoot::LoopItem { .. } | PathRoot::LoopIndex { .. }
            if scope.loops() == 0 =>
        {
            outside_loops()
        }
        PathRoot::LoopNode { id, section } => {
            let k = scope.frames.len() - 1;
            if !scope.frames[k].ids.contains_key(id.as_str()) {
                return Some(format!(
                    "path `{path}` names `{id}`, which is not a node of this loop"
                ));
            }
            check(id, *section, k)
        }
        PathRoot::LoopItem { up } | PathRoot::LoopIndex { up } => (*up as usize >= scope.loops())
            .then(|| {
                format!(
                    "path `{path}` reaches {} loop(s) out, but this node is inside {} loop(s)",
                    up + 1,
                    scope.loops()
                )
            }),
    }
}

fn check_scripts(
    node: &Node,
    scripts: &Scripts,
    names: &crate::script::NameScope<'_>,
    issues: &mut Vec<Issue>,
) {
    let cacheable = matches!(
        node.kind,
        NodeKind::Node | NodeKind::Command(_) | NodeKind::Http(_) | NodeKind::Service(_)
    );
    if node.cache && !cacheable {
        issues.push(Issue::node(
            &node.id,
            "cache",
            format!(
                "`cache` applies to node, command, http and service nodes, not to `{}`",
                node.type_name()
            ),
        ));
    }
    // Fields that do nothing on a node run inside the engine (scripts, branches, loops); by
    // the type written, so that a node whose own fields were refused is not blamed twice.
    let written = node.definition.get("type").and_then(|t| t.as_str());
    // (A cached `node` is run as a job: it may have them.)
    let inline = match written {
        Some("node") => !node.cache,
        Some("entry" | "end" | "branch" | "loop") => true,
        _ => false,
    };
    if let (true, Some(kind)) = (inline, written) {
        for field in ["retry", "timeout", "pool"] {
            if node.definition.get(field).is_some() {
                issues.push(Issue::node(
                    &node.id,
                    field,
                    format!(
                        "`{field}` applies to command, http, service, batch and raster nodes, not to `{kind}`"
                    ),
                ));
            }
        }
    }
    if let Some(crate::model::Readiness::Expression(src)) = &node.ready
        && let Some(word) = scripts
            .variables(src, names.is_node)
            .into_iter()
            .find(|w| matches!(w.as_str(), "input" | "out"))
    {
        issues.push(Issue::node(
            &node.id,
            "ready",
            format!(
                "a `ready` expression runs before the node has an input or output, so `{word}` is always empty there; name the predecessors instead (`a.state == \"finished\"`)"
            ),
        ));
    }
    for (field, src) in node.scripts() {
        let names = crate::script::NameScope {
            row_expression: field.starts_with("processor."),
            ..*names
        };
        if let Err(e) = scripts.check(src, &names) {
            issues.push(Issue::node(&node.id, field, e.message));
        }
    }
}

/// Checks a loop's `nodes` (and the loops inside them): `outer` is the scope the loop node
/// itself sits in.
fn check_loop(
    node: &Node,
    spec: &crate::model::LoopSpec,
    outer: &PathScope<'_>,
    scripts: &Scripts,
    issues: &mut Vec<Issue>,
) {
    let template = &spec.nodes;
    let template_ids: HashMap<&str, usize> = template
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut seen = HashSet::new();
    for t in template {
        let field = format!("nodes.{}", t.id);
        if !seen.insert(t.id.as_str()) {
            issues.push(Issue::node(
                &node.id,
                &field,
                format!("duplicate template id `{}`", t.id),
            ));
        }
        if outer.is_id(&t.id) {
            issues.push(Issue::node(
                &node.id,
                &field,
                format!(
                    "template id `{}` is also the id of a node outside this loop; ids must be distinct",
                    t.id
                ),
            ));
        }
        match t.kind {
            NodeKind::Entry(_) | NodeKind::End(_) => issues.push(Issue::node(
                &t.id,
                "type",
                format!("`{}` nodes cannot be inside a loop", t.type_name()),
            )),
            _ => {}
        }
        let is_node = |id: &str| outer.is_id(id) || template_ids.contains_key(id);
        let names = crate::script::NameScope {
            is_node: &is_node,
            in_loop: true,
            row_expression: false,
        };
        check_scripts(t, scripts, &names, issues);
    }
    let mut template_issues = Vec::new();
    let topo = Topology::build(template, 0, &mut template_issues);
    let ancestry = Ancestry::build(&topo, 0);
    for (i, t) in template.iter().enumerate() {
        let mut frames = outer.frames.clone();
        frames.push(Frame {
            ids: &template_ids,
            ancestry: &ancestry,
            me: i,
        });
        let scope = PathScope { frames };
        check_node_paths(t, &scope, issues);
        if let NodeKind::Loop(inner) = &t.kind {
            check_loop(t, inner, &scope, scripts, issues);
        }
    }
    for issue in template_issues {
        let field = format!(
            "nodes.{}.{}",
            issue.node.clone().unwrap_or_default(),
            issue.field
        );
        issues.push(Issue::node(&node.id, field, issue.message));
    }
    for (i, t) in template.iter().enumerate() {
        if !topo.reachable[i] {
            issues.push(Issue::node(
                &t.id,
                "id",
                format!(
                    "unreachable from `{}`, the first node of loop `{}`",
                    template[0].id, node.id
                ),
            ));
        }
    }
    for &(from, to) in &topo.back_edges {
        issues.push(Issue::node(
            &template[from].id,
            "next",
            format!(
                "edge to `{}` closes a cycle inside a loop branch, which is not supported",
                template[to].id
            ),
        ));
    }
    // `collect` is read when the branch has finished: any node of the branch may be named.
    if let Some(collect) = &spec.collect {
        let problem = match &collect.root {
            PathRoot::Node { id, .. }
                if !template_ids.contains_key(id.as_str()) && !outer.is_id(id) =>
            {
                Some(format!("path `{collect}` names unknown node `{id}`"))
            }
            PathRoot::LoopNode { id, .. } if !template_ids.contains_key(id.as_str()) => Some(
                format!("path `{collect}` names `{id}`, which is not a node of this loop"),
            ),
            _ => None,
        };
        if let Some(msg) = problem {
            issues.push(Issue::node(&node.id, "collect", msg));
        }
    }
}
