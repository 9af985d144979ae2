//! ReLU: direct minimax on narrow ranges, composite sign polynomials on wide ones.
//!
//! - **Direct**: [`super::fit::fit_to_target`] on `max(x, 0)` over the interval (Remez; error decays
//!   only like `R/d`, so it is for ranges narrow relative to the target).
//! - **Composite** (Lee et al., "Minimax approximation of sign function by composite polynomial"):
//!   `relu(x) = x·(1 + s(x/R))/2`, `R = max(|lo|, |hi|)`, where `s = p_k ∘ … ∘ p_1` approximates
//!   `sign` on `[-1, -ε] ∪ [ε, 1]`. Each `p_i` is an odd minimax polynomial (Remez in the odd Chebyshev
//!   basis) approximating 1 on the current image `[l_i, 1]`; its output is renormalized (scalar folded
//!   into its coefficients) so the next input stays in `[-1, 1]`. Component degrees come from
//!   `{3, 7, 15, 31}` (depths 2..5) by dynamic programming over total depth: since a larger lower end
//!   `l` is always easier, keeping the best `l` per depth is enough. The last component must reach
//!   sign error `δ = 1.8·target/R`, so `|x| ≥ εR` contributes at most `R·δ/2 = 0.9·target`; the error
//!   for `|x| < εR` (about `εR/4`) is measured, with `ε` tried at `4, 2, 1, 0.5, 0.25 × target/R`
//!   (largest first — a larger `ε` is never deeper) until the measured error meets the target.
//!   Depth = Σ component depths + 1 (the final `x·s` product; `(1+s)/2` is folded into the last
//!   component's coefficients, `x/R` into the producer of `x`).
//!
//! Guarantees: both candidates' `max_error` is measured on the whole interval (dense grid plus zoom
//! windows around 0, where the composite's error concentrates); [`fit_relu`] returns both (when they
//! reach the target within the options' bounds) and picks the smaller depth, then fewer ct×ct mults.

use super::chebyshev::{depth_for_degree, Chebyshev};
use super::error::{ApproxError, Result};
use super::fit::{fit_to_target, Approximation, FitOptions};
use super::interval::Interval;
use super::measure::{sup_norm, ErrorKind, DEFAULT_GRID};
use super::plan::{Builder, EvalPlan};
use super::remez::{remez_core, RemezSpec};

/// Bounds for [`fit_relu`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReluOptions {
    /// Target absolute max error.
    pub target: f64,
    /// Largest total depth considered for the composite method.
    pub max_depth: u32,
    /// Largest degree for the direct method.
    pub max_direct_degree: usize,
}

impl ReluOptions {
    pub fn new(target: f64) -> Self {
        Self { target, max_depth: 30, max_direct_degree: 255 }
    }
}

/// `x·(1 + s(x/R))/2` with `s` a composition of odd polynomials (module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeRelu {
    pub interval: Interval,
    /// `R = max(|lo|, |hi|)`.
    pub radius: f64,
    /// The sign approximation is accurate for `|x|/R ≥ eps`.
    pub eps: f64,
    /// Sign error of the composition on `[eps, 1]`, measured.
    pub sign_error: f64,
    /// Components on `[-1, 1]`, applied first to last; the last one already computes `(1 + s)/2`.
    pub components: Vec<Chebyshev>,
    pub max_error: f64,
    pub depth: u32,
    pub ct_mults: usize,
    plan: EvalPlan,
}

impl CompositeRelu {
    pub fn degrees(&self) -> Vec<usize> {
        self.components.iter().map(Chebyshev::degree).collect()
    }

    pub fn eval(&self, x: f64) -> f64 {
        self.plan.eval(x)
    }

    pub fn plan(&self) -> &EvalPlan {
        &self.plan
    }
}

/// Which ReLU method [`fit_relu`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReluMethod {
    Direct,
    Composite,
}

/// Both ReLU candidates and the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ReluChoice {
    pub direct: Option<Approximation>,
    pub composite: Option<CompositeRelu>,
    pub chosen: ReluMethod,
    /// Plan of the chosen method.
    pub plan: EvalPlan,
    /// Max error of the chosen method.
    pub max_error: f64,
    /// Depth of the chosen method.
    pub depth: u32,
}

impl ReluChoice {
    pub fn eval(&self, x: f64) -> f64 {
        self.plan.eval(x)
    }
}

fn relu(x: f64) -> f64 {
    x.max(0.0)
}

/// One line for reports.
impl std::fmt::Display for ReluChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.chosen, &self.direct, &self.composite) {
            (ReluMethod::Composite, _, Some(c)) => write!(
                f,
                "composite sign degrees {:?} depth {} ({} ct×ct) on {}: max abs error {:.3e}",
                c.degrees(),
                c.depth,
                c.ct_mults,
                c.interval,
                c.max_error
            ),
            (_, Some(a), _) => write!(f, "{a}"),
            _ => write!(f, "relu depth {}: max abs error {:.3e}", self.depth, self.max_error),
        }
    }
}

/// Max |relu − g| on `interval`: dense grid plus zoom windows `[-R·10^-k, R·10^-k]`.
pub(crate) fn relu_error(g: &dyn Fn(f64) -> f64, interval: Interval, min_scale: f64) -> Result<f64> {
    let e = |x: f64| Ok(relu(x) - g(x));
    let mut worst = sup_norm(&e, interval, DEFAULT_GRID)?.0;
    let radius = interval.lo().abs().max(interval.hi().abs());
    let mut s = 0.1;
    while s * radius >= 0.1 * min_scale * radius && s > 1e-12 {
        let lo = interval.lo().max(-s * radius);
        let hi = interval.hi().min(s * radius);
        if let Ok(w) = Interval::new(lo, hi) {
            worst = worst.max(sup_norm(&e, w, 1024)?.0);
        }
        s *= 0.1;
    }
    Ok(worst)
}

/// One odd component: minimax approximation of 1 on `[l, 1]` in degree `d`.
struct Component {
    coeffs: Vec<f64>,
    /// max |p − 1| on [l, 1].
    delta: f64,
    /// max |p| on [0, 1] (normalization) and min p on [l, 1].
    abs_max: f64,
    min_on_domain: f64,
}

fn fit_component(l: f64, d: usize) -> Result<Component> {
    let domain = Interval::new(l, 1.0)?;
    let one = |_: f64| 1.0;
    let spec = RemezSpec {
        f: &one,
        kind: ErrorKind::Absolute,
        repr: Interval::unit(),
        domain,
        basis: (1..=d).step_by(2).collect(),
        initial: None,
    };
    let res = remez_core(&spec)?;
    let coeffs = res.coeffs;
    let p = |x: f64| super::chebyshev::clenshaw(&coeffs, x);
    let delta = sup_norm(&|x| Ok(p(x) - 1.0), domain, DEFAULT_GRID)?.0;
    let abs_max = sup_norm(&|x| Ok(p(x)), Interval::new(0.0, 1.0)?, DEFAULT_GRID)?.0;
    let min_on_domain = 1.0 - sup_norm(&|x| Ok((1.0 - p(x)).max(0.0)), domain, DEFAULT_GRID)?.0;
    Ok(Component { coeffs, delta, abs_max, min_on_domain })
}

/// A chain of fitted components (degree, fit) and the lower end `l` of the next domain.
type Chain = Vec<(usize, std::rc::Rc<Component>)>;

const COMPONENT_DEGREES: [usize; 4] = [3, 7, 15, 31];

fn best_baby(coeffs: &[f64]) -> usize {
    let poly = Chebyshev::new(Interval::unit(), coeffs.to_vec());
    let Ok(poly) = poly else { return 1 };
    let mut best = (usize::MAX, 1);
    for baby in 1..=poly.degree().max(1) {
        let mut b = Builder::new();
        let t = b.input();
        let out = b.chebyshev(t, coeffs, baby);
        let n = b.finish(out).num_ct_mults();
        if n < best.0 {
            best = (n, baby);
        }
    }
    best.1
}

/// Composite-sign ReLU of smallest depth within `max_depth` (module doc).
pub fn fit_relu_composite(interval: Interval, target: f64, max_depth: u32) -> Result<CompositeRelu> {
    if !target.is_finite() || target <= 0.0 {
        return Err(ApproxError::InvalidTarget { target });
    }
    let radius = interval.lo().abs().max(interval.hi().abs());
    let mut best_error = f64::INFINITY;
    // The error for |x| < εR is about εR/4 (measured, not assumed): try ε from 4·target/R down and
    // keep the first composite that measures within the target (a larger ε is never deeper).
    for factor in [4.0, 2.0, 1.0, 0.5, 0.25] {
        let eps = (factor * target / radius).min(0.5);
        let Some(c) = composite_with_eps(interval, radius, eps, target, max_depth)? else {
            continue;
        };
        if c.max_error <= target {
            return Ok(c);
        }
        best_error = best_error.min(c.max_error);
    }
    Err(ApproxError::TargetNotReached { target, best_error, max_degree: 1usize << max_depth.min(40) })
}

fn composite_with_eps(
    interval: Interval,
    radius: f64,
    eps: f64,
    target: f64,
    max_depth: u32,
) -> Result<Option<CompositeRelu>> {
    // x·|1 − s|/2 ≤ R·δ/2 on |x| ≥ εR: δ = 1.8·target/R keeps that part at 0.9·target.
    let sign_target = 1.8 * target / radius;
    // states[D] = best (l, chain of (degree, component)) using sign depth D.
    let sign_budget = max_depth.saturating_sub(1) as usize;
    let mut states: Vec<Option<(f64, Chain)>> = vec![None; sign_budget + 1];
    states[0] = Some((eps, Vec::new()));
    let mut done: Option<Chain> = None;
    'depth: for total in 1..=sign_budget {
        let mut best: Option<(f64, Chain)> = None;
        for &d in &COMPONENT_DEGREES {
            let dd = depth_for_degree(d) as usize;
            if dd > total {
                continue;
            }
            let Some((l, chain)) = &states[total - dd] else {
                continue;
            };
            let Ok(comp) = fit_component(*l, d) else {
                continue;
            };
            let comp = std::rc::Rc::new(comp);
            let mut chain = chain.clone();
            chain.push((d, comp.clone()));
            if comp.delta <= sign_target {
                done = Some(chain);
                break 'depth;
            }
            let next_l = comp.min_on_domain / comp.abs_max;
            if next_l.partial_cmp(l) != Some(std::cmp::Ordering::Greater) || !next_l.is_finite() {
                continue;
            }
            if best.as_ref().is_none_or(|(bl, _)| next_l > *bl) {
                best = Some((next_l, chain));
            }
        }
        states[total] = best;
    }
    let Some(chain) = done else { return Ok(None) };
    // Build the plan: t = x/R, then components, last one as (1 + p)/2, then x·s.
    let mut b = Builder::new();
    let mut v = b.affine_input(1.0 / radius, 0.0);
    let mut components = Vec::new();
    let n = chain.len();
    for (i, (_, comp)) in chain.iter().enumerate() {
        let poly = Chebyshev::new(Interval::unit(), comp.coeffs.clone())?;
        let poly = if i + 1 == n { poly.scaled(0.5, 0.5) } else { poly.scaled(1.0 / comp.abs_max, 0.0) };
        let baby = best_baby(poly.coeffs());
        v = b.chebyshev(v, poly.coeffs(), baby);
        components.push(poly);
    }
    let x = b.input();
    let out = b.mul(x, v);
    let plan = b.finish(out);
    let sign_error = chain.last().map_or(f64::INFINITY, |(_, c)| c.delta);
    let max_error = relu_error(&|x| plan.eval(x), interval, eps)?;
    Ok(Some(CompositeRelu {
        interval,
        radius,
        eps,
        sign_error,
        components,
        max_error,
        depth: plan.depth(),
        ct_mults: plan.num_ct_mults(),
        plan,
    }))
}

/// Direct and composite ReLU; picks smaller depth, then fewer ct×ct multiplications (module doc).
pub fn fit_relu(interval: Interval, opts: &ReluOptions) -> Result<ReluChoice> {
    let fit_opts = FitOptions { max_degree: opts.max_direct_degree, ..FitOptions::new(opts.target) };
    fit_opts.validate()?;
    let mut best_error = f64::INFINITY;
    let direct = match fit_to_target(&relu, interval, &fit_opts) {
        Ok(mut a) => {
            // Re-measure with the zoom windows around the kink.
            a.max_error = a.max_error.max(relu_error(&|x| a.eval(x), interval, 1e-4)?);
            if a.max_error <= opts.target {
                Some(a)
            } else {
                best_error = best_error.min(a.max_error);
                None
            }
        }
        Err(ApproxError::TargetNotReached { best_error: b, .. }) => {
            best_error = best_error.min(b);
            None
        }
        Err(e) => return Err(e),
    };
    let composite = if interval.lo() < 0.0 && interval.hi() > 0.0 {
        match fit_relu_composite(interval, opts.target, opts.max_depth) {
            Ok(c) => Some(c),
            Err(ApproxError::TargetNotReached { best_error: b, .. }) => {
                best_error = best_error.min(b);
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    // Candidates as (depth, ct×ct mults, method, plan, max error); the first minimum wins, so the
    // direct method is preferred on ties.
    let mut candidates = Vec::new();
    if let Some(a) = &direct {
        let plan = a.plan();
        candidates.push((a.depth, plan.num_ct_mults(), ReluMethod::Direct, plan, a.max_error));
    }
    if let Some(c) = &composite {
        candidates.push((c.depth, c.ct_mults, ReluMethod::Composite, c.plan.clone(), c.max_error));
    }
    let best = candidates.into_iter().min_by_key(|c| (c.0, c.1));
    let Some((depth, _, chosen, plan, max_error)) = best else {
        return Err(ApproxError::TargetNotReached {
            target: opts.target,
            best_error,
            max_degree: opts.max_direct_degree,
        });
    };
    Ok(ReluChoice { direct, composite, chosen, plan, max_error, depth })
}
