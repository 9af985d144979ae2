//! Calibration: run the reference interpreter over sample batches and record the ranges the
//! polynomial replacement fits on.
//!
//! Requires: a verified graph and batches of inputs in graph-input order. Guarantees:
//! - one [`NodeCalibration`] per node that [`crate::to_poly()`] may replace (activations, exp, softmax,
//!   layer_norm, div/sqrt/reciprocal/pow), keyed by the **node name**. ONNX node names are unique and do
//!   not depend on bound dims, so a calibration made on a graph imported with the calibration batch size
//!   applies to the same model imported with any other batch size;
//! - every [`Range`] has exact `min`/`max` and `p_lo`/`p_hi` = the 0.1 / 99.9 percentiles of a bounded
//!   reservoir sample (65 536 elements, fixed-seed generator: deterministic for given batches);
//! - layer_norm: the range of `var + eps` over every normalized row;
//! - softmax: the raw-score range, the range of the encrypted scores when the input is
//!   `add(scores, plaintext bias)` (an attention mask), the per-row max, and the row sums
//!   `Σ exp(x − c)` for the shift `c` chosen here. The shift is per head when the softmax runs over the
//!   last axis of a rank-4 `[batch, heads, rows, cols]` tensor (per node otherwise) and equals the
//!   largest calibrated row log-sum-exp of that head, so calibrated row sums lie in `(0, 1]` and the
//!   exponentials never exceed 1 (up to the mask). The row-sum *ratio* `max/min` does not depend on the
//!   shift; per-head shifts make it the worst head's ratio instead of the ratio across heads.
//!   The same statistics are recorded for the *row-centered* scores `x − mean_j(x)`
//!   ([`SoftmaxCalibration::centered`]): softmax is invariant under a per-row shift, and centering
//!   is linear, so [`crate::to_poly()`] may evaluate the exponential on centered scores. Their row
//!   sums are at least `L·exp(−shift)` (Jensen: the centered row has mean 0), which bounds the ratio
//!   the division must cover far below the uncentered one on trained models (the shipped encoder:
//!   1.7e4 → 64). And for the scores minus their *row maximum* ([`SoftmaxCalibration::maxed`],
//!   with the per-row spread `max_j − min_j` the encrypted max tree compares over): then rows sum
//!   to at least 1 (with a mask, the maximum is over the unmasked positions), however far apart rows are (MiniLM's first
//!   layer: plain row sums span 3e11, too wide for any encrypted division).
//!
//! [`Calibration::warnings`] flags ranges too wide for a low-degree polynomial (see its doc).

use std::collections::{BTreeMap, HashMap};

use polyhe_ir::{interp, Graph, Node, Op, Tensor, ValueDef};
use serde::{Deserialize, Serialize};

use crate::error::PassError;
use crate::to_poly::encrypted_values;

/// Reservoir capacity for percentiles.
const RESERVOIR: usize = 1 << 16;

/// A calibrated range of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
    /// 0.1th percentile.
    pub p_lo: f64,
    /// 99.9th percentile.
    pub p_hi: f64,
    /// Number of values seen.
    pub count: u64,
}

impl Range {
    /// The largest magnitude in the range.
    pub fn abs_max(&self) -> f64 {
        self.min.abs().max(self.max.abs())
    }
}

/// What was recorded for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCalibration {
    /// The op's keyword (`gelu`, `softmax`, ...).
    pub op: String,
    /// Range of the input the approximation is evaluated on: `x` for elementwise ops, the divisor for
    /// `div`, the raw scores for softmax, `x` for layer_norm.
    pub input: Range,
    #[serde(flatten)]
    pub detail: CalibDetail,
}

/// Op-specific calibration data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CalibDetail {
    Elementwise,
    LayerNorm {
        /// `var + eps` per normalized row.
        var_eps: Range,
    },
    Softmax(Box<SoftmaxCalibration>),
}

/// Softmax calibration (module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxCalibration {
    /// Whether the input is `add(scores, plaintext bias)`; then `scores` is the encrypted operand and
    /// the replacement multiplies by `exp(bias)` computed in plaintext.
    pub masked: bool,
    /// Range of the (encrypted) scores the exponential is evaluated on, before the shift.
    pub scores: Range,
    /// Per-row maximum of the softmax input.
    pub row_max: Range,
    /// `Some(axis)`: one shift per index of that axis (heads); `None`: one shift for the node.
    pub shift_axis: Option<usize>,
    /// Softmax length `L` (the size of the reduced axis).
    pub len: usize,
    /// The scores as they come.
    pub plain: ShiftedScores,
    /// The encrypted scores centered per row: `scores − mean_j(scores)`.
    pub centered: ShiftedScores,
    /// The encrypted scores minus their row maximum (with a mask: over the unmasked positions,
    /// see [`crate::to_poly()`]'s "Row maximum"). `None` in calibrations written before it existed.
    #[serde(default)]
    pub maxed: Option<ShiftedScores>,
    /// Per-row `max_j − min_j` of the encrypted scores: what the max tree's comparisons span.
    #[serde(default)]
    pub row_spread: Option<Range>,
}

/// Shifts and the ranges they give, for one form of the scores (plain or row-centered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftedScores {
    /// The shifts (one per head, or one).
    pub shifts: Vec<f64>,
    /// Range of `scores − shift` (the exponential's argument); its percentiles equal its extremes.
    pub shifted_scores: Range,
    /// Row sums of `exp(x − shift)` (times `exp(bias)` when masked).
    pub row_sum: Range,
}

impl ShiftedScores {
    /// `row_sum.max / row_sum.min`: what the division has to cover.
    pub fn ratio(&self) -> f64 {
        self.row_sum.max / self.row_sum.min
    }
}

/// A range that is too wide for a low-degree polynomial, with a human explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationWarning {
    pub node: String,
    pub op: String,
    pub message: String,
}

/// Calibration of a whole graph, keyed by node name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Calibration {
    pub batches: usize,
    pub nodes: BTreeMap<String, NodeCalibration>,
}

impl Calibration {
    pub fn get(&self, node: &str) -> Option<&NodeCalibration> {
        self.nodes.get(node)
    }

    /// Ranges too wide for a low-degree polynomial:
    /// - smooth activations (gelu, erf, tanh, sigmoid, relu, exp) whose range reaches beyond ±8 while
    ///   99.9% of the values lie within less than 40% of that (outliers force the degree up);
    /// - layer_norm whose `var + eps` spans a ratio above 1e3 (the inverse square root needs a wide
    ///   relative-error guess and more Newton steps);
    /// - softmax whose row sums span a ratio above 1e4 (the division needs many Newton steps);
    /// - div/reciprocal whose divisor range contains zero (no polynomial inverse exists).
    pub fn warnings(&self) -> Vec<CalibrationWarning> {
        let mut out = Vec::new();
        for (node, c) in &self.nodes {
            let mut warn = |message: String| {
                out.push(CalibrationWarning { node: node.clone(), op: c.op.clone(), message });
            };
            let r = &c.input;
            match &c.detail {
                CalibDetail::Elementwise => match c.op.as_str() {
                    "gelu" | "erf" | "tanh" | "sigmoid" | "relu" | "exp" => {
                        let bulk = r.p_lo.abs().max(r.p_hi.abs());
                        if r.abs_max() > 8.0 && bulk < 0.4 * r.abs_max() {
                            warn(format!(
                                "{} input spans [{:.3}, {:.3}] but 99.9% lies within ±{:.2}: a few outliers force a \
                                 high-degree polynomial (retraining for narrow ranges, or clipping, would help)",
                                c.op, r.min, r.max, bulk
                            ));
                        }
                    }
                    "div" | "reciprocal" if r.min <= 0.0 && r.max >= 0.0 => {
                        warn(format!(
                            "{} input spans [{:.3e}, {:.3e}], which contains 0: no polynomial inverse exists",
                            c.op, r.min, r.max
                        ));
                    }
                    _ => {}
                },
                CalibDetail::LayerNorm { var_eps } => {
                    let ratio = var_eps.max / var_eps.min;
                    if ratio > 1e3 {
                        warn(format!(
                            "variance + eps spans [{:.3e}, {:.3e}] (ratio {:.1e}): the inverse square root needs a \
                             wide-range guess and extra Newton steps",
                            var_eps.min, var_eps.max, ratio
                        ));
                    }
                }
                CalibDetail::Softmax(s) => {
                    // The better of the two forms is what the division will face.
                    let (form, best) = if s.centered.ratio() < s.plain.ratio() {
                        ("exp(x − mean − shift)", &s.centered)
                    } else {
                        ("exp(x − shift)", &s.plain)
                    };
                    let ratio = best.ratio();
                    if ratio > 1e4 {
                        // The row max form (an encrypted tournament) is the way out when it is narrower.
                        let way_out = match &s.maxed {
                            Some(m) if m.ratio() < ratio => format!(
                                "; minus an encrypted row maximum they span {:.1e} (`--softmax-max`, chosen \
                                 automatically above {:.0e})",
                                m.ratio(),
                                crate::to_poly::UNSAFE_ROW_SUM_RATIO
                            ),
                            _ => String::new(),
                        };
                        warn(format!(
                            "row sums of {form} span [{:.3e}, {:.3e}] (ratio {:.1e}, scores in [{:.2}, {:.2}]): \
                             the division needs about log2(ratio) = {:.0} Newton/Goldschmidt steps{way_out}",
                            best.row_sum.min,
                            best.row_sum.max,
                            ratio,
                            s.scores.min,
                            s.scores.max,
                            ratio.log2()
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Whether `to_poly` replaces this op (so calibration must see it).
pub(crate) fn needs_calibration(op: &Op) -> bool {
    matches!(
        op,
        Op::Gelu(_)
            | Op::Erf
            | Op::Tanh
            | Op::Sigmoid
            | Op::Relu
            | Op::Exp
            | Op::Softmax { .. }
            | Op::LayerNorm { .. }
            | Op::Div
            | Op::Sqrt
            | Op::Reciprocal
            | Op::Pow
            | Op::Clip { .. }
    )
}

/// Deterministic reservoir sample with exact min/max.
#[derive(Debug, Clone)]
struct Acc {
    min: f64,
    max: f64,
    count: u64,
    sample: Vec<f64>,
    rng: u64,
}

impl Acc {
    fn new() -> Acc {
        Acc { min: f64::INFINITY, max: f64::NEG_INFINITY, count: 0, sample: Vec::new(), rng: 0x9E37_79B9_7F4A_7C15 }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: fast, fixed seed, good enough for reservoir indices.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn push(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.count += 1;
        if self.sample.len() < RESERVOIR {
            self.sample.push(x);
        } else {
            let j = self.next() % self.count;
            if (j as usize) < RESERVOIR {
                self.sample[j as usize] = x;
            }
        }
    }

    fn finish(&self) -> Range {
        let mut s = self.sample.clone();
        s.sort_by(f64::total_cmp);
        let pct = |p: f64| -> f64 {
            if s.is_empty() {
                return f64::NAN;
            }
            let i = ((s.len() - 1) as f64 * p).round() as usize;
            s[i.min(s.len() - 1)]
        };
        Range { min: self.min, max: self.max, p_lo: pct(0.001), p_hi: pct(0.999), count: self.count }
    }
}

/// Softmax accumulators: per group (head) the score range and the row log-sum-exp range, plus the
/// reservoirs of row maxima and (group, lse) pairs for the row-sum percentiles.
#[derive(Debug, Clone)]
struct SoftmaxAcc {
    masked: bool,
    shift_axis: Option<usize>,
    len: usize,
    scores: Acc,
    row_max: Acc,
    plain: FormAcc,
    centered: FormAcc,
    maxed: FormAcc,
    row_spread: Acc,
    /// Sampled rows: (group, lse, lse of the centered row, lse minus the encrypted row max);
    /// bounded like a reservoir.
    rows: Vec<(usize, f64, f64, f64)>,
    rows_seen: u64,
    rng: Acc,
}

/// Per group (head): the range of the scores and of the row log-sum-exp, for one form of the scores.
#[derive(Debug, Clone)]
struct FormAcc {
    group_score: Vec<(f64, f64)>,
    group_lse: Vec<(f64, f64)>,
}

impl FormAcc {
    fn new(groups: usize) -> Self {
        FormAcc {
            group_score: vec![(f64::INFINITY, f64::NEG_INFINITY); groups],
            group_lse: vec![(f64::INFINITY, f64::NEG_INFINITY); groups],
        }
    }

    /// Shifts = each group's largest row log-sum-exp, so calibrated row sums lie in `(0, 1]`.
    fn finish(&self, lses: impl Iterator<Item = (usize, f64)>, rows_seen: u64, count: u64) -> ShiftedScores {
        let shifts: Vec<f64> = self.group_lse.iter().map(|&(_, hi)| hi).collect();
        let mut shifted = Acc::new();
        for (k, &(lo, hi)) in self.group_score.iter().enumerate() {
            if lo.is_finite() {
                shifted.push(lo - shifts[k]);
                shifted.push(hi - shifts[k]);
            }
        }
        let mut row_sum = Acc::new();
        for (grp, lse) in lses {
            row_sum.push((lse - shifts[grp]).exp());
        }
        let mut rs = row_sum.finish();
        // Exact extremes from the per-group ranges (the reservoir only gives percentiles).
        rs.min = self
            .group_lse
            .iter()
            .zip(&shifts)
            .filter(|((lo, _), _)| lo.is_finite())
            .map(|((lo, _), c)| (lo - c).exp())
            .fold(f64::INFINITY, f64::min);
        rs.max = 1.0;
        rs.count = rows_seen;
        let sh = shifted.finish();
        // Percentiles are not tracked per head for the shifted scores: they equal the extremes.
        let shifted_scores = Range { p_lo: sh.min, p_hi: sh.max, count, ..sh };
        ShiftedScores { shifts, shifted_scores, row_sum: rs }
    }
}

#[derive(Debug, Clone)]
enum NodeAcc {
    Elementwise(Acc),
    LayerNorm { x: Acc, var: Acc },
    Softmax(Box<SoftmaxAcc>),
}

/// Runs every batch through the reference interpreter and records ranges (module doc).
pub fn calibrate(g: &Graph, batches: &[Vec<Tensor>]) -> Result<Calibration, PassError> {
    let encrypted = encrypted_values(g);
    // Softmax nodes whose input is add(encrypted scores, plaintext bias): add node -> operand index.
    let mut mask_adds: HashMap<Node, usize> = HashMap::new();
    for (_, data) in g.nodes.iter() {
        if let Op::Softmax { .. } = data.op {
            if let Some((add, k)) = masked_scores(g, data.inputs[0], &encrypted) {
                mask_adds.insert(add, k);
            }
        }
    }
    let mut accs: BTreeMap<Node, NodeAcc> = BTreeMap::new();
    for (i, batch) in batches.iter().enumerate() {
        // Encrypted operands of mask adds seen in this batch, consumed by their softmax.
        let mut pending: HashMap<polyhe_ir::Value, Tensor> = HashMap::new();
        let mut observer = |n: Node, ins: &[&Tensor], outs: &[Tensor]| {
            let data = &g.nodes[n];
            if let Some(&k) = mask_adds.get(&n) {
                pending.insert(data.outputs[0], ins[k].clone());
                return;
            }
            if !needs_calibration(&data.op) || !encrypted[data.outputs[0]] {
                return;
            }
            let _ = outs;
            observe(g, n, ins, &mut accs, &mut pending);
        };
        interp::run_with(g, batch, &mut observer).map_err(|e| match e {
            polyhe_ir::IrError::MissingInput { .. } | polyhe_ir::IrError::InputMismatch { .. } => {
                PassError::BadCalibration { batch: i, msg: e.to_string() }
            }
            other => PassError::Eval(other),
        })?;
    }
    let mut nodes = BTreeMap::new();
    for (n, acc) in accs {
        let data = &g.nodes[n];
        let nc = match acc {
            NodeAcc::Elementwise(a) => {
                NodeCalibration { op: data.op.name().to_string(), input: a.finish(), detail: CalibDetail::Elementwise }
            }
            NodeAcc::LayerNorm { x, var } => NodeCalibration {
                op: data.op.name().to_string(),
                input: x.finish(),
                detail: CalibDetail::LayerNorm { var_eps: var.finish() },
            },
            NodeAcc::Softmax(s) => {
                let s = *s;
                let scores = s.scores.finish();
                let plain = s.plain.finish(s.rows.iter().map(|&(g, l, _, _)| (g, l)), s.rows_seen, scores.count);
                let centered = s.centered.finish(s.rows.iter().map(|&(g, _, l, _)| (g, l)), s.rows_seen, scores.count);
                let maxed = s.maxed.finish(s.rows.iter().map(|&(g, _, _, l)| (g, l)), s.rows_seen, scores.count);
                NodeCalibration {
                    op: "softmax".into(),
                    input: scores,
                    detail: CalibDetail::Softmax(Box::new(SoftmaxCalibration {
                        masked: s.masked,
                        scores,
                        row_max: s.row_max.finish(),
                        shift_axis: s.shift_axis,
                        len: s.len,
                        plain,
                        centered,
                        maxed: Some(maxed),
                        row_spread: Some(s.row_spread.finish()),
                    })),
                }
            }
        };
        nodes.insert(data.name.clone(), nc);
    }
    Ok(Calibration { batches: batches.len(), nodes })
}

/// If `v = add(a, b)` with exactly one encrypted operand, the add node and the encrypted operand's index.
pub(crate) fn masked_scores(
    g: &Graph,
    v: polyhe_ir::Value,
    encrypted: &cranelift_entity::SecondaryMap<polyhe_ir::Value, bool>,
) -> Option<(Node, usize)> {
    let ValueDef::Result(n, _) = g.values[v].def else { return None };
    let d = &g.nodes[n];
    if d.op != Op::Add {
        return None;
    }
    let (a, b) = (d.inputs[0], d.inputs[1]);
    // The encrypted operand must already have the full shape (it is the score matrix).
    let full = &g.ty(v).shape;
    match (encrypted[a], encrypted[b]) {
        (true, false) if &g.ty(a).shape == full => Some((n, 0)),
        (false, true) if &g.ty(b).shape == full => Some((n, 1)),
        _ => None,
    }
}

/// The head axis when the softmax runs over the last axis of a rank-4 tensor.
pub(crate) fn softmax_shift_axis(shape: &[usize], axis: usize) -> Option<usize> {
    (shape.len() == 4 && axis == 3).then_some(1)
}

fn observe(
    g: &Graph,
    n: Node,
    ins: &[&Tensor],
    accs: &mut BTreeMap<Node, NodeAcc>,
    pending: &mut HashMap<polyhe_ir::Value, Tensor>,
) {
    let data = &g.nodes[n];
    match &data.op {
        Op::LayerNorm { axis, epsilon } => {
            let entry = accs.entry(n).or_insert_with(|| NodeAcc::LayerNorm { x: Acc::new(), var: Acc::new() });
            let NodeAcc::LayerNorm { x, var } = entry else { return };
            let xs = ins[0].to_f64_vec();
            let len: usize = ins[0].shape()[*axis..].iter().product();
            for &v in &xs {
                x.push(v);
            }
            if len == 0 {
                return;
            }
            for row in xs.chunks(len) {
                let mean = row.iter().sum::<f64>() / len as f64;
                let v = row.iter().map(|&t| (t - mean) * (t - mean)).sum::<f64>() / len as f64;
                var.push(v + epsilon);
            }
        }
        Op::Softmax { axis } => {
            let shape = ins[0].shape().to_vec();
            let x = ins[0].to_f64_vec();
            let enc = pending.remove(&data.inputs[0]);
            let masked = enc.is_some();
            let a = enc.map(|t| t.to_f64_vec()).unwrap_or_else(|| x.clone());
            let shift_axis = softmax_shift_axis(&shape, *axis);
            let groups = shift_axis.map_or(1, |ax| shape[ax]);
            let entry = accs.entry(n).or_insert_with(|| {
                NodeAcc::Softmax(Box::new(SoftmaxAcc {
                    masked,
                    shift_axis,
                    len: shape[*axis],
                    scores: Acc::new(),
                    row_max: Acc::new(),
                    plain: FormAcc::new(groups),
                    centered: FormAcc::new(groups),
                    maxed: FormAcc::new(groups),
                    row_spread: Acc::new(),
                    rows: Vec::new(),
                    rows_seen: 0,
                    rng: Acc::new(),
                }))
            });
            let NodeAcc::Softmax(s) = entry else { return };
            s.masked &= masked;
            let len = shape[*axis];
            let inner: usize = shape[*axis + 1..].iter().product();
            if len == 0 || inner == 0 {
                return;
            }
            // Rows per group index: product of dims between the shift axis and the softmax axis.
            let per_group: usize = shift_axis.map_or(1, |ax| shape[ax + 1..*axis].iter().product());
            for (o, (xb, ab)) in x.chunks(len * inner).zip(a.chunks(len * inner)).enumerate() {
                let grp = if groups > 1 { (o / per_group.max(1)) % groups } else { 0 };
                for i in 0..inner {
                    let m = (0..len).map(|j| xb[j * inner + i]).fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = (0..len).map(|j| (xb[j * inner + i] - m).exp()).sum();
                    let lse = m + sum.ln();
                    s.row_max.push(m);
                    // Centering subtracts the encrypted scores' row mean; with a mask the row sum is
                    // Σ exp(a − mean(a) + bias) = exp(lse − mean(a)).
                    let mean = (0..len).map(|j| ab[j * inner + i]).sum::<f64>() / len as f64;
                    let lse_c = lse - mean;
                    // The max form subtracts the row max. With a mask, to_poly's tournament sees
                    // `a + max(bias, −C)` with `C` above the row spread, where a masked position never
                    // wins: the max is the softmax input's `m`, and rows sum to at least 1.
                    let a_max = (0..len).map(|j| ab[j * inner + i]).fold(f64::NEG_INFINITY, f64::max);
                    let a_min = (0..len).map(|j| ab[j * inner + i]).fold(f64::INFINITY, f64::min);
                    s.row_spread.push(a_max - a_min);
                    let top = if masked { m } else { a_max };
                    let lse_m = lse - top;
                    for j in 0..len {
                        let v = ab[j * inner + i];
                        s.scores.push(v);
                        let gs = &mut s.plain.group_score[grp];
                        gs.0 = gs.0.min(v);
                        gs.1 = gs.1.max(v);
                        let gc = &mut s.centered.group_score[grp];
                        gc.0 = gc.0.min(v - mean);
                        gc.1 = gc.1.max(v - mean);
                        let gm = &mut s.maxed.group_score[grp];
                        gm.0 = gm.0.min(v - top);
                        gm.1 = gm.1.max(v - top);
                    }
                    for (form, l) in [(&mut s.plain, lse), (&mut s.centered, lse_c), (&mut s.maxed, lse_m)] {
                        let gl = &mut form.group_lse[grp];
                        gl.0 = gl.0.min(l);
                        gl.1 = gl.1.max(l);
                    }
                    s.rows_seen += 1;
                    if s.rows.len() < RESERVOIR {
                        s.rows.push((grp, lse, lse_c, lse_m));
                    } else {
                        let j = s.rng.next() % s.rows_seen;
                        if (j as usize) < RESERVOIR {
                            s.rows[j as usize] = (grp, lse, lse_c, lse_m);
                        }
                    }
                }
            }
        }
        op => {
            // The approximated operand: the divisor of a div, the base of a pow, else the input.
            let k = usize::from(matches!(op, Op::Div));
            let entry = accs.entry(n).or_insert_with(|| NodeAcc::Elementwise(Acc::new()));
            let NodeAcc::Elementwise(acc) = entry else { return };
            if let Some(t) = ins.get(k) {
                for v in t.to_f64_vec() {
                    acc.push(v);
                }
            }
        }
    }
}
