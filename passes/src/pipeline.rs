//! The polynomial pipeline: a trained model's graph → the poly stage, with its compile report.
//!
//! [`compile_to_poly`] reads like a table of contents; each pass's contract is in its own module.
//! With [`PolyOptions::verify`] the IR verifier runs after every pass (tests set it), and the poly-stage
//! check ([`verify_poly_stage`]) always runs after replacement.

use std::time::Instant;

use polyhe_ir::{verify::verify, Graph};

use crate::calibrate::Calibration;
use crate::depth::analyze_depth;
use crate::error::PassError;
use crate::fold_affine::fold_affine;
use crate::report::{CompileReport, EgraphSummary, PassTiming};
use crate::to_poly::{to_poly, verify_poly_stage, PolyOptions};

/// The poly-stage graph and its report.
#[derive(Debug, Clone)]
pub struct PolyResult {
    pub graph: Graph,
    pub report: CompileReport,
}

/// Compiles `g` to the polynomial stage using calibration `calib` (module doc).
pub fn compile_to_poly(g: &Graph, calib: &Calibration, opts: &PolyOptions) -> Result<PolyResult, PassError> {
    let mut timings = Vec::new();
    let mut timed =
        |pass: &'static str, t: Instant| timings.push(PassTiming { pass, ms: t.elapsed().as_secs_f64() * 1e3 });
    let check = |pass: &'static str, g: &Graph| -> Result<(), PassError> {
        if opts.verify {
            verify(g).map_err(|source| PassError::Verifier { pass, source })?;
        }
        Ok(())
    };
    check("input", g)?;

    let t = Instant::now();
    // Only rebuild (copying the weights) when there is something to fold.
    let folded = if g.nodes.values().any(|d| matches!(d.op, polyhe_ir::Op::BatchNorm { .. })) {
        std::borrow::Cow::Owned(fold_affine(g)?)
    } else {
        std::borrow::Cow::Borrowed(g)
    };
    check("fold_affine", &folded)?;
    timed("fold_affine", t);

    let t = Instant::now();
    let mut replaced = to_poly(&folded, calib, opts)?;
    check("to_poly", &replaced.graph)?;
    verify_poly_stage(&replaced.graph)?;
    timed("to_poly", t);

    // Depth of each emitted approximation, measured on the graph as emitted.
    let t = Instant::now();
    let emitted = analyze_depth(&replaced.graph);
    for r in &mut replaced.records {
        r.depth = emitted.value_depth(r.io.1).saturating_sub(emitted.value_depth(r.io.0));
    }
    timed("depth(approximations)", t);

    let t = Instant::now();
    let (graph, egraph) = run_egraph(replaced.graph, opts)?;
    check("egraph", &graph)?;
    verify_poly_stage(&graph)?;
    timed("egraph", t);

    let t = Instant::now();
    let depth = analyze_depth(&graph);
    timed("depth", t);

    let report = CompileReport::new(
        g.name.clone(),
        opts.clone(),
        replaced.records,
        depth,
        calib.warnings(),
        replaced.plaintext_nodes,
        egraph,
        timings,
    );
    Ok(PolyResult { graph, report })
}

/// The egg depth minimization, when enabled.
fn run_egraph(g: Graph, opts: &PolyOptions) -> Result<(Graph, EgraphSummary), PassError> {
    if !opts.egraph {
        return Ok((g, EgraphSummary { ran: false, stop_reasons: vec![], details: "disabled".into(), report: None }));
    }
    let (graph, report) =
        crate::egraph::optimize(&g, &opts.egraph_options).map_err(|e| PassError::Egraph(e.to_string()))?;
    let details = format!(
        "depth {} -> {}, ct×ct {} -> {}, {} regions ({} stopped by a bound), {:.1} ms",
        report.depth_before,
        report.depth_after,
        report.ct_mults_before,
        report.ct_mults_after,
        report.regions.len(),
        report.limited_regions,
        report.elapsed_ms
    );
    Ok((graph, EgraphSummary { ran: true, stop_reasons: report.stop_lines(), details, report: Some(report) }))
}
