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

    let top: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let top_ancestry = Ancestry::build(&topo);
    let scope = PathScope {
        top: &top,
        top_ancestry: &top_ancestry,
        template: None,
    };
    for (i, node) in nodes.iter().enumerate() {
        check_node_paths(node, i, &scope, &mut issues);
        let is_node = |id: &str| top.contains_key(id);
        let names = crate::script::NameScope {
            is_node: &is_node,
            in_loop: false,
            row_expression: false,
        };
        check_scripts(node, scripts, &names, &mut issues);
        if let NodeKind::Loop(spec) = &node.kind {
            check_loop(i, node, spec, &scope, scripts, &mut issues);
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

/// Where a node sits, for checking the paths and placeholders it names: the ids it may name
/// and which of them can have run before it.
struct PathScope<'a> {
    top: &'a HashMap<&'a str, usize>,
    top_ancestry: &'a Ancestry,
    /// Inside a loop's `nodes`: the loop node, the template's ids and their ancestry.
    template: Option<TemplateScope<'a>>,
}

struct TemplateScope<'a> {
    loop_node: usize,
    ids: &'a HashMap<&'a str, usize>,
    ancestry: &'a Ancestry,
}

impl PathScope<'_> {
    fn is_id(&self, id: &str) -> bool {
        self.top.contains_key(id)
            || self
                .template
                .as_ref()
                .is_some_and(|t| t.ids.contains_key(id))
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
fn check_node_paths(node: &Node, me: usize, scope: &PathScope<'_>, issues: &mut Vec<Issue>) {
    for (field, path) in node_data_paths(node) {
        if let Some(msg) = path_problem(path, me, scope) {
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
                Ok(crate::template::Source::Path(path)) => path_problem(&path, me, scope),
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
                Ok(_) => None,
            };
            if let Some(msg) = problem {
                issues.push(Issue::node(&node.id, &field, msg));
            }
        }
    }
}

fn path_problem(path: &DataPath, me: usize, scope: &PathScope<'_>) -> Option<String> {
    let own_io = |section: Section| matches!(section, Section::Input | Section::Params);
    let not_before = |id: &str| {
        format!(
            "path `{path}` names `{id}`, which cannot have run before this node (no chain of `next` edges leads from it here)"
        )
    };
    let template_check = |id: &str, section: Section, t: &TemplateScope<'_>| -> Option<String> {
        let &j = t.ids.get(id)?;
        if j == me {
            return (!own_io(section)).then(|| format!("path `{path}` names this node's own output, which does not exist before it runs"));
        }
        (!t.ancestry.ran_before(j, me)).then(|| not_before(id))
    };
    match (&path.root, &scope.template) {
        (PathRoot::Node { id, section }, template) => {
            if let Some(t) = template
                && t.ids.contains_key(id.as_str())
            {
                return template_check(id, *section, t);
            }
            let Some(&j) = scope.top.get(id.as_str()) else {
                return Some(format!("path `{path}` names unknown node `{id}`"));
            };
            // Inside a loop, a pipeline node must have run before the loop itself.
            let me = template.as_ref().map_or(me, |t| t.loop_node);
            if j == me {
                return (!own_io(*section)).then(|| match template {
                    Some(_) => format!(
                        "path `{path}` names the output of loop `{id}`, which exists only once all its branches finished"
                    ),
                    None => format!(
                        "path `{path}` names this node's own output, which does not exist before it runs"
                    ),
                });
            }
            (!scope.top_ancestry.ran_before(j, me)).then(|| not_before(id))
        }
        (_, None) => Some(format!(
            "path `{path}` uses `loop.`, which exists only inside a loop's `nodes`"
        )),
        (PathRoot::LoopNode { id, section }, Some(t)) => {
            if !t.ids.contains_key(id.as_str()) {
                return Some(format!(
                    "path `{path}` names `{id}`, which is not a node of this loop"
                ));
            }
            template_check(id, *section, t)
        }
        (PathRoot::LoopItem | PathRoot::LoopIndex, Some(_)) => None,
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

fn check_loop(
    loop_node: usize,
    node: &Node,
    spec: &crate::model::LoopSpec,
    top_scope: &PathScope<'_>,
    scripts: &Scripts,
    issues: &mut Vec<Issue>,
) {
    let template = &spec.nodes;
    let top_ids = top_scope.top;
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
        if top_ids.contains_key(t.id.as_str()) {
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
        let is_node = |id: &str| top_ids.contains_key(id) || template_ids.contains_key(id);
        let names = crate::script::NameScope {
            is_node: &is_node,
            in_loop: true,
            row_expression: false,
        };
        check_scripts(t, scripts, &names, issues);
    }
    let mut template_issues = Vec::new();
    let topo = Topology::build(template, 0, &mut template_issues);
    let ancestry = Ancestry::build(&topo);
    let scope = PathScope {
        top: top_ids,
        top_ancestry: top_scope.top_ancestry,
        template: Some(TemplateScope {
            loop_node,
            ids: &template_ids,
            ancestry: &ancestry,
        }),
    };
    for (i, t) in template.iter().enumerate() {
        check_node_paths(t, i, &scope, issues);
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
                if !template_ids.contains_key(id.as_str())
                    && !top_ids.contains_key(id.as_str()) =>
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
