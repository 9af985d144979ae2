//! Chebyshev interpolation, Remez, degree selection and input validation.

mod approx_common;
use approx_common::{assert_truthful, dense_max};
use polyhe_passes::{
    chebyshev_fit, fit, fit_to_target, remez, Activation, ApproxError, Chebyshev, DegreePolicy, ErrorKind, FitMethod,
    FitOptions, Interval, Method,
};

fn iv(lo: f64, hi: f64) -> Interval {
    Interval::new(lo, hi).unwrap()
}

#[test]
fn degenerate_and_nan_intervals_are_errors() {
    for (lo, hi) in [(1.0, 1.0), (2.0, 1.0), (f64::NAN, 1.0), (0.0, f64::NAN), (0.0, f64::INFINITY)] {
        let err = Interval::new(lo, hi).unwrap_err();
        assert!(matches!(err, ApproxError::InvalidInterval { .. }), "{lo}, {hi}: {err}");
    }
}

#[test]
fn bad_targets_degrees_and_functions_are_errors() {
    let f = |x: f64| x.exp();
    for target in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = fit_to_target(&f, iv(-1.0, 1.0), &FitOptions::new(target)).unwrap_err();
        assert!(matches!(err, ApproxError::InvalidTarget { .. }), "{target}: {err}");
    }
    assert!(matches!(Chebyshev::interpolate(f, iv(-1.0, 1.0), 100_000), Err(ApproxError::DegreeTooLarge { .. })));
    assert!(matches!(
        Chebyshev::interpolate(|x: f64| x.ln(), iv(-1.0, 1.0), 8),
        Err(ApproxError::NonFiniteFunction { .. })
    ));
    // Relative error of a function with a zero inside the interval.
    assert!(matches!(
        fit(&|x| x, iv(-1.0, 1.0), 3, Method::Chebyshev, ErrorKind::Relative),
        Err(ApproxError::ZeroForRelativeError { .. })
    ));
    assert!(matches!(Chebyshev::new(iv(0.0, 1.0), vec![]), Err(ApproxError::EmptyCoefficients)));
    assert!(matches!(
        Chebyshev::new(iv(0.0, 1.0), vec![1.0, f64::NAN]),
        Err(ApproxError::NonFiniteCoefficient { index: 1, .. })
    ));
}

#[test]
fn interpolation_is_exact_on_polynomials_and_power_basis_round_trips() {
    let interval = iv(-2.0, 3.0);
    let mono = [0.5, -1.25, 2.0, 0.75]; // 0.5 − 1.25x + 2x² + 0.75x³
    let p = |x: f64| mono.iter().rev().fold(0.0, |acc, c| acc * x + c);
    let cheb = Chebyshev::interpolate(p, interval, 3).unwrap();
    for i in 0..=50 {
        let x = -2.0 + 5.0 * i as f64 / 50.0;
        assert!((cheb.eval(x) - p(x)).abs() < 1e-12, "x = {x}");
    }
    let back = cheb.to_monomial();
    for (a, b) in back.iter().zip(mono) {
        assert!((a - b).abs() < 1e-12, "{back:?} vs {mono:?}");
    }
    let again = Chebyshev::from_monomial(interval, &mono).unwrap();
    for (a, b) in again.coeffs().iter().zip(cheb.coeffs()) {
        assert!((a - b).abs() < 1e-12);
    }
    // The unit-variable power basis: p(t) with t = (2x − 1)/5.
    let unit = cheb.to_monomial_unit();
    let x = 1.7;
    let t = interval.to_unit(x);
    let via_t = unit.iter().rev().fold(0.0, |acc, c| acc * t + c);
    assert!((via_t - p(x)).abs() < 1e-12);
}

#[test]
fn remez_matches_the_known_minimax_error_of_exp() {
    // Best uniform degree-n approximation of e^x on [-1, 1]: error ≈ 1/(2^n (n+1)!) (Bernstein).
    let a = remez(&f64::exp, iv(-1.0, 1.0), 7, ErrorKind::Absolute).unwrap();
    let theory = 1.0 / (128.0 * 40320.0);
    assert!(matches!(a.method, FitMethod::Remez { converged: true }), "{:?}", a.method);
    assert!((a.max_error / theory - 1.0).abs() < 0.05, "{} vs {theory}", a.max_error);
}

#[test]
fn remez_beats_or_equals_chebyshev() {
    let gelu = |x: f64| Activation::Gelu.eval(x);
    let relu = |x: f64| x.max(0.0);
    let tanh = |x: f64| x.tanh();
    let isqrt = |x: f64| 1.0 / x.sqrt();
    type Case<'a> = (&'a str, &'a dyn Fn(f64) -> f64, Interval, ErrorKind, bool);
    let cases: [Case; 5] = [
        ("gelu", &gelu, iv(-20.0, 25.0), ErrorKind::Absolute, true),
        ("relu", &relu, iv(-1.0, 1.0), ErrorKind::Absolute, true),
        ("tanh", &tanh, iv(-8.0, 8.0), ErrorKind::Absolute, true),
        ("exp", &f64::exp, iv(-4.0, 4.0), ErrorKind::Absolute, false),
        ("isqrt", &isqrt, iv(1.0, 100.0), ErrorKind::Relative, true),
    ];
    for (name, f, interval, kind, strictly) in cases {
        for d in [7, 15, 31] {
            let c = chebyshev_fit(f, interval, d, kind).unwrap();
            let r = remez(f, interval, d, kind).unwrap();
            assert!(r.max_error <= c.max_error, "{name} d={d}: remez {} > cheb {}", r.max_error, c.max_error);
            if strictly {
                // Non-smooth or wide-range functions: minimax is markedly better.
                assert!(r.max_error < 0.8 * c.max_error, "{name} d={d}: {} vs {}", r.max_error, c.max_error);
            }
            let dense = dense_max(
                |x| match kind {
                    ErrorKind::Absolute => f(x) - r.eval(x),
                    ErrorKind::Relative => (f(x) - r.eval(x)) / f(x),
                },
                interval,
                200_000,
            );
            assert_truthful(name, r.max_error, dense);
        }
    }
}

#[test]
fn degree_selection_reaches_targets_at_minimal_depth() {
    let gelu = |x: f64| Activation::Gelu.eval(x);
    let interval = iv(-10.0, 12.0);
    for target in [1e-1, 1e-2, 1e-3, 1e-4] {
        let a = fit_to_target(&gelu, interval, &FitOptions::new(target)).unwrap();
        assert!(a.max_error <= target, "{target}: {}", a.max_error);
        let d = a.degree();
        assert!((d + 1).is_power_of_two(), "FullDepth policy gives 2^k − 1, got {d}");
        assert_eq!(a.depth, (d + 1).trailing_zeros());
        // Minimality: the full degree one level shallower misses the target.
        if d > 1 {
            let lower = remez(&gelu, interval, d.div_ceil(2) - 1, ErrorKind::Absolute).unwrap();
            assert!(lower.max_error > target, "{target}: degree {} would do", d.div_ceil(2) - 1);
        }
        let dense = dense_max(|x| gelu(x) - a.eval(x), interval, 200_000);
        assert_truthful("gelu", a.max_error, dense);
        let line = a.to_string();
        assert!(line.contains(&format!("deg {d} depth {} on [-10, 12]: max abs error", a.depth)), "{line}");
    }
}

#[test]
fn smallest_policy_keeps_depth_and_is_minimal_for_exp() {
    let interval = iv(-3.0, 3.0);
    let opts = FitOptions { policy: DegreePolicy::Smallest, ..FitOptions::new(1e-6) };
    let small = fit_to_target(&f64::exp, interval, &opts).unwrap();
    let full = fit_to_target(&f64::exp, interval, &FitOptions::new(1e-6)).unwrap();
    assert_eq!(small.depth, full.depth);
    assert!(small.degree() <= full.degree());
    assert!(small.max_error <= 1e-6);
    let below = remez(&f64::exp, interval, small.degree() - 1, ErrorKind::Absolute).unwrap();
    assert!(below.max_error > 1e-6, "degree {} would do", small.degree() - 1);
}

#[test]
fn unreachable_target_reports_best_error() {
    let relu = |x: f64| x.max(0.0);
    let opts = FitOptions { max_degree: 15, ..FitOptions::new(1e-6) };
    match fit_to_target(&relu, iv(-1.0, 1.0), &opts) {
        Err(ApproxError::TargetNotReached { target, best_error, max_degree }) => {
            assert_eq!((target, max_degree), (1e-6, 15));
            assert!(best_error > 1e-3 && best_error < 0.1, "{best_error}");
        }
        other => panic!("expected TargetNotReached, got {other:?}"),
    }
}
