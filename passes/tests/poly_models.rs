//! Poly mode on every shipped model: calibrated on `calib/` (imported with its batch size), compiled,
//! run on `inputs/`, compared with onnxruntime's `expected/`: argmax kept on every sample, outputs
//! within a few percent relative. Snapshots the poly-stage IR (constants elided).

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
    // Every single-chebyshev approximation sits at the theoretical minimum depth of its degree.
    for a in &res.report.approximations {
        if a.method == "remez { converged: true }"
            || a.method.starts_with("remez")
            || a.method.starts_with("chebyshev") && !a.method.contains("squarings")
        {
            let d = a.degree as u64;
            let min = 64 - d.leading_zeros();
            assert_eq!(a.depth, min, "{name}: {} ({}) degree {} at depth {}", a.node, a.part, a.degree, a.depth);
        }
    }
    insta::assert_snapshot!(
        format!("poly_{}", name.replace('/', "_")),
        print(&res.graph, &PrintOptions { elide_constants_over: Some(16) })
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
