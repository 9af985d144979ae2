//! Versioned binary serialization of parameters, plaintexts, ciphertexts and keys.
//!
//! Every object is one self-checking envelope (all integers little-endian; `docs/ckks-format.md`
//! has the full table and the versioning policy):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `PHEC` |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 2 | kind tag ([`ObjectKind::tag`]) |
//! | 8 | 8 | parameter fingerprint ([`CkksParams::fingerprint_u64`]) |
//! | 16 | 8 | payload length `len` in bytes |
//! | 24 | `len` | payload (layout per kind) |
//! | 24 + `len` | 8 | XXH64 (seed 0) of every preceding byte |
//!
//! Contract:
//! - Loading never panics, and allocations are bounded by the input (a secret key, whose NTT form
//!   is recomputed, by the size its parameters give it): the length field must equal the bytes
//!   actually present, every count read from the payload is checked against the bytes that remain
//!   before anything is allocated, and files are only read when their declared kind is the one
//!   asked for and their size is within what the context's parameters allow for it.
//! - Checks run in this order, so the first error is the most telling one: size and magic, version
//!   ([`CkksError::UnsupportedVersion`]), length, checksum (any flipped bit is
//!   [`CkksError::Malformed`]), kind ([`CkksError::WrongKind`] names both kinds), parameter
//!   fingerprint against the context ([`CkksError::ParamsMismatch`] names both fingerprints), then
//!   the payload: level, degree, scale, Galois elements and every RNS coefficient (`< q` of its
//!   limb) are range-checked, and trailing bytes are an error.
//! - Payloads hold no redundant data: polynomials are stored as their RNS limbs in the runtime's
//!   NTT form (`u64` each; that representation is part of the format version and pinned by a
//!   unit test); a secret key is stored as its ternary coefficients (one `i8` each) and
//!   its NTT form is recomputed on load. The parameter payload also lists the generated primes, so
//!   a reader outside this crate needs no prime-generation code, and a build whose generator
//!   differs refuses the file instead of silently using other primes.
//! - Client artifacts ([`SecretKey`], [`ClientKeys`]) and server artifacts ([`EvaluationKeys`],
//!   [`PublicKey`]) are distinct kinds; an evaluation-key file holds only key-switching keys.
//! - `write_to`/`read_from` stream: the writer never builds the object's bytes in memory, the
//!   reader holds only the parsed object and one limb of scratch (key files can be gigabytes at
//!   N = 2^16). Their bytes and verdicts equal `to_bytes`/`from_bytes` — the reader hashes the
//!   whole payload even after a field error so corruption is reported as such — except that
//!   `read_from` refuses a file of another kind or of oversize declared length from its header.
//!   Errors name the file ([`CkksError::Io`], [`CkksError::InFile`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::context::CkksContext;
use crate::encoder::Plaintext;
use crate::error::{CkksError, Result};
use crate::keys::{Ciphertext, ClientKeys, EvaluationKeys, KeySwitchKey, PublicKey, SecretKey};
use crate::params::CkksParams;
use crate::ring::{RingContext, RnsPoly};

/// The four bytes every serialized object starts with.
pub const MAGIC: [u8; 4] = *b"PHEC";
/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 2;
const HEADER_LEN: usize = 24;
const TRAILER_LEN: usize = 8;
/// Largest ciphertext degree accepted on load (3 = a product before relinearization).
const MAX_CT_DEGREE: u32 = 3;
/// Upper bound on primes per chain in a parameter payload (the 128-bit bound at N = 2^16 with
/// 20-bit primes allows 88); only keeps a corrupt count from driving the parser.
const MAX_PRIMES: u32 = 128;
/// Upper bound on a parameter payload, used to refuse absurd files before reading them.
const MAX_PARAMS_PAYLOAD: u64 = 36 + 2 * 12 * MAX_PRIMES as u64;

/// What a serialized object is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// [`CkksParams`].
    Params,
    /// [`Plaintext`].
    Plaintext,
    /// [`Ciphertext`].
    Ciphertext,
    /// [`PublicKey`].
    PublicKey,
    /// [`SecretKey`] (client only).
    SecretKey,
    /// [`EvaluationKeys`]: relinearization and Galois keys (server).
    EvaluationKeys,
    /// [`ClientKeys`]: secret and public key together (client only).
    ClientKeys,
}

impl ObjectKind {
    /// Every kind, in tag order.
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Params,
        ObjectKind::Plaintext,
        ObjectKind::Ciphertext,
        ObjectKind::PublicKey,
        ObjectKind::SecretKey,
        ObjectKind::EvaluationKeys,
        ObjectKind::ClientKeys,
    ];

    /// The tag stored at offset 6. Tags are never reused for another kind.
    pub fn tag(self) -> u16 {
        match self {
            ObjectKind::Params => 1,
            ObjectKind::Plaintext => 2,
            ObjectKind::Ciphertext => 3,
            ObjectKind::PublicKey => 4,
            ObjectKind::SecretKey => 5,
            ObjectKind::EvaluationKeys => 6,
            ObjectKind::ClientKeys => 7,
        }
    }

    /// The kind of a tag, if known.
    pub fn from_tag(tag: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// Human-readable name (used in errors).
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Params => "parameters",
            ObjectKind::Plaintext => "plaintext",
            ObjectKind::Ciphertext => "ciphertext",
            ObjectKind::PublicKey => "public key",
            ObjectKind::SecretKey => "secret key",
            ObjectKind::EvaluationKeys => "evaluation keys",
            ObjectKind::ClientKeys => "client keys",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The checked envelope of a serialized object.
///
/// Every serialized object is, little-endian: magic `PHEC` (4 bytes), format version (`u16`), kind
/// tag (`u16`), parameter fingerprint (`u64`, [`CkksParams::fingerprint_u64`]), payload length
/// `len` (`u64`), the payload (`len` bytes, layout per kind), and an XXH64 checksum (`u64`, seed 0)
/// of every preceding byte. `docs/ckks-format.md` specifies the payloads, the checks made on
/// load and the versioning policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// Format version.
    pub version: u16,
    /// Object kind.
    pub kind: ObjectKind,
    /// Fingerprint of the parameters the object was made under.
    pub fingerprint: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl ObjectHeader {
    /// Checks the envelope of `bytes` (magic, version, length, checksum, kind tag) without a
    /// context, e.g. to tell what a file holds and under which parameters it was made.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        open(bytes, "polyhe CKKS object").map(|(h, _)| h)
    }
}

// ---------------------------------------------------------------- checksum

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1)
}

/// Little-endian `u64` of an 8-byte chunk (callers pass `chunks_exact(8)` items).
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
}

/// Streaming XXH64 (Yann Collet's xxHash, 64-bit variant): fast enough for gigabyte key files,
/// detects every single-bit flip, and lets files be checked while they are streamed.
#[derive(Debug, Clone)]
pub(crate) struct Xxh64 {
    v: [u64; 4],
    buf: [u8; 32],
    buf_len: usize,
    total: u64,
    seed: u64,
}

impl Xxh64 {
    pub(crate) fn new(seed: u64) -> Self {
        let v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        Self { v, buf: [0; 32], buf_len: 0, total: 0, seed }
    }

    fn stripe(v: &mut [u64; 4], s: &[u8]) {
        for (acc, lane) in v.iter_mut().zip(s.chunks_exact(8)) {
            *acc = xxh_round(*acc, le64(lane));
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (32 - self.buf_len).min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = self.buf.get_mut(self.buf_len..self.buf_len + take) {
                dst.copy_from_slice(head);
            }
            self.buf_len += take;
            data = rest;
            if self.buf_len < 32 {
                return;
            }
            let full = self.buf;
            Self::stripe(&mut self.v, &full);
            self.buf_len = 0;
        }
        let mut stripes = data.chunks_exact(32);
        for s in &mut stripes {
            Self::stripe(&mut self.v, s);
        }
        let rem = stripes.remainder();
        if let Some(dst) = self.buf.get_mut(..rem.len()) {
            dst.copy_from_slice(rem);
        }
        self.buf_len = rem.len();
    }

    pub(crate) fn finish(&self) -> u64 {
        let mut h = if self.total >= 32 {
            let [v1, v2, v3, v4] = self.v;
            let h = v1
                .rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18));
            self.v.into_iter().fold(h, |acc, v| (acc ^ xxh_round(0, v)).wrapping_mul(P1).wrapping_add(P4))
        } else {
            self.seed.wrapping_add(P5)
        };
        h = h.wrapping_add(self.total);
        let tail = self.buf.get(..self.buf_len).unwrap_or(&[]);
        let mut words = tail.chunks_exact(8);
        for w in &mut words {
            h = (h ^ xxh_round(0, le64(w))).rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        }
        let rest = words.remainder();
        let (four, bytes) = rest.split_at(if rest.len() >= 4 { 4 } else { 0 });
        if let Ok(w) = <[u8; 4]>::try_from(four) {
            h = (h ^ (u32::from_le_bytes(w) as u64).wrapping_mul(P1)).rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        }
        for &b in bytes {
            h = (h ^ (b as u64).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// One-shot XXH64.
pub(crate) fn xxh64(data: &[u8], seed: u64) -> u64 {
    let mut h = Xxh64::new(seed);
    h.update(data);
    h.finish()
}

// ---------------------------------------------------------------- envelope

fn malformed(what: &'static str, offset: usize, reason: impl Into<String>) -> CkksError {
    CkksError::Malformed { what, offset, reason: reason.into() }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| s.iter().rev().fold(0u16, |a, &x| (a << 8) | x as u16))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| s.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
}

/// Checks magic and version of the first [`HEADER_LEN`] bytes and returns the kind tag, the
/// fingerprint and the declared payload length.
fn parse_prefix(head: &[u8], what: &'static str) -> Result<(u16, u64, u64)> {
    if head.len() < HEADER_LEN {
        return Err(malformed(
            what,
            head.len(),
            format!("truncated: {} bytes, a header needs {HEADER_LEN}", head.len()),
        ));
    }
    if head.get(..4) != Some(&MAGIC[..]) {
        return Err(malformed(what, 0, "bad magic: not a polyhe CKKS object"));
    }
    let version = le_u16(head, 4);
    if version != FORMAT_VERSION {
        return Err(CkksError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    Ok((le_u16(head, 6), le_u64(head, 8), le_u64(head, 16)))
}

/// Checks the envelope (see the module docs for the order) and returns the header and payload.
fn open<'a>(bytes: &'a [u8], what: &'static str) -> Result<(ObjectHeader, &'a [u8])> {
    let (tag, fingerprint, payload_len) = parse_prefix(bytes, what)?;
    let present = bytes.len().saturating_sub(HEADER_LEN + TRAILER_LEN);
    if bytes.len() < HEADER_LEN + TRAILER_LEN || payload_len != present as u64 {
        let reason = format!(
            "length field says {payload_len} payload bytes, {} bytes follow the header (truncated or trailing data)",
            bytes.len().saturating_sub(HEADER_LEN)
        );
        return Err(malformed(what, 16, reason));
    }
    let body_end = HEADER_LEN + present;
    let (body, trailer) = bytes.split_at(body_end);
    let stored = le_u64(trailer, 0);
    let computed = xxh64(body, 0);
    if stored != computed {
        return Err(malformed(
            what,
            body_end,
            format!("checksum mismatch (stored {stored:016x}, computed {computed:016x}): the data is corrupt"),
        ));
    }
    let kind = ObjectKind::from_tag(tag).ok_or_else(|| malformed(what, 6, format!("unknown object kind tag {tag}")))?;
    let payload = body.get(HEADER_LEN..).unwrap_or(&[]);
    Ok((ObjectHeader { version: FORMAT_VERSION, kind, fingerprint, payload_len }, payload))
}

fn header_bytes(kind: ObjectKind, fingerprint: u64, payload_len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let fields: [&[u8]; 5] = [
        &MAGIC,
        &FORMAT_VERSION.to_le_bytes(),
        &kind.tag().to_le_bytes(),
        &fingerprint.to_le_bytes(),
        &payload_len.to_le_bytes(),
    ];
    let mut at = 0;
    for f in fields {
        if let Some(dst) = h.get_mut(at..at + f.len()) {
            dst.copy_from_slice(f);
        }
        at += f.len();
    }
    h
}

/// Destination of serialized bytes: a `Vec` (`to_bytes`) or a hashing file writer (`write_to`).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes through to `inner` while hashing; keeps the first I/O error for the end.
struct HashWriter<W: Write> {
    inner: W,
    hash: Xxh64,
    written: u64,
    err: Option<std::io::Error>,
}

impl<W: Write> Sink for HashWriter<W> {
    fn put(&mut self, bytes: &[u8]) {
        if self.err.is_none() {
            self.hash.update(bytes);
            self.written += bytes.len() as u64;
            if let Err(e) = self.inner.write_all(bytes) {
                self.err = Some(e);
            }
        }
    }
}

/// Writes header, payload (by `fill`) and checksum. `size` is the exact payload size.
fn seal(kind: ObjectKind, fingerprint: u64, size: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + size + TRAILER_LEN);
    buf.extend_from_slice(&header_bytes(kind, fingerprint, size as u64));
    fill(&mut buf);
    // `size` is exact by construction; recomputing keeps a wrong estimate from corrupting output.
    let len = (buf.len() - HEADER_LEN) as u64;
    if let Some(slot) = buf.get_mut(16..24) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
    let h = xxh64(&buf, 0);
    buf.extend_from_slice(&h.to_le_bytes());
    buf
}

/// Streams header, payload (by `fill`) and checksum to `path` without building the object in
/// memory. `size` must be the exact payload size (it goes into the header first).
fn seal_to_file(
    path: &Path,
    kind: ObjectKind,
    fingerprint: u64,
    size: usize,
    fill: impl FnOnce(&mut HashWriter<BufWriter<File>>),
) -> Result<()> {
    // Written to a fresh file beside the target (`create_new`: never through a planted link),
    // then renamed over it (a link at the target is replaced, not followed): a reader sees the
    // old file or the whole new one. Secret material is readable by its owner only.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let secret = matches!(kind, ObjectKind::SecretKey | ObjectKind::ClientKeys);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let _ = std::fs::remove_file(&tmp);
    let file = options.open(&tmp).map_err(|e| io_err(path, "create", &e))?;
    let written = (|| {
        let mut w =
            HashWriter { inner: BufWriter::with_capacity(1 << 20, file), hash: Xxh64::new(0), written: 0, err: None };
        w.put(&header_bytes(kind, fingerprint, size as u64));
        fill(&mut w);
        if let Some(e) = w.err.take() {
            return Err(io_err(path, "write", &e));
        }
        if w.written != (HEADER_LEN + size) as u64 {
            return Err(CkksError::Internal("serialized payload size differs from its precomputed size"));
        }
        let h = w.hash.finish();
        w.inner.write_all(&h.to_le_bytes()).and_then(|()| w.inner.flush()).map_err(|e| io_err(path, "write", &e))
    })();
    match written.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_err(path, "replace", &e))) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes a polynomial's limbs as little-endian `u64`, a few KiB at a time.
fn put_poly<S: Sink>(out: &mut S, p: &RnsPoly) {
    let mut tmp = [0u8; 8 * 512];
    for chunk in p.data.chunks(512) {
        for (dst, v) in tmp.chunks_exact_mut(8).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        out.put(tmp.get(..chunk.len() * 8).unwrap_or(&[]));
    }
}

fn poly_bytes(p: &RnsPoly) -> usize {
    p.data.len() * 8
}

/// Bounds-checked payload reader over a byte slice or a file stream; it reads at most `len`
/// bytes, allocates only one limb of scratch, and its error offsets are from the object's start.
struct Reader<'a> {
    src: &'a mut dyn Read,
    len: usize,
    pos: usize,
    what: &'static str,
    scratch: Vec<u8>,
}

impl<'a> Reader<'a> {
    fn new(src: &'a mut dyn Read, len: usize, what: &'static str) -> Self {
        Self { src, len, pos: 0, what, scratch: Vec::new() }
    }

    fn err(&self, reason: impl Into<String>) -> CkksError {
        malformed(self.what, HEADER_LEN + self.pos, reason)
    }

    fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// The next `n` payload bytes (`n` is checked against the payload length before reading).
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("truncated payload: {n} more bytes needed, {} left", self.remaining())));
        }
        self.scratch.clear();
        self.scratch.resize(n, 0);
        if let Err(e) = self.src.read_exact(&mut self.scratch) {
            return Err(malformed(self.what, HEADER_LEN + self.pos, format!("read failed: {e}")));
        }
        self.pos += n;
        Ok(&self.scratch)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or([0; 4])))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(le64(self.take(8)?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A polynomial over basis `(nq, with_p)`; every coefficient must be below its limb's prime.
    fn poly(&mut self, ring: &RingContext, nq: usize, with_p: bool) -> Result<RnsPoly> {
        let limbs = ring.num_limbs(nq, with_p);
        let limb_bytes = ring.n * 8;
        // Whole-polynomial size check first, so a short payload allocates nothing.
        if limbs.checked_mul(limb_bytes).is_none_or(|len| len > self.remaining()) {
            return Err(self.err(format!(
                "truncated payload: a polynomial of {limbs} limbs needs {} bytes, {} left",
                limbs.saturating_mul(limb_bytes),
                self.remaining()
            )));
        }
        let what = self.what;
        let mut data = Vec::with_capacity(limbs * ring.n);
        for t in 0..limbs {
            let q = ring.limb_prime(t, nq).q;
            let base = HEADER_LEN + self.pos;
            let raw = self.take(limb_bytes)?;
            for (i, c) in raw.chunks_exact(8).enumerate() {
                let v = le64(c);
                if v >= q {
                    let reason = format!("coefficient {i} of limb {t} is {v}, not below its modulus {q}");
                    return Err(malformed(what, base + i * 8, reason));
                }
                data.push(v);
            }
        }
        Ok(RnsPoly { data, nq, with_p })
    }

    /// `n` ternary coefficients stored as `i8`.
    fn ternary(&mut self, n: usize) -> Result<Vec<i8>> {
        let what = self.what;
        let base = HEADER_LEN + self.pos;
        let raw = self.take(n)?;
        raw.iter()
            .enumerate()
            .map(|(i, &b)| match b as i8 {
                v @ -1..=1 => Ok(v),
                v => Err(malformed(what, base + i, format!("secret coefficient {i} is {v}, not in {{-1, 0, 1}}"))),
            })
            .collect()
    }

    fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes after the object", self.remaining())));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- per-kind payloads

/// An object serialized under a context.
trait Serial: Sized {
    const KIND: ObjectKind;
    fn object_fingerprint(&self) -> u64;
    fn payload_size(&self) -> usize;
    fn write_payload<S: Sink>(&self, out: &mut S);
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self>;
}

fn object_to_bytes<T: Serial>(x: &T) -> Vec<u8> {
    seal(T::KIND, x.object_fingerprint(), x.payload_size(), |out| x.write_payload(out))
}

fn object_from_bytes<T: Serial>(ctx: &CkksContext, bytes: &[u8]) -> Result<T> {
    let what = T::KIND.name();
    let (header, payload) = open(bytes, what)?;
    if header.kind != T::KIND {
        return Err(CkksError::WrongKind { expected: what, found: header.kind.name() });
    }
    ctx.inner.check_fp(header.fingerprint)?;
    let mut src = payload;
    let mut r = Reader::new(&mut src, payload.len(), what);
    let x = T::read_payload(ctx, &mut r)?;
    r.finish()?;
    Ok(x)
}

fn read_level(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<usize> {
    let level = r.u32()?;
    let max = ctx.params().max_level();
    if level as usize > max {
        return Err(r.err(format!("level {level} exceeds the maximum level {max} of these parameters")));
    }
    Ok(level as usize)
}

fn read_scale(r: &mut Reader<'_>) -> Result<f64> {
    let scale = r.f64()?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(r.err(format!("scale {scale} is not a positive finite number")));
    }
    Ok(scale)
}

impl Serial for Plaintext {
    const KIND: ObjectKind = ObjectKind::Plaintext;
    fn object_fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn payload_size(&self) -> usize {
        12 + poly_bytes(&self.poly)
    }
    fn write_payload<S: Sink>(&self, out: &mut S) {
        out.put(&(self.level as u32).to_le_bytes());
        out.put(&self.scale.to_bits().to_le_bytes());
        put_poly(out, &self.poly);
    }
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self> {
        let level = read_level(ctx, r)?;
        let scale = read_scale(r)?;
        let poly = r.poly(&ctx.inner.ring, level + 1, false)?;
        Ok(Plaintext { poly, level, scale, fingerprint: ctx.fingerprint() })
    }
}

impl Serial for Ciphertext {
    const KIND: ObjectKind = ObjectKind::Ciphertext;
    fn object_fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn payload_size(&self) -> usize {
        16 + self.polys.iter().map(poly_bytes).sum::<usize>()
    }
    fn write_payload<S: Sink>(&self, out: &mut S) {
        out.put(&(self.level as u32).to_le_bytes());
        out.put(&(self.polys.len() as u32).to_le_bytes());
        out.put(&self.scale.to_bits().to_le_bytes());
        self.polys.iter().for_each(|p| put_poly(out, p));
    }
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self> {
        let level = read_level(ctx, r)?;
        let degree = r.u32()?;
        if !(2..=MAX_CT_DEGREE).contains(&degree) {
            return Err(r.err(format!("ciphertext degree {degree} is not in 2..={MAX_CT_DEGREE}")));
        }
        let scale = read_scale(r)?;
        let polys = (0..degree).map(|_| r.poly(&ctx.inner.ring, level + 1, false)).collect::<Result<Vec<_>>>()?;
        Ok(Ciphertext { polys, level, scale, fingerprint: ctx.fingerprint() })
    }
}

impl Serial for PublicKey {
    const KIND: ObjectKind = ObjectKind::PublicKey;
    fn object_fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn payload_size(&self) -> usize {
        poly_bytes(&self.b) + poly_bytes(&self.a)
    }
    fn write_payload<S: Sink>(&self, out: &mut S) {
        put_poly(out, &self.b);
        put_poly(out, &self.a);
    }
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self> {
        let ring = &ctx.inner.ring;
        let b = r.poly(ring, ring.nq, true)?;
        let a = r.poly(ring, ring.nq, true)?;
        Ok(PublicKey { b, a, fingerprint: ctx.fingerprint() })
    }
}

/// Reads `N` ternary coefficients and checks the sparse-secret weight of the parameters.
fn read_secret(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<SecretKey> {
    let ring = &ctx.inner.ring;
    let start = r.pos;
    let coeffs = r.ternary(ring.n)?;
    if let Some(h) = ctx.params().hamming_weight() {
        let w = coeffs.iter().filter(|&&c| c != 0).count();
        if w != h {
            return Err(malformed(
                r.what,
                HEADER_LEN + start,
                format!("secret has {w} nonzero coefficients, the parameters require exactly {h}"),
            ));
        }
    }
    let wide: Vec<i64> = coeffs.iter().map(|&c| c as i64).collect();
    let mut poly = ring.from_i64(&wide, ring.nq, true);
    ring.ntt_forward(&mut poly);
    Ok(SecretKey { coeffs, poly, fingerprint: ctx.fingerprint() })
}

fn put_secret<S: Sink>(out: &mut S, sk: &SecretKey) {
    let bytes: Vec<u8> = sk.coeffs.iter().map(|&c| c as u8).collect();
    out.put(&bytes);
}

impl Serial for SecretKey {
    const KIND: ObjectKind = ObjectKind::SecretKey;
    fn object_fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn payload_size(&self) -> usize {
        self.coeffs.len()
    }
    fn write_payload<S: Sink>(&self, out: &mut S) {
        put_secret(out, self);
    }
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self> {
        read_secret(ctx, r)
    }
}

impl Serial for ClientKeys {
    const KIND: ObjectKind = ObjectKind::ClientKeys;
    fn object_fingerprint(&self) -> u64 {
        self.ctx.fingerprint
    }
    fn payload_size(&self) -> usize {
        self.secret.coeffs.len() + self.public.payload_size()
    }
    fn write_payload<S: Sink>(&self, out: &mut S) {
        put_secret(out, &self.secret);
        self.public.write_payload(out);
    }
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self> {
        let secret = read_secret(ctx, r)?;
        let public = PublicKey::read_payload(ctx, r)?;
        ClientKeys::from_parts(ctx, secret, public)
    }
}

/// Bytes of a key with `nq` limbs of `Q` (`ring.nq`: a full key) and its digits.
fn ksk_bytes(ring: &RingContext, dnum: usize, nq: usize) -> Option<usize> {
    let digits = ring.key_digits(nq, dnum);
    ring.num_limbs(nq, true).checked_mul(ring.n)?.checked_mul(8)?.checked_mul(2)?.checked_mul(digits)
}

fn put_ksk<S: Sink>(out: &mut S, k: &KeySwitchKey) {
    for (b, a) in k.b.iter().zip(&k.a) {
        put_poly(out, b);
        put_poly(out, a);
    }
}

/// A key with `nq` limbs of `Q` (see [`ksk_bytes`] for its digits).
fn read_ksk(ctx: &CkksContext, r: &mut Reader<'_>, nq: usize) -> Result<KeySwitchKey> {
    let ring = &ctx.inner.ring;
    let dnum = ctx.params().dnum();
    let digits = ring.key_digits(nq, dnum);
    let mut b = Vec::with_capacity(digits);
    let mut a = Vec::with_capacity(digits);
    for _ in 0..digits {
        b.push(r.poly(ring, nq, true)?);
        a.push(r.poly(ring, nq, true)?);
    }
    Ok(KeySwitchKey { b, a })
}

impl Serial for EvaluationKeys {
    const KIND: ObjectKind = ObjectKind::EvaluationKeys;
    fn object_fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn payload_size(&self) -> usize {
        let ksk = |k: &KeySwitchKey| k.b.iter().chain(&k.a).map(poly_bytes).sum::<usize>();
        let keys = self.galois.len() + usize::from(self.relin.is_some());
        5 + 8 * self.galois.len() + 4 * keys + self.relin.iter().chain(self.galois.values()).map(ksk).sum::<usize>()
    }
    fn write_payload<S: Sink>(&self, out: &mut S) {
        // Bit 0: a relinearization key; bit 1: per-key `Q` limb counts follow the Galois elements
        // (always written now: level-restricted keys hold fewer; files without it are all full).
        out.put(&[u8::from(self.relin.is_some()) | 2]);
        out.put(&(self.galois.len() as u32).to_le_bytes());
        for g in self.galois.keys() {
            out.put(&g.to_le_bytes());
        }
        for k in self.relin.iter().chain(self.galois.values()) {
            out.put(&(k.q_limbs() as u32).to_le_bytes());
        }
        self.relin.iter().chain(self.galois.values()).for_each(|k| put_ksk(out, k));
    }
    fn read_payload(ctx: &CkksContext, r: &mut Reader<'_>) -> Result<Self> {
        let ring = &ctx.inner.ring;
        let flags = r.u8()?;
        if flags > 3 {
            return Err(r.err(format!(
                "unknown flag bits {flags:#04x} (bit 0: relinearization key present, bit 1: per-key limb counts)"
            )));
        }
        let has_relin = flags & 1 == 1;
        let restricted = flags & 2 == 2;
        let count = r.u32()? as usize;
        let two_n = 2 * ring.n as u64;
        // Galois elements are distinct odd residues in (1, 2N): at most N - 1 of them.
        if count >= ring.n {
            return Err(r.err(format!(
                "{count} Galois keys, more than the {} distinct automorphisms of N = {}",
                ring.n - 1,
                ring.n
            )));
        }
        let keys = count + usize::from(has_relin);
        let mut elements = Vec::with_capacity(count);
        if count.checked_mul(8).is_none_or(|b| b > r.remaining()) {
            return Err(r.err(format!("{count} Galois elements exceed the {} payload bytes left", r.remaining())));
        }
        for _ in 0..count {
            let g = r.u64()?;
            if g % 2 == 0 || g <= 1 || g >= two_n || elements.last().is_some_and(|&prev| g <= prev) {
                return Err(r.err(format!("Galois element {g} is not odd, in 3..{two_n} and above the previous one")));
            }
            elements.push(g);
        }
        let mut limbs = Vec::with_capacity(keys);
        for _ in 0..keys {
            let nq = if restricted { r.u32()? as usize } else { ring.nq };
            if nq == 0 || nq > ring.nq {
                return Err(r.err(format!("a key over {nq} limbs of Q, outside 1..={}", ring.nq)));
            }
            limbs.push(nq);
        }
        // Size check before reading or allocating any key.
        let need = limbs.iter().try_fold(0usize, |acc, &nq| acc.checked_add(ksk_bytes(ring, ctx.params().dnum(), nq)?));
        if need != Some(r.remaining()) {
            let need = need.map_or("an overflowing number of".to_string(), |n| n.to_string());
            return Err(r.err(format!("{keys} key-switching keys need {need} payload bytes, {} remain", r.remaining())));
        }
        let mut limbs = limbs.into_iter();
        let relin = if has_relin { Some(read_ksk(ctx, r, limbs.next().unwrap_or(ring.nq))?) } else { None };
        let mut galois = BTreeMap::new();
        for g in elements {
            galois.insert(g, read_ksk(ctx, r, limbs.next().unwrap_or(ring.nq))?);
        }
        Ok(EvaluationKeys { relin, galois, fingerprint: ctx.fingerprint() })
    }
}

/// Largest payload a `kind` object may have under `ctx` (saturating); bounds file reads.
fn max_payload(kind: ObjectKind, ctx: &CkksContext) -> u64 {
    let p = ctx.params();
    let n = p.n() as u64;
    let nq = p.moduli().len() as u64;
    let full = nq + p.special_moduli().len() as u64;
    let limb = n * 8;
    let pk = 2 * full * limb;
    match kind {
        ObjectKind::Params => MAX_PARAMS_PAYLOAD,
        ObjectKind::Plaintext => 12 + nq * limb,
        ObjectKind::Ciphertext => 16 + MAX_CT_DEGREE as u64 * nq * limb,
        ObjectKind::PublicKey => pk,
        ObjectKind::SecretKey => n,
        ObjectKind::ClientKeys => n + pk,
        ObjectKind::EvaluationKeys => {
            (pk.saturating_mul(p.dnum() as u64).saturating_add(8)).saturating_mul(n).saturating_add(5)
        }
    }
}

// ---------------------------------------------------------------- files

fn path_string(path: &Path) -> String {
    path.display().to_string()
}

fn in_file(path: &Path, e: CkksError) -> CkksError {
    CkksError::InFile { path: path_string(path), source: Box::new(e) }
}

fn io_err(path: &Path, action: &str, e: &std::io::Error) -> CkksError {
    CkksError::Io { path: path_string(path), reason: format!("cannot {action}: {e}") }
}

/// Reads through to `inner` while hashing.
struct HashReader<R: Read> {
    inner: R,
    hash: Xxh64,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
}

/// Opens a serialized `expected` object and checks its header, refusing from the header alone
/// (before reading the payload) a file of another kind, one whose length field exceeds `limit`,
/// and one whose size disagrees with its length field. Returns the file positioned after the
/// header, the header bytes, the fingerprint and the payload length.
fn open_file(path: &Path, expected: ObjectKind, limit: u64) -> Result<(File, [u8; HEADER_LEN], u64, u64)> {
    let what = expected.name();
    let mut f = File::open(path).map_err(|e| io_err(path, "open", &e))?;
    let file_len = f.metadata().map_err(|e| io_err(path, "read metadata of", &e))?.len();
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut f).take(HEADER_LEN as u64).read_to_end(&mut head).map_err(|e| io_err(path, "read", &e))?;
    let (tag, fingerprint, payload_len) = parse_prefix(&head, what).map_err(|e| in_file(path, e))?;
    match ObjectKind::from_tag(tag) {
        None => return Err(in_file(path, malformed(what, 6, format!("unknown object kind tag {tag}")))),
        Some(kind) if kind != expected => {
            return Err(in_file(path, CkksError::WrongKind { expected: what, found: kind.name() }))
        }
        Some(_) => {}
    }
    if payload_len > limit {
        let reason = format!(
            "length field says {payload_len} payload bytes, more than any {what} under these parameters ({limit})"
        );
        return Err(in_file(path, malformed(what, 16, reason)));
    }
    let total = payload_len.checked_add((HEADER_LEN + TRAILER_LEN) as u64);
    if total != Some(file_len) {
        let reason = format!(
            "file has {file_len} bytes, its header declares {payload_len} payload bytes (truncated or trailing data)"
        );
        return Err(in_file(path, malformed(what, 16, reason)));
    }
    let head: [u8; HEADER_LEN] = head.try_into().map_err(|_| CkksError::Internal("header length checked above"))?;
    Ok((f, head, fingerprint, payload_len))
}

/// Streams the payload of an opened file through `parse` and the checksum, holding only the
/// parsed object and one limb of scratch in memory. The whole payload is hashed even when `parse`
/// fails or stops early, so a corrupt file reports the checksum (as `from_bytes` does) rather than
/// whichever field the corruption happened to hit.
fn stream_payload<T>(
    path: &Path,
    file: File,
    head: &[u8; HEADER_LEN],
    payload_len: u64,
    what: &'static str,
    parse: impl FnOnce(&mut Reader<'_>) -> Result<T>,
) -> Result<T> {
    let mut hash = Xxh64::new(0);
    hash.update(head);
    let mut src = HashReader { inner: BufReader::with_capacity(1 << 20, file), hash };
    let len = usize::try_from(payload_len).map_err(|_| in_file(path, malformed(what, 16, "payload too large")))?;
    let (parsed, consumed) = {
        let mut r = Reader::new(&mut src, len, what);
        let parsed = parse(&mut r).and_then(|x| r.finish().map(|()| x));
        (parsed, r.pos as u64)
    };
    let rest = payload_len.saturating_sub(consumed);
    std::io::copy(&mut (&mut src).take(rest), &mut std::io::sink()).map_err(|e| io_err(path, "read", &e))?;
    let computed = src.hash.finish();
    let mut trailer = [0u8; TRAILER_LEN];
    src.inner.read_exact(&mut trailer).map_err(|e| io_err(path, "read", &e))?;
    let stored = u64::from_le_bytes(trailer);
    if stored != computed {
        let at = HEADER_LEN + len;
        let reason = format!("checksum mismatch (stored {stored:016x}, computed {computed:016x}): the data is corrupt");
        return Err(in_file(path, malformed(what, at, reason)));
    }
    parsed.map_err(|e| in_file(path, e))
}

/// `T::read_from`: header checks, then fingerprint and payload streamed (see [`stream_payload`]).
fn read_object<T: Serial>(ctx: &CkksContext, path: &Path) -> Result<T> {
    let kind = T::KIND;
    let (file, head, fingerprint, payload_len) = open_file(path, kind, max_payload(kind, ctx))?;
    stream_payload(path, file, &head, payload_len, kind.name(), |r| {
        ctx.inner.check_fp(fingerprint)?;
        T::read_payload(ctx, r)
    })
}

// ---------------------------------------------------------------- public API

macro_rules! ctx_serial_api {
    ($ty:ty, $name:literal) => {
        impl $ty {
            #[doc = concat!("Serializes the ", $name, " (envelope in [`crate::ObjectHeader`], full format in `docs/ckks-format.md`).")]
            pub fn to_bytes(&self) -> Vec<u8> {
                object_to_bytes(self)
            }
            #[doc = concat!("Loads a ", $name, " made under `ctx`'s parameters; bad bytes, another kind or other parameters are errors.")]
            pub fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
                object_from_bytes(ctx, bytes)
            }
            #[doc = concat!("Writes [`Self::to_bytes`] to `path`; errors name the file.")]
            pub fn write_to(&self, path: impl AsRef<Path>) -> Result<()> {
                let kind = <$ty as Serial>::KIND;
                seal_to_file(path.as_ref(), kind, self.object_fingerprint(), self.payload_size(), |w| self.write_payload(w))
            }
            #[doc = concat!("Reads a ", $name, " written by [`Self::write_to`]; errors name the file.")]
            pub fn read_from(ctx: &CkksContext, path: impl AsRef<Path>) -> Result<Self> {
                read_object(ctx, path.as_ref())
            }
        }
    };
}

ctx_serial_api!(Plaintext, "plaintext");
ctx_serial_api!(Ciphertext, "ciphertext");
ctx_serial_api!(PublicKey, "public key");
ctx_serial_api!(SecretKey, "secret key (a client artifact: keep it off the server)");
ctx_serial_api!(EvaluationKeys, "set of evaluation keys (a server artifact: relinearization and Galois keys only)");
ctx_serial_api!(ClientKeys, "client key pair (secret and public key; a client artifact)");

impl ClientKeys {
    /// Reassembles client keys from a secret and a public key (e.g. loaded from separate files).
    ///
    /// Both must belong to `ctx`, and `b + a·s` must be a small error (at most `6σ` in every
    /// coefficient), which fails with overwhelming probability for a public key of another secret
    /// ([`CkksError::KeyMismatch`]).
    pub fn from_parts(ctx: &CkksContext, secret: SecretKey, public: PublicKey) -> Result<Self> {
        let c = &ctx.inner;
        c.check_fp(secret.fingerprint)?;
        c.check_fp(public.fingerprint)?;
        let ring = &c.ring;
        let mut e = ring.mul(&public.a, &secret.poly);
        ring.add_assign(&mut e, &public.b);
        ring.ntt_inverse(&mut e);
        let q0 = ring.limb_prime(0, ring.nq).q;
        let bound = (6.0 * c.params.error_std).ceil() as u64;
        let first = e.data.get(..ring.n).unwrap_or(&[]);
        if let Some((i, &v)) = first.iter().enumerate().find(|&(_, &v)| v.min(q0 - v) > bound) {
            return Err(CkksError::KeyMismatch {
                reason: format!("the public key was not made from this secret key (error coefficient {i} has magnitude {} > {bound})", v.min(q0 - v)),
            });
        }
        Ok(ClientKeys { ctx: c.clone(), secret, public })
    }
}

impl CkksParams {
    /// Serializes the parameters (self-describing: no context is needed to load them).
    pub fn to_bytes(&self) -> Vec<u8> {
        seal(ObjectKind::Params, self.fingerprint_u64(), self.payload_size(), |out| self.write_payload(out))
    }

    fn payload_size(&self) -> usize {
        40 + 12 * (self.moduli.len() + self.special.len())
    }

    fn write_payload<S: Sink>(&self, out: &mut S) {
        out.put(&self.log_n.to_le_bytes());
        out.put(&self.log_scale.to_le_bytes());
        out.put(&(self.dnum as u32).to_le_bytes());
        out.put(&self.hamming_weight.map_or(0, |h| h as u64).to_le_bytes());
        out.put(&self.error_std.to_bits().to_le_bytes());
        out.put(&self.security.code().to_le_bytes());
        for (bits, primes) in [(&self.q_bits, &self.moduli), (&self.p_bits, &self.special)] {
            out.put(&(primes.len() as u32).to_le_bytes());
            for (b, q) in bits.iter().zip(primes) {
                out.put(&b.to_le_bytes());
                out.put(&q.to_le_bytes());
            }
        }
    }

    /// Loads parameters written by [`Self::to_bytes`]. They are rebuilt through [`Self::new`] (so
    /// insecure or malformed sets are refused as usual) and must reproduce the stored primes and
    /// fingerprint.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let what = ObjectKind::Params.name();
        let (header, payload) = open(bytes, what)?;
        if header.kind != ObjectKind::Params {
            return Err(CkksError::WrongKind { expected: what, found: header.kind.name() });
        }
        let mut src = payload;
        let mut r = Reader::new(&mut src, payload.len(), what);
        let log_n = r.u32()?;
        let log_scale = r.u32()?;
        let dnum = r.u32()? as usize;
        let hamming = r.u64()?;
        let error_std = r.f64()?;
        if !(error_std.is_finite() && error_std > 0.0) {
            return Err(r.err(format!("error standard deviation {error_std} is not a positive finite number")));
        }
        let security_code = r.u32()?;
        let security = crate::params::Security::from_code(security_code)
            .ok_or_else(|| r.err(format!("unknown security level code {security_code} (known: 128, 0)")))?;
        let mut chains = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
        for (bits, primes) in &mut chains {
            let count = r.u32()?;
            if count > MAX_PRIMES {
                return Err(r.err(format!("{count} primes in one chain, at most {MAX_PRIMES} are allowed")));
            }
            for _ in 0..count {
                bits.push(r.u32()?);
                primes.push(r.u64()?);
            }
        }
        r.finish()?;
        let [(q_bits, moduli), (p_bits, special)] = chains;
        let mut params = CkksParams::new_with_security(log_n, &q_bits, &p_bits, dnum, log_scale, security)?;
        if hamming != 0 {
            let h = usize::try_from(hamming).unwrap_or(usize::MAX);
            params = params.with_hamming_weight(h)?;
        }
        params.error_std = error_std;
        if params.moduli != moduli || params.special != special {
            return Err(malformed(
                what,
                HEADER_LEN,
                "the stored primes differ from the ones this build generates for these bit sizes",
            ));
        }
        let fp = params.fingerprint_u64();
        if fp != header.fingerprint {
            return Err(malformed(
                what,
                8,
                format!(
                    "header fingerprint {:016x} does not match the parameters' fingerprint {fp:016x}",
                    header.fingerprint
                ),
            ));
        }
        Ok(params)
    }

    /// Writes [`Self::to_bytes`] to `path`; errors name the file.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<()> {
        seal_to_file(path.as_ref(), ObjectKind::Params, self.fingerprint_u64(), self.payload_size(), |w| {
            self.write_payload(w)
        })
    }

    /// Reads parameters written by [`Self::write_to`]; errors name the file.
    pub fn read_from(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Small by construction (`MAX_PARAMS_PAYLOAD`): read whole and share `from_bytes`.
        let (mut file, head, _, payload_len) = open_file(path, ObjectKind::Params, MAX_PARAMS_PAYLOAD)?;
        let mut bytes = head.to_vec();
        (&mut file)
            .take(payload_len + TRAILER_LEN as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(path, "read", &e))?;
        Self::from_bytes(&bytes).map_err(|e| in_file(path, e))
    }
}

impl CkksError {
    /// The error inside any [`CkksError::InFile`] wrappers (the cause to match on).
    pub fn innermost(&self) -> &CkksError {
        match self {
            CkksError::InFile { source, .. } => source.innermost(),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Payload-level checks: mutations behind a freshly computed length and checksum, so they
    //! reach the per-kind parsers (the envelope tests are in `tests/serial.rs`).

    use std::sync::OnceLock;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::Encoder;

    struct Fx {
        ctx: CkksContext,
        client: ClientKeys,
        keys: EvaluationKeys,
        ct: Ciphertext,
    }

    /// N = 2^13, [50, 40] + [50], dnum 2; relinearization and one Galois key.
    fn fx() -> &'static Fx {
        static F: OnceLock<Fx> = OnceLock::new();
        F.get_or_init(|| {
            let ctx = CkksContext::new(CkksParams::new(13, &[50, 40], &[50], 2, 40).unwrap()).unwrap();
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            let client = ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
            let keys = client.evaluation_keys_with_rng(&[1], false, &mut rng).unwrap();
            let pt = Encoder::new(&ctx).encode(&[0.5, -0.25], 0, 2f64.powi(40)).unwrap();
            let ct = client.encryptor().encrypt_with_rng(&pt, &mut rng).unwrap();
            Fx { ctx, client, keys, ct }
        })
    }

    /// Rewrites the payload of a valid object with `f`, then fixes length and checksum.
    fn reseal(bytes: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut payload = bytes[HEADER_LEN..bytes.len() - TRAILER_LEN].to_vec();
        f(&mut payload);
        let mut out = bytes[..HEADER_LEN].to_vec();
        out.extend_from_slice(&payload);
        out[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        let h = xxh64(&out, 0);
        out.extend_from_slice(&h.to_le_bytes());
        out
    }

    /// Rewrites header bytes `at..at+new.len()` and fixes the checksum.
    fn reseal_header(bytes: &[u8], at: usize, new: &[u8]) -> Vec<u8> {
        let mut out = bytes[..bytes.len() - TRAILER_LEN].to_vec();
        out[at..at + new.len()].copy_from_slice(new);
        let h = xxh64(&out, 0);
        out.extend_from_slice(&h.to_le_bytes());
        out
    }

    fn put(p: &mut [u8], at: usize, v: &[u8]) {
        p[at..at + v.len()].copy_from_slice(v);
    }

    fn reason(e: CkksError) -> String {
        match e {
            CkksError::Malformed { reason, .. } => reason,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn load(kind: ObjectKind, bytes: &[u8]) -> Result<()> {
        let ctx = &fx().ctx;
        match kind {
            ObjectKind::Params => CkksParams::from_bytes(bytes).map(drop),
            ObjectKind::Plaintext => Plaintext::from_bytes(ctx, bytes).map(drop),
            ObjectKind::Ciphertext => Ciphertext::from_bytes(ctx, bytes).map(drop),
            ObjectKind::PublicKey => PublicKey::from_bytes(ctx, bytes).map(drop),
            ObjectKind::SecretKey => SecretKey::from_bytes(ctx, bytes).map(drop),
            ObjectKind::EvaluationKeys => EvaluationKeys::from_bytes(ctx, bytes).map(drop),
            ObjectKind::ClientKeys => ClientKeys::from_bytes(ctx, bytes).map(drop),
        }
    }

    #[test]
    fn xxh64_matches_reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"", 668_718_853), 0x04E8_3058_2A31_A119);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"a", 191_961_062), 0x6E05_BA28_87C9_7977);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"abcdefghijklmnopqrstuvwxyz12345", 0), 0x4676_0590_1B01_D6F6);
        assert_eq!(xxh64(b"abcdefghijklmnopqrstuvwxyz12345", 877_380_273), 0x37B5_62EC_5715_E132);
        assert_eq!(xxh64(b"abcdefghijklmnopqrstuvwxyz123456", 0), 0x0022_EE3B_5A18_531B);
        assert_eq!(xxh64(b"abcdefghijklmnopqrstuvwxyz1234567", 0), 0x23BB_D16D_2935_3C5F);
        assert_eq!(xxh64("鹅鹅鹅，曲项向天歌。白毛浮绿水，红掌拨清波".as_bytes(), 0), 0x497A_D04E_6A19_7D28);
    }

    /// The NTT representation (tfhe-ntt's order and fhe-math's choice of root per prime) is part of
    /// format versions 1 and 2: stored ciphertexts and keys are NTT values. `NTT(X)` determines the whole
    /// transform, so pinning it catches a dependency update that would make old files decode to
    /// garbage. If this fails, bump `FORMAT_VERSION` (and document the change) before re-pinning.
    #[test]
    fn ntt_representation_is_pinned() {
        let ring = &fx().ctx.inner.ring;
        let mut x = vec![0i64; ring.n];
        x[1] = 1;
        let mut p = ring.from_i64(&x, ring.nq, true);
        ring.ntt_forward(&mut p);
        let bytes: Vec<u8> = p.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(xxh64(&bytes, 0), 0x74EE9AFAD446CCED, "NTT representation changed: bump FORMAT_VERSION");
    }

    /// Parameter bytes (field layout, generated primes, fingerprint) are pinned for the same reason.
    #[test]
    fn parameter_bytes_are_pinned() {
        let b = fx().ctx.params().to_bytes();
        assert_eq!(b.len(), 24 + 40 + 3 * 12 + 8);
        assert_eq!(xxh64(&b, 0), 0x141C0CEA983A94EB, "parameter serialization changed: bump FORMAT_VERSION");
    }

    #[test]
    fn reseal_of_an_unchanged_object_is_identical() {
        let b = fx().ct.to_bytes();
        assert_eq!(reseal(&b, |_| {}), b);
        assert_eq!(reseal_header(&b, 6, &3u16.to_le_bytes()), b);
    }

    #[test]
    fn unknown_kind_tag_is_malformed() {
        let b = reseal_header(&fx().ct.to_bytes(), 6, &99u16.to_le_bytes());
        assert!(reason(Ciphertext::from_bytes(&fx().ctx, &b).unwrap_err()).contains("unknown object kind tag 99"));
        assert!(ObjectHeader::parse(&b).is_err());
    }

    #[test]
    fn coefficients_must_be_below_their_modulus() {
        let f = fx();
        let q = f.ctx.params().moduli().to_vec();
        let p = f.ctx.params().special_moduli()[0];
        // Ciphertext at level 0: limb 0 of c_0 starts after level, degree and scale.
        let b = reseal(&f.ct.to_bytes(), |pl| put(pl, 16, &q[0].to_le_bytes()));
        match Ciphertext::from_bytes(&f.ctx, &b).unwrap_err() {
            CkksError::Malformed { what: "ciphertext", offset, reason } => {
                assert_eq!(offset, HEADER_LEN + 16);
                assert!(
                    reason.contains("coefficient 0 of limb 0") && reason.contains("not below its modulus"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // One below the modulus is accepted (the check is exact).
        let b = reseal(&f.ct.to_bytes(), |pl| put(pl, 16, &(q[0] - 1).to_le_bytes()));
        assert!(Ciphertext::from_bytes(&f.ctx, &b).is_ok());
        // Public key: the last limb of `b` is over the special prime, which q_1 < p may not exceed.
        let n = f.ctx.params().n();
        let last = 3 * n * 8 - 8;
        let b = reseal(&f.client.public_key().to_bytes(), |pl| put(pl, last, &p.to_le_bytes()));
        assert!(reason(PublicKey::from_bytes(&f.ctx, &b).unwrap_err()).contains(&format!("limb 2 is {p}")));
        let b = reseal(&f.client.public_key().to_bytes(), |pl| put(pl, last, &u64::MAX.to_le_bytes()));
        assert!(PublicKey::from_bytes(&f.ctx, &b).is_err());
    }

    #[test]
    fn ciphertext_and_plaintext_fields_are_range_checked() {
        let f = fx();
        let ct = f.ct.to_bytes();
        let cases: [(usize, Vec<u8>, &str); 9] = [
            (0, 2u32.to_le_bytes().to_vec(), "level 2 exceeds the maximum level 1"),
            (0, u32::MAX.to_le_bytes().to_vec(), "exceeds the maximum level"),
            (4, 1u32.to_le_bytes().to_vec(), "degree 1"),
            (4, 4u32.to_le_bytes().to_vec(), "degree 4"),
            (4, u32::MAX.to_le_bytes().to_vec(), "degree 4294967295"),
            (8, f64::NAN.to_bits().to_le_bytes().to_vec(), "scale NaN"),
            (8, f64::INFINITY.to_bits().to_le_bytes().to_vec(), "scale inf"),
            (8, 0f64.to_bits().to_le_bytes().to_vec(), "scale 0"),
            (8, (-1f64).to_bits().to_le_bytes().to_vec(), "scale -1"),
        ];
        for (at, v, want) in cases {
            let b = reseal(&ct, |pl| put(pl, at, &v));
            let r = reason(Ciphertext::from_bytes(&f.ctx, &b).unwrap_err());
            assert!(r.contains(want), "{want}: {r}");
        }
        // A degree-3 header over a degree-2 body is a size error, not a short read.
        let b = reseal(&ct, |pl| put(pl, 4, &3u32.to_le_bytes()));
        assert!(reason(Ciphertext::from_bytes(&f.ctx, &b).unwrap_err()).contains("truncated payload"));
        // Level 1 header over level-0 limbs: likewise.
        let b = reseal(&ct, |pl| put(pl, 0, &1u32.to_le_bytes()));
        assert!(Ciphertext::from_bytes(&f.ctx, &b).is_err());
        // Trailing bytes after a complete object.
        let b = reseal(&ct, |pl| pl.extend_from_slice(&[0; 8]));
        assert!(reason(Ciphertext::from_bytes(&f.ctx, &b).unwrap_err()).contains("8 trailing bytes"));

        let pt = Encoder::new(&f.ctx).encode(&[1.0], 1, 2f64.powi(40)).unwrap().to_bytes();
        let b = reseal(&pt, |pl| put(pl, 0, &7u32.to_le_bytes()));
        assert!(reason(Plaintext::from_bytes(&f.ctx, &b).unwrap_err()).contains("level 7"));
        let b = reseal(&pt, |pl| put(pl, 4, &f64::NEG_INFINITY.to_bits().to_le_bytes()));
        assert!(reason(Plaintext::from_bytes(&f.ctx, &b).unwrap_err()).contains("scale -inf"));
    }

    #[test]
    fn evaluation_key_fields_are_checked_before_allocation() {
        let f = fx();
        let ek = f.keys.to_bytes();
        let g = f.keys.galois_elements()[0];
        let two_n = 2 * f.ctx.params().n() as u64;
        let b = reseal(&ek, |pl| pl[0] = 7);
        assert!(reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err()).contains("unknown flag bits"));
        // Per-key limb counts follow the one Galois element: 0 or more than the chain has.
        let nq = f.ctx.params().moduli().len() as u32;
        for bad in [0, nq + 1] {
            let b = reseal(&ek, |pl| put(pl, 13, &bad.to_le_bytes()));
            assert!(reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err()).contains("limbs of Q, outside"));
        }
        // A smaller (level-restricted) count with the full key's bytes: a size mismatch.
        let b = reseal(&ek, |pl| put(pl, 13, &1u32.to_le_bytes()));
        assert!(reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err()).contains("key-switching keys need"));
        for count in [u32::MAX, 1 << 20, 8192] {
            let b = reseal(&ek, |pl| put(pl, 1, &count.to_le_bytes()));
            assert!(reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err()).contains("distinct automorphisms"));
        }
        // A count that fits N but not the bytes present (the limb counts read as an element).
        let b = reseal(&ek, |pl| put(pl, 1, &2u32.to_le_bytes()));
        let r = reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err());
        assert!(r.contains("key-switching keys need") || r.contains("Galois element"), "{r}");
        // Dropping the relinearization flag leaves one key's worth of bytes too many.
        let b = reseal(&ek, |pl| pl[0] = 2);
        assert!(reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err()).contains("key-switching keys need"));
        for bad in [0, 1, 2, g + 1, two_n + 1, two_n - 1 + 2, u64::MAX] {
            let b = reseal(&ek, |pl| put(pl, 5, &bad.to_le_bytes()));
            let r = reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err());
            assert!(r.contains(&format!("Galois element {bad}")), "{r}");
        }
        // Another valid odd element is accepted: the key is just indexed differently.
        let b = reseal(&ek, |pl| put(pl, 5, &(two_n - 1).to_le_bytes()));
        let keys = EvaluationKeys::from_bytes(&f.ctx, &b).unwrap();
        assert_eq!(keys.galois_elements(), vec![two_n - 1]);
    }

    #[test]
    fn galois_elements_must_increase() {
        let f = fx();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys = f.client.evaluation_keys_with_rng(&[1, 2], false, &mut rng).unwrap();
        let ek = keys.to_bytes();
        let els = keys.galois_elements();
        let b = reseal(&ek, |pl| {
            put(pl, 5, &els[1].to_le_bytes());
            put(pl, 13, &els[0].to_le_bytes());
        });
        assert!(reason(EvaluationKeys::from_bytes(&f.ctx, &b).unwrap_err()).contains("above the previous one"));
        let b = reseal(&ek, |pl| put(pl, 13, &els[0].to_le_bytes()));
        assert!(EvaluationKeys::from_bytes(&f.ctx, &b).is_err());
    }

    #[test]
    fn secret_coefficients_and_weight_are_checked() {
        let f = fx();
        let sk = f.client.secret_key().to_bytes();
        for bad in [2u8, 0x80, 0xFE] {
            let b = reseal(&sk, |pl| pl[100] = bad);
            let r = reason(SecretKey::from_bytes(&f.ctx, &b).unwrap_err());
            assert!(r.contains("secret coefficient 100"), "{r}");
        }
        let b = reseal(&f.client.to_bytes(), |pl| pl[5] = 7);
        assert!(ClientKeys::from_bytes(&f.ctx, &b).is_err());

        let ctx =
            CkksContext::new(CkksParams::new(13, &[50, 40], &[50], 2, 40).unwrap().with_hamming_weight(32).unwrap())
                .unwrap();
        let client = ClientKeys::generate_with_rng(&ctx, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
        let sk = client.secret_key().to_bytes();
        assert_eq!(SecretKey::from_bytes(&ctx, &sk).unwrap(), *client.secret_key());
        let zero = sk[HEADER_LEN..].iter().position(|&c| c == 0).unwrap();
        let b = reseal(&sk, |pl| pl[zero] = 1);
        let r = reason(SecretKey::from_bytes(&ctx, &b).unwrap_err());
        assert!(r.contains("33 nonzero coefficients") && r.contains("exactly 32"), "{r}");
    }

    #[test]
    fn client_keys_with_a_swapped_public_key_are_rejected() {
        let f = fx();
        let stranger = ClientKeys::generate_with_rng(&f.ctx, &mut ChaCha20Rng::seed_from_u64(42)).unwrap();
        let n = f.ctx.params().n();
        let pk = stranger.public_key().to_bytes();
        let b = reseal(&f.client.to_bytes(), |pl| {
            pl.truncate(n);
            pl.extend_from_slice(&pk[HEADER_LEN..pk.len() - TRAILER_LEN]);
        });
        assert!(matches!(ClientKeys::from_bytes(&f.ctx, &b), Err(CkksError::KeyMismatch { .. })));
    }

    #[test]
    fn parameter_payloads_are_rebuilt_and_checked() {
        let params = fx().ctx.params().clone();
        let pb = params.to_bytes();
        assert_eq!(CkksParams::from_bytes(&pb).unwrap(), params);
        // log_n outside 13..=16 and an insecure chain are refused by `CkksParams::new`.
        let b = reseal(&pb, |pl| put(pl, 0, &12u32.to_le_bytes()));
        assert!(matches!(CkksParams::from_bytes(&b), Err(CkksError::InvalidParameters { .. })));
        let insecure = reseal(&pb, |pl| {
            pl.truncate(32);
            put(pl, 8, &4u32.to_le_bytes()); // dnum 4: one 60-bit prime per digit
            let chain = [60u32, 60, 60, 60];
            pl.extend_from_slice(&(chain.len() as u32).to_le_bytes());
            for bits in chain {
                pl.extend_from_slice(&bits.to_le_bytes());
                pl.extend_from_slice(&0u64.to_le_bytes());
            }
            pl.extend_from_slice(&1u32.to_le_bytes());
            pl.extend_from_slice(&60u32.to_le_bytes());
            pl.extend_from_slice(&0u64.to_le_bytes());
        });
        let e = CkksParams::from_bytes(&insecure);
        assert!(matches!(e, Err(CkksError::InsecureParameters { log_n: 13, .. })), "{e:?}");
        // Prime counts are bounded before anything is read.
        for count in [MAX_PRIMES + 1, u32::MAX] {
            let b = reseal(&pb, |pl| put(pl, 32, &count.to_le_bytes()));
            assert!(reason(CkksParams::from_bytes(&b).unwrap_err()).contains("primes in one chain"));
        }
        // Stored primes must be the generated ones; the header fingerprint must match.
        let b = reseal(&pb, |pl| put(pl, 40, &(params.moduli()[0] - 2 * 8192).to_le_bytes()));
        assert!(reason(CkksParams::from_bytes(&b).unwrap_err()).contains("stored primes differ"));
        let b = reseal_header(&pb, 8, &0u64.to_le_bytes());
        assert!(reason(CkksParams::from_bytes(&b).unwrap_err()).contains("header fingerprint"));
        // Error width and sparse weight.
        let b = reseal(&pb, |pl| put(pl, 20, &f64::NAN.to_bits().to_le_bytes()));
        assert!(reason(CkksParams::from_bytes(&b).unwrap_err()).contains("standard deviation"));
        let b = reseal(&pb, |pl| put(pl, 12, &u64::MAX.to_le_bytes()));
        assert!(matches!(CkksParams::from_bytes(&b), Err(CkksError::InvalidParameters { .. })));
        // The security bound: unknown codes are refused; an unset bound round-trips and the insecure
        // chain above loads only when the file says so.
        let b = reseal(&pb, |pl| put(pl, 28, &7u32.to_le_bytes()));
        assert!(reason(CkksParams::from_bytes(&b).unwrap_err()).contains("unknown security level"));
        let unset = CkksParams::with_depth_and_security(13, 3, 60, 60, 60, Some(4), crate::Security::NotSet).unwrap();
        assert_eq!(CkksParams::from_bytes(&unset.to_bytes()).unwrap(), unset);
        // Parameters with an explicit weight still round-trip through the fingerprint check.
        let sparse = params.with_hamming_weight(64).unwrap();
        assert_eq!(CkksParams::from_bytes(&sparse.to_bytes()).unwrap(), sparse);
    }

    /// How a payload is damaged before resealing.
    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(prop::sample::Index),
        Append(Vec<u8>),
        Overwrite(prop::sample::Index, u64),
        Xor(prop::sample::Index, u8),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let huge = prop_oneof![Just(u64::MAX), Just(u32::MAX as u64), Just(1u64 << 32), Just(0), any::<u64>()];
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Mutation::Truncate),
            prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Append),
            (any::<prop::sample::Index>(), huge).prop_map(|(i, v)| Mutation::Overwrite(i, v)),
            (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Xor(i, x)),
        ]
    }

    fn objects() -> &'static [(ObjectKind, Vec<u8>)] {
        static O: OnceLock<Vec<(ObjectKind, Vec<u8>)>> = OnceLock::new();
        O.get_or_init(|| {
            let f = fx();
            vec![
                (ObjectKind::Params, f.ctx.params().to_bytes()),
                (ObjectKind::Ciphertext, f.ct.to_bytes()),
                (ObjectKind::SecretKey, f.client.secret_key().to_bytes()),
                (ObjectKind::EvaluationKeys, f.keys.to_bytes()),
                (ObjectKind::ClientKeys, f.client.to_bytes()),
            ]
        })
    }

    /// Loads `bytes` through a temporary file with `read_from`, returning the innermost error.
    fn load_via_file(kind: ObjectKind, bytes: &[u8]) -> Result<()> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("polyhe-serial-unit-{}-{n}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let ctx = &fx().ctx;
        let res = match kind {
            ObjectKind::Params => CkksParams::read_from(&path).map(drop),
            ObjectKind::Plaintext => Plaintext::read_from(ctx, &path).map(drop),
            ObjectKind::Ciphertext => Ciphertext::read_from(ctx, &path).map(drop),
            ObjectKind::PublicKey => PublicKey::read_from(ctx, &path).map(drop),
            ObjectKind::SecretKey => SecretKey::read_from(ctx, &path).map(drop),
            ObjectKind::EvaluationKeys => EvaluationKeys::read_from(ctx, &path).map(drop),
            ObjectKind::ClientKeys => ClientKeys::read_from(ctx, &path).map(drop),
        };
        std::fs::remove_file(&path).unwrap();
        res.map_err(|e| e.innermost().clone())
    }

    #[test]
    fn streamed_writes_equal_to_bytes() {
        let f = fx();
        let path = std::env::temp_dir().join(format!("polyhe-serial-unit-w-{}", std::process::id()));
        for (kind, bytes) in objects() {
            match kind {
                ObjectKind::Params => f.ctx.params().write_to(&path).unwrap(),
                ObjectKind::Ciphertext => f.ct.write_to(&path).unwrap(),
                ObjectKind::SecretKey => f.client.secret_key().write_to(&path).unwrap(),
                ObjectKind::EvaluationKeys => f.keys.write_to(&path).unwrap(),
                ObjectKind::ClientKeys => f.client.write_to(&path).unwrap(),
                other => panic!("{other}"),
            }
            assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{kind}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// A file loader that meets a field error keeps hashing, so corruption is reported as such.
    #[test]
    fn streamed_reads_report_corruption_before_field_errors() {
        let f = fx();
        let q0 = f.ctx.params().moduli()[0];
        let mut b = f.ct.to_bytes();
        b[HEADER_LEN + 16..HEADER_LEN + 24].copy_from_slice(&q0.to_le_bytes());
        let err = load_via_file(ObjectKind::Ciphertext, &b).unwrap_err();
        assert!(reason(err).contains("checksum mismatch"));
        // Other parameters behind a valid checksum: the fingerprint error, as with `from_bytes`.
        let b = reseal_header(&f.ct.to_bytes(), 8, &1u64.to_le_bytes());
        assert_eq!(
            load_via_file(ObjectKind::Ciphertext, &b),
            Err(CkksError::ParamsMismatch { expected: f.ctx.fingerprint(), found: 1 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

        /// Streaming updates in arbitrary pieces equal the one-shot hash.
        #[test]
        fn xxh64_streaming_equals_one_shot(data in prop::collection::vec(any::<u8>(), 0..300), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6), seed in any::<u64>()) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut h = Xxh64::new(seed);
            let mut prev = 0;
            for p in points.into_iter().chain([data.len()]) {
                h.update(&data[prev..p]);
                prev = p;
            }
            prop_assert_eq!(h.finish(), xxh64(&data, seed));
        }

        /// Damaged payloads behind a valid envelope never panic; changes of length are errors.
        #[test]
        fn damaged_payloads_never_panic(which in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..4)) {
            let (kind, bytes) = &objects()[which.index(objects().len())];
            let mut length_changed = false;
            let b = reseal(bytes, |pl| {
                for m in muts {
                    match m {
                        Mutation::Truncate(i) => {
                            let at = i.index(pl.len().max(1));
                            length_changed |= at < pl.len();
                            pl.truncate(at);
                        }
                        Mutation::Append(extra) => {
                            length_changed = true;
                            pl.extend_from_slice(&extra);
                        }
                        Mutation::Overwrite(i, v) if pl.len() >= 8 => {
                            let at = i.index(pl.len() - 7);
                            pl[at..at + 8].copy_from_slice(&v.to_le_bytes());
                        }
                        Mutation::Xor(i, x) if !pl.is_empty() => {
                            let at = i.index(pl.len());
                            pl[at] ^= x;
                        }
                        _ => {}
                    }
                }
            });
            let res = load(*kind, &b);
            if length_changed && b.len() != bytes.len() {
                prop_assert!(res.is_err(), "{} with a changed payload length loaded", kind);
            }
            // The streaming file loader reaches the same verdict with the same error, except that
            // it refuses an oversize payload from the header alone.
            match (load_via_file(*kind, &b), res) {
                (Err(CkksError::Malformed { offset: 16, reason, .. }), Err(_)) if reason.contains("more than any") => {}
                (from_file, from_slice) => prop_assert_eq!(from_file, from_slice),
            }
        }
    }
}
