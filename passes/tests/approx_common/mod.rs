// Shared helpers for the approx tests (included with `mod`, not a test target itself).
#![allow(dead_code)]

use polyhe_passes::Interval;

/// Max of |err(x)| on a uniform grid of `n + 1` points: an independent, denser re-measurement.
pub fn dense_max(err: impl Fn(f64) -> f64, iv: Interval, n: usize) -> f64 {
    (0..=n).map(|i| err(iv.lo() + iv.width() * i as f64 / n as f64).abs()).fold(0.0, f64::max)
}

/// `reported` is not an underestimate of `measured` (allowing float noise).
pub fn assert_truthful(what: &str, reported: f64, measured: f64) {
    assert!(
        measured <= reported * (1.0 + 1e-6) + 1e-14,
        "{what}: reported max error {reported:e} but a denser grid finds {measured:e}"
    );
}
