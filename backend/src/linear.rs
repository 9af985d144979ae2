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
//!
//! Maps are stored as single entries and [`Run`]s (one weight along a walk of entries): a plaintext
//! matmul `[T, H] × [H, J]` is `H·J` runs over the tokens instead of `T·H·J` entries, and in a
//! layout that puts the tokens in consecutive slots each run stays one constant segment of one
//! diagonal through placement, composition with data movement and the diagonal method, so those
//! costs grow with the weights, not with weights × tokens (BERT-base's FFN: 2.4M runs for 302M
//! entries).

use std::collections::{BTreeMap, BTreeSet};

use polyhe_runtime::{Reg, SlotVector};

use crate::layout::Layout;
use crate::levels::Builder;
use crate::BackendError;

/// `len` entries `(o + k·so, e + k·se, w)`, `k < len`: one weight along a walk of output and
/// input elements (or, once placed, positions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    pub o: usize,
    pub e: usize,
    pub so: usize,
    pub se: usize,
    pub len: usize,
    pub w: f64,
}

impl Run {
    fn entries(self) -> impl Iterator<Item = (usize, usize, f64)> {
        (0..self.len).map(move |k| (self.o + k * self.so, self.e + k * self.se, self.w))
    }

    /// The run moved to positions (output by `out`, input by `input`, or its elements as they
    /// are), as the longest pieces along which both layouts advance by one stride each: `f` gets
    /// each piece, in order, until it returns `true` (then so does this).
    fn placed_pieces(&self, input: Option<&Layout>, out: &Layout, mut f: impl FnMut(Run) -> bool) -> bool {
        let pos_in = |e: usize| input.map_or(e, |l| l.position(e));
        let (mut o, mut e, mut left) = (self.o, self.e, self.len);
        while left > 0 {
            let (so, n_o) = out.stride_along(o, self.so, left);
            let (se, n_e) = match input {
                Some(l) => l.stride_along(e, self.se, left),
                None => (self.se, left),
            };
            let n = n_o.min(n_e).max(1);
            if f(Run { o: out.position(o), e: pos_in(e), so, se, len: n, w: self.w }) {
                return true;
            }
            o += n * self.so;
            e += n * self.se;
            left -= n;
        }
        false
    }
}

/// One operand's part of a map: single `(out, in, weight)` entries and runs of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Part {
    pub entries: Vec<(usize, usize, f64)>,
    pub runs: Vec<Run>,
}

impl From<Vec<(usize, usize, f64)>> for Part {
    fn from(entries: Vec<(usize, usize, f64)>) -> Part {
        Part { entries, runs: Vec::new() }
    }
}

impl Part {
    /// `entries` in the order given, consecutive ones merged into a run wherever they continue
    /// one (positive) stride with one weight: maps built by loops along a token axis store one
    /// run per loop instead of one entry per token.
    pub fn compressed(entries: impl IntoIterator<Item = (usize, usize, f64)>) -> Part {
        let mut part = Part::default();
        let mut cur: Option<Run> = None;
        let flush = |part: &mut Part, r: Run| {
            if r.len == 1 {
                part.entries.push((r.o, r.e, r.w));
            } else {
                part.runs.push(r);
            }
        };
        for (o, e, w) in entries {
            if let Some(r) = cur.as_mut() {
                if w == r.w {
                    if r.len == 1 && o > r.o && e > r.e {
                        (r.so, r.se, r.len) = (o - r.o, e - r.e, 2);
                        continue;
                    }
                    if r.len >= 2 && o == r.o + r.len * r.so && e == r.e + r.len * r.se {
                        r.len += 1;
                        continue;
                    }
                }
            }
            if let Some(r) = cur.replace(Run { o, e, so: 0, se: 0, len: 1, w }) {
                flush(&mut part, r);
            }
        }
        if let Some(r) = cur {
            flush(&mut part, r);
        }
        part
    }

    /// Every entry, runs expanded (singles first).
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        self.entries.iter().copied().chain(self.runs.iter().flat_map(|r| r.entries()))
    }

    /// Number of entries, runs expanded.
    pub fn nnz(&self) -> usize {
        self.entries.len() + self.runs.iter().map(|r| r.len).sum::<usize>()
    }

    /// Whether every entry is `(k, k, ·)`.
    fn is_diagonal(&self) -> bool {
        self.entries.iter().all(|&(o, i, _)| o == i) && self.runs.iter().all(|r| r.o == r.e && r.so == r.se)
    }

    /// `(o, e, w)` moved to positions: output element `o` at `out.position(o)`, input `e` at
    /// `input.position(e)` (`None`: the input's elements are its positions). A run stays a run
    /// over the longest stretches along which both layouts advance by one stride.
    pub fn placed(&self, input: Option<&Layout>, out: &Layout) -> Part {
        let pos_in = |e: usize| input.map_or(e, |l| l.position(e));
        let mut placed = Part {
            entries: self.entries.iter().map(|&(o, e, w)| (out.position(o), pos_in(e), w)).collect(),
            runs: Vec::with_capacity(self.runs.len()),
        };
        for r in &self.runs {
            r.placed_pieces(input, out, |p| {
                if p.len == 1 {
                    placed.entries.push((p.o, p.e, p.w));
                } else {
                    placed.runs.push(p);
                }
                false
            });
        }
        placed
    }
}

/// `y = Σ_i M_i x_i + offset` over flattened tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AffineMap {
    pub out_numel: usize,
    /// Per encrypted operand: its entries (output element, input element, weight).
    pub parts: Vec<Part>,
    pub offset: Option<Vec<f64>>,
}

impl AffineMap {
    /// `self + w·other` for maps of the same operands and output (entries at the same position
    /// sum when the diagonals are built).
    pub fn plus_scaled(mut self, other: AffineMap, w: f64) -> AffineMap {
        debug_assert_eq!(self.out_numel, other.out_numel);
        debug_assert_eq!(self.parts.len(), other.parts.len());
        for (mine, theirs) in self.parts.iter_mut().zip(other.parts) {
            mine.entries.extend(theirs.entries.into_iter().map(|(o, e, x)| (o, e, w * x)));
            mine.runs.extend(theirs.runs.into_iter().map(|r| Run { w: w * r.w, ..r }));
        }
        self.offset = match (self.offset, other.offset) {
            (None, None) => None,
            (a, b) => {
                let n = self.out_numel;
                let (a, b) = (a.unwrap_or_else(|| vec![0.0; n]), b.unwrap_or_else(|| vec![0.0; n]));
                Some(a.iter().zip(&b).map(|(x, y)| x + w * y).collect())
            }
        };
        self
    }

    /// `self ∘ inner` for single-operand maps: `M₂(M₁x + o₁) + o₂ = (M₂M₁)x + (M₂o₁ + o₂)`;
    /// `None` when the product would exceed the size bound (the caller emits `inner` first).
    /// When `self` reads every element at most once with one entry per row (a slot-wise factor,
    /// a bias, a transpose or reshape), the composition relabels `inner`'s rows and keeps its runs;
    /// otherwise it goes row by row (Gustavson's sparse product): each output row accumulates into a
    /// dense scratch row over the inner map's inputs, so the cost is the number of multiply-adds,
    /// with no ordered map over millions of entries.
    pub fn compose_after(&self, inner: &AffineMap) -> Option<AffineMap> {
        if let Some(m) = self.relabel(inner).or_else(|| self.relabel_inputs(inner)) {
            return Some(m);
        }
        let inner_nnz: usize = inner.parts.iter().map(Part::nnz).sum();
        if inner_nnz > crate::affine_ops::MAX_MAP_ENTRIES {
            return None;
        }
        let rows = by_row(inner.parts.iter().flat_map(Part::iter), inner.out_numel);
        // The multiply-adds, counted before any is done: a product far larger than both maps
        // (a row sum composed with its broadcast at BERT-base scale: 75M entries from two maps
        // of 98k) is refused unless small, and the caller emits `inner` first.
        let products: usize = self
            .parts
            .iter()
            .flat_map(Part::iter)
            .map(|(_, o, _)| rows.get(o).map_or(0, Vec::len))
            .fold(0usize, usize::saturating_add);
        let n_outer = self.parts.iter().map(Part::nnz).sum::<usize>();
        if products > MAX_GROWN_PRODUCTS && products > 8 * (n_outer + inner_nnz) {
            return None;
        }
        let outer = by_row(self.parts.iter().flat_map(Part::iter), self.out_numel);
        let in_numel = inner.parts.iter().flat_map(Part::iter).map(|e| e.1 + 1).max().unwrap_or(0);
        let mut scratch = vec![0.0f64; in_numel];
        let mut mark = vec![false; in_numel];
        let mut touched: Vec<usize> = Vec::new();
        // A composition has at least as many entries as the larger of the two maps in the common
        // cases (a slot-wise factor, a data movement): reserved once, not grown by copies.
        let mut entries = Vec::with_capacity(n_outer.max(inner_nnz));
        let mut offset = self.offset.clone().unwrap_or_else(|| vec![0.0; self.out_numel]);
        let mut products = 0usize;
        for (p, row) in outer.iter().enumerate() {
            for &(o, w2) in row {
                let inner_row = rows.get(o).map(|r| r.as_slice()).unwrap_or(&[]);
                products += inner_row.len();
                if products > crate::affine_ops::MAX_MAP_ENTRIES {
                    return None;
                }
                for &(i, w1) in inner_row {
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
        Some(AffineMap { out_numel: self.out_numel, parts: vec![entries.into()], offset })
    }

    /// `self ∘ inner` when `self` has at most one entry per output row and reads each of
    /// `inner`'s outputs at most once: row `o` of `inner` becomes row `p` scaled by `w`, and a
    /// run stays a run wherever its rows move by one stride with one weight (`None` otherwise).
    fn relabel(&self, inner: &AffineMap) -> Option<AffineMap> {
        let ([outer], [part]) = (self.parts.as_slice(), inner.parts.as_slice()) else { return None };
        if outer.nnz() > self.out_numel {
            return None;
        }
        let target = injective_rows(outer, self.out_numel, inner.out_numel)?;
        let mut stretches = Stretches::new(&target);
        let mut out = Part::default();
        for &(o, e, w) in &part.entries {
            if let Some(Some((p, w2))) = target.get(o) {
                if w * w2 != 0.0 {
                    out.entries.push((*p, e, w * w2));
                }
            }
        }
        for r in &part.runs {
            let mut k = 0;
            while k < r.len {
                let (o, e) = (r.o + k * r.so, r.e + k * r.se);
                let Some(Some((p0, w0))) = target.get(o).copied() else {
                    k += 1;
                    continue;
                };
                let (n, sp) = stretches.at(o, r.so, r.len - k);
                push_run(&mut out, Run { o: p0, e, so: sp, se: r.se, len: n, w: r.w * w0 });
                k += n;
            }
        }
        let mut offset = self.offset.clone().unwrap_or_else(|| vec![0.0; self.out_numel]);
        if let Some(o1) = &inner.offset {
            for (o, x) in o1.iter().enumerate() {
                if let (Some(Some((p, w))), true) = (target.get(o), *x != 0.0) {
                    if let Some(t) = offset.get_mut(*p) {
                        *t += w * x;
                    }
                }
            }
        }
        let offset = if offset.iter().any(|x| *x != 0.0) { Some(offset) } else { None };
        Some(AffineMap { out_numel: self.out_numel, parts: vec![out], offset })
    }

    /// `self ∘ inner` when `inner` moves data: at most one entry per row, each input read at
    /// most once (a transpose, a head merge, the placement of a rotated product): `self`'s
    /// entry `(p, o, w)` becomes `(p, e, w·w₁)` for `inner`'s `(o, e, w₁)`, and a run stays a run
    /// wherever its inputs move by one stride with one weight.
    fn relabel_inputs(&self, inner: &AffineMap) -> Option<AffineMap> {
        let ([outer], [part]) = (self.parts.as_slice(), inner.parts.as_slice()) else { return None };
        if part.nnz() > inner.out_numel {
            return None;
        }
        let in_numel = part.iter().map(|e| e.1 + 1).max().unwrap_or(0);
        let swapped: Vec<(usize, usize, f64)> = part.iter().map(|(o, e, w)| (e, o, w)).collect();
        // One entry per inner row, each input once: read backwards, the inner map is injective
        // too, and its `target` is the source of each row (`source[o] = (e, w₁)`).
        let source = injective_rows(&Part::from(swapped), in_numel, inner.out_numel)?;
        let mut stretches = Stretches::new(&source);
        let mut out = Part::default();
        for &(p, o, w) in &outer.entries {
            if let Some(Some((e, w1))) = source.get(o) {
                if w * w1 != 0.0 {
                    out.entries.push((p, *e, w * w1));
                }
            }
        }
        for r in &outer.runs {
            let mut k = 0;
            while k < r.len {
                let (p, o) = (r.o + k * r.so, r.e + k * r.se);
                let Some(Some((e0, w0))) = source.get(o).copied() else {
                    k += 1;
                    continue;
                };
                let (n, se) = stretches.at(o, r.se, r.len - k);
                push_run(&mut out, Run { o: p, e: e0, so: r.so, se, len: n, w: r.w * w0 });
                k += n;
            }
        }
        let mut offset = self.offset.clone().unwrap_or_else(|| vec![0.0; self.out_numel]);
        if let Some(o1) = &inner.offset {
            for (p, o, w) in outer.iter() {
                if let (Some(x), Some(t)) = (o1.get(o), offset.get_mut(p)) {
                    *t += w * x;
                }
            }
        }
        let offset = if offset.iter().any(|x| *x != 0.0) { Some(offset) } else { None };
        Some(AffineMap { out_numel: self.out_numel, parts: vec![out], offset })
    }

    /// Number of nonzero diagonals over all (output ciphertext, input ciphertext) blocks, with
    /// the operands' elements placed by `input` and the output's by `out` (a single-operand map in
    /// the layouts it will be lowered in), counted only up to `limit` (the return value is then
    /// `limit + 1`): comparing placements needs no more than that.
    pub fn placed_diagonal_count_up_to(&self, input: &Layout, out: &Layout, slots: usize, limit: usize) -> usize {
        let slots = slots.max(1);
        // One bitset of diagonal offsets per (operand, output ciphertext, input ciphertext)
        // block: linear in the entries (sorting millions of keys dominated compile time).
        let mut bitsets: BlockTable<Vec<u64>> = BlockTable::default();
        let mut count = 0usize;
        let mut mark = |k: usize, o: usize, e: usize| -> bool {
            let d = (e % slots + slots - o % slots) % slots;
            let bits = bitsets.entry((k, o / slots, e / slots), || vec![0u64; slots.div_ceil(64)]);
            if let Some(word) = bits.get_mut(d / 64) {
                let bit = 1u64 << (d % 64);
                if *word & bit == 0 {
                    *word |= bit;
                    count += 1;
                    return count > limit;
                }
            }
            false
        };
        for (k, part) in self.parts.iter().enumerate() {
            for &(o, e, _) in &part.entries {
                if mark(k, out.position(o), input.position(e)) {
                    return limit + 1;
                }
            }
            for r in &part.runs {
                let over = r.placed_pieces(Some(input), out, |p| {
                    if p.len > 1 && p.so == p.se {
                        // One diagonal along the stretch; its blocks change only where the
                        // output or the input crosses a ciphertext.
                        block_pieces(p.o, p.e, p.so, p.len, slots).into_iter().any(|(po, pe, _)| mark(k, po, pe))
                    } else {
                        p.entries().any(|(po, pe, _)| mark(k, po, pe))
                    }
                });
                if over {
                    return limit + 1;
                }
            }
        }
        count
    }

    /// `y = x` over `n` elements (moves a value between layouts once placed; nothing to emit in
    /// one layout).
    pub fn identity(n: usize) -> AffineMap {
        let part = Part { entries: Vec::new(), runs: vec![Run { o: 0, e: 0, so: 1, se: 1, len: n, w: 1.0 }] };
        AffineMap { out_numel: n, parts: vec![if n == 0 { Part::default() } else { part }], offset: None }
    }

    /// Whether the map is slot-wise (`y_j = w_j·x_j + o_j`, one operand of the output's size):
    /// composing it with another map keeps that map's diagonals.
    pub fn is_slotwise(&self) -> bool {
        match self.parts.as_slice() {
            [p] => p.is_diagonal() && p.iter().all(|(o, _, _)| o < self.out_numel),
            _ => false,
        }
    }

    /// `Some(w)` when the map is `w·x + offset` (one operand of the output's size, every element
    /// weighted by the same `w`): a scalar multiply and a plaintext add, no diagonal method.
    fn uniform_scale(&self, in_numel: &[usize]) -> Option<f64> {
        match (self.parts.as_slice(), in_numel) {
            ([p], [n]) if *n == self.out_numel && p.nnz() == *n && p.is_diagonal() => {
                let w = p.iter().next().map(|e| e.2)?;
                (p.iter().all(|e| e.2 == w) && covers_diagonal(p, *n)).then_some(w)
            }
            _ => None,
        }
    }

    fn is_identity(&self, in_numel: &[usize]) -> bool {
        match (self.parts.as_slice(), in_numel) {
            ([p], [n]) => {
                self.offset.is_none()
                    && *n == self.out_numel
                    && p.nnz() == *n
                    && p.is_diagonal()
                    && p.iter().all(|e| e.2 == 1.0)
                    && covers_diagonal(p, *n)
            }
            _ => false,
        }
    }
}

/// Above this many multiply-adds, a composition that grows beyond 8× its two maps is refused.
const MAX_GROWN_PRODUCTS: usize = 4_000_000;

/// `target[o] = (p, w)` for a part with at most one entry per row `p < rows` that reads each
/// `o < reads` at most once; `None` otherwise.
fn injective_rows(part: &Part, rows: usize, reads: usize) -> Option<Vec<Option<(usize, f64)>>> {
    let mut target: Vec<Option<(usize, f64)>> = vec![None; reads];
    let mut row_taken = vec![false; rows];
    for (p, o, w) in part.iter() {
        let (t, taken) = (target.get_mut(o)?, row_taken.get_mut(p)?);
        if t.is_some() || *taken {
            return None;
        }
        *taken = true;
        *t = Some((p, w));
    }
    Some(target)
}

/// Stretches of an index map `f` along one stride: from `o`, how far `f(o + k·s)` advances by
/// one positive step with one weight. Computed once per stride over the whole map (backwards:
/// `ext[o] = ext[o + s] + 1` while the steps agree), so relabelling a map with runs costs its
/// runs, not its entries (BERT-base's FFN: 2.4M runs for 302M entries).
struct Stretches<'a> {
    f: &'a [Option<(usize, f64)>],
    ext: BTreeMap<usize, Vec<u32>>,
}

impl<'a> Stretches<'a> {
    fn new(f: &'a [Option<(usize, f64)>]) -> Self {
        Stretches { f, ext: BTreeMap::new() }
    }

    /// `f(o + s) − f(o)` when both exist with one weight and the step is positive.
    fn step(f: &[Option<(usize, f64)>], o: usize, s: usize) -> Option<usize> {
        match (f.get(o).copied().flatten(), f.get(o + s).copied().flatten()) {
            (Some((a, wa)), Some((b, wb))) if wa == wb && b > a && s > 0 => Some(b - a),
            _ => None,
        }
    }

    /// `(n, step)`: the stretch from `o` (where `f(o)` exists) along stride `s`, at most `len`.
    fn at(&mut self, o: usize, s: usize, len: usize) -> (usize, usize) {
        if len <= 1 || s == 0 {
            return (1, 0);
        }
        let f = self.f;
        let ext = self.ext.entry(s).or_insert_with(|| {
            let mut ext = vec![1u32; f.len()];
            for o in (0..f.len()).rev() {
                if let Some(d) = Self::step(f, o, s) {
                    let next = ext.get(o + s).copied().unwrap_or(1);
                    ext[o] = if Self::step(f, o + s, s) == Some(d) { next.saturating_add(1) } else { 2 };
                }
            }
            ext
        });
        let n = (ext.get(o).copied().unwrap_or(1) as usize).min(len).max(1);
        (n, if n > 1 { Self::step(f, o, s).unwrap_or(0) } else { 0 })
    }
}

/// Appends `r` to `part`: as an entry when it has one element, nothing when its weight is zero.
fn push_run(part: &mut Part, r: Run) {
    if r.w == 0.0 {
        return;
    }
    if r.len == 1 {
        part.entries.push((r.o, r.e, r.w));
    } else {
        part.runs.push(r);
    }
}

/// A diagonal stretch `(po + k·s, pe + k·s)`, `k < n`, cut where the output or the input
/// position crosses into another ciphertext: `(output position, input position, length)`.
fn block_pieces(po: usize, pe: usize, s: usize, n: usize, slots: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::with_capacity(1);
    let (mut po, mut pe, mut left) = (po, pe, n);
    let s = s.max(1);
    while left > 0 {
        let to_edge = |p: usize| (slots - p % slots).div_ceil(s);
        let m = left.min(to_edge(po)).min(to_edge(pe)).max(1);
        out.push((po, pe, m));
        po += m * s;
        pe += m * s;
        left -= m;
    }
    out
}

/// Whether the entries are exactly `(k, k, ·)` for every `k < n`, once each, in any order.
fn covers_diagonal(p: &Part, n: usize) -> bool {
    if p.nnz() != n {
        return false;
    }
    let mut seen = vec![false; n];
    p.iter().all(|(o, i, _)| {
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
#[derive(Debug, Clone, Default)]
struct Diagonal {
    /// `(slot, weight)`.
    singles: Vec<(usize, f64)>,
    /// `(first slot, length, weight)`: one weight over consecutive slots (a placed [`Run`]).
    segments: Vec<(usize, usize, f64)>,
}

impl Diagonal {
    fn is_empty(&self) -> bool {
        self.singles.is_empty() && self.segments.is_empty()
    }
}

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
fn rotated_diagonal(diag: &Diagonal, shift: usize, slots: usize) -> SlotVector {
    if diag.segments.is_empty() {
        return rotated_singles(&diag.singles, shift, slots);
    }
    // Segments (and singles as segments of one), shifted, cut where they wrap, in slot order.
    let mut segs: Vec<(usize, usize, f64)> = Vec::with_capacity(diag.segments.len() + diag.singles.len() + 1);
    let singles = diag.singles.iter().map(|&(j, w)| (j, 1, w));
    for (j, n, w) in diag.segments.iter().copied().chain(singles) {
        let start = (j + shift) % slots;
        let first = n.min(slots - start);
        segs.push((start, first, w));
        if first < n {
            segs.push((0, n - first, w));
        }
    }
    segs.sort_unstable_by_key(|s| s.0);
    if segs.windows(2).any(|p| p[0].0 + p[0].1 > p[1].0) {
        // Overlapping entries sum: slot by slot.
        let mut singles: Vec<(usize, f64)> = Vec::new();
        for &(j, n, w) in &diag.segments {
            singles.extend((0..n).map(|k| ((j + k) % slots, w)));
        }
        singles.extend_from_slice(&diag.singles);
        singles.sort_by_key(|e| e.0);
        return rotated_singles(&singles, shift, slots);
    }
    let mut runs: Vec<(f64, usize)> = Vec::with_capacity(2 * segs.len());
    let mut next = 0usize;
    for (j, n, w) in segs {
        runs.push((0.0, j - next));
        runs.push((w, n));
        next = j + n;
    }
    SlotVector::from_runs(runs)
}

/// [`rotated_diagonal`] of single entries sorted by slot (repeated slots are summed).
fn rotated_singles(diag: &[(usize, f64)], shift: usize, slots: usize) -> SlotVector {
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
    let mut expanded = 0usize;
    for (i, part) in map.parts.iter().enumerate() {
        let mut add = |o: usize, e: usize, n: usize, w: f64| -> Result<(), BackendError> {
            let (oc, os) = (o / slots, o % slots);
            let (ic, is) = (e / slots, e % slots);
            if oc >= out_cts {
                return Err(BackendError::Internal("output element outside the map".into()));
            }
            let d = (is + slots - os) % slots;
            if let Some(diag) = buckets.entry((oc, i, ic), || vec![Diagonal::default(); slots]).get_mut(d) {
                if n == 1 {
                    diag.singles.push((os, w));
                } else {
                    diag.segments.push((os, n, w));
                }
            }
            Ok(())
        };
        for &(o, e, w) in &part.entries {
            if w != 0.0 {
                add(o, e, 1, w)?;
            }
        }
        for r in &part.runs {
            if r.w == 0.0 {
                continue;
            }
            if r.so == 1 && r.se == 1 {
                // One diagonal: a constant segment per ciphertext block it passes.
                for (po, pe, n) in block_pieces(r.o, r.e, 1, r.len, slots) {
                    add(po, pe, n, r.w)?;
                }
            } else {
                expanded += r.len;
                if expanded > crate::affine_ops::MAX_MAP_ENTRIES {
                    return Err(BackendError::Unsupported {
                        op: "affine map".into(),
                        node: String::new(),
                        reason: format!(
                            "over {} multiply-adds in a placement that scatters them (not one diagonal per \
                             weight); the column layout keeps them together",
                            crate::affine_ops::MAX_MAP_ENTRIES
                        ),
                    });
                }
                for (o, e, w) in r.entries() {
                    add(o, e, 1, w)?;
                }
            }
        }
    }
    let mut blocks: Vec<Blocks> = vec![BTreeMap::new(); out_cts];
    for ((oc, i, ic), by_d) in buckets.items {
        let Some(bl) = blocks.get_mut(oc) else { continue };
        let diags = bl.entry((i, ic)).or_default();
        for (d, mut diag) in by_d.into_iter().enumerate() {
            if diag.is_empty() {
                continue;
            }
            if !diag.singles.windows(2).all(|w| w[0].0 <= w[1].0) {
                diag.singles.sort_unstable_by_key(|e| e.0);
            }
            diags.insert(d, diag);
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
        for (o, i, w) in m.parts.iter().flat_map(Part::iter) {
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
            parts: vec![vec![(0, 0, 1.0), (0, 0, 1.0), (1, 0, 2.0), (1, 2, 1.0), (2, 1, -1.0), (3, 2, 3.0)].into()],
            offset: Some(vec![1.0, 0.0, 2.0, 0.0]),
        };
        let outer = AffineMap {
            out_numel: 2,
            parts: vec![vec![(0, 0, 1.0), (0, 3, 1.0), (1, 1, 1.0), (1, 0, -1.0), (1, 2, 2.0)].into()],
            offset: Some(vec![0.5, 0.0]),
        };
        let c = outer.compose_after(&inner).unwrap();
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

    /// A matmul map `[t, h] × [h, j]` with runs over the tokens, and the same map as entries.
    fn matmul_map(t: usize, h: usize, j: usize) -> (AffineMap, AffineMap) {
        let runs: Vec<Run> = (0..j)
            .flat_map(|c| {
                (0..h).map(move |k| Run { o: c, e: k, so: j, se: h, len: t, w: 1.0 + (3 * c + k) as f64 / 7.0 })
            })
            .collect();
        let map = AffineMap { out_numel: t * j, parts: vec![Part { entries: vec![], runs }], offset: None };
        let flat = AffineMap { parts: vec![map.parts[0].iter().collect::<Vec<_>>().into()], ..map.clone() };
        (map, flat)
    }

    fn sorted(p: &Part) -> Vec<(usize, usize, u64)> {
        let mut v: Vec<(usize, usize, u64)> = p.iter().map(|(o, e, w)| (o, e, w.to_bits())).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn runs_place_and_count_as_their_entries() {
        let (t, h, j) = (4, 3, 5);
        let (map, flat) = matmul_map(t, h, j);
        let (row_in, col_in) = (Layout::row_major(&[t, h]), Layout::column_major(&[t, h]));
        let (row_out, col_out) = (Layout::row_major(&[t, j]), Layout::column_major(&[t, j]));
        for (li, lo) in [(&row_in, &row_out), (&col_in, &col_out), (&row_in, &col_out), (&col_in, &row_out)] {
            let (a, b) = (map.parts[0].placed(Some(li), lo), flat.parts[0].placed(Some(li), lo));
            assert_eq!(sorted(&a), sorted(&b), "{li} -> {lo}");
            for slots in [4, 8, 64] {
                let count = |m: &AffineMap| m.placed_diagonal_count_up_to(li, lo, slots, usize::MAX);
                assert_eq!(count(&map), count(&flat), "{li} -> {lo}, {slots} slots");
            }
        }
        // Column to column: every run is one constant segment (no entry left single).
        let placed = map.parts[0].placed(Some(&col_in), &col_out);
        assert!(placed.entries.is_empty() && placed.runs.iter().all(|r| r.so == 1 && r.se == 1 && r.len == t));
    }

    #[test]
    fn compositions_with_data_movement_keep_runs_and_equal_the_product() {
        let (t, h, j) = (4, 3, 6);
        let (map, flat) = matmul_map(t, h, j);
        assert_eq!(flat.parts[0].nnz(), t * h * j);
        // Outer: a transpose [t, j] → [j, t] plus a bias (injective rows: relabels).
        let transpose: Vec<(usize, usize, f64)> = (0..t * j).map(|o| ((o % j) * t + o / j, o, 2.0)).collect();
        let outer = AffineMap { out_numel: t * j, parts: vec![transpose.into()], offset: Some(vec![0.5; t * j]) };
        let composed = outer.compose_after(&map).unwrap();
        assert!(!composed.parts[0].runs.is_empty(), "runs kept");
        assert_close(dense(&composed, t * h), product(&outer, &flat, t * h));
        // Inner: the input read from its transpose [h, t], with an offset (relabels inputs; the
        // token walk stays a run of input stride 1).
        let tr: Vec<(usize, usize, f64)> = (0..t * h).map(|o| (o, (o % h) * t + o / h, 1.0)).collect();
        let inner = AffineMap { out_numel: t * h, parts: vec![tr.into()], offset: Some(vec![1.0; t * h]) };
        let composed = map.compose_after(&inner).unwrap();
        assert!(!composed.parts[0].runs.is_empty(), "runs kept");
        assert_close(dense(&composed, t * h), product(&map, &inner, t * h));
    }

    /// The dense `outer · inner` and `outer · o_inner + o_outer`.
    fn product(outer: &AffineMap, inner: &AffineMap, in_numel: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let ((a1, o1), (a2, o2)) = (dense(inner, in_numel), dense(outer, inner.out_numel));
        let a = a2.iter().map(|row| (0..in_numel).map(|i| (0..row.len()).map(|o| row[o] * a1[o][i]).sum()).collect());
        let off = a2.iter().zip(&o2).map(|(row, b)| b + row.iter().zip(&o1).map(|(x, y)| x * y).sum::<f64>());
        (a.collect(), off.collect())
    }

    fn assert_close((a, oa): (Vec<Vec<f64>>, Vec<f64>), (b, ob): (Vec<Vec<f64>>, Vec<f64>)) {
        let close = |x: &f64, y: &f64| (x - y).abs() < 1e-12 * (1.0 + y.abs());
        assert!(a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| close(x, y)), "{a:?} vs {b:?}");
        assert!(oa.iter().zip(&ob).all(|(x, y)| close(x, y)), "{oa:?} vs {ob:?}");
    }

    #[test]
    fn compressed_parts_merge_strided_walks() {
        let p = Part::compressed([(0, 5, 1.0), (2, 6, 1.0), (4, 7, 1.0), (5, 0, 1.0), (6, 1, 2.0), (9, 9, 2.0)]);
        assert_eq!(
            p.runs,
            vec![Run { o: 0, e: 5, so: 2, se: 1, len: 3, w: 1.0 }, Run { o: 6, e: 1, so: 3, se: 8, len: 2, w: 2.0 }]
        );
        assert_eq!(p.entries, vec![(5, 0, 1.0)]);
        assert_eq!(p.nnz(), 6);
    }

    #[test]
    fn rotated_diagonals_wrap_and_sum_repeats() {
        // slots 8, entries at 1, 5, 5, 6 shifted by 4: 5, 1 (wrapped), 1, 2.
        let singles = vec![(1, 1.0), (5, 2.0), (5, 0.5), (6, 3.0)];
        let v = rotated_diagonal(&Diagonal { singles, segments: vec![] }, 4, 8);
        assert_eq!(v.to_dense(), vec![0.0, 2.5, 3.0, 0.0, 0.0, 1.0]);
        assert_eq!(rotated_diagonal(&Diagonal::default(), 3, 8).len(), 0);
        // A segment over slots 5..8 and a single at 1, shifted by 2: 7, 0, 1 (wrapped) and 3.
        let v = rotated_diagonal(&Diagonal { singles: vec![(1, 4.0)], segments: vec![(5, 3, 2.0)] }, 2, 8);
        assert_eq!(v.to_dense(), vec![2.0, 2.0, 0.0, 4.0, 0.0, 0.0, 0.0, 2.0]);
        // Overlapping entries sum.
        let v = rotated_diagonal(&Diagonal { singles: vec![(1, 4.0)], segments: vec![(0, 3, 1.0)] }, 0, 8);
        assert_eq!(v.to_dense(), vec![1.0, 5.0, 1.0]);
    }

    #[test]
    fn slot_wise_and_identity_checks_ignore_entry_order() {
        let m =
            AffineMap { out_numel: 3, parts: vec![vec![(2, 2, 1.0), (0, 0, 1.0), (1, 1, 1.0)].into()], offset: None };
        assert!(m.is_identity(&[3]) && m.is_slotwise());
        let m =
            AffineMap { out_numel: 3, parts: vec![vec![(2, 2, 2.0), (0, 0, 2.0), (0, 0, 2.0)].into()], offset: None };
        assert!(!m.is_identity(&[3]) && m.uniform_scale(&[3]).is_none(), "a repeated slot is not a cover");
        let m = AffineMap { out_numel: 2, parts: vec![vec![(1, 1, 3.0), (0, 0, 3.0)].into()], offset: None };
        assert_eq!(m.uniform_scale(&[2]), Some(3.0));
        // The identity from row-major [2, 3] into column [2, 3] (position 2·j + i): with 8 slots,
        // offsets e − p(e) over e = 3i + j: 0, 1−2, 2−4, 3−1, 4−3, 5−5 → {0, 7, 6, 2, 1}.
        let (row, col) = (Layout::row_major(&[2, 3]), Layout::column_major(&[2, 3]));
        let m = AffineMap::identity(6);
        assert!(m.is_identity(&[6]) && m.is_slotwise());
        assert_eq!(m.placed_diagonal_count_up_to(&row, &col, 8, usize::MAX), 5);
        assert_eq!(m.placed_diagonal_count_up_to(&row, &col, 8, 2), 3, "stops past the limit");
        assert_eq!(m.placed_diagonal_count_up_to(&col, &col, 8, usize::MAX), 1);
    }
}
