//! CKKS bootstrapping (Cheon–Han–Kim–Kim–Song 2018 with Han–Ki's cosine + double-angle EvalMod and
//! log-depth, BSGS-evaluated CoeffsToSlots/SlotsToCoeffs). Design notes: `docs/bootstrapping.md`.
//!
//! Contract:
//! - [`Bootstrapper::bootstrap`] takes a degree-2 ciphertext at any level and refreshes the first
//!   `n = 2^log_slots` slots: output slot `j` (every `j < N/2`, period `n`) is
//!   `(2n/N)·Σ_k in[(j + k·n) mod N/2]` up to the bootstrapping error. So an `n`-periodic input (the
//!   `n` values replicated over the `N/2` slots, the usual sparse packing) comes back unchanged; for
//!   `n = N/2` this is the identity. (A zero-padded input comes back replicated and divided by
//!   `N/(2n)`; replicate it first with `Evaluator::rotate_and_sum(ct, N/(2n), -n)`.) The output is
//!   at [`Bootstrapper::output_level`] `= max_level − levels_consumed`.
//! - With [`BootstrapConfig::zero_padded`] (and `n < N/2`) the input must be zero outside slots
//!   `0..n` instead (up to noise), and the output is the input: slots `0..n` refreshed, every other
//!   slot zero. Both sides are free: the input is taken to `N/(2n)` times the message scale (the
//!   trace then sums one nonzero copy per slot class, and a replicated input's message has the same
//!   coefficient size, so the precision is the same), and the last SlotsToCoeffs group's
//!   diagonals are masked to rows `0..n`. Noise in the zero slots is summed into the refreshed
//!   ones (`N/(2n)` copies), far below the bootstrapping error.
//! - Output scale: exactly `params.default_scale()` when the input is at level ≥ 1 (one level of the
//!   input is spent setting the message scale to `Δ_message = q_0 / 2^log_message_ratio` exactly).
//!   A level-0 input is scaled up by the integer `u = round(Δ_message / scale)` instead, and the
//!   output scale is `default_scale · u·scale / Δ_message` (within a factor `1 ± 1/(2u)` of it),
//!   tracked exactly in the ciphertext.
//! - The Galois keys needed are [`Bootstrapper::rotation_steps`] plus conjugation; a missing key
//!   gives [`CkksError::MissingGaloisKey`] / [`CkksError::MissingConjugationKey`].
//! - [`Bootstrapper::new`] checks, and reports as [`CkksError::InvalidParameters`], every
//!   infeasibility: too few levels, `|I|` bound `K` below what the secret's Hamming weight implies,
//!   an EvalMod approximation error above 2^-20, an unusable slot count.
//! - Precision depends on `log_message_ratio` (`q_0 / Δ_message`): the sine's nonlinearity costs
//!   `≈ (2π·|m|/q_0)²/6` relative error, the EvalMod noise is amplified by `q_0 / (2π·Δ_message)`.

mod evalmod;
mod linear;

use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::context::CkksContext;
use crate::encoder::{Encoder, Plaintext};
use crate::error::{CkksError, Result};
use crate::eval::Evaluator;
use crate::keys::Ciphertext;
use crate::params::CkksParams;

use evalmod::{ChebyshevPoly, PolyPlan};
use linear::LinearTransform;

/// Bootstrapping parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// `n = 2^log_slots` complex slots are refreshed (`1 ≤ log_slots ≤ log_n − 1`).
    pub log_slots: u32,
    /// EvalMod interval: `x = t/q_0 ∈ [−K, K]`, i.e. `|I| ≤ K − 1` for the ModRaise overflow `I`.
    pub k: u32,
    /// Degree of the Chebyshev interpolant of the scaled cosine.
    pub cos_degree: usize,
    /// Double-angle steps `r`.
    pub double_angle: u32,
    /// Levels (grouped FFT stages) of CoeffsToSlots.
    pub cts_levels: usize,
    /// Levels of SlotsToCoeffs.
    pub stc_levels: usize,
    /// log2 of `q_0 / Δ_message`: the message is scaled to `q_0 / 2^ratio` before ModRaise.
    pub log_message_ratio: u32,
    /// Sparse inputs (`n < N/2`) that are zero outside slots `0..n` instead of `n`-periodic, and
    /// outputs likewise (see [`Bootstrapper::bootstrap`]); ignored for full slots.
    pub zero_padded: bool,
    /// Weight of a giant step against a baby step when the baby size of each linear-transform
    /// group is chosen (the plan minimizes `babies + giant_step_cost · giants`). The transforms
    /// are double hoisted, so a baby rotation is an inner product and a permutation while a giant
    /// is a whole key switch: 3 is about their cost ratio at N = 2^16 and minimizes time; 1
    /// minimizes the number of rotations, i.e. the Galois keys (a few fewer, each ~150 MB at the
    /// top of a 2^16 chain), which is what a key-memory budget may need instead.
    pub giant_step_cost: usize,
}

/// Extra output scale of the CoeffsToSlots groups before the last (see [`Bootstrapper::new`]).
const CTS_HEADROOM: f64 = 1024.0;

/// A standard-normal tail of 6.5σ for `I`'s coefficients (≈ 2^-32 per coefficient), plus one.
fn k_for_weight(h: usize) -> u32 {
    let sigma = ((h as f64 + 1.0) / 12.0).sqrt();
    (6.5 * sigma).ceil() as u32 + 1
}

/// The secret's Hamming weight, or the expected weight `2N/3` of a uniform ternary secret.
fn weight(params: &CkksParams) -> usize {
    params.hamming_weight().unwrap_or(2 * params.n() / 3)
}

impl BootstrapConfig {
    /// Defaults for `params`: `K` from the secret's Hamming weight, `r = 3` double angles (more for
    /// large `K`), the smallest cosine degree with an EvalMod error ≤ 2^-40 (capped at 255), two
    /// levels for each linear transform (one if `log_slots ≤ 4`, three above 2^9 slots), and a
    /// message ratio from 2^12 (few slots) down to 2^9 (4096 slots and more).
    pub fn default_for(params: &CkksParams, log_slots: u32) -> Self {
        let k = k_for_weight(weight(params));
        // keep the cosine's argument range 2πK/2^r around 12–25 radians
        let double_angle = (f64::from(k).log2().ceil() as u32).saturating_sub(2).max(3);
        let mut cos_degree = 255;
        for d in (8..=255).step_by(2) {
            let p = ChebyshevPoly::fit(evalmod::scaled_cos(f64::from(k), double_angle), d);
            if evalmod::sine_error(&p, f64::from(k), double_angle) <= 2f64.powi(-40) {
                cos_degree = d;
                break;
            }
        }
        let lt_levels = match log_slots {
            0..=4 => 1,
            5..=9 => 2,
            _ => 3,
        };
        Self {
            log_slots,
            k,
            cos_degree,
            double_angle,
            cts_levels: lt_levels,
            stc_levels: lt_levels,
            // SlotsToCoeffs amplifies EvalMod's noise by ≈ √n·2^ratio, while the sine's
            // nonlinearity hurts most when few slots make large coefficients: measured optimum
            // at N = 2^13 moves from 12 (8–32 slots) to 10 (1024) and 9 (4096)
            log_message_ratio: match log_slots {
                0..=6 => 12,
                7..=9 => 11,
                10..=11 => 10,
                _ => 9,
            },
            zero_padded: false,
            giant_step_cost: 3,
        }
    }

    /// Levels one bootstrapping with this configuration consumes (CtS + EvalMod polynomial + double
    /// angles + StC), computed without a context: the chain needs at least this many primes above
    /// the levels kept for computation (and `q_0`).
    pub fn levels(&self) -> usize {
        self.cts_levels + self.eval_mod_depth() + self.stc_levels
    }

    /// Levels of EvalMod: the cosine polynomial's depth plus the double angles.
    fn eval_mod_depth(&self) -> usize {
        let cheb = ChebyshevPoly::fit(
            evalmod::scaled_cos(f64::from(self.k), self.double_angle),
            self.cos_degree.clamp(2, 1023),
        );
        PolyPlan::new(&cheb).depth + self.double_angle as usize
    }

    /// The rotation steps (normalized to `0..N/2`, sorted, one per Galois element) a
    /// [`Bootstrapper`] with this configuration needs at ring degree `2^log_n`, computed without a
    /// context (equal to [`Bootstrapper::rotation_steps`]: the steps depend only on which
    /// diagonals the grouped FFT maps have, not on their values). Conjugation is needed too.
    pub fn rotation_steps(&self, log_n: u32) -> Vec<i64> {
        // Building the maps takes ~1.4 s at N = 2^16, and callers ask repeatedly for the same
        // shape (the compiler's parameter search, then `Program::rotation_steps`): memoized by
        // what the steps depend on.
        type Key = (u32, u32, usize, usize, usize);
        static CACHE: OnceLock<Mutex<HashMap<Key, Vec<i64>>>> = OnceLock::new();
        let key = (log_n, self.log_slots, self.cts_levels, self.stc_levels, self.giant_step_cost);
        let cache = CACHE.get_or_init(Default::default);
        if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return v;
        }
        let v = self.build_rotation_steps(log_n);
        if let Ok(mut c) = cache.lock() {
            c.insert(key, v.clone());
        }
        v
    }

    fn build_rotation_steps(&self, log_n: u32) -> Vec<i64> {
        let slots = 1usize << log_n.saturating_sub(1);
        let n = 1usize << self.log_slots.min(log_n.saturating_sub(1));
        let (cts, stc) = transform_maps(n, slots, self.cts_levels, self.stc_levels, 1.0, 1.0);
        let mut v: Vec<i64> =
            cts.iter().chain(&stc).flat_map(|m| linear::BsgsPlan::new(m, self.giant_step_cost).steps()).collect();
        v.extend(Evaluator::rotate_and_sum_steps(slots / n, n as i64));
        v.iter_mut().for_each(|s| *s = s.rem_euclid(slots as i64));
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The grouped CoeffsToSlots and SlotsToCoeffs maps of a bootstrapping of `n` slots (out of
/// `slots`), with the sparse packing's masking of the last CtS group and the joining of the
/// halves in the first StC group when `2n ≤ slots`.
fn transform_maps(
    n: usize,
    slots: usize,
    cts_levels: usize,
    stc_levels: usize,
    c_cts: f64,
    c_stc: f64,
) -> (Vec<linear::DiagMap>, Vec<linear::DiagMap>) {
    let packed = 2 * n <= slots;
    let mut cts = linear::coeffs_to_slots_maps(n, cts_levels, c_cts);
    if packed {
        if let Some(last) = cts.last_mut() {
            // zero the second half of every 2n-period, making room for the imaginary part
            let mut masked = last.lift(2 * n);
            masked.mask_rows(|j| if j % (2 * n) < n { 1.0 } else { 0.0 });
            *last = masked;
        }
    }
    let mut stc = linear::slots_to_coeffs_maps(n, stc_levels, c_stc);
    if packed {
        if let Some(first) = stc.first_mut() {
            *first = first.lift(2 * n).compose(&linear::join_halves(n));
        }
    }
    (cts, stc)
}

/// Wall-clock time per bootstrapping phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BootstrapTimings {
    /// Scale adjustment, mod-drop and ModRaise.
    pub mod_raise: Duration,
    /// SubSum (sparse packing only).
    pub sub_sum: Duration,
    /// CoeffsToSlots, including the real/imaginary split.
    pub coeffs_to_slots: Duration,
    /// EvalMod (both halves).
    pub eval_mod: Duration,
    /// SlotsToCoeffs.
    pub slots_to_coeffs: Duration,
}

/// Precomputed bootstrapping data for one parameter set and configuration.
#[derive(Clone)]
pub struct Bootstrapper {
    ctx: CkksContext,
    config: BootstrapConfig,
    cts: Vec<LinearTransform>,
    stc: Vec<LinearTransform>,
    poly: PolyPlan,
    /// `X^{N/2}` (multiplies every slot by `i`) at the top level, scale 1.
    monomial: Plaintext,
    /// `Δ_message = q_0 / 2^ratio`.
    message_scale: f64,
    /// EvalMod's polynomial output scale (chosen so the doublings end on `stc[0].in_scale`).
    poly_scale: f64,
    eval_mod_error: f64,
    consumed: usize,
}

impl std::fmt::Debug for Bootstrapper {
    // the plaintext diagonals are megabytes: show the configuration and the level budget only
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapper")
            .field("config", &self.config)
            .field("levels_consumed", &self.consumed)
            .field("eval_mod_error", &self.eval_mod_error)
            .finish_non_exhaustive()
    }
}

impl Bootstrapper {
    /// Precomputes the linear-transform diagonals and the EvalMod polynomial; fails with
    /// [`CkksError::InvalidParameters`] if the chain, the secret or the configuration cannot work.
    pub fn new(ctx: &CkksContext, config: BootstrapConfig) -> Result<Self> {
        Self::with_output_scale(ctx, config, ctx.params().default_scale())
    }

    /// [`Self::new`] with the output scale (for inputs at level ≥ 1) set to `output_scale` instead
    /// of `params.default_scale()`: a compiler whose scales differ per level lands refreshed values
    /// exactly on the scale it tracks for the output level.
    pub fn with_output_scale(ctx: &CkksContext, config: BootstrapConfig, output_scale: f64) -> Result<Self> {
        let params = ctx.params();
        if !(output_scale.is_finite() && output_scale >= 2f64.powi(10)) {
            return Err(CkksError::InvalidParameters {
                reason: format!("bootstrapping output scale {output_scale} must be finite and at least 2^10"),
            });
        }
        let invalid = |reason: String| CkksError::InvalidParameters { reason };
        let slots = params.slots();
        if config.log_slots == 0 || config.log_slots >= params.log_n() {
            return Err(invalid(format!("log_slots = {} must be in 1..={}", config.log_slots, params.log_n() - 1)));
        }
        let n = 1usize << config.log_slots;
        let k_needed = k_for_weight(weight(params));
        if config.k < k_needed {
            let secret = match params.hamming_weight() {
                Some(h) => format!("a sparse secret of Hamming weight {h}"),
                None => format!("a uniform ternary secret (weight ≈ {})", weight(params)),
            };
            return Err(invalid(format!(
                "EvalMod interval K = {} is too small: with {secret} the ModRaise overflow |I| reaches ≈ {} (use a sparser secret or a larger K)",
                config.k,
                k_needed - 1
            )));
        }
        if config.cos_degree < 2 || config.cos_degree > 1023 || config.double_angle > 10 || config.k > 4096 {
            return Err(invalid(format!(
                "EvalMod degree {} / double angles {} / K {} out of range",
                config.cos_degree, config.double_angle, config.k
            )));
        }
        let cheb = ChebyshevPoly::fit(evalmod::scaled_cos(f64::from(config.k), config.double_angle), config.cos_degree);
        let eval_mod_error = evalmod::sine_error(&cheb, f64::from(config.k), config.double_angle);
        if eval_mod_error > 2f64.powi(-20) {
            return Err(invalid(format!(
                "EvalMod approximation error 2^{:.1} > 2^-20 with K = {}, degree {}, {} double angles: raise the degree or the double angles",
                eval_mod_error.log2(),
                config.k,
                config.cos_degree,
                config.double_angle
            )));
        }
        if !(1..=64).contains(&config.giant_step_cost) {
            return Err(invalid(format!("giant_step_cost = {} must be in 1..=64", config.giant_step_cost)));
        }
        if !(4..=40).contains(&config.log_message_ratio) {
            return Err(invalid(format!("log_message_ratio = {} must be in 4..=40", config.log_message_ratio)));
        }
        let log_n_stages = config.log_slots as usize;
        if config.cts_levels == 0
            || config.stc_levels == 0
            || config.cts_levels > log_n_stages
            || config.stc_levels > log_n_stages
        {
            return Err(invalid(format!(
                "cts_levels = {} and stc_levels = {} must be in 1..={log_n_stages} (one FFT stage per level at most)",
                config.cts_levels, config.stc_levels
            )));
        }
        let poly = PolyPlan::new(&cheb);
        let consumed = config.cts_levels + poly.depth + config.double_angle as usize + config.stc_levels;
        let top = params.max_level();
        if consumed + 1 > top {
            return Err(invalid(format!(
                "modulus chain too short: bootstrapping consumes {consumed} levels (CtS {}, EvalMod {} + {} double angles, StC {}) and at least one must remain, but the chain has {top}",
                config.cts_levels, poly.depth, config.double_angle, config.stc_levels
            )));
        }
        let q = |l: usize| params.moduli().get(l).copied().unwrap_or(1) as f64;
        let q0 = q(0);
        let message_scale = q0 / f64::from(config.log_message_ratio).exp2();
        if message_scale < 2f64.powi(10) {
            return Err(invalid(format!(
                "q_0 = 2^{:.1} leaves a message scale below 2^10 at ratio 2^{}",
                q0.log2(),
                config.log_message_ratio
            )));
        }
        let enc = Encoder::new(ctx);
        let kf = f64::from(config.k);
        // CtS: (N/2n)·E·w/q_0 (after SubSum) ↦ BR·w/(2·q_0·K).
        let c_cts = (2 * n) as f64 / params.n() as f64 / (2.0 * kf);
        let mut cts = Vec::new();
        let mut level = top;
        let mut scale = q0; // the ModRaise'd ciphertext is declared at scale q_0
                            // StC: (2π/q_0)·m in bit-reversed slots ↦ E·m/Δ_message.
        let c_stc = q0 / (2.0 * PI * message_scale);
        let (cts_maps, stc_maps) = transform_maps(n, slots, config.cts_levels, config.stc_levels, c_cts, c_stc);
        let cts_last = cts_maps.len().saturating_sub(1);
        for (i, map) in cts_maps.iter().enumerate() {
            // The first group multiplies t (coefficients ≈ K·q_0) by rounded diagonals: the
            // rounding error, relative to the output scale, shrinks as that scale grows, so the
            // groups before the last (whose output must be ≈ q for EvalMod's squarings) output at
            // 2^CTS_HEADROOM·q.
            let out_scale = if i == cts_last { q(level - 1) } else { q(level - 1) * CTS_HEADROOM };
            let lt = LinearTransform::new(
                &enc,
                map,
                config.giant_step_cost,
                slots,
                slots,
                level,
                q(level),
                scale,
                out_scale,
            )?;
            cts.push(lt);
            level -= 1;
            scale = out_scale;
        }
        // EvalMod: polynomial at scale poly_scale, then r doublings s ↦ s²/q_l.
        let poly_level = level - poly.depth;
        let poly_scale = q(poly_level);
        let mut s = poly_scale;
        let mut l = poly_level;
        for _ in 0..config.double_angle {
            s = s * s / q(l);
            l -= 1;
        }
        let mut stc = Vec::new();
        let last = stc_maps.len().saturating_sub(1);
        let padded = config.zero_padded && n < slots;
        for (i, map) in stc_maps.iter().enumerate() {
            let out_scale = if i == last { output_scale } else { q(l - 1) };
            // zero-padded output: the last group writes rows 0..n only
            let rows = if padded && i == last { n } else { slots };
            let lt = LinearTransform::new(&enc, map, config.giant_step_cost, slots, rows, l, q(l), s, out_scale)?;
            stc.push(lt);
            l -= 1;
            s = out_scale;
        }
        let nq_top = top + 1;
        let ring = &ctx.inner.ring;
        let mut mono = vec![0i64; params.n()];
        if let Some(c) = mono.get_mut(params.n() / 2) {
            *c = 1;
        }
        let mut mpoly = ring.from_i64(&mono, nq_top, false);
        ring.ntt_forward(&mut mpoly);
        let monomial = Plaintext { poly: mpoly, level: top, scale: 1.0, fingerprint: ctx.fingerprint() };
        Ok(Self {
            ctx: ctx.clone(),
            config,
            cts,
            stc,
            poly,
            monomial,
            message_scale,
            poly_scale,
            eval_mod_error,
            consumed,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BootstrapConfig {
        &self.config
    }

    /// Rotation steps whose Galois keys [`Self::bootstrap`] needs (conjugation too, see
    /// [`Self::needs_conjugation`]).
    pub fn rotation_steps(&self) -> Vec<i64> {
        let n = 1usize << self.config.log_slots;
        let slots = self.ctx.params().slots();
        let mut v: Vec<i64> = self.cts.iter().chain(&self.stc).flat_map(|t| t.steps()).collect();
        v.extend(Evaluator::rotate_and_sum_steps(slots / n, n as i64));
        // one key per Galois element: steps are equivalent modulo N/2
        v.iter_mut().for_each(|s| *s = s.rem_euclid(slots as i64));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether the conjugation key is needed (always: it splits real and imaginary parts).
    pub fn needs_conjugation(&self) -> bool {
        true
    }

    /// Levels used by one bootstrapping (CtS + EvalMod + StC).
    pub fn levels_consumed(&self) -> usize {
        self.consumed
    }

    /// Level of every bootstrapped ciphertext: `max_level − levels_consumed`.
    pub fn output_level(&self) -> usize {
        self.ctx.params().max_level() - self.consumed
    }

    /// Max |error| of the EvalMod approximation `sin(2πx)` on `[−K, K]` (f64, no noise).
    pub fn eval_mod_error(&self) -> f64 {
        self.eval_mod_error
    }

    /// Refreshes `ct` (see the module contract).
    pub fn bootstrap(&self, eval: &Evaluator, ct: &Ciphertext) -> Result<Ciphertext> {
        self.bootstrap_timed(eval, ct).map(|(c, _)| c)
    }

    /// [`Self::bootstrap`] with the time of each phase.
    pub fn bootstrap_timed(&self, eval: &Evaluator, ct: &Ciphertext) -> Result<(Ciphertext, BootstrapTimings)> {
        self.ctx.inner.check_fp(eval.ctx.fingerprint)?;
        self.ctx.inner.check_fp(ct.fingerprint)?;
        if ct.polys.len() != 2 {
            return Err(CkksError::CiphertextDegree { op: "bootstrap", expected: 2, found: ct.polys.len() });
        }
        let mut times = BootstrapTimings::default();
        let params = self.ctx.params();
        let n = 1usize << self.config.log_slots;
        let slots = params.slots();

        let t = Instant::now();
        let (low, msg_scale) = self.to_message_scale(eval, ct)?;
        let mut x = self.mod_raise(&low)?;
        times.mod_raise = t.elapsed();

        let t = Instant::now();
        if n < slots {
            x = eval.rotate_and_sum(&x, slots / n, n as i64)?;
        }
        times.sub_sum = t.elapsed();

        let t = Instant::now();
        for lt in &self.cts {
            x = lt.apply(eval, &x)?;
        }
        // x: w/(2·q_0·K) with w = u + i·v; u/(q_0 K) = x + x̄, v/(q_0 K) = (x̄ − x)·i
        let xc = eval.conjugate(&x)?;
        let xu = eval.add(&x, &xc)?;
        let xv = eval.mul_plain(&eval.sub(&xc, &x)?, &self.monomial)?;
        let packed = 2 * n <= slots;
        let xuv = if packed {
            // x is zero on the second half of each 2n-period: [u, 0] + rot_n([v, 0]) = [u, v]
            Some(eval.add(&xu, &eval.rotate(&xv, n as i64)?)?)
        } else {
            None
        };
        times.coeffs_to_slots = t.elapsed();

        let t = Instant::now();
        let y = match xuv {
            // StC's first group joins the halves back into u + i·v
            Some(xuv) => self.eval_mod(eval, &xuv)?,
            None => {
                let yu = self.eval_mod(eval, &xu)?;
                let yv = self.eval_mod(eval, &xv)?;
                eval.add(&yu, &eval.mul_plain(&yv, &self.monomial)?)?
            }
        };
        times.eval_mod = t.elapsed();

        let t = Instant::now();
        let mut z = y;
        for lt in &self.stc {
            z = lt.apply(eval, &z)?;
        }
        // The plaintexts assumed Δ_message; the actual one differs by the integer scale-up's rounding.
        z.scale *= msg_scale / self.input_message_scale();
        times.slots_to_coeffs = t.elapsed();
        Ok((z, times))
    }

    /// Refreshes two ciphertexts with **real** slots in one bootstrapping: `(a + i·b)/2` is
    /// bootstrapped (`i·b` by the monomial `X^{N/2}`, the `/2` by declaring twice the scale, both
    /// exact and free), then `a = z + z̄`, `b = (z̄ − z)·i`. Imaginary parts of the inputs are lost.
    /// `a` and `b` must have the same scale (the higher one is dropped to the other's level); both
    /// outputs are at [`Self::output_level`] with the scale [`Self::bootstrap`] gives.
    pub fn bootstrap_pair(&self, eval: &Evaluator, a: &Ciphertext, b: &Ciphertext) -> Result<(Ciphertext, Ciphertext)> {
        let z = self.bootstrap_complex(eval, a, b)?;
        let zc = eval.conjugate(&z)?;
        let re = eval.add(&z, &zc)?;
        let im = eval.mul_plain(&eval.sub(&zc, &z)?, &self.monomial)?;
        Ok((re, im))
    }

    /// The scale the input is taken to before ModRaise: `Δ_message`, times `N/(2n)` for a
    /// zero-padded sparse input (its trace sums one copy where a replicated input's sums `N/(2n)`).
    fn input_message_scale(&self) -> f64 {
        let n = 1usize << self.config.log_slots;
        let slots = self.ctx.params().slots();
        if self.config.zero_padded && n < slots {
            self.message_scale * (slots / n) as f64
        } else {
            self.message_scale
        }
    }

    /// The refreshed `(a + i·b)/2` of [`Self::bootstrap_pair`] before its split (`a = z + z̄`,
    /// `b = (z̄ − z)·i`): what a program's `bootstrap_pair` instruction computes.
    pub fn bootstrap_complex(&self, eval: &Evaluator, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.ctx.inner.check_fp(a.fingerprint)?;
        self.ctx.inner.check_fp(b.fingerprint)?;
        let level = a.level.min(b.level);
        let a = eval.drop_to_level(a, level)?;
        let b = eval.drop_to_level(b, level)?;
        let mut z = eval.add(&a, &eval.mul_plain(&b, &self.monomial)?)?;
        z.set_scale(2.0 * z.scale)?;
        self.bootstrap(eval, &z)
    }

    /// Brings `ct` to level 0 with the message at [`Self::input_message_scale`] (≈ `q_0 / 2^ratio`);
    /// returns the exact scale.
    fn to_message_scale(&self, eval: &Evaluator, ct: &Ciphertext) -> Result<(Ciphertext, f64)> {
        let target = self.input_message_scale();
        if ct.level >= 1 {
            let ratio = target * eval.ctx.ring.limb_prime(1, 2).q as f64 / ct.scale;
            if ratio < 2f64.powi(20) {
                return Err(CkksError::InvalidParameters {
                    reason: format!(
                        "input scale 2^{:.1} is too large to bootstrap (message scale 2^{:.1})",
                        ct.scale.log2(),
                        target.log2()
                    ),
                });
            }
            let low = evalmod::adjust(eval, ct, 0, target, 1.0)?;
            return Ok((low, target));
        }
        let up = (target / ct.scale).round();
        if up < 1.0 {
            return Err(CkksError::InvalidParameters {
                reason: format!(
                    "a level-0 input at scale 2^{:.1} exceeds the bootstrapping message scale 2^{:.1} (q_0 / 2^{}); bootstrap at level ≥ 1 or lower log_message_ratio",
                    ct.scale.log2(),
                    target.log2(),
                    self.config.log_message_ratio
                ),
            });
        }
        let out = if up > 1.0 { eval.mul_int(ct, up as i64)? } else { ct.clone() };
        Ok((out, ct.scale * up))
    }

    /// Level-0 ciphertext → top level, with plaintext `t = m + q_0·I` declared at scale `q_0`.
    fn mod_raise(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        let ring = &self.ctx.inner.ring;
        let top = self.ctx.params().max_level();
        let q0 = ring.limb_prime(0, 1).q;
        let polys = ct
            .polys
            .iter()
            .map(|p| {
                let mut c = p.clone();
                ring.truncate_q(&mut c, 1);
                ring.ntt_inverse(&mut c);
                let centered: Vec<i64> =
                    c.data.iter().map(|&v| if v > q0 / 2 { v as i64 - q0 as i64 } else { v as i64 }).collect();
                let mut r = ring.from_i64(&centered, top + 1, false);
                ring.ntt_forward(&mut r);
                r
            })
            .collect();
        Ok(Ciphertext { polys, level: top, scale: q0 as f64, fingerprint: ct.fingerprint })
    }

    /// `x/K` slots (real) → `sin(2πx)` at the scale StC expects.
    fn eval_mod(&self, eval: &Evaluator, x: &Ciphertext) -> Result<Ciphertext> {
        let mut y = self.poly.eval(eval, x, self.poly_scale)?;
        for _ in 0..self.config.double_angle {
            let sq = eval.mul_relin_rescale(&y, &y)?;
            y = eval.add_const(&eval.mul_int(&sq, 2)?, -1.0)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{CkksParams, Security};
    use num_complex::Complex64;

    /// The coefficient layout StC/CtS assume matches the encoder: an `n`-periodic slot vector
    /// encodes to a polynomial in `Z[X^{N/2n}]` whose coefficients `u + i·v` decode through `E`.
    #[test]
    fn sparse_subring_layout_matches_the_encoder() {
        let ctx =
            CkksContext::new(CkksParams::new_with_security(13, &[60, 60], &[60], 2, 40, Security::NotSet).unwrap())
                .unwrap();
        let enc = Encoder::new(&ctx);
        let big_n = ctx.params().n();
        let slots = big_n / 2;
        for log_n in [2u32, 5] {
            let n = 1usize << log_n;
            let z: Vec<Complex64> =
                (0..n).map(|i| Complex64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos() - 0.5)).collect();
            let full: Vec<Complex64> = (0..slots).map(|j| z[j % n]).collect();
            let scale = 2f64.powi(40);
            let pt = enc.encode_complex(&full, 1, scale).unwrap();
            let mut p = pt.poly.clone();
            ctx.inner.ring.ntt_inverse(&mut p);
            let coef = enc.crt_to_f64(&p).unwrap();
            let gap = big_n / (2 * n);
            for (i, c) in coef.iter().enumerate() {
                if i % gap != 0 {
                    assert_eq!(*c, 0.0, "coefficient {i} outside the subring");
                }
            }
            let w: Vec<Complex64> =
                (0..n).map(|k| Complex64::new(coef[k * gap], coef[(k + n) * gap]) / scale).collect();
            // StC on bit-reversed w must give z
            let bits = n.trailing_zeros();
            let mut x: Vec<Complex64> = (0..n).map(|i| w[i.reverse_bits() >> (usize::BITS - bits)]).collect();
            for m in linear::slots_to_coeffs_maps(n, 2, 1.0) {
                x = m.apply(&x);
            }
            let err = x.iter().zip(&z).map(|(a, b)| (a - b).norm()).fold(0.0, f64::max);
            assert!(err < 1e-9, "n = {n}: {err}");
        }
    }

    fn small_chain(levels: usize) -> CkksContext {
        let mut q = vec![60u32];
        q.extend(std::iter::repeat_n(58, levels));
        let p = CkksParams::new_with_security(13, &q, &[60, 60], q.len().div_ceil(2), 40, Security::NotSet).unwrap();
        CkksContext::new(p.with_hamming_weight(64).unwrap()).unwrap()
    }

    /// SubSum (rotations by n, 2n, …, N/4) is the trace to `Z[X^{N/2n}]`: coefficients at multiples
    /// of `N/2n` are multiplied by `N/2n`, all others vanish — for an arbitrary polynomial, as after
    /// ModRaise.
    #[test]
    fn sub_sum_is_the_trace_to_the_subring() {
        use rand::{Rng, SeedableRng};
        let ctx = small_chain(1);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let ck = crate::ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
        let big_n = ctx.params().n();
        let n = 64;
        let steps = Evaluator::rotate_and_sum_steps(big_n / 2 / n, n as i64);
        let ev = Evaluator::new(&ctx, ck.evaluation_keys_with_rng(&steps, false, &mut rng).unwrap()).unwrap();
        let coeffs: Vec<f64> = (0..big_n).map(|_| rng.random_range(-1000i64..=1000) as f64 * 1_048_576.0).collect();
        let enc = Encoder::new(&ctx);
        let poly = enc.coeffs_to_poly(&coeffs, 1).unwrap();
        let pt = Plaintext { poly, level: 1, scale: 1.0, fingerprint: ctx.fingerprint() };
        let ct = ck.encrypt_symmetric_with_rng(&pt, &mut rng).unwrap();
        let summed = ev.rotate_and_sum(&ct, big_n / 2 / n, n as i64).unwrap();
        let mut p = ck.decrypt(&summed).unwrap().poly;
        ctx.inner.ring.ntt_inverse(&mut p);
        let got = enc.crt_to_f64(&p).unwrap();
        let gap = big_n / (2 * n);
        for (i, (&g, &c)) in got.iter().zip(&coeffs).enumerate() {
            let want = if i % gap == 0 { c * gap as f64 } else { 0.0 };
            // key-switching noise of the 6 rotations is a few thousand; the values are ≥ 2^20 apart
            assert!((g - want).abs() < 16384.0, "coefficient {i}: {g} vs {want}");
        }
    }

    /// The context-free step list (what a compiler records) equals the built bootstrapper's, for
    /// sparse (packed) and full slots.
    #[test]
    fn config_rotation_steps_match_the_bootstrapper() {
        for log_slots in [3u32, 6, 12] {
            let probe = small_chain(1);
            let cfg = BootstrapConfig::default_for(probe.params(), log_slots);
            let ctx = small_chain(cfg.levels() + 1);
            let b = Bootstrapper::new(&ctx, cfg.clone()).unwrap();
            assert_eq!(cfg.rotation_steps(13), b.rotation_steps(), "log_slots {log_slots}");
            assert_eq!(b.levels_consumed(), cfg.levels());
        }
    }

    /// The encrypted EvalMod (scale-exact Chebyshev evaluation + double angles) matches sin(2πx)
    /// at x = I + ε for integers |I| < K.
    #[test]
    fn encrypted_eval_mod_matches_the_sine() {
        use rand::{Rng, SeedableRng};
        let ctx = small_chain(12);
        let mut cfg = BootstrapConfig::default_for(ctx.params(), 3);
        cfg.cts_levels = 1;
        cfg.stc_levels = 1;
        let b = Bootstrapper::new(&ctx, cfg).unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let ck = crate::ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
        let ev = Evaluator::new(&ctx, ck.evaluation_keys_with_rng(&[], false, &mut rng).unwrap()).unwrap();
        let k = f64::from(b.config.k);
        let xs: Vec<f64> = (0..ctx.params().slots())
            .map(|_| rng.random_range(-(k as i64 - 1)..=(k as i64 - 1)) as f64 + rng.random_range(-0.01..0.01))
            .collect();
        let ys: Vec<f64> = xs.iter().map(|x| x / k).collect();
        let level = ctx.params().max_level() - 1;
        let scale = ctx.params().moduli()[level] as f64;
        let enc = Encoder::new(&ctx);
        let ct = ck.encrypt_symmetric_with_rng(&enc.encode(&ys, level, scale).unwrap(), &mut rng).unwrap();
        let out = b.eval_mod(&ev, &ct).unwrap();
        assert_eq!(out.level, level - b.poly.depth - b.config.double_angle as usize);
        let got = enc.decode(&ck.decrypt(&out).unwrap()).unwrap();
        let err = got.iter().zip(&xs).map(|(g, x)| (g - (2.0 * PI * x).sin()).abs()).fold(0.0, f64::max);
        assert!(err < 1e-8, "EvalMod error {err:e}");
    }
}
