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
