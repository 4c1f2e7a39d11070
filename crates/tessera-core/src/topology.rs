//! The graph of a node list (the pipeline, or a loop's template): successor and predecessor
//! indices, back edges (edges closing a cycle, which must leave a branch) and reachability.

use std::collections::HashMap;

use crate::model::{Node, NodeKind};
use crate::report::Issue;

#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Forward successors of each node (back edges excluded), without duplicates.
    pub succs: Vec<Vec<usize>>,
    /// Forward predecessors of each node, in declaration order.
    pub preds: Vec<Vec<usize>>,
    /// Back edges `(branch, target)`: a branch taking one starts a new iteration of the cycle.
    pub back_edges: Vec<(usize, usize)>,
    /// For each back edge (same order): the nodes of the cycle, target first, run again.
    pub cycle_bodies: Vec<Vec<usize>>,
    pub reachable: Vec<bool>,
}

impl Topology {
    /// Builds the topology from `start`; unknown successor ids are reported (and dropped).
    pub fn build(nodes: &[Node], start: usize, issues: &mut Vec<Issue>) -> Topology {
        let n = nodes.len();
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.id.as_str(), i))
            .collect();
        let mut all_succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        // Edges seen: a node with thousands of successors is not scanned per successor.
        let mut seen_edges: std::collections::HashSet<(usize, usize)> = Default::default();
        for (i, node) in nodes.iter().enumerate() {
            let fields: Vec<(String, &Vec<String>)> = match &node.kind {
                NodeKind::Branch(b) => vec![
                    ("then.next".into(), &b.then.next),
                    ("else.next".into(), &b.otherwise.next),
                ],
                _ => vec![("next".into(), &node.next)],
            };
            for (field, ids) in fields {
                for (k, id) in ids.iter().enumerate() {
                    match index.get(id.as_str()) {
                        Some(&j) => {
                            if seen_edges.insert((i, j)) {
                                all_succs[i].push(j);
                            }
                        }
                        None => issues.push(Issue::node(
                            &node.id,
                            format!("{field}[{k}]"),
                            format!("unknown node id `{id}`"),
                        )),
                    }
                }
            }
        }

        // Iterative DFS in declaration order: an edge to a node still on the stack closes a cycle.
        let mut reachable = vec![false; n];
        let mut on_stack = vec![false; n];
        let mut back_edges = Vec::new();
        if start < n {
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            reachable[start] = true;
            on_stack[start] = true;
            while let Some(&mut (node, ref mut next_child)) = stack.last_mut() {
                if let Some(&child) = all_succs[node].get(*next_child) {
                    *next_child += 1;
                    if on_stack[child] {
                        back_edges.push((node, child));
                    } else if !reachable[child] {
                        reachable[child] = true;
                        on_stack[child] = true;
                        stack.push((child, 0));
                    }
                } else {
                    on_stack[node] = false;
                    stack.pop();
                }
            }
        }
        let mut succs = vec![Vec::new(); n];
        let mut preds = vec![Vec::new(); n];
        let back: std::collections::HashSet<(usize, usize)> = back_edges.iter().copied().collect();
        for (i, list) in all_succs.iter().enumerate() {
            for &j in list {
                if !back.contains(&(i, j)) {
                    succs[i].push(j);
                    preds[j].push(i);
                }
            }
        }
        for p in &mut preds {
            p.sort_unstable();
        }
        let cycle_bodies = back_edges
            .iter()
            .map(|&(from, to)| cycle_body(&succs, &preds, to, from))
            .collect();
        Topology {
            succs,
            preds,
            back_edges,
            cycle_bodies,
            reachable,
        }
    }

    /// The back edges leaving `node`, as `(edge number, target)`.
    pub fn back_edges_from(&self, node: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.back_edges
            .iter()
            .enumerate()
            .filter(move |(_, (from, _))| *from == node)
            .map(|(k, (_, to))| (k, *to))
    }
}

/// Which nodes can have run before which: `a` before `b` when edges lead from `a` to `b` (back
/// edges included: in a cycle, every node of the body may have run, in an earlier pass, before
/// any other). Small graphs get one bit set per node (O((nodes + edges) × nodes / 64) to build);
/// big ones are searched per question — nearby ancestors first, then one memoised forward
/// search per distinct source — so a big pipeline that names few nodes costs nothing.
#[derive(Debug)]
pub struct Ancestry {
    mode: Mode,
}

/// Above this many nodes, bit sets (n² bits) are not built.
const DENSE_MAX_NODES: usize = 8192;
/// Ancestors looked at around a node before searching forward from the source.
const NEARBY: usize = 256;
/// Memory given to memoised forward searches (bits).
const MEMO_BITS: usize = 512 << 20;

#[derive(Debug)]
enum Mode {
    Dense {
        words: usize,
        bits: Vec<u64>,
    },
    Sparse {
        start: usize,
        reachable: Vec<bool>,
        /// Every edge, back edges included.
        succs: Vec<Vec<usize>>,
        preds: Vec<Vec<usize>>,
        memo: std::cell::RefCell<HashMap<usize, Vec<u64>>>,
    },
}

impl Ancestry {
    /// `start`: the node the topology was built from (the entry, or a loop body's first).
    pub fn build(topo: &Topology, start: usize) -> Ancestry {
        Ancestry::build_as(topo, start, topo.preds.len() <= DENSE_MAX_NODES)
    }

    fn build_as(topo: &Topology, start: usize, dense: bool) -> Ancestry {
        let n = topo.preds.len();
        if !dense {
            let mut succs = topo.succs.clone();
            let mut preds = topo.preds.clone();
            for &(from, to) in &topo.back_edges {
                succs[from].push(to);
                preds[to].push(from);
            }
            return Ancestry {
                mode: Mode::Sparse {
                    start,
                    reachable: topo.reachable.clone(),
                    succs,
                    preds,
                    memo: Default::default(),
                },
            };
        }
        let words = n.div_ceil(64);
        let mut bits = vec![0u64; n * words];
        let order = forward_order(topo);
        let set = |bits: &mut [u64], row: usize, col: usize| {
            bits[row * words + col / 64] |= 1 << (col % 64);
        };
        loop {
            for &v in &order {
                for &p in &topo.preds[v] {
                    for w in 0..words {
                        let x = bits[p * words + w];
                        bits[v * words + w] |= x;
                    }
                    set(&mut bits, v, p);
                }
            }
            let mut changed = false;
            for body in &topo.cycle_bodies {
                let mut union = vec![0u64; words];
                for &x in body {
                    for (w, u) in union.iter_mut().enumerate() {
                        *u |= bits[x * words + w];
                    }
                    union[x / 64] |= 1 << (x % 64);
                }
                for &x in body {
                    for (w, u) in union.iter().enumerate() {
                        let cell = &mut bits[x * words + w];
                        changed |= *cell | u != *cell;
                        *cell |= u;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        Ancestry {
            mode: Mode::Dense { words, bits },
        }
    }

    /// Whether `a` may have finished when `b` starts.
    pub fn ran_before(&self, a: usize, b: usize) -> bool {
        match &self.mode {
            Mode::Dense { words, bits } => bits
                .get(b * words + a / 64)
                .is_some_and(|w| w & (1 << (a % 64)) != 0),
            Mode::Sparse {
                start,
                reachable,
                succs,
                preds,
                memo,
            } => {
                if a == *start {
                    return reachable.get(b).copied().unwrap_or(false);
                }
                // Nearby ancestors: most names are of nodes a few steps back.
                let mut seen = std::collections::HashSet::new();
                let mut queue = std::collections::VecDeque::from([b]);
                while let Some(x) = queue.pop_front() {
                    for &p in &preds[x] {
                        if p == a {
                            return true;
                        }
                        if seen.insert(p) {
                            queue.push_back(p);
                        }
                    }
                    if seen.len() > NEARBY {
                        break;
                    }
                }
                if queue.is_empty() {
                    return false; // every ancestor of `b` was seen
                }
                let mut memo = memo.borrow_mut();
                if let Some(from_a) = memo.get(&a) {
                    return from_a[b / 64] & (1 << (b % 64)) != 0;
                }
                let from_a = reach_from(succs, a);
                let found = from_a[b / 64] & (1 << (b % 64)) != 0;
                if (memo.len() + 1) * succs.len() <= MEMO_BITS {
                    memo.insert(a, from_a);
                }
                found
            }
        }
    }
}

/// The nodes reachable from `a` (not `a` itself unless on a cycle), as a bit set.
fn reach_from(succs: &[Vec<usize>], a: usize) -> Vec<u64> {
    let mut bits = vec![0u64; succs.len().div_ceil(64)];
    let mut stack = vec![a];
    while let Some(x) = stack.pop() {
        for &y in &succs[x] {
            if bits[y / 64] & (1 << (y % 64)) == 0 {
                bits[y / 64] |= 1 << (y % 64);
                stack.push(y);
            }
        }
    }
    bits
}

/// The nodes in an order where every forward predecessor comes first (Kahn); nodes on a
/// cycle that no back edge breaks (unreachable ones) are left out.
fn forward_order(topo: &Topology) -> Vec<usize> {
    let n = topo.preds.len();
    let mut waiting: Vec<usize> = topo.preds.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(v) = ready.pop() {
        order.push(v);
        for &s in &topo.succs[v] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                ready.push(s);
            }
        }
    }
    order
}

/// Nodes forward-reachable from `head` that also reach `tail`: the part of the graph that runs
/// again when `tail` jumps back to `head`. Sorted in declaration order with `head` first.
fn cycle_body(succs: &[Vec<usize>], preds: &[Vec<usize>], head: usize, tail: usize) -> Vec<usize> {
    let walk = |start: usize, next: &[Vec<usize>]| {
        let mut seen = vec![false; next.len()];
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(x) = stack.pop() {
            for &y in &next[x] {
                if !seen[y] {
                    seen[y] = true;
                    stack.push(y);
                }
            }
        }
        seen
    };
    let from_head = walk(head, succs);
    let to_tail = walk(tail, preds);
    let mut body: Vec<usize> = (0..succs.len())
        .filter(|&i| from_head[i] && to_tail[i] && i != head)
        .collect();
    body.insert(0, head);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random DAG over `n` nodes (edges go forward in index order), with node 0 the start,
    /// plus one cycle closed by a back edge.
    fn random_topology(n: usize, seed: u64) -> Topology {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut succs = vec![Vec::new(); n];
        let mut preds = vec![Vec::new(); n];
        for (b, into_b) in preds.iter_mut().enumerate().skip(1) {
            for _ in 0..rng.usize(1..3) {
                let a = rng.usize(0..b);
                if !succs[a].contains(&b) {
                    succs[a].push(b);
                    into_b.push(a);
                }
            }
        }
        let (head, tail) = (n / 3, 2 * n / 3);
        // Make `tail` reachable from `head`, then close the cycle.
        if !succs[head].contains(&tail) {
            succs[head].push(tail);
            preds[tail].push(head);
        }
        let body = cycle_body(&succs, &preds, head, tail);
        Topology {
            succs,
            preds,
            back_edges: vec![(tail, head)],
            cycle_bodies: vec![body],
            reachable: vec![true; n],
        }
    }

    #[test]
    fn dense_and_sparse_ancestry_agree() {
        for seed in 0..4 {
            let topo = random_topology(300, seed);
            let dense = Ancestry::build_as(&topo, 0, true);
            let sparse = Ancestry::build_as(&topo, 0, false);
            for a in 0..300 {
                for b in 0..300 {
                    if a != b {
                        assert_eq!(
                            dense.ran_before(a, b),
                            sparse.ran_before(a, b),
                            "seed {seed}: {a} before {b}"
                        );
                    }
                }
            }
            // The cycle: its head may have run (in a pass before) after its tail.
            let (head, tail) = topo.back_edges[0];
            assert!(dense.ran_before(head, tail) && dense.ran_before(tail, head));
        }
    }
}
