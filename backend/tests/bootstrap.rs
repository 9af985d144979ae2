//! Programs deeper than the modulus chain: compiled with `Bootstrap` instructions and run encrypted
//! (N = 2^13, `Security::NotSet`, a 3-level compute chain under the bootstrapping primes: test
//! parameters that protect nothing and only exercise the arithmetic).

mod common;

use common::{rand_vec, tensor};
use polyhe_backend::{compile_ckks, BackendOptions, Security};
use polyhe_ir::{DType, Graph, Op, TensorType};

fn node(g: &mut Graph, op: Op, ins: Vec<polyhe_ir::Value>) -> polyhe_ir::Value {
    let n = g.nodes.len();
    let id = g.add_node(op, ins, format!("n{n}")).unwrap();
    g.result(id)
}

/// Depth 5: x² (ct×ct), ·w (plaintext), ·x (ct×ct), ·W (matmul), ² (ct×ct).
fn deep_graph() -> Graph {
    let mut g = Graph::new("deep");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![4, 8]));
    let w = g.add_constant(tensor(&[8], rand_vec(8, 2)), "w");
    let m = g.add_constant(tensor(&[8, 8], rand_vec(64, 3).into_iter().map(|v| v * 0.4).collect()), "m");
    let a = node(&mut g, Op::Mul, vec![x, x]);
    let b = node(&mut g, Op::Mul, vec![a, w]);
    let c = node(&mut g, Op::Mul, vec![b, x]);
    let d = node(&mut g, Op::MatMul, vec![c, m]);
    let e = node(&mut g, Op::Mul, vec![d, d]);
    let f = node(&mut g, Op::Add, vec![e, x]);
    g.outputs = vec![f];
    g
}

fn opts() -> BackendOptions {
    BackendOptions {
        log_n: Some(13),
        security: Security::NotSet,
        bootstrap_levels: Some(3),
        log_scale: Some(40),
        ..BackendOptions::default()
    }
}

#[test]
fn deeper_than_the_chain_runs_encrypted_with_bootstraps() {
    let g = deep_graph();
    let compiled = compile_ckks(&g, &opts()).unwrap();
    let (program, params) = compiled.runnable().unwrap();
    program.validate().unwrap();
    let r = &compiled.report;
    eprintln!("{r}");
    // 3 compute levels (level 1 the floor): the depth-5 graph needs refreshes.
    assert!(r.depth >= 5, "depth {}", r.depth);
    assert!(r.bootstraps >= 2, "{} bootstraps", r.bootstraps);
    assert_eq!(r.bootstraps, program.bootstraps());
    let plan = r.bootstrap.as_ref().unwrap();
    assert_eq!(plan.cuts.iter().map(|c| c.ciphertexts).sum::<usize>(), r.bootstraps + r.bootstrap_pairs);
    assert_eq!(program.input_level, 3);
    assert_eq!(params.hamming_weight(), Some(192));
    assert!(program.needs_conjugation());
    assert!(program.print().contains("= bootstrap %"));
    // The refreshed values occupy few slots: the refresh is sparse and zero-padded.
    let cfg = &program.bootstrap.as_ref().unwrap().config;
    assert!(cfg.zero_padded && (1usize << cfg.log_slots) < params.slots(), "{cfg:?}");
    // The program file round-trips with its bootstrapping configuration.
    assert_eq!(&polyhe_runtime::Program::from_bytes(&program.to_bytes()).unwrap(), program);

    let x = tensor(&[4, 8], rand_vec(32, 7));
    let run = polyhe_backend::run_encrypted(&compiled, &[x.to_f64_vec()]).unwrap();
    assert_eq!(run.stats.bootstraps, r.bootstraps);
    let want = polyhe_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    let err = run.outputs[0].iter().zip(&want).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0, f64::max);
    eprintln!("max error {err:e}; timings {:?}", run.timings);
    assert!(err < 1e-3, "error {err}");
}

/// A tensor of two ciphertexts refreshed together: each round's two refreshes become one
/// `bootstrap_pair` (half the bootstrappings), split by a conjugation, and the results match the
/// interpreter.
#[test]
fn two_ciphertexts_refreshed_together_share_a_bootstrapping() {
    let mut g = Graph::new("pairs");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2, 4096]));
    let a = node(&mut g, Op::Mul, vec![x, x]);
    let b = node(&mut g, Op::Mul, vec![a, a]);
    let c = node(&mut g, Op::Mul, vec![b, x]);
    let d = node(&mut g, Op::Mul, vec![c, c]);
    g.outputs = vec![d];
    let compiled = compile_ckks(&g, &opts()).unwrap();
    let (program, _) = compiled.runnable().unwrap();
    let r = &compiled.report;
    eprintln!("{r}");
    assert!(r.bootstrap_pairs >= 1 && r.bootstraps == program.bootstraps(), "{r}");
    let plan = r.bootstrap.as_ref().unwrap();
    assert_eq!(plan.cuts.iter().map(|c| c.ciphertexts).sum::<usize>(), r.bootstraps + r.bootstrap_pairs);
    assert!(program.print().contains("= bootstrap_pair %"));
    let xs = tensor(&[2, 4096], rand_vec(8192, 5).into_iter().map(|v| 0.9 * v).collect());
    let run = polyhe_backend::run_encrypted(&compiled, &[xs.to_f64_vec()]).unwrap();
    assert_eq!(run.stats.bootstraps, r.bootstraps);
    let want = polyhe_ir::interp::run(&g, std::slice::from_ref(&xs)).unwrap()[0].to_f64_vec();
    let err = run.outputs[0].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("max error {err:e}");
    assert!(err < 1e-3, "error {err}");
}

#[test]
fn bootstrapping_chain_respects_the_sparse_secret_budget() {
    // At N = 2^16 with 128-bit security the chain stays under Lattigo's sparse-secret log QP 1546.
    let g = deep_graph();
    let o = BackendOptions { log_n: Some(16), bootstrap_levels: None, ..BackendOptions::default() };
    let err = compile_ckks(&g, &BackendOptions { bootstrap_levels: Some(400), ..o.clone() }).unwrap_err();
    assert!(matches!(err, polyhe_backend::BackendError::ParametersInfeasible { .. }), "{err}");
}

#[test]
fn refreshed_values_are_reused_by_free_ops() {
    // LayerNorm's centering `32·x − x·M`: `32·x` (an integer multiple, free) is taken from `x` at
    // the floor before the matmul refreshes `x`. The difference is rebuilt from the refreshed copy
    // instead of landing at the floor and being bootstrapped a second time before `d·d`.
    let mut g = Graph::new("center");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![4, 8]));
    let m = g.add_constant(tensor(&[8, 8], rand_vec(64, 3).into_iter().map(|v| v * 0.4).collect()), "m");
    let k = g.add_constant(tensor(&[], vec![32.0]), "k");
    // Two ct×ct products: `a2` is materialized at the floor (affine ops would compose instead).
    let a = node(&mut g, Op::Mul, vec![x, x]);
    let a2 = node(&mut g, Op::Mul, vec![a, x]);
    let y = node(&mut g, Op::Mul, vec![a2, k]);
    let s = node(&mut g, Op::MatMul, vec![a2, m]);
    let d = node(&mut g, Op::Sub, vec![y, s]);
    let e = node(&mut g, Op::Mul, vec![d, d]);
    g.outputs = vec![e];
    let compiled = compile_ckks(&g, &opts()).unwrap();
    let (program, _) = compiled.runnable().unwrap();
    program.validate().unwrap();
    // `a2` sits at the floor (level 1 of 3): one refresh serves the matmul, `32·a2` and `d·d`.
    assert_eq!(program.bootstraps(), 1, "{}", program.print());
    assert_eq!(compiled.report.bootstraps, 1);

    let xin = tensor(&[4, 8], rand_vec(32, 9));
    let run = polyhe_backend::run_encrypted(&compiled, &[xin.to_f64_vec()]).unwrap();
    assert_eq!(run.stats.bootstraps, 1);
    let want = polyhe_ir::interp::run(&g, std::slice::from_ref(&xin)).unwrap()[0].to_f64_vec();
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = run.outputs[0].iter().zip(&want).map(|(a, b)| (a - b).abs() / scale).fold(0.0, f64::max);
    assert!(err < 1e-3, "error {err}");
}

/// Refreshed values far beyond what a bootstrapping takes (`x³` up to 2.7e4 where the message
/// ratio wraps past a few thousand) come back as garbage, unless `set_refresh_shifts`, simulating
/// the program on calibration samples, divides them by a power of two for their refresh.
#[test]
fn large_refreshed_values_are_shifted_from_calibration_samples() {
    let mut g = Graph::new("large");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![4, 8]));
    let m = g.add_constant(tensor(&[8, 8], rand_vec(64, 3).into_iter().map(|v| v * 0.4).collect()), "m");
    let a = node(&mut g, Op::Mul, vec![x, x]);
    let a2 = node(&mut g, Op::Mul, vec![a, x]);
    let s = node(&mut g, Op::MatMul, vec![a2, m]);
    let e = node(&mut g, Op::Mul, vec![s, s]);
    g.outputs = vec![e];
    let sample = |seed: u64| rand_vec(32, seed).into_iter().map(|v| 30.0 * v).collect::<Vec<f64>>();
    let xin = tensor(&[4, 8], sample(9));
    let want = polyhe_ir::interp::run(&g, std::slice::from_ref(&xin)).unwrap()[0].to_f64_vec();
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let rel_error = |compiled: &polyhe_backend::CkksCompiled| {
        let run = polyhe_backend::run_encrypted(compiled, &[xin.to_f64_vec()]).unwrap();
        assert!(run.stats.bootstraps >= 1);
        run.outputs[0].iter().zip(&want).map(|(a, b)| (a - b).abs() / scale).fold(0.0, f64::max)
    };
    let mut compiled = compile_ckks(&g, &opts()).unwrap();
    assert!(compiled.report.refresh_inputs.is_none());
    let unshifted = rel_error(&compiled);
    assert!(unshifted > 1e-2, "the refresh wrapped around yet erred only {unshifted:e}");
    let samples: Vec<Vec<Vec<f64>>> = (20..23).map(|k| vec![sample(k)]).collect();
    let r = polyhe_backend::set_refresh_shifts(&mut compiled, &samples).unwrap().unwrap();
    assert_eq!(r.samples, 3);
    assert!(r.largest > 5e3 && r.shifted >= 1 && r.max_shift >= 9, "{r:?}");
    assert_eq!(compiled.report.refresh_inputs.as_ref(), Some(&r));
    let program = compiled.program.as_ref().unwrap();
    program.validate().unwrap();
    assert!(program.print().contains("{input_shift="), "{}", program.print());
    let shifted = rel_error(&compiled);
    assert!(shifted < 1e-3, "relative error {shifted:e} with the shifts");
}

/// Sparse refreshes end to end (N = 2^15, 16384 slots): the centered-keys attention of the file
/// test `ckks/centered_keys.ir` with 3 compute levels refreshes 2^13 zero-padded slots, and two of
/// its values have nonzero slots wrapping past the last slot (the rotated product's left
/// rotations), so they are rotated to slot 0 for the refresh and back. Encrypted and decrypted,
/// the outputs match the interpreter. Ignored: about a minute in release (`.ci/run` runs it).
#[test]
#[ignore]
fn sparse_refreshes_with_wrapped_values_run_encrypted() {
    let src = include_str!("../../tests/filetests/ckks/centered_keys.ir");
    let g = polyhe_ir::text::parse(src).unwrap();
    let opts = BackendOptions {
        log_n: Some(15),
        security: Security::NotSet,
        bootstrap_levels: Some(3),
        log_scale: Some(40),
        layout: Some(polyhe_backend::LayoutPolicy::ColumnMajor),
        ..BackendOptions::default()
    };
    let compiled = compile_ckks(&g, &opts).unwrap();
    let (program, params) = compiled.runnable().unwrap();
    let cfg = &program.bootstrap.as_ref().unwrap().config;
    assert!(cfg.zero_padded && (1usize << cfg.log_slots) < params.slots(), "{cfg:?}");
    // a refresh wrapped in the rotations that move its value to slot 0 and back
    use polyhe_runtime::ProgramOp as O;
    let n_in = program.num_input_regs();
    let def = |r: u32| (r as usize).checked_sub(n_in).map(|i| &program.insts[i].op);
    let wrapped = program
        .insts
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.op, O::Bootstrap(a) if matches!(def(a), Some(O::Rotate { .. }))))
        .count();
    assert!(wrapped >= 1, "no refresh of a wrapped value");
    let x = tensor(&[16, 8], rand_vec(128, 11));
    let run = polyhe_backend::run_encrypted(&compiled, &[x.to_f64_vec()]).unwrap();
    assert_eq!(run.stats.bootstraps, program.bootstraps());
    let want = polyhe_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = run.outputs[0].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    eprintln!(
        "{} refreshes ({wrapped} of wrapped values), max error {err:e} relative to max |output| {scale:e}",
        program.bootstraps()
    );
    assert!(err < 1e-3, "error {err}");
}
