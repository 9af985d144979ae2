//! PolynomialReplacement: every non-polynomial op on an encrypted value becomes a subgraph of
//! `chebyshev` evaluations and add/sub/mul/reduce ops, fit on the calibrated range widened by a margin.
//!
//! Requires: a verified graph (after [`crate::fold_affine()`]) and a [`Calibration`] of the same model.
//! Guarantees: the output passes [`verify_poly_stage`]: on values that depend on encrypted data only
//! the poly-stage ops of `notes/poly_design.md` remain; values that depend only on constants and
//! plaintext client inputs keep their ops (they run in plaintext; [`encrypted_values`] decides).
//! Every approximation is recorded as an [`ApproxRecord`] (node, op, calibrated range, fitted interval,
//! method, degree, measured max error, depth). File test: `passes/tests/poly_models.rs`.
//!
//! Which values are encrypted ([`encrypted_values`]): float graph inputs, and embedding lookups
//! (a `gather` from a float constant table with indices that come from an input: the client encrypts
//! the embeddings it looked up), and everything computed from an encrypted value. Integer inputs
//! (token ids, attention masks) and what is computed only from them and constants is plaintext.
//!
//! Replacements:
//! | op | replacement |
//! |---|---|
//! | gelu, erf, tanh, sigmoid | one `chebyshev` (Remez/Chebyshev, smallest depth reaching `target_error`) |
//! | relu | direct `chebyshev`, or composite odd sign polynomials `x·(1+s(x/R))/2` (chained `chebyshev`s and one mul) |
//! | exp | `chebyshev` of `exp(x/2^r)` on the range (relative error; interpolation, else relative Remez) followed by `r` squarings |
//! | layer_norm | `s = Σx`, `d = n·x − s`, `mean d²` (= `n²·var`; no cancellation), `+ n²·eps`, 1/√ as a `chebyshev` guess + Newton steps (mul/sub) fit on `n²·(var+eps)`, `× d·gamma`, `+ beta` |
//! | softmax | `x − max̂_j x` by a tournament of polynomial ReLUs when the other forms' row sums span too much or it is shallower (`--softmax-max`, see "Row maximum"), else rows centered `x − mean_j x` when that lowers the depth of exp + 1/sum (`--softmax-center`; through the keys `A·(B − mean_j B)` when the scores are a ct×ct product times scalars), `x − shift` (per-head calibrated shift, see [`crate::calibrate()`]), exp as above, `× exp(mask)` (plaintext) when the input is `scores + mask`, `reduce_sum`, 1/sum as below, mul; a `matmul` consuming a last-axis softmax becomes `(exp·V)·(1/sum)` |
//! | softmax (σ) | `relu(x)/n` (only for models trained with σ-attention; [`SoftmaxMethod::Sigma`]) |
//! | div by constant / plaintext | mul by the reciprocal (computed in plaintext) |
//! | div by encrypted, reciprocal, softmax's 1/sum | the cheaper of: closed-form polynomial guess + residual + Goldschmidt fit on `[lo, H'·hi]` (`choose_reciprocal`, converges on `(0, H'·hi + lo)`), or constant guess `1/(H·hi)` + Goldschmidt (`robust_reciprocal`: converges on `(0, 2H·hi)`) |
//! | sqrt, pow (non-integer exponent) | `chebyshev` on the calibrated range; pow with a small integer exponent → muls |
//! | clip | removed when the calibrated range lies inside its bounds (an epsilon clamp), else `chebyshev` |
//! | cast (float→float), identity | removed |
//!
//! Why softmax looks like this: without the row max (costly under HE), row sums of a pretrained
//! model span many orders of magnitude (MiniLM layer 0: 3e-12 … 1 even with per-head shifts). The
//! constant guess needs about `log2(2H·hi/lo)` Goldschmidt steps; the relative-minimax polynomial
//! guess of depth `D` ([`crate::approx::reciprocal_guess`]) leaves about `log2(hi/lo) − 2D` of them,
//! and the search picks the `(D, steps)` of least depth. A polynomial guess extrapolates wildly above
//! its interval, where the steps diverge (to inf/NaN): sentences unlike the calibration set do reach
//! row sums above the calibrated range (MiniLM's test sentences: 11× its top), so the guess is fit
//! with headroom `H' = reciprocal_poly_headroom` (16, the constant guess's `2H`: both tolerate the
//! same unseen sums). `poly_run` counts inputs outside the guess's interval. The exponential is fit
//! on *relative* error so that rows whose sum is tiny keep their relative accuracy.
//!
//! Why center: softmax ignores a per-row shift, and the row mean is linear. Centered rows sum to at
//! least `L·exp(−shift)` (Jensen), so their row sums span the in-row spread only; a trained model's
//! rows sit at offsets that vary with the query (the shipped encoder: ratio 1.7e4 uncentered, 64
//! centered: exp depth 5 → 4, 1/sum depth 11 → 7). Rows dominated by one score (MiniLM's layer 0)
//! are worse centered (the mean falls far below the max), so `Auto` compares both forms' depths per
//! node.
//!
//! Row maximum (`--softmax-max`, [`SoftmaxMax`]): the exact fix for rows dominated by one score is
//! the row max, and it need not be exact, since softmax ignores the shift. A tournament computes
//! it: `⌈log2 L⌉` rounds, each comparing the first half of the remaining positions with the second
//! as `max(a, b) = b + relu(a − b)`, with one ReLU fit on `[-R, R]`, `R` the calibrated row spread
//! `max_j − min_j` widened (an odd position out waits a round). Each round errs by at most the
//! ReLU's error, so `|max̂ − max| ≤ δ = rounds · ε` (budget 1), and the exponential's argument
//! `x − max̂ − shift` and the row sums take the calibrated max form's ranges widened by `δ` and
//! `e^±δ`. A row then sums to at least `e^−δ`. With a mask (plaintext), the tree compares
//! `x + max(bias, −C)`, `C` above the calibrated row spread: a masked position ends at least `C`
//! below any unmasked one and never wins (the ReLU's interval doubles). Ignoring the mask left
//! MiniLM rows summing to 3e-3 (a padding token's score on top), whose 1/sum then amplified the
//! refreshes' absolute error into 0.7% and 23% errors (`--trace`). It costs `rounds × depth(relu)` levels, so `Auto` takes
//! it when that is shallower, or when the other forms' row sums span more than
//! [`UNSAFE_ROW_SUM_RATIO`]: in poly mode a 3e11 ratio only costs depth, but under CKKS the
//! smallest rows drown in noise and 1/sum diverges (MiniLM's layer 0, encrypted: outputs ~1e20).
//!
//! Softmax feeding a matmul (`P·V`, attention): `(exp·(1/sum))·V = (exp·V)·(1/sum)` since 1/sum
//! scales rows, so the ct×ct product runs beside the division instead of after it (one level less).
//!
//! Positive ranges (row sums, variances) are widened multiplicatively: `[lo/f, hi·f]` with
//! `f = 1 + 2·margin`, so a margin never makes them reach 0 (and does not blow up ranges that already
//! span many orders of magnitude).

use cranelift_entity::SecondaryMap;
use polyhe_ir::{DType, Graph, Node, Op, Tensor, Value, ValueDef};
use serde::Serialize;

use crate::approx::{
    build_inverse, chebyshev_fit, fit_reciprocal, fit_relu, fit_to_target, remez, Activation, ApproxError,
    Approximation, Chebyshev, ErrorKind, FitOptions, Interval, InverseFunction, InverseOptions, InverseScheme,
    IterativeInverse, ReluChoice, ReluMethod, ReluOptions,
};
use crate::calibrate::{masked_scores, CalibDetail, Calibration, NodeCalibration, Range};
use crate::error::{PassError, UnsupportedOp};

/// How softmax is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SoftmaxMethod {
    /// `exp(x − shift) / Σ exp(x − shift)`, exp and 1/x approximated (the model's own function).
    ExpInverse,
    /// The paper's σ-attention `relu(x)/n`: a different function, only for models trained with it.
    Sigma,
}

/// Whether softmax centers its scores per row before the exponential (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SoftmaxCenter {
    /// Center when it lowers the depth of exp + 1/sum on the calibrated ranges.
    Auto,
    Always,
    Never,
}

/// Whether softmax subtracts an encrypted row maximum before the exponential (module doc, "Row
/// maximum").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SoftmaxMax {
    /// When it is shallower, or when the other forms' row sums span more than
    /// [`UNSAFE_ROW_SUM_RATIO`] (an encrypted division cannot resolve them).
    Auto,
    Always,
    Never,
}

/// Row sums spanning more than this ratio lose their smallest rows in CKKS noise: after a
/// bootstrapping a value keeps about 20 bits relative to its range, so a row sum 10^6 below the
/// largest is mostly noise, and 1/sum amplifies it (MiniLM's first layer, 3e11, diverges).
pub const UNSAFE_ROW_SUM_RATIO: f64 = 1e6;

/// Options of the polynomial replacement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolyOptions {
    /// Absolute max error for activations (gelu, erf, tanh, sigmoid, relu).
    pub target_error: f64,
    /// Relative max error of exp and of 1/x in softmax and of reciprocals.
    pub softmax_target: f64,
    /// Relative max error of 1/√(var+eps) in layer_norm.
    pub layer_norm_target: f64,
    /// Widen calibrated ranges by this fraction of their width on each side.
    pub margin: f64,
    /// Largest polynomial degree for one `chebyshev`.
    pub max_degree: usize,
    pub softmax: SoftmaxMethod,
    /// Row-centering of softmax scores (exp-inverse method only).
    pub softmax_center: SoftmaxCenter,
    /// Encrypted row maximum of softmax scores (exp-inverse method only).
    pub softmax_max: SoftmaxMax,
    /// Force this many Newton steps for layer_norm's 1/√ (the guess degree is then the smallest
    /// reaching the target); `None` lets the fitter choose.
    pub layer_norm_newton_steps: Option<usize>,
    /// Depth cap of an iterative inverse (guess + steps).
    pub max_inverse_depth: u32,
    /// Largest number of Newton/Goldschmidt steps of an iterative inverse.
    pub max_inverse_steps: u32,
    /// Reciprocals converge for inputs up to `2·headroom` times the top of their fitted interval
    /// (see `robust_reciprocal`); each doubling costs one Goldschmidt step.
    pub reciprocal_headroom: f64,
    /// Largest degree of the polynomial guess of a reciprocal (see `reciprocal`); its residual has
    /// one degree more. Wide ranges gain two Goldschmidt levels per level of guess. Below 2: only
    /// the constant guess (the behaviour before polynomial guesses).
    pub reciprocal_max_guess_degree: usize,
    /// The polynomial guess of a reciprocal is fit on `[lo, headroom·hi]` of the widened range, so it
    /// stays accurate up to `headroom·hi` and converges below `headroom·hi + lo` (above, its
    /// extrapolation diverges: unseen inputs with larger softmax row sums than calibration, see the
    /// module doc). Default 16 = `2·reciprocal_headroom`, the constant guess's convergence bound.
    /// Costs up to `log2(headroom)` levels (about half that while a deeper guess absorbs it).
    pub reciprocal_poly_headroom: f64,
    /// Run the egg depth minimization after replacement.
    pub egraph: bool,
    /// Bounds of the egg runners (node, iteration, time limits).
    #[serde(skip)]
    pub egraph_options: crate::egraph::EgraphOptions,
    /// Run the verifier after every pass (tests set it).
    pub verify: bool,
}

impl Default for PolyOptions {
    fn default() -> Self {
        PolyOptions {
            target_error: 1e-3,
            softmax_target: 1e-3,
            layer_norm_target: 1e-3,
            margin: 0.15,
            max_degree: 127,
            softmax: SoftmaxMethod::ExpInverse,
            softmax_center: SoftmaxCenter::Auto,
            softmax_max: SoftmaxMax::Auto,
            layer_norm_newton_steps: None,
            max_inverse_depth: 64,
            max_inverse_steps: 48,
            reciprocal_headroom: 8.0,
            reciprocal_max_guess_degree: 1022,
            reciprocal_poly_headroom: 16.0,
            egraph: true,
            egraph_options: crate::egraph::EgraphOptions::default(),
            verify: false,
        }
    }
}

/// One approximation made by the pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApproxRecord {
    /// The original node's name.
    pub node: String,
    /// The original op (`gelu`, `softmax`, ...).
    pub op: String,
    /// Which function of the op this approximates (`gelu`, `exp`, `1/sum`, `1/sqrt(var+eps)`, ...).
    pub part: String,
    /// Calibrated [min, max] of the approximated input.
    pub calibrated: [f64; 2],
    /// The interval the polynomial is fit on (calibrated range plus margin).
    pub interval: [f64; 2],
    /// How: `remez`, `chebyshev`, `composite sign`, `chebyshev + 3 squarings`, `guess deg 7 + 2 newton`...
    pub method: String,
    /// Degree of the (largest) polynomial.
    pub degree: usize,
    /// Measured max error on the interval.
    pub max_error: f64,
    /// `absolute` or `relative`.
    pub error_kind: &'static str,
    /// Whether the target error was reached (false: best effort within the degree/depth caps).
    pub target_met: bool,
    /// Multiplicative depth of the emitted subgraph (output depth − input depth, [`crate::analyze_depth`] model).
    pub depth: u32,
    /// Degree-only depth `ceil(log2(d+1))` of a single `chebyshev` (for checks), or the plan depth.
    pub poly_depth: u32,
    /// First and last value of the emitted subgraph in the poly graph (for depth measurement).
    #[serde(skip)]
    pub(crate) io: (Value, Value),
}

/// Result of the pass.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub graph: Graph,
    pub records: Vec<ApproxRecord>,
    /// Names of nodes that stay non-polynomial because they run in plaintext.
    pub plaintext_nodes: Vec<String>,
}

/// Which values depend on encrypted data (module doc).
pub fn encrypted_values(g: &Graph) -> SecondaryMap<Value, bool> {
    let mut enc: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &g.inputs {
        enc[v] = g.ty(v).dtype.is_float();
    }
    for (_, d) in g.nodes.iter() {
        let any = d.inputs.iter().any(|&v| enc[v]);
        let embedding = matches!(d.op, Op::Gather { .. })
            && d.inputs.len() == 2
            && g.constant_of(d.inputs[0]).is_some_and(|t| t.dtype().is_float())
            && depends_on_input(g, d.inputs[1]);
        for &o in &d.outputs {
            enc[o] = any || embedding;
        }
    }
    enc
}

/// Whether `v` is computed from some graph input (not only from constants).
fn depends_on_input(g: &Graph, v: Value) -> bool {
    let mut stack = vec![v];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        match g.values[v].def {
            ValueDef::Input(_) => return true,
            ValueDef::Result(n, _) => stack.extend(g.nodes[n].inputs.iter().copied()),
        }
    }
    false
}

/// Whether `op` may run on encrypted values in the poly stage (notes/poly_design.md).
pub fn is_poly_stage_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Constant(_)
            | Op::Add
            | Op::Sub
            | Op::Neg
            | Op::Mul
            | Op::MatMul
            | Op::Gemm { .. }
            | Op::Conv { .. }
            | Op::ReduceSum { .. }
            | Op::ReduceMean { .. }
            | Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Expand { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Gather { .. }
            | Op::Chebyshev { .. }
    )
}

/// Checks the poly-stage guarantee: every node with an encrypted result is a poly-stage op, `gather`s
/// on encrypted data use plaintext indices, and `conv` weights are not encrypted.
pub fn verify_poly_stage(g: &Graph) -> Result<(), PassError> {
    let enc = encrypted_values(g);
    for (_, d) in g.nodes.iter() {
        if !d.outputs.iter().any(|&o| enc[o]) {
            continue;
        }
        let embedding = matches!(d.op, Op::Gather { .. }) && !d.inputs.iter().any(|&v| enc[v]);
        let bad = !is_poly_stage_op(&d.op)
            || (matches!(d.op, Op::Gather { .. }) && d.inputs.len() > 1 && enc[d.inputs[1]])
            || (matches!(d.op, Op::Conv { .. }) && d.inputs.iter().skip(1).any(|&v| enc[v]));
        if bad && !embedding {
            return Err(PassError::NotPolynomial { node: d.name.clone(), op: d.op.name().to_string() });
        }
    }
    Ok(())
}

/// Appends nodes to the new graph; names are `{orig}/{part}`.
struct Emit<'a> {
    g: Graph,
    node: &'a str,
    counter: usize,
}

impl Emit<'_> {
    fn op(&mut self, op: Op, inputs: Vec<Value>, part: &str) -> Result<Value, PassError> {
        self.counter += 1;
        let name = format!("{}/{}", self.node, part);
        let n = self
            .g
            .add_node(op, inputs, name)
            .map_err(|e| PassError::Internal { pass: "to_poly", msg: e.to_string() })?;
        Ok(self.g.result(n))
    }

    fn constant(&mut self, t: Tensor, part: &str) -> Value {
        let name = format!("{}/{}", self.node, part);
        self.g.add_constant(t, name)
    }

    fn scalar(&mut self, x: f64, dtype: DType, part: &str) -> Value {
        let t = Tensor { ty: polyhe_ir::TensorType::new(dtype, vec![]), data: polyhe_ir::Data::Float(vec![x]) };
        self.constant(t, part)
    }

    fn mul_scalar(&mut self, x: Value, c: f64, part: &str) -> Result<Value, PassError> {
        let dt = self.g.ty(x).dtype;
        let k = self.scalar(c, dt, &format!("{part}_c"));
        self.op(Op::Mul, vec![x, k], part)
    }

    fn add_scalar(&mut self, x: Value, c: f64, part: &str) -> Result<Value, PassError> {
        let dt = self.g.ty(x).dtype;
        let k = self.scalar(c, dt, &format!("{part}_c"));
        self.op(Op::Add, vec![x, k], part)
    }

    /// `c − x` for a scalar `c`.
    fn rsub_scalar(&mut self, c: f64, x: Value, part: &str) -> Result<Value, PassError> {
        let dt = self.g.ty(x).dtype;
        let k = self.scalar(c, dt, &format!("{part}_c"));
        self.op(Op::Sub, vec![k, x], part)
    }

    fn cheb(&mut self, x: Value, p: &Chebyshev, part: &str) -> Result<Value, PassError> {
        let i = p.interval();
        self.op(Op::Chebyshev { lo: i.lo(), hi: i.hi(), coeffs: p.coeffs().to_vec() }, vec![x], part)
    }
}

/// Widens `[lo, hi]` by `margin` of its width on each side; a point range gets ±max(1, |x|)·margin.
fn widen(node: &str, op: &str, lo: f64, hi: f64, margin: f64) -> Result<Interval, PassError> {
    if !lo.is_finite() || !hi.is_finite() || lo > hi {
        return Err(PassError::RangeTooWide {
            node: node.into(),
            op: op.into(),
            lo,
            hi,
            why: "the calibrated range is empty or not finite".into(),
        });
    }
    let pad = if hi - lo > 1e-9 * lo.abs().max(hi.abs()).max(1.0) {
        margin.max(1e-6) * (hi - lo)
    } else {
        margin.max(0.05) * lo.abs().max(1.0)
    };
    Interval::new(lo - pad, hi + pad).map_err(|e| approx_err(node, op, e))
}

/// Multiplicative widening of a positive range (module doc).
fn widen_positive(node: &str, op: &str, lo: f64, hi: f64, margin: f64) -> Result<Interval, PassError> {
    if lo.is_nan() || lo <= 0.0 || !hi.is_finite() || lo > hi {
        return Err(PassError::RangeTooWide {
            node: node.into(),
            op: op.into(),
            lo,
            hi,
            why: "needs a strictly positive, finite range".into(),
        });
    }
    let f = 1.0 + 2.0 * margin;
    Interval::new(lo / f, hi * f).map_err(|e| approx_err(node, op, e))
}

fn approx_err(node: &str, op: &str, source: ApproxError) -> PassError {
    PassError::Approx { node: node.into(), op: op.into(), source }
}

fn calib<'c>(c: &'c Calibration, d: &polyhe_ir::NodeData) -> Result<&'c NodeCalibration, PassError> {
    c.get(&d.name).ok_or_else(|| PassError::MissingCalibration { node: d.name.clone(), op: d.op.name().to_string() })
}

/// The exact function of an elementwise op, for fitting.
fn exact_fn(op: &Op) -> Option<Box<dyn Fn(f64) -> f64>> {
    Some(match op {
        Op::Gelu(polyhe_ir::GeluApprox::Erf) => Box::new(|x| Activation::Gelu.eval(x)),
        Op::Gelu(polyhe_ir::GeluApprox::Tanh) => Box::new(|x: f64| {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }),
        Op::Erf => Box::new(|x| Activation::Erf.eval(x)),
        Op::Tanh => Box::new(|x| Activation::Tanh.eval(x)),
        Op::Sigmoid => Box::new(|x| Activation::Sigmoid.eval(x)),
        Op::Sqrt => Box::new(|x: f64| x.max(0.0).sqrt()),
        _ => return None,
    })
}

/// Replaces every non-polynomial op on encrypted values (module doc).
pub fn to_poly(g: &Graph, cal: &Calibration, opts: &PolyOptions) -> Result<Replaced, PassError> {
    let enc = encrypted_values(g);
    let mut out = Graph::new(g.name.clone());
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_default(None);
    for &v in &g.inputs {
        let d = &g.values[v];
        let nv = out.add_input(d.name.clone().unwrap_or_else(|| v.to_string()), d.ty.clone());
        map[v] = Some(nv);
    }
    let mut records = Vec::new();
    let mut plaintext_nodes = Vec::new();
    let mut unsupported = Vec::new();
    // Softmax results `exp·(1/sum)` over the last axis, by value in `out`: (exp, 1/sum).
    let mut normalized: SecondaryMap<Value, Option<(Value, Value)>> = SecondaryMap::with_default(None);
    for (n, d) in g.nodes.iter() {
        let ins: Vec<Value> = d.inputs.iter().map(|&v| map[v].expect("topological order")).collect();
        let is_enc = d.outputs.iter().any(|&o| enc[o]);
        let keep = !is_enc || is_poly_stage_op(&d.op) && !matches!(d.op, Op::Constant(_));
        if let Op::Constant(c) = d.op {
            let nv = out.add_constant(g.constants[c].clone(), d.name.clone());
            map[d.outputs[0]] = Some(nv);
            continue;
        }
        if let (Op::MatMul, Some((ex, inv))) = (&d.op, ins.first().and_then(|&a| normalized[a])) {
            // softmax(S)·V = (exp(S)·V)·(1/sum): the row scaling commutes with the product, so the
            // ct×ct matmul runs in parallel with the division instead of after it (one level less).
            let mut e = Emit { g: out, node: &d.name, counter: 0 };
            let res =
                e.op(Op::MatMul, vec![ex, ins[1]], "exp_v").and_then(|p| e.op(Op::Mul, vec![p, inv], "normalized"));
            out = e.g;
            let v = res?;
            map[d.outputs[0]] = Some(v);
            if let Some(name) = &g.values[d.outputs[0]].name {
                out.set_name(v, name.clone());
            }
            continue;
        }
        if keep {
            if !is_enc && !is_poly_stage_op(&d.op) {
                plaintext_nodes.push(d.name.clone());
            }
            let tys = d.outputs.iter().map(|&o| g.ty(o).clone()).collect();
            let nn = out.add_node_typed(d.op.clone(), ins, tys, d.name.clone());
            for (k, &o) in d.outputs.iter().enumerate() {
                map[o] = Some(out.nodes[nn].outputs[k]);
                if let Some(name) = &g.values[o].name {
                    out.set_name(out.nodes[nn].outputs[k], name.clone());
                }
            }
            continue;
        }
        let mut e = Emit { g: out, node: &d.name, counter: 0 };
        let res = replace(&mut e, g, n, &ins, &enc, cal, opts, &mut records, &map);
        out = e.g;
        match res {
            Ok(v) => {
                map[d.outputs[0]] = Some(v);
                if let (Op::Softmax { axis }, SoftmaxMethod::ExpInverse) = (&d.op, opts.softmax) {
                    if *axis + 1 == g.ty(d.inputs[0]).rank() {
                        normalized[v] = softmax_factors(&out, v);
                    }
                }
                if let Some(name) = &g.values[d.outputs[0]].name {
                    out.set_name(v, name.clone());
                }
            }
            Err(PassError::Unsupported(mut u)) => {
                unsupported.append(&mut u);
                // Keep going to report every unsupported op; map to the input to stay well-formed.
                if let Some(&first) = ins.first() {
                    map[d.outputs[0]] = Some(first);
                }
                for &o in &d.outputs {
                    if map[o].is_none() {
                        map[o] = ins.first().copied();
                    }
                }
            }
            Err(other) => return Err(other),
        }
    }
    if !unsupported.is_empty() {
        return Err(PassError::Unsupported(unsupported));
    }
    for &o in &g.outputs {
        let nv = map[o].expect("outputs are defined");
        out.outputs.push(nv);
        if let Some(name) = &g.values[o].name {
            // An output that is directly a graph input keeps the input's name.
            if !out.inputs.contains(&nv) {
                out.set_name(nv, name.clone());
            }
        }
    }
    let (graph, remap) = prune(out);
    for r in &mut records {
        r.io = (remap[r.io.0].unwrap_or(r.io.0), remap[r.io.1].unwrap_or(r.io.1));
    }
    Ok(Replaced { graph, records, plaintext_nodes })
}

/// `(exp, 1/sum)` when `v` is the `probs` product emitted by [`softmax`] (its last node).
fn softmax_factors(g: &Graph, v: Value) -> Option<(Value, Value)> {
    let ValueDef::Result(n, 0) = g.values[v].def else { return None };
    let d = &g.nodes[n];
    (matches!(d.op, Op::Mul) && d.name.ends_with("/probs") && d.inputs.len() == 2).then(|| (d.inputs[0], d.inputs[1]))
}

/// Drops nodes whose results reach no graph output (the replaced ops' leftovers: a mask `add`
/// consumed only by its softmax, batch_norm parameters, ...). Returns the new graph and the map
/// from old to new values.
pub fn prune(mut g: Graph) -> (Graph, SecondaryMap<Value, Option<Value>>) {
    // Constant tensors are moved, not copied (weights dominate the graph's size).
    let mut pool = std::mem::take(&mut g.constants);
    let mut live: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
    let mut stack: Vec<Value> = g.outputs.clone();
    while let Some(v) = stack.pop() {
        if let ValueDef::Result(n, _) = g.values[v].def {
            if !live[n] {
                live[n] = true;
                stack.extend(g.nodes[n].inputs.iter().copied());
            }
        }
    }
    let mut out = Graph::new(g.name.clone());
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_default(None);
    for &v in &g.inputs {
        let d = &g.values[v];
        map[v] = Some(out.add_input(d.name.clone().unwrap_or_else(|| v.to_string()), d.ty.clone()));
    }
    for (n, d) in g.nodes.iter() {
        if !live[n] {
            continue;
        }
        if let Op::Constant(c) = d.op {
            let t = std::mem::replace(&mut pool[c], Tensor::scalar_f32(0.0));
            let nv = out.add_constant(t, d.name.clone());
            if let Some(name) = &g.values[d.outputs[0]].name {
                out.set_name(nv, name.clone());
            }
            map[d.outputs[0]] = Some(nv);
            continue;
        }
        let ins = d.inputs.iter().map(|&v| map[v].expect("live inputs are defined")).collect();
        let tys = d.outputs.iter().map(|&o| g.ty(o).clone()).collect();
        let nn = out.add_node_typed(d.op.clone(), ins, tys, d.name.clone());
        for (k, &o) in d.outputs.iter().enumerate() {
            let nv = out.nodes[nn].outputs[k];
            map[o] = Some(nv);
            if let Some(name) = &g.values[o].name {
                out.set_name(nv, name.clone());
            }
        }
    }
    out.outputs = g.outputs.iter().map(|&o| map[o].expect("outputs are live")).collect();
    (out, map)
}

#[allow(clippy::too_many_arguments)]
fn replace(
    e: &mut Emit<'_>,
    g: &Graph,
    n: Node,
    ins: &[Value],
    enc: &SecondaryMap<Value, bool>,
    cal: &Calibration,
    opts: &PolyOptions,
    records: &mut Vec<ApproxRecord>,
    map: &SecondaryMap<Value, Option<Value>>,
) -> Result<Value, PassError> {
    let d = &g.nodes[n];
    let name = d.name.as_str();
    let opname = d.op.name();
    let unsupported = || PassError::Unsupported(vec![UnsupportedOp { op: opname.to_string(), node: name.to_string() }]);
    match &d.op {
        Op::Identity | Op::Cast(DType::F16 | DType::F32 | DType::F64) if g.ty(d.inputs[0]).dtype.is_float() => {
            Ok(ins[0])
        }
        Op::Gelu(_) | Op::Erf | Op::Tanh | Op::Sigmoid | Op::Sqrt => {
            let c = calib(cal, d)?;
            let mut iv = widen(name, opname, c.input.min, c.input.max, opts.margin)?;
            if matches!(d.op, Op::Sqrt) {
                iv = Interval::new(iv.lo().max(0.0), iv.hi()).map_err(|er| approx_err(name, opname, er))?;
            }
            let f = exact_fn(&d.op).expect("smooth op");
            let part = if let Op::Gelu(_) = d.op { "gelu" } else { opname };
            activation(e, ins[0], &*f, iv, &c.input, opts, name, opname, part, records)
        }
        Op::Clip { min, max } => {
            // Inactive on the calibrated range (e.g. the epsilon clamp of an L2 norm): the identity.
            let c = calib(cal, d)?;
            let (lo, hi) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
            if c.input.min >= lo && c.input.max <= hi {
                return Ok(ins[0]);
            }
            let iv = widen(name, opname, c.input.min, c.input.max, opts.margin)?;
            let f = move |x: f64| x.max(lo).min(hi);
            activation(e, ins[0], &f, iv, &c.input, opts, name, opname, "clip", records)
        }
        Op::Relu => {
            let c = calib(cal, d)?;
            let iv = widen(name, opname, c.input.min, c.input.max, opts.margin)?;
            relu(e, ins[0], iv, &c.input, opts, name, records)
        }
        Op::Exp => {
            let c = calib(cal, d)?;
            let iv = widen(name, opname, c.input.min, c.input.max, opts.margin)?;
            let x = ins[0];
            exp_poly(e, x, iv, &c.input, opts.softmax_target, opts, name, opname, records)
        }
        Op::Reciprocal => {
            let c = calib(cal, d)?;
            reciprocal(e, ins[0], &c.input, opts, name, opname, "1/x", records)
        }
        Op::Div => {
            if !enc[d.inputs[1]] {
                // Division by plaintext: multiply by its reciprocal computed in plaintext.
                let r = match g.constant_of(d.inputs[1]) {
                    Some(t) => {
                        let inv = t.to_f64_vec().iter().map(|v| 1.0 / v).collect();
                        let t = Tensor { ty: t.ty.clone(), data: polyhe_ir::Data::Float(inv) };
                        if !t.dtype().is_float() {
                            return Err(unsupported());
                        }
                        e.constant(t, "inv")
                    }
                    None => e.op(Op::Reciprocal, vec![ins[1]], "inv")?,
                };
                return e.op(Op::Mul, vec![ins[0], r], "mul_inv");
            }
            let c = calib(cal, d)?;
            let inv = reciprocal(e, ins[1], &c.input, opts, name, opname, "1/divisor", records)?;
            e.op(Op::Mul, vec![ins[0], inv], "mul_inv")
        }
        Op::Pow => {
            let Some(k) = g.constant_of(d.inputs[1]).filter(|t| t.numel() == 1).map(|t| t.to_f64_vec()[0]) else {
                return Err(unsupported());
            };
            if enc[d.inputs[1]] {
                return Err(unsupported());
            }
            if k.fract() == 0.0 && (1.0..=16.0).contains(&k) {
                return int_power(e, ins[0], k as u32);
            }
            let c = calib(cal, d)?;
            let iv = widen(name, opname, c.input.min.max(0.0), c.input.max, opts.margin)?;
            let iv = Interval::new(iv.lo().max(0.0), iv.hi()).map_err(|er| approx_err(name, opname, er))?;
            let f = move |x: f64| x.max(0.0).powf(k);
            activation(e, ins[0], &f, iv, &c.input, opts, name, opname, "pow", records)
        }
        Op::LayerNorm { axis, epsilon } => {
            let c = calib(cal, d)?;
            let CalibDetail::LayerNorm { var_eps } = &c.detail else {
                return Err(PassError::MissingCalibration { node: name.into(), op: opname.into() });
            };
            layer_norm(e, ins, *axis, *epsilon, var_eps, opts, name, records)
        }
        Op::Softmax { axis } => {
            let c = calib(cal, d)?;
            match opts.softmax {
                SoftmaxMethod::Sigma => {
                    let iv = widen(name, opname, c.input.min, c.input.max, opts.margin)?;
                    let r = relu(e, ins[0], iv, &c.input, opts, name, records)?;
                    let len = g.ty(d.inputs[0]).shape[*axis] as f64;
                    e.mul_scalar(r, 1.0 / len, "scale_1/n")
                }
                SoftmaxMethod::ExpInverse => softmax(e, g, d, ins, *axis, c, enc, opts, records, map),
            }
        }
        _ => Err(unsupported()),
    }
}

fn int_power(e: &mut Emit<'_>, x: Value, k: u32) -> Result<Value, PassError> {
    // Square-and-multiply: depth ceil(log2 k).
    let mut acc: Option<Value> = None;
    let mut base = x;
    let mut k = k;
    let mut i = 0;
    while k > 0 {
        if k & 1 == 1 {
            acc = Some(match acc {
                None => base,
                Some(a) => e.op(Op::Mul, vec![a, base], &format!("pow_mul{i}"))?,
            });
        }
        k >>= 1;
        if k > 0 {
            base = e.op(Op::Mul, vec![base, base], &format!("pow_sq{i}"))?;
        }
        i += 1;
    }
    Ok(acc.unwrap_or(x))
}

#[allow(clippy::too_many_arguments)]
fn activation(
    e: &mut Emit<'_>,
    x: Value,
    f: &dyn Fn(f64) -> f64,
    iv: Interval,
    range: &Range,
    opts: &PolyOptions,
    node: &str,
    op: &str,
    part: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let fo = FitOptions { max_degree: opts.max_degree, ..FitOptions::new(opts.target_error) };
    let (a, met) = match fit_to_target(f, iv, &fo) {
        Ok(a) => (a, true),
        // Best effort at the degree cap; the record says the target was missed.
        Err(ApproxError::TargetNotReached { .. }) => {
            (remez(f, iv, opts.max_degree, ErrorKind::Absolute).map_err(|er| approx_err(node, op, er))?, false)
        }
        Err(er) => return Err(approx_err(node, op, er)),
    };
    let y = e.cheb(x, &a.poly, part)?;
    records.push(ApproxRecord {
        node: node.into(),
        op: op.into(),
        part: part.into(),
        calibrated: [range.min, range.max],
        interval: [iv.lo(), iv.hi()],
        method: format!("{:?}", a.method).to_lowercase(),
        degree: a.degree(),
        max_error: a.max_error,
        error_kind: "absolute",
        target_met: met,
        depth: 0,
        poly_depth: a.depth,
        io: (x, y),
    });
    Ok(y)
}

#[allow(clippy::too_many_arguments)]
fn relu(
    e: &mut Emit<'_>,
    x: Value,
    iv: Interval,
    range: &Range,
    opts: &PolyOptions,
    node: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let ro = ReluOptions { max_direct_degree: opts.max_degree, ..ReluOptions::new(opts.target_error) };
    let choice = fit_relu(iv, &ro).map_err(|er| approx_err(node, "relu", er))?;
    let (y, method, degree, poly_depth) = emit_relu(e, x, &choice, node, "relu")?;
    records.push(ApproxRecord {
        node: node.into(),
        op: "relu".into(),
        part: "relu".into(),
        calibrated: [range.min, range.max],
        interval: [iv.lo(), iv.hi()],
        method,
        degree,
        max_error: choice.max_error,
        error_kind: "absolute",
        target_met: choice.max_error <= opts.target_error,
        depth: 0,
        poly_depth,
        io: (x, y),
    });
    Ok(y)
}

/// Emits a fitted ReLU on `x` (parts named after `part`): (result, method, largest degree, depth).
fn emit_relu(
    e: &mut Emit<'_>,
    x: Value,
    choice: &ReluChoice,
    node: &str,
    part: &str,
) -> Result<(Value, String, usize, u32), PassError> {
    Ok(match (choice.chosen, &choice.direct, &choice.composite) {
        (ReluMethod::Direct, Some(a), _) => {
            (e.cheb(x, &a.poly, part)?, format!("{:?}", a.method).to_lowercase(), a.degree(), a.depth)
        }
        (ReluMethod::Composite, _, Some(c)) => {
            // First component evaluated on [-R, R] (folds x/R), the rest on [-1, 1], then x·s.
            let mut s = x;
            for (k, p) in c.components.iter().enumerate() {
                let p = if k == 0 {
                    let iv = Interval::new(-c.radius, c.radius).map_err(|er| approx_err(node, "relu", er))?;
                    Chebyshev::new(iv, p.coeffs().to_vec()).map_err(|er| approx_err(node, "relu", er))?
                } else {
                    p.clone()
                };
                s = e.cheb(s, &p, &format!("{part}_sign{k}"))?;
            }
            let y = e.op(Op::Mul, vec![x, s], &format!("{part}_x_sign"))?;
            let degs = c.degrees().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("∘");
            (y, format!("composite sign ({degs})"), c.degrees().into_iter().max().unwrap_or(0), c.depth)
        }
        _ => return Err(PassError::Internal { pass: "to_poly", msg: "relu choice without its candidate".into() }),
    })
}

/// `exp(x)` on `iv` as `q(x)^(2^r)` with `q ≈ exp(x/2^r)` (a Chebyshev series on `iv` of the scaled
/// function, so the scaling is free): relative error `(1+ε)^(2^r) − 1`. Chooses the smallest total
/// depth `depth(q) + r`, then the fewest squarings.
#[allow(clippy::too_many_arguments)]
fn exp_poly(
    e: &mut Emit<'_>,
    x: Value,
    iv: Interval,
    range: &Range,
    target: f64,
    opts: &PolyOptions,
    node: &str,
    op: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let fit = fit_exp_reduced(iv, target, opts.max_degree.min(63)).map_err(|er| approx_err(node, op, er))?;
    emit_exp(e, x, iv, range, fit, target, node, op, records)
}

/// Emits a fit of [`fit_exp_reduced`] on `x` and records it.
#[allow(clippy::too_many_arguments)]
fn emit_exp(
    e: &mut Emit<'_>,
    x: Value,
    iv: Interval,
    range: &Range,
    (q, r, err): (Chebyshev, u32, f64),
    target: f64,
    node: &str,
    op: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let mut y = e.cheb(x, &q, "exp_reduced")?;
    for k in 0..r {
        y = e.op(Op::Mul, vec![y, y], &format!("exp_sq{k}"))?;
    }
    records.push(ApproxRecord {
        node: node.into(),
        op: op.into(),
        part: "exp".into(),
        calibrated: [range.min, range.max],
        interval: [iv.lo(), iv.hi()],
        method: format!("chebyshev of exp(x/2^{r}) + {r} squarings"),
        degree: q.degree(),
        max_error: err,
        error_kind: "relative",
        target_met: err <= target,
        depth: 0,
        poly_depth: q.depth() + r,
        io: (x, y),
    });
    Ok(y)
}

/// The range-reduced exp of [`exp_poly`]: returns `(q on iv, r, measured relative error)`.
pub(crate) fn fit_exp_reduced(
    iv: Interval,
    target: f64,
    max_degree: usize,
) -> Result<(Chebyshev, u32, f64), ApproxError> {
    let mut best: Option<(u32, u32, Chebyshev, f64)> = None;
    for r in 0..=16u32 {
        let s = (r as f64).exp2();
        // Relative error budget per factor so that (1+eps)^(2^r) - 1 <= target.
        let eps = (1.0 + target).ln() / s * 0.9;
        let small = Interval::new(iv.lo() / s, iv.hi() / s)?;
        let Some(a) = fit_exp_relative(small, eps, max_degree)? else { continue };
        let total = a.depth + r;
        if best.as_ref().is_some_and(|b| b.0 <= total) {
            if total > best.as_ref().map_or(0, |b| b.0) + 1 {
                break;
            }
            continue;
        }
        let q = Chebyshev::new(iv, a.poly.coeffs().to_vec())?;
        best = Some((total, r, q, 0.0));
    }
    let (_, r, q, _) = best.ok_or(ApproxError::TargetNotReached { target, best_error: f64::INFINITY, max_degree })?;
    // Measure the whole composition (relative error) on a dense grid.
    let err = measure_rel(&|x| q.eval(x).powi(1 << r), &f64::exp, iv);
    Ok((q, r, err))
}

/// Smallest-depth fit of exp on `iv` to relative error `eps` (degree `2^k − 1`): interpolation,
/// then a relative-error Remez fit of the same degree when interpolation misses. (The Lebesgue-bound
/// shortcut of [`fit_to_target`] does not hold for relative errors: on `[-20, 2.5]` degree 15
/// interpolates exp to 3e4 relative error while its relative minimax reaches 2e-2.)
fn fit_exp_relative(iv: Interval, eps: f64, max_degree: usize) -> Result<Option<Approximation>, ApproxError> {
    let mut k = 0;
    while (1usize << k) - 1 <= max_degree {
        let degree = (1usize << k) - 1;
        let cheb = chebyshev_fit(&f64::exp, iv, degree, ErrorKind::Relative)?;
        if cheb.max_error <= eps {
            return Ok(Some(cheb));
        }
        if degree >= 1 {
            let rem = remez(&f64::exp, iv, degree, ErrorKind::Relative)?;
            if rem.max_error <= eps {
                return Ok(Some(rem));
            }
        }
        k += 1;
    }
    Ok(None)
}

fn measure_rel(p: &dyn Fn(f64) -> f64, f: &dyn Fn(f64) -> f64, iv: Interval) -> f64 {
    let n = 8192;
    (0..=n)
        .map(|i| {
            let t = i as f64 / n as f64;
            let x = iv.lo() + t * iv.width();
            let fx = f(x);
            ((p(x) - fx) / fx).abs()
        })
        .fold(0.0, f64::max)
}

/// Emits an iterative inverse (guess `chebyshev` + Newton/Goldschmidt steps as mul/sub ops) on `x`.
fn emit_inverse(e: &mut Emit<'_>, x: Value, inv: &IterativeInverse, part: &str) -> Result<Value, PassError> {
    if let Some(res) = &inv.residual {
        // Fused 1/x: guess p(x) and residual e₀ = 1 − x·p(x) as two series of x (both at the guess's
        // depth), then Goldschmidt: y ← y·(1 + e), e ← e².
        let mut y = e.cheb(x, &inv.guess, &format!("{part}_guess"))?;
        if inv.steps > 0 {
            let mut err = e.cheb(x, res, &format!("{part}_g_e0"))?;
            for k in 0..inv.steps {
                if k > 0 {
                    err = e.op(Op::Mul, vec![err, err], &format!("{part}_g_e{k}"))?;
                }
                let f = e.add_scalar(err, 1.0, &format!("{part}_g_f{k}"))?;
                y = e.op(Op::Mul, vec![y, f], &format!("{part}_g{k}"))?;
            }
        }
        return Ok(y);
    }
    // A constant guess is a plaintext scalar (no polynomial evaluation, no ct×ct product with it).
    let mut y = match inv.guess.coeffs() {
        [c] => {
            let dt = e.g.ty(x).dtype;
            e.scalar(*c, dt, &format!("{part}_guess"))
        }
        _ => e.cheb(x, &inv.guess, &format!("{part}_guess"))?,
    };
    match (inv.function, inv.scheme) {
        (InverseFunction::InvSqrt, _) => {
            if inv.steps > 0 {
                let xh = e.mul_scalar(x, 0.5, &format!("{part}_half"))?;
                for k in 0..inv.steps {
                    // y ← 1.5·y − (x/2·y)·y²
                    let a = e.op(Op::Mul, vec![xh, y], &format!("{part}_n{k}_xy"))?;
                    let y2 = e.op(Op::Mul, vec![y, y], &format!("{part}_n{k}_yy"))?;
                    let prod = e.op(Op::Mul, vec![a, y2], &format!("{part}_n{k}_xyyy"))?;
                    let y15 = e.mul_scalar(y, 1.5, &format!("{part}_n{k}_1.5y"))?;
                    y = e.op(Op::Sub, vec![y15, prod], &format!("{part}_n{k}"))?;
                }
            }
        }
        (InverseFunction::Reciprocal, InverseScheme::Newton) => {
            for k in 0..inv.steps {
                // y ← y·(2 − x·y)
                let a = e.op(Op::Mul, vec![x, y], &format!("{part}_n{k}_xy"))?;
                let s = e.rsub_scalar(2.0, a, &format!("{part}_n{k}_2-xy"))?;
                y = e.op(Op::Mul, vec![y, s], &format!("{part}_n{k}"))?;
            }
        }
        (InverseFunction::Reciprocal, InverseScheme::Goldschmidt) => {
            if inv.steps > 0 {
                // e ← 1 − x·y; y ← y·(1 + e); then e ← e², y ← y·(1 + e).
                let mut err = match inv.guess.coeffs() {
                    // With a constant guess c, e₀ = 1 − c·x is an affine map of x: written as a degree-1
                    // `chebyshev` (same depth as the product) on the interval where the iteration is at
                    // least as accurate as at the fitted interval's bottom lo: |e₀| ≤ 1 − c·lo, i.e.
                    // [lo, 2/c − lo]. `run_poly` then counts the divisors outside it.
                    [c] => {
                        let lo = inv.interval.lo();
                        let iv = Interval::new(lo, (2.0 / c - lo).max(inv.interval.hi()))
                            .map_err(|er| PassError::Internal { pass: "to_poly", msg: er.to_string() })?;
                        let p = Chebyshev::new(iv, vec![1.0 - c * iv.mid(), -c * 0.5 * iv.width()])
                            .map_err(|er| PassError::Internal { pass: "to_poly", msg: er.to_string() })?;
                        e.cheb(x, &p, &format!("{part}_g_e0"))?
                    }
                    _ => {
                        let a = e.op(Op::Mul, vec![x, y], &format!("{part}_g_xy"))?;
                        e.rsub_scalar(1.0, a, &format!("{part}_g_e0"))?
                    }
                };
                let f = e.add_scalar(err, 1.0, &format!("{part}_g_f0"))?;
                y = e.op(Op::Mul, vec![y, f], &format!("{part}_g0"))?;
                for k in 1..inv.steps {
                    err = e.op(Op::Mul, vec![err, err], &format!("{part}_g_e{k}"))?;
                    let f = e.add_scalar(err, 1.0, &format!("{part}_g_f{k}"))?;
                    y = e.op(Op::Mul, vec![y, f], &format!("{part}_g{k}"))?;
                }
            }
        }
    }
    Ok(y)
}

fn inverse_record(
    node: &str,
    op: &str,
    part: &str,
    range: [f64; 2],
    inv: &IterativeInverse,
    io: (Value, Value),
) -> ApproxRecord {
    let scheme = match inv.scheme {
        InverseScheme::Newton => "newton",
        InverseScheme::Goldschmidt => "goldschmidt",
    };
    ApproxRecord {
        node: node.into(),
        op: op.into(),
        part: part.into(),
        calibrated: range,
        interval: [inv.interval.lo(), inv.interval.hi()],
        method: format!("guess deg {} (rel err {:.2e}) + {} {scheme}", inv.guess.degree(), inv.guess_error, inv.steps),
        degree: inv.guess.degree(),
        max_error: inv.max_error,
        error_kind: "relative",
        target_met: inv.target_met,
        depth: 0,
        poly_depth: inv.depth,
        io,
    }
}

/// `1/x` on the calibrated range of `x` (which must not contain 0; negative ranges use `−1/(−x)`).
#[allow(clippy::too_many_arguments)]
fn reciprocal(
    e: &mut Emit<'_>,
    x: Value,
    range: &Range,
    opts: &PolyOptions,
    node: &str,
    op: &str,
    part: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let negative = range.max < 0.0;
    let (lo, hi) = if negative { (-range.max, -range.min) } else { (range.min, range.max) };
    let iv = widen_positive(node, op, lo, hi, opts.margin)?;
    let inv = choose_reciprocal(iv, opts).map_err(|er| approx_err(node, op, er))?;
    emit_reciprocal(e, x, range, iv, &inv, opts, node, op, part, records)
}

/// Emits the reciprocal `inv` fit on `iv` for `x` whose calibrated range is `range` and records it.
#[allow(clippy::too_many_arguments)]
fn emit_reciprocal(
    e: &mut Emit<'_>,
    x: Value,
    range: &Range,
    iv: Interval,
    inv: &IterativeInverse,
    opts: &PolyOptions,
    node: &str,
    op: &str,
    part: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let negative = range.max < 0.0;
    let xin = if negative { e.op(Op::Neg, vec![x], &format!("{part}_neg_in"))? } else { x };
    let mut y = emit_inverse(e, xin, inv, part)?;
    if negative {
        y = e.op(Op::Neg, vec![y], &format!("{part}_neg_out"))?;
    }
    let mut rec = inverse_record(node, op, part, [range.min, range.max], inv, (x, y));
    let accurate = accurate_up_to(inv, opts.softmax_target);
    if let [c] = inv.guess.coeffs() {
        rec.method = format!(
            "1/({:.3}·hi) + {} goldschmidt, accurate up to {accurate:.3e}, converges below {:.3e}",
            1.0 / (c * iv.hi()),
            inv.steps,
            2.0 / c
        );
    } else {
        rec.method = format!(
            "cheb guess deg {} (rel err {:.2e}{}) + {} goldschmidt, accurate up to {accurate:.3e}, converges below {:.3e}",
            inv.guess.degree(),
            inv.guess_error,
            if inv.residual.is_some() { ", fused" } else { "" },
            inv.steps,
            inv.interval.lo() + inv.interval.hi()
        );
    }
    records.push(rec);
    Ok(y)
}

/// The cheaper of the two reciprocal families on `iv`, both meeting `softmax_target` when they can:
/// the closed-form polynomial guess with its directly evaluated residual and Goldschmidt steps
/// ([`fit_reciprocal`] with guesses of degree ≥ 2: depth `D + k`, converges on `(0, lo + hi)`), or
/// the constant guess of [`robust_reciprocal`] (depth `k + 1` as emitted, converges on
/// `(0, 2H·hi)`). Cheaper = smaller emitted depth, then fewer ct×ct multiplications; a family that
/// misses the target loses to one that meets it, and if both miss the smaller error wins.
fn choose_reciprocal(iv: Interval, opts: &PolyOptions) -> Result<IterativeInverse, ApproxError> {
    let constant = robust_reciprocal(iv, opts)?;
    if opts.reciprocal_max_guess_degree < 2 {
        return Ok(constant);
    }
    let io = InverseOptions {
        target: opts.softmax_target,
        max_depth: opts.max_inverse_depth,
        min_guess_degree: 2,
        max_guess_degree: opts.reciprocal_max_guess_degree,
        max_steps: opts.max_inverse_steps,
    };
    let poly_iv = Interval::new(iv.lo(), iv.hi() * opts.reciprocal_poly_headroom.max(1.0))?;
    let poly = fit_reciprocal(poly_iv, &io)?;
    // The constant guess's first product is one level deeper in the graph than in its plan.
    let poly_better = match (poly.target_met, constant.target_met) {
        (true, true) => (poly.depth, poly.ct_mults) < (constant.depth + 1, constant.ct_mults),
        (true, false) => true,
        (false, true) => false,
        (false, false) => poly.max_error < constant.max_error,
    };
    Ok(if poly_better { poly } else { constant })
}

/// The largest `x ≥ hi` (up to `2^20·hi`) below which `inv` still meets `target`, found by doubling
/// then bisection on the measured relative error (which grows with `x` above the interval for both
/// families, past the constant guess's `1/c`).
fn accurate_up_to(inv: &IterativeInverse, target: f64) -> f64 {
    let ok = |x: f64| {
        let v = inv.eval(x) * x - 1.0;
        v.is_finite() && v.abs() <= target
    };
    let hi = inv.interval.hi();
    if !ok(hi) {
        return hi;
    }
    let (mut good, mut bad) = (hi, hi);
    for _ in 0..20 {
        bad *= 2.0;
        if !ok(bad) {
            break;
        }
        good = bad;
    }
    if ok(bad) {
        return bad;
    }
    for _ in 0..60 {
        let mid = 0.5 * (good + bad);
        if ok(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

/// 1/x on `iv` from the constant guess `y₀ = 1/(H·hi)` (`H` = [`PolyOptions::reciprocal_headroom`])
/// with Goldschmidt steps: `x·y₀ ∈ (0, 1/H]` on the interval, so the iteration converges for every
/// `x ∈ (0, 2H·hi)` — inputs above the calibrated range (up to `2H` times its widened top: softmax row
/// sums of sentences unlike the calibration set) still converge, at the price of `log2 H` extra
/// steps; inputs below the range only converge more slowly. The
/// number of steps is the smallest reaching the target on `iv` (about `log2(hi/lo) + log2 ln(1/target)`),
/// capped by `max_inverse_steps` (then `target_met` is false).
fn robust_reciprocal(iv: Interval, opts: &PolyOptions) -> Result<IterativeInverse, ApproxError> {
    let guess = Chebyshev::new(iv, vec![1.0 / (opts.reciprocal_headroom.max(1.0) * iv.hi())])?;
    let mut last = None;
    for steps in 1..=opts.max_inverse_steps.max(1) {
        let cand =
            build_inverse(InverseFunction::Reciprocal, InverseScheme::Goldschmidt, &guess, steps, opts.softmax_target)?;
        if cand.target_met || cand.depth >= opts.max_inverse_depth {
            return Ok(cand);
        }
        last = Some(cand);
    }
    last.ok_or(ApproxError::Numerical { stage: "reciprocal", detail: "no step allowed".into() })
}

#[allow(clippy::too_many_arguments)]
fn layer_norm(
    e: &mut Emit<'_>,
    ins: &[Value],
    axis: usize,
    eps: f64,
    var_eps: &Range,
    opts: &PolyOptions,
    node: &str,
    records: &mut Vec<ApproxRecord>,
) -> Result<Value, PassError> {
    let x = ins[0];
    let rank = e.g.ty(x).rank();
    let axes: Vec<usize> = (axis..rank).collect();
    // With integer scalars only (no level): s = Σx, d = n·x − s = n·(x − mean), mean_j d² = n²·var,
    // and (x − mean)/√(var + eps) = d / √(n²·(var + eps)). The 1/√ polynomial is fit on the
    // calibrated var + eps range scaled by n² (relative errors are scale-free, so the same guess and
    // steps are chosen). Squaring the centered d, not `n·Σx² − s²`: that difference of two large
    // sums cancels (MiniLM: 1.9e7 − 1.9e7 for a variance term of 3e4), and under CKKS their
    // relative error becomes the variance's, 600× larger. The mean's 1/n composes with the 1/√
    // guess's map onto [-1, 1] (one map either way), and keeps the value n times smaller than
    // Σd²: that map's weight, encoded at the scale, keeps 2^-16 instead of 2^-8 relative precision
    // on MiniLM (a degree-31 guess amplifies its input's error up to 31²×).
    let n = e.g.ty(x).shape[axis..].iter().product::<usize>() as f64;
    let s = e.op(Op::ReduceSum { axes: axes.clone(), keepdims: true }, vec![x], "sum")?;
    let nx = e.mul_scalar(x, n, "n_x")?;
    let mut dx = e.op(Op::Sub, vec![nx, s], "n_centered")?;
    let sq = e.op(Op::Mul, vec![dx, dx], "square")?;
    let var_n2 = e.op(Op::ReduceMean { axes, keepdims: true }, vec![sq], "n2_var")?;
    let n2 = n * n;
    let v = e.add_scalar(var_n2, n2 * eps, "n2_var_eps")?;
    let iv = widen_positive(node, "layer_norm", var_eps.min * n2, var_eps.max * n2, opts.margin)?;
    let inv = inv_sqrt(iv, opts).map_err(|er| approx_err(node, "layer_norm", er))?;
    let r = emit_inverse(e, v, &inv, "rsqrt")?;
    let mut rec =
        inverse_record(node, "layer_norm", "1/sqrt(var+eps)", [var_eps.min * n2, var_eps.max * n2], &inv, (v, r));
    rec.method = format!("{} on n²·(var+eps), n = {n}", rec.method);
    records.push(rec);
    // γ scales channels and 1/√ rows: (dx·γ)·r puts γ's level beside the 1/√ instead of after it.
    if let Some(&gamma) = ins.get(1) {
        dx = e.op(Op::Mul, vec![dx, gamma], "gamma")?;
    }
    let mut y = e.op(Op::Mul, vec![dx, r], "normalized")?;
    if let Some(&beta) = ins.get(2) {
        y = e.op(Op::Add, vec![y, beta], "beta")?;
    }
    Ok(y)
}

/// 1/√x: a relative-error Remez guess of degree `0, 1, 3, ..., 63` followed by `k` Newton steps
/// (`k` forced by [`PolyOptions::layer_norm_newton_steps`], else `0..=4`); the smallest depth, then
/// the fewest ct×ct multiplications, reaching the target (the most accurate candidate if none does).
/// Errors and depths are the approx library's measured ones ([`build_inverse`]).
fn inv_sqrt(iv: Interval, opts: &PolyOptions) -> Result<IterativeInverse, ApproxError> {
    let f = |x: f64| 1.0 / x.sqrt();
    let max_guess = 63.min(opts.max_degree);
    let steps: Vec<u32> = match opts.layer_norm_newton_steps {
        Some(k) => vec![k as u32],
        None => (0..=opts.max_inverse_steps.min(4)).collect(),
    };
    // Guess degrees in increasing order; stop once a guess alone is deeper than the best candidate
    // (the plan's depth never decreases with the degree), so wide degrees are only fit when needed.
    let mut best: Option<IterativeInverse> = None;
    let mut fallback: Option<IterativeInverse> = None;
    for deg in [0usize, 1, 3, 7, 15, 31, 63] {
        if deg > max_guess {
            break;
        }
        if best.as_ref().is_some_and(|b| crate::approx::depth_for_degree(deg) > b.depth) {
            break;
        }
        let guess = remez(&f, iv, deg, ErrorKind::Relative)?;
        for &k in &steps {
            let cand =
                build_inverse(InverseFunction::InvSqrt, InverseScheme::Newton, &guess.poly, k, opts.layer_norm_target)?;
            if cand.target_met {
                if best.as_ref().is_none_or(|b| (cand.depth, cand.ct_mults) < (b.depth, b.ct_mults)) {
                    best = Some(cand);
                }
                break;
            }
            if cand.max_error.is_finite() && fallback.as_ref().is_none_or(|b| cand.max_error < b.max_error) {
                fallback = Some(cand);
            }
        }
    }
    best.or(fallback).ok_or(ApproxError::Numerical { stage: "inverse sqrt", detail: "no guess degree allowed".into() })
}

/// Scores `c₁·…·cₙ·(A·B)` (a ct×ct matmul, then plaintext scalar factors) re-emitted with `B`
/// centered along its last axis: `(A·(B − mean_j B))[i, j] = (A·B)[i, j] − mean_j (A·B)[i, j]`, the
/// row-centered scores, in the form the backend computes inside its rotated product (the key
/// mean by rotate-and-sum over the product's blocks: no level, no extra diagonals). `None` for
/// scores of another form (the caller centers them directly).
fn center_keys(e: &mut Emit<'_>, scores: Value) -> Result<Option<Value>, PassError> {
    let constant = |g: &Graph, v: Value| match g.values[v].def {
        ValueDef::Result(n, _) => matches!(g.nodes[n].op, Op::Constant(_)),
        _ => false,
    };
    let mut factors = Vec::new();
    let mut v = scores;
    let (a, b) = loop {
        let ValueDef::Result(n, _) = e.g.values[v].def else { return Ok(None) };
        let nd = &e.g.nodes[n];
        match (&nd.op, nd.inputs.as_slice()) {
            (Op::Mul, &[x, y]) if constant(&e.g, y) && e.g.ty(y).numel() == 1 => {
                factors.push(y);
                v = x;
            }
            (Op::Mul, &[y, x]) if constant(&e.g, y) && e.g.ty(y).numel() == 1 => {
                factors.push(y);
                v = x;
            }
            (Op::MatMul, &[a, b]) if !constant(&e.g, a) && !constant(&e.g, b) && e.g.ty(b).rank() >= 2 => {
                break (a, b);
            }
            _ => return Ok(None),
        }
    };
    let last = e.g.ty(b).rank() - 1;
    let mean = e.op(Op::ReduceMean { axes: vec![last], keepdims: true }, vec![b], "key_mean")?;
    let centered = e.op(Op::Sub, vec![b, mean], "centered_keys")?;
    let mut y = e.op(Op::MatMul, vec![a, centered], "centered_scores")?;
    for c in factors.into_iter().rev() {
        y = e.op(Op::Mul, vec![y, c], "centered_scaled")?;
    }
    Ok(Some(y))
}

/// The fits of one form of softmax's scores: exp on the shifted scores, 1/x on the row sums.
struct SoftmaxPlan {
    exp_iv: Interval,
    exp: (Chebyshev, u32, f64),
    inv_iv: Interval,
    inv: IterativeInverse,
}

impl SoftmaxPlan {
    /// Depth of exp then 1/sum (the sum itself is free).
    fn depth(&self) -> u32 {
        self.exp.0.depth() + self.exp.1 + self.inv.depth
    }
}

/// Fits exp and the reciprocal for `form`; `floor` is a proven lower bound of its row sums, which
/// replaces the widened calibrated minimum when larger.
fn softmax_plan(
    form: &crate::calibrate::ShiftedScores,
    floor: Option<f64>,
    opts: &PolyOptions,
    node: &str,
) -> Result<SoftmaxPlan, PassError> {
    let ss = &form.shifted_scores;
    let exp_iv = widen(node, "softmax", ss.min, ss.max, opts.margin)?;
    let exp = fit_exp_reduced(exp_iv, opts.softmax_target, opts.max_degree.min(63))
        .map_err(|er| approx_err(node, "softmax", er))?;
    let rs = &form.row_sum;
    let mut inv_iv = widen_positive(node, "softmax", rs.min, rs.max, opts.margin)?;
    if let Some(f) = floor.filter(|&f| f > inv_iv.lo() && f <= rs.min) {
        inv_iv = Interval::new(f, inv_iv.hi()).map_err(|er| approx_err(node, "softmax", er))?;
    }
    let inv = choose_reciprocal(inv_iv, opts).map_err(|er| approx_err(node, "softmax", er))?;
    Ok(SoftmaxPlan { exp_iv, exp, inv_iv, inv })
}

/// The encrypted row maximum's plan: a tournament of `rounds` rounds, each `max(a, b) = b +
/// relu(a − b)` with one ReLU fit on the row spread (widened by the margin and the error of the
/// rounds before), and the bound `delta` on `|max̂ − max|`.
struct RowMaxPlan {
    relu: ReluChoice,
    /// The ReLU's interval is `[-radius, radius]`.
    radius: f64,
    rounds: u32,
    delta: f64,
    /// The max form with its ranges widened by `delta` (see [`max_form`]).
    form: crate::calibrate::ShiftedScores,
    plan: SoftmaxPlan,
}

impl RowMaxPlan {
    fn depth(&self) -> u32 {
        self.rounds * self.relu.depth + self.plan.depth()
    }
}

/// Total error budget of the max tree: the row sums then lie within `e^±DELTA` of the exact
/// max form's, and the exponential's interval grows by `DELTA` on each side.
const ROW_MAX_DELTA: f64 = 1.0;

/// Fits the row-maximum tree and exp + 1/sum on the max form; `None` when not calibrated.
fn row_max_plan(
    s: &crate::calibrate::SoftmaxCalibration,
    opts: &PolyOptions,
    node: &str,
) -> Result<Option<RowMaxPlan>, PassError> {
    let (Some(form), Some(spread)) = (&s.maxed, &s.row_spread) else { return Ok(None) };
    if s.len < 2 {
        return Ok(None);
    }
    let rounds = usize::BITS - (s.len - 1).leading_zeros();
    let per_round = ROW_MAX_DELTA / rounds as f64;
    let radius = spread.max * (1.0 + 2.0 * opts.margin) + ROW_MAX_DELTA;
    // With a mask, the tournament compares `a + max(bias, −radius)`: masked positions sit a
    // radius below, so the comparisons span twice as far.
    let radius = if s.masked { 2.0 * radius } else { radius };
    let iv = Interval::new(-radius, radius).map_err(|er| approx_err(node, "softmax", er))?;
    let ro = ReluOptions { max_direct_degree: opts.max_degree, ..ReluOptions::new(per_round) };
    let relu = fit_relu(iv, &ro).map_err(|er| approx_err(node, "softmax", er))?;
    let delta = rounds as f64 * relu.max_error;
    let form = max_form(form, delta);
    let plan = softmax_plan(&form, None, opts, node)?;
    Ok(Some(RowMaxPlan { relu, radius, rounds, delta, form, plan }))
}

/// The max form's ranges for an approximate maximum within `delta` of the exact one.
fn max_form(f: &crate::calibrate::ShiftedScores, delta: f64) -> crate::calibrate::ShiftedScores {
    let mut f = f.clone();
    let ss = &mut f.shifted_scores;
    (ss.min, ss.p_lo, ss.max, ss.p_hi) = (ss.min - delta, ss.p_lo - delta, ss.max + delta, ss.p_hi + delta);
    let rs = &mut f.row_sum;
    let (lo, hi) = ((-delta).exp(), delta.exp());
    (rs.min, rs.p_lo, rs.max, rs.p_hi) = (rs.min * lo, rs.p_lo * lo, rs.max * hi, rs.p_hi * hi);
    f
}

/// Emits the tournament of [`RowMaxPlan`]: each round compares the first half of the remaining
/// positions along `axis` with the second (an odd one out waits for the next round). Returns the
/// maximum with `axis` kept at size 1.
fn emit_row_max(
    e: &mut Emit<'_>,
    x: Value,
    axis: usize,
    len: usize,
    relu: &ReluChoice,
    node: &str,
) -> Result<Value, PassError> {
    let slice = |e: &mut Emit<'_>, v: Value, a: usize, b: usize, part: &str| {
        let op = Op::Slice { axes: vec![axis], starts: vec![a as i64], ends: vec![b as i64], steps: vec![1] };
        e.op(op, vec![v], part)
    };
    let (mut cur, mut n, mut round) = (x, len, 0);
    while n > 1 {
        let half = n / 2;
        let a = slice(e, cur, 0, half, &format!("max{round}_a"))?;
        let b = slice(e, cur, half, 2 * half, &format!("max{round}_b"))?;
        let d = e.op(Op::Sub, vec![a, b], &format!("max{round}_diff"))?;
        let (r, ..) = emit_relu(e, d, relu, node, &format!("max{round}_relu"))?;
        let mut m = e.op(Op::Add, vec![b, r], &format!("max{round}"))?;
        if n % 2 == 1 {
            let rest = slice(e, cur, 2 * half, n, &format!("max{round}_rest"))?;
            m = e.op(Op::Concat { axis }, vec![m, rest], &format!("max{round}_carry"))?;
        }
        cur = m;
        n = half + n % 2;
        round += 1;
    }
    Ok(cur)
}

#[allow(clippy::too_many_arguments)]
fn softmax(
    e: &mut Emit<'_>,
    g: &Graph,
    d: &polyhe_ir::NodeData,
    ins: &[Value],
    axis: usize,
    c: &NodeCalibration,
    enc: &SecondaryMap<Value, bool>,
    opts: &PolyOptions,
    records: &mut Vec<ApproxRecord>,
    map: &SecondaryMap<Value, Option<Value>>,
) -> Result<Value, PassError> {
    let node = d.name.as_str();
    let CalibDetail::Softmax(s) = &c.detail else {
        return Err(PassError::MissingCalibration { node: node.into(), op: "softmax".into() });
    };
    // scores + plaintext mask: exp(scores + mask) = exp(scores)·exp(mask), exp(mask) in plaintext.
    let (scores, mask) = match (s.masked, masked_scores(g, d.inputs[0], enc)) {
        (true, Some((add, k))) => {
            let a = &g.nodes[add];
            let m = |v: Value| map[v].expect("defined");
            (m(a.inputs[k]), Some(m(a.inputs[1 - k])))
        }
        _ => (ins[0], None),
    };
    // Centering per row (module doc) when it buys depth: exact, since softmax ignores a row shift.
    let plain = softmax_plan(&s.plain, None, opts, node)?;
    let centered_plan = || {
        // Jensen: a centered row of length L sums to at least L·exp(−shift) (not with a mask, which
        // zeroes columns of the sum but not of the mean).
        let floor = (!s.masked).then(|| {
            let top = s.centered.shifts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            s.len as f64 * (-top).exp()
        });
        softmax_plan(&s.centered, floor, opts, node)
    };
    // The row maximum (module doc, "Row maximum"): when forced, when shallower than the other
    // forms, or when their row sums span more than an encrypted division resolves.
    let row_max = match opts.softmax_max {
        SoftmaxMax::Never => None,
        SoftmaxMax::Always | SoftmaxMax::Auto => row_max_plan(s, opts, node)?,
    };
    if let Some(m) = row_max.filter(|m| {
        let other = match opts.softmax_center {
            SoftmaxCenter::Never => None,
            _ => centered_plan().ok(),
        };
        let ratio = |p: &SoftmaxPlan| p.inv_iv.hi() / p.inv_iv.lo();
        let (best_depth, best_ratio) = match &other {
            Some(c) if c.depth() < plain.depth() => (c.depth(), ratio(c)),
            _ => (plain.depth(), ratio(&plain)),
        };
        opts.softmax_max == SoftmaxMax::Always
            || m.depth() < best_depth
            || (best_ratio > UNSAFE_ROW_SUM_RATIO && ratio(&m.plan) < best_ratio)
    }) {
        // A masked position never wins: its (plaintext) bias is clipped to half the ReLU's radius
        // below, more than the row spread (module doc).
        let contenders = match mask {
            Some(bias) => {
                let clipped = e.op(Op::Clip { min: Some(-m.radius / 2.0), max: None }, vec![bias], "max_mask")?;
                e.op(Op::Add, vec![scores, clipped], "max_contenders")?
            }
            None => scores,
        };
        let max = emit_row_max(e, contenders, axis, s.len, &m.relu, node)?;
        let degs = match &m.relu.composite {
            Some(c) if m.relu.chosen == ReluMethod::Composite => {
                format!("composite sign ({})", c.degrees().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("∘"))
            }
            _ => format!("degree {}", m.relu.direct.as_ref().map_or(0, |a| a.degree())),
        };
        records.push(ApproxRecord {
            node: node.into(),
            op: "softmax".into(),
            part: "row max".into(),
            calibrated: [-s.row_spread.map_or(0.0, |r| r.max), s.row_spread.map_or(0.0, |r| r.max)],
            interval: [-m.radius, m.radius],
            method: format!("tournament of {} rounds, max(a, b) = b + relu(a − b), relu {degs}", m.rounds),
            degree: m
                .relu
                .direct
                .as_ref()
                .map_or(0, |a| a.degree())
                .max(m.relu.composite.as_ref().map_or(0, |c| c.degrees().into_iter().max().unwrap_or(0))),
            max_error: m.delta,
            error_kind: "absolute",
            target_met: m.delta <= ROW_MAX_DELTA,
            depth: 0,
            poly_depth: m.rounds * m.relu.depth,
            io: (scores, max),
        });
        let shifted_by_max = e.op(Op::Sub, vec![scores, max], "minus_row_max")?;
        return finish_softmax(e, g, d, s, axis, &m.form, &m.plan, shifted_by_max, mask, opts, records, "x − row max");
    }
    let (form, plan, scores) = match opts.softmax_center {
        SoftmaxCenter::Never => (&s.plain, plain, scores),
        SoftmaxCenter::Always | SoftmaxCenter::Auto => {
            let centered = centered_plan()?;
            if opts.softmax_center == SoftmaxCenter::Auto && centered.depth() >= plain.depth() {
                (&s.plain, plain, scores)
            } else {
                let last = g.ty(d.inputs[0]).rank().checked_sub(1) == Some(axis);
                let through_matmul = if last { center_keys(e, scores)? } else { None };
                let c = match through_matmul {
                    Some(c) => c,
                    None => {
                        let mean =
                            e.op(Op::ReduceMean { axes: vec![axis], keepdims: true }, vec![scores], "row_mean")?;
                        e.op(Op::Sub, vec![scores, mean], "centered")?
                    }
                };
                (&s.centered, centered, c)
            }
        }
    };
    let label = if std::ptr::eq(form, &s.centered) { "x − row mean" } else { "" };
    finish_softmax(e, g, d, s, axis, form, &plan, scores, mask, opts, records, label)
}

/// `x − shift`, exp, `× exp(mask)`, row sum, 1/sum and the product, for one form of the scores.
#[allow(clippy::too_many_arguments)]
fn finish_softmax(
    e: &mut Emit<'_>,
    g: &Graph,
    d: &polyhe_ir::NodeData,
    s: &crate::calibrate::SoftmaxCalibration,
    axis: usize,
    form: &crate::calibrate::ShiftedScores,
    plan: &SoftmaxPlan,
    scores: Value,
    mask: Option<Value>,
    opts: &PolyOptions,
    records: &mut Vec<ApproxRecord>,
    label: &str,
) -> Result<Value, PassError> {
    let node = d.name.as_str();
    let dtype = g.ty(d.inputs[0]).dtype;
    // x − shift (one shift per head, or one).
    let shift = if form.shifts.len() > 1 {
        let mut shape = vec![1usize; g.ty(d.inputs[0]).rank()];
        if let Some(ax) = s.shift_axis {
            shape[ax] = form.shifts.len();
        }
        let t =
            Tensor { ty: polyhe_ir::TensorType::new(dtype, shape), data: polyhe_ir::Data::Float(form.shifts.clone()) };
        e.constant(t, "shift")
    } else {
        e.scalar(form.shifts.first().copied().unwrap_or(0.0), dtype, "shift")
    };
    let shifted = e.op(Op::Sub, vec![scores, shift], "shifted")?;
    let mut ex = emit_exp(
        e,
        shifted,
        plan.exp_iv,
        &form.shifted_scores,
        plan.exp.clone(),
        opts.softmax_target,
        node,
        "softmax",
        records,
    )?;
    if !label.is_empty() {
        if let Some(r) = records.last_mut() {
            r.method = format!("{label}, {}", r.method);
        }
    }
    if let Some(m) = mask {
        let em = e.op(Op::Exp, vec![m], "exp_mask")?;
        ex = e.op(Op::Mul, vec![ex, em], "masked")?;
    }
    let sum = e.op(Op::ReduceSum { axes: vec![axis], keepdims: true }, vec![ex], "row_sum")?;
    let inv = emit_reciprocal(e, sum, &form.row_sum, plan.inv_iv, &plan.inv, opts, node, "softmax", "1/sum", records)?;
    e.op(Op::Mul, vec![ex, inv], "probs")
}
