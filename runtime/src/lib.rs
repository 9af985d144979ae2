//! polyhe-runtime: an RNS-CKKS homomorphic encryption library (placeholder docs, see below).
#![deny(clippy::panic, clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::panic, clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing))]

mod error;
mod params;
mod ring;

pub use error::{CkksError, Result};
pub use params::{max_log_qp_128, CkksParams, ERROR_STD_DEV};
