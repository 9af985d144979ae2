//! CKKS programs: the straight-line circuits the compiler emits and this runtime executes.
//!
//! A [`Program`] is SSA over ciphertext registers: registers `0..inputs` hold the input ciphertexts
//! (in the order of [`Program::inputs`] and, within an input, of its layout's ciphertexts), and
//! instruction `i` defines register `num_input_regs + i`. Plaintext operands are f64 slot vectors in
//! [`Program::constants`], encoded at execution time at the level of the ciphertext they meet and at
//! the scale the instruction names (so a program stores no parameter-specific polynomials).
//!
//! Contract:
//! - Every instruction records the level and scale of its result ([`Inst::level`], [`Inst::scale`]).
//!   [`Program::validate`] recomputes both from the operands with the exact primes of
//!   [`Program::params`] and rejects any mismatch (EVA-style `validate_levels` / `validate_scales`),
//!   operands used before definition, rescales at level 0, binary operations at different levels,
//!   additions at different scales (relative 1e-9), and
//!   constants longer than the slot count. A program that validates never fails for level/scale
//!   reasons when executed with matching parameters.
//! - Bootstrapping: a program with [`Op::Bootstrap`] instructions records the bootstrapping
//!   configuration ([`ProgramBootstrap`]: the [`BootstrapConfig`] and the output scale), from which
//!   the executor rebuilds the same [`crate::Bootstrapper`] deterministically (once per execution).
//!   A bootstrap reads a value at level ≥ 1 and defines one at `max_level − config.levels()` with
//!   exactly the recorded output scale; its input must leave the message-scale adjustment room
//!   (`q_0·q_1 / 2^ratio / scale ≥ 2^20`). Its Galois keys ([`Program::rotation_steps`]) include the
//!   bootstrapper's steps, and [`Program::needs_conjugation`] is then true. Such programs need the
//!   sparse secret recorded in [`ProgramParams::hamming_weight`]. A zero-padded sparse
//!   configuration ([`BootstrapConfig::zero_padded`], `n < slots`) refreshes slots `0..n` only:
//!   every bootstrapped register must be provably zero beyond them ([`Program::slot_supports`]).
//!   Text form: `zero_padded` ends the `bootstrap` line; binary form: bootstrapping tag 2.
//!   `bootstrap_pair %a, %b` refreshes two real values at one level in one bootstrapping (its
//!   complex result is split by `conjugate`, `add`, `sub` and `mul_i`); both operands obey the
//!   same rules as a bootstrap's.
//! - Slot layout ([`SlotLayout`]): a tensor of `numel` elements occupies `ceil(numel / slots)`
//!   ciphertexts; the element at slot position `p` ([`SlotLayout::position`]) sits in ciphertext
//!   `p / slots`, slot `p % slots`. Row-major: `p` is the row-major index. Axes: `p` is the
//!   row-major index in the axes permuted by `order` (a permutation of `0..rank`, checked).
//!   Unused slots are zero on input.
//! - Constants ([`SlotVector`]) are run-length encoded, at most `slots` long and finite.
//! - The text form ([`Program::print`]) is for humans (`polyhe dump --stage ckks`); the binary form
//!   ([`Program::to_bytes`] / [`Program::from_bytes`]) is versioned, checksummed and never panics on
//!   corrupt bytes.

mod binary;
mod exec;
mod origins;
mod progress;
mod simulate;
mod slot_vector;
mod support;
mod text;

use thiserror::Error;

use crate::bootstrap::BootstrapConfig;
use crate::error::CkksError;
use crate::params::CkksParams;

pub use binary::{PROGRAM_MAGIC, PROGRAM_VERSION};
pub use exec::{
    decrypt_outputs, encrypt_inputs, execute, execute_probed, execute_with_progress, execute_with_stats, ExecStats,
    Probe,
};
pub use origins::{Origin, Origins};
pub use progress::{Progress, ProgressReport};
pub use simulate::{simulate, simulate_observed, Simulation};
pub use slot_vector::SlotVector;
pub use support::SlotSupport;

/// A ciphertext register.
pub type Reg = u32;

/// Errors of program validation, (de)serialization and execution.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProgramError {
    /// The program is internally inconsistent (levels, scales, operands): a compiler bug or a
    /// hand-edited program. `inst` is the instruction index.
    #[error("invalid program at instruction {inst}: {reason}")]
    Invalid { inst: usize, reason: String },
    /// A level would go below 0.
    #[error("level underflow at instruction {inst}: {op} needs a level, operand is at level {level}")]
    LevelUnderflow { inst: usize, op: &'static str, level: usize },
    /// Inputs/outputs given to the client helpers or executor do not match the program.
    #[error("program interface mismatch: {reason}")]
    Interface { reason: String },
    /// Serialized bytes are malformed.
    #[error("malformed program: {reason} (at byte {offset})")]
    Malformed { offset: usize, reason: String },
    /// The exact text form (`Program::parse`) is malformed; the reason names the line.
    #[error("program text: {reason}")]
    Text { reason: String },
    /// The serialized version is not one this build reads.
    #[error("unsupported program format version {found} (this build reads {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    /// A CKKS operation failed.
    #[error(transparent)]
    Ckks(#[from] CkksError),
}

/// Result alias of the program module.
pub type ProgramResult<T> = std::result::Result<T, ProgramError>;

/// The parameter set a program was compiled for (enough to rebuild [`CkksParams`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramParams {
    pub log_n: u32,
    pub q_bits: Vec<u32>,
    pub p_bits: Vec<u32>,
    pub dnum: usize,
    pub log_scale: u32,
    /// [`CkksParams::fingerprint_u64`] of the parameters; checked when they are rebuilt.
    pub fingerprint: u64,
    /// The Q primes (for exact scale bookkeeping without regenerating them).
    pub moduli: Vec<u64>,
    /// The security bound the parameters were checked against (`NotSet` only for tests).
    pub security: crate::params::Security,
    /// Hamming weight of a sparse secret (bootstrapping needs one); `None`: uniform ternary.
    pub hamming_weight: Option<usize>,
}

impl ProgramParams {
    /// Captures a parameter set.
    pub fn from_params(p: &CkksParams) -> Self {
        Self {
            log_n: p.log_n(),
            q_bits: p.q_bits().to_vec(),
            p_bits: p.p_bits().to_vec(),
            dnum: p.dnum(),
            log_scale: p.log_scale(),
            fingerprint: p.fingerprint_u64(),
            moduli: p.moduli().to_vec(),
            security: p.security(),
            hamming_weight: p.hamming_weight(),
        }
    }

    /// Rebuilds the parameters and checks they are the ones the program was compiled for.
    pub fn to_params(&self) -> ProgramResult<CkksParams> {
        let p = CkksParams::new_with_security(
            self.log_n,
            &self.q_bits,
            &self.p_bits,
            self.dnum,
            self.log_scale,
            self.security,
        )?;
        let p = match self.hamming_weight {
            Some(h) => p.with_hamming_weight(h)?,
            None => p,
        };
        if p.fingerprint_u64() != self.fingerprint || p.moduli() != self.moduli.as_slice() {
            return Err(ProgramError::Interface {
                reason: format!(
                    "the stored parameters rebuild to fingerprint {:016x}, the program names {:016x}",
                    p.fingerprint_u64(),
                    self.fingerprint
                ),
            });
        }
        Ok(p)
    }

    /// Number of slots per ciphertext.
    pub fn slots(&self) -> usize {
        1usize << self.log_n.saturating_sub(1)
    }

    /// Highest level.
    pub fn max_level(&self) -> usize {
        self.moduli.len().saturating_sub(1)
    }
}

/// How a tensor is laid out in ciphertext slots (see the module doc). Tensors are given to
/// [`SlotLayout::pack`] and returned by [`SlotLayout::unpack`] row-major over the shape.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum SlotLayout {
    /// Row-major, `slots` elements per ciphertext, the last one zero-padded.
    RowMajor { shape: Vec<usize>, slots: usize },
    /// Row-major over the axes permuted by `order`: the element with multi-index `i` sits at the
    /// row-major index of `(i[order[0]], i[order[1]], ...)` in dims `(shape[order[0]], ...)`, then
    /// `slots` positions per ciphertext as in `RowMajor`. `order = [0, 2, 1]` on `[1, T, H]` puts
    /// the `T` tokens fastest. `order` must be a permutation of `0..shape.len()`
    /// ([`Program::validate_structure`] and the binary reader check it).
    Axes { shape: Vec<usize>, order: Vec<usize>, slots: usize },
}

impl SlotLayout {
    /// The tensor shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            SlotLayout::RowMajor { shape, .. } | SlotLayout::Axes { shape, .. } => shape,
        }
    }
    /// Slots per ciphertext.
    pub fn slots(&self) -> usize {
        match self {
            SlotLayout::RowMajor { slots, .. } | SlotLayout::Axes { slots, .. } => *slots,
        }
    }
    /// Number of tensor elements.
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }
    /// Number of ciphertexts.
    pub fn num_cts(&self) -> usize {
        self.numel().div_ceil(self.slots().max(1)).max(1)
    }
    /// Slot position (over the ciphertexts: ciphertext `p / slots`, slot `p % slots`) of the
    /// element with row-major index `elem < numel`. A `RowMajor` layout is the identity.
    pub fn position(&self, elem: usize) -> usize {
        match self {
            SlotLayout::RowMajor { .. } => elem,
            SlotLayout::Axes { shape, order, .. } => {
                // Multi-index of `elem`, last axis fastest.
                let mut idx = vec![0usize; shape.len()];
                let mut rest = elem;
                for (i, &d) in idx.iter_mut().zip(shape).rev() {
                    *i = rest % d.max(1);
                    rest /= d.max(1);
                }
                order.iter().fold(0usize, |p, &a| {
                    let d = shape.get(a).copied().unwrap_or(1);
                    p.saturating_mul(d).saturating_add(idx.get(a).copied().unwrap_or(0))
                })
            }
        }
    }
    /// Checks that the element count is representable (a shape like `[2^32, 2^32, 3]` would wrap
    /// and pass as a few elements) and that an `Axes` order is a permutation of the axes.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.shape().iter().try_fold(1usize, |n, &d| n.checked_mul(d)).is_none() {
            return Err(format!("shape {:?} has more elements than a machine word counts", self.shape()));
        }
        let SlotLayout::Axes { shape, order, .. } = self else { return Ok(()) };
        let not_perm = || Err(format!("axes order {order:?} is not a permutation of 0..{}", shape.len()));
        if order.len() != shape.len() {
            return not_perm();
        }
        let mut seen = vec![false; shape.len()];
        for &a in order {
            match seen.get_mut(a) {
                Some(s) if !*s => *s = true,
                _ => return not_perm(),
            }
        }
        Ok(())
    }
    /// Splits a row-major tensor into per-ciphertext slot vectors.
    pub fn pack(&self, data: &[f64]) -> ProgramResult<Vec<Vec<f64>>> {
        if data.len() != self.numel() {
            return Err(ProgramError::Interface {
                reason: format!("tensor of {} elements given for shape {:?}", data.len(), self.shape()),
            });
        }
        self.check().map_err(|reason| ProgramError::Interface { reason })?;
        let permuted;
        let flat = match self {
            SlotLayout::RowMajor { .. } => data,
            SlotLayout::Axes { .. } => {
                let mut p = vec![0.0; data.len()];
                for (e, &x) in data.iter().enumerate() {
                    if let Some(slot) = p.get_mut(self.position(e)) {
                        *slot = x;
                    }
                }
                permuted = p;
                &permuted
            }
        };
        let mut out: Vec<Vec<f64>> = flat.chunks(self.slots().max(1)).map(|c| c.to_vec()).collect();
        if out.is_empty() {
            out.push(Vec::new());
        }
        Ok(out)
    }
    /// Joins per-ciphertext slot vectors back into a row-major tensor.
    pub fn unpack(&self, parts: &[Vec<f64>]) -> ProgramResult<Vec<f64>> {
        self.check().map_err(|reason| ProgramError::Interface { reason })?;
        let slots = self.slots();
        let n = self.numel();
        let mut out = Vec::with_capacity(n);
        for (k, part) in parts.iter().enumerate() {
            let want = n.saturating_sub(k * slots).min(slots);
            let got = part.get(..want).ok_or_else(|| ProgramError::Interface {
                reason: format!("ciphertext {k} decoded to {} slots, {want} needed", part.len()),
            })?;
            out.extend_from_slice(got);
        }
        if out.len() != n {
            return Err(ProgramError::Interface { reason: format!("{} ciphertexts for {n} elements", parts.len()) });
        }
        match self {
            SlotLayout::RowMajor { .. } => Ok(out),
            SlotLayout::Axes { .. } => Ok((0..n).map(|e| out.get(self.position(e)).copied().unwrap_or(0.0)).collect()),
        }
    }
}

/// A named program input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    pub layout: SlotLayout,
    /// One register per ciphertext of the layout.
    pub regs: Vec<Reg>,
}

/// An operation; register operands must be defined earlier.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Add(Reg, Reg),
    Sub(Reg, Reg),
    Neg(Reg),
    /// `ct + pt`, the constant encoded at the ciphertext's level and scale.
    AddPlain(Reg, u32),
    /// `ct - pt`.
    SubPlain(Reg, u32),
    /// `ct · pt`, the constant encoded at the ciphertext's level and scale `pt_scale`.
    MulPlain {
        src: Reg,
        constant: u32,
        pt_scale: f64,
    },
    /// `ct · c` with `c` encoded at scale `const_scale` (a scalar multiply; result scale multiplies).
    MulScalar {
        src: Reg,
        value: f64,
        const_scale: f64,
    },
    /// `ct · k` for an integer `k` (no scale change, no level).
    MulInt(Reg, i64),
    /// `a · b`, relinearized.
    Mul(Reg, Reg),
    /// Divide by the last prime: level − 1, scale / q_level.
    Rescale(Reg),
    /// Drop primes down to `level` (scale unchanged).
    DropLevel {
        src: Reg,
        level: usize,
    },
    /// Rotate left by `step` slots. The executor hoists rotations of the same register.
    Rotate {
        src: Reg,
        step: i64,
    },
    /// Bootstrapping with the program's [`ProgramBootstrap`] (see the module doc).
    Bootstrap(Reg),
    /// One bootstrapping of two real values at the same level: the refreshed `(a + i·b)/2`
    /// (complex slots), which `a = z + conjugate(z)` and `b = mul_i(conjugate(z) − z)` split
    /// ([`crate::Bootstrapper::bootstrap_complex`]).
    BootstrapPair(Reg, Reg),
    /// Complex conjugation of every slot (one key switch, the conjugation key).
    Conjugate(Reg),
    /// Every slot times `i` (the monomial `X^{N/2}`: no level, no key).
    MulI(Reg),
}

impl Op {
    /// Register operands.
    pub fn operands(&self) -> Vec<Reg> {
        match *self {
            Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) | Op::BootstrapPair(a, b) => vec![a, b],
            Op::Conjugate(a) | Op::MulI(a) => vec![a],
            Op::Neg(a)
            | Op::AddPlain(a, _)
            | Op::SubPlain(a, _)
            | Op::MulInt(a, _)
            | Op::Rescale(a)
            | Op::Bootstrap(a) => vec![a],
            Op::MulPlain { src, .. }
            | Op::MulScalar { src, .. }
            | Op::DropLevel { src, .. }
            | Op::Rotate { src, .. } => {
                vec![src]
            }
        }
    }

    /// The op with every register operand replaced by `f(operand)` (renumbering after a rewrite).
    pub fn map_operands(&self, f: impl Fn(Reg) -> Reg) -> Op {
        match *self {
            Op::Add(a, b) => Op::Add(f(a), f(b)),
            Op::Sub(a, b) => Op::Sub(f(a), f(b)),
            Op::Mul(a, b) => Op::Mul(f(a), f(b)),
            Op::Neg(a) => Op::Neg(f(a)),
            Op::AddPlain(a, c) => Op::AddPlain(f(a), c),
            Op::SubPlain(a, c) => Op::SubPlain(f(a), c),
            Op::MulInt(a, k) => Op::MulInt(f(a), k),
            Op::Rescale(a) => Op::Rescale(f(a)),
            Op::Bootstrap(a) => Op::Bootstrap(f(a)),
            Op::BootstrapPair(a, b) => Op::BootstrapPair(f(a), f(b)),
            Op::Conjugate(a) => Op::Conjugate(f(a)),
            Op::MulI(a) => Op::MulI(f(a)),
            Op::MulPlain { src, constant, pt_scale } => Op::MulPlain { src: f(src), constant, pt_scale },
            Op::MulScalar { src, value, const_scale } => Op::MulScalar { src: f(src), value, const_scale },
            Op::DropLevel { src, level } => Op::DropLevel { src: f(src), level },
            Op::Rotate { src, step } => Op::Rotate { src: f(src), step },
        }
    }

    /// The op's keyword in the text form.
    /// `bootstrap` or `bootstrap_pair`.
    pub fn is_bootstrap(&self) -> bool {
        matches!(self, Op::Bootstrap(_) | Op::BootstrapPair(..))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Add(..) => "add",
            Op::Sub(..) => "sub",
            Op::Neg(..) => "neg",
            Op::AddPlain(..) => "add_plain",
            Op::SubPlain(..) => "sub_plain",
            Op::MulPlain { .. } => "mul_plain",
            Op::MulScalar { .. } => "mul_scalar",
            Op::MulInt(..) => "mul_int",
            Op::Mul(..) => "mul_relin",
            Op::Rescale(..) => "rescale",
            Op::DropLevel { .. } => "drop_level",
            Op::Rotate { .. } => "rotate",
            Op::Bootstrap(..) => "bootstrap",
            Op::BootstrapPair(..) => "bootstrap_pair",
            Op::Conjugate(..) => "conjugate",
            Op::MulI(..) => "mul_i",
        }
    }
}

/// One instruction with its result's level and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Inst {
    pub op: Op,
    pub level: usize,
    pub scale: f64,
}

/// The bootstrapping a program's [`Op::Bootstrap`] instructions run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramBootstrap {
    pub config: BootstrapConfig,
    /// Scale of every bootstrapped value ([`crate::Bootstrapper::with_output_scale`]).
    pub output_scale: f64,
    /// Per bootstrapping instruction (by index), `k`: its input is refreshed as `x / 2^k` and the
    /// result multiplied back by the integer `2^k` (no level). The bootstrapping's sine needs the
    /// message small next to `q_0` (`|x| ≪ 2^log_message_ratio`; beyond about half of that it
    /// wraps around and returns garbage); the compiler sets `k` from the values calibration
    /// inputs refresh ([`super::simulate`]). The relative precision is the same; absent = 0.
    pub input_shifts: std::collections::BTreeMap<usize, u32>,
}

/// Largest [`ProgramBootstrap::input_shifts`] entry.
pub const MAX_INPUT_SHIFT: u32 = 40;

impl ProgramBootstrap {
    /// Field ranges (what [`crate::Bootstrapper::new`] would refuse for any parameters), checked
    /// without building anything.
    pub fn check(&self, log_n: u32) -> Result<(), String> {
        let c = &self.config;
        if c.log_slots == 0 || c.log_slots >= log_n {
            return Err(format!("log_slots = {} must be in 1..={}", c.log_slots, log_n.saturating_sub(1)));
        }
        if c.cts_levels == 0
            || c.stc_levels == 0
            || c.cts_levels > c.log_slots as usize
            || c.stc_levels > c.log_slots as usize
        {
            return Err(format!(
                "cts_levels = {} / stc_levels = {} must be in 1..={}",
                c.cts_levels, c.stc_levels, c.log_slots
            ));
        }
        if !(2..=1023).contains(&c.cos_degree) || c.double_angle > 10 || !(1..=4096).contains(&c.k) {
            return Err(format!(
                "EvalMod degree {} / double angles {} / K {} out of range",
                c.cos_degree, c.double_angle, c.k
            ));
        }
        if !(1..=64).contains(&c.giant_step_cost) {
            return Err(format!("giant_step_cost = {} must be in 1..=64", c.giant_step_cost));
        }
        if !(4..=40).contains(&c.log_message_ratio) {
            return Err(format!("log_message_ratio = {} must be in 4..=40", c.log_message_ratio));
        }
        if !(self.output_scale.is_finite() && self.output_scale >= 2f64.powi(10)) {
            return Err(format!("output scale {} must be finite and at least 2^10", self.output_scale));
        }
        Ok(())
    }
}

/// A CKKS program (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub name: String,
    pub params: ProgramParams,
    pub inputs: Vec<Port>,
    /// Level and scale at which inputs are encrypted.
    pub input_level: usize,
    pub input_scale: f64,
    /// Plaintext operands, run-length encoded.
    pub constants: Vec<SlotVector>,
    pub insts: Vec<Inst>,
    pub outputs: Vec<Port>,
    /// The bootstrapping configuration (`Some` iff the program has [`Op::Bootstrap`]s).
    pub bootstrap: Option<ProgramBootstrap>,
    /// The compiler's source op of every instruction, or empty (see [`Origins`]).
    pub origins: Origins,
}

const SCALE_TOL: f64 = 1e-9;

fn scales_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= SCALE_TOL * a.abs().max(b.abs())
}

impl Program {
    /// Number of registers holding inputs.
    pub fn num_input_regs(&self) -> usize {
        self.inputs.iter().map(|p| p.regs.len()).sum()
    }

    /// Total number of registers.
    pub fn num_regs(&self) -> usize {
        self.num_input_regs() + self.insts.len()
    }

    /// The distinct rotation steps the program needs Galois keys for, sorted: its rotations plus,
    /// when it bootstraps, the bootstrapper's steps (normalized to `0..N/2`).
    pub fn rotation_steps(&self) -> Vec<i64> {
        let mut s: std::collections::BTreeSet<i64> = self
            .insts
            .iter()
            .filter_map(|i| match i.op {
                Op::Rotate { step, .. } => Some(step),
                _ => None,
            })
            .collect();
        if let Some(b) = self.bootstrap.as_ref().filter(|_| self.has_bootstraps()) {
            s.extend(b.config.rotation_steps(self.params.log_n));
        }
        s.into_iter().collect()
    }

    /// [`Self::rotation_steps`] with the highest level each is used at: its rotations' levels,
    /// the top of the chain for the bootstrapper's steps. For
    /// [`crate::ClientKeys::evaluation_keys_at_levels`]: a key restricted to the levels it is used
    /// at (a bootstrapped program rotates in its compute window, far below the chain's top).
    pub fn rotation_key_levels(&self) -> Vec<(i64, usize)> {
        let mut at: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
        for i in &self.insts {
            if let Op::Rotate { step, .. } = i.op {
                let e = at.entry(step).or_insert(0);
                *e = (*e).max(i.level);
            }
        }
        if let Some(b) = self.bootstrap.as_ref().filter(|_| self.has_bootstraps()) {
            for s in b.config.rotation_steps(self.params.log_n) {
                at.insert(s, self.params.max_level());
            }
        }
        at.into_iter().collect()
    }

    /// Whether the program needs the conjugation key (bootstrapping does).
    pub fn needs_conjugation(&self) -> bool {
        self.has_bootstraps() || self.insts.iter().any(|i| matches!(i.op, Op::Conjugate(_)))
    }

    /// Whether any instruction bootstraps.
    pub fn has_bootstraps(&self) -> bool {
        self.insts.iter().any(|i| i.op.is_bootstrap())
    }

    /// Number of bootstrap instructions.
    pub fn bootstraps(&self) -> usize {
        self.insts.iter().filter(|i| i.op.is_bootstrap()).count()
    }

    /// Level of every bootstrapped value: `max_level − config.levels()`.
    pub fn bootstrap_output_level(&self) -> Option<usize> {
        let b = self.bootstrap.as_ref()?;
        self.params.max_level().checked_sub(b.config.levels())
    }

    /// The bootstrapper the program's [`Op::Bootstrap`]s run (`None` without any), rebuilt from
    /// the recorded configuration for `ctx` (which must be the program's parameters).
    pub fn bootstrapper(&self, ctx: &crate::CkksContext) -> ProgramResult<Option<crate::Bootstrapper>> {
        if !self.has_bootstraps() {
            return Ok(None);
        }
        let b = self.bootstrap.as_ref().ok_or(ProgramError::Invalid {
            inst: 0,
            reason: "bootstrap instructions without a bootstrapping configuration".into(),
        })?;
        if ctx.fingerprint() != self.params.fingerprint {
            return Err(ProgramError::Interface {
                reason: "the context's parameters differ from the program's".into(),
            });
        }
        Ok(Some(crate::Bootstrapper::with_output_scale(ctx, b.config.clone(), b.output_scale)?))
    }

    /// Checks level and scale annotations (see the module doc); runs both checks.
    pub fn validate(&self) -> ProgramResult<()> {
        self.validate_structure()?;
        self.validate_levels()?;
        self.validate_scales()
    }

    /// Ports, register numbering, operand definitions and constants.
    pub fn validate_structure(&self) -> ProgramResult<()> {
        let bad = |inst: usize, reason: String| Err(ProgramError::Invalid { inst, reason });
        let slots = self.params.slots();
        if self.params.moduli.is_empty() || self.input_level > self.params.max_level() {
            return bad(0, format!("input level {} outside the modulus chain", self.input_level));
        }
        // Layouts first: a register count is only compared with a representable element count.
        for p in self.inputs.iter().chain(&self.outputs) {
            if let Err(reason) = p.layout.check() {
                return bad(0, format!("port `{}`: {reason}", p.name));
            }
            if p.regs.len() != p.layout.num_cts() {
                return bad(
                    0,
                    format!("port `{}` has {} registers for {} ciphertexts", p.name, p.regs.len(), p.layout.num_cts()),
                );
            }
        }
        let mut next = 0u32;
        for p in &self.inputs {
            if p.regs.len() != p.layout.num_cts() {
                return bad(
                    0,
                    format!("input `{}` has {} registers for {} ciphertexts", p.name, p.regs.len(), p.layout.num_cts()),
                );
            }
            for &r in &p.regs {
                if r != next {
                    return bad(0, format!("input registers must be numbered 0.. in order, `{}` uses %{r}", p.name));
                }
                next += 1;
            }
            let s = p.layout.slots();
            if s != slots {
                return bad(0, format!("input `{}` laid out for {s} slots, parameters give {slots}", p.name));
            }
        }
        for (k, c) in self.constants.iter().enumerate() {
            if c.len() > slots || !c.is_finite() {
                return bad(0, format!("constant c{k} has {} values (max {slots}) or a non-finite value", c.len()));
            }
        }
        if let Some(b) = &self.bootstrap {
            if let Err(reason) = b.check(self.params.log_n) {
                return bad(0, format!("bootstrapping configuration: {reason}"));
            }
            if self.bootstrap_output_level().is_none_or(|l| l == 0) {
                return bad(
                    0,
                    format!(
                        "bootstrapping consumes {} levels, the chain has {}",
                        b.config.levels(),
                        self.params.max_level()
                    ),
                );
            }
        }
        let n_in = self.num_input_regs();
        for (i, inst) in self.insts.iter().enumerate() {
            let def = (n_in + i) as u32;
            if inst.op.is_bootstrap() && self.bootstrap.is_none() {
                return bad(i, "bootstrap without a bootstrapping configuration".into());
            }
            for r in inst.op.operands() {
                if r >= def {
                    return bad(i, format!("operand %{r} is not defined before %{def}"));
                }
            }
            if let Op::AddPlain(_, c) | Op::SubPlain(_, c) | Op::MulPlain { constant: c, .. } = inst.op {
                if c as usize >= self.constants.len() {
                    return bad(i, format!("constant c{c} does not exist"));
                }
            }
            if !(inst.scale.is_finite() && inst.scale > 0.0) {
                return bad(i, format!("scale {} is not positive and finite", inst.scale));
            }
        }
        for p in &self.outputs {
            if p.regs.len() != p.layout.num_cts() {
                return bad(
                    self.insts.len(),
                    format!(
                        "output `{}` has {} registers for {} ciphertexts",
                        p.name,
                        p.regs.len(),
                        p.layout.num_cts()
                    ),
                );
            }
            if let Some(&r) = p.regs.iter().find(|&&r| r as usize >= self.num_regs()) {
                return bad(self.insts.len(), format!("output `{}` reads undefined %{r}", p.name));
            }
        }
        if let Some(b) = &self.bootstrap {
            for (&i, &k) in &b.input_shifts {
                if !self.insts.get(i).is_some_and(|x| x.op.is_bootstrap()) {
                    return bad(
                        i.min(self.insts.len()),
                        format!("input shift {k} on instruction {i}, not a bootstrapping"),
                    );
                }
                if k > MAX_INPUT_SHIFT {
                    return bad(i, format!("input shift {k} exceeds {MAX_INPUT_SHIFT}"));
                }
            }
        }
        if let Err(reason) = self.origins.check(self.insts.len()) {
            return bad(0, format!("instruction origins: {reason}"));
        }
        if let Some((i, r, end)) = self.unpadded_bootstrap() {
            let n = self.bootstrap.as_ref().map_or(0, |b| 1usize << b.config.log_slots);
            return bad(
                i,
                format!(
                    "zero-padded bootstrap of %{r}, which may be nonzero up to slot {end}: only slots 0..{n} are refreshed"
                ),
            );
        }
        Ok(())
    }

    /// Recomputes (level, ciphertext degree) of every register; checks annotations and underflow.
    pub fn validate_levels(&self) -> ProgramResult<()> {
        let n_in = self.num_input_regs();
        let mut level = vec![self.input_level; n_in];
        let boot_level = self.bootstrap_output_level();
        let get = |level: &Vec<usize>, i: usize, r: Reg| {
            level.get(r as usize).copied().ok_or(ProgramError::Invalid { inst: i, reason: format!("undefined %{r}") })
        };
        for (i, inst) in self.insts.iter().enumerate() {
            let l = match inst.op {
                Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) => {
                    let (la, lb) = (get(&level, i, a)?, get(&level, i, b)?);
                    if la != lb {
                        return Err(ProgramError::Invalid {
                            inst: i,
                            reason: format!("{} of %{a} at level {la} and %{b} at level {lb}", inst.op.name()),
                        });
                    }
                    la
                }
                Op::Rescale(a) => {
                    let la = get(&level, i, a)?;
                    if la == 0 {
                        return Err(ProgramError::LevelUnderflow { inst: i, op: "rescale", level: 0 });
                    }
                    la - 1
                }
                Op::DropLevel { src, level: to } => {
                    let la = get(&level, i, src)?;
                    if to > la {
                        return Err(ProgramError::Invalid {
                            inst: i,
                            reason: format!("drop_level from {la} up to {to}"),
                        });
                    }
                    to
                }
                Op::Bootstrap(a) | Op::BootstrapPair(a, _) => {
                    let la = get(&level, i, a)?;
                    if la == 0 {
                        return Err(ProgramError::LevelUnderflow { inst: i, op: "bootstrap", level: 0 });
                    }
                    if let Op::BootstrapPair(_, b) = inst.op {
                        let lb = get(&level, i, b)?;
                        if lb != la {
                            return Err(ProgramError::Invalid {
                                inst: i,
                                reason: format!("bootstrap_pair of %{a} at level {la} and %{b} at level {lb}"),
                            });
                        }
                    }
                    boot_level.ok_or(ProgramError::Invalid {
                        inst: i,
                        reason: "bootstrap without a bootstrapping configuration".into(),
                    })?
                }
                _ => {
                    let ops = inst.op.operands();
                    let a = ops.first().copied().unwrap_or(0);
                    get(&level, i, a)?
                }
            };
            if l != inst.level {
                return Err(ProgramError::Invalid {
                    inst: i,
                    reason: format!("annotated level {} but computed {l}", inst.level),
                });
            }
            level.push(l);
        }
        Ok(())
    }

    /// Recomputes the scale of every register with the exact primes; checks annotations and that
    /// additions see equal scales.
    pub fn validate_scales(&self) -> ProgramResult<()> {
        let n_in = self.num_input_regs();
        let mut scale = vec![self.input_scale; n_in];
        let mut level = vec![self.input_level; n_in];
        for (i, inst) in self.insts.iter().enumerate() {
            let sc = |r: Reg| scale.get(r as usize).copied().unwrap_or(f64::NAN);
            let lv = |r: Reg| level.get(r as usize).copied().unwrap_or(0);
            let s = match inst.op {
                Op::Add(a, b) | Op::Sub(a, b) => {
                    if !scales_eq(sc(a), sc(b)) {
                        return Err(ProgramError::Invalid {
                            inst: i,
                            reason: format!(
                                "{} of scales 2^{:.6} and 2^{:.6}",
                                inst.op.name(),
                                sc(a).log2(),
                                sc(b).log2()
                            ),
                        });
                    }
                    sc(a)
                }
                Op::Mul(a, b) => sc(a) * sc(b),
                Op::Neg(a) | Op::AddPlain(a, _) | Op::SubPlain(a, _) | Op::MulInt(a, _) => sc(a),
                Op::MulPlain { src, pt_scale, .. } => sc(src) * pt_scale,
                Op::MulScalar { src, const_scale, .. } => sc(src) * const_scale,
                Op::Rescale(a) => {
                    let q = self.params.moduli.get(lv(a)).copied().unwrap_or(0) as f64;
                    sc(a) / q
                }
                Op::DropLevel { src, .. } | Op::Rotate { src, .. } => sc(src),
                Op::Conjugate(a) | Op::MulI(a) => sc(a),
                Op::Bootstrap(a) | Op::BootstrapPair(a, _) => {
                    if let Op::BootstrapPair(_, b) = inst.op {
                        if !scales_eq(sc(a), sc(b)) {
                            return Err(ProgramError::Invalid {
                                inst: i,
                                reason: format!(
                                    "bootstrap_pair of scales 2^{:.4} and 2^{:.4}",
                                    sc(a).log2(),
                                    sc(b).log2()
                                ),
                            });
                        }
                    }
                    let Some(b) = &self.bootstrap else {
                        return Err(ProgramError::Invalid {
                            inst: i,
                            reason: "bootstrap without a configuration".into(),
                        });
                    };
                    // Bootstrapper::to_message_scale: one constant multiplication takes the input
                    // from q_1·Δ_msg/scale; below 2^20 that constant has too little precision.
                    let q = |l: usize| self.params.moduli.get(l).copied().unwrap_or(0) as f64;
                    let msg = q(0) / f64::from(b.config.log_message_ratio).exp2();
                    if msg * q(1) / sc(a) < 2f64.powi(20) {
                        return Err(ProgramError::Invalid {
                            inst: i,
                            reason: format!(
                                "bootstrap input scale 2^{:.1} too large for the message scale 2^{:.1}",
                                sc(a).log2(),
                                msg.log2()
                            ),
                        });
                    }
                    b.output_scale
                }
            };
            if !scales_eq(s, inst.scale) {
                return Err(ProgramError::Invalid {
                    inst: i,
                    reason: format!("annotated scale 2^{:.6} but computed 2^{:.6}", inst.scale.log2(), s.log2()),
                });
            }
            scale.push(s);
            level.push(inst.level);
        }
        Ok(())
    }

    /// Multiplicative depth used: input level minus the lowest level of any register.
    pub fn levels_used(&self) -> usize {
        let min = self.insts.iter().map(|i| i.level).min().unwrap_or(self.input_level);
        self.input_level.saturating_sub(min)
    }

    /// Counts of operations by kind (for reports).
    pub fn op_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut m = std::collections::BTreeMap::new();
        for i in &self.insts {
            *m.entry(i.op.name()).or_insert(0) += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests;
