//! Parameter selection and bootstrap placement.
//!
//! Requires: the program's depth (levels consumed, measured by a dry-run lowering).
//! Guarantees:
//! - The chain is `[first_bits, s × depth]` plus special primes covering the largest
//!   key-switching digit (`CkksParams::with_depth`), at the smallest `N ∈ {2^13 … 2^16}` whose
//!   128-bit bound (HomomorphicEncryption.org table, checked by the runtime) admits it, with the
//!   scaling-prime size `s ∈ [min_log_scale, 40]` and digit count `dnum` that give the smallest
//!   key-switching keys at that N (ties: the largest `s`; or `log_scale`/`dnum` when given). `Security::NotSet` drops the bound (test rings only). A user
//!   override (`log_n`, `levels`, `dnum`) is honoured or refused with
//!   [`BackendError::ParametersInfeasible`] saying what is missing.
//! - When even `N = 2^16` cannot hold the depth, [`place_bootstraps`] computes where bootstraps go:
//!   along every path, a value is refreshed when its depth would pass the next multiple of the usable
//!   levels. Placing each bootstrap as late as possible is optimal for the number of bootstraps on
//!   the critical path (a shortest path over levels whose edges are "consume up to `usable` levels"
//!   — the greedy exchange argument: moving a bootstrap later never makes a later one earlier).

use polyhe_runtime::CkksParams;

use crate::{BackendError, BackendOptions};

/// Scaling-prime sizes the automatic choice tries, most precise first.
fn scale_candidates(opts: &BackendOptions) -> Vec<u32> {
    match opts.log_scale {
        Some(s) => vec![s],
        None => (opts.min_log_scale.min(40)..=40).rev().collect(),
    }
}

/// The chain `[first, scale × levels]` at `log_n`, fewest digits first (key size grows with
/// `dnum·(L+1+K)`; fewer digits mean more special primes, which the security bound has to admit).
fn try_params(
    opts: &BackendOptions,
    log_n: u32,
    levels: usize,
    scale: u32,
) -> Result<CkksParams, polyhe_runtime::CkksError> {
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
    match opts.dnum {
        Some(d) => build(d),
        None => {
            // Every admissible digit count, keeping the smallest key (`dnum·(L+1+K)` limbs); the
            // fewest digits is not always it: near the security bound, more digits need fewer
            // special primes.
            let mut last = None;
            let mut best: Option<CkksParams> = None;
            for d in 1..=(levels + 1).min(60) {
                match build(d) {
                    Ok(p) if best.as_ref().is_none_or(|b| key_limbs(&p) < key_limbs(b)) => best = Some(p),
                    Ok(_) => {}
                    Err(e) => last = Some(e),
                }
            }
            best.ok_or_else(|| last.unwrap_or(polyhe_runtime::CkksError::Internal("no dnum tried")))
        }
    }
}

/// Limbs of one key-switching key: `dnum · (L + 1 + K)` polynomials pairs (bytes: `· 2·N·8`).
pub(crate) fn key_limbs(p: &CkksParams) -> usize {
    p.dnum() * (p.max_level() + 1 + p.special_moduli().len())
}

/// Picks parameters for `depth` levels: the smallest N (speed) and, at that N, the scaling prime in
/// `min_log_scale..=40` and digit count with the smallest evaluation keys (ties: the largest scale,
/// for precision).
pub(crate) fn select(depth: usize, opts: &BackendOptions) -> Result<CkksParams, BackendError> {
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
    let scales = scale_candidates(opts);
    let mut last = None;
    for &log_n in &ns {
        // At the smallest N that holds the depth: the smallest keys, then the largest scale.
        let mut best: Option<CkksParams> = None;
        for &scale in &scales {
            match try_params(opts, log_n, levels, scale) {
                Ok(p) if best.as_ref().is_none_or(|b| key_limbs(&p) < key_limbs(b)) => best = Some(p),
                Ok(_) => {}
                Err(e) => last = Some(e),
            }
        }
        if let Some(p) = best {
            return Ok(p);
        }
    }
    let what = match opts.security {
        polyhe_runtime::Security::Bits128 => "at 128-bit security",
        polyhe_runtime::Security::NotSet => "(security not set)",
    };
    let scale_desc = match opts.log_scale {
        Some(s) => format!("{s}-bit"),
        None => format!("{}..40-bit", opts.min_log_scale.min(40)),
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
    let scale = scale_candidates(opts).last().copied().unwrap_or(40);
    let mut best = 0;
    for d in 1..400 {
        if try_params(&BackendOptions { dnum: Some(opts.dnum.unwrap_or(d + 1)), ..opts.clone() }, 16, d, scale).is_ok()
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
    /// Levels one bootstrap consumes (with bootstrapping compiled in; else 0).
    pub bootstrap_levels: usize,
    /// The bootstrapping configuration (`Debug` form; empty for a placement-only plan).
    pub config: String,
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
        cuts,
        bootstrap_levels: 0,
        config: String::new(),
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

/// The bootstrapping configuration for `log_n` with a sparse secret of weight `hamming_weight`:
/// all `N/2` slots are refreshed (the row-major layout keeps unused slots at zero, which a sparse
/// bootstrapping would fill with copies; see `docs/backend.md`).
pub(crate) fn bootstrap_config(
    log_n: u32,
    hamming_weight: usize,
) -> Result<polyhe_runtime::BootstrapConfig, BackendError> {
    let probe = CkksParams::new_with_security(log_n, &[60, 40], &[60], 2, 40, polyhe_runtime::Security::NotSet)?
        .with_hamming_weight(hamming_weight)?;
    Ok(polyhe_runtime::BootstrapConfig::default_for(&probe, log_n - 1))
}

/// Evaluation-key memory the automatic bootstrapping chain may spend on the bootstrapper's keys
/// (its Galois keys, conjugation, relinearization). More digits buy compute levels (fewer special
/// primes) but every key grows with `dnum`: at N = 2^16 one prime per digit gives 14 levels and
/// 35 GB of keys, 6 digits 7 levels and about 6 GB.
const BOOT_KEY_BUDGET: u64 = 8 << 30;

/// Parameters for a program with bootstraps: chain `[first_bits, s × L, 58 × levels()]` with the
/// sparse secret, where `L` (the compute levels, `opts.bootstrap_levels` or the most the sparse
/// 128-bit budget admits with the bootstrapper's keys within [`BOOT_KEY_BUDGET`], fewest digits
/// among those) is the level every bootstrap returns to. Also returns the bootstrapper's rotation
/// steps.
pub(crate) fn select_bootstrapped(
    opts: &BackendOptions,
    log_n: u32,
) -> Result<(CkksParams, polyhe_runtime::BootstrapConfig, Vec<i64>), BackendError> {
    let cfg = bootstrap_config(log_n, opts.hamming_weight)?;
    let boot = cfg.levels();
    let steps = cfg.rotation_steps(log_n);
    let n_keys = steps.len() as u64 + 2;
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
        let key_bytes = n_keys * dnum as u64 * 2 * (1u64 << log_n) * (q.len() + k) as u64 * 8;
        if opts.bootstrap_levels.is_none() && key_bytes > BOOT_KEY_BUDGET {
            return Err(polyhe_runtime::CkksError::InvalidParameters {
                reason: format!(
                    "{n_keys} bootstrapping keys need {:.1} GiB at dnum {dnum}, over the {} GiB budget",
                    key_bytes as f64 / (1u64 << 30) as f64,
                    BOOT_KEY_BUDGET >> 30
                ),
            });
        }
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
            // Without a security budget the digits need not be few: 6 primes per digit keeps
            // key switching cheap (the runtime's bootstrapping tests use the same).
            None if cap.is_none() => (total.div_ceil(6)..=total).collect(),
            None => (1..=total).collect(),
        }
    };
    let levels: Vec<usize> = match opts.bootstrap_levels {
        Some(l) => vec![l],
        None => (2..=120).rev().collect(),
    };
    let mut last = None;
    for l in levels {
        for d in dnums(1 + l + boot) {
            match build(l, d) {
                Ok(p) => return Ok((p, cfg, steps)),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(BackendError::ParametersInfeasible {
        reason: format!(
            "no chain with bootstrapping ({boot} bootstrapping levels of {BOOT_PRIME_BITS} bits, {scale}-bit scaling primes, at least 2 compute levels) fits N = 2^{log_n}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    })
}
