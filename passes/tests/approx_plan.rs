//! Evaluation plans: depth bound, ct×ct count, agreement with Clenshaw.

use polyhe_passes::{depth_for_degree, ApproxError, Chebyshev, EvalPlan, Interval, PlanOp, Reg};

/// Deterministic pseudo-random coefficients decaying like a smooth function's.
fn coeffs(d: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..=d)
        .map(|k| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            // Non-integer, non-zero, decaying slowly so every term matters.
            (u + 0.01) / (1.0 + k as f64).sqrt()
        })
        .collect()
}

#[test]
fn chebyshev_plans_hit_depth_bound_and_match_clenshaw() {
    let iv = Interval::new(-3.0, 5.0).unwrap();
    let mut report = Vec::new();
    for d in (1..=63).chain([127, 255]) {
        let p = Chebyshev::new(iv, coeffs(d, d as u64)).unwrap();
        let plan = p.plan();
        let expect = if d == 1 { 0 } else { depth_for_degree(d) };
        assert_eq!(plan.depth(), expect, "degree {d}:\n{plan}");
        let mut worst = 0.0f64;
        for i in 0..=400 {
            let x = iv.from_unit(-1.0 + 2.0 * i as f64 / 400.0);
            let (a, b) = (plan.eval(x), p.eval(x));
            let scale = p.coeffs().iter().map(|c| c.abs()).sum::<f64>();
            worst = worst.max((a - b).abs() / scale);
        }
        assert!(worst < 1e-11, "degree {d}: plan deviates by {worst}");
        let m = plan.num_ct_mults();
        // BSGS optimum ~ sqrt(2d) + log2(d); allow the tight-chain overhead of log2(d).
        let bound = (2.0 * d as f64).sqrt() + 2.0 * (d as f64).log2() + 1.0;
        assert!((m as f64) <= bound, "degree {d}: {m} ct×ct mults > {bound:.1}");
        report.push((d, m));
    }
    eprintln!("ct mults by degree: {report:?}");
}

#[test]
fn depth_model_charges_non_integer_scalars_and_ct_products() {
    let ops = vec![
        PlanOp::Input,
        PlanOp::Affine { src: Reg(0), scale: 0.3, shift: 1.0 }, // r1: folded upstream, depth 0
        PlanOp::Mul(Reg(1), Reg(1)),                            // r2: depth 1
        PlanOp::MulConst(Reg(2), 2.0),                          // r3: integer, depth 1
        PlanOp::MulConst(Reg(2), 0.5),                          // r4: rescale, depth 2
        PlanOp::Affine { src: Reg(3), scale: 0.5, shift: 0.0 }, // r5: not the input, depth 2
        PlanOp::Add(Reg(4), Reg(1)),                            // r6: max, depth 2
        PlanOp::AddConst(Reg(6), 0.25),                         // r7: depth 2
        PlanOp::Sub(Reg(7), Reg(5)),                            // r8: depth 2
        PlanOp::Const(3.0),                                     // r9: depth 0
        PlanOp::Mul(Reg(8), Reg(9)),                            // r10: ct×ct by the model, depth 3
    ];
    let plan = EvalPlan::new(ops, Reg(10)).unwrap();
    assert_eq!(plan.register_depths(), vec![0, 0, 1, 1, 2, 2, 2, 2, 2, 0, 3]);
    let cost = plan.cost();
    assert_eq!((cost.depth, cost.ct_mults, cost.scalar_mults, cost.ops), (3, 2, 2, 10));
    let x: f64 = 0.7;
    let r1 = 0.3 * x + 1.0;
    let r2 = r1 * r1;
    let expect = ((0.5 * r2 + r1 + 0.25) - 0.5 * (2.0 * r2)) * 3.0;
    assert!((plan.eval(x) - expect).abs() < 1e-15);
    let text = plan.to_string();
    assert!(text.contains("r2 = mul r1, r1  ; depth 1"), "{text}");
    assert!(text.ends_with("return r10"), "{text}");
}

#[test]
fn invalid_plans_are_rejected() {
    let forward = vec![PlanOp::Input, PlanOp::Mul(Reg(0), Reg(2)), PlanOp::Const(1.0)];
    assert_eq!(EvalPlan::new(forward, Reg(1)), Err(ApproxError::PlanForwardRef { op: 1, reg: 2 }));
    let no_input = vec![PlanOp::Const(1.0)];
    assert_eq!(EvalPlan::new(no_input, Reg(0)), Err(ApproxError::PlanInput { op: 0 }));
    let second_input = vec![PlanOp::Input, PlanOp::Input];
    assert_eq!(EvalPlan::new(second_input, Reg(1)), Err(ApproxError::PlanInput { op: 1 }));
    let bad_output = vec![PlanOp::Input];
    assert_eq!(EvalPlan::new(bad_output, Reg(3)), Err(ApproxError::PlanOutput { reg: 3, len: 1 }));
}

#[test]
fn low_degree_and_integer_coefficient_plans() {
    let iv = Interval::new(0.0, 4.0).unwrap();
    // Degree 0: a constant, no ops but the constant.
    let c = Chebyshev::new(iv, vec![2.5]).unwrap().plan();
    assert_eq!((c.depth(), c.num_ct_mults(), c.eval(1.0)), (0, 0, 2.5));
    // Degree 1: affine map of the input, folded upstream.
    let lin = Chebyshev::new(iv, vec![1.0, 0.5]).unwrap();
    let plan = lin.plan();
    assert_eq!((plan.depth(), plan.num_ct_mults()), (0, 0));
    assert!((plan.eval(3.0) - lin.eval(3.0)).abs() < 1e-15);
    // A bare T_4 (integer coefficients) needs no scalar level: depth 2 < ceil(log2 5) = 3.
    let t4 = Chebyshev::new(Interval::unit(), vec![0.0, 0.0, 0.0, 0.0, 1.0]).unwrap().plan();
    assert_eq!(t4.depth(), 2);
    assert!((t4.eval(0.3) - (8.0 * 0.3f64.powi(4) - 8.0 * 0.09 + 1.0)).abs() < 1e-14);
}
