//! End-to-end bootstrapping at N = 2^13 with `Security::NotSet` (a long chain at a small, fast ring;
//! such keys protect nothing — the 128-bit N = 2^16 set is in `examples/bootstrap.rs`).
//!
//! Chain: q_0 = 60 bits, 3 compute levels of 40 bits, then 58-bit bootstrapping primes; sparse
//! secret of Hamming weight 64 (K = 17). Values are encrypted, consumed down to level 0 by
//! multiplications, bootstrapped and decrypted; the precision (bits of max abs error) is asserted.

use std::sync::OnceLock;

use polyhe_runtime::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const COMPUTE_LEVELS: usize = 3;

struct Fixture {
    ctx: CkksContext,
    client: ClientKeys,
    eval: Evaluator,
    enc: Encoder,
    boot: Bootstrapper,
}

fn params(boot_levels: usize, hamming: Option<usize>) -> CkksParams {
    let mut q = vec![60u32];
    q.extend(std::iter::repeat_n(40, COMPUTE_LEVELS));
    q.extend(std::iter::repeat_n(58, boot_levels));
    let dnum = q.len().div_ceil(3);
    let p = CkksParams::new_with_security(13, &q, &[60, 60, 60], dnum, 40, Security::NotSet).unwrap();
    match hamming {
        Some(h) => p.with_hamming_weight(h).unwrap(),
        None => p,
    }
}

/// log_slots = 5 (sparse: 32 slots of the 4096).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let probe = CkksContext::new(params(30, Some(64))).unwrap();
        let cfg = BootstrapConfig::default_for(probe.params(), 5);
        let b = Bootstrapper::new(&probe, cfg.clone()).unwrap();
        let ctx = CkksContext::new(params(b.levels_consumed(), Some(64))).unwrap();
        let boot = Bootstrapper::new(&ctx, cfg).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let client = ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
        let keys = client.evaluation_keys_with_rng(&boot.rotation_steps(), boot.needs_conjugation(), &mut rng).unwrap();
        let eval = Evaluator::new(&ctx, keys).unwrap();
        let enc = Encoder::new(&ctx);
        Fixture { ctx, client, eval, enc, boot }
    })
}

/// `n` random values in `[-bound, bound]`, replicated over all N/2 slots (period `n`).
fn periodic(n: usize, slots: usize, bound: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
    let full = (0..slots).map(|j| v[j % n]).collect();
    (v, full)
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn bootstrap_refreshes_a_level_zero_ciphertext() {
    let f = fixture();
    let slots = f.ctx.params().slots();
    let n = 1 << f.boot.config().log_slots;
    assert_eq!(f.boot.output_level(), COMPUTE_LEVELS);
    assert_eq!(f.boot.output_level(), f.ctx.params().max_level() - f.boot.levels_consumed());
    let (v, full) = periodic(n, slots, 1.0, 1);
    let ct = f.client.encryptor().encrypt(&f.enc.encode(&full, COMPUTE_LEVELS, f.ctx.params().default_scale()).unwrap()).unwrap();
    // consume every compute level: x·1 three times
    let mut ct = ct;
    while ct.level() > 0 {
        ct = f.eval.mul_const(&ct, 1.0).unwrap();
    }
    assert_eq!(ct.level(), 0);
    let out = f.boot.bootstrap(&f.eval, &ct).unwrap();
    assert_eq!(out.level(), f.boot.output_level());
    let dec = f.enc.decode(&f.client.decrypt(&out).unwrap()).unwrap();
    let err = max_err(&dec, &full);
    let bits = -err.log2();
    eprintln!("level-0 input, [-1,1]: max abs error {err:.3e} ({bits:.1} bits)");
    assert!(bits > 15.0, "precision {bits:.1} bits");
    // the refreshed ciphertext supports further multiplications
    let sq = f.eval.mul_relin_rescale(&out, &out).unwrap();
    let dec = f.enc.decode(&f.client.decrypt(&sq).unwrap()).unwrap();
    let want: Vec<f64> = v.iter().map(|x| x * x).collect();
    assert!(max_err(&dec[..n], &want) < 1e-3);
}
