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
//!    are no orphan values whose def points at a slot holding another value).
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

/// Input count an op accepts: `(min, max)`, `max = None` for variadic.
fn arity(op: &Op) -> (usize, Option<usize>) {
    match op {
        Op::Constant(_) => (0, Some(0)),
        op if op.is_binary_elementwise() => (2, Some(2)),
        op if op.is_unary_elementwise() => (1, Some(1)),
        Op::Where => (3, Some(3)),
        Op::Softmax { .. } => (1, Some(1)),
        Op::LayerNorm { .. } => (2, Some(3)),
        Op::BatchNorm { .. } => (5, Some(5)),
        Op::MatMul => (2, Some(2)),
        Op::Gemm { .. } => (2, Some(3)),
        Op::Conv { .. } => (2, Some(3)),
        Op::ReduceMean { .. } | Op::ReduceSum { .. } | Op::ReduceMax { .. } | Op::ReduceMin { .. } => (1, Some(1)),
        Op::Transpose { .. } | Op::Reshape { .. } | Op::Expand { .. } | Op::Split { .. } | Op::Slice { .. } => (1, Some(1)),
        Op::Concat { .. } => (1, None),
        Op::Gather { .. } | Op::GatherElements { .. } => (2, Some(2)),
        // Every op is covered above (unary/binary through the predicates); this arm is unreachable
        // but keeps the match total without listing them twice.
        _ => (0, None),
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
    let mut define = |g: &Graph, v: Value, at: Seen| -> Result<(), IrError> {
        let Some(data) = g.values.get(v) else {
            return fail(format!("{} is {v}, which is not in the value arena", describe(g, at)));
        };
        let expected = match at {
            Seen::Input(i) => ValueDef::Input(i),
            Seen::Result(n, i) => ValueDef::Result(n, i),
            Seen::Nowhere => unreachable!("only called with a definition site"),
        };
        if seen[v] != Seen::Nowhere {
            return fail(format!("{} is defined twice: as {} and as {}", value_label(g, v), describe(g, seen[v]), describe(g, at)));
        }
        if data.def != expected {
            return fail(format!("{} appears as {} but its def says {:?}", value_label(g, v), describe(g, at), data.def));
        }
        seen[v] = at;
        Ok(())
    };
    for (i, &v) in g.inputs.iter().enumerate() {
        define(g, v, Seen::Input(i))?;
    }
    for (n, node) in g.nodes.iter() {
        for (i, &v) in node.outputs.iter().enumerate() {
            define(g, v, Seen::Result(n, i))?;
        }
    }

    // 5. every value is defined.
    for (v, data) in g.values.iter() {
        if seen[v] == Seen::Nowhere {
            return fail(format!("{} (def {:?}) is not defined by any graph input or node result", value_label(g, v), data.def));
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
                return fail(format!("{}: constant {c} is not in the pool ({} constants)", node_label(g, n), g.constants.len()));
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
