//! The `polyhe` command line. Exit status: 0 on success, 1 on bad input (with a message naming the
//! file, input or node), 2 on an internal error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

/// Compiling a real transformer allocates and frees maps of millions of entries many times; the
/// system allocator returns each large block to the kernel and pays a page fault per page when it
/// is touched again (see `main`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand, ValueEnum};
use polyhe::{npy, NamedPath};
use polyhe_ir::text::{self, PrintOptions};

#[derive(Parser)]
#[command(
    name = "polyhe",
    version,
    about = "Compile trained transformers (ONNX) into CKKS homomorphic-encryption circuits"
)]
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

#[derive(clap::Args, Clone)]
struct PolyArgs {
    /// Calibration inputs (a batch of sample inputs per model input), `[NAME=]FILE.npy`.
    #[arg(long = "calib", value_name = "[NAME=]FILE")]
    calib: Vec<NamedPath>,
    /// Max absolute error of activation polynomials (GELU, ReLU, tanh, sigmoid, erf).
    #[arg(long)]
    target_error: Option<f64>,
    /// Max relative error of exp and 1/x in softmax.
    #[arg(long)]
    softmax_target: Option<f64>,
    /// Max relative error of LayerNorm's 1/sqrt(var + eps).
    #[arg(long)]
    layer_norm_target: Option<f64>,
    /// Widen calibrated ranges by this fraction of their width on each side.
    #[arg(long)]
    margin: Option<f64>,
    /// Largest degree of one polynomial.
    #[arg(long)]
    max_degree: Option<usize>,
    /// How softmax is replaced: `exp-inverse` (the model's function) or `sigma` (σ-attention, only for
    /// models trained with it).
    #[arg(long, value_enum)]
    softmax: Option<SoftmaxArg>,
    /// Center softmax scores per row before the exponential (exact: softmax ignores a row shift;
    /// its row sums then span a far smaller ratio, so 1/sum needs fewer levels): `auto` when that
    /// lowers the depth of exp + 1/sum, `on`, `off`.
    #[arg(long, value_enum)]
    softmax_center: Option<SoftmaxCenterArg>,
    /// Subtract an encrypted row maximum from softmax scores before the exponential (a tournament
    /// of polynomial ReLU comparisons; exact up to its error bound, since softmax ignores a row
    /// shift): rows then sum to at least about 1 however far apart they are. `auto` when shallower
    /// or when the other forms' row sums span more than 1e6 (too wide for an encrypted
    /// division), `on`, `off`.
    #[arg(long, value_enum)]
    softmax_max: Option<SoftmaxCenterArg>,
    /// Skip the e-graph depth minimization.
    #[arg(long)]
    no_egraph: bool,
    /// Run the ops after the last encrypted need on the client after decryption, in exact f64:
    /// `auto` (the last non-polynomial ops feeding the outputs, e.g. a final LayerNorm + classifier)
    /// or NODE[,NODE...] (cut before these nodes). `compile` writes them to OUT/tail.ir.
    #[arg(long, value_name = "auto|NODE,...")]
    client_tail: Option<polyhe_passes::TailCut>,
}

/// CKKS backend options (`compile`, `dump --stage ckks`, `run --mode encrypted`).
#[derive(clap::Args, Clone, Default)]
struct BackendArgs {
    /// Ring degree 2^LOG_N (13..=16); default: the smallest that holds the depth. A forced ring
    /// whose chain cannot hold the depth compiles with bootstraps.
    #[arg(long)]
    log_n: Option<u32>,
    /// Scaling-prime bits; default: the largest in MIN_LOG_SCALE..=40 that fits at the chosen N.
    #[arg(long)]
    log_scale: Option<u32>,
    /// Smallest scaling prime the automatic choice may use (default: 34 bits up to N = 2^14, one
    /// more per doubling of N, as encrypted noise grows with N).
    #[arg(long)]
    min_log_scale: Option<u32>,
    /// Modulus-chain levels (at least the program's depth; spare levels cost time).
    #[arg(long)]
    levels: Option<usize>,
    /// Key-switching digits (default: the fastest key switching whose keys fit 8 GiB, else the
    /// smallest keys).
    #[arg(long)]
    dnum: Option<usize>,
    /// `128` (default): HomomorphicEncryption.org 128-bit bound. `none`: no bound, for tests that
    /// need long chains on small rings: INSECURE, the program records it.
    #[arg(long, value_enum)]
    security: Option<SecurityArg>,
    /// Galois keys for powers of two only (fewer, smaller keys; more key switches).
    #[arg(long)]
    pow2_rotations: bool,
    /// How far composing two affine maps may multiply their diagonals to save a level (default 4).
    #[arg(long)]
    fusion_growth: Option<usize>,
    /// Compile with bootstraps, refreshing to this many compute levels (the chain is
    /// `[60, s × L, bootstrapping primes]`, sparse secret), even when the depth would fit a chain;
    /// with --log-n at that ring (default: N = 2^16).
    #[arg(long, value_name = "L")]
    bootstrap_levels: Option<usize>,
    /// At most K Galois keys for the program's rotations; other steps are composed from them
    /// (the most-executed steps keep their own key).
    #[arg(long, value_name = "K")]
    max_rotation_keys: Option<usize>,
    /// Evaluation-key memory in GiB the automatic key choice stays within (default 8; 0: no limit); also bounds the digit choice.
    #[arg(long, value_name = "GIB")]
    key_budget: Option<f64>,
    /// Slot layout of encrypted tensors: `row` (row-major), `column` (the last two axes swapped:
    /// tokens fastest, one hidden column after another, so plaintext matmul diagonals repeat
    /// each weight per token) or `auto` (default: the backend chooses).
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
}

#[derive(Copy, Clone, ValueEnum, PartialEq)]
enum LayoutArg {
    Row,
    Column,
    Auto,
}

#[derive(Copy, Clone, ValueEnum, PartialEq)]
enum SecurityArg {
    #[value(name = "128")]
    Bits128,
    None,
}

impl BackendArgs {
    fn options(&self) -> polyhe_backend::BackendOptions {
        let mut o = polyhe_backend::BackendOptions {
            log_n: self.log_n,
            levels: self.levels,
            dnum: self.dnum,
            ..Default::default()
        };
        o.log_scale = self.log_scale;
        if let Some(m) = self.min_log_scale {
            o.min_log_scale = Some(m);
        }
        if self.security == Some(SecurityArg::None) {
            o.security = polyhe_backend::Security::NotSet;
        }
        o.pow2_rotations = self.pow2_rotations;
        if let Some(g) = self.fusion_growth {
            o.fusion_growth = g;
        }
        o.bootstrap_levels = self.bootstrap_levels;
        o.max_rotation_keys = self.max_rotation_keys;
        o.layout = match self.layout {
            Some(LayoutArg::Row) => Some(polyhe_backend::LayoutPolicy::RowMajor),
            Some(LayoutArg::Column) => Some(polyhe_backend::LayoutPolicy::ColumnMajor),
            Some(LayoutArg::Auto) | None => None,
        };
        if let Some(g) = self.key_budget {
            o.key_budget_bytes = (g > 0.0).then_some((g * (1u64 << 30) as f64) as u64);
        }
        o
    }

    fn warn(&self) {
        if self.security == Some(SecurityArg::None) {
            eprintln!("WARNING: --security none: parameters are NOT checked against the 128-bit bound; the keys protect nothing (tests only)");
        }
    }
}

#[derive(Copy, Clone, ValueEnum)]
enum SoftmaxArg {
    ExpInverse,
    Sigma,
}

#[derive(Copy, Clone, ValueEnum)]
enum SoftmaxCenterArg {
    Auto,
    On,
    Off,
}

impl PolyArgs {
    fn options(&self) -> polyhe_passes::PolyOptions {
        let mut o = polyhe_passes::PolyOptions::default();
        if let Some(x) = self.target_error {
            o.target_error = x;
        }
        if let Some(x) = self.softmax_target {
            o.softmax_target = x;
        }
        if let Some(x) = self.layer_norm_target {
            o.layer_norm_target = x;
        }
        if let Some(x) = self.margin {
            o.margin = x;
        }
        if let Some(x) = self.max_degree {
            o.max_degree = x;
        }
        if let Some(x) = self.softmax {
            o.softmax = match x {
                SoftmaxArg::ExpInverse => polyhe_passes::SoftmaxMethod::ExpInverse,
                SoftmaxArg::Sigma => polyhe_passes::SoftmaxMethod::Sigma,
            };
        }
        if let Some(x) = self.softmax_center {
            o.softmax_center = match x {
                SoftmaxCenterArg::Auto => polyhe_passes::SoftmaxCenter::Auto,
                SoftmaxCenterArg::On => polyhe_passes::SoftmaxCenter::Always,
                SoftmaxCenterArg::Off => polyhe_passes::SoftmaxCenter::Never,
            };
        }
        if let Some(x) = self.softmax_max {
            o.softmax_max = match x {
                SoftmaxCenterArg::Auto => polyhe_passes::SoftmaxMax::Auto,
                SoftmaxCenterArg::On => polyhe_passes::SoftmaxMax::Always,
                SoftmaxCenterArg::Off => polyhe_passes::SoftmaxMax::Never,
            };
        }
        o.egraph = !self.no_egraph;
        o
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a model's inputs, outputs, op histogram, parameter count and unsupported ops.
    Inspect { model: PathBuf },
    /// Run passes on a text IR file (the form `dump` prints) and print what each gives: the IR
    /// after it, its report, or the CKKS program. Passes: verify, fold-affine, to-poly (with
    /// --calib), egraph, depth, ckks and ckks-exact (lowering, with the backend flags below).
    Opt {
        file: PathBuf,
        /// The passes, in order, comma-separated.
        #[arg(long = "pass", value_delimiter = ',', required = true)]
        passes: Vec<String>,
        /// Run the IR verifier after every pass that changes the graph (release builds too).
        #[arg(long)]
        verify: bool,
        /// Calibration inputs for `to-poly` (a batch, or a stack of samples along an extra
        /// leading axis).
        #[arg(long = "calib", value_name = "[NAME=]FILE")]
        calib: Vec<NamedPath>,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        backend: BackendArgs,
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
        /// than 16 elements are summarized. With `--stage ckks`: the program's exact text form
        /// (every modulus, constant, level and scale; `Program::parse` reads it back).
        #[arg(long)]
        full: bool,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        poly: PolyArgs,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Calibrate and compile a model: the polynomial stage (OUT/report.json, OUT/poly.ir) and, when it
    /// fits without bootstrapping, the CKKS program (OUT/program.bin, OUT/ckks_report.json).
    Compile {
        model: PathBuf,
        #[command(flatten)]
        poly: PolyArgs,
        #[command(flatten)]
        backend: BackendArgs,
        /// Deployment inputs; only their shapes are used, to bind dynamic dims (else `--dim`, else the
        /// calibration files' shapes).
        #[arg(long = "input", value_name = "[NAME=]FILE")]
        inputs: Vec<NamedPath>,
        #[arg(short = 'o', long = "out", value_name = "OUT")]
        out: PathBuf,
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
        /// `--mode encrypted`: decrypt every bootstrapping's operands and result as they are
        /// computed and print their error against the program's plaintext simulation (where an
        /// encrypted run goes wrong, the first large error names the instruction and its node).
        #[arg(long)]
        trace: bool,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        poly: PolyArgs,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Client: make keys for a compiled program (OUT/program.bin): KEYS/secret.key and
    /// KEYS/public.key stay with the client, KEYS/eval.keys (relinearization + the exact rotation set)
    /// goes to the server.
    Keygen {
        /// The `polyhe compile` output folder.
        out: PathBuf,
        #[arg(long, value_name = "KEYS")]
        keys: PathBuf,
        /// Replace keys already in KEYS/ (refused by default: a lost secret key loses every
        /// ciphertext made with its public key).
        #[arg(long)]
        force: bool,
    },
    /// Client: encrypt inputs for a compiled program with the public key; writes CT/in<k>.ct.
    Encrypt {
        out: PathBuf,
        #[arg(long, value_name = "KEYS")]
        keys: PathBuf,
        #[arg(long = "input", value_name = "[NAME=]FILE", required = true)]
        inputs: Vec<NamedPath>,
        #[arg(short = 'o', long = "ciphertexts", value_name = "CT")]
        ciphertexts: PathBuf,
        /// Encrypt (with a warning) inputs outside the range seen in calibration, widened by
        /// --range-margin; by default they are refused: the polynomials were fitted on that range
        /// and the result would be wrong with nothing to tell.
        #[arg(long)]
        allow_out_of_range: bool,
        /// Fraction of the calibrated range's span allowed beyond each end.
        #[arg(long, default_value_t = 0.1)]
        range_margin: f64,
    },
    /// Server: evaluate a compiled program on encrypted inputs. Reads only OUT/program.bin,
    /// KEYS/eval.keys and CT/in<k>.ct (never a secret key); writes RESULT/out<k>.ct.
    Eval {
        out: PathBuf,
        /// The evaluation-keys file (KEYS/eval.keys).
        #[arg(long = "eval-keys", value_name = "FILE")]
        eval_keys: PathBuf,
        #[arg(long = "ciphertexts", value_name = "CT")]
        ciphertexts: PathBuf,
        #[arg(short = 'o', long = "result", value_name = "RESULT")]
        result: PathBuf,
    },
    /// Client: decrypt a result with the secret key and write `.npy` outputs.
    Decrypt {
        out: PathBuf,
        #[arg(long, value_name = "KEYS")]
        keys: PathBuf,
        #[arg(long = "ciphertexts", value_name = "RESULT")]
        ciphertexts: PathBuf,
        #[arg(long = "output", value_name = "[NAME=]FILE", required = true)]
        outputs: Vec<NamedPath>,
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

#[derive(Copy, Clone, ValueEnum, PartialEq)]
enum Stage {
    /// The tensor IR after ONNX import and pattern recognition.
    Tensor,
    /// The polynomial circuit (needs `--calib`).
    Poly,
    /// The CKKS program with level and scale on every instruction (needs `--calib`); for a circuit
    /// deeper than the modulus chain, the backend report with the bootstrap placement.
    Ckks,
}

#[derive(Copy, Clone, ValueEnum, PartialEq)]
enum Format {
    Text,
    Dot,
}

#[derive(Copy, Clone, ValueEnum, PartialEq)]
enum Mode {
    /// The f64 reference interpreter on the tensor IR.
    Reference,
    /// The polynomial circuit in f64 (needs `--calib`); counts polynomial inputs outside their fitted
    /// intervals.
    Poly,
    /// Keygen, encrypt, evaluate under CKKS, decrypt in one process (needs `--calib`); prints timings per
    /// phase and the error vs poly mode.
    Encrypted,
    /// The compiled CKKS program run on plaintext slot vectors (needs `--calib`): no keys, no noise,
    /// seconds instead of minutes. Checks the lowering against poly mode and prints the largest
    /// values the refreshes see.
    Simulate,
}

/// `mi_option_purge_delay` in mimalloc's option enum (v2 header, which `libmimalloc-sys` 0.1.49
/// builds).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Freed memory stays with the process instead of going back to the kernel (each page of it
    // would be zeroed again on reuse: with purging, a third of MiniLM's compile was kernel time).
    // The peak resident set is unchanged: it is still the most held at once.
    // SAFETY: sets a plain integer option; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // Bad arguments are bad input: exit 1 with clap's message (help and version exit 0).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

fn dims_map(a: &ImportArgs) -> BTreeMap<String, usize> {
    a.dims.iter().cloned().collect()
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Opt { file, passes, verify, calib, out, backend } => {
            let passes: Vec<polyhe::opt::Pass> =
                passes.iter().map(|p| p.parse()).collect::<Result<_, String>>().map_err(anyhow::Error::msg)?;
            let src = polyhe::read_regular_text(&file).with_context(|| format!("reading {}", file.display()))?;
            let g = text::parse(&src).with_context(|| format!("parsing {}", file.display()))?;
            backend.warn();
            let samples = if calib.is_empty() {
                None
            } else {
                let names: Vec<String> = g.inputs.iter().map(|&v| g.value_label(v)).collect();
                let tensors = polyhe::read_inputs(&names, &calib).context("reading --calib")?;
                Some(polyhe::graph_calibration_samples(&g, &tensors)?)
            };
            let (text_out, failure) =
                match polyhe::opt::run_passes(g, &passes, &backend.options(), verify, samples.as_ref()) {
                    Ok(t) => (t, None),
                    Err((t, e)) => (t, Some(e)),
                };
            match &out {
                Some(p) => std::fs::write(p, &text_out).with_context(|| format!("writing {}", p.display()))?,
                None => print!("{text_out}"),
            }
            match failure {
                Some(e) => Err(anyhow::anyhow!("{}: {}", file.display(), e.trim_start_matches("; ").trim())),
                None => Ok(()),
            }
        }
        Cmd::Inspect { model } => {
            let m = polyhe::load_model(&model)?;
            let info = polyhe_frontend::inspect(&m);
            println!("{info}");
            Ok(())
        }
        Cmd::Dump { model, stage, format, inputs, full, out, import, poly, backend } => {
            let m = polyhe::load_model(&model)?;
            let names = polyhe::input_names(&m);
            let given = polyhe::read_inputs_partial(&names, &inputs)?;
            let g = polyhe::import_for_inputs(&m, &dims_map(&import), &given, !import.no_recognize)
                .with_context(|| format!("importing {}", model.display()))?;
            let (mut g, tail) = split_tail(g, &poly)?;
            let print_opts = PrintOptions { elide_constants_over: if full { None } else { Some(16) } };
            // The tail goes next to the stage's output: after it on stdout, or to FILE.tail.ir.
            let write = |s: String| -> Result<()> {
                let tail_text = tail.as_ref().map(|t| match format {
                    Format::Text => text::print(&t.tail, &print_opts),
                    Format::Dot => text::to_dot(&t.tail),
                });
                match (&out, tail_text) {
                    (Some(p), t) => {
                        std::fs::write(p, s).with_context(|| format!("writing {}", p.display()))?;
                        if let Some(t) = t {
                            let tp = p.with_extension("tail.ir");
                            std::fs::write(&tp, t).with_context(|| format!("writing {}", tp.display()))?;
                            eprintln!("client tail (runs after decryption) written to {}", tp.display());
                        }
                    }
                    (None, t) => {
                        print!("{s}");
                        if let Some(t) = t {
                            print!("// ---- client tail (runs on the client after decryption) ----\n{t}");
                        }
                    }
                }
                Ok(())
            };
            let calib = if stage == Stage::Poly || stage == Stage::Ckks { Some(read_calib(&m, &poly)?) } else { None };
            if let Some(c) = &calib {
                g = compile_poly(&m, &model, &g, c, &poly, &import, tail.as_ref())?.graph;
            }
            if let (Stage::Ckks, Some(c)) = (stage, &calib) {
                backend.warn();
                let mut ck = polyhe_backend::compile_ckks(&g, &backend.options()).context("lowering to CKKS")?;
                let samples = polyhe::program_calibration_samples(&g, c, CALIBRATION_SIMULATIONS)?;
                polyhe::refresh_shifts_from_calibration(&mut ck, &g, &samples)?;
                set_tail(&mut ck.report, tail.as_ref());
                let s = match &ck.program {
                    Some(p) if full => p.print_exact(),
                    Some(p) => p.print(),
                    None => format!("{}", ck.report),
                };
                return write(s);
            }
            let s = match format {
                Format::Text => text::print(&g, &print_opts),
                Format::Dot => text::to_dot(&g),
            };
            write(s)
        }
        Cmd::Run { model, inputs, outputs, mode, compare, trace, import, poly, backend } => {
            let m = polyhe::load_model(&model)?;
            let in_names = polyhe::input_names(&m);
            let out_names = polyhe::output_names(&m);
            let given = polyhe::read_inputs(&in_names, &inputs)?;
            let out_paths = polyhe::assign_names("output", &out_names, &outputs)?;
            let cmp_paths = polyhe::assign_names("compare", &out_names, &compare)?;
            let g = polyhe::import_for_inputs(&m, &dims_map(&import), &given, !import.no_recognize)
                .with_context(|| format!("importing {}", model.display()))?;
            let ordered = polyhe::ordered_inputs(&g, &given)?;
            let (g, tail) = if mode == Mode::Reference { (g, None) } else { split_tail(g, &poly)? };
            let (g, results, elapsed) = match mode {
                Mode::Reference => {
                    let t0 = Instant::now();
                    let r =
                        polyhe_ir::interp::run(&g, &ordered).with_context(|| format!("running {}", model.display()))?;
                    (g, r, t0.elapsed())
                }
                Mode::Poly => {
                    let compiled =
                        compile_poly(&m, &model, &g, &read_calib(&m, &poly)?, &poly, &import, tail.as_ref())?;
                    eprintln!(
                        "polynomial circuit: depth {}, {} approximations",
                        compiled.report.depth.total_depth,
                        compiled.report.approximations.len()
                    );
                    let t0 = Instant::now();
                    let (r, oor) = polyhe_passes::run_poly(&compiled.graph, &ordered)
                        .with_context(|| format!("running {} in poly mode", model.display()))?;
                    let elapsed = t0.elapsed();
                    eprint!("{oor}");
                    match &tail {
                        Some(t) => {
                            let t0 = Instant::now();
                            let r = run_tail(t, r)?;
                            eprintln!("client tail: {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);
                            (t.tail.clone(), r, elapsed)
                        }
                        None => (compiled.graph, r, elapsed),
                    }
                }
                Mode::Simulate => {
                    let compiled =
                        compile_poly(&m, &model, &g, &read_calib(&m, &poly)?, &poly, &import, tail.as_ref())?;
                    backend.warn();
                    let ck = polyhe_backend::compile_ckks(&compiled.graph, &backend.options())
                        .context("lowering to CKKS")?;
                    let data = polyhe_backend::program_inputs(&compiled.graph, &ck, &ordered)?;
                    let (program, _) = ck.runnable()?;
                    let t0 = Instant::now();
                    let sim = polyhe_runtime::simulate(program, &data)?;
                    let elapsed = t0.elapsed();
                    let mut refreshed = sim.bootstrap_inputs.clone();
                    refreshed.sort_by(|a, b| b.1.total_cmp(&a.1));
                    if !refreshed.is_empty() {
                        let top: Vec<String> = refreshed
                            .iter()
                            .take(5)
                            .map(|&(i, m)| {
                                let node = program.origins.of(i).map_or("?", |o| o.node.as_str());
                                format!("{m:.3e} (instruction {i}, {node})")
                            })
                            .collect();
                        eprintln!("largest values refreshed: {}", top.join(", "));
                    }
                    let results = output_tensors(program, &compiled.graph, sim.outputs)?;
                    let (g_out, results, poly_r, _) =
                        with_poly_outputs(&compiled.graph, tail.as_ref(), results, &ordered)?;
                    print_errors_vs_poly(&g_out, &results, &poly_r)?;
                    (g_out, results, elapsed)
                }
                Mode::Encrypted => {
                    let calib = read_calib(&m, &poly)?;
                    let compiled = compile_poly(&m, &model, &g, &calib, &poly, &import, tail.as_ref())?;
                    backend.warn();
                    let mut ck = polyhe_backend::compile_ckks(&compiled.graph, &backend.options())
                        .context("lowering to CKKS")?;
                    let samples =
                        polyhe::program_calibration_samples(&compiled.graph, &calib, CALIBRATION_SIMULATIONS)?;
                    polyhe::refresh_shifts_from_calibration(&mut ck, &compiled.graph, &samples)?;
                    set_tail(&mut ck.report, tail.as_ref());
                    eprint!("{}", ck.report);
                    let data = polyhe_backend::program_inputs(&compiled.graph, &ck, &ordered)?;
                    let run = polyhe_backend::run_encrypted_with(&ck, &data, Some(&print_progress), trace)?;
                    if trace {
                        eprintln!("trace (bootstrapping operands and results: decrypted vs simulated):");
                        eprintln!(
                            "{:>8} {:<15} {:>11} {:>11} {:>11}  node",
                            "inst", "op", "max |x|", "max error", "relative"
                        );
                        for r in &run.trace {
                            eprintln!(
                                "{:>8} {:<15} {:>11.3e} {:>11.3e} {:>11.3e}  {}",
                                r.inst,
                                r.op,
                                r.max_abs,
                                r.max_error,
                                r.max_error / r.max_abs.max(1e-300),
                                r.node
                            );
                        }
                    }
                    let t = &run.timings;
                    eprintln!("evaluation cpu time by kind (summed over threads): {}", run.stats.cpu_breakdown());
                    let (program, _) = ck.runnable()?;
                    eprint!(
                        "evaluation cpu time by layer and phase (summed over threads):\n{}",
                        polyhe_backend::time_report(program, &run.stats)
                    );
                    let results = output_tensors(program, &compiled.graph, run.outputs)?;
                    let (g_out, results, poly_r, tail_s) =
                        with_poly_outputs(&compiled.graph, tail.as_ref(), results, &ordered)?;
                    let tail_phase =
                        if tail.is_some() { format!(", client tail {:.2} ms", tail_s * 1e3) } else { String::new() };
                    eprintln!(
                        "phases: context {:.2} s, keygen {:.2} s ({} rotation keys), encrypt {:.2} s, eval {:.2} s, decrypt {:.2} s{tail_phase}",
                        t.context,
                        t.keygen,
                        ck.rotation_steps.len(),
                        t.encrypt,
                        t.eval,
                        t.decrypt
                    );
                    print_errors_vs_poly(&g_out, &results, &poly_r)?;
                    (g_out, results, std::time::Duration::from_secs_f64(t.eval))
                }
            };
            for (&v, t) in g.outputs.iter().zip(&results) {
                let name = g.value_label(v);
                let stats = summary(t);
                eprintln!("{name}: {} {stats}", t.ty);
                if let Some(p) = out_paths.get(&name) {
                    npy::write(p, t)?;
                }
                if let Some(p) = cmp_paths.get(&name) {
                    let expected = npy::read(p)?;
                    let err = polyhe::max_rel_error(t, &expected)
                        .with_context(|| format!("comparing `{name}` with {}", p.display()))?;
                    println!("{name}: max relative error vs {} = {err:.3e}", p.display());
                    if let Some(c) = polyhe::worst_row_cosine(t, &expected) {
                        println!("{name}: worst per-row cosine similarity = {c:.6}");
                    }
                    if let Some((agree, rows)) = polyhe::argmax_agreement(t, &expected) {
                        println!("{name}: argmax agrees on {agree}/{rows} rows");
                    }
                }
            }
            let what = match mode {
                Mode::Reference => "reference",
                Mode::Poly => "poly",
                Mode::Encrypted => "encrypted evaluation",
                Mode::Simulate => "simulated CKKS program",
            };
            eprintln!("{what} run: {:.1} ms", elapsed.as_secs_f64() * 1e3);
            // A polynomial fed values far outside its interval diverges: NaN or infinite outputs
            // are an error (the files are written, for inspection), never a silent exit 0.
            if mode != Mode::Reference {
                let bad: Vec<String> = g
                    .outputs
                    .iter()
                    .zip(&results)
                    .filter_map(|(&v, t)| {
                        let n = t.to_f64_vec().iter().filter(|x| !x.is_finite()).count();
                        (n > 0).then(|| format!("`{}`: {n} of {} values", g.value_label(v), t.numel()))
                    })
                    .collect();
                if !bad.is_empty() {
                    anyhow::bail!(
                        "{what} gave NaN or infinite outputs ({}): an input outside the calibrated range \
                         (see the out-of-range counts above) or a diverged polynomial",
                        bad.join(", ")
                    );
                }
            }
            Ok(())
        }
        Cmd::Compile { model, poly, backend, inputs, out, import } => {
            let m = polyhe::load_model(&model)?;
            let names = polyhe::input_names(&m);
            let calib = read_calib(&m, &poly)?;
            let mut given = polyhe::read_inputs_partial(&names, &inputs)?;
            let dims = dims_map(&import);
            if given.is_empty() && dims.is_empty() {
                // Bind dims from the calibration files' shapes (a stack's first sample).
                given = polyhe::calibration_samples(&m, &calib)?.swap_remove(0);
            }
            let g = polyhe::import_for_inputs(&m, &dims, &given, !import.no_recognize)
                .with_context(|| format!("importing {}", model.display()))?;
            let (g, tail) = split_tail(g, &poly)?;
            let compiled = compile_poly(&m, &model, &g, &calib, &poly, &import, tail.as_ref())?;
            // The client checks its inputs against the calibrated ranges before encrypting.
            let input_ranges: BTreeMap<String, polyhe_backend::InputRange> = calib
                .iter()
                .filter(|(_, t)| t.dtype().is_float())
                .filter_map(|(n, t)| Some((n.clone(), polyhe_backend::InputRange::of(&t.to_f64_vec())?)))
                .collect();
            // The backend sizes its refreshes by simulating the program on calibration samples.
            let samples = polyhe::program_calibration_samples(&compiled.graph, &calib, CALIBRATION_SIMULATIONS)?;
            // The model, its import and the calibration data are not needed past this point:
            // dropped before lowering (BERT-base: a gigabyte of weights in each form).
            drop((m, g, calib, given));
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let tail_path = out.join("tail.ir");
            // The tail's digest goes into the client plan, which binds it to the program.
            let tail_digest = match &tail {
                Some(t) => {
                    let text = text::print(&t.tail, &PrintOptions::default());
                    std::fs::write(&tail_path, &text).with_context(|| format!("writing {}", tail_path.display()))?;
                    Some(polyhe_backend::program_digest(text.as_bytes()))
                }
                // A tail from an earlier compile would make `decrypt` run the wrong ops.
                None if tail_path.exists() => {
                    std::fs::remove_file(&tail_path)
                        .with_context(|| format!("removing the stale {}", tail_path.display()))?;
                    None
                }
                None => None,
            };
            let report_path = out.join("report.json");
            std::fs::write(&report_path, compiled.report.to_json())
                .with_context(|| format!("writing {}", report_path.display()))?;
            let ir_path = out.join("poly.ir");
            print!("{}", compiled.report);
            backend.warn();
            // poly.ir (hundreds of MB of weights as text for a real model: seconds) is written on a
            // second thread while the backend lowers.
            let (ck, written) = std::thread::scope(|scope| {
                let writer = scope.spawn(|| write_ir(&ir_path, &compiled.graph));
                let ck = polyhe_backend::compile_ckks(&compiled.graph, &backend.options()).and_then(|mut ck| {
                    polyhe::refresh_shifts_from_calibration(&mut ck, &compiled.graph, &samples)
                        .map_err(|e| polyhe_backend::BackendError::Internal(format!("{e:#}")))?;
                    Ok(ck)
                });
                (ck, writer.join())
            });
            written
                .map_err(|_| anyhow::anyhow!("printing {} failed", ir_path.display()))?
                .with_context(|| format!("writing {}", ir_path.display()))?;
            println!("wrote {} and {}", report_path.display(), ir_path.display());
            if tail.is_some() {
                println!("wrote {} (run by `polyhe decrypt` after decryption)", tail_path.display());
            }
            let mut ck = ck.context("lowering to CKKS")?;
            set_tail(&mut ck.report, tail.as_ref());
            // An OUT/ from an older polyhe may still hold the options `encrypt` re-lowered with.
            let _ = std::fs::remove_file(out.join("backend.args"));
            let ck_path = out.join("ckks_report.json");
            std::fs::write(&ck_path, ck.report.to_json()).with_context(|| format!("writing {}", ck_path.display()))?;
            print!("{}", ck.report);
            match &ck.program {
                Some(p) => {
                    let prog_path = out.join("program.bin");
                    // What `encrypt` needs, so it never lowers again; the head (MiniLM's embedding
                    // table: 156 MB of text) is printed while the program is written.
                    let bytes = p.to_bytes();
                    let (mut plan, head) = polyhe_backend::ClientPlan::new(&compiled.graph, &ck, &bytes)?;
                    plan.input_ranges = input_ranges;
                    let (plan_path, head_path) = (out.join("client_plan.json"), out.join("client_head.ir"));
                    let (head_written, written) = std::thread::scope(|scope| {
                        let printer = scope.spawn(|| write_ir_with_digest(&head_path, &head));
                        let written = std::fs::write(&prog_path, &bytes);
                        (printer.join(), written)
                    });
                    written.with_context(|| format!("writing {}", prog_path.display()))?;
                    // The head and tail bound to the program through the plan (the head's digest
                    // taken as it is streamed to its file).
                    plan.head_digest = head_written
                        .map_err(|_| anyhow::anyhow!("printing {} failed", head_path.display()))?
                        .with_context(|| format!("writing {}", head_path.display()))?;
                    plan.tail_digest = tail_digest;
                    std::fs::write(&plan_path, plan.to_json())
                        .with_context(|| format!("writing {}", plan_path.display()))?;
                    println!(
                        "wrote {}, {} and the client's {} + {}",
                        ck_path.display(),
                        prog_path.display(),
                        plan_path.display(),
                        head_path.display()
                    );
                }
                None => println!(
                    "wrote {}; no program.bin: no parameter set holds the circuit, even with bootstrapping",
                    ck_path.display()
                ),
            }
            Ok(())
        }
        Cmd::Keygen { out, keys, force } => {
            let (program, ctx) = load_program(&out)?;
            let existing: Vec<String> = ["secret.key", "public.key", "eval.keys"]
                .iter()
                .filter(|f| std::fs::symlink_metadata(keys.join(f)).is_ok())
                .map(|f| keys.join(f).display().to_string())
                .collect();
            if !existing.is_empty() && !force {
                anyhow::bail!(
                    "{} already exist(s): refusing to replace keys (a new secret key cannot decrypt what the old public key encrypted); pass --force to replace them",
                    existing.join(", ")
                );
            }
            let t0 = Instant::now();
            let client = polyhe_runtime::ClientKeys::generate(&ctx)?;
            let steps = program.rotation_key_levels();
            // Each rotation key restricted to the levels its rotations run at; bootstrapping
            // programs also need the conjugation key.
            let eval_keys = client.evaluation_keys_at_levels(&steps, program.needs_conjugation())?;
            std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
            client.secret_key().write_to(keys.join("secret.key"))?;
            client.public_key().write_to(keys.join("public.key"))?;
            eval_keys.write_to(keys.join("eval.keys"))?;
            let bytes = std::fs::metadata(keys.join("eval.keys")).map(|m| m.len()).unwrap_or(0);
            println!(
                "keys for {} rotation steps in {:.2} s; wrote {}/{{secret.key, public.key}} (client) and {}/eval.keys ({:.1} MiB, for the server)",
                steps.len(),
                t0.elapsed().as_secs_f64(),
                keys.display(),
                keys.display(),
                bytes as f64 / (1u64 << 20) as f64
            );
            Ok(())
        }
        Cmd::Encrypt { out, keys, inputs, ciphertexts, allow_out_of_range, range_margin } => {
            let (program, ctx, bytes) = load_program_bytes(&out)?;
            let (plan, head) = load_client_plan(&out, &bytes)?;
            let names: Vec<String> = head.inputs.iter().map(|&v| head.value_label(v)).collect();
            let given = polyhe::read_inputs(&names, &inputs)?;
            let ordered = polyhe::ordered_inputs(&head, &given)?;
            if !(range_margin.is_finite() && range_margin >= 0.0) {
                anyhow::bail!("--range-margin {range_margin}: must be a fraction ≥ 0");
            }
            let named: Vec<(String, &polyhe_ir::Tensor)> = names.iter().cloned().zip(&ordered).collect();
            let violations = plan.range_violations(&named, range_margin);
            if !violations.is_empty() {
                let list = violations.join("\n  ");
                if !allow_out_of_range {
                    anyhow::bail!(
                        "inputs outside the range the model was calibrated on (the encrypted result would be wrong):\n  {list}\n\
                         recompile with calibration data that covers such inputs, or pass --allow-out-of-range to encrypt anyway"
                    );
                }
                eprintln!("WARNING: encrypting inputs outside the calibrated range (--allow-out-of-range):\n  {list}");
            }
            let data = plan.inputs(&head, &ordered)?;
            let public = polyhe_runtime::PublicKey::read_from(&ctx, keys.join("public.key"))?;
            let encryptor = polyhe_runtime::Encryptor::new(&ctx, public)?;
            let cts = polyhe_runtime::encrypt_inputs(&program, &ctx, &encryptor, &data)?;
            std::fs::create_dir_all(&ciphertexts).with_context(|| format!("creating {}", ciphertexts.display()))?;
            for (k, ct) in cts.iter().enumerate() {
                ct.write_to(ciphertexts.join(format!("in{k}.ct")))?;
            }
            println!("wrote {} ciphertexts to {}", cts.len(), ciphertexts.display());
            Ok(())
        }
        Cmd::Eval { out, eval_keys, ciphertexts, result } => {
            let (program, ctx) = load_program(&out)?;
            let keys = polyhe_runtime::EvaluationKeys::read_from(&ctx, &eval_keys)?;
            let evaluator = polyhe_runtime::Evaluator::new(&ctx, keys)?;
            let cts = (0..program.num_input_regs())
                .map(|k| polyhe_runtime::Ciphertext::read_from(&ctx, ciphertexts.join(format!("in{k}.ct"))))
                .collect::<Result<Vec<_>, _>>()?;
            let t0 = Instant::now();
            let (outs, stats) =
                polyhe_runtime::execute_with_progress(&program, &evaluator, cts, Some(&print_progress))?;
            eprintln!("cpu time by kind (summed over threads): {}", stats.cpu_breakdown());
            if !program.origins.is_empty() {
                eprint!(
                    "cpu time by layer and phase (summed over threads):\n{}",
                    polyhe_backend::time_report(&program, &stats)
                );
            }
            std::fs::create_dir_all(&result).with_context(|| format!("creating {}", result.display()))?;
            for (k, ct) in outs.iter().enumerate() {
                ct.write_to(result.join(format!("out{k}.ct")))?;
            }
            println!(
                "evaluated in {:.2} s; wrote {} ciphertexts to {}",
                t0.elapsed().as_secs_f64(),
                outs.len(),
                result.display()
            );
            Ok(())
        }
        Cmd::Decrypt { out, keys, ciphertexts, outputs } => {
            let (program, ctx) = load_program(&out)?;
            let secret = polyhe_runtime::SecretKey::read_from(&ctx, keys.join("secret.key"))?;
            let public = polyhe_runtime::PublicKey::read_from(&ctx, keys.join("public.key"))?;
            let client = polyhe_runtime::ClientKeys::from_parts(&ctx, secret, public)?;
            let n_out: usize = program.outputs.iter().map(|o| o.regs.len()).sum();
            let cts = (0..n_out)
                .map(|k| polyhe_runtime::Ciphertext::read_from(&ctx, ciphertexts.join(format!("out{k}.ct"))))
                .collect::<Result<Vec<_>, _>>()?;
            let data = polyhe_runtime::decrypt_outputs(&program, &ctx, &client, &cts)?;
            let tail_path = out.join("tail.ir");
            if let Some(src) = read_bound_tail(&out, &tail_path)? {
                return decrypt_with_tail(&program, data, &tail_path, &src, &outputs);
            }
            let names: Vec<String> = program.outputs.iter().map(|p| p.name.clone()).collect();
            let paths = polyhe::assign_names("output", &names, &outputs)?;
            for (port, values) in program.outputs.iter().zip(data) {
                let t = polyhe_ir::Tensor::float(polyhe_ir::DType::F32, port.layout.shape().to_vec(), values)?;
                if let Some(p) = paths.get(&port.name) {
                    npy::write(p, &t)?;
                    println!("{}: {} -> {}", port.name, t.ty, p.display());
                }
            }
            Ok(())
        }
        Cmd::Bench {
            what: BenchCmd::Runtime { log_n, depth, threads, scale_bits, first_bits, special_bits, dnum, reps, json },
        } => {
            if threads == 0 {
                anyhow::bail!("--threads must be at least 1");
            }
            let cfg = polyhe_runtime::BenchConfig { log_n, depth, scale_bits, first_bits, special_bits, dnum, reps };
            let pool =
                rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("building the thread pool")?;
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

/// The error and its causes joined by `: `, a cause left out when the message before it already
/// ends with it (errors that print their source, as `cannot read X: <io error>`, are not repeated).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.ends_with(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}

/// Loads OUT/program.bin, validates it, and builds the CKKS context of its parameters.
fn load_program(out: &std::path::Path) -> Result<(polyhe_runtime::Program, polyhe_runtime::CkksContext)> {
    load_program_bytes(out).map(|(p, c, _)| (p, c))
}

/// [`load_program`] and the bytes it was read from (the client plan's digest is over them).
fn load_program_bytes(
    out: &std::path::Path,
) -> Result<(polyhe_runtime::Program, polyhe_runtime::CkksContext, Vec<u8>)> {
    let path = out.join("program.bin");
    let bytes = polyhe::read_regular_file(&path).with_context(|| {
        format!("reading {} (made by `polyhe compile` when the circuit fits without bootstrapping)", path.display())
    })?;
    let program = polyhe_runtime::Program::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    program.validate().with_context(|| format!("validating {}", path.display()))?;
    if program.params.security == polyhe_runtime::Security::NotSet {
        eprintln!(
            "WARNING: {} was compiled with --security none: its keys protect nothing (tests only)",
            path.display()
        );
    }
    let ctx = polyhe_runtime::CkksContext::new(program.params.to_params()?)?;
    Ok((program, ctx, bytes))
}

/// Decrypted program outputs as tensors of the graph's output types.
fn output_tensors(
    program: &polyhe_runtime::Program,
    g: &polyhe_ir::Graph,
    data: Vec<Vec<f64>>,
) -> Result<Vec<polyhe_ir::Tensor>> {
    program
        .outputs
        .iter()
        .zip(&g.outputs)
        .zip(data)
        .map(|((p, &v), d)| Ok(polyhe_ir::Tensor::float(g.ty(v).dtype, p.layout.shape().to_vec(), d)?))
        .collect()
}

/// OUT/client_plan.json and OUT/client_head.ir, checked against the program bytes they were
/// written with (a plan from another compile would pack inputs for another program).
fn load_client_plan(
    out: &std::path::Path,
    program_bytes: &[u8],
) -> Result<(polyhe_backend::ClientPlan, polyhe_ir::Graph)> {
    let plan_path = out.join("client_plan.json");
    let text = match polyhe::read_regular_text(&plan_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} is missing: {} was compiled by an older polyhe or is incomplete (recompile with `polyhe compile`)",
            plan_path.display(),
            out.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", plan_path.display())),
    };
    let plan = polyhe_backend::ClientPlan::from_json(&text)
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", plan_path.display()))?;
    if plan.program_digest != polyhe_backend::program_digest(program_bytes) {
        anyhow::bail!(
            "{} does not belong to {} (they come from different compiles: recompile with `polyhe compile`)",
            plan_path.display(),
            out.join("program.bin").display()
        );
    }
    let head_path = out.join("client_head.ir");
    let src = polyhe::read_regular_text(&head_path).with_context(|| format!("reading {}", head_path.display()))?;
    if !plan.head_digest.is_empty() && plan.head_digest != polyhe_backend::program_digest(src.as_bytes()) {
        anyhow::bail!(
            "{} does not belong to {} (edited, or from another compile: recompile with `polyhe compile`)",
            head_path.display(),
            plan_path.display()
        );
    }
    let head = text::parse(&src).with_context(|| format!("parsing {}", head_path.display()))?;
    polyhe_ir::verify::verify(&head).map_err(|e| anyhow::anyhow!("{}: {e}", head_path.display()))?;
    Ok((plan, head))
}

/// Splits off the client tail when `--client-tail` is given: (the graph to encrypt, the split).
fn split_tail(g: polyhe_ir::Graph, poly: &PolyArgs) -> Result<(polyhe_ir::Graph, Option<polyhe_passes::ClientTail>)> {
    match &poly.client_tail {
        None => Ok((g, None)),
        Some(cut) => {
            let split = polyhe_passes::split_client_tail(&g, cut)?;
            eprint!("{}", split.summary);
            Ok((split.encrypted.clone(), Some(split)))
        }
    }
}

/// Records the tail's ops in the CKKS report (what runs where).
fn set_tail(report: &mut polyhe_backend::BackendReport, tail: Option<&polyhe_passes::ClientTail>) {
    if let Some(t) = tail {
        report.client_tail = t.summary.tail_ops.clone();
    }
}

/// Runs the tail (exact f64 reference interpreter) on the encrypted part's outputs.
fn run_tail(t: &polyhe_passes::ClientTail, cut: Vec<polyhe_ir::Tensor>) -> Result<Vec<polyhe_ir::Tensor>> {
    polyhe_ir::interp::run(&t.tail, &cut).context("running the client tail")
}

/// `decrypt`: OUT/tail.ir's text, read once, when it exists. It must be the one the compile wrote,
/// as OUT/client_plan.json records it (absent when the compile made none). Plans from before the
/// digest was recorded, or an OUT/ without a plan, are not checked.
fn read_bound_tail(out: &std::path::Path, tail_path: &std::path::Path) -> Result<Option<String>> {
    let src = if tail_path.exists() {
        Some(polyhe::read_regular_text(tail_path).with_context(|| format!("reading {}", tail_path.display()))?)
    } else {
        None
    };
    let plan_path = out.join("client_plan.json");
    let Ok(text) = polyhe::read_regular_text(&plan_path) else { return Ok(src) };
    let plan = polyhe_backend::ClientPlan::from_json(&text)
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", plan_path.display()))?;
    if plan.head_digest.is_empty() {
        return Ok(src);
    }
    let tail = src.as_ref().map(|s| polyhe_backend::program_digest(s.as_bytes()));
    match (&plan.tail_digest, &tail) {
        (Some(want), Some(got)) if want == got => Ok(src),
        (None, None) => Ok(src),
        (Some(_), None) => anyhow::bail!(
            "{} is missing: the compile that made {} ran the model's last ops on the client",
            tail_path.display(),
            plan_path.display()
        ),
        (None, Some(_)) => anyhow::bail!(
            "{} does not belong to {}: that compile made no client tail (remove it, or recompile)",
            tail_path.display(),
            plan_path.display()
        ),
        (Some(_), Some(_)) => anyhow::bail!(
            "{} does not belong to {} (edited, or from another compile: recompile with `polyhe compile`)",
            tail_path.display(),
            plan_path.display()
        ),
    }
}

/// `decrypt` with OUT/tail.ir: feeds the decrypted outputs to the tail by name and writes the
/// tail's outputs (the model's).
fn decrypt_with_tail(
    program: &polyhe_runtime::Program,
    data: Vec<Vec<f64>>,
    tail_path: &std::path::Path,
    src: &str,
    outputs: &[NamedPath],
) -> Result<()> {
    let tail = text::parse(src).with_context(|| format!("parsing {}", tail_path.display()))?;
    polyhe_ir::verify::verify(&tail).with_context(|| format!("verifying {}", tail_path.display()))?;
    let by_name: BTreeMap<&str, (&polyhe_runtime::Port, Vec<f64>)> =
        program.outputs.iter().zip(data).map(|(p, d)| (p.name.as_str(), (p, d))).collect();
    let cut = tail
        .inputs
        .iter()
        .map(|&v| {
            let name = tail.value_label(v);
            let (port, d) = by_name
                .get(name.as_str())
                .with_context(|| format!("{}: the program has no output `{name}`", tail_path.display()))?;
            if port.layout.shape() != tail.ty(v).shape.as_slice() {
                anyhow::bail!(
                    "{}: `{name}` has shape {:?} in the tail, {:?} in the program",
                    tail_path.display(),
                    tail.ty(v).shape,
                    port.layout.shape()
                );
            }
            Ok(polyhe_ir::Tensor::float(tail.ty(v).dtype, tail.ty(v).shape.clone(), d.clone())?)
        })
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let results = polyhe_ir::interp::run(&tail, &cut).context("running the client tail")?;
    eprintln!("client tail ({}): {:.2} ms", tail_path.display(), t0.elapsed().as_secs_f64() * 1e3);
    let names: Vec<String> = tail.outputs.iter().map(|&v| tail.value_label(v)).collect();
    let paths = polyhe::assign_names("output", &names, outputs)?;
    for (name, t) in names.iter().zip(&results) {
        if let Some(p) = paths.get(name) {
            npy::write(p, t)?;
            println!("{name}: {} -> {}", t.ty, p.display());
        }
    }
    Ok(())
}

/// Reads the `--calib` files (every model input needs one).
/// A CKKS run's outputs and poly mode's on the same inputs, both through the client tail when
/// there is one (so the error is on the model's outputs): the graph whose outputs they are, the
/// run's, poly mode's, and the seconds the run's tail took.
fn with_poly_outputs(
    graph: &polyhe_ir::Graph,
    tail: Option<&polyhe_passes::ClientTail>,
    results: Vec<polyhe_ir::Tensor>,
    inputs: &[polyhe_ir::Tensor],
) -> Result<(polyhe_ir::Graph, Vec<polyhe_ir::Tensor>, Vec<polyhe_ir::Tensor>, f64)> {
    let (poly, _) = polyhe_passes::run_poly(graph, inputs)?;
    Ok(match tail {
        Some(t) => {
            let t0 = Instant::now();
            let results = run_tail(t, results)?;
            let secs = t0.elapsed().as_secs_f64();
            (t.tail.clone(), results, run_tail(t, poly)?, secs)
        }
        None => (graph.clone(), results, poly, 0.0),
    })
}

/// `NAME: max relative error vs poly mode = E` per output.
fn print_errors_vs_poly(g: &polyhe_ir::Graph, results: &[polyhe_ir::Tensor], poly: &[polyhe_ir::Tensor]) -> Result<()> {
    for ((a, b), &v) in results.iter().zip(poly).zip(&g.outputs) {
        eprintln!("{}: max relative error vs poly mode = {:.3e}", g.value_label(v), polyhe::max_rel_error(a, b)?);
    }
    Ok(())
}

/// Calibration samples the compiler simulates a CKKS program on to size its refreshes.
const CALIBRATION_SIMULATIONS: usize = 8;

fn read_calib(m: &polyhe_frontend::OnnxModel, poly: &PolyArgs) -> Result<BTreeMap<String, polyhe_ir::Tensor>> {
    if poly.calib.is_empty() {
        anyhow::bail!(
            "the polynomial stage needs calibration inputs: give --calib [NAME=]FILE.npy (a batch of sample inputs)"
        );
    }
    polyhe::read_inputs(&polyhe::input_names(m), &poly.calib).context("reading --calib")
}

/// Calibrates `m` on the `calib` inputs and compiles the imported graph `g` to the polynomial stage.
fn compile_poly(
    m: &polyhe_frontend::OnnxModel,
    path: &std::path::Path,
    g: &polyhe_ir::Graph,
    calib: &BTreeMap<String, polyhe_ir::Tensor>,
    poly: &PolyArgs,
    import: &ImportArgs,
    tail: Option<&polyhe_passes::ClientTail>,
) -> Result<polyhe_passes::PolyResult> {
    let cal = polyhe::calibrate_model(m, calib, !import.no_recognize)
        .with_context(|| format!("calibrating {}", path.display()))?;
    let mut opts = poly.options();
    opts.verify = cfg!(debug_assertions);
    let mut res = polyhe_passes::compile_to_poly(g, &cal, &opts)
        .with_context(|| format!("compiling {} to the polynomial stage", path.display()))?;
    res.report.client_tail = tail.map(|t| t.summary.clone());
    Ok(res)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The evaluation's progress line (rewritten in place): a bar over the estimated time (over the
/// instructions until there is an estimate), bootstrappings done, elapsed time and time left.
fn print_progress(p: &polyhe_runtime::ProgressReport) {
    const WIDTH: usize = 24;
    let fraction = match p.remaining_seconds {
        Some(r) if p.seconds + r > 0.0 => p.seconds / (p.seconds + r),
        _ => p.done as f64 / p.total.max(1) as f64,
    };
    let filled = ((fraction * WIDTH as f64).round() as usize).min(WIDTH);
    let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
    let clock = |s: f64| {
        let s = s.max(0.0).round() as u64;
        if s >= 60 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{s}s")
        }
    };
    let boots = if p.bootstraps_total > 0 {
        format!(", {}/{} bootstraps", p.bootstraps_done, p.bootstraps_total)
    } else {
        String::new()
    };
    let eta = match (p.done == p.total, p.remaining_seconds) {
        (true, _) => String::new(),
        (false, Some(r)) => format!(", about {} left", clock(r)),
        (false, None) if p.bootstraps_done == 0 && p.bootstraps_total > 0 => {
            ", time left: estimated after the first bootstrap".to_string()
        }
        (false, None) => String::new(),
    };
    let line = format!("evaluating [{bar}] {}/{} instructions{boots}, {}{eta}", p.done, p.total, clock(p.seconds));
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r{line}\x1b[K");
        if p.done == p.total {
            eprintln!();
        }
    } else {
        // A log gets a line a minute, not a carriage return every two seconds.
        static LAST_MINUTE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let minute = (p.seconds / 60.0) as u64 + 1;
        if p.done == p.total || LAST_MINUTE.swap(minute, std::sync::atomic::Ordering::Relaxed) != minute {
            eprintln!("{line}");
        }
    }
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

/// `g` in the text form, streamed to `path` (a real model's weights are gigabytes of text).
/// [`write_ir`] returning the [`polyhe_backend::program_digest`] of the bytes written.
fn write_ir_with_digest(path: &std::path::Path, g: &polyhe_ir::Graph) -> std::io::Result<String> {
    struct Digesting<W> {
        inner: W,
        digest: polyhe_backend::Digest,
    }
    impl<W: std::io::Write> std::io::Write for Digesting<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.digest.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut w = Digesting { inner: file, digest: polyhe_backend::Digest::default() };
    text::write(g, &PrintOptions::default(), &mut w)?;
    std::io::Write::flush(&mut w)?;
    Ok(w.digest.hex())
}

fn write_ir(path: &std::path::Path, g: &polyhe_ir::Graph) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    text::write(g, &PrintOptions::default(), &mut w)
}
