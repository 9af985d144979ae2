//! The compile report: what `polyhe compile` writes as `report.json` (serde) and prints as a table
//! (`Display`).
//!
//! Contents: per approximation (node, op, part, calibrated range, fitted interval, method, degree,
//! measured max error, depth), the total multiplicative depth with the critical path (and its levels
//! grouped per layer), ct×ct multiplication counts, calibration warnings, nodes that run in
//! plaintext, the e-graph runner's stop reasons, and the time each pass took.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::calibrate::CalibrationWarning;
use crate::depth::DepthReport;
use crate::to_poly::{ApproxRecord, PolyOptions};

/// Wall time of one pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassTiming {
    pub pass: &'static str,
    pub ms: f64,
}

/// What the e-graph pass reported (runner stop reasons are the important part: a bound that stopped
/// a runner means the result may be less optimized than possible).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgraphSummary {
    pub ran: bool,
    /// One line per runner: region and why it stopped.
    pub stop_reasons: Vec<String>,
    /// One-line summary (depth and ct×ct before → after, regions, time).
    pub details: String,
    /// The pass's full report.
    pub report: Option<crate::egraph::EgraphReport>,
}

/// The report (module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompileReport {
    pub model: String,
    pub options: PolyOptions,
    pub approximations: Vec<ApproxRecord>,
    pub depth: DepthReport,
    /// Critical-path levels grouped by layer (see [`layer_of`]).
    pub depth_by_layer: BTreeMap<String, u32>,
    pub warnings: Vec<CalibrationWarning>,
    /// Non-polynomial nodes left in place because they only see plaintext data.
    pub plaintext_nodes: Vec<String>,
    pub egraph: EgraphSummary,
    pub timings: Vec<PassTiming>,
    /// The ops split off to run on the client after decryption (`--client-tail`), if any; the
    /// graph this report describes is then the encrypted part only.
    pub client_tail: Option<crate::client_tail::TailSummary>,
}

/// The layer a node belongs to, from its name: the first `/`-separated segment containing `layer`
/// or `block` (`/encoder/layer.3/attention/...` → `layer.3`); `other` when there is none.
pub fn layer_of(node: &str) -> String {
    node.split('/')
        .find(|s| {
            let l = s.to_ascii_lowercase();
            (l.contains("layer") || l.contains("block")) && l.chars().any(|c| c.is_ascii_digit())
        })
        .map_or_else(|| "other".to_string(), str::to_string)
}

impl CompileReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: String,
        options: PolyOptions,
        approximations: Vec<ApproxRecord>,
        depth: DepthReport,
        warnings: Vec<CalibrationWarning>,
        plaintext_nodes: Vec<String>,
        egraph: EgraphSummary,
        timings: Vec<PassTiming>,
    ) -> CompileReport {
        let mut depth_by_layer = BTreeMap::new();
        for s in &depth.critical_path {
            *depth_by_layer.entry(layer_of(&s.node)).or_insert(0) += s.levels;
        }
        CompileReport {
            model,
            options,
            approximations,
            depth,
            depth_by_layer,
            warnings,
            plaintext_nodes,
            egraph,
            timings,
            client_tail: None,
        }
    }

    /// `report.json` contents (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Largest measured error among the approximations of a given error kind.
    pub fn max_error(&self, kind: &str) -> f64 {
        self.approximations.iter().filter(|a| a.error_kind == kind).map(|a| a.max_error).fold(0.0, f64::max)
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}

impl fmt::Display for CompileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "polynomial compile report: {}", self.model)?;
        writeln!(
            f,
            "{:<40} {:<11} {:<16} {:>23} {:>23} {:<44} {:>4} {:>9} {:>3} {:>5}",
            "node", "op", "part", "calibrated", "interval", "method", "deg", "max err", "rel", "depth"
        )?;
        for a in &self.approximations {
            writeln!(
                f,
                "{:<40} {:<11} {:<16} {:>23} {:>23} {:<44} {:>4} {:>9.2e} {:>3} {:>5}{}",
                short(&a.node, 40),
                a.op,
                short(&a.part, 16),
                format!("[{:.3e}, {:.3e}]", a.calibrated[0], a.calibrated[1]),
                format!("[{:.3e}, {:.3e}]", a.interval[0], a.interval[1]),
                short(&a.method, 44),
                a.degree,
                a.max_error,
                if a.error_kind == "relative" { "rel" } else { "abs" },
                a.depth,
                if a.target_met { "" } else { "  (target missed)" }
            )?;
        }
        let d = &self.depth;
        writeln!(f, "total multiplicative depth: {}", d.total_depth)?;
        writeln!(
            f,
            "ct×ct multiplications: {} ops, ~{} ciphertext products ({} slots per ciphertext)",
            d.ct_mult_ops,
            d.ct_mult_ciphertexts,
            crate::depth::SLOTS
        )?;
        if !self.depth_by_layer.is_empty() {
            let parts: Vec<String> = self.depth_by_layer.iter().map(|(l, v)| format!("{l}: {v}")).collect();
            writeln!(f, "critical-path levels per layer: {}", parts.join(", "))?;
        }
        let mut by_op: BTreeMap<&str, u32> = BTreeMap::new();
        for s in &d.critical_path {
            *by_op.entry(s.op.as_str()).or_insert(0) += s.levels;
        }
        let parts: Vec<String> = by_op.iter().map(|(o, v)| format!("{o}: {v}")).collect();
        writeln!(f, "critical-path levels per op: {}", parts.join(", "))?;
        if let Some(t) = &self.client_tail {
            write!(f, "{t}")?;
        }
        if !self.plaintext_nodes.is_empty() {
            writeln!(f, "{} non-polynomial nodes run in plaintext (client inputs only)", self.plaintext_nodes.len())?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {} ({}): {}", w.node, w.op, w.message)?;
        }
        writeln!(f, "egraph: {}", self.egraph.details)?;
        // Only runners stopped by a bound are worth a line here; report.json has every region.
        for s in self.egraph.stop_reasons.iter().filter(|s| !s.contains(": saturated after")) {
            writeln!(f, "egraph: {s}")?;
        }
        let t: Vec<String> = self.timings.iter().map(|t| format!("{} {:.1} ms", t.pass, t.ms)).collect();
        writeln!(f, "timings: {}", t.join(", "))
    }
}
