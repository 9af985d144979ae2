//! Running single passes on text IR (`polyhe opt`, and the file tests in `tests/filetests/`):
//! each pass takes a graph and gives the next graph plus the text to show (the IR after it, a
//! report, or the CKKS program's text form).

use polyhe_backend::{BackendOptions, LayoutPolicy};
use polyhe_ir::{text, Graph};

/// A pass `polyhe opt --pass` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The IR verifier (prints `ok`).
    Verify,
    /// Constant batch norms folded into `x·k + b` (`polyhe_passes::fold_affine`).
    FoldAffine,
    /// Every non-polynomial op replaced by its approximation (`polyhe_passes::to_poly`, default
    /// options), on ranges calibrated on the graph as it is at this pass (needs calibration
    /// samples); prints each replacement, then the IR.
    ToPoly,
    /// The e-graph depth minimization (`polyhe_passes::optimize`, default bounds).
    Egraph,
    /// Multiplicative depth and ct×ct counts (`polyhe_passes::analyze_depth`).
    Depth,
    /// Lowering to a CKKS program (`polyhe_backend::compile_ckks`): the program must validate and
    /// read back from its exact text form; prints its counts and text form.
    Ckks,
    /// As `ckks`, printing the exact text form (`Program::print_exact`), which `.ckks` file tests
    /// and `Program::parse` read.
    CkksExact,
}

/// A pass over a CKKS program in its exact text form (`.ckks` file tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramPass {
    /// `Program::validate`: every level and scale re-proven from the primes.
    Validate,
    /// The summary text form (`Program::print`).
    Print,
}

impl std::str::FromStr for ProgramPass {
    type Err = String;
    fn from_str(s: &str) -> Result<ProgramPass, String> {
        match s {
            "validate" => Ok(ProgramPass::Validate),
            "print" => Ok(ProgramPass::Print),
            _ => Err(format!("unknown program pass `{s}` (passes: validate, print)")),
        }
    }
}

/// Parses `text` (the exact form) and runs `passes` on the program, as [`run_passes`] does on
/// graphs; a text that does not parse fails as the pass `parse`.
pub fn run_program_passes(text: &str, passes: &[ProgramPass]) -> Result<String, (String, String)> {
    let p = polyhe_runtime::Program::parse(text).map_err(|e| (String::new(), format!("; error in parse\n{e}\n")))?;
    let mut out = format!("; after parse\n{} instructions, {} constants\n", p.insts.len(), p.constants.len());
    for pass in passes {
        match pass {
            ProgramPass::Validate => match p.validate() {
                Ok(()) => {
                    let lowest = p.insts.iter().map(|i| i.level).min().unwrap_or(p.input_level);
                    out.push_str(&format!("; after validate\nok: levels {lowest}..={}\n", p.input_level));
                }
                Err(e) => return Err((out, format!("; error in validate\n{e}\n"))),
            },
            ProgramPass::Print => out.push_str(&format!("; after print\n{}", p.print())),
        }
    }
    Ok(out)
}

impl Pass {
    /// Every pass, by name.
    pub const ALL: [(&'static str, Pass); 7] = [
        ("verify", Pass::Verify),
        ("fold-affine", Pass::FoldAffine),
        ("to-poly", Pass::ToPoly),
        ("egraph", Pass::Egraph),
        ("depth", Pass::Depth),
        ("ckks", Pass::Ckks),
        ("ckks-exact", Pass::CkksExact),
    ];
}

impl std::str::FromStr for Pass {
    type Err = String;
    fn from_str(s: &str) -> Result<Pass, String> {
        Pass::ALL.iter().find(|(n, _)| *n == s).map(|(_, p)| *p).ok_or_else(|| {
            let names: Vec<&str> = Pass::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown pass `{s}` (passes: {})", names.join(", "))
        })
    }
}

/// Sets one `ckks` option from `key=value` text (file-test headers): `log_n`, `levels`,
/// `log_scale`, `bootstrap_levels`, `fusion_growth`, `max_rotation_keys`, `security=none|128`,
/// `layout=row|column`.
pub fn set_backend_option(o: &mut BackendOptions, key: &str, value: &str) -> Result<(), String> {
    let num = || value.parse::<usize>().map_err(|e| format!("option {key}={value}: {e}"));
    match key {
        "log_n" => o.log_n = Some(num()? as u32),
        "levels" => o.levels = Some(num()?),
        "log_scale" => o.log_scale = Some(num()? as u32),
        "bootstrap_levels" => o.bootstrap_levels = Some(num()?),
        "fusion_growth" => o.fusion_growth = num()?,
        "max_rotation_keys" => o.max_rotation_keys = Some(num()?),
        "security" => {
            o.security = match value {
                "none" => polyhe_runtime::Security::NotSet,
                "128" => polyhe_runtime::Security::Bits128,
                _ => return Err(format!("security={value}: none or 128")),
            }
        }
        "layout" => o.layout = Some(value.parse::<LayoutPolicy>()?),
        _ => return Err(format!("unknown option `{key}`")),
    }
    Ok(())
}

/// Calibration samples for `to-poly`: per sample, one tensor per graph input, in input order.
pub type Samples = Vec<Vec<polyhe_ir::Tensor>>;

/// Deterministic calibration samples from a file-test header line `NAME uniform LO HI COUNT`
/// (several lines for several inputs): each sample's elements uniform in `[LO, HI]` (a fixed
/// LCG), shaped as the graph declares the input.
pub fn synthetic_samples(g: &Graph, specs: &[String]) -> Result<Samples, String> {
    let mut per_input: Vec<Option<(f64, f64, usize)>> = vec![None; g.inputs.len()];
    for spec in specs {
        let w: Vec<&str> = spec.split_whitespace().collect();
        let [name, "uniform", lo, hi, count] = w.as_slice() else {
            return Err(format!("calib `{spec}`: expected `NAME uniform LO HI COUNT`"));
        };
        let num = |x: &str| x.parse::<f64>().map_err(|e| format!("calib `{spec}`: {e}"));
        let k = g.inputs.iter().position(|&v| g.value_label(v) == *name).ok_or(format!("calib: no input `{name}`"))?;
        let count = count.parse::<usize>().map_err(|e| format!("calib `{spec}`: {e}"))?;
        per_input[k] = Some((num(lo)?, num(hi)?, count));
    }
    let count = per_input.iter().flatten().map(|c| c.2).max().unwrap_or(0);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            g.inputs
                .iter()
                .zip(&per_input)
                .map(|(&v, spec)| {
                    let ty = g.ty(v).clone();
                    let (lo, hi, _) =
                        spec.ok_or_else(|| format!("calib: no samples for input `{}`", g.value_label(v)))?;
                    let n: usize = ty.shape.iter().product();
                    let data = (0..n).map(|_| lo + (hi - lo) * next()).collect();
                    polyhe_ir::Tensor::new(ty, polyhe_ir::Data::Float(data)).map_err(|e| e.to_string())
                })
                .collect()
        })
        .collect()
}

/// Runs `pass` on `g`: the graph after it (unchanged for analyses and `ckks`) and its text.
/// `samples` calibrate `to-poly` (an error there without them).
pub fn run_pass(
    pass: Pass,
    g: Graph,
    backend: &BackendOptions,
    samples: Option<&Samples>,
) -> Result<(Graph, String), String> {
    match pass {
        Pass::ToPoly => {
            let samples = samples.ok_or("to-poly needs calibration samples (`--calib NAME=FILE.npy`)")?;
            let cal = polyhe_passes::calibrate(&g, samples).map_err(|e| e.to_string())?;
            let r = polyhe_passes::to_poly(&g, &cal, &Default::default()).map_err(|e| e.to_string())?;
            let mut t = String::new();
            for a in &r.records {
                t.push_str(&format!(
                    "{} {} `{}`: calibrated [{:.4}, {:.4}], interval [{:.4}, {:.4}], {}\n",
                    a.op, a.part, a.node, a.calibrated[0], a.calibrated[1], a.interval[0], a.interval[1], a.method
                ));
            }
            t.push_str(&text::print(&r.graph, &Default::default()));
            Ok((r.graph, t))
        }
        Pass::Verify => {
            polyhe_ir::verify::verify(&g).map_err(|e| e.to_string())?;
            Ok((g, "ok\n".into()))
        }
        Pass::FoldAffine => {
            let out = polyhe_passes::fold_affine(&g).map_err(|e| e.to_string())?;
            let t = text::print(&out, &Default::default());
            Ok((out, t))
        }
        Pass::Egraph => {
            let (out, r) = polyhe_passes::optimize(&g, &Default::default()).map_err(|e| e.to_string())?;
            let t = format!(
                "depth {} -> {}, ct×ct {} -> {}\n{}",
                r.depth_before,
                r.depth_after,
                r.ct_mults_before,
                r.ct_mults_after,
                text::print(&out, &Default::default())
            );
            Ok((out, t))
        }
        Pass::Depth => {
            let r = polyhe_passes::analyze_depth(&g);
            let mut t = format!("total depth {}, ct×ct ops {}\n", r.total_depth, r.ct_mult_ops);
            for (name, d) in &r.outputs {
                t.push_str(&format!("output {name}: depth {d}\n"));
            }
            Ok((g, t))
        }
        Pass::Ckks | Pass::CkksExact => {
            let c = polyhe_backend::compile_ckks(&g, backend).map_err(|e| e.to_string())?;
            let r = &c.report;
            let mut t = format!(
                "depth {}, rotations {}, key switches {}, diagonals {}, ct×ct {}, bootstraps {}\n",
                r.depth, r.rotations, r.key_switches, r.diagonals, r.ct_ct_mults, r.bootstraps
            );
            match &c.program {
                Some(p) => {
                    p.validate().map_err(|e| format!("the program does not validate: {e}"))?;
                    // Every program's exact text form reads back to the same program.
                    let back = polyhe_runtime::Program::parse(&p.print_exact())
                        .map_err(|e| format!("the exact text form does not parse back: {e}"))?;
                    if back != *p {
                        return Err("the exact text form parses back to another program".into());
                    }
                    t.push_str(&if pass == Pass::CkksExact { p.print_exact() } else { p.print() });
                }
                None => t.push_str("no program (needs bootstrapping)\n"),
            }
            Ok((g, t))
        }
    }
}

/// Runs `passes` in order, the verifier after each graph pass when `verify`; the text of each
/// pass is prefixed `; after <pass>`. On failure, the text so far and the error, prefixed
/// `; error in <pass>`.
pub fn run_passes(
    mut g: Graph,
    passes: &[Pass],
    backend: &BackendOptions,
    verify: bool,
    samples: Option<&Samples>,
) -> Result<String, (String, String)> {
    let mut out = String::new();
    for &pass in passes {
        let name = Pass::ALL.iter().find(|(_, p)| *p == pass).map_or("?", |(n, _)| *n);
        match run_pass(pass, g, backend, samples) {
            Ok((next, t)) => {
                out.push_str(&format!("; after {name}\n{t}"));
                if verify && matches!(pass, Pass::FoldAffine | Pass::ToPoly | Pass::Egraph) {
                    if let Err(e) = polyhe_ir::verify::verify(&next) {
                        return Err((out, format!("; error in verify after {name}\n{e}\n")));
                    }
                }
                g = next;
            }
            Err(e) => return Err((out, format!("; error in {name}\n{e}\n"))),
        }
    }
    Ok(out)
}
