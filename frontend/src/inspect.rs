//! A summary of an ONNX model that needs no dim binding and no import: opset, inputs and outputs with
//! symbolic dims by name, op histogram, parameter count and every node the importer cannot handle.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::import::unsupported_nodes;
use crate::proto::{data_type, tensor_shape_proto::dimension, type_proto, ValueInfoProto};
use crate::OnnxModel;

/// One declared dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A `dim_param` such as `batch_size`.
    Named(String),
    /// Dynamic without a name.
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A graph input or output as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoInfo {
    pub name: String,
    /// ONNX element type spelled like the IR's (`f32`, `i64`...), or e.g. `string` / `not a tensor`.
    pub dtype: String,
    /// `None` if the model declares no shape.
    pub shape: Option<Vec<Dim>>,
}

impl fmt::Display for IoInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.dtype)?;
        match &self.shape {
            Some(s) => {
                let dims: Vec<String> = s.iter().map(Dim::to_string).collect();
                write!(f, "[{}]", dims.join(","))
            }
            None => f.write_str("[shape unknown]"),
        }
    }
}

/// What `polyhe inspect` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub path: String,
    pub producer: String,
    pub ir_version: i64,
    /// Default-domain opset.
    pub opset: Option<i64>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    /// Node count per op type (`domain::Op` outside the default domain).
    pub op_histogram: BTreeMap<String, usize>,
    pub node_count: usize,
    pub initializer_count: usize,
    /// Elements in all initializers.
    pub parameter_count: usize,
    /// `(op type, node name)` of every node the importer cannot handle.
    pub unsupported: Vec<(String, String)>,
}

fn io_info(vi: &ValueInfoProto) -> IoInfo {
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => IoInfo {
            name: vi.name.clone(),
            dtype: data_type::name(t.elem_type),
            shape: t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                        Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Named(p.clone()),
                        _ => Dim::Unknown,
                    })
                    .collect()
            }),
        },
        _ => IoInfo { name: vi.name.clone(), dtype: "not a tensor".into(), shape: None },
    }
}

/// Summarizes a model (see the module doc).
pub fn inspect(m: &OnnxModel) -> ModelInfo {
    let empty = Default::default();
    let g = m.graph().unwrap_or(&empty);
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut op_histogram = BTreeMap::new();
    for n in &g.node {
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}::{}", n.domain, n.op_type)
        };
        *op_histogram.entry(key).or_insert(0) += 1;
    }
    let parameter_count =
        g.initializer.iter().map(|t| t.dims.iter().map(|&d| d.max(0) as usize).product::<usize>()).sum();
    ModelInfo {
        path: m.path.display().to_string(),
        producer: format!("{} {}", m.proto.producer_name, m.proto.producer_version).trim().to_string(),
        ir_version: m.proto.ir_version,
        opset: m.opset(),
        inputs: g.input.iter().filter(|i| !inits.contains(i.name.as_str())).map(io_info).collect(),
        outputs: g.output.iter().map(io_info).collect(),
        op_histogram,
        node_count: g.node.len(),
        initializer_count: g.initializer.len(),
        parameter_count,
        unsupported: unsupported_nodes(g),
    }
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model:      {}", self.path)?;
        if !self.producer.is_empty() {
            writeln!(f, "producer:   {}", self.producer)?;
        }
        let opset = self.opset.map_or("none".to_string(), |o| o.to_string());
        writeln!(f, "ir version: {}, opset {}", self.ir_version, opset)?;
        writeln!(f, "inputs:")?;
        for i in &self.inputs {
            writeln!(f, "  {i}")?;
        }
        writeln!(f, "outputs:")?;
        for o in &self.outputs {
            writeln!(f, "  {o}")?;
        }
        writeln!(f, "parameters: {} in {} initializers", self.parameter_count, self.initializer_count)?;
        writeln!(f, "nodes:      {}", self.node_count)?;
        for (op, n) in &self.op_histogram {
            writeln!(f, "  {op:<24} {n}")?;
        }
        if self.unsupported.is_empty() {
            writeln!(f, "unsupported: none")?;
        } else {
            writeln!(f, "unsupported: {} node(s)", self.unsupported.len())?;
            for (op, node) in &self.unsupported {
                writeln!(f, "  {op} (node `{node}`)")?;
            }
        }
        Ok(())
    }
}
