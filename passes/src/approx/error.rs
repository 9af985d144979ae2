//! The error type of the approximation core.

/// Everything that can go wrong when fitting or evaluating an approximation.
///
/// All are user-input problems (bad interval, bad target, a function that is not finite on the
/// interval) except [`ApproxError::Numerical`], which reports a numerical breakdown that the robust
/// paths (Remez falling back to Chebyshev) could not hide.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApproxError {
    #[error("invalid interval [{lo}, {hi}]: bounds must be finite with lo < hi")]
    InvalidInterval { lo: f64, hi: f64 },
    #[error("{what} needs a strictly positive interval, got [{lo}, {hi}]")]
    NonPositiveInterval { what: &'static str, lo: f64, hi: f64 },
    #[error("degree {degree} exceeds the supported maximum {max}")]
    DegreeTooLarge { degree: usize, max: usize },
    #[error("invalid target error {target}: must be finite and > 0")]
    InvalidTarget { target: f64 },
    #[error("function value at x = {x} is not finite ({value})")]
    NonFiniteFunction { x: f64, value: f64 },
    #[error("relative error is undefined: the function vanishes at x = {x}")]
    ZeroForRelativeError { x: f64 },
    #[error("coefficient list is empty")]
    EmptyCoefficients,
    #[error("coefficient {index} is not finite ({value})")]
    NonFiniteCoefficient { index: usize, value: f64 },
    #[error("target error {target} not reached up to degree {max_degree}: best max error {best_error}")]
    TargetNotReached { target: f64, best_error: f64, max_degree: usize },
    #[error("invalid plan: op {op} reads register r{reg}, which is not defined before it")]
    PlanForwardRef { op: usize, reg: usize },
    #[error("invalid plan: op {op}: op 0, and only op 0, must be `Input`")]
    PlanInput { op: usize },
    #[error("invalid plan: output r{reg} is not among its {len} registers")]
    PlanOutput { reg: usize, len: usize },
    #[error("numerical failure in {stage}: {detail}")]
    Numerical { stage: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, ApproxError>;
