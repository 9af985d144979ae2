//! Criterion benchmarks of the CKKS operations at the top level, chain [60, 40×5] + [60], Δ = 2^40,
//! single thread. `cargo bench -p polyhe-runtime --bench ops` (N = 2^14; set POLYHE_BENCH_LOG_N=16
//! for N = 2^16).

use criterion::{criterion_group, criterion_main, Criterion};
use polyhe_runtime::{CkksContext, CkksParams, ClientKeys, Encoder, Evaluator};

fn ops(c: &mut Criterion) {
    let log_n: u32 = std::env::var("POLYHE_BENCH_LOG_N").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    // Single thread, like the peers' numbers (ignore the error if the global pool already exists).
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    {
        let ctx = CkksContext::new(CkksParams::with_depth(log_n, 5, 60, 40, 60, None).unwrap()).unwrap();
        let client = ClientKeys::generate(&ctx).unwrap();
        let steps: Vec<i64> = (1..=8).collect();
        let eval = Evaluator::new(&ctx, client.evaluation_keys(&steps, false).unwrap()).unwrap();
        let enc = Encoder::new(&ctx);
        let encryptor = client.encryptor();
        let level = ctx.params().max_level();
        let scale = ctx.params().default_scale();
        let values: Vec<f64> = (0..ctx.params().slots()).map(|i| (i % 200) as f64 / 100.0 - 1.0).collect();
        let pt = enc.encode(&values, level, scale).unwrap();
        let a = encryptor.encrypt(&pt).unwrap();
        let b = encryptor.encrypt(&pt).unwrap();
        let prod = eval.mul_relin(&a, &b).unwrap();
        let mut g = c.benchmark_group(format!("ckks_n2^{log_n}"));
        g.sample_size(10);
        g.bench_function("encode", |bn| bn.iter(|| enc.encode(&values, level, scale).unwrap()));
        g.bench_function("encode_encrypt", |bn| {
            bn.iter(|| encryptor.encrypt(&enc.encode(&values, level, scale).unwrap()).unwrap())
        });
        g.bench_function("decrypt_decode", |bn| bn.iter(|| enc.decode(&client.decrypt(&a).unwrap()).unwrap()));
        g.bench_function("add", |bn| bn.iter(|| eval.add(&a, &b).unwrap()));
        g.bench_function("mul_plain", |bn| bn.iter(|| eval.mul_plain(&a, &pt).unwrap()));
        g.bench_function("mul_relin", |bn| bn.iter(|| eval.mul_relin(&a, &b).unwrap()));
        g.bench_function("rescale", |bn| bn.iter(|| eval.rescale(&prod).unwrap()));
        g.bench_function("rotate", |bn| bn.iter(|| eval.rotate(&a, 1).unwrap()));
        g.bench_function("hoisted_rotate_x8", |bn| bn.iter(|| eval.rotate_hoisted(&a, &steps).unwrap()));
        g.finish();
    }
}

criterion_group!(benches, ops);
criterion_main!(benches);
