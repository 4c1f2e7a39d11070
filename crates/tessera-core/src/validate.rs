//! Graph and content checks of a parsed pipeline: entry/end, unique and known ids, cycles only
//! through branches, reachability, data paths and script syntax — all reported at once.

use std::collections::HashSet;

use crate::datapath::{DataPath, PathRoot};
use crate::model::{BatchSource, Node, NodeKind, Pipeline, RasterInput};
use crate::parse::parse_pipeline;
use crate::report::{Issue, Report};
use crate::script::Scripts;
use crate::topology::Topology;

/// Parses and validates a pipeline document; `Err` holds every problem found.
pub fn load_pipeline(text: &str, scripts: &Scripts) -> Result<Pipeline, Report> {
    let (pipeline, mut report) = parse_pipeline(text)?;
    validate_into(&pipeline, scripts, &mut report);
    if report.is_ok() {
        Ok(pipeline)
    } else {
        Err(report)
    }
}

/// Like [`load_pipeline`], also returning the document as JSON (stored with each task).
pub fn load_document(
    text: &str,
    scripts: &Scripts,
) -> Result<(Pipeline, serde_json::Value), Report> {
    let doc = crate::parse::parse_document(text).map_err(Report::single)?;
    load_value(doc, scripts)
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

    let top_ids: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    for node in nodes {
        check_node_paths(node, &top_ids, None, &mut issues);
        check_scripts(node, scripts, &mut issues);
        if let NodeKind::Loop(spec) = &node.kind {
            check_loop(node, spec, &top_ids, scripts, &mut issues);
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

/// Checks every path of a node: known node ids, and `loop.*` only inside a loop template
/// (`template_ids` is the template's id set when checking a template node).
fn check_node_paths(
    node: &Node,
    top_ids: &HashSet<&str>,
    template_ids: Option<&HashSet<&str>>,
    issues: &mut Vec<Issue>,
) {
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
    for (field, path) in paths {
        if let Some(msg) = path_problem(path, top_ids, template_ids) {
            issues.push(Issue::node(&node.id, field, msg));
        }
    }
}

fn path_problem(
    path: &DataPath,
    top_ids: &HashSet<&str>,
    template_ids: Option<&HashSet<&str>>,
) -> Option<String> {
    match (&path.root, template_ids) {
        (PathRoot::Node { id, .. }, t) => {
            let known = top_ids.contains(id.as_str()) || t.is_some_and(|t| t.contains(id.as_str()));
            (!known).then(|| format!("path `{path}` names unknown node `{id}`"))
        }
        (_, None) => Some(format!(
            "path `{path}` uses `loop.`, which exists only inside a loop's `nodes`"
        )),
        (PathRoot::LoopNode { id, .. }, Some(t)) => (!t.contains(id.as_str()))
            .then(|| format!("path `{path}` names `{id}`, which is not a node of this loop")),
        (PathRoot::LoopItem | PathRoot::LoopIndex, Some(_)) => None,
    }
}

fn check_scripts(node: &Node, scripts: &Scripts, issues: &mut Vec<Issue>) {
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
    for (field, src) in node.scripts() {
        if let Err(e) = scripts.compile(src) {
            issues.push(Issue::node(&node.id, field, e.message));
        }
    }
}

fn check_loop(
    node: &Node,
    spec: &crate::model::LoopSpec,
    top_ids: &HashSet<&str>,
    scripts: &Scripts,
    issues: &mut Vec<Issue>,
) {
    let template = &spec.nodes;
    let template_ids: HashSet<&str> = template.iter().map(|n| n.id.as_str()).collect();
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
        if top_ids.contains(t.id.as_str()) {
            issues.push(Issue::node(
                &node.id,
                &field,
                format!(
                    "template id `{}` is also a pipeline node id; ids must be distinct",
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
            NodeKind::Loop(_) => issues.push(Issue::node(
                &t.id,
                "type",
                "loops inside loops are not supported yet; use a separate pipeline stage",
            )),
            _ => {}
        }
        check_node_paths(t, top_ids, Some(&template_ids), issues);
        check_scripts(t, scripts, issues);
    }
    let mut template_issues = Vec::new();
    let topo = Topology::build(template, 0, &mut template_issues);
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
    if let Some(collect) = &spec.collect
        && let Some(msg) = path_problem(collect, top_ids, Some(&template_ids))
    {
        issues.push(Issue::node(&node.id, "collect", msg));
    }
}
