//! The compiler's approximations: activations, exp, ReLU, inverse square root and reciprocal.

mod approx_common;
use approx_common::{assert_truthful, dense_max};
use polyhe_passes::{
    build_inverse, depth_for_degree, fit_activation, fit_exp, fit_exp_squaring, fit_inv_sqrt, fit_reciprocal, fit_relu,
    remez, Activation, ApproxError, ErrorKind, ExpMethod, FitOptions, Interval, InverseFunction, InverseOptions,
    InverseScheme, ReluMethod, ReluOptions,
};

fn iv(lo: f64, hi: f64) -> Interval {
    Interval::new(lo, hi).unwrap()
}

fn relu(x: f64) -> f64 {
    x.max(0.0)
}

#[test]
fn activations_meet_targets_truthfully_with_plans_at_their_depth() {
    // Ranges like MiniLM's calibrated GELU inputs and typical tanh/sigmoid/erf/exp inputs.
    let cases = [
        (Activation::Gelu, iv(-17.2, 24.6), 1e-2),
        (Activation::Gelu, iv(-6.0, 5.0), 1e-4),
        (Activation::Tanh, iv(-8.0, 8.0), 1e-3),
        (Activation::Sigmoid, iv(-10.0, 10.0), 1e-4),
        (Activation::Erf, iv(-4.0, 4.0), 1e-5),
        (Activation::Exp, iv(-10.0, 2.0), 1e-4),
    ];
    for (act, interval, target) in cases {
        let a = fit_activation(act, interval, &FitOptions::new(target)).unwrap();
        assert!(a.max_error <= target, "{act}: {} > {target}", a.max_error);
        let dense = dense_max(|x| act.eval(x) - a.eval(x), interval, 200_000);
        assert_truthful(act.name(), a.max_error, dense);
        assert_eq!(a.depth, depth_for_degree(a.poly.effective_degree()), "{act}");
        let plan = a.plan();
        assert_eq!(plan.depth(), a.depth, "{act}: plan depth");
        for i in 0..=100 {
            let x = interval.from_unit(-1.0 + i as f64 / 50.0);
            let (p, c) = (plan.eval(x), a.eval(x));
            assert!((p - c).abs() <= 1e-9 * (1.0 + c.abs()), "{act} at {x}: plan {p} vs {c}");
        }
    }
}

#[test]
fn exp_by_squaring_is_minimal_and_exp_choice_takes_the_shallower() {
    let interval = iv(-8.0, 0.0);
    let s = fit_exp_squaring(interval, 1e-3, ErrorKind::Absolute, 16).unwrap();
    assert_eq!(s.depth, s.r, "affine folded, r squarings");
    assert_eq!(s.ct_mults, s.r as usize);
    assert!(s.max_error <= 1e-3);
    let dense = dense_max(|x| x.exp() - s.eval(x), interval, 200_000);
    assert_truthful("exp squaring", s.max_error, dense);
    // One squaring fewer misses the target (minimal r), measured independently.
    let r1 = s.r - 1;
    let n = (1u64 << r1) as f64;
    let fewer = dense_max(|x| x.exp() - (1.0 + x / n).powi(1 << r1), interval, 200_000);
    assert!(fewer > 1e-3, "r = {r1} gives {fewer}");

    let choice = fit_exp(iv(-20.0, 0.0), &FitOptions::new(1e-3), 16).unwrap();
    let (sq, ch) = (choice.squaring.as_ref().unwrap(), choice.chebyshev.as_ref().unwrap());
    let chosen_depth = choice.depth;
    assert_eq!(chosen_depth, sq.depth.min(ch.depth));
    assert_eq!(choice.chosen, if ch.depth < sq.depth { ExpMethod::Chebyshev } else { ExpMethod::Squaring });
    assert_eq!(choice.plan.depth(), chosen_depth);
    assert!(choice.max_error <= 1e-3);
}

#[test]
fn relu_direct_on_narrow_range() {
    let interval = iv(-1.0, 1.0);
    let r = fit_relu(interval, &ReluOptions::new(1e-2)).unwrap();
    assert_eq!(r.chosen, ReluMethod::Direct);
    assert!(r.max_error <= 1e-2);
    let dense = dense_max(|x| relu(x) - r.eval(x), interval, 400_000);
    assert_truthful("relu direct", r.max_error, dense);
    assert_eq!(r.plan.depth(), r.depth);
    // A one-sided range is linear: degree 1, depth 0, exact.
    let pos = fit_relu(iv(0.5, 3.0), &ReluOptions::new(1e-6)).unwrap();
    assert_eq!((pos.chosen, pos.depth), (ReluMethod::Direct, 0));
    assert!(pos.max_error < 1e-12);
}

#[test]
fn relu_composite_on_wide_range() {
    let interval = iv(-50.0, 40.0);
    let r = fit_relu(interval, &ReluOptions::new(1e-2)).unwrap();
    assert_eq!(r.chosen, ReluMethod::Composite, "direct would need degree > 255");
    assert!(r.to_string().starts_with("composite sign degrees ["), "{r}");
    let c = r.composite.as_ref().unwrap();
    assert!(c.max_error <= 1e-2);
    // Depth: the components' depths plus the final x·s product.
    let sum: u32 = c.components.iter().map(|p| depth_for_degree(p.degree())).sum();
    assert_eq!(c.depth, sum + 1, "degrees {:?}", c.degrees());
    assert_eq!(c.plan().depth(), c.depth);
    // Truthful everywhere, including very close to the kink.
    let dense = dense_max(|x| relu(x) - c.eval(x), interval, 400_000);
    assert_truthful("relu composite", c.max_error, dense);
    let near0 = dense_max(|x| relu(x) - c.eval(x), iv(-0.05, 0.05), 100_000);
    assert_truthful("relu composite near 0", c.max_error, near0);
}

#[test]
fn inverse_sqrt_reaches_target_with_precise_depth() {
    // LayerNorm variance ranges (with margin) from the MiniLM study, up to 1:1000.
    for (lo, hi) in [(0.36, 150.0), (1.0, 1000.0), (2.0, 6.0)] {
        let interval = iv(lo, hi);
        let r = fit_inv_sqrt(interval, &InverseOptions::new(1e-3)).unwrap();
        assert!(r.target_met && r.max_error <= 1e-3, "[{lo}, {hi}]: {}", r.max_error);
        let dense = dense_max(|x| (r.eval(x) - 1.0 / x.sqrt()) * x.sqrt(), interval, 200_000);
        assert_truthful("inv sqrt", r.max_error, dense);
        // Depth = guess depth + 2 per Newton step (guess of degree ≥ 2).
        if r.guess.effective_degree() >= 2 {
            assert_eq!(r.depth, r.guess.depth() + 2 * r.steps, "[{lo}, {hi}]");
            assert_eq!(r.ct_mults, r.guess.plan().num_ct_mults() + 3 * r.steps as usize);
        }
        assert_eq!(r.plan().depth(), r.depth);
    }
}

#[test]
fn newton_steps_converge_quadratically_on_their_range() {
    let interval = iv(1.0, 300.0);
    let f = |x: f64| 1.0 / x.sqrt();
    let guess = remez(&f, interval, 7, ErrorKind::Relative).unwrap().poly;
    let mut prev = f64::INFINITY;
    for steps in 0..6 {
        let r = build_inverse(InverseFunction::InvSqrt, InverseScheme::Newton, &guess, steps, 1e-9).unwrap();
        assert_eq!(r.depth, guess.depth() + 2 * steps);
        // e' = −(3/2)e² − e³/2, so the bound 1.5e² + 0.5e³ holds (plus rounding).
        if steps > 0 {
            let bound = 1.5 * prev * prev + 0.5 * prev.powi(3) + 1e-14;
            assert!(r.max_error <= bound, "step {steps}: {} > {bound}", r.max_error);
        }
        prev = r.max_error;
    }
    assert!(prev < 1e-9, "five steps from a degree-7 guess: {prev}");
}

#[test]
fn reciprocal_goldschmidt_and_newton() {
    let interval = iv(0.5, 40.0);
    let f = |x: f64| 1.0 / x;
    let guess = remez(&f, interval, 3, ErrorKind::Relative).unwrap().poly;
    let g = build_inverse(InverseFunction::Reciprocal, InverseScheme::Goldschmidt, &guess, 4, 1e-6).unwrap();
    let n = build_inverse(InverseFunction::Reciprocal, InverseScheme::Newton, &guess, 4, 1e-6).unwrap();
    // Same error e0^(2^k) in exact arithmetic; depths D + 1 + k vs D + 2k.
    assert!((g.max_error - n.max_error).abs() <= 1e-9 + 1e-6 * n.max_error, "{} vs {}", g.max_error, n.max_error);
    assert!(g.max_error <= g.guess_error.powi(16) * 1.0001 + 1e-14);
    assert_eq!(g.depth, guess.depth() + 1 + 4);
    assert_eq!(n.depth, guess.depth() + 2 * 4);

    let r = fit_reciprocal(iv(1e-2, 1.0), &InverseOptions::new(1e-3)).unwrap();
    assert!(r.target_met && r.max_error <= 1e-3);
    let dense = dense_max(|x| r.eval(x) * x - 1.0, iv(1e-2, 1.0), 200_000);
    assert_truthful("reciprocal", r.max_error, dense);
    assert_eq!(r.plan().depth(), r.depth);
}

#[test]
fn reciprocal_flags_ranges_too_wide_for_the_depth_cap() {
    // Softmax row sums spanning many orders of magnitude (MiniLM layer 0: 6e-15 … 1).
    let opts = InverseOptions { max_depth: 10, ..InverseOptions::new(1e-2) };
    let r = fit_reciprocal(iv(1e-6, 1.0), &opts).unwrap();
    assert!(!r.target_met);
    assert!(r.depth <= 10);
    assert!(r.to_string().ends_with("(TARGET NOT MET)"), "{r}");
    assert!(r.max_error > 1e-2);
}

#[test]
fn inverse_rejects_non_positive_intervals() {
    let err = fit_inv_sqrt(iv(-1.0, 4.0), &InverseOptions::new(1e-3)).unwrap_err();
    assert!(matches!(err, ApproxError::NonPositiveInterval { .. }), "{err}");
    let err = fit_reciprocal(iv(0.0, 4.0), &InverseOptions::new(1e-3)).unwrap_err();
    assert!(matches!(err, ApproxError::NonPositiveInterval { .. }), "{err}");
}
