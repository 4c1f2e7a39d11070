//! The layered (Sugiyama-style) layout of a node list for the SVG drawing: layers along the
//! reading direction (down for the CLI, right for the web UI), crossing reduction, positions
//! across the layers, and edge routes. Every step is near-linear in vertices and edges, so a
//! pipeline of thousands of nodes lays out in milliseconds.

use std::collections::HashMap;

use super::edges;
use crate::model::{LoopSpec, Node, NodeKind};

pub(super) const MARGIN: f64 = 20.0;
const NODE_GAP: f64 = 26.0;
const LAYER_GAP: f64 = 54.0;
/// Between columns, left to right: horizontal curves need a longer run than vertical ones.
const LAYER_GAP_LR: f64 = 64.0;
const DUMMY_W: f64 = 12.0;
const LOOP_HEAD: f64 = 40.0;
/// Barycenter sweeps of the crossing reduction and of the placement across layers.
const ROUNDS: usize = 8;

/// Estimated width of a text in the SVG's sans-serif font.
pub(super) fn text_w(s: &str, size: f64, bold: bool) -> f64 {
    s.chars().count() as f64 * size * if bold { 0.62 } else { 0.56 }
}

pub(super) fn loop_caption(spec: &LoopSpec) -> String {
    format!("loop: each item of {}", spec.items)
}

/// How a layout is shaped. [`Look::CLI`] is the CLI's drawing: top to bottom, nothing under
/// the nodes.
#[derive(Clone, Copy)]
pub(crate) struct Look<'a> {
    /// Layers run left to right (x), rather than top to bottom (y).
    pub lr: bool,
    /// Room kept under every node's shape for its state label (0: none).
    pub band: f64,
    /// The width a node's state label needs, by node key (see `super::SvgOptions`).
    pub label_w: Option<&'a dyn Fn(&str) -> f64>,
}

impl Look<'_> {
    pub(crate) const CLI: Look<'static> = Look {
        lr: false,
        band: 0.0,
        label_w: None,
    };
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
    pub(crate) fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
    pub(crate) fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// A drawn edge. Forward edges run from the source's far side (bottom, or right) through their
/// dummy vertices to the target's near side (top, or left), smoothed when drawn. Back edges
/// (rounded corners) run in a lane beyond the layers they span: top to bottom, they leave the
/// source's right side, run up right of those rows and enter the target from above; left to
/// right, they leave the source's lower right, run left below those columns and enter the
/// target's lower left.
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
    /// Per node: its shape (a state label, if any, goes in the band below it).
    pub boxes: Vec<Rect>,
    /// A loop node's template layout and its offset inside the loop's box.
    pub inner: Vec<Option<(f64, f64, Layout)>>,
    pub routes: Vec<Route>,
}

/// The CLI's layout: top to bottom.
#[cfg(test)]
pub(crate) fn layout(nodes: &[Node]) -> Layout {
    layout_as(nodes, &Look::CLI, "")
}

/// Lays out a node list: longest-path layers over forward edges, a dummy vertex per layer
/// crossed by a long edge, barycenter ordering, then positions across the layers pulled toward
/// neighbours. `prefix` makes the node keys of a loop's template (`loop/`).
///
/// It is done in layer coordinates, transposed at the end when the layers run left to right:
/// "breadth" is a vertex's extent within its layer (width down, height right), "depth" its
/// extent along the layers.
pub(crate) fn layout_as(nodes: &[Node], look: &Look<'_>, prefix: &str) -> Layout {
    let n = nodes.len();
    // Per node: its shape's size and its footprint (shape, band and label).
    let (mut shape, mut foot, mut inner) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for node in nodes {
        let tw = text_w(&node.id, 13.0, true).max(text_w(node.type_name(), 11.0, false));
        let (w, h) = match &node.kind {
            NodeKind::Loop(spec) => {
                let sub = layout_as(&spec.nodes, look, &format!("{prefix}{}/", node.id));
                let w = sub
                    .width
                    .max(text_w(&loop_caption(spec), 11.0, false).max(tw) + 24.0);
                let h = LOOP_HEAD + sub.height;
                inner.push(Some(((w - sub.width) / 2.0, LOOP_HEAD, sub)));
                (w, h)
            }
            NodeKind::Branch(_) => {
                inner.push(None);
                (tw * 1.5 + 34.0, 58.0)
            }
            _ => {
                inner.push(None);
                ((tw + 28.0).max(84.0), 44.0)
            }
        };
        let label_w = look
            .label_w
            .map_or(0.0, |f| f(&format!("{prefix}{}", node.id)));
        shape.push((w, h));
        foot.push((w.max(label_w), h + look.band));
    }
    // Edges between the same two nodes become one route, the arms' labels joined.
    let mut routes: Vec<Route> = Vec::new();
    let mut route_of: HashMap<(usize, usize), usize> = HashMap::new();
    for e in edges(nodes) {
        let (from, to, back, label) = (e.from, e.to, e.back, e.label.map(str::to_string));
        match (route_of.get(&(from, to)), label) {
            (Some(&k), Some(l)) => {
                let r = &mut routes[k];
                r.label = Some(format!("{}, {l}", r.label.take().unwrap_or_default()))
            }
            (Some(_), None) => {}
            (None, label) => {
                route_of.insert((from, to), routes.len());
                routes.push(Route {
                    from,
                    to,
                    label,
                    back,
                    points: Vec::new(),
                })
            }
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
    let (breadth, depth): (Vec<f64>, Vec<f64>) = match look.lr {
        false => foot.iter().copied().unzip(),
        true => foot.iter().map(|&(w, h)| (h, w)).unzip(),
    };
    let mut vlayer = layer.clone();
    let mut vw = breadth;
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

    // Layers stacked from the start, each as deep as its deepest node; nodes centred in it.
    let gap = if look.lr { LAYER_GAP_LR } else { LAYER_GAP };
    let (mut tops, mut heights, mut y) = (Vec::new(), Vec::new(), MARGIN);
    for row in &rows {
        let h = row
            .iter()
            .filter(|&&v| v < n)
            .map(|&v| depth[v])
            .fold(0.0, f64::max);
        tops.push(y);
        heights.push(h);
        y += h + gap;
    }
    let boxes: Vec<Rect> = (0..n)
        .map(|v| {
            let ((w, h), (_, fh), l) = (shape[v], foot[v], layer[v]);
            match look.lr {
                false => Rect {
                    x: xs[v] - w / 2.0,
                    y: tops[l] + (heights[l] - fh) / 2.0,
                    w,
                    h,
                },
                true => Rect {
                    x: tops[l] + (heights[l] - w) / 2.0,
                    y: xs[v] - fh / 2.0,
                    w,
                    h,
                },
            }
        })
        .collect();
    // The far edge (right, or bottom) of each layer: back edges run beyond those they span.
    let row_end: Vec<f64> = rows
        .iter()
        .map(|row| row.iter().map(|&v| xs[v] + vw[v] / 2.0).fold(0.0, f64::max))
        .collect();
    let mut across = row_end.iter().copied().fold(0.0, f64::max);
    let mut side = 0;
    for (k, r) in routes.iter_mut().enumerate() {
        let (a, b) = (boxes[r.from], boxes[r.to]);
        if !r.back {
            if look.lr {
                // Shapes sit at the top of their footprints: dummies follow their centre line.
                r.points.push((a.x + a.w, a.cy()));
                for &d in &chains[k] {
                    let (l, y) = (vlayer[d], xs[d] - look.band / 2.0);
                    r.points.extend([(tops[l], y), (tops[l] + heights[l], y)]);
                }
                r.points.push((b.x, b.cy()));
            } else {
                // Below the state label, if any.
                r.points.push((a.cx(), a.y + a.h + look.band));
                for &d in &chains[k] {
                    let l = vlayer[d];
                    r.points
                        .extend([(xs[d], tops[l]), (xs[d], tops[l] + heights[l])]);
                }
                r.points.push((b.cx(), b.y));
            }
            continue;
        }
        let (lo, hi) = (
            layer[r.to].min(layer[r.from]),
            layer[r.to].max(layer[r.from]),
        );
        let lane = row_end[lo..=hi].iter().copied().fold(0.0, f64::max) + 20.0 + 12.0 * side as f64;
        let stagger = 3.0 * (side % 4) as f64;
        let before = tops[layer[r.to]] - 8.0 - stagger;
        side += 1;
        let branch = |v: usize| matches!(nodes[v].kind, NodeKind::Branch(_));
        if look.lr {
            // Lower right out, lower left in: clear of the forward edges at the centre line.
            let (sx, sy) = match branch(r.from) {
                true => (a.x + a.w * 0.75, a.cy() + a.h / 4.0),
                false => (a.x + a.w, a.y + a.h * 0.75),
            };
            let (ex, ey) = match branch(r.to) {
                true => (b.x + b.w / 4.0, b.cy() + b.h / 4.0),
                false => (b.x, b.y + b.h * 0.75),
            };
            let l = layer[r.from];
            let after = tops[l] + heights[l] + 8.0 + stagger;
            r.points = vec![
                (sx, sy),
                (after, sy),
                (after, lane),
                (before, lane),
                (before, ey),
                (ex, ey),
            ];
            // The label is centred on the lane.
            across = across.max(lane + if r.label.is_some() { 6.0 } else { 0.0 });
            continue;
        }
        let (ex, ey) = match branch(r.to) {
            true => (b.cx() + b.w / 4.0, b.y + b.h / 4.0),
            false => (b.x + b.w * 0.8, b.y),
        };
        r.points = vec![
            (a.x + a.w, a.cy()),
            (lane, a.cy()),
            (lane, before),
            (ex, before),
            (ex, ey),
        ];
        let label_w = r
            .label
            .as_deref()
            .map_or(0.0, |l| text_w(l, 10.0, false) + 4.0);
        across = across.max(lane + label_w);
    }
    let along = (y - gap).max(MARGIN) + MARGIN;
    let (width, height) = match look.lr {
        false => (across + MARGIN, along),
        true => (along, across + MARGIN),
    };
    Layout {
        width,
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
/// sweeping down and up, and keeps the ordering with the fewest crossings. A fixed number of
/// sweeps, each a sort per row, and crossings counted in O(E log V): O(R (V + E) log V) in all.
fn order_rows(rows: &mut [Vec<usize>], pred: &[Vec<usize>], succ: &[Vec<usize>]) {
    let mut pos = vec![0.0; pred.len()];
    let place = |row: &[usize], pos: &mut Vec<f64>| {
        for (i, &v) in row.iter().enumerate() {
            pos[v] = (i as f64 + 0.5) / row.len() as f64;
        }
    };
    rows.iter().for_each(|row| place(row, &mut pos));
    let (mut best, mut fewest) = (rows.to_vec(), crossings(rows, succ));
    for round in 0..ROUNDS {
        if fewest == 0 {
            break; // Nothing left to improve (a chain, a tree drawn as one).
        }
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

/// Edge crossings between consecutive rows (pairs of edges whose ends are in opposite order):
/// the inversions of the lower ends once edges are sorted by upper end, counted with a Fenwick
/// tree over the lower row in O(E log V) (not the O(E²) of comparing every pair).
fn crossings(rows: &[Vec<usize>], succ: &[Vec<usize>]) -> usize {
    let mut index = vec![0usize; succ.len()];
    for row in rows {
        row.iter().enumerate().for_each(|(i, &v)| index[v] = i);
    }
    let (mut total, mut tree, mut ends) = (0, Vec::new(), Vec::new());
    for pair in rows.windows(2) {
        let below = pair[1].len();
        tree.clear();
        tree.resize(below + 1, 0usize);
        let mut seen = 0;
        for &v in &pair[0] {
            // Ends of one upper vertex in order: they never cross each other.
            ends.clear();
            ends.extend(succ[v].iter().map(|&w| index[w]));
            ends.sort_unstable();
            for &j in &ends {
                // Earlier edges (further left above) whose lower end is right of `j`.
                let (mut k, mut at_most_j) = (j + 1, 0);
                while k > 0 {
                    at_most_j += tree[k];
                    k &= k - 1;
                }
                total += seen - at_most_j;
            }
            for &j in &ends {
                let mut k = j + 1;
                while k <= below {
                    tree[k] += 1;
                    k += k & k.wrapping_neg();
                }
                seen += 1;
            }
        }
    }
    total
}

/// Centre of every vertex across its layer (x top to bottom, y left to right): rows packed,
/// then sweeps pull each vertex toward the mean of its neighbours while keeping its row's order
/// and gaps (least squares by pool-adjacent-violators, linear in the row).
fn place_x(rows: &[Vec<usize>], w: &[f64], pred: &[Vec<usize>], succ: &[Vec<usize>]) -> Vec<f64> {
    let mut x = vec![0.0; w.len()];
    for row in rows {
        let mut cur = -(row.iter().map(|&v| w[v] + NODE_GAP).sum::<f64>() - NODE_GAP) / 2.0;
        for &v in row {
            x[v] = cur + w[v] / 2.0;
            cur += w[v] + NODE_GAP;
        }
    }
    let (mut offset, mut blocks) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (ls, adj) = sweep(rows.len(), round, pred, succ);
        for row in ls.into_iter().map(|l| &rows[l]) {
            // Minimum offsets from the row's first vertex; then blocks of (sum, count) of the
            // wanted first-vertex positions, merged while they are out of order.
            offset.clear();
            offset.resize(row.len(), 0.0);
            for i in 1..row.len() {
                offset[i] = offset[i - 1] + (w[row[i - 1]] + w[row[i]]) / 2.0 + NODE_GAP;
            }
            blocks.clear();
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
            for &(s, c) in &blocks {
                for _ in 0..c {
                    x[row[i]] = s / c as f64 + offset[i];
                    i += 1;
                }
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{DEMO, assert_layered, parse, random_pipelines, tangle_yaml};

    const LR: Look<'static> = Look {
        lr: true,
        band: 16.0,
        label_w: None,
    };

    /// Left to right: forward edges go right (successors start right of where predecessors
    /// end), shapes apart, everything inside the layout; template layouts alike.
    fn assert_left_to_right(lay: &Layout) {
        for r in &lay.routes {
            let (a, b) = (lay.boxes[r.from], lay.boxes[r.to]);
            if r.back {
                assert!(lay.layer[r.from] >= lay.layer[r.to]);
            } else {
                assert!(
                    lay.layer[r.from] < lay.layer[r.to] && a.x + a.w < b.x,
                    "{r:?}"
                );
                assert!(r.points.windows(2).all(|p| p[0].0 <= p[1].0), "{r:?}");
            }
            let inside =
                |&(x, y): &(f64, f64)| x >= 0.0 && x <= lay.width && y >= 0.0 && y <= lay.height;
            assert!(r.points.iter().all(inside), "{r:?}");
        }
        for (i, b) in lay.boxes.iter().enumerate() {
            assert!(b.y >= 0.0 && b.x + b.w <= lay.width && b.y + b.h <= lay.height);
            for c in &lay.boxes[i + 1..] {
                let apart =
                    b.x + b.w <= c.x || c.x + c.w <= b.x || b.y + b.h <= c.y || c.y + c.h <= b.y;
                assert!(apart, "{b:?} overlaps {c:?}");
            }
        }
        for (_, _, sub) in lay.inner.iter().flatten() {
            assert_left_to_right(sub);
        }
    }

    #[test]
    fn left_to_right_puts_successors_to_the_right() {
        let p = parse(DEMO);
        let lay = layout_as(&p.nodes, &LR, "");
        assert_left_to_right(&lay);
        let b = |id: &str| lay.boxes[p.index_of(id).unwrap()];
        for (from, to) in [("in", "fetch-a"), ("fetch-b", "merge"), ("check", "each")] {
            assert!(b(from).cx() < b(to).cx(), "{from} -> {to}");
        }
        // Parallel nodes share a column, one above the other.
        assert_eq!(b("fetch-a").cx(), b("fetch-b").cx());
        assert_ne!(b("fetch-a").cy(), b("fetch-b").cy());
        // The template runs left to right too, inside the loop's box, under its header.
        let (ox, oy, sub) = lay.inner[p.index_of("each").unwrap()].as_ref().unwrap();
        let (get, clean) = (sub.boxes[0], sub.boxes[1]);
        assert!(get.x + get.w < clean.x && get.cy() == clean.cy());
        assert!(ox + sub.width <= b("each").w && oy + sub.height <= b("each").h);
        // The back edge check -> fetch-a runs below the columns it spans, right to left.
        let back = lay.routes.iter().find(|r| r.back).unwrap();
        let lane = back.points[2].1;
        assert!(lane > b("check").y + b("check").h && lane > b("fetch-b").y + b("fetch-b").h);
        assert!(back.points[2].0 > back.points[3].0);
        // Top to bottom, the same graph reads downward.
        let tb = layout(&p.nodes);
        assert_layered(&tb);
        assert_eq!(tb.layer, lay.layer);
    }

    #[test]
    fn labels_widen_nodes_and_get_room_below() {
        let p = parse(DEMO);
        let wide = |key: &str| if key == "each/clean" { 400.0 } else { 0.0 };
        let look = Look {
            label_w: Some(&wide),
            ..LR
        };
        let lay = layout_as(&p.nodes, &look, "");
        assert_left_to_right(&lay);
        let each = p.index_of("each").unwrap();
        let (_, _, sub) = lay.inner[each].as_ref().unwrap();
        // The shape keeps its size; the loop's box grows to hold the label's footprint.
        assert!(sub.boxes[1].w < 200.0 && sub.width > 400.0 && lay.boxes[each].w > 400.0);
        // Down the page, an edge leaves below its source's label band.
        let tb = layout_as(&p.nodes, &Look { lr: false, ..look }, "");
        assert_layered(&tb);
        let r = &tb.routes[0];
        let a = tb.boxes[r.from];
        assert_eq!(r.points[0].1, a.y + a.h + 16.0);
    }

    #[test]
    fn random_graphs_lay_out_both_ways() {
        for p in random_pipelines(60) {
            assert_layered(&layout(&p.nodes));
            assert_left_to_right(&layout_as(&p.nodes, &LR, ""));
        }
        let p = parse(&tangle_yaml());
        assert_left_to_right(&layout_as(&p.nodes, &LR, ""));
    }

    /// The Fenwick count against comparing every pair of edges.
    #[test]
    fn crossings_counts_pairs_in_opposite_order() {
        let mut seed = 3u64;
        let mut next = |m: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) as usize % m
        };
        for _ in 0..200 {
            let (top, bottom) = (1 + next(8), 1 + next(8));
            let rows = vec![(0..top).collect::<Vec<_>>(), (top..top + bottom).collect()];
            let mut succ = vec![Vec::new(); top + bottom];
            for s in succ.iter_mut().take(top) {
                for _ in 0..next(4) {
                    let w = top + next(bottom);
                    if !s.contains(&w) {
                        s.push(w);
                    }
                }
            }
            let ends: Vec<(usize, usize)> = (0..top)
                .flat_map(|v| succ[v].iter().map(move |&w| (v, w - top)))
                .collect();
            let mut slow = 0;
            for (i, a) in ends.iter().enumerate() {
                slow += ends[i + 1..]
                    .iter()
                    .filter(|b| (a.0 < b.0 && a.1 > b.1) || (a.0 > b.0 && a.1 < b.1))
                    .count();
            }
            assert_eq!(crossings(&rows, &succ), slow, "{succ:?}");
        }
    }
}
