//! Executing a [`Program`] on ciphertexts, and the client-side ends (encrypt inputs, decrypt outputs).
//!
//! The executor needs only an [`Evaluator`] (public evaluation keys). Instructions run in steps:
//! each step runs, in parallel with rayon, every instruction whose operands are ready among a
//! window of the next unfinished ones in program order (as many as [`WINDOW_BYTES`] of top-level
//! ciphertexts, 64..=4096). Rotations of one register share a single decomposition (hoisting):
//! within a step, and across steps through a bounded cache while the register has rotations left.
//! An `add` whose second operand is a `mul_plain` used only there runs as one multiply-accumulate
//! pass (the product is never stored; same values). A register is freed once all its uses have run,
//! so memory follows the program order's live set plus the window, not the program's width.
//! Constants are expanded from their runs ([`super::SlotVector::to_dense`]) only to be encoded.
//! A program with bootstraps has its [`crate::Bootstrapper`] rebuilt once per execution (seconds at
//! N = 2^16: the linear-transform diagonals are encoded then).

use rayon::prelude::*;

use super::progress::{Eta, Progress, ProgressReport};
use super::{Inst, Op, Program, ProgramError, ProgramResult};
use crate::context::CkksContext;
use crate::encoder::Encoder;
use crate::eval::Evaluator;
use crate::keys::{Ciphertext, ClientKeys, Encryptor};

/// Counters of one execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecStats {
    /// Parallel steps run.
    pub waves: usize,
    pub rotations: usize,
    /// Hoisted decompositions (each shared by ≥ 2 rotations).
    pub hoists: usize,
    /// Key switches: relinearizations plus rotations.
    pub key_switches: usize,
    pub ct_ct_mults: usize,
    pub plain_mults: usize,
    pub rescales: usize,
    /// Largest number of live ciphertext registers.
    pub peak_live: usize,
    /// Bootstrappings run.
    pub bootstraps: usize,
    /// CPU seconds per kind of work, summed over the threads (so they add up to more than the
    /// wall time on several cores): one entry per instruction kind (`rotate` includes the hoisted
    /// decompositions, `mul_plain+add` the fused diagonal products), and `encode` for the
    /// plaintexts encoded on first use (inside the kinds that needed them).
    pub cpu_seconds: std::collections::BTreeMap<&'static str, f64>,
    /// CPU seconds per instruction (a fused `mul_plain`'s are its `add`'s; a hoisted group of
    /// rotations shares its time equally), for time reports by source ([`Program::origins`]).
    pub inst_cpu_seconds: Vec<f64>,
}

impl ExecStats {
    /// `kind 12.3 s (45%)` for every kind, largest first (the share of the summed CPU time;
    /// `encode` is part of other kinds and not counted in the total).
    pub fn cpu_breakdown(&self) -> String {
        let total: f64 = self.cpu_seconds.iter().filter(|(k, _)| **k != "encode").map(|(_, v)| v).sum();
        let mut v: Vec<(&&str, &f64)> = self.cpu_seconds.iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(a.1));
        v.iter()
            .map(|(k, s)| format!("{k} {s:.1} s ({:.0}%)", 100.0 * **s / total.max(1e-9)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_eval(program: &Program, eval: &Evaluator) -> ProgramResult<()> {
    let fp = eval.context().fingerprint();
    if fp != program.params.fingerprint {
        return Err(ProgramError::Interface {
            reason: format!(
                "evaluator parameters {fp:016x} differ from the program's {:016x}",
                program.params.fingerprint
            ),
        });
    }
    Ok(())
}

/// Runs the program; returns the output ciphertexts in the order of [`Program::outputs`] and their
/// layouts' ciphertexts.
pub fn execute(program: &Program, eval: &Evaluator, inputs: Vec<Ciphertext>) -> ProgramResult<Vec<Ciphertext>> {
    execute_with_stats(program, eval, inputs).map(|(o, _)| o)
}

/// Memory the window may fill with results: the window holds as many instructions past the first
/// unfinished one as top-level ciphertexts fit in this (64..=4096). The program order is the
/// lowering's (each map's products are summed as they are made), so a bounded window keeps the
/// live set near that order's instead of holding every product of a large map at once — dependency
/// waves (all independent instructions together) needed > 20 GiB on the encoder at N = 2^13 — while
/// it is still wide enough that a map's products run in parallel and its baby-step rotations are
/// hoisted together (a 48-instruction window made the encoder's attention scores 8× slower).
const WINDOW_BYTES: usize = 2 << 30;

/// Memory the executor's three caches may fill: the window ([`WINDOW_BYTES`]), kept
/// decompositions ([`HOIST_CACHE_BYTES`]) and encoded plaintexts ([`PlainCache::MAX_BYTES`]).
struct CacheBudget {
    window: usize,
    hoist: usize,
    plain: usize,
}

impl CacheBudget {
    /// The defaults, scaled down together when less than twice their sum is available (Linux
    /// `MemAvailable`, read once the keys are loaded): the caches only save time, and at N = 2^16
    /// (8–9 GiB of keys) their 5 GiB was what an evaluation sharing the machine was killed for.
    /// Elsewhere (no `/proc/meminfo`) the defaults.
    fn for_this_machine() -> CacheBudget {
        let full = CacheBudget { window: WINDOW_BYTES, hoist: HOIST_CACHE_BYTES, plain: PlainCache::MAX_BYTES };
        let Some(avail) = available_memory() else { return full };
        let sum = (full.window + full.hoist + full.plain) as f64;
        let f = (avail as f64 / (2.0 * sum)).clamp(0.0, 1.0);
        let scale = |b: usize| (b as f64 * f) as usize;
        CacheBudget { window: scale(full.window), hoist: scale(full.hoist), plain: scale(full.plain) }
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

enum Task {
    One(usize),
    /// An `add` (index) with its second operand's `mul_plain` (index) fused into it, and the first
    /// operand when this is its last use (then accumulated in place).
    MulPlainAdd(usize, usize, Option<Ciphertext>),
    /// Rotations of one register: its decomposition is reused from the hoist cache or made here,
    /// and kept for later steps when `keep` (the register has rotations left).
    Rotations {
        src: u32,
        group: Vec<usize>,
        keep: bool,
    },
}

/// Decompositions kept between steps for registers whose rotations are spread over more
/// instructions than the window (the encoder's largest groups: 156 rotations of one register over
/// 23k instructions), bounded by [`HOIST_CACHE_BYTES`].
const HOIST_CACHE_BYTES: usize = 1 << 30;

/// Largest distance in the program between a `mul_plain` and the `add` it is fused into (the
/// lowering emits them adjacent; a bound keeps the pair inside one window).
const FUSE_DISTANCE: usize = 16;

/// For each instruction, the `mul_plain` fused into it: `add a, b` where `b` is a `mul_plain`
/// result used only there (and not an output), so `a + x·pt` is computed in one pass and `b` never
/// exists. Returns (fused into add i, whether instruction j is fused).
fn fusions(program: &Program, uses: &[usize], is_output: &[bool]) -> (Vec<Option<usize>>, Vec<bool>) {
    let n_in = program.num_input_regs();
    let n = program.insts.len();
    let mut into = vec![None; n];
    let mut fused = vec![false; n];
    for (i, inst) in program.insts.iter().enumerate() {
        let Op::Add(a, b) = inst.op else { continue };
        let Some(j) = (b as usize).checked_sub(n_in) else { continue };
        let single = uses.get(b as usize) == Some(&1) && !is_output.get(b as usize).copied().unwrap_or(true);
        let is_mul_plain = matches!(program.insts.get(j).map(|x| &x.op), Some(Op::MulPlain { .. }));
        if a != b && single && is_mul_plain && j < i && i - j <= FUSE_DISTANCE {
            if let (Some(x), Some(f)) = (into.get_mut(i), fused.get_mut(j)) {
                *x = Some(j);
                *f = true;
            }
        }
    }
    (into, fused)
}

/// A task's results, and the decomposition to keep for later rotations of its register.
type TaskOut = (Vec<(usize, Ciphertext)>, Option<(u32, std::sync::Arc<crate::eval::HoistedCiphertext>)>);

/// [`execute`] plus counters.
pub fn execute_with_stats(
    program: &Program,
    eval: &Evaluator,
    inputs: Vec<Ciphertext>,
) -> ProgramResult<(Vec<Ciphertext>, ExecStats)> {
    execute_with_progress(program, eval, inputs, None)
}

/// [`execute_with_stats`], calling `progress` about every two seconds (for a progress line).
pub fn execute_with_progress(
    program: &Program,
    eval: &Evaluator,
    inputs: Vec<Ciphertext>,
    progress: Option<Progress<'_>>,
) -> ProgramResult<(Vec<Ciphertext>, ExecStats)> {
    execute_probed(program, eval, inputs, progress, None)
}

/// Called with every instruction's index and result as it is computed (for debugging: a caller
/// holding the secret key can decrypt chosen registers and compare them with [`super::simulate`]).
pub type Probe<'a> = &'a (dyn Fn(usize, &Ciphertext) + Sync);

/// [`execute_with_progress`] with a [`Probe`].
pub fn execute_probed(
    program: &Program,
    eval: &Evaluator,
    inputs: Vec<Ciphertext>,
    progress: Option<Progress<'_>>,
    probe: Option<Probe<'_>>,
) -> ProgramResult<(Vec<Ciphertext>, ExecStats)> {
    program.validate_structure()?;
    check_eval(program, eval)?;
    let n_in = program.num_input_regs();
    if inputs.len() != n_in {
        return Err(ProgramError::Interface {
            reason: format!("{} input ciphertexts given, the program takes {n_in}", inputs.len()),
        });
    }
    for (k, ct) in inputs.iter().enumerate() {
        if ct.level() != program.input_level {
            return Err(ProgramError::Interface {
                reason: format!(
                    "input ciphertext {k} is at level {}, the program expects {}",
                    ct.level(),
                    program.input_level
                ),
            });
        }
    }
    let n_regs = program.num_regs();
    let n_insts = program.insts.len();
    // Remaining uses per register (outputs are never freed).
    let mut uses_left = vec![0usize; n_regs];
    for inst in &program.insts {
        for r in inst.op.operands() {
            if let Some(u) = uses_left.get_mut(r as usize) {
                *u += 1;
            }
        }
    }
    let mut is_output = vec![false; n_regs];
    for o in &program.outputs {
        for &r in &o.regs {
            if let Some(x) = is_output.get_mut(r as usize) {
                *x = true;
            }
        }
    }
    let (fused_into, is_fused) = fusions(program, &uses_left, &is_output);
    let mut regs: Vec<Option<Ciphertext>> = inputs.into_iter().map(Some).collect();
    regs.resize_with(n_regs, || None);
    let ctx = eval.context();
    let encoder = Encoder::new(&ctx);
    let boot = program.bootstrapper(&ctx)?;
    let boot = boot.as_ref();
    let mut stats = ExecStats::default();
    let budget = CacheBudget::for_this_machine();
    let cache = PlainCache::new(program, budget.plain);
    let ct_bytes = 2 * ctx.params().n() * (program.input_level + 1) * 8;
    let window = (budget.window / ct_bytes.max(1)).clamp(64, 4096);
    // Rotations left per source register, and decompositions kept across steps.
    let mut rots_left = vec![0usize; n_regs];
    for inst in &program.insts {
        if let Op::Rotate { src, .. } = inst.op {
            if let Some(c) = rots_left.get_mut(src as usize) {
                *c += 1;
            }
        }
    }
    let mut hoisted: std::collections::HashMap<u32, std::sync::Arc<crate::eval::HoistedCiphertext>> =
        std::collections::HashMap::new();
    let mut hoisted_bytes = 0usize;
    let mut done = vec![false; n_insts];
    let mut next = 0usize;
    let mut completed = 0usize;
    let mut live = n_in;
    let started = std::time::Instant::now();
    let mut last_report = started;
    stats.inst_cpu_seconds = vec![0.0; n_insts];
    let mut eta = Eta::new(&program.insts);
    while next < n_insts {
        // Ready instructions among the next `window` not yet run, in program order.
        let hi = (next + window).min(n_insts);
        let mut tasks = Vec::new();
        let mut rot_groups: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
        let mut step: Vec<usize> = Vec::new();
        for i in next..hi {
            if done.get(i).copied().unwrap_or(true) || is_fused.get(i).copied().unwrap_or(false) {
                continue;
            }
            let Some(inst) = program.insts.get(i) else { continue };
            let fused = fused_into.get(i).copied().flatten();
            // A fused add reads its first operand and the mul_plain's source.
            let operands = match (fused, &inst.op) {
                (Some(j), Op::Add(a, _)) => {
                    vec![*a, program.insts.get(j).and_then(|x| x.op.operands().first().copied()).unwrap_or(u32::MAX)]
                }
                _ => inst.op.operands(),
            };
            if !operands.iter().all(|&r| regs.get(r as usize).is_some_and(|x| x.is_some())) {
                continue;
            }
            step.push(i);
            match (&inst.op, fused) {
                (_, Some(j)) => tasks.push(Task::MulPlainAdd(i, j, None)),
                (Op::Rotate { src, .. }, None) => rot_groups.entry(*src).or_default().push(i),
                _ => tasks.push(Task::One(i)),
            }
        }
        if step.is_empty() {
            return Err(ProgramError::Invalid {
                inst: next,
                reason: "no instruction is ready (operand never computed)".into(),
            });
        }
        for (src, group) in rot_groups {
            let left = rots_left.get(src as usize).copied().unwrap_or(0);
            let keep = left > group.len() && hoisted_bytes < budget.hoist;
            if group.len() >= 2 || keep || hoisted.contains_key(&src) {
                if !hoisted.contains_key(&src) {
                    stats.hoists += 1;
                }
                tasks.push(Task::Rotations { src, group, keep });
            } else {
                tasks.extend(group.into_iter().map(Task::One));
            }
        }
        // An accumulator read last by its fused add moves into the task (no other task of the step
        // reads it: this is its only remaining use).
        for t in tasks.iter_mut() {
            if let Task::MulPlainAdd(i, _, owned) = t {
                if let Some(Op::Add(a, _)) = program.insts.get(*i).map(|x| &x.op) {
                    let a = *a as usize;
                    if uses_left.get(a) == Some(&1) && !is_output.get(a).copied().unwrap_or(true) {
                        if let Some(ct) = regs.get_mut(a).and_then(|r| r.take()) {
                            live -= 1;
                            *owned = Some(ct);
                        }
                    }
                }
            }
        }
        let regs_ref = &regs;
        let hoisted_ref = &hoisted;
        let results: Vec<(ProgramResult<TaskOut>, &'static str, f64)> = tasks
            .into_par_iter()
            .map(|t| {
                let kind: &'static str = match &t {
                    Task::One(i) => program.insts.get(*i).map_or("?", |x| x.op.name()),
                    Task::MulPlainAdd(..) => "mul_plain+add",
                    Task::Rotations { .. } => "rotate",
                };
                let t0 = std::time::Instant::now();
                let r = (|| -> ProgramResult<TaskOut> {
                    match t {
                        Task::One(i) => {
                            let inst = program
                                .insts
                                .get(i)
                                .ok_or(ProgramError::Invalid { inst: i, reason: "missing".into() })?;
                            Ok((vec![(i, run_one(program, eval, &encoder, &cache, boot, regs_ref, i, inst)?)], None))
                        }
                        Task::MulPlainAdd(i, j, owned) => {
                            let (Some(Op::Add(a, _)), Some(Op::MulPlain { src, constant: c, pt_scale })) =
                                (program.insts.get(i).map(|x| &x.op), program.insts.get(j).map(|x| &x.op))
                            else {
                                return Err(ProgramError::Invalid { inst: i, reason: "not a fusable add".into() });
                            };
                            let x = reg(regs_ref, *src, j)?;
                            let values = program.constants.get(*c as usize).ok_or(ProgramError::Invalid {
                                inst: j,
                                reason: format!("constant c{c} does not exist"),
                            })?;
                            let pt = cache.get((*c, x.level(), pt_scale.to_bits()), || {
                                encoder.encode(&values.to_dense(), x.level(), *pt_scale)
                            })?;
                            let ct = match owned {
                                Some(mut acc) => {
                                    eval.mul_plain_add_assign(&mut acc, x, &pt)?;
                                    acc
                                }
                                None => eval.mul_plain_add(reg(regs_ref, *a, i)?, x, &pt)?,
                            };
                            Ok((vec![(i, ct)], None))
                        }
                        Task::Rotations { src, group, keep } => {
                            let h = match hoisted_ref.get(&src) {
                                Some(h) => h.clone(),
                                None => {
                                    let ct = reg(regs_ref, src, group.first().copied().unwrap_or(0))?;
                                    std::sync::Arc::new(eval.hoist(ct)?)
                                }
                            };
                            let outs = group
                                .iter()
                                .map(|&i| match program.insts.get(i).map(|x| &x.op) {
                                    Some(Op::Rotate { step, .. }) => Ok((i, eval.rotate_hoisted_one(&h, *step)?)),
                                    _ => Err(ProgramError::Invalid { inst: i, reason: "not a rotation".into() }),
                                })
                                .collect::<ProgramResult<Vec<_>>>()?;
                            Ok((outs, keep.then_some((src, h))))
                        }
                    }
                })();
                (r, kind, t0.elapsed().as_secs_f64())
            })
            .collect();
        stats.waves += 1;
        for (r, kind, secs) in results {
            *stats.cpu_seconds.entry(kind).or_default() += secs;
            let (outs, kept) = r?;
            let share = secs / outs.len().max(1) as f64;
            for (i, ct) in outs {
                if let Some(t) = stats.inst_cpu_seconds.get_mut(i) {
                    *t += share;
                }
                check_result(program, i, &ct)?;
                if let Some(p) = probe {
                    p(i, &ct);
                }
                if let Some(slot) = regs.get_mut(n_in + i) {
                    *slot = Some(ct);
                }
            }
            if let Some((src, h)) = kept {
                if let std::collections::hash_map::Entry::Vacant(e) = hoisted.entry(src) {
                    hoisted_bytes += h.size_bytes();
                    e.insert(h);
                }
            }
        }
        // The fused mul_plains ran with their adds: they are done, and their sources used.
        let fused_now: Vec<usize> = step.iter().filter_map(|&i| fused_into.get(i).copied().flatten()).collect();
        for &i in step.iter().chain(&fused_now) {
            if let Some(d) = done.get_mut(i) {
                *d = true;
            }
            let Some(inst) = program.insts.get(i) else { continue };
            eta.record(&inst.op, inst.level, stats.inst_cpu_seconds.get(i).copied().unwrap_or(0.0));
            match &inst.op {
                Op::Rotate { src, .. } => {
                    if let Some(c) = rots_left.get_mut(*src as usize) {
                        *c = c.saturating_sub(1);
                        if *c == 0 {
                            if let Some(h) = hoisted.remove(src) {
                                hoisted_bytes = hoisted_bytes.saturating_sub(h.size_bytes());
                            }
                        }
                    }
                    stats.rotations += 1;
                    stats.key_switches += 1;
                }
                Op::Mul(..) => {
                    stats.ct_ct_mults += 1;
                    stats.key_switches += 1;
                }
                Op::MulPlain { .. } => stats.plain_mults += 1,
                Op::Rescale(..) => stats.rescales += 1,
                Op::Bootstrap(..) | Op::BootstrapPair(..) => stats.bootstraps += 1,
                Op::Conjugate(..) => stats.key_switches += 1,
                _ => {}
            }
        }
        live += step.len();
        stats.peak_live = stats.peak_live.max(live);
        // Free registers whose every use has run.
        for &i in step.iter().chain(&fused_now) {
            let Some(inst) = program.insts.get(i) else { continue };
            for r in inst.op.operands() {
                let r = r as usize;
                if let Some(u) = uses_left.get_mut(r) {
                    *u = u.saturating_sub(1);
                    if *u == 0 && !is_output.get(r).copied().unwrap_or(true) {
                        if let Some(slot) = regs.get_mut(r) {
                            if slot.take().is_some() {
                                live -= 1;
                            }
                        }
                    }
                }
            }
        }
        while done.get(next).copied().unwrap_or(false) {
            next += 1;
        }
        completed += step.len() + fused_now.len();
        if let Some(p) = progress {
            if last_report.elapsed().as_secs_f64() >= 2.0 || completed == n_insts {
                last_report = std::time::Instant::now();
                let seconds = started.elapsed().as_secs_f64();
                p(&ProgressReport {
                    done: completed,
                    total: n_insts,
                    seconds,
                    remaining_seconds: eta.remaining(seconds),
                    bootstraps_done: eta.bootstraps_done,
                    bootstraps_total: eta.bootstraps_total,
                });
            }
        }
    }
    let mut out = Vec::new();
    for o in &program.outputs {
        for &r in &o.regs {
            let ct = regs.get(r as usize).and_then(|x| x.clone()).ok_or(ProgramError::Invalid {
                inst: program.insts.len(),
                reason: format!("output register %{r} was never computed"),
            })?;
            out.push(ct);
        }
    }
    let encode = cache.encode_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9;
    stats.cpu_seconds.insert("encode", encode);
    Ok((out, stats))
}

fn reg(regs: &[Option<Ciphertext>], r: u32, inst: usize) -> ProgramResult<&Ciphertext> {
    regs.get(r as usize)
        .and_then(|x| x.as_ref())
        .ok_or(ProgramError::Invalid { inst, reason: format!("register %{r} is not available") })
}

fn check_result(program: &Program, i: usize, ct: &Ciphertext) -> ProgramResult<()> {
    let inst = program.insts.get(i).ok_or(ProgramError::Invalid { inst: i, reason: "missing".into() })?;
    let rel = (ct.scale() - inst.scale).abs() / inst.scale.abs().max(f64::MIN_POSITIVE);
    if ct.level() != inst.level || rel > 1e-9 {
        return Err(ProgramError::Invalid {
            inst: i,
            reason: format!(
                "result at level {} scale 2^{:.6}, annotated level {} scale 2^{:.6}",
                ct.level(),
                ct.scale().log2(),
                inst.level,
                inst.scale.log2()
            ),
        });
    }
    Ok(())
}

/// Encoded plaintexts used by several `mul_plain`s at one level and scale: 83% of the encoder's
/// `mul_plain`s reuse an encoding (interned masks and diagonals of data-movement maps), and
/// encoding (special FFT plus one NTT per prime) costs more than the product. An entry is kept
/// from its first use to its last, while the cache holds at most [`PlainCache::MAX_BYTES`] (less when memory is short: [`CacheBudget`])
/// (at N = 2^13 the encoder's 559 simultaneously live entries fit; at 2^16 the first ones do);
/// an encoding that does not fit is simply not cached.
struct PlainCache {
    inner: std::sync::Mutex<CacheState>,
    /// Nanoseconds spent encoding (for [`ExecStats::cpu_seconds`]).
    encode_nanos: std::sync::atomic::AtomicU64,
}

struct CacheState {
    /// (constant, level, scale bits) → remaining uses and the cached encoding.
    uses: std::collections::HashMap<PlainKey, PlainEntry>,
    bytes: usize,
    max_bytes: usize,
}

type PlainKey = (u32, usize, u64);
type PlainEntry = (usize, Option<std::sync::Arc<crate::encoder::Plaintext>>);

impl PlainCache {
    const MAX_BYTES: usize = 2 << 30;

    fn new(program: &Program, max_bytes: usize) -> Self {
        let mut uses = std::collections::HashMap::new();
        for inst in &program.insts {
            if let Op::MulPlain { constant, pt_scale, .. } = inst.op {
                uses.entry((constant, inst.level, pt_scale.to_bits())).or_insert((0usize, None)).0 += 1;
            }
        }
        uses.retain(|_, (n, _)| *n > 1);
        PlainCache {
            inner: std::sync::Mutex::new(CacheState { uses, bytes: 0, max_bytes }),
            encode_nanos: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs an encoding outside the cache, counting its time.
    fn timed<T>(&self, encode: impl FnOnce() -> T) -> T {
        let t0 = std::time::Instant::now();
        let r = encode();
        self.encode_nanos.fetch_add(t0.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        r
    }

    fn get(
        &self,
        key: PlainKey,
        make: impl FnOnce() -> crate::error::Result<crate::encoder::Plaintext>,
    ) -> crate::error::Result<std::sync::Arc<crate::encoder::Plaintext>> {
        let hit = match self.inner.lock() {
            Ok(mut st) => {
                let st = &mut *st;
                st.uses.get_mut(&key).and_then(|(n, pt)| {
                    *n = n.saturating_sub(1);
                    let got = pt.clone();
                    if *n == 0 {
                        if let Some(p) = pt.take() {
                            st.bytes = st.bytes.saturating_sub(p.size_bytes());
                        }
                    }
                    got
                })
            }
            Err(_) => None,
        };
        if let Some(pt) = hit {
            return Ok(pt);
        }
        let t0 = std::time::Instant::now();
        let pt = std::sync::Arc::new(make()?);
        self.encode_nanos.fetch_add(t0.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut st) = self.inner.lock() {
            let st = &mut *st;
            let size = pt.size_bytes();
            if let Some((n, slot)) = st.uses.get_mut(&key) {
                if *n > 0 && slot.is_none() && st.bytes + size <= st.max_bytes {
                    *slot = Some(pt.clone());
                    st.bytes += size;
                }
            }
        }
        Ok(pt)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    program: &Program,
    eval: &Evaluator,
    encoder: &Encoder,
    cache: &PlainCache,
    boot: Option<&crate::Bootstrapper>,
    regs: &[Option<Ciphertext>],
    i: usize,
    inst: &Inst,
) -> ProgramResult<Ciphertext> {
    let r = |x: u32| reg(regs, x, i);
    let constant = |c: u32| {
        program
            .constants
            .get(c as usize)
            .ok_or(ProgramError::Invalid { inst: i, reason: format!("constant c{c} does not exist") })
    };
    let ct = match inst.op {
        Op::Add(a, b) => eval.add(r(a)?, r(b)?)?,
        Op::Sub(a, b) => eval.sub(r(a)?, r(b)?)?,
        Op::Neg(a) => eval.negate(r(a)?)?,
        Op::AddPlain(a, c) => {
            let x = r(a)?;
            let values = constant(c)?.to_dense();
            let pt = cache.timed(|| encoder.encode(&values, x.level(), x.scale()))?;
            eval.add_plain(x, &pt)?
        }
        Op::SubPlain(a, c) => {
            let x = r(a)?;
            let values = constant(c)?.to_dense();
            let pt = cache.timed(|| encoder.encode(&values, x.level(), x.scale()))?;
            eval.sub_plain(x, &pt)?
        }
        Op::MulPlain { src, constant: c, pt_scale } => {
            let x = r(src)?;
            let values = constant(c)?;
            let pt = cache
                .get((c, x.level(), pt_scale.to_bits()), || encoder.encode(&values.to_dense(), x.level(), pt_scale))?;
            eval.mul_plain(x, &pt)?
        }
        Op::MulScalar { src, value, const_scale } => eval.mul_const_scaled(r(src)?, value, const_scale)?,
        Op::MulInt(a, k) => eval.mul_int(r(a)?, k)?,
        Op::Mul(a, b) => eval.mul_relin(r(a)?, r(b)?)?,
        Op::Rescale(a) => eval.rescale(r(a)?)?,
        Op::DropLevel { src, level } => eval.drop_to_level(r(src)?, level)?,
        Op::Rotate { src, step } => eval.rotate(r(src)?, step)?,
        Op::Bootstrap(_) | Op::BootstrapPair(..) => {
            let boot = boot.ok_or(ProgramError::Invalid {
                inst: i,
                reason: "no bootstrapper for a bootstrap instruction".into(),
            })?;
            // x / 2^k by declaring 2^k times the scale (free), then × 2^k after (an integer, no level).
            let k = program.bootstrap.as_ref().and_then(|b| b.input_shifts.get(&i)).copied().unwrap_or(0);
            let shifted = |x: &Ciphertext| -> ProgramResult<Ciphertext> {
                let mut y = x.clone();
                if k > 0 {
                    y.set_scale(x.scale() * f64::from(k).exp2())?;
                }
                Ok(y)
            };
            let z = match inst.op {
                Op::BootstrapPair(a, b) => boot.bootstrap_complex(eval, &shifted(r(a)?)?, &shifted(r(b)?)?)?,
                Op::Bootstrap(a) => boot.bootstrap(eval, &shifted(r(a)?)?)?,
                _ => return Err(ProgramError::Invalid { inst: i, reason: "not a bootstrapping".into() }),
            };
            if k > 0 {
                eval.mul_int(&z, 1i64 << k)?
            } else {
                z
            }
        }
        Op::Conjugate(a) => eval.conjugate(r(a)?)?,
        Op::MulI(a) => eval.mul_by_i(r(a)?)?,
    };
    Ok(ct)
}

/// Client side: packs each input tensor (row-major `f64`, in the order of [`Program::inputs`]) into
/// its layout's slot vectors and encrypts them at the program's input level and scale.
pub fn encrypt_inputs(
    program: &Program,
    ctx: &CkksContext,
    encryptor: &Encryptor,
    inputs: &[Vec<f64>],
) -> ProgramResult<Vec<Ciphertext>> {
    if ctx.fingerprint() != program.params.fingerprint {
        return Err(ProgramError::Interface { reason: "the context's parameters differ from the program's".into() });
    }
    if inputs.len() != program.inputs.len() {
        return Err(ProgramError::Interface {
            reason: format!("{} input tensors given, the program takes {}", inputs.len(), program.inputs.len()),
        });
    }
    let encoder = Encoder::new(ctx);
    let mut parts = Vec::new();
    for (port, data) in program.inputs.iter().zip(inputs) {
        parts.extend(port.layout.pack(data)?);
    }
    parts
        .par_iter()
        .map(|p| {
            let pt = encoder.encode(p, program.input_level, program.input_scale)?;
            Ok(encryptor.encrypt(&pt)?)
        })
        .collect()
}

/// Client side: decrypts the output ciphertexts and unpacks them into row-major tensors, one per
/// [`Program::outputs`] entry.
pub fn decrypt_outputs(
    program: &Program,
    ctx: &CkksContext,
    keys: &ClientKeys,
    outputs: &[Ciphertext],
) -> ProgramResult<Vec<Vec<f64>>> {
    let want: usize = program.outputs.iter().map(|o| o.regs.len()).sum();
    if outputs.len() != want {
        return Err(ProgramError::Interface {
            reason: format!("{} output ciphertexts given, the program produces {want}", outputs.len()),
        });
    }
    // Each result must be at the level and scale the program gives its register: the inputs
    // handed back, another program's results or an edited scale field are refused instead of
    // decoding to plausible garbage.
    let n_in = program.num_input_regs();
    let regs = program.outputs.iter().flat_map(|o| o.regs.iter().enumerate().map(move |(k, &r)| (o, k, r)));
    for ((o, k, r), ct) in regs.zip(outputs) {
        let (level, scale) = match (r as usize).checked_sub(n_in) {
            None => (program.input_level, program.input_scale),
            Some(i) => program.insts.get(i).map_or((usize::MAX, 0.0), |inst| (inst.level, inst.scale)),
        };
        let close = (ct.scale - scale).abs() <= 1e-9 * ct.scale.abs().max(scale.abs());
        if ct.level != level || !close {
            return Err(ProgramError::Interface {
                reason: format!(
                    "output `{}` ciphertext {k} is at level {} with scale 2^{:.4}, where the program's result is at level {level} with scale 2^{:.4}: not this program's output (inputs returned, another program's results, or an edited file)",
                    o.name,
                    ct.level,
                    ct.scale.log2(),
                    scale.log2()
                ),
            });
        }
    }
    let encoder = Encoder::new(ctx);
    let slots: Vec<Vec<f64>> = outputs
        .par_iter()
        .map(|ct| {
            let pt = keys.decrypt(ct)?;
            Ok(encoder.decode(&pt)?)
        })
        .collect::<ProgramResult<_>>()?;
    let mut it = slots.into_iter();
    let mut out = Vec::new();
    for o in &program.outputs {
        let parts: Vec<Vec<f64>> = it.by_ref().take(o.regs.len()).collect();
        out.push(o.layout.unpack(&parts)?);
    }
    Ok(out)
}
