//! Poly mode on every shipped model: calibrated on `calib/` (imported with its batch size), compiled,
//! run on `inputs/`, compared with onnxruntime's `expected/`: argmax kept on every sample, outputs
//! within a few percent relative. Snapshots the poly-stage IR before the e-graph pass (constants elided).

mod poly_common;

use poly_common::*;
use polyhe_ir::text::{print, PrintOptions};
use polyhe_passes::{calibrate, compile_to_poly, run_poly, PolyOptions};

fn opts() -> PolyOptions {
    PolyOptions { verify: true, ..PolyOptions::default() }
}

fn check(name: &str, tol: f64) {
    let dir = models_dir().join(name);
    let s = shipped(&dir);
    let t = std::time::Instant::now();
    let cal = calibrate(&s.calib_graph, std::slice::from_ref(&s.calib)).unwrap();
    let res = compile_to_poly(&s.graph, &cal, &opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: calibrate+compile {:?}\n{}", t.elapsed(), res.report);
    let (outs, oor) = run_poly(&res.graph, &s.inputs).unwrap();
    eprintln!("{oor}");
    for (k, &o) in res.graph.outputs.iter().enumerate() {
        let oname = res.graph.value_label(o);
        let exp = &s.expected[&oname];
        let err = rel_err(&outs[k], exp);
        eprintln!("{name}/{oname}: rel err {err:.3e}");
        assert!(err < tol, "{name}/{oname}: poly vs onnxruntime relative error {err:.3e} > {tol}");
        if oname == "logits" {
            assert_eq!(argmax_rows(&outs[k]), argmax_rows(exp), "{name}: argmax changed");
        }
    }
    // Every approximation sits at the depth of its plan: a single chebyshev at the theoretical minimum
    // ceil(log2(d+1)) of its degree; composites at the sum of their parts. The only extra level is the
    // first product of a constant-guess reciprocal, which the plan assumes folded into the producer.
    for a in &res.report.approximations {
        let single = a.method.starts_with("remez") || a.method == "chebyshev" || a.method == "chebyshevfallback";
        if single {
            let min = 64 - (a.degree as u64).leading_zeros();
            assert_eq!(a.depth, min, "{name}: {} ({}) degree {} at depth {}", a.node, a.part, a.degree, a.depth);
        }
        let extra = u32::from(a.degree == 0 && a.method.contains("goldschmidt"));
        assert_eq!(
            a.depth,
            a.poly_depth + extra,
            "{name}: {} ({}, {}) graph depth vs plan depth",
            a.node,
            a.part,
            a.method
        );
    }
    // The snapshot is the replacement's output (e-graph off), so it shows exactly which approximations
    // were chosen; the e-graph pass's rewrites are snapshotted by its own tests.
    let replaced = compile_to_poly(&s.graph, &cal, &PolyOptions { egraph: false, ..opts() }).unwrap();
    insta::assert_snapshot!(
        format!("poly_{}", name.replace('/', "_")),
        print(&replaced.graph, &PrintOptions { elide_constants_over: Some(16) })
    );
}

#[test]
fn encoder() {
    check("encoder", 0.03);
}

#[test]
fn encoder_decomposed() {
    check("encoder_decomposed", 0.03);
}

#[test]
fn sigma_encoder() {
    check("sigma_encoder", 0.03);
}

#[test]
fn vit() {
    check("vit", 0.03);
}

#[test]
fn bert_tiny() {
    check("bert_tiny", 0.03);
}
