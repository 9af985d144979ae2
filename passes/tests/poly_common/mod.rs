//! Shared helpers of the poly-stage tests: load a shipped model, read its `.npy` folders, compare.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polyhe_frontend::{import, load, ImportOptions, OnnxModel};
use polyhe_ir::{DType, Graph, Tensor};

pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Reads a `.npy` file as an IR tensor (float files as f32, integer files as i64).
pub fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else { panic!("{}: structured dtype", path.display()) };
    let t = match (ts.type_char(), ts.size_field()) {
        (npyz::TypeChar::Float, 4) => {
            let v: Vec<f32> = npy.into_vec().unwrap();
            return Tensor::float(DType::F32, shape, v.into_iter().map(f64::from).collect()).unwrap();
        }
        (npyz::TypeChar::Float, 8) => {
            let v: Vec<f64> = npy.into_vec().unwrap();
            return Tensor::float(DType::F32, shape, v).unwrap();
        }
        (npyz::TypeChar::Int, 8) => npy.into_vec::<i64>().unwrap(),
        (npyz::TypeChar::Int, 4) => npy.into_vec::<i32>().unwrap().into_iter().map(i64::from).collect(),
        (c, n) => panic!("{}: unsupported dtype {c:?}{n}", path.display()),
    };
    Tensor::int(DType::I64, shape, t).unwrap()
}

/// All `.npy` files of a folder, keyed by file stem.
pub fn read_dir(dir: &Path) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "npy") {
            out.insert(p.file_stem().unwrap().to_string_lossy().into_owned(), read_npy(&p));
        }
    }
    out
}

pub fn load_model(path: &Path) -> OnnxModel {
    load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Imports `m` with the graph inputs bound to the shapes of `inputs`; returns the graph and the
/// inputs in graph order (dtypes converted to the model's).
pub fn import_for(m: &OnnxModel, inputs: &BTreeMap<String, Tensor>) -> (Graph, Vec<Tensor>) {
    let opts = ImportOptions {
        input_shapes: inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect(),
        recognize: true,
        ..Default::default()
    };
    let g = import(m, &opts).unwrap_or_else(|e| panic!("{e}"));
    let ordered = g
        .inputs
        .iter()
        .map(|&v| {
            let name = g.value_label(v);
            let mut t = inputs.get(&name).unwrap_or_else(|| panic!("no input `{name}`")).clone();
            t.ty.dtype = g.ty(v).dtype;
            t
        })
        .collect();
    (g, ordered)
}

/// A shipped model: graph bound to the sample inputs, the calibration graph and batch, expected outputs.
pub struct Shipped {
    pub graph: Graph,
    pub inputs: Vec<Tensor>,
    pub calib_graph: Graph,
    pub calib: Vec<Tensor>,
    pub expected: BTreeMap<String, Tensor>,
}

pub fn shipped(dir: &Path) -> Shipped {
    let m = load_model(&dir.join("model.onnx"));
    let (graph, inputs) = import_for(&m, &read_dir(&dir.join("inputs")));
    let (calib_graph, calib) = import_for(&m, &read_dir(&dir.join("calib")));
    Shipped { graph, inputs, calib_graph, calib, expected: read_dir(&dir.join("expected")) }
}

/// max|a − b| / max|b|.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Argmax over the last axis, per row.
pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    let n = *t.shape().last().unwrap();
    t.to_f64_vec()
        .chunks(n)
        .map(|r| r.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0)
        .collect()
}

/// Cosine similarity per row of the last axis.
pub fn cosines(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let n = *a.shape().last().unwrap();
    a.to_f64_vec()
        .chunks(n)
        .zip(b.to_f64_vec().chunks(n))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx: f64 = x.iter().map(|p| p * p).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| p * p).sum::<f64>().sqrt();
            dot / (nx * ny)
        })
        .collect()
}
