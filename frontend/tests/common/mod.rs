//! Test glue: build ONNX models in Rust with the frontend's prost messages, import and run them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use polyhe_frontend::proto::{
    attribute_type as at, data_type as dt, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use polyhe_frontend::{decode, import, FrontendError, ImportOptions};
use polyhe_ir::{DType, Graph, Tensor};
use prost::Message;

/// A dimension in a test model's input/output declaration.
#[derive(Clone, Debug)]
pub enum D {
    N(i64),
    P(&'static str),
    Unnamed,
}

pub fn vi(name: &str, elem: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: match d {
                D::N(n) => Some(dimension::Value::DimValue(*n)),
                D::P(p) => Some(dimension::Value::DimParam(p.to_string())),
                D::Unnamed => None,
            },
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// A static f32 input/output.
pub fn vf(name: &str, dims: &[i64]) -> ValueInfoProto {
    vi(name, dt::FLOAT, &dims.iter().map(|&d| D::N(d)).collect::<Vec<_>>())
}

/// An f32 output with unknown shape (typical for intermediate outputs).
pub fn vout(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: 0, shape: None })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

pub fn f32_raw(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt::FLOAT,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn f32_typed(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt::FLOAT,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

pub fn i64_raw(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt::INT64,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn i64_typed(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt::INT64,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

pub fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::INT, i: v, ..Default::default() }
}

pub fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::INTS, ints: v.to_vec(), ..Default::default() }
}

pub fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::FLOAT, f: v, ..Default::default() }
}

pub fn a_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::FLOATS, floats: v.to_vec(), ..Default::default() }
}

pub fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::STRING, s: v.as_bytes().to_vec(), ..Default::default() }
}

pub fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::TENSOR, t: Some(t), ..Default::default() }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "frontend-tests".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "test".into(),
            initializer: inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Encodes, decodes and imports a model.
pub fn import_model(m: &ModelProto, opts: &ImportOptions) -> Result<Graph, FrontendError> {
    let bytes = m.encode_to_vec();
    let om = decode(&bytes, Path::new("test.onnx"), None)?;
    let g = import(&om, opts)?;
    if let Err(e) = polyhe_ir::verify::verify(&g) {
        panic!("imported graph fails the verifier: {e}");
    }
    Ok(g)
}

pub fn import_ok(m: &ModelProto) -> Graph {
    match import_model(m, &ImportOptions::default()) {
        Ok(g) => g,
        Err(e) => panic!("import failed: {e}"),
    }
}

pub fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    match polyhe_ir::interp::run(g, inputs) {
        Ok(v) => v,
        Err(e) => panic!("run failed: {e}"),
    }
}

pub fn tf(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::float(DType::F32, shape.to_vec(), v.to_vec()).unwrap()
}

pub fn ti(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::int(DType::I64, shape.to_vec(), v.to_vec()).unwrap()
}

pub fn assert_close(got: &Tensor, shape: &[usize], want: &[f64], tol: f64) {
    assert_eq!(got.shape(), shape, "shape");
    let g = got.to_f64_vec();
    assert_eq!(g.len(), want.len());
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "element {i}: got {a}, want {b}\n all: {g:?}");
    }
}

/// Histogram of IR op names in a graph.
pub fn op_counts(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut h = BTreeMap::new();
    for n in g.nodes.values() {
        *h.entry(n.op.name()).or_insert(0) += 1;
    }
    h
}

/// Deterministic pseudo-random values in [-r, r] (xorshift; no rand dependency needed).
pub fn rand_vec(n: usize, seed: u64, r: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * r
        })
        .collect()
}
