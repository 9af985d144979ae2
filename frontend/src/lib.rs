//! ONNX frontend: decode `.onnx` files and import them into polyhe's tensor IR.
//!
//! - [`load`] / [`decode`]: protobuf decoding with hand-written `prost` messages ([`proto`]) and
//!   external data; never panics on bad bytes.
//! - [`inspect`]: a [`ModelInfo`] summary (opset, I/O with symbolic dims, op histogram, parameter count,
//!   every unsupported node) that needs no dim binding.
//! - [`import`]: an IR [`Graph`](polyhe_ir::Graph) with all shapes static, shape arithmetic folded to
//!   constants, and (with [`ImportOptions::recognize`]) LayerNorm/GELU subgraphs fused.
//!
//! Errors are [`FrontendError`]s naming the file and/or node.

mod error;
mod import;
mod inspect;
mod load;
pub mod proto;
mod rebuild;
mod recognize;

pub use error::FrontendError;
pub use import::{import, ImportOptions};
pub use inspect::{inspect, Dim, IoInfo, ModelInfo};
pub use load::{decode, load, read_regular_file, OnnxModel};
