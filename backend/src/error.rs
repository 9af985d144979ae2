//! The backend's error type: user-facing conditions (unsupported ops, infeasible parameters, depth
//! beyond the ring) apart from internal bugs (`Internal`, `Program`).

use thiserror::Error;

/// Errors of `compile_ckks`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BackendError {
    /// An op (or operand combination) the slot layout does not lower.
    #[error("unsupported in the CKKS backend: {op} at node `{node}`: {reason}")]
    Unsupported { op: String, node: String, reason: String },
    /// The user's parameter override cannot run the program.
    #[error("parameters infeasible: {reason}")]
    ParametersInfeasible { reason: String },
    /// The program needs more levels than N = 2^16 offers at 128-bit security and no chain with
    /// bootstrapping holds it either (the placement is in the error so the CLI can print it).
    #[error("the program needs {depth} levels but at most {max_levels} fit N=2^16 at 128-bit security, and no chain with bootstrapping fits; {bootstraps} bootstrap(s) would be needed")]
    NeedsBootstrapping { depth: usize, max_levels: usize, bootstraps: usize },
    /// A tensor-level evaluation needed for lowering (constant folding, map extraction) failed.
    #[error("evaluating {op} at node `{node}` while lowering: {reason}")]
    Eval { op: String, node: String, reason: String },
    /// The emitted program failed validation: a backend bug.
    #[error("internal: emitted program is invalid: {0}")]
    Program(#[from] polyhe_runtime::ProgramError),
    /// A runtime call failed (parameter construction).
    #[error("runtime: {0}")]
    Runtime(#[from] polyhe_runtime::CkksError),
    /// Internal invariant violated.
    #[error("internal error: {0}")]
    Internal(String),
}
