//! The single error type of the runtime.
//!
//! Contract: every fallible public function returns [`CkksError`]; user mistakes (mismatched levels,
//! scales, parameter sets, missing keys, insecure parameters) have their own structured variants so a
//! host program can react to them, and nothing in this crate panics on bad input.

use thiserror::Error;

/// Errors produced by the CKKS runtime.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CkksError {
    /// The parameters are below 128-bit security per the HomomorphicEncryption.org table
    /// (ternary secrets): `log_qp` (bits of Q·P, rounded up) exceeds `max` for ring degree `2^log_n`.
    #[error("insecure parameters: log2(QP) = {log_qp} bits exceeds the 128-bit security bound of {max} bits for N = 2^{log_n}")]
    InsecureParameters { log_n: u32, log_qp: u32, max: u32 },
    /// The parameters are malformed (the reason says which rule is broken).
    #[error("invalid parameters: {reason}")]
    InvalidParameters { reason: String },
    /// Two operands are at different levels.
    #[error("level mismatch: {a} vs {b}")]
    LevelMismatch { a: usize, b: usize },
    /// Two operands have different scales (relative difference above tolerance).
    #[error("scale mismatch: 2^{a_log2:.4} vs 2^{b_log2:.4}")]
    ScaleMismatch { a_log2: f64, b_log2: f64 },
    /// An object was created under a different parameter set (fingerprints differ).
    #[error("parameter mismatch: object fingerprint {found:016x}, expected {expected:016x}")]
    ParamsMismatch { expected: u64, found: u64 },
    /// A rotation was requested for which no Galois key was generated.
    #[error("missing Galois key for rotation step {step}")]
    MissingGaloisKey { step: i64 },
    /// Conjugation was requested but no conjugation key was generated.
    #[error("missing Galois key for conjugation")]
    MissingConjugationKey,
    /// Relinearization was requested but no relinearization key was generated.
    #[error("missing relinearization key")]
    MissingRelinKey,
    /// A key-switching key generated for levels up to `key_level` met a ciphertext above them.
    #[error("key-switching key restricted to levels 0..={key_level} used at level {level}")]
    KeyBelowLevel { key_level: usize, level: usize },
    /// Rescaling (or a level-consuming operation) at level 0.
    #[error("no level left: {op} needs level >= 1, ciphertext is at level 0")]
    LevelExhausted { op: &'static str },
    /// A requested level is outside `0..=max`.
    #[error("invalid level {level}: must be in {min}..={max}")]
    InvalidLevel { level: usize, min: usize, max: usize },
    /// More values than slots were given to the encoder.
    #[error("too many values: {got} > {slots} slots")]
    TooManySlots { got: usize, slots: usize },
    /// A value cannot be encoded (NaN/infinite, or too large for the modulus at this level).
    #[error("value cannot be encoded: {reason}")]
    EncodeOutOfRange { reason: String },
    /// A ciphertext has the wrong degree for the operation (e.g. rotating a non-relinearized product).
    #[error("ciphertext has {found} polynomials, operation {op} needs {expected}")]
    CiphertextDegree { op: &'static str, expected: usize, found: usize },
    /// A scale is not a positive finite number.
    #[error("invalid scale {scale}")]
    InvalidScale { scale: f64 },
    /// Serialized bytes are malformed: truncated, corrupt (checksum), not a polyhe object, or a field
    /// out of the range its parameters allow (`offset` is the byte where reading stopped).
    #[error("malformed {what}: {reason} (at byte {offset})")]
    Malformed { what: &'static str, offset: usize, reason: String },
    /// A serialized object of another kind was given (e.g. a public key read as a ciphertext).
    #[error("wrong object kind: expected {expected}, found {found}")]
    WrongKind { expected: &'static str, found: &'static str },
    /// The serialized format version is not one this build reads.
    #[error("unsupported serialization format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    /// Loading or saving the named file failed.
    #[error("{path}: {source}")]
    InFile { path: String, source: Box<CkksError> },
    /// A secret key and a public key that do not belong together.
    #[error("key mismatch: {reason}")]
    KeyMismatch { reason: String },
    /// Internal invariant violated (a bug in this crate, never a user error).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Result alias of this crate.
pub type Result<T, E = CkksError> = std::result::Result<T, E>;
