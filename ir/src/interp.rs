//! The f64 reference interpreter. (to be filled)
use crate::{Graph, IrError, Op, Tensor};

/// Evaluates one op on concrete inputs.
pub fn eval_op(op: &Op, inputs: &[&Tensor], g: &Graph) -> Result<Vec<Tensor>, IrError> {
    let _ = (op, inputs, g);
    todo!()
}

/// Runs the whole graph on inputs given in graph-input order; returns the graph outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
    let _ = (g, inputs);
    todo!()
}
