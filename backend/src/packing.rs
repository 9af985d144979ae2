//! Client-side packing of encrypted program inputs: the client lays a tensor out in the slots
//! (pure data movement, before encryption) so that the maps reading it have few diagonals.
//!
//! Why: the diagonal method costs one plaintext multiply-accumulate per nonzero diagonal
//! `d = in_slot − out_slot`, and a map from the row-major layout of an input can scatter one
//! output row's inputs over many offsets. The ViT's patch embedding (a Conv with stride = kernel
//! on `[3, 16, 16]` pixels, then reshape/transpose to `[tokens, hidden]`) reads each token row's
//! 48 pixels from 12 runs of 4 spread across the image: 871 diagonals per map, and five maps read
//! the pixels (LayerNorm's sum, mean and square). The client owns the data, so moving it reveals
//! nothing; after packing, the server's program is the same affine map on a different slot order.
//!
//! Why a layout and not a client-side im2col: the server's map after an im2col `[patches, 48]`
//! still goes from rows of stride 48 (64 when padded to a power of two) to output rows of stride
//! 32 (the hidden size), so its offsets `s·p + f − o − 32` drift with the patch index `p`: 319
//! diagonals (559 padded) against 110 for rows lined up with the *output's* stride, which splits
//! a token's 48 features into chunks of 32 — a slot layout, not a tensor shape. Choosing it from
//! the maps themselves ([`choose`]) also makes it independent of convolutions.
//!
//! Contract: an [`InputPacking`] of a tensor of `n` elements is a gather `packed[s] =
//! x[gather[s]]` (zero where `None`) that places every element exactly once; the program input
//! is `packed`, row-major over `ceil(len / slots)` ciphertexts, never more ciphertexts than `x`
//! row-major, and `len ≠ n`, so raw data handed to the program without `program_inputs` is
//! refused (a size mismatch) instead of silently misread. The lowering starts from the pending map `unpack` (element `i` ← slot `pos[i]`),
//! so every consumer sees the row-major tensor and composes its own map with it.
//!
//! Layouts considered, for a map read from the input and every split of its output shape into
//! `rows × w` (`w` a product of trailing dims), where output element `o = r·w + c`:
//! - row-aligned: every input element feeds one row `r`; the `j`-th element of row `r` (in
//!   input order) goes to slot `⌊j/w⌋·m + r·w + j mod w` (`m` = output size): each chunk of `w`
//!   elements lines up with its output row, so a dense row costs `2w − 1` diagonals per chunk
//!   whatever the row index (patch embedding: 110 instead of 871);
//! - column-aligned: every input element feeds one column `c`; the `j`-th element of column `c`
//!   goes to slot `j·w + c` (diagonals are multiples of `w`).
//!
//! Elements no map reads follow the packed ones. The layout with the fewest diagonals summed over
//! every map read from the input in a first lowering is kept when it has fewer than row-major;
//! `lower` then lowers again with it and keeps the result only if it is no worse in both
//! diagonals and rotations (`lower.rs`).

use std::collections::{BTreeMap, BTreeSet};

use crate::linear::AffineMap;

/// How the client packs one encrypted program input before encryption (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPacking {
    /// `packed[s] = x[gather[s]]`, zero where `None`; `x` row-major.
    pub gather: Vec<Option<usize>>,
}

impl InputPacking {
    /// The packed tensor of a row-major `x` (`None` when `x` has another size than the packing
    /// places).
    pub fn pack(&self, x: &[f64]) -> Option<Vec<f64>> {
        let placed = self.gather.iter().flatten().count();
        if placed != x.len() {
            return None;
        }
        self.gather.iter().map(|g| g.map_or(Some(0.0), |i| x.get(i).copied())).collect()
    }

    /// Slot of every element (`pos[i]`).
    pub(crate) fn positions(&self, n: usize) -> Vec<usize> {
        let mut pos = vec![0; n];
        for (s, g) in self.gather.iter().enumerate() {
            if let Some(p) = g.and_then(|i| pos.get_mut(i)) {
                *p = s;
            }
        }
        pos
    }

    /// The pending map from the packed slots back to the row-major tensor of `n` elements.
    pub(crate) fn unpack_map(&self, n: usize) -> AffineMap {
        let pos = self.positions(n);
        AffineMap {
            out_numel: n,
            parts: vec![pos.iter().enumerate().map(|(i, &s)| (i, s, 1.0)).collect::<Vec<_>>().into()],
            offset: None,
        }
    }
}

/// A map the first lowering emitted straight from an input's row-major ciphertexts.
#[derive(Debug, Clone)]
pub(crate) struct InputRead {
    /// `(out element, input element, weight)` of the input's part of the map.
    pub entries: Vec<(usize, usize, f64)>,
    pub out_shape: Vec<usize>,
}

/// Diagonals of `read` when input element `i` sits in slot `pos(i)`.
fn diagonals(read: &InputRead, slots: usize, pos: impl Fn(usize) -> usize) -> usize {
    let set: BTreeSet<(usize, usize, usize)> = read
        .entries
        .iter()
        .map(|&(o, i, _)| {
            let s = pos(i);
            (o / slots, s / slots, (s % slots + slots - o % slots) % slots)
        })
        .collect();
    set.len()
}

/// The packing of an input of `n` elements with the fewest diagonals over `reads`, if it has
/// fewer than the row-major layout (see the module doc); also returns (row-major, packed) counts.
pub(crate) fn choose(n: usize, slots: usize, reads: &[InputRead]) -> Option<(InputPacking, usize, usize)> {
    if reads.is_empty() || n == 0 || slots == 0 {
        return None;
    }
    let max_len = n.div_ceil(slots) * slots;
    let mut cands: Vec<InputPacking> = Vec::new();
    for read in reads {
        let m: usize = read.out_shape.iter().product();
        let mut widths = BTreeSet::new();
        let mut w = 1;
        for &d in read.out_shape.iter().rev() {
            w *= d;
            if w > 1 && w < m {
                widths.insert(w);
            }
        }
        for &w in &widths {
            for p in [row_aligned(n, m, w, read, max_len), column_aligned(n, w, read, max_len)].into_iter().flatten() {
                if !cands.contains(&p) {
                    cands.push(p);
                }
            }
        }
    }
    let base: usize = reads.iter().map(|r| diagonals(r, slots, |i| i)).sum();
    cands
        .into_iter()
        .map(|p| {
            let pos = p.positions(n);
            let d: usize = reads.iter().map(|r| diagonals(r, slots, |i| pos.get(i).copied().unwrap_or(0))).sum();
            (p, d)
        })
        .filter(|(_, d)| *d < base)
        .min_by_key(|(p, d)| (*d, p.gather.len()))
        .map(|(p, d)| (p, base, d))
}

/// Input elements grouped by the one output row (`key = o / w`) or column (`key = o % w`) they
/// feed, in input order; `None` when some element feeds two.
fn groups(read: &InputRead, n: usize, key: impl Fn(usize) -> usize) -> Option<BTreeMap<usize, Vec<usize>>> {
    let mut of: Vec<Option<usize>> = vec![None; n];
    for &(o, i, w) in &read.entries {
        if w == 0.0 {
            continue;
        }
        let k = key(o);
        match of.get_mut(i)? {
            Some(prev) if *prev != k => return None,
            slot => *slot = Some(k),
        }
    }
    let mut g: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, k) in of.iter().enumerate() {
        if let Some(k) = k {
            g.entry(*k).or_default().push(i);
        }
    }
    Some(g)
}

/// Places the elements `placed` gives slots for, then the others in order after `end`.
fn finish(n: usize, mut slot: Vec<Option<usize>>, end: usize, max_len: usize) -> Option<InputPacking> {
    for (next, s) in (end..).zip(slot.iter_mut().filter(|s| s.is_none())) {
        *s = Some(next);
    }
    let mut len = slot.iter().flatten().max().map_or(0, |m| m + 1);
    // A packed tensor of the raw size would be read as the raw tensor by a caller that skips
    // `program_inputs`: one zero slot more makes `encrypt_inputs` refuse it instead.
    if len == n {
        len += 1;
    }
    if len > max_len || slot.len() != n {
        return None;
    }
    let mut gather = vec![None; len];
    for (i, s) in slot.iter().enumerate() {
        let g = gather.get_mut((*s)?)?;
        if g.is_some() {
            return None;
        }
        *g = Some(i);
    }
    Some(InputPacking { gather })
}

fn row_aligned(n: usize, m: usize, w: usize, read: &InputRead, max_len: usize) -> Option<InputPacking> {
    let g = groups(read, n, |o| o / w)?;
    let chunks = g.values().map(|v| v.len().div_ceil(w)).max()?;
    let mut slot = vec![None; n];
    for (&r, elems) in &g {
        for (j, &i) in elems.iter().enumerate() {
            *slot.get_mut(i)? = Some((j / w) * m + r * w + j % w);
        }
    }
    finish(n, slot, chunks * m, max_len)
}

fn column_aligned(n: usize, w: usize, read: &InputRead, max_len: usize) -> Option<InputPacking> {
    let g = groups(read, n, |o| o % w)?;
    let depth = g.values().map(|v| v.len()).max()?;
    let mut slot = vec![None; n];
    for (&c, elems) in &g {
        for (j, &i) in elems.iter().enumerate() {
            *slot.get_mut(i)? = Some(j * w + c);
        }
    }
    finish(n, slot, depth * w, max_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A patch embedding: 4 patches of 2×2 pixels of a 4×4 image (16 pixels), 3 output features
    /// per patch, out `[patch, feature]` row-major.
    fn patch_read() -> InputRead {
        let mut entries = Vec::new();
        for ph in 0..2 {
            for pw in 0..2 {
                let p = ph * 2 + pw;
                for o in 0..3 {
                    for kh in 0..2 {
                        for kw in 0..2 {
                            let i = (ph * 2 + kh) * 4 + pw * 2 + kw;
                            entries.push((p * 3 + o, i, 1.0 + (o + kh + kw) as f64));
                        }
                    }
                }
            }
        }
        InputRead { entries, out_shape: vec![4, 3] }
    }

    #[test]
    fn patch_embedding_packs_rows_in_chunks_of_the_row_width() {
        let read = patch_read();
        let (p, before, after) = choose(16, 64, std::slice::from_ref(&read)).unwrap();
        assert!(after < before, "{after} vs {before}");
        // 4 features per patch, rows of 3: two chunks of 3 and 1 at offsets 0 and 12.
        let pos = p.positions(16);
        assert_eq!(pos[0], 0); // patch 0, pixel (0,0)
        assert_eq!(pos[2], 3); // patch 1, its first pixel starts row 1
        assert_eq!(pos[5], 12); // patch 0's fourth pixel: chunk 1

        // every element placed exactly once, and `pack` puts it there
        let mut slots: Vec<usize> = pos.clone();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 16);
        let packed = p.pack(&(0..16).map(|i| i as f64 + 1.0).collect::<Vec<_>>()).unwrap();
        assert!(pos.iter().enumerate().all(|(i, &s)| packed[s] == i as f64 + 1.0));
    }

    #[test]
    fn a_map_already_aligned_keeps_row_major() {
        // y = 2·x elementwise: one diagonal already.
        let read = InputRead { entries: (0..8).map(|i| (i, i, 2.0)).collect(), out_shape: vec![2, 4] };
        assert_eq!(choose(8, 16, &[read]), None);
    }

    #[test]
    fn pack_refuses_a_tensor_of_another_size() {
        let p = InputPacking { gather: vec![Some(1), None, Some(0)] };
        assert_eq!(p.pack(&[5.0, 6.0]), Some(vec![6.0, 0.0, 5.0]));
        assert_eq!(p.pack(&[5.0]), None);
    }
}
