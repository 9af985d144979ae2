//! Evaluation plans: straight-line programs over registers with a CKKS depth model.
//!
//! An [`EvalPlan`] is a list of [`PlanOp`]s; op `i` defines register `r{i}`, op 0 is always
//! [`PlanOp::Input`] (the ciphertext `x`) and ops only read earlier registers. The depth model
//! (multiplicative levels consumed, as in CKKS with one rescale per non-trivial multiplication):
//!
//! | op | depth of the result |
//! |---|---|
//! | `Input`, `Const` | 0 |
//! | `Affine(r0, s, c)` on the plan input | 0: folded into the producer of `x` (preceding plaintext weights/bias) |
//! | `Affine(r, s, c)` on another register | `depth(r)`, plus 1 if `s` is not an integer |
//! | `Mul(a, b)` (ct×ct) | `max(depth a, depth b) + 1` |
//! | `MulConst(r, c)` | `depth(r)`, plus 1 if `c` is not an integer (integers need no rescale) |
//! | `Add`, `Sub` | `max` of the operands |
//! | `AddConst(r, c)` | `depth(r)` |
//!
//! So a linear combination `Σ c_i r_i` with non-integer scalars costs one level above its deepest
//! term — the cost the Chebyshev layout below has to absorb.
//!
//! [`EvalPlan::chebyshev`] guarantees, for a degree-`d` series with generic coefficients, depth exactly
//! `ceil(log2(d + 1))` for `d ≥ 2` (never more for any coefficients); degree ≤ 1 is an affine map of
//! the input, folded upstream (depth 0). Layout (Bossuat et al. 2021, Lattigo's
//! evaluator): baby steps `T_1..T_b` and giant steps `T_{2^j}` via `T_{m+n} = 2 T_m T_n − T_{m−n}`
//! (the factor 2 is an integer: free); the series is split recursively `p = q·T_{2^j} + r` (exact
//! Chebyshev division) with a depth budget: a node of degree `n` with budget `B ≥ ceil(log2(n+1))`
//! becomes a leaf `Σ c_i T_i` only if `n ≤ b` and its depth (`ceil(log2 n) + 1` for non-integer
//! `c_i`) fits `B`; otherwise it splits at `2^j ≤ n < 2^{j+1}` with `q` getting budget `B − 1` and `r`
//! budget `B`. The only "tight" nodes (degree `2^k − 1` with budget `k`) are along the chain of
//! leading quotients, which is split down to degree 1, so the scalar level is folded into the giant-step
//! products there; all other nodes have a spare level for their scalars. Baby-step count `b` is chosen
//! by trying every value up to 64 and the powers of two above, keeping the fewest ct×ct
//! multiplications (ties: fewest ops); powers are
//! materialized lazily, so only used `T_i` are paid for. The ct×ct count is close to the BSGS optimum
//! `~ sqrt(2d) + log2 d` plus at most `log2 d` for the tight chain (measured: d = 7 → 5, 15 → 8,
//! 31 → 13, 63 → 18, 127 → 27, 255 → 36). For comparison, OpenFHE's Chebyshev series evaluation needs
//! about one level more (as noted in issue 4).
//!
//! Not modelled: CKKS scale management (terms added at different levels need matching scales, which a
//! backend handles by level-aware constant encoding as Lattigo does) and noise growth.

use std::collections::BTreeMap;

use super::chebyshev::{depth_for_degree, Chebyshev};
use super::error::{ApproxError, Result};

/// A register of an [`EvalPlan`]; `r0` is the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(pub usize);

impl std::fmt::Display for Reg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// One instruction; its result is the register with the op's index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlanOp {
    /// The plan input `x` (always op 0, and only there).
    Input,
    /// A plaintext constant.
    Const(f64),
    /// `scale·src + shift`.
    Affine {
        src: Reg,
        scale: f64,
        shift: f64,
    },
    /// ct×ct product.
    Mul(Reg, Reg),
    MulConst(Reg, f64),
    Add(Reg, Reg),
    Sub(Reg, Reg),
    AddConst(Reg, f64),
}

impl PlanOp {
    /// The registers this op reads.
    pub fn operands(&self) -> [Option<Reg>; 2] {
        match *self {
            PlanOp::Input | PlanOp::Const(_) => [None, None],
            PlanOp::Affine { src, .. } | PlanOp::MulConst(src, _) | PlanOp::AddConst(src, _) => [Some(src), None],
            PlanOp::Mul(a, b) | PlanOp::Add(a, b) | PlanOp::Sub(a, b) => [Some(a), Some(b)],
        }
    }
}

impl std::fmt::Display for PlanOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanOp::Input => write!(f, "input"),
            PlanOp::Const(c) => write!(f, "const {c:e}"),
            PlanOp::Affine { src, scale, shift } => write!(f, "affine {src}, {scale:e}, {shift:e}"),
            PlanOp::Mul(a, b) => write!(f, "mul {a}, {b}"),
            PlanOp::MulConst(a, c) => write!(f, "mulc {a}, {c:e}"),
            PlanOp::Add(a, b) => write!(f, "add {a}, {b}"),
            PlanOp::Sub(a, b) => write!(f, "sub {a}, {b}"),
            PlanOp::AddConst(a, c) => write!(f, "addc {a}, {c:e}"),
        }
    }
}

/// Cost summary of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanCost {
    /// Multiplicative depth of the output (module-doc model).
    pub depth: u32,
    /// ct×ct multiplications.
    pub ct_mults: usize,
    /// Multiplications by non-integer scalars (each a rescale).
    pub scalar_mults: usize,
    /// Total ops excluding `Input`.
    pub ops: usize,
}

/// A straight-line program evaluating a polynomial-like function of one input (module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPlan {
    ops: Vec<PlanOp>,
    output: Reg,
}

fn is_integer(c: f64) -> bool {
    c.is_finite() && c.fract() == 0.0
}

impl EvalPlan {
    /// Validates that op 0 is the only `Input` and every op reads only earlier registers.
    pub fn new(ops: Vec<PlanOp>, output: Reg) -> Result<Self> {
        if ops.first() != Some(&PlanOp::Input) {
            return Err(ApproxError::PlanInput { op: 0 });
        }
        for (i, op) in ops.iter().enumerate() {
            if i > 0 && *op == PlanOp::Input {
                return Err(ApproxError::PlanInput { op: i });
            }
            if let Some(r) = op.operands().into_iter().flatten().find(|r| r.0 >= i) {
                return Err(ApproxError::PlanForwardRef { op: i, reg: r.0 });
            }
        }
        if output.0 >= ops.len() {
            return Err(ApproxError::PlanOutput { reg: output.0, len: ops.len() });
        }
        Ok(Self { ops, output })
    }

    pub fn ops(&self) -> &[PlanOp] {
        &self.ops
    }

    pub fn output(&self) -> Reg {
        self.output
    }

    /// Depth of every register under the module-doc model.
    pub fn register_depths(&self) -> Vec<u32> {
        let mut d: Vec<u32> = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let v = match *op {
                PlanOp::Input | PlanOp::Const(_) => 0,
                PlanOp::Affine { src, scale, .. } => {
                    if src.0 == 0 {
                        0
                    } else {
                        d[src.0] + u32::from(!is_integer(scale))
                    }
                }
                PlanOp::Mul(a, b) => d[a.0].max(d[b.0]) + 1,
                PlanOp::MulConst(a, c) => d[a.0] + u32::from(!is_integer(c)),
                PlanOp::Add(a, b) | PlanOp::Sub(a, b) => d[a.0].max(d[b.0]),
                PlanOp::AddConst(a, _) => d[a.0],
            };
            d.push(v);
        }
        d
    }

    /// Multiplicative depth of the output.
    pub fn depth(&self) -> u32 {
        self.register_depths()[self.output.0]
    }

    /// Number of ct×ct multiplications.
    pub fn num_ct_mults(&self) -> usize {
        self.ops.iter().filter(|op| matches!(op, PlanOp::Mul(..))).count()
    }

    pub fn cost(&self) -> PlanCost {
        PlanCost {
            depth: self.depth(),
            ct_mults: self.num_ct_mults(),
            scalar_mults: self
                .ops
                .iter()
                .filter(|op| match op {
                    PlanOp::MulConst(_, c) => !is_integer(*c),
                    PlanOp::Affine { src, scale, .. } => src.0 != 0 && !is_integer(*scale),
                    _ => false,
                })
                .count(),
            ops: self.ops.len() - 1,
        }
    }

    /// Interprets the plan in `f64`.
    pub fn eval(&self, x: f64) -> f64 {
        let mut r: Vec<f64> = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let v = match *op {
                PlanOp::Input => x,
                PlanOp::Const(c) => c,
                PlanOp::Affine { src, scale, shift } => scale * r[src.0] + shift,
                PlanOp::Mul(a, b) => r[a.0] * r[b.0],
                PlanOp::MulConst(a, c) => c * r[a.0],
                PlanOp::Add(a, b) => r[a.0] + r[b.0],
                PlanOp::Sub(a, b) => r[a.0] - r[b.0],
                PlanOp::AddConst(a, c) => r[a.0] + c,
            };
            r.push(v);
        }
        r[self.output.0]
    }

    /// Depth-optimal plan for a Chebyshev series (module doc), input mapped to `[-1, 1]` by a
    /// folded `Affine`.
    pub fn chebyshev(p: &Chebyshev) -> EvalPlan {
        let (scale, shift) = p.interval().unit_map();
        let c = p.coeffs();
        let degree = effective_degree(c);
        if degree <= 1 {
            // An affine map of the input: folded upstream, depth 0.
            let mut b = Builder::new();
            let c1 = if degree == 1 { c[1] } else { 0.0 };
            let out = b.affine_input(c1 * scale, c1 * shift + c[0]);
            return b.finish(out);
        }
        let mut best: Option<EvalPlan> = None;
        // Every count up to 64, then powers of two (the optimum is near √(2d); trying every count of a
        // degree-1000 series is O(d²) work for nothing).
        for baby in (1..=degree).filter(|&b| b <= 64 || b.is_power_of_two()) {
            let mut b = Builder::new();
            let t = b.affine_input(scale, shift);
            let out = b.chebyshev(t, c, baby);
            let plan = b.finish(out);
            let better = best
                .as_ref()
                .is_none_or(|cur| (plan.num_ct_mults(), plan.ops.len()) < (cur.num_ct_mults(), cur.ops.len()));
            if better {
                best = Some(plan);
            }
        }
        best.unwrap_or_else(|| Builder::new().finish(Val::Const(c[0])))
    }
}

impl std::fmt::Display for EvalPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let depths = self.register_depths();
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "r{i} = {op}  ; depth {}", depths[i])?;
        }
        write!(f, "return {}", self.output)
    }
}

fn effective_degree(c: &[f64]) -> usize {
    c.iter().rposition(|&v| v != 0.0).unwrap_or(0)
}

/// A value while building: a known plaintext constant or a register.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val {
    Const(f64),
    Reg(Reg),
}

/// Emits ops with constant folding and keeps register depths (for budget decisions).
pub(crate) struct Builder {
    ops: Vec<PlanOp>,
    depth: Vec<u32>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Self { ops: vec![PlanOp::Input], depth: vec![0] }
    }

    pub(crate) fn input(&self) -> Val {
        Val::Reg(Reg(0))
    }

    fn push(&mut self, op: PlanOp, depth: u32) -> Val {
        self.ops.push(op);
        self.depth.push(depth);
        Val::Reg(Reg(self.ops.len() - 1))
    }

    /// The plan computing `out`, with ops that do not contribute to it removed.
    pub(crate) fn finish(mut self, out: Val) -> EvalPlan {
        let output = match out {
            Val::Reg(r) => r,
            Val::Const(c) => {
                self.push(PlanOp::Const(c), 0);
                Reg(self.ops.len() - 1)
            }
        };
        let mut live = vec![false; self.ops.len()];
        live[0] = true;
        live[output.0] = true;
        for i in (1..=output.0).rev() {
            if !live[i] {
                continue;
            }
            for r in self.ops[i].operands().into_iter().flatten() {
                live[r.0] = true;
            }
        }
        let mut remap = vec![0usize; self.ops.len()];
        let mut ops = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let m = |r: Reg| Reg(remap[r.0]);
            let new = match *op {
                PlanOp::Input => PlanOp::Input,
                PlanOp::Const(c) => PlanOp::Const(c),
                PlanOp::Affine { src, scale, shift } => PlanOp::Affine { src: m(src), scale, shift },
                PlanOp::Mul(a, b) => PlanOp::Mul(m(a), m(b)),
                PlanOp::MulConst(a, c) => PlanOp::MulConst(m(a), c),
                PlanOp::Add(a, b) => PlanOp::Add(m(a), m(b)),
                PlanOp::Sub(a, b) => PlanOp::Sub(m(a), m(b)),
                PlanOp::AddConst(a, c) => PlanOp::AddConst(m(a), c),
            };
            remap[i] = ops.len();
            ops.push(new);
        }
        EvalPlan { ops, output: Reg(remap[output.0]) }
    }

    /// `scale·x + shift` on the plan input: free (folded upstream).
    pub(crate) fn affine_input(&mut self, scale: f64, shift: f64) -> Val {
        if scale == 1.0 && shift == 0.0 {
            return self.input();
        }
        if scale == 0.0 {
            return Val::Const(shift);
        }
        self.push(PlanOp::Affine { src: Reg(0), scale, shift }, 0)
    }

    pub(crate) fn mul(&mut self, a: Val, b: Val) -> Val {
        match (a, b) {
            (Val::Const(x), Val::Const(y)) => Val::Const(x * y),
            (Val::Const(c), v) | (v, Val::Const(c)) => self.mul_const(v, c),
            (Val::Reg(ra), Val::Reg(rb)) => {
                let d = self.depth[ra.0].max(self.depth[rb.0]) + 1;
                self.push(PlanOp::Mul(ra, rb), d)
            }
        }
    }

    pub(crate) fn mul_const(&mut self, a: Val, c: f64) -> Val {
        match a {
            Val::Const(x) => Val::Const(x * c),
            _ if c == 0.0 => Val::Const(0.0),
            _ if c == 1.0 => a,
            Val::Reg(r) => {
                let d = self.depth[r.0] + u32::from(!is_integer(c));
                self.push(PlanOp::MulConst(r, c), d)
            }
        }
    }

    pub(crate) fn add(&mut self, a: Val, b: Val) -> Val {
        match (a, b) {
            (Val::Const(x), Val::Const(y)) => Val::Const(x + y),
            (Val::Const(c), v) | (v, Val::Const(c)) => self.add_const(v, c),
            (Val::Reg(ra), Val::Reg(rb)) => {
                let d = self.depth[ra.0].max(self.depth[rb.0]);
                self.push(PlanOp::Add(ra, rb), d)
            }
        }
    }

    pub(crate) fn sub(&mut self, a: Val, b: Val) -> Val {
        match (a, b) {
            (Val::Const(x), Val::Const(y)) => Val::Const(x - y),
            (v, Val::Const(c)) => self.add_const(v, -c),
            (Val::Const(c), v) => {
                let neg = self.mul_const(v, -1.0);
                self.add_const(neg, c)
            }
            (Val::Reg(ra), Val::Reg(rb)) => {
                let d = self.depth[ra.0].max(self.depth[rb.0]);
                self.push(PlanOp::Sub(ra, rb), d)
            }
        }
    }

    pub(crate) fn add_const(&mut self, a: Val, c: f64) -> Val {
        match a {
            Val::Const(x) => Val::Const(x + c),
            _ if c == 0.0 => a,
            Val::Reg(r) => {
                let d = self.depth[r.0];
                self.push(PlanOp::AddConst(r, c), d)
            }
        }
    }

    /// Evaluates `Σ c_k T_k(t)` for `t` already in `[-1, 1]`, at depth `depth(t) + ceil(log2(d+1))`,
    /// with at most `baby` baby steps (module doc).
    pub(crate) fn chebyshev(&mut self, t: Val, coeffs: &[f64], baby: usize) -> Val {
        let n = effective_degree(coeffs);
        let coeffs = &coeffs[..=n];
        let mut powers = Powers { cache: BTreeMap::new() };
        powers.cache.insert(0, Val::Const(1.0));
        powers.cache.insert(1, t);
        let budget = depth_for_degree(n);
        self.cheb_node(&mut powers, coeffs, baby.max(1), budget)
    }

    fn cheb_node(&mut self, powers: &mut Powers, c: &[f64], baby: usize, budget: u32) -> Val {
        let n = effective_degree(c);
        if n == 0 {
            return Val::Const(c[0]);
        }
        let leaf_depth =
            (1..=n).filter(|&i| c[i] != 0.0).map(|i| ceil_log2(i) + u32::from(!is_integer(c[i]))).max().unwrap_or(0);
        if n <= baby && leaf_depth <= budget {
            let mut acc = Val::Const(c[0]);
            for (i, &ci) in c.iter().enumerate().skip(1) {
                if ci == 0.0 {
                    continue;
                }
                let ti = powers.get(self, i);
                let term = self.mul_const(ti, ci);
                acc = self.add(acc, term);
            }
            return acc;
        }
        // Split at the largest power of two g <= n: p = q·T_g + r, using
        // T_g·T_k = (T_{g+k} + T_{g−k})/2, i.e. c_{g+k} T_{g+k} = 2c_{g+k} T_g T_k − c_{g+k} T_{g−k}.
        let g = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let mut q = vec![0.0; n - g + 1];
        let mut r = c[..g].to_vec();
        q[0] = c[g];
        for k in 1..=n - g {
            q[k] = 2.0 * c[g + k];
            r[g - k] -= c[g + k];
        }
        let qv = self.cheb_node(powers, &q, baby, budget.saturating_sub(1));
        let tg = powers.get(self, g);
        let prod = self.mul(qv, tg);
        let rv = self.cheb_node(powers, &r, baby, budget);
        self.add(prod, rv)
    }
}

fn ceil_log2(i: usize) -> u32 {
    if i <= 1 {
        0
    } else {
        usize::BITS - (i - 1).leading_zeros()
    }
}

/// Lazily materialized Chebyshev powers `T_i(t)`, each at depth `depth(t) + ceil(log2 i)`.
struct Powers {
    cache: BTreeMap<usize, Val>,
}

impl Powers {
    fn get(&mut self, b: &mut Builder, i: usize) -> Val {
        if let Some(&v) = self.cache.get(&i) {
            return v;
        }
        // h = 2^{ceil(log2 i) − 1}, so h < i <= 2h and both factors are one level shallower.
        let h = 1usize << (ceil_log2(i) - 1);
        let th = self.get(b, h);
        let v = if i == 2 * h {
            let sq = b.mul(th, th);
            let two = b.mul_const(sq, 2.0);
            b.add_const(two, -1.0)
        } else {
            let tr = self.get(b, i - h);
            let td = self.get(b, 2 * h - i);
            let prod = b.mul(th, tr);
            let two = b.mul_const(prod, 2.0);
            b.sub(two, td)
        };
        self.cache.insert(i, v);
        v
    }
}
