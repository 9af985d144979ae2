//! [`CkksContext`]: a parameter set plus every precomputed table (primes, NTT plans, base-conversion
//! constants, FFT roots, CRT tables), shared by cheap clones (`Arc`).
//!
//! Contract: all objects (plaintexts, ciphertexts, keys) remember the 64-bit fingerprint of the
//! parameters they were made under; every operation compares it with its context and fails with
//! [`CkksError::ParamsMismatch`] instead of mixing parameter sets.

use std::sync::Arc;

use crate::encoder::{CrtTables, FftTables};
use crate::error::{CkksError, Result};
use crate::params::CkksParams;
use crate::ring::RingContext;

#[derive(Debug)]
pub(crate) struct ContextInner {
    pub(crate) params: CkksParams,
    pub(crate) fingerprint: u64,
    pub(crate) ring: RingContext,
    pub(crate) fft: FftTables,
    pub(crate) crt: CrtTables,
}

/// A CKKS context: validated parameters and precomputations.
#[derive(Debug, Clone)]
pub struct CkksContext {
    pub(crate) inner: Arc<ContextInner>,
}

impl CkksContext {
    /// Builds every table for `params`.
    pub fn new(params: CkksParams) -> Result<Self> {
        let ring = RingContext::new(&params)?;
        let fft = FftTables::new(ring.n);
        let crt = CrtTables::new(&ring)?;
        let fingerprint = params.fingerprint_u64();
        Ok(Self { inner: Arc::new(ContextInner { params, fingerprint, ring, fft, crt }) })
    }
    /// The parameters.
    pub fn params(&self) -> &CkksParams {
        &self.inner.params
    }
    /// 64-bit parameter fingerprint carried by every object of this context.
    pub fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }
}

impl ContextInner {
    pub(crate) fn check_fp(&self, found: u64) -> Result<()> {
        if found == self.fingerprint {
            Ok(())
        } else {
            Err(CkksError::ParamsMismatch { expected: self.fingerprint, found })
        }
    }
}

pub(crate) fn check_level(level: usize, max: usize) -> Result<()> {
    if level > max {
        Err(CkksError::InvalidLevel { level, min: 0, max })
    } else {
        Ok(())
    }
}
