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
                            if !all_succs[i].contains(&j) {
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
        for (i, list) in all_succs.iter().enumerate() {
            for &j in list {
                if !back_edges.contains(&(i, j)) {
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

/// Which nodes can have run before which: `a` before `b` when edges lead from `a` to `b`; in
/// a cycle, every node of the body may have run (in an earlier pass) before any other.
/// One bit set per node: building it costs O((nodes + edges) × nodes / 64).
#[derive(Debug, Clone)]
pub struct Ancestry {
    words: usize,
    bits: Vec<u64>,
}

impl Ancestry {
    pub fn build(topo: &Topology) -> Ancestry {
        let n = topo.preds.len();
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
        Ancestry { words, bits }
    }

    /// Whether `a` may have finished when `b` starts.
    pub fn ran_before(&self, a: usize, b: usize) -> bool {
        self.bits
            .get(b * self.words + a / 64)
            .is_some_and(|w| w & (1 << (a % 64)) != 0)
    }
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
