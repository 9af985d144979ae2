//! CKKS encoding through the canonical embedding (the "special FFT" of HEAAN).
//!
//! Contract:
//! - A vector `z` of at most `N/2` complex (or real) slots, zero-padded, is mapped to the real
//!   polynomial `m` with `m(ζ^{5^j}) = Δ·z_j` (`ζ = e^{iπ/N}`), each coefficient rounded to the nearest
//!   integer and reduced into every prime of the requested level; the plaintext is stored in NTT form.
//!   Coefficients of any magnitude below `Q_l/2` are reduced exactly (values ≥ 2^62 go through their
//!   f64 mantissa/exponent, which is exact for every finite double).
//! - Decoding reconstructs each coefficient modulo `Q_l` exactly (Garner's mixed radix), takes the
//!   centered representative, converts it to f64 with relative error ≤ 2^-50 and divides by the scale.
//! - Slot `j` rotates to slot `j - k` under `X -> X^{5^k}` and is conjugated under `X -> X^{-1}`.

use std::sync::Arc;

use num_complex::Complex64;

use crate::context::{check_level, CkksContext, ContextInner};
use crate::error::{CkksError, Result};
use crate::ring::{for_limbs, RnsPoly};

/// Tables of the special FFT.
#[derive(Debug)]
pub(crate) struct FftTables {
    /// `5^j mod 2N` for `j < N/2`.
    rot_group: Vec<usize>,
    /// `exp(2πi·k / 2N)` for `k ≤ 2N`.
    ksi: Vec<Complex64>,
    m: usize,
}

impl FftTables {
    pub(crate) fn new(n: usize) -> Self {
        let m = 2 * n;
        let mut rot_group = Vec::with_capacity(n / 2);
        let mut g = 1usize;
        for _ in 0..n / 2 {
            rot_group.push(g);
            g = (g * 5) % m;
        }
        let ksi =
            (0..=m).map(|k| Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * k as f64 / m as f64)).collect();
        Self { rot_group, ksi, m }
    }

    /// Evaluates the polynomial given by `vals` (packed as in the module docs) at the slot roots.
    #[allow(clippy::indexing_slicing)] // indices are bounded by the power-of-two loop structure
    pub(crate) fn fft_special(&self, vals: &mut [Complex64]) {
        let n = vals.len();
        bit_reverse(vals);
        let mut len = 2;
        while len <= n {
            let lenh = len >> 1;
            let lenq = len << 2;
            let gap = self.m / lenq;
            for i in (0..n).step_by(len) {
                for j in 0..lenh {
                    let idx = (self.rot_group[j] % lenq) * gap;
                    let u = vals[i + j];
                    let v = vals[i + j + lenh] * self.ksi[idx];
                    vals[i + j] = u + v;
                    vals[i + j + lenh] = u - v;
                }
            }
            len <<= 1;
        }
    }

    /// Inverse of [`Self::fft_special`].
    #[allow(clippy::indexing_slicing)] // indices are bounded by the power-of-two loop structure
    pub(crate) fn fft_special_inv(&self, vals: &mut [Complex64]) {
        let n = vals.len();
        let mut len = n;
        while len >= 2 {
            let lenh = len >> 1;
            let lenq = len << 2;
            let gap = self.m / lenq;
            for i in (0..n).step_by(len) {
                for j in 0..lenh {
                    let idx = (lenq - (self.rot_group[j] % lenq)) * gap;
                    let u = vals[i + j] + vals[i + j + lenh];
                    let v = (vals[i + j] - vals[i + j + lenh]) * self.ksi[idx];
                    vals[i + j] = u;
                    vals[i + j + lenh] = v;
                }
            }
            len >>= 1;
        }
        bit_reverse(vals);
        let inv = 1.0 / n as f64;
        vals.iter_mut().for_each(|v| *v *= inv);
    }
}

#[allow(clippy::indexing_slicing)] // i, j < n
fn bit_reverse(vals: &mut [Complex64]) {
    let n = vals.len();
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            vals.swap(i, j);
        }
    }
}

/// Garner (mixed-radix) reconstruction tables for `Q_l`.
#[derive(Debug)]
pub(crate) struct CrtTables {
    /// `inv_prefix[k] = (q_0 ⋯ q_{k-1})^{-1} mod q_k` (Shoup pair).
    inv_prefix: Vec<(u64, u64)>,
    /// `q_mod[k][j] = q_j mod q_k` for `j < k` (Shoup pairs).
    q_mod: Vec<Vec<(u64, u64)>>,
    /// `half[l]`: mixed-radix digits of `(Q_l - 1)/2`, to pick the centered representative.
    half: Vec<Vec<u64>>,
}

impl CrtTables {
    pub(crate) fn new(ctx: &crate::ring::RingContext) -> Result<Self> {
        let mut inv_prefix = Vec::with_capacity(ctx.nq);
        let mut q_mod = Vec::with_capacity(ctx.nq);
        for k in 0..ctx.nq {
            let pk = ctx.limb_prime(k, ctx.nq);
            let row: Vec<u64> = (0..k).map(|j| pk.m.reduce(ctx.limb_prime(j, ctx.nq).q)).collect();
            let prod = row.iter().fold(1u64, |a, &b| pk.m.mul(a, b));
            inv_prefix.push(pk.shoup_pair(pk.inv(prod)?));
            q_mod.push(row.into_iter().map(|w| pk.shoup_pair(w)).collect());
        }
        let mut tabs = Self { inv_prefix, q_mod, half: Vec::new() };
        // (Q_l - 1)/2 ≡ (q_k - 1)/2 (mod q_k) for every k ≤ l.
        let primes: Vec<&crate::ring::Prime> = (0..ctx.nq).map(|k| ctx.limb_prime(k, ctx.nq)).collect();
        let half = (1..=ctx.nq)
            .map(|nq| {
                let residues: Vec<u64> = primes.iter().take(nq).map(|p| (p.q - 1) / 2).collect();
                let mut v = vec![0u64; nq];
                tabs.garner(&primes, |k| residues.get(k).copied().unwrap_or(0), &mut v);
                v
            })
            .collect();
        tabs.half = half;
        Ok(tabs)
    }

    /// Mixed-radix digits `v` of the integer in `[0, Q)` with residues `x(k)`.
    #[inline]
    #[allow(clippy::indexing_slicing)] // k, j < v.len() ≤ table sizes (checked by the caller)
    fn garner(&self, primes: &[&crate::ring::Prime], x: impl Fn(usize) -> u64, v: &mut [u64]) {
        for k in 0..v.len() {
            let p = primes[k];
            let row = &self.q_mod[k];
            // tmp = v_0 + v_1 q_0 + … + v_{k-1} q_0⋯q_{k-2}  (mod q_k), by Horner
            let mut tmp = 0u64;
            for j in (0..k).rev() {
                let (w, ws) = row[j];
                tmp = p.m.add(p.m.mul_shoup(tmp, w, ws), p.reduce_u64(v[j]));
            }
            let (w, ws) = self.inv_prefix[k];
            v[k] = p.m.mul_shoup(p.m.sub(x(k), tmp), w, ws);
        }
    }
}

/// A CKKS plaintext: an encoded polynomial in NTT form at some level and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Plaintext {
    pub(crate) poly: RnsPoly,
    pub(crate) level: usize,
    pub(crate) scale: f64,
    pub(crate) fingerprint: u64,
}

impl Plaintext {
    /// Bytes of the encoded polynomial.
    pub(crate) fn size_bytes(&self) -> usize {
        self.poly.data.len() * std::mem::size_of::<u64>()
    }
    /// Level (number of primes minus one).
    pub fn level(&self) -> usize {
        self.level
    }
    /// Scale Δ the values were multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// Encodes and decodes slot vectors.
#[derive(Debug, Clone)]
pub struct Encoder {
    ctx: Arc<ContextInner>,
}

impl Encoder {
    /// An encoder for this context.
    pub fn new(ctx: &CkksContext) -> Self {
        Self { ctx: ctx.inner.clone() }
    }

    /// Encodes real values (at most N/2) at `level` with scale `scale`.
    pub fn encode(&self, values: &[f64], level: usize, scale: f64) -> Result<Plaintext> {
        let z: Vec<Complex64> = values.iter().map(|&v| Complex64::new(v, 0.0)).collect();
        self.encode_complex(&z, level, scale)
    }

    /// Encodes complex values (at most N/2) at `level` with scale `scale`.
    pub fn encode_complex(&self, values: &[Complex64], level: usize, scale: f64) -> Result<Plaintext> {
        self.encode_complex_basis(values, level, scale, false)
    }

    /// [`Self::encode_complex`] over `Q_level ∪ P` when `with_p` (for products with ciphertext
    /// parts kept over the extended basis, see `Evaluator::bsgs_double_hoisted`).
    pub(crate) fn encode_complex_basis(
        &self,
        values: &[Complex64],
        level: usize,
        scale: f64,
        with_p: bool,
    ) -> Result<Plaintext> {
        let c = &self.ctx;
        check_level(level, c.params.max_level())?;
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(CkksError::InvalidScale { scale });
        }
        let n = c.ring.n;
        let slots = n / 2;
        if values.len() > slots {
            return Err(CkksError::TooManySlots { got: values.len(), slots });
        }
        if let Some(v) = values.iter().find(|v| !(v.re.is_finite() && v.im.is_finite())) {
            return Err(CkksError::EncodeOutOfRange { reason: format!("non-finite value {v}") });
        }
        let mut u = vec![Complex64::new(0.0, 0.0); slots];
        u.iter_mut().zip(values).for_each(|(d, s)| *d = *s);
        c.fft.fft_special_inv(&mut u);
        let mut coeffs = vec![0f64; n];
        let (lo, hi) = coeffs.split_at_mut(slots);
        for ((a, b), v) in lo.iter_mut().zip(hi.iter_mut()).zip(&u) {
            *a = (v.re * scale).round();
            *b = (v.im * scale).round();
        }
        let poly = self.coeffs_to_poly_basis(&coeffs, level, with_p)?;
        Ok(Plaintext { poly, level, scale, fingerprint: c.fingerprint })
    }

    /// Encodes real values at the level and scale of `ct`, ready for `add_plain`/`sub_plain`.
    pub fn encode_like(&self, values: &[f64], ct: &crate::keys::Ciphertext) -> Result<Plaintext> {
        self.ctx.check_fp(ct.fingerprint)?;
        self.encode(values, ct.level, ct.scale)
    }

    /// Rounded real coefficients → NTT-form RNS polynomial over `Q_level`.
    #[cfg(test)]
    pub(crate) fn coeffs_to_poly(&self, coeffs: &[f64], level: usize) -> Result<RnsPoly> {
        self.coeffs_to_poly_basis(coeffs, level, false)
    }

    /// [`Self::coeffs_to_poly`] over `Q_level ∪ P` when `with_p`.
    fn coeffs_to_poly_basis(&self, coeffs: &[f64], level: usize, with_p: bool) -> Result<RnsPoly> {
        let c = &self.ctx;
        let nq = level + 1;
        let log_q: f64 = c.params.moduli.iter().take(nq).map(|&q| (q as f64).log2()).sum();
        let max_abs = coeffs.iter().fold(0f64, |m, &x| m.max(x.abs()));
        if max_abs.log2() >= log_q - 1.0 {
            return Err(CkksError::EncodeOutOfRange {
                reason: format!(
                    "a coefficient of 2^{:.1} does not fit the modulus of 2^{log_q:.1} at level {level}",
                    max_abs.log2()
                ),
            });
        }
        let small = max_abs < 9.2e18; // < 2^63: i64 path
                                      // Every limb is overwritten: `coeffs` has N values (checked below).
        if coeffs.len() != c.ring.n {
            return Err(CkksError::Internal("coefficient vector of the wrong length"));
        }
        let mut poly = c.ring.stale(nq, with_p);
        for_limbs(&mut poly.data, c.ring.n, |t, limb| {
            let p = c.ring.limb_prime(t, nq);
            if small {
                for (o, &x) in limb.iter_mut().zip(coeffs) {
                    *o = p.reduce_i64(x as i64);
                }
            } else {
                for (o, &x) in limb.iter_mut().zip(coeffs) {
                    *o = reduce_f64_exact(x, p);
                }
            }
            p.ntt.forward(limb);
        });
        Ok(poly)
    }

    /// Decodes a plaintext into N/2 complex slots.
    pub fn decode_complex(&self, pt: &Plaintext) -> Result<Vec<Complex64>> {
        if pt.fingerprint != self.ctx.fingerprint {
            return Err(CkksError::ParamsMismatch { expected: self.ctx.fingerprint, found: pt.fingerprint });
        }
        let mut coef = pt.poly.clone();
        self.ctx.ring.ntt_inverse(&mut coef);
        let values = self.crt_to_f64(&coef)?;
        let slots = self.ctx.ring.n / 2;
        let (lo, hi) = values.split_at(slots);
        let inv = 1.0 / pt.scale;
        let mut u: Vec<Complex64> = lo.iter().zip(hi).map(|(&a, &b)| Complex64::new(a * inv, b * inv)).collect();
        self.ctx.fft.fft_special(&mut u);
        Ok(u)
    }

    /// Decodes a plaintext into N/2 real slots (imaginary parts dropped).
    pub fn decode(&self, pt: &Plaintext) -> Result<Vec<f64>> {
        Ok(self.decode_complex(pt)?.into_iter().map(|z| z.re).collect())
    }

    /// Centered CRT reconstruction of every coefficient as f64: Garner's mixed-radix digits, compared
    /// with those of `(Q-1)/2` to choose `x` or `x - Q` (the latter's digits are the complement
    /// of `x`'s plus one, so no cancellation happens), then Horner in f64.
    #[allow(clippy::indexing_slicing)] // k < nq ≤ table sizes; limbs have length n (checked)
    pub(crate) fn crt_to_f64(&self, coef: &RnsPoly) -> Result<Vec<f64>> {
        let c = &self.ctx;
        let n = c.ring.n;
        let nq = coef.nq;
        if coef.data.len() < nq * n || nq > c.ring.nq || nq == 0 {
            return Err(CkksError::Internal("crt input shape"));
        }
        let primes: Vec<&crate::ring::Prime> = (0..nq).map(|k| c.ring.limb_prime(k, nq)).collect();
        let tabs = &c.crt;
        let half = tabs.half.get(nq - 1).ok_or(CkksError::Internal("crt half table"))?;
        let mut out = vec![0f64; n];
        let mut v = vec![0u64; nq];
        for (i, o) in out.iter_mut().enumerate() {
            tabs.garner(&primes, |k| coef.data[k * n + i], &mut v);
            let neg = v.iter().rev().cmp(half.iter().rev()) == std::cmp::Ordering::Greater;
            if neg {
                // Q - x: digits (q_k - 1 - v_k), plus one with carry.
                let mut carry = 1u64;
                for (d, p) in v.iter_mut().zip(&primes) {
                    let w = p.q - 1 - *d + carry;
                    if w == p.q {
                        *d = 0;
                        carry = 1;
                    } else {
                        *d = w;
                        carry = 0;
                    }
                }
            }
            let mut val = 0f64;
            for k in (0..nq).rev() {
                val = val * primes[k].q as f64 + v[k] as f64;
            }
            *o = if neg { -val } else { val };
        }
        Ok(out)
    }
}

/// Exact reduction of an integral f64 of any magnitude modulo a prime.
fn reduce_f64_exact(x: f64, p: &crate::ring::Prime) -> u64 {
    if x.abs() < 9.2e18 {
        return p.reduce_i64(x as i64);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1075; // x = mant · 2^exp
    let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let r = p.m.mul(p.m.reduce(mant), p.m.pow(2, exp.max(0) as u64));
    if x < 0.0 {
        p.m.neg(r)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::CkksParams;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn ctx() -> &'static CkksContext {
        static C: OnceLock<CkksContext> = OnceLock::new();
        C.get_or_init(|| CkksContext::new(CkksParams::new(13, &[60, 40, 40], &[60], 3, 40).unwrap()).unwrap())
    }

    pub(crate) fn max_err(a: &[Complex64], b: &[Complex64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).norm()).fold(0.0, f64::max)
    }

    #[test]
    fn fft_roundtrip() {
        let t = FftTables::new(64);
        let v: Vec<Complex64> = (0..32).map(|i| Complex64::new(i as f64, -(i as f64) / 3.0)).collect();
        let mut w = v.clone();
        t.fft_special_inv(&mut w);
        t.fft_special(&mut w);
        assert!(max_err(&v, &w) < 1e-12);
    }

    #[test]
    fn encode_decode_precision_all_levels() {
        let enc = Encoder::new(ctx());
        let slots = ctx().params().slots();
        let z: Vec<Complex64> = (0..slots)
            .map(|i| Complex64::new(((i * 37) % 101) as f64 / 50.0 - 1.0, ((i * 11) % 7) as f64 / 7.0 - 0.5))
            .collect();
        for level in 0..=2 {
            let pt = enc.encode_complex(&z, level, 2f64.powi(40)).unwrap();
            let back = enc.decode_complex(&pt).unwrap();
            let err = max_err(&z, &back);
            // rounding error per coefficient ≤ 1/2, amplified by at most sqrt(N) in the embedding
            assert!(err < (ctx().params().n() as f64).sqrt() / 2f64.powi(40), "level {level}: {err}");
            assert!(-err.log2() > 30.0);
        }
    }

    #[test]
    fn encode_huge_coefficients_beyond_2_63() {
        // scale 2^100 at level 2 (Q ≈ 2^140): coefficients ≈ 2^100 use the exact f64 path.
        let enc = Encoder::new(ctx());
        let z = vec![Complex64::new(0.75, -0.25), Complex64::new(-3.0, 1.0)];
        let pt = enc.encode_complex(&z, 2, 2f64.powi(100)).unwrap();
        let back = enc.decode_complex(&pt).unwrap();
        assert!(max_err(&z, &back[..2]) < 1e-12);
        assert!(back[2..].iter().all(|v| v.norm() < 1e-12));
        // too large for level 0 (Q = 2^60)
        assert!(matches!(enc.encode_complex(&z, 0, 2f64.powi(100)), Err(CkksError::EncodeOutOfRange { .. })));
    }

    #[test]
    fn encoder_rejects_bad_input() {
        let enc = Encoder::new(ctx());
        assert!(matches!(enc.encode(&[f64::NAN], 0, 1e6), Err(CkksError::EncodeOutOfRange { .. })));
        assert!(matches!(
            enc.encode(&vec![0.0; 4097], 0, 1e6),
            Err(CkksError::TooManySlots { got: 4097, slots: 4096 })
        ));
        assert!(matches!(enc.encode(&[1.0], 3, 1e6), Err(CkksError::InvalidLevel { level: 3, .. })));
        assert!(matches!(enc.encode(&[1.0], 0, -1.0), Err(CkksError::InvalidScale { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn encode_decode_roundtrip(vals in proptest::collection::vec(-1000.0f64..1000.0, 1..64), level in 0usize..3) {
            let enc = Encoder::new(ctx());
            let pt = enc.encode(&vals, level, 2f64.powi(40)).unwrap();
            let back = enc.decode(&pt).unwrap();
            for (a, b) in vals.iter().zip(&back) {
                prop_assert!((a - b).abs() < 1e-7);
            }
        }

        #[test]
        fn crt_reconstruction_is_accurate(v in -(1i64 << 62)..(1i64 << 62), w in any::<i32>()) {
            // values well inside Q_2 ≈ 2^140 are reconstructed to within a few f64 ulps, signs included
            let c = ctx();
            let enc = Encoder::new(c);
            let mut coeffs = vec![0i64; c.params().n()];
            coeffs[0] = v; coeffs[1] = w as i64; coeffs[2] = -v;
            let p = c.inner.ring.from_i64(&coeffs, 3, false);
            let r = enc.crt_to_f64(&p).unwrap();
            let close = |a: f64, b: f64| (a - b).abs() <= b.abs() * 2f64.powi(-50);
            prop_assert!(close(r[0], v as f64), "{} vs {}", r[0], v);
            prop_assert_eq!(r[1], w as f64);
            prop_assert!(close(r[2], -(v as f64)));
        }
    }
}
