//! Multiplicative-depth analysis of the encrypted part of a graph (CKKS levels, one rescale per
//! non-trivial multiplication).
//!
//! Requires: a verified graph (any stage; ops outside the poly stage count as depth 0 and are listed
//! in [`DepthReport::non_polynomial`]). Guarantees, per encrypted value (plaintext values have no depth):
//! | op | depth of the result |
//! |---|---|
//! | graph input, embedding lookup | 0 |
//! | mul ct×ct, matmul/gemm ct×ct | max of operands + 1 |
//! | mul by plaintext | + 1, or + 0 if it is a constant whose elements are all integers (no rescale) |
//! | matmul / gemm / conv with plaintext weights | + 1 |
//! | chebyshev | + `ceil(log2(degree + 1))` ([`polyhe_ir::Op::poly_depth`]) |
//! | reduce_mean | + 1 (the 1/n scaling) unless n = 1 |
//! | add, sub, neg, reduce_sum, data movement | max of encrypted operands |
//!
//! The critical path is followed back from the deepest graph output through the deepest operand of
//! each node; [`DepthReport::critical_path`] lists the nodes on it that add levels.
//!
//! ct×ct multiplications are counted two ways: `ct_mult_ops` counts ops (a `chebyshev` counts the
//! ct×ct products of its depth-optimal evaluation plan, a ct×ct matmul counts 1), and
//! `ct_mult_ciphertexts` estimates ciphertext products when values are packed densely into
//! ciphertexts of [`SLOTS`] slots: an elementwise product of `n` elements costs `ceil(n / SLOTS)`, a
//! ct×ct matmul `[.., m, k] × [.., k, n]` costs `ceil(batch·m·n·k / SLOTS)` (one slot product per
//! multiply-accumulate).

use std::collections::BTreeMap;

use cranelift_entity::SecondaryMap;
use polyhe_ir::{Graph, Node, Op, Value, ValueDef};
use serde::Serialize;

use crate::approx::{Chebyshev, Interval};
use crate::to_poly::{encrypted_values, is_poly_stage_op};

/// Slots per ciphertext assumed for the ciphertext-level estimate (CKKS ring degree 2^16).
pub const SLOTS: usize = 1 << 15;

/// One node on the critical path that adds levels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathStep {
    pub node: String,
    pub op: String,
    /// Levels this node adds.
    pub levels: u32,
    /// Depth after the node.
    pub depth: u32,
}

/// Result of the analysis (module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepthReport {
    /// Depth of the deepest graph output.
    pub total_depth: u32,
    /// Depth of each graph output, by name.
    pub outputs: BTreeMap<String, u32>,
    pub critical_path: Vec<PathStep>,
    pub ct_mult_ops: usize,
    pub ct_mult_ciphertexts: usize,
    /// Nodes on encrypted values whose op is outside the poly stage (empty after `to_poly`).
    pub non_polynomial: Vec<String>,
    /// Number of nodes that run in plaintext (not downstream of encrypted data).
    pub plaintext_nodes: usize,
    #[serde(skip)]
    pub(crate) depth: SecondaryMap<Value, u32>,
}

impl DepthReport {
    /// Depth of a value (0 for plaintext values).
    pub fn value_depth(&self, v: Value) -> u32 {
        self.depth[v]
    }
}

fn integer_constant(g: &Graph, v: Value) -> bool {
    g.constant_of(v).is_some_and(|t| t.to_f64_vec().iter().all(|x| x.fract() == 0.0))
}

/// ct×ct products of the depth-optimal plan of a `chebyshev`.
fn chebyshev_ct_mults(lo: f64, hi: f64, coeffs: &[f64], cache: &mut BTreeMap<Vec<u64>, usize>) -> usize {
    let key: Vec<u64> = coeffs.iter().map(|c| u64::from(*c != 0.0)).collect();
    if let Some(&n) = cache.get(&key) {
        return n;
    }
    let n = Interval::new(lo, hi)
        .and_then(|iv| Chebyshev::new(iv, coeffs.to_vec()))
        .map(|p| p.plan().num_ct_mults())
        .unwrap_or(0);
    cache.insert(key, n);
    n
}

/// Analyses `g` (module doc).
pub fn analyze_depth(g: &Graph) -> DepthReport {
    let enc = encrypted_values(g);
    let mut depth: SecondaryMap<Value, u32> = SecondaryMap::with_default(0);
    // Which node input determined each node's depth, and the levels it added.
    let mut pred: SecondaryMap<Node, Option<Value>> = SecondaryMap::with_default(None);
    let mut added: SecondaryMap<Node, u32> = SecondaryMap::with_default(0);
    let (mut ct_ops, mut ct_cts) = (0usize, 0usize);
    let mut non_poly = Vec::new();
    let mut plaintext = 0;
    let mut cache = BTreeMap::new();
    for (n, d) in g.nodes.iter() {
        let out_enc = d.outputs.iter().any(|&o| enc[o]);
        if !out_enc {
            if !matches!(d.op, Op::Constant(_)) {
                plaintext += 1;
            }
            continue;
        }
        let enc_ins: Vec<Value> = d.inputs.iter().copied().filter(|&v| enc[v]).collect();
        let deepest = enc_ins.iter().copied().max_by_key(|&v| (depth[v], std::cmp::Reverse(v)));
        let base = deepest.map_or(0, |v| depth[v]);
        let numel = g.ty(d.outputs[0]).numel();
        let cts = numel.div_ceil(SLOTS).max(1);
        let both = enc_ins.len() >= 2;
        let plus = match &d.op {
            Op::Mul => {
                if both {
                    ct_ops += 1;
                    ct_cts += cts;
                    1
                } else {
                    let other = d.inputs.iter().copied().find(|&v| !enc[v]);
                    u32::from(!other.is_some_and(|v| integer_constant(g, v)))
                }
            }
            Op::MatMul | Op::Gemm { .. } => {
                if both {
                    let (a, b) = (g.ty(d.inputs[0]), g.ty(d.inputs[1]));
                    let k = a.shape.last().copied().unwrap_or(1);
                    let macs = numel.saturating_mul(k);
                    let _ = b;
                    ct_ops += 1;
                    ct_cts += macs.div_ceil(SLOTS).max(1);
                }
                1
            }
            Op::Conv { .. } => 1,
            Op::Chebyshev { lo, hi, coeffs } => {
                let m = chebyshev_ct_mults(*lo, *hi, coeffs, &mut cache);
                ct_ops += m;
                ct_cts += m * cts;
                d.op.poly_depth()
            }
            Op::ReduceMean { axes, .. } => {
                let shape = &g.ty(d.inputs[0]).shape;
                let count: usize = axes.iter().map(|&a| shape.get(a).copied().unwrap_or(1)).product();
                u32::from(count > 1)
            }
            op => {
                if !(is_poly_stage_op(op) || matches!(op, Op::Gather { .. }) && enc_ins.is_empty()) {
                    non_poly.push(d.name.clone());
                }
                0
            }
        };
        pred[n] = deepest;
        added[n] = plus;
        for &o in &d.outputs {
            depth[o] = base + plus;
        }
    }
    let mut outputs = BTreeMap::new();
    for &o in &g.outputs {
        outputs.insert(g.value_label(o), depth[o]);
    }
    let deepest_out = g.outputs.iter().copied().filter(|&o| enc[o]).max_by_key(|&o| depth[o]);
    let total_depth = deepest_out.map_or(0, |o| depth[o]);
    let mut critical_path = Vec::new();
    let mut cur = deepest_out;
    while let Some(v) = cur {
        let ValueDef::Result(n, _) = g.values[v].def else { break };
        if added[n] > 0 {
            critical_path.push(PathStep {
                node: g.nodes[n].name.clone(),
                op: g.nodes[n].op.name().to_string(),
                levels: added[n],
                depth: depth[v],
            });
        }
        cur = pred[n];
    }
    critical_path.reverse();
    DepthReport {
        total_depth,
        outputs,
        critical_path,
        ct_mult_ops: ct_ops,
        ct_mult_ciphertexts: ct_cts,
        non_polynomial: non_poly,
        plaintext_nodes: plaintext,
        depth,
    }
}
