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
        constants: vec![vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 1.0, 0.5, 0.0]],
        insts,
        outputs: vec![Port { name: "y".into(), layout: lay(vec![4]), regs: vec![6] }],
        bootstrap: None,
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
    prog.constants.push(sparse);
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
        bootstrap: Some(ProgramBootstrap { config, output_scale: out_scale }),
    };
    (prog, ctx)
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

    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let keys = ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
    let ev = Evaluator::new(
        &ctx,
        keys.evaluation_keys_with_rng(&prog.rotation_steps(), prog.needs_conjugation(), &mut rng).unwrap(),
    )
    .unwrap();
    let slots = prog.params.slots();
    let v = [0.5, -0.25, 0.75, -0.9, 0.1, 0.3, -0.6, 0.2];
    let x: Vec<f64> = (0..slots).map(|j| v[j % 8]).collect();
    let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
    let (out, stats) = execute_with_stats(&prog, &ev, cts).unwrap();
    assert_eq!(stats.bootstraps, 1);
    let y = decrypt_outputs(&prog, &ctx, &keys, &out).unwrap();
    let err = y[0].iter().zip(&x).map(|(g, a)| (g - a * a * a).abs()).fold(0.0, f64::max);
    assert!(err < 1e-4, "max error {err:e}");
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
        constants: vec![vec![1.0, -2.0, 0.5, 3.0], vec![0.25, 1.0, -1.0, 2.0]],
        insts,
        outputs: vec![Port { name: "y".into(), layout: lay, regs: vec![out_reg] }],
        bootstrap: None,
    };
    prog.validate().unwrap();
    let keys = ClientKeys::generate(&ctx).unwrap();
    let ev = Evaluator::new(&ctx, keys.evaluation_keys(&prog.rotation_steps(), false).unwrap()).unwrap();
    let x = vec![0.5, -1.0, 1.5, 2.0];
    let cts = encrypt_inputs(&prog, &ctx, &keys.encryptor(), std::slice::from_ref(&x)).unwrap();
    let (out, stats) = execute_with_stats(&prog, &ev, cts.clone()).unwrap();
    assert_eq!((stats.rotations, stats.hoists, stats.plain_mults), (2, 1, 3));

    let enc = crate::Encoder::new(&ctx);
    let p0 = enc.encode(&prog.constants[0], top, pt).unwrap();
    let p1 = enc.encode(&prog.constants[1], top, pt).unwrap();
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
