//! Recognition of decomposed LayerNorm and GELU (erf and tanh forms, in their common operand orders):
//! each variant fuses into one op, and the fused graph computes the same function as the unfused one
//! (interpreted on random inputs, ≤ 1e-6). Near-misses (wrong constants, intermediates used elsewhere)
//! are left alone.

// The models spell constants the way exporters write them (f32-rounded, truncated).
#![allow(clippy::approx_constant)]

mod common;

use std::collections::BTreeMap;

use common::*;
use polyhe_frontend::proto::{ModelProto, NodeProto, TensorProto};
use polyhe_frontend::ImportOptions;
use polyhe_ir::{GeluApprox, Op};

const SHAPE: [i64; 3] = [2, 3, 8];

fn scalar(name: &str, v: f32) -> TensorProto {
    f32_raw(name, &[], &[v])
}

/// Imports with and without recognition, checks both compute the same outputs on random inputs, and
/// returns the op counts of the recognized graph.
fn fused_equal(m: &ModelProto) -> BTreeMap<&'static str, usize> {
    let plain = import_ok(m);
    let fused =
        import_model(m, &ImportOptions { recognize: true, ..Default::default() }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fused.inputs.len(), plain.inputs.len());
    assert_eq!(fused.outputs.len(), plain.outputs.len());
    for seed in 1..4 {
        let n: usize = SHAPE.iter().product::<i64>() as usize;
        let x = tf(&SHAPE.map(|d| d as usize), &rand_vec(n, seed, 3.0));
        let a = run(&plain, std::slice::from_ref(&x));
        let b = run(&fused, &[x]);
        for (ta, tb) in a.iter().zip(&b) {
            assert_eq!(ta.ty, tb.ty);
            for (p, q) in ta.to_f64_vec().iter().zip(tb.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-6 * (1.0 + p.abs()), "seed {seed}: {p} vs {q}");
            }
        }
    }
    // Names of inputs/outputs survive the rebuild.
    for (i, &v) in fused.outputs.iter().enumerate() {
        assert_eq!(fused.values[v].name, plain.values[plain.outputs[i]].name);
    }
    op_counts(&fused)
}

#[derive(Clone, Copy, Debug)]
enum Square {
    Pow,
    MulSelf,
}
#[derive(Clone, Copy, Debug)]
enum Norm {
    Div,
    RecipMul,
}

/// Decomposed LayerNorm over the last axis of `x`, output `y`.
fn ln_model(square: Square, norm: Norm, affine: usize, commuted: bool) -> ModelProto {
    let sw = |a: &'static str, b: &'static str| if commuted { [b, a] } else { [a, b] };
    let mut nodes = vec![
        node("ReduceMean", "mean", &["x"], &["m"], vec![a_ints("axes", &[-1])]),
        node("Sub", "sub", &["x", "m"], &["d"], vec![]),
        match square {
            Square::Pow => node("Pow", "pow", &["d", "two"], &["sq"], vec![]),
            Square::MulSelf => node("Mul", "sqr", &["d", "d"], &["sq"], vec![]),
        },
        node("ReduceMean", "var", &["sq"], &["v"], vec![a_ints("axes", &[2])]),
        node("Add", "addeps", &sw("v", "eps"), &["ve"], vec![]),
        node("Sqrt", "sqrt", &["ve"], &["s"], vec![]),
    ];
    let n_out = if affine == 0 { "y" } else { "n" };
    match norm {
        Norm::Div => nodes.push(node("Div", "div", &["d", "s"], &[n_out], vec![])),
        Norm::RecipMul => {
            nodes.push(node("Reciprocal", "rec", &["s"], &["r"], vec![]));
            nodes.push(node("Mul", "mulr", &sw("d", "r"), &[n_out], vec![]));
        }
    }
    if affine >= 1 {
        nodes.push(node("Mul", "gamma", &sw("n", "scale"), &[if affine == 1 { "y" } else { "ns" }], vec![]));
    }
    if affine >= 2 {
        nodes.push(node("Add", "beta", &sw("ns", "bias"), &["y"], vec![]));
    }
    let inits = vec![
        scalar("two", 2.0),
        scalar("eps", 1e-5),
        f32_raw("scale", &[8], &rand_vec(8, 11, 1.5).iter().map(|&v| v as f32).collect::<Vec<_>>()),
        f32_raw("bias", &[8], &rand_vec(8, 12, 1.0).iter().map(|&v| v as f32).collect::<Vec<_>>()),
    ];
    model(13, nodes, inits, vec![vf("x", &SHAPE)], vec![vout("y")])
}

#[test]
fn layer_norm_variants_fuse() {
    for square in [Square::Pow, Square::MulSelf] {
        for norm in [Norm::Div, Norm::RecipMul] {
            for affine in 0..3 {
                for commuted in [false, true] {
                    let ops = fused_equal(&ln_model(square, norm, affine, commuted));
                    let what = format!("{square:?} {norm:?} affine={affine} commuted={commuted}: {ops:?}");
                    assert_eq!(ops.get("layer_norm"), Some(&1), "{what}");
                    for gone in ["reduce_mean", "sqrt", "sub", "mul", "div", "add", "pow", "reciprocal"] {
                        assert_eq!(ops.get(gone), None, "{what}");
                    }
                }
            }
        }
    }
    // The epsilon is the model's own constant, the axis the reduced one.
    let g = import_model(
        &ln_model(Square::Pow, Norm::Div, 2, false),
        &ImportOptions { recognize: true, ..Default::default() },
    )
    .unwrap();
    let ln = g.nodes.values().find(|n| matches!(n.op, Op::LayerNorm { .. })).unwrap();
    assert_eq!(ln.op, Op::LayerNorm { axis: 2, epsilon: 1e-5f32 as f64 });
    assert_eq!(ln.inputs.len(), 3);
}

#[test]
fn layer_norm_near_misses_are_left_alone() {
    // The centered value is also a graph output.
    let mut m = ln_model(Square::Pow, Norm::Div, 2, false);
    m.graph.as_mut().unwrap().output.push(vout("d"));
    let ops = fused_equal(&m);
    assert_eq!(ops.get("layer_norm"), None, "{ops:?}");
    // Exponent 4 is not a variance.
    let mut m = ln_model(Square::Pow, Norm::Div, 2, false);
    m.graph.as_mut().unwrap().initializer[0] = scalar("two", 4.0);
    let ops = fused_equal(&m);
    assert_eq!(ops.get("layer_norm"), None, "{ops:?}");
    // Mean over a different axis than the variance.
    let mut m = ln_model(Square::Pow, Norm::Div, 2, false);
    m.graph.as_mut().unwrap().node[3] = node("ReduceMean", "var", &["sq"], &["v"], vec![a_ints("axes", &[1])]);
    let ops = fused_equal(&m);
    assert_eq!(ops.get("layer_norm"), None, "{ops:?}");
}

#[derive(Clone, Copy, Debug)]
enum Tail {
    /// `(x * a) * 0.5`
    XaHalf,
    /// `(x * 0.5) * a`
    HalfXa,
    /// `x * (a * 0.5)`
    XaHalfInner,
}

/// `a` → `y` by one of the three tails; `x` is the GELU input.
fn tail_nodes(tail: Tail) -> Vec<NodeProto> {
    match tail {
        Tail::XaHalf => {
            vec![node("Mul", "t1", &["x", "a"], &["xa"], vec![]), node("Mul", "t2", &["xa", "half"], &["y"], vec![])]
        }
        Tail::HalfXa => {
            vec![node("Mul", "t1", &["half", "x"], &["hx"], vec![]), node("Mul", "t2", &["hx", "a"], &["y"], vec![])]
        }
        Tail::XaHalfInner => {
            vec![node("Mul", "t1", &["a", "half"], &["ah"], vec![]), node("Mul", "t2", &["x", "ah"], &["y"], vec![])]
        }
    }
}

fn gelu_erf_model(div: bool, tail: Tail, half: f32) -> ModelProto {
    let mut nodes = vec![
        if div {
            node("Div", "scale", &["x", "sqrt2"], &["d"], vec![])
        } else {
            node("Mul", "scale", &["inv_sqrt2", "x"], &["d"], vec![])
        },
        node("Erf", "erf", &["d"], &["e"], vec![]),
        node("Add", "plus1", &["one", "e"], &["a"], vec![]),
    ];
    nodes.extend(tail_nodes(tail));
    let inits =
        vec![scalar("sqrt2", 1.4142135), scalar("inv_sqrt2", 0.70710677), scalar("one", 1.0), scalar("half", half)];
    model(13, nodes, inits, vec![vf("x", &SHAPE)], vec![vout("y")])
}

#[derive(Clone, Copy, Debug)]
enum Cube {
    Pow,
    MulOuter,
    MulInner,
}

fn gelu_tanh_model(cube: Cube, tail: Tail) -> ModelProto {
    let mut nodes = match cube {
        Cube::Pow => vec![node("Pow", "cube", &["x", "three"], &["c"], vec![])],
        Cube::MulOuter => {
            vec![node("Mul", "sq", &["x", "x"], &["x2"], vec![]), node("Mul", "cube", &["x", "x2"], &["c"], vec![])]
        }
        Cube::MulInner => {
            vec![node("Mul", "sq", &["x", "x"], &["x2"], vec![]), node("Mul", "cube", &["x2", "x"], &["c"], vec![])]
        }
    };
    nodes.extend([
        node("Mul", "k", &["c", "coef"], &["k"], vec![]),
        node("Add", "inner", &["x", "k"], &["s"], vec![]),
        node("Mul", "scale", &["s2pi", "s"], &["t"], vec![]),
        node("Tanh", "tanh", &["t"], &["th"], vec![]),
        node("Add", "plus1", &["th", "one"], &["a"], vec![]),
    ]);
    nodes.extend(tail_nodes(tail));
    let inits = vec![
        scalar("three", 3.0),
        scalar("coef", 0.044715),
        scalar("s2pi", 0.7978846),
        scalar("one", 1.0),
        scalar("half", 0.5),
    ];
    model(13, nodes, inits, vec![vf("x", &SHAPE)], vec![vout("y")])
}

#[test]
fn gelu_erf_variants_fuse() {
    for div in [true, false] {
        for tail in [Tail::XaHalf, Tail::HalfXa, Tail::XaHalfInner] {
            let ops = fused_equal(&gelu_erf_model(div, tail, 0.5));
            assert_eq!(ops.get("gelu"), Some(&1), "div={div} {tail:?}: {ops:?}");
            assert_eq!(ops.len(), 1, "only the gelu is left: {ops:?}");
        }
    }
    let g = import_model(
        &gelu_erf_model(true, Tail::XaHalf, 0.5),
        &ImportOptions { recognize: true, ..Default::default() },
    )
    .unwrap();
    assert!(g.nodes.values().any(|n| n.op == Op::Gelu(GeluApprox::Erf)));
}

#[test]
fn gelu_tanh_variants_fuse() {
    for cube in [Cube::Pow, Cube::MulOuter, Cube::MulInner] {
        for tail in [Tail::XaHalf, Tail::HalfXa, Tail::XaHalfInner] {
            let ops = fused_equal(&gelu_tanh_model(cube, tail));
            assert_eq!(ops.get("gelu"), Some(&1), "{cube:?} {tail:?}: {ops:?}");
            assert_eq!(ops.len(), 1, "only the gelu is left: {ops:?}");
        }
    }
    let g = import_model(
        &gelu_tanh_model(Cube::Pow, Tail::HalfXa),
        &ImportOptions { recognize: true, ..Default::default() },
    )
    .unwrap();
    assert!(g.nodes.values().any(|n| n.op == Op::Gelu(GeluApprox::Tanh)));
}

#[test]
fn gelu_near_misses_are_left_alone() {
    // 0.6 instead of 0.5.
    let ops = fused_equal(&gelu_erf_model(true, Tail::XaHalf, 0.6));
    assert_eq!(ops.get("gelu"), None, "{ops:?}");
    // Within tolerance (1e-4 relative) still fuses.
    let ops = fused_equal(&gelu_erf_model(true, Tail::XaHalf, 0.5 * (1.0 + 1e-7)));
    assert_eq!(ops.get("gelu"), Some(&1), "{ops:?}");
    // The erf result is also an output.
    let mut m = gelu_erf_model(false, Tail::HalfXa, 0.5);
    m.graph.as_mut().unwrap().output.push(vout("e"));
    let ops = fused_equal(&m);
    assert_eq!(ops.get("gelu"), None, "{ops:?}");
    // x³ used elsewhere (tanh form).
    let mut m = gelu_tanh_model(Cube::Pow, Tail::XaHalf);
    m.graph.as_mut().unwrap().output.push(vout("c"));
    let ops = fused_equal(&m);
    assert_eq!(ops.get("gelu"), None, "{ops:?}");
}

#[test]
fn layer_norm_then_gelu_both_fuse() {
    // LN output feeds a GELU; both patterns are found in one rebuild.
    let ln = ln_model(Square::MulSelf, Norm::RecipMul, 2, true);
    let gelu = gelu_erf_model(false, Tail::XaHalfInner, 0.5);
    let mut nodes = ln.graph.as_ref().unwrap().node.clone();
    for n in &mut nodes {
        for o in n.output.iter_mut().filter(|o| *o == "y") {
            *o = "ln_out".into();
        }
    }
    for mut n in gelu.graph.as_ref().unwrap().node.clone() {
        for i in n.input.iter_mut().filter(|i| *i == "x") {
            *i = "ln_out".into();
        }
        n.name = format!("gelu/{}", n.name);
        nodes.push(n);
    }
    let mut inits = ln.graph.as_ref().unwrap().initializer.clone();
    inits.extend(gelu.graph.as_ref().unwrap().initializer.clone());
    let m = model(13, nodes, inits, vec![vf("x", &SHAPE)], vec![vout("y")]);
    let ops = fused_equal(&m);
    assert_eq!(ops.get("layer_norm"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&1), "{ops:?}");
}
