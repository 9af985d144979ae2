//! Rebuilding a graph: apply node replacements and drop everything dead, producing a fresh graph.
//!
//! Contract of [`rebuild`]: the result has the same inputs (all kept, same order, names and types) and
//! outputs (same names and types) as the original; a node listed in `replace` is emitted as its
//! replacement op on the replacement inputs (types re-inferred and checked equal to the original's);
//! every node not needed for an output is dropped, and so is every constant only such nodes used. Node
//! order stays topological because replacement inputs are taken from values defined before the
//! replaced node (the caller's obligation; violated, it is an `Internal` error, not a panic).

use std::collections::HashMap;

use cranelift_entity::SecondaryMap;
use polyhe_ir::{Const, Graph, Node, Op, Tensor, Value};

use crate::FrontendError;

/// An input of a replacement node: an existing value, or a new constant.
#[derive(Clone, Debug)]
pub(crate) enum NewInput {
    Old(Value),
    Const(Tensor),
}

/// What a node becomes.
#[derive(Clone, Debug)]
pub(crate) struct Replacement {
    pub op: Op,
    pub inputs: Vec<NewInput>,
}

pub(crate) fn rebuild(mut old: Graph, replace: &HashMap<Node, Replacement>) -> Result<Graph, FrontendError> {
    // Liveness, backwards from the outputs, through replacement inputs where a node is replaced.
    let mut live_val: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    let mut live_node: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
    for &v in &old.outputs {
        live_val[v] = true;
    }
    for (n, data) in old.nodes.iter().rev() {
        if !data.outputs.iter().any(|&v| live_val[v]) {
            continue;
        }
        live_node[n] = true;
        match replace.get(&n) {
            Some(r) => {
                for i in &r.inputs {
                    if let NewInput::Old(v) = i {
                        live_val[*v] = true;
                    }
                }
            }
            None => {
                for &v in &data.inputs {
                    live_val[v] = true;
                }
            }
        }
    }

    let mut g = Graph::new(old.name.clone());
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_default(None);
    for &v in &old.inputs {
        let d = &old.values[v];
        map[v] = Some(g.add_input(d.name.clone().unwrap_or_else(|| v.to_string()), d.ty.clone()));
    }
    let mut moved: SecondaryMap<Const, Option<Const>> = SecondaryMap::with_default(None);
    let nodes: Vec<Node> = old.nodes.keys().filter(|&n| live_node[n]).collect();
    for n in nodes {
        let name = old.nodes[n].name.clone();
        let mapped = |map: &SecondaryMap<Value, Option<Value>>, v: Value| {
            map[v].ok_or_else(|| FrontendError::Internal(format!("rebuild: {v} used by `{name}` before it is defined")))
        };
        let new_outputs: Vec<Value> = if let Some(r) = replace.get(&n) {
            let mut inputs = Vec::with_capacity(r.inputs.len());
            for i in &r.inputs {
                inputs.push(match i {
                    NewInput::Old(v) => mapped(&map, *v)?,
                    NewInput::Const(t) => g.add_constant(t.clone(), format!("{name}/const")),
                });
            }
            let nn = g.add_node(r.op.clone(), inputs, name.clone()).map_err(|source| FrontendError::Shape {
                node: name.clone(),
                op: r.op.name().to_string(),
                source: Box::new(source),
            })?;
            let outs = g.nodes[nn].outputs.clone();
            let old_outs = &old.nodes[n].outputs;
            let same = outs.len() == old_outs.len() && outs.iter().zip(old_outs).all(|(&a, &b)| g.ty(a) == old.ty(b));
            if !same {
                return Err(FrontendError::Internal(format!(
                    "rebuild: replacement of `{name}` changes its result types"
                )));
            }
            outs
        } else if let Op::Constant(c) = old.nodes[n].op {
            let nc = match moved[c] {
                Some(nc) => nc,
                None => {
                    // Move the tensor: weights can be large, and the old graph is dropped afterwards.
                    let t = std::mem::replace(&mut old.constants[c], Tensor::scalar_f32(0.0));
                    let nc = g.constants.push(t);
                    moved[c] = Some(nc);
                    nc
                }
            };
            let ty = g.constants[nc].ty.clone();
            let nn = g.add_node_typed(Op::Constant(nc), vec![], vec![ty], name);
            g.nodes[nn].outputs.clone()
        } else {
            let data = &old.nodes[n];
            let inputs = data.inputs.iter().map(|&v| mapped(&map, v)).collect::<Result<Vec<_>, _>>()?;
            let tys = data.outputs.iter().map(|&v| old.ty(v).clone()).collect();
            let nn = g.add_node_typed(data.op.clone(), inputs, tys, name);
            g.nodes[nn].outputs.clone()
        };
        for (&ov, nv) in old.nodes[n].outputs.iter().zip(new_outputs) {
            if let Some(name) = &old.values[ov].name {
                g.set_name(nv, name.clone());
            }
            map[ov] = Some(nv);
        }
    }
    for &v in &old.outputs {
        let nv = map[v].ok_or_else(|| FrontendError::Internal(format!("rebuild: output {v} is not defined")))?;
        g.outputs.push(nv);
    }
    Ok(g)
}
