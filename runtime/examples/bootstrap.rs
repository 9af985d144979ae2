//! CKKS bootstrapping at a 128-bit-secure parameter set: builds the chain from the bootstrapping
//! configuration, generates exactly the keys it needs, consumes a ciphertext down to level 0,
//! bootstraps it and reports levels, precision, per-phase timings and key bytes.
//!
//! ```sh
//! cargo run --release -p polyhe-runtime --example bootstrap -- --log-n 16 --log-slots 10
//! cargo run --release -p polyhe-runtime --example bootstrap -- --log-n 13 --log-slots 5 --insecure
//! ```
//!
//! Options: `--log-n` (13..=16), `--log-slots`, `--hamming` (sparse secret weight, default 192),
//! `--max-log-qp` (default: the sparse-secret budget below), `--compute-levels` (default: as many
//! 40-bit levels as that budget allows), `--lt-levels`
//! (levels per linear transform), `--ratio` (log2 q_0/Δ_message), `--reps` (bootstraps to time), `--threads`, `--insecure`
//! (`Security::NotSet`, for small rings).
//!
//! Security: the HomomorphicEncryption.org bound checked by `Security::Bits128` (log2 QP ≤ 1761 at
//! N = 2^16) assumes a uniform ternary secret. Sparse secrets are weaker, so the default budget is
//! Lattigo's for h = 192 (`N16QP1546H192H32`: log2 QP = 1546 at N = 2^16, `N15QP768H192H32`: 768 at
//! 2^15); smaller rings get the same 0.875 fraction of their bound. See docs/bootstrapping.md.

use std::error::Error;
use std::time::Instant;

use polyhe_runtime::{
    max_log_qp_128, BootstrapConfig, Bootstrapper, CkksContext, CkksParams, ClientKeys, Encoder, Evaluator, Security,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const Q0_BITS: u32 = 60;
const SCALE_BITS: u32 = 40;
const BOOT_BITS: u32 = 58;
const SPECIAL_BITS: u32 = 60;
/// Q primes per key-switching digit (the special modulus P has as many 60-bit primes).
const ALPHA: usize = 5;

struct Args {
    log_n: u32,
    log_slots: u32,
    hamming: usize,
    compute_levels: Option<usize>,
    max_log_qp: Option<usize>,
    lt_levels: Option<usize>,
    ratio: Option<u32>,
    reps: usize,
    threads: usize,
    insecure: bool,
}

fn parse() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        log_n: 16,
        log_slots: 10,
        hamming: 192,
        compute_levels: None,
        max_log_qp: None,
        lt_levels: None,
        ratio: None,
        reps: 1,
        threads: 2,
        insecure: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--log-n" => a.log_n = val()?.parse()?,
            "--log-slots" => a.log_slots = val()?.parse()?,
            "--hamming" => a.hamming = val()?.parse()?,
            "--compute-levels" => a.compute_levels = Some(val()?.parse()?),
            "--max-log-qp" => a.max_log_qp = Some(val()?.parse()?),
            "--lt-levels" => a.lt_levels = Some(val()?.parse()?),
            "--ratio" => a.ratio = Some(val()?.parse()?),
            "--reps" => a.reps = val()?.parse()?,
            "--threads" => a.threads = val()?.parse()?,
            "--insecure" => a.insecure = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

fn chain(compute: usize, boot: usize) -> (Vec<u32>, Vec<u32>, usize) {
    let mut q = vec![Q0_BITS];
    q.extend(std::iter::repeat_n(SCALE_BITS, compute));
    q.extend(std::iter::repeat_n(BOOT_BITS, boot));
    let dnum = q.len().div_ceil(ALPHA);
    (q, vec![SPECIAL_BITS; ALPHA], dnum)
}

/// log2 QP budget for a sparse secret of weight 192 (Lattigo's default bootstrapping sets).
fn sparse_budget(log_n: u32) -> Option<usize> {
    match log_n {
        16 => Some(1546),
        15 => Some(768),
        _ => max_log_qp_128(log_n).map(|b| b as usize * 7 / 8),
    }
}

// Allocate as the CLI does, so the figures are what `polyhe run` sees (see src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// `mi_option_purge_delay` (mimalloc v2's option enum).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> Result<(), Box<dyn Error>> {
    // SAFETY: sets a plain integer option; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let a = parse()?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads).build()?;
    pool.install(|| run(&a).map_err(|e| e.to_string()))?;
    Ok(())
}

fn run(a: &Args) -> Result<(), Box<dyn Error>> {
    let security = if a.insecure { Security::NotSet } else { Security::Bits128 };
    // The configuration depends on the secret's weight and the slot count only.
    let shape = CkksParams::new_with_security(a.log_n, &[Q0_BITS], &[SPECIAL_BITS], 1, SCALE_BITS, Security::NotSet)?
        .with_hamming_weight(a.hamming)?;
    let mut cfg = BootstrapConfig::default_for(&shape, a.log_slots);
    if let Some(l) = a.lt_levels {
        cfg.cts_levels = l;
        cfg.stc_levels = l;
    }
    if let Some(r) = a.ratio {
        cfg.log_message_ratio = r;
    }
    let boot_levels = cfg.levels();
    let compute = match a.compute_levels {
        Some(c) => c,
        None => {
            // the most 40-bit levels under the sparse-secret budget (P = ALPHA special primes)
            let max = match a.max_log_qp {
                Some(m) => m,
                None => sparse_budget(a.log_n).ok_or("log-n must be in 13..=16")?,
            };
            let fixed = (Q0_BITS + BOOT_BITS * boot_levels as u32 + SPECIAL_BITS * ALPHA as u32) as usize;
            // one bit of slack per prime: generated primes sit just below or above 2^bits
            (max.saturating_sub(fixed + boot_levels + ALPHA + 1) / (SCALE_BITS as usize + 1)).max(1)
        }
    };
    let (q, p, dnum) = chain(compute, boot_levels);
    let params =
        CkksParams::new_with_security(a.log_n, &q, &p, dnum, SCALE_BITS, security)?.with_hamming_weight(a.hamming)?;
    println!(
        "params: N = 2^{}, log2(QP) = {:.1} ({}), chain {} primes [{Q0_BITS}, {SCALE_BITS} x {compute}, {BOOT_BITS} x {boot_levels}] + P {} x {SPECIAL_BITS}, dnum {dnum}, sparse secret h = {}",
        a.log_n,
        params.log_qp(),
        match security {
            Security::Bits128 => format!("128-bit bound {}", max_log_qp_128(a.log_n).unwrap_or(0)),
            _ => "security NOT SET".to_string(),
        },
        q.len(),
        p.len(),
        a.hamming
    );
    println!("config: {cfg:?}");

    let t = Instant::now();
    let ctx = CkksContext::new(params)?;
    let boot = Bootstrapper::new(&ctx, cfg)?;
    println!(
        "bootstrapper: {:.2} s to precompute; EvalMod approximation error 2^{:.1}",
        t.elapsed().as_secs_f64(),
        boot.eval_mod_error().log2()
    );
    let steps = boot.rotation_steps();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let t = Instant::now();
    let client = ClientKeys::generate_with_rng(&ctx, &mut rng)?;
    let keys = client.evaluation_keys_with_rng(&steps, boot.needs_conjugation(), &mut rng)?;
    let nkeys = keys.galois_elements().len() + usize::from(keys.has_relin());
    let limbs = ctx.params().moduli().len() + ctx.params().special_moduli().len();
    let key_bytes = nkeys * dnum * 2 * ctx.params().n() * limbs * 8;
    println!(
        "keys: {} rotations + conjugation + relinearization = {nkeys} switching keys, {:.2} GB, generated in {:.1} s",
        steps.len(),
        key_bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let eval = Evaluator::new(&ctx, keys)?;
    let enc = Encoder::new(&ctx);

    let slots = ctx.params().slots();
    let n = 1usize << a.log_slots;
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..=1.0)).collect();
    let full: Vec<f64> = (0..slots).map(|j| v.get(j % n).copied().unwrap_or(0.0)).collect();
    let top = ctx.params().max_level();
    println!(
        "levels: chain top {top}; bootstrapping consumes {} -> output level {}; {} levels usable for computation between bootstraps",
        boot.levels_consumed(),
        boot.output_level(),
        boot.output_level()
    );
    for rep in 0..a.reps {
        // encrypt at the output level and consume every level by multiplications
        let mut ct =
            client.encryptor().encrypt(&enc.encode(&full, boot.output_level(), ctx.params().default_scale())?)?;
        while ct.level() > 0 {
            ct = eval.mul_const(&ct, 1.0)?;
        }
        let before = ct.level();
        let t = Instant::now();
        let (out, times) = boot.bootstrap_timed(&eval, &ct)?;
        let total = t.elapsed().as_secs_f64();
        let dec = enc.decode(&client.decrypt(&out)?)?;
        let err = dec.iter().zip(&full).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        println!(
            "bootstrap #{rep}: level {before} -> {}, max abs error {err:.2e} ({:.1} bits) over {n} slots, {total:.2} s \
             (ModRaise {:.2}, SubSum {:.2}, CtS {:.2}, EvalMod {:.2}, StC {:.2})",
            out.level(),
            -err.log2(),
            times.mod_raise.as_secs_f64(),
            times.sub_sum.as_secs_f64(),
            times.coeffs_to_slots.as_secs_f64(),
            times.eval_mod.as_secs_f64(),
            times.slots_to_coeffs.as_secs_f64()
        );
    }
    Ok(())
}
