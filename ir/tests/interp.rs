//! Reference interpreter: each op family against hand-computed values, plus whole-graph runs.

use polyhe_ir::interp::{erf, eval_op, run, run_with};
use polyhe_ir::{DType, Data, GeluApprox, Graph, IrError, Op, Tensor, TensorType};

fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::float(DType::F32, shape.to_vec(), v.to_vec()).unwrap()
}

fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::int(DType::I64, shape.to_vec(), v.to_vec()).unwrap()
}

fn boolt(shape: &[usize], v: &[bool]) -> Tensor {
    Tensor::boolean(shape.to_vec(), v.to_vec()).unwrap()
}

fn eval_all(op: Op, ins: &[&Tensor]) -> Result<Vec<Tensor>, IrError> {
    eval_op(&op, ins, &Graph::new("t"))
}

fn eval(op: Op, ins: &[&Tensor]) -> Tensor {
    let mut r = eval_all(op.clone(), ins).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert_eq!(r.len(), 1);
    r.remove(0)
}

fn floats(t: &Tensor) -> &[f64] {
    match &t.data {
        Data::Float(v) => v,
        other => panic!("expected floats, got {other:?}"),
    }
}

fn ints(t: &Tensor) -> &[i64] {
    match &t.data {
        Data::Int(v) => v,
        other => panic!("expected ints, got {other:?}"),
    }
}

fn bools(t: &Tensor) -> &[bool] {
    match &t.data {
        Data::Bool(v) => v,
        other => panic!("expected bools, got {other:?}"),
    }
}

#[track_caller]
fn assert_close(t: &Tensor, shape: &[usize], expected: &[f64], tol: f64) {
    assert_eq!(t.shape(), shape, "shape");
    let got = floats(t);
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= tol * (1.0 + e.abs()), "element {i}: got {g}, expected {e}\n got {got:?}");
    }
}

// ---------------- elementwise ----------------

#[test]
fn add_broadcasts_row_and_column() {
    let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let b = f32t(&[3], &[10., 20., 30.]);
    assert_close(&eval(Op::Add, &[&a, &b]), &[2, 3], &[11., 22., 33., 14., 25., 36.], 0.0);
    let col = f32t(&[2, 1], &[1., 2.]);
    let row = f32t(&[1, 3], &[1., 10., 100.]);
    assert_close(&eval(Op::Mul, &[&col, &row]), &[2, 3], &[1., 10., 100., 2., 20., 200.], 0.0);
    let s = f32t(&[], &[1.]);
    assert_close(&eval(Op::Sub, &[&s, &a]), &[2, 3], &[0., -1., -2., -3., -4., -5.], 0.0);
    // Middle-axis broadcast in 3-D.
    let x = f32t(&[2, 1, 2], &[1., 2., 3., 4.]);
    let y = f32t(&[3, 1], &[0., 10., 20.]);
    assert_close(&eval(Op::Add, &[&x, &y]), &[2, 3, 2], &[1., 2., 11., 12., 21., 22., 3., 4., 13., 14., 23., 24.], 0.0);
}

#[test]
fn integer_division_truncates_and_rejects_zero() {
    let a = i64t(&[4], &[7, -7, 7, -7]);
    let b = i64t(&[4], &[2, 2, -2, -2]);
    assert_eq!(ints(&eval(Op::Div, &[&a, &b])), &[3, -3, -3, 3]);
    let z = i64t(&[1], &[0]);
    let e = eval_all(Op::Div, &[&a, &z]).unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
    let i32a = Tensor::int(DType::I32, vec![1], vec![i32::MAX as i64]).unwrap();
    let one = Tensor::int(DType::I32, vec![1], vec![1]).unwrap();
    assert_eq!(ints(&eval(Op::Add, &[&i32a, &one])), &[i32::MIN as i64], "i32 addition wraps");
}

#[test]
fn pow_max_min_and_nan() {
    let a = f32t(&[3], &[2., 9., f64::NAN]);
    let b = f32t(&[3], &[3., 0.5, 1.]);
    let p = eval(Op::Pow, &[&a, &b]);
    assert_eq!(&floats(&p)[..2], &[8., 3.]);
    assert!(floats(&p)[2].is_nan());
    let ie = i64t(&[], &[2]);
    assert_close(&eval(Op::Pow, &[&f32t(&[2], &[3., -1.5]), &ie]), &[2], &[9., 2.25], 0.0);
    let ib = i64t(&[4], &[2, -3, 1, 5]);
    assert_eq!(ints(&eval(Op::Pow, &[&ib, &i64t(&[4], &[10, 3, -4, -1])])), &[1024, -27, 1, 0]);
    let mx = eval(Op::Max, &[&a, &b]);
    assert_eq!(&floats(&mx)[..2], &[3., 9.]);
    assert!(floats(&mx)[2].is_nan(), "max propagates NaN");
    assert_eq!(&floats(&eval(Op::Min, &[&a, &b]))[..2], &[2., 0.5]);
}

#[test]
fn comparisons_and_logic_produce_bool() {
    let a = f32t(&[3], &[1., 2., 3.]);
    let b = f32t(&[], &[2.]);
    let lt = eval(Op::Less, &[&a, &b]);
    assert_eq!(lt.dtype(), DType::Bool);
    assert_eq!(bools(&lt), &[true, false, false]);
    assert_eq!(bools(&eval(Op::GreaterOrEqual, &[&a, &b])), &[false, true, true]);
    assert_eq!(bools(&eval(Op::Equal, &[&a, &b])), &[false, true, false]);
    assert_eq!(bools(&eval(Op::LessOrEqual, &[&i64t(&[2], &[1, 5]), &i64t(&[2], &[1, 4])])), &[true, false]);
    let p = boolt(&[4], &[true, true, false, false]);
    let q = boolt(&[4], &[true, false, true, false]);
    assert_eq!(bools(&eval(Op::And, &[&p, &q])), &[true, false, false, false]);
    assert_eq!(bools(&eval(Op::Or, &[&p, &q])), &[true, true, true, false]);
    assert_eq!(bools(&eval(Op::Xor, &[&p, &q])), &[false, true, true, false]);
    assert_eq!(bools(&eval(Op::Equal, &[&p, &q])), &[true, false, false, true]);
    assert_eq!(bools(&eval(Op::Not, &[&p])), &[false, false, true, true]);
}

#[test]
fn unary_ops() {
    let x = f32t(&[4], &[-2., -0.5, 0.5, 4.]);
    assert_close(&eval(Op::Relu, &[&x]), &[4], &[0., 0., 0.5, 4.], 0.0);
    assert_close(&eval(Op::Abs, &[&x]), &[4], &[2., 0.5, 0.5, 4.], 0.0);
    assert_close(&eval(Op::Neg, &[&x]), &[4], &[2., 0.5, -0.5, -4.], 0.0);
    assert_close(&eval(Op::Floor, &[&x]), &[4], &[-2., -1., 0., 4.], 0.0);
    assert_close(&eval(Op::Ceil, &[&x]), &[4], &[-2., -0., 1., 4.], 0.0);
    assert_close(&eval(Op::Reciprocal, &[&x]), &[4], &[-0.5, -2., 2., 0.25], 0.0);
    assert_close(&eval(Op::Clip { min: Some(-1.), max: Some(1.) }, &[&x]), &[4], &[-1., -0.5, 0.5, 1.], 0.0);
    assert_close(&eval(Op::Clip { min: None, max: Some(0.) }, &[&x]), &[4], &[-2., -0.5, 0., 0.], 0.0);
    assert_close(&eval(Op::Clip { min: Some(1.), max: Some(-1.) }, &[&x]), &[4], &[-1., -1., -1., -1.], 0.0);
    let s = eval(Op::Sigmoid, &[&f32t(&[3], &[0., -800., 800.])]);
    assert_close(&s, &[3], &[0.5, 0., 1.], 0.0);
    let e = eval(Op::Exp, &[&f32t(&[2], &[0., 1.])]);
    assert_close(&e, &[2], &[1., std::f64::consts::E], 1e-15);
    let l = eval(Op::Log, &[&f32t(&[1], &[std::f64::consts::E])]);
    assert_close(&l, &[1], &[1.], 1e-15);
    assert_close(&eval(Op::Sqrt, &[&f32t(&[1], &[2.])]), &[1], &[std::f64::consts::SQRT_2], 1e-16);
    assert_close(&eval(Op::Tanh, &[&f32t(&[1], &[0.5])]), &[1], &[0.46211715726000974], 1e-15);
    let n = f32t(&[3], &[f64::NAN, f64::INFINITY, 1.]);
    assert_eq!(bools(&eval(Op::IsNaN, &[&n])), &[true, false, false]);
    assert_eq!(bools(&eval(Op::IsInf, &[&n])), &[false, true, false]);
    let i = i64t(&[3], &[-5, 0, 7]);
    assert_eq!(ints(&eval(Op::Relu, &[&i])), &[0, 0, 7]);
    assert_eq!(ints(&eval(Op::Clip { min: Some(-2.5), max: Some(3.5) }, &[&i])), &[-2, 0, 3]);
}

#[test]
fn erf_matches_known_values() {
    // mpmath values rounded to f64.
    let cases = [
        (0.0, 0.0),
        (0.1, 0.11246291601828489),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (-2.0, -0.9953222650189527),
        (3.0, 0.9999779095030014),
        (1e-10, 1.1283791670955126e-10),
        (7.0, 1.0),
    ];
    for (x, e) in cases {
        let got = erf(x);
        assert!((got - e).abs() <= 2e-16 * e.abs().max(1e-300) + 1e-30, "erf({x}) = {got}, expected {e}");
    }
    let t = eval(Op::Erf, &[&f32t(&[1], &[0.5])]);
    assert_eq!(floats(&t), &[0.5204998778130465]);
}

#[test]
fn gelu_both_forms() {
    let x = f32t(&[3], &[-1., 0., 1.]);
    // 0.5·x·(1 + erf(x/√2)) = x·Φ(x); Φ(1) = 0.8413447460685429.
    assert_close(&eval(Op::Gelu(GeluApprox::Erf), &[&x]), &[3], &[-0.15865525393145707, 0., 0.8413447460685429], 1e-15);
    let k = (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 0.044715);
    let t1 = 0.5 * (1.0 + k.tanh());
    assert_close(&eval(Op::Gelu(GeluApprox::Tanh), &[&x]), &[3], &[-(1.0 - t1), 0., t1], 1e-15);
    // The tanh form is within 1e-3 of the exact one here.
    assert!((t1 - 0.8413447460685429).abs() < 1e-3);
}

#[test]
fn cast_rounds_truncates_and_wraps() {
    let x = Tensor::float(DType::F64, vec![4], vec![0.1, -2.7, 2.7, 1e-8]).unwrap();
    let f = eval(Op::Cast(DType::F32), &[&x]);
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(floats(&f), &[0.10000000149011612, -2.700000047683716, 2.700000047683716, 9.99999993922529e-9]);
    let h = eval(Op::Cast(DType::F16), &[&f64_tensor(&[0.1, 65504.0, 65519.0, 65520.0, 1e-8, 3e-8, -2049.0])]);
    assert_eq!(floats(&h), &[0.0999755859375, 65504.0, 65504.0, f64::INFINITY, 0.0, 5.960464477539063e-8, -2048.0]);
    assert_eq!(ints(&eval(Op::Cast(DType::I64), &[&x])), &[0, -2, 2, 0]);
    let big = f64_tensor(&[3e9, 300.0, -1.0]);
    assert_eq!(ints(&eval(Op::Cast(DType::I32), &[&big])), &[-1294967296, 300, -1]);
    assert_eq!(ints(&eval(Op::Cast(DType::U8), &[&big])), &[0, 44, 255]);
    assert_eq!(bools(&eval(Op::Cast(DType::Bool), &[&f64_tensor(&[0.0, -0.5, f64::NAN])])), &[false, true, true]);
    let b = boolt(&[2], &[true, false]);
    assert_eq!(floats(&eval(Op::Cast(DType::F32), &[&b])), &[1.0, 0.0]);
    let i = i64t(&[1], &[16_777_217]);
    assert_eq!(floats(&eval(Op::Cast(DType::F32), &[&i])), &[16_777_216.0], "2^24+1 rounds to even in f32");
}

fn f64_tensor(v: &[f64]) -> Tensor {
    Tensor::float(DType::F64, vec![v.len()], v.to_vec()).unwrap()
}

#[test]
fn where_broadcasts_all_three() {
    let c = boolt(&[2, 1], &[true, false]);
    let a = f32t(&[3], &[1., 2., 3.]);
    let b = f32t(&[], &[-1.]);
    assert_close(&eval(Op::Where, &[&c, &a, &b]), &[2, 3], &[1., 2., 3., -1., -1., -1.], 0.0);
}

// ---------------- normalization ----------------

#[test]
fn softmax_is_stable_and_normalized() {
    let x = f32t(&[2, 3], &[1., 2., 3., 1000., 1001., 1002.]);
    let p = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];
    let want: Vec<f64> = p.iter().chain(&p).copied().collect();
    assert_close(&eval(Op::Softmax { axis: 1 }, &[&x]), &[2, 3], &want, 1e-15);
    // Axis 0 of a 2x2: columns are normalized.
    let y = f32t(&[2, 2], &[0., 0., 0., (3f64).ln()]);
    assert_close(&eval(Op::Softmax { axis: 0 }, &[&y]), &[2, 2], &[0.5, 0.25, 0.5, 0.75], 1e-15);
}

#[test]
fn layer_norm_over_last_axis() {
    let x = f32t(&[2, 4], &[1., 2., 3., 4., 2., 2., 2., 2.]);
    let scale = f32t(&[4], &[2., 2., 2., 2.]);
    let bias = f32t(&[4], &[1., 1., 1., 1.]);
    let eps = 1e-5;
    let r = eval(Op::LayerNorm { axis: 1, epsilon: eps }, &[&x, &scale, &bias]);
    // Row 1: mean 2.5, biased variance 1.25.
    let d = (1.25f64 + eps).sqrt();
    let want = [-1.5 / d * 2. + 1., -0.5 / d * 2. + 1., 0.5 / d * 2. + 1., 1.5 / d * 2. + 1., 1., 1., 1., 1.];
    assert_close(&r, &[2, 4], &want, 1e-15);
    // No bias, normalizing over two axes.
    let x3 = f32t(&[1, 2, 2], &[0., 2., 4., 6.]);
    let s3 = f32t(&[2, 2], &[1., 1., 1., 1.]);
    let r = eval(Op::LayerNorm { axis: 1, epsilon: 0.0 }, &[&x3, &s3]);
    let sd = 5f64.sqrt();
    assert_close(&r, &[1, 2, 2], &[-3. / sd, -1. / sd, 1. / sd, 3. / sd], 1e-15);
}

#[test]
fn batch_norm_per_channel() {
    let x = f32t(&[1, 2, 2], &[1., 2., 3., 4.]);
    let scale = f32t(&[2], &[1., 2.]);
    let bias = f32t(&[2], &[0., 1.]);
    let mean = f32t(&[2], &[1., 3.]);
    let var = f32t(&[2], &[4., 1.]);
    let r = eval(Op::BatchNorm { epsilon: 0.0 }, &[&x, &scale, &bias, &mean, &var]);
    assert_close(&r, &[1, 2, 2], &[0., 0.5, 1., 3.], 0.0);
}

// ---------------- linear algebra ----------------

fn naive_matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

fn seq(n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|i| ((i * 7 + 3) % 11) as f64 * scale - 1.0).collect()
}

#[test]
fn matmul_2d_and_vector_promotion() {
    let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let b = f32t(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
    assert_close(&eval(Op::MatMul, &[&a, &b]), &[2, 2], &[58., 64., 139., 154.], 0.0);
    let v = f32t(&[3], &[1., 0., -1.]);
    assert_close(&eval(Op::MatMul, &[&a, &v]), &[2], &[-2., -2.], 0.0);
    let w = f32t(&[2], &[1., 1.]);
    assert_close(&eval(Op::MatMul, &[&w, &a]), &[3], &[5., 7., 9.], 0.0);
    assert_close(&eval(Op::MatMul, &[&v, &v]), &[], &[2.], 0.0);
    // Sizes that exercise the 4-row block and its remainder.
    let (m, k, n) = (7, 5, 9);
    let (av, bv) = (seq(m * k, 0.5), seq(k * n, 0.25));
    let r = eval(Op::MatMul, &[&f32t(&[m, k], &av), &f32t(&[k, n], &bv)]);
    assert_close(&r, &[m, n], &naive_matmul(&av, &bv, m, k, n), 1e-14);
}

#[test]
fn matmul_batch_broadcast() {
    // a: [2, 1, 2, 3], b: [3, 3, 2] -> [2, 3, 2, 2]; batch (i, j) uses a[i, 0] and b[j].
    let av = seq(2 * 2 * 3, 1.0);
    let bv = seq(3 * 3 * 2, 0.5);
    let r = eval(Op::MatMul, &[&f32t(&[2, 1, 2, 3], &av), &f32t(&[3, 3, 2], &bv)]);
    let mut want = Vec::new();
    for i in 0..2 {
        for j in 0..3 {
            want.extend(naive_matmul(&av[i * 6..i * 6 + 6], &bv[j * 6..j * 6 + 6], 2, 3, 2));
        }
    }
    assert_close(&r, &[2, 3, 2, 2], &want, 1e-15);
    // 1-D right operand with a batched left operand.
    let r = eval(Op::MatMul, &[&f32t(&[2, 2, 3], &av), &f32t(&[3], &[1., 1., 1.])]);
    let sums: Vec<f64> = av.chunks(3).map(|c| c.iter().sum()).collect();
    assert_close(&r, &[2, 2], &sums, 1e-15);
    let ia = i64t(&[2, 2], &[1, 2, 3, 4]);
    assert_eq!(ints(&eval(Op::MatMul, &[&ia, &ia])), &[7, 10, 15, 22]);
}

#[test]
fn gemm_transposes_and_scales() {
    // op(A) = A^T with A = [[1,3],[2,4]] -> [[1,2],[3,4]]; op(B) = B^T with B = [[5,7],[6,8]] -> [[5,6],[7,8]].
    let a = f32t(&[2, 2], &[1., 3., 2., 4.]);
    let b = f32t(&[2, 2], &[5., 7., 6., 8.]);
    let c = f32t(&[2], &[1., 2.]);
    let op = Op::Gemm { alpha: 2.0, beta: 0.5, trans_a: true, trans_b: true };
    // A'B' = [[19,22],[43,50]]
    assert_close(&eval(op, &[&a, &b, &c]), &[2, 2], &[38.5, 45., 86.5, 101.], 0.0);
    let op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false };
    let a = f32t(&[1, 3], &[1., 2., 3.]);
    let b = f32t(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    assert_close(&eval(op, &[&a, &b]), &[1, 2], &[4., 5.], 0.0);
}

#[test]
fn conv1d_stride_pad_bias() {
    let x = f32t(&[1, 1, 5], &[1., 2., 3., 4., 5.]);
    let w = f32t(&[1, 1, 3], &[1., 0., -1.]);
    let b = f32t(&[1], &[10.]);
    let op = Op::Conv { kernel_shape: vec![3], strides: vec![2], pads: vec![1, 1], dilations: vec![1], group: 1 };
    // Windows over [0,1,2,3,4,5,0] at 0, 2, 4: 0-2, 2-4, 4-0.
    assert_close(&eval(op, &[&x, &w, &b]), &[1, 1, 3], &[8., 8., 14.], 0.0);
}

#[test]
fn conv2d_groups_and_dilation() {
    // Two channels, group 2: each output channel sees only its own input channel.
    let x = f32t(&[1, 2, 3, 3], &(0..18).map(|v| v as f64).collect::<Vec<_>>());
    let w = f32t(&[2, 1, 2, 2], &[1., 0., 0., 1., 0., 1., 1., 0.]);
    let op =
        Op::Conv { kernel_shape: vec![2, 2], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1], group: 2 };
    // Channel 0 (values 0..8): x[i,j] + x[i+1,j+1]; channel 1 (values 9..17): x[i,j+1] + x[i+1,j].
    assert_close(
        &eval(op, &[&x, &w]),
        &[1, 2, 2, 2],
        &[4., 6., 10., 12., 10. + 12., 11. + 13., 13. + 15., 14. + 16.],
        0.0,
    );
    // Dilation 2 on a 3x3 input: the four corners.
    let x = f32t(&[1, 1, 3, 3], &(1..=9).map(|v| v as f64).collect::<Vec<_>>());
    let w = f32t(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
    let op = Op::Conv { kernel_shape: vec![], strides: vec![], pads: vec![], dilations: vec![2, 2], group: 1 };
    assert_close(&eval(op, &[&x, &w]), &[1, 1, 1, 1], &[1. + 30. + 700. + 9000.], 0.0);
    // Asymmetric padding and stride 2 with two output channels, group 1.
    let x = f32t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let w = f32t(&[2, 1, 1, 1], &[1., -1.]);
    let op = Op::Conv {
        kernel_shape: vec![1, 1],
        strides: vec![2, 2],
        pads: vec![1, 1, 0, 0],
        dilations: vec![1, 1],
        group: 1,
    };
    // Padded input is 3x3 with the data in the bottom-right; stride 2 samples (0,0),(0,2),(2,0),(2,2).
    assert_close(&eval(op, &[&x, &w]), &[1, 2, 2, 2], &[0., 0., 0., 4., 0., 0., 0., -4.], 0.0);
}

// ---------------- reductions ----------------

#[test]
fn reductions_with_and_without_keepdims() {
    let x = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    assert_close(&eval(Op::ReduceSum { axes: vec![1], keepdims: true }, &[&x]), &[2, 1], &[6., 15.], 0.0);
    assert_close(&eval(Op::ReduceSum { axes: vec![0], keepdims: false }, &[&x]), &[3], &[5., 7., 9.], 0.0);
    assert_close(&eval(Op::ReduceMean { axes: vec![], keepdims: false }, &[&x]), &[], &[3.5], 0.0);
    assert_close(&eval(Op::ReduceMean { axes: vec![], keepdims: true }, &[&x]), &[1, 1], &[3.5], 0.0);
    assert_close(&eval(Op::ReduceMax { axes: vec![0], keepdims: true }, &[&x]), &[1, 3], &[4., 5., 6.], 0.0);
    assert_close(&eval(Op::ReduceMin { axes: vec![1], keepdims: false }, &[&x]), &[2], &[1., 4.], 0.0);
    let y = f32t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    assert_close(&eval(Op::ReduceMean { axes: vec![0, 2], keepdims: false }, &[&y]), &[2], &[3.5, 5.5], 0.0);
    let i = i64t(&[2, 2], &[1, 2, 4, 7]);
    assert_eq!(ints(&eval(Op::ReduceMean { axes: vec![1], keepdims: false }, &[&i])), &[1, 5]);
    assert_eq!(ints(&eval(Op::ReduceMin { axes: vec![0], keepdims: false }, &[&i])), &[1, 2]);
}

// ---------------- data movement ----------------

#[test]
fn transpose_reshape_expand() {
    let x = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    assert_close(&eval(Op::Transpose { perm: vec![1, 0] }, &[&x]), &[3, 2], &[1., 4., 2., 5., 3., 6.], 0.0);
    let y = f32t(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    // out[k,i,j] = y[i,j,k]
    assert_close(
        &eval(Op::Transpose { perm: vec![2, 0, 1] }, &[&y]),
        &[2, 2, 2],
        &[0., 2., 4., 6., 1., 3., 5., 7.],
        0.0,
    );
    assert_close(&eval(Op::Reshape { shape: vec![3, 2] }, &[&x]), &[3, 2], &[1., 2., 3., 4., 5., 6.], 0.0);
    let c = f32t(&[3, 1], &[1., 2., 3.]);
    let e = eval(Op::Expand { shape: vec![2, 1, 2] }, &[&c]);
    assert_close(&e, &[2, 3, 2], &[1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.], 0.0);
    // ONNX Expand to a smaller shape keeps the input's larger dims.
    assert_close(&eval(Op::Expand { shape: vec![3] }, &[&x]), &[2, 3], &[1., 2., 3., 4., 5., 6.], 0.0);
}

#[test]
fn concat_and_split() {
    let a = i64t(&[2, 1], &[1, 2]);
    let b = i64t(&[2, 2], &[3, 4, 5, 6]);
    let c = eval(Op::Concat { axis: 1 }, &[&a, &b]);
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(ints(&c), &[1, 3, 4, 2, 5, 6]);
    let parts = eval_all(Op::Split { axis: 1, sizes: vec![2, 1] }, &[&c]).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[0].shape(), ints(&parts[0])), (&[2usize, 2][..], &[1i64, 3, 2, 5][..]));
    assert_eq!((parts[1].shape(), ints(&parts[1])), (&[2usize, 1][..], &[4i64, 6][..]));
    let r = eval(Op::Concat { axis: 0 }, &[&boolt(&[1], &[true]), &boolt(&[2], &[false, true])]);
    assert_eq!(bools(&r), &[true, false, true]);
}

#[test]
fn slice_with_negative_steps() {
    let x = i64t(&[5], &[0, 1, 2, 3, 4]);
    let rev = Op::Slice { axes: vec![0], starts: vec![4], ends: vec![-1], steps: vec![-1] };
    assert_eq!(ints(&eval(rev, &[&x])), &[4, 3, 2, 1, 0]);
    let s = Op::Slice { axes: vec![0], starts: vec![4], ends: vec![0], steps: vec![-2] };
    assert_eq!(ints(&eval(s, &[&x])), &[4, 2]);
    let s = Op::Slice { axes: vec![0], starts: vec![1], ends: vec![5], steps: vec![3] };
    assert_eq!(ints(&eval(s, &[&x])), &[1, 4]);
    let y = i64t(&[3, 4], &(0..12).collect::<Vec<_>>());
    let s = Op::Slice { axes: vec![1, 0], starts: vec![3, 0], ends: vec![0, 3], steps: vec![-2, 2] };
    let r = eval(s, &[&y]);
    assert_eq!(r.shape(), &[2, 2]);
    assert_eq!(ints(&r), &[3, 1, 11, 9]);
    // Extreme steps take one element and must not overflow.
    let s = Op::Slice { axes: vec![0], starts: vec![1], ends: vec![5], steps: vec![i64::MAX] };
    assert_eq!(ints(&eval(s, &[&x])), &[1]);
    let s = Op::Slice { axes: vec![0], starts: vec![2], ends: vec![-1], steps: vec![i64::MIN] };
    assert_eq!(ints(&eval(s, &[&x])), &[2]);
    let empty = Op::Slice { axes: vec![0], starts: vec![3], ends: vec![3], steps: vec![1] };
    assert_eq!(eval(empty, &[&x]).shape(), &[0]);
}

#[test]
fn gather_wraps_negative_indices() {
    let data = f32t(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
    let idx = i64t(&[2, 2], &[-1, 0, 1, -3]);
    assert_close(&eval(Op::Gather { axis: 0 }, &[&data, &idx]), &[2, 2, 2], &[5., 6., 1., 2., 3., 4., 1., 2.], 0.0);
    let idx = i64t(&[], &[-1]);
    assert_close(&eval(Op::Gather { axis: 1 }, &[&data, &idx]), &[3], &[2., 4., 6.], 0.0);
    let bad = i64t(&[2], &[0, 3]);
    let e = eval_all(Op::Gather { axis: 0 }, &[&data, &bad]).unwrap_err();
    assert!(matches!(e, IrError::Eval { .. }) && e.to_string().contains("index 3"), "{e}");
    let bad = i64t(&[1], &[-4]);
    assert!(eval_all(Op::Gather { axis: 0 }, &[&data, &bad]).unwrap_err().to_string().contains("index -4"));
}

#[test]
fn gather_elements_follows_onnx_example() {
    let data = i64t(&[2, 2], &[1, 2, 3, 4]);
    let idx = i64t(&[2, 2], &[0, 0, 1, 0]);
    assert_eq!(ints(&eval(Op::GatherElements { axis: 1 }, &[&data, &idx])), &[1, 1, 4, 3]);
    let data = i64t(&[3, 3], &(1..=9).collect::<Vec<_>>());
    let idx = i64t(&[2, 3], &[1, 2, 0, 2, 0, -3]);
    assert_eq!(ints(&eval(Op::GatherElements { axis: 0 }, &[&data, &idx])), &[4, 8, 3, 7, 2, 3]);
}

#[test]
fn constant_reads_the_pool() {
    let mut g = Graph::new("c");
    g.add_constant(f32t(&[2], &[1., 2.]), "k");
    let c = g.constants.keys().next().unwrap();
    let r = eval_op(&Op::Constant(c), &[], &g).unwrap();
    assert_eq!(floats(&r[0]), &[1., 2.]);
}

#[test]
fn shape_errors_surface_from_eval() {
    let a = f32t(&[2, 3], &[0.; 6]);
    let b = f32t(&[2], &[0.; 2]);
    let e = eval_all(Op::Add, &[&a, &b]).unwrap_err();
    assert!(matches!(e, IrError::Shape { .. }), "{e}");
    let malformed = Tensor { ty: TensorType::new(DType::F32, vec![3]), data: Data::Float(vec![1.0]) };
    let e = eval_all(Op::Relu, &[&malformed]).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
}

// ---------------- whole graphs ----------------

/// x[2,3] -> matmul W[3,2] -> add b[2] -> relu -> softmax; plus a second output, the constant itself.
fn small_graph() -> Graph {
    let mut g = Graph::new("small");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2, 3]));
    let w = g.add_constant(f32t(&[3, 2], &[1., -1., 0., 1., 2., 0.]), "w");
    let b = g.add_constant(f32t(&[2], &[0.5, -10.]), "b");
    let mm = g.add_node(Op::MatMul, vec![x, w], "mm").unwrap();
    let add = g.add_node(Op::Add, vec![g.result(mm), b], "add").unwrap();
    let relu = g.add_node(Op::Relu, vec![g.result(add)], "relu").unwrap();
    let sm = g.add_node(Op::Softmax { axis: 1 }, vec![g.result(relu)], "sm").unwrap();
    g.outputs = vec![g.result(relu), g.result(sm), b];
    g
}

#[test]
fn small_graph_runs_end_to_end() {
    let g = small_graph();
    let x = f32t(&[2, 3], &[1., 2., 3., -1., 0., 1.]);
    let outs = run(&g, std::slice::from_ref(&x)).unwrap();
    assert_eq!(outs.len(), 3);
    // x·W = [[7, 1], [1, 1]]; + b = [[7.5, -9], [1.5, -9]]; relu = [[7.5, 0], [1.5, 0]].
    assert_close(&outs[0], &[2, 2], &[7.5, 0., 1.5, 0.], 0.0);
    let s = |a: f64| 1.0 / (1.0 + (-a).exp());
    assert_close(&outs[1], &[2, 2], &[s(7.5), 1. - s(7.5), s(1.5), 1. - s(1.5)], 1e-15);
    assert_close(&outs[2], &[2], &[0.5, -10.], 0.0);

    let mut seen = Vec::new();
    run_with(&g, &[x], &mut |n, ins, outs| seen.push((g.nodes[n].name.clone(), ins.len(), outs.len()))).unwrap();
    let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["w", "b", "mm", "add", "relu", "sm"]);
    assert_eq!(seen[2], ("mm".to_string(), 2, 1));
}

#[test]
fn run_checks_inputs() {
    let g = small_graph();
    let e = run(&g, &[]).unwrap_err();
    assert!(matches!(&e, IrError::MissingInput { name } if name == "x"), "{e}");
    let e = run(&g, &[f32t(&[3, 2], &[0.; 6])]).unwrap_err();
    assert!(matches!(&e, IrError::InputMismatch { name, .. } if name == "x"), "{e}");
    assert!(e.to_string().contains("f32[2,3]") && e.to_string().contains("f32[3,2]"), "{e}");
    let wrong_dtype = Tensor::float(DType::F64, vec![2, 3], vec![0.; 6]).unwrap();
    assert!(matches!(run(&g, &[wrong_dtype]).unwrap_err(), IrError::InputMismatch { .. }));
}

#[test]
fn eval_errors_name_the_node() {
    let mut g = Graph::new("gather");
    let table = g.add_constant(f32t(&[3, 2], &[0.; 6]), "table");
    let ids = g.add_input("ids", TensorType::new(DType::I64, vec![2]));
    let n = g.add_node(Op::Gather { axis: 0 }, vec![table, ids], "embed/Gather").unwrap();
    g.outputs = vec![g.result(n)];
    let ok = run(&g, &[i64t(&[2], &[2, -1])]).unwrap();
    assert_eq!(ok[0].shape(), &[2, 2]);
    let e = run(&g, &[i64t(&[2], &[0, 7])]).unwrap_err();
    match &e {
        IrError::Eval { op, node, msg } => {
            assert_eq!((op.as_str(), node.as_str()), ("gather", "embed/Gather"));
            assert!(msg.contains("index 7"), "{msg}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn run_handles_repeated_and_pass_through_outputs() {
    let mut g = Graph::new("pass");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
    let n = g.add_node(Op::Mul, vec![x, x], "sq").unwrap();
    let split = g.add_node(Op::Split { axis: 0, sizes: vec![1, 1] }, vec![g.result(n)], "split").unwrap();
    let hi = g.nodes[split].outputs[1];
    g.outputs = vec![hi, x, hi];
    let outs = run(&g, &[f32t(&[2], &[3., 4.])]).unwrap();
    assert_eq!(floats(&outs[0]), &[16.]);
    assert_eq!(floats(&outs[1]), &[3., 4.]);
    assert_eq!(outs[2], outs[0]);
}

// ---------------- properties against naive index arithmetic ----------------

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Row-major multi-index of flat index `f` in `shape`.
    fn unravel(mut f: usize, shape: &[usize]) -> Vec<usize> {
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = f % shape[d];
            f /= shape[d];
        }
        idx
    }

    fn ravel(idx: &[usize], shape: &[usize]) -> usize {
        idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
    }

    /// Element of `v` (shape `shape`) that numpy broadcasting maps to output index `out_idx`.
    fn bget(v: &[f64], shape: &[usize], out_idx: &[usize]) -> f64 {
        let lead = out_idx.len() - shape.len();
        let idx: Vec<usize> =
            shape.iter().enumerate().map(|(d, &s)| if s == 1 { 0 } else { out_idx[d + lead] }).collect();
        v[ravel(&idx, shape)]
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n).map(|i| ((i as u64 * 2654435761 + seed * 97) % 17) as f64 - 8.0).collect()
    }

    /// A shape and a second shape that broadcasts with it (some dims set to 1, some leading dims dropped).
    fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (prop::collection::vec(1usize..4, 0..5), any::<u32>(), 0usize..3).prop_map(|(a, ones, drop)| {
            let mut b: Vec<usize> =
                a.iter().enumerate().map(|(i, &d)| if ones >> i & 1 == 1 { 1 } else { d }).collect();
            let drop = drop.min(b.len());
            b.drain(..drop);
            if ones >> 31 & 1 == 1 {
                (b, a)
            } else {
                (a, b)
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn binary_broadcast_matches_naive((ash, bsh) in broadcast_pair(), seed in 0u64..100) {
            let av = values(ash.iter().product(), seed);
            let bv = values(bsh.iter().product(), seed + 1);
            let r = eval(Op::Sub, &[&f32t(&ash, &av), &f32t(&bsh, &bv)]);
            let out = r.shape().to_vec();
            for (f, &got) in floats(&r).iter().enumerate() {
                let idx = unravel(f, &out);
                prop_assert_eq!(got, bget(&av, &ash, &idx) - bget(&bv, &bsh, &idx));
            }
        }

        #[test]
        fn matmul_matches_naive(batch in prop::collection::vec(1usize..3, 0..3), m in 1usize..7, k in 1usize..6, n in 1usize..7, bcast_b in any::<bool>()) {
            let mut ash = batch.clone();
            ash.extend([m, k]);
            let mut bsh = if bcast_b { vec![] } else { batch.clone() };
            bsh.extend([k, n]);
            let av = values(ash.iter().product(), 3);
            let bv = values(bsh.iter().product(), 5);
            let r = eval(Op::MatMul, &[&f32t(&ash, &av), &f32t(&bsh, &bv)]);
            let nb: usize = batch.iter().product();
            let mut want = Vec::new();
            for i in 0..nb {
                let bo = if bcast_b { 0 } else { i * k * n };
                want.extend(naive_matmul(&av[i * m * k..(i + 1) * m * k], &bv[bo..bo + k * n], m, k, n));
            }
            prop_assert_eq!(floats(&r), &want[..]);
        }

        #[test]
        fn reduce_sum_matches_naive(shape in prop::collection::vec(1usize..4, 1..5), mask in any::<u8>(), keepdims in any::<bool>()) {
            let axes: Vec<usize> = (0..shape.len()).filter(|&d| mask >> d & 1 == 1).collect();
            let v = values(shape.iter().product(), 7);
            let r = eval(Op::ReduceSum { axes: axes.clone(), keepdims }, &[&f32t(&shape, &v)]);
            let reduced = |d: usize| axes.is_empty() || axes.contains(&d);
            let kept: Vec<usize> = shape.iter().enumerate().map(|(d, &s)| if reduced(d) { 1 } else { s }).collect();
            let mut want = vec![0.0; kept.iter().product()];
            for (f, &x) in v.iter().enumerate() {
                let idx: Vec<usize> = unravel(f, &shape).iter().enumerate().map(|(d, &i)| if reduced(d) { 0 } else { i }).collect();
                want[ravel(&idx, &kept)] += x;
            }
            prop_assert_eq!(floats(&r), &want[..]);
            let expected_shape: Vec<usize> = if keepdims { kept } else { kept.iter().enumerate().filter(|(d, _)| !reduced(*d)).map(|(_, &s)| s).collect() };
            prop_assert_eq!(r.shape(), &expected_shape[..]);
        }

        #[test]
        fn transpose_matches_naive(shape in prop::collection::vec(1usize..4, 1..5), rot in 0usize..4) {
            let r = shape.len();
            let perm: Vec<usize> = (0..r).map(|d| (d + rot) % r).collect();
            let v = values(shape.iter().product(), 11);
            let t = eval(Op::Transpose { perm: perm.clone() }, &[&f32t(&shape, &v)]);
            let out = t.shape().to_vec();
            for (f, &got) in floats(&t).iter().enumerate() {
                let oi = unravel(f, &out);
                let mut ii = vec![0; r];
                for d in 0..r {
                    ii[perm[d]] = oi[d];
                }
                prop_assert_eq!(got, v[ravel(&ii, &shape)]);
            }
        }

        #[test]
        fn slice_matches_naive(dim in 1usize..7, a in 0i64..7, b in -1i64..7, step in prop::sample::select(vec![-3i64, -2, -1, 1, 2, 3])) {
            let d = dim as i64;
            // Clamp like ONNX does before building the op.
            let (start, end) = if step > 0 { (a.clamp(0, d), b.clamp(0, d)) } else { (a.clamp(0, d - 1), b.clamp(-1, d - 1)) };
            let x = i64t(&[dim], &(0..d).collect::<Vec<_>>());
            let r = eval(Op::Slice { axes: vec![0], starts: vec![start], ends: vec![end], steps: vec![step] }, &[&x]);
            let mut want = Vec::new();
            let mut i = start;
            while (step > 0 && i < end) || (step < 0 && i > end) {
                want.push(i);
                i += step;
            }
            prop_assert_eq!(ints(&r), &want[..]);
        }
    }
}

#[test]
fn values_with_several_later_uses_survive_until_their_last_use() {
    let mut g = Graph::new("diamond");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
    let a = g.add_node(Op::Relu, vec![x], "a").unwrap();
    let a = g.result(a);
    let b = g.add_node(Op::Neg, vec![a], "b").unwrap();
    let c = g.add_node(Op::Sub, vec![a, g.result(b)], "c").unwrap();
    let d = g.add_node(Op::Mul, vec![g.result(c), a], "d").unwrap();
    g.outputs = vec![g.result(d)];
    let outs = run(&g, &[f32t(&[2], &[-1., 3.])]).unwrap();
    assert_eq!(floats(&outs[0]), &[0., 18.]);
}

#[test]
fn out_of_order_graph_is_use_before_def() {
    let mut g = Graph::new("bad");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
    let early = g.add_node(Op::Relu, vec![x], "early").unwrap();
    let late = g.add_node(Op::Neg, vec![x], "late").unwrap();
    let late_v = g.result(late);
    g.nodes[early].inputs = vec![late_v];
    g.outputs = vec![g.result(early)];
    let e = run(&g, &[f32t(&[2], &[1., 2.])]).unwrap_err();
    assert!(matches!(e, IrError::UseBeforeDef(v) if v == late_v), "{e}");
}

#[test]
fn declared_types_are_checked_against_results() {
    let mut g = Graph::new("typed");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
    let n = g.add_node_typed(Op::Relu, vec![x], vec![TensorType::new(DType::F32, vec![3])], "liar");
    g.outputs = vec![g.result(n)];
    let e = run(&g, &[f32t(&[2], &[1., 2.])]).unwrap_err();
    match e {
        IrError::Eval { node, msg, .. } => {
            assert_eq!(node, "liar");
            assert!(msg.contains("f32[2]") && msg.contains("f32[3]"), "{msg}");
        }
        other => panic!("unexpected {other}"),
    }
}
