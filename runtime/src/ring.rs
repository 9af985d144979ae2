//! RNS polynomial layer over `Z_Q[X]/(X^N + 1)` on top of fhe-math's `zq::Modulus` (Barrett/Shoup
//! arithmetic) and `ntt::NttOperator` (compiled with fhe-math's `tfhe-ntt` feature, so every transform
//! is tfhe-ntt's AVX2 negacyclic NTT).
//!
//! Why not fhe-math's `rq::Poly`: CKKS key switching needs polynomials over changing bases (`Q_l`,
//! `Q_l ∪ P`, digit sub-bases), an approximate ModUp/ModDown that only transforms the limbs that
//! change, fused lazy multiply-accumulate over digits, and automorphisms applied as index gathers
//! inside that accumulation (hoisting). `rq::Context` fixes one basis per context and every `Poly`
//! operation allocates; switching contexts would copy whole polynomials. So this module keeps a flat
//! limb-major `Vec<u64>` and uses fhe-math only for the per-prime arithmetic and the NTT.
//!
//! Contract:
//! - An [`RnsPoly`] over basis `(nq, with_p)` holds `nq` limbs for `q_0 … q_{nq-1}` followed, when
//!   `with_p`, by one limb per special prime; limb `t` is `data[t·N .. (t+1)·N]`, every value reduced.
//! - The NTT order is tfhe-ntt's; slot `j` evaluates at `ψ^{e_j}`. The exponents `e_j` are measured
//!   at construction (transforming `X`) and checked to be identical for every prime, so one index
//!   permutation per Galois element serves all limbs ([`RingContext::galois_perm`]).
//! - Limb-parallel loops use rayon only when the current pool has more than one thread; every limb is
//!   computed by the same code either way, so results are bit-identical for any thread count.

use std::collections::HashMap;

use fhe_math::ntt::NttOperator;
use fhe_math::zq::Modulus;
use rayon::prelude::*;

use crate::error::{CkksError, Result};
use crate::params::CkksParams;

/// One RNS prime with its arithmetic and NTT.
#[derive(Debug, Clone)]
pub(crate) struct Prime {
    pub(crate) q: u64,
    pub(crate) m: Modulus,
    pub(crate) ntt: NttOperator,
    /// `floor((2^64 - 1) / q)` for the one-multiplication Barrett reduction of a u64.
    ratio: u64,
    /// Bit length `k` of `q` and `floor(2^(2k+1) / q)` for the Barrett reduction of products
    /// ([`Barrett`]).
    k: u32,
    mu: u64,
}

impl Prime {
    fn new(q: u64, n: usize) -> Result<Self> {
        let m = Modulus::new(q)
            .map_err(|_| CkksError::InvalidParameters { reason: format!("{q} is not a valid modulus") })?;
        let ntt = NttOperator::new(&m, n).ok_or_else(|| CkksError::InvalidParameters {
            reason: format!("{q} does not support an NTT of size {n}"),
        })?;
        let k = 64 - q.leading_zeros();
        // Params allow 20..=60-bit primes (possibly just above 2^60); Barrett needs 3 ≤ k ≤ 61.
        if !(3..=61).contains(&k) {
            return Err(CkksError::InvalidParameters {
                reason: format!("prime {q} has {k} bits; 3..=61 are supported"),
            });
        }
        let mu = ((1u128 << (2 * k + 1)) / q as u128) as u64;
        Ok(Self { q, m, ntt, ratio: u64::MAX / q, k, mu })
    }
    /// The Barrett constants for `a·b mod q` (three multiplications; fhe-math's `reduce_u128` takes
    /// six), by value, for inner loops (so they stay in registers).
    #[inline(always)]
    pub(crate) fn barrett(&self) -> Barrett {
        Barrett { q: self.q, k: self.k, mu: self.mu << (61 - self.k) }
    }
    /// `x mod q` for any u64 (variable time; ciphertext data only). With `ratio = floor(2^64/q)`
    /// the quotient estimate is short by at most 1, so one conditional subtraction suffices.
    #[inline]
    pub(crate) fn reduce_u64(&self, x: u64) -> u64 {
        let qt = ((x as u128 * self.ratio as u128) >> 64) as u64;
        csub(x.wrapping_sub(qt.wrapping_mul(self.q)), self.q)
    }
    /// `(w, shoup(w))` for repeated multiplication by a constant.
    pub(crate) fn shoup_pair(&self, w: u64) -> (u64, u64) {
        (w, self.m.shoup(w))
    }
    /// Reduces a signed integer into `[0, q)`.
    pub(crate) fn reduce_i64(&self, v: i64) -> u64 {
        let r = self.reduce_u64(v.unsigned_abs());
        if v < 0 {
            self.m.neg(r)
        } else {
            r
        }
    }
    /// Reduces a signed 128-bit integer into `[0, q)`.
    pub(crate) fn reduce_i128(&self, v: i128) -> u64 {
        let r = self.m.reduce_u128(v.unsigned_abs());
        if v < 0 {
            self.m.neg(r)
        } else {
            r
        }
    }
    pub(crate) fn inv(&self, a: u64) -> Result<u64> {
        self.m.inv(self.m.reduce(a)).ok_or(CkksError::Internal("non-invertible value modulo a prime"))
    }
}

/// Barrett reduction of a product by a `k`-bit prime `q` (3 ≤ k ≤ 61), one multiplication
/// cheaper than fhe-math's `reduce_u128` path and with a single correction. For `x = a·b < q²`,
/// the estimate `e = floor(floor(x / 2^(k-2)) · mu / 2^(k+3))` with `mu = floor(2^(2k+1) / q)`
/// satisfies `x/q - 2 < e ≤ x/q` (the two truncations lose `< x/2^(2k+1) + 2^(k-2)/q + 1
/// ≤ 1/2 + 1/2 + 1`), so `x - e·q` is in `[0, 2q)` and one branch-free conditional subtraction
/// gives the exact residue, identical to any other reduction. `mu < 2^(k+2)` is stored shifted
/// left by `61 - k` so the division by `2^(k+3)` is the high word of one 64×64 product.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Barrett {
    q: u64,
    k: u32,
    mu: u64,
}

impl Barrett {
    #[inline(always)]
    pub(crate) fn mul(self, a: u64, b: u64) -> u64 {
        let x = a as u128 * b as u128;
        let (lo, hi) = (x as u64, (x >> 64) as u64);
        // floor(x / 2^(k-2)) < 2^(k+2) as a funnel shift (3 ≤ k ≤ 61: both shift counts are in 1..64).
        let q1 = (lo >> (self.k - 2)) | (hi << (66 - self.k));
        let e = ((q1 as u128 * self.mu as u128) >> 64) as u64;
        csub(lo.wrapping_sub(e.wrapping_mul(self.q)), self.q)
    }
}

/// Tables for the approximate ModUp of one digit at one level.
#[derive(Debug, Clone)]
pub(crate) struct ModUpTable {
    /// Source limbs (indices into Q) of this digit at this level.
    pub(crate) src: std::ops::Range<usize>,
    /// `(Q'_j / q_i)^{-1} mod q_i` with Shoup companions, per source limb.
    pub(crate) qhat_inv: Vec<(u64, u64)>,
    /// For each target limb of the extended basis `Q_l ∪ P` (digit limbs included but unused):
    /// `(Q'_j / q_i) mod target` per source limb.
    pub(crate) qhat_mod: Vec<Vec<u64>>,
    /// `1 / q_i` per source limb (for the centered correction).
    pub(crate) q_inv_f64: Vec<f64>,
    /// `Q'_j mod target` per target limb.
    pub(crate) qj_mod: Vec<u64>,
}

/// Precomputed ring data for one parameter set.
#[derive(Debug)]
pub(crate) struct RingContext {
    pub(crate) n: usize,
    /// Q primes followed by P primes.
    pub(crate) primes: Vec<Prime>,
    pub(crate) nq: usize,
    pub(crate) np: usize,
    pub(crate) alpha: usize,
    /// NTT slot j evaluates at ψ^{ntt_exps[j]} (odd exponents mod 2N).
    ntt_exps: Vec<u32>,
    /// Position of odd exponent e in NTT order, at index e/2.
    exp_pos: Vec<u32>,
    /// `rescale_inv[l][i] = q_l^{-1} mod q_i` (Shoup pair), i < l.
    rescale_inv: Vec<Vec<(u64, u64)>>,
    /// `modup[l][j]`: digit j at level l.
    modup: Vec<Vec<ModUpTable>>,
    /// `(P/p_k)^{-1} mod p_k` (Shoup pair).
    p_hat_inv: Vec<(u64, u64)>,
    /// `p_hat_mod_q[i][k] = (P/p_k) mod q_i`.
    p_hat_mod_q: Vec<Vec<u64>>,
    /// `P^{-1} mod q_i` (Shoup pair).
    p_inv_mod_q: Vec<(u64, u64)>,
    /// `P mod q_i`.
    pub(crate) p_mod_q: Vec<u64>,
    /// `1 / p_k`.
    p_inv_f64: Vec<f64>,
}

/// A polynomial in RNS form (see module docs for the layout).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RnsPoly {
    pub(crate) data: Vec<u64>,
    pub(crate) nq: usize,
    pub(crate) with_p: bool,
}

/// The range of a key polynomial's limb `t` of the basis `Q_l ∪ P` (`nq = l + 1` limbs of `Q`):
/// a key stores its own `k.nq` limbs of `Q` (all of them, or those of a level-restricted key)
/// before its `P` limbs.
fn key_limb(k: &RnsPoly, t: usize, nq: usize, n: usize) -> std::ops::Range<usize> {
    let kt = if t < nq { t } else { k.nq + (t - nq) };
    kt * n..(kt + 1) * n
}

/// The error for a key that does not reach a ciphertext's level `level`.
fn key_level_error(key_b: &[RnsPoly], level: usize) -> CkksError {
    CkksError::KeyBelowLevel { key_level: key_b.first().map_or(0, |k| k.nq.saturating_sub(1)), level }
}

/// A key switch at a level with `nq` limbs of `Q` needs keys holding at least those limbs.
fn check_key_limbs(key_b: &[RnsPoly], key_a: &[RnsPoly], nq: usize) -> Result<()> {
    match key_b.iter().chain(key_a).find(|k| k.nq < nq || !k.with_p) {
        Some(k) => Err(CkksError::KeyBelowLevel { key_level: k.nq.saturating_sub(1), level: nq.saturating_sub(1) }),
        None => Ok(()),
    }
}

/// Recycled polynomial buffers. Large fresh allocations come from the OS zeroed page by page (a
/// page fault per 4 KiB, 10–15% of a rotation here); reusing freed buffers avoids that, like SEAL's
/// memory pool. Bounded by [`POOL_MAX_BYTES`]; a poisoned lock just disables recycling.
static POOL: std::sync::Mutex<Vec<Vec<u64>>> = std::sync::Mutex::new(Vec::new());
const POOL_MAX_BYTES: usize = 512 << 20;

/// A buffer of `len` zeros, recycled when possible.
pub(crate) fn pooled_zeroed(len: usize) -> Vec<u64> {
    let mut v = pooled_empty(len);
    v.resize(len, 0);
    v
}

/// A buffer of `len` values whose contents are unspecified (stale data of a recycled buffer, or
/// zeros), for outputs that are overwritten entirely: a recycled buffer is not zeroed first.
pub(crate) fn pooled_stale(len: usize) -> Vec<u64> {
    if let Ok(mut pool) = POOL.lock() {
        if let Some(pos) = pool.iter().position(|b| b.capacity() >= len && b.capacity() <= 2 * len) {
            let mut v = pool.swap_remove(pos);
            v.truncate(len);
            // Only the part beyond the old length is zeroed (usually none).
            v.resize(len, 0);
            return v;
        }
    }
    vec![0; len]
}

/// An empty buffer with capacity ≥ `len`, recycled when possible.
fn pooled_empty(len: usize) -> Vec<u64> {
    if let Ok(mut pool) = POOL.lock() {
        if let Some(pos) = pool.iter().position(|b| b.capacity() >= len && b.capacity() <= 2 * len) {
            let mut v = pool.swap_remove(pos);
            v.clear();
            return v;
        }
    }
    Vec::with_capacity(len)
}

fn recycle(v: Vec<u64>) {
    if v.capacity() < 4096 {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        let held: usize = pool.iter().map(|b| b.capacity() * 8).sum();
        if held + v.capacity() * 8 <= POOL_MAX_BYTES {
            pool.push(v);
        }
    }
}

impl Drop for RnsPoly {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.data));
    }
}

impl Clone for RnsPoly {
    fn clone(&self) -> Self {
        let mut data = pooled_empty(self.data.len());
        data.extend_from_slice(&self.data);
        Self { data, nq: self.nq, with_p: self.with_p }
    }
}

/// Runs `f(limb_index, limb)` over the `n`-sized limbs of `data`, in parallel when the pool has
/// more than one thread.
pub(crate) fn for_limbs<F>(data: &mut [u64], n: usize, f: F)
where
    F: Fn(usize, &mut [u64]) + Sync + Send,
{
    if rayon::current_num_threads() > 1 {
        data.par_chunks_exact_mut(n).enumerate().for_each(|(t, l)| f(t, l));
    } else {
        data.chunks_exact_mut(n).enumerate().for_each(|(t, l)| f(t, l));
    }
}

/// Target limbs per task of the fused ModUp with several digits: each block of the sources is
/// read from memory once for all of them.
const CONV_GROUP: usize = 4;

thread_local! {
    static SCRATCH_U64: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH_U128: std::cell::RefCell<Vec<u128>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with a per-thread reusable buffer of `n` u64 (stale contents: `f` must overwrite what it
/// reads). Reusing it avoids page faults and zeroing of fresh large allocations in hot paths.
fn with_scratch_u64<R>(n: usize, f: impl FnOnce(&mut [u64]) -> R) -> R {
    SCRATCH_U64.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < n {
                v.resize(n, 0);
            }
            match v.get_mut(..n) {
                Some(s) => f(s),
                None => f(&mut vec![0; n]),
            }
        }
        Err(_) => f(&mut vec![0; n]),
    })
}

/// Like [`with_scratch_u64`] for `n` u128 accumulators.
fn with_scratch_u128<R>(n: usize, f: impl FnOnce(&mut [u128]) -> R) -> R {
    SCRATCH_U128.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < n {
                v.resize(n, 0);
            }
            match v.get_mut(..n) {
                Some(s) => f(s),
                None => f(&mut vec![0; n]),
            }
        }
        Err(_) => f(&mut vec![0; n]),
    })
}

impl RingContext {
    pub(crate) fn new(params: &CkksParams) -> Result<Self> {
        let n = params.n();
        let nq = params.moduli.len();
        let np = params.special.len();
        let primes =
            params.moduli.iter().chain(&params.special).map(|&q| Prime::new(q, n)).collect::<Result<Vec<_>>>()?;
        let (ntt_exps, exp_pos) = measure_ntt_order(&primes, n)?;
        let alpha = params.alpha();
        let mut ctx = Self {
            n,
            primes,
            nq,
            np,
            alpha,
            ntt_exps,
            exp_pos,
            rescale_inv: Vec::new(),
            modup: Vec::new(),
            p_hat_inv: Vec::new(),
            p_hat_mod_q: Vec::new(),
            p_inv_mod_q: Vec::new(),
            p_mod_q: Vec::new(),
            p_inv_f64: params.special.iter().map(|&p| 1.0 / p as f64).collect(),
        };
        ctx.precompute()?;
        Ok(ctx)
    }

    fn precompute(&mut self) -> Result<()> {
        let qs: Vec<&Prime> = self.primes.iter().take(self.nq).collect();
        let ps: Vec<&Prime> = self.primes.iter().skip(self.nq).collect();
        // Rescale: q_l^{-1} mod q_i.
        let mut rescale_inv = vec![Vec::new()];
        for l in 1..self.nq {
            let ql = qs.get(l).ok_or(CkksError::Internal("prime index"))?.q;
            let row = qs.iter().take(l).map(|p| p.inv(ql).map(|v| p.shoup_pair(v))).collect::<Result<Vec<_>>>()?;
            rescale_inv.push(row);
        }
        // ModUp per level and digit.
        let mut modup = Vec::with_capacity(self.nq);
        for l in 0..self.nq {
            let beta = (l + 1).div_ceil(self.alpha);
            let mut digits = Vec::with_capacity(beta);
            for j in 0..beta {
                let src = j * self.alpha..((j + 1) * self.alpha).min(l + 1);
                let src_primes: Vec<&Prime> = qs.get(src.clone()).ok_or(CkksError::Internal("digit range"))?.to_vec();
                let mut qhat_inv = Vec::with_capacity(src_primes.len());
                for (a, pa) in src_primes.iter().enumerate() {
                    // (prod_{b != a} q_b)^{-1} mod q_a
                    let mut prod = 1u64;
                    for (b, pb) in src_primes.iter().enumerate() {
                        if a != b {
                            prod = pa.m.mul(prod, pa.m.reduce(pb.q));
                        }
                    }
                    let inv = pa.inv(prod)?;
                    qhat_inv.push(pa.shoup_pair(inv));
                }
                let targets: Vec<&Prime> = qs.iter().take(l + 1).chain(ps.iter()).copied().collect();
                let qhat_mod = targets
                    .iter()
                    .map(|pt| {
                        (0..src_primes.len())
                            .map(|a| {
                                src_primes
                                    .iter()
                                    .enumerate()
                                    .filter(|(b, _)| *b != a)
                                    .fold(1u64, |acc, (_, pb)| pt.m.mul(acc, pt.m.reduce(pb.q)))
                            })
                            .collect()
                    })
                    .collect();
                let q_inv_f64 = src_primes.iter().map(|p| 1.0 / p.q as f64).collect();
                let qj_mod = targets
                    .iter()
                    .map(|pt| src_primes.iter().fold(1u64, |acc, pb| pt.m.mul(acc, pt.m.reduce(pb.q))))
                    .collect();
                digits.push(ModUpTable { src, qhat_inv, qhat_mod, q_inv_f64, qj_mod });
            }
            modup.push(digits);
        }
        // ModDown: P -> Q.
        let mut p_hat_inv = Vec::with_capacity(ps.len());
        for (k, pk) in ps.iter().enumerate() {
            let prod = ps
                .iter()
                .enumerate()
                .filter(|(b, _)| *b != k)
                .fold(1u64, |acc, (_, pb)| pk.m.mul(acc, pk.m.reduce(pb.q)));
            p_hat_inv.push(pk.shoup_pair(pk.inv(prod)?));
        }
        let mut p_hat_mod_q = Vec::with_capacity(self.nq);
        let mut p_inv_mod_q = Vec::with_capacity(self.nq);
        let mut p_mod_q = Vec::with_capacity(self.nq);
        for qi in &qs {
            p_hat_mod_q.push(
                (0..ps.len())
                    .map(|k| {
                        ps.iter()
                            .enumerate()
                            .filter(|(b, _)| *b != k)
                            .fold(1u64, |acc, (_, pb)| qi.m.mul(acc, qi.m.reduce(pb.q)))
                    })
                    .collect(),
            );
            let pmod = ps.iter().fold(1u64, |acc, pb| qi.m.mul(acc, qi.m.reduce(pb.q)));
            p_mod_q.push(pmod);
            p_inv_mod_q.push(qi.shoup_pair(qi.inv(pmod)?));
        }
        self.rescale_inv = rescale_inv;
        self.modup = modup;
        self.p_hat_inv = p_hat_inv;
        self.p_hat_mod_q = p_hat_mod_q;
        self.p_inv_mod_q = p_inv_mod_q;
        self.p_mod_q = p_mod_q;
        Ok(())
    }

    /// The prime of limb `t` in basis `(nq, with_p)`.
    #[inline]
    pub(crate) fn limb_prime(&self, t: usize, nq: usize) -> &Prime {
        let idx = if t < nq { t } else { self.nq + (t - nq) };
        // Limb indices come from iterating a poly of this context; out of range is a bug.
        #[allow(clippy::indexing_slicing)]
        &self.primes[idx]
    }

    /// Digits of a key-switching key holding `nq` limbs of `Q` when full keys have `dnum`: all
    /// of them for a full key, else those covering its limbs (a level-restricted key).
    pub(crate) fn key_digits(&self, nq: usize, dnum: usize) -> usize {
        if nq >= self.nq {
            dnum
        } else {
            nq.div_ceil(self.alpha.max(1)).min(dnum)
        }
    }

    pub(crate) fn num_limbs(&self, nq: usize, with_p: bool) -> usize {
        nq + if with_p { self.np } else { 0 }
    }

    pub(crate) fn zero(&self, nq: usize, with_p: bool) -> RnsPoly {
        RnsPoly { data: pooled_zeroed(self.n * self.num_limbs(nq, with_p)), nq, with_p }
    }

    /// A polynomial over `(nq, with_p)` with unspecified values, for results that overwrite every
    /// limb (see [`pooled_stale`]).
    pub(crate) fn stale(&self, nq: usize, with_p: bool) -> RnsPoly {
        RnsPoly { data: pooled_stale(self.n * self.num_limbs(nq, with_p)), nq, with_p }
    }

    /// Coefficient-form polynomial from small signed coefficients.
    #[allow(clippy::wrong_self_convention)] // a constructor that needs the context's primes
    pub(crate) fn from_i64(&self, coeffs: &[i64], nq: usize, with_p: bool) -> RnsPoly {
        let mut p = self.zero(nq, with_p);
        for_limbs(&mut p.data, self.n, |t, limb| {
            let pr = self.limb_prime(t, nq);
            for (o, &c) in limb.iter_mut().zip(coeffs) {
                *o = pr.reduce_i64(c);
            }
        });
        p
    }

    pub(crate) fn ntt_forward(&self, p: &mut RnsPoly) {
        let nq = p.nq;
        for_limbs(&mut p.data, self.n, |t, limb| self.limb_prime(t, nq).ntt.forward(limb));
    }

    pub(crate) fn ntt_inverse(&self, p: &mut RnsPoly) {
        let nq = p.nq;
        for_limbs(&mut p.data, self.n, |t, limb| self.limb_prime(t, nq).ntt.backward(limb));
    }

    pub(crate) fn add_assign(&self, a: &mut RnsPoly, b: &RnsPoly) {
        let nq = a.nq;
        let n = self.n;
        for_limbs(&mut a.data, n, |t, limb| {
            let q = self.limb_prime(t, nq).q;
            for (x, &y) in limb.iter_mut().zip(b.data.chunks_exact(n).nth(t).unwrap_or(&[])) {
                let s = *x + y;
                *x = if s >= q { s - q } else { s };
            }
        });
    }

    /// `a + b` (same basis) into a fresh pooled buffer in one pass: no copy of `a` first.
    pub(crate) fn add(&self, a: &RnsPoly, b: &RnsPoly) -> RnsPoly {
        let nq = a.nq;
        self.zip_map(
            a,
            b,
            |t| t,
            |t| {
                let q = self.limb_prime(t, nq).q;
                // `csub` is branch-free so the loop vectorizes (a compare would need SSE4.2).
                move |x, y| csub(x + y, q)
            },
        )
    }

    /// `a * b` pointwise into a fresh pooled buffer over the basis of `a` (`b` over a superset basis,
    /// limbs matched by prime as in [`RingContext::mul_matching_assign`]); one pass.
    pub(crate) fn mul_matching(&self, a: &RnsPoly, b: &RnsPoly) -> RnsPoly {
        let nq = a.nq;
        let bnq = b.nq;
        self.zip_map(
            a,
            b,
            |t| if t < nq { t } else { bnq + (t - nq) },
            |t| {
                let br = self.limb_prime(t, nq).barrett();
                move |x, y| br.mul(x, y)
            },
        )
    }

    /// A new polynomial over the basis of `a` with `out[t][i] = op(t)(a[t][i], b[bt(t)][i])`, written
    /// in one pass into a recycled buffer (single thread: appended, so never zeroed first).
    fn zip_map<B, O, K>(&self, a: &RnsPoly, b: &RnsPoly, bt: B, op: O) -> RnsPoly
    where
        B: Fn(usize) -> usize + Sync,
        O: Fn(usize) -> K + Sync,
        K: Fn(u64, u64) -> u64 + Copy,
    {
        let n = self.n;
        let len = a.data.len();
        let b_limb = |t: usize| b.data.chunks_exact(n).nth(bt(t)).unwrap_or(&[]);
        if rayon::current_num_threads() > 1 {
            // Every limb is written below (a missing `b` limb leaves zeros: see the end).
            let mut data = pooled_stale(len);
            data.par_chunks_exact_mut(n).zip(a.data.par_chunks_exact(n)).enumerate().for_each(|(t, (o, x))| {
                let k = op(t);
                let bl = b_limb(t);
                if bl.len() != o.len() {
                    o.fill(0);
                }
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(bl) {
                    *o = k(x, y);
                }
            });
            return RnsPoly { data, nq: a.nq, with_p: a.with_p };
        }
        let mut data = pooled_empty(len);
        {
            for (t, x) in a.data.chunks_exact(n).enumerate() {
                let k = op(t);
                // `move`: the kernel's constants are copied into the loop, not read through a pointer.
                data.extend(x.iter().zip(b_limb(t)).map(move |(&x, &y)| k(x, y)));
            }
        }
        // A missing `b` limb would shorten the output; pad so the layout invariant always holds.
        data.resize(len, 0);
        RnsPoly { data, nq: a.nq, with_p: a.with_p }
    }

    /// `acc + x·p` pointwise in one pass into a recycled buffer, over the basis of `acc` (`x` over
    /// the same basis, `p` over a superset: limbs matched by prime as in [`Self::mul_matching`]).
    /// The same values as `add(acc, mul_matching(x, p))` without the intermediate product.
    pub(crate) fn mul_add(&self, acc: &RnsPoly, x: &RnsPoly, p: &RnsPoly) -> RnsPoly {
        let n = self.n;
        let nq = acc.nq;
        let pnq = p.nq;
        fn limb(d: &RnsPoly, t: usize, n: usize) -> &[u64] {
            d.data.get(t * n..(t + 1) * n).unwrap_or(&[])
        }
        let work = |t: usize, o: &mut [u64]| {
            let pr = self.limb_prime(t, nq);
            let (br, q) = (pr.barrett(), pr.q);
            let (a, xs, ps) = (limb(acc, t, n), limb(x, t, n), limb(p, if t < nq { t } else { pnq + (t - nq) }, n));
            if a.len() != o.len() || xs.len() != o.len() || ps.len() != o.len() {
                o.fill(0);
                return;
            }
            for (((o, &a), &b), &c) in o.iter_mut().zip(a).zip(xs).zip(ps) {
                *o = csub(a + br.mul(b, c), q);
            }
        };
        let mut data = pooled_stale(acc.data.len());
        if rayon::current_num_threads() > 1 {
            data.par_chunks_exact_mut(n).enumerate().for_each(|(t, o)| work(t, o));
        } else {
            data.chunks_exact_mut(n).enumerate().for_each(|(t, o)| work(t, o));
        }
        RnsPoly { data, nq, with_p: acc.with_p }
    }

    /// In-place [`Self::mul_add`]: `acc += x·p` (the same values).
    pub(crate) fn mul_add_assign_matching(&self, acc: &mut RnsPoly, x: &RnsPoly, p: &RnsPoly) {
        let n = self.n;
        let nq = acc.nq;
        let pnq = p.nq;
        for_limbs(&mut acc.data, n, |t, a| {
            let pr = self.limb_prime(t, nq);
            let (br, q) = (pr.barrett(), pr.q);
            let pt = if t < nq { t } else { pnq + (t - nq) };
            let (xs, ps) =
                (x.data.get(t * n..(t + 1) * n).unwrap_or(&[]), p.data.get(pt * n..(pt + 1) * n).unwrap_or(&[]));
            for ((a, &b), &c) in a.iter_mut().zip(xs).zip(ps) {
                *a = csub(*a + br.mul(b, c), q);
            }
        });
    }

    pub(crate) fn sub_assign(&self, a: &mut RnsPoly, b: &RnsPoly) {
        let nq = a.nq;
        let n = self.n;
        for_limbs(&mut a.data, n, |t, limb| {
            let q = self.limb_prime(t, nq).q;
            for (x, &y) in limb.iter_mut().zip(b.data.chunks_exact(n).nth(t).unwrap_or(&[])) {
                let s = *x + q - y;
                *x = if s >= q { s - q } else { s };
            }
        });
    }

    pub(crate) fn neg_assign(&self, a: &mut RnsPoly) {
        let nq = a.nq;
        for_limbs(&mut a.data, self.n, |t, limb| {
            let q = self.limb_prime(t, nq).q;
            for x in limb.iter_mut() {
                *x = if *x == 0 { 0 } else { q - *x };
            }
        });
    }

    /// Pointwise product (NTT form).
    #[cfg(test)]
    pub(crate) fn mul_assign(&self, a: &mut RnsPoly, b: &RnsPoly) {
        let nq = a.nq;
        let n = self.n;
        for_limbs(&mut a.data, n, |t, limb| {
            let m = &self.limb_prime(t, nq).m;
            for (x, &y) in limb.iter_mut().zip(b.data.chunks_exact(n).nth(t).unwrap_or(&[])) {
                *x = m.reduce_u128(*x as u128 * y as u128);
            }
        });
    }

    /// `out = a * b` pointwise, `out` over the basis of `a` (b may have more Q limbs / P limbs:
    /// its limbs are matched by prime).
    pub(crate) fn mul(&self, a: &RnsPoly, b: &RnsPoly) -> RnsPoly {
        self.mul_matching(a, b)
    }

    /// `a *= b` where `b` is over a superset basis (`b.nq >= a.nq`, and P limbs if `a` has them).
    pub(crate) fn mul_matching_assign(&self, a: &mut RnsPoly, b: &RnsPoly) {
        let nq = a.nq;
        let n = self.n;
        for_limbs(&mut a.data, n, |t, limb| {
            let br = self.limb_prime(t, nq).barrett();
            let bt = if t < nq { t } else { b.nq + (t - nq) };
            for (x, &y) in limb.iter_mut().zip(b.data.chunks_exact(n).nth(bt).unwrap_or(&[])) {
                *x = br.mul(*x, y);
            }
        });
    }

    /// `acc += a * b` pointwise (all over the basis of `acc`; `a`, `b` may be over supersets).
    pub(crate) fn mul_add_assign(&self, acc: &mut RnsPoly, a: &RnsPoly, b: &RnsPoly) {
        let nq = acc.nq;
        let n = self.n;
        for_limbs(&mut acc.data, n, |t, limb| {
            let m = &self.limb_prime(t, nq).m;
            let at = if t < nq { t } else { a.nq + (t - nq) };
            let bt = if t < nq { t } else { b.nq + (t - nq) };
            let al = a.data.chunks_exact(n).nth(at).unwrap_or(&[]);
            let bl = b.data.chunks_exact(n).nth(bt).unwrap_or(&[]);
            for ((x, &y), &z) in limb.iter_mut().zip(al).zip(bl) {
                *x = m.reduce_u128(*x as u128 + y as u128 * z as u128);
            }
        });
    }

    /// Ciphertext tensor product in one pass per limb: `(a0·b0, a0·b1 + a1·b0, a1·b1)`
    /// (`b` may be `a` for squaring).
    pub(crate) fn tensor(&self, a0: &RnsPoly, a1: &RnsPoly, b0: &RnsPoly, b1: &RnsPoly) -> (RnsPoly, RnsPoly, RnsPoly) {
        let nq = a0.nq;
        let n = self.n;
        // Every value is written (operands of another basis are a caller bug and give garbage).
        let mut d0 = self.stale(nq, a0.with_p);
        let mut d1 = self.stale(nq, a0.with_p);
        let mut d2 = self.stale(nq, a0.with_p);
        let work = |t: usize, (o0, (o1, o2)): (&mut [u64], (&mut [u64], &mut [u64]))| {
            let m = &self.limb_prime(t, nq).m;
            let (x0, x1) =
                (a0.data.get(t * n..(t + 1) * n).unwrap_or(&[]), a1.data.get(t * n..(t + 1) * n).unwrap_or(&[]));
            let (y0, y1) =
                (b0.data.get(t * n..(t + 1) * n).unwrap_or(&[]), b1.data.get(t * n..(t + 1) * n).unwrap_or(&[]));
            for ((((((r0, r1), r2), &u0), &u1), &v0), &v1) in
                o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(x0).zip(x1).zip(y0).zip(y1)
            {
                *r0 = m.reduce_u128(u0 as u128 * v0 as u128);
                *r1 = m.reduce_u128(u0 as u128 * v1 as u128 + u1 as u128 * v0 as u128);
                *r2 = m.reduce_u128(u1 as u128 * v1 as u128);
            }
        };
        if rayon::current_num_threads() > 1 {
            d0.data
                .par_chunks_exact_mut(n)
                .zip(d1.data.par_chunks_exact_mut(n).zip(d2.data.par_chunks_exact_mut(n)))
                .enumerate()
                .for_each(|(t, o)| work(t, o));
        } else {
            d0.data
                .chunks_exact_mut(n)
                .zip(d1.data.chunks_exact_mut(n).zip(d2.data.chunks_exact_mut(n)))
                .enumerate()
                .for_each(|(t, o)| work(t, o));
        }
        (d0, d1, d2)
    }

    /// Multiplies every coefficient by a signed integer constant.
    pub(crate) fn mul_scalar_i64(&self, a: &mut RnsPoly, c: i64) {
        let nq = a.nq;
        for_limbs(&mut a.data, self.n, |t, limb| {
            let p = self.limb_prime(t, nq);
            let (w, ws) = p.shoup_pair(p.reduce_i64(c));
            for x in limb.iter_mut() {
                *x = p.m.mul_shoup(*x, w, ws);
            }
        });
    }

    /// Adds a constant per limb (`c_t` for limb t) to every NTT slot: in NTT form this adds the constant
    /// polynomial `c`.
    pub(crate) fn add_const_per_limb(&self, a: &mut RnsPoly, c: &[u64]) {
        let nq = a.nq;
        for_limbs(&mut a.data, self.n, |t, limb| {
            let q = self.limb_prime(t, nq).q;
            let k = c.get(t).copied().unwrap_or(0);
            for x in limb.iter_mut() {
                let s = *x + k;
                *x = if s >= q { s - q } else { s };
            }
        });
    }

    /// Keeps only the first `nq` Q limbs (drops P limbs too).
    pub(crate) fn truncate_q(&self, a: &mut RnsPoly, nq: usize) {
        let keep_p = if a.with_p { self.np } else { 0 };
        if keep_p > 0 {
            // Drop the P limbs first; callers only truncate Q-only polys or want Q only.
            a.data.truncate(self.n * a.nq);
        }
        a.data.truncate(self.n * nq);
        a.nq = nq;
        a.with_p = false;
    }

    /// Restriction of a Q∪P (full) polynomial to `Q_l` (first `nq` limbs).
    pub(crate) fn restrict(&self, a: &RnsPoly, nq: usize) -> RnsPoly {
        let mut data = pooled_empty(self.n * nq);
        data.extend_from_slice(a.data.get(..self.n * nq).unwrap_or(&[]));
        RnsPoly { data, nq, with_p: false }
    }

    /// Index permutation of the Galois automorphism `X -> X^g` (g odd) in NTT order:
    /// `NTT(σ_g(a))[j] = NTT(a)[perm[j]]`.
    pub(crate) fn galois_perm(&self, g: u64) -> Vec<u32> {
        let two_n = 2 * self.n as u64;
        self.ntt_exps
            .iter()
            .map(|&e| {
                let eg = (e as u64 * g) % two_n;
                self.exp_pos.get((eg / 2) as usize).copied().unwrap_or(0)
            })
            .collect()
    }

    /// Applies a Galois permutation to an NTT-form polynomial.
    pub(crate) fn permute(&self, a: &RnsPoly, perm: &[u32]) -> RnsPoly {
        let n = self.n;
        if rayon::current_num_threads() == 1 {
            // Build the output directly (no zeroing or copy first).
            let mut data = pooled_empty(a.data.len());
            for src in a.data.chunks_exact(n) {
                data.extend(perm.iter().map(|&p| src.get(p as usize).copied().unwrap_or(0)));
            }
            return RnsPoly { data, nq: a.nq, with_p: a.with_p };
        }
        let mut out = self.stale(a.nq, a.with_p);
        for_limbs(&mut out.data, n, |t, limb| {
            let src = a.data.chunks_exact(n).nth(t).unwrap_or(&[]);
            gather(limb, src, perm);
        });
        out
    }

    /// Rescale by the last prime: `a` over `Q_l` (NTT form) becomes `round(a / q_l)` over `Q_{l-1}`.
    pub(crate) fn rescale(&self, a: &mut RnsPoly) -> Result<()> {
        let l = a.nq.checked_sub(1).ok_or(CkksError::Internal("rescale of empty poly"))?;
        if l == 0 {
            return Err(CkksError::LevelExhausted { op: "rescale" });
        }
        let n = self.n;
        let ql = self.limb_prime(l, a.nq);
        let mut last = a.data.get(l * n..(l + 1) * n).ok_or(CkksError::Internal("rescale limb"))?.to_vec();
        ql.ntt.backward(&mut last);
        let qlq = ql.q;
        let inv = self.rescale_inv.get(l).ok_or(CkksError::Internal("rescale table"))?;
        a.data.truncate(l * n);
        a.nq = l;
        for_limbs(&mut a.data, n, |i, limb| {
            let p = self.limb_prime(i, l);
            with_scratch_u64(n, |tmp| {
                // centered lift of the last limb (rounding division)
                centered_lift_into(tmp, &last, qlq, p);
                p.ntt.forward(tmp);
                let (w, ws) = inv.get(i).copied().unwrap_or((1, 0));
                for (x, &y) in limb.iter_mut().zip(tmp.iter()) {
                    *x = p.m.mul_shoup(*x + p.q - y, w, ws);
                }
            });
        });
        Ok(())
    }

    /// Conversion inputs of the ModUp: `y_i = x_i·(Q'_j/q_i)^{-1}` on multi-prime digits, `x_i` on
    /// one-prime digits (borrowed when every digit has one prime).
    fn modup_inputs<'a>(&self, c_coef: &'a RnsPoly, tables: &[ModUpTable]) -> std::borrow::Cow<'a, [u64]> {
        if tables.iter().all(|t| t.src.len() == 1) {
            return std::borrow::Cow::Borrowed(&c_coef.data);
        }
        let n = self.n;
        let nq = c_coef.nq;
        let mut ys = c_coef.data.clone();
        for tab in tables.iter().filter(|t| t.src.len() > 1) {
            for (a, i) in tab.src.clone().enumerate() {
                let p = self.limb_prime(i, nq);
                let (w, ws) = tab.qhat_inv.get(a).copied().unwrap_or((1, 0));
                if let Some(limb) = ys.get_mut(i * n..(i + 1) * n) {
                    limb.iter_mut().for_each(|v| *v = p.m.mul_shoup(*v, w, ws));
                }
            }
        }
        std::borrow::Cow::Owned(ys)
    }

    /// The sources of digit `tab`'s base conversion (limbs of `ys`) and, for a multi-prime digit,
    /// its shared estimate `v` ([`conversion_estimate`]); `None` for a one-prime digit (a centered
    /// lift needs neither).
    fn modup_estimate(&self, tab: &ModUpTable, ys: &[u64]) -> Option<Vec<u64>> {
        if tab.src.len() == 1 {
            return None;
        }
        let n = self.n;
        let srcs: Vec<&[u64]> = tab.src.clone().map(|i| ys.get(i * n..(i + 1) * n).unwrap_or(&[])).collect();
        let mut est = pooled_stale(n);
        conversion_estimate(&mut est, &srcs, &tab.q_inv_f64);
        Some(est)
    }

    /// Limbs `t0 .. t0 + out.len()/N` of the ModUp of digit `tab` (basis `Q_l ∪ P` with `nq` Q
    /// limbs), NTT form: the digit's own limbs are copied from `c_ntt`, every other limb is the
    /// centered base conversion of the digit (inputs `ys`, estimate `est` from
    /// [`Self::modup_estimate`]), transformed. The limbs are converted together so each block of
    /// the sources is read once from memory for all of them.
    #[allow(clippy::too_many_arguments)]
    fn modup_limbs(
        &self,
        tab: &ModUpTable,
        nq: usize,
        ys: &[u64],
        est: Option<&[u64]>,
        c_ntt: &[u64],
        t0: usize,
        out: &mut [u64],
    ) {
        let n = self.n;
        let mut conv: Vec<(usize, &mut [u64])> = Vec::with_capacity(out.len() / n.max(1));
        for (k, limb) in out.chunks_exact_mut(n).enumerate() {
            let t = t0 + k;
            if tab.src.contains(&t) {
                limb.copy_from_slice(c_ntt.get(t * n..(t + 1) * n).unwrap_or(&[]));
            } else {
                conv.push((t, limb));
            }
        }
        // Centered digits (in (-Q'_j/2, Q'_j/2)): zero-mean, so the key-switching noise Σ d_j·e_j
        // has no structured (coherent) component.
        match est {
            None => {
                let src_q = self.limb_prime(tab.src.start, nq).q;
                let src = ys.get(tab.src.start * n..(tab.src.start + 1) * n).unwrap_or(&[]);
                for (t, limb) in conv.iter_mut() {
                    centered_lift_into(limb, src, src_q, self.limb_prime(*t, nq));
                }
            }
            Some(est) => {
                let srcs: Vec<&[u64]> = tab.src.clone().map(|i| ys.get(i * n..(i + 1) * n).unwrap_or(&[])).collect();
                let targets: Vec<ConvTarget<'_>> = conv
                    .iter()
                    .map(|(t, _)| {
                        let m = &self.limb_prime(*t, nq).m;
                        ConvTarget {
                            row: tab.qhat_mod.get(*t).map(|v| v.as_slice()).unwrap_or(&[]),
                            neg_total: m.neg(tab.qj_mod.get(*t).copied().unwrap_or(0)),
                            m,
                        }
                    })
                    .collect();
                let mut outs: Vec<&mut [u64]> = conv.iter_mut().map(|(_, l)| &mut **l).collect();
                base_convert_centered(&mut outs, &srcs, est, &targets);
            }
        }
        for (t, limb) in conv {
            self.limb_prime(t, nq).ntt.forward(limb);
        }
    }

    /// Every limb of the ModUp of digit `tab` into `out` (basis `Q_l ∪ P`, NTT form): groups of
    /// [`CONV_GROUP`] limbs by [`Self::modup_limbs`], in parallel.
    fn modup_digit(
        &self,
        tab: &ModUpTable,
        nq: usize,
        ys: &[u64],
        est: Option<&[u64]>,
        c_ntt: &[u64],
        out: &mut [u64],
    ) {
        let group = CONV_GROUP * self.n;
        let run = |g: usize, o: &mut [u64]| self.modup_limbs(tab, nq, ys, est, c_ntt, g * CONV_GROUP, o);
        if rayon::current_num_threads() > 1 {
            out.par_chunks_mut(group).enumerate().for_each(|(g, o)| run(g, o));
        } else {
            out.chunks_mut(group).enumerate().for_each(|(g, o)| run(g, o));
        }
    }

    /// Approximate ModUp of every digit of `c` (given in both coefficient and NTT form over `Q_l`):
    /// returns β polynomials over `Q_l ∪ P` in NTT form (kept for hoisting).
    pub(crate) fn mod_up(&self, c_coef: &RnsPoly, c_ntt: &RnsPoly) -> Result<Vec<RnsPoly>> {
        let nq = c_coef.nq;
        let l = nq - 1;
        let tables = self.modup.get(l).ok_or(CkksError::Internal("modup table"))?;
        let ys = self.modup_inputs(c_coef, tables);
        let mut out = Vec::with_capacity(tables.len());
        for tab in tables {
            let est = self.modup_estimate(tab, &ys);
            let mut d = self.stale(nq, true);
            self.modup_digit(tab, nq, &ys, est.as_deref(), &c_ntt.data, &mut d.data);
            if let Some(e) = est {
                recycle(e);
            }
            out.push(d);
        }
        Ok(out)
    }

    /// ModUp fused with the key inner product (no hoisting): for each group of limbs of `Q_l ∪ P`,
    /// every digit's limbs are produced in a scratch buffer and accumulated at once, so the β
    /// extended digits are never stored. Returns `(Σ d_j·b_j, Σ d_j·a_j)` over `Q_l ∪ P`, NTT form.
    pub(crate) fn key_switch_fused(
        &self,
        c_coef: &RnsPoly,
        c_ntt: &RnsPoly,
        key_b: &[RnsPoly],
        key_a: &[RnsPoly],
    ) -> Result<(RnsPoly, RnsPoly)> {
        let nq = c_coef.nq;
        let l = nq.checked_sub(1).ok_or(CkksError::Internal("empty poly"))?;
        let n = self.n;
        let tables = self.modup.get(l).ok_or(CkksError::Internal("modup table"))?;
        if key_b.len() < tables.len() || key_a.len() < tables.len() {
            return Err(key_level_error(key_b, l));
        }
        check_key_limbs(key_b, key_a, nq)?;
        if tables.len() == 1 {
            // One digit: storing it costs no more than the fused accumulators, and its limbs are
            // converted in one pass (the same sums, so the same result).
            let digits = self.mod_up(c_coef, c_ntt)?;
            return self.key_inner_product(&digits, key_b, key_a);
        }
        let ys = self.modup_inputs(c_coef, tables);
        let ests: Vec<Option<Vec<u64>>> = tables.iter().map(|tab| self.modup_estimate(tab, &ys)).collect();
        let mut out_b = self.stale(nq, true);
        let mut out_a = self.stale(nq, true);
        let work = |t0: usize, ob: &mut [u64], oa: &mut [u64]| {
            let g = ob.len() / n;
            with_scratch_u128(2 * g * n, |acc| {
                let (acc_b, acc_a) = acc.split_at_mut(g * n);
                with_scratch_u64(g * n, |buf| {
                    for (j, (tab, est)) in tables.iter().zip(&ests).enumerate() {
                        self.modup_limbs(tab, nq, &ys, est.as_deref(), &c_ntt.data, t0, buf);
                        for (k, ((d, sb), sa)) in buf
                            .chunks_exact(n)
                            .zip(acc_b.chunks_exact_mut(n))
                            .zip(acc_a.chunks_exact_mut(n))
                            .enumerate()
                        {
                            let t = t0 + k;
                            // (a level-restricted key holds fewer `Q` limbs before its `P` limbs)
                            let kb = key_b.get(j).and_then(|k| k.data.get(key_limb(k, t, nq, n))).unwrap_or(&[]);
                            let ka = key_a.get(j).and_then(|k| k.data.get(key_limb(k, t, nq, n))).unwrap_or(&[]);
                            accumulate(sb, sa, d, kb, ka, j == 0);
                        }
                    }
                });
                for (k, (((obl, oal), sb), sa)) in ob
                    .chunks_exact_mut(n)
                    .zip(oa.chunks_exact_mut(n))
                    .zip(acc_b.chunks_exact(n))
                    .zip(acc_a.chunks_exact(n))
                    .enumerate()
                {
                    let m = &self.limb_prime(t0 + k, nq).m;
                    for (o, &s) in obl.iter_mut().zip(sb) {
                        *o = m.reduce_u128(s);
                    }
                    for (o, &s) in oal.iter_mut().zip(sa) {
                        *o = m.reduce_u128(s);
                    }
                }
            });
        };
        let gl = CONV_GROUP * n;
        if rayon::current_num_threads() > 1 {
            out_b
                .data
                .par_chunks_mut(gl)
                .zip(out_a.data.par_chunks_mut(gl))
                .enumerate()
                .for_each(|(k, (ob, oa))| work(k * CONV_GROUP, ob, oa));
        } else {
            out_b
                .data
                .chunks_mut(gl)
                .zip(out_a.data.chunks_mut(gl))
                .enumerate()
                .for_each(|(k, (ob, oa))| work(k * CONV_GROUP, ob, oa));
        }
        for e in ests.into_iter().flatten() {
            recycle(e);
        }
        Ok((out_b, out_a))
    }

    /// `P·a` over `Q_l ∪ P` for `a` over `Q_l` (either form): its `Q` limbs are `a·[P]_{q_i}`, its
    /// `P` limbs zero, so [`Self::mod_down`] gives back exactly `a`. Lets a ciphertext part join
    /// key-switching outputs that are still over `Q_l ∪ P` (double hoisting).
    pub(crate) fn times_p_extended(&self, a: &RnsPoly) -> RnsPoly {
        let n = self.n;
        let nq = a.nq;
        let mut out = self.zero(nq, true);
        let p_mod: Vec<u64> = (0..nq)
            .map(|t| {
                let br = self.limb_prime(t, nq).barrett();
                let q = self.limb_prime(t, nq).q;
                (nq..nq + self.np).fold(1u64, |acc, j| br.mul(acc, self.limb_prime(j, nq).q % q))
            })
            .collect();
        for_limbs(out.data.get_mut(..nq * n).unwrap_or(&mut []), n, |t, limb| {
            let br = self.limb_prime(t, nq).barrett();
            let c = p_mod.get(t).copied().unwrap_or(0);
            let src = a.data.get(t * n..(t + 1) * n).unwrap_or(&[]);
            for (o, &x) in limb.iter_mut().zip(src) {
                *o = br.mul(x, c);
            }
        });
        out
    }

    /// Approximate ModDown: `a` over `Q_l ∪ P` (NTT form) becomes `≈ a / P` over `Q_l` (NTT form),
    /// in place.
    pub(crate) fn mod_down(&self, a: RnsPoly) -> Result<RnsPoly> {
        self.mod_down_with_error(a, None)
    }

    /// ModDown of `a + e` where `e` is a small coefficient-form polynomial (the encryption error):
    /// `e` is added in the coefficient domain so it costs no extra NTT (`e − lift(P part)` is
    /// transformed once per Q limb).
    pub(crate) fn mod_down_with_error(&self, mut a: RnsPoly, err: Option<&[i64]>) -> Result<RnsPoly> {
        let nq = a.nq;
        let n = self.n;
        let np = self.np;
        let mut p_part = pooled_stale(np * n);
        p_part.copy_from_slice(a.data.get(nq * n..(nq + np) * n).ok_or(CkksError::Internal("moddown limb"))?);
        for_limbs(&mut p_part, n, |k, v| {
            let p = self.limb_prime(nq + k, nq);
            p.ntt.backward(v);
            if let Some(e) = err {
                for (x, &ei) in v.iter_mut().zip(e) {
                    *x = p.m.add(*x, p.reduce_i64(ei));
                }
            }
            if np > 1 {
                let (w, ws) = self.p_hat_inv.get(k).copied().unwrap_or((1, 0));
                v.iter_mut().for_each(|x| *x = p.m.mul_shoup(*x, w, ws));
            }
        });
        let p0 = self.primes.get(self.nq).ok_or(CkksError::Internal("no special prime"))?.q;
        a.data.truncate(nq * n);
        a.with_p = false;
        let srcs: Vec<&[u64]> = p_part.chunks_exact(n).collect();
        let est = (np > 1).then(|| {
            let mut e = pooled_stale(n);
            conversion_estimate(&mut e, &srcs, &self.p_inv_f64);
            e
        });
        let mut convs = pooled_stale(nq * n);
        if let Some(est) = &est {
            let targets: Vec<ConvTarget<'_>> = (0..nq)
                .map(|i| {
                    let m = &self.limb_prime(i, nq).m;
                    ConvTarget {
                        row: self.p_hat_mod_q.get(i).map(|v| v.as_slice()).unwrap_or(&[]),
                        neg_total: m.neg(self.p_mod_q.get(i).copied().unwrap_or(0)),
                        m,
                    }
                })
                .collect();
            base_convert_par(convs.chunks_exact_mut(n).collect(), &srcs, est, &targets);
        }
        let work = |i: usize, (limb, conv): (&mut [u64], &mut [u64])| {
            let p = self.limb_prime(i, nq);
            if est.is_none() {
                // centered conversion: rounds instead of flooring
                centered_lift_into(conv, srcs.first().copied().unwrap_or(&[]), p0, p);
            }
            let (w, ws) = self.p_inv_mod_q.get(i).copied().unwrap_or((1, 0));
            match err {
                Some(e) => {
                    for (c, &ei) in conv.iter_mut().zip(e) {
                        *c = p.m.sub(p.reduce_i64(ei), *c);
                    }
                    p.ntt.forward(conv);
                    for (x, &y) in limb.iter_mut().zip(conv.iter()) {
                        *x = p.m.mul_shoup(*x + y, w, ws);
                    }
                }
                None => {
                    p.ntt.forward(conv);
                    for (x, &y) in limb.iter_mut().zip(conv.iter()) {
                        *x = p.m.mul_shoup(*x + p.q - y, w, ws);
                    }
                }
            }
        };
        if rayon::current_num_threads() > 1 {
            a.data.par_chunks_exact_mut(n).zip(convs.par_chunks_exact_mut(n)).enumerate().for_each(|(i, x)| work(i, x));
        } else {
            a.data.chunks_exact_mut(n).zip(convs.chunks_exact_mut(n)).enumerate().for_each(|(i, x)| work(i, x));
        }
        recycle(convs);
        drop(srcs);
        recycle(p_part);
        if let Some(e) = est {
            recycle(e);
        }
        Ok(a)
    }

    /// Key-switching inner product: `Σ_j d_j · key_j` for both key components, over `Q_l ∪ P`.
    /// `digits` are over `Q_l ∪ P`; `key_b`/`key_a` are over the full `Q ∪ P`.
    pub(crate) fn key_inner_product(
        &self,
        digits: &[RnsPoly],
        key_b: &[RnsPoly],
        key_a: &[RnsPoly],
    ) -> Result<(RnsPoly, RnsPoly)> {
        let first = digits.first().ok_or(CkksError::Internal("no digits"))?;
        let nq = first.nq;
        if key_b.len() < digits.len() || key_a.len() < digits.len() {
            return Err(key_level_error(key_b, nq.saturating_sub(1)));
        }
        check_key_limbs(key_b, key_a, nq)?;
        let n = self.n;
        let limbs = self.num_limbs(nq, true);
        // Every limb is written by `inner_product_limb`.
        let mut out_b = self.stale(nq, true);
        let mut out_a = self.stale(nq, true);
        // Interleave both outputs per limb so one pass over the digits produces both.
        let work = |t: usize, ob: &mut [u64], oa: &mut [u64]| {
            let m = &self.limb_prime(t, nq).m;
            let ds: Vec<&[u64]> = digits.iter().map(|d| d.data.get(t * n..(t + 1) * n).unwrap_or(&[])).collect();
            let kbs: Vec<&[u64]> =
                key_b.iter().take(digits.len()).map(|k| k.data.get(key_limb(k, t, nq, n)).unwrap_or(&[])).collect();
            let kas: Vec<&[u64]> =
                key_a.iter().take(digits.len()).map(|k| k.data.get(key_limb(k, t, nq, n)).unwrap_or(&[])).collect();
            inner_product_limb(ob, oa, &ds, &kbs, &kas, m);
        };
        if rayon::current_num_threads() > 1 {
            out_b
                .data
                .par_chunks_exact_mut(n)
                .zip(out_a.data.par_chunks_exact_mut(n))
                .enumerate()
                .for_each(|(t, (ob, oa))| work(t, ob, oa));
        } else {
            out_b
                .data
                .chunks_exact_mut(n)
                .zip(out_a.data.chunks_exact_mut(n))
                .enumerate()
                .for_each(|(t, (ob, oa))| work(t, ob, oa));
        }
        debug_assert_eq!(out_b.data.len(), limbs * n);
        Ok((out_b, out_a))
    }
}

/// `out = [x]_{src_q}` lifted to the centered range `(-src_q/2, src_q/2]` and reduced modulo `p`.
fn centered_lift_into(out: &mut [u64], src: &[u64], src_q: u64, p: &Prime) {
    let half = src_q / 2;
    let neg = p.q - p.reduce_u64(src_q); // adding it subtracts src_q modulo p
    for (o, &x) in out.iter_mut().zip(src) {
        // branchless: the sign of x > half is random, so a branch would mispredict half the time
        let above = 0u64.wrapping_sub(half.wrapping_sub(x) >> 63); // all ones iff x > half (x, half < 2^63)
        *o = csub(p.reduce_u64(x) + (neg & above), p.q);
    }
}

/// `r mod q` for `r < 2q < 2^63`, without branches.
#[inline]
fn csub(r: u64, q: u64) -> u64 {
    let t = r.wrapping_sub(q);
    t.wrapping_add(q & 0u64.wrapping_sub(t >> 63))
}

/// `out[c] = src[perm[c]]`.
#[allow(clippy::indexing_slicing)] // perm entries are < N by construction (galois_perm)
fn gather(out: &mut [u64], src: &[u64], perm: &[u32]) {
    if src.len() != out.len() {
        return;
    }
    for (o, &p) in out.iter_mut().zip(perm) {
        *o = src[p as usize];
    }
}

/// One target limb of a centered base conversion: `(Q'/q_i) mod t` per source `i`, `−Q' mod t`,
/// and the target's arithmetic.
struct ConvTarget<'a> {
    row: &'a [u64],
    neg_total: u64,
    m: &'a Modulus,
}

/// Coefficients per block of [`base_convert_centered`]: the block of every source (≤ 60 of them)
/// and the accumulators stay in L1 while all targets of a group are produced.
const CONV_BLOCK: usize = 64;

/// `v = round(Σ_i y_i/q_i)` per coefficient: the multiple of `Q' = Π q_i` that a centered base
/// conversion subtracts (shared by every target limb). The f64 sum is accumulated in source order
/// (two sources: `y_0/q_0 + y_1/q_1 + 0.5`), so the result does not depend on the blocking.
fn conversion_estimate(out: &mut [u64], ys: &[&[u64]], q_inv: &[f64]) {
    if let ([y0, y1], [i0, i1]) = (ys, q_inv) {
        for ((o, &a), &b) in out.iter_mut().zip(*y0).zip(*y1) {
            *o = (a as f64 * i0 + b as f64 * i1 + 0.5) as u64;
        }
        return;
    }
    const B: usize = 512;
    let mut frac = [0f64; B];
    for (blk, o) in out.chunks_mut(B).enumerate() {
        let Some(f) = frac.get_mut(..o.len()) else { return };
        f.fill(0.5);
        for (y, &qi) in ys.iter().zip(q_inv) {
            for (s, &v) in f.iter_mut().zip(y.get(blk * B..).unwrap_or(&[])) {
                *s += v as f64 * qi;
            }
        }
        for (o, &s) in o.iter_mut().zip(f.iter()) {
            *o = s as u64;
        }
    }
}

/// [`base_convert_centered`] of all `targets` at once, the coefficients split into chunks that
/// run in parallel when the pool has more than one thread (each chunk transposes its sources once
/// for every target).
fn base_convert_par(outs: Vec<&mut [u64]>, ys: &[&[u64]], est: &[u64], targets: &[ConvTarget<'_>]) {
    let n = est.len();
    let threads = rayon::current_num_threads();
    // Several chunks per thread for balance; a multiple of the kernel's block.
    let chunk = (n / (4 * threads).max(1)).next_multiple_of(CONV_BLOCK).max(CONV_BLOCK);
    let chunks = n.div_ceil(chunk);
    let mut per_chunk: Vec<Vec<&mut [u64]>> = (0..chunks).map(|_| Vec::with_capacity(outs.len())).collect();
    for limb in outs {
        for (c, piece) in limb.chunks_mut(chunk).enumerate() {
            if let Some(v) = per_chunk.get_mut(c) {
                v.push(piece);
            }
        }
    }
    let run = |c: usize, pieces: &mut Vec<&mut [u64]>| {
        let range = c * chunk..((c + 1) * chunk).min(n);
        let srcs: Vec<&[u64]> = ys.iter().map(|y| y.get(range.clone()).unwrap_or(&[])).collect();
        base_convert_centered(pieces, &srcs, est.get(range).unwrap_or(&[]), targets);
    };
    if threads > 1 {
        per_chunk.par_iter_mut().enumerate().for_each(|(c, p)| run(c, p));
    } else {
        per_chunk.iter_mut().enumerate().for_each(|(c, p)| run(c, p));
    }
}

/// Centered base conversion into several target limbs: with `y_i = [x_i·qhat_i^{-1}]_{q_i}`, the
/// centered representative of `x` modulo `Q' = Π q_i` is `Σ_i y_i·qhat_i − v·Q'` with
/// `v = round(Σ_i y_i/q_i)` given in `est` ([`conversion_estimate`]; the f64 estimate can be off by
/// one only when `x` is within ~2^-50·Q' of ±Q'/2, which merely picks the other valid
/// representative). `outs[g]` receives target `targets[g]`. Products are summed exactly in 128 bits
/// (< 2^122 each, ≤ 60 sources) and reduced once, so the result is independent of the order.
fn base_convert_centered(outs: &mut [&mut [u64]], ys: &[&[u64]], est: &[u64], targets: &[ConvTarget<'_>]) {
    let n = est.len();
    let s = ys.len();
    if s == 0
        || ys.iter().any(|y| y.len() != n)
        || outs.iter().any(|o| o.len() != n)
        || targets.iter().any(|t| t.row.len() != s)
    {
        return;
    }
    // The sources' block transposed (coefficient-major): each output is then a dot product of two
    // contiguous rows, accumulated in registers (two independent chains).
    let mut yt = vec![0u64; CONV_BLOCK * s];
    for start in (0..n).step_by(CONV_BLOCK) {
        let end = (start + CONV_BLOCK).min(n);
        for (i, y) in ys.iter().enumerate() {
            for (k, &v) in y.get(start..end).unwrap_or(&[]).iter().enumerate() {
                if let Some(d) = yt.get_mut(k * s + i) {
                    *d = v;
                }
            }
        }
        let Some(e) = est.get(start..end) else { return };
        for (out, tgt) in outs.iter_mut().zip(targets) {
            let neg_total = tgt.neg_total as u128;
            let Some(out) = out.get_mut(start..end) else { return };
            for ((o, &v), row) in out.iter_mut().zip(e).zip(yt.chunks_exact(s)) {
                let mut a0 = v as u128 * neg_total;
                let mut a1 = 0u128;
                let mut pairs = row.chunks_exact(2).zip(tgt.row.chunks_exact(2));
                for (y, h) in pairs.by_ref() {
                    if let ([y0, y1], [h0, h1]) = (y, h) {
                        a0 += *y0 as u128 * *h0 as u128;
                        a1 += *y1 as u128 * *h1 as u128;
                    }
                }
                if let (Some(&y), Some(&h)) =
                    (row.chunks_exact(2).remainder().first(), tgt.row.chunks_exact(2).remainder().first())
                {
                    a0 += y as u128 * h as u128;
                }
                *o = tgt.m.reduce_u128(a0 + a1);
            }
        }
    }
}

/// `acc_b (+)= d·kb`, `acc_a (+)= d·ka` (assign when `first`), lazily in 128 bits (values < 2^61:
/// up to 64 products fit before the single Barrett reduction).
fn accumulate(acc_b: &mut [u128], acc_a: &mut [u128], d: &[u64], kb: &[u64], ka: &[u64], first: bool) {
    let it = acc_b.iter_mut().zip(acc_a.iter_mut()).zip(d).zip(kb.iter().zip(ka));
    if first {
        for (((sb, sa), &x), (&b, &a)) in it {
            *sb = x as u128 * b as u128;
            *sa = x as u128 * a as u128;
        }
    } else {
        for (((sb, sa), &x), (&b, &a)) in it {
            *sb += x as u128 * b as u128;
            *sa += x as u128 * a as u128;
        }
    }
}

/// One limb of the key-switching inner product over stored digits, in blocks of coefficients so
/// the 128-bit accumulators stay in L1 while every digit streams through once.
fn inner_product_limb(ob: &mut [u64], oa: &mut [u64], ds: &[&[u64]], kbs: &[&[u64]], kas: &[&[u64]], m: &Modulus) {
    const B: usize = 256;
    let n = ob.len();
    if oa.len() != n || ds.iter().chain(kbs).chain(kas).any(|s| s.len() != n) {
        // Callers pass stale output buffers: leave a defined value.
        ob.fill(0);
        oa.fill(0);
        return;
    }
    let mut acc_b = [0u128; B];
    let mut acc_a = [0u128; B];
    for (blk, (obb, oab)) in ob.chunks_mut(B).zip(oa.chunks_mut(B)).enumerate() {
        let range = blk * B..blk * B + obb.len();
        let (Some(ab), Some(aa)) = (acc_b.get_mut(..obb.len()), acc_a.get_mut(..obb.len())) else {
            return;
        };
        for (j, ((d, kb), ka)) in ds.iter().zip(kbs).zip(kas).enumerate() {
            let (d, kb, ka) = (
                d.get(range.clone()).unwrap_or(&[]),
                kb.get(range.clone()).unwrap_or(&[]),
                ka.get(range.clone()).unwrap_or(&[]),
            );
            accumulate(ab, aa, d, kb, ka, j == 0);
        }
        for (o, &s) in obb.iter_mut().zip(ab.iter()) {
            *o = m.reduce_u128(s);
        }
        for (o, &s) in oab.iter_mut().zip(aa.iter()) {
            *o = m.reduce_u128(s);
        }
    }
}

/// Measures the evaluation exponent of every NTT slot (transforming the monomial `X`) and checks that
/// the order is the same for every prime.
fn measure_ntt_order(primes: &[Prime], n: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let two_n = 2 * n;
    let mut reference: Option<Vec<u32>> = None;
    for p in primes {
        let mut x = vec![0u64; n];
        if let Some(v) = x.get_mut(1) {
            *v = 1;
        }
        p.ntt.forward(&mut x);
        let psi = *x.first().ok_or(CkksError::Internal("empty ntt"))?;
        // Table of psi^e for e < 2N.
        let mut table: HashMap<u64, u32> = HashMap::with_capacity(two_n);
        let mut acc = 1u64;
        for e in 0..two_n as u32 {
            table.insert(acc, e);
            acc = p.m.mul(acc, psi);
        }
        let exps = x
            .iter()
            .map(|w| table.get(w).copied().ok_or(CkksError::Internal("NTT slot is not a power of psi")))
            .collect::<Result<Vec<u32>>>()?;
        match &reference {
            None => reference = Some(exps),
            Some(r) if *r == exps => {}
            Some(_) => return Err(CkksError::Internal("NTT slot order differs between primes")),
        }
    }
    let exps = reference.ok_or(CkksError::Internal("no primes"))?;
    let mut pos = vec![0u32; n];
    for (j, &e) in exps.iter().enumerate() {
        if e % 2 == 0 {
            return Err(CkksError::Internal("NTT slot with even exponent"));
        }
        if let Some(s) = pos.get_mut((e / 2) as usize) {
            *s = j as u32;
        }
    }
    Ok((exps, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn ctx() -> &'static RingContext {
        static C: OnceLock<RingContext> = OnceLock::new();
        C.get_or_init(|| RingContext::new(&CkksParams::new(13, &[50, 40, 40], &[50], 3, 40).unwrap()).unwrap())
    }
    fn ctx_digits2() -> &'static RingContext {
        static C: OnceLock<RingContext> = OnceLock::new();
        C.get_or_init(|| RingContext::new(&CkksParams::new(13, &[45, 30, 30, 30], &[40, 40], 2, 30).unwrap()).unwrap())
    }

    /// Schoolbook negacyclic product mod q (small N only through a slice of the ring: compare on X·a).
    fn coef_of(c: &RingContext, p: &RnsPoly, limb: usize) -> Vec<u64> {
        let mut q = p.clone();
        c.ntt_inverse(&mut q);
        q.data[limb * c.n..(limb + 1) * c.n].to_vec()
    }

    #[test]
    fn tfhe_ntt_is_the_transform_in_use() {
        // fhe-math's NttOperator must produce tfhe-ntt's output order (its native NTT uses another one).
        let c = ctx();
        let p = &c.primes[0];
        let plan = tfhe_ntt::prime64::Plan::try_new(c.n, p.q).unwrap();
        let mut a: Vec<u64> = (0..c.n as u64).map(|i| (i * 7919 + 13) % p.q).collect();
        let mut b = a.clone();
        p.ntt.forward(&mut a);
        plan.fwd(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn galois_permutation_matches_coefficient_automorphism() {
        let c = ctx();
        let n = c.n;
        let coeffs: Vec<i64> = (0..n as i64).map(|i| (i * 31 % 17) - 8).collect();
        let mut a = c.from_i64(&coeffs, c.nq, true);
        c.ntt_forward(&mut a);
        for g in [5u64, 25, 2 * n as u64 - 1, 3] {
            let perm = c.galois_perm(g);
            let b = c.permute(&a, &perm);
            // coefficient automorphism: X^i -> ±X^{i g mod N}
            let mut expect = vec![0i64; n];
            for (i, &v) in coeffs.iter().enumerate() {
                let e = (i as u64 * g) % (2 * n as u64);
                if e < n as u64 {
                    expect[e as usize] += v;
                } else {
                    expect[(e - n as u64) as usize] -= v;
                }
            }
            let e = c.from_i64(&expect, c.nq, true);
            for t in 0..c.num_limbs(c.nq, true) {
                assert_eq!(coef_of(c, &b, t), e.data[t * n..(t + 1) * n].to_vec(), "g={g} limb {t}");
            }
        }
    }

    #[test]
    fn rescale_divides_and_rounds() {
        let c = ctx();
        let n = c.n;
        let q2 = c.primes[2].q as i128;
        // a = q2 * m + r with |r| < q2/2 -> rescale gives m
        let m: Vec<i64> = (0..n as i64).map(|i| (i % 1000) - 500).collect();
        let r: Vec<i64> = (0..n as i64).map(|i| ((i * 7) % 1001) - 500).collect();
        let mut a = c.zero(3, false);
        for t in 0..3 {
            let p = &c.primes[t];
            for k in 0..n {
                a.data[t * n + k] = p.reduce_i128(q2 * m[k] as i128 + r[k] as i128);
            }
        }
        c.ntt_forward(&mut a);
        c.rescale(&mut a).unwrap();
        assert_eq!(a.nq, 2);
        let want = c.from_i64(&m, 2, false);
        for t in 0..2 {
            assert_eq!(coef_of(c, &a, t), want.data[t * n..(t + 1) * n].to_vec());
        }
        let mut z = c.zero(1, false);
        assert!(matches!(c.rescale(&mut z), Err(CkksError::LevelExhausted { .. })));
    }

    fn check_modup_moddown(c: &RingContext) {
        // ModUp then multiply by P (in Q∪P), ModDown must return the original (exactly: x*P/P).
        let n = c.n;
        let nq = c.nq;
        let coeffs: Vec<i64> = (0..n as i64).map(|i| (i * 1_000_003) % 999_983 - 499_991).collect();
        let x_coef = c.from_i64(&coeffs, nq, false);
        let mut x_ntt = x_coef.clone();
        c.ntt_forward(&mut x_ntt);
        let digits = c.mod_up(&x_coef, &x_ntt).unwrap();
        for d in &digits {
            // each digit agrees with x on its own limbs and is a small-multiple lift elsewhere
            assert_eq!(d.nq, nq);
            assert!(d.with_p);
        }
        // Σ_j d_j * g_j with g_j = P on digit limbs, 0 elsewhere in Q, 0 in P: equals P*x mod QP.
        let mut acc = c.zero(nq, true);
        for (j, d) in digits.iter().enumerate() {
            let mut g = c.zero(nq, true);
            let tab = &c.modup[nq - 1][j];
            for t in tab.src.clone() {
                g.data[t * n..(t + 1) * n].fill(c.p_mod_q[t]);
            }
            c.mul_add_assign(&mut acc, d, &g);
        }
        let back = c.mod_down(acc).unwrap();
        assert_eq!(back, x_ntt);
    }

    #[test]
    fn modup_moddown_roundtrip_single_prime_digits() {
        check_modup_moddown(ctx());
    }

    #[test]
    fn modup_moddown_roundtrip_two_prime_digits() {
        check_modup_moddown(ctx_digits2());
    }

    /// A Barrett context for an arbitrary modulus (not necessarily prime or NTT-friendly).
    fn barrett_for(q: u64) -> Barrett {
        let k = 64 - q.leading_zeros();
        Barrett { q, k, mu: (((1u128 << (2 * k + 1)) / q as u128) as u64) << (61 - k) }
    }

    #[test]
    fn barrett_product_is_exact_at_the_extremes() {
        // Largest products (where the quotient estimate is loosest) for every bit size in 3..=61,
        // at both ends of each size's range, and for the context's real primes.
        let mut moduli: Vec<u64> =
            (3..=61u32).flat_map(|k| [(1u64 << (k - 1)) + 1, (1u64 << k) - 1, (1u64 << (k - 1)) | 0x5]).collect();
        moduli.extend(ctx().primes.iter().map(|p| p.q));
        for q in moduli {
            let b = barrett_for(q);
            for (x, y) in [
                (q - 1, q - 1),
                (q - 1, q - 2),
                (q - 2, q - 2),
                (0, q - 1),
                (1, q - 1),
                (q / 2, q - 1),
                (q / 2 + 1, q / 2 + 1),
            ] {
                assert_eq!(b.mul(x, y), ((x as u128 * y as u128) % q as u128) as u64, "q={q} x={x} y={y}");
            }
        }
    }

    #[test]
    fn one_pass_add_and_product_match_the_in_place_ops() {
        let c = ctx();
        let n = c.n;
        let rand = |seed: u64, nq: usize, with_p: bool| {
            let mut p = c.zero(nq, with_p);
            let mut s = seed;
            for (t, limb) in p.data.chunks_exact_mut(n).enumerate() {
                let q = c.limb_prime(t, nq).q;
                for (i, x) in limb.iter_mut().enumerate() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // Include the extremes q-1 and 0 regularly.
                    *x = match i % 5 {
                        0 => q - 1,
                        1 => 0,
                        _ => s % q,
                    };
                }
            }
            p
        };
        for (nq, with_p) in [(c.nq, false), (2, false), (1, false), (c.nq, true)] {
            let a = rand(1 + nq as u64, nq, with_p);
            let b = rand(99 + nq as u64, nq, with_p);
            let mut expect = a.clone();
            c.add_assign(&mut expect, &b);
            assert_eq!(c.add(&a, &b), expect);
            let mut expect = a.clone();
            c.mul_assign(&mut expect, &b);
            assert_eq!(c.mul_matching(&a, &b), expect);
        }
        // Superset operand (a plaintext over Q ∪ P times a Q_l polynomial): limbs matched by prime.
        let full = rand(7, c.nq, true);
        let a = rand(8, 2, false);
        let got = c.mul_matching(&a, &full);
        for t in 0..2 {
            let m = &c.limb_prime(t, 2).m;
            let want: Vec<u64> = a.data[t * n..(t + 1) * n]
                .iter()
                .zip(&full.data[t * n..(t + 1) * n])
                .map(|(&x, &y)| m.reduce_u128(x as u128 * y as u128))
                .collect();
            assert_eq!(got.data[t * n..(t + 1) * n], want[..]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn barrett_product_is_exact(k in 3u32..=61, qlow in any::<u64>(), x in any::<u64>(), y in any::<u64>()) {
            let q = (1u64 << (k - 1)) | (qlow & ((1u64 << (k - 1)) - 1)) | 1;
            let (x, y) = (x % q, y % q);
            prop_assert_eq!(barrett_for(q).mul(x, y), ((x as u128 * y as u128) % q as u128) as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn ntt_round_trip(seed in any::<u64>()) {
            let c = ctx();
            let coeffs: Vec<i64> = (0..c.n as u64).map(|i| (seed.wrapping_mul(i + 1).rotate_left(17) % 2_000_001) as i64 - 1_000_000).collect();
            let a = c.from_i64(&coeffs, c.nq, true);
            let mut b = a.clone();
            c.ntt_forward(&mut b);
            c.ntt_inverse(&mut b);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn ntt_product_is_negacyclic(i in 0usize..8192, j in 0usize..8192, v in -1000i64..1000, w in -1000i64..1000) {
            let c = ctx();
            let n = c.n;
            let mut a = vec![0i64; n]; a[i] = v;
            let mut b = vec![0i64; n]; b[j] = w;
            let mut pa = c.from_i64(&a, 2, false);
            let mut pb = c.from_i64(&b, 2, false);
            c.ntt_forward(&mut pa); c.ntt_forward(&mut pb);
            c.mul_assign(&mut pa, &pb);
            c.ntt_inverse(&mut pa);
            let mut e = vec![0i64; n];
            if i + j < n { e[i + j] = v * w } else { e[i + j - n] = -v * w }
            prop_assert_eq!(pa, c.from_i64(&e, 2, false));
        }
    }
}
