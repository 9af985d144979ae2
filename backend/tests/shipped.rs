//! The shipped transformer blocks: their full depth needs bootstrapping (the report places the
//! bootstraps); a prefix of the encoder that fits runs encrypted and matches poly mode.

mod common;

use common::{run_encrypted, shipped_poly};
use polyhe_backend::{compile_ckks, BackendError, BackendOptions};
use polyhe_ir::{Op, ValueDef};

#[test]
fn shipped_models_get_bootstrap_placements() {
    for name in ["encoder", "sigma_encoder", "vit", "bert_tiny"] {
        let t = std::time::Instant::now();
        let s = shipped_poly(name);
        let c = compile_ckks(&s.poly, &BackendOptions::default()).unwrap();
        println!("{name} ({:.1?}):\n{}", t.elapsed(), c.report);
        let b = c.report.bootstrap.as_ref().expect("depth beyond N = 2^16");
        assert!(b.depth > b.max_levels);
        assert!(!b.cuts.is_empty() && b.cuts.iter().all(|c| c.ciphertexts > 0 && !c.before_nodes.is_empty()));
        assert!(matches!(c.runnable(), Err(BackendError::NeedsBootstrapping { .. })));
        assert!(c.report.rotations < c.report.naive_rotations);
    }
}

/// Fast shipped-model check: the encoder cut at the operands of its first ct×ct matmul (Q and Kᵀ
/// per head: projections, bias, head split and transpose fuse into one affine map each).
#[test]
fn encoder_head_split_runs_encrypted() {
    let s = shipped_poly("encoder");
    let mut g = s.poly.clone();
    let enc = polyhe_passes::encrypted_values(&g);
    let (_, first_ctct) = g
        .nodes
        .iter()
        .find(|(_, d)| matches!(d.op, Op::MatMul) && d.inputs.iter().all(|&v| enc[v]))
        .expect("a ct×ct matmul");
    g.outputs = first_ctct.inputs.clone();
    let out = run_encrypted(&g, &s.inputs, &BackendOptions::default());
    println!("{}", out.compiled.report);
    assert!(out.compiled.report.depth <= 2, "depth {}", out.compiled.report.depth);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
}

/// ≈ 27 s in the test profile (N = 2^14, ~1.6k diagonals, 235 rotation keys).
#[test]
fn encoder_attention_scores_run_encrypted() {
    // Cut the encoder's poly graph at the input of its first polynomial (the softmax's exp): Q/K
    // projections, head split, QKᵀ, scaling and the max shift — affine maps and a ct×ct matmul.
    let s = shipped_poly("encoder");
    let mut g = s.poly.clone();
    let (_, first_poly) = g.nodes.iter().find(|(_, d)| matches!(d.op, Op::Chebyshev { .. })).unwrap();
    let cut = first_poly.inputs[0];
    assert!(matches!(g.values[cut].def, ValueDef::Result(..)));
    g.outputs = vec![cut];
    let out = run_encrypted(&g, &s.inputs, &BackendOptions::default());
    println!("{}", out.compiled.report);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
}
