//! exp by repeated squaring, `(1 + x/2^r)^(2^r)`, versus a Chebyshev/Remez fit; pick the cheaper.
//!
//! Guarantees: [`fit_exp_squaring`] returns the smallest `r ≤ max_r` whose measured max error (dense
//! grid, [`super::measure`]) is within the target. Its depth is `r`: the affine `1 + x/2^r` is on the
//! plan input and folded into the producer of `x` (add 1 if it cannot be folded), followed by `r`
//! ct×ct squarings. [`fit_exp`] fits both ways and chooses the smaller depth, then the fewer ct×ct
//! multiplications; either may be absent when it cannot reach the target.

use super::error::{ApproxError, Result};
use super::fit::{fit_to_target, grid_for, Approximation, FitOptions};
use super::interval::Interval;
use super::measure::{max_error_grid, ErrorKind};
use super::plan::{Builder, EvalPlan};

/// `(1 + x/2^r)^(2^r)` with its measured error.
#[derive(Debug, Clone, PartialEq)]
pub struct SquaringExp {
    pub r: u32,
    pub interval: Interval,
    pub kind: ErrorKind,
    pub max_error: f64,
    /// `r` (module doc).
    pub depth: u32,
    pub ct_mults: usize,
    plan: EvalPlan,
}

impl SquaringExp {
    pub fn eval(&self, x: f64) -> f64 {
        self.plan.eval(x)
    }

    pub fn plan(&self) -> &EvalPlan {
        &self.plan
    }
}

fn squaring_plan(r: u32) -> EvalPlan {
    let mut b = Builder::new();
    let mut y = b.affine_input((-(r as f64)).exp2(), 1.0);
    for _ in 0..r {
        y = b.mul(y, y);
    }
    b.finish(y)
}

/// Smallest `r ≤ max_r` meeting `target` (module doc); `TargetNotReached` otherwise.
pub fn fit_exp_squaring(interval: Interval, target: f64, kind: ErrorKind, max_r: u32) -> Result<SquaringExp> {
    if !target.is_finite() || target <= 0.0 {
        return Err(ApproxError::InvalidTarget { target });
    }
    let max_r = max_r.min(40);
    let mut best_error = f64::INFINITY;
    for r in 0..=max_r {
        let plan = squaring_plan(r);
        let err = max_error_grid(&f64::exp, &|x| plan.eval(x), interval, kind, grid_for(64))?;
        best_error = best_error.min(err);
        if err <= target {
            return Ok(SquaringExp {
                r,
                interval,
                kind,
                max_error: err,
                depth: plan.depth(),
                ct_mults: plan.num_ct_mults(),
                plan,
            });
        }
    }
    Err(ApproxError::TargetNotReached { target, best_error, max_degree: 1usize << max_r })
}

/// Which exp method [`fit_exp`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpMethod {
    Squaring,
    Chebyshev,
}

/// Both exp candidates and the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpChoice {
    pub squaring: Option<SquaringExp>,
    pub chebyshev: Option<Approximation>,
    pub chosen: ExpMethod,
    /// Plan of the chosen method.
    pub plan: EvalPlan,
    /// Max error of the chosen method.
    pub max_error: f64,
    /// Depth of the chosen method.
    pub depth: u32,
}

impl ExpChoice {
    pub fn eval(&self, x: f64) -> f64 {
        self.plan.eval(x)
    }
}

/// One line for reports.
impl std::fmt::Display for ExpChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.chosen, &self.squaring, &self.chebyshev) {
            (ExpMethod::Squaring, Some(s), _) => write!(
                f,
                "(1 + x/2^{r})^(2^{r}) depth {} on {}: max {} error {:.3e}",
                s.depth,
                s.interval,
                s.kind,
                s.max_error,
                r = s.r
            ),
            (_, _, Some(c)) => write!(f, "{c}"),
            _ => write!(f, "exp depth {}: max error {:.3e}", self.depth, self.max_error),
        }
    }
}

/// exp on `interval` both ways; chooses by depth, then ct×ct multiplications (module doc).
pub fn fit_exp(interval: Interval, opts: &FitOptions, max_r: u32) -> Result<ExpChoice> {
    opts.validate()?;
    let mut best_error = f64::INFINITY;
    let squaring = match fit_exp_squaring(interval, opts.target, opts.kind, max_r) {
        Ok(s) => Some(s),
        Err(ApproxError::TargetNotReached { best_error: b, .. }) => {
            best_error = best_error.min(b);
            None
        }
        Err(e) => return Err(e),
    };
    let chebyshev = match fit_to_target(&f64::exp, interval, opts) {
        Ok(c) => Some(c),
        Err(ApproxError::TargetNotReached { best_error: b, .. }) => {
            best_error = best_error.min(b);
            None
        }
        Err(e) => return Err(e),
    };
    // Candidates as (depth, ct×ct mults, method, plan, max error); squaring wins ties.
    let mut candidates = Vec::new();
    if let Some(s) = &squaring {
        candidates.push((s.depth, s.ct_mults, ExpMethod::Squaring, s.plan.clone(), s.max_error));
    }
    if let Some(c) = &chebyshev {
        let plan = c.plan();
        candidates.push((c.depth, plan.num_ct_mults(), ExpMethod::Chebyshev, plan, c.max_error));
    }
    let best = candidates.into_iter().min_by_key(|c| (c.0, c.1));
    let Some((depth, _, chosen, plan, max_error)) = best else {
        return Err(ApproxError::TargetNotReached { target: opts.target, best_error, max_degree: opts.max_degree });
    };
    Ok(ExpChoice { squaring, chebyshev, chosen, plan, max_error, depth })
}
