//! Evaluation plans for polynomials in the power basis `Σ a_i x^i`, as [`EvalPlan`]s (same depth
//! model as the Chebyshev plans: a ct×ct product or a multiplication by a non-integer scalar costs a
//! level; the input is not pre-scaled, so nothing is assumed folded upstream).
//!
//! - [`horner`]: `(((a_d x + a_{d−1}) x + …) x + a_0`: `d` ct×ct products, depth `d` (+1 for a
//!   non-integer leading coefficient) — fewest multiplications, deepest.
//! - [`balanced`]: baby-step giant-step (Paterson–Stockmeyer family) with a depth budget, the power
//!   basis twin of [`EvalPlan::chebyshev`]: `p = q·x^g + r` with `g` the largest power of two ≤ the
//!   degree, `q` evaluated with one level less; a node becomes a leaf `Σ a_i x^i` (baby steps
//!   `x..x^b`) when its degree is at most `b` and its depth fits. Depth exactly `ceil(log2(d + 1))`
//!   for `d ≥ 1` with generic coefficients (a degree-1 leaf `a_1 x + a_0` already needs its level for
//!   the non-integer scalar). The baby-step count is chosen for the fewest ct×ct products.
//!
//! Proof sketch of the bound: with budget `B ≥ ceil(log2(n+1))` and `2^j = g ≤ n < 2g`, the quotient
//! has degree `n − g < g` so `ceil(log2(n−g+1)) ≤ j ≤ B − 1`, and `x^g` has depth `j ≤ B − 1`; the
//! product fits `B`, the remainder (degree `< g`) fits `B`. Degree 1 and constants fit any `B ≥ 1`.

use std::collections::BTreeMap;

use crate::approx::{EvalPlan, PlanOp, Reg};

fn is_integer(c: f64) -> bool {
    c.is_finite() && c.fract() == 0.0
}

fn ceil_log2(i: usize) -> u32 {
    if i <= 1 {
        0
    } else {
        usize::BITS - (i - 1).leading_zeros()
    }
}

/// Minimum depth of a generic degree-`d` polynomial: `ceil(log2(d + 1))`.
pub fn depth_bound(d: usize) -> u32 {
    ceil_log2(d + 1)
}

#[derive(Clone, Copy)]
enum V {
    C(f64),
    R(usize),
}

struct B {
    ops: Vec<PlanOp>,
    depth: Vec<u32>,
    powers: BTreeMap<usize, V>,
}

impl B {
    fn new() -> Self {
        let mut powers = BTreeMap::new();
        powers.insert(0, V::C(1.0));
        powers.insert(1, V::R(0));
        B { ops: vec![PlanOp::Input], depth: vec![0], powers }
    }

    fn push(&mut self, op: PlanOp, d: u32) -> V {
        self.ops.push(op);
        self.depth.push(d);
        V::R(self.ops.len() - 1)
    }

    fn mul(&mut self, a: V, b: V) -> V {
        match (a, b) {
            (V::C(x), V::C(y)) => V::C(x * y),
            (V::C(c), V::R(r)) | (V::R(r), V::C(c)) => {
                if c == 0.0 {
                    V::C(0.0)
                } else if c == 1.0 {
                    V::R(r)
                } else {
                    let d = self.depth[r] + u32::from(!is_integer(c));
                    self.push(PlanOp::MulConst(Reg(r), c), d)
                }
            }
            (V::R(x), V::R(y)) => {
                let d = self.depth[x].max(self.depth[y]) + 1;
                self.push(PlanOp::Mul(Reg(x), Reg(y)), d)
            }
        }
    }

    fn add(&mut self, a: V, b: V) -> V {
        match (a, b) {
            (V::C(x), V::C(y)) => V::C(x + y),
            (V::C(c), V::R(r)) | (V::R(r), V::C(c)) => {
                if c == 0.0 {
                    V::R(r)
                } else {
                    let d = self.depth[r];
                    self.push(PlanOp::AddConst(Reg(r), c), d)
                }
            }
            (V::R(x), V::R(y)) => {
                let d = self.depth[x].max(self.depth[y]);
                self.push(PlanOp::Add(Reg(x), Reg(y)), d)
            }
        }
    }

    /// `x^i` at depth `ceil(log2 i)`.
    fn power(&mut self, i: usize) -> V {
        if let Some(&v) = self.powers.get(&i) {
            return v;
        }
        let h = 1usize << (ceil_log2(i) - 1);
        let a = self.power(h);
        let b = self.power(i - h);
        let v = self.mul(a, b);
        self.powers.insert(i, v);
        v
    }

    fn finish(mut self, out: V) -> EvalPlan {
        let out = match out {
            V::R(r) => r,
            V::C(c) => {
                self.ops.push(PlanOp::Const(c));
                self.ops.len() - 1
            }
        };
        // Ops are only ever appended with earlier operands, so the plan is valid by construction.
        EvalPlan::new(self.ops, Reg(out)).unwrap_or_else(|_| unreachable_plan())
    }

    fn node(&mut self, a: &[f64], baby: usize, budget: u32) -> V {
        let n = a.iter().rposition(|&c| c != 0.0).unwrap_or(0);
        if n == 0 {
            return V::C(a[0]);
        }
        let leaf_depth =
            (1..=n).filter(|&i| a[i] != 0.0).map(|i| ceil_log2(i) + u32::from(!is_integer(a[i]))).max().unwrap_or(0);
        if n <= baby && leaf_depth <= budget || n == 1 {
            let mut acc = V::C(a[0]);
            for (i, &ai) in a.iter().enumerate().take(n + 1).skip(1) {
                if ai == 0.0 {
                    continue;
                }
                let p = self.power(i);
                let t = self.mul(p, V::C(ai));
                acc = self.add(acc, t);
            }
            return acc;
        }
        let g = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let q = &a[g..=n];
        let r = &a[..g];
        let qv = self.node(q, baby, budget.saturating_sub(1));
        let xg = self.power(g);
        let prod = self.mul(qv, xg);
        let rv = self.node(r, baby, budget);
        self.add(prod, rv)
    }
}

/// A plan that only returns its input; never reached (see [`B::finish`]).
fn unreachable_plan() -> EvalPlan {
    EvalPlan::new(vec![PlanOp::Input], Reg(0)).unwrap_or_else(|_| unreachable!("a lone input is a valid plan"))
}

/// Horner's rule (module doc).
pub fn horner(a: &[f64]) -> EvalPlan {
    let mut b = B::new();
    let n = a.iter().rposition(|&c| c != 0.0).unwrap_or(0);
    let mut acc = V::C(a.get(n).copied().unwrap_or(0.0));
    for i in (0..n).rev() {
        acc = b.mul(acc, V::R(0));
        acc = b.add(acc, V::C(a[i]));
    }
    b.finish(acc)
}

/// Depth-budgeted baby-step giant-step plan (module doc): depth `ceil(log2(d + 1))` for `d ≥ 1`.
pub fn balanced(a: &[f64]) -> EvalPlan {
    let n = a.iter().rposition(|&c| c != 0.0).unwrap_or(0);
    if n == 0 {
        return B::new().finish(V::C(a.first().copied().unwrap_or(0.0)));
    }
    let budget = depth_bound(n);
    let mut best: Option<EvalPlan> = None;
    for baby in 1..=n {
        let mut b = B::new();
        let out = b.node(&a[..=n], baby, budget);
        let plan = b.finish(out);
        let key = |p: &EvalPlan| (p.depth(), p.num_ct_mults(), p.ops().len());
        if best.as_ref().is_none_or(|cur| key(&plan) < key(cur)) {
            best = Some(plan);
        }
    }
    best.unwrap_or_else(unreachable_plan)
}
