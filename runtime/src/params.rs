//! CKKS parameter sets: ring degree, modulus chain, special primes, digit count, scale.
//!
//! Contract:
//! - `log_n` is in `13..=16`; the ciphertext modulus is `Q = q_0 · … · q_L` (`L + 1 = q_bits.len()`
//!   primes, level `l` uses `q_0 … q_l`); the special modulus `P = p_0 · … · p_{K-1}` is used only
//!   inside hybrid key switching, whose `dnum` digits each hold `alpha = ceil((L+1)/dnum)` consecutive
//!   Q primes. `log2 P` must be at least the nominal bit size of the largest digit, otherwise key
//!   switching noise would swamp the message.
//! - Every prime is ≡ 1 (mod 2N) (NTT-friendly), distinct, and generated deterministically from the
//!   bit sizes: the first Q prime and the special primes are the largest primes below `2^bits`; the
//!   scaling primes `q_1 … q_L` alternate just below/above `2^bits`, so the scale after a chain of
//!   rescales drifts as little as possible from `2^log_scale`.
//! - `log2(QP)` (rounded up) must not exceed the HomomorphicEncryption.org 128-bit bound for ternary
//!   secrets: N=2^13: 218, 2^14: 438, 2^15: 881, 2^16: 1761; otherwise
//!   [`CkksError::InsecureParameters`].
//! - [`CkksParams::fingerprint`] is a SHA-256 over every field (including the generated primes); two
//!   parameter sets are interchangeable iff their fingerprints are equal.

use sha2::{Digest, Sha256};

use crate::error::{CkksError, Result};

/// Standard deviation of the discrete Gaussian error distribution.
pub const ERROR_STD_DEV: f64 = 3.2;

/// HomomorphicEncryption.org 128-bit classical security bound (ternary secret): max log2(QP) per log_n.
pub fn max_log_qp_128(log_n: u32) -> Option<u32> {
    match log_n {
        13 => Some(218),
        14 => Some(438),
        15 => Some(881),
        16 => Some(1761),
        _ => None,
    }
}

/// Which security bound a parameter set is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// The HomomorphicEncryption.org 128-bit classical bound ([`max_log_qp_128`]).
    #[default]
    Bits128,
    /// No bound at all (OpenFHE's `HEStd_NotSet`). Only for tests and experiments that need many
    /// levels at a small, fast ring degree: such keys protect nothing. It is part of the
    /// fingerprint and of the serialized parameters, so it never mixes with secure sets.
    NotSet,
}

impl Security {
    pub(crate) fn code(self) -> u32 {
        match self {
            Security::Bits128 => 128,
            Security::NotSet => 0,
        }
    }
    pub(crate) fn from_code(code: u32) -> Option<Self> {
        match code {
            128 => Some(Security::Bits128),
            0 => Some(Security::NotSet),
            _ => None,
        }
    }
}

/// A validated CKKS parameter set.
#[derive(Debug, Clone, PartialEq)]
pub struct CkksParams {
    pub(crate) log_n: u32,
    /// Nominal bit sizes of the Q chain (kept for display and serialization).
    pub(crate) q_bits: Vec<u32>,
    /// Nominal bit sizes of the special primes.
    pub(crate) p_bits: Vec<u32>,
    /// The generated Q primes `q_0 … q_L`.
    pub(crate) moduli: Vec<u64>,
    /// The generated special primes `p_0 … p_{K-1}`.
    pub(crate) special: Vec<u64>,
    pub(crate) dnum: usize,
    pub(crate) log_scale: u32,
    /// `None`: uniform ternary secret; `Some(h)`: exactly `h` nonzero ±1 coefficients.
    pub(crate) hamming_weight: Option<usize>,
    pub(crate) error_std: f64,
    pub(crate) security: Security,
}

impl CkksParams {
    /// Builds and validates a parameter set, generating the primes deterministically.
    ///
    /// `q_bits = [first, scale × depth…]`, `p_bits` = special primes, `dnum` = number of key-switching
    /// digits (1 ≤ dnum ≤ min(q_bits.len(), 60)), default scale `2^log_scale`.
    pub fn new(log_n: u32, q_bits: &[u32], p_bits: &[u32], dnum: usize, log_scale: u32) -> Result<Self> {
        Self::new_with_security(log_n, q_bits, p_bits, dnum, log_scale, Security::Bits128)
    }

    /// [`Self::new`] checked against `security` instead of the 128-bit bound.
    pub fn new_with_security(
        log_n: u32,
        q_bits: &[u32],
        p_bits: &[u32],
        dnum: usize,
        log_scale: u32,
        security: Security,
    ) -> Result<Self> {
        let invalid = |reason: String| Err(CkksError::InvalidParameters { reason });
        if !(13..=16).contains(&log_n) {
            return invalid(format!("log_n = {log_n} must be in 13..=16"));
        }
        if q_bits.is_empty() {
            return invalid("the modulus chain q_bits is empty".into());
        }
        if p_bits.is_empty() {
            return invalid("at least one special prime is needed for key switching".into());
        }
        for &b in q_bits.iter().chain(p_bits) {
            if !(20..=60).contains(&b) {
                return invalid(format!("prime bit size {b} must be in 20..=60"));
            }
        }
        // ≤ 60 digits: the key-switching inner product sums β products < 2^122 in 128 bits.
        let max_dnum = q_bits.len().min(60);
        if !(1..=max_dnum).contains(&dnum) {
            return invalid(format!("dnum = {dnum} must be in 1..={max_dnum}"));
        }
        if !(1..=60).contains(&log_scale) {
            return invalid(format!("log_scale = {log_scale} must be in 1..=60"));
        }
        let alpha = q_bits.len().div_ceil(dnum);
        let max_digit_bits: u32 = q_bits.chunks(alpha).map(|c| c.iter().sum::<u32>()).max().unwrap_or(0);
        let p_total: u32 = p_bits.iter().sum();
        if p_total < max_digit_bits {
            return invalid(format!(
                "special primes ({p_total} bits) must cover the largest key-switching digit ({max_digit_bits} bits); raise dnum or add special primes"
            ));
        }
        // A chain whose bit sizes alone exceed the 128-bit bound is refused before its primes are
        // searched (every prime lies within a fraction of a bit of its size; parameter selection
        // probes hundreds of such chains for deep programs).
        if security == Security::Bits128 {
            let bits: u32 = q_bits.iter().chain(p_bits).sum();
            let max = max_log_qp_128(log_n).ok_or(CkksError::Internal("log_n validated above"))?;
            if bits > max + 1 {
                return Err(CkksError::InsecureParameters { log_n, log_qp: bits, max });
            }
        }
        let (moduli, special) = generate_primes(log_n, q_bits, p_bits)?;
        let params = Self {
            log_n,
            q_bits: q_bits.to_vec(),
            p_bits: p_bits.to_vec(),
            moduli,
            special,
            dnum,
            log_scale,
            hamming_weight: None,
            error_std: ERROR_STD_DEV,
            security,
        };
        params.check_security()?;
        Ok(params)
    }

    /// The benchmark/default shape: chain `[first_bits, scale_bits × depth]`, one special prime of
    /// `special_bits`, digits of one prime each when `dnum` is `None` (SEAL's layout).
    pub fn with_depth(
        log_n: u32,
        depth: usize,
        first_bits: u32,
        scale_bits: u32,
        special_bits: u32,
        dnum: Option<usize>,
    ) -> Result<Self> {
        Self::with_depth_and_security(log_n, depth, first_bits, scale_bits, special_bits, dnum, Security::Bits128)
    }

    /// [`Self::with_depth`] checked against `security`.
    pub fn with_depth_and_security(
        log_n: u32,
        depth: usize,
        first_bits: u32,
        scale_bits: u32,
        special_bits: u32,
        dnum: Option<usize>,
        security: Security,
    ) -> Result<Self> {
        let mut q_bits = vec![first_bits];
        q_bits.extend(std::iter::repeat_n(scale_bits, depth));
        let dnum = dnum.unwrap_or(q_bits.len());
        // With fewer digits each digit is wider: add special primes until P covers a digit.
        let alpha = q_bits.len().div_ceil(dnum.max(1));
        let max_digit_bits: u32 = q_bits.chunks(alpha).map(|c| c.iter().sum::<u32>()).max().unwrap_or(0);
        let k = max_digit_bits.div_ceil(special_bits).max(1) as usize;
        Self::new_with_security(log_n, &q_bits, &vec![special_bits; k], dnum, scale_bits, security)
    }

    /// Returns a copy using a sparse ternary secret with exactly `h` nonzero coefficients.
    pub fn with_hamming_weight(mut self, h: usize) -> Result<Self> {
        if h == 0 || h > self.n() {
            return Err(CkksError::InvalidParameters {
                reason: format!("hamming weight {h} must be in 1..={}", self.n()),
            });
        }
        self.hamming_weight = Some(h);
        Ok(self)
    }

    fn check_security(&self) -> Result<()> {
        if self.security == Security::NotSet {
            return Ok(());
        }
        let max = max_log_qp_128(self.log_n).ok_or(CkksError::Internal("log_n validated above"))?;
        let log_qp = self.log_qp().ceil() as u32;
        if log_qp > max {
            return Err(CkksError::InsecureParameters { log_n: self.log_n, log_qp, max });
        }
        Ok(())
    }

    /// log2 of the ring degree.
    pub fn log_n(&self) -> u32 {
        self.log_n
    }
    /// Ring degree N.
    pub fn n(&self) -> usize {
        1usize << self.log_n
    }
    /// Number of complex slots (N/2).
    pub fn slots(&self) -> usize {
        self.n() / 2
    }
    /// Highest level L (a fresh ciphertext's level).
    pub fn max_level(&self) -> usize {
        self.moduli.len() - 1
    }
    /// The Q primes.
    pub fn moduli(&self) -> &[u64] {
        &self.moduli
    }
    /// The special primes P.
    pub fn special_moduli(&self) -> &[u64] {
        &self.special
    }
    /// Nominal bit sizes of the Q chain.
    pub fn q_bits(&self) -> &[u32] {
        &self.q_bits
    }
    /// Nominal bit sizes of the special primes.
    pub fn p_bits(&self) -> &[u32] {
        &self.p_bits
    }
    /// Number of key-switching digits.
    pub fn dnum(&self) -> usize {
        self.dnum
    }
    /// Primes per digit.
    pub fn alpha(&self) -> usize {
        self.moduli.len().div_ceil(self.dnum)
    }
    /// Default scale Δ = 2^log_scale.
    pub fn default_scale(&self) -> f64 {
        (self.log_scale as f64).exp2()
    }
    /// log2 of Δ.
    pub fn log_scale(&self) -> u32 {
        self.log_scale
    }
    /// Sparse secret weight, if any.
    pub fn hamming_weight(&self) -> Option<usize> {
        self.hamming_weight
    }
    /// The security bound this set was checked against.
    pub fn security(&self) -> Security {
        self.security
    }
    /// Exact log2(Q·P).
    pub fn log_qp(&self) -> f64 {
        self.moduli.iter().chain(&self.special).map(|&q| (q as f64).log2()).sum()
    }

    /// SHA-256 over a canonical encoding of every field.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"polyhe-ckks-params-v1");
        h.update(self.log_n.to_le_bytes());
        for list in [&self.moduli, &self.special] {
            h.update((list.len() as u64).to_le_bytes());
            for q in list.iter() {
                h.update(q.to_le_bytes());
            }
        }
        for list in [&self.q_bits, &self.p_bits] {
            h.update((list.len() as u64).to_le_bytes());
            for b in list.iter() {
                h.update(b.to_le_bytes());
            }
        }
        h.update((self.dnum as u64).to_le_bytes());
        h.update(self.log_scale.to_le_bytes());
        h.update(self.hamming_weight.map_or(u64::MAX, |w| w as u64).to_le_bytes());
        h.update(self.error_std.to_bits().to_le_bytes());
        h.update(self.security.code().to_le_bytes());
        h.finalize().into()
    }

    /// First 8 bytes of [`Self::fingerprint`], stored in every ciphertext/key for cheap checks.
    pub fn fingerprint_u64(&self) -> u64 {
        let f = self.fingerprint();
        let mut b = [0u8; 8];
        b.copy_from_slice(f.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(b)
    }
}

/// Deterministic Miller–Rabin for u64 (these bases are exact below 2^64).
pub(crate) fn is_prime_u64(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mulm = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    let powm = |mut a: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mulm(r, a);
            }
            a = mulm(a, a);
            e >>= 1;
        }
        r
    };
    let d0 = n - 1;
    let s = d0.trailing_zeros();
    let d = d0 >> s;
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = powm(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulm(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// Generates the Q and P primes (see module docs for the rule).
fn generate_primes(log_n: u32, q_bits: &[u32], p_bits: &[u32]) -> Result<(Vec<u64>, Vec<u64>)> {
    let m = 2u64 << log_n; // 2N
    let mut used: Vec<u64> = Vec::new();
    let no_prime = |bits: u32| CkksError::InvalidParameters {
        reason: format!("not enough NTT-friendly {bits}-bit primes for N = 2^{log_n}"),
    };
    // Largest unused prime ≡ 1 mod 2N strictly below 2^bits.
    let below = |bits: u32, used: &[u64]| -> Option<u64> {
        let top = 1u64 << bits;
        let mut c = top - m + 1;
        while c > (1u64 << (bits - 1)) {
            if !used.contains(&c) && is_prime_u64(c) {
                return Some(c);
            }
            c -= m;
        }
        None
    };
    // Smallest unused prime ≡ 1 mod 2N above 2^bits (at most bits+1 bits).
    let above = |bits: u32, used: &[u64]| -> Option<u64> {
        let top = 1u64 << bits;
        let mut c = top + 1;
        while c < (1u64 << (bits + 1)) {
            if !used.contains(&c) && is_prime_u64(c) {
                return Some(c);
            }
            c += m;
        }
        None
    };
    let mut moduli = Vec::with_capacity(q_bits.len());
    for (i, &b) in q_bits.iter().enumerate() {
        // Scaling primes alternate below/above 2^b so their product tracks 2^(b·k).
        let q = if i == 0 || i % 2 == 1 { below(b, &used) } else { above(b, &used).or_else(|| below(b, &used)) };
        let q = q.ok_or_else(|| no_prime(b))?;
        used.push(q);
        moduli.push(q);
    }
    let mut special = Vec::with_capacity(p_bits.len());
    for &b in p_bits {
        let p = below(b, &used).ok_or_else(|| no_prime(b))?;
        used.push(p);
        special.push(p);
    }
    Ok((moduli, special))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_ntt_friendly_distinct_and_deterministic() {
        let p = CkksParams::with_depth(14, 5, 60, 40, 60, None).unwrap();
        let again = CkksParams::with_depth(14, 5, 60, 40, 60, None).unwrap();
        assert_eq!(p.moduli, again.moduli);
        assert_eq!(p.fingerprint(), again.fingerprint());
        let all: Vec<u64> = p.moduli.iter().chain(&p.special).copied().collect();
        for (i, &q) in all.iter().enumerate() {
            assert!(is_prime_u64(q));
            assert_eq!(q % (2 << 14), 1);
            assert!(!all[..i].contains(&q));
        }
        assert_eq!(p.moduli.len(), 6);
        assert_eq!(p.special.len(), 1);
        for &q in &p.moduli[1..] {
            assert!(((q as f64).log2() - 40.0).abs() < 1e-3);
        }
    }

    #[test]
    fn security_table_rejects_too_large_modulus() {
        // 60 + 40*5 + 60 = 320 > 218 at N = 2^13.
        match CkksParams::with_depth(13, 5, 60, 40, 60, None) {
            Err(CkksError::InsecureParameters { log_n: 13, log_qp, max: 218 }) => assert!(log_qp >= 320),
            other => panic!("expected InsecureParameters, got {other:?}"),
        }
        assert!(CkksParams::with_depth(14, 5, 60, 40, 60, None).is_ok());
        // 2^16 boundary: 1761 bits allowed.
        assert!(CkksParams::with_depth(16, 35, 60, 40, 60, Some(12)).is_ok());
        assert!(matches!(
            CkksParams::with_depth(16, 45, 60, 40, 60, Some(3)),
            Err(CkksError::InsecureParameters { log_n: 16, .. })
        ));
    }

    #[test]
    fn not_set_security_admits_large_chains_at_small_n() {
        // 60 + 40*30 + 60 bits at N = 2^13 is far beyond 218 bits: refused at 128 bits, built when unset.
        assert!(CkksParams::with_depth(13, 30, 60, 40, 60, Some(4)).is_err());
        let p = CkksParams::with_depth_and_security(13, 30, 60, 40, 60, Some(4), Security::NotSet).unwrap();
        assert_eq!(p.max_level(), 30);
        assert_eq!(p.security(), Security::NotSet);
    }

    #[test]
    fn invalid_shapes_are_errors() {
        assert!(matches!(CkksParams::new(12, &[60], &[60], 1, 40), Err(CkksError::InvalidParameters { .. })));
        assert!(matches!(CkksParams::new(14, &[], &[60], 1, 40), Err(CkksError::InvalidParameters { .. })));
        assert!(matches!(CkksParams::new(14, &[60, 40], &[60], 3, 40), Err(CkksError::InvalidParameters { .. })));
        // one digit of 100 bits cannot be covered by a 60-bit P
        assert!(matches!(CkksParams::new(14, &[60, 40], &[60], 1, 40), Err(CkksError::InvalidParameters { .. })));
        assert!(CkksParams::new(14, &[60, 40], &[60, 50], 1, 40).is_ok());
    }

    #[test]
    fn fingerprint_covers_every_field() {
        let a = CkksParams::with_depth(14, 3, 60, 40, 60, None).unwrap();
        let b = CkksParams::with_depth(14, 3, 60, 40, 60, Some(2)).unwrap();
        let c = a.clone().with_hamming_weight(64).unwrap();
        let d = CkksParams::with_depth(14, 3, 60, 40, 60, None).unwrap();
        let e = CkksParams::with_depth_and_security(14, 3, 60, 40, 60, None, Security::NotSet).unwrap();
        assert_ne!(a.fingerprint(), e.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint_u64(), d.fingerprint_u64());
    }

    #[test]
    fn miller_rabin_matches_trial_division() {
        for n in 0u64..5000 {
            let naive = n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0);
            assert_eq!(is_prime_u64(n), naive, "{n}");
        }
        assert!(is_prime_u64((1u64 << 61) - 1)); // Mersenne prime
        assert!(!is_prime_u64(((1u64 << 31) - 1) * ((1u64 << 31) - 1)));
    }
}
