//! [`SlotVector`]: a program constant (a slot vector) stored run-length encoded.
//!
//! Contract:
//! - A slot vector is a sequence of `f64`; values are compared by their bits ([`f64::to_bits`]), so
//!   `0.0` and `-0.0` differ and equality, hashing and run merging are exact.
//! - Trailing `+0.0` values are trimmed: [`SlotVector::len`] is the position after the last value
//!   whose bits are not zero, and [`SlotVector::get`] is `0.0` beyond it (the encoder zero-pads).
//! - The representation is canonical (a function of the trimmed values only), so the derived
//!   `PartialEq`/`Eq`/`Hash` compare contents and a compiler can intern constants in a hash map.
//!
//! Storage: runs of equal values, each as its value and its end position (12 bytes). A vector with
//! fewer repeats than that pays for (more than 2 runs per 3 values, e.g. a row-major diagonal of
//! distinct weights) is kept dense instead, so no constant takes more memory than its dense form.
//! Diagonals of token-fastest layouts repeat each value `T` times and take about `1/T` of it.

use std::fmt;

/// A program constant: a slot vector, run-length encoded (see the module doc).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct SlotVector(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// The value bits of every slot up to the length.
    Dense(Vec<u64>),
    /// Run `k` holds `values[k]` at positions `ends[k-1]..ends[k]` (`ends` strictly increasing,
    /// adjacent values different, the last value not `+0.0`).
    Runs { values: Vec<u64>, ends: Vec<u32> },
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Runs { values: Vec::new(), ends: Vec::new() }
    }
}

impl SlotVector {
    /// Run-length encodes a dense slot vector (trailing `+0.0` trimmed).
    pub fn from_dense(values: &[f64]) -> SlotVector {
        let len = values.iter().rposition(|x| x.to_bits() != 0).map_or(0, |i| i + 1);
        let trimmed = values.get(..len).unwrap_or(&[]);
        let runs = 1 + trimmed.windows(2).filter(|w| matches!(w, [a, b] if a.to_bits() != b.to_bits())).count();
        if len == 0 || !Self::runs_pay(runs, len) {
            return SlotVector(if len == 0 {
                Repr::default()
            } else {
                Repr::Dense(trimmed.iter().map(|x| x.to_bits()).collect())
            });
        }
        let mut vals = Vec::with_capacity(runs);
        let mut ends = Vec::with_capacity(runs);
        for (i, x) in trimmed.iter().enumerate() {
            let b = x.to_bits();
            if vals.last() != Some(&b) {
                if i > 0 {
                    ends.push(i as u32);
                }
                vals.push(b);
            }
        }
        ends.push(len as u32);
        SlotVector(Repr::Runs { values: vals, ends })
    }

    /// Builds a slot vector from `(value, count)` runs in order. Zero-length runs are skipped,
    /// adjacent equal values merged and trailing `+0.0` trimmed, so any split of the same values
    /// gives the same (equal, equally hashed) vector.
    pub fn from_runs(runs: impl IntoIterator<Item = (f64, usize)>) -> SlotVector {
        let mut vals: Vec<u64> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut len = 0usize;
        for (x, n) in runs {
            if n == 0 {
                continue;
            }
            len = len.saturating_add(n);
            let b = x.to_bits();
            match (vals.last(), ends.last_mut()) {
                (Some(&last), Some(end)) if last == b => *end = len,
                _ => {
                    vals.push(b);
                    ends.push(len);
                }
            }
        }
        while vals.last() == Some(&0) {
            vals.pop();
            ends.pop();
        }
        let len = ends.last().copied().unwrap_or(0);
        if len == 0 {
            return SlotVector::default();
        }
        if Self::runs_pay(vals.len(), len) {
            let ends = ends.into_iter().map(|e| e as u32).collect();
            return SlotVector(Repr::Runs { values: vals, ends });
        }
        // Few repeats (so `len` < 1.5 runs): dense costs less.
        let mut dense = Vec::with_capacity(len);
        let mut start = 0usize;
        for (b, end) in vals.into_iter().zip(ends) {
            dense.extend(std::iter::repeat_n(b, end - start));
            start = end;
        }
        SlotVector(Repr::Dense(dense))
    }

    /// Whether `runs` runs (12 bytes each) over `len` slots take no more memory than `len` dense
    /// values (8 bytes each), and the positions fit the `u32` run ends.
    fn runs_pay(runs: usize, len: usize) -> bool {
        u32::try_from(len).is_ok() && runs.saturating_mul(3) <= len.saturating_mul(2)
    }

    /// Logical length: the position after the last value that is not `+0.0`.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Dense(v) => v.len(),
            Repr::Runs { ends, .. } => ends.last().map_or(0, |&e| e as usize),
        }
    }

    /// Whether every value is `+0.0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value at slot `i` (`0.0` at and beyond [`SlotVector::len`]).
    pub fn get(&self, i: usize) -> f64 {
        let bits = match &self.0 {
            Repr::Dense(v) => v.get(i).copied(),
            Repr::Runs { values, ends } => {
                let k = ends.partition_point(|&e| (e as usize) <= i);
                values.get(k).copied()
            }
        };
        f64::from_bits(bits.unwrap_or(0))
    }

    /// The values up to [`SlotVector::len`].
    pub fn to_dense(&self) -> Vec<f64> {
        match &self.0 {
            Repr::Dense(v) => v.iter().map(|&b| f64::from_bits(b)).collect(),
            Repr::Runs { .. } => {
                let mut out = Vec::with_capacity(self.len());
                for (x, n) in self.runs() {
                    out.extend(std::iter::repeat_n(x, n));
                }
                out
            }
        }
    }

    /// The maximal runs `(value, count)` in order: counts are positive, adjacent values differ
    /// (by bits), the counts sum to [`SlotVector::len`] and the last value is not `+0.0`.
    pub fn runs(&self) -> impl Iterator<Item = (f64, usize)> + '_ {
        RunIter { v: self, pos: 0, run: 0 }
    }

    /// Number of maximal runs ([`SlotVector::runs`]).
    pub fn num_runs(&self) -> usize {
        match &self.0 {
            Repr::Dense(_) => self.runs().count(),
            Repr::Runs { values, .. } => values.len(),
        }
    }

    /// Number of `f64` values held in memory (for reports): one per run, or one per slot when the
    /// vector has too few repeats for runs to be smaller (see the module doc).
    pub fn stored_values(&self) -> usize {
        match &self.0 {
            Repr::Dense(v) => v.len(),
            Repr::Runs { values, .. } => values.len(),
        }
    }

    /// Number of values whose bits are not zero.
    pub fn nonzeros(&self) -> usize {
        self.runs().filter(|(x, _)| x.to_bits() != 0).map(|(_, n)| n).sum()
    }

    /// Whether every value is finite.
    pub fn is_finite(&self) -> bool {
        match &self.0 {
            Repr::Dense(v) => v.iter().all(|&b| f64::from_bits(b).is_finite()),
            Repr::Runs { values, .. } => values.iter().all(|&b| f64::from_bits(b).is_finite()),
        }
    }
}

/// Iterator of [`SlotVector::runs`].
struct RunIter<'a> {
    v: &'a SlotVector,
    /// Next slot (dense form) or next run (run form).
    pos: usize,
    /// Start of the next run (run form).
    run: usize,
}

impl Iterator for RunIter<'_> {
    type Item = (f64, usize);

    fn next(&mut self) -> Option<(f64, usize)> {
        match &self.v.0 {
            Repr::Dense(v) => {
                let b = *v.get(self.pos)?;
                let rest = v.get(self.pos..).unwrap_or(&[]);
                let n = rest.iter().take_while(|&&x| x == b).count();
                self.pos += n;
                Some((f64::from_bits(b), n))
            }
            Repr::Runs { values, ends } => {
                let b = *values.get(self.pos)?;
                let end = *ends.get(self.pos)? as usize;
                let n = end.saturating_sub(self.run);
                self.pos += 1;
                self.run = end;
                Some((f64::from_bits(b), n))
            }
        }
    }
}

impl From<&[f64]> for SlotVector {
    fn from(values: &[f64]) -> Self {
        SlotVector::from_dense(values)
    }
}

impl From<Vec<f64>> for SlotVector {
    fn from(values: Vec<f64>) -> Self {
        SlotVector::from_dense(&values)
    }
}

impl fmt::Debug for SlotVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlotVector[")?;
        for (k, (x, n)) in self.runs().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            // `x×n` for a run of n copies of x, `x` alone for one.
            if n == 1 {
                write!(f, "{x:e}")?;
            } else {
                write!(f, "{x:e}×{n}")?;
            }
        }
        f.write_str("]")
    }
}
