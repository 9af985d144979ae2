//! Level and scale management: the program builder every lowering emits through.
//!
//! Requires: the Q primes of the target parameters (or stand-ins of the same bit size for the depth
//! dry run) and the input level.
//! Guarantees (the invariant "every finished value at level `l` has scale exactly `Δ_l`"):
//! - `Δ_0 = 2^log_scale`, `Δ_l = sqrt(Δ_{l−1}·q_l)` (fresh inputs at `Δ_L`), i.e. `Δ_{l−1} = Δ_l² / q_l`. A ct×ct product of two values
//!   at level `l` has scale `Δ_l²`, so after one rescale it lands exactly on `Δ_{l−1}`.
//! - Plaintext multiplications encode the plaintext at `Δ_{l−1}·q_l/Δ_l` (and scalars likewise), so
//!   the rescaled product also lands on `Δ_{l−1}`; additions of plaintexts encode at the ciphertext's
//!   scale. Rescaling is eager (one rescale right after each multiplication, the waterline of EVA
//!   with one level per multiplication), except that [`Builder::mul_plain_raw`] products of one
//!   level may be summed before a single rescale (the diagonal method does this).
//! - Additions and products of values at different levels first bring the higher one down with
//!   [`Builder::adjust`]: mod-drop to `l'+1`, multiply by 1 encoded at `Δ_{l'}·q_{l'+1}/Δ_l`, rescale —
//!   the lower level costs nothing extra and the scale lands on `Δ_{l'}` exactly.
//! - Integer scalars use `mul_int` (no level). Running below level 0 is reported as
//!   [`crate::BackendError::Internal`] only if parameter selection was wrong; the dry run starts
//!   high enough never to hit it.
//! - Every emitted instruction carries its level and scale, so `Program::validate` re-proves all of
//!   this with the exact primes.
//! - With bootstrapping ([`Builder::enable_bootstrapping`]), level 1 is the floor (a bootstrap needs
//!   an input at level ≥ 1 to set its message scale exactly): before a multiplication whose operand
//!   sits at the floor, the operand is bootstrapped back to the input level `L` at exactly `Δ_L`
//!   (each register at most once: later uses share the refreshed copy), so levels restart after
//!   every refresh and the invariant above holds across bootstraps. Lowerings that need several
//!   levels at once ([`Builder::refresh_for`]) refresh their operand up front instead.
//! - Every register's slot support (where it can be nonzero, `polyhe_runtime::SlotSupport`) is
//!   tracked as instructions are emitted. A value is bootstrapped with its support starting at
//!   slot 0: one whose nonzero slots wrap past the last slot (left rotations of a reduction leave
//!   bounded garbage at the top until a masked product clears it) is rotated there and back, two
//!   key switches below the refresh, so the program can refresh only the slots its values use
//!   (`params::sparse_bootstrap_config`).

use std::collections::HashMap;

use polyhe_runtime::{Inst, ProgramOp as Op, Reg, SlotSupport, SlotVector};

use crate::rotation_keys::canonical;
use crate::BackendError;

/// Emits instructions with level/scale bookkeeping.
pub(crate) struct Builder {
    pub moduli: Vec<u64>,
    /// `Δ_l` per level.
    pub scales: Vec<f64>,
    pub input_level: usize,
    pub n_in: usize,
    pub insts: Vec<Inst>,
    /// Interned plaintext slot vectors (run-length encoded: token-fastest diagonals repeat).
    pub constants: Vec<SlotVector>,
    const_ids: HashMap<SlotVector, u32>,
    reg_level: Vec<usize>,
    reg_scale: Vec<f64>,
    /// Slots per ciphertext.
    slots: usize,
    /// Where each register can be nonzero.
    reg_support: Vec<SlotSupport>,
    /// Bootstrapping enabled: values never go below level 1 (see the module doc).
    bootstrapping: bool,
    /// Register → its bootstrapped copy.
    refreshed: HashMap<Reg, Reg>,
    /// Register → (refreshes made when it was tried, its higher-level rebuild); see [`Builder::remat`].
    remat_memo: HashMap<Reg, (usize, Option<Reg>)>,
}

/// How many free ops deep [`Builder::remat`] looks for a refreshed source.
const REMAT_DEPTH: usize = 12;

/// Whether `have` levels above the floor serve a lowering that needs `need`, when a refresh gives
/// `usable`: a need beyond a whole refresh's levels is met by later on-demand refreshes anyway, so
/// what is left is spent first unless that is little.
fn enough_levels(have: usize, need: usize, usable: usize) -> bool {
    have >= need || (need > usable && have >= usable / 2)
}

fn is_small_int(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < 2f64.powi(30)
}

impl Builder {
    pub fn new(moduli: Vec<u64>, log_scale: u32, input_level: usize, slots: usize) -> Builder {
        // Bottom-up: Δ_0 = 2^log_scale and Δ_l = sqrt(Δ_{l−1}·q_l), so Δ_{l−1} = Δ_l²/q_l holds and
        // a prime's deviation from 2^log_scale is halved at every level above it. (Top-down from
        // a fixed input scale the deviation doubles per level: after ~40 levels of 32-bit primes the
        // scales overflow.)
        let top = input_level.min(moduli.len().saturating_sub(1));
        let mut scales = vec![0.0; moduli.len()];
        let mut s = (log_scale as f64).exp2();
        for l in 0..=top {
            if l > 0 {
                let q = moduli.get(l).copied().unwrap_or(1) as f64;
                s = (s * q).sqrt();
            }
            if let Some(x) = scales.get_mut(l) {
                *x = s;
            }
        }
        Builder {
            moduli,
            scales,
            input_level,
            n_in: 0,
            insts: Vec::new(),
            constants: Vec::new(),
            const_ids: HashMap::new(),
            reg_level: Vec::new(),
            reg_scale: Vec::new(),
            slots,
            reg_support: Vec::new(),
            bootstrapping: false,
            refreshed: HashMap::new(),
            remat_memo: HashMap::new(),
        }
    }

    /// Lets [`Self::ensure`] and [`Self::refresh_for`] bootstrap to the input level.
    pub fn enable_bootstrapping(&mut self) {
        self.bootstrapping = true;
    }

    /// Lowest level a finished value may have: 1 with bootstrapping (its input level), else 0.
    pub fn floor(&self) -> usize {
        usize::from(self.bootstrapping)
    }

    /// `r`, or its bootstrapped copy when bootstrapping is enabled and `r` has fewer than `need`
    /// levels above the floor while a refresh would give more.
    pub fn refresh_for(&mut self, r: Reg, need: usize) -> Result<Reg, BackendError> {
        if !self.bootstrapping {
            return Ok(r);
        }
        let l = self.level(r);
        let (have, usable) = (l.saturating_sub(self.floor()), self.input_level.saturating_sub(self.floor()));
        if l >= self.input_level || enough_levels(have, need, usable) {
            return Ok(r);
        }
        if let Some(&b) = self.refreshed.get(&r) {
            return Ok(b);
        }
        // A value built by free ops from values refreshed since is rebuilt from their copies
        // instead of being bootstrapped a second time (e.g. LayerNorm's `32·x − Σx` where `x` was
        // refreshed for the sum but `32·x` was taken before).
        if let Some(x) = self.remat(r, REMAT_DEPTH) {
            if enough_levels(self.level(x).saturating_sub(self.floor()), need, usable) {
                return Ok(x);
            }
        }
        if l < 1 {
            return Err(BackendError::Internal(format!("bootstrap of a level-{l} value")));
        }
        let top = self.input_level;
        // Refresh with the support starting at slot 0 (see the module doc): left by its start,
        // and back after. Not when it covers half the slots or more: that refresh is full anyway.
        let sup = self.support(r);
        let start = (sup.len > 0 && sup.len <= self.slots / 2 && sup.start != 0).then_some(sup.start as i64);
        let input = match start {
            Some(st) => self.emit(Op::Rotate { src: r, step: canonical(st, self.slots) }, l, self.scale(r)),
            None => r,
        };
        let mut b = self.emit(Op::Bootstrap(input), top, self.delta(top));
        if let Some(st) = start {
            b = self.emit(Op::Rotate { src: b, step: canonical(-st, self.slots) }, top, self.delta(top));
        }
        self.refreshed.insert(r, b);
        Ok(b)
    }

    /// An equivalent of `r` at a higher level, rebuilt by free ops (additions, negations, integer
    /// and plaintext-addition ops, and the multiply-by-one of an alignment) from bootstrapped
    /// copies of the values `r` was computed from; `None` when `r`'s sources within `depth` ops
    /// have not been refreshed. Costs no level and no key switch: the copies exist already.
    fn remat(&mut self, r: Reg, depth: usize) -> Option<Reg> {
        if let Some(&b) = self.refreshed.get(&r) {
            return Some(b);
        }
        let epoch = self.refreshed.len();
        if let Some(&(e, x)) = self.remat_memo.get(&r) {
            if e == epoch || x.is_some() {
                return x;
            }
        }
        if depth == 0 || epoch == 0 || (r as usize) < self.n_in {
            return None;
        }
        let l = self.level(r);
        let op = self.insts.get(r as usize - self.n_in)?.op.clone();
        let higher = |s: &Self, x: Reg| (s.level(x) > l).then_some(x);
        let rebuilt = match op {
            Op::Add(a, b) | Op::Sub(a, b) => {
                let ra = self.remat(a, depth - 1);
                let rb = self.remat(b, depth - 1);
                // Both operands must end above `l`, else the sum aligns back down to it.
                let xa = ra.or_else(|| higher(self, a))?;
                let xb = rb.or_else(|| higher(self, b))?;
                if ra.is_none() && rb.is_none() {
                    None
                } else {
                    let x = if matches!(op, Op::Add(..)) { self.add(xa, xb) } else { self.sub(xa, xb) };
                    x.ok()
                }
            }
            Op::Neg(a) => self.remat(a, depth - 1).map(|x| self.neg(x)),
            Op::MulInt(a, k) => {
                self.remat(a, depth - 1).map(|x| self.emit(Op::MulInt(x, k), self.level(x), self.scale(x)))
            }
            Op::AddPlain(a, c) | Op::SubPlain(a, c) => self.remat(a, depth - 1).map(|x| {
                let op = if matches!(op, Op::AddPlain(..)) { Op::AddPlain(x, c) } else { Op::SubPlain(x, c) };
                self.emit(op, self.level(x), self.scale(x))
            }),
            // An alignment `rescale(drop(s) · 1)`: the rebuild of `s` is the same value.
            Op::Rescale(m) => match self.insts.get((m as usize).wrapping_sub(self.n_in)).map(|i| i.op.clone()) {
                Some(Op::MulScalar { src, value: 1.0, .. }) => {
                    let src = match self.insts.get((src as usize).wrapping_sub(self.n_in)).map(|i| i.op.clone()) {
                        Some(Op::DropLevel { src, .. }) => src,
                        _ => src,
                    };
                    self.remat(src, depth - 1).or_else(|| higher(self, src))
                }
                _ => None,
            },
            _ => None,
        };
        let rebuilt = rebuilt.filter(|&x| self.level(x) > l);
        self.remat_memo.insert(r, (epoch, rebuilt));
        rebuilt
    }

    /// `r` with at least one level above the floor (bootstrapped if needed): an operand about to
    /// be multiplied.
    pub fn ensure(&mut self, r: Reg) -> Result<Reg, BackendError> {
        self.refresh_for(r, 1)
    }

    /// Declares the next input register, holding `elements` values from slot 0 (zeros after).
    pub fn input(&mut self, elements: usize) -> Reg {
        debug_assert!(self.insts.is_empty());
        self.n_in += 1;
        self.reg_level.push(self.input_level);
        self.reg_scale.push(self.delta(self.input_level));
        self.reg_support.push(SlotSupport::prefix(elements.min(self.slots)));
        (self.n_in - 1) as Reg
    }

    /// Where `r` can be nonzero.
    pub fn support(&self, r: Reg) -> SlotSupport {
        self.reg_support.get(r as usize).copied().unwrap_or(SlotSupport::full(self.slots))
    }

    pub fn level(&self, r: Reg) -> usize {
        self.reg_level.get(r as usize).copied().unwrap_or(0)
    }
    fn scale(&self, r: Reg) -> f64 {
        self.reg_scale.get(r as usize).copied().unwrap_or(1.0)
    }
    pub fn delta(&self, l: usize) -> f64 {
        self.scales.get(l).copied().unwrap_or(1.0)
    }
    fn q(&self, l: usize) -> f64 {
        self.moduli.get(l).copied().unwrap_or(1) as f64
    }
    /// Lowest level any register reached.
    pub fn min_level(&self) -> usize {
        self.reg_level.iter().copied().min().unwrap_or(self.input_level)
    }

    fn emit(&mut self, op: Op, level: usize, scale: f64) -> Reg {
        let full = SlotSupport::full(self.slots);
        let sup = SlotSupport::of_op(
            &op,
            self.slots,
            |r| self.support(r),
            |c| self.constants.get(c as usize).map_or(full, SlotSupport::of_constant),
            false,
        );
        self.reg_support.push(sup);
        self.insts.push(Inst { op, level, scale });
        self.reg_level.push(level);
        self.reg_scale.push(scale);
        (self.reg_level.len() - 1) as Reg
    }

    /// Interns a plaintext slot vector (trailing zeros trimmed by [`SlotVector`]).
    pub fn constant(&mut self, v: impl Into<SlotVector>) -> u32 {
        let v: SlotVector = v.into();
        if let Some(&id) = self.const_ids.get(&v) {
            return id;
        }
        let id = self.constants.len() as u32;
        self.constants.push(v.clone());
        self.const_ids.insert(v, id);
        id
    }

    fn check_level(&self, r: Reg, what: &str) -> Result<usize, BackendError> {
        let l = self.level(r);
        if l == 0 {
            return Err(BackendError::Internal(format!("{what} at level 0: parameter selection left too few levels")));
        }
        Ok(l)
    }

    pub fn rescale(&mut self, r: Reg) -> Result<Reg, BackendError> {
        let l = self.check_level(r, "rescale")?;
        let s = self.scale(r) / self.q(l);
        Ok(self.emit(Op::Rescale(r), l - 1, s))
    }

    /// Brings `r` (a finished value) down to level `to` with its scale landing on `Δ_to`.
    pub fn adjust(&mut self, r: Reg, to: usize) -> Result<Reg, BackendError> {
        let l = self.level(r);
        if l == to {
            return Ok(r);
        }
        if l < to {
            return Err(BackendError::Internal(format!("adjust from level {l} up to {to}")));
        }
        let mut x = r;
        if l > to + 1 {
            let s = self.scale(r);
            x = self.emit(Op::DropLevel { src: r, level: to + 1 }, to + 1, s);
        }
        let c = self.delta(to) * self.q(to + 1) / self.scale(x);
        let s = self.scale(x) * c;
        let m = self.emit(Op::MulScalar { src: x, value: 1.0, const_scale: c }, to + 1, s);
        self.rescale(m)
    }

    /// Brings two values to a common level.
    pub fn align(&mut self, a: Reg, b: Reg) -> Result<(Reg, Reg), BackendError> {
        // The lower operand rebuilt from refreshed copies, when that lifts the common level.
        let (mut a, mut b) = (a, b);
        if self.bootstrapping {
            if self.level(a) < self.level(b) {
                a = self.remat(a, REMAT_DEPTH).unwrap_or(a);
            } else if self.level(b) < self.level(a) {
                b = self.remat(b, REMAT_DEPTH).unwrap_or(b);
            }
        }
        let l = self.level(a).min(self.level(b));
        Ok((self.adjust(a, l)?, self.adjust(b, l)?))
    }

    pub fn add(&mut self, a: Reg, b: Reg) -> Result<Reg, BackendError> {
        let (a, b) = self.align(a, b)?;
        Ok(self.emit(Op::Add(a, b), self.level(a), self.scale(a)))
    }
    /// Adds values already at one level and scale (raw products in the diagonal method).
    pub fn add_raw(&mut self, a: Reg, b: Reg) -> Reg {
        self.emit(Op::Add(a, b), self.level(a), self.scale(a))
    }
    pub fn sub(&mut self, a: Reg, b: Reg) -> Result<Reg, BackendError> {
        let (a, b) = self.align(a, b)?;
        Ok(self.emit(Op::Sub(a, b), self.level(a), self.scale(a)))
    }
    pub fn neg(&mut self, a: Reg) -> Reg {
        self.emit(Op::Neg(a), self.level(a), self.scale(a))
    }
    /// Rotation left by `step` (one key per step; [`Self::expand_rotations`] later rewrites steps
    /// into chains over a smaller key set).
    pub fn rotate(&mut self, a: Reg, step: i64) -> Reg {
        self.emit(Op::Rotate { src: a, step }, self.level(a), self.scale(a))
    }

    /// Replaces every rotation whose step `chain` maps to a chain of steps by that chain (each
    /// hop keeps the level and scale: rotations consume neither), renumbering the registers.
    /// Returns, per new instruction, the old instruction it comes from, and the old → new
    /// register map (inputs map to themselves).
    pub fn expand_rotations(&mut self, chain: impl Fn(i64) -> Option<Vec<i64>>) -> (Vec<usize>, Vec<Reg>) {
        self.rebuild(|_, inst, next, _| {
            let hops = match inst.op {
                Op::Rotate { src, step } => chain(step).filter(|c| !c.is_empty()).map(|c| (src, c)),
                _ => None,
            };
            let Some((src, steps)) = hops else { return (vec![inst], next) };
            let mut x = src;
            let mut out = Vec::with_capacity(steps.len());
            for (k, step) in steps.into_iter().enumerate() {
                out.push(Inst { op: Op::Rotate { src: x, step }, ..inst.clone() });
                x = next + k as Reg;
            }
            (out, x)
        })
    }

    /// Rebuilds the instruction list: `f(k, inst, next, map)` gets old instruction `k` with its
    /// operands renumbered, the register the first replacement would define (`next`) and the
    /// old → new map of the registers before `k`, and
    /// returns the instructions replacing it (later ones may read the registers earlier ones
    /// define, counting from `next`; none to drop it) and the new register old `k`'s result is
    /// now (a register defined before, when dropped). Returns, per new instruction, the old
    /// instruction it comes from, and the old → new register map (inputs map to themselves).
    pub fn rebuild(
        &mut self,
        mut f: impl FnMut(usize, Inst, Reg, &[Reg]) -> (Vec<Inst>, Reg),
    ) -> (Vec<usize>, Vec<Reg>) {
        let n_in = self.n_in;
        let old = std::mem::take(&mut self.insts);
        let mut reg_map: Vec<Reg> = (0..n_in as Reg).collect();
        let mut origin = Vec::with_capacity(old.len());
        self.reg_level.truncate(n_in);
        self.reg_scale.truncate(n_in);
        self.reg_support.truncate(n_in);
        for (k, inst) in old.into_iter().enumerate() {
            let op = inst.op.map_operands(|r| reg_map.get(r as usize).copied().unwrap_or(r));
            let next = (n_in + self.insts.len()) as Reg;
            let (new, result) = f(k, Inst { op, ..inst }, next, &reg_map);
            for i in new {
                self.emit(i.op, i.level, i.scale);
                origin.push(k);
            }
            reg_map.push(result);
        }
        self.refreshed.clear();
        self.remat_memo.clear();
        (origin, reg_map)
    }

    /// ct × ct, relinearized and rescaled.
    pub fn mul(&mut self, a: Reg, b: Reg) -> Result<Reg, BackendError> {
        let (a, b) = (self.ensure(a)?, self.ensure(b)?);
        let (a, b) = self.align(a, b)?;
        self.check_level(a, "mul")?;
        let s = self.scale(a) * self.scale(b);
        let m = self.emit(Op::Mul(a, b), self.level(a), s);
        self.rescale(m)
    }

    /// `ct + v` slot-wise (`v` a slot vector, encoded at the ciphertext's scale).
    pub fn add_plain(&mut self, a: Reg, v: impl Into<SlotVector>) -> Reg {
        let v: SlotVector = v.into();
        if v.nonzeros() == 0 {
            return a;
        }
        let c = self.constant(v);
        self.emit(Op::AddPlain(a, c), self.level(a), self.scale(a))
    }

    /// The plaintext scale that makes a product of `a` land on `Δ_{l−1}` after one rescale.
    fn product_scale(&self, a: Reg) -> f64 {
        let l = self.level(a);
        self.delta(l.saturating_sub(1)) * self.q(l) / self.scale(a)
    }

    /// `ct · v` without rescale (scale `Δ_l · pt_scale`, see [`Self::product_scale`]).
    pub fn mul_plain_raw(&mut self, a: Reg, v: impl Into<SlotVector>) -> Result<Reg, BackendError> {
        let a = self.ensure(a)?;
        let l = self.check_level(a, "mul_plain")?;
        let pt_scale = self.product_scale(a);
        let c = self.constant(v);
        let s = self.scale(a) * pt_scale;
        Ok(self.emit(Op::MulPlain { src: a, constant: c, pt_scale }, l, s))
    }

    /// `ct · v` slot-wise, rescaled.
    pub fn mul_plain(&mut self, a: Reg, v: impl Into<SlotVector>) -> Result<Reg, BackendError> {
        let m = self.mul_plain_raw(a, v)?;
        self.rescale(m)
    }

    /// `Σ c_i·x_i` with one rescale, ending at the level term-by-term evaluation would reach
    /// (`t`: an integer coefficient keeps its term's level, any other costs one): every term above
    /// `t` is dropped to `t + 1` and multiplied by `c_i` without rescaling, each at the plaintext
    /// scale that lands its product on `Δ_t·q_{t+1}`, so the products share one scale and add raw
    /// before a single rescale; integer terms already at `t` are added after it. Term by term
    /// (`mul_scalar`, then `add` aligning levels) costs a rescale per term plus a scalar product
    /// and rescale per level mismatch: 60 of the toy encoder's 260 CPU seconds at 128 bits were
    /// rescales, most of them in polynomials' linear combinations. Integer coefficients alone
    /// take no level (`mul_int` and adds).
    pub fn linear_combination(&mut self, terms: &[(Reg, f64)]) -> Result<Reg, BackendError> {
        let terms: Vec<(Reg, f64)> = terms.iter().copied().filter(|&(_, c)| c != 0.0).collect();
        match terms.as_slice() {
            [] => return Err(BackendError::Internal("empty linear combination".into())),
            [(r, c)] => return self.mul_scalar(*r, *c),
            _ => {}
        }
        // Term by term as well under bootstrapping: refreshes and rebuilds from refreshed copies
        // are decided per operand as `mul_scalar` and `add` meet them; one shared level for every
        // term moved MiniLM's depth from 319 to 323 (same bootstraps) — a fused form that keeps
        // those decisions is still to come.
        if self.bootstrapping || terms.iter().all(|&(_, c)| is_small_int(c)) {
            let mut acc: Option<Reg> = None;
            for &(r, c) in &terms {
                let t = self.mul_scalar(r, c)?;
                acc = Some(match acc {
                    Some(a) => self.add(a, t)?,
                    None => t,
                });
            }
            return acc.ok_or(BackendError::Internal("linear combination".into()));
        }
        let mut ts = Vec::with_capacity(terms.len());
        for &(r, c) in &terms {
            // (a term about to be multiplied kept above the floor, as `mul_scalar` does)
            ts.push((if is_small_int(c) { r } else { self.ensure(r)? }, c));
        }
        // The level term-by-term evaluation ends at: an integer coefficient keeps its term's level.
        let after =
            |b: &Self, (r, c): (Reg, f64)| if is_small_int(c) { b.level(r) } else { b.level(r).saturating_sub(1) };
        let t = ts.iter().map(|&rc| after(self, rc)).min().unwrap_or(0);
        // Terms above `t` go through one raw product each and share one rescale down to `t`;
        // integer terms already at `t` are added as they are.
        let target = self.delta(t) * self.q(t + 1);
        let mut raw: Option<Reg> = None;
        let mut direct: Vec<(Reg, f64)> = Vec::new();
        for &(r, c) in &ts {
            if self.level(r) <= t {
                direct.push((r, c));
                continue;
            }
            let x = if self.level(r) > t + 1 {
                let s = self.scale(r);
                self.emit(Op::DropLevel { src: r, level: t + 1 }, t + 1, s)
            } else {
                r
            };
            let cs = target / self.scale(x);
            let m = self.emit(Op::MulScalar { src: x, value: c, const_scale: cs }, t + 1, target);
            raw = Some(match raw {
                Some(a) => self.add_raw(a, m),
                None => m,
            });
        }
        let mut acc = match raw {
            Some(a) => Some(self.rescale(a)?),
            None => None,
        };
        for (r, c) in direct {
            let x = self.mul_scalar(r, c)?;
            acc = Some(match acc {
                Some(a) => self.add(a, x)?,
                None => x,
            });
        }
        acc.ok_or(BackendError::Internal("linear combination".into()))
    }

    /// `ct · v` for a scalar: free for integers, one level otherwise.
    pub fn mul_scalar(&mut self, a: Reg, v: f64) -> Result<Reg, BackendError> {
        if v == 1.0 {
            return Ok(a);
        }
        if is_small_int(v) {
            return Ok(self.emit(Op::MulInt(a, v as i64), self.level(a), self.scale(a)));
        }
        let a = self.ensure(a)?;
        let l = self.check_level(a, "mul_scalar")?;
        let c = self.product_scale(a);
        let s = self.scale(a) * c;
        let m = self.emit(Op::MulScalar { src: a, value: v, const_scale: c }, l, s);
        self.rescale(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose nonzero slots wrap past the last slot is refreshed with them rotated to start
    /// at slot 0 (what a zero-padded sparse bootstrap needs) and rotated back after, so the refreshed
    /// copy sits where the value did; a value already starting at slot 0 is refreshed as it is.
    #[test]
    fn wrapped_support_is_refreshed_from_slot_zero_and_rotated_back() {
        let slots = 64;
        let mut b = Builder::new(vec![1 << 50, 1 << 40, 1 << 40], 40, 2, slots);
        b.enable_bootstrapping();
        let x = b.input(8);
        assert_eq!(b.support(x), SlotSupport::prefix(8));
        let r = b.rotate(x, 2);
        assert_eq!(b.support(r), SlotSupport { start: 62, len: 8 });
        let m = b.mul(r, r).unwrap();
        assert_eq!(b.level(m), 1);
        let fresh = b.ensure(m).unwrap();
        let ops: Vec<Op> = b.insts.iter().rev().take(3).rev().map(|i| i.op.clone()).collect();
        assert!(
            matches!(ops.as_slice(), [Op::Rotate { step: -2, .. }, Op::Bootstrap(_), Op::Rotate { step: 2, .. }]),
            "{ops:?}"
        );
        assert_eq!(b.support(fresh), SlotSupport { start: 62, len: 8 });
        let Op::Bootstrap(input) = ops[1] else { unreachable!() };
        assert_eq!(b.support(input), SlotSupport::prefix(8));
        // already at slot 0: no rotation
        let y = b.mul(x, x).unwrap();
        let before = b.insts.len();
        b.ensure(y).unwrap();
        assert_eq!(b.insts.len(), before + 1);
        assert!(matches!(b.insts.last().map(|i| &i.op), Some(Op::Bootstrap(_))));
    }
}
