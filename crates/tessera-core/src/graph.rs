//! Rendering a pipeline as a graph: Graphviz DOT text and a self-contained SVG drawing.
//!
//! Both show one shape per node (id and type), `next` edges, a branch's `then`/`else` arms,
//! back edges (cycles closed by a branch) dashed, and each loop's template nested in a box.
//! The SVG is laid out in layers (Sugiyama-style, `graph/layout.rs`), without external tools
//! or fonts, and drawn (`graph/svg.rs`) for the CLI ([`to_svg`]) or for the web UI
//! ([`to_svg_with`]: left to right, nodes keyed for CSS and JavaScript, states, links).

mod layout;
mod svg;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::model::{Node, NodeKind, Pipeline};
use crate::topology::Topology;
#[cfg(test)]
use layout::{Layout, layout};
#[cfg(test)]
use svg::ID_STYLE;

/// One edge of a node list: `label` names a branch arm; `back` closes a cycle.
#[derive(Debug, Clone, PartialEq)]
struct Edge {
    from: usize,
    to: usize,
    label: Option<&'static str>,
    back: bool,
}

/// Every edge between known ids, in declaration order; back edges are the topology's, walked
/// from the entry (or a template's first node). A cycle among nodes unreachable from there,
/// which validation rejects, is not broken: its edges are drawn as forward edges.
fn edges(nodes: &[Node]) -> Vec<Edge> {
    let start = nodes
        .iter()
        .position(|n| matches!(n.kind, NodeKind::Entry(_)))
        .unwrap_or(0);
    let topo = Topology::build(nodes, start, &mut Vec::new());
    // A set: a list's `contains` per edge is quadratic when many branches close cycles.
    let back_edges: HashSet<(usize, usize)> = topo.back_edges.iter().copied().collect();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.id.as_str(), i))
        .collect();
    let (mut seen, mut out) = (HashSet::new(), Vec::new());
    for (from, node) in nodes.iter().enumerate() {
        let mut arms = vec![(None, &node.next)];
        if let NodeKind::Branch(b) = &node.kind {
            arms.extend([
                (Some("then"), &b.then.next),
                (Some("else"), &b.otherwise.next),
            ]);
        }
        for (label, ids) in arms {
            for &to in ids.iter().filter_map(|id| index.get(id.as_str())) {
                if seen.insert((from, to, label)) {
                    let back = back_edges.contains(&(from, to));
                    out.push(Edge {
                        from,
                        to,
                        label,
                        back,
                    });
                }
            }
        }
    }
    out
}

/// Fill and stroke colours of a node kind.
fn colours(kind: &NodeKind) -> (&'static str, &'static str) {
    match kind {
        NodeKind::Entry(_) => ("#dcfce7", "#16a34a"),
        NodeKind::End(_) => ("#fee2e2", "#dc2626"),
        NodeKind::Node => ("#f3f4f6", "#6b7280"),
        NodeKind::Command(_) => ("#dbeafe", "#2563eb"),
        NodeKind::Http(_) => ("#ede9fe", "#7c3aed"),
        NodeKind::Service(_) => ("#fce7f3", "#db2777"),
        NodeKind::Branch(_) => ("#fef3c7", "#d97706"),
        NodeKind::Loop(_) => ("#ecfeff", "#0891b2"),
        NodeKind::Batch(_) => ("#f0fdf4", "#15803d"),
        NodeKind::Raster(_) => ("#fefce8", "#a16207"),
    }
}

/// A DOT double-quoted string (a newline becomes DOT's centred line break `\n`).
fn dot_quote(s: &str) -> String {
    let body = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\r', "");
    format!("\"{}\"", body.replace('\n', "\\n"))
}

/// Graphviz DOT text of the pipeline (render with `dot -Tsvg`). Template nodes of a loop are
/// drawn in `subgraph cluster_<loop>` with DOT ids `<loop>/<id>`.
pub fn to_dot(pipeline: &Pipeline) -> String {
    let mut s = format!("digraph {} {{\n", dot_quote(&pipeline.name));
    s.push_str("  graph [rankdir=TB, fontname=\"Helvetica\", nodesep=0.35, ranksep=0.45];\n");
    s.push_str("  node [fontname=\"Helvetica\", fontsize=11, style=filled];\n");
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    dot_nodes(&pipeline.nodes, "", "  ", &mut s);
    s.push_str("}\n");
    s
}

fn dot_nodes(nodes: &[Node], prefix: &str, indent: &str, s: &mut String) {
    let key = |id: &str| dot_quote(&format!("{prefix}{id}"));
    for node in nodes {
        let (fill, line) = colours(&node.kind);
        let shape = match node.kind {
            NodeKind::Entry(_) => "invhouse",
            NodeKind::End(_) => "doubleoctagon",
            NodeKind::Node => "box, style=\"rounded,filled\"",
            NodeKind::Command(_) | NodeKind::Http(_) | NodeKind::Service(_) => "box",
            NodeKind::Branch(_) => "diamond",
            NodeKind::Loop(_) => "box3d",
            NodeKind::Batch(_) => "folder",
            NodeKind::Raster(_) => "tab",
        };
        let label = dot_quote(&format!("{}\n{}", node.id, node.type_name()));
        let _ = writeln!(
            s,
            "{indent}{} [label={label}, shape={shape}, fillcolor=\"{fill}\", color=\"{line}\"];",
            key(&node.id)
        );
        let NodeKind::Loop(spec) = &node.kind else {
            continue;
        };
        let inner = format!("{prefix}{}/", node.id);
        let title = dot_quote(&format!("{} (each item of {})", node.id, spec.items));
        let cluster = dot_quote(&format!("cluster_{prefix}{}", node.id));
        let _ = writeln!(s, "{indent}subgraph {cluster} {{");
        let _ = writeln!(
            s,
            "{indent}  label={title}; style=\"rounded,dashed\"; color=\"{line}\";"
        );
        dot_nodes(&spec.nodes, &inner, &format!("{indent}  "), s);
        let _ = writeln!(s, "{indent}}}");
        if let Some(first) = spec.nodes.first() {
            let first = dot_quote(&format!("{inner}{}", first.id));
            let _ = writeln!(
                s,
                "{indent}{} -> {first} [label=\"each item\"];",
                key(&node.id)
            );
        }
    }
    for e in edges(nodes) {
        let from = &nodes[e.from];
        let mut attrs: Vec<String> = e.label.iter().map(|l| format!("label=\"{l}\"")).collect();
        // A loop's successors are reached from its template's terminal nodes (no successor).
        let mut sources = vec![key(&from.id)];
        if let NodeKind::Loop(spec) = &from.kind {
            let ends = spec.nodes.iter().filter(|t| t.successors().is_empty());
            let ends: Vec<String> = ends
                .map(|t| dot_quote(&format!("{prefix}{}/{}", from.id, t.id)))
                .collect();
            if !ends.is_empty() {
                sources = ends;
                attrs.insert(0, "label=\"collect\"".into());
            }
        }
        if e.back {
            attrs.push("style=dashed, constraint=false".into());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        for src in sources {
            let _ = writeln!(s, "{indent}{src} -> {}{attrs};", key(&nodes[e.to].id));
        }
    }
}

/// How the web UI wants its graph (see [`to_svg_with`]).
///
/// Nodes are named by their **key**: a top-level node's id (`fetch`); inside a loop's template,
/// the loop's key, `/`, then the template node's id (`each/clean`; `outer/inner/clean` for a
/// loop nested in a loop's template). Ids are unique within a node list and not across
/// sibling loops (two loops may both have a `clean`), and cannot contain `/`, so the key is
/// unique and unambiguous. It is the graph's node, not a run's instance: all the items of
/// `each` share `each/clean` (whose instances are `clean#0`, `clean#1`, …).
pub struct SvgOptions<'a> {
    /// Layers from left to right (the UI) instead of top to bottom (the CLI).
    pub left_to_right: bool,
    /// Per node key, an annotation drawn with the node. Called once or twice per node.
    pub annotate: &'a dyn Fn(&str) -> Option<Annotation>,
    /// The href each node links to (e.g. `#node-fetch`), when any.
    pub link: &'a dyn Fn(&str) -> Option<String>,
}

/// A node's state in the web UI's graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// A CSS-safe state word: pending, running, finished, failed, skipped, cancelled, waiting…
    pub state: &'static str,
    /// A short text drawn under the node (e.g. `finished · 2 attempts`, `412 of 1,000 items`).
    pub text: String,
}

/// A standalone SVG drawing of the pipeline, laid out in layers from the entry downward (the
/// CLI's `tessera graph --format svg`).
pub fn to_svg(pipeline: &Pipeline) -> String {
    svg::render(pipeline, None)
}

/// The web UI's SVG drawing of the pipeline: as [`to_svg`] (top to bottom, or left to right),
/// with hooks for CSS and JavaScript. The root is `<svg class="pipeline-graph" viewBox=…>`.
/// Every node, loops included, is
///
/// ```text
/// <g class="node" data-node="KEY" data-type="http" data-state="STATE">  (data-state: if annotated)
///   <title>ID (TYPE)</title>
///   <a href="HREF">                                                      (if linked)
///     <rect class="shape" …/> (a <polygon class="shape"> for a branch)
///     <text class="node-id">…</text> <text class="node-type">…</text> (a loop: class="loop-caption")
///     <text class="state-label">TEXT</text>                              (always; may be empty)
///   </a>
/// </g>
/// ```
///
/// A loop's template follows its group as `<g class="loop-body" data-loop="KEY">` (beside it,
/// so a rule on the loop's state does not reach its template's nodes). Edges are
/// `<path class="edge" data-from="KEY" data-to="KEY">` (`class="edge back"` for a back
/// edge), their labels `<text class="edge-label">`. Colours are presentation attributes, which
/// any CSS rule overrides, e.g. `g.node[data-state=failed] .shape { stroke: red }`.
pub fn to_svg_with(pipeline: &Pipeline, options: &SvgOptions<'_>) -> String {
    svg::render(pipeline, Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_pipeline;

    /// Parallel branches, a branch closing a cycle, and a loop with a two-node template.
    pub(super) const DEMO: &str = r#"
type: pipeline
nodes:
  - id: in
    type: entry
    api: {route: demo, body: {urls: ["http://x/a"]}}
    next: [fetch-a, fetch-b]
  - {id: fetch-a, type: http, url: "http://a.example/", next: [merge]}
  - {id: fetch-b, type: command, command: [echo, "{}"], next: [merge]}
  - {id: merge, type: node, next: [check]}
  - id: check
    type: branch
    if: "input.ok == true"
    then: {next: [each]}
    else: {next: [fetch-a]}
  - id: each
    type: loop
    items: in.out.urls
    nodes:
      - {id: get-one, type: http, url: "http://b.example/", next: [clean]}
      - {id: clean, type: node}
    next: [end]
  - {id: end, type: end}
"#;

    pub(super) fn parse(yaml: &str) -> Pipeline {
        let (p, report) = parse_pipeline(yaml).expect("pipeline parses");
        assert!(report.is_ok(), "{report:?}");
        p
    }

    /// Balanced tags, only the five XML entities in text, a single root element.
    pub(super) fn check_xml(s: &str) -> Result<(), String> {
        let (mut stack, mut rest, mut roots) = (Vec::new(), s.trim(), 0);
        let bare_amp = |text: &str| {
            let ents = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
            text.match_indices('&')
                .any(|(k, _)| !ents.iter().any(|e| text[k..].starts_with(e)))
        };
        while let Some(i) = rest.find('<') {
            let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..end];
            if bare_amp(&rest[..end]) || tag.contains('<') || tag.matches('"').count() % 2 == 1 {
                return Err(format!("bad text or tag before {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop() != Some(name) {
                    return Err(format!("unbalanced </{name}>"));
                }
            } else if !tag.ends_with('/') {
                roots += stack.is_empty() as usize;
                stack.push(tag.split_whitespace().next().unwrap_or(""));
            }
            rest = &rest[end + 1..];
        }
        match stack.is_empty() && roots == 1 && rest.trim().is_empty() {
            true => Ok(()),
            false => Err(format!("open: {stack:?}, roots: {roots}")),
        }
    }

    #[test]
    fn dot_of_demo_pipeline() {
        let dot = to_dot(&parse(DEMO));
        let back = "\"check\" -> \"fetch-a\" [label=\"else\", style=dashed, constraint=false];";
        assert!(dot.contains(back) && dot.contains("subgraph \"cluster_each\" {"));
        insta::assert_snapshot!(dot);
    }

    #[test]
    fn svg_is_well_formed_and_names_every_node() {
        let mut p = parse(DEMO);
        p.name = "a & b <\"c\"> 'd'".into();
        let svg = to_svg(&p);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        check_xml(&svg).unwrap();
        assert!(svg.contains("a &amp; b &lt;&quot;c&quot;&gt; &apos;d&apos;"));
        for id in [
            "in", "fetch-a", "fetch-b", "merge", "check", "each", "get-one", "clean", "end",
        ] {
            assert_eq!(
                svg.matches(&format!("{ID_STYLE}>{id}</text>")).count(),
                1,
                "{id}"
            );
        }
        assert_eq!(
            svg.matches("stroke-dasharray=\"6 4\"").count(),
            1,
            "one back edge"
        );
        assert!(check_xml("<svg><g></svg>").is_err() && check_xml("<svg>a & b</svg>").is_err());
    }

    pub(super) fn assert_layered(lay: &Layout) {
        for r in &lay.routes {
            let (a, b) = (lay.boxes[r.from], lay.boxes[r.to]);
            if r.back {
                assert!(lay.layer[r.from] >= lay.layer[r.to]);
            } else {
                assert!(
                    lay.layer[r.from] < lay.layer[r.to] && a.y + a.h < b.y,
                    "{r:?}"
                );
            }
            let inside =
                |&(x, y): &(f64, f64)| x >= 0.0 && x <= lay.width && y >= 0.0 && y <= lay.height;
            assert!(r.points.iter().all(inside), "{r:?}");
        }
        for (i, b) in lay.boxes.iter().enumerate() {
            assert!(b.x >= 0.0 && b.x + b.w <= lay.width && b.y + b.h <= lay.height);
            for c in &lay.boxes[i + 1..] {
                let apart =
                    b.x + b.w <= c.x || c.x + c.w <= b.x || b.y + b.h <= c.y || c.y + c.h <= b.y;
                assert!(apart, "{b:?} overlaps {c:?}");
            }
        }
        lay.inner
            .iter()
            .flatten()
            .for_each(|(_, _, sub)| assert_layered(sub));
    }

    #[test]
    fn layout_puts_forward_edges_downward() {
        let p = parse(DEMO);
        let lay = layout(&p.nodes);
        assert_layered(&lay);
        let layer = |id: &str| lay.layer[p.index_of(id).unwrap()];
        let ids = ["in", "fetch-a", "fetch-b", "merge", "check", "each", "end"];
        assert_eq!(ids.map(layer), [0, 1, 1, 2, 3, 4, 5]);
        let back: Vec<_> = lay
            .routes
            .iter()
            .filter(|r| r.back)
            .map(|r| (r.from, r.to))
            .collect();
        assert_eq!(
            back,
            [(p.index_of("check").unwrap(), p.index_of("fetch-a").unwrap())]
        );
        let (_, _, sub) = lay.inner[p.index_of("each").unwrap()].as_ref().unwrap();
        assert_eq!(sub.layer, [0, 1]);
    }

    #[test]
    fn long_edges_get_dummies_and_crossings_are_removed() {
        let p = parse(
            "nodes:\n  - {id: in, type: entry, next: [a, b]}\n  - {id: b, type: node, next: [y, x]}
  - {id: a, type: node, next: [x, end]}\n  - {id: x, type: node, next: [end]}
  - {id: y, type: node, next: [end]}\n  - {id: end, type: end}\n",
        );
        let lay = layout(&p.nodes);
        assert_layered(&lay);
        let skip = lay
            .routes
            .iter()
            .find(|r| (r.from, r.to) == (2, 5))
            .unwrap();
        assert_eq!(
            skip.points.len(),
            4,
            "a -> end crosses one layer: one dummy, two points"
        );
        let cx = |id: &str| lay.boxes[p.index_of(id).unwrap()].cx();
        // a's and b's children are not interleaved: (x under a) and (y under b) sides agree.
        assert_eq!(cx("a") < cx("b"), cx("x") < cx("y"));
        check_xml(&to_svg(&p)).unwrap();
    }

    #[test]
    fn odd_graphs_render() {
        // Self-loop, unknown id, an unreachable cycle, and an empty pipeline.
        let p = parse(
            "nodes:\n  - {id: in, type: entry, next: [spin, nowhere]}
  - {id: spin, type: branch, if: 'true', then: {next: [spin]}, else: {next: [end]}}
  - {id: p, type: node, next: [q]}\n  - {id: q, type: node, next: [p]}\n  - {id: end, type: end}",
        );
        let lay = layout(&p.nodes);
        assert_eq!(lay.routes.iter().filter(|r| r.back).count(), 1);
        check_xml(&to_svg(&p)).unwrap();
        assert!(to_dot(&p).contains("\"spin\" -> \"spin\" [label=\"then\", style=dashed"));
        let empty = Pipeline {
            nodes: Vec::new(),
            ..p
        };
        check_xml(&to_svg(&empty)).unwrap();
        assert!(layout(&empty.nodes).height > 0.0);
    }

    #[test]
    fn big_fan_out_renders() {
        let ids: Vec<String> = (0..1000).map(|i| format!("w-{i}")).collect();
        let mut yaml = format!(
            "nodes:\n  - {{id: in, type: entry, next: [{}]}}\n",
            ids.join(", ")
        );
        for id in &ids {
            yaml += &format!("  - {{id: {id}, type: node, next: [end]}}\n");
        }
        yaml += "  - {id: end, type: end}\n";
        let p = parse(&yaml);
        let svg = to_svg(&p);
        assert_eq!(svg.matches("<rect").count(), 1 + 1002);
        assert_eq!(to_dot(&p).matches(" -> ").count(), 2000);
        assert_eq!(
            layout(&p.nodes).layer.iter().filter(|&&l| l == 1).count(),
            1000
        );
    }

    /// `in` → `w-0` … `w-{n-3}` in parallel → `end`: `n` nodes.
    pub(super) fn fan_out_yaml(n: usize) -> String {
        let ids: Vec<String> = (0..n - 2).map(|i| format!("w-{i}")).collect();
        let mut y = format!(
            "nodes:\n  - {{id: in, type: entry, next: [{}]}}\n",
            ids.join(", ")
        );
        for id in &ids {
            y += &format!("  - {{id: {id}, type: node, next: [end]}}\n");
        }
        y + "  - {id: end, type: end}\n"
    }

    /// `in` → `c-1` → … → `end`: `n` nodes in a row.
    pub(super) fn chain_yaml(n: usize) -> String {
        let mut y = String::from("nodes:\n  - {id: in, type: entry, next: [c-1]}\n");
        for i in 1..n - 1 {
            let next = match i == n - 2 {
                true => "end".to_string(),
                false => format!("c-{}", i + 1),
            };
            y += &format!("  - {{id: c-{i}, type: node, next: [{next}]}}\n");
        }
        y + "  - {id: end, type: end}\n"
    }

    /// A chain of `loops` loops, each a template of `size` nodes: first → the rest but one in
    /// parallel → last.
    pub(super) fn loops_yaml(loops: usize, size: usize) -> String {
        let mut y = String::from(
            "nodes:\n  - {id: in, type: entry, api: {route: r, body: {xs: [1]}}, next: [l-0]}\n",
        );
        for l in 0..loops {
            let next = match l + 1 == loops {
                true => "end".to_string(),
                false => format!("l-{}", l + 1),
            };
            y += &format!(
                "  - id: l-{l}\n    type: loop\n    items: in.out.xs\n    next: [{next}]\n    nodes:\n"
            );
            let mid: Vec<String> = (0..size - 2).map(|k| format!("l{l}-m{k}")).collect();
            y += &format!(
                "      - {{id: l{l}-a, type: node, next: [{}]}}\n",
                mid.join(", ")
            );
            for m in &mid {
                y += &format!("      - {{id: {m}, type: node, next: [l{l}-z]}}\n");
            }
            y += &format!("      - {{id: l{l}-z, type: node}}\n");
        }
        y + "  - {id: end, type: end}\n"
    }

    /// A deterministic pseudo-random number below `m` (a linear congruential generator).
    fn below(seed: &mut u64, m: u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) % m.max(1)
    }

    /// 20 layers of 100 nodes, each linked to three pseudo-random nodes of the next 1–3 layers
    /// (long edges, many crossings): 2,002 nodes.
    pub(super) fn tangle_yaml() -> String {
        let first: Vec<String> = (0..100).map(|k| format!("t0-{k}")).collect();
        let mut y = format!(
            "nodes:\n  - {{id: in, type: entry, next: [{}]}}\n",
            first.join(", ")
        );
        let mut seed = 7;
        for l in 0..20u64 {
            for k in 0..100 {
                let next: Vec<String> = match l {
                    19 => vec!["end".into()],
                    _ => (0..3)
                        .map(|_| {
                            let to = l + 1 + below(&mut seed, 3).min(18 - l);
                            format!("t{to}-{}", below(&mut seed, 100))
                        })
                        .collect(),
                };
                y += &format!(
                    "  - {{id: t{l}-{k}, type: node, next: [{}]}}\n",
                    next.join(", ")
                );
            }
        }
        y + "  - {id: end, type: end}\n"
    }

    /// Random nodes `{prefix}0`… (YAML list items at `indent`): forward edges, branches closing
    /// cycles, and loops (nested up to two deep).
    fn random_nodes(seed: &mut u64, prefix: &str, n: usize, depth: usize, indent: &str) -> String {
        let mut y = String::new();
        for i in 0..n {
            let id = format!("{prefix}{i}");
            // Always to the next one, so that every node is reachable and cycles are broken.
            let mut next: Vec<String> = Vec::new();
            if i + 1 < n {
                next.push(format!("{prefix}{}", i + 1));
                for _ in 0..below(seed, 3) {
                    let to = i + 1 + below(seed, (n - i - 1) as u64) as usize;
                    next.push(format!("{prefix}{to}"));
                }
            }
            let next = next.join(", ");
            match below(seed, 6) {
                0 if i > 0 => {
                    let back = below(seed, i as u64 + 1);
                    let then = if next.is_empty() { "end" } else { &next };
                    y += &format!(
                        "{indent}- {{id: {id}, type: branch, if: 'true', then: {{next: [{then}]}}, \
                         else: {{next: [{prefix}{back}]}}}}\n"
                    );
                }
                1 if depth < 2 && i > 0 => {
                    y += &format!(
                        "{indent}- id: {id}\n{indent}  type: loop\n{indent}  items: in.out.xs\n\
                         {indent}  next: [{next}]\n{indent}  nodes:\n"
                    );
                    let size = 1 + below(seed, 7) as usize;
                    let inner = format!("{indent}    ");
                    y += &random_nodes(seed, &format!("{id}x"), size, depth + 1, &inner);
                }
                _ => y += &format!("{indent}- {{id: {id}, type: node, next: [{next}]}}\n"),
            }
        }
        y
    }

    /// Random pipelines (their loops' items are not checked: they only need to parse).
    pub(super) fn random_pipelines(count: usize) -> Vec<Pipeline> {
        let mut seed = 1;
        (0..count)
            .map(|k| {
                let body = random_nodes(&mut seed, "n", 3 + (k * 7) % 40, 0, "  ");
                let yaml = format!(
                    "nodes:\n  - {{id: in, type: entry, api: {{route: r, body: {{xs: [1]}}}}, \
                     next: [n0]}}\n{body}  - {{id: end, type: end}}\n"
                );
                parse_pipeline(&yaml).expect("parses").0
            })
            .collect()
    }
}
