//! Evaluation plans: depth bound, ct×ct count, agreement with Clenshaw.

use polyhe_passes::{depth_for_degree, Chebyshev, EvalPlan, Interval, PlanOp, Reg};

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
