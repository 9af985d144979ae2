//! The shipped transformer blocks: at 128-bit security every one compiles at N = 2^16 with
//! bootstraps (the 1-layer encoders for depth or key memory, the 2-layer models for depth); the
//! 1-layer encoders run encrypted in full on a test ring (ignored: minutes; .ci/run runs them in
//! release), and the ViT runs encrypted with
//! bootstraps on a test ring (ignored; its compilation there is checked in the default suite);
//! prefixes of the encoder run encrypted in the default suite.

mod common;

use common::{expected_first_row, run_encrypted, shipped_poly, shipped_poly_with_tail};
use polyhe_backend::{compile_ckks, BackendOptions};
use polyhe_ir::{Op, ValueDef};

#[test]
fn shipped_models_fit_or_get_bootstrap_placements() {
    // At 128 bits and N = 2^16 (36-bit scaling primes there, see docs/backend.md) the whole
    // sigma encoder (54 levels) and the 2-layer models need bootstraps; the whole encoder (41
    // levels with its softmax rows centered, 48 without) fits one chain. With the client tail,
    // the sigma encoder's 45 levels fit a chain whose keys need 46 digits (15.5 GiB once each key
    // pays its price in key switches, 61 GiB with one key per step), so the default key budget
    // takes bootstraps instead (and without a budget, the chain).
    let unlimited = BackendOptions { key_budget_bytes: None, ..BackendOptions::default() };
    for (name, tail, opts, bootstraps) in [
        ("encoder", false, BackendOptions::default(), false),
        ("sigma_encoder", true, BackendOptions::default(), true),
        ("sigma_encoder", true, unlimited, false),
        ("vit", false, BackendOptions::default(), true),
        ("bert_tiny", false, BackendOptions::default(), true),
    ] {
        let t = std::time::Instant::now();
        let s = if tail { shipped_poly_with_tail(name) } else { shipped_poly(name) };
        let c = compile_ckks(&s.poly, &opts).unwrap();
        println!("{name} ({:.1?}):\n{}", t.elapsed(), c.report);
        assert!(c.report.rotations < c.report.naive_rotations);
        assert_eq!(c.report.critical_path.values().sum::<usize>(), c.report.depth, "{name}");
        let (p, params) = c.runnable().unwrap();
        // The CKKS stage's exact text form reads back to the same program.
        assert_eq!(&polyhe_runtime::Program::parse(&p.print_exact()).unwrap(), p, "{name}");
        assert_eq!(params.log_n(), 16);
        assert_eq!(params.security(), polyhe_runtime::Security::Bits128);
        if !bootstraps {
            // The chain that holds the whole depth (the unlimited one beyond the default budget).
            assert!(c.report.bootstrap.is_none(), "{name}");
            assert!(p.levels_used() <= params.max_level());
            let keys = c.report.eval_key_bytes.unwrap();
            assert!(opts.key_budget_bytes.is_some() || keys > 8u64 << 30, "{name}: {keys} key bytes");
            continue;
        }
        // Compiled with bootstraps under the sparse-secret budget.
        let b = c.report.bootstrap.as_ref().expect("bootstraps");
        assert!(b.depth > b.max_levels);
        // Bootstraps for key memory say so; for depth they need none.
        assert_eq!(b.reason.is_empty(), !tail, "{name}: {}", b.reason);
        assert!(c.report.eval_key_bytes.unwrap() < 16u64 << 30, "{name}");
        assert!(!b.cuts.is_empty() && b.cuts.iter().all(|c| c.ciphertexts > 0 && !c.before_nodes.is_empty()));
        assert_eq!(c.report.bootstraps, p.bootstraps());
        assert!(p.bootstraps() >= b.cuts.len());
        assert_eq!(params.hamming_weight(), Some(192));
        assert!(params.log_qp() <= 1546.0);
        if name == "vit" {
            vit_compiles_on_the_test_ring(&s.poly);
        }
    }
}

/// The ignored `vit_full_runs_encrypted`'s parameters, compiled (without the client tail: 8
/// levels deeper): the whole ViT lowers with refreshes (in maps, polynomials, ct×ct operands,
/// multi-ciphertext softmax rows) and `Program::validate` proves every level and scale across
/// them. The digits are the cost model's, for the exact key count.
fn vit_compiles_on_the_test_ring(poly: &polyhe_ir::Graph) {
    let t = std::time::Instant::now();
    let c = compile_ckks(poly, &vit_test_ring()).unwrap();
    println!("vit, test ring ({:.1?}):\n{}", t.elapsed(), c.report);
    let (p, params) = c.runnable().unwrap();
    p.validate().unwrap();
    assert_eq!(params.log_n(), 13);
    assert_eq!(p.input_level, VIT_BOOTSTRAP_LEVELS);
    assert_eq!(params.max_level(), VIT_BOOTSTRAP_LEVELS + c.report.bootstrap.as_ref().unwrap().bootstrap_levels);
    assert!(p.bootstraps() > 0 && p.needs_conjugation());
    assert_eq!(c.rotation_steps, p.rotation_steps());
    // Keys fit the 8 GiB budget at this ring, so the digits are chosen for speed, not key size:
    // more than one digit (one digit would need ~30 special primes). The program's rotation keys
    // are restricted to the compute levels: under full keys for every step, over the two full
    // ones (relinearization, conjugation) plus one full-size key per bootstrapper step.
    let full_key = (params.dnum() * (params.max_level() + 1 + params.special_moduli().len())) as u64 * 2 * 8192 * 8;
    let bytes = c.report.eval_key_bytes.unwrap();
    assert!(bytes < (c.rotation_steps.len() as u64 + 2) * full_key, "{bytes}");
    let boot_steps = p.bootstrap.as_ref().unwrap().config.rotation_steps(13).len() as u64;
    assert!(bytes >= (2 + boot_steps.min(c.rotation_steps.len() as u64)) * full_key / 2, "{bytes}");
    assert!(bytes <= 8 << 30);
    assert!(params.dnum() > 1, "dnum {}", params.dnum());
}

/// N = 2^13, security not set, 16 compute levels between refreshes: of the chains measured on the
/// ViT (release, 2 shared cores), the fastest evaluation — the long chain without bootstraps
/// (88 levels, dnum 2): ≈ 1100 s; 16 compute levels: 172 s (10 bootstraps); 20: 228 s (12);
/// 32: 627 s (6).
fn vit_test_ring() -> BackendOptions {
    BackendOptions {
        log_n: Some(13),
        security: polyhe_runtime::Security::NotSet,
        bootstrap_levels: Some(VIT_BOOTSTRAP_LEVELS),
        ..Default::default()
    }
}

/// The full-model runs hold this lock: run together (cargo's test threads) their keys and
/// working sets (4–10 GiB each) would not fit one machine, and two cores gain nothing from it.
static ONE_FULL_MODEL_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn full_model_lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_FULL_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A whole shipped model run encrypted on a test ring (security not set: N = 2^13 with the full
/// chain), against poly mode (≤ 1e-3 of the largest logit) and onnxruntime's argmax.
fn full_model_runs_encrypted(name: &str) {
    let _one = full_model_lock();
    let s = shipped_poly(name);
    let opts = BackendOptions { log_n: Some(13), security: polyhe_runtime::Security::NotSet, ..Default::default() };
    let out = run_encrypted(&s.poly, &s.inputs, &opts);
    println!("{}", out.compiled.report);
    assert!(out.rel_err < 1e-3, "{name}: error vs poly {}", out.rel_err);
    let ort = expected_first_row(name, "logits");
    let argmax = |v: &[f64]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    assert_eq!(argmax(&out.outputs[0]), argmax(&ort), "{name}: encrypted {:?} vs onnxruntime {ort:?}", out.outputs[0]);
}

/// ≈ 5 min in release (N = 2^13, depth 48, ~48k instructions, dnum 4: eval 268 s on 2 shared
/// cores); .ci/run runs it.
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

/// The ViT (2 layers, depth 87 with the client tail) on a test ring with bootstraps: N = 2^13,
/// 16 compute levels under the 15 bootstrapping levels, refreshes wherever an operand reaches the
/// floor (10 of them). The client tail (final LayerNorm + classifier) runs in f64 on the decrypted values, as
/// `run --client-tail auto` does; logits within 1e-3 of poly mode (relative to the largest) and
/// onnxruntime's argmax (measured: 1.4e-6, 1/1). ≈ 2.5 min in release (eval 116 s, keygen 12 s,
/// 6.4 GB peak); .ci/run runs it.
#[test]
#[ignore]
fn vit_full_runs_encrypted() {
    let _one = full_model_lock();
    let s = shipped_poly_with_tail("vit");
    let tail = s.tail.as_ref().expect("vit has a client tail");
    let out = run_encrypted(&s.poly, &s.inputs, &vit_test_ring());
    println!("{}", out.compiled.report);
    assert!(out.compiled.report.bootstraps > 0);
    assert_eq!(out.stats.bootstraps, out.compiled.report.bootstraps);
    // Both ends through the tail: poly mode's cut values and the decrypted ones.
    let poly_cut = polyhe_ir::interp::run(&s.poly, &s.inputs).unwrap();
    let dec_cut: Vec<polyhe_ir::Tensor> = poly_cut
        .iter()
        .zip(&out.outputs)
        .map(|(t, d)| polyhe_ir::Tensor::float(t.ty.dtype, t.shape().to_vec(), d.clone()).unwrap())
        .collect();
    let poly = polyhe_ir::interp::run(tail, &poly_cut).unwrap()[0].to_f64_vec();
    let enc = polyhe_ir::interp::run(tail, &dec_cut).unwrap()[0].to_f64_vec();
    let mag = poly.iter().fold(1e-9f64, |m, x| m.max(x.abs()));
    let err = poly.iter().zip(&enc).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / mag;
    println!("cut values: error vs poly {:e}; logits: error vs poly {err:e}", out.rel_err);
    assert!(err < 1e-3, "vit: logits error vs poly {err}");
    let ort = expected_first_row("vit", "logits");
    let argmax = |v: &[f64]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    assert_eq!(argmax(&enc), argmax(&ort), "vit: encrypted {enc:?} vs onnxruntime {ort:?}");
}

/// Compute levels of the ViT test ring (see [`vit_test_ring`]).
const VIT_BOOTSTRAP_LEVELS: usize = 16;

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
