//! Key material, encryption and decryption.
//!
//! Contract:
//! - The secret key is a ternary polynomial (uniform in {-1,0,1}, or exactly `h` nonzero ±1 entries
//!   when the parameters ask for a sparse secret). It lives only inside [`ClientKeys`] /
//!   [`SecretKey`]; the server side gets [`EvaluationKeys`] (relinearization + Galois keys), which hold
//!   no secret and from which the [`crate::Evaluator`] cannot reach one.
//! - Key-switching keys use hybrid key switching with the special modulus `P` and `dnum` digits: for a
//!   source key `s'` digit `j` is `(b_j, a_j)` over `Q ∪ P` with `b_j = -a_j·s + e_j + P·s'` on the
//!   digit's primes (and `-a_j·s + e_j` elsewhere); this is `P·(Q/Q_j)·[(Q/Q_j)^{-1}]_{Q_j}·s'` in CRT
//!   form, valid at every level because the digits of a lower level are prefixes of these.
//! - Galois keys are indexed by Galois element: `5^k mod 2N` rotates slots left by `k`, `2N-1`
//!   conjugates. The key for `g` (switching `σ_g(s)` to `s`) is stored with `σ_g^{-1}` applied to
//!   every polynomial, so the evaluator permutes only its two outputs, never the digits.
//! - Public-key encryption: `(v·b + e_0, v·a + e_1)` over `Q_l ∪ P`, divided by `P` (ModDown), plus
//!   `m` on the first component, with ternary `v`; secret-key encryption:
//!   `(-a·s + e + m, a)` with uniform `a`. Errors are rounded Gaussians with σ = 3.2 cut at 6σ.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{CryptoRng, Rng};

use crate::context::{check_level, CkksContext, ContextInner};
use crate::encoder::Plaintext;
use crate::error::{CkksError, Result};
use crate::ring::{for_limbs, RingContext, RnsPoly};

/// A ciphertext: 2 polynomials (3 after a multiplication without relinearization) in NTT form.
#[derive(Debug, Clone, PartialEq)]
pub struct Ciphertext {
    pub(crate) polys: Vec<RnsPoly>,
    pub(crate) level: usize,
    pub(crate) scale: f64,
    pub(crate) fingerprint: u64,
}

impl Ciphertext {
    /// Current level.
    pub fn level(&self) -> usize {
        self.level
    }
    /// Current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// Number of polynomials (2, or 3 before relinearization).
    pub fn degree(&self) -> usize {
        self.polys.len()
    }
    /// Overrides the tracked scale (for hosts that manage scales themselves, e.g. after
    /// multiplying by a constant they encoded with a known factor).
    pub fn set_scale(&mut self, scale: f64) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(CkksError::InvalidScale { scale });
        }
        self.scale = scale;
        Ok(())
    }
}

/// The secret key (client only).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretKey {
    /// Ternary coefficients.
    pub(crate) coeffs: Vec<i8>,
    /// NTT form over the full `Q ∪ P`.
    pub(crate) poly: RnsPoly,
    pub(crate) fingerprint: u64,
}

/// The public encryption key `(b, a) = (-a·s + e, a)` over `Q ∪ P` (NTT form).
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    pub(crate) b: RnsPoly,
    pub(crate) a: RnsPoly,
    pub(crate) fingerprint: u64,
}

/// One hybrid key-switching key: `dnum` pairs over `Q ∪ P` (NTT form), or a level-restricted one:
/// the digits and `Q` limbs of levels `0..=l` only (see [`KeySwitchKey::restricted`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeySwitchKey {
    pub(crate) b: Vec<RnsPoly>,
    pub(crate) a: Vec<RnsPoly>,
}

impl KeySwitchKey {
    /// The key for ciphertexts at levels `0..=level` only: the `Q` limbs above and the digits
    /// that cover only them dropped. Each RNS limb of a key is independent and a digit's gadget
    /// factor is `P` on its own limbs and 0 elsewhere, so the kept limbs are exactly the full
    /// key's — a key switch at level `≤ level` gives the same result, from a key a fraction of the
    /// size (a rotation used only in a bootstrapped program's 9 compute levels of a 25-level
    /// chain needs 3 of 7 digits over 14 of 29 limbs).
    pub(crate) fn restricted(&self, ring: &crate::ring::RingContext, level: usize) -> KeySwitchKey {
        let nq = level + 1;
        if nq >= ring.nq {
            return self.clone();
        }
        let digits = ring.key_digits(nq, self.b.len());
        let cut = |p: &RnsPoly| {
            if p.nq <= nq {
                return p.clone();
            }
            let n = ring.n;
            let mut data = Vec::with_capacity((nq + ring.np) * n);
            data.extend_from_slice(p.data.get(..nq * n).unwrap_or(&[]));
            data.extend_from_slice(p.data.get(p.nq * n..).unwrap_or(&[]));
            RnsPoly { data, nq, with_p: p.with_p }
        };
        KeySwitchKey {
            b: self.b.iter().take(digits).map(cut).collect(),
            a: self.a.iter().take(digits).map(cut).collect(),
        }
    }

    /// Number of `Q` limbs the key holds (`level + 1`).
    pub(crate) fn q_limbs(&self) -> usize {
        self.b.first().map_or(0, |p| p.nq)
    }
}

/// Public evaluation keys handed to the server: relinearization and Galois keys.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationKeys {
    pub(crate) relin: Option<KeySwitchKey>,
    /// Galois element → key.
    pub(crate) galois: BTreeMap<u64, KeySwitchKey>,
    pub(crate) fingerprint: u64,
}

impl EvaluationKeys {
    /// Bytes of the keys' polynomials (what the evaluator holds in memory).
    pub fn key_bytes(&self) -> usize {
        self.relin
            .iter()
            .chain(self.galois.values())
            .flat_map(|k| k.b.iter().chain(&k.a))
            .map(|p| p.data.len() * 8)
            .sum()
    }

    /// Whether a relinearization key is present.
    pub fn has_relin(&self) -> bool {
        self.relin.is_some()
    }
    /// Galois elements with a key, in increasing order.
    pub fn galois_elements(&self) -> Vec<u64> {
        self.galois.keys().copied().collect()
    }
    /// Fingerprint of the parameters these keys belong to.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// Galois element of a left rotation by `step` slots (negative = right).
pub fn rotation_galois_element(log_n: u32, step: i64) -> u64 {
    let n = 1u64 << log_n;
    let slots = n / 2;
    let k = step.rem_euclid(slots as i64) as u64;
    let two_n = 2 * n;
    let mut g = 1u64;
    let mut base = 5u64;
    let mut e = k;
    while e > 0 {
        if e & 1 == 1 {
            g = g * base % two_n;
        }
        base = base * base % two_n;
        e >>= 1;
    }
    g
}

/// Inverse of an odd `g` modulo a power of two.
fn mod_inverse_pow2(g: u64, modulus: u64) -> Option<u64> {
    if g.is_multiple_of(2) {
        return None;
    }
    // Newton iteration: x ← x(2 − g·x) doubles the number of correct low bits.
    let mut x: u64 = 1;
    for _ in 0..7 {
        x = x.wrapping_mul(2u64.wrapping_sub(g.wrapping_mul(x)));
    }
    Some(x & (modulus - 1))
}

/// Galois element of complex conjugation.
pub fn conjugation_galois_element(log_n: u32) -> u64 {
    (2u64 << log_n) - 1
}

/// The client's keys: secret key, public key, and the means to make evaluation keys.
#[derive(Debug, Clone)]
pub struct ClientKeys {
    pub(crate) ctx: Arc<ContextInner>,
    pub(crate) secret: SecretKey,
    pub(crate) public: PublicKey,
}

// ---------------------------------------------------------------- sampling

fn sample_ternary<R: Rng + ?Sized>(n: usize, hw: Option<usize>, rng: &mut R) -> Vec<i64> {
    match hw {
        None => (0..n).map(|_| rng.random_range(0..3i64) - 1).collect(),
        Some(h) => {
            let mut idx: Vec<usize> = (0..n).collect();
            let mut out = vec![0i64; n];
            for i in 0..h.min(n) {
                let j = rng.random_range(i..n);
                idx.swap(i, j);
                if let Some(&pos) = idx.get(i) {
                    if let Some(o) = out.get_mut(pos) {
                        *o = if rng.random::<bool>() { 1 } else { -1 };
                    }
                }
            }
            out
        }
    }
}

/// Discrete Gaussian `D_{Z,σ}` cut at 6σ, by inversion of its cumulative table (one u64 draw and
/// a binary search per sample; much cheaper than Box–Muller's transcendental functions).
fn sample_gaussian<R: Rng + ?Sized>(n: usize, sigma: f64, rng: &mut R) -> Vec<i64> {
    let bound = (6.0 * sigma).ceil() as i64;
    let weights: Vec<f64> = (-bound..=bound).map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    // thresholds[j] = P(X ≤ j - bound) · 2^64; the last one is dropped (everything above maps to +bound)
    let thresholds: Vec<u64> = weights
        .iter()
        .take(weights.len().saturating_sub(1))
        .map(|w| {
            acc += w;
            (acc / total * 18_446_744_073_709_551_616.0).min(u64::MAX as f64) as u64
        })
        .collect();
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            thresholds.partition_point(|&t| t <= r) as i64 - bound
        })
        .collect()
}

fn sample_uniform<R: Rng + ?Sized>(ring: &RingContext, nq: usize, with_p: bool, rng: &mut R) -> RnsPoly {
    let mut p = ring.zero(nq, with_p);
    // Sequential on purpose: the RNG stream must not depend on the thread count.
    for (t, limb) in p.data.chunks_exact_mut(ring.n).enumerate() {
        let q = ring.limb_prime(t, nq).q;
        limb.iter_mut().for_each(|x| *x = rng.random_range(0..q));
    }
    p
}

fn small_ntt(ring: &RingContext, coeffs: &[i64], nq: usize, with_p: bool) -> RnsPoly {
    let mut p = ring.from_i64(coeffs, nq, with_p);
    ring.ntt_forward(&mut p);
    p
}

impl ClientKeys {
    /// Generates a secret and public key with the thread-local CSPRNG.
    pub fn generate(ctx: &CkksContext) -> Result<Self> {
        Self::generate_with_rng(ctx, &mut rand::rng())
    }

    /// Generates a secret and public key from the given cryptographic RNG (deterministic for a seeded
    /// RNG, whatever the thread count).
    pub fn generate_with_rng<R: Rng + CryptoRng + ?Sized>(ctx: &CkksContext, rng: &mut R) -> Result<Self> {
        let c = &ctx.inner;
        let ring = &c.ring;
        let s = sample_ternary(ring.n, c.params.hamming_weight, rng);
        let poly = small_ntt(ring, &s, ring.nq, true);
        let coeffs = s.iter().map(|&v| v as i8).collect();
        let secret = SecretKey { coeffs, poly, fingerprint: c.fingerprint };
        // Over Q ∪ P, so encryption can divide its noise by P (see `Encryptor`).
        let a = sample_uniform(ring, ring.nq, true, rng);
        let e = small_ntt(ring, &sample_gaussian(ring.n, c.params.error_std, rng), ring.nq, true);
        let mut b = ring.mul(&a, &secret.poly);
        ring.neg_assign(&mut b);
        ring.add_assign(&mut b, &e);
        let public = PublicKey { b, a, fingerprint: c.fingerprint };
        Ok(Self { ctx: c.clone(), secret, public })
    }

    /// The secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.secret
    }
    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Builds evaluation keys: relinearization, one Galois key per rotation step (negative = right),
    /// and the conjugation key if asked.
    pub fn evaluation_keys(&self, rotations: &[i64], conjugation: bool) -> Result<EvaluationKeys> {
        self.evaluation_keys_with_rng(rotations, conjugation, &mut rand::rng())
    }

    /// [`Self::evaluation_keys`] with an explicit RNG.
    /// Evaluation keys with each rotation's key restricted to the levels it is used at
    /// (`(step, highest level)`, e.g. [`crate::Program::rotation_key_levels`]); the
    /// relinearization and conjugation keys cover every level. A rotation at a level above its
    /// key fails with [`CkksError::KeyBelowLevel`].
    pub fn evaluation_keys_at_levels(&self, rotations: &[(i64, usize)], conjugation: bool) -> Result<EvaluationKeys> {
        self.evaluation_keys_at_levels_with_rng(rotations, conjugation, &mut rand::rng())
    }

    /// [`Self::evaluation_keys_at_levels`] with an explicit RNG.
    pub fn evaluation_keys_at_levels_with_rng<R: Rng + CryptoRng + ?Sized>(
        &self,
        rotations: &[(i64, usize)],
        conjugation: bool,
        rng: &mut R,
    ) -> Result<EvaluationKeys> {
        let log_n = self.ctx.params.log_n;
        let steps: Vec<i64> = rotations.iter().map(|r| r.0).collect();
        let mut keys = self.evaluation_keys_with_rng(&steps, conjugation, rng)?;
        // The highest level per Galois element (steps equal mod N/2 share one key).
        let mut level: BTreeMap<u64, usize> = BTreeMap::new();
        for &(k, l) in rotations {
            let e = level.entry(rotation_galois_element(log_n, k)).or_insert(0);
            *e = (*e).max(l);
        }
        let conj = conjugation.then(|| conjugation_galois_element(log_n));
        for (g, key) in keys.galois.iter_mut() {
            if let (Some(&l), false) = (level.get(g), Some(*g) == conj) {
                *key = key.restricted(&self.ctx.ring, l);
            }
        }
        Ok(keys)
    }

    pub fn evaluation_keys_with_rng<R: Rng + CryptoRng + ?Sized>(
        &self,
        rotations: &[i64],
        conjugation: bool,
        rng: &mut R,
    ) -> Result<EvaluationKeys> {
        let ring = &self.ctx.ring;
        let s2 = ring.mul(&self.secret.poly, &self.secret.poly);
        let relin = Some(self.switch_key(&s2, rng)?);
        let log_n = self.ctx.params.log_n;
        let mut elements: Vec<u64> =
            rotations.iter().map(|&k| rotation_galois_element(log_n, k)).filter(|&g| g != 1).collect();
        if conjugation {
            elements.push(conjugation_galois_element(log_n));
        }
        elements.sort_unstable();
        elements.dedup();
        let mut galois = BTreeMap::new();
        let two_n = 2u64 << log_n;
        for g in elements {
            let perm = ring.galois_perm(g);
            let sg = ring.permute(&self.secret.poly, &perm);
            let key = self.switch_key(&sg, rng)?;
            // Stored as σ_g^{-1}(key): the evaluator computes Σ d_j·σ^{-1}(k_j) = σ^{-1}(Σ σ(d_j)·k_j)
            // and applies σ once to the two outputs instead of to every digit.
            let g_inv = mod_inverse_pow2(g, two_n).ok_or(CkksError::Internal("even Galois element"))?;
            let inv_perm = ring.galois_perm(g_inv);
            let b = key.b.iter().map(|p| ring.permute(p, &inv_perm)).collect();
            let a = key.a.iter().map(|p| ring.permute(p, &inv_perm)).collect();
            galois.insert(g, KeySwitchKey { b, a });
        }
        Ok(EvaluationKeys { relin, galois, fingerprint: self.ctx.fingerprint })
    }

    /// Key-switching key from `s_from` (NTT, full Q∪P) to the secret key.
    fn switch_key<R: Rng + CryptoRng + ?Sized>(&self, s_from: &RnsPoly, rng: &mut R) -> Result<KeySwitchKey> {
        let ring = &self.ctx.ring;
        let n = ring.n;
        let dnum = self.ctx.params.dnum;
        let alpha = ring.alpha;
        let mut bs = Vec::with_capacity(dnum);
        let mut as_ = Vec::with_capacity(dnum);
        for j in 0..dnum {
            let a = sample_uniform(ring, ring.nq, true, rng);
            let e = small_ntt(ring, &sample_gaussian(n, self.ctx.params.error_std, rng), ring.nq, true);
            let mut b = ring.mul(&a, &self.secret.poly);
            ring.neg_assign(&mut b);
            ring.add_assign(&mut b, &e);
            let digit = j * alpha..((j + 1) * alpha).min(ring.nq);
            for_limbs(&mut b.data, n, |t, limb| {
                if !digit.contains(&t) {
                    return;
                }
                let p = ring.limb_prime(t, ring.nq);
                let pm = ring.p_mod_q.get(t).copied().unwrap_or(0);
                let (w, ws) = p.shoup_pair(pm);
                let src = s_from.data.get(t * n..(t + 1) * n).unwrap_or(&[]);
                for (x, &y) in limb.iter_mut().zip(src) {
                    *x = p.m.add(*x, p.m.mul_shoup(y, w, ws));
                }
            });
            bs.push(b);
            as_.push(a);
        }
        Ok(KeySwitchKey { b: bs, a: as_ })
    }

    /// Public-key encryptor.
    pub fn encryptor(&self) -> Encryptor {
        Encryptor { ctx: self.ctx.clone(), pk: self.public.clone() }
    }

    /// Secret-key (symmetric) encryption of a plaintext at its level.
    pub fn encrypt_symmetric(&self, pt: &Plaintext) -> Result<Ciphertext> {
        self.encrypt_symmetric_with_rng(pt, &mut rand::rng())
    }

    /// [`Self::encrypt_symmetric`] with an explicit RNG.
    pub fn encrypt_symmetric_with_rng<R: Rng + CryptoRng + ?Sized>(
        &self,
        pt: &Plaintext,
        rng: &mut R,
    ) -> Result<Ciphertext> {
        let c = &self.ctx;
        c.check_fp(pt.fingerprint)?;
        let ring = &c.ring;
        let nq = pt.level + 1;
        let a = sample_uniform(ring, nq, false, rng);
        let e = small_ntt(ring, &sample_gaussian(ring.n, c.params.error_std, rng), nq, false);
        let mut c0 = ring.mul(&a, &self.secret.poly);
        ring.neg_assign(&mut c0);
        ring.add_assign(&mut c0, &e);
        ring.add_assign(&mut c0, &pt.poly);
        Ok(Ciphertext { polys: vec![c0, a], level: pt.level, scale: pt.scale, fingerprint: c.fingerprint })
    }

    /// Decrypts to a plaintext (decode it with [`crate::Encoder`]).
    pub fn decrypt(&self, ct: &Ciphertext) -> Result<Plaintext> {
        let c = &self.ctx;
        c.check_fp(ct.fingerprint)?;
        let ring = &c.ring;
        let mut polys = ct.polys.iter();
        let mut m = polys.next().ok_or(CkksError::Internal("empty ciphertext"))?.clone();
        let mut s_pow = self.secret.poly.clone();
        for (i, ci) in polys.enumerate() {
            if i > 0 {
                ring.mul_matching_assign(&mut s_pow, &self.secret.poly);
            }
            ring.mul_add_assign(&mut m, ci, &s_pow);
        }
        Ok(Plaintext { poly: m, level: ct.level, scale: ct.scale, fingerprint: c.fingerprint })
    }
}

/// Public-key encryption.
#[derive(Debug, Clone)]
pub struct Encryptor {
    ctx: Arc<ContextInner>,
    pk: PublicKey,
}

impl Encryptor {
    /// An encryptor from a public key (checks it belongs to `ctx`).
    pub fn new(ctx: &CkksContext, pk: PublicKey) -> Result<Self> {
        ctx.inner.check_fp(pk.fingerprint)?;
        Ok(Self { ctx: ctx.inner.clone(), pk })
    }

    /// Encrypts a plaintext at its level with the thread-local CSPRNG.
    pub fn encrypt(&self, pt: &Plaintext) -> Result<Ciphertext> {
        self.encrypt_with_rng(pt, &mut rand::rng())
    }

    /// Encrypts a plaintext at its level.
    pub fn encrypt_with_rng<R: Rng + CryptoRng + ?Sized>(&self, pt: &Plaintext, rng: &mut R) -> Result<Ciphertext> {
        let c = &self.ctx;
        c.check_fp(pt.fingerprint)?;
        check_level(pt.level, c.params.max_level())?;
        let ring = &c.ring;
        let nq = pt.level + 1;
        let n = ring.n;
        // Encrypt zero over Q_l ∪ P and divide by P (ModDown): the noise v·e + e_0 + e_1·s shrinks
        // by P and only the rounding noise (≈ r_0 + r_1·s) remains, as in SEAL.
        // The errors are added inside the ModDown, in the coefficient domain (no NTT of e_0, e_1).
        let v = small_ntt(ring, &sample_ternary(n, None, rng), nq, true);
        let e0 = sample_gaussian(n, c.params.error_std, rng);
        let e1 = sample_gaussian(n, c.params.error_std, rng);
        let c0 = ring.mul(&v, &self.pk.b);
        let c1 = ring.mul(&v, &self.pk.a);
        let mut c0 = ring.mod_down_with_error(c0, Some(&e0))?;
        let c1 = ring.mod_down_with_error(c1, Some(&e1))?;
        ring.add_assign(&mut c0, &pt.poly);
        Ok(Ciphertext { polys: vec![c0, c1], level: pt.level, scale: pt.scale, fingerprint: c.fingerprint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gaussian_sampler_has_the_right_moments() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let v = sample_gaussian(200_000, 3.2, &mut rng);
        let mean = v.iter().sum::<i64>() as f64 / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var.sqrt() - 3.2).abs() < 0.03, "std {}", var.sqrt());
        assert!(v.iter().all(|x| x.abs() <= 20));
    }

    #[test]
    fn ternary_and_sparse_secrets() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let t = sample_ternary(8192, None, &mut rng);
        assert!(t.iter().all(|x| (-1..=1).contains(x)));
        let zeros = t.iter().filter(|&&x| x == 0).count();
        assert!((2400..3100).contains(&zeros), "{zeros}");
        let s = sample_ternary(8192, Some(64), &mut rng);
        assert_eq!(s.iter().filter(|&&x| x != 0).count(), 64);
    }

    #[test]
    fn galois_inverse() {
        for g in [5u64, 25, 3, 16383] {
            let inv = mod_inverse_pow2(g, 16384).unwrap();
            assert_eq!(g * inv % 16384, 1);
        }
        assert_eq!(mod_inverse_pow2(4, 16384), None);
    }
}
