//! The graph: entity arenas for values, nodes and constants, plus the ordered graph inputs/outputs.
//!
//! Invariant (checked by the verifier): nodes are stored in a topological order — every node input is a
//! graph input or a result of an earlier node. Builders append nodes in order; passes that rewrite build
//! a new graph rather than mutating this one in place.

use cranelift_entity::PrimaryMap;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::{Const, IrError, Node, Op, Tensor, TensorType, Value};

/// Where a value comes from.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum ValueDef {
    /// The i-th graph input.
    Input(usize),
    /// Result `index` of `node`.
    Result(Node, usize),
}

#[derive(Clone, PartialEq, Debug)]
pub struct ValueData {
    pub ty: TensorType,
    /// The ONNX name, kept for messages, `--input NAME=` binding and calibration reports.
    pub name: Option<String>,
    pub def: ValueDef,
}

#[derive(Clone, PartialEq, Debug)]
pub struct NodeData {
    pub op: Op,
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
    /// The ONNX node name (or a synthesized one), used in every message about this node.
    pub name: String,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub values: PrimaryMap<Value, ValueData>,
    pub nodes: PrimaryMap<Node, NodeData>,
    pub constants: PrimaryMap<Const, Tensor>,
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    /// Appends a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> Value {
        let idx = self.inputs.len();
        let v = self.values.push(ValueData { ty, name: Some(name.into()), def: ValueDef::Input(idx) });
        self.inputs.push(v);
        v
    }

    /// Appends a node whose result types are computed by shape inference.
    pub fn add_node(&mut self, op: Op, inputs: Vec<Value>, name: impl Into<String>) -> Result<Node, IrError> {
        let name = name.into();
        let in_types: Vec<TensorType> = inputs.iter().map(|&v| self.values[v].ty.clone()).collect();
        let out_types = crate::infer::infer_types(&op, &in_types, self).map_err(|e| match e {
            IrError::Shape { op, msg, .. } => IrError::Shape { op, node: name.clone(), msg },
            other => other,
        })?;
        Ok(self.add_node_typed(op, inputs, out_types, name))
    }

    /// Appends a node with result types given by the caller (the parser, passes that know them).
    pub fn add_node_typed(
        &mut self,
        op: Op,
        inputs: Vec<Value>,
        out_types: Vec<TensorType>,
        name: impl Into<String>,
    ) -> Node {
        let node = self.nodes.next_key();
        let outputs = out_types
            .into_iter()
            .enumerate()
            .map(|(i, ty)| self.values.push(ValueData { ty, name: None, def: ValueDef::Result(node, i) }))
            .collect();
        self.nodes.push(NodeData { op, inputs, outputs, name: name.into() })
    }

    /// Adds a constant to the pool and a `const` node producing it; returns the value.
    pub fn add_constant(&mut self, t: Tensor, name: impl Into<String>) -> Value {
        let ty = t.ty.clone();
        let c = self.constants.push(t);
        let n = self.add_node_typed(Op::Constant(c), vec![], vec![ty], name);
        self.nodes[n].outputs[0]
    }

    /// The single result of a node (most ops have one).
    pub fn result(&self, n: Node) -> Value {
        self.nodes[n].outputs[0]
    }

    pub fn ty(&self, v: Value) -> &TensorType {
        &self.values[v].ty
    }

    /// Sets the ONNX-visible name of a value.
    pub fn set_name(&mut self, v: Value, name: impl Into<String>) {
        self.values[v].name = Some(name.into());
    }

    /// Looks up a graph input by name.
    pub fn input_by_name(&self, name: &str) -> Option<(usize, Value)> {
        self.inputs.iter().copied().enumerate().find(|(_, v)| self.values[*v].name.as_deref() == Some(name))
    }

    /// A human label for a value: its ONNX name if it has one, else its id.
    pub fn value_label(&self, v: Value) -> String {
        match &self.values[v].name {
            Some(n) => n.clone(),
            None => v.to_string(),
        }
    }

    /// The constant tensor a value holds, if it is produced by a `const` node.
    pub fn constant_of(&self, v: Value) -> Option<&Tensor> {
        match self.values[v].def {
            ValueDef::Result(n, _) => match self.nodes[n].op {
                Op::Constant(c) => Some(&self.constants[c]),
                _ => None,
            },
            ValueDef::Input(_) => None,
        }
    }

    /// A petgraph view: one graph node per IR node, one edge per (producer → consumer) value use.
    pub fn to_petgraph(&self) -> DiGraph<Node, Value> {
        let mut g = DiGraph::with_capacity(self.nodes.len(), self.nodes.len() * 2);
        let idx: Vec<NodeIndex> = self.nodes.keys().map(|n| g.add_node(n)).collect();
        for (n, data) in self.nodes.iter() {
            for &v in &data.inputs {
                if let ValueDef::Result(p, _) = self.values[v].def {
                    g.add_edge(idx[p.as_u32() as usize], idx[n.as_u32() as usize], v);
                }
            }
        }
        g
    }

    /// Nodes in a topological order computed from the edges (not from storage order).
    pub fn topo_order(&self) -> Result<Vec<Node>, IrError> {
        let g = self.to_petgraph();
        petgraph::algo::toposort(&g, None)
            .map(|order| order.into_iter().map(|i| g[i]).collect())
            .map_err(|cycle| IrError::Verifier(format!("cycle through {}", g[cycle.node_id()])))
    }

    /// Number of uses of each value (node inputs and graph outputs).
    pub fn use_counts(&self) -> cranelift_entity::SecondaryMap<Value, usize> {
        let mut uses = cranelift_entity::SecondaryMap::with_default(0usize);
        for data in self.nodes.values() {
            for &v in &data.inputs {
                uses[v] += 1;
            }
        }
        for &v in &self.outputs {
            uses[v] += 1;
        }
        uses
    }

    /// Total number of elements in float constants (the model's parameter count).
    pub fn parameter_count(&self) -> usize {
        self.constants.values().filter(|t| t.dtype().is_float()).map(|t| t.numel()).sum()
    }
}
