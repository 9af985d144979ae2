//! The `polyhe` command line. Exit status: 0 on success, 1 on bad input (with a message naming the
//! file, input or node), 2 on an internal error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use polyhe::{npy, NamedPath};
use polyhe_ir::text::{self, PrintOptions};

#[derive(Parser)]
#[command(name = "polyhe", version, about = "Compile trained transformers (ONNX) into CKKS homomorphic-encryption circuits")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ImportArgs {
    /// Bind a dynamic dim, e.g. `--dim batch_size=1 --dim sequence_length=16`.
    #[arg(long = "dim", value_name = "NAME=VALUE", value_parser = polyhe::parse_dim)]
    dims: Vec<(String, usize)>,
    /// Keep decomposed LayerNorm / GELU subgraphs as they are instead of fusing them.
    #[arg(long)]
    no_recognize: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a model's inputs, outputs, op histogram, parameter count and unsupported ops.
    Inspect {
        model: PathBuf,
    },
    /// Print the IR of a model at a compilation stage.
    Dump {
        model: PathBuf,
        #[arg(long, value_enum, default_value_t = Stage::Tensor)]
        stage: Stage,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Input files; only their shapes are used, to bind dynamic dims.
        #[arg(long = "input", value_name = "[NAME=]FILE")]
        inputs: Vec<NamedPath>,
        /// Print every constant in full (the form `parse` reads back); by default constants with more
        /// than 16 elements are summarized.
        #[arg(long)]
        full: bool,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        import: ImportArgs,
    },
    /// Run a model on `.npy` inputs and write `.npy` outputs.
    Run {
        model: PathBuf,
        #[arg(long = "input", value_name = "[NAME=]FILE", required = true)]
        inputs: Vec<NamedPath>,
        #[arg(long = "output", value_name = "[NAME=]FILE")]
        outputs: Vec<NamedPath>,
        #[arg(long, value_enum, default_value_t = Mode::Reference)]
        mode: Mode,
        /// Compare each output with an expected `.npy` and print the max relative error.
        #[arg(long = "compare", value_name = "[NAME=]FILE")]
        compare: Vec<NamedPath>,
        #[command(flatten)]
        import: ImportArgs,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Time the CKKS operations (median ms) with the chain [first, scale×depth, special] bits.
    Runtime {
        #[arg(long, default_value_t = 16)]
        log_n: u32,
        #[arg(long, default_value_t = 5)]
        depth: usize,
        /// Worker threads (1 = single-threaded, the setting peers are compared at).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 40)]
        scale_bits: u32,
        #[arg(long, default_value_t = 60)]
        first_bits: u32,
        #[arg(long, default_value_t = 60)]
        special_bits: u32,
        /// Key-switching digits (default: one per ciphertext prime).
        #[arg(long)]
        dnum: Option<usize>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Print one JSON object `{"params": {...}, "ops_ms": {...}}` instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Time loading + importing a model and a reference run on its inputs.
    Frontend {
        model: PathBuf,
        #[arg(long = "input", value_name = "[NAME=]FILE", required = true)]
        inputs: Vec<NamedPath>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[command(flatten)]
        import: ImportArgs,
    },
}

#[derive(Copy, Clone, ValueEnum)]
enum Stage {
    /// The tensor IR after ONNX import and pattern recognition.
    Tensor,
}

#[derive(Copy, Clone, ValueEnum, PartialEq)]
enum Format {
    Text,
    Dot,
}

#[derive(Copy, Clone, ValueEnum)]
enum Mode {
    /// The f64 reference interpreter on the tensor IR.
    Reference,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dims_map(a: &ImportArgs) -> BTreeMap<String, usize> {
    a.dims.iter().cloned().collect()
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Inspect { model } => {
            let m = polyhe::load_model(&model)?;
            let info = polyhe_frontend::inspect(&m);
            println!("{info}");
            Ok(())
        }
        Cmd::Dump { model, stage: Stage::Tensor, format, inputs, full, out, import } => {
            let m = polyhe::load_model(&model)?;
            let names = polyhe::input_names(&m);
            let given = polyhe::read_inputs_partial(&names, &inputs)?;
            let g = polyhe::import_for_inputs(&m, &dims_map(&import), &given, !import.no_recognize)
                .with_context(|| format!("importing {}", model.display()))?;
            let s = match format {
                Format::Text => {
                    let opts = PrintOptions { elide_constants_over: if full { None } else { Some(16) } };
                    text::print(&g, &opts)
                }
                Format::Dot => text::to_dot(&g),
            };
            match out {
                Some(p) => std::fs::write(&p, s).with_context(|| format!("writing {}", p.display()))?,
                None => print!("{s}"),
            }
            Ok(())
        }
        Cmd::Run { model, inputs, outputs, mode: Mode::Reference, compare, import } => {
            let m = polyhe::load_model(&model)?;
            let in_names = polyhe::input_names(&m);
            let out_names = polyhe::output_names(&m);
            let given = polyhe::read_inputs(&in_names, &inputs)?;
            let out_paths = polyhe::assign_names("output", &out_names, &outputs)?;
            let cmp_paths = polyhe::assign_names("compare", &out_names, &compare)?;
            let g = polyhe::import_for_inputs(&m, &dims_map(&import), &given, !import.no_recognize)
                .with_context(|| format!("importing {}", model.display()))?;
            let ordered = polyhe::ordered_inputs(&g, &given)?;
            let t0 = Instant::now();
            let results = polyhe_ir::interp::run(&g, &ordered).with_context(|| format!("running {}", model.display()))?;
            let elapsed = t0.elapsed();
            for (&v, t) in g.outputs.iter().zip(&results) {
                let name = g.value_label(v);
                let stats = summary(t);
                eprintln!("{name}: {} {stats}", t.ty);
                if let Some(p) = out_paths.get(&name) {
                    npy::write(p, t)?;
                }
                if let Some(p) = cmp_paths.get(&name) {
                    let expected = npy::read(p)?;
                    let err = polyhe::max_rel_error(t, &expected).with_context(|| format!("comparing `{name}` with {}", p.display()))?;
                    println!("{name}: max relative error vs {} = {err:.3e}", p.display());
                }
            }
            eprintln!("reference run: {:.1} ms", elapsed.as_secs_f64() * 1e3);
            Ok(())
        }
        Cmd::Bench { what: BenchCmd::Runtime { log_n, depth, threads, scale_bits, first_bits, special_bits, dnum, reps, json } } => {
            if threads == 0 {
                anyhow::bail!("--threads must be at least 1");
            }
            let cfg = polyhe_runtime::BenchConfig { log_n, depth, scale_bits, first_bits, special_bits, dnum, reps };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("building the thread pool")?;
            let report = pool.install(|| polyhe_runtime::bench_ops(&cfg))?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
        Cmd::Bench { what: BenchCmd::Frontend { model, inputs, reps, import } } => {
            let reps = reps.max(1);
            let mut load_ms = Vec::new();
            let mut import_ms = Vec::new();
            let mut run_ms = Vec::new();
            for _ in 0..reps {
                let t0 = Instant::now();
                let m = polyhe::load_model(&model)?;
                load_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                let in_names = polyhe::input_names(&m);
                let given = polyhe::read_inputs(&in_names, &inputs)?;
                let t1 = Instant::now();
                let g = polyhe::import_for_inputs(&m, &dims_map(&import), &given, !import.no_recognize)?;
                import_ms.push(t1.elapsed().as_secs_f64() * 1e3);
                let ordered = polyhe::ordered_inputs(&g, &given)?;
                let t2 = Instant::now();
                polyhe_ir::interp::run(&g, &ordered)?;
                run_ms.push(t2.elapsed().as_secs_f64() * 1e3);
            }
            println!("model: {}  reps: {reps}", model.display());
            println!("{:<24} {:>10}", "phase", "median ms");
            println!("{:<24} {:>10.1}", "decode (load)", median(&mut load_ms));
            println!("{:<24} {:>10.1}", "build IR (import)", median(&mut import_ms));
            println!("{:<24} {:>10.1}", "reference run", median(&mut run_ms));
            Ok(())
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn summary(t: &polyhe_ir::Tensor) -> String {
    let v = t.to_f64_vec();
    if v.is_empty() {
        return "(empty)".into();
    }
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!("min {min:.5} max {max:.5} mean {mean:.5}")
}
