//! The error type of the IR passes (calibration, polynomial replacement, depth analysis, pipeline).
//!
//! User errors (a model or calibration that cannot be compiled as asked) are kept apart from
//! [`PassError::Verifier`] and [`PassError::Internal`], which mean a pass produced an invalid graph:
//! a bug in polyhe, never the user's fault.

use polyhe_ir::IrError;

use crate::approx::ApproxError;

/// Everything the passes can report.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The calibration has no entry for a node that must be approximated (calibrated on another
    /// model, or the op never ran on the calibration batches).
    #[error("no calibration data for node `{node}` ({op}); calibrate with the same model")]
    MissingCalibration { node: String, op: String },
    /// The calibration batches do not fit the graph's inputs.
    #[error("calibration batch {batch}: {msg}")]
    BadCalibration { batch: usize, msg: String },
    /// A calibrated range no approximation can cover (non-finite, or of the wrong sign for 1/x, 1/√x).
    #[error("node `{node}` ({op}): calibrated range [{lo}, {hi}] cannot be approximated: {why}")]
    RangeTooWide { node: String, op: String, lo: f64, hi: f64, why: String },
    /// Ops on encrypted values that have no polynomial replacement. Lists every one, not just the first.
    #[error("unsupported on encrypted values: {}", list_unsupported(.0))]
    Unsupported(Vec<UnsupportedOp>),
    /// Fitting failed for a node (target unreachable within the degree cap, ...).
    #[error("node `{node}` ({op}): approximation failed: {source}")]
    Approx {
        node: String,
        op: String,
        #[source]
        source: ApproxError,
    },
    /// After polynomial replacement an op outside the poly stage remains on an encrypted value.
    #[error("poly stage: node `{node}` is a `{op}` on an encrypted value (only polynomial ops may remain)")]
    NotPolynomial { node: String, op: String },
    /// Running a graph failed (bad inputs, evaluation error).
    #[error(transparent)]
    Eval(IrError),
    /// `--client-tail`: an unknown node, or a cut that does not separate the outputs from the model
    /// inputs (see `client_tail`'s module doc).
    #[error("{0}")]
    ClientTail(String),
    /// The egg depth minimization failed.
    #[error("e-graph optimization: {0}")]
    Egraph(String),
    /// Internal: the IR verifier rejected a pass's output.
    #[error("internal error: verifier rejected the output of pass `{pass}`: {source}")]
    Verifier {
        pass: &'static str,
        #[source]
        source: IrError,
    },
    /// Internal: a pass built an ill-typed node.
    #[error("internal error in pass `{pass}`: {msg}")]
    Internal { pass: &'static str, msg: String },
}

/// One op that cannot be made polynomial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    pub op: String,
    pub node: String,
}

fn list_unsupported(v: &[UnsupportedOp]) -> String {
    v.iter().map(|u| format!("`{}` ({})", u.node, u.op)).collect::<Vec<_>>().join(", ")
}
