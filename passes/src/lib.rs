//! polyhe compiler passes.
//!
//! For now this crate holds the numeric core of polynomial replacement ([`approx`]): Chebyshev
//! interpolation, Remez minimax fitting, degree selection, the approximations the compiler needs for
//! GELU/tanh/sigmoid/erf/exp/ReLU, iterative inverse square root and reciprocal, and depth-optimal
//! evaluation plans. It is pure `f64` math, independent of the IR; the IR passes wire it to ops.

pub mod approx;

pub use approx::{
    build_inverse, chebyshev_fit, depth_for_degree, fit, fit_activation, fit_exp, fit_exp_squaring, fit_inv_sqrt,
    fit_reciprocal, fit_relu, fit_relu_composite, fit_to_target, max_error, reciprocal_guess, remez, Activation,
    ApproxError, Approximation, Chebyshev, CompositeRelu, DegreePolicy, ErrorKind, EvalPlan, ExpChoice, ExpMethod,
    FitMethod, FitOptions, Interval, InverseFunction, InverseOptions, InverseScheme, IterativeInverse, Method,
    PlanCost, PlanOp, ReciprocalGuess, Reg, ReluChoice, ReluMethod, ReluOptions, SquaringExp,
};

// ---- polynomial stage (calibration, replacement, depth, report) ----
mod calibrate;
mod client_tail;
mod depth;
mod error;
mod fold_affine;
mod pipeline;
mod poly_run;
mod report;
mod to_poly;

pub use calibrate::{
    calibrate, CalibDetail, Calibration, CalibrationWarning, NodeCalibration, Range, ShiftedScores, SoftmaxCalibration,
};
pub use client_tail::{split_client_tail, ClientTail, TailCut, TailSummary};
pub use depth::{analyze_depth, DepthReport, PathStep, SLOTS};
pub use error::{PassError, UnsupportedOp};
pub use fold_affine::fold_affine;
pub use pipeline::{compile_to_poly, PolyResult};
pub use poly_run::{run_poly, OutOfRange, RangeCount};
pub use report::{layer_of, CompileReport, EgraphSummary, PassTiming};
pub use to_poly::{
    encrypted_values, is_poly_stage_op, prune, to_poly, verify_poly_stage, ApproxRecord, PolyOptions, Replaced,
    SoftmaxCenter, SoftmaxMax, SoftmaxMethod, UNSAFE_ROW_SUM_RATIO,
};

// ---- e-graph depth minimization of the polynomial stage ----
pub mod egraph;

pub use egraph::{optimize, rule_names, EgraphError, EgraphOptions, EgraphReport, RegionReport, Stop};
