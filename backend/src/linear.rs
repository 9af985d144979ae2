//! Affine maps on packed tensors: the diagonal (Halevi–Shoup) method with baby-step giant-step
//! rotations.
//!
//! Requires: each encrypted operand in the row-major layout (element `e` in ciphertext `e / S`,
//! slot `e % S`, `S` = slots), unused slots zero.
//! Guarantees: the output `y = Σ_i M_i x_i + offset` in the same layout with unused slots zero
//! (diagonals and offsets are zero outside the output's elements), using one level: all products of
//! one output ciphertext are summed at the raw product scale and rescaled once. Per (output
//! ciphertext, input ciphertext) block with diagonal offsets `D` (`M[j, j+d mod S]`), the baby-step
//! size `B` (a power of two) minimizes `|{d mod B}| + |{⌊d/B⌋}|` (rotations); baby rotations of one ciphertext are
//! emitted together so the executor hoists them. An identity map emits nothing (reshapes are free), and `w·x + offset` is a scalar multiply (free
//! for integer `w`) and a plaintext add.

use std::collections::{BTreeMap, BTreeSet};

use polyhe_runtime::{Reg, SlotVector};

use crate::levels::Builder;
use crate::BackendError;

/// `y = Σ_i M_i x_i + offset` over flattened tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AffineMap {
    pub out_numel: usize,
    /// Per encrypted operand: `(out element, in element, weight)`.
    pub parts: Vec<Vec<(usize, usize, f64)>>,
    pub offset: Option<Vec<f64>>,
}

impl AffineMap {
    /// `self ∘ inner` for single-operand maps: `M₂(M₁x + o₁) + o₂ = (M₂M₁)x + (M₂o₁ + o₂)`.
    /// Row by row (Gustavson's sparse product): each output row accumulates into a dense scratch
    /// row over the inner map's inputs, so the cost is the number of multiply-adds, with no
    /// ordered map over millions of entries.
    pub fn compose_after(&self, inner: &AffineMap) -> AffineMap {
        let rows = by_row(inner.parts.iter().flatten().copied(), inner.out_numel);
        let outer = by_row(self.parts.iter().flatten().copied(), self.out_numel);
        let in_numel = inner.parts.iter().flatten().map(|e| e.1 + 1).max().unwrap_or(0);
        let mut scratch = vec![0.0f64; in_numel];
        let mut mark = vec![false; in_numel];
        let mut touched: Vec<usize> = Vec::new();
        // A composition has at least as many entries as the larger of the two maps in the common
        // cases (a slot-wise factor, a data movement): reserved once, not grown by copies.
        let (n_outer, n_inner) =
            (self.parts.iter().map(Vec::len).sum::<usize>(), inner.parts.iter().map(Vec::len).sum::<usize>());
        let mut entries = Vec::with_capacity(n_outer.max(n_inner));
        let mut offset = self.offset.clone().unwrap_or_else(|| vec![0.0; self.out_numel]);
        for (p, row) in outer.iter().enumerate() {
            for &(o, w2) in row {
                for &(i, w1) in rows.get(o).map(|r| r.as_slice()).unwrap_or(&[]) {
                    if let (Some(x), Some(m)) = (scratch.get_mut(i), mark.get_mut(i)) {
                        if !*m {
                            *m = true;
                            touched.push(i);
                        }
                        *x += w2 * w1;
                    }
                }
                if let (Some(o1), Some(t)) = (inner.offset.as_ref().and_then(|v| v.get(o)), offset.get_mut(p)) {
                    *t += w2 * o1;
                }
            }
            // (Entries of a row in first-touch order: deterministic, and no consumer needs
            // them sorted.)
            for &i in &touched {
                if let (Some(x), Some(m)) = (scratch.get_mut(i), mark.get_mut(i)) {
                    if *x != 0.0 {
                        entries.push((p, i, *x));
                    }
                    *x = 0.0;
                    *m = false;
                }
            }
            touched.clear();
        }
        let offset = if offset.iter().any(|x| *x != 0.0) { Some(offset) } else { None };
        AffineMap { out_numel: self.out_numel, parts: vec![entries], offset }
    }

    /// Number of nonzero diagonals over all (output ciphertext, input ciphertext) blocks, with the
    /// operands' elements at `in_pos(e)` and the output's at `out_pos(o)` (a single-operand map in
    /// the layouts it will be lowered in), counted only up to `limit` (the return value is then
    /// `limit + 1`): comparing placements needs no more than that.
    pub fn placed_diagonal_count_up_to(
        &self,
        in_pos: &dyn Fn(usize) -> usize,
        out_pos: &dyn Fn(usize) -> usize,
        slots: usize,
        limit: usize,
    ) -> usize {
        let slots = slots.max(1);
        // One bitset of diagonal offsets per (operand, output ciphertext, input ciphertext)
        // block: linear in the entries (sorting millions of keys dominated compile time).
        let mut bitsets: BlockTable<Vec<u64>> = BlockTable::default();
        let mut count = 0usize;
        for (k, part) in self.parts.iter().enumerate() {
            for &(o, e, _) in part {
                let (o, e) = (out_pos(o), in_pos(e));
                let d = (e % slots + slots - o % slots) % slots;
                let bits = bitsets.entry((k, o / slots, e / slots), || vec![0u64; slots.div_ceil(64)]);
                if let Some(word) = bits.get_mut(d / 64) {
                    let bit = 1u64 << (d % 64);
                    if *word & bit == 0 {
                        *word |= bit;
                        count += 1;
                        if count > limit {
                            return count;
                        }
                    }
                }
            }
        }
        count
    }

    /// `y = x` over `n` elements (moves a value between layouts once placed; nothing to emit in
    /// one layout).
    pub fn identity(n: usize) -> AffineMap {
        AffineMap { out_numel: n, parts: vec![(0..n).map(|o| (o, o, 1.0)).collect()], offset: None }
    }

    /// Whether the map is slot-wise (`y_j = w_j·x_j + o_j`, one operand of the output's size):
    /// composing it with another map keeps that map's diagonals.
    pub fn is_slotwise(&self) -> bool {
        match self.parts.as_slice() {
            [p] => p.iter().all(|&(o, i, _)| o == i) && p.iter().all(|&(o, _, _)| o < self.out_numel),
            _ => false,
        }
    }

    /// `Some(w)` when the map is `w·x + offset` (one operand of the output's size, every element
    /// weighted by the same `w`): a scalar multiply and a plaintext add, no diagonal method.
    fn uniform_scale(&self, in_numel: &[usize]) -> Option<f64> {
        match (self.parts.as_slice(), in_numel) {
            ([p], [n]) if *n == self.out_numel && p.len() == *n => {
                let w = p.first().map(|e| e.2)?;
                (p.iter().all(|e| e.2 == w) && covers_diagonal(p, *n)).then_some(w)
            }
            _ => None,
        }
    }

    fn is_identity(&self, in_numel: &[usize]) -> bool {
        match (self.parts.as_slice(), in_numel) {
            ([p], [n]) => {
                self.offset.is_none() && *n == self.out_numel && p.iter().all(|e| e.2 == 1.0) && covers_diagonal(p, *n)
            }
            _ => false,
        }
    }
}

/// Whether the entries are exactly `(k, k, ·)` for every `k < n`, once each, in any order.
fn covers_diagonal(p: &[(usize, usize, f64)], n: usize) -> bool {
    if p.len() != n {
        return false;
    }
    let mut seen = vec![false; n];
    p.iter().all(|&(o, i, _)| {
        o == i
            && match seen.get_mut(o) {
                Some(s) if !*s => {
                    *s = true;
                    true
                }
                _ => false,
            }
    })
}

/// Entries `(out, in, w)` grouped by output row: `rows[out] = [(in, w), ...]`.
fn by_row(entries: impl Iterator<Item = (usize, usize, f64)>, out_numel: usize) -> Vec<Vec<(usize, f64)>> {
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); out_numel];
    for (o, i, w) in entries {
        if let Some(r) = rows.get_mut(o) {
            r.push((i, w));
        }
    }
    rows
}

/// Counters of the diagonal method (for the report and the naive comparison).
#[derive(Debug, Clone, Default)]
pub(crate) struct LinearStats {
    pub maps: usize,
    pub diagonals: usize,
    pub rotations: usize,
    /// Rotations the plain diagonal method (one rotation per nonzero diagonal) would need.
    pub naive_rotations: usize,
    /// Diagonals per emitting node, layer indices folded (`layer.*`), for `POLYHE_TRACE`.
    pub diagonals_per_node: BTreeMap<String, usize>,
}

/// A diagonal's nonzero `(slot, weight)` entries (sparse: a map's diagonals together hold its
/// entries, never `slots` values each).
type Diagonal = Vec<(usize, f64)>;

/// Per (operand, input ciphertext): diagonal offset → the diagonal.
type Blocks = BTreeMap<(usize, usize), BTreeMap<usize, Diagonal>>;

/// A (ciphertext, operand, ciphertext) block key.
type BlockKey = (usize, usize, usize);

/// Per-block values in first-seen order, looked up by key with the last block cached (map entries
/// come in long runs of one block, so most lookups skip the hash).
struct BlockTable<T> {
    items: Vec<(BlockKey, T)>,
    index: std::collections::HashMap<BlockKey, usize>,
    last: Option<(BlockKey, usize)>,
}

impl<T> Default for BlockTable<T> {
    fn default() -> Self {
        BlockTable { items: Vec::new(), index: std::collections::HashMap::new(), last: None }
    }
}

impl<T> BlockTable<T> {
    /// The value of `key`, made by `make` on first use.
    fn entry(&mut self, key: BlockKey, make: impl FnOnce() -> T) -> &mut T {
        let at = match self.last {
            Some((k, at)) if k == key => at,
            _ => {
                let items = &mut self.items;
                let at = *self.index.entry(key).or_insert_with(|| {
                    items.push((key, make()));
                    items.len() - 1
                });
                self.last = Some((key, at));
                at
            }
        };
        &mut self.items[at].1
    }
}

/// The diagonal rotated right by `shift` (`v[j] = diag[j − shift]`), as a slot vector; `diag` is
/// sorted by slot, repeated slots are summed.
fn rotated_diagonal(diag: &[(usize, f64)], shift: usize, slots: usize) -> SlotVector {
    let mut at: Vec<(usize, f64)> = diag.iter().map(|&(j, w)| ((j + shift) % slots, w)).collect();
    // Sorted slots shifted cyclically: two sorted runs, joined by a rotation (no sort).
    let wrap = diag.partition_point(|&(j, _)| j + shift < slots);
    at.rotate_left(wrap);
    debug_assert!(at.windows(2).all(|w| w[0].0 <= w[1].0));
    let mut runs: Vec<(f64, usize)> = Vec::with_capacity(2 * at.len());
    let mut next = 0usize;
    let mut k = 0;
    while let Some(&(j, _)) = at.get(k) {
        let mut w = 0.0;
        while let Some(&(j2, w2)) = at.get(k) {
            if j2 != j {
                break;
            }
            w += w2;
            k += 1;
        }
        runs.push((0.0, j - next));
        runs.push((w, 1));
        next = j + 1;
    }
    SlotVector::from_runs(runs)
}

/// How a block's diagonal offsets split into baby and giant steps: `d = baby + k·step (mod S)`,
/// the babies rotations of the input, the giants applied by Horner's rule (`step` repeated).
struct Split {
    step: usize,
    /// `Some(progression)`: each offset's `(baby, k)` by walking back along `step` while the
    /// offsets continue (`d − step`, `d − 2·step`, … in the set); `None`: `d mod step`, `d / step`.
    walk: Option<BTreeMap<usize, (usize, usize)>>,
}

impl Split {
    fn of(&self, d: usize) -> (usize, usize) {
        match &self.walk {
            Some(m) => m.get(&d).copied().unwrap_or((d, 0)),
            None => (d % self.step, d / self.step),
        }
    }

    /// The power-of-two split of [`choose_baby`], or — when it needs fewer rotations — a split
    /// along the most common difference between nearby offsets: the offsets of a map over a grid
    /// (`a·i + c·j`, e.g. the skewed scores' `128·h − 496·r`) are progressions along one of its
    /// steps, which powers of two do not divide (64 diagonals cost 41 rotations and 48 distinct
    /// steps; along −496: 18 rotations, 4 steps).
    fn choose(ds: &BTreeSet<usize>, slots: usize) -> Split {
        let bs = choose_baby(ds, slots);
        let pow2 = Split { step: bs, walk: None };
        let cost = |sp: &Split| {
            let babies: BTreeSet<usize> = ds.iter().map(|&d| sp.of(d).0).filter(|&b| b != 0).collect();
            let giants: BTreeSet<usize> = ds.iter().map(|&d| sp.of(d).1).filter(|&k| k != 0).collect();
            babies.len() + giants.len()
        };
        // Already at the baby-step giant-step optimum (≈ 2√n rotations for n diagonals): the
        // dense maps (projections, FFN) that dominate compile time skip the search.
        let floor = 2 * (ds.len() as f64).sqrt().ceil() as usize + 1;
        let pow2_cost = cost(&pow2);
        if ds.len() < 8 || pow2_cost <= floor {
            return pow2;
        }
        let v: Vec<usize> = ds.iter().copied().collect();
        let mut diffs: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, &a) in v.iter().enumerate() {
            for &c in v.iter().skip(i + 1).take(8) {
                *diffs.entry(c - a).or_default() += 1;
                *diffs.entry(slots - (c - a)).or_default() += 1;
            }
        }
        let mut best = (pow2_cost, pow2);
        let mut cands: Vec<(usize, usize)> = diffs.into_iter().map(|(d, n)| (n, d)).collect();
        cands.sort_unstable_by(|a, b| b.cmp(a));
        for &(_, g) in cands.iter().take(4) {
            if g == 0 || g >= slots {
                continue;
            }
            let mut walk = BTreeMap::new();
            for &d in ds {
                let mut k = 0usize;
                let mut base = d;
                while k < slots {
                    let prev = (base + slots - g) % slots;
                    if !ds.contains(&prev) || prev == d {
                        break;
                    }
                    base = prev;
                    k += 1;
                }
                walk.insert(d, (base, k));
            }
            let sp = Split { step: g, walk: Some(walk) };
            let c = cost(&sp);
            // Clearly fewer rotations only: a new step may need a key or a chain of them.
            if 4 * c < 3 * best.0 {
                best = (c, sp);
            }
        }
        best.1
    }
}

fn choose_baby(ds: &BTreeSet<usize>, slots: usize) -> usize {
    let cost = |b: usize| {
        let babies: BTreeSet<usize> = ds.iter().map(|d| d % b).filter(|&x| x != 0).collect();
        let giants: BTreeSet<usize> = ds.iter().map(|d| d / b).filter(|&x| x != 0).collect();
        babies.len() + giants.len()
    };
    // Powers of two only: giant steps are then multiples of the baby size, so maps share rotation
    // steps and the Galois key set stays small (keys dominate memory), at a few extra rotations.
    let mut cands: BTreeSet<usize> = BTreeSet::new();
    let mut p = 1;
    while p <= slots {
        cands.insert(p);
        p *= 2;
    }
    cands.into_iter().min_by_key(|&b| (cost(b), b)).unwrap_or(1)
}

/// Lowers an affine map; `inputs[i]` are the ciphertexts of operand `i`, `in_numel[i]` its size.
pub(crate) fn lower_affine(
    b: &mut Builder,
    slots: usize,
    inputs: &[Vec<Reg>],
    in_numel: &[usize],
    map: &AffineMap,
    stats: &mut LinearStats,
) -> Result<Vec<Reg>, BackendError> {
    if map.is_identity(in_numel) {
        return Ok(inputs.first().cloned().unwrap_or_default());
    }
    if let (Some(w), [regs]) = (map.uniform_scale(in_numel), inputs) {
        // `w·x + offset` slot-wise: free for integer `w` (e.g. a bias add after a finished map).
        let mut out = Vec::with_capacity(regs.len());
        for (k, &x) in regs.iter().enumerate() {
            let y = b.mul_scalar(x, w)?;
            let y = match &map.offset {
                Some(off) => {
                    let lo = k * slots;
                    let v: Vec<f64> =
                        (lo..(lo + slots).min(map.out_numel)).map(|j| off.get(j).copied().unwrap_or(0.0)).collect();
                    b.add_plain(y, v)
                }
                None => y,
            };
            out.push(y);
        }
        return Ok(out);
    }
    stats.maps += 1;
    // Operands at the bootstrapping floor are refreshed before their rotations (not each rotated copy).
    let inputs: Vec<Vec<Reg>> = inputs
        .iter()
        .map(|regs| regs.iter().map(|&r| b.ensure(r)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<_, _>>()?;
    let inputs = inputs.as_slice();
    // Common level for every operand ciphertext.
    let lmin = inputs
        .iter()
        .flatten()
        .map(|&r| b.level(r))
        .min()
        .ok_or(BackendError::Internal("affine map without encrypted operand".into()))?;
    let mut xs: Vec<Vec<Reg>> = Vec::new();
    for regs in inputs {
        xs.push(regs.iter().map(|&r| b.adjust(r, lmin)).collect::<Result<_, _>>()?);
    }
    let out_cts = map.out_numel.div_ceil(slots).max(1);
    // blocks[o][(input, in_ct)][d] = the diagonal's entries, sorted by slot. Entries are
    // bucketed by block, then by offset (linear in the entries: maps hold millions of them; one
    // global sort dominated compile time), and each diagonal is sorted on its own.
    let mut buckets: BlockTable<Vec<Diagonal>> = BlockTable::default();
    for (i, part) in map.parts.iter().enumerate() {
        for &(o, e, w) in part {
            if w == 0.0 {
                continue;
            }
            let (oc, os) = (o / slots, o % slots);
            let (ic, is) = (e / slots, e % slots);
            if oc >= out_cts {
                return Err(BackendError::Internal("output element outside the map".into()));
            }
            let d = (is + slots - os) % slots;
            if let Some(diag) = buckets.entry((oc, i, ic), || vec![Vec::new(); slots]).get_mut(d) {
                diag.push((os, w));
            }
        }
    }
    let mut blocks: Vec<Blocks> = vec![BTreeMap::new(); out_cts];
    for ((oc, i, ic), by_d) in buckets.items {
        let Some(bl) = blocks.get_mut(oc) else { continue };
        let diags = bl.entry((i, ic)).or_default();
        for (d, mut entries) in by_d.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            if !entries.windows(2).all(|w| w[0].0 <= w[1].0) {
                entries.sort_unstable_by_key(|e| e.0);
            }
            diags.insert(d, entries);
        }
    }
    let mut out = Vec::with_capacity(out_cts);
    for (oc, bl) in blocks.into_iter().enumerate() {
        let mut acc: Option<Reg> = None;
        for ((i, ic), diags) in bl {
            let x = *xs
                .get(i)
                .and_then(|v| v.get(ic))
                .ok_or(BackendError::Internal("map reads a missing ciphertext".into()))?;
            let ds: BTreeSet<usize> = diags.keys().copied().collect();
            stats.diagonals += ds.len();
            stats.naive_rotations += ds.iter().filter(|&&d| d != 0).count();
            let split = Split::choose(&ds, slots);
            let babies: BTreeSet<usize> = ds.iter().map(|&d| split.of(d).0).collect();
            let mut rot: BTreeMap<usize, Reg> = BTreeMap::new();
            for &bb in &babies {
                let r = if bb == 0 { x } else { b.rotate(x, bb as i64) };
                if bb != 0 {
                    stats.rotations += 1;
                }
                rot.insert(bb, r);
            }
            let mut giants: BTreeMap<usize, Vec<(usize, &Diagonal)>> = BTreeMap::new();
            for (&d, diag) in &diags {
                let (bb, k) = split.of(d);
                giants.entry(k).or_default().push((bb, diag));
            }
            let bs = split.step;
            // Giant steps by Horner's rule, highest first: `acc = rot(acc, (g − g')·bs) + inner_g'`,
            // so a map whose giants are consecutive multiples of `bs` rotates by `bs` alone (one
            // Galois key for all of them) instead of by every `g·bs`; as many rotations as before,
            // and the key set — hence the chains of key rotations a budget imposes — shrinks.
            let mut horner: Option<(Reg, usize)> = None;
            for (gi, terms) in giants.into_iter().rev() {
                let shift = (gi * bs) % slots;
                let mut inner: Option<Reg> = None;
                for (bb, diag) in terms {
                    // rot(diag, −shift)[j] = diag[j − shift]
                    let v = rotated_diagonal(diag, shift % slots, slots);
                    let src = *rot.get(&bb).ok_or(BackendError::Internal("missing baby step".into()))?;
                    let p = b.mul_plain_raw(src, v)?;
                    inner = Some(match inner {
                        Some(a) => b.add_raw(a, p),
                        None => p,
                    });
                }
                let Some(inner) = inner else { continue };
                horner = Some(match horner {
                    None => (inner, gi),
                    Some((h, g)) => {
                        let r = b.rotate(h, (((g - gi) * bs) % slots) as i64);
                        stats.rotations += 1;
                        (b.add_raw(r, inner), gi)
                    }
                });
            }
            if let Some((mut h, g)) = horner {
                if g != 0 {
                    h = b.rotate(h, ((g * bs) % slots) as i64);
                    stats.rotations += 1;
                }
                acc = Some(match acc {
                    Some(a) => b.add_raw(a, h),
                    None => h,
                });
            }
        }
        let y = match acc {
            Some(a) => b.rescale(a)?,
            None => {
                // An all-zero block: a zero ciphertext at the common level (x · 0).
                let x = *xs.iter().flatten().next().ok_or(BackendError::Internal("no operand".into()))?;
                b.mul_scalar(x, 0.0)?
            }
        };
        let y = match &map.offset {
            Some(off) => {
                let lo = oc * slots;
                let v: Vec<f64> =
                    (lo..(lo + slots).min(map.out_numel)).map(|k| off.get(k).copied().unwrap_or(0.0)).collect();
                b.add_plain(y, v)
            }
            None => y,
        };
        out.push(y);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dense matrix (`out × in`) and offset of a single-operand map.
    fn dense(m: &AffineMap, in_numel: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut a = vec![vec![0.0; in_numel]; m.out_numel];
        for &(o, i, w) in m.parts.iter().flatten() {
            a[o][i] += w;
        }
        (a, m.offset.clone().unwrap_or_else(|| vec![0.0; m.out_numel]))
    }

    #[test]
    fn composition_is_the_matrix_product_with_offsets() {
        // inner: 3 → 4 with a duplicate entry and an offset; outer: 4 → 2, whose row 1 cancels to
        // zero at input 0 (1·2 − 1·(1 + 1)), which must leave no entry.
        let inner = AffineMap {
            out_numel: 4,
            parts: vec![vec![(0, 0, 1.0), (0, 0, 1.0), (1, 0, 2.0), (1, 2, 1.0), (2, 1, -1.0), (3, 2, 3.0)]],
            offset: Some(vec![1.0, 0.0, 2.0, 0.0]),
        };
        let outer = AffineMap {
            out_numel: 2,
            parts: vec![vec![(0, 0, 1.0), (0, 3, 1.0), (1, 1, 1.0), (1, 0, -1.0), (1, 2, 2.0)]],
            offset: Some(vec![0.5, 0.0]),
        };
        let c = outer.compose_after(&inner);
        let ((a1, o1), (a2, o2), (ac, oc)) = (dense(&inner, 3), dense(&outer, 4), dense(&c, 3));
        for p in 0..2 {
            for i in 0..3 {
                let want: f64 = (0..4).map(|o| a2[p][o] * a1[o][i]).sum();
                assert!((ac[p][i] - want).abs() < 1e-12, "[{p}][{i}]: {} vs {want}", ac[p][i]);
            }
            let want: f64 = o2[p] + (0..4).map(|o| a2[p][o] * o1[o]).sum::<f64>();
            assert!((oc[p] - want).abs() < 1e-12);
        }
        assert!(c.parts[0].iter().all(|e| e.2 != 0.0), "{:?}", c.parts[0]);
        assert!(!c.parts[0].iter().any(|e| e.0 == 1 && e.1 == 0), "cancelled entry kept: {:?}", c.parts[0]);
    }

    #[test]
    fn rotated_diagonals_wrap_and_sum_repeats() {
        // slots 8, entries at 1, 5, 5, 6 shifted by 4: 5, 1 (wrapped), 1, 2.
        let v = rotated_diagonal(&[(1, 1.0), (5, 2.0), (5, 0.5), (6, 3.0)], 4, 8);
        assert_eq!(v.to_dense(), vec![0.0, 2.5, 3.0, 0.0, 0.0, 1.0]);
        assert_eq!(rotated_diagonal(&[], 3, 8).len(), 0);
    }

    #[test]
    fn slot_wise_and_identity_checks_ignore_entry_order() {
        let m = AffineMap { out_numel: 3, parts: vec![vec![(2, 2, 1.0), (0, 0, 1.0), (1, 1, 1.0)]], offset: None };
        assert!(m.is_identity(&[3]) && m.is_slotwise());
        let m = AffineMap { out_numel: 3, parts: vec![vec![(2, 2, 2.0), (0, 0, 2.0), (0, 0, 2.0)]], offset: None };
        assert!(!m.is_identity(&[3]) && m.uniform_scale(&[3]).is_none(), "a repeated slot is not a cover");
        let m = AffineMap { out_numel: 2, parts: vec![vec![(1, 1, 3.0), (0, 0, 3.0)]], offset: None };
        assert_eq!(m.uniform_scale(&[2]), Some(3.0));
        let placed = |m: &AffineMap| m.placed_diagonal_count_up_to(&|e| e, &|o| (o * 3) % 4, 4, usize::MAX);
        let m = AffineMap::identity(4);
        // out position 3k mod 4 against input k: offsets k − 3k = −2k mod 4 ∈ {0, 2}.
        assert_eq!(placed(&m), 2);
    }
}
