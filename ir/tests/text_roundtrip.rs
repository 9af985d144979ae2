//! Text form tests: `parse(print(g)) == g` and print idempotence on random graphs (property tests),
//! parser robustness on garbage and truncated text, parse errors with positions, constant elision,
//! Graphviz output, the printed-form snapshot, and the `.ir` file tests in `tests/filetests/text/`.

use polyhe_ir::text::{parse, print, to_dot, PrintOptions};
use polyhe_ir::verify::verify;
use polyhe_ir::{Const, DType, Data, GeluApprox, Graph, IrError, Op, Tensor, TensorType, Value};
use proptest::prelude::*;

fn full() -> PrintOptions {
    PrintOptions::default()
}

/// Asserts the round-trip contract on `g` and returns the printed text.
fn assert_roundtrip(g: &Graph) -> String {
    let text = print(g, &full());
    let back = match parse(&text) {
        Ok(b) => b,
        Err(e) => panic!("printed text does not parse: {e}\n{text}"),
    };
    assert_eq!(&back, g, "parse(print(g)) != g for\n{text}");
    assert_eq!(print(&back, &full()), text, "print is not idempotent");
    text
}

fn parse_err(src: &str) -> (usize, usize, String) {
    match parse(src) {
        Err(IrError::Parse { line, col, msg }) => (line, col, msg),
        Err(other) => panic!("expected a parse error, got {other}"),
        Ok(g) => panic!("expected a parse error, parsed {g:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Strategies
// ------------------------------------------------------------------------------------------------

/// Floats that stress shortest-round-trip printing. NaN is excluded because `NaN != NaN` would make
/// graph equality fail; it has its own test.
fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("no NaN", |x| !x.is_nan()),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1e-300,
            -1e-300,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e16,
            1e-5,
            0.1,
            1.0,
            -2.5,
            123456789.0,
        ]),
        -1e3f64..1e3,
    ]
}

fn arb_dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

fn arb_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..5, 0..4)
}

fn arb_type() -> impl Strategy<Value = TensorType> {
    (arb_dtype(), arb_shape()).prop_map(|(d, s)| TensorType::new(d, s))
}

fn arb_tensor() -> impl Strategy<Value = Tensor> {
    (arb_dtype(), prop::collection::vec(1usize..5, 0..3)).prop_flat_map(|(dtype, shape)| {
        let n: usize = shape.iter().product();
        let ty = TensorType::new(dtype, shape);
        let data: BoxedStrategy<Data> = if dtype.is_float() {
            // Either arbitrary f64 values or values that are exactly f32 (what f32 weights hold), which
            // print in f32 precision for f16/f32 constants.
            let f32s =
                prop::collection::vec(any::<f32>().prop_filter("no NaN", |x| !x.is_nan()).prop_map(f64::from), n);
            prop_oneof![prop::collection::vec(arb_f64(), n), f32s].prop_map(Data::Float).boxed()
        } else if dtype.is_int() {
            prop::collection::vec(any::<i64>(), n).prop_map(Data::Int).boxed()
        } else {
            prop::collection::vec(any::<bool>(), n).prop_map(Data::Bool).boxed()
        };
        data.prop_map(move |d| Tensor::new(ty.clone(), d).expect("generated tensor fits its type"))
    })
}

/// Names with quotes, backslashes, control characters and non-ASCII text.
fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_/:.]{0,12}",
        prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        Just("a \"quoted\" \\ name\n\t\r\u{1}\u{7f}é/∑".to_string()),
    ]
}

fn usizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..9, 0..4)
}

fn i64s() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(any::<i64>(), 0..4)
}

/// Every op that is not `Constant`, with random attributes (types need not fit: parse does not check).
fn arb_op() -> BoxedStrategy<Op> {
    let simple = prop::sample::select(vec![
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Pow,
        Op::Max,
        Op::Min,
        Op::Equal,
        Op::Less,
        Op::LessOrEqual,
        Op::Greater,
        Op::GreaterOrEqual,
        Op::And,
        Op::Or,
        Op::Xor,
        Op::Neg,
        Op::Abs,
        Op::Sqrt,
        Op::Reciprocal,
        Op::Exp,
        Op::Log,
        Op::Erf,
        Op::Tanh,
        Op::Sigmoid,
        Op::Relu,
        Op::Floor,
        Op::Ceil,
        Op::Not,
        Op::IsNaN,
        Op::IsInf,
        Op::Identity,
        Op::Where,
        Op::MatMul,
    ]);
    let reduce = (usizes(), any::<bool>(), 0..4u8).prop_map(|(axes, keepdims, k)| match k {
        0 => Op::ReduceMean { axes, keepdims },
        1 => Op::ReduceSum { axes, keepdims },
        2 => Op::ReduceMax { axes, keepdims },
        _ => Op::ReduceMin { axes, keepdims },
    });
    let axis_op = (0usize..6, 0..4u8).prop_map(|(axis, k)| match k {
        0 => Op::Softmax { axis },
        1 => Op::Concat { axis },
        2 => Op::Gather { axis },
        _ => Op::GatherElements { axis },
    });
    let shape_op = (usizes(), 0..3u8).prop_map(|(v, k)| match k {
        0 => Op::Transpose { perm: v },
        1 => Op::Reshape { shape: v },
        _ => Op::Expand { shape: v },
    });
    prop_oneof![
        4 => simple,
        1 => arb_dtype().prop_map(Op::Cast),
        1 => (prop::option::of(arb_f64()), prop::option::of(arb_f64())).prop_map(|(min, max)| Op::Clip { min, max }),
        1 => prop::sample::select(vec![GeluApprox::Erf, GeluApprox::Tanh]).prop_map(Op::Gelu),
        1 => (0usize..6, arb_f64()).prop_map(|(axis, epsilon)| Op::LayerNorm { axis, epsilon }),
        1 => arb_f64().prop_map(|epsilon| Op::BatchNorm { epsilon }),
        1 => (arb_f64(), arb_f64(), any::<bool>(), any::<bool>())
            .prop_map(|(alpha, beta, trans_a, trans_b)| Op::Gemm { alpha, beta, trans_a, trans_b }),
        1 => (usizes(), usizes(), usizes(), usizes(), 0usize..4).prop_map(|(kernel_shape, strides, pads, dilations, group)| {
            Op::Conv { kernel_shape, strides, pads, dilations, group }
        }),
        1 => reduce,
        1 => axis_op,
        1 => shape_op,
        1 => (0usize..4, prop::collection::vec(0usize..5, 0..4)).prop_map(|(axis, sizes)| Op::Split { axis, sizes }),
        1 => (usizes(), i64s(), i64s(), i64s()).prop_map(|(axes, starts, ends, steps)| Op::Slice { axes, starts, ends, steps }),
    ]
    .boxed()
}

/// One step of a structural recipe.
#[derive(Debug, Clone)]
enum Step {
    /// A node: op (or `const` of constant `pick` when `is_const`), operand picks, result types and names.
    Node { op: Op, is_const: bool, picks: Vec<usize>, types: Vec<TensorType>, names: Vec<Option<String>>, name: String },
    /// A graph input added after some nodes (its value id is then larger than earlier results).
    LateInput(TensorType, Option<String>),
}

fn arb_step() -> impl Strategy<Value = Step> {
    let node = (
        arb_op(),
        prop::bool::weighted(0.2),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec((arb_type(), prop::option::of(arb_name())), 3),
        prop_oneof![Just(String::new()), arb_name()],
    )
        .prop_map(|(op, is_const, picks, outs, name)| {
            let (types, names) = outs.into_iter().unzip();
            Step::Node { op, is_const, picks, types, names, name }
        });
    prop_oneof![9 => node, 1 => (arb_type(), prop::option::of(arb_name())).prop_map(|(t, n)| Step::LateInput(t, n))]
}

/// Random graphs with arbitrary (not shape-checked) types, every op and attribute, weird names and
/// values, late inputs, unused constants. Every value is defined exactly once and used after its
/// definition, which is all the text form needs.
fn arb_structural_graph() -> impl Strategy<Value = Graph> {
    (
        arb_name(),
        prop::collection::vec((arb_type(), prop::option::of(arb_name())), 0..3),
        prop::collection::vec(arb_tensor(), 0..4),
        prop::collection::vec(arb_step(), 0..10),
        prop::collection::vec(any::<usize>(), 0..4),
    )
        .prop_map(|(gname, inputs, consts, steps, out_picks)| {
            let mut g = Graph::new(gname);
            let mut defined: Vec<Value> = Vec::new();
            for (ty, name) in inputs {
                let v = g.add_input("tmp", ty);
                g.values[v].name = name;
                defined.push(v);
            }
            for t in consts {
                g.constants.push(t);
            }
            for step in steps {
                match step {
                    Step::LateInput(ty, name) => {
                        let v = g.add_input("tmp", ty);
                        g.values[v].name = name;
                        defined.push(v);
                    }
                    Step::Node { op, is_const, picks, types, names, name } => {
                        let op = if is_const && !g.constants.is_empty() {
                            let c = picks.first().copied().unwrap_or(0) % g.constants.len();
                            Op::Constant(Const::from_u32(c as u32))
                        } else {
                            op
                        };
                        let inputs: Vec<Value> = match (&op, defined.is_empty()) {
                            (Op::Constant(_), _) | (_, true) => Vec::new(),
                            _ => picks.iter().map(|p| defined[p % defined.len()]).collect(),
                        };
                        let k = op.num_outputs().min(types.len());
                        let n = g.add_node_typed(op, inputs, types[..k].to_vec(), name);
                        let outs = g.nodes[n].outputs.clone();
                        for (v, vname) in outs.into_iter().zip(names) {
                            g.values[v].name = vname;
                            defined.push(v);
                        }
                    }
                }
            }
            if !defined.is_empty() {
                g.outputs = out_picks.iter().map(|p| defined[p % defined.len()]).collect();
            }
            g
        })
}

// ------------------------------------------------------------------------------------------------
// Property tests
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn structural_graphs_roundtrip(g in arb_structural_graph()) {
        assert_roundtrip(&g);
    }

    /// The verifier and the Graphviz printer never panic, whatever the graph (most of these graphs are
    /// ill-typed, so this also drives shape inference with arbitrary attributes).
    #[test]
    fn verifier_and_dot_survive_arbitrary_graphs(g in arb_structural_graph()) {
        let _ = verify(&g);
        let dot = to_dot(&g);
        let edges = dot.lines().filter(|l| l.contains(" -> ")).count();
        let uses: usize = g.nodes.values().map(|n| n.inputs.len()).sum::<usize>() + g.outputs.len();
        prop_assert_eq!(edges, uses);
    }

    /// Truncating valid text anywhere, or replacing one character, yields `Ok` or a parse error with
    /// a position inside the text, never a panic.
    #[test]
    fn parser_survives_truncation_and_mutation(
        g in arb_structural_graph(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        ch in prop::sample::select(vec!['v', 'c', '0', '9', '"', '\\', '{', '}', '[', ']', ',', '=', '-', '>', ':', '@', '<', ' ', '\n', 'é', '/']),
    ) {
        let text = print(&g, &full());
        let chars: Vec<char> = text.chars().collect();
        let truncated: String = chars[..cut.index(chars.len() + 1)].iter().collect();
        check_error_position(&truncated);
        let mut mutated = chars.clone();
        if !mutated.is_empty() {
            let i = at.index(mutated.len());
            mutated[i] = ch;
        }
        check_error_position(&mutated.iter().collect::<String>());
    }

    /// Arbitrary strings (including near-miss syntax) never make the parser panic.
    #[test]
    fn parser_survives_garbage(src in prop_oneof![
        any::<String>(),
        "[graph\"(){}\\[\\],:=@<>v0c1 f32i64\\-\\.e0-9\n]{0,80}",
        "graph \"g\" \\(v0: f32\\[[0-9,]{0,6}\\]\\) \\{[ -~\n]{0,60}",
    ]) {
        check_error_position(&src);
    }
}

/// Parses `src`; if it fails, the error must be a parse error whose position lies within the text.
fn check_error_position(src: &str) {
    match parse(src) {
        Ok(_) => {}
        Err(IrError::Parse { line, col, msg }) => {
            let lines: Vec<&str> = src.split('\n').collect();
            assert!(line >= 1 && line <= lines.len(), "line {line} out of range for {src:?}: {msg}");
            let width = lines[line - 1].chars().count();
            assert!(col >= 1 && col <= width + 1, "column {col} out of range on line {line} of {src:?}: {msg}");
            assert!(!msg.is_empty());
        }
        Err(other) => panic!("non-parse error {other} for {src:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Hand-written graphs
// ------------------------------------------------------------------------------------------------

/// A small encoder-like graph built by hand (types written out, so it does not depend on inference).
fn small_graph() -> Graph {
    let mut g = Graph::new("tiny");
    let f = |s: &[usize]| TensorType::new(DType::F32, s.to_vec());
    let x = g.add_input("input", f(&[1, 2, 4]));
    let w = g.add_constant(
        Tensor::float(DType::F32, vec![4, 4], (0..16).map(|i| i as f64 * 0.125 - 1.0).collect()).unwrap(),
        "onnx::MatMul_12",
    );
    let mm = g.add_node_typed(Op::MatMul, vec![x, w], vec![f(&[1, 2, 4])], "/attn/q/MatMul");
    let mm = g.result(mm);
    let gamma = g.add_constant(Tensor::float(DType::F32, vec![4], vec![1.0, 1.0, 0.5, -0.0]).unwrap(), "gamma");
    let ln =
        g.add_node_typed(Op::LayerNorm { axis: 2, epsilon: 1e-5 }, vec![mm, gamma, gamma], vec![f(&[1, 2, 4])], "/ln");
    let ln = g.result(ln);
    let sp = g.add_node_typed(
        Op::Split { axis: 2, sizes: vec![2, 2] },
        vec![ln],
        vec![f(&[1, 2, 2]), f(&[1, 2, 2])],
        "/split",
    );
    let (a, b) = (g.nodes[sp].outputs[0], g.nodes[sp].outputs[1]);
    let clip = g.add_node_typed(Op::Clip { min: None, max: Some(6.0) }, vec![b], vec![f(&[1, 2, 2])], "");
    let c = g.result(clip);
    let mask = g.add_constant(Tensor::boolean(vec![2], vec![true, false]).unwrap(), "mask");
    let idx = g.add_constant(Tensor::int(DType::I64, vec![], vec![-3]).unwrap(), "idx");
    let _ = (mask, idx);
    g.set_name(a, "out \"a\"");
    g.outputs = vec![a, c];
    g
}

#[test]
fn snapshot_small_graph() {
    let g = small_graph();
    let text = assert_roundtrip(&g);
    insta::assert_snapshot!(text);
}

#[test]
fn every_op_variant_roundtrips() {
    // One node per op variant, with attribute values at the edges of their ranges.
    let mut ops = vec![
        Op::Constant(Const::from_u32(0)),
        Op::Cast(DType::F16),
        Op::Cast(DType::Bool),
        Op::Clip { min: None, max: None },
        Op::Clip { min: Some(f64::NEG_INFINITY), max: Some(-0.0) },
        Op::Clip { min: Some(1e-300), max: None },
        Op::Gelu(GeluApprox::Erf),
        Op::Gelu(GeluApprox::Tanh),
        Op::Softmax { axis: 0 },
        Op::LayerNorm { axis: 2, epsilon: 1e-12 },
        Op::BatchNorm { epsilon: f64::MIN_POSITIVE },
        Op::Gemm { alpha: f64::INFINITY, beta: 0.1, trans_a: true, trans_b: false },
        Op::Conv { kernel_shape: vec![3, 3], strides: vec![1, 2], pads: vec![0, 1, 0, 1], dilations: vec![], group: 1 },
        Op::ReduceMean { axes: vec![], keepdims: true },
        Op::ReduceSum { axes: vec![0, 1], keepdims: false },
        Op::ReduceMax { axes: vec![3], keepdims: true },
        Op::ReduceMin { axes: vec![2], keepdims: false },
        Op::Transpose { perm: vec![2, 0, 1] },
        Op::Reshape { shape: vec![] },
        Op::Expand { shape: vec![1, 5] },
        Op::Concat { axis: 1 },
        Op::Split { axis: 0, sizes: vec![] },
        Op::Split { axis: 1, sizes: vec![1, 2, 3] },
        Op::Slice { axes: vec![0], starts: vec![i64::MIN], ends: vec![i64::MAX], steps: vec![-1] },
        Op::Gather { axis: 0 },
        Op::GatherElements { axis: 3 },
    ];
    for op in [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Pow,
        Op::Max,
        Op::Min,
        Op::Equal,
        Op::Less,
        Op::LessOrEqual,
        Op::Greater,
        Op::GreaterOrEqual,
        Op::And,
        Op::Or,
        Op::Xor,
        Op::Neg,
        Op::Abs,
        Op::Sqrt,
        Op::Reciprocal,
        Op::Exp,
        Op::Log,
        Op::Erf,
        Op::Tanh,
        Op::Sigmoid,
        Op::Relu,
        Op::Floor,
        Op::Ceil,
        Op::Not,
        Op::IsNaN,
        Op::IsInf,
        Op::Identity,
        Op::Where,
        Op::MatMul,
    ] {
        ops.push(op);
    }
    let mut g = Graph::new("all");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
    g.constants.push(Tensor::float(DType::F32, vec![2], vec![1.0, 2.0]).unwrap());
    for (i, op) in ops.into_iter().enumerate() {
        let inputs = if matches!(op, Op::Constant(_)) { vec![] } else { vec![x, x] };
        let k = op.num_outputs();
        g.add_node_typed(op, inputs, vec![TensorType::new(DType::F32, vec![2]); k], format!("n{i}"));
    }
    let text = assert_roundtrip(&g);
    assert!(
        text.contains("slice {axes=[0], starts=[-9223372036854775808], ends=[9223372036854775807], steps=[-1]}"),
        "{text}"
    );
    assert!(text.contains("clip {min=-inf, max=-0.0}"), "{text}");
    assert!(text.contains("() = split {axis=0, sizes=[]} v0, v0"), "{text}");
}

#[test]
fn nan_constants_print_and_parse() {
    let mut g = Graph::new("nan");
    g.add_constant(Tensor::float(DType::F64, vec![3], vec![f64::NAN, f64::INFINITY, -f64::NAN]).unwrap(), "k");
    let text = print(&g, &full());
    assert!(text.contains("[NaN, inf, NaN]"), "{text}");
    let back = parse(&text).unwrap();
    let Data::Float(v) = &back.constants[Const::from_u32(0)].data else { panic!("float storage expected") };
    assert!(v[0].is_nan() && v[1] == f64::INFINITY && v[2].is_nan());
    assert_eq!(print(&back, &full()), text);
}

#[test]
fn f32_constants_print_in_f32_precision() {
    let mut g = Graph::new("p");
    let f32s = vec![f64::from(0.1f32), f64::from(-1e-5f32), f64::from(f32::MAX), -0.0, f64::INFINITY];
    g.add_constant(Tensor::float(DType::F32, vec![5], f32s.clone()).unwrap(), "a");
    g.add_constant(Tensor::float(DType::F16, vec![1], vec![0.5]).unwrap(), "b");
    // 0.1 (f64) is not an f32, so this f32 constant keeps full precision.
    g.add_constant(Tensor::float(DType::F32, vec![2], vec![0.1, 0.5]).unwrap(), "c");
    g.add_constant(Tensor::float(DType::F64, vec![1], vec![f64::from(0.1f32)]).unwrap(), "d");
    let text = assert_roundtrip(&g);
    assert!(text.contains("const c0: f32[5] = [0.1, -1e-5, 3.4028235e38, -0.0, inf]"), "{text}");
    assert!(text.contains("const c1: f16[1] = [0.5]"), "{text}");
    assert!(text.contains("const c2: f32[2] = f64 [0.1, 0.5]"), "{text}");
    assert!(text.contains("const c3: f64[1] = [0.10000000149011612]"), "{text}");
    let (line, col, msg) = parse_err("graph \"g\" () {\n} -> ()\nconst c0: i64[1] = f64 [1]\n");
    assert_eq!((line, col, msg.as_str()), (3, 20, "`f64` data only applies to float constants, c0 is i64[1]"));
}

#[test]
fn large_constants_wrap_and_roundtrip() {
    let mut g = Graph::new("big");
    let data: Vec<f64> = (0..40).map(|i| (i as f64).sin()).collect();
    g.add_constant(Tensor::float(DType::F32, vec![5, 8], data).unwrap(), "w");
    let text = assert_roundtrip(&g);
    // 40 elements at 16 per line: an opening line, three data lines, a closing bracket.
    let const_lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("const c0")).collect();
    assert_eq!(const_lines.len(), 5, "{text}");
    assert_eq!(const_lines[4], "]");
}

// ------------------------------------------------------------------------------------------------
// Elision
// ------------------------------------------------------------------------------------------------

#[test]
fn elided_constants_print_a_summary_that_parse_rejects() {
    let mut g = Graph::new("e");
    g.add_constant(Tensor::float(DType::F32, vec![4], vec![0.5, -0.12, 0.13, f64::NAN]).unwrap(), "f");
    g.add_constant(Tensor::int(DType::I64, vec![3], vec![7, -2, 5]).unwrap(), "i");
    g.add_constant(Tensor::boolean(vec![3], vec![true, false, true]).unwrap(), "b");
    g.add_constant(Tensor::float(DType::F32, vec![2], vec![1.0, 2.0]).unwrap(), "small");
    let text = print(&g, &PrintOptions { elide_constants_over: Some(2) });
    assert!(text.contains("const c0: f32[4] = <elided 4 values, min -0.12 max 0.5, 1 NaN>"), "{text}");
    assert!(text.contains("const c1: i64[3] = <elided 3 values, min -2 max 7>"), "{text}");
    assert!(text.contains("const c2: bool[3] = <elided 3 values, 2 true>"), "{text}");
    assert!(text.contains("const c3: f32[2] = [1.0, 2.0]"), "{text}");
    let (line, col, msg) = parse_err(&text);
    let expected_line = text.lines().position(|l| l.starts_with("const c0")).unwrap() + 1;
    assert_eq!((line, col), (expected_line, 20));
    assert!(msg.contains("elided") && msg.contains("c0"), "{msg}");
}

// ------------------------------------------------------------------------------------------------
// Parse errors
// ------------------------------------------------------------------------------------------------

const GOOD: &str = "graph \"g\" (v0: f32[2] \"x\") {\n  v1: f32[2] = neg v0 @\"n\"\n} -> (v1)\n";

#[test]
fn good_text_parses() {
    let g = parse(GOOD).unwrap();
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(print(&g, &full()), GOOD);
}

#[test]
fn unknown_op() {
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2]) {\n  v1: f32[2] = frobnicate v0\n} -> (v1)\n");
    assert_eq!((line, col), (2, 16));
    assert_eq!(msg, "unknown op `frobnicate`");
}

#[test]
fn undefined_value() {
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2]) {\n  v1: f32[2] = add v0, v7\n} -> (v1)\n");
    assert_eq!((line, col), (2, 24));
    assert!(msg.contains("v7") && msg.contains("before it is defined"), "{msg}");
}

#[test]
fn use_before_definition() {
    let src = "graph \"g\" (v0: f32[2]) {\n  v1: f32[2] = neg v2\n  v2: f32[2] = neg v0\n} -> (v1)\n";
    let (line, col, msg) = parse_err(src);
    assert_eq!((line, col), (2, 20));
    assert!(msg.contains("v2"), "{msg}");
    // A node may not use its own result.
    let (line, col, _) = parse_err("graph \"g\" (v0: f32[2]) {\n  v1: f32[2] = neg v1\n} -> (v1)\n");
    assert_eq!((line, col), (2, 20));
}

#[test]
fn undefined_output_and_constant() {
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2]) {\n} -> (v0, v3)\n");
    assert_eq!((line, col), (2, 11));
    assert!(msg.contains("v3"), "{msg}");
    let (line, col, msg) =
        parse_err("graph \"g\" () {\n  v0: f32[2] = const c1\n} -> (v0)\nconst c0: f32[2] = [1.0, 2.0]\n");
    assert_eq!((line, col), (2, 22));
    assert!(msg.contains("undefined constant c1"), "{msg}");
}

#[test]
fn redefinition_and_sparse_ids() {
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2]) {\n  v0: f32[2] = neg v0\n} -> (v0)\n");
    assert_eq!((line, col), (2, 3));
    assert!(msg.contains("already defined at line 1, column 12"), "{msg}");
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2]) {\n  v5: f32[2] = neg v0\n} -> (v5)\n");
    assert_eq!((line, col), (2, 3));
    assert!(msg.contains("dense") && msg.contains("v5") && msg.contains("v1"), "{msg}");
}

#[test]
fn bad_type() {
    let (line, col, msg) = parse_err("graph \"g\" (v0: f31[2]) {\n} -> (v0)\n");
    assert_eq!((line, col), (1, 16));
    assert!(msg.starts_with("expected a type (f16, f32, f64, i8, u8, i32, i64, bool"), "{msg}");
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2,-1]) {\n} -> (v0)\n");
    assert_eq!((line, col), (1, 22));
    assert!(msg.contains("dimension"), "{msg}");
    let (_, _, msg) = parse_err("graph \"g\" (v0: f32[4294967296,4294967296,4294967296]) {\n} -> (v0)\n");
    assert!(msg.contains("more elements than fit"), "{msg}");
}

#[test]
fn truncated_file() {
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2]) {\n  v1: f32[2] = neg v0\n");
    assert_eq!((line, col), (3, 1));
    assert_eq!(msg, "expected a statement (`v1: f32[2] = op ...`) or `}`, found end of input");
    let (line, col, msg) = parse_err("graph \"g\" (v0: f32[2] \"unterminated");
    assert_eq!((line, col), (1, 23));
    assert_eq!(msg, "unterminated string literal");
    let (_, _, msg) = parse_err("");
    assert_eq!(msg, "expected `graph`, found end of input");
}

#[test]
fn attribute_errors() {
    let wrap = |stmt: &str| format!("graph \"g\" (v0: f32[2,2]) {{\n  {stmt}\n}} -> (v1)\n");
    let (line, col, msg) = parse_err(&wrap("v1: f32[2,2] = softmax v0"));
    assert_eq!((line, col, msg.as_str()), (2, 18, "missing attribute `axis` for `softmax`"));
    let (line, col, msg) = parse_err(&wrap("v1: f32[2,2] = softmax {axis=1, bogus=2} v0"));
    assert_eq!((line, col, msg.as_str()), (2, 41, "unknown attribute `bogus` for `softmax`"));
    let (line, col, msg) = parse_err(&wrap("v1: f32[2,2] = softmax {axis=1, axis=1} v0"));
    assert_eq!((line, col, msg.as_str()), (2, 35, "duplicate attribute `axis`"));
    let (_, _, msg) = parse_err(&wrap("v1: f32[2,2] = softmax {axis=-1} v0"));
    assert_eq!(msg, "attribute `axis` of `softmax` must be a non-negative integer");
    let (_, _, msg) = parse_err(&wrap("v1: f32[2,2] = cast {to=f128} v0"));
    assert_eq!(msg, "unknown dtype `f128`");
    let (_, _, msg) = parse_err(&wrap("v1: f32[2,2] = gelu {approx=exact} v0"));
    assert!(msg.contains("unknown gelu approximation `exact`"), "{msg}");
    let (_, _, msg) = parse_err(&wrap("v1: f32[2,2] = layer_norm {axis=1, epsilon=infinity} v0"));
    assert_eq!(msg, "attribute `epsilon` of `layer_norm` must be a number");
    let (line, col, msg) = parse_err(&wrap("v1: f32[2,2] = transpose {perm=[1, x]} v0"));
    assert_eq!((line, col, msg.as_str()), (2, 38, "elements of `perm` must be non-negative integers"));
}

#[test]
fn constant_errors() {
    let head = "graph \"g\" () {\n} -> ()\n";
    let (line, col, msg) = parse_err(&format!("{head}const c0: f32[3] = [1.0, 2.0]\n"));
    assert_eq!((line, col, msg.as_str()), (3, 20, "constant c0 of type f32[3] has 2 elements, expected 3"));
    let (line, col, msg) = parse_err(&format!("{head}const c0: f32[1] = [1.0, 2.0]\n"));
    assert_eq!((line, col, msg.as_str()), (3, 26, "constant c0 of type f32[1] has more than 1 elements"));
    let (line, col, msg) = parse_err(&format!("{head}const c0: i64[1] = [1.5]\n"));
    assert_eq!((line, col, msg.as_str()), (3, 21, "expected a i64 element, found number `1.5`"));
    let (_, _, msg) = parse_err(&format!("{head}const c0: bool[1] = [1]\n"));
    assert_eq!(msg, "expected a bool element, found number `1`");
    let (line, col, msg) = parse_err(&format!("{head}const c1: f32[] = [1.0]\n"));
    assert_eq!((line, col), (3, 7));
    assert!(msg.contains("expected constant c0"), "{msg}");
}

#[test]
fn lexical_errors() {
    let (line, col, msg) = parse_err("graph \"g\" () {\n  # comment\n} -> ()\n");
    assert_eq!((line, col, msg.as_str()), (2, 3, "unexpected character '#'"));
    let (line, col, msg) = parse_err("graph \"a\\qb\" () {\n} -> ()\n");
    assert_eq!((line, col, msg.as_str()), (1, 9, "unknown escape `\\q`"));
}

#[test]
fn comments_and_whitespace_are_ignored() {
    let src = "// header comment\ngraph \"g\"(v0:f32[2]\"x\"){v1:f32[2]=neg v0@\"n\" // trailing\n}->(v1)";
    let g = parse(src).unwrap();
    assert_eq!(print(&g, &full()), GOOD);
}

#[test]
fn string_escapes_roundtrip() {
    let mut g = Graph::new("q\"\\\n\t\r\u{0}\u{1b}é∑");
    let x = g.add_input("in\u{7f}put", TensorType::new(DType::Bool, vec![]));
    g.outputs = vec![x];
    let text = assert_roundtrip(&g);
    assert!(text.starts_with("graph \"q\\\"\\\\\\n\\t\\r\\u{0}\\u{1b}é∑\" (v0: bool[] \"in\\u{7f}put\")"), "{text}");
}

// ------------------------------------------------------------------------------------------------
// Graphviz
// ------------------------------------------------------------------------------------------------

#[test]
fn dot_has_nodes_edges_and_labels() {
    let g = small_graph();
    let dot = to_dot(&g);
    assert!(dot.starts_with("digraph \"tiny\" {\n"), "{dot}");
    assert!(dot.contains("  in0 [shape=invhouse, label=\"input\\nv0: f32[1,2,4]\"];"), "{dot}");
    assert!(dot.contains("  n1 [label=\"matmul\\n/attn/q/MatMul\\nv2: f32[1,2,4]\"];"), "{dot}");
    assert!(dot.contains("  n0 [label=\"const c0\\nonnx::MatMul_12\\nv1: f32[4,4]\"];"), "{dot}");
    assert!(dot.contains("  in0 -> n1 [label=\"v0\"];"), "{dot}");
    assert!(dot.contains("  n0 -> n1 [label=\"v1\"];"), "{dot}");
    assert!(dot.contains("  out0 [shape=house, label=\"out \\\"a\\\"\"];"), "{dot}");
    let edges = dot.lines().filter(|l| l.contains(" -> ")).count();
    let uses: usize = g.nodes.values().map(|n| n.inputs.len()).sum::<usize>() + g.outputs.len();
    assert_eq!(edges, uses);
    assert!(dot.ends_with("}\n"));
}

// ------------------------------------------------------------------------------------------------
// Valid graphs (shape-checked through inference) and file tests
// ------------------------------------------------------------------------------------------------

/// Ops applied to a float value `x` of rank >= 1, chosen so that they are valid for any such shape.
#[derive(Debug, Clone)]
enum ValidStep {
    Unary(usize),
    BinaryWithConst(usize, bool),
    Softmax(usize),
    Transpose(usize),
    ReduceSum(usize, bool),
    Flatten,
    MatMul(usize),
    SplitConcat(usize),
    CompareWhere,
    CastRoundTrip,
    LayerNorm,
}

fn arb_valid_step() -> impl Strategy<Value = ValidStep> {
    prop_oneof![
        (0usize..12).prop_map(ValidStep::Unary),
        (0usize..6, any::<bool>()).prop_map(|(k, full)| ValidStep::BinaryWithConst(k, full)),
        (0usize..4).prop_map(ValidStep::Softmax),
        (0usize..6).prop_map(ValidStep::Transpose),
        ((0usize..4), any::<bool>()).prop_map(|(a, k)| ValidStep::ReduceSum(a, k)),
        Just(ValidStep::Flatten),
        (1usize..4).prop_map(ValidStep::MatMul),
        (0usize..4).prop_map(ValidStep::SplitConcat),
        Just(ValidStep::CompareWhere),
        Just(ValidStep::CastRoundTrip),
        Just(ValidStep::LayerNorm),
    ]
}

fn const_f32(g: &mut Graph, shape: Vec<usize>, seed: usize) -> Value {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| ((i + seed) as f64 * 0.37).sin()).collect();
    g.add_constant(Tensor::float(DType::F32, shape, data).unwrap(), format!("k{seed}"))
}

fn build_valid(shape: Vec<usize>, steps: &[ValidStep]) -> Result<Graph, IrError> {
    let mut g = Graph::new("valid");
    let mut x = g.add_input("x", TensorType::new(DType::F32, shape));
    for (i, step) in steps.iter().enumerate() {
        let shape = g.ty(x).shape.clone();
        let rank = shape.len();
        let name = format!("s{i}");
        x = match step {
            ValidStep::Unary(k) => {
                let op = [
                    Op::Neg,
                    Op::Abs,
                    Op::Exp,
                    Op::Tanh,
                    Op::Sigmoid,
                    Op::Relu,
                    Op::Erf,
                    Op::Identity,
                    Op::Floor,
                    Op::Gelu(GeluApprox::Tanh),
                    Op::Clip { min: Some(-1.0), max: None },
                    Op::Reciprocal,
                ][*k % 12]
                    .clone();
                let n = g.add_node(op, vec![x], name)?;
                g.result(n)
            }
            ValidStep::BinaryWithConst(k, full) => {
                let cshape = if *full { shape.clone() } else { vec![shape[rank - 1]] };
                let c = const_f32(&mut g, cshape, i);
                let op = [Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Max, Op::Min][*k % 6].clone();
                let n = g.add_node(op, vec![x, c], name)?;
                g.result(n)
            }
            ValidStep::Softmax(a) => {
                let n = g.add_node(Op::Softmax { axis: a % rank }, vec![x], name)?;
                g.result(n)
            }
            ValidStep::Transpose(r) => {
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.rotate_left(r % rank);
                let n = g.add_node(Op::Transpose { perm }, vec![x], name)?;
                g.result(n)
            }
            ValidStep::ReduceSum(a, keepdims) => {
                // Keep rank >= 1 so later steps stay valid.
                let keepdims = *keepdims || rank == 1;
                let n = g.add_node(Op::ReduceSum { axes: vec![a % rank], keepdims }, vec![x], name)?;
                g.result(n)
            }
            ValidStep::Flatten => {
                let n = g.add_node(Op::Reshape { shape: vec![shape.iter().product()] }, vec![x], name)?;
                g.result(n)
            }
            ValidStep::MatMul(k) => {
                let w = const_f32(&mut g, vec![shape[rank - 1], *k], i);
                let n = g.add_node(Op::MatMul, vec![x, w], name)?;
                g.result(n)
            }
            ValidStep::SplitConcat(a) => {
                let axis = a % rank;
                let d = shape[axis];
                let n =
                    g.add_node(Op::Split { axis, sizes: vec![d / 2, d - d / 2] }, vec![x], format!("{name}/split"))?;
                let parts = g.nodes[n].outputs.clone();
                let n = g.add_node(Op::Concat { axis }, parts, name)?;
                g.result(n)
            }
            ValidStep::CompareWhere => {
                let zero =
                    g.add_constant(Tensor::float(DType::F32, vec![], vec![0.0]).unwrap(), format!("{name}/zero"));
                let cond = g.add_node(Op::Greater, vec![x, zero], format!("{name}/cmp"))?;
                let cond = g.result(cond);
                let neg = g.add_node(Op::Neg, vec![x], format!("{name}/neg"))?;
                let neg = g.result(neg);
                let n = g.add_node(Op::Where, vec![cond, x, neg], name)?;
                g.result(n)
            }
            ValidStep::CastRoundTrip => {
                let n = g.add_node(Op::Cast(DType::F64), vec![x], format!("{name}/up"))?;
                let up = g.result(n);
                let n = g.add_node(Op::Cast(DType::F32), vec![up], name)?;
                g.result(n)
            }
            ValidStep::LayerNorm => {
                let gamma = const_f32(&mut g, vec![shape[rank - 1]], i);
                let n = g.add_node(Op::LayerNorm { axis: rank - 1, epsilon: 1e-5 }, vec![x, gamma, gamma], name)?;
                g.result(n)
            }
        };
    }
    g.set_name(x, "y");
    g.outputs = vec![x];
    Ok(g)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Graphs built through shape inference verify, and round-trip.
    #[test]
    fn valid_graphs_verify_and_roundtrip(
        shape in prop::collection::vec(1usize..5, 1..4),
        steps in prop::collection::vec(arb_valid_step(), 0..8),
    ) {
        let g = build_valid(shape, &steps).unwrap();
        verify(&g).unwrap();
        assert_roundtrip(&g);
        verify(&parse(&print(&g, &full())).unwrap()).unwrap();
    }
}

/// Each `tests/filetests/text/*.ir` file is in canonical printed form: it parses, verifies, and prints
/// back byte for byte (comment lines starting with `//` at the top are a header and are skipped).
#[test]
fn filetests_text() {
    let files = ir_files("tests/filetests/text");
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let body: String = src.split_inclusive('\n').skip_while(|l| l.starts_with("//")).collect();
        let g = parse(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        verify(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(print(&g, &full()), body, "{} is not in canonical form", path.display());
    }
}

/// Each `tests/filetests/text/invalid/*.ir` file starts with `// expect-error: <message>`; parsing and
/// then verifying it must fail with exactly that message.
#[test]
fn filetests_text_invalid() {
    for path in ir_files("tests/filetests/text/invalid") {
        let src = std::fs::read_to_string(&path).unwrap();
        let expected = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect-error: "))
            .unwrap_or_else(|| panic!("{}: first line must be `// expect-error: ...`", path.display()));
        let got = parse(&src).and_then(|g| verify(&g));
        match got {
            Err(e) => assert_eq!(e.to_string(), expected, "{}", path.display()),
            Ok(()) => panic!("{}: expected error `{expected}`, but it parsed and verified", path.display()),
        }
    }
}

fn ir_files(rel: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .ir files in {}", dir.display());
    files
}
