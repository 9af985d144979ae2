//! Slot supports: which slots of each register can be nonzero.
//!
//! Contract:
//! - [`Program::slot_supports`] gives, per register, a cyclic interval of slots outside which the
//!   register's slots are zero (up to noise) on every execution. It is sound, not exact: additions
//!   take the hull of their operands' intervals, products the smaller of the two (the intersection
//!   of cyclic intervals can be two pieces; the hull of the pieces is used), constants their
//!   nonzero range, rotations shift the interval. A bootstrap's output equals its input (full
//!   slots, or zero-padded sparse slots, whose input validation keeps within `0..n`) except for a
//!   replicating sparse one (every slot a copy).
//! - Inputs hold their layout's elements from slot 0 (`SlotLayout`: unused slots are zero on input).
//! - Why: a zero-padded sparse bootstrap ([`crate::BootstrapConfig::zero_padded`]) is exact only
//!   when its input is zero outside slots `0..n`. The compiler picks `n` from these supports and
//!   [`Program::validate_structure`] re-proves the condition, so a program edited by hand cannot
//!   silently fold garbage into its refreshed values.

use super::{Op, Program, SlotVector};

/// Slots `start, start + 1, …, start + len − 1` (mod `slots`); `len = slots` is every slot,
/// `len = 0` none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSupport {
    pub start: usize,
    pub len: usize,
}

impl SlotSupport {
    /// Every slot.
    pub fn full(slots: usize) -> Self {
        SlotSupport { start: 0, len: slots }
    }

    /// Slots `0..end`.
    pub fn prefix(end: usize) -> Self {
        SlotSupport { start: 0, len: end }
    }

    /// One past the last slot when the support does not wrap past slot `slots − 1`, so it lies
    /// in `0..end`; `slots` otherwise.
    pub fn end(&self, slots: usize) -> usize {
        if self.len == 0 {
            0
        } else if self.start + self.len <= slots {
            self.start + self.len
        } else {
            slots
        }
    }

    /// At most two linear pieces `[a, b)` covering the support.
    fn pieces(&self, slots: usize) -> Vec<(usize, usize)> {
        if self.len == 0 {
            Vec::new()
        } else if self.len >= slots {
            vec![(0, slots)]
        } else if self.start + self.len <= slots {
            vec![(self.start, self.start + self.len)]
        } else {
            vec![(self.start, slots), (0, self.start + self.len - slots)]
        }
    }

    /// The smallest cyclic interval covering linear pieces `[a, b)` (the complement of the largest
    /// gap between them).
    fn hull_of(mut pieces: Vec<(usize, usize)>, slots: usize) -> Self {
        pieces.retain(|&(a, b)| b > a);
        if pieces.is_empty() {
            return SlotSupport { start: 0, len: 0 };
        }
        pieces.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(pieces.len());
        for (a, b) in pieces {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let (first, last) = match (merged.first(), merged.last()) {
            (Some(&f), Some(&l)) => (f, l),
            _ => return SlotSupport::full(slots),
        };
        // gap after piece k runs to piece k + 1; the last gap wraps to the first piece
        let mut best_gap = first.0 + slots - last.1;
        let mut start = first.0;
        for w in merged.windows(2) {
            if let [x, y] = w {
                if y.0 - x.1 > best_gap {
                    best_gap = y.0 - x.1;
                    start = y.0;
                }
            }
        }
        SlotSupport { start: start % slots.max(1), len: slots - best_gap }
    }

    /// The smallest cyclic interval covering both.
    pub fn hull(&self, other: &SlotSupport, slots: usize) -> Self {
        let mut p = self.pieces(slots);
        p.extend(other.pieces(slots));
        Self::hull_of(p, slots)
    }

    /// A cyclic interval covering the intersection.
    pub fn intersect(&self, other: &SlotSupport, slots: usize) -> Self {
        let mut p = Vec::new();
        for &(a, b) in &self.pieces(slots) {
            for &(c, d) in &other.pieces(slots) {
                p.push((a.max(c), b.min(d)));
            }
        }
        Self::hull_of(p, slots)
    }

    /// The support after rotating left by `step` (`out[j] = in[j + step]`).
    pub fn rotate(&self, step: i64, slots: usize) -> Self {
        if self.len == 0 || self.len >= slots {
            return *self;
        }
        let start = (self.start as i64 - step).rem_euclid(slots as i64) as usize;
        SlotSupport { start, len: self.len }
    }

    /// The nonzero range of a constant.
    pub fn of_constant(c: &SlotVector) -> Self {
        let mut pos = 0usize;
        let mut first = None;
        for (v, n) in c.runs() {
            if v.to_bits() != 0 && first.is_none() {
                first = Some(pos);
            }
            pos += n;
        }
        match first {
            // trailing +0.0 are trimmed: the last value is nonzero
            Some(f) => SlotSupport { start: f, len: c.len() - f },
            None => SlotSupport { start: 0, len: 0 },
        }
    }

    /// The support of `op`'s result from its operands' (`operand`) and constants' (`constant`).
    /// `replicating_bootstrap`: the program's bootstrapping is sparse and not zero-padded, so
    /// its outputs are copies over every slot; any other bootstrap's output equals its input.
    pub fn of_op(
        op: &Op,
        slots: usize,
        operand: impl Fn(u32) -> SlotSupport,
        constant: impl Fn(u32) -> SlotSupport,
        replicating_bootstrap: bool,
    ) -> SlotSupport {
        match *op {
            Op::Add(a, b) | Op::Sub(a, b) => operand(a).hull(&operand(b), slots),
            Op::Mul(a, b) => operand(a).intersect(&operand(b), slots),
            Op::Neg(a) | Op::MulInt(a, _) | Op::Rescale(a) => operand(a),
            Op::MulScalar { src, .. } | Op::DropLevel { src, .. } => operand(src),
            Op::AddPlain(a, c) | Op::SubPlain(a, c) => operand(a).hull(&constant(c), slots),
            Op::MulPlain { src, constant: c, .. } => operand(src).intersect(&constant(c), slots),
            Op::Rotate { src, step } => operand(src).rotate(step, slots),
            Op::Bootstrap(_) | Op::BootstrapPair(..) if replicating_bootstrap => SlotSupport::full(slots),
            Op::Bootstrap(a) | Op::Conjugate(a) | Op::MulI(a) => operand(a),
            Op::BootstrapPair(a, b) => operand(a).hull(&operand(b), slots),
        }
    }
}

impl Program {
    /// Per register (inputs first), a cyclic interval of slots outside which it is zero (see the
    /// module doc). Operands must be defined before use ([`Program::validate_structure`]);
    /// undefined ones count as full.
    pub fn slot_supports(&self) -> Vec<SlotSupport> {
        let slots = self.params.slots();
        let full = SlotSupport::full(slots);
        let mut sup: Vec<SlotSupport> = Vec::with_capacity(self.num_input_regs() + self.insts.len());
        for p in &self.inputs {
            let numel: usize = p.layout.shape().iter().product();
            for k in 0..p.regs.len() {
                sup.push(SlotSupport::prefix(numel.saturating_sub(k * slots).min(slots)));
            }
        }
        let constant = |c: u32| self.constants.get(c as usize).map_or(full, SlotSupport::of_constant);
        let replicating = self.bootstrap.as_ref().is_some_and(|b| {
            let n = 1usize << b.config.log_slots;
            !b.config.zero_padded && n < slots
        });
        for inst in &self.insts {
            let s = SlotSupport::of_op(
                &inst.op,
                slots,
                |r| sup.get(r as usize).copied().unwrap_or(full),
                constant,
                replicating,
            );
            sup.push(s);
        }
        sup
    }

    /// The first bootstrap whose input is not provably zero outside the slots a zero-padded
    /// sparse configuration refreshes: `(instruction, register, its support's end)`.
    pub(crate) fn unpadded_bootstrap(&self) -> Option<(usize, u32, usize)> {
        let b = self.bootstrap.as_ref()?;
        let slots = self.params.slots();
        let n = 1usize << b.config.log_slots;
        if !b.config.zero_padded || n >= slots {
            return None;
        }
        let sup = self.slot_supports();
        let end = |a: u32| sup.get(a as usize).map_or(slots, |s| s.end(slots));
        self.insts.iter().enumerate().find_map(|(i, inst)| {
            let ops = match inst.op {
                Op::Bootstrap(a) => vec![a],
                Op::BootstrapPair(a, b) => vec![a, b],
                _ => return None,
            };
            ops.into_iter().find(|&a| end(a) > n).map(|a| (i, a, end(a)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = 16;

    fn sup(start: usize, len: usize) -> SlotSupport {
        SlotSupport { start, len }
    }

    /// The slots an interval covers, as a bitmask.
    fn mask(s: SlotSupport) -> u32 {
        (0..s.len.min(S)).fold(0, |m, k| m | 1 << ((s.start + k) % S))
    }

    /// Length of the shortest cyclic interval covering a set of slots (brute force).
    fn shortest_cover(m: u32) -> usize {
        if m == 0 {
            return 0;
        }
        (0..S)
            .flat_map(|st| (1..=S).map(move |l| sup(st, l)))
            .filter(|c| mask(*c) & m == m)
            .map(|c| c.len)
            .min()
            .unwrap()
    }

    #[test]
    fn hull_and_intersection_cover_the_set_operations() {
        // every pair of intervals on 16 slots with a few starts and lengths
        let all: Vec<SlotSupport> =
            (0..S).step_by(3).flat_map(|s| [0, 1, 4, 9, 15, 16].into_iter().map(move |l| sup(s, l))).collect();
        for a in &all {
            for b in &all {
                let (ma, mb) = (mask(*a), mask(*b));
                let h = a.hull(b, S);
                assert_eq!(mask(h) & (ma | mb), ma | mb, "hull {a:?} {b:?} -> {h:?}");
                assert_eq!(h.len, shortest_cover(ma | mb), "hull {a:?} {b:?} -> {h:?} is not the shortest");
                let i = a.intersect(b, S);
                assert_eq!(mask(i) & (ma & mb), ma & mb, "intersection {a:?} {b:?} -> {i:?}");
                assert!(i.len <= a.len.min(b.len), "intersection {a:?} {b:?} -> {i:?} exceeds an operand");
            }
        }
        // tight where it can be
        assert_eq!(sup(0, 4).hull(&sup(6, 2), S), sup(0, 8));
        assert_eq!(sup(14, 4).hull(&sup(3, 1), S), sup(14, 6));
        assert_eq!(sup(0, 8).intersect(&sup(4, 8), S), sup(4, 4));
        assert_eq!(sup(0, 4).intersect(&sup(8, 4), S).len, 0);
    }

    #[test]
    fn rotation_shifts_and_end_reports_wrapping() {
        let s = sup(0, 4);
        assert_eq!(s.rotate(-3, S), sup(3, 4));
        assert_eq!(s.rotate(-3, S).end(S), 7);
        // a left rotation wraps the values to the top slots
        assert_eq!(s.rotate(1, S), sup(15, 4));
        assert_eq!(s.rotate(1, S).end(S), S);
        assert_eq!(SlotSupport::full(S).rotate(5, S), SlotSupport::full(S));
    }

    #[test]
    fn constants_give_their_nonzero_range() {
        let c = SlotVector::from_dense(&[0.0, 0.0, 1.5, 0.0, 2.0, 0.0, 0.0]);
        assert_eq!(SlotSupport::of_constant(&c), sup(2, 3));
        assert_eq!(SlotSupport::of_constant(&SlotVector::from_dense(&[0.0; 4])).len, 0);
    }
}
