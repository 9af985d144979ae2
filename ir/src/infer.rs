//! Shape and dtype inference for every op. (to be filled)
use crate::{Graph, IrError, Op, TensorType};

/// Result types of `op` applied to inputs of types `inputs`. `g` supplies constant types.
pub fn infer_types(op: &Op, inputs: &[TensorType], g: &Graph) -> Result<Vec<TensorType>, IrError> {
    let _ = (op, inputs, g);
    todo!()
}
