//! The e-graph pass on the poly stage of every shipped model: the rebuilt graph verifies, computes
//! the same function as the poly stage it came from (interpreter on the shipped inputs, ≤ 1e-9
//! relative to the output scale), and is never deeper.

mod poly_common;

use poly_common::*;
use polyhe_passes::{calibrate, compile_to_poly, optimize, EgraphOptions, PolyOptions};

fn check(name: &str) {
    let dir = models_dir().join(name);
    let s = shipped(&dir);
    let cal = calibrate(&s.calib_graph, std::slice::from_ref(&s.calib)).unwrap();
    let opts = PolyOptions { egraph: false, verify: true, ..PolyOptions::default() };
    let poly = compile_to_poly(&s.graph, &cal, &opts).unwrap_or_else(|e| panic!("{name}: {e}")).graph;
    let t = std::time::Instant::now();
    let (out, report) = optimize(&poly, &EgraphOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {:?}, {} regions ({} limited), depth {} -> {}, ct×ct {} -> {}",
        t.elapsed(),
        report.regions.len(),
        report.limited_regions,
        report.depth_before,
        report.depth_after,
        report.ct_mults_before,
        report.ct_mults_after
    );
    for l in report.stop_lines().iter().filter(|l| !l.contains("depth 0 -> 0")).take(12) {
        eprintln!("  {l}");
    }
    polyhe_ir::verify::verify(&out).unwrap();
    assert!(report.depth_after <= report.depth_before, "{name}: deeper after the e-graph pass");
    for r in &report.regions {
        assert!(r.depth_after <= r.depth_before, "{name}: region at {} got deeper", r.first_node);
    }
    let a = polyhe_ir::interp::run(&poly, &s.inputs).unwrap();
    let b = polyhe_ir::interp::run(&out, &s.inputs).unwrap();
    for (x, y) in a.iter().zip(&b) {
        let err = rel_err(y, x);
        assert!(err <= 1e-9, "{name}: e-graph output differs from the poly stage by {err:.3e}");
    }
}

#[test]
fn encoder() {
    check("encoder");
}

#[test]
fn encoder_decomposed() {
    check("encoder_decomposed");
}

#[test]
fn sigma_encoder() {
    check("sigma_encoder");
}

#[test]
fn bert_tiny() {
    check("bert_tiny");
}

#[test]
fn vit() {
    check("vit");
}
