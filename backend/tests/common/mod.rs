//! Test glue: compile a poly-stage graph, run it encrypted, compare with the reference interpreter.
#![allow(dead_code)]

use polyhe_backend::{compile_ckks, BackendOptions, CkksCompiled};
use polyhe_ir::{interp, DType, Graph, Tensor};
use polyhe_runtime::{
    decrypt_outputs, encrypt_inputs, execute_with_stats, CkksContext, ClientKeys, Evaluator, ExecStats,
};

/// Deterministic pseudo-random values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor(shape: &[usize], v: Vec<f64>) -> Tensor {
    Tensor::float(DType::F32, shape.to_vec(), v.into_iter().map(|x| x as f32 as f64).collect()).unwrap()
}

pub struct Outcome {
    pub compiled: CkksCompiled,
    /// Decrypted outputs (row-major).
    pub outputs: Vec<Vec<f64>>,
    pub rel_err: f64,
    pub stats: ExecStats,
}

/// Compiles `g`, runs it encrypted on `inputs`, returns the worst output error relative to the
/// largest reference magnitude of that output.
pub fn run_encrypted(g: &Graph, inputs: &[Tensor], opts: &BackendOptions) -> Outcome {
    let t = std::time::Instant::now();
    let compiled = compile_ckks(g, opts).expect("compile");
    let t_compile = t.elapsed();
    let (program, params) = compiled.runnable().expect("runnable");
    program.validate().expect("valid");
    let ctx = CkksContext::new(params.clone()).unwrap();
    let keys = ClientKeys::generate(&ctx).unwrap();
    let t = std::time::Instant::now();
    let ek = keys.evaluation_keys_at_levels(&program.rotation_key_levels(), program.needs_conjugation()).unwrap();
    let ev = Evaluator::new(&ctx, ek).unwrap();
    let t_keygen = t.elapsed();
    let data = polyhe_backend::program_inputs(g, &compiled, inputs).unwrap();
    let cts = encrypt_inputs(program, &ctx, &keys.encryptor(), &data).unwrap();
    let t = std::time::Instant::now();
    let (out, stats) = execute_with_stats(program, &ev, cts).unwrap();
    let t_eval = t.elapsed();
    eprintln!(
        "{}: compile {:.2?}, keygen ({} rotation keys) {:.2?}, eval {:.2?} ({} waves, {} rotations, {} hoists)",
        g.name,
        t_compile,
        compiled.rotation_steps.len(),
        t_keygen,
        t_eval,
        stats.waves,
        stats.rotations,
        stats.hoists
    );
    let got = decrypt_outputs(program, &ctx, &keys, &out).unwrap();
    let want = interp::run(g, inputs).unwrap();
    let mut rel_err: f64 = 0.0;
    for (w, o) in want.iter().zip(&got) {
        let w = w.to_f64_vec();
        assert_eq!(w.len(), o.len());
        let mag = w.iter().fold(1e-9f64, |m, x| m.max(x.abs()));
        let err = w.iter().zip(o).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        rel_err = rel_err.max(err / mag);
    }
    Outcome { compiled, outputs: got, rel_err, stats }
}

/// The first row of `models/<name>/expected/<output>.npy` (onnxruntime's outputs).
pub fn expected_first_row(name: &str, output: &str) -> Vec<f64> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
        .join("expected")
        .join(format!("{output}.npy"));
    let t = read_npy(&p);
    let per: usize = t.shape().iter().skip(1).product();
    t.to_f64_vec()[..per].to_vec()
}

/// A shipped model compiled to the polynomial stage at batch size 1, with its first sample.
pub struct ShippedPoly {
    pub poly: Graph,
    /// The first sample, in graph-input order.
    pub inputs: Vec<Tensor>,
    /// The client tail (`shipped_poly_with_tail`): the ops the client runs after decryption, in
    /// exact f64, on `poly`'s outputs; `None` when `poly` is the whole model.
    pub tail: Option<Graph>,
}

fn read_npy(path: &std::path::Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else { panic!("structured dtype") };
    match ts.type_char() {
        npyz::TypeChar::Int => {
            let v: Vec<i64> = npy.into_vec().unwrap();
            Tensor::int(DType::I64, shape, v).unwrap()
        }
        _ => {
            let v: Vec<f32> = npy.into_vec().unwrap();
            Tensor::float(DType::F32, shape, v.into_iter().map(f64::from).collect()).unwrap()
        }
    }
}

fn first_sample(t: &Tensor) -> Tensor {
    let mut shape = t.shape().to_vec();
    let per: usize = shape.iter().skip(1).product();
    shape[0] = 1;
    let mut ty = t.ty.clone();
    ty.shape = shape;
    let data = match &t.data {
        polyhe_ir::Data::Float(v) => polyhe_ir::Data::Float(v[..per].to_vec()),
        polyhe_ir::Data::Int(v) => polyhe_ir::Data::Int(v[..per].to_vec()),
        polyhe_ir::Data::Bool(v) => polyhe_ir::Data::Bool(v[..per].to_vec()),
    };
    Tensor::new(ty, data).unwrap()
}

/// Loads `models/<name>`, calibrates on `calib/*.npy`, compiles to the poly stage for the shapes of
/// the first sample of `inputs/*.npy` (files are named after the model inputs).
pub fn shipped_poly(name: &str) -> ShippedPoly {
    shipped(name, None)
}

/// [`shipped_poly`] with the client tail split off before polynomial replacement, as
/// `--client-tail auto` does: `poly` is the encrypted part, `tail` runs after decryption.
pub fn shipped_poly_with_tail(name: &str) -> ShippedPoly {
    shipped(name, Some(polyhe_passes::TailCut::Auto))
}

fn shipped(name: &str, cut: Option<polyhe_passes::TailCut>) -> ShippedPoly {
    use polyhe_frontend::{import, load, ImportOptions};
    use std::collections::BTreeMap;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models").join(name);
    let m = load(&dir.join("model.onnx")).unwrap();
    let read = |sub: &str| -> BTreeMap<String, Tensor> {
        std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), read_npy(&p)))
            .collect()
    };
    let calib = read("calib");
    let inputs: BTreeMap<String, Tensor> = read("inputs").iter().map(|(n, t)| (n.clone(), first_sample(t))).collect();
    let imp = |ts: &BTreeMap<String, Tensor>| {
        let opts = ImportOptions {
            input_shapes: ts.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect(),
            recognize: true,
            ..Default::default()
        };
        let g = import(&m, &opts).unwrap();
        let ordered: Vec<Tensor> = g.inputs.iter().map(|&v| ts[&g.value_label(v)].clone()).collect();
        (g, ordered)
    };
    let (cg, cal_in) = imp(&calib);
    let cal = polyhe_passes::calibrate(&cg, &[cal_in]).unwrap();
    let (g, ordered) = imp(&inputs);
    let (g, tail) = match cut {
        Some(c) => {
            let split = polyhe_passes::split_client_tail(&g, &c).unwrap();
            (split.encrypted, Some(split.tail))
        }
        None => (g, None),
    };
    let poly = polyhe_passes::compile_to_poly(&g, &cal, &polyhe_passes::PolyOptions::default()).unwrap().graph;
    ShippedPoly { poly, inputs: ordered, tail }
}
