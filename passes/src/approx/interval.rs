//! Closed intervals [lo, hi] with finite bounds and width and lo < hi, and the affine map to [-1, 1].

use super::error::{ApproxError, Result};

/// A validated closed interval `[lo, hi]`: both bounds and the width finite, `lo < hi`.
///
/// Degenerate (`lo == hi`) and NaN/infinite bounds are rejected by [`Interval::new`], so every
/// function taking an `Interval` can divide by its width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    lo: f64,
    hi: f64,
}

impl Interval {
    pub fn new(lo: f64, hi: f64) -> Result<Self> {
        // The width must be finite too: every map to [-1, 1] divides by it.
        if !lo.is_finite() || !hi.is_finite() || lo >= hi || !(hi - lo).is_finite() {
            return Err(ApproxError::InvalidInterval { lo, hi });
        }
        Ok(Self { lo, hi })
    }

    /// `[-1, 1]`, the natural domain of Chebyshev polynomials.
    pub fn unit() -> Self {
        Self { lo: -1.0, hi: 1.0 }
    }

    pub fn lo(&self) -> f64 {
        self.lo
    }

    pub fn hi(&self) -> f64 {
        self.hi
    }

    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }

    pub fn mid(&self) -> f64 {
        0.5 * (self.lo + self.hi)
    }

    pub fn contains(&self, x: f64) -> bool {
        x >= self.lo && x <= self.hi
    }

    /// The affine map `x -> t = scale * x + shift` sending `[lo, hi]` onto `[-1, 1]`.
    pub fn unit_map(&self) -> (f64, f64) {
        let scale = 2.0 / self.width();
        (scale, -(self.lo + self.hi) / self.width())
    }

    /// `x` mapped to `[-1, 1]`.
    pub fn to_unit(&self, x: f64) -> f64 {
        (2.0 * x - self.lo - self.hi) / self.width()
    }

    /// `t` in `[-1, 1]` mapped back to `[lo, hi]`.
    pub fn from_unit(&self, t: f64) -> f64 {
        self.mid() + 0.5 * self.width() * t
    }

    /// The interval widened by `fraction` of its width on each side (calibration safety margin).
    pub fn widened(&self, fraction: f64) -> Result<Self> {
        let pad = fraction * self.width();
        Self::new(self.lo - pad, self.hi + pad)
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.lo, self.hi)
    }
}
