//! polyhe-backend: lowers the polynomial-stage IR to a CKKS [`Program`] the runtime executes.
//!
//! Pipeline of [`compile_ckks`] (each step in its own module):
//! 0. `layout` — the slot layout policy: given, or (`auto`) column and row-major compiled and the
//!    cheaper kept by [`estimated_eval_seconds`],
//! 1. `lower` — per-op lowering through the level/scale builder (`levels`), affine maps from the
//!    weights (`affine_ops`) by the diagonal method (`linear`). First as a dry run on a stand-in
//!    chain to measure the depth (skipped for programs far deeper than any chain),
//! 2. `params` — pick N, the modulus chain and dnum for that depth at 128-bit security (dnum: the
//!    fastest key switching whose keys fit a memory budget, else the smallest keys); if N = 2^16
//!    (or a forced `log_n`) cannot hold it, or `bootstrap_levels` forces it, a chain with
//!    bootstrapping primes on top and a sparse secret under the sparse-secret budget,
//! 3. `lower` once on the real primes (with bootstrapping: `Bootstrap` instructions wherever an
//!    operand reaches level 1, levels restarting at the bootstrapper's output level),
//!    `rotation_keys` rewrites rotations into chains over the chosen Galois keys, then
//!    `Program::validate` proves levels and scales,
//! 4. the report: layout, rotation-key set, operation counts, key sizes, and the naive layout's rotations.
//!
//! Design notes and trade-offs: `docs/backend.md`.

mod affine_ops;
mod client_plan;
mod error;
mod layout;
mod levels;
mod linear;
mod lower;
mod packing;
mod params;
mod refresh_pairs;
mod refresh_shifts;
mod rotation_keys;
mod time_report;

use std::collections::BTreeMap;

use polyhe_ir::Graph;
pub use polyhe_runtime::{CkksParams, Program, Security};

pub use client_plan::{program_digest, ClientPlan, Digest, InputRange, PortSource};
pub use error::BackendError;
pub use layout::LayoutPolicy;
pub use packing::InputPacking;
pub use params::{BootstrapCut, BootstrapPlan};
pub use refresh_shifts::{set_refresh_shifts, RefreshInputs, REFRESH_BOUND};
pub use time_report::{time_report, LayerTime, PhaseSeconds, TimeReport};

/// Options of [`compile_ckks`]; `Default` gives 128-bit security, automatic N, scaling primes of
/// 40 bits down to `min_log_scale` (by default 34 bits, more at large N), a 60-bit first prime and 60-bit special primes, and the
/// scaling-prime size and key-switching digits with the fastest key switching among those whose
/// keys fit 8 GiB, else the smallest keys (the shipped models at 128-bit security).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOptions {
    /// Force the ring degree `2^log_n` (13..=16).
    pub log_n: Option<u32>,
    /// Smallest ring degree the automatic choice considers.
    pub min_log_n: u32,
    /// Force more levels than the depth (spare levels).
    pub levels: Option<usize>,
    /// Key-switching digits (default: the fastest key switching whose keys fit 8 GiB, else the
    /// smallest keys; see `params.rs`).
    pub dnum: Option<usize>,
    /// Scaling-prime bits (the scale `Δ = 2^log_scale`); `None`: automatic (see the type doc).
    pub log_scale: Option<u32>,
    /// Smallest scaling prime the automatic choice uses; `None`: 34 bits up to N = 2^14, one more
    /// per doubling of N (36 at 2^16). The shipped encoder's encrypted-vs-poly error is about
    /// `3·10⁻⁶ · 2^(40 − s)` at N = 2^13 (measured: 3.2e-6 at 40 bits, 2.0e-3 at 30) and about
    /// ten times that at 2^16 (2.0e-3 at 34 bits), so this keeps it within 1e-3 with margin
    /// (`docs/backend.md`).
    pub min_log_scale: Option<u32>,
    /// `Security::NotSet` admits any chain at any N: for tests that run deep programs on small,
    /// fast rings. Such keys protect nothing; the program records it and the CLI warns.
    pub security: Security,
    pub first_bits: u32,
    pub special_bits: u32,
    /// Depth a bootstrap itself would consume (for the placement when the depth does not fit).
    pub bootstrap_depth: usize,
    /// Compile with bootstraps and this many compute levels between refreshes even if the depth
    /// would fit (test rings: a short `Security::NotSet` chain at N = 2^13 is faster than one
    /// holding the whole depth). `None`: only when the chain cannot hold the depth (at N = 2^16,
    /// or at a forced `log_n`), with the most levels the sparse budget admits.
    pub bootstrap_levels: Option<usize>,
    /// Hamming weight of the sparse secret bootstrapping programs use.
    pub hamming_weight: usize,
    /// How far composing two affine maps may multiply their diagonals (rotations, plaintexts)
    /// to save a level: composed ≤ g·(d₁+d₂) + 64·g. Larger trades time for depth (shipped
    /// encoder at N = 2^16: g = 4 → depth 48, g = 8 → 46 with 31% more instructions; but at
    /// N = 2^14 g = 8 composes its attention-score maps into 16k diagonals instead of 1.6k, 5×
    /// the evaluation time); 0 never composes.
    pub fusion_growth: usize,
    /// Generate Galois keys for signed powers of two only and chain rotations (NAF): about
    /// `2·log₂(N/2)` keys instead of one per distinct step, at more key switches. For large N,
    /// where each key costs tens of MiB.
    pub pow2_rotations: bool,
    /// At most this many Galois keys for the program's own rotations; the other steps become
    /// chains over them (`rotation_keys.rs`: the most-executed steps stay direct). `None`: one key
    /// per step, unless that exceeds [`Self::key_budget_bytes`].
    pub max_rotation_keys: Option<usize>,
    /// Evaluation-key memory the automatic choices stay within: the digit count is the fastest
    /// whose keys fit (else the smallest keys), and when one key per rotation step would exceed
    /// it, as many keys as fit are chosen (`rotation_keys.rs`) unless `max_rotation_keys` is
    /// given. Default 8 GiB: a 24 GiB machine keeps room for the ciphertexts, plaintexts and
    /// hoisted decompositions of a run. `None`: no limit.
    pub key_budget_bytes: Option<u64>,
    /// The slot layout of the tensors the lowering materializes (`layout.rs`); `None`: automatic.
    pub layout: Option<LayoutPolicy>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            log_n: None,
            min_log_n: 13,
            levels: None,
            dnum: None,
            log_scale: None,
            min_log_scale: None,
            security: Security::Bits128,
            first_bits: 60,
            special_bits: 60,
            bootstrap_depth: 14,
            bootstrap_levels: None,
            hamming_weight: 192,
            fusion_growth: 4,
            pow2_rotations: false,
            max_rotation_keys: None,
            key_budget_bytes: Some(8 << 30),
            layout: None,
        }
    }
}

/// The backend report (also written as JSON by the CLI).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackendReport {
    /// Levels the program consumes.
    pub depth: usize,
    pub log_n: Option<u32>,
    pub slots: usize,
    pub q_bits: Vec<u32>,
    pub p_bits: Vec<u32>,
    pub dnum: Option<usize>,
    pub log_qp: Option<f64>,
    /// Scaling-prime bits chosen.
    pub log_scale: Option<u32>,
    /// `"128"` or `"none"` (test parameters: no security).
    pub security: String,
    pub instructions: usize,
    pub op_counts: BTreeMap<String, usize>,
    /// Rotations executed (instructions), distinct steps (= Galois keys), key switches.
    pub rotations: usize,
    pub rotation_keys: usize,
    pub key_switches: usize,
    /// Rotations the plain diagonal method without baby-step giant-step would execute.
    pub naive_rotations: usize,
    pub affine_maps: usize,
    pub diagonals: usize,
    pub ct_ct_mults: usize,
    /// Bytes of the relinearization key plus the rotation keys (`dnum · 2 · N · (L+1+K) · 8` each).
    pub eval_key_bytes: Option<u64>,
    pub constants: usize,
    /// Slot values of the constants (their logical lengths) and the values stored after
    /// run-length encoding (token-fastest diagonals repeat each weight `T` times).
    pub constant_values: usize,
    pub constant_stored_values: usize,
    /// Instructions per IR op kind that emitted them.
    pub insts_per_ir_op: BTreeMap<String, usize>,
    /// Values computed on the client before encryption (from plaintext inputs such as token ids).
    pub client_side: Vec<String>,
    /// Ops the client runs after decryption in exact f64 (`--client-tail`; set by the caller that
    /// split the graph, empty otherwise): the program's outputs are their inputs.
    pub client_tail: Vec<String>,
    /// Levels consumed along the critical path (the deepest output back to an input), per
    /// `"<IR op>: <what rescaled>"` (`map` = diagonal-method sum, `pt` = plaintext multiply,
    /// `scalar`, `ct×ct`, `align` = level alignment at an add). Sums to `depth`.
    pub critical_path: BTreeMap<String, usize>,
    pub bootstrap: Option<BootstrapPlan>,
    /// Bootstrappings in the program (a pair counts once), 0 without bootstrapping.
    pub bootstraps: usize,
    /// Of them, `bootstrap_pair`s (two ciphertexts each, `refresh_pairs.rs`).
    pub bootstrap_pairs: usize,
    /// The values the refreshes see on calibration samples and the shifts they got
    /// ([`set_refresh_shifts`]; `None` until it runs).
    pub refresh_inputs: Option<RefreshInputs>,
    /// The slot layout the program's tensors use (`row` or `column`, see [`LayoutPolicy`]).
    pub layout: String,
    /// Estimated one-thread evaluation seconds per layout the automatic choice compiled
    /// ([`estimated_eval_seconds`]); one entry when the layout was given.
    pub layout_costs: BTreeMap<String, f64>,
}

/// One-thread evaluation time estimated from the operation counts, in seconds, with per-op costs
/// measured at N = 2^16 at the level computation starts after a refresh (L9 of the bootstrapped
/// chain, `../shared/research/transformer-packing-study.md` §1): a rotation 60 ms (between hoisted
/// and not), a plaintext diagonal 13.5 ms (encoding 10.9 ms + multiply 2.6 ms), a ct×ct product
/// 85 ms and a refreshed ciphertext 15 s. Smaller rings and lower levels are cheaper, so this
/// ranks programs rather than predicting their time.
pub fn estimated_eval_seconds(r: &BackendReport) -> f64 {
    (60.0 * r.rotations as f64
        + 13.5 * r.diagonals as f64
        + 85.0 * r.ct_ct_mults as f64
        + 15_000.0 * r.bootstraps as f64)
        / 1000.0
}

/// Programs up to this many instructions (in the column layout) are compiled in both layouts by
/// the automatic choice; larger ones (real transformers, whose row-major maps have up to `T`
/// times the diagonals) take the column layout without a row-major compile.
const AUTO_COMPARE_MAX_INSTRUCTIONS: usize = 100_000;

impl BackendReport {
    /// JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl std::fmt::Display for BackendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "ckks backend report")?;
        if self.security == "none" {
            writeln!(f, "WARNING: security not set: these parameters exceed the 128-bit bound; keys protect nothing (tests only)")?;
        }
        match self.log_n {
            Some(n) => writeln!(
                f,
                "N = 2^{n} ({} slots), depth {}, scale 2^{}, q_bits {:?}, p_bits {:?}, dnum {}, log2 QP {:.1}",
                self.slots,
                self.depth,
                self.log_scale.unwrap_or(0),
                self.q_bits,
                self.p_bits,
                self.dnum.unwrap_or(0),
                self.log_qp.unwrap_or(0.0)
            )?,
            None => writeln!(f, "depth {}: does not fit N = 2^16 at 128-bit security", self.depth)?,
        }
        writeln!(
            f,
            "instructions {}, rotations {} ({} distinct keys; plain diagonal method: {}), key switches {}, ct×ct mults {}",
            self.instructions, self.rotations, self.rotation_keys, self.naive_rotations, self.key_switches, self.ct_ct_mults
        )?;
        if !self.layout.is_empty() {
            let costs: Vec<String> = self.layout_costs.iter().map(|(k, v)| format!("{k} {v:.0} s")).collect();
            writeln!(f, "layout {} (estimated one-thread eval: {})", self.layout, costs.join(", "))?;
        }
        writeln!(
            f,
            "affine maps {}, diagonals {}, constants {} ({} values, {} stored)",
            self.affine_maps, self.diagonals, self.constants, self.constant_values, self.constant_stored_values
        )?;
        if !self.client_side.is_empty() {
            writeln!(f, "computed on the client before encryption: {}", self.client_side.join(", "))?;
        }
        if !self.client_tail.is_empty() {
            writeln!(f, "computed on the client after decryption (exact f64): {}", self.client_tail.join(", "))?;
        }
        if !self.critical_path.is_empty() {
            let parts: Vec<String> = self.critical_path.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "levels on the critical path: {}", parts.join(", "))?;
        }
        if let Some(b) = self.eval_key_bytes {
            writeln!(f, "evaluation keys: {:.1} MiB", b as f64 / (1u64 << 20) as f64)?;
        }
        if let Some(bp) = &self.bootstrap {
            if !bp.reason.is_empty() {
                writeln!(f, "compiled with bootstraps: {}", bp.reason)?;
            }
            if self.bootstraps > 0 {
                writeln!(
                    f,
                    "bootstraps: {} ciphertext refresh(es) by {} bootstrapping(s) ({} of two ciphertexts) in {} round(s) (no placement needs fewer than {}); compute levels {}, {} usable after a bootstrap (level 1 is the floor), each bootstrap consumes {} levels ({})",
                    self.bootstraps + self.bootstrap_pairs,
                    self.bootstraps,
                    self.bootstrap_pairs,
                    bp.cuts.len(),
                    bp.min_rounds,
                    bp.max_levels,
                    bp.usable_after_bootstrap,
                    bp.bootstrap_levels,
                    bp.config
                )?;
            } else if !bp.config.is_empty() {
                writeln!(f, "no bootstraps needed: the {} compute levels hold the depth", bp.max_levels)?;
            } else {
                writeln!(
                    f,
                    "bootstraps needed: {} cut(s) (max {} levels, {} usable after a bootstrap)",
                    bp.cuts.len(),
                    bp.max_levels,
                    bp.usable_after_bootstrap
                )?;
            }
            if let Some(r) = &self.refresh_inputs {
                writeln!(
                    f,
                    "refreshed values on {} calibration sample(s): up to {:.3e}; {} bootstrapping(s) refresh their input divided by up to 2^{} (bound {})",
                    r.samples, r.largest, r.shifted, r.max_shift, REFRESH_BOUND
                )?;
            }
            for c in &bp.cuts {
                let shown: Vec<&str> = c.before_nodes.iter().take(4).map(|s| s.as_str()).collect();
                let more =
                    if c.before_nodes.len() > 4 { format!(" +{}", c.before_nodes.len() - 4) } else { String::new() };
                writeln!(
                    f,
                    "  at depth {:>3}: refresh {} ciphertext(s) before {}{more}",
                    c.depth,
                    c.ciphertexts,
                    shown.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

/// The result of [`compile_ckks`].
#[derive(Debug, Clone)]
pub struct CkksCompiled {
    /// `None` when the depth needs bootstrapping (see `report.bootstrap`).
    pub program: Option<Program>,
    pub params: Option<CkksParams>,
    /// The exact rotation steps the program uses (generate Galois keys for these only).
    pub rotation_steps: Vec<i64>,
    /// Values of the graph the client computes from its plaintext inputs and encrypts as the
    /// program's extra inputs `client:<name>` (see [`program_inputs`]).
    pub client_values: Vec<polyhe_ir::Value>,
    /// Encrypted inputs (float graph inputs or client values) the client lays out before
    /// encryption so the maps reading them have few diagonals (see [`program_inputs`]).
    pub input_packing: BTreeMap<polyhe_ir::Value, InputPacking>,
    pub report: BackendReport,
}

impl CkksCompiled {
    /// The program and its parameters, or why it cannot run encrypted.
    pub fn runnable(&self) -> Result<(&Program, &CkksParams), BackendError> {
        // (a program with bootstraps is runnable: `report.bootstrap` then describes its rounds)
        match (&self.program, &self.params, &self.report.bootstrap) {
            (Some(p), Some(q), _) => Ok((p, q)),
            (_, _, Some(b)) => Err(BackendError::NeedsBootstrapping {
                depth: b.depth,
                max_levels: b.max_levels,
                bootstraps: b.cuts.len(),
            }),
            _ => Err(BackendError::Internal("no program and no bootstrap plan".into())),
        }
    }
}

/// Depth of the dry run's stand-in chain (deeper programs are refused).
const DRY_LEVELS: usize = 2000;

/// Compiles a polynomial-stage graph to a CKKS program (see the crate doc). Without a layout in
/// `opts`, the column layout is compiled, and for programs of at most
/// [`AUTO_COMPARE_MAX_INSTRUCTIONS`] the row-major one too; the one with the smaller
/// [`estimated_eval_seconds`] is kept (row-major on a tie).
pub fn compile_ckks(graph: &Graph, opts: &BackendOptions) -> Result<CkksCompiled, BackendError> {
    let in_layout = |policy: LayoutPolicy| {
        compile_in_layout(graph, &BackendOptions { layout: Some(policy), ..opts.clone() }).map(|mut c| {
            c.report.layout = policy.to_string();
            c.report.layout_costs.insert(policy.to_string(), estimated_eval_seconds(&c.report));
            c
        })
    };
    if let Some(policy) = opts.layout {
        return in_layout(policy);
    }
    let column = in_layout(LayoutPolicy::ColumnMajor);
    if matches!(&column, Ok(c) if c.report.instructions > AUTO_COMPARE_MAX_INSTRUCTIONS) {
        return column;
    }
    let row = in_layout(LayoutPolicy::RowMajor);
    match (row, column) {
        (Ok(mut r), Ok(mut c)) => {
            let (cr, cc) = (estimated_eval_seconds(&r.report), estimated_eval_seconds(&c.report));
            let costs = [(r.report.layout.clone(), cr), (c.report.layout.clone(), cc)];
            let best = if cc < cr { &mut c } else { &mut r };
            best.report.layout_costs = costs.into_iter().collect();
            Ok(if cc < cr { c } else { r })
        }
        (Ok(r), Err(_)) => Ok(r),
        (Err(_), Ok(c)) => Ok(c),
        (Err(e), Err(_)) => Err(e),
    }
}

fn compile_in_layout(graph: &Graph, opts: &BackendOptions) -> Result<CkksCompiled, BackendError> {
    polyhe_passes::verify_poly_stage(graph).map_err(|e| BackendError::Unsupported {
        op: "graph".into(),
        node: graph.name.clone(),
        reason: format!("not a polynomial-stage graph: {e}"),
    })?;
    if let Some(n) = opts.log_n.filter(|n| !(13..=16).contains(n)) {
        return Err(BackendError::ParametersInfeasible { reason: format!("log_n = {n} must be in 13..=16") });
    }
    if opts.bootstrap_levels.is_some() {
        return compile_bootstrapped(graph, opts, opts.log_n.unwrap_or(16));
    }
    // Slot count only changes the packing, not the depth: dry-run at the smallest candidate N
    // (short diagonals keep the dry run cheap).
    let mut dry_log_n = opts.log_n.unwrap_or(opts.min_log_n).clamp(13, 16);
    let dry_scale = opts.log_scale.unwrap_or(40);
    let stand_in = vec![1u64 << dry_scale.min(62); DRY_LEVELS + 1];
    // Fusion decisions count diagonals, which depend on the slot count: when the chosen N differs
    // from the dry run's, measure again at that N so the real lowering consumes exactly the depth
    // the parameters were chosen for (N only grows, so this ends after at most four rounds).
    let mut boot_failed = false;
    // Far deeper than any chain: straight to bootstrapping at N = 2^16 (a dry run at a small N
    // would pack MiniLM-sized tensors over many ciphertexts for nothing). Backend fusion saves a
    // level per composed map at most, hence the factor 2.
    if opts.log_n.is_none() && opts.levels.is_none() {
        let estimate = polyhe_passes::analyze_depth(graph).total_depth as usize;
        if estimate > 2 * params::max_levels(opts) {
            match compile_bootstrapped(graph, opts, 16) {
                Err(BackendError::ParametersInfeasible { .. }) => boot_failed = true,
                other => return other,
            }
        }
    }
    // The input packings of the last dry run (at the chosen N), reused by the real lowering.
    let mut dry_packings: BTreeMap<polyhe_ir::Value, InputPacking>;
    let params = loop {
        let dry_slots = 1usize << (dry_log_n - 1);
        let dry = lower::lower(
            graph,
            &lower::LowerSetup {
                moduli: stand_in.clone(),
                log_scale: dry_scale,
                input_level: DRY_LEVELS,
                slots: dry_slots,
                fusion_growth: opts.fusion_growth,
                bootstrapping: false,
                layout: opts.layout.unwrap_or_default(),
                packings: None,
            },
        )?;
        let depth = DRY_LEVELS - dry.builder.min_level();
        dry_packings = dry.packings.clone();
        // Key-switching keys: the distinct rotations (they depend on the slot count only) and
        // relinearization.
        let keys = rotation_steps_of(&dry.builder.insts).len() + 1;
        match params::select(depth, keys, opts) {
            Ok(p) if p.log_n() == dry_log_n => break p,
            Ok(p) if p.log_n() > dry_log_n => dry_log_n = p.log_n(),
            // Fewer levels at the larger N: a smaller N would do, but its packing was not measured.
            Ok(_) => break params::select(depth, keys, &BackendOptions { log_n: Some(dry_log_n), ..opts.clone() })?,
            // A forced ring whose chain cannot hold the depth: bootstrap at that ring.
            Err(BackendError::ParametersInfeasible { reason }) if opts.log_n.is_some() && opts.levels.is_none() => {
                return compile_bootstrapped(graph, opts, dry_log_n).map_err(|e| match e {
                    BackendError::ParametersInfeasible { reason: boot } => {
                        BackendError::ParametersInfeasible { reason: format!("{reason}; with bootstrapping: {boot}") }
                    }
                    e => e,
                })
            }
            Err(e) if opts.log_n.is_some() || opts.levels.is_some() => return Err(e),
            // Far deeper than any chain (fusion at another N moves the depth by a few levels at
            // most): bootstrap at N = 2^16 without a second dry run there; that dry run is only
            // needed for the placement report when bootstrapping is infeasible too.
            Err(_) if dry_log_n < 16 && !boot_failed && depth > params::max_levels(opts) + 16 => {
                match compile_bootstrapped(graph, opts, 16) {
                    Err(BackendError::ParametersInfeasible { .. }) => {
                        boot_failed = true;
                        dry_log_n = 16;
                    }
                    other => return other,
                }
            }
            // A program this deep would run at N = 2^16 once bootstrapping exists: measure the
            // packing (and so the counts and the placement) there.
            Err(_) if dry_log_n < 16 => dry_log_n = 16,
            Err(_) if boot_failed => return Ok(placement_only(&dry, depth, dry_slots, opts)),
            Err(_) => match compile_bootstrapped(graph, opts, 16) {
                // No chain with bootstrapping either: report where bootstraps would go.
                Err(BackendError::ParametersInfeasible { .. }) => {
                    return Ok(placement_only(&dry, depth, dry_slots, opts))
                }
                other => return other,
            },
        }
    };
    let slots = params.slots();
    let mut real = lower::lower(
        graph,
        &lower::LowerSetup {
            moduli: params.moduli().to_vec(),
            log_scale: params.log_scale(),
            input_level: params.max_level(),
            slots,
            fusion_growth: opts.fusion_growth,
            bootstrapping: false,
            layout: opts.layout.unwrap_or_default(),
            packings: Some(dry_packings),
        },
    )?;
    if let Some(plan) = rotation_plan(opts, &params, &real, &[])? {
        rotation_keys::apply_plan(&mut real, &plan);
    }
    let program = program_of(graph, &real, &params, params.max_level(), None);
    program.validate()?;
    let mut report = report_of(&real, program.levels_used(), Some(&params), slots);
    report.eval_key_bytes = Some(params::program_key_bytes(&params, &program));
    let plain = CkksCompiled {
        rotation_steps: program.rotation_steps(),
        program: Some(program),
        params: Some(params),
        client_values: real.client_values,
        input_packing: real.packings,
        report,
    };
    Ok(bootstrapped_if_keys_far_exceed_budget(graph, opts, plain))
}

/// A chain long enough for the whole depth at N = 2^16 leaves room for few special primes, so
/// its keys have many digits: at 128 bits the sigma encoder's 45 levels need 46 digits and 61 GiB
/// of keys, while 9 compute levels between bootstraps need 7 digits. When the chain's keys exceed
/// twice the key budget (even after the rotation-key choice), the program with bootstraps is
/// compiled too and taken if its keys are smaller: slower, but it runs where the other cannot.
/// Not when the user fixed N, the levels or the digits, or lifted the budget.
fn bootstrapped_if_keys_far_exceed_budget(graph: &Graph, opts: &BackendOptions, plain: CkksCompiled) -> CkksCompiled {
    let budget = params::key_budget(opts);
    let Some(bytes) = plain.report.eval_key_bytes else { return plain };
    let forced = opts.log_n.is_some() || opts.levels.is_some() || opts.dnum.is_some();
    if forced || budget == u64::MAX || bytes <= budget.saturating_mul(2) || plain.report.log_n != Some(16) {
        return plain;
    }
    match compile_bootstrapped(graph, opts, 16) {
        Ok(mut b) if b.report.eval_key_bytes.is_some_and(|kb| kb < bytes) => {
            if let Some(plan) = b.report.bootstrap.as_mut() {
                plan.reason = format!(
                    "a chain without bootstraps needs {:.1} GiB of evaluation keys (dnum {}), over twice the {:.1} GiB key budget",
                    bytes as f64 / GIB,
                    plain.report.dnum.unwrap_or(0),
                    budget as f64 / GIB
                );
            }
            b
        }
        _ => plain,
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// The Galois keys for the rotations of an exact lowering `l` (one key per step): powers of two
/// (`pow2_rotations`), at most `max_rotation_keys`, as many as `key_budget_bytes` holds, or `None`
/// when one key per step is kept and the steps are already canonical (nothing to rewrite).
/// `free` are keys generated anyway (the bootstrapper's): chains use them at no cost.
fn rotation_plan(
    opts: &BackendOptions,
    params: &CkksParams,
    l: &lower::Lowered,
    free: &[i64],
) -> Result<Option<rotation_keys::RotationPlan>, BackendError> {
    use rotation_keys::{canonical, RotationPlan};
    let slots = params.slots();
    if opts.pow2_rotations {
        return Ok(Some(RotationPlan::pow2(slots)));
    }
    let counts = rotation_keys::step_counts(&l.builder.insts);
    let free_set: std::collections::BTreeSet<i64> = free.iter().map(|&s| canonical(s, slots)).collect();
    let distinct: std::collections::BTreeSet<i64> =
        counts.keys().map(|&s| canonical(s, slots)).filter(|s| *s != 0 && !free_set.contains(s)).collect();
    let key_bytes = params::key_bytes(params, 1);
    let max_keys = match (opts.max_rotation_keys, opts.key_budget_bytes) {
        (Some(k), _) => k,
        // the relinearization key, the conjugation key and the free keys come first
        (None, Some(budget)) => (budget / key_bytes).saturating_sub(2 + free_set.len() as u64) as usize,
        (None, None) => usize::MAX,
    };
    // A budget the user did not give as a key count is soft: below the powers of two the steps
    // need, those are kept (the report shows the bytes). A key count the user gave is a budget,
    // not a price.
    let key_price = if opts.max_rotation_keys.is_some() { 0 } else { key_bytes / rotation_keys::KEY_BYTES_PER_SWITCH };
    let plan = RotationPlan::select(&counts, slots, max_keys, free, opts.max_rotation_keys.is_none(), key_price)?;
    // One key per step, as the program is: nothing to rewrite.
    let planned: std::collections::BTreeSet<i64> = plan.keys().iter().copied().collect();
    let exact: std::collections::BTreeSet<i64> = distinct.union(&free_set).copied().collect();
    if planned == exact && counts.keys().all(|&s| canonical(s, slots) == s && !free_set.contains(&s)) {
        return Ok(None);
    }
    Ok(Some(plan))
}

/// The program of a real lowering whose fresh inputs enter at `input_level` (the top of the
/// chain, or below the bootstrapping levels when `bootstrap` is set).
fn program_of(
    graph: &Graph,
    real: &lower::Lowered,
    params: &CkksParams,
    input_level: usize,
    bootstrap: Option<polyhe_runtime::ProgramBootstrap>,
) -> Program {
    Program {
        name: graph.name.clone(),
        params: polyhe_runtime::ProgramParams::from_params(params),
        inputs: real.inputs.clone(),
        input_level,
        input_scale: real.builder.delta(input_level),
        constants: real.builder.constants.clone(),
        insts: real.builder.insts.clone(),
        outputs: real.outputs.clone(),
        bootstrap,
        origins: polyhe_runtime::Origins::from_pairs(
            real.inst_node.iter().map(String::as_str).zip(real.inst_op.iter().copied()),
        ),
    }
}

/// The distinct rotation steps of `insts` (sorted).
fn rotation_steps_of(insts: &[polyhe_runtime::Inst]) -> Vec<i64> {
    let steps: std::collections::BTreeSet<i64> = insts
        .iter()
        .filter_map(|i| match i.op {
            polyhe_runtime::ProgramOp::Rotate { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    steps.into_iter().collect()
}

/// No program (bootstrapping infeasible too): the report of the dry lowering with where bootstraps
/// would go.
fn placement_only(dry: &lower::Lowered, depth: usize, dry_slots: usize, opts: &BackendOptions) -> CkksCompiled {
    let max_levels = params::max_levels(opts);
    let n_in = dry.builder.n_in;
    let mut reg_depth: Vec<usize> = vec![0; n_in];
    reg_depth.extend(dry.builder.insts.iter().map(|i| DRY_LEVELS - i.level));
    let uses: Vec<Vec<u32>> = dry.builder.insts.iter().map(|i| i.op.operands()).collect();
    let plan =
        params::place_bootstraps(depth, max_levels, opts.bootstrap_depth, &reg_depth, n_in, &uses, &dry.inst_node);
    let mut report = report_of(dry, depth, None, dry_slots);
    report.bootstrap = Some(plan);
    CkksCompiled {
        program: None,
        params: None,
        rotation_steps: Vec::new(),
        client_values: dry.client_values.clone(),
        input_packing: dry.packings.clone(),
        report,
    }
}

/// Lowers with bootstraps at ring degree `2^log_n` (see the crate doc, step 2–3).
fn compile_bootstrapped(graph: &Graph, opts: &BackendOptions, log_n: u32) -> Result<CkksCompiled, BackendError> {
    // The compute levels are chosen for the bootstrapper's keys (its rotations, conjugation,
    // relinearization); the digits again below, once the program's own rotations are known.
    let (config, params) = params::bootstrap_config_and_params(opts, log_n)?;
    let boot_levels = config.levels();
    let top = params.max_level() - boot_levels;
    let slots = params.slots();
    let mut real = lower::lower(
        graph,
        &lower::LowerSetup {
            moduli: params.moduli().to_vec(),
            log_scale: params.log_scale(),
            input_level: top,
            slots,
            fusion_growth: opts.fusion_growth,
            bootstrapping: true,
            layout: opts.layout.unwrap_or_default(),
            packings: None,
        },
    )?;
    let pairs = refresh_pairs::pair_refreshes(&mut real);
    let config = params::sparse_bootstrap_config(&real.builder, slots, config);
    let boot_steps = config.rotation_steps(log_n);
    if let Some(plan) = rotation_plan(opts, &params, &real, &boot_steps)? {
        rotation_keys::apply_plan(&mut real, &plan);
    }
    let bootstrap = polyhe_runtime::ProgramBootstrap {
        config: config.clone(),
        output_scale: real.builder.delta(top),
        input_shifts: Default::default(),
    };
    let mut program = program_of(graph, &real, &params, top, Some(bootstrap));
    let rotation_steps = program.rotation_steps();
    let keys = rotation_steps.len() + 1 + usize::from(program.needs_conjugation());
    // Same Q chain (the lowering depends on nothing else), digits for the exact key count.
    let params = params::select_bootstrapped(
        &BackendOptions { bootstrap_levels: Some(top), log_scale: Some(params.log_scale()), ..opts.clone() },
        &config,
        log_n,
        keys,
    )?;
    if params.moduli() != program.params.moduli.as_slice() {
        return Err(BackendError::Internal("re-selecting the digits changed the Q chain".into()));
    }
    program.params = polyhe_runtime::ProgramParams::from_params(&params);
    program.validate()?;
    let (depth, cuts) = bootstrap_rounds(&real);
    let mut report = report_of(&real, 0, Some(&params), slots);
    // Levels consumed by multiplications along the deepest path, across refreshes (alignment
    // drops excluded, as in the critical-path breakdown it sums).
    report.depth = report.critical_path.values().sum();
    report.bootstraps = program.bootstraps();
    report.bootstrap_pairs = pairs;
    report.eval_key_bytes = Some(params::program_key_bytes(&params, &program));
    report.rotation_keys = rotation_steps.len();
    report.bootstrap = Some(BootstrapPlan {
        depth,
        max_levels: top,
        usable_after_bootstrap: top - 1,
        min_rounds: params::min_rounds(depth, top - 1),
        cuts,
        bootstrap_levels: boot_levels,
        config: format!("{config:?}"),
        reason: String::new(),
    });
    Ok(CkksCompiled {
        rotation_steps,
        program: Some(program),
        params: Some(params),
        client_values: real.client_values,
        input_packing: real.packings,
        report,
    })
}

/// The program's logical depth (levels consumed along the deepest path, across refreshes) and its
/// bootstraps grouped into rounds (the number of refreshes on the deepest path into each).
fn bootstrap_rounds(l: &lower::Lowered) -> (usize, Vec<BootstrapCut>) {
    use polyhe_runtime::ProgramOp as O;
    let n_in = l.builder.n_in;
    let insts = &l.builder.insts;
    let mut depth = vec![0usize; n_in];
    let mut round = vec![0usize; n_in];
    let mut cuts: BTreeMap<usize, BootstrapCut> = BTreeMap::new();
    for (i, inst) in insts.iter().enumerate() {
        let ops = inst.op.operands();
        let get = |v: &Vec<usize>, r: u32| v.get(r as usize).copied().unwrap_or(0);
        let d_in = ops.iter().map(|&r| get(&depth, r)).max().unwrap_or(0);
        let mut rd = ops.iter().map(|&r| get(&round, r)).max().unwrap_or(0);
        let d = match inst.op {
            O::Bootstrap(_) | O::BootstrapPair(..) => {
                rd += 1;
                let c = cuts.entry(rd).or_insert_with(|| BootstrapCut {
                    depth: d_in,
                    ciphertexts: 0,
                    before_nodes: Vec::new(),
                });
                c.depth = c.depth.min(d_in);
                c.ciphertexts += ops.len();
                // (the maps that materialize the outputs belong to no IR node)
                let n = l.inst_node.get(i).filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| "(output)".into());
                if !c.before_nodes.contains(&n) {
                    c.before_nodes.push(n);
                }
                d_in
            }
            // A level consumed by a multiplication (as in the critical path): an alignment's
            // drop and rescale (multiply by 1) bring a shallower value down, consuming nothing
            // on the deepest path.
            O::Rescale(src) => {
                let align = matches!(
                    insts.get((src as usize).wrapping_sub(n_in)).map(|x| &x.op),
                    Some(O::MulScalar { value, .. }) if *value == 1.0
                );
                d_in + usize::from(!align)
            }
            _ => d_in,
        };
        depth.push(d);
        round.push(rd);
    }
    let max = depth.iter().copied().max().unwrap_or(0);
    let mut cuts: Vec<BootstrapCut> = cuts.into_values().collect();
    cuts.iter_mut().for_each(|c| c.before_nodes.sort());
    (max, cuts)
}

/// Client side: the program's input tensors (row-major) from the graph's inputs — the float inputs
/// as given, then the client-computed values (evaluated here with the reference interpreter), each
/// packed when `compiled.input_packing` says so.
pub fn program_inputs(
    graph: &Graph,
    compiled: &CkksCompiled,
    graph_inputs: &[polyhe_ir::Tensor],
) -> Result<Vec<Vec<f64>>, BackendError> {
    let pack = |v: polyhe_ir::Value, x: Vec<f64>| match compiled.input_packing.get(&v) {
        None => Ok(x),
        Some(p) => p.pack(&x).ok_or_else(|| BackendError::Eval {
            op: "pack".into(),
            node: graph.value_label(v),
            reason: format!("a tensor of {} elements does not fit the packing", x.len()),
        }),
    };
    let mut out: Vec<Vec<f64>> = graph
        .inputs
        .iter()
        .zip(graph_inputs)
        .filter(|(&v, _)| graph.ty(v).dtype.is_float())
        .map(|(&v, t)| pack(v, t.to_f64_vec()))
        .collect::<Result<_, _>>()?;
    if !compiled.client_values.is_empty() {
        let mut client = graph.clone();
        client.outputs = compiled.client_values.clone();
        let vals = polyhe_ir::interp::run(&client, graph_inputs).map_err(|e| BackendError::Eval {
            op: "client".into(),
            node: graph.name.clone(),
            reason: e.to_string(),
        })?;
        for (&v, t) in compiled.client_values.iter().zip(&vals) {
            out.push(pack(v, t.to_f64_vec())?);
        }
    }
    Ok(out)
}

fn report_of(l: &lower::Lowered, depth: usize, params: Option<&CkksParams>, slots: usize) -> BackendReport {
    let insts = &l.builder.insts;
    let mut op_counts = BTreeMap::new();
    let mut steps = std::collections::BTreeSet::new();
    for i in insts {
        *op_counts.entry(i.op.name().to_string()).or_insert(0) += 1;
        if let polyhe_runtime::ProgramOp::Rotate { step, .. } = i.op {
            steps.insert(step);
        }
    }
    let mut per_ir = BTreeMap::new();
    for op in &l.inst_op {
        *per_ir.entry(op.to_string()).or_insert(0) += 1;
    }
    let rotations = op_counts.get("rotate").copied().unwrap_or(0);
    let ct_ct = op_counts.get("mul_relin").copied().unwrap_or(0);
    let eval_key_bytes = params.map(|p| params::key_bytes(p, 1 + steps.len()));
    BackendReport {
        depth,
        log_n: params.map(|p| p.log_n()),
        slots,
        q_bits: params.map(|p| p.q_bits().to_vec()).unwrap_or_default(),
        p_bits: params.map(|p| p.p_bits().to_vec()).unwrap_or_default(),
        dnum: params.map(|p| p.dnum()),
        log_qp: params.map(|p| p.log_qp()),
        log_scale: params.map(|p| p.log_scale()),
        security: match params.map(|p| p.security()) {
            Some(Security::NotSet) => "none".into(),
            _ => "128".into(),
        },
        instructions: insts.len(),
        op_counts,
        rotations,
        rotation_keys: steps.len(),
        key_switches: rotations + ct_ct,
        naive_rotations: l.stats.naive_rotations,
        affine_maps: l.stats.maps,
        diagonals: l.stats.diagonals,
        ct_ct_mults: ct_ct,
        eval_key_bytes,
        constants: l.builder.constants.len(),
        constant_values: l.builder.constants.iter().map(|c| c.len()).sum(),
        constant_stored_values: l.builder.constants.iter().map(|c| c.stored_values()).sum(),
        insts_per_ir_op: per_ir,
        client_side: l
            .client_values
            .iter()
            .map(|&v| l.value_names.get(&v).cloned().unwrap_or_else(|| v.to_string()))
            .chain(l.packings.iter().map(|(&v, p)| {
                format!(
                    "pack({}) into {} slots",
                    l.value_names.get(&v).cloned().unwrap_or_else(|| v.to_string()),
                    p.gather.len()
                )
            }))
            .collect(),
        client_tail: Vec::new(),
        critical_path: critical_path(l),
        bootstrap: None,
        bootstraps: 0,
        bootstrap_pairs: 0,
        refresh_inputs: None,
        layout: String::new(),
        layout_costs: BTreeMap::new(),
    }
}

/// Levels consumed along the deepest path, attributed to the IR op and the kind of multiply each
/// rescale finishes (see [`BackendReport::critical_path`]).
fn critical_path(l: &lower::Lowered) -> BTreeMap<String, usize> {
    use polyhe_runtime::ProgramOp as O;
    let insts = &l.builder.insts;
    let n_in = l.builder.n_in;
    let kind_of = |src: u32| match insts.get((src as usize).wrapping_sub(n_in)).map(|x| &x.op) {
        Some(O::Mul(..)) => "ct×ct",
        Some(O::MulPlain { .. }) => "pt",
        Some(O::MulScalar { value, .. }) if *value == 1.0 => "align",
        Some(O::MulScalar { .. }) => "scalar",
        _ => "map",
    };
    // Longest path counting the rescales that consume a level of the deepest operand (an `align`
    // rescale brings a shallower operand down and lies on no longest path).
    let mut cost: Vec<usize> = vec![0; n_in + insts.len()];
    let mut pred: Vec<Option<u32>> = vec![None; n_in + insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        let r = n_in + i;
        let best = inst.op.operands().into_iter().max_by_key(|&s| cost.get(s as usize).copied().unwrap_or(0));
        let own = match inst.op {
            O::Rescale(src) if kind_of(src) != "align" => 1,
            _ => 0,
        };
        let c = best.and_then(|s| cost.get(s as usize).copied()).unwrap_or(0) + own;
        if let (Some(cr), Some(p)) = (cost.get_mut(r), pred.get_mut(r)) {
            *cr = c;
            *p = best;
        }
    }
    let mut out = BTreeMap::new();
    let mut r = l.outputs.iter().flat_map(|p| p.regs.iter().copied()).max_by_key(|&r| cost.get(r as usize));
    while let Some(x) = r.filter(|&x| x as usize >= n_in) {
        let i = x as usize - n_in;
        if let Some(O::Rescale(src)) = insts.get(i).map(|x| &x.op) {
            let kind = kind_of(*src);
            if kind != "align" {
                let op = l.inst_op.get(i).copied().unwrap_or("output");
                *out.entry(format!("{op}: {kind}")).or_insert(0) += 1;
            }
        }
        r = pred.get(i + n_in).copied().flatten();
    }
    out
}

/// Wall-clock seconds of the phases of [`run_encrypted`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PhaseTimings {
    pub context: f64,
    pub keygen: f64,
    pub encrypt: f64,
    pub eval: f64,
    pub decrypt: f64,
}

/// The result of [`run_encrypted`].
#[derive(Debug, Clone)]
pub struct EncryptedRun {
    /// One row-major tensor per program output.
    pub outputs: Vec<Vec<f64>>,
    pub timings: PhaseTimings,
    pub stats: polyhe_runtime::ExecStats,
    /// With `trace`: every bootstrapping's operands and result, decrypted and compared with the
    /// plaintext simulation, in program order.
    pub trace: Vec<TraceRow>,
}

/// One traced register of [`run_encrypted_with`] (`polyhe run --mode encrypted --trace`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TraceRow {
    pub inst: usize,
    pub op: &'static str,
    /// The IR node the instruction was lowered from.
    pub node: String,
    /// Largest slot magnitude in the simulation, and the largest |decrypted − simulated|.
    pub max_abs: f64,
    pub max_error: f64,
}

/// Keygen (exact rotation set), encrypt, evaluate, decrypt in one process — `polyhe run --mode
/// encrypted`. `inputs` are row-major tensors in the order of the program's inputs. The evaluation
/// step sees only the evaluation keys.
pub fn run_encrypted(compiled: &CkksCompiled, inputs: &[Vec<f64>]) -> Result<EncryptedRun, BackendError> {
    run_encrypted_with_progress(compiled, inputs, None)
}

/// [`run_encrypted`], reporting evaluation progress (instructions done, total, seconds).
pub fn run_encrypted_with_progress(
    compiled: &CkksCompiled,
    inputs: &[Vec<f64>],
    progress: Option<polyhe_runtime::Progress<'_>>,
) -> Result<EncryptedRun, BackendError> {
    run_encrypted_with(compiled, inputs, progress, false)
}

/// [`run_encrypted_with_progress`]; with `trace`, the operands and result of every bootstrapping
/// are decrypted as they are computed and compared with the program's plaintext simulation
/// ([`EncryptedRun::trace`]): where an encrypted run goes wrong, the first row whose error jumps
/// names the instruction and its IR node.
pub fn run_encrypted_with(
    compiled: &CkksCompiled,
    inputs: &[Vec<f64>],
    progress: Option<polyhe_runtime::Progress<'_>>,
    trace: bool,
) -> Result<EncryptedRun, BackendError> {
    use polyhe_runtime::{decrypt_outputs, encrypt_inputs, execute_probed, CkksContext, ClientKeys, Evaluator};
    use std::time::Instant;
    let (program, params) = compiled.runnable()?;
    let mut timings = PhaseTimings::default();
    let t = Instant::now();
    let ctx = CkksContext::new(params.clone())?;
    timings.context = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let keys = ClientKeys::generate(&ctx)?;
    let evaluator = Evaluator::new(
        &ctx,
        keys.evaluation_keys_at_levels(&program.rotation_key_levels(), program.needs_conjugation())?,
    )?;
    timings.keygen = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cts = encrypt_inputs(program, &ctx, &keys.encryptor(), inputs)?;
    timings.encrypt = t.elapsed().as_secs_f64();
    // The traced instructions (bootstrappings and their operands' producers) and their simulated
    // values (real parts).
    let n_in = program.num_input_regs();
    let mut traced: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    if trace {
        for (i, inst) in program.insts.iter().enumerate() {
            if inst.op.is_bootstrap() {
                traced.insert(i, Vec::new());
                for r in inst.op.operands() {
                    if let Some(j) = (r as usize).checked_sub(n_in) {
                        traced.insert(j, Vec::new());
                    }
                }
            }
        }
        polyhe_runtime::simulate_observed(program, inputs, &mut |i, v| {
            if let Some(x) = traced.get_mut(&i) {
                *x = v.iter().map(|c| c.re).collect();
            }
        })?;
    }
    let rows = std::sync::Mutex::new(Vec::new());
    let encoder = polyhe_runtime::Encoder::new(&ctx);
    let probe = |i: usize, ct: &polyhe_runtime::Ciphertext| {
        let Some(want) = traced.get(&i) else { return };
        let Ok(got) = keys.decrypt(ct).and_then(|pt| encoder.decode(&pt)) else { return };
        let max_abs = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let max_error = got.iter().zip(want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        let inst = program.insts.get(i);
        let row = TraceRow {
            inst: i,
            op: inst.map_or("?", |x| x.op.name()),
            node: program.origins.of(i).map_or_else(String::new, |o| o.node.clone()),
            max_abs,
            max_error,
        };
        if let Ok(mut r) = rows.lock() {
            r.push(row);
        }
    };
    let t = Instant::now();
    let probe_ref: polyhe_runtime::Probe<'_> = &probe;
    let (out, stats) = execute_probed(program, &evaluator, cts, progress, trace.then_some(probe_ref))?;
    timings.eval = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let outputs = decrypt_outputs(program, &ctx, &keys, &out)?;
    timings.decrypt = t.elapsed().as_secs_f64();
    let mut trace = rows.into_inner().unwrap_or_default();
    trace.sort_by_key(|r| r.inst);
    Ok(EncryptedRun { outputs, timings, stats, trace })
}
