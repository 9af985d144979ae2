//! Homomorphic evaluation with public evaluation keys only.
//!
//! Contract:
//! - Every ciphertext carries its level and scale. Binary operations need equal levels
//!   ([`CkksError::LevelMismatch`]) and, for additions, equal scales up to a relative 1e-9
//!   ([`CkksError::ScaleMismatch`]); objects from another parameter set give
//!   [`CkksError::ParamsMismatch`]. Use [`Evaluator::drop_to_level`] and encode plaintexts at
//!   `ct.scale()` to line operands up.
//! - `mul` multiplies scales; `rescale` divides by the dropped prime `q_l` (not by exactly 2^k), and the
//!   tracked scale follows exactly.
//! - `rotate(ct, k)` returns slot `j` = input slot `j + k (mod N/2)`; negative `k` rotates right.
//! - `rotate_hoisted` decomposes `c_1` once (INTT + ModUp) and reuses it for every step; its results
//!   are bit-identical to `rotate`, which is the one-step case of the same code.
//! - `mul_const` multiplies by a real constant encoded with scale `q_l` and rescales, so the
//!   ciphertext's scale is unchanged and exactly one level is used; `mul_int` uses no level.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::context::{check_level, CkksContext, ContextInner};
use crate::encoder::Plaintext;
use crate::error::{CkksError, Result};
use crate::keys::{conjugation_galois_element, rotation_galois_element, Ciphertext, EvaluationKeys, KeySwitchKey};
use crate::ring::RnsPoly;

const SCALE_REL_TOL: f64 = 1e-9;

/// Evaluates CKKS operations; holds only public keys.
#[derive(Debug, Clone)]
pub struct Evaluator {
    pub(crate) ctx: Arc<ContextInner>,
    pub(crate) keys: Arc<EvaluationKeys>,
    /// Galois element → NTT-order permutation, for every Galois key.
    perms: Arc<BTreeMap<u64, Vec<u32>>>,
}

/// A ciphertext's `c_1` decomposed once for several rotations (see [`Evaluator::hoist`]).
#[derive(Debug, Clone)]
pub struct HoistedCiphertext {
    c0: RnsPoly,
    digits: Vec<RnsPoly>,
    level: usize,
    scale: f64,
    fingerprint: u64,
}

impl HoistedCiphertext {
    /// Bytes held (the `c_0` and the decomposition's polynomials).
    pub(crate) fn size_bytes(&self) -> usize {
        (self.c0.data.len() + self.digits.iter().map(|d| d.data.len()).sum::<usize>()) * std::mem::size_of::<u64>()
    }
}

fn scales_match(a: f64, b: f64) -> bool {
    (a - b).abs() <= SCALE_REL_TOL * a.abs().max(b.abs())
}

impl Evaluator {
    /// An evaluator for `ctx` with the given public keys.
    pub fn new(ctx: &CkksContext, keys: EvaluationKeys) -> Result<Self> {
        ctx.inner.check_fp(keys.fingerprint)?;
        let ring = &ctx.inner.ring;
        let expected = ctx.inner.params.dnum;
        let all_keys = keys.relin.iter().chain(keys.galois.values());
        for k in all_keys {
            // Full keys have `dnum` digits over all of `Q ∪ P`; a level-restricted key the digits
            // of its levels, every polynomial over the same limbs.
            let nq = k.b.first().map_or(0, |p| p.nq);
            let digits = ring.key_digits(nq, expected);
            let uniform =
                k.b.iter().chain(&k.a).all(|p| p.nq == nq && p.with_p && p.data.len() == (nq + ring.np) * ring.n);
            if nq == 0 || nq > ring.nq || k.b.len() != digits || k.a.len() != digits || !uniform {
                return Err(CkksError::Internal("key-switching key with the wrong number of digits or limbs"));
            }
        }
        let perms = keys.galois.keys().map(|&g| (g, ring.galois_perm(g))).collect();
        Ok(Self { ctx: ctx.inner.clone(), keys: Arc::new(keys), perms: Arc::new(perms) })
    }

    fn check(&self, ct: &Ciphertext) -> Result<()> {
        self.ctx.check_fp(ct.fingerprint)
    }

    fn check_pair(&self, a: &Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check(a)?;
        self.check(b)?;
        if a.level != b.level {
            return Err(CkksError::LevelMismatch { a: a.level, b: b.level });
        }
        Ok(())
    }

    fn check_scales(a: f64, b: f64) -> Result<()> {
        if scales_match(a, b) {
            Ok(())
        } else {
            Err(CkksError::ScaleMismatch { a_log2: a.log2(), b_log2: b.log2() })
        }
    }

    fn check_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<()> {
        self.check(ct)?;
        self.ctx.check_fp(pt.fingerprint)?;
        if pt.level < ct.level {
            return Err(CkksError::LevelMismatch { a: ct.level, b: pt.level });
        }
        Ok(())
    }

    // ------------------------------------------------------------ additive

    /// `a + b`.
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        Self::check_scales(a.scale, b.scale)?;
        let ring = &self.ctx.ring;
        // One pass per polynomial (no clone of `a` then add); a longer operand's extra polys are copied.
        let common = a.polys.iter().zip(&b.polys).map(|(pa, pb)| ring.add(pa, pb));
        let rest = a.polys.iter().skip(b.polys.len()).chain(b.polys.iter().skip(a.polys.len())).cloned();
        Ok(Ciphertext {
            polys: common.chain(rest).collect(),
            level: a.level,
            scale: a.scale,
            fingerprint: a.fingerprint,
        })
    }

    /// `a += b`.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check_pair(a, b)?;
        Self::check_scales(a.scale, b.scale)?;
        let ring = &self.ctx.ring;
        for (i, pb) in b.polys.iter().enumerate() {
            match a.polys.get_mut(i) {
                Some(pa) => ring.add_assign(pa, pb),
                None => a.polys.push(pb.clone()),
            }
        }
        Ok(())
    }

    /// `a - b`.
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        Self::check_scales(a.scale, b.scale)?;
        let ring = &self.ctx.ring;
        let mut out = a.clone();
        for (i, pb) in b.polys.iter().enumerate() {
            match out.polys.get_mut(i) {
                Some(pa) => ring.sub_assign(pa, pb),
                None => {
                    let mut nb = pb.clone();
                    ring.neg_assign(&mut nb);
                    out.polys.push(nb);
                }
            }
        }
        Ok(out)
    }

    /// `-a`.
    pub fn negate(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        let mut out = a.clone();
        out.polys.iter_mut().for_each(|p| self.ctx.ring.neg_assign(p));
        Ok(out)
    }

    /// `ct + pt` (the plaintext must have the ciphertext's scale and a level ≥ the ciphertext's).
    pub fn add_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(ct, pt)?;
        Self::check_scales(ct.scale, pt.scale)?;
        let mut out = ct.clone();
        let c0 = out.polys.first_mut().ok_or(CkksError::Internal("empty ciphertext"))?;
        let sub = self.ctx.ring.restrict(&pt.poly, ct.level + 1);
        self.ctx.ring.add_assign(c0, &sub);
        Ok(out)
    }

    /// `ct - pt`.
    pub fn sub_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(ct, pt)?;
        Self::check_scales(ct.scale, pt.scale)?;
        let mut out = ct.clone();
        let c0 = out.polys.first_mut().ok_or(CkksError::Internal("empty ciphertext"))?;
        let sub = self.ctx.ring.restrict(&pt.poly, ct.level + 1);
        self.ctx.ring.sub_assign(c0, &sub);
        Ok(out)
    }

    /// Adds the real constant `c` to every slot (encoded at the ciphertext's scale; no level used).
    pub fn add_const(&self, ct: &Ciphertext, c: f64) -> Result<Ciphertext> {
        self.check(ct)?;
        let v = c * ct.scale;
        if !v.is_finite() || v.abs() >= 1.7e38 {
            return Err(CkksError::EncodeOutOfRange { reason: format!("constant {c} at scale {}", ct.scale) });
        }
        let v = v.round() as i128;
        let ring = &self.ctx.ring;
        let nq = ct.level + 1;
        let per_limb: Vec<u64> = (0..nq).map(|t| ring.limb_prime(t, nq).reduce_i128(v)).collect();
        let mut out = ct.clone();
        let c0 = out.polys.first_mut().ok_or(CkksError::Internal("empty ciphertext"))?;
        ring.add_const_per_limb(c0, &per_limb);
        Ok(out)
    }

    /// Subtracts the real constant `c` from every slot (no level used).
    pub fn sub_const(&self, ct: &Ciphertext, c: f64) -> Result<Ciphertext> {
        self.add_const(ct, -c)
    }

    // ------------------------------------------------------------ multiplicative

    /// Multiplies by an integer (no level, no scale change).
    pub fn mul_int(&self, ct: &Ciphertext, k: i64) -> Result<Ciphertext> {
        self.check(ct)?;
        let mut out = ct.clone();
        out.polys.iter_mut().for_each(|p| self.ctx.ring.mul_scalar_i64(p, k));
        Ok(out)
    }

    /// Multiplies by the real constant `c` encoded at scale `const_scale` (the result's scale is
    /// `ct.scale · const_scale`; not rescaled).
    pub fn mul_const_scaled(&self, ct: &Ciphertext, c: f64, const_scale: f64) -> Result<Ciphertext> {
        self.check(ct)?;
        let v = c * const_scale;
        if !v.is_finite() || v.abs() >= 1.7e38 || !(const_scale.is_finite() && const_scale > 0.0) {
            return Err(CkksError::EncodeOutOfRange { reason: format!("constant {c} at scale {const_scale}") });
        }
        let v = v.round() as i128;
        let ring = &self.ctx.ring;
        let nq = ct.level + 1;
        let mut out = ct.clone();
        for p in out.polys.iter_mut() {
            crate::ring::for_limbs(&mut p.data, ring.n, |t, limb| {
                let pr = ring.limb_prime(t, nq);
                let (w, ws) = pr.shoup_pair(pr.reduce_i128(v));
                limb.iter_mut().for_each(|x| *x = pr.m.mul_shoup(*x, w, ws));
            });
        }
        out.scale = ct.scale * const_scale;
        Ok(out)
    }

    /// Multiplies by a real constant and rescales: uses one level, keeps the scale exactly.
    pub fn mul_const(&self, ct: &Ciphertext, c: f64) -> Result<Ciphertext> {
        self.check(ct)?;
        if ct.level == 0 {
            return Err(CkksError::LevelExhausted { op: "mul_const" });
        }
        let ql = self.ctx.ring.limb_prime(ct.level, ct.level + 1).q as f64;
        let mut out = self.mul_const_scaled(ct, c, ql)?;
        self.rescale_assign(&mut out)?;
        out.scale = ct.scale; // exact: (scale · q_l) / q_l
        Ok(out)
    }

    /// `ct · pt` (scales multiply; the plaintext's level must be ≥ the ciphertext's).
    pub fn mul_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(ct, pt)?;
        let polys = ct.polys.iter().map(|p| self.ctx.ring.mul_matching(p, &pt.poly)).collect();
        Ok(Ciphertext { polys, level: ct.level, scale: ct.scale * pt.scale, fingerprint: ct.fingerprint })
    }

    /// `acc + ct · pt` in one pass (the executor's fused multiply-accumulate of plaintext
    /// diagonals): the same result as `add(acc, mul_plain(ct, pt))`, scale `acc.scale()`.
    pub fn mul_plain_add(&self, acc: &Ciphertext, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_pair(acc, ct)?;
        self.check_plain(ct, pt)?;
        Self::check_scales(acc.scale, ct.scale * pt.scale)?;
        let ring = &self.ctx.ring;
        let polys = (0..acc.polys.len().max(ct.polys.len()))
            .filter_map(|i| match (acc.polys.get(i), ct.polys.get(i)) {
                (Some(a), Some(x)) => Some(ring.mul_add(a, x, &pt.poly)),
                (Some(a), None) => Some(a.clone()),
                (None, Some(x)) => Some(ring.mul_matching(x, &pt.poly)),
                (None, None) => None,
            })
            .collect();
        Ok(Ciphertext { polys, level: acc.level, scale: acc.scale, fingerprint: acc.fingerprint })
    }

    /// In-place [`Self::mul_plain_add`]: `acc += ct · pt`.
    pub fn mul_plain_add_assign(&self, acc: &mut Ciphertext, ct: &Ciphertext, pt: &Plaintext) -> Result<()> {
        self.check_pair(acc, ct)?;
        self.check_plain(ct, pt)?;
        Self::check_scales(acc.scale, ct.scale * pt.scale)?;
        let ring = &self.ctx.ring;
        for (i, x) in ct.polys.iter().enumerate() {
            match acc.polys.get_mut(i) {
                Some(a) => ring.mul_add_assign_matching(a, x, &pt.poly),
                None => acc.polys.push(ring.mul_matching(x, &pt.poly)),
            }
        }
        Ok(())
    }

    /// `a · b` without relinearization (3 polynomials).
    pub fn mul(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        let (a0, a1) = Self::two(a, "mul")?;
        let (b0, b1) = Self::two(b, "mul")?;
        let (d0, d1, d2) = self.ctx.ring.tensor(a0, a1, b0, b1);
        Ok(Ciphertext { polys: vec![d0, d1, d2], level: a.level, scale: a.scale * b.scale, fingerprint: a.fingerprint })
    }

    /// `a²` without relinearization.
    pub fn square(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        let (a0, a1) = Self::two(a, "square")?;
        let (d0, d1, d2) = self.ctx.ring.tensor(a0, a1, a0, a1);
        Ok(Ciphertext { polys: vec![d0, d1, d2], level: a.level, scale: a.scale * a.scale, fingerprint: a.fingerprint })
    }

    /// `a · b` relinearized.
    pub fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        let m = self.mul(a, b)?;
        self.relinearize(&m)
    }

    /// `a · b`, relinearized and rescaled.
    pub fn mul_relin_rescale(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        let mut m = self.mul_relin(a, b)?;
        self.rescale_assign(&mut m)?;
        Ok(m)
    }

    /// Relinearizes a 3-polynomial ciphertext (2-polynomial ones are returned unchanged).
    pub fn relinearize(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.check(ct)?;
        match ct.polys.as_slice() {
            [_, _] => Ok(ct.clone()),
            [c0, c1, c2] => {
                let key = self.keys.relin.as_ref().ok_or(CkksError::MissingRelinKey)?;
                let (mut u0, mut u1) = self.switch_poly(c2, key)?;
                let ring = &self.ctx.ring;
                ring.add_assign(&mut u0, c0);
                ring.add_assign(&mut u1, c1);
                Ok(Ciphertext { polys: vec![u0, u1], level: ct.level, scale: ct.scale, fingerprint: ct.fingerprint })
            }
            other => Err(CkksError::CiphertextDegree { op: "relinearize", expected: 3, found: other.len() }),
        }
    }

    /// Divides by the last prime, dropping one level.
    pub fn rescale(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        let mut out = ct.clone();
        self.rescale_assign(&mut out)?;
        Ok(out)
    }

    /// In-place [`Self::rescale`].
    pub fn rescale_assign(&self, ct: &mut Ciphertext) -> Result<()> {
        self.check(ct)?;
        if ct.level == 0 {
            return Err(CkksError::LevelExhausted { op: "rescale" });
        }
        let ql = self.ctx.ring.limb_prime(ct.level, ct.level + 1).q as f64;
        for p in ct.polys.iter_mut() {
            self.ctx.ring.rescale(p)?;
        }
        ct.level -= 1;
        ct.scale /= ql;
        Ok(())
    }

    /// Drops primes without dividing (mod-drop) down to `level`; the scale is unchanged.
    pub fn drop_to_level(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext> {
        self.check(ct)?;
        check_level(level, ct.level)?;
        let mut out = ct.clone();
        out.polys.iter_mut().for_each(|p| self.ctx.ring.truncate_q(p, level + 1));
        out.level = level;
        Ok(out)
    }

    // ------------------------------------------------------------ rotations

    fn two<'a>(ct: &'a Ciphertext, op: &'static str) -> Result<(&'a RnsPoly, &'a RnsPoly)> {
        match ct.polys.as_slice() {
            [c0, c1] => Ok((c0, c1)),
            other => Err(CkksError::CiphertextDegree { op, expected: 2, found: other.len() }),
        }
    }

    /// INTT + ModUp of an NTT-form polynomial over `Q_l`.
    fn decompose(&self, c: &RnsPoly) -> Result<Vec<RnsPoly>> {
        let mut coef = c.clone();
        self.ctx.ring.ntt_inverse(&mut coef);
        self.ctx.ring.mod_up(&coef, c)
    }

    /// Inner product of stored digits with a key, and ModDown.
    fn switch(&self, digits: &[RnsPoly], key: &KeySwitchKey) -> Result<(RnsPoly, RnsPoly)> {
        let ring = &self.ctx.ring;
        let (b, a) = ring.key_inner_product(digits, &key.b, &key.a)?;
        Ok((ring.mod_down(b)?, ring.mod_down(a)?))
    }

    /// Full key switch of an NTT-form polynomial (ModUp fused with the inner product), and ModDown.
    fn switch_poly(&self, c: &RnsPoly, key: &KeySwitchKey) -> Result<(RnsPoly, RnsPoly)> {
        let ring = &self.ctx.ring;
        let mut coef = c.clone();
        ring.ntt_inverse(&mut coef);
        let (b, a) = ring.key_switch_fused(&coef, c, &key.b, &key.a)?;
        Ok((ring.mod_down(b)?, ring.mod_down(a)?))
    }

    fn galois(&self, g: u64, err: CkksError) -> Result<(&KeySwitchKey, &[u32])> {
        match (self.keys.galois.get(&g), self.perms.get(&g)) {
            (Some(k), Some(p)) => Ok((k, p.as_slice())),
            _ => Err(err),
        }
    }

    /// Decomposes `c_1` once for several rotations.
    pub fn hoist(&self, ct: &Ciphertext) -> Result<HoistedCiphertext> {
        self.check(ct)?;
        let (c0, c1) = Self::two(ct, "hoist")?;
        Ok(HoistedCiphertext {
            c0: c0.clone(),
            digits: self.decompose(c1)?,
            level: ct.level,
            scale: ct.scale,
            fingerprint: ct.fingerprint,
        })
    }

    /// Applies the automorphism `g` to a hoisted ciphertext.
    fn apply_galois(&self, h: &HoistedCiphertext, g: u64, err: CkksError) -> Result<Ciphertext> {
        self.ctx.check_fp(h.fingerprint)?;
        let (key, perm) = self.galois(g, err)?;
        let (u0, u1) = self.switch(&h.digits, key)?;
        Ok(self.finish_galois(&h.c0, u0, u1, perm, h.level, h.scale))
    }

    /// key = σ^{-1}(k): σ(c_0 + ModDown(Σ d_j·σ^{-1}(k_j))) = σ(c_0) + key-switch(σ(c_1)).
    /// (ModDown commutes with σ: it acts coefficient-wise and its centered lift is odd.)
    fn finish_galois(
        &self,
        c0: &RnsPoly,
        mut u0: RnsPoly,
        u1: RnsPoly,
        perm: &[u32],
        level: usize,
        scale: f64,
    ) -> Ciphertext {
        let ring = &self.ctx.ring;
        ring.add_assign(&mut u0, c0);
        Ciphertext {
            polys: vec![ring.permute(&u0, perm), ring.permute(&u1, perm)],
            level,
            scale,
            fingerprint: self.ctx.fingerprint,
        }
    }

    /// One automorphism without storing the decomposition (same arithmetic as the hoisted path,
    /// so the result is bit-identical).
    fn galois_single(&self, ct: &Ciphertext, g: u64, err: CkksError) -> Result<Ciphertext> {
        self.check(ct)?;
        let (c0, c1) = Self::two(ct, "rotate")?;
        let (key, perm) = self.galois(g, err)?;
        let (u0, u1) = self.switch_poly(c1, key)?;
        Ok(self.finish_galois(c0, u0, u1, perm, ct.level, ct.scale))
    }

    /// Rotation of a hoisted ciphertext by `step` slots.
    pub fn rotate_hoisted_one(&self, h: &HoistedCiphertext, step: i64) -> Result<Ciphertext> {
        let log_n = self.ctx.params.log_n;
        let g = rotation_galois_element(log_n, step);
        if g == 1 {
            return Ok(Ciphertext {
                polys: vec![h.c0.clone(), self.recompose_c1(h)?],
                level: h.level,
                scale: h.scale,
                fingerprint: h.fingerprint,
            });
        }
        self.apply_galois(h, g, CkksError::MissingGaloisKey { step })
    }

    /// `c_1` back from a hoisted ciphertext (its first digit's Q limbs are `c_1`'s own limbs only when
    /// digits have one prime, so recompute from the digit limbs in general).
    fn recompose_c1(&self, h: &HoistedCiphertext) -> Result<RnsPoly> {
        // Digit j holds c_1's NTT limbs on its own primes; gather them.
        let ring = &self.ctx.ring;
        let n = ring.n;
        let nq = h.level + 1;
        let mut out = ring.zero(nq, false);
        let alpha = ring.alpha;
        for (t, limb) in out.data.chunks_exact_mut(n).enumerate() {
            let d = h.digits.get(t / alpha).ok_or(CkksError::Internal("digit index"))?;
            limb.copy_from_slice(d.data.get(t * n..(t + 1) * n).ok_or(CkksError::Internal("digit limb"))?);
        }
        Ok(out)
    }

    /// The baby-step giant-step sum `Σ_g rot_g(Σ_b pt_{g,b} ⊙ rot_b(ct))` (`giants`: each giant
    /// step with its `(baby step, plaintext)` terms; plaintexts encoded over `Q_l ∪ P` at one
    /// scale), double hoisted (Bossuat–Mouchet–Troncoso-Pastoriza–Hubaux, Eurocrypt 2021): `c_1`
    /// is decomposed once, every baby rotation stays over `Q_l ∪ P` (no ModDown), the products
    /// and inner sums are taken there, and each giant's key-switching output is accumulated there
    /// too. So the ModDowns are one per giant (its inner sum, before its rotation) and one at the
    /// end, where [`Self::rotate_hoisted`] and [`Self::rotate`] take one per rotation. Not
    /// rescaled: the scale is `ct.scale() · pt.scale()`.
    pub(crate) fn bsgs_double_hoisted(
        &self,
        ct: &Ciphertext,
        giants: &[(i64, Vec<(i64, &Plaintext)>)],
    ) -> Result<Ciphertext> {
        self.check(ct)?;
        let ring = &self.ctx.ring;
        let log_n = self.ctx.params.log_n;
        let (c0, c1) = Self::two(ct, "rotate")?;
        let mut pt_scale = None;
        for (_, terms) in giants {
            for &(_, pt) in terms {
                self.ctx.check_fp(pt.fingerprint)?;
                if !pt.poly.with_p || pt.level < ct.level {
                    return Err(CkksError::Internal(
                        "double-hoisted plaintext not over Q_l ∪ P at the ciphertext's level",
                    ));
                }
                pt_scale.get_or_insert(pt.scale);
            }
        }
        let pt_scale = pt_scale.ok_or(CkksError::Internal("empty baby-step giant-step sum"))?;
        let mut babies: Vec<i64> = giants.iter().flat_map(|(_, t)| t.iter().map(|&(b, _)| b)).collect();
        babies.sort_unstable();
        babies.dedup();
        let digits = if babies.iter().any(|&b| rotation_galois_element(log_n, b) != 1) {
            Some(self.decompose(c1)?)
        } else {
            None
        };
        // P·c_0 joins the key-switching outputs over Q_l ∪ P (ModDown returns c_0 exactly)
        let c0p = ring.times_p_extended(c0);
        let mut rotated: BTreeMap<i64, (RnsPoly, RnsPoly)> = BTreeMap::new();
        for &b in &babies {
            let g = rotation_galois_element(log_n, b);
            let pair = match &digits {
                Some(d) if g != 1 => {
                    let (key, perm) = self.galois(g, CkksError::MissingGaloisKey { step: b })?;
                    let (mut u0, u1) = ring.key_inner_product(d, &key.b, &key.a)?;
                    ring.add_assign(&mut u0, &c0p);
                    (ring.permute(&u0, perm), ring.permute(&u1, perm))
                }
                _ => (c0p.clone(), ring.times_p_extended(c1)),
            };
            rotated.insert(b, pair);
        }
        drop(digits);
        let mut acc: Option<(RnsPoly, RnsPoly)> = None;
        for (g, terms) in giants {
            let mut inner: Option<(RnsPoly, RnsPoly)> = None;
            for &(b, pt) in terms {
                let (x0, x1) = rotated.get(&b).ok_or(CkksError::Internal("missing baby rotation"))?;
                match inner.as_mut() {
                    None => inner = Some((ring.mul_matching(x0, &pt.poly), ring.mul_matching(x1, &pt.poly))),
                    Some((i0, i1)) => {
                        ring.mul_add_assign_matching(i0, x0, &pt.poly);
                        ring.mul_add_assign_matching(i1, x1, &pt.poly);
                    }
                }
            }
            let Some((i0, i1)) = inner else { continue };
            let ge = rotation_galois_element(log_n, *g);
            let term = if ge == 1 {
                (i0, i1)
            } else {
                let (key, perm) = self.galois(ge, CkksError::MissingGaloisKey { step: *g })?;
                let (d0, d1) = (ring.mod_down(i0)?, ring.mod_down(i1)?);
                let mut coef = d1.clone();
                ring.ntt_inverse(&mut coef);
                let (mut u0, u1) = ring.key_switch_fused(&coef, &d1, &key.b, &key.a)?;
                ring.add_assign(&mut u0, &ring.times_p_extended(&d0));
                (ring.permute(&u0, perm), ring.permute(&u1, perm))
            };
            match acc.as_mut() {
                None => acc = Some(term),
                Some((a0, a1)) => {
                    ring.add_assign(a0, &term.0);
                    ring.add_assign(a1, &term.1);
                }
            }
        }
        let (a0, a1) = acc.ok_or(CkksError::Internal("empty baby-step giant-step sum"))?;
        Ok(Ciphertext {
            polys: vec![ring.mod_down(a0)?, ring.mod_down(a1)?],
            level: ct.level,
            scale: ct.scale * pt_scale,
            fingerprint: ct.fingerprint,
        })
    }

    /// Rotates left by `step` slots (negative: right).
    pub fn rotate(&self, ct: &Ciphertext, step: i64) -> Result<Ciphertext> {
        self.check(ct)?;
        let g = rotation_galois_element(self.ctx.params.log_n, step);
        if g == 1 {
            return Ok(ct.clone());
        }
        self.galois_single(ct, g, CkksError::MissingGaloisKey { step })
    }

    /// Several rotations of one ciphertext sharing one decomposition.
    pub fn rotate_hoisted(&self, ct: &Ciphertext, steps: &[i64]) -> Result<Vec<Ciphertext>> {
        let h = self.hoist(ct)?;
        steps.iter().map(|&s| self.rotate_hoisted_one(&h, s)).collect()
    }

    /// Every slot multiplied by `i`: the product with the monomial `X^{N/2}` (exact, no level, no
    /// scale change, no key).
    pub fn mul_by_i(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.check(ct)?;
        let ring = &self.ctx.ring;
        let n = ring.n;
        let mut mono = vec![0i64; n];
        if let Some(c) = mono.get_mut(n / 2) {
            *c = 1;
        }
        let mut m = ring.from_i64(&mono, ct.level + 1, false);
        ring.ntt_forward(&mut m);
        let polys = ct.polys.iter().map(|p| ring.mul_matching(p, &m)).collect();
        Ok(Ciphertext { polys, level: ct.level, scale: ct.scale, fingerprint: ct.fingerprint })
    }

    /// Complex conjugation of every slot.
    pub fn conjugate(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.galois_single(ct, conjugation_galois_element(self.ctx.params.log_n), CkksError::MissingConjugationKey)
    }

    /// Sum of `count` slots spaced `stride` apart, in every slot: result slot `j` =
    /// `Σ_{i<count} ct[j + i·stride]`. `count` must be a power of two; needs rotation keys for
    /// `stride·2^k`, `k < log2(count)`.
    pub fn rotate_and_sum(&self, ct: &Ciphertext, count: usize, stride: i64) -> Result<Ciphertext> {
        self.check(ct)?;
        if !count.is_power_of_two() {
            return Err(CkksError::InvalidParameters {
                reason: format!("rotate_and_sum count {count} is not a power of two"),
            });
        }
        let mut acc = ct.clone();
        let mut shift = stride;
        let mut c = 1;
        while c < count {
            let r = self.rotate(&acc, shift)?;
            self.add_assign(&mut acc, &r)?;
            shift *= 2;
            c *= 2;
        }
        Ok(acc)
    }

    /// Sum of all N/2 slots, replicated in every slot (keys for powers of two up to N/4).
    pub fn inner_sum(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.rotate_and_sum(ct, self.ctx.params.slots(), 1)
    }

    /// Rotation steps [`Self::inner_sum`] and [`Self::rotate_and_sum`] need.
    pub fn rotate_and_sum_steps(count: usize, stride: i64) -> Vec<i64> {
        let mut v = Vec::new();
        let mut s = stride;
        let mut c = 1;
        while c < count {
            v.push(s);
            s *= 2;
            c *= 2;
        }
        v
    }

    /// The context this evaluator works in.
    pub fn context(&self) -> CkksContext {
        CkksContext { inner: self.ctx.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::CkksParams;
    use crate::{ClientKeys, Encoder};

    /// Regression: uncentered ModUp digits left a structured, key-dependent error (coefficient mean
    /// ≈ 15, std ≈ 137) that cost 4 bits after every rotation. Centered digits give a zero-mean
    /// noise of std ≈ σ·sqrt(N/12)·q_0/P ≈ 84 here.
    #[test]
    fn key_switching_noise_is_centered_and_small() {
        let ctx = CkksContext::new(CkksParams::new(13, &[50, 40, 40], &[50], 3, 40).unwrap()).unwrap();
        let ck = ClientKeys::generate(&ctx).unwrap();
        let ev = Evaluator::new(&ctx, ck.evaluation_keys(&[1], false).unwrap()).unwrap();
        let enc = Encoder::new(&ctx);
        let ct = ck.encryptor().encrypt(&enc.encode(&[0.0], 2, 2f64.powi(40)).unwrap()).unwrap();
        let stats = |ct: &Ciphertext| {
            let mut p = ck.decrypt(ct).unwrap().poly;
            ctx.inner.ring.ntt_inverse(&mut p);
            let v = enc.crt_to_f64(&p).unwrap();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            ((v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt(), mean)
        };
        let (fresh_std, _) = stats(&ct);
        assert!(fresh_std < 30.0, "fresh std {fresh_std}");
        let (std, mean) = stats(&ev.rotate(&ct, 1).unwrap());
        assert!(std < 110.0 && mean.abs() < 4.0, "rotation noise std {std}, mean {mean}");
    }

    /// The double-hoisted baby-step giant-step sum equals the same sum by separate rotations and
    /// products (up to noise, which is no larger: one ModDown per giant instead of per rotation),
    /// with a giant of 0, a baby of 0, a negative step and several digits.
    #[test]
    fn double_hoisted_bsgs_matches_separate_rotations() {
        use num_complex::Complex64;
        let ctx = CkksContext::new(CkksParams::new(13, &[50, 40, 40], &[50], 3, 40).unwrap()).unwrap();
        let ck = ClientKeys::generate(&ctx).unwrap();
        let steps = [1, 2, 3, -4, 8];
        let ev = Evaluator::new(&ctx, ck.evaluation_keys(&steps, false).unwrap()).unwrap();
        let enc = Encoder::new(&ctx);
        let slots = ctx.params().slots();
        let x: Vec<f64> = (0..slots).map(|j| ((j * 7 % 23) as f64 / 11.0) - 1.0).collect();
        let ct = ck.encryptor().encrypt(&enc.encode(&x, 2, 2f64.powi(40)).unwrap()).unwrap();
        let diag = |seed: usize| -> Vec<Complex64> {
            (0..slots).map(|j| Complex64::new((((j + seed) * 13 % 17) as f64) / 17.0 - 0.5, 0.0)).collect()
        };
        let plan: Vec<(i64, Vec<i64>)> = vec![(0, vec![0, 1, 2]), (-4, vec![0, 3]), (8, vec![1, 2, 3])];
        let mut pts = BTreeMap::new();
        for (k, (g, babies)) in plan.iter().enumerate() {
            for (i, &b) in babies.iter().enumerate() {
                let d = diag(10 * k + i);
                let qp = enc.encode_complex_basis(&d, 2, 2f64.powi(40), true).unwrap();
                let q = enc.encode_complex(&d, 2, 2f64.powi(40)).unwrap();
                pts.insert((*g, b), (qp, q));
            }
        }
        let giants: Vec<(i64, Vec<(i64, &Plaintext)>)> =
            plan.iter().map(|(g, babies)| (*g, babies.iter().map(|&b| (b, &pts[&(*g, b)].0)).collect())).collect();
        let fast = ev.bsgs_double_hoisted(&ct, &giants).unwrap();
        let mut slow: Option<Ciphertext> = None;
        for (g, babies) in &plan {
            let mut inner: Option<Ciphertext> = None;
            for &b in babies {
                let term = ev.mul_plain(&ev.rotate(&ct, b).unwrap(), &pts[&(*g, b)].1).unwrap();
                inner = Some(match inner {
                    None => term,
                    Some(i) => ev.add(&i, &term).unwrap(),
                });
            }
            let r = ev.rotate(&inner.unwrap(), *g).unwrap();
            slow = Some(match slow {
                None => r,
                Some(s) => ev.add(&s, &r).unwrap(),
            });
        }
        let slow = slow.unwrap();
        assert_eq!((fast.level, fast.scale), (slow.level, slow.scale));
        let a = enc.decode(&ck.decrypt(&fast).unwrap()).unwrap();
        let b = enc.decode(&ck.decrypt(&slow).unwrap()).unwrap();
        // the plaintext reference: out[j] = Σ_g Σ_b d_{g,b}[j + g] · x[j + g + b]
        let at = |v: &[f64], i: i64| v[i.rem_euclid(slots as i64) as usize];
        let mut want = vec![0.0; slots];
        for (k, (g, babies)) in plan.iter().enumerate() {
            for (i, &b) in babies.iter().enumerate() {
                let d: Vec<f64> = diag(10 * k + i).iter().map(|c| c.re).collect();
                for (j, w) in want.iter_mut().enumerate() {
                    *w += at(&d, j as i64 + g) * at(&x, j as i64 + g + b);
                }
            }
        }
        let err = |v: &[f64]| v.iter().zip(&want).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(err(&b) < 1e-6, "separate rotations: {:e}", err(&b));
        assert!(err(&a) <= 2.0 * err(&b).max(1e-9), "double hoisted {:e} vs separate {:e}", err(&a), err(&b));
    }
}
