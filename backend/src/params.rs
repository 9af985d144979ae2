//! Parameter selection and bootstrap placement.
//!
//! Requires: the program's depth (levels consumed, measured by a dry-run lowering) and its number
//! of key-switching keys (distinct rotations + relinearization; they depend on the slot count only).
//! Guarantees:
//! - The chain is `[first_bits, s × depth]` plus special primes covering the largest
//!   key-switching digit (`CkksParams::with_depth`), at the smallest `N ∈ {2^13 … 2^16}` whose
//!   128-bit bound (HomomorphicEncryption.org table, checked by the runtime) admits it.
//!   `Security::NotSet` drops the bound (test rings only). At that N, the scaling-prime size
//!   `s ∈ [min_log_scale(N), 40]` (34 bits up to 2^14, one more per doubling of N: noise grows
//!   with N, see [`min_log_scale`]) and the digit count `dnum` are chosen by [`pick`]: when some
//!   choice keeps the evaluation keys within [`key_budget`], the one with the fastest key
//!   switching by the cost model [`key_switch_cost_at`] (ties within 5%: the largest `s`);
//!   otherwise the smallest keys (ties: the largest `s`). At 128-bit security the bound is what
//!   limits special primes, and the shipped models' keys exceed the budget at every `dnum`, so
//!   they get the smallest keys; on test rings (`NotSet`, N = 2^13) the fastest digits.
//!   `log_scale`/`dnum` overrides restrict the candidates; a user override (`log_n`, `levels`,
//!   `dnum`) is honoured or refused with [`BackendError::ParametersInfeasible`] saying what is
//!   missing.
//! - With bootstrapping ([`select_bootstrapped`]): chain `[first_bits, s × L, 58 × B]`, sparse
//!   secret, `L` forced or the most the sparse-secret budget and the key budget admit; digits by
//!   [`pick`] again, once the program's exact key count is known (the Q primes do not depend on
//!   the digits, so the lowering stays valid).
//! - When no chain holds the depth, even with bootstrapping, [`place_bootstraps`] computes where
//!   bootstraps would go: along every path, a value is refreshed when its depth would pass the next
//!   multiple of the usable levels. Placing each bootstrap as late as possible is optimal for the
//!   number of bootstraps on the critical path (a shortest path over levels whose edges are
//!   "consume up to `usable` levels" — the greedy exchange argument: moving a bootstrap later never
//!   makes a later one earlier).

use polyhe_runtime::CkksParams;

use crate::{BackendError, BackendOptions};

/// The smallest scaling prime the automatic choice uses at `N = 2^log_n`: `opts.min_log_scale`
/// when given, else 34 bits up to N = 2^14 and one more bit per doubling above. The shipped
/// encoder's encrypted-vs-poly error is ≈ 3·10⁻⁶·2^(40−s) at N = 2^13 but ≈ 10× that at 2^16
/// (2.0e-3 at s = 34: encoding, rescaling and key-switching noise grow with N), so a fixed 34 bits
/// that keep 2e-4 at 2^13 miss 1e-3 at 2^16; 36 bits there give ≈ 5e-4 (`docs/backend.md`).
pub(crate) fn min_log_scale(opts: &BackendOptions, log_n: u32) -> u32 {
    opts.min_log_scale.unwrap_or(34 + log_n.saturating_sub(14)).min(40)
}

/// Scaling-prime sizes the automatic choice tries at `N = 2^log_n`, most precise first.
fn scale_candidates(opts: &BackendOptions, log_n: u32) -> Vec<u32> {
    match opts.log_scale {
        Some(s) => vec![s],
        None => (min_log_scale(opts, log_n)..=40).rev().collect(),
    }
}

/// Every admissible chain `[first, scale × levels]` at `log_n`, one per digit count (`opts.dnum`
/// when given), or the last error.
fn candidates(
    opts: &BackendOptions,
    log_n: u32,
    levels: usize,
    scale: u32,
) -> Result<Vec<CkksParams>, polyhe_runtime::CkksError> {
    let build = |d: usize| {
        CkksParams::with_depth_and_security(
            log_n,
            levels,
            opts.first_bits,
            scale,
            opts.special_bits,
            Some(d),
            opts.security,
        )
    };
    let dnums: Vec<usize> = match opts.dnum {
        Some(d) => vec![d],
        None => (1..=(levels + 1).min(60)).collect(),
    };
    let mut last = None;
    let mut out = Vec::new();
    for d in dnums {
        match build(d) {
            Ok(p) => out.push(p),
            Err(e) => last = Some(e),
        }
    }
    match (out.is_empty(), last) {
        (false, _) => Ok(out),
        (true, Some(e)) => Err(e),
        (true, None) => Err(polyhe_runtime::CkksError::Internal("no dnum tried")),
    }
}

/// Limbs of one key-switching key: `dnum · (L + 1 + K)` polynomials pairs (bytes: `· 2·N·8`).
pub(crate) fn key_limbs(p: &CkksParams) -> usize {
    p.dnum() * (p.max_level() + 1 + p.special_moduli().len())
}

/// Bytes of `keys` key-switching keys (Galois, relinearization, conjugation) at `p`.
pub(crate) fn key_bytes(p: &CkksParams, keys: usize) -> u64 {
    keys as u64 * key_limbs(p) as u64 * 2 * p.n() as u64 * 8
}

/// Bytes of `program`'s evaluation keys as `keygen` writes them: the relinearization (and
/// conjugation) keys full, each rotation key restricted to the highest level its rotations run at
/// (`Program::rotation_key_levels`): `⌈(l+1)/α⌉` digits over `l + 1 + K` limbs instead of `dnum`
/// over `L + 1 + K`.
pub(crate) fn program_key_bytes(p: &CkksParams, program: &polyhe_runtime::Program) -> u64 {
    let (nq, k) = (p.max_level() + 1, p.special_moduli().len());
    let alpha = nq.div_ceil(p.dnum().max(1)).max(1);
    let at = |level: usize| -> u64 {
        let q = (level + 1).min(nq);
        let digits = if q == nq { p.dnum() } else { q.div_ceil(alpha).min(p.dnum()) };
        (digits * (q + k)) as u64 * 2 * p.n() as u64 * 8
    };
    // One key per Galois element: steps equal mod N/2 share it, at the higher level.
    let slots = p.n() as i64 / 2;
    let mut levels: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
    for (s, l) in program.rotation_key_levels() {
        let e = levels.entry(s.rem_euclid(slots.max(1))).or_insert(0);
        *e = (*e).max(l);
    }
    let full = 1 + u64::from(program.needs_conjugation());
    full * at(nq - 1) + levels.into_iter().filter(|&(s, _)| s != 0).map(|(_, l)| at(l)).sum::<u64>()
}

/// Evaluation-key memory the automatic choices may spend ([`BackendOptions::key_budget_bytes`],
/// default 8 GiB; `None`: unlimited): below it, the digit count is chosen for speed
/// ([`key_switch_cost`]); above it (every choice over budget), for the smallest keys. The shipped
/// models at 128-bit security exceed it at every digit count with one key per rotation step
/// (60 GiB and more at N = 2^16), so they get the smallest keys, and the rotation-key selection
/// (`rotation_keys.rs`) then cuts the key set to the same budget.
pub(crate) fn key_budget(opts: &BackendOptions) -> u64 {
    opts.key_budget_bytes.unwrap_or(u64::MAX)
}

/// Estimated time of one key switch of a ciphertext with `nq` Q limbs, with digits of `alpha`
/// primes and `k` special primes, in limb operations (one pass of `N` multiply-accumulates).
///
/// Why this model: key switching is `ModUp` (an inverse NTT of the `nq` limbs, then per digit a
/// base conversion from its `|d|` limbs to the `nq + k − |d|` others, each followed by a forward
/// NTT), the inner product with the key (`2·β·(nq + k)` products over `β = ⌈nq/alpha⌉` digits) and
/// `ModDown` (both halves: `k` inverse NTTs, a conversion from `k` limbs to `nq`, `nq` forward
/// NTTs). A base conversion of `s` source limbs to one target costs `s` multiply-accumulates per
/// coefficient; an NTT `log₂N / 2` butterflies per coefficient. Few digits mean wide digits and
/// many special primes (`k` grows with the digit's bits), so the conversions are quadratic in the
/// limbs (`nq·k` in both directions); many digits mean many NTTs and a long inner product. The
/// optimum is in between: at N = 2^13 with 88 limbs, dnum 3–6 is about twice as fast as dnum 1
/// below the top levels (measured rotations; the model says 1.5×: it ignores memory traffic).
pub(crate) fn key_switch_cost_at(log_n: u32, nq: usize, alpha: usize, k: usize) -> f64 {
    let ntt = f64::from(log_n) / 2.0;
    let alpha = alpha.max(1);
    let (mut conv, mut ntts, mut digits) = (0usize, nq, 0usize);
    let mut start = 0;
    while start < nq {
        let d = alpha.min(nq - start);
        conv += d * (nq + k - d);
        ntts += nq + k - d;
        digits += 1;
        start += d;
    }
    let inner = 2 * digits * (nq + k);
    let down_conv = 2 * k * nq;
    let down_ntts = 2 * (k + nq);
    (conv + inner + down_conv) as f64 + (ntts + down_ntts) as f64 * ntt
}

/// [`key_switch_cost_at`] averaged over the levels `1..=top` a program's key switches run at
/// (a program spends its levels evenly enough that the mean level stands for all of them).
pub(crate) fn key_switch_cost(p: &CkksParams, top: usize) -> f64 {
    let top = top.clamp(1, p.max_level().max(1));
    let (alpha, k) = (p.alpha(), p.special_moduli().len());
    (1..=top).map(|l| key_switch_cost_at(p.log_n(), l + 1, alpha, k)).sum::<f64>() / top as f64
}

/// Chains whose estimated key-switching costs are within this factor count as equally fast; among
/// them the largest scaling prime wins (precision). The model is no more accurate than that.
const COST_TIE: f64 = 1.05;

/// The choice among admissible chains (see [`key_budget`]): if some chain's `keys` keys fit
/// `budget`, the fastest of those by [`key_switch_cost`] over its levels up to `top(p)` (ties within
/// [`COST_TIE`]: the largest scale); otherwise the smallest keys (ties: the largest scale).
pub(crate) fn pick(
    cands: Vec<CkksParams>,
    keys: usize,
    budget: u64,
    top: impl Fn(&CkksParams) -> usize,
) -> Option<CkksParams> {
    let fits: Vec<&CkksParams> = cands.iter().filter(|p| key_bytes(p, keys) <= budget).collect();
    if fits.is_empty() {
        return cands.into_iter().min_by(|a, b| {
            key_limbs(a).cmp(&key_limbs(b)).then(b.log_scale().cmp(&a.log_scale())).then(a.dnum().cmp(&b.dnum()))
        });
    }
    let cost = |p: &CkksParams| key_switch_cost(p, top(p));
    let best = fits.iter().map(|p| cost(p)).fold(f64::INFINITY, f64::min);
    let chosen = fits
        .into_iter()
        .filter(|p| cost(p) <= best * COST_TIE)
        .max_by(|a, b| a.log_scale().cmp(&b.log_scale()).then(cost(b).total_cmp(&cost(a))))?;
    Some(chosen.clone())
}

/// Picks parameters for `depth` levels and `keys` key-switching keys (the program's distinct
/// rotations plus relinearization): the smallest N (speed) and, at that N, the scaling prime in
/// `min_log_scale(N)..=40` and digit count by [`pick`].
pub(crate) fn select(depth: usize, keys: usize, opts: &BackendOptions) -> Result<CkksParams, BackendError> {
    let levels = match opts.levels {
        Some(l) if l < depth => {
            return Err(BackendError::ParametersInfeasible {
                reason: format!("--levels {l} is below the program's depth {depth}; give at least {depth} levels"),
            })
        }
        Some(l) => l,
        None => depth,
    };
    let ns: Vec<u32> = match opts.log_n {
        Some(n) => vec![n],
        None => (opts.min_log_n.max(13)..=16).collect(),
    };
    let mut last = None;
    for &log_n in &ns {
        let mut all = Vec::new();
        for scale in scale_candidates(opts, log_n) {
            match candidates(opts, log_n, levels, scale) {
                Ok(c) => all.extend(c),
                Err(e) => last = Some(e),
            }
        }
        // Key switches run at the levels the program uses, not at spare ones.
        if let Some(p) = pick(all, keys, key_budget(opts), |_| depth) {
            return Ok(p);
        }
    }
    let what = match opts.security {
        polyhe_runtime::Security::Bits128 => "at 128-bit security",
        polyhe_runtime::Security::NotSet => "(security not set)",
    };
    let scale_desc = match opts.log_scale {
        Some(s) => format!("{s}-bit"),
        None => format!("{}..40-bit", min_log_scale(opts, ns.last().copied().unwrap_or(16))),
    };
    let n_desc = match opts.log_n {
        Some(n) => format!("N = 2^{n}"),
        None => "no N up to 2^16".into(),
    };
    Err(BackendError::ParametersInfeasible {
        reason: format!(
            "{n_desc} holds {levels} levels of {scale_desc} scaling primes {what}: {}; {}",
            last.map(|e| e.to_string()).unwrap_or_default(),
            if opts.log_n.is_some() { "use a larger N or omit --log-n" } else { "the circuit needs bootstrapping" }
        ),
    })
}

/// The most levels N = 2^16 holds with the smallest allowed scaling primes.
pub(crate) fn max_levels(opts: &BackendOptions) -> usize {
    let scale = scale_candidates(opts, 16).last().copied().unwrap_or(40);
    let mut best = 0;
    for d in 1..400 {
        if candidates(&BackendOptions { dnum: Some(opts.dnum.unwrap_or(d + 1)), ..opts.clone() }, 16, d, scale).is_ok()
        {
            best = d;
        } else if d > best + 4 {
            break;
        }
    }
    best
}

/// One bootstrap cut: values whose depth would pass `depth` are refreshed first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BootstrapCut {
    /// Depth (levels consumed since the input) at which the refresh happens.
    pub depth: usize,
    /// Ciphertexts to refresh at this cut (values defined at or before the cut, used after it).
    pub ciphertexts: usize,
    /// IR nodes that consume refreshed values first (sorted, deduplicated).
    pub before_nodes: Vec<String>,
}

/// Where bootstraps would go (the runtime has no bootstrapping yet).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BootstrapPlan {
    pub depth: usize,
    pub max_levels: usize,
    /// Levels a bootstrapped ciphertext has left (max levels minus the bootstrap's own depth).
    pub usable_after_bootstrap: usize,
    pub cuts: Vec<BootstrapCut>,
    /// The fewest rounds any placement needs: refreshes along the deepest path when each one is
    /// used to the floor, `⌈(depth − usable) / usable⌉` (the greedy's `cuts.len()` is at least
    /// this; the gap is levels left unused before refreshes).
    pub min_rounds: usize,
    /// Levels one bootstrap consumes (with bootstrapping compiled in; else 0).
    pub bootstrap_levels: usize,
    /// The bootstrapping configuration (`Debug` form; empty for a placement-only plan).
    pub config: String,
    /// Why the program bootstraps although a chain without bootstraps holds its depth (key
    /// memory); empty otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// `⌈(depth − usable) / usable⌉` (0 when the depth fits): a path of `depth` levels starting with
/// `usable` levels gets `usable` more per refresh, so no placement refreshes it fewer times.
pub(crate) fn min_rounds(depth: usize, usable: usize) -> usize {
    depth.saturating_sub(usable).div_ceil(usable.max(1))
}

/// Places bootstraps over the dry-run program: `depth_of[r]` is each register's depth, `uses[i]`
/// the registers instruction `i` reads, `inst_depth[i]` its result's depth, `inst_node[i]` its node.
pub(crate) fn place_bootstraps(
    depth: usize,
    max_levels: usize,
    bootstrap_depth: usize,
    reg_depth: &[usize],
    n_in: usize,
    uses: &[Vec<u32>],
    inst_node: &[String],
) -> BootstrapPlan {
    let usable = max_levels.saturating_sub(bootstrap_depth).max(1);
    let mut cuts = Vec::new();
    let mut cut = max_levels;
    while cut < depth {
        let mut regs = std::collections::BTreeSet::new();
        let mut nodes = std::collections::BTreeSet::new();
        for (i, ops) in uses.iter().enumerate() {
            let d = reg_depth.get(n_in + i).copied().unwrap_or(0);
            if d <= cut {
                continue;
            }
            for &r in ops {
                if reg_depth.get(r as usize).is_some_and(|&rd| rd <= cut) {
                    regs.insert(r);
                    if let Some(n) = inst_node.get(i) {
                        nodes.insert(n.clone());
                    }
                }
            }
        }
        cuts.push(BootstrapCut { depth: cut, ciphertexts: regs.len(), before_nodes: nodes.into_iter().collect() });
        cut += usable;
    }
    BootstrapPlan {
        depth,
        max_levels,
        usable_after_bootstrap: usable,
        min_rounds: min_rounds(depth, usable),
        cuts,
        bootstrap_levels: 0,
        config: String::new(),
        reason: String::new(),
    }
}

/// Bits of the bootstrapping primes (above the compute levels): CoeffsToSlots multiplies values
/// of about `K·q_0`, so these primes are wider than the scaling primes (the runtime's tested chain).
const BOOT_PRIME_BITS: u32 = 58;

/// log2(QP) admitted for 128-bit security with a **sparse** secret: Lattigo's sparse bootstrapping
/// sets (`N16QP1546H192H32`, `N15QP768H192H32`), 7/8 of the uniform-secret table elsewhere (see
/// `docs/bootstrapping.md`, "Security caveat").
pub(crate) fn sparse_max_log_qp(log_n: u32) -> Option<u32> {
    match log_n {
        16 => Some(1546),
        15 => Some(768),
        n => polyhe_runtime::max_log_qp_128(n).map(|b| b * 7 / 8),
    }
}

/// `q_0 / Δ_message` of compiled programs' bootstraps (log2). The runtime's default for full slots
/// (2^9) is tuned for random data in [−1, 1]; its sine nonlinearity costs `≈ (2π·c/2^ratio)²/6`
/// relative error where `c` is the largest coefficient of the encoded input, and transformer
/// activations in the row-major layout are often smooth or replicated (broadcast row sums, spread
/// matmul operands), which puts their whole magnitude into few coefficients. Measured at
/// N = 2^13, 4096 slots (bootstrapping a constant 16): relative error 6.4e-3 at ratio 9, 4.0e-4 at
/// 11, 1.0e-4 at 12, while random [−1, 1] data loses one bit per step (1.1e-7 → 7.8e-7 from 9 to
/// 12). The ViT with 32 compute levels refreshes such values: 2.1e-2 at its logits with ratio 9.
/// At 2^13: 2.5e-5 on the constant 16, a floor of 1.6e-6 on random data (2^14: 6.5e-6, 3.1e-6).
const BOOT_MESSAGE_RATIO: u32 = 13;

/// The bootstrapping configuration for `log_n` with a sparse secret of weight `hamming_weight`:
/// all `N/2` slots refreshed, message ratio [`BOOT_MESSAGE_RATIO`]. Once the program is lowered,
/// [`sparse_bootstrap_config`] narrows it to the slots the refreshed values occupy.
pub(crate) fn bootstrap_config(
    log_n: u32,
    hamming_weight: usize,
) -> Result<polyhe_runtime::BootstrapConfig, BackendError> {
    let probe = CkksParams::new_with_security(log_n, &[60, 40], &[60], 2, 40, polyhe_runtime::Security::NotSet)?
        .with_hamming_weight(hamming_weight)?;
    let cfg = polyhe_runtime::BootstrapConfig::default_for(&probe, log_n - 1);
    Ok(polyhe_runtime::BootstrapConfig { log_message_ratio: BOOT_MESSAGE_RATIO, ..cfg })
}

/// The bootstrapping configuration ([`bootstrap_config`]) and the chain ([`select_bootstrapped`])
/// for ring degree `2^log_n`. Its transforms are planned for time (`giant_step_cost` 3), unless
/// the few extra Galois keys that takes cost a compute level under the key budget: then they are
/// planned for the fewest keys (weight 1). A compute level less means more refreshes (the ViT at
/// 128 bits: 28 instead of 14), far more than the ~17% a time-planned refresh saves.
pub(crate) fn bootstrap_config_and_params(
    opts: &BackendOptions,
    log_n: u32,
) -> Result<(polyhe_runtime::BootstrapConfig, CkksParams), BackendError> {
    let fast = bootstrap_config(log_n, opts.hamming_weight)?;
    let fewer_keys = polyhe_runtime::BootstrapConfig { giant_step_cost: 1, ..fast.clone() };
    let select = |cfg: &polyhe_runtime::BootstrapConfig| {
        select_bootstrapped(opts, cfg, log_n, cfg.rotation_steps(log_n).len() + 2)
    };
    match (select(&fast), select(&fewer_keys)) {
        (Ok(a), Ok(b)) if b.max_level() > a.max_level() => Ok((fewer_keys, b)),
        (Ok(a), _) => Ok((fast, a)),
        (Err(_), Ok(b)) => Ok((fewer_keys, b)),
        (Err(e), Err(_)) => Err(e),
    }
}

/// `full` (a full-slot configuration) narrowed to a zero-padded sparse one refreshing `n` slots,
/// the smallest power of two that covers every bootstrapped register's nonzero slots (the
/// builder's supports, the analysis [`polyhe_runtime::Program::slot_supports`] re-proves in
/// validation: unused slots are zero in every layout), when that is fewer than all `slots`. Fewer slots make CoeffsToSlots and SlotsToCoeffs cheaper (at N = 2^16
/// on 2 threads, 17.4 s for 2^15 slots, 11.3 s for 2^12, 10.2 s for 2^10: `cargo run --release -p
/// polyhe-runtime --example bootstrap -- --log-n 16 --log-slots S`), at the cost of `log2(N/2n)`
/// SubSum rotations; the levels consumed and the precision are the same, so nothing else moves.
pub(crate) fn sparse_bootstrap_config(
    builder: &crate::levels::Builder,
    slots: usize,
    full: polyhe_runtime::BootstrapConfig,
) -> polyhe_runtime::BootstrapConfig {
    let end = |r: polyhe_runtime::Reg| builder.support(r).end(slots);
    let end = builder
        .insts
        .iter()
        .filter_map(|i| match i.op {
            polyhe_runtime::ProgramOp::Bootstrap(a) => Some(end(a)),
            polyhe_runtime::ProgramOp::BootstrapPair(a, b) => Some(end(a).max(end(b))),
            _ => None,
        })
        .max()
        .unwrap_or(slots);
    // one FFT stage per level at most: n ≥ 2^levels
    let floor = 1usize << full.cts_levels.max(full.stc_levels);
    let n = end.next_power_of_two().max(floor);
    if n >= slots {
        return full;
    }
    polyhe_runtime::BootstrapConfig { log_slots: n.trailing_zeros(), zero_padded: true, ..full }
}

/// Parameters for a program with bootstraps of configuration `cfg` ([`bootstrap_config`]): chain
/// `[first_bits, s × L, 58 × cfg.levels()]` with the sparse secret, where `L` (the compute levels) is `opts.bootstrap_levels` or else the most the
/// sparse 128-bit budget admits with `keys` key-switching keys within [`key_budget`], and the
/// digit count is chosen by [`pick`] for `keys` keys. The Q primes depend only on `L` and `s`
/// (special primes are generated after them), so a caller that learns the exact key count after
/// lowering re-selects with `bootstrap_levels = Some(L)` and gets the same Q chain, only the
/// digits (and special primes) may change.
pub(crate) fn select_bootstrapped(
    opts: &BackendOptions,
    cfg: &polyhe_runtime::BootstrapConfig,
    log_n: u32,
    keys: usize,
) -> Result<CkksParams, BackendError> {
    let boot = cfg.levels();
    let scale = opts.log_scale.unwrap_or(40);
    let cap = match opts.security {
        polyhe_runtime::Security::Bits128 => sparse_max_log_qp(log_n),
        polyhe_runtime::Security::NotSet => None,
    };
    let build = |levels: usize, dnum: usize| -> Result<CkksParams, polyhe_runtime::CkksError> {
        let mut q = vec![opts.first_bits];
        q.extend(std::iter::repeat_n(scale, levels));
        q.extend(std::iter::repeat_n(BOOT_PRIME_BITS, boot));
        let alpha = q.len().div_ceil(dnum.max(1));
        let max_digit: u32 = q.chunks(alpha).map(|c| c.iter().sum::<u32>()).max().unwrap_or(0);
        let k = max_digit.div_ceil(opts.special_bits).max(1) as usize;
        let approx = q.iter().sum::<u32>() + k as u32 * opts.special_bits;
        if cap.is_some_and(|c| approx > c + 1) {
            return Err(polyhe_runtime::CkksError::InvalidParameters {
                reason: format!(
                    "about {approx} bits of QP exceed the sparse-secret 128-bit budget {}",
                    cap.unwrap_or(0)
                ),
            });
        }
        let p = CkksParams::new_with_security(log_n, &q, &vec![opts.special_bits; k], dnum, scale, opts.security)?
            .with_hamming_weight(opts.hamming_weight)?;
        if let Some(cap) = cap {
            if p.log_qp() > f64::from(cap) {
                return Err(polyhe_runtime::CkksError::InvalidParameters {
                    reason: format!("log2 QP {:.0} exceeds the sparse-secret 128-bit budget {cap}", p.log_qp()),
                });
            }
        }
        Ok(p)
    };
    let dnums = |total: usize| -> Vec<usize> {
        match opts.dnum {
            Some(d) => vec![d],
            None => (1..=total.min(60)).collect(),
        }
    };
    let levels: Vec<usize> = match opts.bootstrap_levels {
        Some(l) => vec![l],
        None => (2..=120).rev().collect(),
    };
    let mut last = None;
    for l in levels {
        let mut cands = Vec::new();
        for d in dnums(1 + l + boot) {
            match build(l, d) {
                Ok(p) => cands.push(p),
                Err(e) => last = Some(e),
            }
        }
        // Without a forced L, more compute levels are only worth keys that fit the budget.
        if opts.bootstrap_levels.is_none() {
            let before = cands.len();
            cands.retain(|p| key_bytes(p, keys) <= key_budget(opts));
            if cands.len() < before && cands.is_empty() {
                last = Some(polyhe_runtime::CkksError::InvalidParameters {
                    reason: format!(
                        "{keys} keys exceed the {:.1} GiB key budget at every digit count with {l} compute levels",
                        key_budget(opts) as f64 / f64::from(1u32 << 30)
                    ),
                });
            }
        }
        // Key switches run at every level: the bootstrapper's above L, the program's below.
        if let Some(p) = pick(cands, keys, key_budget(opts), |p| p.max_level()) {
            return Ok(p);
        }
    }
    Err(BackendError::ParametersInfeasible {
        reason: format!(
            "no chain with bootstrapping ({boot} bootstrapping levels of {BOOT_PRIME_BITS} bits, {scale}-bit scaling primes, at least 2 compute levels) fits N = 2^{log_n}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyhe_runtime::Security;

    fn chain(levels: usize, scale: u32, dnum: usize) -> CkksParams {
        CkksParams::with_depth_and_security(13, levels, 60, scale, 60, Some(dnum), Security::NotSet).unwrap()
    }

    #[test]
    fn cost_model_prefers_a_few_digits_on_long_chains() {
        // 88 limbs (the ViT without bootstraps): one digit needs 51 special primes, whose base
        // conversions dominate; a dozen digits pay in NTTs and the inner product.
        let cost = |d| key_switch_cost(&chain(87, 34, d), 87);
        assert!(cost(4) < 0.8 * cost(1), "{} vs {}", cost(4), cost(1));
        assert!(cost(4) < cost(12));
        // Fewer limbs, cheaper key switch (same digits).
        assert!(key_switch_cost_at(13, 10, 12, 9) < key_switch_cost_at(13, 40, 12, 9));
    }

    #[test]
    fn pick_is_fastest_within_the_budget_else_smallest_keys() {
        let cands: Vec<CkksParams> = (1..=8).map(|d| chain(48, 40, d)).collect();
        let fast = pick(cands.clone(), 100, 8 << 30, |_| 48).unwrap();
        let fastest = cands.iter().map(|p| key_switch_cost(p, 48)).fold(f64::INFINITY, f64::min);
        assert!(key_switch_cost(&fast, 48) <= fastest * COST_TIE);
        assert!(fast.dnum() > 1);
        // 10^5 keys fit no budget: the smallest keys.
        let small = pick(cands.clone(), 100_000, 8 << 30, |_| 48).unwrap();
        let least = cands.iter().map(key_limbs).min().unwrap();
        assert_eq!(key_limbs(&small), least);
    }

    #[test]
    fn minimum_scale_grows_with_the_ring() {
        let auto = BackendOptions::default();
        assert_eq!([13, 14, 15, 16].map(|n| min_log_scale(&auto, n)), [34, 34, 35, 36]);
        // A user's minimum is taken as given, at every N.
        let user = BackendOptions { min_log_scale: Some(30), ..BackendOptions::default() };
        assert_eq!(min_log_scale(&user, 16), 30);
        // The depth-39 chain at 2^16 and 128 bits: the automatic choice stays at or above 36 bits
        // (34 bits measured 2.0e-3 encrypted-vs-poly error on the encoder there).
        let p = select(39, 30, &BackendOptions { log_n: Some(16), ..auto }).unwrap();
        assert!(p.log_scale() >= 36, "{}", p.log_scale());
    }
}
