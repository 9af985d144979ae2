//! Unit-level tests of the poly-stage passes on small text-form graphs: soundness by execution
//! (reference vs poly on random inputs from the calibration distribution), masked per-head softmax,
//! batch_norm folding, depth analysis, out-of-range counting, the poly-stage verifier, user errors,
//! calibration warnings and the report.

mod poly_common;

use poly_common::*;
use polyhe_ir::{interp, text::parse, DType, Graph, Op, Tensor};
use polyhe_passes::{
    analyze_depth, calibrate, compile_to_poly, fold_affine, run_poly, verify_poly_stage, CalibDetail, Calibration,
    NodeCalibration, PassError, PolyOptions, Range, SoftmaxCenter, SoftmaxMax,
};

/// Deterministic uniform samples in [lo, hi).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        let n = shape.iter().product();
        Tensor::float(DType::F32, shape.to_vec(), (0..n).map(|_| self.next(lo, hi)).collect()).unwrap()
    }
}

fn opts() -> PolyOptions {
    PolyOptions { verify: true, ..PolyOptions::default() }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec().iter().zip(b.to_f64_vec()).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

const MIX: &str = r#"
graph "mix" (v0: f32[4,3,8] "x", v1: f32[4,3,8] "d") {
  v2: f32[8] = const c0 @"gamma"
  v3: f32[8] = const c1 @"beta"
  v4: f32[4,3,8] = layer_norm {axis=2, epsilon=1e-5} v0, v2, v3 @"ln"
  v5: f32[4,3,8] = gelu {approx=erf} v4 @"gelu"
  v6: f32[4,3,8] = softmax {axis=2} v5 @"sm"
  v7: f32[4,3,8] = tanh v0 @"tanh"
  v8: f32[4,3,8] = sigmoid v0 @"sig"
  v9: f32[4,3,8] = relu v0 @"relu"
  v10: f32[4,3,8] = exp v7 @"exp"
  v11: f32[4,3,8] = div v9, v1 @"div"
  v12: f32[4,3,8] = sqrt v1 @"sqrt"
  v13: f32[4,3,8] = erf v0 @"erf"
  v14: f32[4,3,8] = add v6, v7 @"a1"
  v15: f32[4,3,8] = add v14, v8 @"a2"
  v16: f32[4,3,8] = add v15, v10 @"a3"
  v17: f32[4,3,8] = add v16, v11 @"a4"
  v18: f32[4,3,8] = add v17, v12 @"a5"
  v19: f32[4,3,8] = add v18, v13 @"a6"
} -> (v19)

const c0: f32[8] = [1.0, 0.5, 1.5, 1.0, 0.75, 1.25, 1.0, 2.0]
const c1: f32[8] = [0.0, 0.25, -0.25, 0.5, 0.0, -0.5, 0.125, 0.0]
"#;

fn mix_batch(rng: &mut Lcg) -> Vec<Tensor> {
    vec![rng.tensor(&[4, 3, 8], -3.0, 3.0), rng.tensor(&[4, 3, 8], 1.0, 3.0)]
}

#[test]
fn soundness_by_execution_on_random_inputs_inside_the_calibrated_range() {
    let g = parse(MIX).unwrap();
    let mut rng = Lcg(7);
    let batches: Vec<Vec<Tensor>> = (0..32).map(|_| mix_batch(&mut rng)).collect();
    let cal = calibrate(&g, &batches).unwrap();
    let res = compile_to_poly(&g, &cal, &opts()).unwrap();
    for (_, d) in res.graph.nodes.iter() {
        assert!(
            !matches!(
                d.op,
                Op::Softmax { .. } | Op::LayerNorm { .. } | Op::Gelu(_) | Op::Tanh | Op::Div | Op::Sqrt | Op::Relu
            ),
            "{} left in the poly graph",
            d.op.name()
        );
    }
    for _ in 0..5 {
        let x = mix_batch(&mut rng);
        let want = interp::run(&g, &x).unwrap();
        let (got, oor) = run_poly(&res.graph, &x).unwrap();
        let err = max_abs(&got[0], &want[0]);
        assert!(err < 2e-2, "poly vs reference: max abs error {err}\n{}", res.report);
        assert_eq!(oor.total_outside(), 0, "{oor}");
    }
    // Every op got a record with a measured error within its target.
    let parts: Vec<&str> = res.report.approximations.iter().map(|a| a.part.as_str()).collect();
    for p in ["1/sqrt(var+eps)", "gelu", "exp", "1/sum", "tanh", "sigmoid", "relu", "1/divisor", "sqrt", "erf"] {
        assert!(parts.contains(&p), "no record for {p}: {parts:?}");
    }
}

const ATTN: &str = r#"
graph "attn" (v0: f32[2,2,4,4] "s", v1: i64[2,1,1,4] "mask") {
  v2: f32[2,1,1,4] = cast {to=f32} v1 @"cast"
  v3: f32[] = const c0 @"one"
  v4: f32[2,1,1,4] = sub v3, v2 @"inv"
  v5: f32[] = const c1 @"big"
  v6: f32[2,1,1,4] = mul v4, v5 @"bias"
  v7: f32[2,2,4,4] = add v0, v6 @"masked"
  v8: f32[2,2,4,4] = softmax {axis=3} v7 @"sm"
} -> (v8)

const c0: f32[] = [1.0]
const c1: f32[] = [-10000.0]
"#;

#[test]
fn masked_softmax_uses_per_head_shifts_and_a_plaintext_mask() {
    let g = parse(ATTN).unwrap();
    let mut rng = Lcg(11);
    let mask = Tensor::int(DType::I64, vec![2, 1, 1, 4], vec![1, 1, 1, 1, 1, 1, 0, 0]).unwrap();
    // Head 1 has larger scores than head 0: per-head shifts differ.
    let batch = |rng: &mut Lcg| {
        let mut s = rng.tensor(&[2, 2, 4, 4], -2.0, 2.0);
        if let polyhe_ir::Data::Float(v) = &mut s.data {
            for (i, x) in v.iter_mut().enumerate() {
                if (i / 16) % 2 == 1 {
                    *x += 4.0;
                }
            }
        }
        vec![s, mask.clone()]
    };
    let cal = calibrate(&g, &[batch(&mut rng), batch(&mut rng)]).unwrap();
    let CalibDetail::Softmax(s) = &cal.get("sm").unwrap().detail else { panic!("no softmax calibration") };
    assert!(s.masked);
    assert_eq!(s.shift_axis, Some(1));
    for form in [&s.plain, &s.centered] {
        assert_eq!(form.shifts.len(), 2);
        assert!(form.row_sum.max <= 1.0 && form.row_sum.min > 0.0);
    }
    assert!(s.plain.shifts[1] > s.plain.shifts[0] + 2.0, "{:?}", s.plain.shifts);
    let res = compile_to_poly(&g, &cal, &opts()).unwrap();
    // The mask path stays plaintext: an `exp` on the plaintext bias remains, and verifies.
    assert!(res.graph.nodes.values().any(|d| d.op == Op::Exp));
    verify_poly_stage(&res.graph).unwrap();
    let x = batch(&mut rng);
    let want = interp::run(&g, &x).unwrap();
    let (got, _) = run_poly(&res.graph, &x).unwrap();
    let err = max_abs(&got[0], &want[0]);
    assert!(err < 5e-3, "masked softmax error {err}");
    // Masked columns get (numerically) zero probability.
    let v = got[0].to_f64_vec();
    for row in 0..8 {
        let base = 32 + row * 4;
        assert!(v[base + 2].abs() < 1e-12 && v[base + 3].abs() < 1e-12);
    }
}

/// With a mask, the row max is over the unmasked positions: masked columns scoring 20 above the
/// rest must not become the max (the rows would then sum to e^−20 and the division drown).
#[test]
fn row_max_softmax_ignores_masked_positions() {
    let g = parse(ATTN).unwrap();
    let mask = Tensor::int(DType::I64, vec![2, 1, 1, 4], vec![1, 1, 1, 1, 1, 1, 0, 0]).unwrap();
    let batch = |rng: &mut Lcg| {
        let mut s = rng.tensor(&[2, 2, 4, 4], -2.0, 2.0);
        if let polyhe_ir::Data::Float(v) = &mut s.data {
            // batch 1, columns 2 and 3: masked, and far above the rest
            v.iter_mut().enumerate().filter(|(i, _)| i / 32 == 1 && i % 4 >= 2).for_each(|(_, x)| *x += 20.0);
        }
        vec![s, mask.clone()]
    };
    let mut rng = Lcg(3);
    let cal = calibrate(&g, &[batch(&mut rng), batch(&mut rng)]).unwrap();
    let CalibDetail::Softmax(s) = &cal.get("sm").unwrap().detail else { panic!("no softmax calibration") };
    let maxed = s.maxed.as_ref().unwrap();
    // Minus the unmasked max, every row sums to between 1 and L (times e^−shift).
    assert!(maxed.ratio() <= 4.0 * (1.0 + 1e-9), "{}", maxed.ratio());
    let res = compile_to_poly(&g, &cal, &PolyOptions { softmax_max: SoftmaxMax::Always, ..opts() }).unwrap();
    assert!(res.report.approximations.iter().any(|a| a.part == "row max"));
    verify_poly_stage(&res.graph).unwrap();
    let x = batch(&mut rng);
    let want = interp::run(&g, &x).unwrap();
    let (got, oor) = run_poly(&res.graph, &x).unwrap();
    assert_eq!(oor.total_outside(), 0, "{oor}");
    let err = max_abs(&got[0], &want[0]);
    assert!(err < 5e-3, "masked row-max softmax error {err}");
}

const SCORES: &str = r#"
graph "scores" (v0: f32[2,2,8,8] "s") {
  v1: f32[2,2,8,8] = softmax {axis=3} v0 @"sm"
} -> (v1)
"#;

/// Scores whose rows sit at very different offsets (as a pretrained model's do: a query's norm
/// scales its whole row) with a small spread inside each row.
fn offset_rows(rng: &mut Lcg) -> Vec<Tensor> {
    let mut s = rng.tensor(&[2, 2, 8, 8], -1.5, 1.5);
    if let polyhe_ir::Data::Float(v) = &mut s.data {
        for row in v.chunks_mut(8) {
            let offset = rng.next(-6.0, 6.0);
            row.iter_mut().for_each(|x| *x += offset);
        }
    }
    vec![s]
}

#[test]
fn centered_softmax_rows_are_exact_and_need_less_depth() {
    let g = parse(SCORES).unwrap();
    let mut rng = Lcg(11);
    let batches: Vec<Vec<Tensor>> = (0..16).map(|_| offset_rows(&mut rng)).collect();
    let cal = calibrate(&g, &batches).unwrap();
    let CalibDetail::Softmax(s) = &cal.get("sm").unwrap().detail else { panic!("no softmax calibration") };
    assert_eq!(s.len, 8);
    // Row offsets span 12: uncentered row sums span e^12-ish, centered ones only the in-row spread.
    assert!(s.plain.ratio() > 1e4, "{}", s.plain.ratio());
    assert!(s.centered.ratio() < 30.0, "{}", s.centered.ratio());
    // Jensen: a centered row of length L sums to at least L·exp(−shift).
    let top = s.centered.shifts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(s.centered.row_sum.min >= 8.0 * (-top).exp() * (1.0 - 1e-12));
    let run = |center: SoftmaxCenter| {
        let o = PolyOptions { softmax_center: center, softmax_max: SoftmaxMax::Never, ..opts() };
        let res = compile_to_poly(&g, &cal, &o).unwrap();
        let x = offset_rows(&mut Lcg(99));
        let want = interp::run(&g, &x).unwrap();
        let (got, oor) = run_poly(&res.graph, &x).unwrap();
        let err = max_abs(&got[0], &want[0]);
        assert!(err < 5e-3, "{center:?}: softmax error {err}\n{}", res.report);
        assert_eq!(oor.total_outside(), 0, "{oor}");
        let centered = res.report.approximations.iter().any(|a| a.method.contains("row mean"));
        (res.report.depth.total_depth, centered)
    };
    let (plain_depth, plain_centered) = run(SoftmaxCenter::Never);
    let (centered_depth, centered) = run(SoftmaxCenter::Always);
    assert!(!plain_centered && centered);
    assert!(centered_depth + 2 <= plain_depth, "centered {centered_depth}, plain {plain_depth}");
    // Auto takes the shallower form.
    assert_eq!(run(SoftmaxCenter::Auto), (centered_depth, true));
}

const SCORES7: &str = r#"
graph "scores7" (v0: f32[2,2,7,7] "s") {
  v1: f32[2,2,7,7] = softmax {axis=3} v0 @"sm"
} -> (v1)
"#;

/// Rows of length 7 at offsets ±6, each with one score 0 to 30 above the rest (as in a pretrained
/// model's first layer, where some tokens attend to one other and some to all): neither the plain
/// nor the centered form keeps the row sums within a ratio an encrypted division resolves.
fn dominated_rows(rng: &mut Lcg) -> Vec<Tensor> {
    let mut s = rng.tensor(&[2, 2, 7, 7], -1.5, 1.5);
    if let polyhe_ir::Data::Float(v) = &mut s.data {
        for row in v.chunks_mut(7) {
            let offset = rng.next(-6.0, 6.0);
            let top = (rng.next(0.0, 7.0) as usize).min(6);
            row.iter_mut().for_each(|x| *x += offset);
            row[top] += rng.next(0.0, 30.0);
        }
    }
    vec![s]
}

#[test]
fn row_max_softmax_is_exact_where_row_sums_span_too_much() {
    let g = parse(SCORES7).unwrap();
    let mut rng = Lcg(5);
    let batches: Vec<Vec<Tensor>> = (0..16).map(|_| dominated_rows(&mut rng)).collect();
    let cal = calibrate(&g, &batches).unwrap();
    let CalibDetail::Softmax(s) = &cal.get("sm").unwrap().detail else { panic!("no softmax calibration") };
    let maxed = s.maxed.as_ref().unwrap();
    assert!(s.plain.ratio() > 1e6 && s.centered.ratio() > 1e6, "{} {}", s.plain.ratio(), s.centered.ratio());
    // Minus the row max, a row sums to between 1 and L (times e^−shift).
    assert!(maxed.ratio() <= 7.0 * (1.0 + 1e-9), "{}", maxed.ratio());
    assert!(s.row_spread.unwrap().max < 30.0 + 3.0 + 1e-9);
    let run = |max: SoftmaxMax| {
        let res = compile_to_poly(&g, &cal, &PolyOptions { softmax_max: max, ..opts() }).unwrap();
        let x = dominated_rows(&mut Lcg(77));
        let want = interp::run(&g, &x).unwrap();
        let (got, oor) = run_poly(&res.graph, &x).unwrap();
        assert_eq!(oor.total_outside(), 0, "{oor}");
        let rec = res.report.approximations.iter().find(|a| a.part == "row max").cloned();
        let div = res.report.approximations.iter().find(|a| a.part == "1/sum").unwrap();
        (max_abs(&got[0], &want[0]), rec, div.interval[1] / div.interval[0])
    };
    // Auto takes the row max: the others' row sums span more than UNSAFE_ROW_SUM_RATIO.
    let (err, rec, ratio) = run(SoftmaxMax::Auto);
    let rec = rec.expect("auto took the row max");
    assert!(err < 5e-3, "softmax error {err}");
    // Three rounds for 7 positions (an odd one waits a round), within the error budget.
    assert!(rec.method.starts_with("tournament of 3 rounds"), "{}", rec.method);
    assert!(rec.max_error <= 1.0 && rec.target_met, "{rec:?}");
    // (the interval adds the margin and the reciprocal's headroom above the calibrated sums)
    assert!(ratio < 1e3, "1/sum still spans {ratio}");
    let (_, none, plain_ratio) = run(SoftmaxMax::Never);
    assert!(none.is_none() && plain_ratio > 1e6, "{plain_ratio}");
}

#[test]
fn fold_affine_turns_batch_norm_into_mul_add_with_the_same_function() {
    let src = r#"
graph "bn" (v0: f32[2,3,2,2] "x") {
  v1: f32[3] = const c0 @"scale"
  v2: f32[3] = const c1 @"bias"
  v3: f32[3] = const c2 @"mean"
  v4: f32[3] = const c3 @"var"
  v5: f32[2,3,2,2] = batch_norm {epsilon=0.001} v0, v1, v2, v3, v4 @"bn"
} -> (v5)

const c0: f32[3] = [1.0, 2.0, 0.5]
const c1: f32[3] = [0.0, -1.0, 0.25]
const c2: f32[3] = [0.5, 0.0, -0.5]
const c3: f32[3] = [1.0, 4.0, 0.25]
"#;
    let g = parse(src).unwrap();
    let f = fold_affine(&g).unwrap();
    polyhe_ir::verify::verify(&f).unwrap();
    assert!(!f.nodes.values().any(|d| matches!(d.op, Op::BatchNorm { .. })));
    let x = Lcg(3).tensor(&[2, 3, 2, 2], -2.0, 2.0);
    let a = interp::run(&g, std::slice::from_ref(&x)).unwrap();
    let b = interp::run(&f, &[x]).unwrap();
    assert!(max_abs(&a[0], &b[0]) < 1e-12);
    verify_poly_stage(&f).unwrap();
}

#[test]
fn depth_analysis_counts_levels_and_finds_the_critical_path() {
    let src = r#"
graph "depth" (v0: f32[4] "x", v1: i64[4] "ids") {
  v2: f32[4] = mul v0, v0 @"sq"
  v3: f32[] = const c0 @"two"
  v4: f32[4] = mul v2, v3 @"times2"
  v5: f32[] = const c1 @"half"
  v6: f32[4] = mul v4, v5 @"halved"
  v7: f32[4] = chebyshev {lo=-1.0, hi=1.0, coeffs=[0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]} v6 @"p7"
  v8: f32[4] = add v7, v0 @"add"
  v9: f32[4] = cast {to=f32} v1 @"plain"
  v10: f32[4] = mul v8, v9 @"by_plain"
  v11: f32[1] = reduce_mean {axes=[0], keepdims=true} v10 @"mean"
} -> (v11)

const c0: f32[] = [2.0]
const c1: f32[] = [0.5]
"#;
    let g = parse(src).unwrap();
    let d = analyze_depth(&g);
    // sq +1, times2 +0 (integer), halved +1, p7 +3, by_plain +1, mean +1.
    assert_eq!(d.total_depth, 7, "{d:?}");
    let path: Vec<(&str, u32)> = d.critical_path.iter().map(|s| (s.node.as_str(), s.levels)).collect();
    assert_eq!(path, vec![("sq", 1), ("halved", 1), ("p7", 3), ("by_plain", 1), ("mean", 1)]);
    assert!(d.ct_mult_ops > 3, "sq and the degree-7 plan's products: {}", d.ct_mult_ops);
    assert_eq!(d.plaintext_nodes, 1);
    assert!(d.non_polynomial.is_empty());
}

#[test]
fn out_of_range_inputs_are_counted_per_chebyshev_node() {
    let s = shipped(&models_dir().join("encoder"));
    let cal = calibrate(&s.calib_graph, std::slice::from_ref(&s.calib)).unwrap();
    let res = compile_to_poly(&s.graph, &cal, &opts()).unwrap();
    let (_, inside) = run_poly(&res.graph, &s.inputs).unwrap();
    assert!(!inside.nodes.is_empty());
    assert_eq!(inside.total_outside(), 0, "{inside}");
    let mut far = s.inputs.clone();
    if let polyhe_ir::Data::Float(v) = &mut far[0].data {
        v.iter_mut().for_each(|x| *x *= 25.0);
    }
    let (_, oor) = run_poly(&res.graph, &far).unwrap();
    assert!(oor.total_outside() > 0, "{oor}");
    let (name, worst) = oor.offenders()[0];
    assert!(worst.outside > 0 && worst.total >= worst.outside && name.contains('/'));
    assert!(worst.min_seen < worst.lo || worst.max_seen > worst.hi || worst.non_finite > 0, "{oor}");
}

#[test]
fn poly_stage_verifier_rejects_a_leftover_softmax_but_not_a_plaintext_one() {
    let enc = parse(
        r#"
graph "g" (v0: f32[2,4] "x") {
  v1: f32[2,4] = softmax {axis=1} v0 @"attn_softmax"
} -> (v1)
"#,
    )
    .unwrap();
    match verify_poly_stage(&enc) {
        Err(PassError::NotPolynomial { node, op }) => {
            assert_eq!(node, "attn_softmax");
            assert_eq!(op, "softmax");
        }
        other => panic!("expected NotPolynomial, got {other:?}"),
    }
    let plain = parse(
        r#"
graph "g" (v0: i64[2,4] "ids") {
  v1: f32[2,4] = cast {to=f32} v0 @"c"
  v2: f32[2,4] = softmax {axis=1} v1 @"client_softmax"
} -> (v2)
"#,
    )
    .unwrap();
    verify_poly_stage(&plain).unwrap();
}

#[test]
fn user_errors_name_the_node() {
    let g = parse(MIX).unwrap();
    match compile_to_poly(&g, &Calibration::default(), &opts()) {
        Err(PassError::MissingCalibration { node, .. }) => assert_eq!(node, "ln"),
        other => panic!("expected MissingCalibration, got {other:?}"),
    }
    let g: Graph = parse(
        r#"
graph "g" (v0: f32[4] "x", v1: f32[4] "y") {
  v2: f32[4] = max v0, v1 @"mx"
  v3: f32[4] = log v2 @"lg"
  v4: f32[4] = floor v3 @"fl"
} -> (v4)
"#,
    )
    .unwrap();
    let cal = calibrate(&g, &[vec![Lcg(1).tensor(&[4], 1.0, 2.0), Lcg(2).tensor(&[4], 1.0, 2.0)]]).unwrap();
    match compile_to_poly(&g, &cal, &opts()) {
        Err(PassError::Unsupported(list)) => {
            let nodes: Vec<&str> = list.iter().map(|u| u.node.as_str()).collect();
            assert_eq!(nodes, vec!["mx", "lg", "fl"], "every unsupported op is reported");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // A reciprocal over a range containing 0 cannot be approximated.
    let g = parse(
        r#"
graph "g" (v0: f32[4] "x") {
  v1: f32[4] = reciprocal v0 @"rcp"
} -> (v1)
"#,
    )
    .unwrap();
    let cal = calibrate(&g, &[vec![Lcg(5).tensor(&[4], -1.0, 1.0)]]).unwrap();
    assert!(cal.warnings().iter().any(|w| w.node == "rcp"));
    match compile_to_poly(&g, &cal, &opts()) {
        Err(PassError::RangeTooWide { node, .. }) => assert_eq!(node, "rcp"),
        other => panic!("expected RangeTooWide, got {other:?}"),
    }
}

#[test]
fn calibration_warnings_flag_wide_ranges_only() {
    let range = |min: f64, max: f64, p_lo: f64, p_hi: f64| Range { min, max, p_lo, p_hi, count: 1000 };
    let mut cal = Calibration::default();
    cal.nodes.insert(
        "wide_gelu".into(),
        NodeCalibration { op: "gelu".into(), input: range(-17.0, 24.0, -2.5, 2.7), detail: CalibDetail::Elementwise },
    );
    cal.nodes.insert(
        "narrow_gelu".into(),
        NodeCalibration { op: "gelu".into(), input: range(-4.0, 4.0, -2.5, 2.7), detail: CalibDetail::Elementwise },
    );
    cal.nodes.insert(
        "ln".into(),
        NodeCalibration {
            op: "layer_norm".into(),
            input: range(-5.0, 5.0, -3.0, 3.0),
            detail: CalibDetail::LayerNorm { var_eps: range(0.01, 300.0, 0.1, 200.0) },
        },
    );
    let w = cal.warnings();
    let nodes: Vec<&str> = w.iter().map(|w| w.node.as_str()).collect();
    assert_eq!(nodes, vec!["ln", "wide_gelu"]);
    assert!(w[1].message.contains("outliers"), "{}", w[1].message);
}

#[test]
fn calibration_is_deterministic_and_keyed_by_node_name() {
    let g = parse(MIX).unwrap();
    let mut rng = Lcg(9);
    let batches: Vec<Vec<Tensor>> = (0..2).map(|_| mix_batch(&mut rng)).collect();
    let a = calibrate(&g, &batches).unwrap();
    let b = calibrate(&g, &batches).unwrap();
    assert_eq!(a, b);
    let keys: Vec<&str> = a.nodes.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["div", "erf", "exp", "gelu", "ln", "relu", "sig", "sm", "sqrt", "tanh"]);
    let r = a.get("tanh").unwrap().input;
    assert!(r.min <= r.p_lo && r.p_lo <= r.p_hi && r.p_hi <= r.max && r.count == 2 * 96);
    // A batch that does not fit the graph is a calibration error, not a panic.
    match calibrate(&g, &[vec![Lcg(1).tensor(&[4, 3, 8], 0.0, 1.0)]]) {
        Err(PassError::BadCalibration { batch: 0, .. }) => {}
        other => panic!("expected BadCalibration, got {other:?}"),
    }
}

#[test]
fn report_serializes_to_json_and_prints_a_table() {
    let g = parse(MIX).unwrap();
    let mut rng = Lcg(4);
    let cal = calibrate(&g, &[mix_batch(&mut rng)]).unwrap();
    let res = compile_to_poly(&g, &cal, &opts()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&res.report.to_json()).unwrap();
    for key in ["approximations", "depth", "warnings", "egraph", "timings", "depth_by_layer"] {
        assert!(json.get(key).is_some(), "report.json lacks `{key}`");
    }
    assert_eq!(json["depth"]["total_depth"].as_u64().unwrap(), u64::from(res.report.depth.total_depth));
    let table = res.report.to_string();
    assert!(table.contains("total multiplicative depth") && table.contains("gelu"));
    // The depth recorded per approximation is the depth of the emitted subgraph.
    for a in &res.report.approximations {
        assert!(a.depth >= 1 || a.degree <= 1, "{a:?}");
    }
}

#[test]
fn pow_clip_and_sigma_attention_replacements_are_sound() {
    let src = r#"
graph "misc" (v0: f32[2,2,4,4] "s", v1: f32[2,2,4,4] "p") {
  v2: f32[] = const c0 @"two"
  v3: f32[2,2,4,4] = pow v0, v2 @"square"
  v4: f32[] = const c1 @"three"
  v5: f32[2,2,4,4] = pow v0, v4 @"cube"
  v6: f32[] = const c2 @"root"
  v7: f32[2,2,4,4] = pow v1, v6 @"pow_half"
  v8: f32[2,2,4,4] = clip {min=1e-12} v1 @"eps_clamp"
  v9: f32[2,2,4,4] = clip {min=-1.0, max=1.0} v0 @"hard_clip"
  v10: f32[2,2,4,4] = softmax {axis=3} v0 @"sm"
  v11: f32[2,2,4,4] = add v3, v5 @"a1"
  v12: f32[2,2,4,4] = add v11, v7 @"a2"
  v13: f32[2,2,4,4] = add v12, v8 @"a3"
  v14: f32[2,2,4,4] = add v13, v9 @"a4"
  v15: f32[2,2,4,4] = add v14, v10 @"a5"
} -> (v15)

const c0: f32[] = [2.0]
const c1: f32[] = [3.0]
const c2: f32[] = [0.5]
"#;
    let g = parse(src).unwrap();
    let mut rng = Lcg(21);
    let batch = |rng: &mut Lcg| vec![rng.tensor(&[2, 2, 4, 4], -2.0, 2.0), rng.tensor(&[2, 2, 4, 4], 0.5, 4.0)];
    let batches: Vec<Vec<Tensor>> = (0..16).map(|_| batch(&mut rng)).collect();
    let cal = calibrate(&g, &batches).unwrap();
    let res = compile_to_poly(&g, &cal, &opts()).unwrap();
    // Integer powers are products, the inactive clamp disappears, the active clip is a polynomial.
    let parts: Vec<&str> = res.report.approximations.iter().map(|a| a.node.as_str()).collect();
    assert!(!parts.contains(&"square") && !parts.contains(&"cube") && !parts.contains(&"eps_clamp"), "{parts:?}");
    assert!(parts.contains(&"pow_half") && parts.contains(&"hard_clip"), "{parts:?}");
    let x = batch(&mut rng);
    let want = interp::run(&g, &x).unwrap();
    let (got, _) = run_poly(&res.graph, &x).unwrap();
    // The hard clip's kinks dominate the error (a polynomial cannot follow them exactly).
    assert!(max_abs(&got[0], &want[0]) < 0.1, "error {}", max_abs(&got[0], &want[0]));

    // σ-attention: softmax becomes relu(x)/n (a different function, for models trained with it).
    let sm_only = parse(
        r#"
graph "sm" (v0: f32[2,2,4,4] "s") {
  v1: f32[2,2,4,4] = softmax {axis=3} v0 @"sm"
} -> (v1)
"#,
    )
    .unwrap();
    let cal = calibrate(&sm_only, &[vec![Lcg(2).tensor(&[2, 2, 4, 4], -2.0, 2.0)]]).unwrap();
    let sigma = PolyOptions { softmax: polyhe_passes::SoftmaxMethod::Sigma, ..opts() };
    let res = compile_to_poly(&sm_only, &cal, &sigma).unwrap();
    assert!(!res.graph.nodes.values().any(|d| matches!(d.op, Op::Softmax { .. } | Op::ReduceSum { .. })));
    let x = Lcg(3).tensor(&[2, 2, 4, 4], -1.5, 1.5);
    let (got, _) = run_poly(&res.graph, std::slice::from_ref(&x)).unwrap();
    let want: Vec<f64> = x.to_f64_vec().iter().map(|v| v.max(0.0) / 4.0).collect();
    let err = got[0].to_f64_vec().iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-3, "σ-attention error {err}");
}

#[test]
fn reciprocal_polynomial_guess_is_shallower_than_the_constant_guess_it_keeps_as_a_candidate() {
    let g = parse(MIX).unwrap();
    let mut rng = Lcg(7);
    let batches: Vec<Vec<Tensor>> = (0..32).map(|_| mix_batch(&mut rng)).collect();
    let cal = calibrate(&g, &batches).unwrap();
    let poly = compile_to_poly(&g, &cal, &opts()).unwrap();
    // A guess degree cap below 2 leaves only the constant guess (the lowering before polynomial guesses).
    let constant = compile_to_poly(&g, &cal, &PolyOptions { reciprocal_max_guess_degree: 0, ..opts() }).unwrap();
    for part in ["1/sum", "1/divisor"] {
        let find = |r: &polyhe_passes::PolyResult| {
            r.report.approximations.iter().find(|a| a.part == part).cloned().unwrap_or_else(|| panic!("no {part}"))
        };
        let (p, c) = (find(&poly), find(&constant));
        assert!(p.method.starts_with("cheb guess") && p.degree >= 2, "{part}: {}", p.method);
        assert!(c.method.starts_with("1/(") && c.degree == 0, "{part}: {}", c.method);
        assert!(p.target_met && c.target_met && p.max_error <= 1e-3 && c.max_error <= 1e-3);
        assert!(p.depth < c.depth, "{part}: polynomial guess depth {} vs constant {}", p.depth, c.depth);
        // The polynomial guess is fit up to headroom·hi of the widened range; by default that is 2H·hi,
        // where the constant guess stops converging: both tolerate the same unseen inputs.
        let o = opts();
        let top = o.reciprocal_poly_headroom * p.calibrated[1] * (1.0 + 2.0 * o.margin);
        assert!((p.interval[1] - top).abs() <= 1e-9 * top, "{part}: {:?}", p.interval);
        assert_eq!(o.reciprocal_poly_headroom, 2.0 * o.reciprocal_headroom);
    }
    for _ in 0..3 {
        let x = mix_batch(&mut rng);
        let want = interp::run(&g, &x).unwrap();
        for res in [&poly, &constant] {
            let (got, oor) = run_poly(&res.graph, &x).unwrap();
            let err = max_abs(&got[0], &want[0]);
            assert!(err < 2e-2, "poly vs reference: max abs error {err}\n{}", res.report);
            assert_eq!(oor.total_outside(), 0, "{oor}");
        }
    }
}
