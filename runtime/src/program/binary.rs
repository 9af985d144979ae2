//! The versioned binary form of a [`Program`] (`OUT/program.bin`).
//!
//! Layout (little endian): magic `PHEPROG\0`, `u16` version, `u64` body length, the body, then a
//! SHA-256 of the body (32 bytes). The body holds the parameter requirements first (version 2 added
//! the security bound after the fingerprint; version 3 the secret's Hamming weight after it and the
//! bootstrapping configuration after the parameters) (so a reader can
//! reject a program for other parameters before decoding the rest), then ports, constants,
//! instructions (version 3: tag 12 = bootstrap).
//!
//! A port's layout is a kind byte: 0 = row-major (slots, rank, dims), 1 = axes (version 4: slots,
//! rank, dims, then `rank` axes forming a permutation of `0..rank`). A constant is its length then
//! one of three encodings, whichever is smallest (ties: the earlier): 0 = dense (`f64` values),
//! 1 = sparse (count, then (`u32` index, `f64` value) pairs with increasing indices), 2 = runs
//! (version 4: count, then (`f64` value, `u32` length) pairs whose lengths sum to the constant's).
//! Version 5: the bootstrapping tag is 1 (replicated sparse or full slots) or 2 (zero-padded
//! sparse), and the baby-step giant-step weight `giant_step_cost` follows the message ratio
//! (programs of versions 3–4 were planned with weight 1).
//! Version 5 also added instruction tags 13 = bootstrap_pair, 14 = conjugate, 15 = mul_i.
//! Version 6 appends the instructions' origins ([`super::Origins`]): the sources (node and op
//! strings), then runs of (`u32` length, `u32` source or `u32::MAX` for none) whose lengths sum
//! to the instruction count (no runs: no origins), then the bootstrapping input shifts (count,
//! then (`u32` instruction, `u32` shift) pairs; [`super::ProgramBootstrap::input_shifts`]).
//! This build writes version 6 and reads versions 3 to 6.
//!
//! Every length is bounds-checked against the remaining bytes before allocating (a constant's run
//! lengths also against its length, at most 2^20), so corrupt or truncated input gives
//! [`ProgramError::Malformed`], never a panic or a huge allocation.

use sha2::{Digest, Sha256};

use super::{
    Inst, Op, Port, Program, ProgramBootstrap, ProgramError, ProgramParams, ProgramResult, SlotLayout, SlotVector,
};
use crate::bootstrap::BootstrapConfig;

/// Magic bytes of a serialized program.
pub const PROGRAM_MAGIC: &[u8; 8] = b"PHEPROG\0";
/// Format version written by this build (version 4: run-length constants and axes layouts; 5: the
/// zero-padded bootstrapping tag and the plan weight; 6: instruction origins).
pub const PROGRAM_VERSION: u16 = 6;

/// Magic, version and body length.
const HEADER_LEN: usize = 8 + 2 + 8;

/// Oldest format version this build reads (version 4 only added encodings).
const OLDEST_READ: u16 = 3;

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn port(&mut self, p: &Port) {
        self.str(&p.name);
        let (kind, order) = match &p.layout {
            SlotLayout::RowMajor { .. } => (0, None),
            SlotLayout::Axes { order, .. } => (1, Some(order)),
        };
        let shape = p.layout.shape();
        self.u8(kind);
        self.len(p.layout.slots());
        self.len(shape.len());
        shape.iter().for_each(|&d| self.len(d));
        if let Some(order) = order {
            order.iter().for_each(|&a| self.len(a));
        }
        self.len(p.regs.len());
        p.regs.iter().for_each(|&r| self.u32(r));
    }
}

impl W {
    /// A constant in its smallest encoding (see the module doc).
    /// Bytes [`W::constant`] writes for `c` (an upper bound: `len` fields counted as 8 bytes).
    fn constant_size(c: &SlotVector) -> usize {
        let (n, runs, nz) = (c.len(), c.num_runs(), c.nonzeros());
        9 + (n * 8).min(16 + nz * 12).min(16 + runs * 12)
    }

    fn constant(&mut self, c: &SlotVector) {
        let n = c.len();
        let (runs, nz) = (c.num_runs(), c.nonzeros());
        let dense = n * 8;
        let sparse = 8 + nz * 12;
        let rle = 8 + runs * 12;
        self.len(n);
        if dense <= sparse && dense <= rle {
            self.u8(0);
            c.runs().for_each(|(x, k)| (0..k).for_each(|_| self.f64(x)));
        } else if sparse <= rle {
            self.u8(1);
            self.len(nz);
            let mut i = 0usize;
            for (x, k) in c.runs() {
                if x.to_bits() != 0 {
                    (i..i + k).for_each(|j| {
                        self.u32(j as u32);
                        self.f64(x);
                    });
                }
                i += k;
            }
        } else {
            self.u8(2);
            self.len(runs);
            for (x, k) in c.runs() {
                self.f64(x);
                self.u32(k as u32);
            }
        }
    }
}

struct R<'a> {
    b: &'a [u8],
    pos: usize,
    base: usize,
    /// Format version being read.
    version: u16,
}

impl<'a> R<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> ProgramResult<T> {
        Err(ProgramError::Malformed { offset: self.base + self.pos, reason: reason.into() })
    }
    fn take(&mut self, n: usize) -> ProgramResult<&'a [u8]> {
        match self.pos.checked_add(n).and_then(|end| self.b.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => self.err(format!("truncated: {n} more bytes needed")),
        }
    }
    fn arr<const K: usize>(&mut self) -> ProgramResult<[u8; K]> {
        let s = self.take(K)?;
        let mut a = [0u8; K];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> ProgramResult<u8> {
        Ok(self.arr::<1>()?[0])
    }
    fn u32(&mut self) -> ProgramResult<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> ProgramResult<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> ProgramResult<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn f64(&mut self) -> ProgramResult<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A count of items each at least `item_bytes` long: bounded by the remaining bytes.
    fn count(&mut self, item_bytes: usize) -> ProgramResult<usize> {
        let n = self.u64()?;
        let left = (self.b.len() - self.pos) as u64;
        if n.saturating_mul(item_bytes.max(1) as u64) > left {
            return self.err(format!("count {n} exceeds the remaining {left} bytes"));
        }
        Ok(n as usize)
    }
    /// The origins of `insts` instructions (version 6; see the module doc).
    fn origins(&mut self, insts: usize) -> ProgramResult<super::Origins> {
        let ns = self.count(16)?;
        let mut sources = Vec::with_capacity(ns);
        for _ in 0..ns {
            sources.push(super::Origin { node: self.str()?, op: self.str()? });
        }
        let nr = self.count(8)?;
        let mut of_inst = Vec::new();
        for _ in 0..nr {
            let (n, src) = (self.u32()? as usize, self.u32()?);
            if of_inst.len() + n > insts {
                return self.err(format!("instruction origins cover more than the {insts} instructions"));
            }
            if src != u32::MAX && src as usize >= ns {
                return self.err(format!("instruction origin s{src} does not exist ({ns} sources)"));
            }
            of_inst.extend(std::iter::repeat_n((src != u32::MAX).then_some(src), n));
        }
        if nr > 0 && of_inst.len() != insts {
            return self.err(format!("instruction origins cover {} of {insts} instructions", of_inst.len()));
        }
        Ok(super::Origins { sources, of_inst })
    }
    fn usize_small(&mut self, max: u64, what: &str) -> ProgramResult<usize> {
        let v = self.u64()?;
        if v > max {
            return self.err(format!("{what} = {v} exceeds {max}"));
        }
        Ok(v as usize)
    }
    fn str(&mut self) -> ProgramResult<String> {
        let n = self.count(1)?;
        let s = self.take(n)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err("string is not UTF-8"),
        }
    }
    fn port(&mut self) -> ProgramResult<Port> {
        let name = self.str()?;
        let kind = self.u8()?;
        if kind > 1 || (kind == 1 && self.version < 4) {
            return self.err(format!("unknown slot layout kind {kind} in version {}", self.version));
        }
        let slots = self.usize_small(1 << 20, "slots")?;
        let rank = self.count(8)?;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(self.usize_small(1 << 40, "dimension")?);
        }
        let layout = if kind == 1 {
            let mut order = Vec::with_capacity(rank);
            for _ in 0..rank {
                order.push(self.usize_small(rank as u64, "axis")?);
            }
            let layout = SlotLayout::Axes { shape, order, slots };
            if let Err(reason) = layout.check() {
                return self.err(reason);
            }
            layout
        } else {
            SlotLayout::RowMajor { shape, slots }
        };
        let nregs = self.count(4)?;
        let mut regs = Vec::with_capacity(nregs);
        for _ in 0..nregs {
            regs.push(self.u32()?);
        }
        Ok(Port { name, layout, regs })
    }

    /// One constant: its length, an encoding tag and the values (see the module doc).
    fn constant(&mut self) -> ProgramResult<SlotVector> {
        let n = self.usize_small(1 << 20, "constant length")?;
        match self.u8()? {
            0 => {
                if n * 8 > self.b.len() - self.pos {
                    return self.err(format!("dense constant of {n} values exceeds the remaining bytes"));
                }
                let v = (0..n).map(|_| self.f64()).collect::<ProgramResult<Vec<_>>>()?;
                Ok(SlotVector::from_dense(&v))
            }
            1 => {
                let nz = self.count(12)?;
                let mut runs = Vec::with_capacity(2 * nz);
                let mut next = 0usize;
                for _ in 0..nz {
                    let i = self.u32()? as usize;
                    let x = self.f64()?;
                    if i < next || i >= n {
                        return self.err(format!("sparse constant index {i} not increasing or outside its {n} values"));
                    }
                    runs.push((0.0, i - next));
                    runs.push((x, 1));
                    next = i + 1;
                }
                Ok(SlotVector::from_runs(runs))
            }
            2 if self.version >= 4 => {
                let nr = self.count(12)?;
                let mut runs = Vec::with_capacity(nr);
                let mut total = 0usize;
                for _ in 0..nr {
                    let x = self.f64()?;
                    let k = self.u32()? as usize;
                    total += k;
                    if total > n {
                        return self.err(format!("constant runs exceed its {n} values"));
                    }
                    runs.push((x, k));
                }
                if total != n {
                    return self.err(format!("constant runs cover {total} of its {n} values"));
                }
                Ok(SlotVector::from_runs(runs))
            }
            t => self.err(format!("unknown constant encoding {t} in version {}", self.version)),
        }
    }
}

impl Program {
    /// Serializes the program.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Sized up front and framed in place: a BERT-base program is a gigabyte, and growing the
        // buffer by doubling and copying the body into a framed one held three times that.
        let ports: usize = self.inputs.iter().chain(&self.outputs).map(|p| 64 + p.name.len() + 8 * p.regs.len()).sum();
        let estimate = HEADER_LEN
            + 4096
            + self.name.len()
            + ports
            + self.constants.iter().map(W::constant_size).sum::<usize>()
            + 48 * self.insts.len()
            + 32;
        let mut w = W(Vec::with_capacity(estimate));
        w.0.extend_from_slice(PROGRAM_MAGIC);
        w.0.extend_from_slice(&PROGRAM_VERSION.to_le_bytes());
        w.0.extend_from_slice(&0u64.to_le_bytes());
        let p = &self.params;
        w.u32(p.log_n);
        w.len(p.q_bits.len());
        p.q_bits.iter().for_each(|&b| w.u32(b));
        w.len(p.p_bits.len());
        p.p_bits.iter().for_each(|&b| w.u32(b));
        w.len(p.dnum);
        w.u32(p.log_scale);
        w.u64(p.fingerprint);
        w.u32(p.security.code());
        w.u64(p.hamming_weight.map_or(0, |h| h as u64));
        w.len(p.moduli.len());
        p.moduli.iter().for_each(|&q| w.u64(q));
        match &self.bootstrap {
            None => w.u8(0),
            Some(b) => {
                let c = &b.config;
                // tag 2: the zero-padded sparse bootstrapping (older readers refuse it by its tag)
                w.u8(if c.zero_padded { 2 } else { 1 });
                w.u32(c.log_slots);
                w.u32(c.k);
                w.len(c.cos_degree);
                w.u32(c.double_angle);
                w.len(c.cts_levels);
                w.len(c.stc_levels);
                w.u32(c.log_message_ratio);
                w.len(c.giant_step_cost);
                w.f64(b.output_scale);
            }
        }
        w.str(&self.name);
        w.len(self.input_level);
        w.f64(self.input_scale);
        w.len(self.inputs.len());
        self.inputs.iter().for_each(|i| w.port(i));
        w.len(self.outputs.len());
        self.outputs.iter().for_each(|o| w.port(o));
        w.len(self.constants.len());
        for c in &self.constants {
            w.constant(c);
        }
        w.len(self.insts.len());
        for inst in &self.insts {
            match inst.op {
                Op::Add(a, b) => {
                    w.u8(0);
                    w.u32(a);
                    w.u32(b);
                }
                Op::Sub(a, b) => {
                    w.u8(1);
                    w.u32(a);
                    w.u32(b);
                }
                Op::Neg(a) => {
                    w.u8(2);
                    w.u32(a);
                }
                Op::AddPlain(a, c) => {
                    w.u8(3);
                    w.u32(a);
                    w.u32(c);
                }
                Op::SubPlain(a, c) => {
                    w.u8(4);
                    w.u32(a);
                    w.u32(c);
                }
                Op::MulPlain { src, constant, pt_scale } => {
                    w.u8(5);
                    w.u32(src);
                    w.u32(constant);
                    w.f64(pt_scale);
                }
                Op::MulScalar { src, value, const_scale } => {
                    w.u8(6);
                    w.u32(src);
                    w.f64(value);
                    w.f64(const_scale);
                }
                Op::MulInt(a, k) => {
                    w.u8(7);
                    w.u32(a);
                    w.i64(k);
                }
                Op::Mul(a, b) => {
                    w.u8(8);
                    w.u32(a);
                    w.u32(b);
                }
                Op::Rescale(a) => {
                    w.u8(9);
                    w.u32(a);
                }
                Op::DropLevel { src, level } => {
                    w.u8(10);
                    w.u32(src);
                    w.len(level);
                }
                Op::Rotate { src, step } => {
                    w.u8(11);
                    w.u32(src);
                    w.i64(step);
                }
                Op::BootstrapPair(a, b) => {
                    w.u8(13);
                    w.u32(a);
                    w.u32(b);
                }
                Op::Conjugate(a) => {
                    w.u8(14);
                    w.u32(a);
                }
                Op::MulI(a) => {
                    w.u8(15);
                    w.u32(a);
                }
                Op::Bootstrap(a) => {
                    w.u8(12);
                    w.u32(a);
                }
            }
            w.len(inst.level);
            w.f64(inst.scale);
        }
        w.len(self.origins.sources.len());
        for o in &self.origins.sources {
            w.str(&o.node);
            w.str(&o.op);
        }
        let runs = self.origins.runs();
        w.len(runs.len());
        for (_, n, src) in runs {
            w.u32(n as u32);
            w.u32(src.unwrap_or(u32::MAX));
        }
        let shifts = self.bootstrap.as_ref().map(|b| &b.input_shifts);
        w.len(shifts.map_or(0, |m| m.len()));
        for (&i, &k) in shifts.into_iter().flatten() {
            w.u32(i as u32);
            w.u32(k);
        }
        let mut out = w.0;
        let body_len = out.len() - HEADER_LEN;
        if let Some(len) = out.get_mut(HEADER_LEN - 8..HEADER_LEN) {
            len.copy_from_slice(&(body_len as u64).to_le_bytes());
        }
        let digest = Sha256::digest(out.get(HEADER_LEN..).unwrap_or(&[]));
        out.extend_from_slice(&digest);
        out
    }

    /// Reads a serialized program; corrupt, truncated or foreign bytes are errors. The result is
    /// structurally validated ([`Program::validate_structure`]); call [`Program::validate`] for the
    /// level/scale proof.
    pub fn from_bytes(bytes: &[u8]) -> ProgramResult<Program> {
        let mut h = R { b: bytes, pos: 0, base: 0, version: PROGRAM_VERSION };
        if h.take(8)? != PROGRAM_MAGIC {
            return h.err("not a polyhe CKKS program (bad magic)");
        }
        let version = u16::from_le_bytes(h.arr()?);
        if !(OLDEST_READ..=PROGRAM_VERSION).contains(&version) {
            return Err(ProgramError::UnsupportedVersion { found: version, supported: PROGRAM_VERSION });
        }
        let len = h.count(1)?;
        let body = h.take(len)?;
        let digest: [u8; 32] = h.arr()?;
        if h.pos != bytes.len() {
            return h.err("trailing bytes after the checksum");
        }
        if Sha256::digest(body).as_slice() != digest {
            return Err(ProgramError::Malformed { offset: 18, reason: "checksum mismatch (corrupt body)".into() });
        }
        let mut r = R { b: body, pos: 0, base: 18, version };
        let log_n = r.u32()?;
        let nq = r.count(4)?;
        let q_bits = (0..nq).map(|_| r.u32()).collect::<ProgramResult<Vec<_>>>()?;
        let np = r.count(4)?;
        let p_bits = (0..np).map(|_| r.u32()).collect::<ProgramResult<Vec<_>>>()?;
        let dnum = r.usize_small(1 << 16, "dnum")?;
        let log_scale = r.u32()?;
        let fingerprint = r.u64()?;
        let security_code = r.u32()?;
        let Some(security) = crate::params::Security::from_code(security_code) else {
            return r.err(format!("unknown security level code {security_code} (known: 128, 0)"));
        };
        let hamming = r.usize_small(1 << 20, "hamming weight")?;
        let hamming_weight = (hamming != 0).then_some(hamming);
        let nm = r.count(8)?;
        let moduli = (0..nm).map(|_| r.u64()).collect::<ProgramResult<Vec<_>>>()?;
        if !(1..=20).contains(&log_n) {
            return r.err(format!("log_n = {log_n} out of range"));
        }
        let bootstrap = match r.u8()? {
            0 => None,
            tag @ (1 | 2) => {
                let config = BootstrapConfig {
                    log_slots: r.u32()?,
                    k: r.u32()?,
                    cos_degree: r.usize_small(1 << 16, "cosine degree")?,
                    double_angle: r.u32()?,
                    cts_levels: r.usize_small(64, "cts_levels")?,
                    stc_levels: r.usize_small(64, "stc_levels")?,
                    log_message_ratio: r.u32()?,
                    zero_padded: tag == 2,
                    // version 5 added the plan weight; older programs were planned with 1
                    giant_step_cost: if r.version >= 5 { r.usize_small(1 << 16, "giant_step_cost")? } else { 1 },
                };
                let b = ProgramBootstrap { config, output_scale: r.f64()?, input_shifts: Default::default() };
                // Range-check before anything uses the configuration (levels() fits a polynomial).
                if let Err(reason) = b.check(log_n) {
                    return r.err(format!("bootstrapping configuration: {reason}"));
                }
                Some(b)
            }
            t => return r.err(format!("unknown bootstrapping tag {t}")),
        };
        let params =
            ProgramParams { log_n, q_bits, p_bits, dnum, log_scale, fingerprint, moduli, security, hamming_weight };
        let name = r.str()?;
        let input_level = r.usize_small(1 << 16, "input level")?;
        let input_scale = r.f64()?;
        let ni = r.count(8)?;
        let inputs = (0..ni).map(|_| r.port()).collect::<ProgramResult<Vec<_>>>()?;
        let no = r.count(8)?;
        let outputs = (0..no).map(|_| r.port()).collect::<ProgramResult<Vec<_>>>()?;
        let nc = r.count(8)?;
        let constants = (0..nc).map(|_| r.constant()).collect::<ProgramResult<Vec<_>>>()?;
        let n_inst = r.count(5)?;
        let mut insts = Vec::with_capacity(n_inst);
        for _ in 0..n_inst {
            let tag = r.u8()?;
            let op = match tag {
                0 => Op::Add(r.u32()?, r.u32()?),
                1 => Op::Sub(r.u32()?, r.u32()?),
                2 => Op::Neg(r.u32()?),
                3 => Op::AddPlain(r.u32()?, r.u32()?),
                4 => Op::SubPlain(r.u32()?, r.u32()?),
                5 => Op::MulPlain { src: r.u32()?, constant: r.u32()?, pt_scale: r.f64()? },
                6 => Op::MulScalar { src: r.u32()?, value: r.f64()?, const_scale: r.f64()? },
                7 => Op::MulInt(r.u32()?, r.i64()?),
                8 => Op::Mul(r.u32()?, r.u32()?),
                9 => Op::Rescale(r.u32()?),
                10 => Op::DropLevel { src: r.u32()?, level: r.usize_small(1 << 16, "level")? },
                11 => Op::Rotate { src: r.u32()?, step: r.i64()? },
                12 => Op::Bootstrap(r.u32()?),
                13 if r.version >= 5 => Op::BootstrapPair(r.u32()?, r.u32()?),
                14 if r.version >= 5 => Op::Conjugate(r.u32()?),
                15 if r.version >= 5 => Op::MulI(r.u32()?),
                t => return r.err(format!("unknown instruction tag {t}")),
            };
            let level = r.usize_small(1 << 16, "level")?;
            let scale = r.f64()?;
            insts.push(Inst { op, level, scale });
        }
        let origins = if r.version >= 6 { r.origins(insts.len())? } else { super::Origins::default() };
        let mut bootstrap = bootstrap;
        if r.version >= 6 {
            let n = r.count(8)?;
            for _ in 0..n {
                let (i, k) = (r.u32()? as usize, r.u32()?);
                match bootstrap.as_mut() {
                    Some(b) => {
                        b.input_shifts.insert(i, k);
                    }
                    None => return r.err("bootstrapping input shifts without a bootstrapping configuration"),
                }
            }
        }
        if r.pos != body.len() {
            return r.err("trailing bytes in the body");
        }
        let prog =
            Program { name, params, inputs, input_level, input_scale, constants, insts, outputs, bootstrap, origins };
        prog.validate_structure()?;
        Ok(prog)
    }
}

/// The bytes [`Program::to_bytes`] writes for one constant (length, tag, values), for tests.
#[cfg(test)]
pub(super) fn constant_bytes(c: &SlotVector) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.constant(c);
    w.0
}
