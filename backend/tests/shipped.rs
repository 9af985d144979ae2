//! The shipped transformer blocks: the 1-layer encoders fit N = 2^16 at 128-bit security and run
//! encrypted in full on a test ring (ignored: minutes; .ci/run runs them in release); the 2-layer
//! models compile with bootstraps (the report lists them); prefixes of the encoder run
//! encrypted in the default suite.

mod common;

use common::{expected_first_row, run_encrypted, shipped_poly};
use polyhe_backend::{compile_ckks, BackendOptions};
use polyhe_ir::{Op, ValueDef};

#[test]
fn shipped_models_fit_or_get_bootstrap_placements() {
    // The 1-layer encoders fit N = 2^16 at 128-bit security (smaller scaling primes, see
    // docs/backend.md); the 2-layer models need bootstraps, which the report places.
    for (name, fits) in [("encoder", true), ("sigma_encoder", true), ("vit", false), ("bert_tiny", false)] {
        let t = std::time::Instant::now();
        let s = shipped_poly(name);
        let c = compile_ckks(&s.poly, &BackendOptions::default()).unwrap();
        println!("{name} ({:.1?}):\n{}", t.elapsed(), c.report);
        assert!(c.report.rotations < c.report.naive_rotations);
        assert_eq!(c.report.critical_path.values().sum::<usize>(), c.report.depth, "{name}");
        if fits {
            let (p, params) = c.runnable().unwrap();
            assert_eq!(params.log_n(), 16);
            assert_eq!(params.security(), polyhe_runtime::Security::Bits128);
            assert!(p.levels_used() <= params.max_level());
            continue;
        }
        // Deeper than N = 2^16 holds: compiled with bootstraps under the sparse-secret budget.
        let b = c.report.bootstrap.as_ref().expect("depth beyond N = 2^16");
        assert!(b.depth > b.max_levels);
        assert!(!b.cuts.is_empty() && b.cuts.iter().all(|c| c.ciphertexts > 0 && !c.before_nodes.is_empty()));
        let (p, params) = c.runnable().unwrap();
        assert_eq!(c.report.bootstraps, p.bootstraps());
        assert!(p.bootstraps() >= b.cuts.len());
        assert_eq!(params.hamming_weight(), Some(192));
        assert!(params.log_qp() <= 1546.0);
    }
}

/// A whole shipped model run encrypted on a test ring (security not set: N = 2^13 with the full
/// chain), against poly mode (≤ 1e-3 of the largest logit) and onnxruntime's argmax.
fn full_model_runs_encrypted(name: &str) {
    let s = shipped_poly(name);
    let opts = BackendOptions { log_n: Some(13), security: polyhe_runtime::Security::NotSet, ..Default::default() };
    let out = run_encrypted(&s.poly, &s.inputs, &opts);
    println!("{}", out.compiled.report);
    assert!(out.rel_err < 1e-3, "{name}: error vs poly {}", out.rel_err);
    let ort = expected_first_row(name, "logits");
    let argmax = |v: &[f64]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    assert_eq!(argmax(&out.outputs[0]), argmax(&ort), "{name}: encrypted {:?} vs onnxruntime {ort:?}", out.outputs[0]);
}

/// ≈ 4 min in release alone (N = 2^13, depth 48, ~48k instructions; 12 min together with the
/// sigma_encoder test on 2 cores); .ci/run runs it.
#[test]
#[ignore]
fn encoder_full_runs_encrypted() {
    full_model_runs_encrypted("encoder");
}

/// ≈ 3 min in release alone; .ci/run runs it.
#[test]
#[ignore]
fn sigma_encoder_full_runs_encrypted() {
    full_model_runs_encrypted("sigma_encoder");
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

/// ≈ 45 s in the test profile (N = 2^14, ~1.6k diagonals, 235 rotation keys).
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
