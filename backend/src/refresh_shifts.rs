//! Refresh input shifts: the values each bootstrapping refreshes, measured on calibration samples,
//! and the power of two each one is divided by for its refresh.
//!
//! Why: a bootstrapping evaluates a sine on the message over `q_0`; the message must stay far below
//! `2^log_message_ratio` (13 in compiled programs) or it wraps around and comes back as garbage. A
//! transformer refreshes values of every size: MiniLM refreshes a sum of squares of 384 values
//! (1.9e7) and softmax probabilities (≤ 1) in one program, and encrypted it returned 1e20.
//!
//! Requires: a compiled program (with its bootstrappings placed) and calibration samples as program
//! inputs ([`crate::program_inputs`] of each sample). Guarantees: the program is simulated in the
//! clear on every sample ([`polyhe_runtime::simulate`]); each bootstrapping whose calibrated input
//! exceeds [`REFRESH_BOUND`] gets the smallest shift `k` with `max / 2^k ≤ REFRESH_BOUND`
//! ([`polyhe_runtime::ProgramBootstrap::input_shifts`]); a value `2^k` times smaller keeps the
//! same relative precision. [`REFRESH_BOUND`] leaves a 256× headroom below the wrap for inputs
//! beyond calibration (the sine loses accuracy gradually above it: `(2π·x/2^13)²/6` relative).

use rayon::prelude::*;

use crate::{BackendError, CkksCompiled};

/// Largest calibrated magnitude a bootstrapping refreshes unshifted.
pub const REFRESH_BOUND: f64 = 16.0;

/// What [`set_refresh_shifts`] measured and decided (in the CKKS report).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RefreshInputs {
    /// Calibration samples simulated.
    pub samples: usize,
    /// Largest magnitude any bootstrapping refreshes on them (before its shift).
    pub largest: f64,
    /// Bootstrappings given a shift, and the largest shift.
    pub shifted: usize,
    pub max_shift: u32,
}

/// Measures the refreshed values on `samples` (program inputs) and sets the input shifts.
/// `Ok(None)` for a program without bootstrappings.
pub fn set_refresh_shifts(
    compiled: &mut CkksCompiled,
    samples: &[Vec<Vec<f64>>],
) -> Result<Option<RefreshInputs>, BackendError> {
    let Some(program) = compiled.program.as_mut() else { return Ok(None) };
    if program.bootstrap.is_none() || samples.is_empty() {
        return Ok(None);
    }
    let runs = samples
        .par_iter()
        .map(|s| polyhe_runtime::simulate(program, s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BackendError::Internal(format!("simulating the program on calibration samples: {e}")))?;
    let mut largest: std::collections::BTreeMap<usize, f64> = std::collections::BTreeMap::new();
    for run in &runs {
        for &(i, m) in &run.bootstrap_inputs {
            let e = largest.entry(i).or_insert(0.0);
            *e = e.max(m);
        }
    }
    let mut report = RefreshInputs { samples: samples.len(), ..Default::default() };
    let Some(boot) = program.bootstrap.as_mut() else { return Ok(None) };
    boot.input_shifts.clear();
    for (&i, &m) in &largest {
        report.largest = report.largest.max(m);
        // (a NaN magnitude is left alone: the simulation's outputs then say what went wrong)
        if m.is_nan() || m <= REFRESH_BOUND {
            continue;
        }
        let k = ((m / REFRESH_BOUND).log2().ceil() as u32).min(polyhe_runtime::MAX_INPUT_SHIFT);
        boot.input_shifts.insert(i, k);
        report.shifted += 1;
        report.max_shift = report.max_shift.max(k);
    }
    compiled.report.refresh_inputs = Some(report.clone());
    Ok(Some(report))
}
