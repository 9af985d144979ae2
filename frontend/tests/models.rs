//! The shipped models in `models/<name>/` import (with and without recognition), recognition fuses the
//! LayerNorm/GELU subgraphs each model is known to contain, and the reference interpreter reproduces
//! the onnxruntime outputs stored next to them (a frontend check; the full end-to-end suite lives in
//! the workspace `tests/`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::op_counts;
use polyhe_frontend::{import, inspect, load, ImportOptions};
use polyhe_ir::{DType, Tensor};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn read_npy(path: &Path, dtype: DType) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if dtype.is_float() {
        let v: Vec<f32> = npy.into_vec().unwrap();
        Tensor::float(dtype, shape, v.into_iter().map(f64::from).collect()).unwrap()
    } else {
        let v: Vec<i64> = npy.into_vec().unwrap();
        Tensor::int(dtype, shape, v).unwrap()
    }
}

/// Imports `models/<name>`, runs it on `inputs/` and compares with `expected/`; returns IR op counts.
fn check_model(name: &str, recognize: bool) -> BTreeMap<&'static str, usize> {
    check_files(&models_dir().join(name), "model.onnx", "inputs", "expected", recognize)
}

fn check_files(
    dir: &Path,
    file: &str,
    inputs_dir: &str,
    expected_dir: &str,
    recognize: bool,
) -> BTreeMap<&'static str, usize> {
    let name = dir.join(file).display().to_string();
    let start = std::time::Instant::now();
    let m = load(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{name}: loaded in {:?}", start.elapsed());
    let info = inspect(&m);
    assert!(info.unsupported.is_empty(), "{info}");
    eprintln!("{info}");
    let gp = m.proto.graph.as_ref().unwrap();
    let inits: Vec<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut opts = ImportOptions { recognize, ..Default::default() };
    let mut inputs = Vec::new();
    for vi in gp.input.iter().filter(|i| !inits.contains(&i.name.as_str())) {
        let dtype = if info.inputs.iter().find(|i| i.name == vi.name).unwrap().dtype == "f32" {
            DType::F32
        } else {
            DType::I64
        };
        let t = read_npy(&dir.join(inputs_dir).join(format!("{}.npy", vi.name)), dtype);
        opts.input_shapes.insert(vi.name.clone(), t.shape().to_vec());
        inputs.push(t);
    }
    let start = std::time::Instant::now();
    let g = import(&m, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: imported in {:?}", start.elapsed());
    polyhe_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{name}: verifier: {e}"));
    let outs = polyhe_ir::interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (vi, got) in gp.output.iter().zip(&outs) {
        let want = read_npy(&dir.join(expected_dir).join(format!("{}.npy", vi.name)), DType::F32);
        assert_eq!(got.shape(), want.shape(), "{name}/{}", vi.name);
        let worst = got
            .to_f64_vec()
            .iter()
            .zip(want.to_f64_vec())
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}/{}: max rel error {worst}", vi.name);
    }
    op_counts(&g)
}

#[test]
fn encoder() {
    check_model("encoder", false);
    let ops = check_model("encoder", true);
    assert_eq!(ops.get("layer_norm"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("erf"), None, "{ops:?}");
}

#[test]
fn encoder_decomposed() {
    let plain = check_model("encoder_decomposed", false);
    assert_eq!(plain.get("layer_norm"), None);
    let ops = check_model("encoder_decomposed", true);
    assert_eq!(ops.get("layer_norm"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&1), "{ops:?}");
    for gone in ["tanh", "pow", "sqrt", "sub"] {
        assert_eq!(ops.get(gone), None, "{gone} left: {ops:?}");
    }
    // Shape arithmetic folded away: no gather/concat left.
    assert_eq!(ops.get("gather"), None, "{ops:?}");
    assert_eq!(ops.get("concat"), None, "{ops:?}");
}

#[test]
fn sigma_encoder() {
    let ops = check_model("sigma_encoder", true);
    assert_eq!(ops.get("batch_norm"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("layer_norm"), None);
    assert_eq!(ops.get("gelu"), None);
}

#[test]
fn vit() {
    check_model("vit", false);
    let ops = check_model("vit", true);
    assert_eq!(ops.get("layer_norm"), Some(&5), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("conv"), Some(&1), "{ops:?}");
}

#[test]
fn bert_tiny() {
    check_model("bert_tiny", false);
    let ops = check_model("bert_tiny", true);
    assert_eq!(ops.get("layer_norm"), Some(&5), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("erf"), None, "{ops:?}");
    // Only the pooler's tanh remains.
    assert_eq!(ops.get("tanh"), Some(&1), "{ops:?}");
}

/// all-MiniLM-L6-v2 with external data (generated by `models/make_minilm.sh`, not committed, so the
/// test is ignored by default; `.ci/run` generates the model and runs ignored tests). `bert_tiny`
/// covers the same import paths in the default run.
#[test]
#[ignore = "needs models/make_minilm.sh (90 MB generated model); run by .ci/run"]
fn minilm() {
    let dir = models_dir().join("pretrained/minilm");
    assert!(dir.join("model.onnx").exists(), "{} not generated (run models/make_minilm.sh)", dir.display());
    let ops = check_files(&dir, "model.onnx", "inputs", "expected", true);
    assert_eq!(ops.get("layer_norm"), Some(&13), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&6), "{ops:?}");
    let ops = check_files(&dir, "encoder.onnx", "encoder_inputs", "encoder_expected", true);
    assert_eq!(ops.get("gelu"), Some(&6), "{ops:?}");
}
