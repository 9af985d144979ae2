//! ONNX graph → IR graph with static shapes.
//!
//! Contract of [`import`]:
//! - every unsupported node is reported at once ([`FrontendError::Unsupported`]) before anything else;
//! - dynamic input dims are bound from [`ImportOptions::input_shapes`] and [`ImportOptions::dims`];
//!   the resulting graph has only static shapes;
//! - an IR node whose inputs are all constants is evaluated at import time
//!   ([`polyhe_ir::interp::eval_op`]) and becomes a constant; `Shape`, `Size`, `ConstantOfShape` and
//!   `Range` never become IR nodes (their results are computed from static types/constants), so the
//!   shape arithmetic exporters emit folds away. Inputs that fix an output shape (Reshape's shape,
//!   Slice's starts...) must fold to constants, otherwise the node is rejected;
//! - initializers are constants, also when they are listed as graph inputs;
//! - graph inputs/outputs keep their ONNX names in `ValueData::name`; IR nodes carry the ONNX node name
//!   (or `OpType_<index>` if it has none);
//! - dead nodes and constants are dropped; with `recognize`, LayerNorm and GELU subgraphs are fused
//!   (see `recognize.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use polyhe_ir::{DType, Data, GeluApprox, Graph, Op, Tensor, TensorType, Value};

use crate::load::{ir_dtype, tensor_from_proto};
use crate::proto::{
    attribute_type as at, data_type, tensor_shape_proto::dimension, type_proto, AttributeProto, GraphProto, NodeProto,
    TensorProto, ValueInfoProto,
};
use crate::{FrontendError, OnnxModel};

/// How to import a model.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Values of symbolic dims (`dim_param`), e.g. `batch_size = 1` (`--dim NAME=VALUE`). Names the
    /// model does not use are ignored, so one set of bindings can serve several models.
    pub dims: BTreeMap<String, usize>,
    /// Concrete shapes of graph inputs (e.g. of the tensors that will be fed); they bind the input's
    /// symbolic and unnamed dims and must agree with its static ones.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Fuse decomposed LayerNorm and GELU subgraphs into `layer_norm` / `gelu`.
    pub recognize: bool,
}

/// ONNX ops the importer handles (default domain).
pub(crate) const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Einsum",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "Mean",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceL2",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// The node name used in messages: the ONNX name, or `OpType_<index>` if it has none.
pub(crate) fn node_label(n: &NodeProto, index: usize) -> String {
    if n.name.is_empty() {
        format!("{}_{index}", n.op_type)
    } else {
        n.name.clone()
    }
}

/// `com.microsoft` ops the importer handles (the fused forms ONNX Runtime's transformer optimizer
/// writes), each as the default-domain ops it stands for.
pub(crate) const SUPPORTED_MICROSOFT_OPS: &[&str] = &["BiasGelu", "FastGelu", "Gelu", "SkipLayerNormalization"];

/// The `com.microsoft` domain.
const MICROSOFT: &str = "com.microsoft";

/// `(op type, node name)` of every node the importer cannot handle, in graph order.
pub(crate) fn unsupported_nodes(g: &GraphProto) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        let supported = if default_domain {
            SUPPORTED_OPS.contains(&n.op_type.as_str())
        } else {
            n.domain == MICROSOFT && SUPPORTED_MICROSOFT_OPS.contains(&n.op_type.as_str())
        };
        if !supported {
            let op = if default_domain { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
            out.push((op, node_label(n, i)));
        }
    }
    out
}

/// Default-domain opset versions the importer knows the semantics of (opset 6: Clip's bounds as
/// attributes; the newest released versions on top).
pub const SUPPORTED_OPSETS: std::ops::RangeInclusive<i64> = 6..=26;

/// Imports a decoded model into an IR graph with static shapes (see the module doc).
pub fn import(m: &OnnxModel, opts: &ImportOptions) -> Result<Graph, FrontendError> {
    let Some(gp) = m.graph() else {
        return Err(FrontendError::Graph { msg: format!("{} has no graph", m.path.display()) });
    };
    let unsupported = unsupported_nodes(gp);
    if !unsupported.is_empty() {
        return Err(FrontendError::Unsupported { nodes: unsupported });
    }
    let opset = m.opset().unwrap_or(13);
    if !SUPPORTED_OPSETS.contains(&opset) {
        return Err(FrontendError::Graph {
            msg: format!(
                "{}: opset {opset} is outside the versions polyhe imports ({} to {}): op semantics differ between versions, so it is refused rather than guessed",
                m.path.display(),
                SUPPORTED_OPSETS.start(),
                SUPPORTED_OPSETS.end()
            ),
        });
    }
    let name = if gp.name.is_empty() { "main".to_string() } else { gp.name.clone() };
    let mut imp = Importer::new(gp, opset, name);

    // Graph inputs that are not initializers, with their shapes resolved.
    let real_inputs: Vec<&ValueInfoProto> =
        gp.input.iter().filter(|i| !imp.inits.contains_key(i.name.as_str())).collect();
    let (resolved, bound) = resolve_inputs(&real_inputs, opts)?;
    for (name, ty) in resolved {
        let v = imp.g.add_input(name.clone(), ty);
        imp.env.insert(name, v);
    }

    for (i, node) in gp.node.iter().enumerate() {
        imp.node(node, i)?;
    }

    // Graph outputs, named; a value that already carries another name gets an Identity to carry this one.
    for out in &gp.output {
        let v = imp.value(&out.name)?.ok_or_else(|| FrontendError::Graph {
            msg: format!("graph output `{}` is not produced by any node", out.name),
        })?;
        check_declared_output(out, imp.g.ty(v), &bound)?;
        let v = if imp.g.values[v].name.is_some() {
            let n = imp.g.add_node(Op::Identity, vec![v], format!("output_{}", out.name)).map_err(|source| {
                FrontendError::Shape { node: out.name.clone(), op: "Identity".into(), source: Box::new(source) }
            })?;
            imp.g.result(n)
        } else {
            v
        };
        imp.g.set_name(v, out.name.clone());
        imp.g.outputs.push(v);
    }

    let g = crate::rebuild::rebuild(imp.g, &HashMap::new())?;
    if opts.recognize {
        crate::recognize::recognize(g)
    } else {
        Ok(g)
    }
}

/// Checks an output's declared element type, static dims and bound symbolic dims against what the
/// import computed (a mismatch means the model is inconsistent or the frontend is wrong; either way the
/// user must hear of it).
fn check_declared_output(
    out: &ValueInfoProto,
    ty: &TensorType,
    bound: &BTreeMap<String, usize>,
) -> Result<(), FrontendError> {
    let Some(type_proto::Value::TensorType(t)) = out.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    let mismatch = |what: String| FrontendError::Graph {
        msg: format!("graph output `{}`: the model declares {what} but the import computed {ty}", out.name),
    };
    if t.elem_type != data_type::UNDEFINED && ir_dtype(t.elem_type) != Some(ty.dtype) {
        return Err(mismatch(format!("element type {}", data_type::name(t.elem_type))));
    }
    if let Some(shape) = &t.shape {
        if shape.dim.len() != ty.rank() {
            return Err(mismatch(format!("rank {}", shape.dim.len())));
        }
        for (axis, d) in shape.dim.iter().enumerate() {
            match &d.value {
                Some(dimension::Value::DimValue(v)) if *v > 0 && *v as usize != ty.shape[axis] => {
                    return Err(mismatch(format!("size {v} on axis {axis}")));
                }
                Some(dimension::Value::DimParam(p)) => match bound.get(p) {
                    Some(&b) if b != ty.shape[axis] => {
                        return Err(mismatch(format!("`{p}` = {b} on axis {axis}")));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(())
}

/// A declared dimension of a graph input.
#[derive(Clone, Debug, PartialEq)]
enum DeclDim {
    Fixed(usize),
    Named(String),
    Unnamed,
}

fn declared_input(vi: &ValueInfoProto) -> Result<(DType, Option<Vec<DeclDim>>), FrontendError> {
    let bad = |msg: String| FrontendError::Graph { msg: format!("graph input `{}`: {msg}", vi.name) };
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(bad("is not a tensor".into()));
    };
    let dtype = ir_dtype(t.elem_type)
        .ok_or_else(|| bad(format!("unsupported element type {}", data_type::name(t.elem_type))))?;
    let dims = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v >= 0 => DeclDim::Fixed(*v as usize),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => DeclDim::Named(p.clone()),
                _ => DeclDim::Unnamed,
            })
            .collect()
    });
    Ok((dtype, dims))
}

/// The resolved input types and the value of every bound symbolic dim.
type Resolved = (Vec<(String, TensorType)>, BTreeMap<String, usize>);

/// Binds every input dim to a number (see [`ImportOptions`]).
fn resolve_inputs(inputs: &[&ValueInfoProto], opts: &ImportOptions) -> Result<Resolved, FrontendError> {
    for name in opts.input_shapes.keys() {
        if !inputs.iter().any(|i| &i.name == name) {
            let known = inputs.iter().map(|i| format!("`{}`", i.name)).collect::<Vec<_>>().join(", ");
            return Err(FrontendError::UnknownInput { input: name.clone(), known });
        }
    }
    let declared = inputs.iter().map(|vi| declared_input(vi)).collect::<Result<Vec<_>, _>>()?;
    // Symbolic dims bound by --dim, then by concrete input shapes (which must agree).
    let mut bound: BTreeMap<String, usize> = opts.dims.clone();
    for (vi, (_, dims)) in inputs.iter().zip(&declared) {
        let Some(given) = opts.input_shapes.get(&vi.name) else {
            continue;
        };
        let Some(dims) = dims else { continue };
        if dims.len() != given.len() {
            return Err(FrontendError::InputRank { input: vi.name.clone(), expected: dims.len(), got: given.len() });
        }
        for (axis, (d, &n)) in dims.iter().zip(given).enumerate() {
            match d {
                DeclDim::Fixed(f) if *f != n => {
                    return Err(FrontendError::DimConflict {
                        input: vi.name.clone(),
                        axis,
                        dim: f.to_string(),
                        expected: *f,
                        got: n,
                    })
                }
                DeclDim::Named(p) => match bound.get(p) {
                    Some(&b) if b != n => {
                        return Err(FrontendError::DimConflict {
                            input: vi.name.clone(),
                            axis,
                            dim: p.clone(),
                            expected: b,
                            got: n,
                        })
                    }
                    _ => {
                        bound.insert(p.clone(), n);
                    }
                },
                _ => {}
            }
        }
    }
    let mut out = Vec::with_capacity(inputs.len());
    for (vi, (dtype, dims)) in inputs.iter().zip(declared) {
        let given = opts.input_shapes.get(&vi.name);
        let shape = match (dims, given) {
            (_, Some(g)) => g.clone(),
            (None, None) => {
                return Err(FrontendError::Graph {
                    msg: format!("graph input `{}` declares no shape; give its concrete shape", vi.name),
                })
            }
            (Some(dims), None) => dims
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    DeclDim::Fixed(f) => Ok(*f),
                    DeclDim::Named(p) => bound.get(p).copied().ok_or_else(|| FrontendError::UnboundDim {
                        input: vi.name.clone(),
                        axis,
                        dim: p.clone(),
                    }),
                    DeclDim::Unnamed => {
                        Err(FrontendError::UnboundDim { input: vi.name.clone(), axis, dim: "<unnamed>".into() })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        out.push((vi.name.clone(), TensorType::new(dtype, shape)));
    }
    Ok((out, bound))
}

/// Typed access to a node's attributes.
struct Attrs<'a> {
    list: &'a [AttributeProto],
    node: String,
    op: &'a str,
}

impl<'a> Attrs<'a> {
    fn get(&self, name: &str, ty: i32) -> Result<Option<&'a AttributeProto>, FrontendError> {
        let Some(a) = self.list.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        // type 0 is written by very old exporters; trust the field then.
        if a.r#type != at::UNDEFINED && a.r#type != ty {
            return Err(self.invalid(format!("attribute `{name}` has type {} (expected {ty})", a.r#type)));
        }
        Ok(Some(a))
    }

    fn invalid(&self, msg: String) -> FrontendError {
        FrontendError::InvalidNode { node: self.node.clone(), op: self.op.to_string(), msg }
    }

    fn int(&self, name: &str) -> Result<Option<i64>, FrontendError> {
        Ok(self.get(name, at::INT)?.map(|a| a.i))
    }

    fn int_or(&self, name: &str, default: i64) -> Result<i64, FrontendError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    fn float(&self, name: &str) -> Result<Option<f64>, FrontendError> {
        Ok(self.get(name, at::FLOAT)?.map(|a| a.f as f64))
    }

    fn float_or(&self, name: &str, default: f64) -> Result<f64, FrontendError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, FrontendError> {
        Ok(self.get(name, at::INTS)?.map(|a| a.ints.clone()))
    }

    fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, FrontendError> {
        Ok(self.get(name, at::FLOATS)?.map(|a| a.floats.clone()))
    }

    fn string(&self, name: &str) -> Result<Option<String>, FrontendError> {
        Ok(self.get(name, at::STRING)?.map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, FrontendError> {
        Ok(self.get(name, at::TENSOR)?.and_then(|a| a.t.as_ref()))
    }
}

/// One ONNX node being translated.
struct Cx<'a> {
    node: &'a NodeProto,
    name: String,
    attrs: Attrs<'a>,
}

impl Cx<'_> {
    fn op(&self) -> &str {
        &self.node.op_type
    }

    fn invalid(&self, msg: impl Into<String>) -> FrontendError {
        FrontendError::InvalidNode { node: self.name.clone(), op: self.node.op_type.clone(), msg: msg.into() }
    }

    /// Normalizes a possibly negative axis against `rank`.
    fn axis(&self, axis: i64, rank: usize) -> Result<usize, FrontendError> {
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        if a < 0 || a >= rank as i64 {
            return Err(self.invalid(format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(a as usize)
    }

    fn axes(&self, axes: &[i64], rank: usize) -> Result<Vec<usize>, FrontendError> {
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let a = self.axis(a, rank)?;
            if out.contains(&a) {
                return Err(self.invalid(format!("axis {a} is repeated")));
            }
            out.push(a);
        }
        Ok(out)
    }
}

struct Importer<'a> {
    g: Graph,
    env: HashMap<String, Value>,
    inits: HashMap<&'a str, &'a TensorProto>,
    /// Names read by some node or listed as graph outputs: extra node outputs that nobody reads can
    /// be ignored, the others must be produced.
    used: HashSet<&'a str>,
    opset: i64,
    /// Elements of the constants computed so far by folding, and the most allowed (see
    /// [`FOLD_AMPLIFICATION`]).
    folded: usize,
    fold_budget: usize,
}

/// Constants computed at import (folded shape logic, masks, transposed weights) may total at most
/// this many times the model's own initializer elements, and at least [`MIN_FOLD_BUDGET`]: a
/// 128 KB model whose `ConstantOfShape [2^28]` or `Range 0..2^27` would allocate gigabytes is
/// refused before the allocation, naming the node.
const FOLD_AMPLIFICATION: usize = 8;
const MIN_FOLD_BUDGET: usize = 1 << 26;

impl<'a> Importer<'a> {
    fn new(gp: &'a GraphProto, opset: i64, name: String) -> Self {
        let inits = gp.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut used: HashSet<&str> = gp.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        used.extend(gp.output.iter().map(|o| o.name.as_str()));
        let init_elements = gp
            .initializer
            .iter()
            .map(|t| {
                t.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?)).unwrap_or(usize::MAX)
            })
            .fold(0usize, usize::saturating_add);
        let fold_budget = init_elements.saturating_mul(FOLD_AMPLIFICATION).max(MIN_FOLD_BUDGET);
        Importer { g: Graph::new(name), env: HashMap::new(), inits, used, opset, folded: 0, fold_budget }
    }

    /// The IR value of an ONNX name; initializers become constants on first use.
    fn value(&mut self, name: &str) -> Result<Option<Value>, FrontendError> {
        if let Some(&v) = self.env.get(name) {
            return Ok(Some(v));
        }
        let Some(t) = self.inits.get(name) else {
            return Ok(None);
        };
        let t = tensor_from_proto(t)?;
        // A NaN or infinite weight makes every output it reaches NaN: refused with its place.
        if t.dtype().is_float() {
            if let Some((k, x)) = t.to_f64_vec().into_iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(FrontendError::InvalidTensor {
                    tensor: name.to_string(),
                    msg: format!("element {k} is {x}: weights must be finite"),
                });
            }
        }
        let v = self.g.add_constant(t, name);
        self.env.insert(name.to_string(), v);
        Ok(Some(v))
    }

    fn lookup(&mut self, cx: &Cx, name: &str) -> Result<Value, FrontendError> {
        if let Some(v) = self.value(name)? {
            return Ok(v);
        }
        Err(cx.invalid(format!("input `{name}` is not defined before this node (nodes must be topologically sorted)")))
    }

    /// Required input `i`.
    fn input(&mut self, cx: &Cx, i: usize) -> Result<Value, FrontendError> {
        match cx.node.input.get(i) {
            Some(n) if !n.is_empty() => self.lookup(cx, n),
            _ => Err(cx.invalid(format!("missing input {i}"))),
        }
    }

    /// Optional input `i` (absent or empty name → `None`).
    fn opt_input(&mut self, cx: &Cx, i: usize) -> Result<Option<Value>, FrontendError> {
        match cx.node.input.get(i) {
            Some(n) if !n.is_empty() => self.lookup(cx, n).map(Some),
            _ => Ok(None),
        }
    }

    /// Optional input `i` that must be a constant.
    fn const_input(&mut self, cx: &Cx, i: usize) -> Result<Option<Tensor>, FrontendError> {
        let Some(v) = self.opt_input(cx, i)? else {
            return Ok(None);
        };
        match self.g.constant_of(v) {
            Some(t) => Ok(Some(t.clone())),
            None => Err(FrontendError::NotConstant {
                node: cx.name.clone(),
                op: cx.node.op_type.clone(),
                input: cx.node.input[i].clone(),
            }),
        }
    }

    /// Integer list from the attribute `attr` if present, else from constant input `i` if present.
    fn ints_attr_or_input(&mut self, cx: &Cx, attr: &str, i: usize) -> Result<Option<Vec<i64>>, FrontendError> {
        if let Some(v) = cx.attrs.ints(attr)? {
            return Ok(Some(v));
        }
        Ok(self.const_input(cx, i)?.map(|t| t.to_i64_vec()))
    }

    fn ty(&self, v: Value) -> &TensorType {
        self.g.ty(v)
    }

    /// Adds an IR op, or its value if all inputs are constants (folding). Returns its results.
    fn emit(&mut self, cx: &Cx, op: Op, inputs: Vec<Value>) -> Result<Vec<Value>, FrontendError> {
        self.emit_named(cx, op, inputs, None)
    }

    fn emit1(&mut self, cx: &Cx, op: Op, inputs: Vec<Value>) -> Result<Value, FrontendError> {
        Ok(self.emit(cx, op, inputs)?[0])
    }

    /// Auxiliary IR nodes of one ONNX node get suffixed names so that messages stay unambiguous.
    fn emit_aux(&mut self, cx: &Cx, op: Op, inputs: Vec<Value>, suffix: &str) -> Result<Value, FrontendError> {
        Ok(self.emit_named(cx, op, inputs, Some(suffix))?[0])
    }

    fn emit_named(
        &mut self,
        cx: &Cx,
        op: Op,
        inputs: Vec<Value>,
        suffix: Option<&str>,
    ) -> Result<Vec<Value>, FrontendError> {
        let name = match suffix {
            Some(s) => format!("{}/{s}", cx.name),
            None => cx.name.clone(),
        };
        let shape_err = |source: polyhe_ir::IrError| FrontendError::Shape {
            node: cx.name.clone(),
            op: cx.node.op_type.clone(),
            source: Box::new(source),
        };
        if !inputs.is_empty() && inputs.iter().all(|&v| self.g.constant_of(v).is_some()) {
            // The results' sizes before they are allocated (amplification bound).
            let tys: Vec<TensorType> = inputs.iter().map(|&v| self.g.ty(v).clone()).collect();
            let n = polyhe_ir::infer::infer_types(&op, &tys, &self.g)
                .map_err(shape_err)?
                .iter()
                .map(|t| t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX))
                .fold(0usize, usize::saturating_add);
            self.reserve_elements(cx, n)?;
            let consts: Vec<&Tensor> = inputs.iter().filter_map(|&v| self.g.constant_of(v)).collect();
            let results = polyhe_ir::interp::eval_op(&op, &consts, &self.g).map_err(shape_err)?;
            return Ok(results.into_iter().map(|t| self.g.add_constant(t, name.clone())).collect());
        }
        let n = self.g.add_node(op, inputs, name).map_err(shape_err)?;
        Ok(self.g.nodes[n].outputs.clone())
    }

    /// A constant of `shape` about to be computed: within the size of one constant and the
    /// import's amplification bound ([`FOLD_AMPLIFICATION`]), checked before allocating it.
    fn reserve(&mut self, cx: &Cx, shape: &[usize]) -> Result<(), FrontendError> {
        check_size(cx, shape)?;
        self.reserve_elements(cx, shape.iter().product())
    }

    fn reserve_elements(&mut self, cx: &Cx, n: usize) -> Result<(), FrontendError> {
        let total = self.folded.saturating_add(n);
        if total > self.fold_budget {
            return Err(cx.invalid(format!(
                "computing this constant would bring the constants computed at import to {total} elements, over the bound of {} ({FOLD_AMPLIFICATION}× the model's weights, at least {MIN_FOLD_BUDGET})",
                self.fold_budget
            )));
        }
        self.folded = total;
        Ok(())
    }

    fn constant(&mut self, cx: &Cx, t: Tensor) -> Value {
        self.g.add_constant(t, cx.name.clone())
    }

    fn tensor(&self, cx: &Cx, ty: TensorType, data: Data) -> Result<Tensor, FrontendError> {
        Tensor::new(ty, data).map_err(|e| cx.invalid(e.to_string()))
    }

    /// The `com.microsoft` fused ops ([`SUPPORTED_MICROSOFT_OPS`]) as the ops they fuse:
    /// - `Gelu(x)`: erf GELU; `BiasGelu(x, b)`: erf GELU of `x + b`; `FastGelu(x[, b])`: tanh
    ///   GELU of `x (+ b)`;
    /// - `SkipLayerNormalization(x, skip, gamma[, beta[, bias]])`: layer norm over the last axis
    ///   of `x + skip (+ bias)`; outputs `(y, mean, inv_std_var, x + skip + bias)`, the extra ones
    ///   computed when read.
    fn translate_microsoft(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        match cx.op() {
            "Gelu" | "BiasGelu" | "FastGelu" => {
                let mut x = self.input(cx, 0)?;
                if let Some(b) = self.opt_input(cx, 1)? {
                    x = self.emit_aux(cx, Op::Add, vec![x, b], "bias")?;
                }
                let approx = if cx.op() == "FastGelu" { GeluApprox::Tanh } else { GeluApprox::Erf };
                self.emit(cx, Op::Gelu(approx), vec![x])
            }
            "SkipLayerNormalization" => {
                let x = self.input(cx, 0)?;
                let skip = self.input(cx, 1)?;
                let gamma = self.input(cx, 2)?;
                let beta = self.opt_input(cx, 3)?;
                let bias = self.opt_input(cx, 4)?;
                let epsilon = cx.attrs.float_or("epsilon", 1e-12)?;
                let mut sum = self.emit_aux(cx, Op::Add, vec![x, skip], "skip")?;
                if let Some(b) = bias {
                    sum = self.emit_aux(cx, Op::Add, vec![sum, b], "skip_bias")?;
                }
                let rank = self.ty(sum).rank();
                let axis = rank.checked_sub(1).ok_or_else(|| cx.invalid("a scalar input has no axis to normalize"))?;
                let mut inputs = vec![sum, gamma];
                inputs.extend(beta);
                let mut outs = self.emit(cx, Op::LayerNorm { axis, epsilon }, inputs)?;
                let (stats, sum_read) = (self.output_read(cx, 1) || self.output_read(cx, 2), self.output_read(cx, 3));
                if stats {
                    let (mean, inv) = self.mean_inv_std(cx, sum, axis, epsilon)?;
                    outs.extend([mean, inv]);
                } else if sum_read {
                    // Placeholders for the unread outputs 1 and 2 (never bound to a reader).
                    outs.extend([sum, sum]);
                }
                if sum_read {
                    outs.truncate(3);
                    outs.push(sum);
                }
                Ok(outs)
            }
            other => Err(cx.invalid(format!("{MICROSOFT}::{other} is not supported"))),
        }
    }

    /// Whether the node's output `k` exists and some node or graph output reads it.
    fn output_read(&self, cx: &Cx, k: usize) -> bool {
        cx.node.output.get(k).is_some_and(|o| !o.is_empty() && self.used.contains(o.as_str()))
    }

    /// Layer norm's statistics over the axes from `axis` on: mean and `1/√(var + eps)`.
    fn mean_inv_std(&mut self, cx: &Cx, x: Value, axis: usize, epsilon: f64) -> Result<(Value, Value), FrontendError> {
        let rank = self.ty(x).rank();
        let axes: Vec<usize> = (axis..rank).collect();
        let mean = self.emit_aux(cx, Op::ReduceMean { axes: axes.clone(), keepdims: true }, vec![x], "mean")?;
        let d = self.emit_aux(cx, Op::Sub, vec![x, mean], "centered")?;
        let d2 = self.emit_aux(cx, Op::Mul, vec![d, d], "squared")?;
        let var = self.emit_aux(cx, Op::ReduceMean { axes, keepdims: true }, vec![d2], "variance")?;
        let eps = self.g.add_constant(Tensor::scalar_f32(epsilon), format!("{}/epsilon", cx.name));
        let eps = self.emit_aux(cx, Op::Cast(self.ty(var).dtype), vec![eps], "epsilon_cast")?;
        let ve = self.emit_aux(cx, Op::Add, vec![var, eps], "variance_eps")?;
        let sd = self.emit_aux(cx, Op::Sqrt, vec![ve], "std")?;
        let inv = self.emit_aux(cx, Op::Reciprocal, vec![sd], "inv_std")?;
        Ok((mean, inv))
    }

    /// ONNX Einsum with one or two operands, as transposes, reshapes, sums and one (batched)
    /// matmul: letters in both operands and the output are batch axes, in both operands only
    /// contracted, in one operand and the output kept, in one operand only summed first. An
    /// ellipsis stands for the same leading axes in every term. Repeated letters within a term
    /// (diagonals) are refused.
    fn einsum(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        let eq: String = cx.attrs.string("equation")?.ok_or_else(|| cx.invalid("missing equation"))?;
        let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        let ins: Vec<Value> = (0..terms.len()).map(|i| self.input(cx, i)).collect::<Result<_, _>>()?;
        if !(1..=2).contains(&ins.len()) {
            return Err(cx.invalid(format!("{} operands (one or two are supported)", ins.len())));
        }
        // The ellipsis as the same placeholder letters (Greek, never in an equation) in every term,
        // right-aligned as broadcasting aligns axes.
        let mut ell = 0usize;
        for (t, &v) in terms.iter().zip(&ins) {
            if t.contains("...") {
                let named = t.replace("...", "").chars().count();
                ell = ell.max(
                    self.ty(v)
                        .rank()
                        .checked_sub(named)
                        .ok_or_else(|| cx.invalid(format!("term `{t}` has more letters than its operand's rank")))?,
                );
            }
        }
        let dots: String = (0..ell as u32).filter_map(|k| char::from_u32(0x3b1 + k)).collect();
        let expand = |t: &str, rank: usize| -> String {
            let named = t.replace("...", "").chars().count();
            let skip = ell - rank.saturating_sub(named).min(ell);
            t.replace("...", &dots.chars().skip(skip).collect::<String>())
        };
        let terms: Vec<Vec<char>> =
            terms.iter().zip(&ins).map(|(t, &v)| expand(t, self.ty(v).rank()).chars().collect()).collect();
        for (t, &v) in terms.iter().zip(&ins) {
            if t.len() != self.ty(v).rank() || t.iter().any(|c| !c.is_alphabetic()) {
                return Err(cx.invalid(format!(
                    "term `{}` does not match an operand of rank {}",
                    t.iter().collect::<String>(),
                    self.ty(v).rank()
                )));
            }
            if (1..t.len()).any(|i| t[..i].contains(&t[i])) {
                return Err(cx.invalid("a letter repeated within one term (a diagonal) is not supported"));
            }
        }
        let out: Vec<char> = match &rhs {
            Some(r) => r.replace("...", &dots).chars().collect(),
            None => {
                // Implicit output: the ellipsis, then the letters seen once, alphabetically.
                let mut once: Vec<char> = terms.concat().into_iter().filter(|c| c.is_ascii_alphabetic()).collect();
                once.sort_unstable();
                let all = terms.concat();
                once.dedup();
                once.retain(|c| all.iter().filter(|x| *x == c).count() == 1);
                dots.chars().chain(once).collect()
            }
        };
        // Size of each letter (operands must agree).
        let mut size: BTreeMap<char, usize> = BTreeMap::new();
        for (t, &v) in terms.iter().zip(&ins) {
            for (c, &d) in t.iter().zip(&self.ty(v).shape) {
                if let Some(&prev) = size.get(c) {
                    if prev != d {
                        return Err(cx.invalid(format!("letter `{c}` has sizes {prev} and {d}")));
                    }
                }
                size.insert(*c, d);
            }
        }
        if let Some(c) = out.iter().find(|c| !size.contains_key(c)) {
            return Err(cx.invalid(format!("output letter `{c}` is in no operand")));
        }
        // Sums a letter appearing only in its operand (and not the output) out first.
        let mut ops: Vec<(Value, Vec<char>)> = Vec::new();
        for (k, (t, &v)) in terms.iter().zip(&ins).enumerate() {
            let others: Vec<char> =
                terms.iter().enumerate().filter(|(j, _)| *j != k).flat_map(|(_, t)| t.clone()).collect();
            let axes: Vec<usize> = (0..t.len()).filter(|&i| !out.contains(&t[i]) && !others.contains(&t[i])).collect();
            if axes.is_empty() {
                ops.push((v, t.clone()));
            } else {
                let kept: Vec<char> = (0..t.len()).filter(|i| !axes.contains(i)).map(|i| t[i]).collect();
                let r = self.emit_aux(cx, Op::ReduceSum { axes, keepdims: false }, vec![v], &format!("sum{k}"))?;
                ops.push((r, kept));
            }
        }
        let y = if ops.len() == 1 {
            let (v, t) = ops.remove(0);
            self.einsum_permute(cx, v, &t, &out, "out")?
        } else {
            let (b, tb) = ops.remove(1);
            let (a, ta) = ops.remove(0);
            let batch: Vec<char> = out.iter().copied().filter(|c| ta.contains(c) && tb.contains(c)).collect();
            let free_a: Vec<char> = ta.iter().copied().filter(|c| out.contains(c) && !tb.contains(c)).collect();
            let free_b: Vec<char> = tb.iter().copied().filter(|c| out.contains(c) && !ta.contains(c)).collect();
            let contr: Vec<char> = ta.iter().copied().filter(|c| tb.contains(c) && !out.contains(c)).collect();
            let dims = |cs: &[char]| -> Vec<usize> { cs.iter().map(|c| size[c]).collect() };
            let prod = |cs: &[char]| -> usize { cs.iter().map(|c| size[c]).product() };
            let order_a: Vec<char> = batch.iter().chain(&free_a).chain(&contr).copied().collect();
            let order_b: Vec<char> = batch.iter().chain(&contr).chain(&free_b).copied().collect();
            let a = self.einsum_permute(cx, a, &ta, &order_a, "a")?;
            let b = self.einsum_permute(cx, b, &tb, &order_b, "b")?;
            let mut sa = dims(&batch);
            sa.extend([prod(&free_a), prod(&contr)]);
            let mut sb = dims(&batch);
            sb.extend([prod(&contr), prod(&free_b)]);
            let a = self.einsum_reshape(cx, a, sa, "a_matrix")?;
            let b = self.einsum_reshape(cx, b, sb, "b_matrix")?;
            let m = self.emit_aux(cx, Op::MatMul, vec![a, b], "matmul")?;
            let mut sm = dims(&batch);
            sm.extend(dims(&free_a));
            sm.extend(dims(&free_b));
            let m = self.einsum_reshape(cx, m, sm, "unflatten")?;
            let have: Vec<char> = batch.iter().chain(&free_a).chain(&free_b).copied().collect();
            self.einsum_permute(cx, m, &have, &out, "out")?
        };
        self.emit(cx, Op::Identity, vec![y])
    }

    /// `v` (axes lettered `have`) transposed to the order `want` (the same letters).
    fn einsum_permute(
        &mut self,
        cx: &Cx,
        v: Value,
        have: &[char],
        want: &[char],
        part: &str,
    ) -> Result<Value, FrontendError> {
        if have.len() != want.len() || want.iter().any(|c| !have.contains(c)) {
            return Err(cx.invalid(format!(
                "cannot produce `{}` from `{}`",
                want.iter().collect::<String>(),
                have.iter().collect::<String>()
            )));
        }
        let perm: Vec<usize> = want.iter().map(|c| have.iter().position(|h| h == c).unwrap_or(0)).collect();
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(v);
        }
        self.emit_aux(cx, Op::Transpose { perm }, vec![v], &format!("transpose_{part}"))
    }

    fn einsum_reshape(&mut self, cx: &Cx, v: Value, shape: Vec<usize>, part: &str) -> Result<Value, FrontendError> {
        if self.ty(v).shape == shape {
            return Ok(v);
        }
        self.emit_aux(cx, Op::Reshape { shape }, vec![v], part)
    }

    /// ONNX Mod from supported ops: `a − b·floor(a/b)` (integers, `fmod = 0`: the divisor's sign)
    /// or `a − b·trunc(a/b)` (`fmod = 1`, C's fmod; required for floats), in f64 and cast back.
    /// Exporters use it in shape logic, where it folds to a constant.
    fn modulo(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let dtype = self.ty(a).dtype;
        let fmod = cx.attrs.int_or("fmod", 0)? != 0;
        if dtype.is_float() && !fmod {
            return Err(cx.invalid("fmod = 0 on floating-point inputs (ONNX requires fmod = 1 for them)"));
        }
        let af = self.emit_aux(cx, Op::Cast(DType::F64), vec![a], "a_f64")?;
        let bf = self.emit_aux(cx, Op::Cast(DType::F64), vec![b], "b_f64")?;
        let q = self.emit_aux(cx, Op::Div, vec![af, bf], "quotient")?;
        let whole = if fmod {
            let zero = self.g.add_constant(
                Tensor::float(DType::F64, vec![], vec![0.0]).map_err(|e| cx.invalid(e.to_string()))?,
                format!("{}/zero", cx.name),
            );
            let neg = self.emit_aux(cx, Op::Less, vec![q, zero], "negative")?;
            let up = self.emit_aux(cx, Op::Ceil, vec![q], "ceil")?;
            let down = self.emit_aux(cx, Op::Floor, vec![q], "floor")?;
            self.emit_aux(cx, Op::Where, vec![neg, up, down], "trunc")?
        } else {
            self.emit_aux(cx, Op::Floor, vec![q], "floor")?
        };
        let m = self.emit_aux(cx, Op::Mul, vec![bf, whole], "multiple")?;
        let r = self.emit_aux(cx, Op::Sub, vec![af, m], "remainder")?;
        self.emit(cx, Op::Cast(dtype), vec![r])
    }

    /// ONNX Pad, constant mode: per axis, constant blocks concatenated before and after (negative
    /// pads slice). Its encrypted form is data movement plus a plaintext offset.
    fn pad(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        let x = self.input(cx, 0)?;
        let ty = self.ty(x).clone();
        let rank = ty.rank();
        let mode = cx.attrs.string("mode")?.unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(cx.invalid(format!("mode `{mode}` is not supported (only constant padding)")));
        }
        let pads = self.ints_attr_or_input(cx, "pads", 1)?.ok_or_else(|| cx.invalid("missing pads"))?;
        let value = match self.const_input(cx, 2)? {
            Some(t) => t.to_f64_vec().first().copied().unwrap_or(0.0),
            None => cx.attrs.float_or("value", 0.0)?,
        };
        let axes: Vec<usize> = match self.const_input(cx, 3)? {
            Some(t) => t.to_i64_vec().iter().map(|&a| cx.axis(a, rank)).collect::<Result<_, _>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(cx.invalid(format!("{} pads for {} axes (expected two per axis)", pads.len(), axes.len())));
        }
        let mut y = x;
        for (k, &axis) in axes.iter().enumerate() {
            let (before, after) = (pads[k], pads[k + axes.len()]);
            let dim = self.ty(y).shape[axis] as i64;
            // Negative pads crop.
            if before < 0 || after < 0 {
                let start = (-before).max(0);
                let end = dim - (-after).max(0);
                if start > end {
                    return Err(cx.invalid(format!("pads {before}, {after} crop more than axis {axis}'s {dim}")));
                }
                let op = Op::Slice { axes: vec![axis], starts: vec![start], ends: vec![end], steps: vec![1] };
                y = self.emit_aux(cx, op, vec![y], &format!("crop{axis}"))?;
            }
            let mut parts = Vec::new();
            for (side, n) in [("before", before), ("after", after)] {
                if n > 0 {
                    let mut shape = self.ty(y).shape.clone();
                    shape[axis] = n as usize;
                    self.reserve(cx, &shape)?;
                    let n_el: usize = shape.iter().product();
                    let data = if ty.dtype.is_float() {
                        Data::Float(vec![value; n_el])
                    } else {
                        Data::Int(vec![value as i64; n_el])
                    };
                    let t = self.tensor(cx, TensorType::new(ty.dtype, shape), data)?;
                    parts.push((side, self.g.add_constant(t, format!("{}/{side}{axis}", cx.name))));
                }
            }
            if parts.is_empty() {
                continue;
            }
            let mut ins = Vec::new();
            ins.extend(parts.iter().filter(|p| p.0 == "before").map(|p| p.1));
            ins.push(y);
            ins.extend(parts.iter().filter(|p| p.0 == "after").map(|p| p.1));
            y = self.emit_aux(cx, Op::Concat { axis }, ins, &format!("pad{axis}"))?;
        }
        // The node's own name on its result (an identity when nothing was padded).
        self.emit(cx, Op::Identity, vec![y])
    }

    /// Translates one node and binds its outputs.
    fn node(&mut self, node: &'a NodeProto, index: usize) -> Result<(), FrontendError> {
        let name = node_label(node, index);
        let cx = Cx { node, attrs: Attrs { list: &node.attribute, node: name.clone(), op: &node.op_type }, name };
        let outs = self.translate(&cx)?;
        for (i, oname) in node.output.iter().enumerate() {
            if oname.is_empty() {
                continue;
            }
            match outs.get(i) {
                Some(&v) => {
                    self.env.insert(oname.clone(), v);
                }
                None if !self.used.contains(oname.as_str()) => {}
                None => return Err(cx.invalid(format!("output {i} (`{oname}`) is not supported, but it is used"))),
            }
        }
        Ok(())
    }

    fn translate(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        if cx.node.domain == MICROSOFT {
            return self.translate_microsoft(cx);
        }
        match cx.op() {
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual"
            | "And" | "Or" | "Xor" => {
                let op = match cx.op() {
                    "Add" => Op::Add,
                    "Sub" => Op::Sub,
                    "Mul" => Op::Mul,
                    "Div" => Op::Div,
                    "Pow" => Op::Pow,
                    "Equal" => Op::Equal,
                    "Less" => Op::Less,
                    "LessOrEqual" => Op::LessOrEqual,
                    "Greater" => Op::Greater,
                    "GreaterOrEqual" => Op::GreaterOrEqual,
                    "And" => Op::And,
                    "Or" => Op::Or,
                    _ => Op::Xor,
                };
                let a = self.input(cx, 0)?;
                let b = self.input(cx, 1)?;
                self.emit(cx, op, vec![a, b])
            }
            "Max" | "Min" | "Sum" | "Mean" => {
                let op = match cx.op() {
                    "Max" => Op::Max,
                    "Min" => Op::Min,
                    _ => Op::Add,
                };
                let n = cx.node.input.len();
                let mut acc = self.input(cx, 0)?;
                for i in 1..n {
                    let b = self.input(cx, i)?;
                    acc = self.emit_aux(cx, op.clone(), vec![acc, b], &format!("{i}"))?;
                }
                if cx.op() == "Mean" && n > 1 {
                    let dtype = self.ty(acc).dtype;
                    let count = self.tensor(cx, TensorType::new(dtype, vec![]), Data::Float(vec![n as f64]))?;
                    let count = self.constant(cx, count);
                    acc = self.emit_aux(cx, Op::Div, vec![acc, count], "mean")?;
                }
                one(acc)
            }
            "Tile" => {
                // Tile = Reshape to [1, d0, 1, d1, ...], Expand to [r0, d0, r1, d1, ...], Reshape to [r0·d0, ...].
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                let reps = self.const_input(cx, 1)?.ok_or_else(|| cx.invalid("missing repeats"))?.to_i64_vec();
                if reps.len() != shape.len() || reps.iter().any(|&r| r < 0) {
                    return Err(cx.invalid(format!("repeats {reps:?} do not fit rank {}", shape.len())));
                }
                let inter: Vec<usize> = shape.iter().flat_map(|&d| [1, d]).collect();
                let wide: Vec<usize> = shape.iter().zip(&reps).flat_map(|(&d, &r)| [r as usize, d]).collect();
                let out: Vec<usize> = shape.iter().zip(&reps).map(|(&d, &r)| d * r as usize).collect();
                check_size(cx, &out)?;
                let a = self.emit_aux(cx, Op::Reshape { shape: inter }, vec![x], "split_axes")?;
                let b = self.emit_aux(cx, Op::Expand { shape: wide }, vec![a], "repeat")?;
                self.emit(cx, Op::Reshape { shape: out }, vec![b])
            }
            "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Exp" | "Log" | "Erf" | "Tanh" | "Sigmoid" | "Relu" | "Floor"
            | "Ceil" | "Not" | "IsNaN" => {
                let op = match cx.op() {
                    "Neg" => Op::Neg,
                    "Abs" => Op::Abs,
                    "Sqrt" => Op::Sqrt,
                    "Reciprocal" => Op::Reciprocal,
                    "Exp" => Op::Exp,
                    "Log" => Op::Log,
                    "Erf" => Op::Erf,
                    "Tanh" => Op::Tanh,
                    "Sigmoid" => Op::Sigmoid,
                    "Relu" => Op::Relu,
                    "Floor" => Op::Floor,
                    "Ceil" => Op::Ceil,
                    "Not" => Op::Not,
                    _ => Op::IsNaN,
                };
                let x = self.input(cx, 0)?;
                self.emit(cx, op, vec![x])
            }
            "IsInf" => {
                let x = self.input(cx, 0)?;
                let neg = cx.attrs.int_or("detect_negative", 1)? != 0;
                let pos = cx.attrs.int_or("detect_positive", 1)? != 0;
                match (neg, pos) {
                    (true, true) => self.emit(cx, Op::IsInf, vec![x]),
                    (false, false) => {
                        let shape = self.ty(x).shape.clone();
                        let n = self.ty(x).numel();
                        let t = self.tensor(cx, TensorType::new(DType::Bool, shape), Data::Bool(vec![false; n]))?;
                        one(self.constant(cx, t))
                    }
                    (neg, _) => {
                        // One sign only: isinf(x) and (x > 0 | x < 0).
                        let inf = self.emit_aux(cx, Op::IsInf, vec![x], "isinf")?;
                        let dtype = self.ty(x).dtype;
                        let zero = self.constant(
                            cx,
                            Tensor::new(TensorType::new(dtype, vec![]), Data::Float(vec![0.0]))
                                .map_err(|e| cx.invalid(e.to_string()))?,
                        );
                        let sign =
                            self.emit_aux(cx, if neg { Op::Less } else { Op::Greater }, vec![x, zero], "sign")?;
                        self.emit(cx, Op::And, vec![inf, sign])
                    }
                }
            }
            "Identity" | "Dropout" => {
                // Inference: Dropout is the identity; its mask output is rejected in `node` if used.
                one(self.input(cx, 0)?)
            }
            "Cast" | "CastLike" => {
                let x = self.input(cx, 0)?;
                let to = if cx.op() == "Cast" {
                    let to = cx.attrs.int("to")?.ok_or_else(|| cx.invalid("missing attribute `to`"))?;
                    ir_dtype(to as i32)
                        .ok_or_else(|| cx.invalid(format!("cannot cast to {}", data_type::name(to as i32))))?
                } else {
                    let like = self.input(cx, 1)?;
                    self.ty(like).dtype
                };
                self.emit(cx, Op::Cast(to), vec![x])
            }
            "Clip" => {
                let x = self.input(cx, 0)?;
                let scalar = |t: Option<Tensor>, which: &str| -> Result<Option<f64>, FrontendError> {
                    match t {
                        None => Ok(None),
                        Some(t) if t.numel() == 1 => Ok(Some(t.to_f64_vec()[0])),
                        Some(_) => Err(cx.invalid(format!("{which} must be a scalar"))),
                    }
                };
                let mut min = scalar(self.const_input(cx, 1)?, "min")?;
                let mut max = scalar(self.const_input(cx, 2)?, "max")?;
                // Before opset 11 the bounds were attributes.
                if let Some(v) = cx.attrs.float("min")? {
                    min = Some(v);
                }
                if let Some(v) = cx.attrs.float("max")? {
                    max = Some(v);
                }
                self.emit(cx, Op::Clip { min, max }, vec![x])
            }
            "Gelu" => {
                let x = self.input(cx, 0)?;
                let approx = match cx.attrs.string("approximate")?.as_deref() {
                    None | Some("none") => GeluApprox::Erf,
                    Some("tanh") => GeluApprox::Tanh,
                    Some(other) => return Err(cx.invalid(format!("unknown approximate `{other}`"))),
                };
                self.emit(cx, Op::Gelu(approx), vec![x])
            }
            "Where" => {
                let c = self.input(cx, 0)?;
                let a = self.input(cx, 1)?;
                let b = self.input(cx, 2)?;
                self.emit(cx, Op::Where, vec![c, a, b])
            }
            "Softmax" | "LogSoftmax" => {
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                let rank = shape.len();
                let legacy = self.opset < 13;
                let axis = cx.axis(cx.attrs.int_or("axis", if legacy { 1 } else { -1 })?, rank)?;
                let log = cx.op() == "LogSoftmax";
                let y = if legacy && axis + 1 != rank {
                    // Opset < 13 flattens to [prod(before axis), prod(from axis)] and normalizes rows.
                    let rows: usize = shape[..axis].iter().product();
                    let cols: usize = shape[axis..].iter().product();
                    let flat = self.emit_aux(cx, Op::Reshape { shape: vec![rows, cols] }, vec![x], "flatten")?;
                    let s = self.emit_aux(cx, Op::Softmax { axis: 1 }, vec![flat], "softmax")?;
                    let s = if log { self.emit_aux(cx, Op::Log, vec![s], "log")? } else { s };
                    return Ok(vec![self.emit1(cx, Op::Reshape { shape }, vec![s])?]);
                } else if log {
                    self.emit_aux(cx, Op::Softmax { axis }, vec![x], "softmax")?
                } else {
                    return self.emit(cx, Op::Softmax { axis }, vec![x]);
                };
                self.emit(cx, Op::Log, vec![y])
            }
            "LayerNormalization" => {
                let x = self.input(cx, 0)?;
                let scale = self.input(cx, 1)?;
                let bias = self.opt_input(cx, 2)?;
                let rank = self.ty(x).rank();
                let axis = cx.axis(cx.attrs.int_or("axis", -1)?, rank)?;
                let epsilon = cx.attrs.float_or("epsilon", 1e-5)?;
                let mut inputs = vec![x, scale];
                inputs.extend(bias);
                let mut outs = self.emit(cx, Op::LayerNorm { axis, epsilon }, inputs)?;
                // The training stash outputs Mean and InvStdDev, when a consumer reads them.
                if self.output_read(cx, 1) || self.output_read(cx, 2) {
                    let (mean, inv) = self.mean_inv_std(cx, x, axis, epsilon)?;
                    outs.extend([mean, inv]);
                }
                Ok(outs)
            }
            "Mod" => self.modulo(cx),
            "ArgMax" | "ArgMin" => {
                let x = self.input(cx, 0)?;
                let axis = cx.axis(cx.attrs.int_or("axis", 0)?, self.ty(x).rank())?;
                let keepdims = cx.attrs.int_or("keepdims", 1)? != 0;
                let last = cx.attrs.int_or("select_last_index", 0)? != 0;
                let op = if cx.op() == "ArgMax" {
                    Op::ArgMax { axis, keepdims, last }
                } else {
                    Op::ArgMin { axis, keepdims, last }
                };
                self.emit(cx, op, vec![x])
            }
            "Einsum" => self.einsum(cx),
            "Pad" => self.pad(cx),
            "BatchNormalization" => {
                if cx.attrs.int_or("training_mode", 0)? != 0 {
                    return Err(cx.invalid("training mode is not supported (inference only)"));
                }
                let inputs = (0..5).map(|i| self.input(cx, i)).collect::<Result<Vec<_>, _>>()?;
                let epsilon = cx.attrs.float_or("epsilon", 1e-5)?;
                self.emit(cx, Op::BatchNorm { epsilon }, inputs)
            }
            "MatMul" => {
                let a = self.input(cx, 0)?;
                let b = self.input(cx, 1)?;
                self.emit(cx, Op::MatMul, vec![a, b])
            }
            "Gemm" => {
                let mut inputs = vec![self.input(cx, 0)?, self.input(cx, 1)?];
                inputs.extend(self.opt_input(cx, 2)?);
                let op = Op::Gemm {
                    alpha: cx.attrs.float_or("alpha", 1.0)?,
                    beta: cx.attrs.float_or("beta", 1.0)?,
                    trans_a: cx.attrs.int_or("transA", 0)? != 0,
                    trans_b: cx.attrs.int_or("transB", 0)? != 0,
                };
                self.emit(cx, op, inputs)
            }
            "Conv" => self.conv(cx),
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" | "ReduceSumSquare" => {
                let x = self.input(cx, 0)?;
                let rank = self.ty(x).rank();
                let keepdims = cx.attrs.int_or("keepdims", 1)? != 0;
                let noop = cx.attrs.int_or("noop_with_empty_axes", 0)? != 0;
                let axes = self.ints_attr_or_input(cx, "axes", 1)?.unwrap_or_default();
                if axes.is_empty() && noop {
                    return one(x);
                }
                let mut axes = if axes.is_empty() { (0..rank).collect() } else { cx.axes(&axes, rank)? };
                axes.sort_unstable();
                let op = match cx.op() {
                    "ReduceMean" => Op::ReduceMean { axes, keepdims },
                    "ReduceMax" => Op::ReduceMax { axes, keepdims },
                    "ReduceMin" => Op::ReduceMin { axes, keepdims },
                    _ => Op::ReduceSum { axes, keepdims },
                };
                match cx.op() {
                    "ReduceL2" | "ReduceSumSquare" => {
                        let sq = self.emit_aux(cx, Op::Mul, vec![x, x], "square")?;
                        if cx.op() == "ReduceSumSquare" {
                            return self.emit(cx, op, vec![sq]);
                        }
                        let s = self.emit_aux(cx, op, vec![sq], "sum")?;
                        self.emit(cx, Op::Sqrt, vec![s])
                    }
                    _ => self.emit(cx, op, vec![x]),
                }
            }
            "GlobalAveragePool" => {
                let x = self.input(cx, 0)?;
                let rank = self.ty(x).rank();
                if rank < 3 {
                    return Err(cx.invalid(format!("expects rank >= 3, got {rank}")));
                }
                self.emit(cx, Op::ReduceMean { axes: (2..rank).collect(), keepdims: true }, vec![x])
            }
            "Transpose" => {
                let x = self.input(cx, 0)?;
                let rank = self.ty(x).rank();
                let perm = match cx.attrs.ints("perm")? {
                    Some(p) => {
                        let p = cx.axes(&p, rank)?;
                        if p.len() != rank {
                            return Err(cx.invalid(format!("perm has {} entries for rank {rank}", p.len())));
                        }
                        p
                    }
                    None => (0..rank).rev().collect(),
                };
                self.emit(cx, Op::Transpose { perm }, vec![x])
            }
            "Reshape" => {
                let x = self.input(cx, 0)?;
                let spec = match self.const_input(cx, 1)? {
                    Some(t) => t.to_i64_vec(),
                    None => cx.attrs.ints("shape")?.ok_or_else(|| cx.invalid("missing shape"))?,
                };
                let allowzero = cx.attrs.int_or("allowzero", 0)? != 0;
                let shape = reshape_target(&self.ty(x).shape, &spec, allowzero).map_err(|m| cx.invalid(m))?;
                self.emit(cx, Op::Reshape { shape }, vec![x])
            }
            "Flatten" => {
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                let a = cx.attrs.int_or("axis", 1)?;
                let axis = if a < 0 { a + shape.len() as i64 } else { a };
                if axis < 0 || axis > shape.len() as i64 {
                    return Err(cx.invalid(format!("axis {a} is out of range for rank {}", shape.len())));
                }
                let axis = axis as usize;
                let target = vec![shape[..axis].iter().product(), shape[axis..].iter().product()];
                self.emit(cx, Op::Reshape { shape: target }, vec![x])
            }
            "Squeeze" => {
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                // No axes (or an empty list) squeezes every size-1 dim.
                let target: Vec<usize> = match self.ints_attr_or_input(cx, "axes", 1)?.filter(|a| !a.is_empty()) {
                    Some(axes) => {
                        let axes = cx.axes(&axes, shape.len())?;
                        if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
                            return Err(cx.invalid(format!("cannot squeeze axis {a} of size {}", shape[a])));
                        }
                        shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
                    }
                    None => shape.iter().copied().filter(|&d| d != 1).collect(),
                };
                self.emit(cx, Op::Reshape { shape: target }, vec![x])
            }
            "Unsqueeze" => {
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                let axes = self.ints_attr_or_input(cx, "axes", 1)?.ok_or_else(|| cx.invalid("missing axes"))?;
                let out_rank = shape.len() + axes.len();
                let axes = cx.axes(&axes, out_rank)?;
                let mut rest = shape.iter();
                let target: Vec<usize> = (0..out_rank)
                    .map(|i| if axes.contains(&i) { 1 } else { rest.next().copied().unwrap_or(1) })
                    .collect();
                self.emit(cx, Op::Reshape { shape: target }, vec![x])
            }
            "Concat" => {
                let inputs = (0..cx.node.input.len()).map(|i| self.input(cx, i)).collect::<Result<Vec<_>, _>>()?;
                let Some(&first) = inputs.first() else {
                    return Err(cx.invalid("no inputs"));
                };
                let rank = self.ty(first).rank();
                let axis =
                    cx.axis(cx.attrs.int("axis")?.ok_or_else(|| cx.invalid("missing attribute `axis`"))?, rank)?;
                self.emit(cx, Op::Concat { axis }, inputs)
            }
            "Split" => {
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                let axis = cx.axis(cx.attrs.int_or("axis", 0)?, shape.len())?;
                let dim = shape[axis];
                let sizes: Vec<usize> = match self.ints_attr_or_input(cx, "split", 1)? {
                    Some(s) if !s.is_empty() => {
                        if s.iter().any(|&d| d < 0) || s.iter().sum::<i64>() != dim as i64 {
                            return Err(cx.invalid(format!("split sizes {s:?} do not add up to dimension {dim}")));
                        }
                        s.iter().map(|&d| d as usize).collect()
                    }
                    _ => {
                        let n = match cx.attrs.int("num_outputs")? {
                            Some(n) => n as usize,
                            None => cx.node.output.len(),
                        };
                        if n == 0 {
                            return Err(cx.invalid("no outputs"));
                        }
                        // Opset 18: chunks of ceil(dim / n), the last one smaller.
                        let chunk = dim.div_ceil(n);
                        let sizes: Vec<usize> = (0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect();
                        if sizes.contains(&0) {
                            return Err(cx.invalid(format!("cannot split dimension {dim} into {n} parts")));
                        }
                        sizes
                    }
                };
                self.emit(cx, Op::Split { axis, sizes }, vec![x])
            }
            "Slice" => self.slice(cx),
            "Gather" | "GatherElements" => {
                let data = self.input(cx, 0)?;
                let idx = self.input(cx, 1)?;
                let axis = cx.axis(cx.attrs.int_or("axis", 0)?, self.ty(data).rank())?;
                let op = if cx.op() == "Gather" { Op::Gather { axis } } else { Op::GatherElements { axis } };
                self.emit(cx, op, vec![data, idx])
            }
            "Expand" => {
                let x = self.input(cx, 0)?;
                let spec = self.const_input(cx, 1)?.ok_or_else(|| cx.invalid("missing shape"))?.to_i64_vec();
                if spec.iter().any(|&d| d < 0) {
                    return Err(cx.invalid(format!("negative size in shape {spec:?}")));
                }
                let spec: Vec<usize> = spec.iter().map(|&d| d as usize).collect();
                let shape = polyhe_ir::infer::broadcast_shapes(&self.ty(x).shape, &spec)
                    .ok_or_else(|| cx.invalid(format!("cannot expand {} to shape {spec:?}", self.ty(x))))?;
                check_size(cx, &shape)?;
                self.emit(cx, Op::Expand { shape }, vec![x])
            }
            "Constant" => {
                let a = &cx.attrs;
                let t = if let Some(t) = a.tensor("value")? {
                    tensor_from_proto(t)?
                } else if let Some(f) = a.float("value_float")? {
                    Tensor::scalar_f32(f)
                } else if let Some(fs) = a.floats("value_floats")? {
                    let n = fs.len();
                    self.tensor(
                        cx,
                        TensorType::new(DType::F32, vec![n]),
                        Data::Float(fs.into_iter().map(f64::from).collect()),
                    )?
                } else if let Some(i) = a.int("value_int")? {
                    self.tensor(cx, TensorType::new(DType::I64, vec![]), Data::Int(vec![i]))?
                } else if let Some(is) = a.ints("value_ints")? {
                    self.tensor(cx, TensorType::new(DType::I64, vec![is.len()]), Data::Int(is))?
                } else {
                    return Err(cx.invalid("no supported value attribute (value, value_float(s), value_int(s))"));
                };
                one(self.constant(cx, t))
            }
            "Shape" => {
                let x = self.input(cx, 0)?;
                let shape = self.ty(x).shape.clone();
                let rank = shape.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let start = clamp(cx.attrs.int_or("start", 0)?);
                let end = clamp(cx.attrs.int_or("end", rank)?);
                let dims: Vec<i64> = shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
                let t = self.tensor(cx, TensorType::new(DType::I64, vec![dims.len()]), Data::Int(dims))?;
                one(self.constant(cx, t))
            }
            "Size" => {
                let x = self.input(cx, 0)?;
                let n = self.ty(x).numel() as i64;
                let t = self.tensor(cx, TensorType::new(DType::I64, vec![]), Data::Int(vec![n]))?;
                one(self.constant(cx, t))
            }
            "ConstantOfShape" => {
                let spec = self.const_input(cx, 0)?.ok_or_else(|| cx.invalid("missing shape"))?.to_i64_vec();
                if spec.iter().any(|&d| d < 0) {
                    return Err(cx.invalid(format!("negative size in shape {spec:?}")));
                }
                let shape: Vec<usize> = spec.iter().map(|&d| d as usize).collect();
                self.reserve(cx, &shape)?;
                let fill = match cx.attrs.tensor("value")? {
                    Some(t) => tensor_from_proto(t)?,
                    None => Tensor::scalar_f32(0.0),
                };
                if fill.numel() != 1 {
                    return Err(cx.invalid("value must have one element"));
                }
                let n: usize = shape.iter().product();
                let data = match &fill.data {
                    Data::Float(v) => Data::Float(vec![v[0]; n]),
                    Data::Int(v) => Data::Int(vec![v[0]; n]),
                    Data::Bool(v) => Data::Bool(vec![v[0]; n]),
                };
                let t = self.tensor(cx, TensorType::new(fill.dtype(), shape), data)?;
                one(self.constant(cx, t))
            }
            "Range" => {
                let mut get = |i: usize| -> Result<Tensor, FrontendError> {
                    let t = self.const_input(cx, i)?.ok_or_else(|| cx.invalid(format!("missing input {i}")))?;
                    if t.numel() != 1 {
                        return Err(cx.invalid(format!("input {i} must be a scalar")));
                    }
                    Ok(t)
                };
                let (start, limit, delta) = (get(0)?, get(1)?, get(2)?);
                let dtype = start.dtype();
                let t = match (&start.data, &limit.data, &delta.data) {
                    (Data::Int(s), Data::Int(l), Data::Int(d)) => {
                        let (s, l, d) = (s[0], l[0], d[0]);
                        if d == 0 {
                            return Err(cx.invalid("delta is 0"));
                        }
                        let n = ((l as f64 - s as f64) / d as f64).ceil().max(0.0) as usize;
                        self.reserve(cx, &[n])?;
                        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
                        self.tensor(cx, TensorType::new(dtype, vec![n]), Data::Int(v))?
                    }
                    (Data::Float(s), Data::Float(l), Data::Float(d)) => {
                        let (s, l, d) = (s[0], l[0], d[0]);
                        if d == 0.0 {
                            return Err(cx.invalid("delta is 0"));
                        }
                        let n = ((l - s) / d).ceil().max(0.0) as usize;
                        self.reserve(cx, &[n])?;
                        let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
                        self.tensor(cx, TensorType::new(dtype, vec![n]), Data::Float(v))?
                    }
                    _ => return Err(cx.invalid("start, limit and delta must have the same numeric type")),
                };
                one(self.constant(cx, t))
            }
            other => Err(cx.invalid(format!("op `{other}` has no translation (internal: listed as supported)"))),
        }
    }

    fn conv(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        let x = self.input(cx, 0)?;
        let w = self.input(cx, 1)?;
        let mut inputs = vec![x, w];
        inputs.extend(self.opt_input(cx, 2)?);
        let xs = self.ty(x).shape.clone();
        let ws = self.ty(w).shape.clone();
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(cx.invalid(format!(
                "expects x and w of the same rank >= 3, got {} and {}",
                self.ty(x),
                self.ty(w)
            )));
        }
        let sp = xs.len() - 2;
        let to_usize = |v: Vec<i64>, what: &str| -> Result<Vec<usize>, FrontendError> {
            if v.len() != sp || v.iter().any(|&d| d < 0) {
                return Err(cx.invalid(format!("{what} {v:?} does not fit {sp} spatial dims")));
            }
            Ok(v.into_iter().map(|d| d as usize).collect())
        };
        let kernel_shape = match cx.attrs.ints("kernel_shape")? {
            Some(k) => to_usize(k, "kernel_shape")?,
            None => ws[2..].to_vec(),
        };
        let strides = match cx.attrs.ints("strides")? {
            Some(s) => to_usize(s, "strides")?,
            None => vec![1; sp],
        };
        let dilations = match cx.attrs.ints("dilations")? {
            Some(s) => to_usize(s, "dilations")?,
            None => vec![1; sp],
        };
        let group = cx.attrs.int_or("group", 1)?;
        if group < 1 {
            return Err(cx.invalid(format!("group {group}")));
        }
        let auto_pad = cx.attrs.string("auto_pad")?.unwrap_or_default();
        let pads = match auto_pad.as_str() {
            "" | "NOTSET" => match cx.attrs.ints("pads")? {
                Some(p) => {
                    if p.len() != 2 * sp || p.iter().any(|&d| d < 0) {
                        return Err(cx.invalid(format!("pads {p:?} do not fit {sp} spatial dims")));
                    }
                    p.into_iter().map(|d| d as usize).collect()
                }
                None => vec![0; 2 * sp],
            },
            "VALID" => vec![0; 2 * sp],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut begin = Vec::with_capacity(sp);
                let mut end = Vec::with_capacity(sp);
                for i in 0..sp {
                    let input = xs[2 + i];
                    let s = strides[i].max(1);
                    let out = input.div_ceil(s);
                    let needed = (out.saturating_sub(1)) * s + (kernel_shape[i].saturating_sub(1)) * dilations[i] + 1;
                    let total = needed.saturating_sub(input);
                    let small = total / 2;
                    if auto_pad == "SAME_UPPER" {
                        begin.push(small);
                        end.push(total - small);
                    } else {
                        begin.push(total - small);
                        end.push(small);
                    }
                }
                begin.extend(end);
                begin
            }
            other => return Err(cx.invalid(format!("unknown auto_pad `{other}`"))),
        };
        self.emit(cx, Op::Conv { kernel_shape, strides, pads, dilations, group: group as usize }, inputs)
    }

    fn slice(&mut self, cx: &Cx) -> Result<Vec<Value>, FrontendError> {
        let x = self.input(cx, 0)?;
        let shape = self.ty(x).shape.clone();
        // Opset >= 10: starts/ends/axes/steps are inputs; before, attributes.
        let (starts, ends, axes, steps) = if cx.node.input.len() > 1 {
            let starts = self.const_input(cx, 1)?.ok_or_else(|| cx.invalid("missing starts"))?.to_i64_vec();
            let ends = self.const_input(cx, 2)?.ok_or_else(|| cx.invalid("missing ends"))?.to_i64_vec();
            let axes = self.const_input(cx, 3)?.map(|t| t.to_i64_vec());
            let steps = self.const_input(cx, 4)?.map(|t| t.to_i64_vec());
            (starts, ends, axes, steps)
        } else {
            let starts = cx.attrs.ints("starts")?.ok_or_else(|| cx.invalid("missing starts"))?;
            let ends = cx.attrs.ints("ends")?.ok_or_else(|| cx.invalid("missing ends"))?;
            (starts, ends, cx.attrs.ints("axes")?, None)
        };
        let n = starts.len();
        let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; n]);
        if ends.len() != n || axes.len() != n || steps.len() != n {
            return Err(cx.invalid(format!(
                "starts, ends, axes and steps have different lengths ({n}, {}, {}, {})",
                ends.len(),
                axes.len(),
                steps.len()
            )));
        }
        let axes = cx.axes(&axes, shape.len())?;
        let (mut cs, mut ce) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let (s, e) = clamp_slice(starts[i], ends[i], steps[i], shape[axes[i]] as i64).map_err(|m| cx.invalid(m))?;
            cs.push(s);
            ce.push(e);
        }
        self.emit(cx, Op::Slice { axes, starts: cs, ends: ce, steps }, vec![x])
    }
}

/// Constants the importer materializes itself (ConstantOfShape, Range) are bounded, so that a corrupt
/// model gives an error instead of exhausting memory.
const MAX_CONSTANT_ELEMENTS: usize = 1 << 28;

fn check_size(cx: &Cx, shape: &[usize]) -> Result<(), FrontendError> {
    match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_CONSTANT_ELEMENTS => Ok(()),
        _ => Err(cx.invalid(format!("constant of shape {shape:?} is too large"))),
    }
}

fn one(v: Value) -> Result<Vec<Value>, FrontendError> {
    Ok(vec![v])
}

/// ONNX Slice clamping of one axis: negative indices count from the end, then starts/ends are clamped to
/// `[0, dim]` for a positive step and to `[-1, dim - 1]` (start `[0, dim-1]`) for a negative one.
pub(crate) fn clamp_slice(start: i64, end: i64, step: i64, dim: i64) -> Result<(i64, i64), String> {
    if step == 0 {
        return Err("slice step is 0".into());
    }
    let adj = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (s, e) = (adj(start), adj(end));
    Ok(if step > 0 { (s.clamp(0, dim), e.clamp(0, dim)) } else { (s.clamp(0, (dim - 1).max(0)), e.clamp(-1, dim - 1)) })
}

/// Static target of an ONNX Reshape: `0` copies the input dim (unless `allowzero`), one `-1` is inferred.
pub(crate) fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let numel: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 if !allowzero => {
                let Some(&dim) = input.get(i) else {
                    return Err(format!("shape {spec:?}: 0 at position {i} has no input dim to copy"));
                };
                out.push(dim);
            }
            -1 => {
                if infer.is_some() {
                    return Err(format!("shape {spec:?} has more than one -1"));
                }
                infer = Some(i);
                out.push(1);
            }
            d if d < 0 => return Err(format!("shape {spec:?} has a negative size {d}")),
            d => out.push(d as usize),
        }
    }
    let known =
        out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| format!("shape {spec:?} is too large"))?;
    if let Some(i) = infer {
        if numel.checked_rem(known) != Some(0) {
            return Err(format!("cannot reshape {input:?} ({numel} elements) to {spec:?}"));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(format!("cannot reshape {input:?} ({numel} elements) to {spec:?}"));
    }
    Ok(out)
}
