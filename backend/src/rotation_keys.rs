//! Rotation-key selection: which Galois keys a program gets, and how every rotation it needs is
//! reached from them.
//!
//! Requires: the rotation steps an exact lowering emits, with how often each is executed, and the
//! slot count `S` (a power of two; rotations act on `Z_S`).
//! Guarantees:
//! - every step is reached by a chain of key steps whose sum is the step mod `S`;
//! - chains are shortest paths in the Cayley graph of `Z_S` over the key set (one breadth-first
//!   search from 0: the group is abelian, so the distance to `s` is the chain length of `s` from
//!   any ciphertext), so a step that has its own key is one rotation;
//! - [`RotationPlan::select`] keeps at most `max_keys` keys, chosen greedily by the key switches
//!   they save (count × (chain length − 1)) on top of the signed powers of two every used step
//!   needs in its non-adjacent form, which guarantee reachability.
//!
//! Why: a Galois key is `dnum · 2 · N · (L+1+K) · 8` bytes — at N = 2^16 and 40 levels about
//! 240 MB — and a transformer's baby-step giant-step maps use hundreds of distinct steps (the
//! shipped encoder: 272 keys, 61 GiB). Every key left out costs key switches instead: powers of two
//! alone (`--pow2-rotations`, ~28 keys) double the key switches. A budget in between keeps the
//! steps used most often direct. Steps equal mod `S` are one key (`s` and `s − S` are the same
//! Galois element), so even the exact set is counted on canonical steps in `(−S/2, S/2]`.

use std::collections::{BTreeMap, BTreeSet};

use crate::BackendError;

/// The key set and the chain of key steps for every residue.
#[derive(Clone, Debug)]
pub(crate) struct RotationPlan {
    slots: usize,
    /// Canonical key steps in `(−S/2, S/2]`.
    keys: Vec<i64>,
    /// For residue `r`, the index into `keys` of the last hop of a shortest chain to `r`
    /// (`u16::MAX`: unreachable, or `r = 0`).
    via: Vec<u16>,
    /// Chain length to each residue (`u16::MAX`: unreachable).
    dist: Vec<u16>,
}

/// `step` as the canonical representative in `(−S/2, S/2]`.
pub(crate) fn canonical(step: i64, slots: usize) -> i64 {
    let s = slots as i64;
    let k = step.rem_euclid(s);
    if k > s / 2 {
        k - s
    } else {
        k
    }
}

/// The signed powers of two of the non-adjacent form of `step` (canonical in `Z_S`).
fn naf_digits(step: i64, slots: usize) -> Vec<i64> {
    let mut k = canonical(step, slots);
    let mut out = Vec::new();
    let mut bit = 1i64;
    while k != 0 {
        if k & 1 != 0 {
            // ±1 chosen so the remainder becomes divisible by 4.
            let d = if k.rem_euclid(4) == 1 { 1 } else { -1 };
            out.push(canonical(d * bit, slots));
            k -= d;
        }
        k /= 2;
        bit *= 2;
    }
    out
}

/// Key bytes worth one key switch: a rotation key must save `key bytes / KEY_BYTES_PER_SWITCH`
/// key switches to be kept when every step could have its own key within the budget. A full key
/// at N = 2^16 on a 34-limb chain is ~115 MiB, a key switch there ~0.1–0.2 s of CPU: such a key
/// must save 2 (the encoder's 37 keys become 26 for 11 more key switches out of 278, 4.28 →
/// 3.20 GiB); the keys of test rings (a few MiB) are always worth it.
pub(crate) const KEY_BYTES_PER_SWITCH: u64 = 48 << 20;

impl RotationPlan {
    /// The Galois steps that get keys.
    pub fn keys(&self) -> &[i64] {
        &self.keys
    }

    /// Breadth-first search from 0 over `keys` (canonical, distinct).
    fn with_keys(slots: usize, keys: Vec<i64>) -> RotationPlan {
        let mut via = vec![u16::MAX; slots];
        let mut dist = vec![u16::MAX; slots];
        dist[0] = 0;
        let mut frontier = vec![0usize];
        let mut d = 0u16;
        while !frontier.is_empty() {
            d = d.saturating_add(1);
            let mut next = Vec::new();
            for &r in &frontier {
                for (i, &k) in keys.iter().enumerate() {
                    let t = (r as i64 + k).rem_euclid(slots as i64) as usize;
                    if dist[t] == u16::MAX {
                        dist[t] = d;
                        via[t] = i as u16;
                        next.push(t);
                    }
                }
            }
            frontier = next;
        }
        RotationPlan { slots, keys, via, dist }
    }

    /// One key per distinct (canonical) step.
    #[cfg(test)]
    pub fn exact(slots: usize, steps: impl IntoIterator<Item = i64>) -> RotationPlan {
        let keys: BTreeSet<i64> = steps.into_iter().map(|s| canonical(s, slots)).filter(|&s| s != 0).collect();
        RotationPlan::with_keys(slots, keys.into_iter().collect())
    }

    /// Keys for the signed powers of two only (`~2·log₂ S` keys; every step is its non-adjacent
    /// form, or shorter).
    pub fn pow2(slots: usize) -> RotationPlan {
        let mut keys = BTreeSet::new();
        let mut p = 1i64;
        while (p as usize) < slots {
            keys.insert(canonical(p, slots));
            keys.insert(canonical(-p, slots));
            p *= 2;
        }
        RotationPlan::with_keys(slots, keys.into_iter().collect())
    }

    /// At most `max_keys` keys for rotations executed `counts[step]` times (steps need not be
    /// canonical). `free` are keys that exist anyway (the bootstrapper's): chains may use them
    /// and they do not count against the budget. A budget below the powers of two the steps need
    /// is an error, or with `soft` (a budget the compiler derived, not one the user gave) raised
    /// to that minimum.
    pub fn select(
        counts: &BTreeMap<i64, usize>,
        slots: usize,
        max_keys: usize,
        free: &[i64],
        soft: bool,
        key_price: u64,
    ) -> Result<RotationPlan, BackendError> {
        let mut c: BTreeMap<i64, usize> = BTreeMap::new();
        for (&s, &n) in counts {
            let k = canonical(s, slots);
            if k != 0 {
                *c.entry(k).or_insert(0) += n;
            }
        }
        let free: BTreeSet<i64> = free.iter().map(|&s| canonical(s, slots)).filter(|&s| s != 0).collect();
        let own = |keys: &BTreeSet<i64>| keys.iter().filter(|k| !free.contains(k)).count();
        let exact: BTreeSet<i64> = c.keys().copied().chain(free.iter().copied()).collect();
        let cost = |plan: &RotationPlan| -> u64 { c.iter().map(|(&s, &n)| n as u64 * plan.len_of(s) as u64).sum() };
        if own(&exact) <= max_keys {
            let exact_plan = RotationPlan::with_keys(slots, exact.into_iter().collect());
            if key_price == 0 {
                return Ok(exact_plan);
            }
            // Within the budget, a key still has to pay for itself: `key_price` key switches.
            // Least-used steps first, a key goes when the chains through the others cost less;
            // then the chains over powers of two compete with what is left.
            let price = |p: &RotationPlan| cost(p) + key_price * own(&p.keys.iter().copied().collect()) as u64;
            let (mut best, mut best_price) = (exact_plan.clone(), price(&exact_plan));
            let mut by_use: Vec<(usize, i64)> =
                c.iter().filter(|(k, _)| !free.contains(k)).map(|(&k, &n)| (n, k)).collect();
            by_use.sort_unstable();
            for (_, k) in by_use {
                let trial = RotationPlan::with_keys(slots, best.keys.iter().copied().filter(|&x| x != k).collect());
                if c.keys().all(|&s| trial.reaches(s)) && price(&trial) < best_price {
                    best_price = price(&trial);
                    best = trial;
                }
            }
            let lean = Self::chained(&c, slots, max_keys, &free, true, key_price)?;
            return Ok(if price(&lean) < best_price { lean } else { best });
        }
        Self::chained(&c, slots, max_keys, &free, soft, 1)
    }

    /// Chains over the signed powers of two the steps need (`c`: canonical step → count), plus
    /// the used steps that save at least `min_gain` key switches each, within `max_keys` (see
    /// [`Self::select`] for `soft`).
    fn chained(
        c: &BTreeMap<i64, usize>,
        slots: usize,
        max_keys: usize,
        free: &BTreeSet<i64>,
        soft: bool,
        min_gain: u64,
    ) -> Result<RotationPlan, BackendError> {
        let own = |keys: &BTreeSet<i64>| keys.iter().filter(|k| !free.contains(k)).count();
        let mut keys: BTreeSet<i64> = free.clone();
        for &s in c.keys() {
            keys.extend(naf_digits(s, slots));
        }
        let base = own(&keys);
        let max_keys = if soft { max_keys.max(base) } else { max_keys };
        if base > max_keys {
            return Err(BackendError::ParametersInfeasible {
                reason: format!(
                    "a budget of {max_keys} rotation keys is too small: reaching the program's {} rotation steps needs at least the {base} signed powers of two of their non-adjacent forms",
                    c.len()
                ),
            });
        }
        let cost = |plan: &RotationPlan| -> u64 { c.iter().map(|(&s, &n)| n as u64 * plan.len_of(s) as u64).sum() };
        // Adds the most valuable used steps as keys until the budget is full. A candidate `k` is
        // valued by what one hop over it saves: Σ_s c(s)·max(0, d(s) − 1 − d(s − k)) — exact for
        // the step itself and for every step one hop away from it.
        let fill = |keys: &mut BTreeSet<i64>| -> RotationPlan {
            let mut plan = RotationPlan::with_keys(slots, keys.iter().copied().collect());
            while own(keys) < max_keys {
                let best = c
                    .keys()
                    .filter(|k| !keys.contains(k))
                    .map(|&k| {
                        let gain: u64 = c
                            .iter()
                            .map(|(&s, &n)| {
                                let via = 1 + plan.len_of(s - k) as u64;
                                n as u64 * (plan.len_of(s) as u64).saturating_sub(via)
                            })
                            .sum();
                        (gain, std::cmp::Reverse(k.abs()), k)
                    })
                    .max();
                match best {
                    Some((gain, _, k)) if gain >= min_gain.max(1) => {
                        keys.insert(k);
                        plan = RotationPlan::with_keys(slots, keys.iter().copied().collect());
                    }
                    _ => break,
                }
            }
            plan
        };
        let mut plan = fill(&mut keys);
        let mut best = cost(&plan);
        // Local search: a power of two only there for reachability may be worth less than another
        // direct step; swap while that lowers the total (bounded passes).
        for _ in 0..4 {
            let mut improved = false;
            let helpers: Vec<i64> = keys.iter().copied().filter(|k| !free.contains(k) && !c.contains_key(k)).collect();
            for r in helpers {
                let mut trial = keys.clone();
                trial.remove(&r);
                let p = fill(&mut trial);
                if !c.keys().all(|&s| p.reaches(s)) {
                    continue;
                }
                let t = cost(&p);
                if t < best {
                    (keys, plan, best, improved) = (trial, p, t, true);
                }
            }
            if !improved {
                break;
            }
        }
        Ok(plan)
    }

    fn reaches(&self, step: i64) -> bool {
        self.dist[canonical(step, self.slots).rem_euclid(self.slots as i64) as usize] != u16::MAX
    }

    /// Rotations a step costs (0 for a multiple of `S`; `u16::MAX` when unreachable).
    pub fn len_of(&self, step: i64) -> usize {
        self.dist[step.rem_euclid(self.slots as i64) as usize] as usize
    }

    /// The key steps whose rotations compose to `step` (empty for a multiple of `S`), or `None`
    /// when the key set cannot reach it.
    pub fn chain(&self, step: i64) -> Option<Vec<i64>> {
        let s = self.slots as i64;
        let mut r = step.rem_euclid(s) as usize;
        if self.dist[r] == u16::MAX {
            return None;
        }
        let mut out = Vec::with_capacity(self.dist[r] as usize);
        while r != 0 {
            let k = self.keys[self.via[r] as usize];
            out.push(k);
            r = (r as i64 - k).rem_euclid(s) as usize;
        }
        // Largest hop first: babies of one ciphertext then share their first hops more often.
        out.sort_by_key(|k| std::cmp::Reverse(k.abs()));
        Some(out)
    }
}

/// How often each rotation step is executed in `insts`.
pub(crate) fn step_counts(insts: &[polyhe_runtime::Inst]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for i in insts {
        if let polyhe_runtime::ProgramOp::Rotate { step, .. } = i.op {
            *m.entry(step).or_insert(0) += 1;
        }
    }
    m
}

/// Rewrites a finished lowering's rotations into the plan's key chains (a rotation consumes no
/// level, so nothing else changes: no re-lowering); instruction labels follow their rotation.
pub(crate) fn apply_plan(l: &mut crate::lower::Lowered, plan: &RotationPlan) {
    let (origin, reg_map) = l.builder.expand_rotations(|step| plan.chain(step));
    l.remap(&origin, &reg_map);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(plan: &RotationPlan, counts: &BTreeMap<i64, usize>) -> usize {
        counts.iter().map(|(&s, &n)| n * plan.len_of(s)).sum()
    }

    #[test]
    fn chains_compose_to_their_step() {
        let slots = 4096;
        let plan = RotationPlan::pow2(slots);
        for step in [1i64, -1, 3, 7, 100, -100, 2047, 2048, 4095, -4095, 12345] {
            let ch = plan.chain(step).expect("pow2 reaches everything");
            let sum: i64 = ch.iter().sum();
            assert_eq!(sum.rem_euclid(slots as i64), step.rem_euclid(slots as i64), "step {step}: {ch:?}");
            assert!(ch.iter().all(|k| plan.keys().contains(k)));
            assert!(ch.len() <= naf_digits(step, slots).len(), "BFS is no longer than the NAF");
        }
        assert_eq!(plan.chain(0), Some(vec![]));
        assert_eq!(plan.chain(4096), Some(vec![]));
    }

    #[test]
    fn equal_steps_mod_slots_share_one_key() {
        let plan = RotationPlan::exact(1024, [5, 5 - 1024, -3, 1021, 0, 1024]);
        assert_eq!(plan.keys(), &[-3, 5]);
    }

    #[test]
    fn a_key_within_the_budget_must_save_its_price_in_key_switches() {
        // Steps 1 and 2 run ten times each, step 3 once (one hop more over 1 and 2).
        let counts: BTreeMap<i64, usize> = [(1, 10), (2, 10), (3, 1)].into_iter().collect();
        let exact = RotationPlan::select(&counts, 1024, 8, &[], true, 0).unwrap();
        assert_eq!(exact.keys(), &[1, 2, 3]);
        // At a price of 2 key switches per key, step 3's key (saving 1) goes; 1 and 2 stay.
        let lean = RotationPlan::select(&counts, 1024, 8, &[], true, 2).unwrap();
        assert_eq!(lean.keys(), &[1, 2]);
        assert_eq!(lean.len_of(3), 2);
        // A price the frequent steps pay keeps their keys.
        let dear = RotationPlan::select(&counts, 1024, 8, &[], true, 9).unwrap();
        assert!(dear.keys().contains(&1) && dear.keys().contains(&2));
    }

    #[test]
    fn select_keeps_exact_set_when_it_fits() {
        let counts: BTreeMap<i64, usize> = [(3, 10), (17, 1), (-5, 2)].into_iter().collect();
        let plan = RotationPlan::select(&counts, 1024, 3, &[], false, 0).unwrap();
        assert_eq!(plan.keys(), &[-5, 3, 17]);
        assert_eq!(total(&plan, &counts), 13);
    }

    #[test]
    fn select_respects_budget_and_keeps_frequent_steps_direct() {
        // Steps 1..=15 (babies, used 100× each) and giant steps 16·g (used 5× each).
        let mut counts = BTreeMap::new();
        for b in 1..16i64 {
            counts.insert(b, 100);
        }
        for g in 1..32i64 {
            counts.insert(16 * g, 5);
        }
        let slots = 8192;
        let exact = RotationPlan::exact(slots, counts.keys().copied());
        let pow2 = RotationPlan::pow2(slots);
        for budget in [17, 20, 30] {
            let plan = RotationPlan::select(&counts, slots, budget, &[], false, 0).unwrap();
            assert!(plan.keys().len() <= budget, "{} keys > budget {budget}", plan.keys().len());
            assert!(counts.keys().all(|&s| plan.chain(s).is_some()));
            let t = total(&plan, &counts);
            assert!(t < total(&pow2, &counts), "budget {budget}: {t} key switches, pow2 {}", total(&pow2, &counts));
            assert!(t >= total(&exact, &counts));
        }
        // With 20 keys the 15 baby steps (95% of the rotations) are direct.
        let plan = RotationPlan::select(&counts, slots, 20, &[], false, 0).unwrap();
        assert!((1..16).all(|b| plan.len_of(b) == 1));
    }

    #[test]
    fn select_uses_free_keys_and_reports_a_budget_too_small() {
        let counts: BTreeMap<i64, usize> = [(7, 1), (9, 1), (100, 1), (1000, 1)].into_iter().collect();
        let free = [7, 9, 100, 1000];
        let plan = RotationPlan::select(&counts, 4096, 0, &free, false, 0).unwrap();
        assert!(counts.keys().all(|&s| plan.len_of(s) == 1));
        let err = RotationPlan::select(&counts, 4096, 1, &[], false, 0).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
        // A derived budget is raised to the powers of two the steps need.
        let plan = RotationPlan::select(&counts, 4096, 1, &[], true, 0).unwrap();
        let base: BTreeSet<i64> = counts.keys().flat_map(|&s| naf_digits(s, 4096)).collect();
        assert_eq!(plan.keys().len(), base.len());
        assert!(counts.keys().all(|&s| plan.chain(s).is_some()));
    }
}
