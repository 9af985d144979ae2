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
//! - `1/x` with a **fused** guess ([`reciprocal_guess`]): the relative minimax polynomial of degree
//!   `n − 1` is known in closed form — `1 − x·p(x) = T_n(−t)/T_n(s)` (`t` the interval's unit map,
//!   `s = (b+a)/(b−a)`), i.e. `p` interpolates `1/x` at the `n` Chebyshev points and the residual
//!   equioscillates with amplitude exactly `1/T_n(s) < 1`, so `x·p(x) ∈ (0, 2)` on the interval. The
//!   residual is a one-coefficient series evaluated straight from `x`; with `n = 2^D − 1` both series
//!   have depth `D`, and Goldschmidt from them costs `D + k` (one level less than from a product). Its
//!   error after `k` steps is `(1/T_n(s))^(2^k)`. For a range ratio `R` and `n ≪ √R`,
//!   `1/T_n(s) ≈ 1 − 2n²/R`: each extra level of guess saves two steps; the steps converge on all of
//!   `(0, a + b)` and diverge above (callers fit with headroom above the calibrated range).
//!   Fusing is skipped (`e₀ = 1 − x·p(x)` as a product, one level more) when the guess's own
//!   rounding, amplified by `x/(x·p(x))` in a residual computed apart from it, could exceed 1% of the
//!   target: ranges spanning ~1e10 and more, where `p` sums large alternating coefficients to small
//!   values near the top (see `make_guess`).
//!
//! A constant or linear guess is an affine map of the input (depth 0, folded upstream); the first
//! Newton step on a constant guess is affine too and costs nothing.
//!
//! Selection ([`fit_inv_sqrt`], [`fit_reciprocal`]): for guess degrees `0, 1, 3, 7, 15, 31, 63` (`1/sqrt`)
//! or `0, 1` and the fused `2, 6, 14, …, 2046` (`1/x`), between [`InverseOptions::min_guess_degree`]
//! and `max_guess_degree`, every scheme, and `k = 0..=max_steps`, the whole computation is built as
//! an [`EvalPlan`] — its depth and ct×ct count are read off the plan, never estimated. Its error is
//! first screened — from the guess's relative error on the measurement grid (the iterations map the
//! error pointwise and exactly, see `step_map`), or for fused guesses from the exact amplitude —
//! then the cheapest screened schedules are measured for real on the dense grid plus geometric
//! points (ranges spanning decades; diverging iterations measure as huge); the reported `max_error`
//! is that measurement. The result is the smallest depth reaching the target, then the fewest ct×ct
//! multiplications. If nothing within `max_depth` reaches the target, the most accurate schedule
//! within the cap is returned with `target_met = false`: the flag callers must surface as a warning.
//! Unit tests: `passes/tests/approx_reciprocal.rs`, `approx_functions.rs`.

use super::chebyshev::{Chebyshev, MAX_DEGREE};
use super::error::{ApproxError, Result};
use super::fit::remez;
use super::interval::Interval;
use super::measure::DEFAULT_GRID;
use super::measure::{grid, sup_norm, ErrorKind};
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
    /// Guess degrees below this are not tried (`to_poly` sets 2: affine guesses are free only when
    /// folded into the producer of `x`, which the emitted graph does not do).
    pub min_guess_degree: usize,
    pub max_guess_degree: usize,
    pub max_steps: u32,
}

impl InverseOptions {
    pub fn new(target: f64) -> Self {
        Self { target, max_depth: 16, min_guess_degree: 0, max_guess_degree: 63, max_steps: 10 }
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
    /// For `1/x` guesses of degree ≥ 2 built by [`fit_reciprocal`]: the residual `1 − x·guess(x)` as
    /// its own series, evaluated directly from the input instead of as a product (one level less).
    pub residual: Option<Chebyshev>,
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

/// One line for reports.
impl std::fmt::Display for IterativeInverse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.function {
            InverseFunction::InvSqrt => "1/sqrt",
            InverseFunction::Reciprocal => "1/x",
        };
        let scheme = match self.scheme {
            InverseScheme::Newton => "newton",
            InverseScheme::Goldschmidt => "goldschmidt",
        };
        write!(
            f,
            "{name}: guess deg {} + {} {scheme} depth {} ({} ct×ct) on {}: max rel error {:.3e}{}",
            self.guess.effective_degree(),
            self.steps,
            self.depth,
            self.ct_mults,
            self.interval,
            self.max_error,
            if self.target_met { "" } else { " (TARGET NOT MET)" }
        )
    }
}

/// The guess `p(x)` as a builder value; degree ≤ 1 becomes a free affine map of the input.
pub(crate) fn poly_of_input(b: &mut Builder, p: &Chebyshev, baby: usize) -> Val {
    let c = p.coeffs();
    let (scale, shift) = p.interval().unit_map();
    let deg = c.iter().rposition(|&v| v != 0.0).unwrap_or(0);
    match deg {
        0 => Val::Const(c[0]),
        1 => b.affine_input(c[1] * scale, c[1] * shift + c[0]),
        _ => {
            let t = b.affine_input(scale, shift);
            b.chebyshev(t, c, baby)
        }
    }
}

fn best_baby(c: &[f64]) -> usize {
    let mut best = (usize::MAX, 1);
    // Every count up to 64, then powers of two: the optimum is near √(2d), and trying all of a
    // degree-1000 series' counts costs a second per fit in debug builds.
    for baby in (1..c.len().max(2)).filter(|&b| b <= 64 || b.is_power_of_two()) {
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

/// The residual series of a fused `1/x` guess and its baby-step count.
type Residual<'a> = Option<(&'a Chebyshev, usize)>;

fn build(
    function: InverseFunction,
    scheme: InverseScheme,
    guess: &Chebyshev,
    baby: usize,
    residual: Residual<'_>,
    steps: u32,
) -> EvalPlan {
    let mut b = Builder::new();
    let mut y = poly_of_input(&mut b, guess, baby);
    let x = b.input();
    if let (InverseFunction::Reciprocal, Some((r, rbaby))) = (function, residual) {
        // Goldschmidt from the directly evaluated residual e₀ = 1 − x·y₀ (same depth as y₀).
        if steps > 0 {
            let mut e = poly_of_input(&mut b, r, rbaby);
            for k in 0..steps {
                if k > 0 {
                    e = b.mul(e, e);
                }
                let f = b.add_const(e, 1.0);
                y = b.mul(y, f);
            }
        }
        return b.finish(y);
    }
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

/// Relative error of `g` against `function`; non-finite values count as 1e300. The sup-norm grid
/// plus [`geometric`] points: on ranges spanning decades the uniform and clustered grids leave the
/// bottom decades almost unsampled.
fn rel_error(function: InverseFunction, g: &dyn Fn(f64) -> f64, interval: Interval, grid: usize) -> Result<f64> {
    let e = |x: f64| {
        let f = function.eval(x);
        let v = (g(x) - f) / f;
        if v.is_finite() {
            v
        } else {
            1e300
        }
    };
    let dense = sup_norm(&|x| Ok(e(x)), interval, grid)?.0;
    Ok(geometric(interval, grid).into_iter().fold(dense, |m, x| m.max(e(x).abs())))
}

/// Measurement grid size for a guess of degree `d`: at least 4 points per oscillation of the
/// degree-`d` error (the sup-norm refines every peak by golden section).
fn grid_size(degree: usize) -> usize {
    DEFAULT_GRID.max(4 * (degree + 1))
}

/// `n + 1` geometrically spaced points from `lo` to `hi` of a positive interval.
pub(crate) fn geometric(interval: Interval, n: usize) -> Vec<f64> {
    let (lo, hi) = (interval.lo(), interval.hi());
    if lo <= 0.0 {
        return Vec::new();
    }
    let ratio = (hi / lo).ln();
    (0..=n).map(|i| if i == n { hi } else { lo * (ratio * i as f64 / n as f64).exp() }).collect()
}

/// The measurement grid of the screening: the sup-norm grid plus [`geometric`] points, sorted.
fn inverse_grid(interval: Interval, n: usize) -> Vec<f64> {
    let mut xs = grid(interval, n);
    xs.extend(geometric(interval, n));
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

/// The relative minimax guess of `1/x` with its residual, from [`reciprocal_guess`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReciprocalGuess {
    /// `p`, degree `n − 1`: the interpolant of `1/x` at the `n` Chebyshev points of the interval.
    pub guess: Chebyshev,
    /// `1 − x·p(x) = T_n(−t)/T_n(s)`, one non-zero coefficient (degree `n`).
    pub residual: Chebyshev,
    /// `1/T_n(s)`: the exact max of `|1 − x·p(x)|` on the interval (`< 1`, so `x·p(x) ∈ (0, 2)`).
    pub bound: f64,
}

/// The best relative approximation of `1/x` of degree `degree` on a positive interval `[a, b]`,
/// in closed form: `1 − x·p(x)` is a degree-`n` polynomial (`n = degree + 1`) equal to 1 at `x = 0`,
/// and the one of least max norm on `[a, b]` is `T_n(−t)/T_n(s)` with `t` the interval's unit map
/// and `s = (b + a)/(b − a) > 1` its value at 0 (the classic Chebyshev-iteration bound). Its zeros
/// are the Chebyshev points, so `p` is the interpolant of `1/x` there. The residual equioscillates
/// with amplitude `1/T_n(s)` on `[a, b]`, is in `(0, 1)` on `(0, a)` and has modulus `< 1` exactly on
/// `(0, a + b)`: Goldschmidt steps converge on all of `(0, a + b)` and diverge above.
pub fn reciprocal_guess(interval: Interval, degree: usize) -> Result<ReciprocalGuess> {
    let (a, b) = (interval.lo(), interval.hi());
    if a <= 0.0 {
        return Err(ApproxError::NonPositiveInterval { what: "reciprocal guess", lo: a, hi: b });
    }
    let n = degree + 1;
    if n > MAX_DEGREE {
        return Err(ApproxError::DegreeTooLarge { degree: n, max: MAX_DEGREE });
    }
    // ln ρ = acosh(s), ρ = s + √(s² − 1), with u = s − 1 = 2a/(b − a) computed directly (s itself
    // rounds badly near 1).
    let u = 2.0 * a / (b - a);
    let root = (u * (u + 2.0)).sqrt();
    let ln_rho = (u + root).ln_1p();
    let bound = 1.0 / (n as f64 * ln_rho).cosh();
    // The interpolant's coefficients in closed form, each to full relative precision: with
    // 1/(x) = (2/h) Σ' (−1/ρ)^k T_k(t) / √(s² − 1) (h the half width) and aliasing at the n nodes
    // (T_{2mn±j} ≡ (−1)^m T_j), c_j = (2/(h√(s²−1))) (−1/ρ)^j (1 − ρ^{−2(n−j)}) / (1 + ρ^{−2n}),
    // c_0 halved. A DCT of the values would carry absolute errors ~1e-16/a into every coefficient,
    // far above p ≈ 1/b at the top of ranges spanning many decades.
    let h = 0.5 * (b - a);
    let scale = 2.0 / (h * root) / (1.0 + (-2.0 * n as f64 * ln_rho).exp());
    let coeffs: Vec<f64> = (0..n)
        .map(|j| {
            let sign = if j.is_multiple_of(2) { 1.0 } else { -1.0 };
            let c = sign * scale * (-(j as f64) * ln_rho).exp() * -(-2.0 * (n - j) as f64 * ln_rho).exp_m1();
            if j == 0 {
                0.5 * c
            } else {
                c
            }
        })
        .collect();
    let guess = Chebyshev::new(interval, coeffs)?;
    let mut coeffs = vec![0.0; n + 1];
    coeffs[n] = if n.is_multiple_of(2) { bound } else { -bound };
    let residual = Chebyshev::new(interval, coeffs)?;
    Ok(ReciprocalGuess { guess, residual, bound })
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
    let grid = grid_size(guess.degree());
    let guess_error = rel_error(function, &|x| guess.eval(x), interval, grid)?;
    let plan = build(function, scheme, guess, best_baby(guess.coeffs()), None, steps);
    let max_error = rel_error(function, &|x| plan.eval(x), interval, grid)?;
    Ok(IterativeInverse {
        function,
        interval,
        guess: guess.clone(),
        guess_error,
        scheme,
        residual: None,
        steps,
        max_error,
        depth: plan.depth(),
        ct_mults: plan.num_ct_mults(),
        target_met: max_error <= target,
        plan,
    })
}

/// One iteration's map of the signed relative error `e = y/f − 1` (exact, pointwise): Newton for
/// `1/sqrt` gives `−(3/2)e² − e³/2`; Newton and each Goldschmidt factor for `1/x` give `−e²`.
fn step_map(function: InverseFunction, e: f64) -> f64 {
    match function {
        InverseFunction::InvSqrt => -1.5 * e * e - 0.5 * e * e * e,
        InverseFunction::Reciprocal => -e * e,
    }
}

/// A schedule considered by the selection, with its screened error.
struct Candidate {
    depth: u32,
    ct_mults: usize,
    screened: f64,
    guess: usize,
    scheme: InverseScheme,
    steps: u32,
}

/// A guess of the selection: the polynomial, its baby steps, and for fused `1/x` guesses the
/// residual series with its baby steps.
struct Guess {
    poly: Chebyshev,
    baby: usize,
    residual: Option<(Chebyshev, usize)>,
    /// For closed-form `1/x` guesses: the exact amplitude of `1 − x·p(x)`.
    amplitude: Option<f64>,
}

impl Guess {
    fn residual(&self) -> Residual<'_> {
        self.residual.as_ref().map(|(r, b)| (r, *b))
    }
}

/// At most this many screened candidates are fully measured before giving up on the target.
const MAX_VERIFICATIONS: usize = 8;

/// Guess degrees tried, in increasing depth: for `1/sqrt` Remez fits of degree `2^D − 1`; for `1/x`
/// the affine Remez guesses (degree 0, 1) and then the closed-form guesses of degree `2^D − 2`,
/// whose residual has degree `2^D − 1` and so the same depth `D` as the guess.
fn guess_degrees(function: InverseFunction, opts: &InverseOptions) -> Vec<usize> {
    let fused = |d: u32| (1usize << d) - 2;
    let all: Vec<usize> = match function {
        InverseFunction::InvSqrt => vec![0, 1, 3, 7, 15, 31, 63],
        InverseFunction::Reciprocal => [0, 1].into_iter().chain((2..=11).map(fused)).collect(),
    };
    all.into_iter().filter(|&d| d >= opts.min_guess_degree && d <= opts.max_guess_degree.min(MAX_DEGREE - 1)).collect()
}

/// Closed-form `1/x` guesses are fused unless evaluating them loses more than 1% of the target:
/// where `z = x·p(x)` gets as small as `1 − c`, the residual evaluated apart from `p` amplifies `p`'s
/// rounding (about `ε·√n·max|c_k|`, cancellation near the top of ranges spanning ~1e10 and more) by
/// `x/z`, while `e₀ = 1 − x·p(x)` computed from `p` is consistent with it whatever its rounding
/// (one level more).
fn make_guess(function: InverseFunction, interval: Interval, degree: usize, target: f64) -> Result<Guess> {
    if function == InverseFunction::Reciprocal && degree >= 2 {
        let g = reciprocal_guess(interval, degree)?;
        let baby = best_baby(g.guess.coeffs());
        let max_c = g.guess.coeffs().iter().fold(0.0f64, |m, c| m.max(c.abs()));
        let rounding = f64::EPSILON * ((degree + 1) as f64).sqrt() * max_c * interval.hi() / (1.0 - g.bound);
        let residual = (rounding <= 0.01 * target).then(|| {
            let rbaby = best_baby(g.residual.coeffs());
            (g.residual, rbaby)
        });
        return Ok(Guess { poly: g.guess, baby, residual, amplitude: Some(g.bound) });
    }
    let poly = remez(&|x| function.eval(x), interval, degree, ErrorKind::Relative)?.poly;
    Ok(Guess { baby: best_baby(poly.coeffs()), poly, residual: None, amplitude: None })
}

fn fit_inverse(function: InverseFunction, interval: Interval, opts: &InverseOptions) -> Result<IterativeInverse> {
    if !opts.target.is_finite() || opts.target <= 0.0 {
        return Err(ApproxError::InvalidTarget { target: opts.target });
    }
    if interval.lo() <= 0.0 {
        let what = match function {
            InverseFunction::InvSqrt => "inverse square root",
            InverseFunction::Reciprocal => "reciprocal",
        };
        return Err(ApproxError::NonPositiveInterval { what, lo: interval.lo(), hi: interval.hi() });
    }
    let f = |x: f64| function.eval(x);
    // Screening: the iterations act pointwise on the guess's relative error, so the error of every
    // schedule follows from the guess's error on the measurement grid; plans give depth and cost.
    let mut guesses: Vec<Guess> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for degree in guess_degrees(function, opts) {
        // Guesses only get deeper: stop once one alone is deeper than a schedule that screens fine.
        let best_passing = candidates.iter().filter(|c| c.screened <= opts.target).map(|c| c.depth).min();
        if best_passing.is_some_and(|d| super::chebyshev::depth_for_degree(degree) > d) {
            break;
        }
        let guess = make_guess(function, interval, degree, opts.target)?;
        let e0: Vec<f64> = match guess.amplitude {
            // e₀ = x·p(x) − 1 = −c·T_n(t) equioscillates with amplitude exactly |c| = 1/T_n(s), so
            // the screened error of k steps is |c|^(2^k), exactly; the schedule finally chosen is
            // measured on the real polynomials (`measure`).
            Some(a) => vec![a],
            None => {
                let xs = inverse_grid(interval, grid_size(degree));
                xs.iter().map(|&x| guess.poly.eval(x) / f(x) - 1.0).collect()
            }
        };
        let schemes: &[InverseScheme] = match (function, guess.amplitude) {
            (InverseFunction::InvSqrt, _) => &[InverseScheme::Newton],
            // From a closed-form guess Goldschmidt needs one level per step, Newton two.
            (InverseFunction::Reciprocal, Some(_)) => &[InverseScheme::Goldschmidt],
            (InverseFunction::Reciprocal, None) => &[InverseScheme::Goldschmidt, InverseScheme::Newton],
        };
        // A fused guess must keep x·p(x) in (0, 2) on the whole grid (|e₀| < 1), or the steps diverge.
        if guess.residual.is_some() && !e0.iter().all(|v| v.abs() < 1.0) {
            continue;
        }
        for &scheme in schemes {
            let mut e = e0.clone();
            for steps in 0..=opts.max_steps {
                if steps > 0 {
                    e.iter_mut().for_each(|v| *v = step_map(function, *v));
                }
                let plan = build(function, scheme, &guess.poly, guess.baby, guess.residual(), steps);
                let depth = plan.depth();
                if depth > opts.max_depth {
                    break;
                }
                let screened = e.iter().fold(0.0f64, |m, v| if v.is_finite() { m.max(v.abs()) } else { 1e300 });
                candidates.push(Candidate {
                    depth,
                    ct_mults: plan.num_ct_mults(),
                    screened,
                    guess: guesses.len(),
                    scheme,
                    steps,
                });
                if screened <= opts.target {
                    // More steps only cost more.
                    break;
                }
            }
        }
        guesses.push(guess);
    }
    let measure = |c: &Candidate| -> Result<IterativeInverse> {
        let guess = &guesses[c.guess];
        let plan = build(function, c.scheme, &guess.poly, guess.baby, guess.residual(), c.steps);
        let grid_n = grid_size(guess.poly.degree());
        let guess_error = rel_error(function, &|x| guess.poly.eval(x), interval, grid_n)?;
        let max_error = match &guess.residual {
            // The fused schedule evaluated as emitted (each series by Clenshaw, as the interpreter
            // does) rather than through the plan's thousands of ops per point for degree-1000 guesses.
            Some((r, _)) => {
                let fused = |x: f64| {
                    let (mut y, mut e) = (guess.poly.eval(x), r.eval(x));
                    for k in 0..c.steps {
                        if k > 0 {
                            e *= e;
                        }
                        y *= 1.0 + e;
                    }
                    y
                };
                rel_error(function, &fused, interval, grid_n)?
            }
            None => rel_error(function, &|x| plan.eval(x), interval, grid_n)?,
        };
        Ok(IterativeInverse {
            function,
            interval,
            guess: guess.poly.clone(),
            guess_error,
            scheme: c.scheme,
            residual: guess.residual.as_ref().map(|(r, _)| r.clone()),
            steps: c.steps,
            max_error,
            depth: plan.depth(),
            ct_mults: plan.num_ct_mults(),
            target_met: max_error <= opts.target,
            plan,
        })
    };
    let mut passing: Vec<&Candidate> = candidates.iter().filter(|c| c.screened <= opts.target).collect();
    passing.sort_by_key(|c| (c.depth, c.ct_mults));
    for c in passing.into_iter().take(MAX_VERIFICATIONS) {
        let r = measure(c)?;
        if r.target_met {
            return Ok(r);
        }
    }
    let best = candidates
        .iter()
        .min_by(|a, b| a.screened.total_cmp(&b.screened).then((a.depth, a.ct_mults).cmp(&(b.depth, b.ct_mults))))
        .ok_or(ApproxError::Numerical {
            stage: "iterative inverse",
            detail: "no schedule fits within the depth cap".into(),
        })?;
    measure(best)
}

/// `1/sqrt(x)` on a positive interval (module doc).
pub fn fit_inv_sqrt(interval: Interval, opts: &InverseOptions) -> Result<IterativeInverse> {
    fit_inverse(InverseFunction::InvSqrt, interval, opts)
}

/// `1/x` on a positive interval (module doc).
pub fn fit_reciprocal(interval: Interval, opts: &InverseOptions) -> Result<IterativeInverse> {
    fit_inverse(InverseFunction::Reciprocal, interval, opts)
}
