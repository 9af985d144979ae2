//! polyhe's tensor IR.
//!
//! - [`Graph`]: entity arenas (`Value`, `Node`, `Const`) in topological order, with a petgraph view.
//! - [`Op`]: the operations, all with static attributes and shapes.
//! - [`infer_types`]: shape and dtype inference for every op.
//! - [`interp`]: the f64 reference interpreter.
//! - [`text`]: the text form (`print` / `parse`, which round-trip) and Graphviz output.
//! - [`verify`]: the verifier.

mod entities;
mod error;
mod graph;
pub mod infer;
pub mod interp;
mod op;
pub mod text;
mod types;
pub mod verify;

pub use entities::{Const, Node, Value};
pub use error::IrError;
pub use graph::{Graph, NodeData, ValueData, ValueDef};
pub use infer::infer_types;
pub use op::{GeluApprox, Op};
pub use types::{DType, Data, Tensor, TensorType};
