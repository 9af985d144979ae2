//! The f64 reference interpreter.
//!
//! Contract:
//! - [`eval_op`] first runs [`infer_types`] on the inputs' types, so every shape or dtype problem is an
//!   [`IrError::Shape`] with the same message the graph builder would give; the kernels then work on
//!   validated shapes. Results have exactly the types inference gives.
//! - Floating values are computed in f64 whatever their declared dtype (so an `f32` graph is evaluated
//!   more precisely than onnxruntime does; this is the reference the polynomial and CKKS stages are
//!   measured against). Only `Cast` rounds: casting to `f32`/`f16` rounds to nearest-even through that
//!   format, so the value is the one ONNX would produce. Casts to integers truncate toward zero and wrap
//!   to the target width; casts to `bool` are `x != 0`.
//! - Integer ops compute in i64 with wrapping arithmetic, wrapped to the dtype's width. `Div` on integers
//!   truncates toward zero (as ONNX/C do); division by zero is an [`IrError::Eval`].
//! - `Gather` and `GatherElements` accept negative indices (they wrap once); an index out of range is an
//!   [`IrError::Eval`] naming the index.
//! - [`run`] / [`run_with`] check the graph inputs, evaluate nodes in storage order (which the graph
//!   guarantees is topological), borrow constants and inputs instead of copying them, and drop each
//!   value after its last use, so peak memory is the weights plus the live activations.
//!
//! Errors from [`run`] name the node (its `name`); [`eval_op`] alone leaves `node` empty.

use std::borrow::Cow;

use cranelift_entity::EntityRef;

use crate::infer::{broadcast_shapes, conv_geom, infer_types, reduce_mask};
use crate::{DType, Data, GeluApprox, Graph, IrError, Node, Op, Tensor, TensorType};

fn eval_err(op: &Op, msg: impl Into<String>) -> IrError {
    IrError::Eval { op: op.name().to_string(), node: String::new(), msg: msg.into() }
}

/// Evaluates one op on concrete inputs.
pub fn eval_op(op: &Op, inputs: &[&Tensor], g: &Graph) -> Result<Vec<Tensor>, IrError> {
    for (i, t) in inputs.iter().enumerate() {
        if !well_formed(t) {
            return Err(eval_err(op, format!("input {i} is malformed: its storage does not fit its type {}", t.ty)));
        }
    }
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty.clone()).collect();
    let out_types = infer_types(op, &types, g)?;
    let datas = compute(op, inputs, &out_types, g)?;
    out_types.into_iter().zip(datas).map(|(ty, data)| Tensor::new(ty, data)).collect()
}

/// Runs the whole graph on inputs given in graph-input order; returns the graph outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
    run_with(g, inputs, &mut |_, _, _| {})
}

/// Called after each node with the node, its inputs and its results.
pub type Observer<'a> = dyn FnMut(Node, &[&Tensor], &[Tensor]) + 'a;

/// A live value: borrowed (graph inputs, constants) or computed.
enum Slot<'a> {
    Borrowed(&'a Tensor),
    Owned(Tensor),
}

impl Slot<'_> {
    fn get(&self) -> &Tensor {
        match self {
            Slot::Borrowed(t) => t,
            Slot::Owned(t) => t,
        }
    }
}

/// Like [`run`], calling `observer(node, inputs, outputs)` after each node is evaluated (constants
/// included), in storage order.
pub fn run_with(g: &Graph, inputs: &[Tensor], observer: &mut Observer<'_>) -> Result<Vec<Tensor>, IrError> {
    if inputs.len() < g.inputs.len() {
        return Err(IrError::MissingInput { name: g.value_label(g.inputs[inputs.len()]) });
    }
    if inputs.len() > g.inputs.len() {
        return Err(IrError::InputMismatch {
            name: format!("#{}", g.inputs.len()),
            expected: format!("{} inputs", g.inputs.len()),
            got: format!("{} inputs", inputs.len()),
        });
    }
    let mut slots: Vec<Option<Slot>> = Vec::new();
    slots.resize_with(g.values.len(), || None);
    for (&v, t) in g.inputs.iter().zip(inputs) {
        let expected = &g.values[v].ty;
        let malformed = !well_formed(t);
        if &t.ty != expected || malformed {
            return Err(IrError::InputMismatch {
                name: g.value_label(v),
                expected: expected.to_string(),
                got: if malformed { format!("a malformed {}", t.ty) } else { t.ty.to_string() },
            });
        }
        slots[v.index()] = Some(Slot::Borrowed(t));
    }
    let mut uses = g.use_counts();

    for (n, node) in g.nodes.iter() {
        let name_err = |e: IrError| match e {
            IrError::Eval { op, msg, .. } => IrError::Eval { op, node: node.name.clone(), msg },
            IrError::Shape { op, msg, .. } => IrError::Shape { op, node: node.name.clone(), msg },
            other => other,
        };
        let mut args: Vec<&Tensor> = Vec::with_capacity(node.inputs.len());
        for &v in &node.inputs {
            match slots.get(v.index()).and_then(|s| s.as_ref()) {
                Some(s) => args.push(s.get()),
                None => return Err(IrError::UseBeforeDef(v)),
            }
        }
        let results: Vec<Slot> = if let Op::Constant(c) = node.op {
            let t = g
                .constants
                .get(c)
                .ok_or_else(|| name_err(eval_err(&node.op, format!("constant {c} is not in the pool"))))?;
            observer(n, &args, std::slice::from_ref(t));
            vec![Slot::Borrowed(t)]
        } else {
            let outs = eval_op(&node.op, &args, g).map_err(name_err)?;
            observer(n, &args, &outs);
            outs.into_iter().map(Slot::Owned).collect()
        };
        drop(args);
        if results.len() != node.outputs.len() {
            return Err(name_err(eval_err(
                &node.op,
                format!("produced {} results, but the node has {} outputs", results.len(), node.outputs.len()),
            )));
        }
        for (i, (&v, r)) in node.outputs.iter().zip(results).enumerate() {
            let (Some(data), Some(slot)) = (g.values.get(v), slots.get_mut(v.index())) else {
                return Err(IrError::Verifier(format!("node {n} defines {v}, which is not in the graph")));
            };
            if r.get().ty != data.ty {
                return Err(name_err(eval_err(
                    &node.op,
                    format!("result {i} has type {}, but the graph declares {}", r.get().ty, data.ty),
                )));
            }
            if uses[v] > 0 {
                *slot = Some(r);
            }
        }
        for &v in &node.inputs {
            // Inputs were all found above, so their counts are positive.
            uses[v] -= 1;
            if uses[v] == 0 {
                slots[v.index()] = None;
            }
        }
    }

    let mut outs = Vec::with_capacity(g.outputs.len());
    for &v in &g.outputs {
        // Graph outputs are counted in `uses`, so this count is positive.
        uses[v] -= 1;
        let last = uses[v] == 0;
        // The last use of an owned value moves it out; everything else is copied.
        let t = match slots.get_mut(v.index()) {
            Some(entry) if last => match entry.take() {
                Some(Slot::Owned(t)) => Some(t),
                Some(Slot::Borrowed(t)) => Some(t.clone()),
                None => None,
            },
            Some(entry) => entry.as_ref().map(|s| s.get().clone()),
            None => None,
        }
        .ok_or(IrError::UseBeforeDef(v))?;
        outs.push(t);
    }
    Ok(outs)
}

/// Whether a tensor's storage variant fits its dtype and its length its shape (the fields are public, so
/// a hand-built tensor may not).
fn well_formed(t: &Tensor) -> bool {
    let ok_variant = match &t.data {
        Data::Float(_) => t.ty.dtype.is_float(),
        Data::Int(_) => t.ty.dtype.is_int(),
        Data::Bool(_) => t.ty.dtype == DType::Bool,
    };
    ok_variant && t.data.len() == t.ty.numel()
}

// ---------------------------------------------------------------------------------------------------
// Index helpers

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// For each index of `shape` in row-major order, `base + Σ idx[d]·strides[d]`.
fn strided_offsets(shape: &[usize], base: isize, strides: &[isize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let r = shape.len();
    if r == 0 {
        out.push(base as usize);
        return out;
    }
    let (inner, s_in) = (shape[r - 1], strides[r - 1]);
    let mut idx = vec![0usize; r - 1];
    let mut off = base;
    loop {
        out.extend((0..inner).map(|j| (off + j as isize * s_in) as usize));
        let mut d = r - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * shape[d] as isize;
            idx[d] = 0;
        }
    }
}

/// For each element of `out` (row-major), the offset of the element of a tensor of shape `input` that
/// numpy broadcasting maps to it. `input` must broadcast to `out`.
fn broadcast_index(input: &[usize], out: &[usize]) -> Vec<usize> {
    let s = strides(input);
    let lead = out.len() - input.len();
    let st: Vec<isize> =
        (0..out.len()).map(|d| if d < lead || input[d - lead] == 1 { 0 } else { s[d - lead] as isize }).collect();
    strided_offsets(out, 0, &st)
}

fn take<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i]).collect()
}

fn take_data(d: &Data, idx: &[usize]) -> Data {
    match d {
        Data::Float(v) => Data::Float(take(v, idx)),
        Data::Int(v) => Data::Int(take(v, idx)),
        Data::Bool(v) => Data::Bool(take(v, idx)),
    }
}

/// `v` broadcast to `out` (borrowed when no broadcasting is needed).
fn expand_to<'a, T: Copy>(v: &'a [T], shape: &[usize], out: &[usize]) -> Cow<'a, [T]> {
    if shape == out {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(take(v, &broadcast_index(shape, out)))
    }
}

/// Elementwise `f(a, b)` with broadcasting to `out`.
fn bin_map<A: Copy, B: Copy, C>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    out: &[usize],
    mut f: impl FnMut(A, B) -> C,
) -> Vec<C> {
    if ash == out && b.len() == 1 {
        let y = b[0];
        return a.iter().map(|&x| f(x, y)).collect();
    }
    if bsh == out && a.len() == 1 {
        let x = a[0];
        return b.iter().map(|&y| f(x, y)).collect();
    }
    let a = expand_to(a, ash, out);
    let b = expand_to(b, bsh, out);
    a.iter().zip(b.iter()).map(|(&x, &y)| f(x, y)).collect()
}

fn to_f64(t: &Tensor) -> Cow<'_, [f64]> {
    match &t.data {
        Data::Float(v) => Cow::Borrowed(v),
        _ => Cow::Owned(t.to_f64_vec()),
    }
}

/// Wraps an i64 to the width of an integer dtype (two's complement, like C casts).
fn wrap(dt: DType, v: i64) -> i64 {
    match dt {
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        DType::I32 => v as i32 as i64,
        _ => v,
    }
}

/// Rounds to the nearest IEEE binary16 value (ties to even), overflowing to infinity.
fn round_f16(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let a = x.abs();
    // 65520 is halfway between the largest half (65504) and 2^16; ties-to-even rounds it up to infinity.
    if a >= 65520.0 {
        return f64::INFINITY.copysign(x);
    }
    let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    // Spacing of half values near `a`: 2^(e-10) for normals, 2^-24 in the subnormal range.
    let q = 2f64.powi(if e < -14 { -24 } else { e - 10 });
    ((a / q).round_ties_even() * q).copysign(x)
}

fn round_float(dt: DType, v: f64) -> f64 {
    match dt {
        DType::F32 => v as f32 as f64,
        DType::F16 => round_f16(v),
        _ => v,
    }
}

/// `erf` to within an ulp or two (from the `libm` crate, a port of FreeBSD's msun).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

// ---------------------------------------------------------------------------------------------------
// Kernels

fn compute(op: &Op, inputs: &[&Tensor], outs: &[TensorType], g: &Graph) -> Result<Vec<Data>, IrError> {
    let out = &outs[0];
    let one = |d: Data| Ok(vec![d]);
    match op {
        Op::Constant(c) => match g.constants.get(*c) {
            Some(t) => one(t.data.clone()),
            None => Err(eval_err(op, format!("constant {c} is not in the pool"))),
        },
        _ if op.is_binary_elementwise() => one(binary(op, inputs[0], inputs[1], out)?),
        _ if op.is_unary_elementwise() => one(unary(op, inputs[0], out)?),
        Op::Where => {
            let (c, a, b) = (inputs[0], inputs[1], inputs[2]);
            let Data::Bool(cv) = &c.data else { return Err(eval_err(op, "condition is not bool")) };
            let ci = broadcast_index(c.shape(), &out.shape);
            let ai = broadcast_index(a.shape(), &out.shape);
            let bi = broadcast_index(b.shape(), &out.shape);
            let pick = |i: usize| if cv[ci[i]] { (true, ai[i]) } else { (false, bi[i]) };
            let n = out.numel();
            one(match (&a.data, &b.data) {
                (Data::Float(x), Data::Float(y)) => Data::Float(
                    (0..n)
                        .map(|i| match pick(i) {
                            (true, j) => x[j],
                            (false, j) => y[j],
                        })
                        .collect(),
                ),
                (Data::Int(x), Data::Int(y)) => Data::Int(
                    (0..n)
                        .map(|i| match pick(i) {
                            (true, j) => x[j],
                            (false, j) => y[j],
                        })
                        .collect(),
                ),
                (Data::Bool(x), Data::Bool(y)) => Data::Bool(
                    (0..n)
                        .map(|i| match pick(i) {
                            (true, j) => x[j],
                            (false, j) => y[j],
                        })
                        .collect(),
                ),
                _ => return Err(eval_err(op, "branches have different storage")),
            })
        }
        Op::Softmax { axis } => one(Data::Float(softmax(&to_f64(inputs[0]), inputs[0].shape(), *axis))),
        Op::LayerNorm { axis, epsilon } => one(Data::Float(layer_norm(inputs, *axis, *epsilon))),
        Op::BatchNorm { epsilon } => {
            let x = to_f64(inputs[0]);
            let p: Vec<Cow<[f64]>> = inputs[1..].iter().map(|t| to_f64(t)).collect();
            let sh = inputs[0].shape();
            let (c, spatial) = (sh[1], sh[2..].iter().product::<usize>());
            let mut y = Vec::with_capacity(x.len());
            for (i, chunk) in x.chunks(spatial.max(1)).enumerate() {
                let ch = i % c;
                let k = p[0][ch] / (p[3][ch] + epsilon).sqrt();
                y.extend(chunk.iter().map(|&v| (v - p[2][ch]) * k + p[1][ch]));
            }
            one(Data::Float(y))
        }
        Op::MatMul => one(matmul(inputs[0], inputs[1], out)),
        Op::Gemm { alpha, beta, trans_a, trans_b } => one(gemm(inputs, *alpha, *beta, *trans_a, *trans_b, out)),
        Op::Conv { .. } => one(Data::Float(conv(op, inputs)?)),
        Op::ReduceMean { axes, .. }
        | Op::ReduceSum { axes, .. }
        | Op::ReduceMax { axes, .. }
        | Op::ReduceMin { axes, .. } => one(reduce(op, inputs[0], axes)?),
        Op::ArgMax { axis, last, .. } | Op::ArgMin { axis, last, .. } => {
            one(arg_extreme(inputs[0], *axis, matches!(op, Op::ArgMax { .. }), *last))
        }
        Op::Transpose { perm } => {
            let x = inputs[0];
            let s = strides(x.shape());
            let st: Vec<isize> = perm.iter().map(|&p| s[p] as isize).collect();
            one(take_data(&x.data, &strided_offsets(&out.shape, 0, &st)))
        }
        Op::Reshape { .. } | Op::Identity => one(inputs[0].data.clone()),
        Op::Expand { .. } => {
            let x = inputs[0];
            if x.shape() == out.shape.as_slice() {
                one(x.data.clone())
            } else {
                one(take_data(&x.data, &broadcast_index(x.shape(), &out.shape)))
            }
        }
        Op::Concat { axis } => one(concat(inputs, *axis)),
        Op::Split { axis, sizes } => {
            let x = inputs[0];
            let sh = x.shape();
            let outer: usize = sh[..*axis].iter().product();
            let inner: usize = sh[axis + 1..].iter().product();
            let total = sh[*axis];
            let mut start = 0;
            let mut res = Vec::with_capacity(sizes.len());
            for &s in sizes {
                let idx =
                    strided_offsets(&[outer, s * inner], (start * inner) as isize, &[(total * inner) as isize, 1]);
                res.push(take_data(&x.data, &idx));
                start += s;
            }
            Ok(res)
        }
        Op::Slice { axes, starts, steps, .. } => {
            let x = inputs[0];
            let s = strides(x.shape());
            let mut st: Vec<isize> = s.iter().map(|&v| v as isize).collect();
            let mut base = 0isize;
            for i in 0..axes.len() {
                let a = axes[i];
                base += starts[i] as isize * s[a] as isize;
                // A step only matters when at least two elements are taken (then |step| < dim, so the
                // product cannot overflow even for steps like i64::MAX).
                st[a] = if out.shape[a] > 1 { steps[i] as isize * s[a] as isize } else { 0 };
            }
            one(take_data(&x.data, &strided_offsets(&out.shape, base, &st)))
        }
        Op::Gather { axis } => {
            let (x, ind) = (inputs[0], inputs[1]);
            let sh = x.shape();
            let dim = sh[*axis];
            let outer: usize = sh[..*axis].iter().product();
            let inner: usize = sh[axis + 1..].iter().product();
            let idx = normalize_indices(op, &ind.to_i64_vec(), dim)?;
            let mut offs = Vec::with_capacity(out.numel());
            for o in 0..outer {
                for &i in &idx {
                    let b = (o * dim + i) * inner;
                    offs.extend(b..b + inner);
                }
            }
            one(take_data(&x.data, &offs))
        }
        Op::GatherElements { axis } => {
            let (x, ind) = (inputs[0], inputs[1]);
            let s = strides(x.shape());
            let mut st: Vec<isize> = s.iter().map(|&v| v as isize).collect();
            st[*axis] = 0;
            let base = strided_offsets(ind.shape(), 0, &st);
            let idx = normalize_indices(op, &ind.to_i64_vec(), x.shape()[*axis])?;
            let offs: Vec<usize> = base.iter().zip(&idx).map(|(&b, &i)| b + i * s[*axis]).collect();
            one(take_data(&x.data, &offs))
        }
        _ => Err(eval_err(op, "no kernel for this op")),
    }
}

fn normalize_indices(op: &Op, idx: &[i64], dim: usize) -> Result<Vec<usize>, IrError> {
    idx.iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if (0..dim as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(eval_err(op, format!("index {i} is out of range for an axis of size {dim}")))
            }
        })
        .collect()
}

fn binary(op: &Op, a: &Tensor, b: &Tensor, out: &TensorType) -> Result<Data, IrError> {
    let (ash, bsh, osh) = (a.shape(), b.shape(), out.shape.as_slice());
    macro_rules! cmp {
        ($x:expr, $y:expr) => {{
            let f: fn(_, _) -> bool = match op {
                Op::Equal => |p, q| p == q,
                Op::Less => |p, q| p < q,
                Op::LessOrEqual => |p, q| p <= q,
                Op::Greater => |p, q| p > q,
                _ => |p, q| p >= q,
            };
            Data::Bool(bin_map($x, ash, $y, bsh, osh, f))
        }};
    }
    let is_cmp = matches!(op, Op::Equal | Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual);
    Ok(match (&a.data, &b.data) {
        (Data::Float(x), _) if *op == Op::Pow => Data::Float(bin_map(x, ash, &to_f64(b), bsh, osh, f64::powf)),
        (Data::Int(x), Data::Int(y)) if *op == Op::Pow => {
            let dt = out.dtype;
            let mut bad = None;
            let r = bin_map(x, ash, y, bsh, osh, |p: i64, q: i64| {
                if q >= 0 {
                    wrap(dt, p.wrapping_pow(q.min(u32::MAX as i64) as u32))
                } else {
                    // Integer reciprocal powers truncate toward zero, as C's pow cast to int does.
                    match p {
                        1 => 1,
                        -1 => {
                            if q % 2 == 0 {
                                1
                            } else {
                                -1
                            }
                        }
                        0 => {
                            bad = Some(q);
                            0
                        }
                        _ => 0,
                    }
                }
            });
            if let Some(q) = bad {
                return Err(eval_err(op, format!("integer 0 raised to negative power {q}")));
            }
            Data::Int(r)
        }
        (Data::Int(x), _) if *op == Op::Pow => {
            let dt = out.dtype;
            Data::Int(bin_map(x, ash, &to_f64(b), bsh, osh, |p, q| wrap(dt, (p as f64).powf(q) as i64)))
        }
        (Data::Float(x), Data::Float(y)) if is_cmp => cmp!(x, y),
        (Data::Int(x), Data::Int(y)) if is_cmp => cmp!(x, y),
        (Data::Bool(x), Data::Bool(y)) if is_cmp => cmp!(x, y),
        (Data::Float(x), Data::Float(y)) => {
            let f: fn(f64, f64) -> f64 = match op {
                Op::Add => |p, q| p + q,
                Op::Sub => |p, q| p - q,
                Op::Mul => |p, q| p * q,
                Op::Div => |p, q| p / q,
                // numpy's maximum/minimum propagate NaN (f64::max would drop it).
                Op::Max => |p: f64, q: f64| if p.is_nan() || q.is_nan() { f64::NAN } else { p.max(q) },
                Op::Min => |p: f64, q: f64| if p.is_nan() || q.is_nan() { f64::NAN } else { p.min(q) },
                _ => return Err(eval_err(op, "not a float binary op")),
            };
            Data::Float(bin_map(x, ash, y, bsh, osh, f))
        }
        (Data::Int(x), Data::Int(y)) => {
            if *op == Op::Div && out.numel() > 0 && y.contains(&0) {
                return Err(eval_err(op, "integer division by zero"));
            }
            let f: fn(i64, i64) -> i64 = match op {
                Op::Add => i64::wrapping_add,
                Op::Sub => i64::wrapping_sub,
                Op::Mul => i64::wrapping_mul,
                Op::Div => i64::wrapping_div,
                Op::Max => std::cmp::max,
                Op::Min => std::cmp::min,
                _ => return Err(eval_err(op, "not an integer binary op")),
            };
            let dt = out.dtype;
            Data::Int(bin_map(x, ash, y, bsh, osh, |p, q| wrap(dt, f(p, q))))
        }
        (Data::Bool(x), Data::Bool(y)) => {
            let f: fn(bool, bool) -> bool = match op {
                Op::And => |p, q| p && q,
                Op::Or => |p, q| p || q,
                Op::Xor => |p, q| p != q,
                _ => return Err(eval_err(op, "not a boolean binary op")),
            };
            Data::Bool(bin_map(x, ash, y, bsh, osh, f))
        }
        _ => return Err(eval_err(op, "operand storage does not fit the op")),
    })
}

/// Clenshaw evaluation of `Σ c_k T_k(t)`, `t = (2x − lo − hi)/(hi − lo)`. Outside `[lo, hi]` the
/// polynomial is evaluated as it is (that is what a ciphertext gets); callers count such inputs.
pub fn chebyshev(lo: f64, hi: f64, coeffs: &[f64], x: f64) -> f64 {
    let t = (2.0 * x - lo - hi) / (hi - lo);
    let (mut b1, mut b2) = (0.0f64, 0.0f64);
    for &c in coeffs.iter().skip(1).rev() {
        let b0 = 2.0 * t * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    t * b1 - b2 + coeffs.first().copied().unwrap_or(0.0)
}

fn gelu(approx: GeluApprox, x: f64) -> f64 {
    match approx {
        GeluApprox::Erf => 0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)),
        GeluApprox::Tanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    // Split by sign so exp never overflows.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn unary(op: &Op, x: &Tensor, out: &TensorType) -> Result<Data, IrError> {
    if let Op::Cast(to) = op {
        return Ok(cast(&x.data, *to));
    }
    if *op == Op::Identity {
        return Ok(x.data.clone());
    }
    Ok(match &x.data {
        Data::Float(v) => match op {
            Op::IsNaN => Data::Bool(v.iter().map(|x| x.is_nan()).collect()),
            Op::IsInf => Data::Bool(v.iter().map(|x| x.is_infinite()).collect()),
            Op::Clip { min, max } => {
                let (lo, hi) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
                // max-then-min, as onnxruntime does: with lo > hi every element becomes hi; NaN stays NaN.
                Data::Float(v.iter().map(|&x| if x.is_nan() { x } else { x.max(lo).min(hi) }).collect())
            }
            Op::Gelu(a) => Data::Float(v.iter().map(|&x| gelu(*a, x)).collect()),
            Op::Chebyshev { lo, hi, coeffs } => {
                Data::Float(v.iter().map(|&x| chebyshev(*lo, *hi, coeffs, x)).collect())
            }
            _ => {
                let f: fn(f64) -> f64 = match op {
                    Op::Neg => |x| -x,
                    Op::Abs => f64::abs,
                    Op::Sqrt => f64::sqrt,
                    Op::Reciprocal => |x| 1.0 / x,
                    Op::Exp => f64::exp,
                    Op::Log => f64::ln,
                    Op::Erf => erf,
                    Op::Tanh => f64::tanh,
                    Op::Sigmoid => sigmoid,
                    // NaN stays NaN.
                    Op::Relu => |x| if x > 0.0 || x.is_nan() { x } else { 0.0 },
                    Op::Floor => f64::floor,
                    Op::Ceil => f64::ceil,
                    _ => return Err(eval_err(op, "not a float unary op")),
                };
                Data::Float(v.iter().map(|&x| f(x)).collect())
            }
        },
        Data::Int(v) => {
            let dt = out.dtype;
            match op {
                Op::Neg => Data::Int(v.iter().map(|&x| wrap(dt, x.wrapping_neg())).collect()),
                Op::Abs => Data::Int(v.iter().map(|&x| wrap(dt, x.wrapping_abs())).collect()),
                Op::Relu => Data::Int(v.iter().map(|&x| x.max(0)).collect()),
                Op::Clip { min, max } => {
                    // Clamping an integer to a real interval = clamping to its integer hull.
                    let lo = min.map_or(i64::MIN, |m| m.ceil() as i64);
                    let hi = max.map_or(i64::MAX, |m| m.floor() as i64);
                    Data::Int(v.iter().map(|&x| x.max(lo).min(hi)).collect())
                }
                _ => return Err(eval_err(op, "not an integer unary op")),
            }
        }
        Data::Bool(v) => match op {
            Op::Not => Data::Bool(v.iter().map(|&x| !x).collect()),
            _ => return Err(eval_err(op, "not a boolean unary op")),
        },
    })
}

/// ONNX `Cast` (see the module doc for rounding and truncation).
fn cast(d: &Data, to: DType) -> Data {
    match (d, to) {
        (_, DType::Bool) => Data::Bool(match d {
            Data::Float(v) => v.iter().map(|&x| x != 0.0).collect(),
            Data::Int(v) => v.iter().map(|&x| x != 0).collect(),
            Data::Bool(v) => v.clone(),
        }),
        (Data::Float(v), t) if t.is_float() => Data::Float(v.iter().map(|&x| round_float(t, x)).collect()),
        (Data::Int(v), t) if t.is_float() => Data::Float(
            v.iter()
                .map(|&x| match t {
                    // Directly, so that large integers are rounded once.
                    DType::F32 => x as f32 as f64,
                    _ => round_float(t, x as f64),
                })
                .collect(),
        ),
        (Data::Bool(v), t) if t.is_float() => Data::Float(v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect()),
        // Rust's `as` truncates toward zero, saturates, and maps NaN to 0.
        (Data::Float(v), t) => Data::Int(v.iter().map(|&x| wrap(t, x as i64)).collect()),
        (Data::Int(v), t) => Data::Int(v.iter().map(|&x| wrap(t, x)).collect()),
        (Data::Bool(v), _) => Data::Int(v.iter().map(|&x| x as i64).collect()),
    }
}

fn softmax(x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut y = vec![0.0; x.len()];
    if n == 0 || inner == 0 {
        return y;
    }
    let block = n * inner;
    for (xb, yb) in x.chunks(block).zip(y.chunks_mut(block)) {
        for i in 0..inner {
            let m = (0..n).map(|j| xb[j * inner + i]).fold(f64::NEG_INFINITY, f64::max);
            let mut s = 0.0;
            for j in 0..n {
                let e = (xb[j * inner + i] - m).exp();
                yb[j * inner + i] = e;
                s += e;
            }
            for j in 0..n {
                yb[j * inner + i] /= s;
            }
        }
    }
    y
}

fn layer_norm(inputs: &[&Tensor], axis: usize, eps: f64) -> Vec<f64> {
    let x = to_f64(inputs[0]);
    let sh = inputs[0].shape();
    let norm = &sh[axis..];
    let n: usize = norm.iter().product();
    let scale = expand_to(&to_f64(inputs[1]), inputs[1].shape(), norm).into_owned();
    let bias = match inputs.get(2) {
        Some(b) => expand_to(&to_f64(b), b.shape(), norm).into_owned(),
        None => vec![0.0; n],
    };
    let mut y = Vec::with_capacity(x.len());
    if n == 0 {
        return y;
    }
    for row in x.chunks(n) {
        let mean = row.iter().sum::<f64>() / n as f64;
        let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + eps).sqrt();
        y.extend(row.iter().zip(&scale).zip(&bias).map(|((&v, &s), &b)| (v - mean) * inv * s + b));
    }
    y
}

/// `c[m×n] += a[m×k] · b[k×n]`, all row-major. The i-k-j order keeps the inner loop contiguous; four
/// rows of `a` share each pass over a row of `b`.
fn matmul_kernel<T>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize, mul_add: impl Fn(T, T, T) -> T)
where
    T: Copy,
{
    if n == 0 {
        return;
    }
    let mut i = 0;
    while i + 4 <= m {
        let (c0, rest) = c[i * n..(i + 4) * n].split_at_mut(n);
        let (c1, rest) = rest.split_at_mut(n);
        let (c2, c3) = rest.split_at_mut(n);
        for kk in 0..k {
            let brow = &b[kk * n..(kk + 1) * n];
            let (a0, a1, a2, a3) = (a[i * k + kk], a[(i + 1) * k + kk], a[(i + 2) * k + kk], a[(i + 3) * k + kk]);
            for j in 0..n {
                let bv = brow[j];
                c0[j] = mul_add(a0, bv, c0[j]);
                c1[j] = mul_add(a1, bv, c1[j]);
                c2[j] = mul_add(a2, bv, c2[j]);
                c3[j] = mul_add(a3, bv, c3[j]);
            }
        }
        i += 4;
    }
    for i in i..m {
        let crow = &mut c[i * n..(i + 1) * n];
        for kk in 0..k {
            let av = a[i * k + kk];
            let brow = &b[kk * n..(kk + 1) * n];
            for (cv, &bv) in crow.iter_mut().zip(brow) {
                *cv = mul_add(av, bv, *cv);
            }
        }
    }
}

/// numpy matmul over `(batch..., m, k) × (batch..., k, n)` with broadcast batch dims.
fn batched_matmul<T: Copy + Default>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    mul_add: impl Fn(T, T, T) -> T + Copy,
) -> Vec<T> {
    // Promote 1-D operands: the removed dimension does not change the flat layout of the result.
    let (ash2, bsh2): (Vec<usize>, Vec<usize>) = (
        if ash.len() == 1 { vec![1, ash[0]] } else { ash.to_vec() },
        if bsh.len() == 1 { vec![bsh[0], 1] } else { bsh.to_vec() },
    );
    let (ra, rb) = (ash2.len(), bsh2.len());
    let (m, k, n) = (ash2[ra - 2], ash2[ra - 1], bsh2[rb - 1]);
    let (ba, bb) = (&ash2[..ra - 2], &bsh2[..rb - 2]);
    let batch = broadcast_shapes(ba, bb).unwrap_or_default();
    let ia = broadcast_index(ba, &batch);
    let ib = broadcast_index(bb, &batch);
    let mut c = vec![T::default(); ia.len() * m * n];
    for (bi, (&oa, &ob)) in ia.iter().zip(&ib).enumerate() {
        matmul_kernel(
            &a[oa * m * k..(oa + 1) * m * k],
            &b[ob * k * n..(ob + 1) * k * n],
            &mut c[bi * m * n..(bi + 1) * m * n],
            m,
            k,
            n,
            mul_add,
        );
    }
    c
}

fn matmul(a: &Tensor, b: &Tensor, out: &TensorType) -> Data {
    match (&a.data, &b.data) {
        (Data::Int(x), Data::Int(y)) => {
            let dt = out.dtype;
            let c = batched_matmul(x, a.shape(), y, b.shape(), |p: i64, q: i64, acc: i64| {
                acc.wrapping_add(p.wrapping_mul(q))
            });
            Data::Int(c.into_iter().map(|v| wrap(dt, v)).collect())
        }
        _ => Data::Float(batched_matmul(&to_f64(a), a.shape(), &to_f64(b), b.shape(), |p, q, acc| acc + p * q)),
    }
}

fn transpose2(v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    take(v, &strided_offsets(&[cols, rows], 0, &[1, cols as isize]))
}

fn gemm(inputs: &[&Tensor], alpha: f64, beta: f64, ta: bool, tb: bool, out: &TensorType) -> Data {
    let (a, b) = (inputs[0], inputs[1]);
    let (m, n) = (out.shape[0], out.shape[1]);
    let k = if ta { a.shape()[0] } else { a.shape()[1] };
    let av = to_f64(a);
    let bv = to_f64(b);
    let av = if ta { Cow::Owned(transpose2(&av, k, m)) } else { av };
    let bv = if tb { Cow::Owned(transpose2(&bv, n, k)) } else { bv };
    let mut c = vec![0.0; m * n];
    matmul_kernel(&av, &bv, &mut c, m, k, n, |p, q, acc| acc + p * q);
    for v in &mut c {
        *v *= alpha;
    }
    if let Some(ct) = inputs.get(2) {
        let cv = to_f64(ct);
        let cv = expand_to(&cv, ct.shape(), &out.shape);
        for (v, &x) in c.iter_mut().zip(cv.iter()) {
            *v += beta * x;
        }
    }
    if out.dtype.is_int() {
        let dt = out.dtype;
        Data::Int(c.into_iter().map(|v| wrap(dt, v as i64)).collect())
    } else {
        Data::Float(c)
    }
}

/// Direct N-D convolution, NCHW, with groups, strides, pads and dilations.
fn conv(op: &Op, inputs: &[&Tensor]) -> Result<Vec<f64>, IrError> {
    let (x, w) = (inputs[0], inputs[1]);
    let (xs, ws) = (x.shape(), w.shape());
    let geom = conv_geom(op, xs, ws)?;
    let xv = to_f64(x);
    let wv = to_f64(w);
    let bias = inputs.get(2).map(|b| to_f64(b));
    let (nb, c, m) = (xs[0], xs[1], ws[0]);
    let (cg, mg) = (c / geom.group, m / geom.group);
    let in_sp = &xs[2..];
    let in_size: usize = in_sp.iter().product();
    let k_size: usize = geom.kernel.iter().product();
    let out_size: usize = geom.out_spatial.iter().product();
    let sp_rank = in_sp.len();
    let in_strides = strides(in_sp);
    // Every kernel position as a coordinate vector, in the weight's row-major order.
    let kpos: Vec<Vec<usize>> = (0..k_size)
        .map(|mut f| {
            let mut p = vec![0; sp_rank];
            for d in (0..sp_rank).rev() {
                p[d] = f % geom.kernel[d];
                f /= geom.kernel[d];
            }
            p
        })
        .collect();
    let mut y = vec![0.0; nb * m * out_size];
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(k_size);
    let mut opos = vec![0usize; sp_rank];
    for o in 0..out_size {
        // Output coordinate of flat index `o`.
        let mut f = o;
        for d in (0..sp_rank).rev() {
            opos[d] = f % geom.out_spatial[d];
            f /= geom.out_spatial[d];
        }
        // (kernel offset, input offset) pairs that land inside the unpadded input.
        pairs.clear();
        'k: for (kf, kp) in kpos.iter().enumerate() {
            let mut off = 0;
            for d in 0..sp_rank {
                let p = (opos[d] * geom.strides[d] + kp[d] * geom.dilations[d]) as isize - geom.pad_begin[d] as isize;
                if p < 0 || p as usize >= in_sp[d] {
                    continue 'k;
                }
                off += p as usize * in_strides[d];
            }
            pairs.push((kf, off));
        }
        for n in 0..nb {
            for oc in 0..m {
                let grp = oc / mg;
                let mut acc = bias.as_ref().map_or(0.0, |b| b[oc]);
                for ic in 0..cg {
                    let xb = (n * c + grp * cg + ic) * in_size;
                    let wb = (oc * cg + ic) * k_size;
                    for &(kf, off) in &pairs {
                        acc += wv[wb + kf] * xv[xb + off];
                    }
                }
                y[(n * m + oc) * out_size + o] = acc;
            }
        }
    }
    Ok(y)
}

/// Indices of the largest (`max`) or smallest values along `axis` (ties: the first, or the last
/// with `last`; a NaN wins, as in numpy).
fn arg_extreme(x: &Tensor, axis: usize, max: bool, last: bool) -> Data {
    let shape = x.shape();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let v = x.to_f64_vec();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| v[(o * len + k) * inner + i];
            let mut best = 0usize;
            for k in 1..len {
                let (a, b) = (at(k), at(best));
                if b.is_nan() {
                    break;
                }
                let better = a.is_nan() || if max { a > b || (last && a == b) } else { a < b || (last && a == b) };
                if better {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    Data::Int(out)
}

fn reduce(op: &Op, x: &Tensor, axes: &[usize]) -> Result<Data, IrError> {
    let sh = x.shape();
    let mask = reduce_mask(op, axes, sh.len()).map_err(|e| eval_err(op, e.to_string()))?;
    let kept: Vec<usize> = sh.iter().zip(&mask).map(|(&d, &r)| if r { 1 } else { d }).collect();
    let ks = strides(&kept);
    let st: Vec<isize> = ks.iter().zip(&mask).map(|(&s, &r)| if r { 0 } else { s as isize }).collect();
    let dst = strided_offsets(sh, 0, &st);
    let out_n: usize = kept.iter().product();
    let count = x.numel().checked_div(out_n).unwrap_or(0);
    Ok(match &x.data {
        Data::Float(v) => {
            let (init, f): (f64, fn(f64, f64) -> f64) = match op {
                Op::ReduceMax { .. } => {
                    (f64::NEG_INFINITY, |a, b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) })
                }
                Op::ReduceMin { .. } => {
                    (f64::INFINITY, |a, b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) })
                }
                _ => (0.0, |a, b| a + b),
            };
            let mut acc = vec![init; out_n];
            for (&i, &val) in dst.iter().zip(v) {
                acc[i] = f(acc[i], val);
            }
            if matches!(op, Op::ReduceMean { .. }) {
                for a in &mut acc {
                    *a /= count as f64;
                }
            }
            Data::Float(acc)
        }
        Data::Int(v) => {
            let (init, f): (i64, fn(i64, i64) -> i64) = match op {
                Op::ReduceMax { .. } => (i64::MIN, std::cmp::max),
                Op::ReduceMin { .. } => (i64::MAX, std::cmp::min),
                _ => (0, i64::wrapping_add),
            };
            let mut acc = vec![init; out_n];
            for (&i, &val) in dst.iter().zip(v) {
                acc[i] = f(acc[i], val);
            }
            if matches!(op, Op::ReduceMean { .. }) {
                for a in &mut acc {
                    *a = if count == 0 { 0 } else { *a / count as i64 };
                }
            }
            let dt = x.dtype();
            Data::Int(acc.into_iter().map(|a| wrap(dt, a)).collect())
        }
        Data::Bool(_) => return Err(eval_err(op, "cannot reduce a bool tensor")),
    })
}

fn concat(inputs: &[&Tensor], axis: usize) -> Data {
    let sh = inputs[0].shape();
    let outer: usize = sh[..axis].iter().product();
    let inner: usize = sh[axis + 1..].iter().product();
    fn cat<T: Copy>(parts: &[(&[T], usize)], outer: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
        for o in 0..outer {
            for &(v, chunk) in parts {
                out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        out
    }
    let chunk = |t: &Tensor| t.shape()[axis] * inner;
    match &inputs[0].data {
        Data::Float(_) => Data::Float(cat(
            &inputs
                .iter()
                .filter_map(|t| match &t.data {
                    Data::Float(v) => Some((v.as_slice(), chunk(t))),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            outer,
        )),
        Data::Int(_) => Data::Int(cat(
            &inputs
                .iter()
                .filter_map(|t| match &t.data {
                    Data::Int(v) => Some((v.as_slice(), chunk(t))),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            outer,
        )),
        Data::Bool(_) => Data::Bool(cat(
            &inputs
                .iter()
                .filter_map(|t| match &t.data {
                    Data::Bool(v) => Some((v.as_slice(), chunk(t))),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            outer,
        )),
    }
}
