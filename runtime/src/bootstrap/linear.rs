//! Homomorphic slot-linear maps for CoeffsToSlots / SlotsToCoeffs.
//!
//! Contract:
//! - A [`DiagMap`] is a linear map on complex slot vectors of period `n` (a power of two) given by
//!   its nonzero generalized diagonals: `out[j] = Σ_d diag_d[j] · in[(j + d) mod n]`.
//! - The decoding map of the (sparse) subring of degree `2n` is `E = S_n ∘ … ∘ S_2 ∘ BR` (the
//!   encoder's special FFT: bit reversal, then butterfly stages). Each butterfly stage has three
//!   diagonals (offsets `0, ±h`). Bootstrapping never applies `BR`: CoeffsToSlots computes
//!   `BR·E⁻¹ = (1/n)·V_2 ∘ … ∘ V_n` (slots in bit-reversed coefficient order), which the slot-wise
//!   EvalMod does not care about, and SlotsToCoeffs applies `S_n ∘ … ∘ S_2` to that order.
//! - Consecutive stages are merged into `levels` groups (one level, i.e. one rescale, per group);
//!   a group of `m` stages has at most `2^{m+1} − 1` diagonals, evaluated with baby-step giant-step
//!   rotations, double hoisted (`Evaluator::bsgs_double_hoisted`: babies and giants accumulate
//!   over `Q_l ∪ P`): `Σ_g rot_{g}(Σ_b rot_{-g}(diag_{g+b}) ⊙ rot_b(x))`.
//! - Plaintext diagonals are encoded once, at the level and with the scale that makes the group's
//!   output scale exactly the planned one ([`LinearTransform::new`]).

use std::collections::BTreeMap;

use num_complex::Complex64;

use crate::encoder::{Encoder, Plaintext};
use crate::error::{CkksError, Result};
use crate::eval::Evaluator;
use crate::keys::Ciphertext;

/// A slot-linear map in diagonal form (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DiagMap {
    pub(crate) n: usize,
    /// offset `d ∈ [0, n)` → diagonal of length `n`.
    pub(crate) diags: BTreeMap<usize, Vec<Complex64>>,
}

fn zero() -> Complex64 {
    Complex64::new(0.0, 0.0)
}

impl DiagMap {
    fn empty(n: usize) -> Self {
        Self { n, diags: BTreeMap::new() }
    }

    fn add_entry(&mut self, offset: usize, j: usize, v: Complex64) {
        let n = self.n;
        let d = self.diags.entry(offset % n).or_insert_with(|| vec![zero(); n]);
        if let Some(x) = d.get_mut(j) {
            *x += v;
        }
    }

    /// Plaintext application (the reference the homomorphic evaluation must match).
    #[cfg(test)]
    pub(crate) fn apply(&self, x: &[Complex64]) -> Vec<Complex64> {
        let n = self.n;
        let mut out = vec![zero(); n];
        for (&d, diag) in &self.diags {
            for (j, (o, &c)) in out.iter_mut().zip(diag).enumerate() {
                *o += c * x.get((j + d) % n).copied().unwrap_or_default();
            }
        }
        out
    }

    /// `self ∘ inner`: `diag_{d+e}[j] += A_d[j] · B_e[(j + d) mod n]`.
    pub(crate) fn compose(&self, inner: &DiagMap) -> DiagMap {
        let n = self.n;
        let mut out = DiagMap::empty(n);
        for (&d, a) in &self.diags {
            for (&e, b) in &inner.diags {
                let target = out.diags.entry((d + e) % n).or_insert_with(|| vec![zero(); n]);
                for (j, (t, &x)) in target.iter_mut().zip(a).enumerate() {
                    *t += x * b.get((j + d) % n).copied().unwrap_or_default();
                }
            }
        }
        out
    }

    /// The same map on vectors of period `m` (a multiple of `n`); equal to `self` on `n`-periodic inputs.
    pub(crate) fn lift(&self, m: usize) -> DiagMap {
        let n = self.n;
        let diags = self
            .diags
            .iter()
            .map(|(&d, diag)| (d, (0..m).map(|j| diag.get(j % n).copied().unwrap_or_default()).collect()))
            .collect();
        DiagMap { n: m, diags }
    }

    /// Multiplies output slot `j` by `mask(j)`.
    pub(crate) fn mask_rows(&mut self, mask: impl Fn(usize) -> f64) {
        for diag in self.diags.values_mut() {
            diag.iter_mut().enumerate().for_each(|(j, x)| *x *= mask(j));
        }
    }

    fn scale(&mut self, c: f64) {
        self.diags.values_mut().flat_map(|d| d.iter_mut()).for_each(|x| *x *= c);
    }
}

/// Twiddles of the special FFT of the degree-`2n` ring (the encoder's `FftTables` for `2n`).
struct Twiddles {
    rot_group: Vec<usize>,
    m: usize,
}

impl Twiddles {
    fn new(n: usize) -> Self {
        let m = 4 * n;
        let mut rot_group = Vec::with_capacity(n);
        let mut g = 1usize;
        for _ in 0..n {
            rot_group.push(g);
            g = (g * 5) % m;
        }
        Self { rot_group, m }
    }
    fn ksi(&self, k: usize) -> Complex64 {
        Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * k as f64 / self.m as f64)
    }
}

/// Butterfly stage `S_len` of the forward special FFT (decoding direction).
fn forward_stage(n: usize, tw: &Twiddles, len: usize) -> DiagMap {
    let lenh = len / 2;
    let lenq = len * 4;
    let gap = tw.m / lenq;
    let mut s = DiagMap::empty(n);
    for i in (0..n).step_by(len) {
        for j in 0..lenh {
            let w = tw.ksi((tw.rot_group.get(j).copied().unwrap_or(0) % lenq) * gap);
            let (p, q) = (i + j, i + j + lenh);
            // out[p] = x[p] + w·x[q];  out[q] = x[p] − w·x[q]
            s.add_entry(0, p, Complex64::new(1.0, 0.0));
            s.add_entry(lenh, p, w);
            s.add_entry(0, q, -w);
            s.add_entry(n - lenh, q, Complex64::new(1.0, 0.0));
        }
    }
    s
}

/// Butterfly stage `V_len` of the inverse special FFT (encoding direction, without the 1/n).
fn inverse_stage(n: usize, tw: &Twiddles, len: usize) -> DiagMap {
    let lenh = len / 2;
    let lenq = len * 4;
    let gap = tw.m / lenq;
    let mut s = DiagMap::empty(n);
    for i in (0..n).step_by(len) {
        for j in 0..lenh {
            let w = tw.ksi((lenq - tw.rot_group.get(j).copied().unwrap_or(0) % lenq) * gap);
            let (p, q) = (i + j, i + j + lenh);
            // out[p] = x[p] + x[q];  out[q] = w·(x[p] − x[q])
            s.add_entry(0, p, Complex64::new(1.0, 0.0));
            s.add_entry(lenh, p, Complex64::new(1.0, 0.0));
            s.add_entry(n - lenh, q, w);
            s.add_entry(0, q, -w);
        }
    }
    s
}

/// Sizes of `levels` groups of `total` stages, as even as possible, larger groups first.
fn group_sizes(total: usize, levels: usize) -> Vec<usize> {
    let levels = levels.clamp(1, total.max(1));
    (0..levels).map(|g| total / levels + usize::from(g < total % levels)).collect()
}

/// Composes consecutive `stages` (in application order) into groups of the given sizes.
fn group(n: usize, stages: Vec<DiagMap>, sizes: &[usize]) -> Vec<DiagMap> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut it = stages.into_iter();
    for &size in sizes {
        let mut acc: Option<DiagMap> = None;
        for s in it.by_ref().take(size) {
            acc = Some(match acc {
                None => s,
                Some(a) => s.compose(&a),
            });
        }
        out.push(acc.unwrap_or_else(|| identity(n)));
    }
    out
}

fn identity(n: usize) -> DiagMap {
    let mut m = DiagMap::empty(n);
    m.diags.insert(0, vec![Complex64::new(1.0, 0.0); n]);
    m
}

/// `c · BR·E⁻¹` as `levels` grouped maps, in application order (`n ≥ 2`).
pub(crate) fn coeffs_to_slots_maps(n: usize, levels: usize, c: f64) -> Vec<DiagMap> {
    let tw = Twiddles::new(n);
    let mut stages = Vec::new();
    let mut len = n;
    while len >= 2 {
        stages.push(inverse_stage(n, &tw, len));
        len /= 2;
    }
    // Mirror SlotsToCoeffs' grouping (stage `V_len` pairs with `S_len`), so both transforms rotate
    // by the same offsets and share Galois keys.
    let mut sizes = group_sizes(stages.len(), levels);
    sizes.reverse();
    let mut groups = group(n, stages, &sizes);
    if let Some(first) = groups.first_mut() {
        first.scale(c / n as f64);
    }
    groups
}

/// `c · E·BR` (SlotsToCoeffs on bit-reversed input) as `levels` grouped maps, in application order.
pub(crate) fn slots_to_coeffs_maps(n: usize, levels: usize, c: f64) -> Vec<DiagMap> {
    let tw = Twiddles::new(n);
    let mut stages = Vec::new();
    let mut len = 2;
    while len <= n {
        stages.push(forward_stage(n, &tw, len));
        len *= 2;
    }
    let sizes = group_sizes(stages.len(), levels);
    let mut groups = group(n, stages, &sizes);
    if let Some(first) = groups.first_mut() {
        first.scale(c);
    }
    groups
}

/// Period-`2n` map `[a, b] ↦ [a + i·b, a + i·b]` (`a`, `b` the two halves of each period): joins the
/// real and imaginary parts EvalMod processed side by side into the `n`-periodic complex vector
/// SlotsToCoeffs reads.
pub(crate) fn join_halves(n: usize) -> DiagMap {
    let m = 2 * n;
    let one = Complex64::new(1.0, 0.0);
    let i = Complex64::new(0.0, 1.0);
    let mut c = DiagMap::empty(m);
    for j in 0..m {
        let first = j < n;
        // out[j] = C_0[j]·y[j] + C_n[j]·y[j + n]
        c.add_entry(0, j, if first { one } else { i });
        c.add_entry(n, j, if first { i } else { one });
    }
    c
}

/// Baby-step giant-step decomposition of a map's offsets: offsets `k·h` (centered `k`) split as
/// `k = g·n1 + b`, `0 ≤ b < n1`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BsgsPlan {
    /// giant step → [(baby step, offset d ∈ [0, n))]. Steps are signed (offsets centered in
    /// `(−n/2, n/2]`), so a map and its lift to a longer period rotate by the same steps and share keys.
    pub(crate) giants: Giants,
}

/// giant step → [(baby step, offset)].
type Giants = BTreeMap<i64, Vec<(i64, usize)>>;

impl BsgsPlan {
    /// The plan minimizing `babies + giant_cost·giants` (see
    /// [`crate::BootstrapConfig::giant_step_cost`]; ties: fewer rotations, then the smaller baby
    /// size).
    pub(crate) fn new(map: &DiagMap, giant_cost: usize) -> Self {
        let n = map.n as i64;
        let centered = |d: usize| -> i64 {
            let d = d as i64;
            if d > n / 2 {
                d - n
            } else {
                d
            }
        };
        let offs: Vec<i64> = map.diags.keys().map(|&d| centered(d)).collect();
        let h = offs.iter().fold(0i64, |g, &d| gcd(g, d.abs())).max(1);
        let ks: Vec<i64> = offs.iter().map(|d| d / h).collect();
        let build = |n1: i64| -> Giants {
            let mut giants = Giants::new();
            for &k in &ks {
                let g = k.div_euclid(n1) * n1 * h;
                let b = k.rem_euclid(n1) * h;
                let d = (k * h).rem_euclid(n) as usize;
                giants.entry(g).or_default().push((b, d));
            }
            giants
        };
        let mut best: Option<((usize, usize), Giants)> = None;
        let mut n1 = 1i64;
        while n1 <= n {
            let giants = build(n1);
            let mut babies: Vec<i64> = giants.values().flatten().map(|&(b, _)| b).filter(|&b| b != 0).collect();
            babies.sort_unstable();
            babies.dedup();
            let nonzero_giants = giants.keys().filter(|&&g| g != 0).count();
            let cost = (babies.len() + giant_cost * nonzero_giants, babies.len() + nonzero_giants);
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, giants));
            }
            n1 *= 2;
        }
        Self { giants: best.map(|(_, g)| g).unwrap_or_default() }
    }

    /// Every nonzero rotation step this plan uses.
    pub(crate) fn steps(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .giants
            .iter()
            .flat_map(|(&g, terms)| std::iter::once(g).chain(terms.iter().map(|&(b, _)| b)))
            .filter(|&s| s != 0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Rotation of an `n`-periodic vector: `out[j] = v[(j + s) mod n]`.
fn rot(v: &[Complex64], s: usize) -> Vec<Complex64> {
    let n = v.len();
    (0..n).map(|j| v.get((j + s) % n).copied().unwrap_or_default()).collect()
}

/// One grouped map, ready to evaluate: plaintext diagonals (pre-rotated by `-giant`) at `level`.
#[derive(Debug, Clone)]
pub(crate) struct LinearTransform {
    plan: BsgsPlan,
    /// (giant, baby) → plaintext.
    pts: BTreeMap<(i64, i64), Plaintext>,
    pub(crate) level: usize,
    pub(crate) in_scale: f64,
    pub(crate) out_scale: f64,
}

impl LinearTransform {
    /// Encodes `map`'s diagonals for an input at `level` with scale `in_scale` so that the output,
    /// after one rescale by `q_level`, has scale exactly `out_scale`. Output slots `rows..slots`
    /// are zero (`rows = slots`: the map as it is).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        enc: &Encoder,
        map: &DiagMap,
        giant_cost: usize,
        slots: usize,
        rows: usize,
        level: usize,
        q_level: f64,
        in_scale: f64,
        out_scale: f64,
    ) -> Result<Self> {
        let plan = BsgsPlan::new(map, giant_cost);
        let pt_scale = out_scale * q_level / in_scale;
        let n = map.n;
        if n == 0 || !slots.is_multiple_of(n) {
            return Err(CkksError::Internal("slot count not a multiple of the map period"));
        }
        let mut pts = BTreeMap::new();
        for (&g, terms) in &plan.giants {
            for &(b, d) in terms {
                let diag = map.diags.get(&d).ok_or(CkksError::Internal("plan offset without diagonal"))?;
                // rot_g(pt ⊙ rot_b(x))[j] = pt[j+g]·x[j+g+b] must equal diag[j]·x[j+d]: pt = rot_{-g}(diag).
                let shifted = rot(diag, (-g).rem_euclid(n as i64) as usize);
                // Output row j reads pt[j + g]: masking row j zeroes pt at j + g.
                let kept = |k: usize| (k as i64 - g).rem_euclid(slots as i64) < rows as i64;
                let full: Vec<Complex64> =
                    (0..slots)
                        .map(|k| {
                            if kept(k) {
                                shifted.get(k % n).copied().unwrap_or_default()
                            } else {
                                Complex64::default()
                            }
                        })
                        .collect();
                pts.insert((g, b), enc.encode_complex_basis(&full, level, pt_scale, true)?);
            }
        }
        Ok(Self { plan, pts, level, in_scale, out_scale })
    }

    pub(crate) fn steps(&self) -> Vec<i64> {
        self.plan.steps()
    }

    /// Applies the map to `ct` (at `self.level`, scale `self.in_scale`); one level is consumed.
    pub(crate) fn apply(&self, eval: &Evaluator, ct: &Ciphertext) -> Result<Ciphertext> {
        if ct.level != self.level {
            return Err(CkksError::LevelMismatch { a: ct.level, b: self.level });
        }
        if (ct.scale / self.in_scale - 1.0).abs() > 1e-9 {
            return Err(CkksError::ScaleMismatch { a_log2: ct.scale.log2(), b_log2: self.in_scale.log2() });
        }
        let giants = self
            .plan
            .giants
            .iter()
            .map(|(&g, terms)| {
                let terms = terms
                    .iter()
                    .map(|&(b, _)| {
                        self.pts.get(&(g, b)).map(|pt| (b, pt)).ok_or(CkksError::Internal("missing diagonal plaintext"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((g, terms))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = eval.bsgs_double_hoisted(ct, &giants)?;
        eval.rescale_assign(&mut out)?;
        out.scale = self.out_scale;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u64) -> Vec<Complex64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        (0..n).map(|_| Complex64::new(next(), next())).collect()
    }

    fn max_err(a: &[Complex64], b: &[Complex64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).norm()).fold(0.0, f64::max)
    }

    fn bit_reverse(v: &[Complex64]) -> Vec<Complex64> {
        let n = v.len();
        let bits = n.trailing_zeros();
        (0..n).map(|i| v[i.reverse_bits() >> (usize::BITS - bits)]).collect()
    }

    /// E·w evaluated directly: z_j = Σ_k w_k ω^{5^j k}, ω = e^{iπ/(2n)}.
    fn decode_direct(w: &[Complex64]) -> Vec<Complex64> {
        let n = w.len();
        let m = 4 * n;
        let mut g = 1usize;
        let mut out = Vec::new();
        for _ in 0..n {
            let z = w
                .iter()
                .enumerate()
                .map(|(k, &c)| {
                    c * Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * ((g * k) % m) as f64 / m as f64)
                })
                .sum();
            out.push(z);
            g = g * 5 % m;
        }
        out
    }

    #[test]
    fn stc_is_the_decoding_map_on_bit_reversed_input() {
        for n in [2usize, 8, 32] {
            for levels in [1, 2, 3] {
                let w = vals(n, n as u64 + levels as u64);
                let maps = slots_to_coeffs_maps(n, levels, 1.0);
                let mut x = bit_reverse(&w);
                for m in &maps {
                    x = m.apply(&x);
                }
                assert!(max_err(&x, &decode_direct(&w)) < 1e-12, "n={n} levels={levels}");
            }
        }
    }

    #[test]
    fn cts_after_stc_is_identity() {
        for n in [4usize, 16, 64] {
            for levels in [1, 2, 4] {
                let w = vals(n, 7 + n as u64);
                let mut x = w.clone();
                for m in slots_to_coeffs_maps(n, levels, 3.0).iter().chain(&coeffs_to_slots_maps(n, levels, 1.0 / 3.0))
                {
                    x = m.apply(&x);
                }
                assert!(max_err(&x, &w) < 1e-12, "n={n} levels={levels}: {}", max_err(&x, &w));
            }
        }
    }

    #[test]
    fn grouped_maps_have_few_diagonals() {
        // 6 stages in 2 groups of 3: at most 2^4 − 1 diagonals each.
        let maps = coeffs_to_slots_maps(64, 2, 1.0);
        assert_eq!(maps.len(), 2);
        assert!(
            maps.iter().all(|m| m.diags.len() <= 15),
            "{:?}",
            maps.iter().map(|m| m.diags.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bsgs_plan_covers_every_offset_once() {
        let maps = coeffs_to_slots_maps(64, 2, 1.0);
        for m in &maps {
            let plan = BsgsPlan::new(m, 1);
            let mut seen: Vec<usize> = Vec::new();
            for (&g, terms) in &plan.giants {
                for &(b, d) in terms {
                    assert_eq!((g + b).rem_euclid(64) as usize, d);
                    seen.push(d);
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, m.diags.keys().copied().collect::<Vec<_>>());
            assert!(plan.steps().len() < m.diags.len());
        }
    }

    /// The packed path of `Bootstrapper::bootstrap` (2n ≤ N/2), simulated on plaintext slots:
    /// CtS with its last group masked to the first half of each 2n-period, real/imaginary split,
    /// `[u, v]` side by side, then StC with the joining map folded into its first group.
    #[test]
    fn packed_halves_round_trip() {
        let n = 16;
        let w = vals(n, 99);
        let z = decode_direct(&w);
        let z2: Vec<Complex64> = (0..2 * n).map(|j| z[j % n]).collect();
        let mut cts = coeffs_to_slots_maps(n, 2, 1.0);
        let last = cts.pop().unwrap();
        let mut masked = last.lift(2 * n);
        masked.mask_rows(|j| if j % (2 * n) < n { 1.0 } else { 0.0 });
        let mut x = z2;
        for m in &cts {
            x = m.lift(2 * n).apply(&x);
        }
        x = masked.apply(&x);
        // x = [BR·w, 0]; u = 2·Re, v = 2·Im; packed = [u, v]
        let packed: Vec<Complex64> = (0..2 * n)
            .map(|j| if j < n { Complex64::new(2.0 * x[j].re, 0.0) } else { Complex64::new(2.0 * x[j - n].im, 0.0) })
            .collect();
        assert!(x[n..].iter().all(|c| c.norm() < 1e-12));
        let mut stc = slots_to_coeffs_maps(n, 2, 0.5);
        let first = stc.remove(0).lift(2 * n).compose(&join_halves(n));
        let mut y = first.apply(&packed);
        for m in &stc {
            y = m.lift(2 * n).apply(&y);
        }
        let want: Vec<Complex64> = (0..2 * n).map(|j| z[j % n]).collect();
        assert!(max_err(&y, &want) < 1e-12, "{}", max_err(&y, &want));
    }

    #[test]
    fn cts_and_stc_share_rotation_offsets() {
        for levels in [2, 3, 4] {
            let steps = |maps: Vec<DiagMap>| {
                let mut v: Vec<i64> = maps.iter().flat_map(|m| BsgsPlan::new(m, 1).steps()).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            assert_eq!(
                steps(coeffs_to_slots_maps(1024, levels, 1.0)),
                steps(slots_to_coeffs_maps(1024, levels, 1.0)),
                "levels {levels}"
            );
        }
    }
}
