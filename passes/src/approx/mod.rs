//! Numeric core of polynomial replacement: pure `f64` math, independent of the IR.
//!
//! | item | guarantee |
//! |---|---|
//! | [`Interval`] | finite bounds, `lo < hi` (degenerate/NaN rejected with [`ApproxError::InvalidInterval`]) |
//! | [`Chebyshev`] | interpolation at Chebyshev points, Clenshaw evaluation, power-basis conversion |
//! | [`remez`] | minimax fit of a degree, bounded iterations, never worse than interpolation |
//! | [`fit_to_target`] | smallest depth reaching a target error, degree `2^k − 1` by default |
//! | [`fit_activation`] | GELU (erf form), tanh, sigmoid, erf, exp via [`fit_to_target`] |
//! | [`fit_exp`] | `(1 + x/2^r)^(2^r)` vs Chebyshev/Remez, cheaper depth chosen |
//! | [`fit_relu`] | direct minimax vs composite odd sign polynomials, cheaper depth chosen |
//! | [`fit_inv_sqrt`], [`fit_reciprocal`] | relative-error guess + Newton/Goldschmidt, min depth, flag when the cap is hit |
//! | [`reciprocal_guess`] | closed-form relative minimax of `1/x` with its one-coefficient residual `1 − x·p(x)` |
//! | [`EvalPlan`] | straight-line program with a CKKS depth model; Chebyshev plans at depth `ceil(log2(d+1))` |
//!
//! Every reported `max_error` is **measured** on a dense grid ([`max_error`]: ≥ 4096 uniform + 4096
//! Chebyshev-clustered points, peaks refined by golden section), never predicted; every reported
//! depth is either `ceil(log2(d+1))` of a Chebyshev series (which [`EvalPlan::chebyshev`] reaches) or
//! read off the [`EvalPlan`] that evaluates the whole approximation. Errors are absolute unless
//! [`ErrorKind::Relative`] is asked for (inverse square root and reciprocal are always relative).
//!
//! The depth model (see [`plan`]) charges a level for every ct×ct product and every multiplication by
//! a non-integer scalar, except affine maps of the approximation's *input*, which are assumed folded
//! into the producer of that input (preceding plaintext weights and biases). Consequence: a degree-1
//! polynomial of the input has depth 0.

mod chebyshev;
mod error;
mod exp;
mod fit;
mod functions;
mod interval;
mod inverse;
mod linalg;
mod measure;
pub mod plan;
mod relu;
mod remez;

pub use chebyshev::{depth_for_degree, Chebyshev, MAX_DEGREE};
pub use error::{ApproxError, Result};
pub use exp::{fit_exp, fit_exp_squaring, ExpChoice, ExpMethod, SquaringExp};
pub use fit::{chebyshev_fit, fit, fit_to_target, remez, Approximation, DegreePolicy, FitMethod, FitOptions, Method};
pub use functions::{fit_activation, Activation};
pub use interval::Interval;
pub use inverse::{
    build_inverse, fit_inv_sqrt, fit_reciprocal, reciprocal_guess, InverseFunction, InverseOptions, InverseScheme,
    IterativeInverse, ReciprocalGuess,
};
pub use measure::{max_error, ErrorKind};
pub use plan::{EvalPlan, PlanCost, PlanOp, Reg};
pub use relu::{fit_relu, fit_relu_composite, CompositeRelu, ReluChoice, ReluMethod, ReluOptions};
