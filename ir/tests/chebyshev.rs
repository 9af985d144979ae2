//! The polynomial stage's `chebyshev` op: Clenshaw evaluation, depth, and text round trip.

use polyhe_ir::text::{parse, print, PrintOptions};
use polyhe_ir::{interp, DType, Graph, Op, Tensor, TensorType};

#[test]
fn clenshaw_matches_direct_chebyshev_sum() {
    let (lo, hi) = (-3.0, 5.0);
    let coeffs = [0.5, -1.25, 0.75, 0.1, -0.02, 0.003];
    for i in 0..=40 {
        let x = lo + (hi - lo) * i as f64 / 40.0;
        let t: f64 = (2.0 * x - lo - hi) / (hi - lo);
        let direct: f64 = coeffs.iter().enumerate().map(|(k, c)| c * (k as f64 * t.acos()).cos()).sum();
        let got = interp::chebyshev(lo, hi, &coeffs, x);
        assert!((got - direct).abs() < 1e-12, "x={x}: {got} vs {direct}");
    }
    // Outside the interval it is still the polynomial (T_2(t) = 2t² − 1 at t = 3 is 17).
    assert_eq!(interp::chebyshev(-1.0, 1.0, &[0.0, 0.0, 1.0], 3.0), 17.0);
}

#[test]
fn depth_is_ceil_log2_of_degree_plus_one() {
    for (deg, depth) in [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (15, 4), (31, 5), (63, 6), (64, 7)] {
        let op = Op::Chebyshev { lo: 0.0, hi: 1.0, coeffs: vec![1.0; deg + 1] };
        assert_eq!(op.poly_depth(), depth, "degree {deg}");
    }
}

#[test]
fn chebyshev_graph_runs_and_round_trips() {
    let mut g = Graph::new("cheb");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![4]));
    let n =
        g.add_node(Op::Chebyshev { lo: -2.0, hi: 2.0, coeffs: vec![0.1, 0.7, -0.3, 1e-17] }, vec![x], "act").unwrap();
    g.outputs.push(g.result(n));
    polyhe_ir::verify::verify(&g).unwrap();
    let out = interp::run(&g, &[Tensor::float(DType::F32, vec![4], vec![-2.0, -0.5, 1.0, 2.0]).unwrap()]).unwrap();
    let v = out[0].to_f64_vec();
    // t = x/2: 0.1 + 0.7 t − 0.3 (2t² − 1)
    let want = |x: f64| {
        let t = x / 2.0;
        0.1 + 0.7 * t - 0.3 * (2.0 * t * t - 1.0)
    };
    for (got, x) in v.iter().zip([-2.0, -0.5, 1.0, 2.0]) {
        assert!((got - want(x)).abs() < 1e-12);
    }
    let text = print(&g, &PrintOptions::default());
    assert!(text.contains("chebyshev {lo=-2.0, hi=2.0, coeffs=[0.1,0.7,-0.3,1e-17]}"), "{text}");
    assert!(parse(&text).unwrap() == g);
}
