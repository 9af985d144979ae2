//! Remez exchange for weighted minimax approximation in a (sub)basis of Chebyshev polynomials.
//!
//! Solves `min_c max_{x ∈ domain} |w(x)·(f(x) − Σ_{j ∈ basis} c_j T_j(t(x)))|` where `t` maps the
//! representation interval to `[-1, 1]` and `w = 1` (absolute) or `1/|f|` (relative). The basis may be
//! a subset (odd indices for odd sign polynomials on `[ε, 1]`), and the error domain may be a
//! sub-interval of the representation interval. Guarantees: bounded iterations ([`MAX_ITERATIONS`]),
//! never panics, returns the best iterate seen (lowest measured max error on the dense grid) and whether
//! the levelled-error criterion `(max|e| − min_ref|e|) ≤ 1e-6·max|e|` was met. Failure to build any
//! iterate (singular first system, non-finite values) is an error the caller falls back from.

use super::chebyshev::{cheb_values, clenshaw};
use super::error::{ApproxError, Result};
use super::interval::Interval;
use super::linalg::solve;
use super::measure::{golden_max, grid, sup_norm, ErrorKind};

pub(crate) const MAX_ITERATIONS: usize = 60;

pub(crate) struct RemezSpec<'a> {
    pub f: &'a dyn Fn(f64) -> f64,
    pub kind: ErrorKind,
    pub repr: Interval,
    pub domain: Interval,
    pub basis: Vec<usize>,
    /// Initial reference (`basis.len() + 1` ascending points in the domain); default: the
    /// Chebyshev extrema of the domain.
    pub initial: Option<Vec<f64>>,
}

pub(crate) struct RemezResult {
    /// Full coefficient vector (zeros outside the basis), on `repr`.
    pub coeffs: Vec<f64>,
    pub max_error: f64,
    pub converged: bool,
}

pub(crate) fn remez_core(spec: &RemezSpec<'_>) -> Result<RemezResult> {
    let m = spec.basis.len();
    let len = spec.basis.iter().copied().max().unwrap_or(0) + 1;
    if m == 0 {
        return Err(ApproxError::EmptyCoefficients);
    }
    let npts = m + 1;
    let mut reference: Vec<f64> = match &spec.initial {
        Some(r) if r.len() == npts => r.clone(),
        _ => (0..npts).map(|k| spec.domain.from_unit(-(std::f64::consts::PI * k as f64 / m as f64).cos())).collect(),
    };
    let grid = grid(spec.domain, (32 * npts).max(2048));
    let mut best: Option<RemezResult> = None;
    let mut tvals = vec![0.0; len];
    for _ in 0..MAX_ITERATIONS {
        // Linear system: Σ_j c_j T_j(t_k) + (−1)^k E s_k = f(x_k), s_k = 1/w(x_k).
        let mut a = Vec::with_capacity(npts * npts);
        let mut rhs = Vec::with_capacity(npts);
        for (k, &x) in reference.iter().enumerate() {
            let fx = (spec.f)(x);
            if !fx.is_finite() {
                return Err(ApproxError::NonFiniteFunction { x, value: fx });
            }
            cheb_values(spec.repr.to_unit(x), &mut tvals);
            a.extend(spec.basis.iter().map(|&j| tvals[j]));
            let s = match spec.kind {
                ErrorKind::Absolute => 1.0,
                ErrorKind::Relative => fx.abs(),
            };
            a.push(if k % 2 == 0 { s } else { -s });
            rhs.push(fx);
        }
        let Some(sol) = solve(a, rhs) else { break };
        let mut coeffs = vec![0.0; len];
        for (&j, &c) in spec.basis.iter().zip(&sol) {
            coeffs[j] = c;
        }
        let e = |x: f64| spec.kind.weighted(x, (spec.f)(x), clenshaw(&coeffs, spec.repr.to_unit(x)));
        let extrema = alternating_extrema(&e, &grid)?;
        let max_err = extrema.iter().fold(0.0f64, |acc, &(_, v)| acc.max(v.abs()));
        let max_err = max_err.max(sup_norm(&e, spec.domain, 1024)?.0);
        let improved = best.as_ref().is_none_or(|b| max_err < b.max_error);
        if improved {
            best = Some(RemezResult { coeffs: coeffs.clone(), max_error: max_err, converged: false });
        }
        if extrema.len() < npts {
            break;
        }
        let chosen = reduce(extrema, npts);
        let min_ref = chosen.iter().fold(f64::INFINITY, |acc, &(_, v)| acc.min(v.abs()));
        if max_err - min_ref <= 1e-6 * max_err {
            if let Some(b) = best.as_mut() {
                b.converged = true;
            }
            break;
        }
        reference = chosen.iter().map(|&(x, _)| x).collect();
    }
    best.ok_or(ApproxError::Numerical { stage: "remez", detail: "the first reference system was singular".into() })
}

/// One extremum per maximal run of constant error sign, each refined by golden section.
fn alternating_extrema(e: &dyn Fn(f64) -> Result<f64>, grid: &[f64]) -> Result<Vec<(f64, f64)>> {
    let vals: Vec<f64> = grid.iter().map(|&x| e(x)).collect::<Result<_>>()?;
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut i = 0;
    let mut sign = 0.0;
    while i < grid.len() {
        // Zeros join the current run.
        let s = if vals[i] == 0.0 { sign } else { vals[i].signum() };
        let mut j = i;
        let mut arg = i;
        while j < grid.len() {
            let sj = if vals[j] == 0.0 { s } else { vals[j].signum() };
            if sj != s {
                break;
            }
            if vals[j].abs() > vals[arg].abs() {
                arg = j;
            }
            j += 1;
        }
        let lo = grid[arg.saturating_sub(1)];
        let hi = grid[(arg + 1).min(grid.len() - 1)];
        let (_, x) = golden_max(e, lo, hi)?;
        let ex = e(x)?;
        // Keep the refined point only if it stays in the run's sign.
        if ex.signum() == vals[arg].signum() && ex.abs() >= vals[arg].abs() {
            out.push((x, ex));
        } else {
            out.push((grid[arg], vals[arg]));
        }
        sign = s;
        i = j.max(i + 1);
    }
    Ok(out)
}

/// Drops points (keeping alternation and the largest errors) until `n` remain.
fn reduce(mut pts: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
    while pts.len() > n {
        let last = pts.len() - 1;
        if pts.len() == n + 1 {
            if pts[0].1.abs() < pts[last].1.abs() {
                pts.remove(0);
            } else {
                pts.pop();
            }
            continue;
        }
        let i = (0..pts.len()).min_by(|&a, &b| pts[a].1.abs().total_cmp(&pts[b].1.abs())).unwrap_or(0);
        if i == 0 || i == last {
            pts.remove(i);
        } else {
            let j = if pts[i - 1].1.abs() < pts[i + 1].1.abs() { i - 1 } else { i + 1 };
            pts.remove(i.max(j));
            pts.remove(i.min(j));
        }
    }
    pts
}
