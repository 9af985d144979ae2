//! polyhe-runtime: a fast RNS-CKKS homomorphic encryption library, usable on its own from host
//! programs (it depends on no compiler crate of polyhe).
//!
//! # Layout
//! - `params`: [`CkksParams`] — ring degree 2^13…2^16, modulus chain, special primes and `dnum`
//!   for hybrid key switching, scale; deterministic NTT-friendly primes; 128-bit security check;
//!   [`CkksParams::fingerprint`].
//! - `ring` (internal): RNS polynomials on fhe-math's `Modulus`/`NttOperator` (tfhe-ntt feature);
//!   rescale, approximate ModUp/ModDown, key-switching inner products, Galois permutations.
//! - `encoder`: [`Encoder`] — canonical embedding (special FFT), real and complex slots.
//! - `keys`: [`ClientKeys`] (secret + public key, evaluation-key generation, decryption),
//!   [`Encryptor`], [`EvaluationKeys`] (public relinearization/Galois keys), [`Ciphertext`].
//! - `eval`: [`Evaluator`] — every homomorphic operation, holding public keys only.
//! - `bootstrap`: [`Bootstrapper`] — CKKS bootstrapping (ModRaise, SubSum, CoeffsToSlots, EvalMod,
//!   SlotsToCoeffs) refreshing a ciphertext's levels.
//! - `bench`: [`bench_ops`] for `polyhe bench runtime`.
//! - `serial`: versioned binary format (parameters, keys, plaintexts, ciphertexts).
//!
//! # Example
//! ```
//! use polyhe_runtime::{CkksContext, CkksParams, ClientKeys, Encoder, Evaluator};
//! # fn main() -> Result<(), polyhe_runtime::CkksError> {
//! let ctx = CkksContext::new(CkksParams::new(13, &[50, 40, 40], &[50], 3, 40)?)?;
//! let client = ClientKeys::generate(&ctx)?;                  // secret key stays here
//! let eval = Evaluator::new(&ctx, client.evaluation_keys(&[1], false)?)?; // server side
//! let enc = Encoder::new(&ctx);
//! let x = client.encryptor().encrypt(&enc.encode(&[1.5, -2.0, 0.25], 2, ctx.params().default_scale())?)?;
//! let y = eval.rotate(&eval.mul_relin_rescale(&x, &x)?, 1)?;  // slots: x[j+1]^2
//! let out = enc.decode(&client.decrypt(&y)?)?;
//! assert!((out[0] - 4.0).abs() < 1e-4 && (out[1] - 0.0625).abs() < 1e-4);
//! # Ok(()) }
//! ```
//!
//! # Threads
//! Limb-parallel loops use rayon when the current pool has more than one thread; run inside a
//! `rayon::ThreadPool::install` to choose the count. Results are bit-identical for every count.
#![deny(clippy::panic, clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::panic, clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing))]

mod bench;
mod bootstrap;
mod context;
mod encoder;
mod error;
mod eval;
mod keys;
mod params;
mod ring;
mod serial;

pub use bench::{bench_ops, BenchConfig, BenchParams, BenchReport, OPS};
pub use bootstrap::{BootstrapConfig, BootstrapTimings, Bootstrapper};
pub use context::CkksContext;
pub use encoder::{Encoder, Plaintext};
pub use error::{CkksError, Result};
pub use eval::{Evaluator, HoistedCiphertext};
pub use keys::{
    conjugation_galois_element, rotation_galois_element, Ciphertext, ClientKeys, Encryptor, EvaluationKeys,
    KeySwitchKey, PublicKey, SecretKey,
};
pub use num_complex::Complex64;
pub use params::{max_log_qp_128, CkksParams, Security, ERROR_STD_DEV};
pub use serial::{ObjectHeader, ObjectKind, FORMAT_VERSION, MAGIC};
mod program;
pub use program::{
    decrypt_outputs, encrypt_inputs, execute, execute_probed, execute_with_progress, execute_with_stats, simulate,
    simulate_observed, ExecStats, Inst, Op as ProgramOp, Origin, Origins, Port, Probe, Program, ProgramBootstrap,
    ProgramError, ProgramParams, ProgramResult, Progress, ProgressReport, Reg, Simulation, SlotLayout, SlotSupport,
    SlotVector, MAX_INPUT_SHIFT, PROGRAM_MAGIC, PROGRAM_VERSION,
};
