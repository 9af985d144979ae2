//! Evaluation time by layer and phase, from an execution's per-instruction CPU times
//! ([`polyhe_runtime::ExecStats::inst_cpu_seconds`]) and the program's instruction origins.
//!
//! Requires: a program whose origins name the IR node of every instruction (programs compiled by
//! this backend; without origins everything lands in one `(no origins)` row). Guarantees: the
//! rows' seconds sum to the execution's summed CPU time. Layers are named as the compile report
//! names them ([`polyhe_passes::layer_of`]); phases are
//! - **bootstraps**: `bootstrap` and `bootstrap_pair`, and the conjugation and `mul_i` that split
//!   a pair;
//! - **polynomials**: instructions of polynomial evaluations and encrypted products (IR ops
//!   `chebyshev`, `mul`, `pow`);
//! - **linear algebra**: everything else (matrix products, affine maps, reductions, layout moves).

use polyhe_runtime::{ExecStats, Inst, Origins, Program, ProgramOp};

/// CPU seconds per phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PhaseSeconds {
    pub linear_algebra: f64,
    pub polynomials: f64,
    pub bootstraps: f64,
}

impl PhaseSeconds {
    pub fn total(&self) -> f64 {
        self.linear_algebra + self.polynomials + self.bootstraps
    }
    fn add(&mut self, o: &PhaseSeconds) {
        self.linear_algebra += o.linear_algebra;
        self.polynomials += o.polynomials;
        self.bootstraps += o.bootstraps;
    }
}

/// One layer's time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerTime {
    pub layer: String,
    pub instructions: usize,
    pub bootstraps: usize,
    pub cpu: PhaseSeconds,
}

/// Time per layer (in program order of each layer's first instruction) and in total.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TimeReport {
    pub layers: Vec<LayerTime>,
    pub total: PhaseSeconds,
}

/// Splits an execution's CPU time by layer and phase (see the module doc).
pub fn time_report(program: &Program, stats: &ExecStats) -> TimeReport {
    time_by(&program.insts, &program.origins, &stats.inst_cpu_seconds)
}

fn time_by(insts: &[Inst], origins: &Origins, inst_cpu_seconds: &[f64]) -> TimeReport {
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut report = TimeReport::default();
    for (i, inst) in insts.iter().enumerate() {
        let secs = inst_cpu_seconds.get(i).copied().unwrap_or(0.0);
        let origin = origins.of(i);
        let layer = match origin {
            None => "(no origins)".to_string(),
            Some(o) if o.op == "output" => "(output layouts)".to_string(),
            Some(o) => polyhe_passes::layer_of(&o.node),
        };
        let k = *index.entry(layer.clone()).or_insert_with(|| {
            report.layers.push(LayerTime { layer, instructions: 0, bootstraps: 0, cpu: PhaseSeconds::default() });
            report.layers.len() - 1
        });
        let Some(row) = report.layers.get_mut(k) else { continue };
        row.instructions += 1;
        let mut phase = PhaseSeconds::default();
        match inst.op {
            ProgramOp::Bootstrap(_) | ProgramOp::BootstrapPair(..) => {
                row.bootstraps += 1;
                phase.bootstraps = secs;
            }
            ProgramOp::Conjugate(_) | ProgramOp::MulI(_) => phase.bootstraps = secs,
            _ if origin.is_some_and(|o| matches!(o.op.as_str(), "chebyshev" | "mul" | "pow")) => {
                phase.polynomials = secs
            }
            _ => phase.linear_algebra = secs,
        }
        row.cpu.add(&phase);
        report.total.add(&phase);
    }
    report
}

impl std::fmt::Display for TimeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total.total().max(1e-12);
        let cell = |s: f64| format!("{s:8.1} s {:3.0}%", 100.0 * s / total);
        writeln!(
            f,
            "{:<16} {:>7} {:>5} {:>15} {:>15} {:>15} {:>15}",
            "layer", "insts", "boots", "linear algebra", "polynomials", "bootstraps", "total"
        )?;
        let rows = self.layers.iter().map(|r| (r.layer.as_str(), r.instructions, r.bootstraps, &r.cpu));
        let all = (
            "total",
            self.layers.iter().map(|r| r.instructions).sum(),
            self.layers.iter().map(|r| r.bootstraps).sum(),
            &self.total,
        );
        for (name, n, b, c) in rows.chain([all]) {
            writeln!(
                f,
                "{name:<16} {n:>7} {b:>5} {} {} {} {}",
                cell(c.linear_algebra),
                cell(c.polynomials),
                cell(c.bootstraps),
                cell(c.total())
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_splits_by_layer_and_phase_and_sums_to_the_total() {
        let inst = |op| Inst { op, level: 1, scale: 1.0 };
        let insts = vec![
            inst(ProgramOp::Rotate { src: 0, step: 1 }),
            inst(ProgramOp::Mul(0, 0)),
            inst(ProgramOp::Bootstrap(0)),
            inst(ProgramOp::Add(0, 0)),
            inst(ProgramOp::Conjugate(0)),
        ];
        let origins = Origins::from_pairs([
            ("/encoder/layer.0/attention/MatMul", "matmul"),
            ("/encoder/layer.0/act/Poly", "chebyshev"),
            ("/encoder/layer.1/attention/MatMul", "matmul"),
            ("", ""),
            ("/encoder/layer.1/attention/MatMul", "matmul"),
        ]);
        let r = time_by(&insts, &origins, &[1.0, 2.0, 10.0, 0.5, 3.0]);
        let names: Vec<&str> = r.layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["layer.0", "layer.1", "(no origins)"]);
        assert_eq!(r.layers[0].cpu, PhaseSeconds { linear_algebra: 1.0, polynomials: 2.0, bootstraps: 0.0 });
        assert_eq!(r.layers[1].cpu, PhaseSeconds { linear_algebra: 0.0, polynomials: 0.0, bootstraps: 13.0 });
        assert_eq!(r.layers[1].bootstraps, 1);
        assert!((r.total.total() - 16.5).abs() < 1e-12);
        let text = r.to_string();
        assert!(text.lines().last().unwrap().starts_with("total"), "{text}");
    }
}
