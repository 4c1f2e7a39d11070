//! A validated pipeline prepared for execution: nodes behind `Arc`, the topology of the
//! pipeline and of each loop template (loops inside loops included), and which nodes need a
//! full readiness scan.

use std::collections::HashMap;
use std::sync::Arc;

use crate::datapath::DataPath;
use crate::model::{Node, NodeKind, Pipeline};
use crate::topology::Topology;

/// Where a node lives: at the top level, or in the template (`Plan::templates[template]`) of a
/// loop node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRef {
    Top(usize),
    Template { template: usize, index: usize },
}

#[derive(Debug, Clone)]
pub struct TemplatePlan {
    /// The loop node this is the body of (itself maybe in a template).
    pub owner: NodeRef,
    pub nodes: Vec<Arc<Node>>,
    pub topo: Topology,
    pub index: HashMap<String, usize>,
    /// Per template node: the data paths its templates read (see [`Plan::template_paths`]).
    pub template_paths: Vec<Vec<(String, DataPath)>>,
}

#[derive(Debug)]
pub struct Plan {
    pub pipeline: Arc<Pipeline>,
    pub nodes: Vec<Arc<Node>>,
    pub topo: Topology,
    pub index: HashMap<String, usize>,
    pub entry: usize,
    /// Every loop's body, outer loops before the loops inside them.
    pub templates: Vec<TemplatePlan>,
    /// The template of each loop node.
    pub loop_templates: HashMap<NodeRef, usize>,
    /// Nodes with a predecessor inside a cycle body they are not part of: such a predecessor
    /// may finish once per iteration, so readiness is checked by scanning, not counting.
    pub scan_readiness: Vec<bool>,
    /// Per node: the data paths its templates read (`{{in.out.dir}}`, `{{loop.item}}`), with
    /// their placeholder text, resolved by the scheduler when the node is dispatched.
    pub template_paths: Vec<Vec<(String, DataPath)>>,
    /// What a process needs to run the pipeline's tasks ([`Pipeline::needs`]), computed once
    /// for every task started from this plan.
    pub needs: Vec<String>,
    /// The loops whose items run in chunks, with their programs (see [`crate::loops`]).
    pub programs: HashMap<NodeRef, Arc<crate::loops::ItemProgram>>,
}

impl Plan {
    /// Prepares a pipeline that passed validation.
    pub fn new(pipeline: Arc<Pipeline>) -> Plan {
        let nodes: Vec<Arc<Node>> = pipeline.nodes.iter().cloned().map(Arc::new).collect();
        let entry = nodes
            .iter()
            .position(|n| matches!(n.kind, NodeKind::Entry(_)))
            .unwrap_or(0);
        let topo = Topology::build(&pipeline.nodes, entry, &mut Vec::new());
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let mut templates = Vec::new();
        let mut loop_templates = HashMap::new();
        let scopes: Vec<&HashMap<String, usize>> = vec![&index];
        for (i, node) in pipeline.nodes.iter().enumerate() {
            add_template(
                node,
                NodeRef::Top(i),
                &scopes,
                &mut templates,
                &mut loop_templates,
            );
        }
        let mut scan_readiness = vec![false; nodes.len()];
        for body in &topo.cycle_bodies {
            for &member in body {
                for &succ in &topo.succs[member] {
                    if !body.contains(&succ) {
                        scan_readiness[succ] = true;
                    }
                }
            }
        }
        let ids = |id: &str| index.contains_key(id);
        let template_paths = nodes
            .iter()
            .map(|n| crate::template::node_paths(n, &ids))
            .collect();
        let mut plan = Plan {
            needs: pipeline.needs(),
            pipeline,
            nodes,
            topo,
            index,
            entry,
            templates,
            loop_templates,
            scan_readiness,
            template_paths,
            programs: HashMap::new(),
        };
        let loops: Vec<NodeRef> = plan.loop_templates.keys().copied().collect();
        for r in loops {
            if let Some(p) = crate::loops::ItemProgram::compile(&plan, r) {
                plan.programs.insert(r, Arc::new(p));
            }
        }
        plan
    }

    /// The data paths a node's templates read.
    pub fn template_paths(&self, r: NodeRef) -> &[(String, DataPath)] {
        match r {
            NodeRef::Top(i) => &self.template_paths[i],
            NodeRef::Template { template, index } => {
                &self.templates[template].template_paths[index]
            }
        }
    }

    pub fn node(&self, r: NodeRef) -> &Arc<Node> {
        match r {
            NodeRef::Top(i) => &self.nodes[i],
            NodeRef::Template { template, index } => &self.templates[template].nodes[index],
        }
    }

    /// The template of loop node `r`.
    pub fn template_of(&self, r: NodeRef) -> Option<&TemplatePlan> {
        self.loop_templates.get(&r).map(|&t| &self.templates[t])
    }

    /// The topology `r` is part of, and its index there.
    pub fn topology_of(&self, r: NodeRef) -> (&Topology, usize) {
        match r {
            NodeRef::Top(i) => (&self.topo, i),
            NodeRef::Template { template, index } => (&self.templates[template].topo, index),
        }
    }
}

/// Plans the body of `node` when it is a loop, and of the loops inside it; `scopes` are the
/// id indexes its templates' placeholders may name (outermost first).
fn add_template(
    node: &Node,
    at: NodeRef,
    scopes: &[&HashMap<String, usize>],
    templates: &mut Vec<TemplatePlan>,
    loop_templates: &mut HashMap<NodeRef, usize>,
) {
    let NodeKind::Loop(spec) = &node.kind else {
        return;
    };
    let nodes: Vec<Arc<Node>> = spec.nodes.iter().cloned().map(Arc::new).collect();
    let topo = Topology::build(&spec.nodes, 0, &mut Vec::new());
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| (n.id.clone(), k))
        .collect();
    let template_paths = {
        let ids = |id: &str| index.contains_key(id) || scopes.iter().any(|s| s.contains_key(id));
        nodes
            .iter()
            .map(|n| crate::template::node_paths(n, &ids))
            .collect()
    };
    let t = templates.len();
    loop_templates.insert(at, t);
    templates.push(TemplatePlan {
        owner: at,
        nodes: nodes.clone(),
        topo,
        index,
        template_paths,
    });
    // Loops inside this body.
    let index = templates[t].index.clone();
    let mut inner: Vec<&HashMap<String, usize>> = scopes.to_vec();
    inner.push(&index);
    for (k, n) in nodes.iter().enumerate() {
        add_template(
            n,
            NodeRef::Template {
                template: t,
                index: k,
            },
            &inner,
            templates,
            loop_templates,
        );
    }
}

/// The ids of the nodes of `new` whose definition differs from `old`'s, or that `old` lacks:
/// a resume with `new` runs them again, with everything downstream. A loop is compared without
/// its `nodes` (its body's nodes are compared one by one).
pub fn changed_nodes(old: &Pipeline, new: &Pipeline) -> std::collections::HashSet<String> {
    fn own_definitions(nodes: &[Node], out: &mut HashMap<String, serde_json::Value>) {
        for n in nodes {
            let mut def = n.definition.clone();
            if let NodeKind::Loop(spec) = &n.kind {
                if let Some(m) = def.as_object_mut() {
                    m.remove("nodes");
                }
                own_definitions(&spec.nodes, out);
            }
            out.insert(n.id.clone(), def);
        }
    }
    let (mut before, mut after) = (HashMap::new(), HashMap::new());
    own_definitions(&old.nodes, &mut before);
    own_definitions(&new.nodes, &mut after);
    after
        .into_iter()
        .filter(|(id, def)| before.get(id) != Some(def))
        .map(|(id, _)| id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_nodes_compare_each_node_and_loop_bodies_apart() {
        let scripts = crate::Scripts::default();
        let load = |text: &str| crate::load_pipeline(text, &scripts).unwrap();
        let old = load(
            "nodes:\n  - {id: in, type: entry, next: [a]}\n  - {id: a, type: node, next: [l]}\n  - id: l\n    type: loop\n    items: in.out.xs\n    nodes:\n      - {id: t, type: node, before: \"input.v = 1;\"}\n    next: [end]\n  - {id: end, type: end}\n",
        );
        let new = load(
            "nodes:\n  - {id: in, type: entry, next: [a]}\n  - {id: a, type: node, next: [l]}\n  - id: l\n    type: loop\n    items: in.out.xs\n    nodes:\n      - {id: t, type: node, before: \"input.v = 2;\"}\n    next: [end]\n  - {id: end, type: end}\n",
        );
        let changed = changed_nodes(&old, &new);
        assert_eq!(changed, ["t".to_string()].into_iter().collect());
        assert!(changed_nodes(&old, &old).is_empty());
    }
}
