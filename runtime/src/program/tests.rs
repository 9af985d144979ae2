use super::*;
use crate::{CkksContext, ClientKeys, Evaluator};

/// y = rot(x·x, 1) + c0, then · c1 (mask), at N = 2^13 with 2 levels.
fn small() -> (Program, CkksContext) {
    let params = CkksParams::new(13, &[60, 40, 40], &[60], 3, 40).unwrap();
    let ctx = CkksContext::new(params.clone()).unwrap();
    let pp = ProgramParams::from_params(&params);
    let slots = pp.slots();
    let q = pp.moduli.clone();
    let s0 = params.default_scale();
    let s1 = s0 * s0 / q[2] as f64;
    let pt = s1; // mask at scale s1 then rescale by q1
    let s2 = s1 * pt / q[1] as f64;
    let lay = |shape: Vec<usize>| SlotLayout::RowMajor { shape, slots };
    let insts = vec![
        Inst { op: Op::Mul(0, 0), level: 2, scale: s0 * s0 },
        Inst { op: Op::Rescale(1), level: 1, scale: s1 },
        Inst { op: Op::Rotate { src: 2, step: 1 }, level: 1, scale: s1 },
        Inst { op: Op::AddPlain(3, 0), level: 1, scale: s1 },
        Inst { op: Op::MulPlain { src: 4, constant: 1, pt_scale: pt }, level: 1, scale: s1 * pt },
        Inst { op: Op::Rescale(5), level: 0, scale: s2 },
    ];
    let prog = Program {
        name: "small".into(),
        params: pp,
        inputs: vec![Port { name: "x".into(), layout: lay(vec![4]), regs: vec![0] }],
        input_level: 2,
        input_scale: s0,
        constants: vec![SlotVector::from_dense(&[1.0, 2.0, 3.0, 4.0]), SlotVector::from_dense(&[1.0, 1.0, 0.5, 0.0])],
        insts,
        outputs: vec![Port { name: "y".into(), layout: lay(vec![4]), regs: vec![6] }],
        bootstrap: None,
        origins: Origins::default(),
    };
    (prog, ctx)
}

#[test]
fn small_program_validates_and_runs() {
    let (prog, ctx) = small();
    prog.validate().unwrap();
    assert_eq!(prog.rotation_steps(), vec![1]);
    let keys = ClientKeys::generate(&ctx).unwrap();
    let ev = Evaluator::new(&ctx, keys.evaluation_keys(&prog.rotation_steps(), false).unwrap()).unwrap();
    let x = vec![0.5, -1.0, 1.5, 2.0];
    let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
    let (out, stats) = execute_with_stats(&prog, &ev, cts).unwrap();
    assert_eq!(stats.rotations, 1);
    let y = decrypt_outputs(&prog, &ctx, &keys, &out).unwrap();
    let sim = simulate(&prog, std::slice::from_ref(&x)).unwrap();
    assert!(sim.outputs[0].iter().zip(&y[0]).all(|(a, b)| (a - b).abs() < 1e-4), "{:?} vs {:?}", sim.outputs, y);
    let want: Vec<f64> = (0..4)
        .map(|i| (x.get(i + 1).map_or(0.0, |v| v * v) + [1.0, 2.0, 3.0, 4.0][i]) * [1.0, 1.0, 0.5, 0.0][i])
        .collect();
    for (a, b) in y[0].iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn validate_rejects_level_underflow_and_bad_annotations() {
    let (mut prog, _) = small();
    let s = prog.insts[5].scale;
    prog.insts.push(Inst { op: Op::Rescale(6), level: 0, scale: s });
    prog.outputs[0].regs = vec![7];
    assert!(matches!(prog.validate(), Err(ProgramError::LevelUnderflow { inst: 6, .. })));
    let (mut prog, _) = small();
    prog.insts[1].scale *= 1.001;
    assert!(matches!(prog.validate_scales(), Err(ProgramError::Invalid { inst: 1, .. })));
    let (mut prog, _) = small();
    prog.insts[3].op = Op::Add(3, 0); // level 1 + level 2
    assert!(matches!(prog.validate(), Err(ProgramError::Invalid { inst: 3, .. })));
}

#[test]
fn binary_round_trip_and_corruption() {
    let (mut prog, _) = small();
    // A mostly-zero constant takes the sparse encoding.
    let mut sparse = vec![0.0; 1000];
    sparse[3] = 1.5;
    sparse[999] = -2.0;
    prog.constants.push(SlotVector::from_dense(&sparse));
    let bytes = prog.to_bytes();
    assert!(bytes.len() < 1000, "sparse constant stored densely: {} bytes", bytes.len());
    assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
    for cut in [0, 5, 9, 30, bytes.len() - 1] {
        assert!(Program::from_bytes(&bytes[..cut]).is_err());
    }
    for pos in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[pos] ^= 0x5a;
        assert!(Program::from_bytes(&b).is_err(), "flip at {pos} accepted");
    }
    let mut b = bytes.clone();
    b[8] = 99;
    assert!(matches!(Program::from_bytes(&b), Err(ProgramError::UnsupportedVersion { found: 99, .. })));
    let text = prog.print();
    assert!(text.contains("%5 = mul_plain %4, c1"), "{text}");
    assert!(text.contains("@L0"));
}

#[test]
fn origins_round_trip_in_both_forms_and_are_checked() {
    let (mut prog, _) = small();
    let pairs = [("/a/MatMul", "matmul"), ("/a/MatMul", "matmul"), ("", ""), ("/b/Poly", "chebyshev")];
    prog.origins = Origins::from_pairs(pairs.iter().copied().chain([("/a/MatMul", "matmul"), ("/c", "add")]));
    assert_eq!(prog.origins.sources.len(), 3);
    let back = Program::from_bytes(&prog.to_bytes()).unwrap();
    assert_eq!(back, prog);
    let exact = prog.print_exact();
    assert!(exact.contains("source s1 \"/b/Poly\" \"chebyshev\""), "{exact}");
    assert!(exact.contains("at none"), "{exact}");
    assert_eq!(Program::parse(&exact).unwrap(), prog);
    // The readable form names the node above each run of its instructions.
    let text = prog.print();
    assert!(text.contains("// /b/Poly (chebyshev)\n%4 = add_plain"), "{text}");
    // Origins for fewer instructions than the program has, or naming a missing source: refused.
    let mut short = prog.clone();
    short.origins.of_inst.pop();
    assert!(short.validate_structure().is_err());
    assert!(Program::parse(&exact.replace("at s2", "at s7")).is_err());
    let mut bytes = prog.to_bytes();
    // The last run's source index precedes the (empty) input shifts' count at the end of the body.
    let at = bytes.len() - 32 - 8 - 4;
    bytes[at] = 9;
    reseal(&mut bytes);
    let err = Program::from_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("s9 does not exist"), "{err}");
    // A version-5 program (no origins section) still reads.
    let mut old = prog.clone();
    old.origins = Origins::default();
    assert_eq!(Program::from_bytes(&as_version(&old.to_bytes(), 5)).unwrap(), old);
}

#[test]
fn execution_refuses_missing_keys_and_foreign_inputs() {
    let (prog, ctx) = small();
    let keys = ClientKeys::generate(&ctx).unwrap();
    // No rotation key for step 1: a clean error, not a panic.
    let ev = Evaluator::new(&ctx, keys.evaluation_keys(&[], false).unwrap()).unwrap();
    let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), &[vec![1.0; 4]]).unwrap();
    let e = execute(&prog, &ev, cts.clone()).unwrap_err();
    assert!(matches!(e, ProgramError::Ckks(crate::CkksError::MissingGaloisKey { step: 1 })), "{e}");
    // Wrong number of inputs, wrong tensor size.
    let ev = Evaluator::new(&ctx, keys.evaluation_keys(&[1], false).unwrap()).unwrap();
    assert!(matches!(execute(&prog, &ev, vec![]), Err(ProgramError::Interface { .. })));
    assert!(matches!(
        encrypt_inputs(&prog, &ctx, &keys.encryptor(), &[vec![1.0; 5]]),
        Err(ProgramError::Interface { .. })
    ));
    // An evaluator for other parameters.
    let other = CkksContext::new(CkksParams::new(13, &[60, 40, 40], &[60], 3, 35).unwrap()).unwrap();
    let okeys = ClientKeys::generate(&other).unwrap();
    let oev = Evaluator::new(&other, okeys.evaluation_keys(&[1], false).unwrap()).unwrap();
    assert!(matches!(execute(&prog, &oev, cts), Err(ProgramError::Interface { .. })));
}

/// `y = boot(x·x) · x'` where the input is at the bootstrapper's output level, one product takes
/// it down to level 1 (the bootstrap's lowest input level), and a product after the refresh uses
/// a level above it. N = 2^13, `Security::NotSet`, sparse secret h = 192, 8 slots replicated
/// over the ring (the sparse layout the bootstrapper needs).
fn with_bootstrap() -> (Program, CkksContext) {
    let base = |boot_levels: usize| {
        let mut q = vec![60u32, 40, 40];
        q.extend(std::iter::repeat_n(58, boot_levels));
        CkksParams::new_with_security(13, &q, &[60; 6], q.len().div_ceil(6), 40, crate::Security::NotSet)
            .unwrap()
            .with_hamming_weight(192)
            .unwrap()
    };
    let config = crate::BootstrapConfig::default_for(&base(1), 3);
    let params = base(config.levels());
    let ctx = CkksContext::new(params.clone()).unwrap();
    let pp = ProgramParams::from_params(&params);
    let slots = pp.slots();
    let q = pp.moduli.clone();
    let out_level = pp.max_level() - config.levels();
    assert_eq!(out_level, 2);
    let s_in = params.default_scale();
    let s1 = s_in * s_in / q[2] as f64;
    let lay = |shape: Vec<usize>| SlotLayout::RowMajor { shape, slots };
    let out_scale = 2f64.powi(40);
    // chain [q0, q1, q2 | bootstrapping primes]: x at level 2, x² at level 1, refreshed to level 2
    let insts = vec![
        Inst { op: Op::Mul(0, 0), level: 2, scale: s_in * s_in },
        Inst { op: Op::Rescale(1), level: 1, scale: s1 },
        Inst { op: Op::Bootstrap(2), level: 2, scale: out_scale },
        Inst { op: Op::Mul(3, 0), level: 2, scale: out_scale * s_in },
        Inst { op: Op::Rescale(4), level: 1, scale: out_scale * s_in / q[2] as f64 },
    ];
    let prog = Program {
        name: "boot".into(),
        params: pp,
        inputs: vec![Port { name: "x".into(), layout: lay(vec![slots]), regs: vec![0] }],
        input_level: 2,
        input_scale: s_in,
        constants: vec![],
        insts,
        outputs: vec![Port { name: "y".into(), layout: lay(vec![slots]), regs: vec![5] }],
        bootstrap: Some(ProgramBootstrap { config, output_scale: out_scale, input_shifts: Default::default() }),
        origins: Origins::default(),
    };
    (prog, ctx)
}

/// Client keys (seeded) and an evaluator with every key `prog` needs.
fn keys_for(prog: &Program, ctx: &CkksContext, seed: u64) -> (ClientKeys, Evaluator) {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let keys = ClientKeys::generate_with_rng(ctx, &mut rng).unwrap();
    let eval_keys = keys.evaluation_keys_with_rng(&prog.rotation_steps(), prog.needs_conjugation(), &mut rng).unwrap();
    let ev = Evaluator::new(ctx, eval_keys).unwrap();
    (keys, ev)
}

/// Runs `prog` (one input port) on 8 values replicated over the slots, checking that it
/// bootstraps once; returns the input and the decrypted outputs.
fn run_with_one_bootstrap(prog: &Program, ctx: &CkksContext, seed: u64) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (keys, ev) = keys_for(prog, ctx, seed);
    let v = [0.5, -0.25, 0.75, -0.9, 0.1, 0.3, -0.6, 0.2];
    let x: Vec<f64> = (0..prog.params.slots()).map(|j| v[j % 8]).collect();
    let cts = encrypt_inputs(prog, ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
    let (out, stats) = execute_with_stats(prog, &ev, cts).unwrap();
    assert_eq!(stats.bootstraps, 1);
    (x, decrypt_outputs(prog, ctx, &keys, &out).unwrap())
}

#[test]
fn bootstrap_program_validates_runs_and_round_trips() {
    let (prog, ctx) = with_bootstrap();
    prog.validate().unwrap();
    assert!(prog.needs_conjugation());
    assert_eq!(prog.bootstraps(), 1);
    let bytes = prog.to_bytes();
    assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
    let text = prog.print();
    assert!(text.contains("%3 = bootstrap %2 @L2 2^40.0000"), "{text}");
    assert!(text.contains("bootstrap log_slots=3 k=28"), "{text}");
    assert!(text.contains("hamming_weight=192"), "{text}");
    assert_eq!(prog.params.to_params().unwrap().hamming_weight(), Some(192));

    let (x, y) = run_with_one_bootstrap(&prog, &ctx, 5);
    let err = y[0].iter().zip(&x).map(|(g, a)| (g - a * a * a).abs()).fold(0.0, f64::max);
    assert!(err < 1e-4, "max error {err:e}");
    assert_simulation_matches(&prog, &x, &y, 1e-4);
}

/// A refreshed value beyond the bootstrapping's range (`x²` up to 8100 where the message ratio
/// 2^12 wraps past about 2048) comes back as garbage; with the input shift the simulation asks
/// for (`x / 2^10` refreshed, times 2^10 after) it comes back to the usual relative precision.
#[test]
fn input_shift_refreshes_values_beyond_the_bootstrapping_range() {
    let (mut prog, ctx) = with_bootstrap();
    let slots = prog.params.slots();
    let v = [0.5, -0.25, 0.75, -0.9, 0.1, 0.3, -0.6, 0.2];
    let x: Vec<f64> = (0..slots).map(|j| 100.0 * v[j % 8]).collect();
    let sim = simulate(&prog, std::slice::from_ref(&x)).unwrap();
    assert_eq!(sim.bootstrap_inputs.len(), 1);
    let (at, biggest) = sim.bootstrap_inputs[0];
    assert!(at == 2 && (biggest - 8100.0).abs() < 1e-6, "{:?}", sim.bootstrap_inputs);
    let rel_error = |prog: &Program| {
        let (keys, ev) = keys_for(prog, &ctx, 9);
        let cts = encrypt_inputs(prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
        let y = decrypt_outputs(prog, &ctx, &keys, &execute(prog, &ev, cts).unwrap()).unwrap();
        let err = y[0].iter().zip(&x).map(|(g, a)| (g - a * a * a).abs()).fold(0.0, f64::max);
        err / 9e5
    };
    let unshifted = rel_error(&prog);
    assert!(unshifted > 1e-2, "the bootstrapping wrapped around yet erred only {unshifted:e}");
    prog.bootstrap.as_mut().unwrap().input_shifts.insert(2, 10);
    prog.validate().unwrap();
    assert!(prog.print().contains("%3 = bootstrap %2 {input_shift=10} @L2"), "{}", prog.print());
    assert_eq!(Program::from_bytes(&prog.to_bytes()).unwrap(), prog);
    assert_eq!(Program::parse(&prog.print_exact()).unwrap(), prog);
    let shifted = rel_error(&prog);
    assert!(shifted < 1e-4, "relative error {shifted:e} with the shift");
    // only on bootstrapping instructions, and bounded
    let mut bad = prog.clone();
    bad.bootstrap.as_mut().unwrap().input_shifts.insert(0, 3);
    assert!(bad.validate_structure().unwrap_err().to_string().contains("not a bootstrapping"));
    let mut bad = prog.clone();
    bad.bootstrap.as_mut().unwrap().input_shifts.insert(2, 41);
    assert!(bad.validate_structure().unwrap_err().to_string().contains("exceeds"));
}

/// The plaintext simulation of `prog` on `x` gives the decrypted outputs `y` within `tol`, and
/// reports the bootstrapping's input magnitude.
fn assert_simulation_matches(prog: &Program, x: &[f64], y: &[Vec<f64>], tol: f64) {
    let sim = simulate(prog, &[x.to_vec()]).unwrap();
    assert_eq!(sim.outputs.len(), y.len());
    for (s, e) in sim.outputs.iter().zip(y) {
        let err = s.iter().zip(e).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < tol, "simulation vs encrypted: {err:e}");
    }
    assert_eq!(sim.bootstrap_inputs.len(), prog.bootstraps());
    assert!(sim.bootstrap_inputs.iter().all(|&(_, m)| m > 0.0 && m < 1.0), "{:?}", sim.bootstrap_inputs);
}

/// The same program with a zero-padded sparse bootstrap: `x` holds 8 values in slots 0..8 and
/// zeros elsewhere, the refresh keeps that layout. Validation proves the bootstrapped register
/// zero beyond slot 8, and refuses the program once a rotation or a full-width input breaks that.
#[test]
fn zero_padded_bootstrap_validates_runs_and_is_checked() {
    let (mut prog, ctx) = with_bootstrap();
    let slots = prog.params.slots();
    prog.inputs[0].layout = SlotLayout::RowMajor { shape: vec![8], slots };
    prog.outputs[0].layout = SlotLayout::RowMajor { shape: vec![8], slots };
    prog.bootstrap.as_mut().unwrap().config.zero_padded = true;
    prog.validate().unwrap();
    let sup = prog.slot_supports();
    assert_eq!(sup[3], SlotSupport::prefix(8));
    assert!(prog.print().contains("bootstrap log_slots=3 zero_padded k=28"));
    assert_eq!(Program::from_bytes(&prog.to_bytes()).unwrap(), prog);
    assert_eq!(Program::parse(&prog.print_exact()).unwrap(), prog);

    let (keys, ev) = keys_for(&prog, &ctx, 6);
    let x = vec![0.5, -0.25, 0.75, -0.9, 0.1, 0.3, -0.6, 0.2];
    let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
    let out = execute(&prog, &ev, cts).unwrap();
    let y = decrypt_outputs(&prog, &ctx, &keys, &out).unwrap();
    let err = y[0].iter().zip(&x).map(|(g, a)| (g - a * a * a).abs()).fold(0.0, f64::max);
    assert!(err < 1e-4, "max error {err:e}");
    assert_simulation_matches(&prog, &x, &y, 1e-4);

    // a full-width input may be nonzero in every slot
    let mut bad = prog.clone();
    bad.inputs[0].layout = SlotLayout::RowMajor { shape: vec![slots], slots };
    bad.outputs[0].layout = SlotLayout::RowMajor { shape: vec![slots], slots };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("zero-padded bootstrap of %2") && err.contains("slots 0..8"), "{err}");
    // a right rotation by one moves the values to slots 1..9
    let mut bad = prog.clone();
    bad.insts.insert(2, Inst { op: Op::Rotate { src: 2, step: -1 }, level: 1, scale: bad.insts[1].scale });
    bad.insts = bad
        .insts
        .iter()
        .map(|i| Inst { op: i.op.map_operands(|r| if r >= 3 { r + 1 } else { r }), ..i.clone() })
        .collect();
    bad.insts[3].op = Op::Bootstrap(3);
    bad.outputs[0].regs = vec![6];
    assert!(bad.validate().unwrap_err().to_string().contains("up to slot 9"), "{:?}", bad.validate());
}

/// Two values refreshed by one bootstrapping: `bootstrap_pair` of `x²` and `−x²`, split by a
/// conjugation, an add, a sub and `mul_i`. Validates, round-trips in both forms, runs with one
/// bootstrap, and refuses operands at different levels.
#[test]
fn bootstrap_pair_refreshes_two_values_in_one_bootstrapping() {
    let (mut prog, ctx) = with_bootstrap();
    let (s1, out) = (prog.insts[1].scale, prog.bootstrap.as_ref().unwrap().output_scale);
    prog.insts.truncate(2);
    prog.insts.extend([
        Inst { op: Op::Neg(2), level: 1, scale: s1 },
        Inst { op: Op::BootstrapPair(2, 3), level: 2, scale: out },
        Inst { op: Op::Conjugate(4), level: 2, scale: out },
        Inst { op: Op::Add(4, 5), level: 2, scale: out },
        Inst { op: Op::Sub(5, 4), level: 2, scale: out },
        Inst { op: Op::MulI(7), level: 2, scale: out },
    ]);
    let slots = prog.params.slots();
    let lay = SlotLayout::RowMajor { shape: vec![slots], slots };
    prog.outputs = vec![
        Port { name: "a".into(), layout: lay.clone(), regs: vec![6] },
        Port { name: "b".into(), layout: lay, regs: vec![8] },
    ];
    prog.validate().unwrap();
    assert_eq!(prog.bootstraps(), 1);
    assert!(prog.needs_conjugation());
    assert_eq!(Program::from_bytes(&prog.to_bytes()).unwrap(), prog);
    assert_eq!(Program::parse(&prog.print_exact()).unwrap(), prog);
    assert!(prog.print().contains("%4 = bootstrap_pair %2, %3 @L2"), "{}", prog.print());

    let (x, y) = run_with_one_bootstrap(&prog, &ctx, 7);
    for (port, sign) in [(0, 1.0), (1, -1.0)] {
        let err = y[port].iter().zip(&x).map(|(g, a)| (g - sign * a * a).abs()).fold(0.0, f64::max);
        assert!(err < 1e-4, "output {port}: max error {err:e}");
    }
    assert_simulation_matches(&prog, &x, &y, 1e-4);
    // operands at different levels
    let mut bad = prog.clone();
    bad.insts[3].op = Op::BootstrapPair(2, 0);
    assert!(bad.validate().unwrap_err().to_string().contains("bootstrap_pair of %2 at level 1 and %0 at level 2"));
}

#[test]
fn bootstrap_config_errors_are_program_errors() {
    let (prog, _) = with_bootstrap();
    // Out-of-range fields: refused by validation and by the binary reader.
    let mut bad = prog.clone();
    bad.bootstrap.as_mut().unwrap().config.log_slots = 13;
    assert!(matches!(bad.validate(), Err(ProgramError::Invalid { .. })));
    assert!(matches!(Program::from_bytes(&bad.to_bytes()), Err(ProgramError::Malformed { .. })));
    let mut bad = prog.clone();
    bad.bootstrap.as_mut().unwrap().config.cts_levels = 0;
    assert!(matches!(Program::from_bytes(&bad.to_bytes()), Err(ProgramError::Malformed { .. })));
    // More bootstrapping levels than the chain: output level annotation no longer matches.
    let mut bad = prog.clone();
    bad.bootstrap.as_mut().unwrap().config.double_angle += 1;
    assert!(bad.validate().is_err());
    // A bootstrap without a configuration, and one at level 0.
    let mut bad = prog.clone();
    bad.bootstrap = None;
    assert!(matches!(Program::from_bytes(&bad.to_bytes()), Err(ProgramError::Invalid { .. })));
    let mut bad = prog.clone();
    bad.insts[2].op = Op::Bootstrap(1); // the unrescaled product: scale 2^80
    assert!(bad.validate().is_err());
    let mut bad = prog.clone();
    bad.insts.push(Inst { op: Op::Rescale(5), level: 0, scale: 1e6 });
    bad.insts.push(Inst { op: Op::Bootstrap(6), level: 2, scale: 2f64.powi(40) });
    assert!(bad.validate().is_err());
    // Corrupt bytes in the configuration fail the checksum.
    let bytes = prog.to_bytes();
    let mut b = bytes.clone();
    let pos = 18 + 60;
    b[pos] ^= 1;
    assert!(Program::from_bytes(&b).is_err());
}

/// Diagonal-method accumulation `Σ_k rot(x, k)·c_k` as the lowering emits it (each `add`'s second
/// operand a `mul_plain` used only there), with the two rotations of `x` in different steps (more
/// than a window apart). The executor fuses the products into the adds, accumulates in place and
/// reuses one decomposition for both rotations; the result must be bit-identical to the separate
/// evaluator operations.
#[test]
fn fused_accumulation_and_cross_step_hoisting_are_exact() {
    let params = CkksParams::new(13, &[40, 30, 30, 30, 30], &[40], 5, 30).unwrap();
    let ctx = CkksContext::new(params.clone()).unwrap();
    let pp = ProgramParams::from_params(&params);
    let slots = pp.slots();
    let s0 = params.default_scale();
    let pt = s0;
    let top = 4;
    // A window holds 2 GiB of top-level ciphertexts: 3276 here, so a chain of 3300 no-op
    // `mul_int`s puts the second rotation outside the first step's window.
    let chain = 3300;
    let mut insts = vec![Inst { op: Op::Rotate { src: 0, step: 1 }, level: top, scale: s0 }];
    for k in 0..chain {
        insts.push(Inst { op: Op::MulInt(1 + k as u32, 1), level: top, scale: s0 });
    }
    let r1 = chain as u32 + 1;
    let base = insts.len() as u32 + 1;
    insts.extend([
        Inst { op: Op::Rotate { src: 0, step: 2 }, level: top, scale: s0 },
        Inst { op: Op::MulPlain { src: r1, constant: 0, pt_scale: pt }, level: top, scale: s0 * pt },
        Inst { op: Op::MulPlain { src: base, constant: 1, pt_scale: pt }, level: top, scale: s0 * pt },
        Inst { op: Op::Add(base + 1, base + 2), level: top, scale: s0 * pt },
        Inst { op: Op::MulPlain { src: 0, constant: 1, pt_scale: pt }, level: top, scale: s0 * pt },
        Inst { op: Op::Add(base + 3, base + 4), level: top, scale: s0 * pt },
    ]);
    let out_reg = insts.len() as u32;
    let lay = SlotLayout::RowMajor { shape: vec![4], slots };
    let prog = Program {
        name: "fused".into(),
        params: pp,
        inputs: vec![Port { name: "x".into(), layout: lay.clone(), regs: vec![0] }],
        input_level: top,
        input_scale: s0,
        constants: vec![
            SlotVector::from_dense(&[1.0, -2.0, 0.5, 3.0]),
            SlotVector::from_dense(&[0.25, 1.0, -1.0, 2.0]),
        ],
        insts,
        outputs: vec![Port { name: "y".into(), layout: lay, regs: vec![out_reg] }],
        bootstrap: None,
        origins: Origins::default(),
    };
    prog.validate().unwrap();
    let keys = ClientKeys::generate(&ctx).unwrap();
    let ev = Evaluator::new(&ctx, keys.evaluation_keys(&prog.rotation_steps(), false).unwrap()).unwrap();
    let x = vec![0.5, -1.0, 1.5, 2.0];
    let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
    let (out, stats) = execute_with_stats(&prog, &ev, cts.clone()).unwrap();
    assert_eq!((stats.rotations, stats.hoists, stats.plain_mults), (2, 1, 3));

    let enc = crate::Encoder::new(&ctx);
    let p0 = enc.encode(&prog.constants[0].to_dense(), top, pt).unwrap();
    let p1 = enc.encode(&prog.constants[1].to_dense(), top, pt).unwrap();
    let x_ct = &cts[0];
    let (a, b) = (ev.rotate(x_ct, 1).unwrap(), ev.rotate(x_ct, 2).unwrap());
    let s = ev.add(&ev.mul_plain(&a, &p0).unwrap(), &ev.mul_plain(&b, &p1).unwrap()).unwrap();
    let want = ev.add(&s, &ev.mul_plain(x_ct, &p1).unwrap()).unwrap();
    assert_eq!(out[0], want);
    assert_eq!(ev.mul_plain_add(&s, x_ct, &p1).unwrap(), want);
    let mut acc = s.clone();
    ev.mul_plain_add_assign(&mut acc, x_ct, &p1).unwrap();
    assert_eq!(acc, want);
}

/// Dense vectors of the shapes constants take: empty, all zeros, trailing zeros (and a trailing
/// `-0.0`, which is kept), token-fastest diagonals (each value repeated `T` times), distinct values.
fn rle_cases() -> Vec<Vec<f64>> {
    let diag: Vec<f64> = (0..64).flat_map(|h| std::iter::repeat_n(0.01 * h as f64 - 0.3, 16)).collect();
    let distinct: Vec<f64> = (0..100).map(|i| (i as f64).sin()).collect();
    let mut diag_tail = diag.clone();
    diag_tail.extend([0.0; 37]);
    vec![
        vec![],
        vec![0.0; 10],
        vec![1.5],
        vec![1.5, 0.0, 0.0],
        vec![0.0, 0.0, 2.0],
        vec![1.0, -0.0],
        vec![-0.0, 0.0],
        vec![3.0; 1000],
        vec![1.0, 2.0, 1.0, 2.0],
        vec![f64::MIN_POSITIVE, f64::MAX, -f64::MAX, 0.0, 7.0],
        diag,
        diag_tail,
        distinct,
    ]
}

#[test]
fn slot_vector_round_trips_dense_and_runs() {
    use std::collections::HashMap;
    for dense in rle_cases() {
        let v = SlotVector::from_dense(&dense);
        let len = dense.iter().rposition(|x| x.to_bits() != 0).map_or(0, |i| i + 1);
        assert_eq!(v.len(), len, "{dense:?}");
        assert_eq!(v.is_empty(), len == 0);
        let back = v.to_dense();
        assert_eq!(back.len(), len);
        assert!(back.iter().zip(&dense).all(|(a, b)| a.to_bits() == b.to_bits()), "{dense:?} -> {v:?}");
        for i in 0..dense.len() + 3 {
            assert_eq!(v.get(i).to_bits(), dense.get(i).filter(|_| i < len).copied().unwrap_or(0.0).to_bits());
        }
        // Runs are maximal, positive, sum to the length and end on a non-zero value.
        let runs: Vec<(f64, usize)> = v.runs().collect();
        assert_eq!(runs.len(), v.num_runs());
        assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), len);
        assert!(runs.iter().all(|r| r.1 > 0));
        assert!(runs.windows(2).all(|w| w[0].0.to_bits() != w[1].0.to_bits()));
        assert!(runs.last().is_none_or(|r| r.0.to_bits() != 0));
        assert!(v.stored_values() <= len);
        // Any split of the same runs, with empty runs and trailing zeros, is the same vector.
        let split: Vec<(f64, usize)> =
            runs.iter().flat_map(|&(x, n)| [(x, n / 2), (x, 0), (x, n - n / 2)]).chain([(0.0, 5)]).collect();
        let w = SlotVector::from_runs(split);
        assert_eq!(w, v);
        let mut m = HashMap::new();
        m.insert(v.clone(), 1);
        assert_eq!(m.get(&w), Some(&1));
    }
    // Token-fastest diagonals shrink by the repeat count; distinct values stay dense-sized.
    let cases = rle_cases();
    assert_eq!(SlotVector::from_dense(&cases[10]).stored_values(), 64);
    assert_eq!(SlotVector::from_dense(&cases[11]), SlotVector::from_dense(&cases[10]));
    assert_eq!(SlotVector::from_dense(&cases[12]).stored_values(), 100);
    assert_eq!(SlotVector::from_dense(&[3.0; 1000]).stored_values(), 1);
    // Equality is on bits: -0.0 is not 0.0, and a NaN equals itself.
    assert_ne!(SlotVector::from_dense(&[-0.0]), SlotVector::from_dense(&[0.0]));
    assert_eq!(SlotVector::from_dense(&[f64::NAN, 1.0]), SlotVector::from_dense(&[f64::NAN, 1.0]));
    assert_eq!(SlotVector::from_runs([]), SlotVector::from_dense(&[]));
    assert_eq!(format!("{:?}", SlotVector::from_dense(&[2.0, 2.0, 0.5])), "SlotVector[2e0×2, 5e-1]");
}

/// Finds `pat` in `bytes` (once).
fn find(bytes: &[u8], pat: &[u8]) -> usize {
    let hits: Vec<usize> = bytes.windows(pat.len()).enumerate().filter(|(_, w)| *w == pat).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "pattern found {} times", hits.len());
    hits[0]
}

/// Recomputes the checksum after editing a body (header 18 bytes, SHA-256 trailer).
/// `bytes` (a program without origins or input shifts, as this build writes it) in the form of
/// format `version` < 6: without the empty version-6 trailer (three zero counts), relabelled and
/// resealed.
fn as_version(bytes: &[u8], version: u16) -> Vec<u8> {
    let n = bytes.len();
    assert_eq!(&bytes[n - 32 - 24..n - 32], &[0u8; 24], "the program has origins or input shifts");
    let mut v = [&bytes[..n - 32 - 24], &bytes[n - 32..]].concat();
    v[8..10].copy_from_slice(&version.to_le_bytes());
    let body = (v.len() - 18 - 32) as u64;
    v[10..18].copy_from_slice(&body.to_le_bytes());
    reseal(&mut v);
    v
}

fn reseal(bytes: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let n = bytes.len();
    let d = Sha256::digest(&bytes[18..n - 32]);
    bytes[n - 32..].copy_from_slice(&d);
}

#[test]
fn constants_take_the_smallest_encoding_and_round_trip() {
    let tag = |c: &SlotVector| binary::constant_bytes(c)[8];
    let diag: Vec<f64> = (0..256).flat_map(|h| std::iter::repeat_n(0.25 + h as f64, 16)).collect();
    let runs = SlotVector::from_dense(&diag);
    let mut sp = vec![0.0; 4000];
    sp[17] = 1.25;
    sp[3000] = -4.0;
    let sparse = SlotVector::from_dense(&sp);
    let dense = SlotVector::from_dense(&(0..300).map(|i| 1.0 + (i as f64).cos()).collect::<Vec<_>>());
    assert_eq!((tag(&dense), tag(&sparse), tag(&runs)), (0, 1, 2));
    assert_eq!(binary::constant_bytes(&runs).len(), 8 + 1 + 8 + 256 * 12);
    assert_eq!(binary::constant_bytes(&SlotVector::default()).len(), 9);

    let (mut prog, _) = small();
    let slots = prog.params.slots();
    let mut signed = vec![0.0; 50];
    signed[49] = -0.0; // kept, and stored
    prog.constants.extend([dense, sparse, runs, SlotVector::default(), SlotVector::from_dense(&signed)]);
    prog.validate().unwrap();
    let bytes = prog.to_bytes();
    assert!(bytes.len() < 8000, "{} bytes", bytes.len());
    assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
    let text = prog.print();
    assert!(text.contains("const c4: 4096 slots, 4096 nonzero, 256 runs [2.500000e-1×16, 1.250000e0×16,"), "{text}");
    // Too long for the slots: refused.
    prog.constants.push(SlotVector::from_runs([(1.0, slots + 1)]));
    assert!(matches!(prog.validate(), Err(ProgramError::Invalid { .. })));
    assert!(Program::from_bytes(&prog.to_bytes()).is_err());
}

#[test]
fn corrupt_run_bytes_are_malformed_not_panics() {
    let (mut prog, _) = small();
    let marker = 0.123_456_789_f64;
    let c = SlotVector::from_runs([(marker, 100), (2.0, 60), (0.0, 30), (3.0, 10)]);
    prog.constants.push(c);
    let bytes = prog.to_bytes();
    assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
    // Layout: u64 length 200, tag 2, u64 4 runs, then (f64, u32) runs.
    let first = find(&bytes, &marker.to_bits().to_le_bytes());
    let (len_at, tag_at, count_at) = (first - 17, first - 9, first - 8);
    assert_eq!(bytes[len_at..len_at + 8], 200u64.to_le_bytes());
    assert_eq!(bytes[tag_at], 2);
    let edit = |at: usize, v: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + v.len()].copy_from_slice(v);
        reseal(&mut b);
        Program::from_bytes(&b)
    };
    let malformed = |r: ProgramResult<Program>| matches!(r, Err(ProgramError::Malformed { .. }));
    assert!(malformed(edit(first + 8, &u32::MAX.to_le_bytes())), "run longer than the constant");
    assert!(malformed(edit(first + 8, &99u32.to_le_bytes())), "runs short of the length");
    assert!(malformed(edit(count_at, &u64::MAX.to_le_bytes())), "huge run count");
    assert!(malformed(edit(count_at, &(1u64 << 40).to_le_bytes())), "run count beyond the bytes");
    assert!(malformed(edit(count_at, &3u64.to_le_bytes())), "fewer runs than stored");
    assert!(malformed(edit(len_at, &(1u64 << 21).to_le_bytes())), "length beyond 2^20");
    assert!(malformed(edit(len_at, &201u64.to_le_bytes())), "length beyond the runs");
    assert!(malformed(edit(tag_at, &[3])), "unknown encoding");
    // Version 3 had no run encoding.
    let mut v3 = bytes.clone();
    v3[8..10].copy_from_slice(&3u16.to_le_bytes());
    assert!(malformed(Program::from_bytes(&v3)));
    // Every byte of the body changed (checksum fixed up): an error or a program, never a panic.
    for pos in 18..bytes.len() - 32 {
        for x in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] ^= x;
            reseal(&mut b);
            let _ = Program::from_bytes(&b);
        }
    }
}

#[test]
fn version_3_programs_still_read() {
    let (prog, _) = small();
    let mut bytes = as_version(&prog.to_bytes(), 3);
    assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    assert!(matches!(
        Program::from_bytes(&bytes),
        Err(ProgramError::UnsupportedVersion { found: 2, supported: PROGRAM_VERSION })
    ));
}

/// A version-4 program with bootstraps (no plan weight in its configuration) reads with weight 1,
/// the plans it was compiled with.
#[test]
fn version_4_bootstrap_programs_read_with_weight_one() {
    let (mut prog, _) = with_bootstrap();
    prog.bootstrap.as_mut().unwrap().config.giant_step_cost = 1;
    let a = as_version(&prog.to_bytes(), 5);
    let mut other = prog.clone();
    other.bootstrap.as_mut().unwrap().config.giant_step_cost = 7;
    let b = as_version(&other.to_bytes(), 5);
    // the weight's u64 is where the two encodings first differ
    let pos = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
    let mut v4 = [&a[..pos], &a[pos + 8..]].concat();
    v4[8..10].copy_from_slice(&4u16.to_le_bytes());
    let body = (v4.len() - 18 - 32) as u64;
    v4[10..18].copy_from_slice(&body.to_le_bytes());
    reseal(&mut v4);
    assert_eq!(Program::from_bytes(&v4).unwrap(), prog);
}

#[test]
fn axes_layout_packs_by_permuted_axes() {
    let shape = vec![2, 3, 4];
    let data: Vec<f64> = (0..24).map(|e| e as f64 + 0.5).collect();
    for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
        let lay = SlotLayout::Axes { shape: shape.clone(), order: order.to_vec(), slots: 5 };
        assert_eq!((lay.numel(), lay.num_cts(), lay.slots()), (24, 5, 5));
        let parts = lay.pack(&data).unwrap();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 24);
        // `position` is a bijection onto 0..numel and names where pack put each element.
        let mut seen = [false; 24];
        for (e, &x) in data.iter().enumerate() {
            let p = lay.position(e);
            assert!(!std::mem::replace(&mut seen[p], true));
            assert_eq!(parts[p / 5][p % 5], x);
            // The definition: row-major index of the permuted multi-index.
            let i = [e / 12, (e / 4) % 3, e % 4];
            let d = [shape[order[0]], shape[order[1]], shape[order[2]]];
            assert_eq!(p, (i[order[0]] * d[1] + i[order[1]]) * d[2] + i[order[2]]);
        }
        assert_eq!(lay.unpack(&parts).unwrap(), data);
        let padded: Vec<Vec<f64>> = parts.iter().map(|p| [p.clone(), vec![9.0; 3]].concat()).collect();
        assert_eq!(lay.unpack(&padded).unwrap(), data);
    }
    // The identity order is row-major.
    let id = SlotLayout::Axes { shape: shape.clone(), order: vec![0, 1, 2], slots: 5 };
    let rm = SlotLayout::RowMajor { shape: shape.clone(), slots: 5 };
    assert_eq!(id.pack(&data).unwrap(), rm.pack(&data).unwrap());
    // Tokens fastest: (0, t, h) at h·16 + t.
    let col = SlotLayout::Axes { shape: vec![1, 16, 32], order: vec![0, 2, 1], slots: 4096 };
    assert_eq!(col.position(3 * 32 + 7), 7 * 16 + 3);
    // A non-permutation is an error, not a panic.
    for order in [vec![0, 0, 1], vec![0, 1], vec![0, 1, 3], vec![0, 1, 2, 3]] {
        let bad = SlotLayout::Axes { shape: shape.clone(), order, slots: 5 };
        assert!(matches!(bad.pack(&data), Err(ProgramError::Interface { .. })));
        assert!(matches!(bad.unpack(&vec![vec![0.0; 5]; 5]), Err(ProgramError::Interface { .. })));
        let _ = bad.position(23);
    }
}

/// `y = x·x + c` on a `[1, 4, 2]` tensor, `c` packed in the layout; with `order = [0, 2, 1]` and
/// row-major.
fn elementwise(order: Option<Vec<usize>>) -> (Program, CkksContext) {
    let params = CkksParams::new(13, &[60, 40, 40], &[60], 3, 40).unwrap();
    let ctx = CkksContext::new(params.clone()).unwrap();
    let pp = ProgramParams::from_params(&params);
    let slots = pp.slots();
    let s0 = params.default_scale();
    let s1 = s0 * s0 / pp.moduli[2] as f64;
    let shape = vec![1, 4, 2];
    let lay = match order {
        Some(order) => SlotLayout::Axes { shape, order, slots },
        None => SlotLayout::RowMajor { shape, slots },
    };
    let c: Vec<f64> = (0..8).map(|e| 0.1 * e as f64).collect();
    let packed = lay.pack(&c).unwrap().remove(0);
    let insts = vec![
        Inst { op: Op::Mul(0, 0), level: 2, scale: s0 * s0 },
        Inst { op: Op::Rescale(1), level: 1, scale: s1 },
        Inst { op: Op::AddPlain(2, 0), level: 1, scale: s1 },
    ];
    let prog = Program {
        name: "elementwise".into(),
        params: pp,
        inputs: vec![Port { name: "x".into(), layout: lay.clone(), regs: vec![0] }],
        input_level: 2,
        input_scale: s0,
        constants: vec![SlotVector::from_dense(&packed)],
        insts,
        outputs: vec![Port { name: "y".into(), layout: lay, regs: vec![3] }],
        bootstrap: None,
        origins: Origins::default(),
    };
    (prog, ctx)
}

#[test]
fn axes_layout_executes_like_row_major() {
    let x: Vec<f64> = (0..8).map(|e| 0.25 * e as f64 - 1.0).collect();
    let want: Vec<f64> = (0..8).map(|e| x[e] * x[e] + 0.1 * e as f64).collect();
    let mut results = Vec::new();
    for order in [None, Some(vec![0, 2, 1])] {
        let (prog, ctx) = elementwise(order);
        prog.validate().unwrap();
        let bytes = prog.to_bytes();
        assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
        let keys = ClientKeys::generate(&ctx).unwrap();
        let ev = Evaluator::new(&ctx, keys.evaluation_keys(&[], false).unwrap()).unwrap();
        let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
        let out = execute(&prog, &ev, cts).unwrap();
        let y = decrypt_outputs(&prog, &ctx, &keys, &out).unwrap().remove(0);
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        results.push((y, prog));
    }
    let (rm, ax) = (&results[0], &results[1]);
    assert!(rm.0.iter().zip(&ax.0).all(|(a, b)| (a - b).abs() < 2e-4));
    // The constants differ (packed per layout); the text form names the layout.
    assert_ne!(rm.1.constants, ax.1.constants);
    let text = ax.1.print();
    assert!(text.contains("input x: f64[1, 4, 2] axes[0, 2, 1]/4096 [%0]"), "{text}");
    assert!(text.contains("output y: f64[1, 4, 2] axes[0, 2, 1]/4096 [%3]"), "{text}");
}

#[test]
fn axes_order_is_checked_by_validate_and_reader() {
    let (mut prog, _) = elementwise(Some(vec![0, 2, 1]));
    let bytes = prog.to_bytes();
    // The order [0, 2, 1] follows the dims 1, 4, 2 (u64 each) of the input (then output) port.
    let dims: Vec<u8> = [1u64, 4, 2, 0, 2, 1].iter().flat_map(|d| d.to_le_bytes()).collect();
    let at = bytes.windows(dims.len()).position(|w| w == dims.as_slice()).unwrap() + 24;
    for bad in [[0u64, 2, 2], [0, 2, 3], [0, 2, u64::MAX]] {
        let mut b = bytes.clone();
        for (k, a) in bad.iter().enumerate() {
            b[at + 8 * k..at + 8 * k + 8].copy_from_slice(&a.to_le_bytes());
        }
        reseal(&mut b);
        assert!(matches!(Program::from_bytes(&b), Err(ProgramError::Malformed { .. })), "{bad:?}");
    }
    // Layout kind 1 is new in version 4.
    let mut v3 = bytes.clone();
    v3[8..10].copy_from_slice(&3u16.to_le_bytes());
    assert!(matches!(Program::from_bytes(&v3), Err(ProgramError::Malformed { .. })));
    let SlotLayout::Axes { order, .. } = &mut prog.outputs[0].layout else { unreachable!() };
    *order = vec![1, 1, 0];
    assert!(matches!(prog.validate(), Err(ProgramError::Invalid { .. })));
}

#[test]
fn port_shapes_whose_element_count_wraps_are_invalid() {
    // [2^32, 2^32, 3] wraps to 0 elements in 64 bits: it must not pass as a one-ciphertext port
    // (decrypt would write a .npy declaring that shape with no data).
    let (mut prog, _) = small();
    let slots = prog.params.slots();
    prog.outputs[0].layout = SlotLayout::RowMajor { shape: vec![1 << 32, 1 << 32, 3], slots };
    let e = prog.validate().unwrap_err().to_string();
    assert!(e.contains("more elements"), "{e}");
    // A register count that does not match the output's ciphertexts.
    let (mut prog, _) = small();
    prog.outputs[0].regs.push(0);
    assert!(matches!(prog.validate(), Err(ProgramError::Invalid { .. })));
}

#[test]
fn exact_text_round_trips_and_names_bad_lines() {
    for (prog, _) in [small(), with_bootstrap(), elementwise(Some(vec![0, 2, 1]))] {
        let mut prog = prog;
        prog.name = "a \"quoted\" name\\".into();
        prog.constants.push(SlotVector::from_dense(&[-0.0, 1e-300, 0.1 + 0.2, -7.0, -7.0]));
        let text = prog.print_exact();
        let back = Program::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, prog, "{text}");
        assert_eq!(back.to_bytes(), prog.to_bytes());
        assert_eq!(back.print_exact(), text);
    }
    let text = small().0.print_exact();
    let edit = |from: &str, to: &str| Program::parse(&text.replacen(from, to, 1)).unwrap_err().to_string();
    let e = edit("rescale %1", "rescale %1 extra");
    assert!(e.contains("line") && e.contains("extra"), "{e}");
    let e = edit("%2 = rescale", "%9 = rescale");
    assert!(e.contains("out of order"), "{e}");
    let e = edit("mul_relin", "mul_twice");
    assert!(e.contains("unknown instruction `mul_twice`"), "{e}");
    let e = edit("moduli", "// moduli");
    assert!(e.contains("without a `moduli` line"), "{e}");
    // Structurally invalid programs are refused like their binary form: a missing register.
    let e = edit("rotate %2", "rotate %40");
    assert!(e.contains("invalid program") || e.contains("%40") || e.contains("40"), "{e}");
}
