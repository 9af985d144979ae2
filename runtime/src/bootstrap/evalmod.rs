//! EvalMod: homomorphic `x ↦ sin(2πx)` for `x ∈ [−K, K]` (Han–Ki): a Chebyshev interpolant of
//! `cos(2π(K·y − 1/4) / 2^r)` in `y = x/K ∈ [−1, 1]`, then `r` double-angle steps
//! `c ← 2c² − 1`, so the result is `cos(2π(x − 1/4)) = sin(2πx)`.
//!
//! Contract:
//! - [`ChebyshevPoly::fit`] interpolates at the Chebyshev nodes; [`sine_error`] measures, in f64,
//!   the error of the whole pipeline (interpolant + doublings) against `sin(2πx)` on a grid of `[−K, K]`.
//! - [`PolyPlan`] evaluates the polynomial with baby-step giant-step Chebyshev splitting
//!   `p = q + T_m·r` (Bossuat et al.'s scale-exact evaluation): every node is computed at a target
//!   (level, scale) fixed top-down, constants are multiplied at the scale that makes the rescaled
//!   result land exactly on the target, so additions never see mismatched scales.
//! - Powers: `T_{2k} = 2T_k² − 1`, `T_{2k+1} = 2T_{k+1}T_k − T_1` with `T_1` brought to the
//!   product's (level, scale) by a constant multiplication; `T_k` ends at level `l_x − ⌈log2 k⌉`.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use crate::error::{CkksError, Result};
use crate::eval::Evaluator;
use crate::keys::Ciphertext;

/// A polynomial in the Chebyshev basis on `[−1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChebyshevPoly {
    pub(crate) coeffs: Vec<f64>,
}

impl ChebyshevPoly {
    /// Interpolates `f` at the `degree + 1` Chebyshev nodes.
    pub(crate) fn fit(f: impl Fn(f64) -> f64, degree: usize) -> Self {
        let m = degree + 1;
        let fx: Vec<f64> = (0..m).map(|j| f((PI * (j as f64 + 0.5) / m as f64).cos())).collect();
        let coeffs = (0..m)
            .map(|k| {
                let s: f64 =
                    fx.iter().enumerate().map(|(j, &v)| v * (PI * k as f64 * (j as f64 + 0.5) / m as f64).cos()).sum();
                s * if k == 0 { 1.0 } else { 2.0 } / m as f64
            })
            .collect();
        Self { coeffs }
    }

    /// Clenshaw evaluation.
    pub(crate) fn eval(&self, y: f64) -> f64 {
        let (mut b1, mut b2) = (0.0, 0.0);
        for &c in self.coeffs.iter().skip(1).rev() {
            let b0 = 2.0 * y * b1 - b2 + c;
            b2 = b1;
            b1 = b0;
        }
        y * b1 - b2 + self.coeffs.first().copied().unwrap_or(0.0)
    }

    fn degree(&self) -> usize {
        self.coeffs.len().saturating_sub(1)
    }
}

/// The function interpolated before the `r` doublings.
pub(crate) fn scaled_cos(k: f64, r: u32) -> impl Fn(f64) -> f64 {
    move |y: f64| (2.0 * PI * (k * y - 0.25) / f64::from(1u32 << r)).cos()
}

/// Max |pipeline(x) − sin(2πx)| over a grid of `[−k, k]`.
pub(crate) fn sine_error(p: &ChebyshevPoly, k: f64, r: u32) -> f64 {
    let steps = 20_000;
    (0..=steps)
        .map(|i| {
            let x = -k + 2.0 * k * i as f64 / steps as f64;
            let mut c = p.eval(x / k);
            for _ in 0..r {
                c = 2.0 * c * c - 1.0;
            }
            (c - (2.0 * PI * x).sin()).abs()
        })
        .fold(0.0, f64::max)
}

fn ceil_log2(k: usize) -> usize {
    if k <= 1 {
        0
    } else {
        (usize::BITS - (k - 1).leading_zeros()) as usize
    }
}

/// `p = q + T_m · r` (both of degree < m when `deg p < 2m`).
fn split(c: &[f64], m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut q: Vec<f64> = c.iter().take(m).copied().collect();
    let mut r = vec![0.0; c.len().saturating_sub(m)];
    for (j, &cj) in c.iter().enumerate().skip(m) {
        if j == m {
            if let Some(x) = r.first_mut() {
                *x += cj;
            }
        } else {
            // T_j = 2·T_m·T_{j−m} − T_{2m−j}
            if let Some(x) = r.get_mut(j - m) {
                *x += 2.0 * cj;
            }
            if let Some(x) = q.get_mut(2 * m - j) {
                *x -= cj;
            }
        }
    }
    (q, r)
}

/// Evaluation tree of a Chebyshev polynomial with baby steps `T_1 … T_{b−1}` and giants `T_{b·2^i}`.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Vec<f64>),
    Split { m: usize, q: Box<Node>, r: Box<Node> },
}

/// A polynomial with its evaluation plan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolyPlan {
    baby: usize,
    giants: Vec<usize>,
    root: Node,
    /// Levels between the input and the result.
    pub(crate) depth: usize,
}

impl PolyPlan {
    pub(crate) fn new(p: &ChebyshevPoly) -> Self {
        let d = p.degree().max(1);
        let mut best: Option<(usize, usize, PolyPlan)> = None;
        let mut baby = 2;
        while baby <= 2 * d.next_power_of_two() {
            let mut giants = Vec::new();
            let mut m = baby;
            while m <= d {
                giants.push(m);
                m *= 2;
            }
            let root = build(&p.coeffs, baby, &giants);
            let depth = depth_of(&root);
            // ciphertext products: babies, giants, one per split
            let cost = baby.saturating_sub(2) + giants.len() + splits(&root);
            let plan = PolyPlan { baby, giants, root, depth };
            if best.as_ref().is_none_or(|(bd, bc, _)| depth < *bd || (depth == *bd && cost < *bc)) {
                best = Some((depth, cost, plan));
            }
            baby *= 2;
        }
        match best {
            Some((_, _, plan)) => plan,
            None => PolyPlan { baby: 2, giants: Vec::new(), root: Node::Leaf(p.coeffs.clone()), depth: 1 },
        }
    }

    /// Evaluates at `x` (level `l_x`); the result is at level `l_x − depth` with scale `out_scale`.
    pub(crate) fn eval(&self, ev: &Evaluator, x: &Ciphertext, out_scale: f64) -> Result<Ciphertext> {
        let mut pows: BTreeMap<usize, Ciphertext> = BTreeMap::new();
        pows.insert(1, x.clone());
        for k in 2..self.baby {
            power(ev, &mut pows, k)?;
        }
        for &m in &self.giants {
            power(ev, &mut pows, m)?;
        }
        let target = x.level.checked_sub(self.depth).ok_or(CkksError::LevelExhausted { op: "EvalMod polynomial" })?;
        eval_node(ev, &pows, &self.root, target, out_scale)
    }
}

fn build(c: &[f64], baby: usize, giants: &[usize]) -> Node {
    let deg = c.len().saturating_sub(1);
    if deg < baby {
        return Node::Leaf(c.to_vec());
    }
    let m = giants.iter().copied().filter(|&m| m <= deg).max().unwrap_or(baby);
    let (q, r) = split(c, m);
    Node::Split { m, q: Box::new(build(&q, baby, giants)), r: Box::new(build(&r, baby, giants)) }
}

/// Levels below `T_1` the node's result can be produced at (the minimum over constraints).
fn depth_of(node: &Node) -> usize {
    match node {
        // products by constants need one rescale below the lowest used power
        Node::Leaf(c) => ceil_log2(c.len().saturating_sub(1).max(1)) + 1,
        Node::Split { m, q, r } => (ceil_log2(*m) + 1).max(depth_of(r) + 1).max(depth_of(q)),
    }
}

fn splits(node: &Node) -> usize {
    match node {
        Node::Leaf(_) => 0,
        Node::Split { q, r, .. } => 1 + splits(q) + splits(r),
    }
}

fn q_at(ev: &Evaluator, level: usize) -> f64 {
    ev.ctx.ring.limb_prime(level, level + 1).q as f64
}

/// `ct` at (`level`, exactly `scale`) by one constant multiplication and rescale (needs `ct.level > level`).
pub(crate) fn adjust(ev: &Evaluator, ct: &Ciphertext, level: usize, scale: f64, c: f64) -> Result<Ciphertext> {
    let t = ev.drop_to_level(ct, level + 1)?;
    let mut t = ev.mul_const_scaled(&t, c, scale * q_at(ev, level + 1) / ct.scale)?;
    ev.rescale_assign(&mut t)?;
    t.scale = scale;
    Ok(t)
}

fn get(pows: &BTreeMap<usize, Ciphertext>, k: usize) -> Result<&Ciphertext> {
    pows.get(&k).ok_or(CkksError::Internal("Chebyshev power not computed"))
}

fn mul_drop(ev: &Evaluator, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
    let l = a.level.min(b.level);
    let a = ev.drop_to_level(a, l)?;
    let b = ev.drop_to_level(b, l)?;
    ev.mul_relin_rescale(&a, &b)
}

/// Computes `T_k` (and the powers it needs) into `pows`.
fn power(ev: &Evaluator, pows: &mut BTreeMap<usize, Ciphertext>, k: usize) -> Result<()> {
    if pows.contains_key(&k) {
        return Ok(());
    }
    let out = if k.is_multiple_of(2) {
        power(ev, pows, k / 2)?;
        let h = get(pows, k / 2)?;
        let sq = ev.mul_int(&mul_drop(ev, h, h)?, 2)?;
        ev.add_const(&sq, -1.0)?
    } else {
        let (a, b) = (k.div_ceil(2), k / 2);
        power(ev, pows, a)?;
        power(ev, pows, b)?;
        let prod = ev.mul_int(&mul_drop(ev, get(pows, a)?, get(pows, b)?)?, 2)?;
        let t1 = adjust(ev, get(pows, 1)?, prod.level, prod.scale, 1.0)?;
        ev.sub(&prod, &t1)?
    };
    pows.insert(k, out);
    Ok(())
}

fn eval_node(
    ev: &Evaluator,
    pows: &BTreeMap<usize, Ciphertext>,
    node: &Node,
    level: usize,
    scale: f64,
) -> Result<Ciphertext> {
    match node {
        Node::Leaf(c) => {
            let mut acc: Option<Ciphertext> = None;
            for (k, &ck) in c.iter().enumerate().skip(1) {
                if ck == 0.0 {
                    continue;
                }
                let t = get(pows, k)?;
                let t = ev.drop_to_level(t, level + 1)?;
                let term = ev.mul_const_scaled(&t, ck, scale * q_at(ev, level + 1) / t.scale)?;
                match acc.as_mut() {
                    None => acc = Some(term),
                    Some(a) => ev.add_assign(a, &term)?,
                }
            }
            let mut out = match acc {
                Some(a) => a,
                None => {
                    let t = ev.drop_to_level(get(pows, 1)?, level + 1)?;
                    ev.mul_const_scaled(&t, 0.0, scale * q_at(ev, level + 1) / t.scale)?
                }
            };
            ev.rescale_assign(&mut out)?;
            out.scale = scale;
            ev.add_const(&out, c.first().copied().unwrap_or(0.0))
        }
        Node::Split { m, q, r } => {
            let tm = ev.drop_to_level(get(pows, *m)?, level + 1)?;
            let r_ct = eval_node(ev, pows, r, level + 1, scale * q_at(ev, level + 1) / tm.scale)?;
            let mut prod = ev.mul_relin(&r_ct, &tm)?;
            ev.rescale_assign(&mut prod)?;
            prod.scale = scale;
            let q_ct = eval_node(ev, pows, q, level, scale)?;
            ev.add(&prod, &q_ct)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chebyshev_fit_is_accurate() {
        let p = ChebyshevPoly::fit(|y| (3.0 * y).exp(), 30);
        for i in 0..=100 {
            let y = -1.0 + i as f64 / 50.0;
            assert!((p.eval(y) - (3.0 * y).exp()).abs() < 1e-12);
        }
    }

    #[test]
    fn split_preserves_the_polynomial() {
        let p = ChebyshevPoly { coeffs: (0..14).map(|i| ((i * 7 % 5) as f64) - 2.0 + 0.1 * i as f64).collect() };
        let (q, r) = split(&p.coeffs, 8);
        let (q, r) = (ChebyshevPoly { coeffs: q }, ChebyshevPoly { coeffs: r });
        for i in 0..=40 {
            let y = -1.0 + i as f64 / 20.0;
            let t8 = (8.0 * y.acos()).cos();
            assert!((p.eval(y) - (q.eval(y) + t8 * r.eval(y))).abs() < 1e-10);
        }
    }

    #[test]
    fn eval_mod_polynomial_error_is_small_and_a_low_degree_fails() {
        let (k, r) = (16.0, 3);
        let good = ChebyshevPoly::fit(scaled_cos(k, r), 40);
        let err = sine_error(&good, k, r);
        assert!(err < 1e-11, "degree 40: {err}");
        let bad = ChebyshevPoly::fit(scaled_cos(k, r), 12);
        assert!(sine_error(&bad, k, r) > 1e-3);
    }

    #[test]
    fn plan_depth_is_logarithmic() {
        let p = ChebyshevPoly::fit(scaled_cos(16.0, 3), 40);
        let plan = PolyPlan::new(&p);
        // ⌈log2(41)⌉ = 6, plus the constant multiplications of the leaves
        assert!(plan.depth <= 7, "depth {}", plan.depth);
    }
}
