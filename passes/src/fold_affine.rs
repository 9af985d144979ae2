//! FoldAffine: inference-mode `batch_norm` becomes `x·k + b` with per-channel constants
//! `k = scale/√(var+eps)`, `b = bias − mean·k` (shaped `[C, 1, …, 1]` to broadcast over `[N, C, …]`).
//!
//! Requires: a verified graph. Guarantees: the result computes the same function (up to f64
//! rounding); `batch_norm` nodes whose four parameters are constants are gone; others are left as
//! they are (to_poly then reports them as unsupported if they run on encrypted values).
//! Fusing the resulting scalings into neighbouring plaintext weights is the e-graph pass's job
//! (`egraph/`); layer_norm's `× gamma + beta` is emitted by `to_poly` as constant mul/add for the same
//! reason. File test: `passes/tests/poly_passes.rs`.

use cranelift_entity::SecondaryMap;
use polyhe_ir::{Data, Graph, Op, Tensor, TensorType, Value};

use crate::error::PassError;

/// Folds constant batch norms (module doc).
pub fn fold_affine(g: &Graph) -> Result<Graph, PassError> {
    let mut out = Graph::new(g.name.clone());
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_default(None);
    for &v in &g.inputs {
        let d = &g.values[v];
        map[v] = Some(out.add_input(d.name.clone().unwrap_or_else(|| v.to_string()), d.ty.clone()));
    }
    let internal = |e: polyhe_ir::IrError| PassError::Internal { pass: "fold_affine", msg: e.to_string() };
    for (_, d) in g.nodes.iter() {
        let ins: Vec<Value> = d.inputs.iter().map(|&v| map[v].expect("topological order")).collect();
        if let Op::Constant(c) = d.op {
            map[d.outputs[0]] = Some(out.add_constant(g.constants[c].clone(), d.name.clone()));
            continue;
        }
        if let Op::BatchNorm { epsilon } = d.op {
            let params: Option<Vec<Vec<f64>>> =
                d.inputs[1..].iter().map(|&v| g.constant_of(v).map(Tensor::to_f64_vec)).collect();
            if let Some(p) = params {
                let x = ins[0];
                let ty = g.ty(d.inputs[0]).clone();
                let channels = ty.shape.get(1).copied().unwrap_or(1);
                let mut shape = vec![channels];
                shape.extend(std::iter::repeat_n(1, ty.rank().saturating_sub(2)));
                let k: Vec<f64> = (0..channels).map(|c| p[0][c] / (p[3][c] + epsilon).sqrt()).collect();
                let b: Vec<f64> = (0..channels).map(|c| p[1][c] - p[2][c] * k[c]).collect();
                let kt = Tensor::new(TensorType::new(ty.dtype, shape.clone()), Data::Float(k)).map_err(internal)?;
                let bt = Tensor::new(TensorType::new(ty.dtype, shape), Data::Float(b)).map_err(internal)?;
                let kv = out.add_constant(kt, format!("{}/scale", d.name));
                let bv = out.add_constant(bt, format!("{}/shift", d.name));
                let m = out.add_node(Op::Mul, vec![x, kv], format!("{}/mul", d.name)).map_err(internal)?;
                let m = out.result(m);
                let a = out.add_node(Op::Add, vec![m, bv], format!("{}/add", d.name)).map_err(internal)?;
                let a = out.result(a);
                if let Some(name) = &g.values[d.outputs[0]].name {
                    out.set_name(a, name.clone());
                }
                map[d.outputs[0]] = Some(a);
                continue;
            }
        }
        let tys = d.outputs.iter().map(|&o| g.ty(o).clone()).collect();
        let nn = out.add_node_typed(d.op.clone(), ins, tys, d.name.clone());
        for (k, &o) in d.outputs.iter().enumerate() {
            let nv = out.nodes[nn].outputs[k];
            map[o] = Some(nv);
            if let Some(name) = &g.values[o].name {
                out.set_name(nv, name.clone());
            }
        }
    }
    for &o in &g.outputs {
        out.outputs.push(map[o].expect("outputs are defined"));
    }
    Ok(out)
}
