//! Prints `bench_ops` timings: `cargo run --release -p polyhe-runtime --example bench_ops -- --log-n 14
//! --depth 5 --threads 1 --reps 7 [--dnum D] [--json]`.

use polyhe_runtime::{bench_ops, BenchConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = BenchConfig::default();
    let mut threads = 1usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--log-n" => cfg.log_n = val()?.parse()?,
            "--depth" => cfg.depth = val()?.parse()?,
            "--reps" => cfg.reps = val()?.parse()?,
            "--dnum" => cfg.dnum = Some(val()?.parse()?),
            "--threads" => threads = val()?.parse()?,
            "--json" => json = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let report = pool.install(|| bench_ops(&cfg))?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
