//! polyhe-runtime: an RNS-CKKS homomorphic encryption library (placeholder docs, see below).
#![deny(clippy::panic, clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::panic, clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing))]

mod bench;
mod context;
mod encoder;
mod error;
mod eval;
mod keys;
mod params;
mod ring;
mod serial;

pub use bench::{bench_ops, BenchConfig, BenchParams, BenchReport, OPS};
pub use context::CkksContext;
pub use encoder::{Encoder, Plaintext};
pub use error::{CkksError, Result};
pub use eval::{Evaluator, HoistedCiphertext};
pub use keys::{
    conjugation_galois_element, rotation_galois_element, Ciphertext, ClientKeys, Encryptor, EvaluationKeys, KeySwitchKey, PublicKey,
    SecretKey,
};
pub use num_complex::Complex64;
pub use params::{max_log_qp_128, CkksParams, ERROR_STD_DEV};
pub use serial::{ObjectHeader, ObjectKind, FORMAT_VERSION, MAGIC};
