use std::path::PathBuf;

use polyhe_ir::IrError;

/// Errors of the ONNX frontend. All are user errors (a file or model we cannot take, or options that do
/// not fit it) except `Internal`, which is a bug in the frontend. Every message names the file and/or
/// the ONNX node it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}: not a valid ONNX model: {msg}", path.display())]
    Decode { path: PathBuf, msg: String },

    #[error("{}", unsupported_message(nodes))]
    Unsupported {
        /// `(op type, node name)` of every node the frontend cannot import.
        nodes: Vec<(String, String)>,
    },

    #[error(
        "input `{input}`, axis {axis}: dimension `{dim}` is not bound (pass --dim {dim}=VALUE or a concrete input)"
    )]
    UnboundDim { input: String, axis: usize, dim: String },

    #[error("input `{input}`, axis {axis}: dimension `{dim}` is {got} here but {expected} elsewhere")]
    DimConflict { input: String, axis: usize, dim: String, expected: usize, got: usize },

    #[error("input `{input}`: the model declares rank {expected} but a tensor of rank {got} was given")]
    InputRank { input: String, expected: usize, got: usize },

    #[error("no graph input is named `{input}` (inputs: {known})")]
    UnknownInput { input: String, known: String },

    #[error("tensor `{tensor}`: {msg}")]
    InvalidTensor { tensor: String, msg: String },

    #[error("tensor `{tensor}`: external data {}: {msg}", path.display())]
    MissingExternalData { tensor: String, path: PathBuf, msg: String },

    #[error("node `{node}` ({op}): {msg}")]
    InvalidNode { node: String, op: String, msg: String },

    #[error("node `{node}` ({op}): input `{input}` must be a constant (it depends on run-time data, so the output shape would not be static)")]
    NotConstant { node: String, op: String, input: String },

    #[error("node `{node}` ({op}): {source}")]
    Shape { node: String, op: String, source: Box<IrError> },

    #[error("graph: {msg}")]
    Graph { msg: String },

    #[error("internal frontend error: {0}")]
    Internal(String),
}

fn unsupported_message(nodes: &[(String, String)]) -> String {
    let mut s = format!("{} unsupported node(s):", nodes.len());
    for (op, node) in nodes {
        s.push_str(&format!("\n  {op} (node `{node}`)"));
    }
    s
}
