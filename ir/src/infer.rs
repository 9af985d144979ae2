//! Shape and dtype inference for every op, with ONNX semantics.
//!
//! Contract: [`infer_types`] either returns one [`TensorType`] per result of the op or an
//! [`IrError::Shape`] whose `msg` says exactly what did not fit (which input, which axis, which sizes).
//! The `node` field is left empty; [`Graph::add_node`] fills it with the node's name.
//!
//! Rules (ONNX unless stated):
//! - Binary elementwise ops and `Where` use numpy broadcasting ([`broadcast_shapes`]). Arithmetic needs
//!   both inputs of the same numeric dtype; `Pow`'s exponent may be any numeric dtype and the result has
//!   the base's dtype. Comparisons produce `bool`; `Equal` also accepts two `bool`s. `And`/`Or`/`Xor`
//!   take `bool`s.
//! - Transcendental unary ops (`Sqrt`, `Exp`, `Erf`, `Gelu`...) and `Floor`/`Ceil`/`IsNaN`/`IsInf` need
//!   a float input; `Neg`/`Abs`/`Relu`/`Clip` any numeric input; `Not` a `bool`; `Cast` and `Identity`
//!   anything.
//! - `MatMul` follows numpy: a 1-D left operand is a row vector, a 1-D right operand a column vector, the
//!   promoted dimension is dropped from the result, batch dimensions broadcast.
//! - `Conv`: `x` is `[N, C, spatial...]`, `w` is `[M, C/group, kernel...]`; empty `kernel_shape`,
//!   `strides`, `pads` or `dilations` mean the ONNX defaults (kernel from `w`, 1s, 0s, 1s).
//! - Reductions with empty `axes` reduce every axis.
//! - `Slice` expects starts/ends clamped as ONNX clamps them: for a positive step `0 <= start, end <= dim`;
//!   for a negative step `-1 <= start, end <= dim - 1` (an end of `-1` means "through index 0").

use crate::{DType, Graph, IrError, Op, TensorType};

/// Numpy broadcast of two shapes (right-aligned; a dimension of 1 stretches), or `None` if they clash.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        // Dimension i counted from the left of the result; missing leading dims count as 1.
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        *o = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return None;
        };
    }
    Some(out)
}

/// Geometry of a convolution, with ONNX defaults filled in. Shared with the interpreter.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeom {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    /// Begin pads, one per spatial axis.
    pub pad_begin: Vec<usize>,
    pub dilations: Vec<usize>,
    pub group: usize,
    /// Output spatial sizes.
    pub out_spatial: Vec<usize>,
}

/// Number of elements of a (possibly stepped) slice along one axis; `None` if the bounds are not clamped.
pub(crate) fn slice_len(dim: usize, start: i64, end: i64, step: i64) -> Option<usize> {
    // i128 so that steps like i64::MAX (exporters' "to the end") cannot overflow.
    let (d, start, end, step) = (dim as i128, start as i128, end as i128, step as i128);
    let span = if step > 0 {
        if !(0..=d).contains(&start) || !(0..=d).contains(&end) {
            return None;
        }
        end - start
    } else if step < 0 {
        if !(-1..d).contains(&start) || !(-1..d).contains(&end) {
            return None;
        }
        start - end
    } else {
        return None;
    };
    let s = step.abs();
    Some(if span > 0 { ((span + s - 1) / s) as usize } else { 0 })
}

fn err(op: &Op, msg: impl Into<String>) -> IrError {
    IrError::Shape { op: op.name().to_string(), node: String::new(), msg: msg.into() }
}

fn arity(op: &Op, inputs: &[TensorType], min: usize, max: usize) -> Result<(), IrError> {
    let n = inputs.len();
    if n < min || n > max {
        let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(err(op, format!("expects {want} inputs, got {n}")));
    }
    Ok(())
}

fn is_numeric(d: DType) -> bool {
    d.is_float() || d.is_int()
}

fn need_float(op: &Op, what: &str, t: &TensorType) -> Result<(), IrError> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(err(op, format!("{what} must be a float tensor, got {}", t)))
    }
}

fn need_numeric(op: &Op, what: &str, t: &TensorType) -> Result<(), IrError> {
    if is_numeric(t.dtype) {
        Ok(())
    } else {
        Err(err(op, format!("{what} must be numeric, got {}", t)))
    }
}

fn need_int(op: &Op, what: &str, t: &TensorType) -> Result<(), IrError> {
    if t.dtype.is_int() {
        Ok(())
    } else {
        Err(err(op, format!("{what} must be an integer tensor, got {}", t)))
    }
}

fn same_dtype(op: &Op, a: &TensorType, b: &TensorType, what: &str) -> Result<(), IrError> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(err(op, format!("{what}: dtypes differ ({} vs {})", a, b)))
    }
}

fn bcast(op: &Op, a: &[usize], b: &[usize]) -> Result<Vec<usize>, IrError> {
    broadcast_shapes(a, b).ok_or_else(|| err(op, format!("shapes {:?} and {:?} do not broadcast", a, b)))
}

fn check_axis(op: &Op, axis: usize, rank: usize, what: &str) -> Result<(), IrError> {
    if axis < rank {
        Ok(())
    } else {
        Err(err(op, format!("{what} {axis} is out of range for rank {rank}")))
    }
}

/// Checks that `t` broadcasts unidirectionally to `target` (ONNX "unidirectional broadcasting").
fn unidirectional(op: &Op, what: &str, t: &[usize], target: &[usize]) -> Result<(), IrError> {
    match broadcast_shapes(target, t) {
        Some(s) if s == target => Ok(()),
        _ => Err(err(op, format!("{what} shape {:?} does not broadcast to {:?}", t, target))),
    }
}

/// Result types of `op` applied to inputs of types `inputs`. `g` supplies constant types.
pub fn infer_types(op: &Op, inputs: &[TensorType], g: &Graph) -> Result<Vec<TensorType>, IrError> {
    let one = |t: TensorType| Ok(vec![t]);
    match op {
        Op::Constant(c) => {
            arity(op, inputs, 0, 0)?;
            match g.constants.get(*c) {
                Some(t) => one(t.ty.clone()),
                None => Err(err(op, format!("constant {c} is not in the graph's pool"))),
            }
        }

        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Min => {
            arity(op, inputs, 2, 2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            same_dtype(op, a, b, "operands")?;
            need_numeric(op, "operand", a)?;
            one(TensorType::new(a.dtype, bcast(op, &a.shape, &b.shape)?))
        }
        Op::Pow => {
            arity(op, inputs, 2, 2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            need_numeric(op, "base", a)?;
            need_numeric(op, "exponent", b)?;
            one(TensorType::new(a.dtype, bcast(op, &a.shape, &b.shape)?))
        }
        Op::Equal | Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            arity(op, inputs, 2, 2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            same_dtype(op, a, b, "operands")?;
            if *op != Op::Equal {
                need_numeric(op, "operand", a)?;
            }
            one(TensorType::new(DType::Bool, bcast(op, &a.shape, &b.shape)?))
        }
        Op::And | Op::Or | Op::Xor => {
            arity(op, inputs, 2, 2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            for (what, t) in [("first operand", a), ("second operand", b)] {
                if t.dtype != DType::Bool {
                    return Err(err(op, format!("{what} must be bool, got {t}")));
                }
            }
            one(TensorType::new(DType::Bool, bcast(op, &a.shape, &b.shape)?))
        }

        Op::Sqrt
        | Op::Reciprocal
        | Op::Exp
        | Op::Log
        | Op::Erf
        | Op::Tanh
        | Op::Sigmoid
        | Op::Floor
        | Op::Ceil
        | Op::Gelu(_)
        | Op::Chebyshev { .. } => {
            arity(op, inputs, 1, 1)?;
            need_float(op, "input", &inputs[0])?;
            one(inputs[0].clone())
        }
        // `Clip` with min > max is legal: like onnxruntime and numpy, the result is then max everywhere.
        Op::Neg | Op::Abs | Op::Relu | Op::Clip { .. } => {
            arity(op, inputs, 1, 1)?;
            need_numeric(op, "input", &inputs[0])?;
            one(inputs[0].clone())
        }
        Op::IsNaN | Op::IsInf => {
            arity(op, inputs, 1, 1)?;
            need_float(op, "input", &inputs[0])?;
            one(TensorType::new(DType::Bool, inputs[0].shape.clone()))
        }
        Op::Not => {
            arity(op, inputs, 1, 1)?;
            if inputs[0].dtype != DType::Bool {
                return Err(err(op, format!("input must be bool, got {}", inputs[0])));
            }
            one(inputs[0].clone())
        }
        Op::Identity => {
            arity(op, inputs, 1, 1)?;
            one(inputs[0].clone())
        }
        Op::Cast(to) => {
            arity(op, inputs, 1, 1)?;
            one(TensorType::new(*to, inputs[0].shape.clone()))
        }

        Op::Where => {
            arity(op, inputs, 3, 3)?;
            let (c, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
            if c.dtype != DType::Bool {
                return Err(err(op, format!("condition must be bool, got {c}")));
            }
            same_dtype(op, a, b, "branches")?;
            let ab = bcast(op, &a.shape, &b.shape)?;
            one(TensorType::new(a.dtype, bcast(op, &c.shape, &ab)?))
        }

        Op::Softmax { axis } => {
            arity(op, inputs, 1, 1)?;
            need_float(op, "input", &inputs[0])?;
            check_axis(op, *axis, inputs[0].rank(), "axis")?;
            one(inputs[0].clone())
        }
        Op::LayerNorm { axis, epsilon } => {
            arity(op, inputs, 2, 3)?;
            let x = &inputs[0];
            need_float(op, "input", x)?;
            check_axis(op, *axis, x.rank(), "axis")?;
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err(err(op, format!("epsilon {epsilon} must be non-negative")));
            }
            let norm = &x.shape[*axis..];
            for (what, t) in [("scale", inputs.get(1)), ("bias", inputs.get(2))] {
                if let Some(t) = t {
                    same_dtype(op, x, t, what)?;
                    unidirectional(op, what, &t.shape, norm)?;
                }
            }
            one(x.clone())
        }
        Op::BatchNorm { epsilon } => {
            arity(op, inputs, 5, 5)?;
            let x = &inputs[0];
            need_float(op, "input", x)?;
            if x.rank() < 2 {
                return Err(err(op, format!("input must have rank >= 2 (N, C, ...), got {x}")));
            }
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err(err(op, format!("epsilon {epsilon} must be non-negative")));
            }
            let c = x.shape[1];
            for (what, t) in ["scale", "bias", "mean", "var"].iter().zip(&inputs[1..]) {
                same_dtype(op, x, t, what)?;
                if t.shape != [c] {
                    return Err(err(op, format!("{what} must have shape [{c}] (the channel count), got {t}")));
                }
            }
            one(x.clone())
        }

        Op::MatMul => {
            arity(op, inputs, 2, 2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            same_dtype(op, a, b, "operands")?;
            need_numeric(op, "operand", a)?;
            one(TensorType::new(a.dtype, matmul_shape(op, &a.shape, &b.shape)?))
        }
        Op::Gemm { trans_a, trans_b, .. } => {
            arity(op, inputs, 2, 3)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            same_dtype(op, a, b, "A and B")?;
            need_numeric(op, "A", a)?;
            if a.rank() != 2 || b.rank() != 2 {
                return Err(err(op, format!("A and B must be 2-D, got {a} and {b}")));
            }
            let (m, k) = if *trans_a { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
            let (k2, n) = if *trans_b { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
            if k != k2 {
                return Err(err(op, format!("inner dimensions differ: op(A) is [{m},{k}], op(B) is [{k2},{n}]")));
            }
            if let Some(c) = inputs.get(2) {
                same_dtype(op, a, c, "A and C")?;
                unidirectional(op, "C", &c.shape, &[m, n])?;
            }
            one(TensorType::new(a.dtype, vec![m, n]))
        }
        Op::Conv { .. } => {
            arity(op, inputs, 2, 3)?;
            let (x, w) = (&inputs[0], &inputs[1]);
            same_dtype(op, x, w, "input and weight")?;
            need_float(op, "input", x)?;
            let geom = conv_geom(op, &x.shape, &w.shape)?;
            let m = w.shape[0];
            if let Some(b) = inputs.get(2) {
                same_dtype(op, x, b, "input and bias")?;
                if b.shape != [m] {
                    return Err(err(op, format!("bias must have shape [{m}] (output channels), got {b}")));
                }
            }
            let mut shape = vec![x.shape[0], m];
            shape.extend_from_slice(&geom.out_spatial);
            one(TensorType::new(x.dtype, shape))
        }

        Op::ReduceMean { axes, keepdims }
        | Op::ReduceSum { axes, keepdims }
        | Op::ReduceMax { axes, keepdims }
        | Op::ReduceMin { axes, keepdims } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            need_numeric(op, "input", x)?;
            let mask = reduce_mask(op, axes, x.rank())?;
            let shape = x
                .shape
                .iter()
                .zip(&mask)
                .filter_map(|(&d, &r)| match (r, keepdims) {
                    (false, _) => Some(d),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect();
            one(TensorType::new(x.dtype, shape))
        }

        Op::ArgMax { axis, keepdims, .. } | Op::ArgMin { axis, keepdims, .. } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            need_numeric(op, "input", x)?;
            if *axis >= x.rank() {
                return Err(err(op, format!("axis {axis} out of range for rank {}", x.rank())));
            }
            let mut shape = x.shape.clone();
            if *keepdims {
                shape[*axis] = 1;
            } else {
                shape.remove(*axis);
            }
            one(TensorType::new(crate::DType::I64, shape))
        }

        Op::Transpose { perm } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            check_perm(op, perm, x.rank())?;
            one(TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p]).collect()))
        }
        Op::Reshape { shape } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
            if n != x.numel() {
                return Err(err(
                    op,
                    format!("cannot reshape {x} ({} elements) to {:?} ({n} elements)", x.numel(), shape),
                ));
            }
            one(TensorType::new(x.dtype, shape.clone()))
        }
        Op::Expand { shape } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            let out = bcast(op, &x.shape, shape)?;
            if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none() {
                return Err(err(op, format!("expanded shape {:?} has too many elements", out)));
            }
            one(TensorType::new(x.dtype, out))
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err(err(op, "expects at least 1 input, got 0"));
            }
            let first = &inputs[0];
            check_axis(op, *axis, first.rank(), "axis")?;
            let mut total = 0;
            for (i, t) in inputs.iter().enumerate() {
                same_dtype(op, first, t, &format!("input 0 and input {i}"))?;
                let same_rest = t.rank() == first.rank()
                    && t.shape.iter().zip(&first.shape).enumerate().all(|(d, (a, b))| d == *axis || a == b);
                if !same_rest {
                    return Err(err(op, format!("input {i} {t} does not match input 0 {first} outside axis {axis}")));
                }
                total += t.shape[*axis];
            }
            let mut shape = first.shape.clone();
            shape[*axis] = total;
            one(TensorType::new(first.dtype, shape))
        }
        Op::Split { axis, sizes } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            check_axis(op, *axis, x.rank(), "axis")?;
            let sum: usize = sizes.iter().sum();
            if sizes.is_empty() || sum != x.shape[*axis] {
                return Err(err(
                    op,
                    format!("sizes {:?} sum to {sum}, but axis {axis} of {x} has {}", sizes, x.shape[*axis]),
                ));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut shape = x.shape.clone();
                    shape[*axis] = s;
                    TensorType::new(x.dtype, shape)
                })
                .collect())
        }
        Op::Slice { axes, starts, ends, steps } => {
            arity(op, inputs, 1, 1)?;
            let x = &inputs[0];
            let n = axes.len();
            if starts.len() != n || ends.len() != n || steps.len() != n {
                return Err(err(
                    op,
                    format!(
                        "axes, starts, ends and steps must have equal lengths, got {}, {}, {}, {}",
                        n,
                        starts.len(),
                        ends.len(),
                        steps.len()
                    ),
                ));
            }
            let mut shape = x.shape.clone();
            let mut seen = vec![false; x.rank()];
            for i in 0..n {
                let a = axes[i];
                check_axis(op, a, x.rank(), "axis")?;
                if std::mem::replace(&mut seen[a], true) {
                    return Err(err(op, format!("axis {a} is sliced twice")));
                }
                shape[a] = slice_len(x.shape[a], starts[i], ends[i], steps[i]).ok_or_else(|| {
                    err(
                        op,
                        format!(
                            "start {}, end {}, step {} are not a clamped slice of axis {a} (size {})",
                            starts[i], ends[i], steps[i], x.shape[a]
                        ),
                    )
                })?;
            }
            one(TensorType::new(x.dtype, shape))
        }
        Op::Gather { axis } => {
            arity(op, inputs, 2, 2)?;
            let (data, idx) = (&inputs[0], &inputs[1]);
            need_int(op, "indices", idx)?;
            check_axis(op, *axis, data.rank(), "axis")?;
            let mut shape = data.shape[..*axis].to_vec();
            shape.extend_from_slice(&idx.shape);
            shape.extend_from_slice(&data.shape[axis + 1..]);
            one(TensorType::new(data.dtype, shape))
        }
        Op::GatherElements { axis } => {
            arity(op, inputs, 2, 2)?;
            let (data, idx) = (&inputs[0], &inputs[1]);
            need_int(op, "indices", idx)?;
            check_axis(op, *axis, data.rank(), "axis")?;
            if idx.rank() != data.rank() {
                return Err(err(op, format!("indices {idx} must have the rank of data {data}")));
            }
            for d in 0..data.rank() {
                if d != *axis && idx.shape[d] > data.shape[d] {
                    return Err(err(
                        op,
                        format!("indices dimension {d} is {}, larger than data's {}", idx.shape[d], data.shape[d]),
                    ));
                }
            }
            one(TensorType::new(data.dtype, idx.shape.clone()))
        }
    }
}

/// numpy `matmul` result shape.
fn matmul_shape(op: &Op, a: &[usize], b: &[usize]) -> Result<Vec<usize>, IrError> {
    if a.is_empty() || b.is_empty() {
        return Err(err(op, format!("operands must have rank >= 1, got {:?} and {:?}", a, b)));
    }
    let (m, ka, batch_a) =
        if a.len() == 1 { (None, a[0], &a[..0]) } else { (Some(a[a.len() - 2]), a[a.len() - 1], &a[..a.len() - 2]) };
    let (kb, n, batch_b) =
        if b.len() == 1 { (b[0], None, &b[..0]) } else { (b[b.len() - 2], Some(b[b.len() - 1]), &b[..b.len() - 2]) };
    if ka != kb {
        return Err(err(op, format!("inner dimensions differ: {:?} x {:?} ({ka} vs {kb})", a, b)));
    }
    let mut out = broadcast_shapes(batch_a, batch_b)
        .ok_or_else(|| err(op, format!("batch dimensions {:?} and {:?} do not broadcast", batch_a, batch_b)))?;
    out.extend(m);
    out.extend(n);
    Ok(out)
}

/// Which axes a reduction reduces (empty `axes` = all).
pub fn reduce_mask(op: &Op, axes: &[usize], rank: usize) -> Result<Vec<bool>, IrError> {
    if axes.is_empty() {
        return Ok(vec![true; rank]);
    }
    let mut mask = vec![false; rank];
    for &a in axes {
        check_axis(op, a, rank, "axis")?;
        if std::mem::replace(&mut mask[a], true) {
            return Err(err(op, format!("axis {a} is listed twice")));
        }
    }
    Ok(mask)
}

fn check_perm(op: &Op, perm: &[usize], rank: usize) -> Result<(), IrError> {
    let mut seen = vec![false; rank];
    let ok = perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
    if ok {
        Ok(())
    } else {
        Err(err(op, format!("perm {:?} is not a permutation of 0..{rank}", perm)))
    }
}

/// Validates a convolution's attributes against `x` and `w` shapes and computes the output geometry.
pub fn conv_geom(op: &Op, x: &[usize], w: &[usize]) -> Result<ConvGeom, IrError> {
    let Op::Conv { kernel_shape, strides, pads, dilations, group } = op else {
        return Err(err(op, "not a convolution"));
    };
    if x.len() < 3 {
        return Err(err(op, format!("input must be [N, C, spatial...] with at least one spatial axis, got {:?}", x)));
    }
    if w.len() != x.len() {
        return Err(err(op, format!("weight {:?} must have the rank of input {:?}", w, x)));
    }
    let k = x.len() - 2;
    let kernel = &w[2..];
    let fill = |v: &[usize], what: &str, default: usize, len: usize| -> Result<Vec<usize>, IrError> {
        if v.is_empty() {
            Ok(vec![default; len])
        } else if v.len() == len {
            Ok(v.to_vec())
        } else {
            Err(err(op, format!("{what} has {} entries, expected {len}", v.len())))
        }
    };
    if !kernel_shape.is_empty() && kernel_shape.as_slice() != kernel {
        return Err(err(
            op,
            format!("kernel_shape {:?} does not match weight spatial dims {:?}", kernel_shape, kernel),
        ));
    }
    let strides = fill(strides, "strides", 1, k)?;
    let pads = fill(pads, "pads", 0, 2 * k)?;
    let dilations = fill(dilations, "dilations", 1, k)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(err(op, format!("strides {:?} and dilations {:?} must be positive", strides, dilations)));
    }
    let group = *group;
    let (c, m) = (x[1], w[0]);
    if group == 0 || c % group != 0 || m % group != 0 {
        return Err(err(op, format!("group {group} must divide input channels {c} and output channels {m}")));
    }
    if w[1] * group != c {
        return Err(err(
            op,
            format!("weight has {} input channels per group; input has {c} channels in {group} groups", w[1]),
        ));
    }
    let mut out_spatial = Vec::with_capacity(k);
    for i in 0..k {
        // Saturating: absurd attributes must give an error, not an overflow.
        let padded = x[2 + i].saturating_add(pads[i]).saturating_add(pads[k + i]);
        let span = dilations[i].saturating_mul(kernel[i].max(1) - 1).saturating_add(1);
        if kernel[i] == 0 || padded < span {
            return Err(err(
                op,
                format!("spatial axis {i}: padded input {padded} is smaller than the dilated kernel {span}"),
            ));
        }
        out_spatial.push((padded - span) / strides[i] + 1);
    }
    Ok(ConvGeom { kernel: kernel.to_vec(), strides, pad_begin: pads[..k].to_vec(), dilations, group, out_spatial })
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)] // Cloning reads better in type lists.
mod tests {
    use super::*;
    use crate::GeluApprox;

    fn t(dtype: DType, shape: &[usize]) -> TensorType {
        TensorType::new(dtype, shape.to_vec())
    }

    fn f(shape: &[usize]) -> TensorType {
        t(DType::F32, shape)
    }

    fn infer(op: Op, inputs: &[TensorType]) -> Result<Vec<TensorType>, IrError> {
        infer_types(&op, inputs, &Graph::new("t"))
    }

    fn shape_of(op: Op, inputs: &[TensorType]) -> Vec<usize> {
        let r = infer(op.clone(), inputs).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        assert_eq!(r.len(), 1);
        r[0].shape.clone()
    }

    #[track_caller]
    fn fails(op: Op, inputs: &[TensorType], needle: &str) {
        match infer(op.clone(), inputs) {
            Err(IrError::Shape { op: name, node, msg }) => {
                assert_eq!(name, op.name());
                assert!(node.is_empty());
                assert!(msg.contains(needle), "{op:?}: message {msg:?} lacks {needle:?}");
            }
            other => panic!("{op:?}: expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn broadcast_shapes_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[0], &[1]), Some(vec![0]));
        assert_eq!(broadcast_shapes(&[1, 1], &[]), Some(vec![1, 1]));
        assert_eq!(broadcast_shapes(&[2, 3], &[2]), None);
        assert_eq!(broadcast_shapes(&[4, 1], &[3, 4]), None);
    }

    #[test]
    fn elementwise_types() {
        assert_eq!(shape_of(Op::Add, &[f(&[2, 1, 4]), f(&[3, 1])]), [2, 3, 4]);
        fails(Op::Mul, &[f(&[2, 3]), f(&[2])], "[2, 3] and [2] do not broadcast");
        fails(Op::Add, &[f(&[2]), t(DType::I64, &[2])], "dtypes differ (f32[2] vs i64[2])");
        fails(Op::Add, &[t(DType::Bool, &[2]), t(DType::Bool, &[2])], "must be numeric");
        fails(Op::Add, &[f(&[2])], "expects 2 inputs, got 1");
        let r = infer(Op::Less, &[f(&[2]), f(&[])]).unwrap();
        assert_eq!(r, [t(DType::Bool, &[2])]);
        assert_eq!(infer(Op::Equal, &[t(DType::Bool, &[2]), t(DType::Bool, &[1])]).unwrap()[0].dtype, DType::Bool);
        fails(Op::Less, &[t(DType::Bool, &[2]), t(DType::Bool, &[2])], "must be numeric");
        fails(Op::And, &[f(&[2]), t(DType::Bool, &[2])], "first operand must be bool");
        assert_eq!(infer(Op::Pow, &[f(&[2]), t(DType::I64, &[])]).unwrap(), [f(&[2])]);
        assert_eq!(infer(Op::Cast(DType::I32), &[f(&[2, 2])]).unwrap(), [t(DType::I32, &[2, 2])]);
        assert_eq!(infer(Op::IsNaN, &[f(&[3])]).unwrap(), [t(DType::Bool, &[3])]);
        fails(Op::Exp, &[t(DType::I64, &[3])], "must be a float tensor");
        fails(Op::Gelu(GeluApprox::Erf), &[t(DType::I64, &[3])], "must be a float tensor");
        fails(Op::Not, &[f(&[3])], "must be bool");
        assert_eq!(infer(Op::Where, &[t(DType::Bool, &[2, 1]), f(&[3]), f(&[])]).unwrap(), [f(&[2, 3])]);
        fails(Op::Where, &[f(&[2]), f(&[2]), f(&[2])], "condition must be bool");
    }

    #[test]
    fn matmul_and_gemm_types() {
        assert_eq!(shape_of(Op::MatMul, &[f(&[2, 3]), f(&[3, 4])]), [2, 4]);
        assert_eq!(shape_of(Op::MatMul, &[f(&[3]), f(&[3, 4])]), [4]);
        assert_eq!(shape_of(Op::MatMul, &[f(&[2, 3]), f(&[3])]), [2]);
        assert_eq!(shape_of(Op::MatMul, &[f(&[3]), f(&[3])]), Vec::<usize>::new());
        assert_eq!(shape_of(Op::MatMul, &[f(&[2, 1, 5, 3]), f(&[4, 3, 6])]), [2, 4, 5, 6]);
        assert_eq!(shape_of(Op::MatMul, &[f(&[5, 3]), f(&[7, 3, 6])]), [7, 5, 6]);
        fails(Op::MatMul, &[f(&[2, 3]), f(&[4, 5])], "inner dimensions differ");
        fails(Op::MatMul, &[f(&[2, 2, 3]), f(&[3, 3, 5])], "batch dimensions [2] and [3] do not broadcast");
        fails(Op::MatMul, &[f(&[]), f(&[3])], "rank >= 1");
        let gemm = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: true, trans_b: false };
        assert_eq!(shape_of(gemm.clone(), &[f(&[3, 2]), f(&[3, 4]), f(&[4])]), [2, 4]);
        fails(gemm.clone(), &[f(&[3, 2]), f(&[3, 4]), f(&[2, 3])], "C shape [2, 3] does not broadcast to [2, 4]");
        fails(gemm, &[f(&[2, 3]), f(&[3, 4])], "inner dimensions differ");
    }

    #[test]
    fn conv_types() {
        let conv = |strides: Vec<usize>, pads: Vec<usize>, dilations: Vec<usize>, group: usize| Op::Conv {
            kernel_shape: vec![],
            strides,
            pads,
            dilations,
            group,
        };
        // (32 + 2 - 3) / 2 + 1 = 16
        assert_eq!(
            shape_of(conv(vec![2, 2], vec![1; 4], vec![1, 1], 1), &[f(&[1, 3, 32, 32]), f(&[8, 3, 3, 3])]),
            [1, 8, 16, 16]
        );
        // Dilation 2 makes a 3-tap kernel span 5: 10 - 5 + 1 = 6.
        assert_eq!(shape_of(conv(vec![], vec![], vec![2], 1), &[f(&[2, 4, 10]), f(&[6, 4, 3])]), [2, 6, 6]);
        assert_eq!(shape_of(conv(vec![], vec![], vec![], 2), &[f(&[1, 4, 5]), f(&[6, 2, 1]), f(&[6])]), [1, 6, 5]);
        fails(conv(vec![], vec![], vec![], 3), &[f(&[1, 4, 5]), f(&[6, 2, 1])], "group 3 must divide");
        fails(conv(vec![], vec![], vec![], 1), &[f(&[1, 4, 5]), f(&[6, 2, 1])], "2 input channels per group");
        fails(conv(vec![], vec![], vec![], 1), &[f(&[1, 1, 2]), f(&[1, 1, 3])], "smaller than the dilated kernel");
        fails(
            conv(vec![1], vec![0, 0], vec![1], 1),
            &[f(&[1, 1, 3]), f(&[2, 1, 3]), f(&[1])],
            "bias must have shape [2]",
        );
        fails(
            conv(vec![1, 1], vec![], vec![], 1),
            &[f(&[1, 1, 3]), f(&[1, 1, 3])],
            "strides has 2 entries, expected 1",
        );
        let huge = conv(vec![], vec![], vec![usize::MAX], 1);
        fails(huge, &[f(&[1, 1, 3]), f(&[1, 1, 3])], "smaller than the dilated kernel");
        let ks = Op::Conv { kernel_shape: vec![2], strides: vec![], pads: vec![], dilations: vec![], group: 1 };
        fails(ks, &[f(&[1, 1, 3]), f(&[1, 1, 3])], "kernel_shape [2] does not match");
    }

    #[test]
    fn norm_types() {
        assert_eq!(shape_of(Op::Softmax { axis: 2 }, &[f(&[1, 2, 3])]), [1, 2, 3]);
        fails(Op::Softmax { axis: 3 }, &[f(&[1, 2, 3])], "axis 3 is out of range for rank 3");
        let ln = Op::LayerNorm { axis: 1, epsilon: 1e-5 };
        assert_eq!(shape_of(ln.clone(), &[f(&[2, 4]), f(&[4]), f(&[4])]), [2, 4]);
        assert_eq!(shape_of(ln.clone(), &[f(&[2, 4]), f(&[1])]), [2, 4]);
        fails(ln.clone(), &[f(&[2, 4]), f(&[3])], "scale shape [3] does not broadcast to [4]");
        fails(ln, &[f(&[2, 4]), f(&[4]), f(&[2, 4])], "bias shape [2, 4] does not broadcast to [4]");
        let bn = Op::BatchNorm { epsilon: 1e-5 };
        assert_eq!(shape_of(bn.clone(), &[f(&[1, 3, 4]), f(&[3]), f(&[3]), f(&[3]), f(&[3])]), [1, 3, 4]);
        fails(bn, &[f(&[1, 3, 4]), f(&[3]), f(&[3]), f(&[4]), f(&[3])], "mean must have shape [3]");
    }

    #[test]
    fn reduction_types() {
        let x = f(&[2, 3, 4]);
        assert_eq!(shape_of(Op::ReduceMean { axes: vec![2], keepdims: true }, &[x.clone()]), [2, 3, 1]);
        assert_eq!(shape_of(Op::ReduceSum { axes: vec![0, 2], keepdims: false }, &[x.clone()]), [3]);
        assert_eq!(shape_of(Op::ReduceMax { axes: vec![], keepdims: false }, &[x.clone()]), Vec::<usize>::new());
        assert_eq!(shape_of(Op::ReduceMin { axes: vec![], keepdims: true }, &[x.clone()]), [1, 1, 1]);
        fails(Op::ReduceSum { axes: vec![3], keepdims: true }, &[x.clone()], "axis 3 is out of range");
        fails(Op::ReduceSum { axes: vec![1, 1], keepdims: true }, &[x], "axis 1 is listed twice");
    }

    #[test]
    fn data_movement_types() {
        let x = f(&[2, 3, 4]);
        assert_eq!(shape_of(Op::Transpose { perm: vec![2, 0, 1] }, &[x.clone()]), [4, 2, 3]);
        fails(Op::Transpose { perm: vec![0, 0, 1] }, &[x.clone()], "not a permutation of 0..3");
        assert_eq!(shape_of(Op::Reshape { shape: vec![6, 4] }, &[x.clone()]), [6, 4]);
        fails(Op::Reshape { shape: vec![5, 5] }, &[x.clone()], "(24 elements) to [5, 5] (25 elements)");
        assert_eq!(shape_of(Op::Expand { shape: vec![5, 1, 1, 4] }, &[x.clone()]), [5, 2, 3, 4]);
        assert_eq!(shape_of(Op::Expand { shape: vec![4] }, &[x.clone()]), [2, 3, 4]);
        fails(Op::Expand { shape: vec![3, 3] }, &[x.clone()], "do not broadcast");
        assert_eq!(shape_of(Op::Concat { axis: 1 }, &[x.clone(), f(&[2, 5, 4])]), [2, 8, 4]);
        fails(Op::Concat { axis: 1 }, &[x.clone(), f(&[2, 5, 3])], "outside axis 1");
        fails(Op::Concat { axis: 0 }, &[], "at least 1 input");
        let parts = infer(Op::Split { axis: 2, sizes: vec![1, 3] }, &[x.clone()]).unwrap();
        assert_eq!(parts, [f(&[2, 3, 1]), f(&[2, 3, 3])]);
        fails(Op::Split { axis: 2, sizes: vec![1, 2] }, &[x.clone()], "sum to 3, but axis 2");
        let slice =
            |starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>| Op::Slice { axes: vec![1], starts, ends, steps };
        assert_eq!(shape_of(slice(vec![0], vec![3], vec![2]), &[x.clone()]), [2, 2, 4]);
        assert_eq!(shape_of(slice(vec![2], vec![-1], vec![-1]), &[x.clone()]), [2, 3, 4]);
        assert_eq!(shape_of(slice(vec![2], vec![0], vec![-3]), &[x.clone()]), [2, 1, 4]);
        assert_eq!(shape_of(slice(vec![2], vec![1], vec![1]), &[x.clone()]), [2, 0, 4]);
        fails(slice(vec![0], vec![4], vec![1]), &[x.clone()], "not a clamped slice of axis 1 (size 3)");
        fails(slice(vec![0], vec![3], vec![0]), &[x.clone()], "step 0");
        let ids = t(DType::I64, &[5, 7]);
        assert_eq!(shape_of(Op::Gather { axis: 1 }, &[x.clone(), ids.clone()]), [2, 5, 7, 4]);
        assert_eq!(shape_of(Op::Gather { axis: 0 }, &[x.clone(), t(DType::I64, &[])]), [3, 4]);
        fails(Op::Gather { axis: 0 }, &[x.clone(), f(&[2])], "indices must be an integer tensor");
        let gi = t(DType::I64, &[2, 5, 4]);
        assert_eq!(shape_of(Op::GatherElements { axis: 1 }, &[x.clone(), gi]), [2, 5, 4]);
        fails(Op::GatherElements { axis: 1 }, &[x, t(DType::I64, &[3, 1, 1])], "dimension 0 is 3");
    }

    #[test]
    fn constant_type_comes_from_the_pool() {
        let mut g = Graph::new("c");
        g.add_constant(crate::Tensor::int(DType::I64, vec![2], vec![1, 2]).unwrap(), "k");
        let c = g.constants.keys().next().unwrap();
        assert_eq!(infer_types(&Op::Constant(c), &[], &g).unwrap(), [t(DType::I64, &[2])]);
        let missing = Graph::new("empty");
        assert!(infer_types(&Op::Constant(c), &[], &missing).is_err());
    }

    #[test]
    fn every_op_has_a_rule() {
        // One well-typed instance of each variant; a new variant without a rule would fail to compile in
        // `infer_types` already, this checks the rules accept ordinary inputs.
        let g = Graph::new("t");
        let x = f(&[2, 4]);
        let b = t(DType::Bool, &[2, 4]);
        let i = t(DType::I64, &[2]);
        let bin = [Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Pow, Op::Max, Op::Min];
        for op in bin {
            assert_eq!(infer_types(&op, &[x.clone(), x.clone()], &g).unwrap(), [x.clone()]);
        }
        for op in [
            Op::Neg,
            Op::Abs,
            Op::Sqrt,
            Op::Reciprocal,
            Op::Exp,
            Op::Log,
            Op::Erf,
            Op::Tanh,
            Op::Sigmoid,
            Op::Relu,
            Op::Floor,
            Op::Ceil,
            Op::Identity,
            Op::Gelu(GeluApprox::Tanh),
        ] {
            assert_eq!(infer_types(&op, &[x.clone()], &g).unwrap(), [x.clone()], "{op:?}");
        }
        for op in [Op::Xor, Op::Or] {
            assert_eq!(infer_types(&op, &[b.clone(), b.clone()], &g).unwrap(), [b.clone()]);
        }
        assert_eq!(infer_types(&Op::Gather { axis: 1 }, &[x.clone(), i.clone()], &g).unwrap(), [f(&[2, 2])]);
    }
}
