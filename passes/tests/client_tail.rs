//! ClientTail: cut selection on the shipped encoder and ViT, named cuts, bad cuts, and soundness by
//! execution (encrypted part then tail == the original graph under the reference interpreter); the
//! poly-stage depth of the encoder with and without the tail.

mod poly_common;

use poly_common::*;
use polyhe_ir::text::{parse, print, PrintOptions};
use polyhe_ir::{interp, DType, Graph, Op, Tensor, TensorType};
use polyhe_passes::{calibrate, compile_to_poly, split_client_tail, ClientTail, PassError, PolyOptions, TailCut};

/// Runs the encrypted part, hands its outputs to the tail, and checks the result equals the original
/// graph's outputs (same ops on the same values: exactly equal).
fn assert_composes(g: &Graph, split: &ClientTail, inputs: &[Tensor]) {
    let want = interp::run(g, inputs).unwrap();
    let cut = interp::run(&split.encrypted, inputs).unwrap();
    assert_eq!(cut.len(), split.tail.inputs.len());
    let got = interp::run(&split.tail, &cut).unwrap();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a.shape(), b.shape());
        assert_eq!(a.to_f64_vec(), b.to_f64_vec(), "head+tail differs from the original graph");
    }
    // The tail goes to OUT/tail.ir: its text form must read back.
    let text = print(&split.tail, &PrintOptions::default());
    assert_eq!(parse(&text).unwrap(), split.tail);
    for (&a, &b) in split.tail.outputs.iter().zip(&g.outputs) {
        assert_eq!(split.tail.value_label(a), g.value_label(b));
    }
}

fn ops(split: &ClientTail) -> Vec<&str> {
    split.tail.nodes.values().map(|d| d.op.name()).filter(|o| *o != "const").collect()
}

#[test]
fn auto_cut_on_the_encoder_is_final_norm_pooling_and_classifier() {
    let s = shipped(&models_dir().join("encoder"));
    let split = split_client_tail(&s.graph, &TailCut::Auto).unwrap();
    eprintln!("{}", split.summary);
    assert_eq!(ops(&split), ["layer_norm", "reduce_mean", "gemm"], "{}", split.summary);
    assert_composes(&s.graph, &split, &s.inputs);
    // Naming the node the auto cut chose gives the same split.
    let named = split_client_tail(&s.graph, &TailCut::Nodes(split.summary.cut_nodes.clone())).unwrap();
    assert_eq!(named.tail, split.tail);
    assert_eq!(named.encrypted, split.encrypted);
}

#[test]
fn auto_cut_on_the_vit_takes_final_norm_and_classifier() {
    let s = shipped(&models_dir().join("vit"));
    let split = split_client_tail(&s.graph, &TailCut::Auto).unwrap();
    eprintln!("{}", split.summary);
    let o = ops(&split);
    // The CLS token is gathered before the final norm, so the tail is norm + classifier.
    assert_eq!(o, ["layer_norm", "gemm"], "{}", split.summary);
    assert!(!o.contains(&"softmax"), "attention must stay encrypted: {}", split.summary);
    assert_composes(&s.graph, &split, &s.inputs);
    // Another batch size (the calibration graph) cuts at the same place.
    let calib = split_client_tail(&s.calib_graph, &TailCut::Auto).unwrap();
    assert_eq!(calib.summary.tail_ops, split.summary.tail_ops);
    assert_composes(&s.calib_graph, &calib, &s.calib);
}

#[test]
fn named_cut_earlier_in_the_encoder_moves_more_to_the_client() {
    let s = shipped(&models_dir().join("encoder"));
    let auto = split_client_tail(&s.graph, &TailCut::Auto).unwrap();
    // Cut before the producer of the final norm's input (and so everything after it).
    let ln = s.graph.nodes.values().find(|d| d.name == auto.summary.cut_nodes[0]).unwrap();
    let polyhe_ir::ValueDef::Result(p, _) = s.graph.values[ln.inputs[0]].def else { panic!("input") };
    let name = s.graph.nodes[p].name.clone();
    let split = split_client_tail(&s.graph, &name.to_string().parse().unwrap()).unwrap();
    eprintln!("{}", split.summary);
    assert!(split.summary.tail_ops.len() > auto.summary.tail_ops.len());
    assert!(split.encrypted.nodes.len() < auto.encrypted.nodes.len());
    assert_composes(&s.graph, &split, &s.inputs);
}

/// x → exp → e; y = e + x (output), d = relu(x) (unused).
fn small() -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("small");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2, 3]));
    let e = g.add_node(Op::Exp, vec![x], "exp").unwrap();
    let e = g.result(e);
    let y = g.add_node(Op::Add, vec![e, x], "add").unwrap();
    let y = g.result(y);
    g.set_name(y, "y");
    let r = g.add_node(Op::Relu, vec![x], "dead").unwrap();
    let _ = g.result(r);
    let s = g.add_node(Op::Softmax { axis: 1 }, vec![y], "softmax").unwrap();
    let s = g.result(s);
    g.set_name(s, "probs");
    g.outputs = vec![y, s];
    let x = Tensor::float(DType::F32, vec![2, 3], vec![0.1, -0.2, 0.3, 1.0, 0.5, -1.5]).unwrap();
    (g, vec![x])
}

fn tail_err(g: &Graph, cut: &str) -> String {
    match split_client_tail(g, &cut.parse().unwrap()) {
        Err(e @ PassError::ClientTail(_)) => e.to_string(),
        Err(e) => panic!("`{cut}`: wrong error kind: {e}"),
        Ok(s) => panic!("`{cut}` should be rejected, got {}", s.summary),
    }
}

#[test]
fn bad_cuts_are_errors() {
    let (g, _) = small();
    assert!(tail_err(&g, "nope").contains("no node named `nope`"));
    assert!(tail_err(&g, "dead").contains("feeds no model output"));
    // `add` reads the model input x: the tail would need it.
    assert!(tail_err(&g, "add").contains("reads the model input `x`"));
    assert!(tail_err(&g, "exp").contains("reads the model input"));
    assert!("".parse::<TailCut>().is_err());
    // A polynomial-only graph has no non-polynomial op for `auto`.
    let mut p = Graph::new("poly");
    let x = p.add_input("x", TensorType::new(DType::F32, vec![2]));
    let m = p.add_node(Op::Mul, vec![x, x], "sq").unwrap();
    p.outputs = vec![p.result(m)];
    assert!(tail_err(&p, "auto").contains("no non-polynomial op"));
}

#[test]
fn auto_cut_on_a_small_graph_passes_earlier_outputs_through() {
    let (g, inputs) = small();
    let split = split_client_tail(&g, &TailCut::Auto).unwrap();
    assert_eq!(split.summary.cut_nodes, ["softmax"]);
    assert_eq!(split.summary.cut_values, ["y"]);
    // `y` is both the cut and an output: the tail passes it through.
    assert_eq!(split.tail.outputs[0], split.tail.inputs[0]);
    assert_eq!(ops(&split), ["softmax"]);
    assert_composes(&g, &split, &inputs);
}

#[test]
fn encoder_depth_with_and_without_the_tail() {
    let s = shipped(&models_dir().join("encoder"));
    let cal = calibrate(&s.calib_graph, std::slice::from_ref(&s.calib)).unwrap();
    let opts = PolyOptions { verify: true, ..PolyOptions::default() };
    let full = compile_to_poly(&s.graph, &cal, &opts).unwrap();
    let split = split_client_tail(&s.graph, &TailCut::Auto).unwrap();
    let enc = compile_to_poly(&split.encrypted, &cal, &opts).unwrap();
    let (d_full, d_enc) = (full.report.depth.total_depth, enc.report.depth.total_depth);
    eprintln!("encoder poly depth: {d_full} without the tail, {d_enc} with --client-tail auto");
    assert!(d_enc < d_full, "the final LayerNorm's 1/sqrt should leave the circuit: {d_enc} vs {d_full}");
    // The split's poly circuit, then the exact tail, stays close to onnxruntime.
    let (cut, _) = polyhe_passes::run_poly(&enc.graph, &s.inputs).unwrap();
    let outs = interp::run(&split.tail, &cut).unwrap();
    for (k, &o) in split.tail.outputs.iter().enumerate() {
        let name = split.tail.value_label(o);
        let err = rel_err(&outs[k], &s.expected[&name]);
        eprintln!("encoder/{name}: poly + client tail vs onnxruntime rel err {err:.3e}");
        assert!(err < 0.05, "{name}: {err:.3e}");
    }
}
