use crate::{Node, Value};

/// Errors of the IR crate. Parse and shape errors are user errors (bad text or a model whose shapes do
/// not fit); `Verifier` is an internal invariant violation (a bug in whoever built the graph).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IrError {
    #[error("parse error at line {line}, column {col}: {msg}")]
    Parse { line: usize, col: usize, msg: String },
    #[error("shape error in {op} ({node}): {msg}")]
    Shape { op: String, node: String, msg: String },
    #[error("invalid tensor: {0}")]
    InvalidTensor(String),
    #[error("evaluation error in {op} ({node}): {msg}")]
    Eval { op: String, node: String, msg: String },
    #[error("missing input `{name}`")]
    MissingInput { name: String },
    #[error("input `{name}`: expected {expected}, got {got}")]
    InputMismatch { name: String, expected: String, got: String },
    #[error("verifier: {0}")]
    Verifier(String),
    #[error("value {0} is used before it is defined")]
    UseBeforeDef(Value),
    #[error("node {0} is not in the graph")]
    NoSuchNode(Node),
}
