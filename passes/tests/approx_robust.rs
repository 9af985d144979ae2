//! Extreme inputs return errors or flagged results, never panics.

use polyhe_passes::{
    fit, fit_activation, fit_exp, fit_inv_sqrt, fit_reciprocal, fit_relu, remez, Activation, ApproxError, ErrorKind,
    FitOptions, Interval, InverseOptions, Method, ReluOptions,
};

#[test]
fn infinite_width_is_rejected() {
    assert!(matches!(Interval::new(-1e308, 1e308), Err(ApproxError::InvalidInterval { .. })));
}

#[test]
fn extreme_ranges_do_not_panic() {
    // Tiny, huge and far-from-zero intervals.
    for (lo, hi) in [(0.0, 1e-300), (1e6, 1e6 + 1e-6), (-1e150, 1e150), (1e300, 1.5e300)] {
        let iv = Interval::new(lo, hi).unwrap();
        for act in [Activation::Tanh, Activation::Sigmoid, Activation::Gelu] {
            match fit_activation(act, iv, &FitOptions { max_degree: 31, ..FitOptions::new(1e-3) }) {
                Ok(a) => assert!(a.max_error.is_finite() && a.max_error <= 1e-3),
                Err(e) => assert!(
                    matches!(e, ApproxError::TargetNotReached { .. } | ApproxError::NonFiniteFunction { .. }),
                    "{act} on [{lo}, {hi}]: {e}"
                ),
            }
        }
        let _ = remez(&|x: f64| x.abs(), iv, 9, ErrorKind::Absolute);
        let _ = fit(&|x: f64| x.sin(), iv, 5, Method::Chebyshev, ErrorKind::Absolute);
    }
    // exp overflowing on the interval is an error, not a panic.
    let err = fit_exp(Interval::new(0.0, 1000.0).unwrap(), &FitOptions::new(1e-3), 8).unwrap_err();
    assert!(matches!(err, ApproxError::NonFiniteFunction { .. }), "{err}");
}

#[test]
fn absurdly_wide_inverse_ranges_are_flagged() {
    // MiniLM layer-0 softmax row sums: 6e-15 … 1.
    let r = fit_reciprocal(Interval::new(6e-15, 1.0).unwrap(), &InverseOptions::new(1e-2)).unwrap();
    assert!(!r.target_met && r.depth <= 16);
    let s = fit_inv_sqrt(Interval::new(1e-9, 1e3).unwrap(), &InverseOptions::new(1e-3)).unwrap();
    assert!(!s.target_met && s.depth <= 16);
    assert!(s.max_error > 1e-3);
}

#[test]
fn relu_with_unreachable_target_is_an_error() {
    let opts = ReluOptions { max_depth: 6, max_direct_degree: 15, ..ReluOptions::new(1e-6) };
    let err = fit_relu(Interval::new(-100.0, 100.0).unwrap(), &opts).unwrap_err();
    match err {
        ApproxError::TargetNotReached { best_error, .. } => assert!(best_error > 1e-6),
        other => panic!("expected TargetNotReached, got {other}"),
    }
}
