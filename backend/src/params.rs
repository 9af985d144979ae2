//! Parameter selection and bootstrap placement.
//!
//! Requires: the program's depth (levels consumed, measured by a dry-run lowering).
//! Guarantees:
//! - The chain is `[first_bits, log_scale × depth]` plus special primes covering the largest
//!   key-switching digit (`CkksParams::with_depth`), at the smallest `N ∈ {2^13 … 2^16}` whose
//!   128-bit bound (HomomorphicEncryption.org table, checked by the runtime) admits it. A user
//!   override (`log_n`, `levels`, `dnum`) is honoured or refused with
//!   [`BackendError::ParametersInfeasible`] saying what is missing.
//! - When even `N = 2^16` cannot hold the depth, [`place_bootstraps`] computes where bootstraps go:
//!   along every path, a value is refreshed when its depth would pass the next multiple of the usable
//!   levels. Placing each bootstrap as late as possible is optimal for the number of bootstraps on
//!   the critical path (a shortest path over levels whose edges are "consume up to `usable` levels"
//!   — the greedy exchange argument: moving a bootstrap later never makes a later one earlier).

use polyhe_runtime::CkksParams;

use crate::{BackendError, BackendOptions};

/// Picks parameters for `depth` levels.
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
    // Fewest digits first: key size grows with dnum·(L+1+K), and fewer digits mean more special
    // primes, which the security bound of the chosen N then has to admit.
    let try_n = |log_n: u32| -> Result<CkksParams, polyhe_runtime::CkksError> {
        match opts.dnum {
            Some(d) => {
                CkksParams::with_depth(log_n, levels, opts.first_bits, opts.log_scale, opts.special_bits, Some(d))
            }
            None => {
                let mut last = None;
                for d in 1..=levels + 1 {
                    match CkksParams::with_depth(
                        log_n,
                        levels,
                        opts.first_bits,
                        opts.log_scale,
                        opts.special_bits,
                        Some(d),
                    ) {
                        Ok(p) => return Ok(p),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or(polyhe_runtime::CkksError::Internal("no dnum tried")))
            }
        }
    };
    match opts.log_n {
        Some(log_n) => try_n(log_n).map_err(|e| BackendError::ParametersInfeasible {
            reason: format!(
                "N = 2^{log_n} with {levels} levels of {} bits: {e}; use a larger N or omit --log-n",
                opts.log_scale
            ),
        }),
        None => {
            let mut last = None;
            for log_n in opts.min_log_n.max(13)..=16 {
                match try_n(log_n) {
                    Ok(p) => return Ok(p),
                    Err(e) => last = Some(e),
                }
            }
            Err(BackendError::ParametersInfeasible {
                reason: format!(
                    "no N up to 2^16 holds {levels} levels at 128-bit security: {}",
                    last.map(|e| e.to_string()).unwrap_or_default()
                ),
            })
        }
    }
}

/// The most levels N = 2^16 holds at 128-bit security with these prime sizes.
pub(crate) fn max_levels(opts: &BackendOptions) -> usize {
    let mut best = 0;
    for d in 1..200 {
        if CkksParams::with_depth(
            16,
            d,
            opts.first_bits,
            opts.log_scale,
            opts.special_bits,
            Some(opts.dnum.unwrap_or(d + 1)),
        )
        .is_ok()
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
    BootstrapPlan { depth, max_levels, usable_after_bootstrap: usable, cuts }
}
