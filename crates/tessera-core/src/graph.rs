//! Rendering a pipeline as a graph: Graphviz DOT text and a self-contained SVG drawing.
//!
//! Both show one shape per node (id and type), `next` edges, a branch's `then`/`else` arms,
//! back edges (cycles closed by a branch) dashed, and each loop's template nested in a box.
//! The SVG is laid out here in layers (Sugiyama-style), without external tools or fonts.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::model::{LoopSpec, Node, NodeKind, Pipeline};
use crate::topology::Topology;

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
                    let back = topo.back_edges.contains(&(from, to));
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

const MARGIN: f64 = 20.0;
const NODE_GAP: f64 = 26.0;
const LAYER_GAP: f64 = 54.0;
const DUMMY_W: f64 = 12.0;
const LOOP_HEAD: f64 = 40.0;
const TITLE_H: f64 = 28.0;

/// Estimated width of a text in the SVG's sans-serif font.
fn text_w(s: &str, size: f64, bold: bool) -> f64 {
    s.chars().count() as f64 * size * if bold { 0.62 } else { 0.56 }
}

fn loop_caption(spec: &LoopSpec) -> String {
    format!("loop: each item of {}", spec.items)
}

/// A box: top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
    fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// A drawn edge: forward edges run from the source's bottom through their dummy vertices to the
/// target's top (smoothed when drawn); back edges leave the source's right side, run up on the
/// right of the rows they span and enter the target from above (rounded corners).
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub from: usize,
    pub to: usize,
    pub label: Option<String>,
    pub back: bool,
    pub points: Vec<(f64, f64)>,
}

/// The layered layout of a node list, in its own coordinates from (0, 0).
#[derive(Debug)]
pub(crate) struct Layout {
    pub width: f64,
    pub height: f64,
    /// Per node, in declaration order: its layer (longest forward path from a source).
    #[cfg_attr(not(test), allow(dead_code))]
    pub layer: Vec<usize>,
    pub boxes: Vec<Rect>,
    /// A loop node's template layout and its offset inside the loop's box.
    pub inner: Vec<Option<(f64, f64, Layout)>>,
    pub routes: Vec<Route>,
}

/// Lays out a node list: longest-path layers over forward edges, a dummy vertex per layer
/// crossed by a long edge, barycenter ordering, then x positions pulled toward neighbours.
pub(crate) fn layout(nodes: &[Node]) -> Layout {
    let n = nodes.len();
    let (mut size, mut inner) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for node in nodes {
        let tw = text_w(&node.id, 13.0, true).max(text_w(node.type_name(), 11.0, false));
        inner.push(None);
        size.push(match &node.kind {
            NodeKind::Loop(spec) => {
                let sub = layout(&spec.nodes);
                let w = sub
                    .width
                    .max(text_w(&loop_caption(spec), 11.0, false).max(tw) + 24.0);
                let h = LOOP_HEAD + sub.height;
                *inner.last_mut().expect("pushed") = Some(((w - sub.width) / 2.0, LOOP_HEAD, sub));
                (w, h)
            }
            NodeKind::Branch(_) => (tw * 1.5 + 34.0, 58.0),
            _ => ((tw + 28.0).max(84.0), 44.0),
        });
    }
    // Edges between the same two nodes become one route, the arms' labels joined.
    let mut routes: Vec<Route> = Vec::new();
    for e in edges(nodes) {
        let (from, to, back, label) = (e.from, e.to, e.back, e.label.map(str::to_string));
        let same = routes
            .iter_mut()
            .rev()
            .take_while(|r| r.from == from)
            .find(|r| r.to == to);
        match (same, label) {
            (Some(r), Some(l)) => {
                r.label = Some(format!("{}, {l}", r.label.take().unwrap_or_default()))
            }
            (Some(_), None) => {}
            (None, label) => routes.push(Route {
                from,
                to,
                label,
                back,
                points: Vec::new(),
            }),
        }
    }

    // Layers: longest path over forward edges, in Kahn's topological order.
    let (mut indeg, mut fsucc) = (vec![0usize; n], vec![Vec::new(); n]);
    for r in routes.iter().filter(|r| !r.back) {
        fsucc[r.from].push(r.to);
        indeg[r.to] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut queue: Vec<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut head = 0;
    while let Some(&v) = queue.get(head) {
        head += 1;
        for &w in &fsucc[v] {
            layer[w] = layer[w].max(layer[v] + 1);
            indeg[w] -= 1;
            if indeg[w] == 0 {
                queue.push(w);
            }
        }
    }

    // The proper graph: vertices 0..n are the nodes, then dummies; edges span one layer.
    let mut vlayer = layer.clone();
    let mut vw: Vec<f64> = size.iter().map(|s| s.0).collect();
    let (mut pred, mut succ) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let mut chains: Vec<Vec<usize>> = vec![Vec::new(); routes.len()];
    for (k, r) in routes.iter().enumerate().filter(|(_, r)| !r.back) {
        let mut prev = r.from;
        for l in layer[r.from] + 1..=layer[r.to] {
            let v = if l == layer[r.to] { r.to } else { vlayer.len() };
            if v != r.to {
                vlayer.push(l);
                vw.push(DUMMY_W);
                pred.push(Vec::new());
                succ.push(Vec::new());
                chains[k].push(v);
            }
            succ[prev].push(v);
            pred[v].push(prev);
            prev = v;
        }
    }
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layer.iter().max().map_or(0, |m| m + 1)];
    for (v, &l) in vlayer.iter().enumerate() {
        rows[l].push(v);
    }
    order_rows(&mut rows, &pred, &succ);
    let mut xs = place_x(&rows, &vw, &pred, &succ);
    let min_x = (0..vw.len())
        .map(|v| xs[v] - vw[v] / 2.0)
        .fold(f64::INFINITY, f64::min);
    xs.iter_mut().for_each(|x| *x += MARGIN - min_x);

    // Rows stacked top to bottom, each as tall as its tallest node; nodes centred in it.
    let (mut tops, mut heights, mut y) = (Vec::new(), Vec::new(), MARGIN);
    for row in &rows {
        let h = row
            .iter()
            .filter(|&&v| v < n)
            .map(|&v| size[v].1)
            .fold(0.0, f64::max);
        tops.push(y);
        heights.push(h);
        y += h + LAYER_GAP;
    }
    let boxes: Vec<Rect> = (0..n)
        .map(|v| {
            let (w, h) = size[v];
            Rect {
                x: xs[v] - w / 2.0,
                y: tops[layer[v]] + (heights[layer[v]] - h) / 2.0,
                w,
                h,
            }
        })
        .collect();
    let mut width = (0..vw.len())
        .map(|v| xs[v] + vw[v] / 2.0)
        .fold(0.0, f64::max);
    let mut side = 0;
    for (k, r) in routes.iter_mut().enumerate() {
        let (a, b) = (boxes[r.from], boxes[r.to]);
        if !r.back {
            r.points.push((a.cx(), a.y + a.h));
            for &d in &chains[k] {
                let l = vlayer[d];
                r.points
                    .extend([(xs[d], tops[l]), (xs[d], tops[l] + heights[l])]);
            }
            r.points.push((b.cx(), b.y));
            continue;
        }
        let (lo, hi) = (
            layer[r.to].min(layer[r.from]),
            layer[r.to].max(layer[r.from]),
        );
        let right = rows[lo..=hi].iter().flatten().map(|&v| xs[v] + vw[v] / 2.0);
        let x = right.fold(0.0, f64::max) + 20.0 + 12.0 * side as f64;
        let gy = tops[layer[r.to]] - 8.0 - 3.0 * (side % 4) as f64;
        side += 1;
        let (ex, ey) = match nodes[r.to].kind {
            NodeKind::Branch(_) => (b.cx() + b.w / 4.0, b.y + b.h / 4.0),
            _ => (b.x + b.w * 0.8, b.y),
        };
        r.points = vec![
            (a.x + a.w, a.cy()),
            (x, a.cy()),
            (x, gy),
            (ex, gy),
            (ex, ey),
        ];
        let label_w = r
            .label
            .as_deref()
            .map_or(0.0, |l| text_w(l, 10.0, false) + 4.0);
        width = width.max(x + label_w);
    }
    let height = (y - LAYER_GAP).max(MARGIN) + MARGIN;
    Layout {
        width: width + MARGIN,
        height,
        layer,
        boxes,
        inner,
        routes,
    }
}

/// The rows visited by sweep `round`: even rounds go down (neighbours in the row above), odd
/// rounds go up (neighbours in the row below).
fn sweep<'a>(
    rows: usize,
    round: usize,
    pred: &'a [Vec<usize>],
    succ: &'a [Vec<usize>],
) -> (Vec<usize>, &'a [Vec<usize>]) {
    if round.is_multiple_of(2) {
        ((1..rows).collect(), pred)
    } else {
        ((0..rows.saturating_sub(1)).rev().collect(), succ)
    }
}

/// Mean of `value` over `adj`, or `own` for a vertex without neighbours there.
fn mean(adj: &[usize], value: &[f64], own: f64) -> f64 {
    if adj.is_empty() {
        own
    } else {
        adj.iter().map(|&u| value[u]).sum::<f64>() / adj.len() as f64
    }
}

/// Orders each row by its vertices' barycenters (relative positions of their neighbours),
/// sweeping down and up, and keeps the ordering with the fewest crossings.
fn order_rows(rows: &mut [Vec<usize>], pred: &[Vec<usize>], succ: &[Vec<usize>]) {
    let mut pos = vec![0.0; pred.len()];
    let place = |row: &[usize], pos: &mut Vec<f64>| {
        for (i, &v) in row.iter().enumerate() {
            pos[v] = (i as f64 + 0.5) / row.len() as f64;
        }
    };
    rows.iter().for_each(|row| place(row, &mut pos));
    let (mut best, mut fewest) = (rows.to_vec(), crossings(rows, succ));
    for round in 0..8 {
        let (ls, adj) = sweep(rows.len(), round, pred, succ);
        for l in ls {
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|&v| (mean(&adj[v], &pos, pos[v]), v))
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows[l] = keyed.into_iter().map(|k| k.1).collect();
            place(&rows[l], &mut pos);
        }
        let c = crossings(rows, succ);
        if c < fewest {
            (best, fewest) = (rows.to_vec(), c);
        }
    }
    rows.clone_from_slice(&best);
}

/// Edge crossings between consecutive rows (pairs of edges whose ends are in opposite order).
fn crossings(rows: &[Vec<usize>], succ: &[Vec<usize>]) -> usize {
    let mut index = vec![0usize; succ.len()];
    for row in rows {
        row.iter().enumerate().for_each(|(i, &v)| index[v] = i);
    }
    let mut total = 0;
    for row in rows {
        let index = &index;
        let ends: Vec<(usize, usize)> = row
            .iter()
            .flat_map(|&v| succ[v].iter().map(move |&w| (index[v], index[w])))
            .collect();
        for (i, a) in ends.iter().enumerate() {
            total += ends[i + 1..]
                .iter()
                .filter(|b| (a.0 < b.0 && a.1 > b.1) || (a.0 > b.0 && a.1 < b.1))
                .count();
        }
    }
    total
}

/// Centre x of every vertex: rows packed, then sweeps pull each vertex toward the mean of its
/// neighbours while keeping its row's order and gaps (least squares by pool-adjacent-violators).
fn place_x(rows: &[Vec<usize>], w: &[f64], pred: &[Vec<usize>], succ: &[Vec<usize>]) -> Vec<f64> {
    let mut x = vec![0.0; w.len()];
    for row in rows {
        let mut cur = -(row.iter().map(|&v| w[v] + NODE_GAP).sum::<f64>() - NODE_GAP) / 2.0;
        for &v in row {
            x[v] = cur + w[v] / 2.0;
            cur += w[v] + NODE_GAP;
        }
    }
    for round in 0..8 {
        let (ls, adj) = sweep(rows.len(), round, pred, succ);
        for row in ls.into_iter().map(|l| &rows[l]) {
            // Minimum offsets from the row's first vertex; then blocks of (sum, count) of the
            // wanted first-vertex positions, merged while they are out of order.
            let mut offset = vec![0.0; row.len()];
            for i in 1..row.len() {
                offset[i] = offset[i - 1] + (w[row[i - 1]] + w[row[i]]) / 2.0 + NODE_GAP;
            }
            let mut blocks: Vec<(f64, usize)> = Vec::new();
            for (i, &v) in row.iter().enumerate() {
                blocks.push((mean(&adj[v], &x, x[v]) - offset[i], 1));
                while let [.., (s1, c1), (s2, c2)] = blocks[..] {
                    if s1 / c1 as f64 <= s2 / c2 as f64 {
                        break;
                    }
                    blocks.pop();
                    *blocks.last_mut().expect("two blocks") = (s1 + s2, c1 + c2);
                }
            }
            let mut i = 0;
            for (s, c) in blocks {
                for _ in 0..c {
                    x[row[i]] = s / c as f64 + offset[i];
                    i += 1;
                }
            }
        }
    }
    x
}

/// XML text and attribute escaping.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

const ID_STYLE: &str = "font-size=\"13\" font-weight=\"bold\" fill=\"#111827\"";

/// A standalone SVG drawing of the pipeline, laid out in layers from the entry downward.
pub fn to_svg(pipeline: &Pipeline) -> String {
    let lay = layout(&pipeline.nodes);
    let title = xml(&format!("pipeline {}", pipeline.name));
    let w = lay
        .width
        .max(text_w(&pipeline.name, 14.0, true) + 100.0)
        .ceil();
    let h = (lay.height + TITLE_H).ceil();
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\">\n\
         <title>{title}</title>\n<defs>\n"
    );
    for (id, colour) in [("arrow", "#555555"), ("arrow-back", "#d97706")] {
        let _ = writeln!(
            s,
            "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
             markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{colour}\"/></marker>"
        );
    }
    let _ = writeln!(
        s,
        "</defs>\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
         <text x=\"{MARGIN}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{title}</text>\n\
         <g transform=\"translate(0,{TITLE_H})\">"
    );
    draw(&lay, &pipeline.nodes, &mut s);
    s.push_str("</g>\n</svg>\n");
    s
}

/// A point on segment `a`→`b`, `r` from `a` (at most half way).
fn toward(a: (f64, f64), b: (f64, f64), r: f64) -> (f64, f64) {
    let t = (r / (b.0 - a.0).hypot(b.1 - a.1).max(1e-9)).min(0.5);
    (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
}

fn pt((x, y): (f64, f64)) -> String {
    format!("{x:.1},{y:.1}")
}

/// Draws a layout's edges, then its nodes (a loop's template nested in its box).
fn draw(lay: &Layout, nodes: &[Node], s: &mut String) {
    for r in &lay.routes {
        let p = &r.points;
        let mut d = format!("M{}", pt(p[0]));
        if r.back {
            for i in 1..p.len() - 1 {
                let (a, b) = (toward(p[i], p[i - 1], 8.0), toward(p[i], p[i + 1], 8.0));
                let _ = write!(d, " L{} Q{} {}", pt(a), pt(p[i]), pt(b));
            }
            let _ = write!(d, " L{}", pt(p[p.len() - 1]));
        } else {
            for pair in p.windows(2) {
                let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                let my = (ay + by) / 2.0;
                let _ = write!(d, " C{ax:.1},{my:.1} {bx:.1},{my:.1} {bx:.1},{by:.1}");
            }
        }
        let (colour, dash, marker) = match r.back {
            true => ("#d97706", " stroke-dasharray=\"6 4\"", "arrow-back"),
            false => ("#555555", "", "arrow"),
        };
        let _ = writeln!(
            s,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.4\"{dash} \
             marker-end=\"url(#{marker})\"/>"
        );
        // Beside the back edge's vertical run, or 30% along the first curve, on its outer side.
        if let Some(label) = &r.label {
            let (dx, dy) = (p[1].0 - p[0].0, p[1].1 - p[0].1);
            let (x, y, anchor) = match r.back {
                true => (p[1].0 + 4.0, (p[1].1 + p[2].1) / 2.0, "start"),
                false if dx < -1.0 => (p[0].0 + 0.216 * dx - 5.0, p[0].1 + 0.657 * dy, "end"),
                false => (p[0].0 + 0.216 * dx + 5.0, p[0].1 + 0.657 * dy, "start"),
            };
            let _ = writeln!(
                s,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\" \
                 text-anchor=\"{anchor}\">{}</text>",
                y + 3.0,
                xml(label)
            );
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let Rect { x, y, w, h } = lay.boxes[i];
        let (cx, cy) = (lay.boxes[i].cx(), lay.boxes[i].cy());
        let (fill, line) = colours(&node.kind);
        let (id, ty) = (xml(&node.id), node.type_name());
        let _ = writeln!(s, "<g><title>{id} ({ty})</title>");
        let rect = |rx: f64| {
            format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{rx:.1}\""
            )
        };
        if let (NodeKind::Loop(spec), Some((ox, oy, sub))) = (&node.kind, &lay.inner[i]) {
            let (box_, caption) = (rect(12.0), xml(&loop_caption(spec)));
            let (tx, inner_at) = (x + 12.0, pt((x + ox, y + oy)));
            let _ = writeln!(
                s,
                "{box_} fill=\"{fill}\" stroke=\"{line}\" stroke-width=\"1.6\" stroke-dasharray=\"8 4\"/>\n\
                 <text x=\"{tx:.1}\" y=\"{:.1}\" {ID_STYLE}>{id}</text>\n\
                 <text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{line}\">{caption}</text>\n\
                 <g transform=\"translate({inner_at})\">",
                y + 18.0,
                y + 33.0,
            );
            draw(sub, &spec.nodes, s);
            s.push_str("</g>\n</g>\n");
            continue;
        }
        let (shape, stroke) = match node.kind {
            NodeKind::Branch(_) => {
                let corners = [(cx, y), (x + w, cy), (cx, y + h), (x, cy)]
                    .map(pt)
                    .join(" ");
                (format!("<polygon points=\"{corners}\""), 1.4)
            }
            NodeKind::Entry(_) => (rect(h / 2.0), 1.4),
            NodeKind::End(_) => (rect(h / 2.0), 2.4),
            _ => (rect(4.0), 1.4),
        };
        let _ = writeln!(
            s,
            "{shape} fill=\"{fill}\" stroke=\"{line}\" stroke-width=\"{stroke}\"/>\n\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {ID_STYLE}>{id}</text>\n\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" \
             fill=\"{line}\">{ty}</text>\n</g>",
            cy - 2.0,
            cy + 12.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_pipeline;

    /// Parallel branches, a branch closing a cycle, and a loop with a two-node template.
    const DEMO: &str = r#"
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

    fn parse(yaml: &str) -> Pipeline {
        let (p, report) = parse_pipeline(yaml).expect("pipeline parses");
        assert!(report.is_ok(), "{report:?}");
        p
    }

    /// Balanced tags, only the five XML entities in text, a single root element.
    fn check_xml(s: &str) -> Result<(), String> {
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

    fn assert_layered(lay: &Layout) {
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
}
