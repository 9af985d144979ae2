//! The smooth activations the compiler replaces: GELU (erf form), tanh, sigmoid, erf, exp.
//!
//! [`fit_activation`] is [`super::fit::fit_to_target`] on the exact function: the result's
//! `max_error` is measured on the interval and its `depth` is `ceil(log2(degree + 1))`.

use super::error::Result;
use super::fit::{fit_to_target, Approximation, FitOptions};
use super::interval::Interval;

/// A smooth elementwise function with a reference `f64` implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `x·(1 + erf(x/√2))/2`, the exact (erf) form used by BERT.
    Gelu,
    Tanh,
    Sigmoid,
    Erf,
    Exp,
}

impl Activation {
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => {
                // Written to avoid overflow of exp for large |x|.
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Activation::Erf => libm::erf(x),
            Activation::Exp => x.exp(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Erf => "erf",
            Activation::Exp => "exp",
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Smallest-depth polynomial for `act` on `interval` reaching `opts.target`.
pub fn fit_activation(act: Activation, interval: Interval, opts: &FitOptions) -> Result<Approximation> {
    fit_to_target(&|x| act.eval(x), interval, opts)
}
