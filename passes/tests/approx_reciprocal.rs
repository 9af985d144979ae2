//! The reciprocal's closed-form polynomial guess and its schedules: the guess is the relative
//! minimax (equioscillating residual of the predicted amplitude, `x·p(x) ∈ (0, 2)`), the selected
//! schedule meets the target on a dense grid with depth `D + k` read off exactly, and no cheaper
//! schedule of the family would have met it. Ratios `hi/lo` from 1e1 to 1e8.

mod approx_common;
use approx_common::assert_truthful;
use polyhe_passes::{
    depth_for_degree, fit_reciprocal, reciprocal_guess, Chebyshev, Interval, InverseOptions, InverseScheme,
};

/// Uniform plus geometric points: on ranges spanning decades a uniform grid misses the bottom ones.
fn dense(iv: Interval, n: usize) -> Vec<f64> {
    let (lo, hi) = (iv.lo(), iv.hi());
    let mut xs: Vec<f64> = (0..=n).map(|i| lo + (hi - lo) * i as f64 / n as f64).collect();
    xs.extend((0..=n).map(|i| lo * (hi / lo).powf(i as f64 / n as f64)));
    xs.retain(|x| iv.contains(*x));
    xs
}

fn opts(target: f64) -> InverseOptions {
    InverseOptions {
        min_guess_degree: 2,
        max_guess_degree: 1022,
        max_depth: 64,
        max_steps: 48,
        ..InverseOptions::new(target)
    }
}

const RATIOS: [f64; 8] = [1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

#[test]
fn guess_is_the_relative_minimax_with_x_p_in_0_2() {
    for ratio in RATIOS {
        let iv = Interval::new(0.5 / ratio, 0.5).unwrap();
        for degree in [2, 14, 126] {
            let g = reciprocal_guess(iv, degree).unwrap();
            assert!(g.bound > 0.0 && g.bound < 1.0, "ratio {ratio} degree {degree}: bound {}", g.bound);
            let mut worst = 0.0f64;
            for x in dense(iv, 10_000) {
                let z = x * g.guess.eval(x);
                assert!(z > 0.0 && z < 2.0, "ratio {ratio} degree {degree}: x·p(x) = {z} at {x}");
                let r = 1.0 - z;
                // The residual series is 1 − x·p(x) (evaluated separately in the circuit).
                assert!((g.residual.eval(x) - r).abs() <= 1e-9, "ratio {ratio} degree {degree} at {x}");
                worst = worst.max(r.abs());
            }
            // Equioscillation with the predicted amplitude: attained (up to grid resolution), never exceeded.
            assert!(worst <= g.bound * (1.0 + 1e-9) + 1e-12, "ratio {ratio} degree {degree}: {worst} > {}", g.bound);
            assert!(worst >= 0.99 * g.bound, "ratio {ratio} degree {degree}: {worst} ≪ {}", g.bound);
            // One coefficient: the residual's depth equals the guess's for degree 2^D − 2.
            assert_eq!(g.residual.effective_degree(), degree + 1);
            if (degree + 2).is_power_of_two() {
                assert_eq!(g.residual.depth(), g.guess.depth());
            }
        }
    }
}

#[test]
fn closed_form_coefficients_are_the_chebyshev_interpolant() {
    // Where a DCT of the values is still accurate, the closed form must agree with it.
    let iv = Interval::new(0.02, 3.0).unwrap();
    for degree in [2, 6, 30, 62] {
        let g = reciprocal_guess(iv, degree).unwrap();
        let c = Chebyshev::interpolate(|x| 1.0 / x, iv, degree).unwrap();
        for (k, (a, b)) in g.guess.coeffs().iter().zip(c.coeffs()).enumerate() {
            assert!((a - b).abs() <= 1e-10 * c.coeffs()[0].abs(), "degree {degree} coefficient {k}: {a} vs {b}");
        }
    }
}

#[test]
fn schedules_meet_the_target_at_the_least_depth_with_exact_accounting() {
    for (ratio, target) in RATIOS.iter().map(|&r| (r, 1e-3)).chain([(1e3, 1e-6)]) {
        let iv = Interval::new(1.0 / ratio, 1.0).unwrap();
        let r = fit_reciprocal(iv, &opts(target)).unwrap();
        let what = format!("ratio {ratio:e} target {target:e}: {r}");
        assert!(r.target_met && r.max_error <= target, "{what}");
        let residual = r.residual.as_ref().unwrap_or_else(|| panic!("{what}: not a fused guess"));
        assert_eq!(r.scheme, InverseScheme::Goldschmidt, "{what}");
        // Independent dense re-measurement of the schedule as emitted (each series by Clenshaw, as the
        // interpreter runs a `chebyshev` op); the evaluation plan computes the same function.
        let emitted = |x: f64| {
            let (mut y, mut e) = (r.guess.eval(x), residual.eval(x));
            for k in 0..r.steps {
                if k > 0 {
                    e *= e;
                }
                y *= 1.0 + e;
            }
            y
        };
        let xs = dense(iv, 10_000);
        let measured = xs.iter().map(|&x| (emitted(x) * x - 1.0).abs()).fold(0.0, f64::max);
        assert_truthful(&what, r.max_error, measured);
        let plan_gap = xs.iter().map(|&x| ((r.eval(x) - emitted(x)) * x).abs()).fold(0.0, f64::max);
        assert!(plan_gap <= 1e-7, "{what}: plan and emitted series differ by {plan_gap:e} relative");
        // Depth D + k and ct×ct count: guess and residual plans, k products and k − 1 squarings.
        let d = depth_for_degree(r.guess.effective_degree());
        assert_eq!(r.depth, d + r.steps, "{what}");
        assert_eq!(r.plan().depth(), r.depth, "{what}");
        let k = r.steps as usize;
        let expected =
            r.guess.plan().num_ct_mults() + if k > 0 { residual.plan().num_ct_mults() + 2 * k - 1 } else { 0 };
        assert_eq!(r.ct_mults, expected, "{what}");
        // No schedule of the family with a smaller depth reaches the target: |c_D|^(2^k) > target
        // for every guess depth D ≤ 10 and k < depth − D.
        for dd in 2..=10u32 {
            let g = reciprocal_guess(iv, (1 << dd) - 2).unwrap();
            for kk in 0..r.depth.saturating_sub(dd) {
                let err = g.bound.powf(2f64.powi(kk as i32));
                assert!(err > target * 0.999, "{what}: guess depth {dd} + {kk} steps would give {err:e}");
            }
        }
    }
}

#[test]
fn converges_below_the_interval_and_up_to_lo_plus_hi() {
    let iv = Interval::new(1e-3, 1.0).unwrap();
    let r = fit_reciprocal(iv, &opts(1e-3)).unwrap();
    let rel = |x: f64| (r.eval(x) * x - 1.0).abs();
    // Below lo the residual is in (0, 1): the steps still converge, only less far.
    for x in [5e-4, 1e-4, 1e-5] {
        assert!(rel(x) < 1.0, "x = {x}: {}", rel(x));
    }
    // Just above hi accuracy degrades; above lo + hi the residual leaves (−1, 1) and the steps diverge.
    let g = r.residual.as_ref().unwrap();
    assert!(g.eval(1.0005).abs() < 1.0);
    assert!(g.eval(1.002).abs() > 1.0);
}

#[test]
fn ratio_1e13_is_measured_truthfully() {
    // MiniLM layer 0's softmax row sums with the compiler's margin and headroom: ratio ~8e12, where
    // the guess's own rounding (cancellation near the top of the range) would dominate a fused residual.
    let iv = Interval::new(2.487e-12, 20.8).unwrap();
    let r = fit_reciprocal(iv, &opts(1e-3)).unwrap();
    assert!(r.target_met, "{r}");
    // Fusing would amplify the guess's rounding (see `make_guess`): the residual comes from the guess.
    assert!(r.residual.is_none(), "{r}");
    assert_eq!(r.depth, depth_for_degree(r.guess.effective_degree()) + 1 + r.steps, "{r}");
    let emitted = |x: f64| {
        let (mut y, mut e) = (r.guess.eval(x), 1.0 - x * r.guess.eval(x));
        for k in 0..r.steps {
            if k > 0 {
                e *= e;
            }
            y *= 1.0 + e;
        }
        y
    };
    let measured = dense(iv, 50_000).into_iter().map(|x| (emitted(x) * x - 1.0).abs()).fold(0.0, f64::max);
    assert_truthful(&r.to_string(), r.max_error, measured);
}
