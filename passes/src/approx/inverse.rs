//! Inverse square root and reciprocal: polynomial initial guess + Newton / Goldschmidt iterations.
//!
//! - `1/sqrt(x)` (LayerNorm): guess `y₀ = p(x)` fit on **relative** error (Remez), then Newton
//!   `y ← y(3 − x y²)/2`, evaluated as `y ← 1.5·y − (x/2 · y)·y²`: `x/2·y` and `y²` at depth `D+1`
//!   (`x/2` is an affine map of the input, folded), their product at `D+2`, `1.5·y` at `D+1`; so each
//!   step costs exactly 2 levels and 3 ct×ct multiplications. Relative error `e` maps to
//!   `−(3/2)e² − e³/2`.
//! - `1/x` (softmax row sums): Newton `y ← y(2 − x y)` (2 levels and 2 ct×ct per step) or Goldschmidt
//!   `e₀ = 1 − x y₀`, `y ← y(1 + e)`, `e ← e²` (1 level per factor after the first: depth `D + 1 + k`
//!   for `k` factors); both give relative error `e₀^(2^k)`.
//!
//! A constant or linear guess is an affine map of the input (depth 0, folded upstream); the first
//! Newton step on a constant guess is affine too and costs nothing.
//!
//! Selection ([`fit_inv_sqrt`], [`fit_reciprocal`]): for guess degrees `0, 1, 3, 7, 15, 31, 63`
//! (up to `max_guess_degree`), every scheme, and `k = 0..=max_steps`, the whole computation is built
//! as an [`EvalPlan`] — its depth and ct×ct count are read off the plan, never estimated — and its
//! relative error is measured on a dense grid of the interval (diverging iterations measure as
//! huge). The result is the smallest depth reaching the target, then the fewest ct×ct
//! multiplications. If nothing within `max_depth` reaches the target (ranges like 1:10⁶), the most
//! accurate candidate within the cap is returned with `target_met = false`: the flag callers must
//! surface as a warning.

use super::chebyshev::Chebyshev;
use super::error::{ApproxError, Result};
use super::fit::{grid_for, remez};
use super::interval::Interval;
use super::measure::{sup_norm, ErrorKind};
use super::plan::{Builder, EvalPlan, Val};

/// The function being inverted iteratively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InverseFunction {
    /// `1/sqrt(x)`.
    InvSqrt,
    /// `1/x`.
    Reciprocal,
}

impl InverseFunction {
    pub fn eval(self, x: f64) -> f64 {
        match self {
            InverseFunction::InvSqrt => 1.0 / x.sqrt(),
            InverseFunction::Reciprocal => 1.0 / x,
        }
    }
}

/// Iteration used after the initial guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InverseScheme {
    Newton,
    Goldschmidt,
}

/// Bounds for [`fit_inv_sqrt`] / [`fit_reciprocal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseOptions {
    /// Target max relative error.
    pub target: f64,
    /// Depth cap; above it candidates are not considered.
    pub max_depth: u32,
    pub max_guess_degree: usize,
    pub max_steps: u32,
}

impl InverseOptions {
    pub fn new(target: f64) -> Self {
        Self {
            target,
            max_depth: 16,
            max_guess_degree: 63,
            max_steps: 10,
        }
    }
}

/// A guess polynomial followed by iterations, with measured error and plan-derived cost.
#[derive(Debug, Clone, PartialEq)]
pub struct IterativeInverse {
    pub function: InverseFunction,
    pub interval: Interval,
    pub guess: Chebyshev,
    /// Measured max relative error of the guess alone.
    pub guess_error: f64,
    pub scheme: InverseScheme,
    pub steps: u32,
    /// Measured max relative error of the whole computation.
    pub max_error: f64,
    pub depth: u32,
    pub ct_mults: usize,
    /// Whether `max_error <= target` (false: best effort within the depth cap).
    pub target_met: bool,
    plan: EvalPlan,
}

impl IterativeInverse {
    pub fn eval(&self, x: f64) -> f64 {
        self.plan.eval(x)
    }

    pub fn plan(&self) -> &EvalPlan {
        &self.plan
    }
}

/// The guess `p(x)` as a builder value; degree ≤ 1 becomes a free affine map of the input.
pub(crate) fn poly_of_input(b: &mut Builder, p: &Chebyshev) -> Val {
    let c = p.coeffs();
    let (scale, shift) = p.interval().unit_map();
    let deg = c.iter().rposition(|&v| v != 0.0).unwrap_or(0);
    match deg {
        0 => Val::Const(c[0]),
        1 => b.affine_input(c[1] * scale, c[1] * shift + c[0]),
        _ => {
            let t = b.affine_input(scale, shift);
            let baby = best_baby(c);
            b.chebyshev(t, c, baby)
        }
    }
}

fn best_baby(c: &[f64]) -> usize {
    let mut best = (usize::MAX, 1);
    for baby in 1..c.len().max(2) {
        let mut b = Builder::new();
        let t = b.input();
        let out = b.chebyshev(t, c, baby);
        let n = b.finish(out).num_ct_mults();
        if n < best.0 {
            best = (n, baby);
        }
    }
    best.1
}

fn build(
    function: InverseFunction,
    scheme: InverseScheme,
    guess: &Chebyshev,
    steps: u32,
) -> EvalPlan {
    let mut b = Builder::new();
    let mut y = poly_of_input(&mut b, guess);
    let x = b.input();
    match (function, scheme) {
        (InverseFunction::InvSqrt, _) => {
            let xh = b.affine_input(0.5, 0.0);
            for _ in 0..steps {
                if let Val::Const(c) = y {
                    y = b.affine_input(-0.5 * c * c * c, 1.5 * c);
                    continue;
                }
                let a = b.mul(xh, y);
                let y2 = b.mul(y, y);
                let prod = b.mul(a, y2);
                let y15 = b.mul_const(y, 1.5);
                y = b.sub(y15, prod);
            }
        }
        (InverseFunction::Reciprocal, InverseScheme::Newton) => {
            for _ in 0..steps {
                if let Val::Const(c) = y {
                    y = b.affine_input(-c * c, 2.0 * c);
                    continue;
                }
                let a = b.mul(x, y);
                let s = b.sub(Val::Const(2.0), a);
                y = b.mul(y, s);
            }
        }
        (InverseFunction::Reciprocal, InverseScheme::Goldschmidt) => {
            if steps > 0 {
                let mut e = match y {
                    Val::Const(c) => b.affine_input(-c, 1.0),
                    _ => {
                        let a = b.mul(x, y);
                        b.sub(Val::Const(1.0), a)
                    }
                };
                y = match y {
                    Val::Const(c) => b.affine_input(-c * c, 2.0 * c),
                    _ => {
                        let f = b.add_const(e, 1.0);
                        b.mul(y, f)
                    }
                };
                for _ in 1..steps {
                    e = b.mul(e, e);
                    let f = b.add_const(e, 1.0);
                    y = b.mul(y, f);
                }
            }
        }
    }
    b.finish(y)
}

/// Relative error of `g` against `function`; non-finite values count as 1e300.
fn rel_error(
    function: InverseFunction,
    g: &dyn Fn(f64) -> f64,
    interval: Interval,
    grid: usize,
) -> Result<f64> {
    let e = |x: f64| {
        let f = function.eval(x);
        let v = (g(x) - f) / f;
        Ok(if v.is_finite() { v } else { 1e300 })
    };
    Ok(sup_norm(&e, interval, grid)?.0)
}

fn predicted(function: InverseFunction, e0: f64, steps: u32) -> f64 {
    let mut e = e0;
    for _ in 0..steps {
        e = match function {
            InverseFunction::InvSqrt => 1.5 * e * e + 0.5 * e * e * e,
            InverseFunction::Reciprocal => e * e,
        };
    }
    e
}

fn fit_inverse(
    function: InverseFunction,
    interval: Interval,
    opts: &InverseOptions,
) -> Result<IterativeInverse> {
    if !opts.target.is_finite() || opts.target <= 0.0 {
        return Err(ApproxError::InvalidTarget {
            target: opts.target,
        });
    }
    if interval.lo() <= 0.0 {
        let what = match function {
            InverseFunction::InvSqrt => "inverse square root",
            InverseFunction::Reciprocal => "reciprocal",
        };
        return Err(ApproxError::NonPositiveInterval {
            what,
            lo: interval.lo(),
            hi: interval.hi(),
        });
    }
    let schemes: &[InverseScheme] = match function {
        InverseFunction::InvSqrt => &[InverseScheme::Newton],
        InverseFunction::Reciprocal => &[InverseScheme::Goldschmidt, InverseScheme::Newton],
    };
    let f = |x: f64| function.eval(x);
    let mut met: Option<IterativeInverse> = None;
    let mut fallback: Option<IterativeInverse> = None;
    for degree in [0usize, 1, 3, 7, 15, 31, 63] {
        if degree > opts.max_guess_degree {
            break;
        }
        let guess = remez(&f, interval, degree, ErrorKind::Relative)?;
        let guess_error = guess.max_error;
        for &scheme in schemes {
            for steps in 0..=opts.max_steps {
                let plan = build(function, scheme, &guess.poly, steps);
                let depth = plan.depth();
                if depth > opts.max_depth {
                    break;
                }
                let ct_mults = plan.num_ct_mults();
                let key = (depth, ct_mults);
                if met.as_ref().is_some_and(|m| (m.depth, m.ct_mults) <= key) {
                    break;
                }
                // Worst-case prediction; skip measuring hopeless candidates (fallback still needs the
                // best error, so only skip when we already have some fallback).
                let pred = predicted(function, guess_error.min(1.0), steps);
                if guess_error < 1.0
                    && pred > 1e3 * opts.target
                    && fallback.is_some()
                    && steps < opts.max_steps
                {
                    continue;
                }
                let max_error = rel_error(function, &|x| plan.eval(x), interval, grid_for(degree))?;
                let cand = IterativeInverse {
                    function,
                    interval,
                    guess: guess.poly.clone(),
                    guess_error,
                    scheme,
                    steps,
                    max_error,
                    depth,
                    ct_mults,
                    target_met: max_error <= opts.target,
                    plan,
                };
                if cand.target_met {
                    met = Some(cand);
                    break;
                }
                if fallback
                    .as_ref()
                    .is_none_or(|fb| cand.max_error < fb.max_error)
                {
                    fallback = Some(cand);
                }
            }
        }
    }
    met.or(fallback).ok_or(ApproxError::Numerical {
        stage: "iterative inverse",
        detail: "no candidate fits within the depth cap".into(),
    })
}

/// A given guess followed by `steps` iterations of `scheme`, measured on the guess's interval;
/// `target_met` compares with `target`. For callers that force a schedule (and for tests).
pub fn build_inverse(
    function: InverseFunction,
    scheme: InverseScheme,
    guess: &Chebyshev,
    steps: u32,
    target: f64,
) -> Result<IterativeInverse> {
    let interval = guess.interval();
    if interval.lo() <= 0.0 {
        return Err(ApproxError::NonPositiveInterval {
            what: "iterative inverse",
            lo: interval.lo(),
            hi: interval.hi(),
        });
    }
    let grid = grid_for(guess.degree());
    let guess_error = rel_error(function, &|x| guess.eval(x), interval, grid)?;
    let plan = build(function, scheme, guess, steps);
    let max_error = rel_error(function, &|x| plan.eval(x), interval, grid)?;
    Ok(IterativeInverse {
        function,
        interval,
        guess: guess.clone(),
        guess_error,
        scheme,
        steps,
        max_error,
        depth: plan.depth(),
        ct_mults: plan.num_ct_mults(),
        target_met: max_error <= target,
        plan,
    })
}

/// `1/sqrt(x)` on a positive interval (module doc).
pub fn fit_inv_sqrt(interval: Interval, opts: &InverseOptions) -> Result<IterativeInverse> {
    fit_inverse(InverseFunction::InvSqrt, interval, opts)
}

/// `1/x` on a positive interval (module doc).
pub fn fit_reciprocal(interval: Interval, opts: &InverseOptions) -> Result<IterativeInverse> {
    fit_inverse(InverseFunction::Reciprocal, interval, opts)
}
