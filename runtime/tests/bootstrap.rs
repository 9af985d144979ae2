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
    // digits of 6 primes: fewer, cheaper key switches (and keys) than SEAL's one prime per digit
    let dnum = q.len().div_ceil(6);
    let p = CkksParams::new_with_security(13, &q, &[60; 6], dnum, 40, Security::NotSet).unwrap();
    match hamming {
        Some(h) => p.with_hamming_weight(h).unwrap(),
        None => p,
    }
}

/// log_slots = 5 (sparse: 32 slots of the 4096).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // the configuration depends on the secret's weight and the slot count, not on the chain
        let cfg = BootstrapConfig::default_for(&params(1, Some(64)), 5);
        let ctx = CkksContext::new(params(cfg.levels(), Some(64))).unwrap();
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
    let ct = f
        .client
        .encryptor()
        .encrypt(&f.enc.encode(&full, COMPUTE_LEVELS, f.ctx.params().default_scale()).unwrap())
        .unwrap();
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
    assert!(bits > 20.0, "precision {bits:.1} bits");
    // the refreshed ciphertext supports further multiplications
    let sq = f.eval.mul_relin_rescale(&out, &out).unwrap();
    let dec = f.enc.decode(&f.client.decrypt(&sq).unwrap()).unwrap();
    let want: Vec<f64> = v.iter().map(|x| x * x).collect();
    assert!(max_err(&dec[..n], &want) < 1e-3);
    // and bootstrapping again (from level 0) keeps the values
    let again = f.boot.bootstrap(&f.eval, &f.eval.drop_to_level(&out, 0).unwrap()).unwrap();
    let dec = f.enc.decode(&f.client.decrypt(&again).unwrap()).unwrap();
    let bits = -max_err(&dec, &full).log2();
    eprintln!("two bootstraps: {bits:.1} bits");
    assert!(bits > 20.0, "precision {bits:.1} bits");
}

fn encrypt_at(f: &Fixture, full: &[f64], level: usize) -> Ciphertext {
    f.client.encryptor().encrypt(&f.enc.encode(full, level, f.ctx.params().default_scale()).unwrap()).unwrap()
}

#[test]
fn level_one_input_gets_the_exact_default_scale_and_a_wider_range_works() {
    let f = fixture();
    let slots = f.ctx.params().slots();
    let n = 1 << f.boot.config().log_slots;
    let (_, full) = periodic(n, slots, 1.0, 2);
    let out = f.boot.bootstrap(&f.eval, &encrypt_at(f, &full, 1)).unwrap();
    assert_eq!(out.scale(), f.ctx.params().default_scale());
    let dec = f.enc.decode(&f.client.decrypt(&out).unwrap()).unwrap();
    let bits = -max_err(&dec, &full).log2();
    eprintln!("level-1 input, [-1,1]: {bits:.1} bits");
    assert!(bits > 20.0, "precision {bits:.1} bits");
    // values in [-8, 8]: the sine's nonlinearity grows with |m|/q_0, so fewer bits
    let (_, wide) = periodic(n, slots, 8.0, 3);
    let out = f.boot.bootstrap(&f.eval, &encrypt_at(f, &wide, 0)).unwrap();
    let dec = f.enc.decode(&f.client.decrypt(&out).unwrap()).unwrap();
    let bits = -max_err(&dec, &wide).log2();
    eprintln!("level-0 input, [-8,8]: {bits:.1} bits (absolute)");
    assert!(bits > 14.0, "precision {bits:.1} bits");
}

#[test]
fn a_pair_of_real_ciphertexts_shares_one_bootstrapping() {
    let f = fixture();
    let slots = f.ctx.params().slots();
    let n = 1 << f.boot.config().log_slots;
    let (_, a) = periodic(n, slots, 1.0, 6);
    let (_, b) = periodic(n, slots, 1.0, 7);
    // different levels: the pair is aligned to the lower one
    let (ra, rb) = f.boot.bootstrap_pair(&f.eval, &encrypt_at(f, &a, 0), &encrypt_at(f, &b, 1)).unwrap();
    assert_eq!((ra.level(), rb.level()), (f.boot.output_level(), f.boot.output_level()));
    for (ct, want, name) in [(&ra, &a, "a"), (&rb, &b, "b")] {
        let dec = f.enc.decode(&f.client.decrypt(ct).unwrap()).unwrap();
        let bits = -max_err(&dec, want).log2();
        eprintln!("pair, {name}: {bits:.1} bits");
        assert!(bits > 20.0, "{name}: precision {bits:.1} bits");
    }
}

/// Zero-padded sparse inputs (values in slots `0..n`, zeros elsewhere) come back the same: the
/// refreshed slots keep the replicated path's precision and every other slot stays zero, from
/// level 0 and level 1, alone and as a pair. The Galois keys are the replicated configuration's.
#[test]
fn zero_padded_sparse_input_comes_back_zero_padded() {
    let f = fixture();
    let slots = f.ctx.params().slots();
    let cfg = BootstrapConfig { zero_padded: true, ..f.boot.config().clone() };
    let n = 1 << cfg.log_slots;
    let boot = Bootstrapper::new(&f.ctx, cfg).unwrap();
    assert_eq!(boot.rotation_steps(), f.boot.rotation_steps());
    let padded = |seed: u64| {
        let (v, _) = periodic(n, slots, 1.0, seed);
        (0..slots).map(|j| if j < n { v[j] } else { 0.0 }).collect::<Vec<f64>>()
    };
    for level in [0, 1] {
        let x = padded(20 + level as u64);
        let out = boot.bootstrap(&f.eval, &encrypt_at(f, &x, level)).unwrap();
        assert_eq!(out.level(), boot.output_level());
        let dec = f.enc.decode(&f.client.decrypt(&out).unwrap()).unwrap();
        let bits = -max_err(&dec[..n], &x[..n]).log2();
        let outside = dec[n..].iter().fold(0.0f64, |m, y| m.max(y.abs()));
        eprintln!("zero-padded, level-{level} input: {bits:.1} bits, max |slot| beyond n {outside:.2e}");
        assert!(bits > 20.0, "precision {bits:.1} bits");
        assert!(outside < 1e-6, "slots beyond n hold {outside:e}");
    }
    let (a, b) = (padded(30), padded(31));
    let (ra, rb) = boot.bootstrap_pair(&f.eval, &encrypt_at(f, &a, 1), &encrypt_at(f, &b, 1)).unwrap();
    for (ct, want) in [(&ra, &a), (&rb, &b)] {
        let dec = f.enc.decode(&f.client.decrypt(ct).unwrap()).unwrap();
        let bits = -max_err(&dec, want).log2();
        assert!(bits > 20.0, "pair: precision {bits:.1} bits");
    }
}

#[test]
fn too_short_chain_and_bad_configs_are_errors() {
    let f = fixture();
    let cfg = f.boot.config().clone();
    // one bootstrapping level short (no level would remain for computation)
    let short = CkksContext::new(params(f.boot.levels_consumed() - COMPUTE_LEVELS, Some(64))).unwrap();
    match Bootstrapper::new(&short, cfg.clone()) {
        Err(CkksError::InvalidParameters { reason }) => assert!(reason.contains("too short"), "{reason}"),
        other => panic!("expected a chain error, got {other:?}"),
    }
    // a dense secret: the default K is huge, and needs more levels than the chain has
    let dense = CkksContext::new(params(f.boot.levels_consumed(), None)).unwrap();
    let dense_cfg = BootstrapConfig::default_for(dense.params(), 5);
    assert!(dense_cfg.k > 100, "K = {}", dense_cfg.k);
    assert!(matches!(Bootstrapper::new(&dense, dense_cfg), Err(CkksError::InvalidParameters { .. })));
    // …and the sparse configuration's K is rejected for it
    match Bootstrapper::new(&dense, cfg.clone()) {
        Err(CkksError::InvalidParameters { reason }) => assert!(reason.contains("too small"), "{reason}"),
        other => panic!("expected a K error, got {other:?}"),
    }
    // a cosine degree far too low for K
    let low = BootstrapConfig { cos_degree: 8, ..cfg.clone() };
    match Bootstrapper::new(&f.ctx, low) {
        Err(CkksError::InvalidParameters { reason }) => assert!(reason.contains("approximation error"), "{reason}"),
        other => panic!("expected an approximation error, got {other:?}"),
    }
    for bad in [
        BootstrapConfig { log_slots: 13, ..cfg.clone() },
        BootstrapConfig { cts_levels: 6, ..cfg.clone() },
        BootstrapConfig { stc_levels: 0, ..cfg },
    ] {
        assert!(matches!(Bootstrapper::new(&f.ctx, bad), Err(CkksError::InvalidParameters { .. })));
    }
}

#[test]
fn missing_keys_and_bad_inputs_are_errors() {
    let f = fixture();
    let slots = f.ctx.params().slots();
    let n = 1 << f.boot.config().log_slots;
    let (_, full) = periodic(n, slots, 1.0, 5);
    let ct = encrypt_at(f, &full, 0);
    let no_rot = Evaluator::new(&f.ctx, f.client.evaluation_keys(&[], true).unwrap()).unwrap();
    assert!(matches!(f.boot.bootstrap(&no_rot, &ct), Err(CkksError::MissingGaloisKey { .. })));
    let no_conj = Evaluator::new(&f.ctx, f.client.evaluation_keys(&f.boot.rotation_steps(), false).unwrap()).unwrap();
    assert!(matches!(f.boot.bootstrap(&no_conj, &ct), Err(CkksError::MissingConjugationKey)));
    let three = f.eval.mul(&ct, &ct).unwrap();
    assert!(matches!(f.boot.bootstrap(&f.eval, &three), Err(CkksError::CiphertextDegree { .. })));
    // a ciphertext of another parameter set
    let other = CkksContext::new(params(f.boot.levels_consumed() + 1, Some(64))).unwrap();
    let oc = ClientKeys::generate(&other).unwrap();
    let oct = oc.encryptor().encrypt(&Encoder::new(&other).encode(&[1.0], 0, 2f64.powi(40)).unwrap()).unwrap();
    assert!(matches!(f.boot.bootstrap(&f.eval, &oct), Err(CkksError::ParamsMismatch { .. })));
}

/// Full packing (n = N/2 = 4096 slots): no SubSum, 12 FFT stages in 3 + 3 levels.
#[test]
fn full_slots_bootstrap() {
    let cfg = BootstrapConfig::default_for(&params(1, Some(64)), 12);
    let ctx = CkksContext::new(params(cfg.levels(), Some(64))).unwrap();
    let boot = Bootstrapper::new(&ctx, cfg.clone()).unwrap();
    assert_eq!(boot.levels_consumed(), cfg.levels());
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let client = ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
    let keys = client.evaluation_keys_with_rng(&boot.rotation_steps(), true, &mut rng).unwrap();
    let eval = Evaluator::new(&ctx, keys).unwrap();
    let enc = Encoder::new(&ctx);
    let slots = ctx.params().slots();
    let v: Vec<f64> = (0..slots).map(|_| rng.random_range(-1.0..=1.0)).collect();
    let ct = client.encryptor().encrypt(&enc.encode(&v, 0, ctx.params().default_scale()).unwrap()).unwrap();
    let out = boot.bootstrap(&eval, &ct).unwrap();
    assert_eq!(out.level(), COMPUTE_LEVELS);
    let dec = enc.decode(&client.decrypt(&out).unwrap()).unwrap();
    let bits = -max_err(&dec, &v).log2();
    eprintln!("full slots ({} rotation keys): {bits:.1} bits", boot.rotation_steps().len());
    assert!(bits > 20.0, "precision {bits:.1} bits");
}
