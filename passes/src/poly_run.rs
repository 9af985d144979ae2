//! Running a poly-stage graph in f64 while counting, per `chebyshev` node, the inputs outside its
//! fitted interval `[lo, hi]` — where a polynomial approximation stops being accurate. This is how
//! users debug precision loss in `polyhe run --mode poly`.
//!
//! Requires: a graph (usually the output of [`crate::compile_to_poly`]) and inputs in graph-input
//! order. Guarantees: the outputs are exactly [`polyhe_ir::interp::run`]'s; [`OutOfRange`] has one
//! entry per `chebyshev` node that ran, keyed by node name, with the count of inputs outside
//! `[lo, hi]` (NaN counts as outside), the total, and the extremes seen.

use std::collections::BTreeMap;

use polyhe_ir::{interp, Graph, Node, Op, Tensor};
use serde::Serialize;

use crate::error::PassError;

/// Out-of-range statistics of one `chebyshev` node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeCount {
    pub lo: f64,
    pub hi: f64,
    /// Inputs outside `[lo, hi]`.
    pub outside: usize,
    pub total: usize,
    /// Inputs that are NaN or infinite (counted in `outside` too; a diverged upstream computation).
    pub non_finite: usize,
    /// Extremes of the finite inputs.
    pub min_seen: f64,
    pub max_seen: f64,
}

/// Per `chebyshev` node (by name), the out-of-range counts of one run.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OutOfRange {
    pub nodes: BTreeMap<String, RangeCount>,
}

impl OutOfRange {
    /// Total number of inputs outside their polynomial's interval.
    pub fn total_outside(&self) -> usize {
        self.nodes.values().map(|c| c.outside).sum()
    }

    /// Nodes with at least one input outside, worst first.
    pub fn offenders(&self) -> Vec<(&str, &RangeCount)> {
        let mut v: Vec<(&str, &RangeCount)> =
            self.nodes.iter().filter(|(_, c)| c.outside > 0).map(|(n, c)| (n.as_str(), c)).collect();
        v.sort_by(|a, b| b.1.outside.cmp(&a.1.outside).then(a.0.cmp(b.0)));
        v
    }
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let off = self.offenders();
        if off.is_empty() {
            return writeln!(f, "all polynomial inputs inside their fitted intervals");
        }
        writeln!(f, "polynomial inputs outside their fitted interval:")?;
        for (n, c) in off {
            writeln!(
                f,
                "  {n}: {}/{} outside [{:.4}, {:.4}] (seen [{:.4}, {:.4}]{})",
                c.outside,
                c.total,
                c.lo,
                c.hi,
                c.min_seen,
                c.max_seen,
                if c.non_finite > 0 { format!(", {} NaN/inf", c.non_finite) } else { String::new() }
            )?;
        }
        Ok(())
    }
}

/// Runs `g` on `inputs`, counting out-of-range `chebyshev` inputs (module doc).
pub fn run_poly(g: &Graph, inputs: &[Tensor]) -> Result<(Vec<Tensor>, OutOfRange), PassError> {
    let mut oor = OutOfRange::default();
    let mut observer = |n: Node, ins: &[&Tensor], _: &[Tensor]| {
        let d = &g.nodes[n];
        let Op::Chebyshev { lo, hi, .. } = d.op else { return };
        let e = oor.nodes.entry(d.name.clone()).or_insert(RangeCount {
            lo,
            hi,
            outside: 0,
            total: 0,
            non_finite: 0,
            min_seen: f64::INFINITY,
            max_seen: f64::NEG_INFINITY,
        });
        for x in ins[0].to_f64_vec() {
            e.total += 1;
            if !(x >= lo && x <= hi) {
                e.outside += 1;
            }
            if x.is_finite() {
                e.min_seen = e.min_seen.min(x);
                e.max_seen = e.max_seen.max(x);
            } else {
                e.non_finite += 1;
            }
        }
    };
    let outs = interp::run_with(g, inputs, &mut observer).map_err(PassError::Eval)?;
    Ok((outs, oor))
}
