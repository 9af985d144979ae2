//! Operations of the tensor IR.
//!
//! Every attribute is static: the frontend resolves dynamic dims and folds the shape subgraphs that
//! exporters emit before building the IR, so `Reshape`, `Slice`, `Expand`... carry concrete numbers.
//! Axes are normalized to be non-negative. The name returned by [`Op::name`] is the op's keyword in the
//! text form; attributes print as `{key=value, ...}` after it (see `text.rs`).

use crate::{Const, DType};

/// How a GELU is computed: exactly (`x·Φ(x)` with erf) or with the tanh approximation.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum GeluApprox {
    Erf,
    Tanh,
}

/// An operation. Inputs are listed per variant; all elementwise binary ops use ONNX (numpy) broadcasting.
#[derive(Clone, PartialEq, Debug)]
pub enum Op {
    /// A constant from the graph's pool. No inputs.
    Constant(Const),

    // ---- elementwise binary, broadcasting: (a, b) ----
    Add,
    Sub,
    Mul,
    Div,
    /// `a ^ b`.
    Pow,
    Max,
    Min,
    /// Comparisons produce `bool`.
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    /// Logical ops on `bool`.
    And,
    Or,
    Xor,

    // ---- elementwise unary: (x) ----
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Erf,
    Tanh,
    Sigmoid,
    Relu,
    Floor,
    Ceil,
    Not,
    IsNaN,
    IsInf,
    Identity,
    Cast(DType),
    /// Clamp to `[min, max]` (either side may be open).
    Clip {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// Recognized GELU (from Erf/Tanh subgraphs or a `Gelu` op).
    Gelu(GeluApprox),
    /// The polynomial stage's elementwise polynomial `Σ coeffs[k]·T_k(t)` in the Chebyshev basis, with
    /// `t = (2x − lo − hi)/(hi − lo)` mapping the fitted interval `[lo, hi]` onto `[−1, 1]`. It is only
    /// accurate inside `[lo, hi]`; the poly-mode runner counts inputs that fall outside. Multiplicative
    /// depth `ceil(log2(degree + 1))`.
    Chebyshev {
        lo: f64,
        hi: f64,
        coeffs: Vec<f64>,
    },

    /// `(cond, a, b)` → `cond ? a : b`, broadcasting.
    Where,

    // ---- normalization and softmax ----
    /// `(x)`.
    Softmax {
        axis: usize,
    },
    /// `(x, scale, bias?)`: normalizes over axes `axis..rank`.
    LayerNorm {
        axis: usize,
        epsilon: f64,
    },
    /// Inference-mode `(x, scale, bias, mean, var)`, channel axis 1.
    BatchNorm {
        epsilon: f64,
    },

    // ---- linear algebra ----
    /// numpy `matmul` semantics, batch dims broadcast: `(a, b)`.
    MatMul,
    /// `alpha·op(A)·op(B) + beta·C`: `(a, b, c?)`, A and B are 2-D.
    Gemm {
        alpha: f64,
        beta: f64,
        trans_a: bool,
        trans_b: bool,
    },
    /// N-D convolution `(x, w, b?)`, NCHW layout; `pads` = [begin..., end...].
    Conv {
        kernel_shape: Vec<usize>,
        strides: Vec<usize>,
        pads: Vec<usize>,
        dilations: Vec<usize>,
        group: usize,
    },

    // ---- reductions: (x) ----
    ReduceMean {
        axes: Vec<usize>,
        keepdims: bool,
    },
    ReduceSum {
        axes: Vec<usize>,
        keepdims: bool,
    },
    ReduceMax {
        axes: Vec<usize>,
        keepdims: bool,
    },
    ReduceMin {
        axes: Vec<usize>,
        keepdims: bool,
    },
    /// Index (i64) of the largest value along `axis`; ties take the first index, or the last
    /// with `last`.
    ArgMax {
        axis: usize,
        keepdims: bool,
        last: bool,
    },
    /// [`Op::ArgMax`] of the smallest value.
    ArgMin {
        axis: usize,
        keepdims: bool,
        last: bool,
    },

    // ---- data movement: (x) unless noted ----
    Transpose {
        perm: Vec<usize>,
    },
    /// Static target shape (ONNX Reshape/Flatten/Squeeze/Unsqueeze all become this).
    Reshape {
        shape: Vec<usize>,
    },
    /// Broadcast to a static shape.
    Expand {
        shape: Vec<usize>,
    },
    /// `(x0, x1, ...)`.
    Concat {
        axis: usize,
    },
    /// One output per entry of `sizes`.
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// Per sliced axis: start, end (exclusive, already clamped) and step (non-zero).
    Slice {
        axes: Vec<usize>,
        starts: Vec<i64>,
        ends: Vec<i64>,
        steps: Vec<i64>,
    },
    /// `(data, indices)`: numpy `take` along `axis`; indices are integers, negatives wrap.
    Gather {
        axis: usize,
    },
    /// `(data, indices)` same rank; ONNX GatherElements.
    GatherElements {
        axis: usize,
    },
}

impl Op {
    /// The op's keyword in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Constant(_) => "const",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Pow => "pow",
            Op::Max => "max",
            Op::Min => "min",
            Op::Equal => "equal",
            Op::Less => "less",
            Op::LessOrEqual => "less_or_equal",
            Op::Greater => "greater",
            Op::GreaterOrEqual => "greater_or_equal",
            Op::And => "and",
            Op::Or => "or",
            Op::Xor => "xor",
            Op::Neg => "neg",
            Op::Abs => "abs",
            Op::Sqrt => "sqrt",
            Op::Reciprocal => "reciprocal",
            Op::Exp => "exp",
            Op::Log => "log",
            Op::Erf => "erf",
            Op::Tanh => "tanh",
            Op::Sigmoid => "sigmoid",
            Op::Relu => "relu",
            Op::Floor => "floor",
            Op::Ceil => "ceil",
            Op::Not => "not",
            Op::IsNaN => "is_nan",
            Op::IsInf => "is_inf",
            Op::Identity => "identity",
            Op::Cast(_) => "cast",
            Op::Clip { .. } => "clip",
            Op::Gelu(_) => "gelu",
            Op::Chebyshev { .. } => "chebyshev",
            Op::Where => "where",
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::BatchNorm { .. } => "batch_norm",
            Op::MatMul => "matmul",
            Op::Gemm { .. } => "gemm",
            Op::Conv { .. } => "conv",
            Op::ReduceMean { .. } => "reduce_mean",
            Op::ReduceSum { .. } => "reduce_sum",
            Op::ReduceMax { .. } => "reduce_max",
            Op::ReduceMin { .. } => "reduce_min",
            Op::ArgMax { .. } => "arg_max",
            Op::ArgMin { .. } => "arg_min",
            Op::Transpose { .. } => "transpose",
            Op::Reshape { .. } => "reshape",
            Op::Expand { .. } => "expand",
            Op::Concat { .. } => "concat",
            Op::Split { .. } => "split",
            Op::Slice { .. } => "slice",
            Op::Gather { .. } => "gather",
            Op::GatherElements { .. } => "gather_elements",
        }
    }

    /// Elementwise binary op with broadcasting.
    pub fn is_binary_elementwise(&self) -> bool {
        matches!(
            self,
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
        )
    }

    /// Elementwise unary op (one input, same shape out).
    pub fn is_unary_elementwise(&self) -> bool {
        matches!(
            self,
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
        )
    }

    /// Multiplicative depth of the op's own evaluation when it runs on a ciphertext: the degree's
    /// `ceil(log2(d+1))` for a Chebyshev polynomial, 0 for others (whose cost depends on operands).
    pub fn poly_depth(&self) -> u32 {
        match self {
            Op::Chebyshev { coeffs, .. } => {
                let d = coeffs.len().saturating_sub(1) as u64;
                64 - d.leading_zeros()
            }
            _ => 0,
        }
    }

    /// Number of results the op produces.
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::Split { sizes, .. } => sizes.len(),
            _ => 1,
        }
    }
}
