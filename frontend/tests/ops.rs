//! Each op family imports and runs to hand-computed values; opset variants (attribute vs input) agree;
//! shape subgraphs fold to constants; errors name the node.

mod common;

use common::*;
use polyhe_frontend::proto::data_type as dt;
use polyhe_frontend::{inspect, FrontendError, ImportOptions};
use polyhe_ir::Op;

/// One-input model `x: f32[shape]` with the given nodes; output names listed.
fn unary_model(
    opset: i64,
    shape: &[i64],
    nodes: Vec<polyhe_frontend::proto::NodeProto>,
    inits: Vec<polyhe_frontend::proto::TensorProto>,
    outs: &[&str],
) -> polyhe_frontend::proto::ModelProto {
    model(opset, nodes, inits, vec![vf("x", shape)], outs.iter().map(|o| vout(o)).collect())
}

const X6: [f64; 6] = [1.0, -2.0, 3.0, 0.5, -0.25, 4.0];

#[test]
fn binary_arithmetic_broadcasts() {
    let ops = ["Add", "Sub", "Mul", "Div", "Pow"];
    let nodes = ops.iter().map(|op| node(op, op, &["x", "b"], &[&format!("y_{op}")], vec![])).collect();
    let m = unary_model(
        17,
        &[2, 3],
        nodes,
        vec![f32_raw("b", &[3], &[2.0, 4.0, 2.0])],
        &ops.map(|o| format!("y_{o}")).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let g = import_ok(&m);
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    let b = [2.0, 4.0, 2.0];
    let f: [fn(f64, f64) -> f64; 5] = [|a, b| a + b, |a, b| a - b, |a, b| a * b, |a, b| a / b, f64::powf];
    for (k, f) in f.iter().enumerate() {
        let want: Vec<f64> = X6.iter().enumerate().map(|(i, &a)| f(a, b[i % 3])).collect();
        assert_close(&out[k], &[2, 3], &want, 1e-12);
    }
    // Output names are the ONNX names; nodes keep theirs.
    assert_eq!(g.values[g.outputs[2]].name.as_deref(), Some("y_Mul"));
    assert!(g.nodes.values().any(|n| n.name == "Div" && n.op == Op::Div));
}

#[test]
fn unary_ops() {
    let ops = ["Neg", "Abs", "Exp", "Tanh", "Sigmoid", "Relu", "Floor", "Ceil", "Erf"];
    let nodes = ops.iter().map(|op| node(op, op, &["x"], &[op], vec![])).collect();
    let g = import_ok(&unary_model(17, &[6], nodes, vec![], &ops));
    let out = run(&g, &[tf(&[6], &X6)]);
    let erf = [
        0.8427007929497149,
        -0.9953222650189527,
        0.9999779095030014,
        0.5204998778130465,
        -0.2763263901682369,
        0.9999999845827421,
    ];
    let want: [Vec<f64>; 9] = [
        X6.iter().map(|x| -x).collect(),
        X6.iter().map(|x| x.abs()).collect(),
        X6.iter().map(|x| x.exp()).collect(),
        X6.iter().map(|x| x.tanh()).collect(),
        X6.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
        X6.iter().map(|x| x.max(0.0)).collect(),
        X6.iter().map(|x| x.floor()).collect(),
        X6.iter().map(|x| x.ceil()).collect(),
        erf.to_vec(),
    ];
    for (k, w) in want.iter().enumerate() {
        assert_close(&out[k], &[6], w, 1e-7);
    }
    // Positive-only ops.
    let ops = ["Sqrt", "Reciprocal", "Log"];
    let nodes = ops.iter().map(|op| node(op, "", &["x"], &[op], vec![])).collect();
    let g = import_ok(&unary_model(17, &[3], nodes, vec![], &ops));
    // Empty node names are synthesized as OpType_<index>.
    assert!(
        g.nodes.values().any(|n| n.name == "Reciprocal_1"),
        "{:?}",
        g.nodes.values().map(|n| &n.name).collect::<Vec<_>>()
    );
    let out = run(&g, &[tf(&[3], &[4.0, 0.5, 2.0])]);
    assert_close(&out[0], &[3], &[2.0, 0.5f64.sqrt(), 2f64.sqrt()], 1e-12);
    assert_close(&out[1], &[3], &[0.25, 2.0, 0.5], 1e-12);
    assert_close(&out[2], &[3], &[4f64.ln(), 0.5f64.ln(), 2f64.ln()], 1e-12);
}

#[test]
fn comparisons_logic_where() {
    let cmp = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"];
    let mut nodes: Vec<_> = cmp.iter().map(|op| node(op, op, &["x", "t"], &[op], vec![])).collect();
    nodes.push(node("Not", "not", &["Less"], &["not"], vec![]));
    nodes.push(node("And", "and", &["Less", "Equal"], &["and"], vec![]));
    nodes.push(node("Or", "or", &["Less", "Equal"], &["or"], vec![]));
    nodes.push(node("Xor", "xor", &["LessOrEqual", "Equal"], &["xor"], vec![]));
    nodes.push(node("Where", "where", &["Greater", "x", "t"], &["where"], vec![]));
    let outs = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "not", "and", "or", "xor", "where"];
    let g = import_ok(&unary_model(17, &[4], nodes, vec![f32_raw("t", &[], &[1.0])], &outs));
    let out = run(&g, &[tf(&[4], &[0.0, 1.0, 2.0, 1.0])]);
    let b = |v: [u8; 4]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert_close(&out[0], &[4], &b([0, 1, 0, 1]), 0.0);
    assert_close(&out[1], &[4], &b([1, 0, 0, 0]), 0.0);
    assert_close(&out[2], &[4], &b([0, 0, 1, 0]), 0.0);
    assert_close(&out[3], &[4], &b([1, 1, 0, 1]), 0.0);
    assert_close(&out[4], &[4], &b([0, 1, 1, 1]), 0.0);
    assert_close(&out[5], &[4], &b([0, 1, 1, 1]), 0.0);
    assert_close(&out[6], &[4], &b([0, 0, 0, 0]), 0.0);
    assert_close(&out[7], &[4], &b([1, 1, 0, 1]), 0.0);
    assert_close(&out[8], &[4], &b([1, 0, 0, 0]), 0.0);
    assert_close(&out[9], &[4], &[1.0, 1.0, 2.0, 1.0], 0.0);
}

#[test]
fn matmul_and_gemm() {
    let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // [3,2]
    let nodes = vec![
        node("MatMul", "mm", &["x", "w"], &["mm"], vec![]),
        node(
            "Gemm",
            "gemm",
            &["x", "wt", "c"],
            &["gemm"],
            vec![a_int("transB", 1), a_float("alpha", 2.0), a_float("beta", 0.5)],
        ),
    ];
    let inits = vec![
        f32_raw("w", &[3, 2], &w),
        f32_raw("wt", &[2, 3], &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]),
        f32_typed("c", &[2], &[10.0, 20.0]),
    ];
    let g = import_ok(&unary_model(17, &[2, 3], nodes, inits, &["mm", "gemm"]));
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    // x = [[1,-2,3],[0.5,-0.25,4]]
    let mm = [1.0 - 6.0 + 15.0, 2.0 - 8.0 + 18.0, 0.5 - 0.75 + 20.0, 1.0 - 1.0 + 24.0];
    assert_close(&out[0], &[2, 2], &mm, 1e-12);
    let gemm: Vec<f64> = mm.iter().enumerate().map(|(i, v)| 2.0 * v + 0.5 * [10.0, 20.0][i % 2]).collect();
    assert_close(&out[1], &[2, 2], &gemm, 1e-12);
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn softmax_opset_semantics() {
    let x: Vec<f64> = (0..12).map(|i| (i as f64 * 0.37).sin()).collect();
    // Opset 13: single axis (axis=1 of [2,3,2] normalizes over the 3).
    let g = import_ok(&unary_model(
        13,
        &[2, 3, 2],
        vec![node("Softmax", "sm", &["x"], &["y"], vec![a_int("axis", 1)])],
        vec![],
        &["y"],
    ));
    let out = run(&g, &[tf(&[2, 3, 2], &x)]);
    let mut want = vec![0.0; 12];
    for b in 0..2 {
        for k in 0..2 {
            let col: Vec<f64> = (0..3).map(|j| x[b * 6 + j * 2 + k]).collect();
            for (j, v) in softmax(&col).into_iter().enumerate() {
                want[b * 6 + j * 2 + k] = v;
            }
        }
    }
    assert_close(&out[0], &[2, 3, 2], &want, 1e-12);
    // Opset 11: axis=1 flattens to [2, 6] and normalizes each row of 6.
    let g =
        import_ok(&unary_model(11, &[2, 3, 2], vec![node("Softmax", "sm", &["x"], &["y"], vec![])], vec![], &["y"]));
    let out = run(&g, &[tf(&[2, 3, 2], &x)]);
    let want: Vec<f64> = x.chunks(6).flat_map(softmax).collect();
    assert_close(&out[0], &[2, 3, 2], &want, 1e-12);
    // LogSoftmax, default axis -1 at opset 13.
    let g =
        import_ok(&unary_model(13, &[2, 6], vec![node("LogSoftmax", "ls", &["x"], &["y"], vec![])], vec![], &["y"]));
    let out = run(&g, &[tf(&[2, 6], &x)]);
    let want: Vec<f64> = x.chunks(6).flat_map(softmax).map(f64::ln).collect();
    assert_close(&out[0], &[2, 6], &want, 1e-12);
}

#[test]
fn layer_norm_and_batch_norm_ops() {
    let nodes = vec![node("LayerNormalization", "ln", &["x", "s", "b"], &["y"], vec![a_float("epsilon", 1e-5)])];
    let inits = vec![f32_raw("s", &[3], &[1.0, 2.0, 0.5]), f32_raw("b", &[3], &[0.0, 1.0, -1.0])];
    let g = import_ok(&unary_model(17, &[2, 3], nodes, inits, &["y"]));
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    let mut want = Vec::new();
    for row in X6.chunks(3) {
        let mean = row.iter().sum::<f64>() / 3.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
        let eps = 1e-5f32 as f64;
        for (j, v) in row.iter().enumerate() {
            want.push((v - mean) / (var + eps).sqrt() * [1.0, 2.0, 0.5][j] + [0.0, 1.0, -1.0][j]);
        }
    }
    assert_close(&out[0], &[2, 3], &want, 1e-9);

    let nodes =
        vec![node("BatchNormalization", "bn", &["x", "s", "b", "mean", "var"], &["y"], vec![a_float("epsilon", 0.0)])];
    let inits = vec![
        f32_raw("s", &[2], &[2.0, 1.0]),
        f32_raw("b", &[2], &[1.0, 0.0]),
        f32_raw("mean", &[2], &[1.0, -1.0]),
        f32_raw("var", &[2], &[4.0, 1.0]),
    ];
    let g = import_ok(&unary_model(15, &[1, 2, 3], nodes, inits, &["y"]));
    let out = run(&g, &[tf(&[1, 2, 3], &X6)]);
    let want: Vec<f64> =
        X6.iter().enumerate().map(|(i, &v)| if i < 3 { (v - 1.0) / 2.0 * 2.0 + 1.0 } else { v + 1.0 }).collect();
    assert_close(&out[0], &[1, 2, 3], &want, 1e-12);
}

#[test]
fn reductions_axes_attribute_and_input() {
    // ReduceMean with axes as attribute (opset 13) and as input (opset 18) give the same result.
    let attr = unary_model(
        13,
        &[2, 3],
        vec![node("ReduceMean", "r", &["x"], &["y"], vec![a_ints("axes", &[-1])])],
        vec![],
        &["y"],
    );
    let input = unary_model(
        18,
        &[2, 3],
        vec![node("ReduceMean", "r", &["x", "axes"], &["y"], vec![])],
        vec![i64_raw("axes", &[1], &[1])],
        &["y"],
    );
    for m in [attr, input] {
        let out = run(&import_ok(&m), &[tf(&[2, 3], &X6)]);
        assert_close(&out[0], &[2, 1], &[2.0 / 3.0, 4.25 / 3.0], 1e-12);
    }
    // ReduceSum takes axes as input from opset 13; keepdims=0.
    let m = unary_model(
        13,
        &[2, 3],
        vec![node("ReduceSum", "r", &["x", "axes"], &["y"], vec![a_int("keepdims", 0)])],
        vec![i64_typed("axes", &[1], &[0])],
        &["y"],
    );
    let out = run(&import_ok(&m), &[tf(&[2, 3], &X6)]);
    assert_close(&out[0], &[3], &[1.5, -2.25, 7.0], 1e-12);
    // No axes: reduce everything; with noop_with_empty_axes: identity.
    let m = unary_model(
        18,
        &[2, 3],
        vec![node("ReduceMax", "r", &["x"], &["y"], vec![a_int("keepdims", 0)])],
        vec![],
        &["y"],
    );
    let out = run(&import_ok(&m), &[tf(&[2, 3], &X6)]);
    assert_close(&out[0], &[], &[4.0], 0.0);
    let m = unary_model(
        18,
        &[2, 3],
        vec![node("ReduceMin", "r", &["x"], &["y"], vec![a_int("noop_with_empty_axes", 1)])],
        vec![],
        &["y"],
    );
    let out = run(&import_ok(&m), &[tf(&[2, 3], &X6)]);
    assert_close(&out[0], &[2, 3], &X6, 0.0);
}

#[test]
fn reshape_family() {
    let x: Vec<f64> = (0..24).map(f64::from).collect();
    // Reshape with 0 (copy) and -1 (infer).
    let m = unary_model(
        14,
        &[2, 3, 4],
        vec![node("Reshape", "r", &["x", "s"], &["y"], vec![])],
        vec![i64_raw("s", &[3], &[0, -1, 2])],
        &["y"],
    );
    let g = import_ok(&m);
    assert!(g.nodes.values().any(|n| n.op == Op::Reshape { shape: vec![2, 6, 2] }));
    assert_close(&run(&g, &[tf(&[2, 3, 4], &x)])[0], &[2, 6, 2], &x, 0.0);
    // allowzero=1 makes 0 a literal size: [0, ...] cannot hold 24 elements.
    let m = unary_model(
        14,
        &[2, 3, 4],
        vec![node("Reshape", "r", &["x", "s"], &["y"], vec![a_int("allowzero", 1)])],
        vec![i64_raw("s", &[2], &[0, -1])],
        &["y"],
    );
    assert!(
        matches!(import_model(&m, &ImportOptions::default()), Err(FrontendError::InvalidNode { node, .. }) if node == "r")
    );
    // Flatten, Squeeze (attr, opset 11) / Unsqueeze (input, opset 13), Transpose.
    let m = unary_model(
        13,
        &[2, 3, 4],
        vec![
            node("Flatten", "f", &["x"], &["f"], vec![a_int("axis", 2)]),
            node("Unsqueeze", "u", &["f", "ax"], &["u"], vec![]),
            node("Squeeze", "s", &["u", "ax"], &["s"], vec![]),
            node("Transpose", "t", &["x"], &["t"], vec![a_ints("perm", &[2, 0, 1])]),
        ],
        vec![i64_raw("ax", &[2], &[0, -1])],
        &["f", "u", "s", "t"],
    );
    let out = run(&import_ok(&m), &[tf(&[2, 3, 4], &x)]);
    assert_close(&out[0], &[6, 4], &x, 0.0);
    assert_close(&out[1], &[1, 6, 4, 1], &x, 0.0);
    assert_close(&out[2], &[6, 4], &x, 0.0);
    let want: Vec<f64> = (0..24)
        .map(|i| {
            let (k, rest) = (i / 6, i % 6);
            let (a, b) = (rest / 3, rest % 3);
            (a * 12 + b * 4 + k) as f64
        })
        .collect();
    assert_close(&out[3], &[4, 2, 3], &want, 0.0);
    // Squeeze/Unsqueeze axes as attributes (opset 11).
    let m = unary_model(
        11,
        &[1, 3],
        vec![
            node("Squeeze", "s", &["x"], &["s"], vec![a_ints("axes", &[0])]),
            node("Unsqueeze", "u", &["s"], &["u"], vec![a_ints("axes", &[1])]),
        ],
        vec![],
        &["u"],
    );
    let out = run(&import_ok(&m), &[tf(&[1, 3], &[1.0, 2.0, 3.0])]);
    assert_close(&out[0], &[3, 1], &[1.0, 2.0, 3.0], 0.0);
}

#[test]
fn concat_and_split_variants() {
    let x: Vec<f64> = (0..10).map(f64::from).collect();
    let m = unary_model(
        13,
        &[2, 5],
        vec![node("Concat", "c", &["x", "x"], &["c"], vec![a_int("axis", -1)])],
        vec![],
        &["c"],
    );
    let out = run(&import_ok(&m), &[tf(&[2, 5], &x)]);
    assert_close(
        &out[0],
        &[2, 10],
        &[0., 1., 2., 3., 4., 0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 5., 6., 7., 8., 9.],
        0.0,
    );
    // split as attribute (opset 11), as input (opset 13), equal parts, and num_outputs (opset 18).
    let cases = [
        unary_model(
            11,
            &[2, 5],
            vec![node("Split", "s", &["x"], &["a", "b"], vec![a_int("axis", 1), a_ints("split", &[2, 3])])],
            vec![],
            &["a", "b"],
        ),
        unary_model(
            13,
            &[2, 5],
            vec![node("Split", "s", &["x", "sp"], &["a", "b"], vec![a_int("axis", 1)])],
            vec![i64_raw("sp", &[2], &[2, 3])],
            &["a", "b"],
        ),
    ];
    for m in cases {
        let out = run(&import_ok(&m), &[tf(&[2, 5], &x)]);
        assert_close(&out[0], &[2, 2], &[0., 1., 5., 6.], 0.0);
        assert_close(&out[1], &[2, 3], &[2., 3., 4., 7., 8., 9.], 0.0);
    }
    let m = unary_model(
        18,
        &[2, 5],
        vec![node("Split", "s", &["x"], &["a", "b"], vec![a_int("axis", 1), a_int("num_outputs", 2)])],
        vec![],
        &["a", "b"],
    );
    let out = run(&import_ok(&m), &[tf(&[2, 5], &x)]);
    assert_close(&out[0], &[2, 3], &[0., 1., 2., 5., 6., 7.], 0.0);
    assert_close(&out[1], &[2, 2], &[3., 4., 8., 9.], 0.0);
    let m = unary_model(13, &[2, 5], vec![node("Split", "s", &["x"], &["a", "b"], vec![])], vec![], &["a", "b"]);
    let out = run(&import_ok(&m), &[tf(&[2, 5], &x)]);
    assert_close(&out[0], &[1, 5], &x[..5], 0.0);
}

#[test]
fn slice_inputs_clamping_and_negative_steps() {
    let x: Vec<f64> = (0..12).map(f64::from).collect(); // [3,4]
    let m = unary_model(
        13,
        &[3, 4],
        vec![
            // rows 1.., columns reversed from the end (huge start clamps), step -2
            node("Slice", "s1", &["x", "st", "en", "ax", "sp"], &["y1"], vec![]),
            // default axes/steps; end beyond the dim clamps; negative start counts from the end
            node("Slice", "s2", &["x", "st2", "en2"], &["y2"], vec![]),
        ],
        vec![
            i64_raw("st", &[2], &[1, i64::MAX]),
            i64_raw("en", &[2], &[i64::MAX, i64::MIN]),
            i64_raw("ax", &[2], &[0, -1]),
            i64_raw("sp", &[2], &[1, -2]),
            i64_raw("st2", &[2], &[-2, 1]),
            i64_raw("en2", &[2], &[100, 3]),
        ],
        &["y1", "y2"],
    );
    let out = run(&import_ok(&m), &[tf(&[3, 4], &x)]);
    assert_close(&out[0], &[2, 2], &[7., 5., 11., 9.], 0.0);
    assert_close(&out[1], &[2, 2], &[5., 6., 9., 10.], 0.0);
    // Opset 9: attributes.
    let m = unary_model(
        9,
        &[3, 4],
        vec![node(
            "Slice",
            "s",
            &["x"],
            &["y"],
            vec![a_ints("starts", &[1]), a_ints("ends", &[3]), a_ints("axes", &[1])],
        )],
        vec![],
        &["y"],
    );
    let out = run(&import_ok(&m), &[tf(&[3, 4], &x)]);
    assert_close(&out[0], &[3, 2], &[1., 2., 5., 6., 9., 10.], 0.0);
}

#[test]
fn gather_and_gather_elements() {
    // Embedding lookup: constant table, run-time indices.
    let table: Vec<f32> = (0..8).map(|i| i as f32).collect(); // [4,2]
    let m = model(
        13,
        vec![
            node("Gather", "emb", &["table", "ids"], &["e"], vec![]),
            node("GatherElements", "ge", &["table", "gi"], &["ge"], vec![a_int("axis", 1)]),
        ],
        vec![f32_raw("table", &[4, 2], &table), i64_raw("gi", &[4, 1], &[1, 0, 1, -2])],
        vec![vi("ids", dt::INT64, &[D::N(3)])],
        vec![vout("e"), vout("ge")],
    );
    let g = import_ok(&m);
    assert!(g.nodes.values().any(|n| n.op == Op::Gather { axis: 0 }));
    let out = run(&g, &[ti(&[3], &[3, 0, -1])]);
    assert_close(&out[0], &[3, 2], &[6., 7., 0., 1., 6., 7.], 0.0);
    // GatherElements on constants folds to a constant.
    assert_close(&out[1], &[4, 1], &[1., 2., 5., 6.], 0.0);
}

#[test]
fn conv_pads_and_auto_pad() {
    // 1 channel 3x3 input, 2x2 kernel of ones.
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let w = f32_raw("w", &[1, 1, 2, 2], &[1.0; 4]);
    let b = f32_raw("b", &[1], &[0.5]);
    let plain = unary_model(
        13,
        &[1, 1, 3, 3],
        vec![node("Conv", "c", &["x", "w", "b"], &["y"], vec![])],
        vec![w.clone(), b.clone()],
        &["y"],
    );
    let out = run(&import_ok(&plain), &[tf(&[1, 1, 3, 3], &x)]);
    assert_close(&out[0], &[1, 1, 2, 2], &[12.5, 16.5, 24.5, 28.5], 0.0);
    // SAME_UPPER with stride 1: pad 0 before, 1 after → 3x3 output.
    let same = unary_model(
        13,
        &[1, 1, 3, 3],
        vec![node("Conv", "c", &["x", "w"], &["y"], vec![a_str("auto_pad", "SAME_UPPER")])],
        vec![w.clone()],
        &["y"],
    );
    let out = run(&import_ok(&same), &[tf(&[1, 1, 3, 3], &x)]);
    assert_close(&out[0], &[1, 1, 3, 3], &[12., 16., 9., 24., 28., 15., 15., 17., 9.], 0.0);
    // Explicit pads and strides.
    let strided = unary_model(
        13,
        &[1, 1, 3, 3],
        vec![node(
            "Conv",
            "c",
            &["x", "w"],
            &["y"],
            vec![a_ints("pads", &[1, 1, 0, 0]), a_ints("strides", &[2, 2]), a_ints("kernel_shape", &[2, 2])],
        )],
        vec![w],
        &["y"],
    );
    let out = run(&import_ok(&strided), &[tf(&[1, 1, 3, 3], &x)]);
    assert_close(&out[0], &[1, 1, 2, 2], &[1., 5., 11., 28.], 0.0);
}

#[test]
fn constants_casts_and_identity() {
    let nodes = vec![
        node("Constant", "c1", &[], &["c1"], vec![a_tensor("value", f32_raw("", &[2], &[1.5, 2.5]))]),
        node("Constant", "c2", &[], &["c2"], vec![a_float("value_float", 3.0)]),
        node("Constant", "c3", &[], &["c3"], vec![a_floats("value_floats", &[1.0, 2.0])]),
        node("Constant", "c4", &[], &["c4"], vec![a_int("value_int", 7)]),
        node("Constant", "c5", &[], &["c5"], vec![a_ints("value_ints", &[1, 2])]),
        node("Add", "a", &["x", "c1"], &["a"], vec![]),
        node("Mul", "m", &["a", "c2"], &["m"], vec![]),
        node("Sub", "s", &["m", "c3"], &["s"], vec![]),
        node("Cast", "ci", &["c5"], &["c5f"], vec![a_int("to", dt::FLOAT as i64)]),
        node("Add", "a2", &["s", "c5f"], &["a2"], vec![]),
        node("Identity", "id", &["a2"], &["id"], vec![]),
        node("Dropout", "drop", &["id"], &["d"], vec![]),
        node("Cast", "toint", &["d"], &["i"], vec![a_int("to", dt::INT64 as i64)]),
        node("CastLike", "back", &["i", "x"], &["y"], vec![]),
        node("Mul", "m7", &["c4", "i"], &["i7"], vec![]),
    ];
    let g = import_ok(&unary_model(13, &[2], nodes, vec![], &["y", "i7"]));
    let out = run(&g, &[tf(&[2], &[0.0, 1.0])]);
    // ((x + [1.5, 2.5]) * 3 - [1, 2] + [1, 2]) → [4.5, 10.5] → int [4, 10]
    assert_close(&out[0], &[2], &[4.0, 10.0], 0.0);
    assert_eq!(out[0].dtype(), polyhe_ir::DType::F32);
    assert_eq!(out[1].dtype(), polyhe_ir::DType::I64);
    assert_close(&out[1], &[2], &[28.0, 70.0], 0.0);
}

#[test]
fn shape_subgraphs_fold_to_constants() {
    // y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) + Expand(ConstantOfShape(Shape(x)[1:]) , Shape(x))
    // + Range(0, Size(x)/… ) style arithmetic; all of it folds so only reshape/add/expand-free ops remain.
    let nodes = vec![
        node("Shape", "shape", &["x"], &["sh"], vec![]),
        node("Gather", "g0", &["sh", "zero"], &["d0"], vec![]),
        node("Unsqueeze", "u0", &["d0", "ax0"], &["d0u"], vec![]),
        node("Concat", "cat", &["d0u", "minus1"], &["target"], vec![a_int("axis", 0)]),
        node("Reshape", "rs", &["x", "target"], &["flat"], vec![]),
        node("Shape", "shape_tail", &["x"], &["tail"], vec![a_int("start", -1)]),
        node("ConstantOfShape", "cos", &["tail"], &["ones"], vec![a_tensor("value", f32_raw("", &[1], &[1.0]))]),
        node("Size", "size", &["x"], &["n"], vec![]),
        node("Cast", "nf", &["n"], &["nf"], vec![a_int("to", dt::FLOAT as i64)]),
        node("Range", "range", &["zf", "nf", "twof"], &["r"], vec![]),
        node("Mul", "scale", &["ones", "nf"], &["sc"], vec![]),
        node("Add", "out", &["x", "sc"], &["y"], vec![]),
    ];
    let inits = vec![
        i64_raw("zero", &[], &[0]),
        i64_raw("ax0", &[1], &[0]),
        i64_raw("minus1", &[1], &[-1]),
        f32_raw("zf", &[], &[0.0]),
        f32_raw("twof", &[], &[2.0]),
    ];
    let m = model(
        13,
        nodes,
        inits,
        vec![vi("x", dt::FLOAT, &[D::P("batch"), D::N(3)])],
        vec![vout("flat"), vout("y"), vout("r")],
    );
    let opts = ImportOptions { dims: [("batch".to_string(), 2)].into(), ..Default::default() };
    let g = import_model(&m, &opts).unwrap();
    let ops = op_counts(&g);
    assert_eq!(ops.keys().copied().collect::<Vec<_>>(), vec!["add", "const", "reshape"], "{ops:?}");
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    assert_close(&out[0], &[2, 3], &X6, 0.0);
    let want: Vec<f64> = X6.iter().map(|v| v + 6.0).collect();
    assert_close(&out[1], &[2, 3], &want, 0.0);
    assert_close(&out[2], &[3], &[0.0, 2.0, 4.0], 0.0);
}

#[test]
fn expand_clip_isinf_max_min_sum_gelu() {
    let nodes = vec![
        node("Expand", "e", &["x", "shape"], &["e"], vec![]),
        node("Clip", "clip", &["x", "lo", "hi"], &["clip"], vec![]),
        node("Clip", "clip_lo", &["x", "lo"], &["clip_lo"], vec![]),
        node("Max", "max", &["x", "lo", "hi"], &["max"], vec![]),
        node("Min", "min", &["x", "hi"], &["min"], vec![]),
        node("Sum", "sum", &["x", "x", "x"], &["sum"], vec![]),
        node("Div", "div", &["x", "zero"], &["inf"], vec![]),
        node("IsInf", "isinf", &["inf"], &["isinf"], vec![]),
        node("IsInf", "isposinf", &["inf"], &["isposinf"], vec![a_int("detect_negative", 0)]),
        node("IsNaN", "isnan", &["inf"], &["isnan"], vec![]),
    ];
    let inits = vec![
        i64_raw("shape", &[2], &[2, 1]),
        f32_raw("lo", &[], &[-1.0]),
        f32_raw("hi", &[], &[2.0]),
        f32_raw("zero", &[], &[0.0]),
    ];
    let outs = ["e", "clip", "clip_lo", "max", "min", "sum", "isinf", "isposinf", "isnan"];
    let g = import_ok(&unary_model(13, &[3], nodes, inits, &outs));
    let x = [-3.0, 0.0, 5.0];
    let out = run(&g, &[tf(&[3], &x)]);
    assert_close(&out[0], &[2, 3], &[-3., 0., 5., -3., 0., 5.], 0.0);
    assert_close(&out[1], &[3], &[-1., 0., 2.], 0.0);
    assert_close(&out[2], &[3], &[-1., 0., 5.], 0.0);
    assert_close(&out[3], &[3], &[2., 2., 5.], 0.0);
    assert_close(&out[4], &[3], &[-3., 0., 2.], 0.0);
    assert_close(&out[5], &[3], &[-9., 0., 15.], 0.0);
    assert_close(&out[6], &[3], &[1., 0., 1.], 0.0);
    assert_close(&out[7], &[3], &[0., 0., 1.], 0.0);
    assert_close(&out[8], &[3], &[0., 1., 0.], 0.0);
    // Clip bounds as attributes (opset 6).
    let g = import_ok(&unary_model(
        6,
        &[3],
        vec![node("Clip", "c", &["x"], &["y"], vec![a_float("min", 0.0), a_float("max", 1.0)])],
        vec![],
        &["y"],
    ));
    assert_close(&run(&g, &[tf(&[3], &x)])[0], &[3], &[0., 0., 1.], 0.0);
    // Gelu (opset 20), both approximations.
    let nodes = vec![
        node("Gelu", "g", &["x"], &["g"], vec![]),
        node("Gelu", "gt", &["x"], &["gt"], vec![a_str("approximate", "tanh")]),
    ];
    let g = import_ok(&unary_model(20, &[3], nodes, vec![], &["g", "gt"]));
    assert!(g.nodes.values().any(|n| n.op == Op::Gelu(polyhe_ir::GeluApprox::Tanh)));
    let out = run(&g, &[tf(&[3], &[-1.0, 0.0, 1.0])]);
    assert_close(&out[0], &[3], &[-0.15865525393145707, 0.0, 0.8413447460685429], 1e-9);
    assert_close(&out[1], &[3], &[-0.15880800939172324, 0.0, 0.8411919906082768], 1e-9);
}

#[test]
fn initializer_listed_as_input_is_a_constant() {
    let mut m = unary_model(
        13,
        &[2],
        vec![node("Add", "a", &["x", "w"], &["y"], vec![])],
        vec![f32_raw("w", &[2], &[1.0, 2.0])],
        &["y"],
    );
    m.graph.as_mut().unwrap().input.push(vf("w", &[2]));
    let g = import_ok(&m);
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.values[g.inputs[0]].name.as_deref(), Some("x"));
    assert_close(&run(&g, &[tf(&[2], &[1.0, 1.0])])[0], &[2], &[2.0, 3.0], 0.0);
    assert_eq!(
        inspect(&polyhe_frontend::decode(&prost::Message::encode_to_vec(&m), "m.onnx".as_ref(), None).unwrap())
            .inputs
            .len(),
        1
    );
}

#[test]
fn graph_input_passed_through_to_output_keeps_both_names() {
    let m = unary_model(13, &[2], vec![node("Identity", "id", &["x"], &["y"], vec![])], vec![], &["y"]);
    let g = import_ok(&m);
    assert_eq!(g.values[g.inputs[0]].name.as_deref(), Some("x"));
    assert_eq!(g.values[g.outputs[0]].name.as_deref(), Some("y"));
    assert_close(&run(&g, &[tf(&[2], &[1.0, 2.0])])[0], &[2], &[1.0, 2.0], 0.0);
}

#[test]
fn runtime_dependent_shapes_are_rejected_with_the_node_name() {
    // Range whose limit comes from a run-time input.
    let m = model(
        13,
        vec![node("Range", "pos_ids", &["zero", "n", "one"], &["r"], vec![])],
        vec![i64_raw("zero", &[], &[0]), i64_raw("one", &[], &[1])],
        vec![vi("n", dt::INT64, &[])],
        vec![vout("r")],
    );
    let err = import_model(&m, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, FrontendError::NotConstant { node, input, .. } if node == "pos_ids" && input == "n"),
        "{err}"
    );
    assert!(err.to_string().contains("pos_ids"));
    // Reshape whose shape is computed from data.
    let m = unary_model(
        13,
        &[2],
        vec![
            node("Cast", "c", &["x"], &["s"], vec![a_int("to", 7)]),
            node("Reshape", "rs", &["x", "s"], &["y"], vec![]),
        ],
        vec![],
        &["y"],
    );
    let err = import_model(&m, &ImportOptions::default()).unwrap_err();
    assert!(matches!(&err, FrontendError::NotConstant { node, .. } if node == "rs"), "{err}");
}

#[test]
fn shape_errors_name_the_node() {
    let m = unary_model(13, &[2, 3], vec![node("MatMul", "bad_mm", &["x", "x"], &["y"], vec![])], vec![], &["y"]);
    let err = import_model(&m, &ImportOptions::default()).unwrap_err();
    assert!(matches!(&err, FrontendError::Shape { node, .. } if node == "bad_mm"), "{err}");
    assert!(err.to_string().contains("bad_mm"), "{err}");
}

#[test]
fn every_unsupported_node_is_reported() {
    let m = unary_model(
        13,
        &[2, 3],
        vec![
            node("Relu", "ok", &["x"], &["a"], vec![]),
            node("NonZero", "nonzero_1", &["a"], &["b"], vec![]),
            node("TopK", "", &["b"], &["c"], vec![]),
            node("Relu", "ok2", &["c"], &["d"], vec![]),
            node("NonZero", "nonzero_2", &["d"], &["e"], vec![]),
            polyhe_frontend::proto::NodeProto {
                domain: "com.microsoft".into(),
                ..node("Attention", "attn", &["e"], &["y"], vec![])
            },
        ],
        vec![],
        &["y"],
    );
    let want = vec![
        ("NonZero".to_string(), "nonzero_1".to_string()),
        ("TopK".to_string(), "TopK_2".to_string()),
        ("NonZero".to_string(), "nonzero_2".to_string()),
        ("com.microsoft::Attention".to_string(), "attn".to_string()),
    ];
    match import_model(&m, &ImportOptions::default()) {
        Err(FrontendError::Unsupported { nodes }) => assert_eq!(nodes, want),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let info = inspect(&polyhe_frontend::decode(&prost::Message::encode_to_vec(&m), "m.onnx".as_ref(), None).unwrap());
    assert_eq!(info.unsupported, want);
    assert_eq!(info.op_histogram.get("Relu"), Some(&2));
    assert_eq!(info.op_histogram.get("com.microsoft::Attention"), Some(&1));
    let text = info.to_string();
    assert!(text.contains("nonzero_2") && text.contains("TopK_2"), "{text}");
}

#[test]
fn extra_outputs_that_are_used_are_rejected() {
    let m = unary_model(
        17,
        &[2, 3],
        vec![
            node("Dropout", "drop", &["x"], &["y", "mask"], vec![]),
            node("Cast", "c", &["mask"], &["mf"], vec![a_int("to", 1)]),
            node("Add", "a", &["y", "mf"], &["z"], vec![]),
        ],
        vec![],
        &["z"],
    );
    let err = import_model(&m, &ImportOptions::default()).unwrap_err();
    assert!(matches!(&err, FrontendError::InvalidNode { node, .. } if node == "drop"), "{err}");
    // Unused extra outputs are fine.
    let m = unary_model(
        17,
        &[2, 3],
        vec![node("LayerNormalization", "ln", &["x", "s"], &["y", "mean"], vec![])],
        vec![f32_raw("s", &[3], &[1.0; 3])],
        &["y"],
    );
    let _ = import_ok(&m);
}

#[test]
fn tile_mean_and_composite_reductions() {
    let nodes = vec![
        node("Mul", "x2", &["x", "two"], &["x2"], vec![]),
        node("Tile", "tile", &["x", "reps"], &["t"], vec![]),
        node("Mean", "mean", &["x", "x2"], &["m"], vec![]),
        node("ReduceL2", "l2", &["x"], &["l2"], vec![a_ints("axes", &[1]), a_int("keepdims", 0)]),
        node("ReduceSumSquare", "ss", &["x"], &["ss"], vec![a_ints("axes", &[0])]),
        node("Squeeze", "sq", &["ss", "empty"], &["sq"], vec![]),
    ];
    let inits = vec![i64_raw("reps", &[2], &[2, 2]), f32_raw("two", &[], &[2.0]), i64_raw("empty", &[0], &[])];
    let g = import_ok(&unary_model(13, &[2, 2], nodes, inits, &["t", "m", "l2", "ss", "sq"]));
    let out = run(&g, &[tf(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]);
    assert_close(&out[0], &[4, 4], &[1., 2., 1., 2., 3., 4., 3., 4., 1., 2., 1., 2., 3., 4., 3., 4.], 0.0);
    assert_close(&out[1], &[2, 2], &[1.5, 3.0, 4.5, 6.0], 1e-12);
    assert_close(&out[2], &[2], &[5f64.sqrt(), 5.0], 1e-12);
    assert_close(&out[3], &[1, 2], &[10.0, 20.0], 1e-12);
    // An empty axes input squeezes every size-1 dim.
    assert_close(&out[4], &[2], &[10.0, 20.0], 1e-12);
}

#[test]
fn layer_norm_stash_outputs_when_read() {
    // Mean and InvStdDev (outputs 1 and 2) over the normalized axes, as the exporters' training
    // form writes them; read by the graph's outputs.
    let nodes =
        vec![node("LayerNormalization", "ln", &["x", "s"], &["y", "mean", "inv_std"], vec![a_float("epsilon", 0.5)])];
    let inits = vec![f32_raw("s", &[3], &[1.0, 1.0, 1.0])];
    let g = import_ok(&unary_model(17, &[2, 3], nodes, inits, &["y", "mean", "inv_std"]));
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    let (mut means, mut invs) = (Vec::new(), Vec::new());
    for row in X6.chunks(3) {
        let mean = row.iter().sum::<f64>() / 3.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
        means.push(mean);
        invs.push(1.0 / (var + 0.5).sqrt());
    }
    assert_close(&out[1], &[2, 1], &means, 1e-9);
    assert_close(&out[2], &[2, 1], &invs, 1e-9);
}

#[test]
fn mod_integer_and_float_semantics() {
    // Integers, fmod = 0: the divisor's sign (Python); fmod = 1: the dividend's (C).
    let a = [7i64, -7, 7, -7, 0, 9];
    let b = [3i64, 3, -3, -3, 5, 4];
    let nodes = vec![
        node("Mod", "m0", &["a", "b"], &["r0"], vec![]),
        node("Mod", "m1", &["a", "b"], &["r1"], vec![a_int("fmod", 1)]),
        // A shape computation as the TorchScript exporter writes it: folds to a constant.
        node("Mod", "m2", &["ca", "cb"], &["r2"], vec![]),
    ];
    let m = model(
        17,
        nodes,
        vec![i64_raw("ca", &[2], &[10, -3]), i64_raw("cb", &[2], &[4, 4])],
        vec![vi("a", dt::INT64, &[D::N(6)]), vi("b", dt::INT64, &[D::N(6)])],
        vec![vout("r0"), vout("r1"), vout("r2")],
    );
    let g = import_ok(&m);
    let out = run(&g, &[ti(&[6], &a), ti(&[6], &b)]);
    assert_eq!(out[0].to_i64_vec(), vec![1, 2, -2, -1, 0, 1]);
    assert_eq!(out[1].to_i64_vec(), vec![1, -1, 1, -1, 0, 1]);
    assert_eq!(out[2].to_i64_vec(), vec![2, 1]);
    assert!(g.constant_of(g.outputs[2]).is_some(), "constant Mod folds");
    // Floats take fmod = 1 (C's fmod); fmod = 0 is refused with the node's name.
    let nodes = vec![node("Mod", "fm", &["x", "d"], &["r"], vec![a_int("fmod", 1)])];
    let g = import_ok(&unary_model(17, &[6], nodes, vec![f32_raw("d", &[], &[1.5])], &["r"]));
    let out = run(&g, &[tf(&[6], &X6)]);
    let want: Vec<f64> = X6.iter().map(|&x| x % 1.5).collect();
    assert_close(&out[0], &[6], &want, 1e-12);
    let nodes = vec![node("Mod", "bad_mod", &["x", "d"], &["r"], vec![])];
    let e =
        import_model(&unary_model(17, &[6], nodes, vec![f32_raw("d", &[], &[1.5])], &["r"]), &ImportOptions::default())
            .unwrap_err();
    assert!(e.to_string().contains("bad_mod") && e.to_string().contains("fmod"), "{e}");
}

#[test]
fn pad_constant_with_value_axes_and_negative_pads() {
    // [2, 3] padded by one row before, one column after with 9; then a crop of the first column.
    let nodes = vec![
        node("Pad", "pad", &["x", "pads", "v"], &["y"], vec![]),
        node("Pad", "crop", &["x", "neg", "", "ax"], &["z"], vec![]),
    ];
    let inits = vec![
        i64_raw("pads", &[4], &[1, 0, 0, 1]),
        f32_raw("v", &[], &[9.0]),
        i64_raw("neg", &[2], &[-1, 1]),
        i64_raw("ax", &[1], &[1]),
    ];
    let g = import_ok(&unary_model(18, &[2, 3], nodes, inits, &["y", "z"]));
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    #[rustfmt::skip]
    let want = [9.0, 9.0, 9.0, 9.0,
                1.0, -2.0, 3.0, 9.0,
                0.5, -0.25, 4.0, 9.0];
    assert_close(&out[0], &[3, 4], &want, 0.0);
    // Axis 1: one column cropped before, one zero column after.
    assert_close(&out[1], &[2, 3], &[-2.0, 3.0, 0.0, -0.25, 4.0, 0.0], 0.0);
    // Opset < 11: pads and value as attributes; other modes are refused by name.
    let nodes = vec![node("Pad", "old", &["x"], &["y"], vec![a_ints("pads", &[0, 1, 0, 0]), a_float("value", -1.0)])];
    let g = import_ok(&unary_model(9, &[2, 3], nodes, vec![], &["y"]));
    let out = run(&g, &[tf(&[2, 3], &X6)]);
    assert_close(&out[0], &[2, 4], &[-1.0, 1.0, -2.0, 3.0, -1.0, 0.5, -0.25, 4.0], 0.0);
    let nodes = vec![node("Pad", "mirror", &["x", "pads"], &["y"], vec![a_str("mode", "reflect")])];
    let e = import_model(
        &unary_model(18, &[2, 3], nodes, vec![i64_raw("pads", &[4], &[0, 1, 0, 1])], &["y"]),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("mirror") && e.to_string().contains("reflect"), "{e}");
}

#[test]
fn constants_computed_at_import_are_bounded_by_the_model_size() {
    // A few-byte model asking for 2^27-element constants (1 GiB each as f64) three ways: refused
    // before anything is allocated, naming the node (issue 16: memory amplification).
    let cases: Vec<(&str, Vec<polyhe_frontend::proto::NodeProto>, Vec<polyhe_frontend::proto::TensorProto>)> = vec![
        (
            "huge_fill",
            vec![
                node(
                    "ConstantOfShape",
                    "huge_fill",
                    &["shp"],
                    &["big"],
                    vec![a_tensor("value", f32_raw("v", &[1], &[1.0]))],
                ),
                node("ReduceSum", "rs", &["big"], &["s"], vec![a_int("keepdims", 0)]),
                node("Add", "add", &["x", "s"], &["y"], vec![]),
            ],
            vec![i64_raw("shp", &[1], &[1 << 27])],
        ),
        (
            "huge_range",
            vec![
                node("Range", "huge_range", &["a", "b", "d"], &["big"], vec![]),
                node("Cast", "c", &["big"], &["bf"], vec![a_int("to", 1)]),
                node("ReduceSum", "rs", &["bf"], &["s"], vec![a_int("keepdims", 0)]),
                node("Add", "add", &["x", "s"], &["y"], vec![]),
            ],
            vec![i64_raw("a", &[], &[0]), i64_raw("b", &[], &[1 << 27]), i64_raw("d", &[], &[1])],
        ),
        (
            "huge_expand",
            vec![
                node("Expand", "huge_expand", &["one", "shp"], &["big"], vec![]),
                node("ReduceSum", "rs", &["big"], &["s"], vec![a_int("keepdims", 0)]),
                node("Add", "add", &["x", "s"], &["y"], vec![]),
            ],
            vec![f32_raw("one", &[1], &[1.0]), i64_raw("shp", &[2], &[1 << 14, 1 << 13])],
        ),
    ];
    for (name, nodes, inits) in cases {
        let e = import_model(&unary_model(17, &[4], nodes, inits, &["y"]), &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().contains(name) && e.to_string().contains("computed at import"), "{e}");
    }
    // Within the bound (here 2^20 elements from a 4-element model): fine.
    let nodes = vec![
        node("ConstantOfShape", "fill", &["shp"], &["big"], vec![a_tensor("value", f32_raw("v", &[1], &[1.0]))]),
        node("ReduceSum", "rs", &["big"], &["s"], vec![a_int("keepdims", 0)]),
        node("Add", "add", &["x", "s"], &["y"], vec![]),
    ];
    let g = import_ok(&unary_model(17, &[4], nodes, vec![i64_raw("shp", &[1], &[1 << 20])], &["y"]));
    assert_close(&run(&g, &[tf(&[4], &[0.0; 4])])[0], &[4], &[(1 << 20) as f64; 4], 0.0);
}

#[test]
fn einsum_forms_and_errors() {
    // Implicit output (letters seen once, alphabetically) and a sum over a letter of one operand.
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let nodes = vec![
        node("Einsum", "implicit", &["x", "w"], &["y"], vec![a_str("equation", "ij,jk")]),
        node("Einsum", "rowsum", &["x"], &["r"], vec![a_str("equation", "ij->i")]),
    ];
    let inits = vec![f32_raw("w", &[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])];
    let g = import_ok(&unary_model(17, &[2, 3], nodes, inits, &["y", "r"]));
    let out = run(&g, &[tf(&[2, 3], &x)]);
    assert_close(&out[0], &[2, 2], &[4.0, 5.0, 10.0, 11.0], 1e-12);
    assert_close(&out[1], &[2], &[6.0, 15.0], 1e-12);
    // A diagonal, letters of different sizes, three operands: refused naming the node.
    for (eq, inputs, needle) in [
        ("ii->i", vec!["x"], "diagonal"),
        ("ij,ij->i", vec!["x", "w"], "sizes"),
        ("ij,jk,kl->il", vec!["x", "w", "w"], "operands"),
    ] {
        let nodes = vec![node("Einsum", "bad_einsum", &inputs, &["y"], vec![a_str("equation", eq)])];
        let inits = vec![f32_raw("w", &[3, 2], &[0.0; 6])];
        let e = import_model(&unary_model(17, &[2, 3], nodes, inits, &["y"]), &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().contains("bad_einsum") && e.to_string().contains(needle), "{eq}: {e}");
    }
}

#[test]
fn argmax_argmin_ties_keepdims_and_last_index() {
    // [2, 3]: ties in row 1 (4.0 twice for max); ArgMax keeps dims by default, axis -1.
    let x = [1.0, 5.0, 3.0, 4.0, -2.0, 4.0];
    let nodes = vec![
        node("ArgMax", "amax", &["x"], &["a"], vec![a_int("axis", -1)]),
        node(
            "ArgMax",
            "amax_last",
            &["x"],
            &["b"],
            vec![a_int("axis", 1), a_int("keepdims", 0), a_int("select_last_index", 1)],
        ),
        node("ArgMin", "amin", &["x"], &["c"], vec![a_int("axis", 0), a_int("keepdims", 0)]),
    ];
    let g = import_ok(&unary_model(17, &[2, 3], nodes, vec![], &["a", "b", "c"]));
    let out = run(&g, &[tf(&[2, 3], &x)]);
    assert_eq!(out[0].shape(), &[2, 1]);
    assert_eq!(out[0].to_i64_vec(), vec![1, 0]);
    assert_eq!(out[1].to_i64_vec(), vec![1, 2]);
    assert_eq!(out[2].shape(), &[3]);
    assert_eq!(out[2].to_i64_vec(), vec![0, 1, 0]);
}
