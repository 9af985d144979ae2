//! Operation timings for `polyhe bench runtime` and the peer comparison.
//!
//! Contract: [`bench_ops`] builds the chain `[first_bits, scale_bits × depth]` with special primes of
//! `special_bits` (one unless wider digits need more), Δ = 2^scale_bits, generates keys (relin +
//! rotations 1..=8), and reports the median wall-clock milliseconds over `reps` runs (after one
//! warm-up run) of each operation at the top level, in the thread pool the caller is running in.
//! `hoisted_rotate` is the time of 8 hoisted rotations divided by 8. The JSON produced by
//! [`BenchReport::to_json`] is `{"params": {...}, "ops_ms": {...}}` with exactly the keys of
//! [`OPS`].

use std::collections::BTreeMap;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::context::CkksContext;
use crate::encoder::Encoder;
use crate::error::{CkksError, Result};
use crate::eval::Evaluator;
use crate::keys::ClientKeys;
use crate::params::CkksParams;

/// Names of the timed operations, in report order.
pub const OPS: [&str; 8] =
    ["encode_encrypt", "decrypt_decode", "add", "mul_plain", "mul_relin", "rescale", "rotate", "hoisted_rotate"];

/// What to benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    pub log_n: u32,
    pub depth: usize,
    pub scale_bits: u32,
    pub first_bits: u32,
    pub special_bits: u32,
    /// Key-switching digits; `None` = one prime per digit (dnum = depth + 1).
    pub dnum: Option<usize>,
    pub reps: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self { log_n: 16, depth: 5, scale_bits: 40, first_bits: 60, special_bits: 60, dnum: None, reps: 5 }
    }
}

/// Parameters actually used (echoed in the report).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchParams {
    pub log_n: u32,
    pub depth: usize,
    pub scale_bits: u32,
    pub first_bits: u32,
    pub special_bits: u32,
    pub special_primes: usize,
    pub dnum: usize,
    pub log_qp: f64,
    pub threads: usize,
    pub reps: usize,
}

/// Median milliseconds per operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub params: BenchParams,
    pub ops_ms: BTreeMap<String, f64>,
}

impl BenchReport {
    /// `{"params": {...}, "ops_ms": {...}}` (ops in [`OPS`] order).
    pub fn to_json(&self) -> String {
        let p = &self.params;
        let params = format!(
            "{{\"log_n\": {}, \"depth\": {}, \"scale_bits\": {}, \"first_bits\": {}, \"special_bits\": {}, \"special_primes\": {}, \"dnum\": {}, \"log_qp\": {:.2}, \"threads\": {}, \"reps\": {}}}",
            p.log_n, p.depth, p.scale_bits, p.first_bits, p.special_bits, p.special_primes, p.dnum, p.log_qp, p.threads, p.reps
        );
        let ops: Vec<String> =
            OPS.iter().filter_map(|k| self.ops_ms.get(*k).map(|v| format!("\"{k}\": {}", json_f64(*v)))).collect();
        format!("{{\"params\": {params}, \"ops_ms\": {{{}}}}}", ops.join(", "))
    }

    /// A human-readable table.
    pub fn to_table(&self) -> String {
        let p = &self.params;
        let mut s = format!(
            "N = 2^{}, chain [{}, {}x{}] + {}x{} special, dnum = {}, log2(QP) = {:.1}, threads = {}, median of {}\n",
            p.log_n,
            p.first_bits,
            p.scale_bits,
            p.depth,
            p.special_primes,
            p.special_bits,
            p.dnum,
            p.log_qp,
            p.threads,
            p.reps
        );
        for k in OPS {
            if let Some(v) = self.ops_ms.get(k) {
                s.push_str(&format!("{k:<16} {v:>10.3} ms\n"));
            }
        }
        s
    }
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".into()
    }
}

fn median_ms<F: FnMut() -> Result<()>>(reps: usize, mut f: F) -> Result<f64> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t.get(t.len() / 2).copied().unwrap_or(f64::NAN))
}

/// Runs the benchmark (see module docs).
pub fn bench_ops(cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.reps == 0 {
        return Err(CkksError::InvalidParameters { reason: "reps must be at least 1".into() });
    }
    let params =
        CkksParams::with_depth(cfg.log_n, cfg.depth, cfg.first_bits, cfg.scale_bits, cfg.special_bits, cfg.dnum)?;
    let ctx = CkksContext::new(params)?;
    let mut rng = ChaCha20Rng::seed_from_u64(0x5EED);
    let client = ClientKeys::generate_with_rng(&ctx, &mut rng)?;
    let steps: Vec<i64> = (1..=8).collect();
    let eval = Evaluator::new(&ctx, client.evaluation_keys_with_rng(&steps, false, &mut rng)?)?;
    let enc = Encoder::new(&ctx);
    let encryptor = client.encryptor();
    let p = ctx.params();
    let level = p.max_level();
    let scale = p.default_scale();
    let values: Vec<f64> = (0..p.slots()).map(|i| ((i * 7919) % 2000) as f64 / 1000.0 - 1.0).collect();
    let pt = enc.encode(&values, level, scale)?;
    let a = encryptor.encrypt_with_rng(&pt, &mut rng)?;
    let b = encryptor.encrypt_with_rng(&pt, &mut rng)?;
    let prod = eval.mul_relin(&a, &b)?;

    let mut ops = BTreeMap::new();
    ops.insert(
        "encode_encrypt".to_string(),
        median_ms(cfg.reps, || {
            let pt = enc.encode(&values, level, scale)?;
            encryptor.encrypt_with_rng(&pt, &mut rng).map(drop)
        })?,
    );
    ops.insert("decrypt_decode".to_string(), median_ms(cfg.reps, || enc.decode(&client.decrypt(&a)?).map(drop))?);
    ops.insert("add".to_string(), median_ms(cfg.reps, || eval.add(&a, &b).map(drop))?);
    ops.insert("mul_plain".to_string(), median_ms(cfg.reps, || eval.mul_plain(&a, &pt).map(drop))?);
    ops.insert("mul_relin".to_string(), median_ms(cfg.reps, || eval.mul_relin(&a, &b).map(drop))?);
    ops.insert("rescale".to_string(), median_ms(cfg.reps, || eval.rescale(&prod).map(drop))?);
    ops.insert("rotate".to_string(), median_ms(cfg.reps, || eval.rotate(&a, 1).map(drop))?);
    let hoisted = median_ms(cfg.reps, || eval.rotate_hoisted(&a, &steps).map(drop))?;
    ops.insert("hoisted_rotate".to_string(), hoisted / steps.len() as f64);

    Ok(BenchReport {
        params: BenchParams {
            log_n: cfg.log_n,
            depth: cfg.depth,
            scale_bits: cfg.scale_bits,
            first_bits: cfg.first_bits,
            special_bits: cfg.special_bits,
            special_primes: p.special_moduli().len(),
            dnum: p.dnum(),
            log_qp: p.log_qp(),
            threads: rayon::current_num_threads(),
            reps: cfg.reps,
        },
        ops_ms: ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_every_op_and_exact_json_shape() {
        let r = bench_ops(&BenchConfig {
            log_n: 13,
            depth: 2,
            scale_bits: 40,
            first_bits: 50,
            special_bits: 50,
            dnum: None,
            reps: 1,
        })
        .unwrap();
        assert_eq!(r.ops_ms.len(), OPS.len());
        assert!(r.ops_ms.values().all(|v| v.is_finite() && *v >= 0.0));
        let j = r.to_json();
        assert!(j.starts_with("{\"params\": {\"log_n\": 13, \"depth\": 2,"), "{j}");
        let ops_part = j.split("\"ops_ms\": ").nth(1).unwrap();
        for k in OPS {
            assert!(ops_part.contains(&format!("\"{k}\": ")), "{k} missing in {j}");
        }
        assert!(j.ends_with("}}"));
        assert!(r.to_table().contains("mul_relin"));
        assert!(matches!(
            bench_ops(&BenchConfig { reps: 0, ..BenchConfig::default() }),
            Err(CkksError::InvalidParameters { .. })
        ));
    }
}
