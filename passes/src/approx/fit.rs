//! Fitting one function on one interval: Chebyshev interpolation, Remez minimax, degree selection.
//!
//! Guarantees:
//! - every [`Approximation`] carries `max_error` measured by [`super::measure::sup_norm`] on a dense
//!   grid (at least 4096 uniform + 4096 clustered points, refined at the peaks) of the polynomial that
//!   is returned — never an estimate from the fitting procedure;
//! - [`remez`] never returns a worse polynomial than Chebyshev interpolation of the same degree: it
//!   runs a bounded Remez exchange and keeps whichever measures better ([`FitMethod`] says which);
//! - [`fit_to_target`] returns the smallest depth `k` whose degree (by [`DegreePolicy`]) reaches the
//!   target, or [`ApproxError::TargetNotReached`] with the best error seen up to `max_degree`.

use super::chebyshev::{Chebyshev, MAX_DEGREE};
use super::error::{ApproxError, Result};
use super::interval::Interval;
use super::measure::{max_error_grid, ErrorKind, DEFAULT_GRID};
use super::plan::EvalPlan;
use super::remez::{remez_core, RemezSpec};

/// How a polynomial was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FitMethod {
    /// Interpolation at Chebyshev points.
    Chebyshev,
    /// Remez exchange; `converged` tells whether the levelled-error criterion was met.
    Remez { converged: bool },
    /// Remez was asked for but measured no better than interpolation (or failed), which was kept.
    ChebyshevFallback,
}

/// Which fitting method [`fit`] and [`fit_to_target`] use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    Chebyshev,
    /// Remez with Chebyshev fallback (the default).
    #[default]
    Remez,
}

/// Which degree [`fit_to_target`] returns once the smallest sufficient depth `k` is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DegreePolicy {
    /// `2^k − 1` (capped by `max_degree`): the best error the depth buys (default).
    #[default]
    FullDepth,
    /// The smallest degree of depth `k` reaching the target (bisection, assumes error nearly
    /// monotone in degree): fewer ct×ct multiplications, same depth.
    Smallest,
}

/// Options for [`fit_to_target`] and the function-specific fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Target max error (absolute or relative per `kind`), finite and > 0.
    pub target: f64,
    pub kind: ErrorKind,
    pub method: Method,
    pub policy: DegreePolicy,
    /// Largest degree tried.
    pub max_degree: usize,
}

impl FitOptions {
    pub fn new(target: f64) -> Self {
        Self {
            target,
            kind: ErrorKind::Absolute,
            method: Method::Remez,
            policy: DegreePolicy::FullDepth,
            max_degree: 255,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !self.target.is_finite() || self.target <= 0.0 {
            return Err(ApproxError::InvalidTarget { target: self.target });
        }
        if self.max_degree > MAX_DEGREE {
            return Err(ApproxError::DegreeTooLarge { degree: self.max_degree, max: MAX_DEGREE });
        }
        Ok(())
    }
}

/// A fitted polynomial with its measured error and depth.
#[derive(Debug, Clone, PartialEq)]
pub struct Approximation {
    /// The polynomial, Chebyshev basis on the fitted interval.
    pub poly: Chebyshev,
    /// Max error on the interval, measured (module doc).
    pub max_error: f64,
    pub kind: ErrorKind,
    /// `ceil(log2(degree + 1))`, reached by [`Approximation::plan`].
    pub depth: u32,
    pub method: FitMethod,
}

impl Approximation {
    pub fn degree(&self) -> usize {
        self.poly.degree()
    }

    pub fn coeffs(&self) -> &[f64] {
        self.poly.coeffs()
    }

    pub fn interval(&self) -> Interval {
        self.poly.interval()
    }

    pub fn eval(&self, x: f64) -> f64 {
        self.poly.eval(x)
    }

    pub fn plan(&self) -> EvalPlan {
        self.poly.plan()
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Absolute => "abs",
            ErrorKind::Relative => "rel",
        })
    }
}

impl std::fmt::Display for FitMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FitMethod::Chebyshev => "chebyshev",
            FitMethod::Remez { converged: true } => "remez",
            FitMethod::Remez { converged: false } => "remez (not converged)",
            FitMethod::ChebyshevFallback => "chebyshev (remez fallback)",
        })
    }
}

/// One line for reports: `remez deg 63 depth 6 on [a, b]: max abs error 1.8e-3`.
impl std::fmt::Display for Approximation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} deg {} depth {} on {}: max {} error {:.3e}",
            self.method,
            self.poly.effective_degree(),
            self.depth,
            self.interval(),
            self.kind,
            self.max_error
        )
    }
}

pub(crate) fn grid_for(degree: usize) -> usize {
    DEFAULT_GRID.max(16 * (degree + 1))
}

fn measured(f: &dyn Fn(f64) -> f64, poly: Chebyshev, kind: ErrorKind, method: FitMethod) -> Result<Approximation> {
    let max_error = max_error_grid(f, &|x| poly.eval(x), poly.interval(), kind, grid_for(poly.degree()))?;
    Ok(Approximation { depth: poly.depth(), poly, max_error, kind, method })
}

/// Chebyshev interpolant of degree `degree`, with its measured error.
pub fn chebyshev_fit(
    f: &dyn Fn(f64) -> f64,
    interval: Interval,
    degree: usize,
    kind: ErrorKind,
) -> Result<Approximation> {
    let poly = Chebyshev::interpolate(f, interval, degree)?;
    measured(f, poly, kind, FitMethod::Chebyshev)
}

/// Minimax (Remez) fit of degree `degree`, never worse than Chebyshev interpolation (module doc).
pub fn remez(f: &dyn Fn(f64) -> f64, interval: Interval, degree: usize, kind: ErrorKind) -> Result<Approximation> {
    let cheb = chebyshev_fit(f, interval, degree, kind)?;
    // Symmetric functions make the full-basis Remez system degenerate (a symmetric reference forces
    // the levelled error to 0); solve in the parity subspace on the half interval instead, with the
    // positive half of the symmetric problem's Chebyshev reference (which avoids the midpoint, where
    // every odd basis function vanishes).
    let sym = if kind == ErrorKind::Absolute { parity(f, interval) } else { Parity::None };
    let fm = f(interval.mid());
    let g = |x: f64| f(x) - fm;
    let half = Interval::new(interval.mid(), interval.hi())?;
    let half_reference = |npts: usize, denom: usize| -> Vec<f64> {
        let mut r: Vec<f64> = (0..npts)
            .map(|k| half.lo() + half.width() * (std::f64::consts::PI * k as f64 / denom as f64).cos())
            .collect();
        r.reverse();
        r
    };
    let spec = match sym {
        Parity::OddPlusConstant => {
            let basis: Vec<usize> = (1..=degree).step_by(2).collect();
            let npts = basis.len() + 1;
            let initial = half_reference(npts, 2 * npts - 1);
            RemezSpec { f: &g, kind, repr: interval, domain: half, basis, initial: Some(initial) }
        }
        Parity::Even => {
            let basis: Vec<usize> = (0..=degree).step_by(2).collect();
            let npts = basis.len() + 1;
            let initial = half_reference(npts, 2 * npts - 2);
            RemezSpec { f, kind, repr: interval, domain: half, basis, initial: Some(initial) }
        }
        Parity::None => {
            RemezSpec { f, kind, repr: interval, domain: interval, basis: (0..=degree).collect(), initial: None }
        }
    };
    let spec_result = remez_core(&spec).map(|mut r| {
        if sym == Parity::OddPlusConstant {
            r.coeffs[0] += fm;
        }
        r.coeffs.resize(degree + 1, 0.0);
        r
    });
    let Ok(res) = spec_result else {
        return Ok(Approximation { method: FitMethod::ChebyshevFallback, ..cheb });
    };
    let Ok(poly) = Chebyshev::new(interval, res.coeffs) else {
        return Ok(Approximation { method: FitMethod::ChebyshevFallback, ..cheb });
    };
    let rem = measured(f, poly, kind, FitMethod::Remez { converged: res.converged })?;
    if rem.max_error <= cheb.max_error {
        Ok(rem)
    } else {
        Ok(Approximation { method: FitMethod::ChebyshevFallback, ..cheb })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parity {
    None,
    Even,
    OddPlusConstant,
}

/// Symmetry of `f` about the interval midpoint, checked at 64 points to 1e-13 relative.
fn parity(f: &dyn Fn(f64) -> f64, interval: Interval) -> Parity {
    let m = interval.mid();
    let fm = f(m);
    let (mut odd, mut even) = (true, true);
    for i in 1..=64 {
        let h = 0.5 * interval.width() * i as f64 / 64.0;
        let (a, b) = (f(m + h), f(m - h));
        let scale = a.abs().max(b.abs()).max(fm.abs()).max(1e-300);
        odd &= (a + b - 2.0 * fm).abs() <= 1e-13 * scale;
        even &= (a - b).abs() <= 1e-13 * scale;
    }
    if even {
        Parity::Even
    } else if odd {
        Parity::OddPlusConstant
    } else {
        Parity::None
    }
}

/// Fit of a given degree with the given method.
pub fn fit(
    f: &dyn Fn(f64) -> f64,
    interval: Interval,
    degree: usize,
    method: Method,
    kind: ErrorKind,
) -> Result<Approximation> {
    match method {
        Method::Chebyshev => chebyshev_fit(f, interval, degree, kind),
        Method::Remez => remez(f, interval, degree, kind),
    }
}

/// Smallest-depth fit reaching `opts.target` (module doc).
pub fn fit_to_target(f: &dyn Fn(f64) -> f64, interval: Interval, opts: &FitOptions) -> Result<Approximation> {
    opts.validate()?;
    let mut best_error = f64::INFINITY;
    let mut prev_degree: Option<usize> = None;
    let mut k = 0u32;
    loop {
        let full = (1usize << k) - 1;
        let degree = full.min(opts.max_degree);
        if prev_degree.is_some_and(|p| p >= degree) {
            break;
        }
        // Interpolation first: it is cheap and Remez can only improve on it.
        let mut cand = chebyshev_fit(f, interval, degree, opts.kind)?;
        // Interpolation at Chebyshev points is within 1 + Λ_d of minimax, with the Lebesgue
        // constant Λ_d ≤ 1 + (2/π) ln(d + 1): skip Remez when even minimax cannot reach the target.
        let lebesgue = 2.0 + std::f64::consts::FRAC_2_PI * ((degree + 1) as f64).ln();
        let remez_may_reach = cand.max_error / lebesgue <= opts.target;
        if cand.max_error > opts.target && opts.method == Method::Remez && remez_may_reach {
            cand = remez(f, interval, degree, opts.kind)?;
        }
        best_error = best_error.min(cand.max_error);
        if cand.max_error <= opts.target {
            if opts.policy == DegreePolicy::Smallest {
                let lo = prev_degree.map_or(0, |p| p + 1);
                return smallest_degree(f, interval, opts, lo, cand);
            }
            if opts.method == Method::Remez && matches!(cand.method, FitMethod::Chebyshev) {
                // Same depth, same cost: take the minimax polynomial for its lower error.
                let rem = remez(f, interval, degree, opts.kind)?;
                if rem.max_error <= cand.max_error {
                    cand = rem;
                }
            }
            return Ok(cand);
        }
        prev_degree = Some(degree);
        k += 1;
    }
    Err(ApproxError::TargetNotReached { target: opts.target, best_error, max_degree: opts.max_degree })
}

/// Bisection on `[lo, hi_fit.degree()]` for the smallest degree meeting the target.
fn smallest_degree(
    f: &dyn Fn(f64) -> f64,
    interval: Interval,
    opts: &FitOptions,
    lo: usize,
    hi_fit: Approximation,
) -> Result<Approximation> {
    let (mut lo, mut hi) = (lo, hi_fit.degree());
    let mut best = hi_fit;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let cand = fit(f, interval, mid, opts.method, opts.kind)?;
        if cand.max_error <= opts.target {
            hi = mid;
            best = cand;
        } else {
            lo = mid + 1;
        }
    }
    Ok(best)
}
