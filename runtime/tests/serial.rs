//! Serialization tests: round trips of every object kind (deserialized objects compute the same
//! results), parameter-mismatch and wrong-kind rejection, and robustness against truncation, bit
//! flips, random bytes and lying length fields (errors, never panics or huge allocations).
//! Payload-level fuzzing (mutations behind a valid checksum) lives in `src/serial.rs`.

use std::path::PathBuf;
use std::sync::OnceLock;

use polyhe_runtime::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Fixture {
    ctx: CkksContext,
    client: ClientKeys,
    keys: EvaluationKeys,
    eval: Evaluator,
    enc: Encoder,
}

const ROTS: [i64; 2] = [1, -3];

fn make(params: CkksParams, seed: u64) -> Fixture {
    let ctx = CkksContext::new(params).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let client = ClientKeys::generate_with_rng(&ctx, &mut rng).unwrap();
    let keys = client.evaluation_keys_with_rng(&ROTS, true, &mut rng).unwrap();
    let eval = Evaluator::new(&ctx, keys.clone()).unwrap();
    let enc = Encoder::new(&ctx);
    Fixture { ctx, client, keys, eval, enc }
}

fn small_params() -> CkksParams {
    CkksParams::new(13, &[50, 40, 40], &[50], 3, 40).unwrap()
}

/// N = 2^13, chain [50, 40, 40] + [50], dnum 3.
fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| make(small_params(), 1))
}

/// Same shape with a sparse secret: every object has the same size as under [`fx`], only the
/// fingerprint differs, so nothing but the fingerprint check can reject a cross-load.
fn other() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| make(small_params().with_hamming_weight(64).unwrap(), 2))
}

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn encrypt(f: &Fixture, v: &[f64], level: usize) -> Ciphertext {
    let pt = f.enc.encode(v, level, f.ctx.params().default_scale()).unwrap();
    f.client.encryptor().encrypt(&pt).unwrap()
}

fn decrypt(f: &Fixture, client: &ClientKeys, ct: &Ciphertext) -> Vec<f64> {
    f.enc.decode(&client.decrypt(ct).unwrap()).unwrap()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// A fresh path in the system temp dir (removed by the caller).
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("polyhe-serial-{}-{name}", std::process::id()))
}

/// One serialized object of every kind that needs a context, from fixture `f`.
fn all_objects(f: &Fixture) -> Vec<(ObjectKind, Vec<u8>)> {
    let ct = encrypt(f, &values(8, 1), 1);
    let pt = f.enc.encode(&values(8, 2), 2, f.ctx.params().default_scale()).unwrap();
    vec![
        (ObjectKind::Plaintext, pt.to_bytes()),
        (ObjectKind::Ciphertext, ct.to_bytes()),
        (ObjectKind::PublicKey, f.client.public_key().to_bytes()),
        (ObjectKind::SecretKey, f.client.secret_key().to_bytes()),
        (ObjectKind::EvaluationKeys, f.keys.to_bytes()),
        (ObjectKind::ClientKeys, f.client.to_bytes()),
    ]
}

/// Loads `bytes` as `kind` under `ctx`, discarding the object.
fn load_as(kind: ObjectKind, ctx: &CkksContext, bytes: &[u8]) -> Result<()> {
    match kind {
        ObjectKind::Params => CkksParams::from_bytes(bytes).map(drop),
        ObjectKind::Plaintext => Plaintext::from_bytes(ctx, bytes).map(drop),
        ObjectKind::Ciphertext => Ciphertext::from_bytes(ctx, bytes).map(drop),
        ObjectKind::PublicKey => PublicKey::from_bytes(ctx, bytes).map(drop),
        ObjectKind::SecretKey => SecretKey::from_bytes(ctx, bytes).map(drop),
        ObjectKind::EvaluationKeys => EvaluationKeys::from_bytes(ctx, bytes).map(drop),
        ObjectKind::ClientKeys => ClientKeys::from_bytes(ctx, bytes).map(drop),
        other => panic!("no loader for {other}"),
    }
}

// ---------------------------------------------------------------- round trips

#[test]
fn params_round_trip_is_exact_and_self_describing() {
    let shapes = [
        small_params(),
        small_params().with_hamming_weight(64).unwrap(),
        CkksParams::with_depth(14, 5, 60, 40, 60, None).unwrap(),
        CkksParams::new(13, &[45, 30, 30, 30], &[40, 40], 2, 30).unwrap(),
        CkksParams::with_depth(16, 20, 60, 40, 60, Some(4)).unwrap(),
    ];
    for p in shapes {
        let bytes = p.to_bytes();
        let back = CkksParams::from_bytes(&bytes).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.fingerprint(), p.fingerprint());
        let h = ObjectHeader::parse(&bytes).unwrap();
        assert_eq!((h.version, h.kind, h.fingerprint), (FORMAT_VERSION, ObjectKind::Params, p.fingerprint_u64()));
        assert_eq!(h.payload_len as usize, 40 + 12 * (p.moduli().len() + p.special_moduli().len()));
        assert_eq!(&bytes[..4], &MAGIC);
    }
}

#[test]
fn plaintext_round_trip() {
    let f = fx();
    for level in 0..=f.ctx.params().max_level() {
        let v = values(f.ctx.params().slots(), level as u64);
        let pt = f.enc.encode(&v, level, 2f64.powi(35)).unwrap();
        let bytes = pt.to_bytes();
        // header + level + scale + (level+1) limbs of N u64 + checksum: nothing redundant.
        assert_eq!(bytes.len(), 24 + 12 + (level + 1) * 8192 * 8 + 8);
        let back = Plaintext::from_bytes(&f.ctx, &bytes).unwrap();
        assert_eq!(back, pt);
        assert_eq!((back.level(), back.scale()), (level, 2f64.powi(35)));
        assert_eq!(f.enc.decode(&back).unwrap(), f.enc.decode(&pt).unwrap());
    }
}

#[test]
fn ciphertext_round_trip_decrypts_to_the_same_values() {
    let f = fx();
    let v = values(f.ctx.params().slots(), 3);
    let ct = encrypt(f, &v, 2);
    let bytes = ct.to_bytes();
    assert_eq!(bytes.len(), 24 + 16 + 2 * 3 * 8192 * 8 + 8);
    let back = Ciphertext::from_bytes(&f.ctx, &bytes).unwrap();
    assert_eq!(back, ct);
    let got = decrypt(f, &f.client, &back);
    assert_eq!(got, decrypt(f, &f.client, &ct));
    assert!(max_err(&got, &v) < 1e-6);

    // A product before relinearization (3 polynomials), and a rescaled ciphertext at a lower level
    // with a scale that is not a power of two.
    let prod = f.eval.mul(&ct, &ct).unwrap();
    let prod_back = Ciphertext::from_bytes(&f.ctx, &prod.to_bytes()).unwrap();
    assert_eq!((prod_back.degree(), prod_back.scale()), (3, prod.scale()));
    assert_eq!(f.eval.relinearize(&prod_back).unwrap(), f.eval.relinearize(&prod).unwrap());
    let low = f.eval.rescale(&f.eval.relinearize(&prod).unwrap()).unwrap();
    let low_back = Ciphertext::from_bytes(&f.ctx, &low.to_bytes()).unwrap();
    assert_eq!(low_back, low);
    assert_eq!((low_back.level(), low_back.scale()), (1, low.scale()));
    let sq: Vec<f64> = v.iter().map(|x| x * x).collect();
    assert!(max_err(&decrypt(f, &f.client, &low_back), &sq) < 1e-5);
}

#[test]
fn public_key_round_trip_encrypts() {
    let f = fx();
    let pk = PublicKey::from_bytes(&f.ctx, &f.client.public_key().to_bytes()).unwrap();
    assert_eq!(&pk, f.client.public_key());
    let v = values(64, 4);
    let pt = f.enc.encode(&v, 2, f.ctx.params().default_scale()).unwrap();
    let ct = Encryptor::new(&f.ctx, pk).unwrap().encrypt(&pt).unwrap();
    assert!(max_err(&decrypt(f, &f.client, &ct)[..64], &v) < 1e-6);
}

#[test]
fn secret_key_round_trip_and_reassembly() {
    let f = fx();
    let sk_bytes = f.client.secret_key().to_bytes();
    // One byte per ternary coefficient: the NTT form is recomputed on load.
    assert_eq!(sk_bytes.len(), 24 + 8192 + 8);
    let sk = SecretKey::from_bytes(&f.ctx, &sk_bytes).unwrap();
    assert_eq!(&sk, f.client.secret_key());
    let pk = PublicKey::from_bytes(&f.ctx, &f.client.public_key().to_bytes()).unwrap();
    let client = ClientKeys::from_parts(&f.ctx, sk, pk).unwrap();
    let v = values(32, 5);
    let ct = encrypt(f, &v, 1);
    assert_eq!(decrypt(f, &client, &ct), decrypt(f, &f.client, &ct));

    // The sparse-secret fixture: weight is preserved and checked.
    let o = other();
    let sk = SecretKey::from_bytes(&o.ctx, &o.client.secret_key().to_bytes()).unwrap();
    assert_eq!(&sk, o.client.secret_key());
}

#[test]
fn client_keys_round_trip_decrypts() {
    let f = fx();
    let bytes = f.client.to_bytes();
    assert_eq!(bytes.len(), 24 + 8192 + 2 * 4 * 8192 * 8 + 8);
    let back = ClientKeys::from_bytes(&f.ctx, &bytes).unwrap();
    assert_eq!(back.secret_key(), f.client.secret_key());
    assert_eq!(back.public_key(), f.client.public_key());
    let v = values(100, 6);
    let ct = back.encryptor().encrypt(&f.enc.encode(&v, 2, f.ctx.params().default_scale()).unwrap()).unwrap();
    assert!(max_err(&decrypt(f, &back, &ct)[..100], &v) < 1e-6);
    assert!(max_err(&decrypt(f, &f.client, &ct)[..100], &v) < 1e-6);
}

#[test]
fn mismatched_secret_and_public_key_are_rejected() {
    let f = fx();
    let stranger = ClientKeys::generate_with_rng(&f.ctx, &mut ChaCha20Rng::seed_from_u64(99)).unwrap();
    let err = ClientKeys::from_parts(&f.ctx, stranger.secret_key().clone(), f.client.public_key().clone()).unwrap_err();
    assert!(matches!(err, CkksError::KeyMismatch { .. }), "{err}");
    let err =
        ClientKeys::from_parts(&f.ctx, other().client.secret_key().clone(), f.client.public_key().clone()).unwrap_err();
    assert!(matches!(err, CkksError::ParamsMismatch { .. }), "{err}");
}

#[test]
fn evaluation_keys_round_trip_relinearize_and_rotate() {
    let f = fx();
    let bytes = f.keys.to_bytes();
    // Exactly: flags + count + Galois elements + a limb count per key + (relin + 3 Galois keys)
    // × dnum × (b, a) over Q ∪ P. Nothing else fits, in particular no secret key.
    let ksk = 3 * 2 * 4 * 8192 * 8;
    assert_eq!(f.keys.galois_elements().len(), 3);
    assert_eq!(bytes.len(), 24 + 5 + 3 * 8 + 4 * 4 + 4 * ksk + 8);
    let keys = EvaluationKeys::from_bytes(&f.ctx, &bytes).unwrap();
    assert_eq!(keys, f.keys);
    assert!(keys.has_relin());
    let eval = Evaluator::new(&f.ctx, keys).unwrap();

    let slots = f.ctx.params().slots();
    let (x, y) = (values(slots, 7), values(slots, 8));
    let (cx, cy) = (encrypt(f, &x, 2), encrypt(f, &y, 2));
    let prod = eval.mul_relin_rescale(&cx, &cy).unwrap();
    assert_eq!(prod, f.eval.mul_relin_rescale(&cx, &cy).unwrap());
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    assert!(max_err(&decrypt(f, &f.client, &prod), &want) < 1e-5);
    for step in ROTS {
        let r = eval.rotate(&cx, step).unwrap();
        assert_eq!(r, f.eval.rotate(&cx, step).unwrap());
        let want: Vec<f64> = (0..slots).map(|j| x[(j as i64 + step).rem_euclid(slots as i64) as usize]).collect();
        assert!(max_err(&decrypt(f, &f.client, &r), &want) < 1e-5, "step {step}");
    }
    assert_eq!(eval.conjugate(&cx).unwrap(), f.eval.conjugate(&cx).unwrap());
    assert!(matches!(eval.rotate(&cx, 2), Err(CkksError::MissingGaloisKey { step: 2 })));
}

#[test]
fn level_restricted_keys_rotate_at_their_levels_only() {
    // Step 1's key restricted to level 0 (one digit over one Q limb), step -3's to level 1, the
    // relinearization key full: smaller, round-tripped, the same rotations below their level as
    // the full keys give, and a clear error above it.
    let f = fx();
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let keys = f.client.evaluation_keys_at_levels_with_rng(&[(1, 0), (-3, 1)], false, &mut rng).unwrap();
    let full = f.client.evaluation_keys_with_rng(&ROTS, false, &mut rng).unwrap();
    assert!(keys.key_bytes() < full.key_bytes(), "{} vs {}", keys.key_bytes(), full.key_bytes());
    let back = EvaluationKeys::from_bytes(&f.ctx, &keys.to_bytes()).unwrap();
    assert_eq!(back, keys);
    let eval = Evaluator::new(&f.ctx, back).unwrap();
    let slots = f.ctx.params().slots();
    let x = values(slots, 9);
    for (step, level) in [(1i64, 0usize), (-3, 0), (-3, 1)] {
        let c = encrypt(f, &x, level);
        let r = eval.rotate(&c, step).unwrap();
        let want: Vec<f64> = (0..slots).map(|j| x[(j as i64 + step).rem_euclid(slots as i64) as usize]).collect();
        assert!(max_err(&decrypt(f, &f.client, &r), &want) < 1e-5, "step {step} at level {level}");
    }
    for (step, level) in [(1i64, 1usize), (1, 2), (-3, 2)] {
        let err = eval.rotate(&encrypt(f, &x, level), step).unwrap_err();
        assert!(matches!(err, CkksError::KeyBelowLevel { level: l, .. } if l == level), "{err}");
    }
}

#[test]
fn evaluation_keys_without_relinearization_or_galois_keys() {
    let f = fx();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let keys = f.client.evaluation_keys_with_rng(&[], false, &mut rng).unwrap();
    let back = EvaluationKeys::from_bytes(&f.ctx, &keys.to_bytes()).unwrap();
    assert_eq!(back, keys);
    assert!(back.galois_elements().is_empty());
}

// ---------------------------------------------------------------- rejection

#[test]
fn objects_from_other_parameters_are_rejected() {
    let (f, o) = (fx(), other());
    assert_ne!(f.ctx.fingerprint(), o.ctx.fingerprint());
    for (kind, bytes) in all_objects(o) {
        let err = load_as(kind, &f.ctx, &bytes).unwrap_err();
        assert_eq!(
            err,
            CkksError::ParamsMismatch { expected: f.ctx.fingerprint(), found: o.ctx.fingerprint() },
            "{kind}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{:016x}", f.ctx.fingerprint()))
                && msg.contains(&format!("{:016x}", o.ctx.fingerprint())),
            "{msg}"
        );
    }
    // Keys of other parameters never reach an evaluator or encryptor either.
    assert!(matches!(Evaluator::new(&f.ctx, o.keys.clone()), Err(CkksError::ParamsMismatch { .. })));
    assert!(matches!(Encryptor::new(&f.ctx, o.client.public_key().clone()), Err(CkksError::ParamsMismatch { .. })));
}

#[test]
fn wrong_kind_is_rejected_naming_both_kinds() {
    let f = fx();
    let mut objects = all_objects(f);
    objects.push((ObjectKind::Params, f.ctx.params().to_bytes()));
    for (found, bytes) in &objects {
        assert_eq!(ObjectHeader::parse(bytes).unwrap().kind, *found);
        for expected in ObjectKind::ALL {
            let res = load_as(expected, &f.ctx, bytes);
            if expected == *found {
                assert!(res.is_ok(), "{found} as itself: {res:?}");
            } else {
                let err = res.unwrap_err();
                assert_eq!(err, CkksError::WrongKind { expected: expected.name(), found: found.name() });
            }
        }
    }
    let pk = f.client.public_key().to_bytes();
    let msg = Ciphertext::from_bytes(&f.ctx, &pk).unwrap_err().to_string();
    assert_eq!(msg, "wrong object kind: expected ciphertext, found public key");
}

#[test]
fn every_truncation_of_a_ciphertext_is_an_error() {
    let f = fx();
    let bytes = encrypt(f, &values(4, 9), 0).to_bytes();
    for len in 0..bytes.len() {
        match Ciphertext::from_bytes(&f.ctx, &bytes[..len]) {
            Err(CkksError::Malformed { .. }) => {}
            other => panic!("truncation to {len} bytes: {other:?}"),
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(Ciphertext::from_bytes(&f.ctx, &longer), Err(CkksError::Malformed { .. })));
}

#[test]
fn every_truncation_of_small_objects_is_an_error() {
    let f = fx();
    let objects =
        [(ObjectKind::Params, f.ctx.params().to_bytes()), (ObjectKind::SecretKey, f.client.secret_key().to_bytes())];
    for (kind, bytes) in objects {
        for len in 0..bytes.len() {
            assert!(load_as(kind, &f.ctx, &bytes[..len]).is_err(), "{kind} truncated to {len}");
        }
    }
}

#[test]
fn huge_length_fields_are_errors_without_allocation() {
    let f = fx();
    let bytes = encrypt(f, &values(4, 10), 0).to_bytes();
    for huge in [u64::MAX, u64::MAX / 2, 1 << 40, bytes.len() as u64] {
        let mut b = bytes.clone();
        b[16..24].copy_from_slice(&huge.to_le_bytes());
        let err = Ciphertext::from_bytes(&f.ctx, &b).unwrap_err();
        assert!(matches!(err, CkksError::Malformed { offset: 16, .. }), "{err}");
    }
    // A file whose header claims 2^50 payload bytes is refused from its header alone.
    let path = temp_path("huge.ct");
    let mut b = bytes[..24].to_vec();
    b[16..24].copy_from_slice(&(1u64 << 50).to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let err = Ciphertext::read_from(&f.ctx, &path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(err.to_string().contains("more than any ciphertext"), "{err}");
    assert!(matches!(err.innermost(), CkksError::Malformed { .. }));
}

#[test]
fn bad_magic_and_future_versions_are_reported() {
    let f = fx();
    let bytes = f.client.public_key().to_bytes();
    let mut b = bytes.clone();
    b[0] = b'X';
    let err = PublicKey::from_bytes(&f.ctx, &b).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    let mut b = bytes.clone();
    for old_or_future in [1u16, FORMAT_VERSION + 1] {
        b[4..6].copy_from_slice(&old_or_future.to_le_bytes());
        assert_eq!(
            PublicKey::from_bytes(&f.ctx, &b).unwrap_err(),
            CkksError::UnsupportedVersion { found: old_or_future, supported: FORMAT_VERSION }
        );
    }
}

fn small_ciphertext_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| encrypt(fx(), &values(4, 11), 0).to_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The checksum covers every byte, so any single flipped bit is an error.
    #[test]
    fn single_bit_flips_are_errors(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = small_ciphertext_bytes();
        let mut b = bytes.to_vec();
        let i = pos.index(b.len());
        b[i] ^= 1 << bit;
        let res = Ciphertext::from_bytes(&fx().ctx, &b);
        prop_assert!(matches!(res, Err(CkksError::Malformed { .. } | CkksError::UnsupportedVersion { .. })), "flip at {}: {:?}", i, res);
    }

    /// Several flipped bytes and a truncation together are errors too.
    #[test]
    fn corrupted_and_truncated_is_error(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8), cut in any::<prop::sample::Index>()) {
        let bytes = small_ciphertext_bytes();
        let mut b = bytes.to_vec();
        for (pos, x) in flips {
            let i = pos.index(b.len());
            b[i] ^= x;
        }
        b.truncate(cut.index(b.len() + 1).max(1));
        prop_assert!(Ciphertext::from_bytes(&fx().ctx, &b).is_err());
    }

    /// Random bytes are rejected by every loader, with or without a valid magic and version.
    #[test]
    fn random_bytes_are_errors(mut b in prop::collection::vec(any::<u8>(), 0..600), prefix in any::<bool>()) {
        if prefix && b.len() >= 6 {
            b[..4].copy_from_slice(&MAGIC);
            b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        }
        let f = fx();
        for kind in ObjectKind::ALL {
            prop_assert!(load_as(kind, &f.ctx, &b).is_err());
        }
        prop_assert!(ObjectHeader::parse(&b).is_err());
    }
}

// ---------------------------------------------------------------- files

#[test]
fn files_round_trip_every_kind() {
    let f = fx();
    let dir = temp_path("dir");
    std::fs::create_dir_all(&dir).unwrap();
    let ct = encrypt(f, &values(16, 12), 2);
    let pt = f.enc.encode(&values(16, 13), 1, 2f64.powi(30)).unwrap();
    f.ctx.params().write_to(dir.join("params")).unwrap();
    pt.write_to(dir.join("pt")).unwrap();
    ct.write_to(dir.join("ct")).unwrap();
    f.client.public_key().write_to(dir.join("pk")).unwrap();
    f.client.secret_key().write_to(dir.join("sk")).unwrap();
    f.keys.write_to(dir.join("ek")).unwrap();
    f.client.write_to(dir.join("client")).unwrap();

    // The streaming file writer produces exactly the in-memory bytes.
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    assert_eq!(read("params"), f.ctx.params().to_bytes());
    assert_eq!(read("pt"), pt.to_bytes());
    assert_eq!(read("ct"), ct.to_bytes());
    assert_eq!(read("pk"), f.client.public_key().to_bytes());
    assert_eq!(read("sk"), f.client.secret_key().to_bytes());
    assert_eq!(read("ek"), f.keys.to_bytes());
    assert_eq!(read("client"), f.client.to_bytes());

    let params = CkksParams::read_from(dir.join("params")).unwrap();
    assert_eq!(&params, f.ctx.params());
    let ctx = CkksContext::new(params).unwrap();
    assert_eq!(Plaintext::read_from(&ctx, dir.join("pt")).unwrap(), pt);
    assert_eq!(Ciphertext::read_from(&ctx, dir.join("ct")).unwrap(), ct);
    assert_eq!(&PublicKey::read_from(&ctx, dir.join("pk")).unwrap(), f.client.public_key());
    assert_eq!(&SecretKey::read_from(&ctx, dir.join("sk")).unwrap(), f.client.secret_key());
    assert_eq!(EvaluationKeys::read_from(&ctx, dir.join("ek")).unwrap(), f.keys);
    let client = ClientKeys::read_from(&ctx, dir.join("client")).unwrap();
    assert_eq!(client.secret_key(), f.client.secret_key());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_errors_name_the_file() {
    let f = fx();
    let missing = temp_path("does-not-exist.ct");
    let err = Ciphertext::read_from(&f.ctx, &missing).unwrap_err();
    assert!(matches!(&err, CkksError::Io { path, .. } if path == &missing.display().to_string()), "{err}");
    assert!(err.to_string().contains("does-not-exist.ct"));

    let path = temp_path("corrupt.ct");
    let mut b = encrypt(f, &values(4, 14), 0).to_bytes();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    std::fs::write(&path, &b).unwrap();
    let err = Ciphertext::read_from(&f.ctx, &path).unwrap_err();
    assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(matches!(err.innermost(), CkksError::Malformed { what: "ciphertext", .. }));

    // A file truncated on disk, a file of another kind, and a file of other parameters.
    b[mid] ^= 0x10;
    std::fs::write(&path, &b[..b.len() - 100]).unwrap();
    let err = Ciphertext::read_from(&f.ctx, &path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    f.client.public_key().write_to(&path).unwrap();
    let err = Ciphertext::read_from(&f.ctx, &path).unwrap_err();
    assert_eq!(err.innermost(), &CkksError::WrongKind { expected: "ciphertext", found: "public key" });
    other().client.public_key().write_to(&path).unwrap();
    let err = PublicKey::read_from(&f.ctx, &path).unwrap_err();
    assert!(matches!(err.innermost(), CkksError::ParamsMismatch { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.ct"));
    std::fs::remove_file(&path).unwrap();

    let unwritable = temp_path("no-such-dir").join("x.ct");
    let err = encrypt(f, &values(4, 15), 0).write_to(&unwritable).unwrap_err();
    assert!(matches!(&err, CkksError::Io { path, .. } if path.ends_with("x.ct")), "{err}");
}
