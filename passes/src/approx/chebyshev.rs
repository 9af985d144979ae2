//! Chebyshev series on an interval: interpolation, Clenshaw evaluation, power-basis conversion.
//!
//! A [`Chebyshev`] is `p(x) = Σ_k c_k T_k(t)` with `t = (2x − lo − hi)/(hi − lo)`, so the series lives
//! on `[-1, 1]` whatever the interval. Guarantees:
//! - [`Chebyshev::interpolate`] interpolates `f` at the `d + 1` Chebyshev points of the first kind
//!   (near-best uniform approximation, within a factor `2 + (2/π) ln(d+1)` of minimax);
//! - [`Chebyshev::eval`] is Clenshaw's recurrence (backward stable); outside the interval it
//!   extrapolates, which callers that care about ranges must check themselves;
//! - power-basis conversion is exact algebra but ill-conditioned for high degrees on wide intervals
//!   (monomial coefficients grow like `(2/width)^d`); use it only for small degrees or for display.

use super::error::{ApproxError, Result};
use super::interval::Interval;
use super::plan::EvalPlan;

/// Largest degree any fitting routine accepts; keeps `O(d²)`/`O(d³)` work bounded.
pub const MAX_DEGREE: usize = 2047;

/// Multiplicative depth of a degree-`d` polynomial with an optimal evaluation: `ceil(log2(d + 1))`.
pub fn depth_for_degree(degree: usize) -> u32 {
    // ceil(log2(d+1)) = number of bits of d.
    usize::BITS - degree.leading_zeros()
}

/// A polynomial in the Chebyshev basis of an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Chebyshev {
    interval: Interval,
    coeffs: Vec<f64>,
}

impl Chebyshev {
    /// A series from its coefficients (`coeffs[k]` multiplies `T_k`). Non-empty, all finite.
    pub fn new(interval: Interval, coeffs: Vec<f64>) -> Result<Self> {
        if coeffs.is_empty() {
            return Err(ApproxError::EmptyCoefficients);
        }
        if let Some((index, &value)) = coeffs.iter().enumerate().find(|(_, c)| !c.is_finite()) {
            return Err(ApproxError::NonFiniteCoefficient { index, value });
        }
        if coeffs.len() - 1 > MAX_DEGREE {
            return Err(ApproxError::DegreeTooLarge { degree: coeffs.len() - 1, max: MAX_DEGREE });
        }
        Ok(Self { interval, coeffs })
    }

    /// Interpolant of degree `degree` at the Chebyshev points of the first kind on `interval`.
    ///
    /// Errors if `f` is not finite at a node.
    pub fn interpolate(f: impl Fn(f64) -> f64, interval: Interval, degree: usize) -> Result<Self> {
        if degree > MAX_DEGREE {
            return Err(ApproxError::DegreeTooLarge { degree, max: MAX_DEGREE });
        }
        let n = degree + 1;
        let mut values = Vec::with_capacity(n);
        for k in 0..n {
            let theta = std::f64::consts::PI * (k as f64 + 0.5) / n as f64;
            let x = interval.from_unit(theta.cos());
            let value = f(x);
            if !value.is_finite() {
                return Err(ApproxError::NonFiniteFunction { x, value });
            }
            values.push(value);
        }
        // Discrete cosine transform: c_j = (2/n) Σ_k f(x_k) cos(j θ_k), c_0 halved.
        let mut coeffs = vec![0.0; n];
        for (j, c) in coeffs.iter_mut().enumerate() {
            let mut sum = 0.0;
            for (k, v) in values.iter().enumerate() {
                let theta = std::f64::consts::PI * (k as f64 + 0.5) / n as f64;
                sum += v * (j as f64 * theta).cos();
            }
            *c = 2.0 * sum / n as f64;
        }
        coeffs[0] *= 0.5;
        Self::new(interval, coeffs)
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }

    pub fn coeffs(&self) -> &[f64] {
        &self.coeffs
    }

    /// Nominal degree: `coeffs.len() - 1` (trailing zeros included).
    pub fn degree(&self) -> usize {
        self.coeffs.len() - 1
    }

    /// Degree without trailing zero coefficients.
    pub fn effective_degree(&self) -> usize {
        self.coeffs.iter().rposition(|&c| c != 0.0).unwrap_or(0)
    }

    /// `ceil(log2(d + 1))` of the effective degree `d`: the depth [`Chebyshev::plan`] reaches (0 for
    /// `d ≤ 1`, an affine map of the input folded upstream).
    pub fn depth(&self) -> u32 {
        match self.effective_degree() {
            0 | 1 => 0,
            d => depth_for_degree(d),
        }
    }

    /// `p(x)` by Clenshaw's recurrence.
    pub fn eval(&self, x: f64) -> f64 {
        clenshaw(&self.coeffs, self.interval.to_unit(x))
    }

    /// `α·p + β`, same interval and degree (exact on the coefficients).
    pub fn scaled(&self, alpha: f64, beta: f64) -> Self {
        let mut coeffs: Vec<f64> = self.coeffs.iter().map(|c| alpha * c).collect();
        coeffs[0] += beta;
        Self { interval: self.interval, coeffs }
    }

    /// Depth-optimal evaluation plan for this polynomial (see [`EvalPlan::chebyshev`]).
    pub fn plan(&self) -> EvalPlan {
        EvalPlan::chebyshev(self)
    }

    /// Monomial coefficients in the normalized variable `t` (`p = Σ a_k t^k`).
    pub fn to_monomial_unit(&self) -> Vec<f64> {
        cheb_to_monomial(&self.coeffs)
    }

    /// Monomial coefficients in `x` (`p = Σ a_k x^k`). Ill-conditioned for high degree (module doc).
    pub fn to_monomial(&self) -> Vec<f64> {
        let in_t = self.to_monomial_unit();
        let (scale, shift) = self.interval.unit_map();
        compose_affine(&in_t, scale, shift)
    }

    /// The series of the polynomial `Σ a_k x^k` on `interval`.
    pub fn from_monomial(interval: Interval, monomial: &[f64]) -> Result<Self> {
        if monomial.is_empty() {
            return Err(ApproxError::EmptyCoefficients);
        }
        if let Some((index, &value)) = monomial.iter().enumerate().find(|(_, c)| !c.is_finite()) {
            return Err(ApproxError::NonFiniteCoefficient { index, value });
        }
        // x = mid + half·t
        let in_t = compose_affine(monomial, 0.5 * interval.width(), interval.mid());
        Self::new(interval, monomial_to_cheb(&in_t))
    }
}

/// Clenshaw's recurrence for `Σ c_k T_k(t)`.
pub(crate) fn clenshaw(coeffs: &[f64], t: f64) -> f64 {
    let (mut b1, mut b2) = (0.0, 0.0);
    for &c in coeffs.iter().skip(1).rev() {
        let b0 = c + 2.0 * t * b1 - b2;
        b2 = b1;
        b1 = b0;
    }
    coeffs.first().copied().unwrap_or(0.0) + t * b1 - b2
}

/// Fills `out[k] = T_k(t)` for `k < out.len()`.
pub(crate) fn cheb_values(t: f64, out: &mut [f64]) {
    for k in 0..out.len() {
        out[k] = match k {
            0 => 1.0,
            1 => t,
            _ => 2.0 * t * out[k - 1] - out[k - 2],
        };
    }
}

fn cheb_to_monomial(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    let mut out = vec![0.0; n];
    // T_{k+1} = 2t T_k − T_{k−1}, tracked as monomial vectors.
    let mut prev = vec![0.0; n];
    let mut cur = vec![0.0; n];
    prev[0] = 1.0;
    if n > 1 {
        cur[1] = 1.0;
    }
    for (k, &ck) in c.iter().enumerate() {
        let tk = if k == 0 { &prev } else { &cur };
        for (o, t) in out.iter_mut().zip(tk) {
            *o += ck * t;
        }
        if k >= 1 && k + 1 < n {
            let mut next = vec![0.0; n];
            for i in 0..n - 1 {
                next[i + 1] += 2.0 * cur[i];
            }
            for i in 0..n {
                next[i] -= prev[i];
            }
            prev = std::mem::replace(&mut cur, next);
        }
    }
    out
}

fn monomial_to_cheb(a: &[f64]) -> Vec<f64> {
    // Horner in the Chebyshev basis: p = a_0 + t(a_1 + t(...)), with
    // t·T_0 = T_1 and t·T_k = (T_{k+1} + T_{k−1})/2.
    let n = a.len();
    let mut acc = vec![0.0; n];
    for &ak in a.iter().rev() {
        let mut next = vec![0.0; n];
        for (k, &v) in acc.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            if k == 0 {
                next[1] += v;
            } else {
                if k + 1 < n {
                    next[k + 1] += 0.5 * v;
                }
                next[k - 1] += 0.5 * v;
            }
        }
        next[0] += ak;
        acc = next;
    }
    acc
}

/// Monomial coefficients of `q(y) = p(scale·y + shift)` given those of `p`.
fn compose_affine(p: &[f64], scale: f64, shift: f64) -> Vec<f64> {
    let n = p.len();
    let mut acc = vec![0.0; n];
    for &pk in p.iter().rev() {
        // acc <- acc·(scale y + shift) + pk
        let mut next = vec![0.0; n];
        for (i, &v) in acc.iter().enumerate() {
            next[i] += shift * v;
            if i + 1 < n {
                next[i + 1] += scale * v;
            }
        }
        next[0] += pk;
        acc = next;
    }
    acc
}
