//! The verifier: checks the structural invariants every pass may rely on and every builder must keep.
//!
//! [`verify`] returns the first violation as [`IrError::Verifier`], naming the node (id and name) and
//! the value involved. Invariants, in the order they are checked:
//!
//! 1. **Constants are well-formed**: each pool tensor's storage variant fits its dtype (`Float` for
//!    f16/f32/f64, `Int` for integers, `Bool` for bool) and its element count equals its shape's product.
//! 2. **Graph inputs are defined where they appear**: each `g.inputs[i]` exists in the value arena and
//!    its def is `ValueDef::Input(i)`.
//! 3. **Node results are defined where they appear**: each `g.nodes[n].outputs[i]` exists and its def is
//!    `ValueDef::Result(n, i)`.
//! 4. **No value is defined twice**: a value appears at most once among all graph inputs and node
//!    results.
//! 5. **Every value is defined**: each value in the arena appears exactly where its def says (so there
//!    are no orphan values whose def points at a slot holding another value). Its type's element count
//!    fits in `usize` (so shape arithmetic downstream cannot overflow).
//! 6. **Topological storage order**: each node input is a graph input or a result of an *earlier* node.
//! 7. **Arity**: each node has the number of inputs its op takes (e.g. 2 for `add`, 2 or 3 for `gemm`,
//!    at least 1 for `concat`) and `op.num_outputs()` results.
//! 8. **Constants**: a `const` node refers to an existing pool constant and its result type equals that
//!    constant's type.
//! 9. **Types**: each node's result types equal [`crate::infer_types`] of its op and input types (and
//!    inference succeeds).
//! 10. **Graph outputs exist**: each `g.outputs[j]` is a value of the arena (defined, by 5).
//! 11. **Names are unique**: among graph inputs that have a name, no two share it; likewise among graph
//!     outputs.
//!
//! The verifier never panics on a malformed graph: every lookup is checked before use.

use std::collections::HashMap;

use cranelift_entity::SecondaryMap;

use crate::{Data, Graph, IrError, Node, Op, Value, ValueDef};

/// Where a value was found to be defined while scanning.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
enum Seen {
    #[default]
    Nowhere,
    Input(usize),
    Result(Node, usize),
}

fn describe(g: &Graph, s: Seen) -> String {
    match s {
        Seen::Nowhere => "nowhere".to_string(),
        Seen::Input(i) => format!("graph input {i}"),
        Seen::Result(n, i) => format!("result {i} of {}", node_label(g, n)),
    }
}

fn node_label(g: &Graph, n: Node) -> String {
    match g.nodes.get(n) {
        Some(d) => format!("node {n} `{}` ({})", d.name, d.op.name()),
        None => format!("node {n}"),
    }
}

fn value_label(g: &Graph, v: Value) -> String {
    match g.values.get(v).and_then(|d| d.name.as_deref()) {
        Some(name) => format!("{v} `{name}`"),
        None => v.to_string(),
    }
}

fn fail<T>(msg: String) -> Result<T, IrError> {
    Err(IrError::Verifier(msg))
}

/// Input count an op accepts: `(min, max)`, `max = None` for variadic. Exhaustive on purpose: a new op
/// must state its arity here.
fn arity(op: &Op) -> (usize, Option<usize>) {
    match op {
        Op::Constant(_) => (0, Some(0)),
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Pow
        | Op::Max
        | Op::Min
        | Op::Equal
        | Op::Less
        | Op::LessOrEqual
        | Op::Greater
        | Op::GreaterOrEqual
        | Op::And
        | Op::Or
        | Op::Xor
        | Op::MatMul
        | Op::Gather { .. }
        | Op::GatherElements { .. } => (2, Some(2)),
        Op::Neg
        | Op::Abs
        | Op::Sqrt
        | Op::Reciprocal
        | Op::Exp
        | Op::Log
        | Op::Erf
        | Op::Tanh
        | Op::Sigmoid
        | Op::Relu
        | Op::Floor
        | Op::Ceil
        | Op::Not
        | Op::IsNaN
        | Op::IsInf
        | Op::Identity
        | Op::Cast(_)
        | Op::Clip { .. }
        | Op::Gelu(_)
        | Op::Chebyshev { .. }
        | Op::Softmax { .. }
        | Op::ReduceMean { .. }
        | Op::ReduceSum { .. }
        | Op::ReduceMax { .. }
        | Op::ReduceMin { .. }
        | Op::ArgMax { .. }
        | Op::ArgMin { .. }
        | Op::Transpose { .. }
        | Op::Reshape { .. }
        | Op::Expand { .. }
        | Op::Split { .. }
        | Op::Slice { .. } => (1, Some(1)),
        Op::Where => (3, Some(3)),
        Op::LayerNorm { .. } | Op::Gemm { .. } | Op::Conv { .. } => (2, Some(3)),
        Op::BatchNorm { .. } => (5, Some(5)),
        Op::Concat { .. } => (1, None),
    }
}

/// Checks every invariant listed in the module doc; returns the first violation.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    // 1. constants
    for (c, t) in g.constants.iter() {
        let ok_variant = match &t.data {
            Data::Float(_) => t.ty.dtype.is_float(),
            Data::Int(_) => t.ty.dtype.is_int(),
            Data::Bool(_) => t.ty.dtype == crate::DType::Bool,
        };
        if !ok_variant {
            return fail(format!("constant {c} of type {}: storage does not match its dtype", t.ty));
        }
        let numel = t.ty.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if numel != Some(t.data.len()) {
            return fail(format!("constant {c} of type {} holds {} elements", t.ty, t.data.len()));
        }
    }

    // 2-4. definitions where values appear.
    let mut seen: SecondaryMap<Value, Seen> = SecondaryMap::new();
    let mut define = |g: &Graph, v: Value, at: Seen, expected: ValueDef| -> Result<(), IrError> {
        let Some(data) = g.values.get(v) else {
            return fail(format!("{} is {v}, which is not in the value arena", describe(g, at)));
        };
        if seen[v] != Seen::Nowhere {
            return fail(format!(
                "{} is defined twice: as {} and as {}",
                value_label(g, v),
                describe(g, seen[v]),
                describe(g, at)
            ));
        }
        if data.def != expected {
            return fail(format!(
                "{} appears as {} but its def says {:?}",
                value_label(g, v),
                describe(g, at),
                data.def
            ));
        }
        seen[v] = at;
        Ok(())
    };
    for (i, &v) in g.inputs.iter().enumerate() {
        define(g, v, Seen::Input(i), ValueDef::Input(i))?;
    }
    for (n, node) in g.nodes.iter() {
        for (i, &v) in node.outputs.iter().enumerate() {
            define(g, v, Seen::Result(n, i), ValueDef::Result(n, i))?;
        }
    }

    // 5. every value is defined.
    for (v, data) in g.values.iter() {
        if seen[v] == Seen::Nowhere {
            return fail(format!(
                "{} (def {:?}) is not defined by any graph input or node result",
                value_label(g, v),
                data.def
            ));
        }
        if data.ty.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return fail(format!("{} has type {}, whose element count overflows usize", value_label(g, v), data.ty));
        }
    }

    // 6-9. per node, in storage order.
    for (n, node) in g.nodes.iter() {
        for (k, &v) in node.inputs.iter().enumerate() {
            let Some(data) = g.values.get(v) else {
                return fail(format!("{}: input {k} is {v}, which is not in the value arena", node_label(g, n)));
            };
            let earlier = match data.def {
                ValueDef::Input(_) => true,
                ValueDef::Result(p, _) => p < n,
            };
            if !earlier {
                return fail(format!(
                    "{}: input {k} {} is defined by {}, which is not earlier in storage order",
                    node_label(g, n),
                    value_label(g, v),
                    describe(g, seen[v])
                ));
            }
        }

        let (min, max) = arity(&node.op);
        let got = node.inputs.len();
        if got < min || max.is_some_and(|m| got > m) {
            let expected = match max {
                Some(m) if m == min => format!("{min}"),
                Some(m) => format!("{min} to {m}"),
                None => format!("at least {min}"),
            };
            return fail(format!("{}: takes {expected} inputs, has {got}", node_label(g, n)));
        }
        if node.outputs.len() != node.op.num_outputs() {
            return fail(format!(
                "{}: produces {} results, has {}",
                node_label(g, n),
                node.op.num_outputs(),
                node.outputs.len()
            ));
        }

        if let Op::Constant(c) = node.op {
            let Some(t) = g.constants.get(c) else {
                return fail(format!(
                    "{}: constant {c} is not in the pool ({} constants)",
                    node_label(g, n),
                    g.constants.len()
                ));
            };
            let out = node.outputs[0];
            if g.values[out].ty != t.ty {
                return fail(format!(
                    "{}: result {} has type {} but constant {c} has type {}",
                    node_label(g, n),
                    value_label(g, out),
                    g.values[out].ty,
                    t.ty
                ));
            }
        }

        let in_types: Vec<_> = node.inputs.iter().map(|&v| g.values[v].ty.clone()).collect();
        let inferred = crate::infer_types(&node.op, &in_types, g)
            .map_err(|e| IrError::Verifier(format!("{}: shape inference fails: {e}", node_label(g, n))))?;
        if inferred.len() != node.outputs.len() {
            return fail(format!(
                "{}: shape inference gives {} results, node has {}",
                node_label(g, n),
                inferred.len(),
                node.outputs.len()
            ));
        }
        for (i, (&v, ty)) in node.outputs.iter().zip(&inferred).enumerate() {
            if &g.values[v].ty != ty {
                return fail(format!(
                    "{}: result {i} {} has type {} but inference gives {ty}",
                    node_label(g, n),
                    value_label(g, v),
                    g.values[v].ty
                ));
            }
        }
    }

    // 10. outputs exist.
    for (j, &v) in g.outputs.iter().enumerate() {
        if g.values.get(v).is_none() {
            return fail(format!("graph output {j} is {v}, which is not in the value arena"));
        }
    }

    // 11. unique names.
    for (what, list) in [("input", &g.inputs), ("output", &g.outputs)] {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (j, &v) in list.iter().enumerate() {
            if let Some(name) = g.values[v].name.as_deref() {
                if let Some(prev) = names.insert(name, j) {
                    return fail(format!("graph {what}s {prev} and {j} are both named `{name}`"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Const, DType, Tensor, TensorType, ValueData};

    fn f32t(shape: &[usize]) -> TensorType {
        TensorType::new(DType::F32, shape.to_vec())
    }

    /// `x: f32[2]` → `w = const [1, 2]` → `y = add x, w` → `z = neg y`; outputs `(z)`.
    fn valid() -> Graph {
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32t(&[2]));
        let w = g.add_constant(Tensor::float(DType::F32, vec![2], vec![1.0, 2.0]).unwrap(), "w");
        let y = g.add_node_typed(Op::Add, vec![x, w], vec![f32t(&[2])], "/add");
        let y = g.result(y);
        let z = g.add_node_typed(Op::Neg, vec![y], vec![f32t(&[2])], "/neg");
        let z = g.result(z);
        g.set_name(z, "z");
        g.outputs = vec![z];
        g
    }

    /// The verifier message for `g`, which must fail.
    fn message(g: &Graph) -> String {
        match verify(g) {
            Err(IrError::Verifier(msg)) => msg,
            Err(other) => panic!("expected a verifier error, got {other}"),
            Ok(()) => {
                panic!("expected a verifier error, graph verified:\n{}", crate::text::print(g, &Default::default()))
            }
        }
    }

    fn v(n: u32) -> Value {
        Value::from_u32(n)
    }

    fn n(i: u32) -> Node {
        Node::from_u32(i)
    }

    #[test]
    fn valid_graph_verifies() {
        verify(&valid()).unwrap();
        verify(&Graph::new("empty")).unwrap();
    }

    #[test]
    fn constant_storage_must_match_dtype() {
        let mut g = valid();
        g.constants[Const::from_u32(0)].data = Data::Int(vec![1, 2]);
        assert_eq!(message(&g), "constant c0 of type f32[2]: storage does not match its dtype");
    }

    #[test]
    fn constant_length_must_match_shape() {
        let mut g = valid();
        g.constants[Const::from_u32(0)].data = Data::Float(vec![1.0]);
        assert_eq!(message(&g), "constant c0 of type f32[2] holds 1 elements");
    }

    #[test]
    fn input_def_must_match_position() {
        let mut g = valid();
        g.values[v(0)].def = ValueDef::Input(3);
        assert_eq!(message(&g), "v0 `x` appears as graph input 0 but its def says Input(3)");
    }

    #[test]
    fn input_must_exist() {
        let mut g = valid();
        g.inputs.push(v(99));
        assert_eq!(message(&g), "graph input 1 is v99, which is not in the value arena");
    }

    #[test]
    fn result_def_must_match_position() {
        let mut g = valid();
        g.values[v(2)].def = ValueDef::Result(n(1), 1);
        assert_eq!(message(&g), "v2 appears as result 0 of node n1 `/add` (add) but its def says Result(n1, 1)");
    }

    #[test]
    fn result_must_exist() {
        let mut g = valid();
        g.nodes[n(2)].outputs[0] = v(42);
        assert_eq!(message(&g), "result 0 of node n2 `/neg` (neg) is v42, which is not in the value arena");
    }

    #[test]
    fn no_value_defined_twice() {
        let mut g = valid();
        g.inputs.push(v(0));
        assert_eq!(message(&g), "v0 `x` is defined twice: as graph input 0 and as graph input 1");
    }

    #[test]
    fn every_value_is_defined() {
        let mut g = valid();
        // An orphan whose def points at a slot that holds another value.
        g.values.push(ValueData { ty: f32t(&[2]), name: None, def: ValueDef::Result(n(1), 0) });
        assert_eq!(message(&g), "v4 (def Result(n1, 0)) is not defined by any graph input or node result");
    }

    #[test]
    fn value_types_fit_usize() {
        let mut g = valid();
        g.values[v(3)].ty = f32t(&[usize::MAX, 2]);
        assert_eq!(message(&g), format!("v3 `z` has type f32[{},2], whose element count overflows usize", usize::MAX));
    }

    #[test]
    fn nodes_in_topological_order() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32t(&[2]));
        // n0 uses v2, the result of n1.
        g.add_node_typed(Op::Neg, vec![v(2)], vec![f32t(&[2])], "early");
        g.add_node_typed(Op::Neg, vec![x], vec![f32t(&[2])], "late");
        assert_eq!(message(&g), "node n0 `early` (neg): input 0 v2 is defined by result 0 of node n1 `late` (neg), which is not earlier in storage order");
        // A node may not use its own result either.
        let mut g = Graph::new("g");
        g.add_node_typed(Op::Neg, vec![v(0)], vec![f32t(&[2])], "self");
        assert!(message(&g).contains("not earlier in storage order"));
    }

    #[test]
    fn node_inputs_must_exist() {
        let mut g = valid();
        g.nodes[n(2)].inputs[0] = v(7);
        assert_eq!(message(&g), "node n2 `/neg` (neg): input 0 is v7, which is not in the value arena");
    }

    #[test]
    fn input_arity() {
        let mut g = valid();
        g.nodes[n(1)].inputs.pop();
        assert_eq!(message(&g), "node n1 `/add` (add): takes 2 inputs, has 1");
        let mut g = valid();
        g.nodes[n(1)].op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false };
        g.nodes[n(1)].inputs = vec![v(0); 4];
        assert_eq!(message(&g), "node n1 `/add` (gemm): takes 2 to 3 inputs, has 4");
        let mut g = valid();
        g.nodes[n(2)].op = Op::Concat { axis: 0 };
        g.nodes[n(2)].inputs.clear();
        assert_eq!(message(&g), "node n2 `/neg` (concat): takes at least 1 inputs, has 0");
    }

    #[test]
    fn result_count() {
        let mut g = valid();
        g.nodes[n(2)].op = Op::Split { axis: 0, sizes: vec![1, 1] };
        assert_eq!(message(&g), "node n2 `/neg` (split): produces 2 results, has 1");
    }

    #[test]
    fn constant_must_exist() {
        let mut g = valid();
        g.nodes[n(0)].op = Op::Constant(Const::from_u32(5));
        assert_eq!(message(&g), "node n0 `w` (const): constant c5 is not in the pool (1 constants)");
    }

    #[test]
    fn constant_type_must_match() {
        let mut g = valid();
        g.values[v(1)].ty = f32t(&[1, 2]);
        assert_eq!(message(&g), "node n0 `w` (const): result v1 has type f32[1,2] but constant c0 has type f32[2]");
    }

    #[test]
    fn result_types_match_inference() {
        let mut g = valid();
        g.values[v(3)].ty = TensorType::new(DType::F64, vec![2]);
        assert_eq!(message(&g), "node n2 `/neg` (neg): result 0 v3 `z` has type f64[2] but inference gives f32[2]");
    }

    #[test]
    fn inference_must_succeed() {
        let mut g = valid();
        g.values[v(0)].ty = f32t(&[3]);
        let msg = message(&g);
        assert!(msg.starts_with("node n1 `/add` (add): shape inference fails: "), "{msg}");
    }

    #[test]
    fn outputs_must_exist() {
        let mut g = valid();
        g.outputs.push(v(11));
        assert_eq!(message(&g), "graph output 1 is v11, which is not in the value arena");
    }

    #[test]
    fn input_names_unique() {
        let mut g = valid();
        let x2 = g.add_input("x", f32t(&[2]));
        let _ = x2;
        assert_eq!(message(&g), "graph inputs 0 and 1 are both named `x`");
        // Unnamed inputs do not clash.
        let mut g = valid();
        let a = g.add_input("a", f32t(&[2]));
        let b = g.add_input("b", f32t(&[2]));
        g.values[a].name = None;
        g.values[b].name = None;
        verify(&g).unwrap();
    }

    #[test]
    fn output_names_unique() {
        let mut g = valid();
        let z = g.outputs[0];
        g.outputs.push(z);
        assert_eq!(message(&g), "graph outputs 0 and 1 are both named `z`");
        let mut g = valid();
        g.values[v(3)].name = None;
        g.outputs.push(v(3));
        verify(&g).unwrap();
    }
}
