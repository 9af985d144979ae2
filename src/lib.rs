//! polyhe: compile trained transformers (ONNX) into circuits for CKKS homomorphic encryption.
//!
//! This facade ties the crates together for the CLI and for host programs:
//! [`load_model`] reads an ONNX file, [`bind_inputs`] matches `.npy` inputs to model inputs, and
//! [`import_for_inputs`] builds the tensor IR with every dynamic dim bound.
//! The crates: `polyhe_frontend` (ONNX → IR), `polyhe_ir` (IR, text form, interpreter),
//! `polyhe_runtime` (CKKS).

pub mod npy;
pub mod opt;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
pub use polyhe_frontend as frontend;
pub use polyhe_ir as ir;
use polyhe_ir::{Graph, Tensor};
pub use polyhe_passes as passes;

/// A `NAME=FILE` or bare `FILE` argument of `--input`, `--output`, `--calib`.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedPath {
    pub name: Option<String>,
    pub path: PathBuf,
}

impl std::str::FromStr for NamedPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // A bare path may itself contain '=' only if it also contains a path separator before it.
        match s.split_once('=') {
            Some((n, p)) if !n.is_empty() && !n.contains('/') && !p.is_empty() => {
                Ok(NamedPath { name: Some(n.to_string()), path: PathBuf::from(p) })
            }
            Some((_, "")) => Err(format!("`{s}`: missing file after `=`")),
            _ => Ok(NamedPath { name: None, path: PathBuf::from(s) }),
        }
    }
}

pub use polyhe_frontend::read_regular_file;

/// [`read_regular_file`] as UTF-8 text.
pub fn read_regular_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular_file(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Parses a `NAME=VALUE` dim binding.
pub fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (n, v) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected NAME=VALUE"))?;
    let v: usize = v.parse().map_err(|_| format!("`{s}`: `{v}` is not a non-negative integer"))?;
    Ok((n.to_string(), v))
}

/// Loads an ONNX model.
pub fn load_model(path: &Path) -> Result<polyhe_frontend::OnnxModel> {
    Ok(polyhe_frontend::load(path)?)
}

/// Assigns named or bare paths to the model's input (or output) names.
/// A bare path is allowed only when the model has exactly one such name.
pub fn assign_names(kind: &str, names: &[String], given: &[NamedPath]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for g in given {
        let name = match &g.name {
            Some(n) => {
                if !names.contains(n) {
                    bail!("--{kind} {n}=...: the model has no {kind} named `{n}` (its {kind}s: {})", names.join(", "));
                }
                n.clone()
            }
            None => {
                if names.len() != 1 {
                    bail!(
                        "--{kind} {}: the model has {} {kind}s ({}); name each one as --{kind} NAME=FILE",
                        g.path.display(),
                        names.len(),
                        names.join(", ")
                    );
                }
                names[0].clone()
            }
        };
        if out.insert(name.clone(), g.path.clone()).is_some() {
            bail!("--{kind} `{name}` given twice");
        }
    }
    Ok(out)
}

/// Reads the `.npy` inputs for a model, keyed by input name; every model input must be given.
pub fn read_inputs(input_names: &[String], given: &[NamedPath]) -> Result<BTreeMap<String, Tensor>> {
    let paths = assign_names("input", input_names, given)?;
    let missing: Vec<&String> = input_names.iter().filter(|n| !paths.contains_key(*n)).collect();
    if !missing.is_empty() {
        bail!(
            "missing --input for {}; give each as --input NAME=FILE.npy",
            missing.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        );
    }
    read_paths(paths)
}

fn read_paths(paths: BTreeMap<String, PathBuf>) -> Result<BTreeMap<String, Tensor>> {
    paths.into_iter().map(|(n, p)| Ok((n, npy::read(&p)?))).collect()
}

/// Imports the model to the tensor IR with dims bound from `dims` and from the shapes of `inputs`.
pub fn import_for_inputs(
    model: &polyhe_frontend::OnnxModel,
    dims: &BTreeMap<String, usize>,
    inputs: &BTreeMap<String, Tensor>,
    recognize: bool,
) -> Result<Graph> {
    let opts = polyhe_frontend::ImportOptions {
        dims: dims.clone(),
        input_shapes: inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect(),
        recognize,
    };
    Ok(polyhe_frontend::import(model, &opts)?)
}

/// Orders named tensors as the graph's inputs, converting integer/float kinds the model expects
/// only where lossless (an i32 file for an i64 input); anything else is a clear mismatch error.
pub fn ordered_inputs(g: &Graph, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<Tensor>> {
    g.inputs
        .iter()
        .map(|&v| {
            let name = g.value_label(v);
            let want = g.ty(v);
            let t = inputs.get(&name).with_context(|| format!("no input given for `{name}`"))?;
            if t.shape() != want.shape.as_slice() {
                bail!("input `{name}`: the model expects shape {:?}, the file has {:?}", want.shape, t.shape());
            }
            if t.dtype() == want.dtype {
                return Ok(t.clone());
            }
            let compatible = (t.dtype().is_int() && want.dtype.is_int())
                || (t.dtype().is_float() && want.dtype.is_float())
                || (t.dtype() == polyhe_ir::DType::Bool && want.dtype == polyhe_ir::DType::Bool);
            if !compatible {
                bail!("input `{name}`: the model expects {} elements, the file holds {}", want.dtype, t.dtype());
            }
            let mut t = t.clone();
            t.ty.dtype = want.dtype;
            Ok(t)
        })
        .collect()
}

/// Largest relative error `max|a-b| / max(max|b|, tiny)` between two tensors of equal shape.
pub fn max_rel_error(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.shape() != b.shape() {
        bail!("shape {:?} vs {:?}", a.shape(), b.shape());
    }
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    // `f64::max` drops NaN, which would hide a diverged output behind the finite entries: any
    // non-finite difference makes the whole error NaN.
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
    let err = a.iter().zip(&b).fold(0f64, |m, (x, y)| {
        let d = (x - y).abs();
        if m.is_nan() || d.is_nan() {
            f64::NAN
        } else {
            m.max(d)
        }
    });
    Ok(err / scale)
}

/// Like [`read_inputs`] but inputs may be missing (used by `dump`, where files only bind dims).
pub fn read_inputs_partial(input_names: &[String], given: &[NamedPath]) -> Result<BTreeMap<String, Tensor>> {
    read_paths(assign_names("input", input_names, given)?)
}

/// Names of the model's real inputs (initializers that exporters also list as inputs excluded).
pub fn input_names(m: &polyhe_frontend::OnnxModel) -> Vec<String> {
    polyhe_frontend::inspect(m).inputs.into_iter().map(|i| i.name).collect()
}

/// Names of the model's outputs.
pub fn output_names(m: &polyhe_frontend::OnnxModel) -> Vec<String> {
    polyhe_frontend::inspect(m).outputs.into_iter().map(|i| i.name).collect()
}

/// Calibrates a model: imports it with the calibration inputs' shapes (dims bound from them) and records the input ranges of every non-polynomial op. The result is keyed by node name, so
/// it applies to the same model imported with other batch sizes.
pub fn calibrate_model(
    model: &polyhe_frontend::OnnxModel,
    calib: &BTreeMap<String, Tensor>,
    recognize: bool,
) -> Result<polyhe_passes::Calibration> {
    // Calibration batches may have another batch size than the deployment inputs, so `--dim` values
    // (meant for deployment) are not applied here; the calibration files' shapes bind every dim.
    let samples = calibration_samples(model, calib)?;
    let first = samples.first().context("no calibration sample")?;
    let g =
        import_for_inputs(model, &BTreeMap::new(), first, recognize).context("importing the model for calibration")?;
    let ordered =
        samples.iter().map(|s| ordered_inputs(&g, s)).collect::<Result<Vec<_>>>().context("calibration inputs")?;
    Ok(polyhe_passes::calibrate(&g, &ordered)?)
}

/// The calibration samples in `calib`: the tensors themselves (one sample, e.g. a batch along the
/// model's batch axis), or — when every tensor has one more leading axis than its input declares,
/// as a stack of samples for a static-shape model (`x: f32[8, 16]` calibrated on `f32[64, 8, 16]`)
/// — one sample per slice along that axis. Some inputs stacked and others not, stacks of different
/// sizes, or slices that contradict the declared dims are errors saying what shape was expected.
pub fn calibration_samples(
    model: &polyhe_frontend::OnnxModel,
    calib: &BTreeMap<String, Tensor>,
) -> Result<Vec<BTreeMap<String, Tensor>>> {
    use polyhe_frontend::Dim;
    let declared: BTreeMap<String, Vec<Dim>> =
        polyhe_frontend::inspect(model).inputs.into_iter().filter_map(|i| Some((i.name, i.shape?))).collect();
    let show = |d: &[Dim]| {
        let dims: Vec<String> = d
            .iter()
            .map(|x| match x {
                Dim::Fixed(n) => n.to_string(),
                Dim::Named(s) => s.clone(),
                Dim::Unknown => "?".into(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    };
    let stacked: Vec<(&String, bool)> =
        calib.iter().filter_map(|(n, t)| declared.get(n).map(|d| (n, t.shape().len() == d.len() + 1))).collect();
    if !stacked.iter().any(|s| s.1) {
        return Ok(vec![calib.clone()]);
    }
    if let Some((n, _)) = stacked.iter().find(|s| !s.1) {
        let (s, _) = stacked.iter().find(|s| s.1).copied().unwrap_or((n, true));
        bail!(
            "calibration input `{s}` is a stack of samples (one more leading axis than the model declares) but `{n}` \
             is not: give every input as a stack of the same number of samples, or every one as the model declares it"
        );
    }
    let mut count = None;
    for (n, t) in calib {
        let Some(d) = declared.get(n) else { continue };
        let (k, slice) = t.shape().split_first().map(|(k, r)| (*k, r)).unwrap_or((0, &[]));
        for (i, (&got, want)) in slice.iter().zip(d).enumerate() {
            if matches!(want, Dim::Fixed(w) if *w != got) {
                bail!(
                    "calibration input `{n}`: a stack of {k} samples of shape {slice:?}, but the model declares {} \
                     (axis {i} differs): expected [samples, {}]",
                    show(d),
                    show(d).trim_start_matches('[').trim_end_matches(']')
                );
            }
        }
        match count {
            None => count = Some((n, k)),
            Some((m, c)) if c != k => bail!("calibration stacks of different sizes: `{m}` has {c} samples, `{n}` {k}"),
            _ => {}
        }
    }
    let k = count.map_or(0, |c| c.1);
    if k == 0 {
        bail!("the calibration stack holds no sample");
    }
    (0..k)
        .map(|i| calib.iter().map(|(n, t)| Ok((n.clone(), sample_of(t, i)?))).collect::<Result<BTreeMap<_, _>>>())
        .collect()
}

/// Calibration samples for an IR graph (`polyhe opt --pass to-poly --calib ...`): the tensors in
/// input order as one sample, or one sample per slice when every tensor has one more leading axis
/// than its input (a stack).
pub fn graph_calibration_samples(g: &Graph, calib: &BTreeMap<String, Tensor>) -> Result<Vec<Vec<Tensor>>> {
    let stacked = g
        .inputs
        .iter()
        .all(|&v| calib.get(&g.value_label(v)).is_some_and(|t| t.shape().len() == g.ty(v).shape.len() + 1));
    if !stacked {
        return Ok(vec![ordered_inputs(g, calib)?]);
    }
    let count = g.inputs.first().and_then(|&v| calib.get(&g.value_label(v))).map_or(0, |t| t.shape()[0]);
    (0..count)
        .map(|i| {
            let sample = calib.iter().map(|(n, t)| Ok((n.clone(), sample_of(t, i)?))).collect::<Result<_>>()?;
            ordered_inputs(g, &sample)
        })
        .collect()
}

/// Calibration samples as inputs of a graph compiled for one sample (`--dim batch_size=1`), in
/// input order, at most `max` of them: a calibration tensor is split along its leading axis into
/// chunks of the input's leading dim (a batch of samples), or into slices when it has one more axis
/// than the input (a stack). The CKKS backend simulates the program on them
/// ([`refresh_shifts_from_calibration`]).
pub fn program_calibration_samples(
    g: &Graph,
    calib: &BTreeMap<String, Tensor>,
    max: usize,
) -> Result<Vec<Vec<Tensor>>> {
    let mut per_input: Vec<Vec<Tensor>> = Vec::new();
    for &v in &g.inputs {
        let name = g.value_label(v);
        let want = &g.ty(v).shape;
        let t = calib.get(&name).with_context(|| format!("no calibration tensor for input `{name}`"))?;
        let got = t.shape();
        let samples: Vec<Tensor> = if got.len() == want.len() + 1 && got.get(1..) == Some(want.as_slice()) {
            (0..got[0].min(max)).map(|i| sample_of(t, i)).collect::<Result<_>>()?
        } else if got.len() == want.len()
            && got.get(1..) == want.get(1..)
            && want.first().is_some_and(|&b| b > 0 && got[0] % b == 0)
        {
            let b = want[0];
            (0..(got[0] / b).min(max)).map(|i| rows_of(t, i * b, b)).collect::<Result<_>>()?
        } else {
            bail!("calibration input `{name}` of shape {got:?} is neither a batch nor a stack of inputs of shape {want:?}");
        };
        per_input.push(samples);
    }
    let count = per_input.iter().map(Vec::len).min().unwrap_or(0);
    Ok((0..count).map(|i| per_input.iter().filter_map(|s| s.get(i).cloned()).collect()).collect())
}

/// Sets the input shifts of a compiled program's refreshes from the values they see on calibration
/// samples (`polyhe_backend::set_refresh_shifts`); `Ok(None)` without bootstrappings.
pub fn refresh_shifts_from_calibration(
    compiled: &mut polyhe_backend::CkksCompiled,
    g: &Graph,
    samples: &[Vec<Tensor>],
) -> Result<Option<polyhe_backend::RefreshInputs>> {
    if compiled.program.as_ref().is_none_or(|p| p.bootstrap.is_none()) {
        return Ok(None);
    }
    let data = samples
        .iter()
        .map(|s| polyhe_backend::program_inputs(g, compiled, s))
        .collect::<Result<Vec<_>, _>>()
        .context("laying out the calibration samples as program inputs")?;
    Ok(polyhe_backend::set_refresh_shifts(compiled, &data)?)
}

/// `n` rows from `start` along the leading axis of `t` (the axis kept).
fn rows_of(t: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    if let Some(d) = shape.first_mut() {
        *d = n;
    }
    leading_slice(t, start, n, shape)
}

/// Slice `i` along the leading axis of `t` (the axis dropped).
fn sample_of(t: &Tensor, i: usize) -> Result<Tensor> {
    leading_slice(t, i, 1, t.shape().get(1..).unwrap_or(&[]).to_vec())
}

/// Rows `start..start + n` of `t`'s leading axis as a tensor of `shape`.
fn leading_slice(t: &Tensor, start: usize, n: usize, shape: Vec<usize>) -> Result<Tensor> {
    let per: usize = t.shape().get(1..).unwrap_or(&[]).iter().product();
    let range = start * per..(start + n) * per;
    let data = match &t.data {
        polyhe_ir::Data::Float(v) => polyhe_ir::Data::Float(v.get(range).context("sample out of range")?.to_vec()),
        polyhe_ir::Data::Int(v) => polyhe_ir::Data::Int(v.get(range).context("sample out of range")?.to_vec()),
        polyhe_ir::Data::Bool(v) => polyhe_ir::Data::Bool(v.get(range).context("sample out of range")?.to_vec()),
    };
    Ok(Tensor::new(polyhe_ir::TensorType::new(t.dtype(), shape), data)?)
}

/// For 2-D `[rows, classes]` outputs: on how many rows the argmax of `a` equals that of `b`.
pub fn argmax_agreement(a: &Tensor, b: &Tensor) -> Option<(usize, usize)> {
    if a.shape().len() != 2 || a.shape() != b.shape() || a.shape()[1] < 2 {
        return None;
    }
    let cols = a.shape()[1];
    let argmax = |v: &[f64]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j]));
    let (va, vb) = (a.to_f64_vec(), b.to_f64_vec());
    let rows = a.shape()[0];
    let agree = va.chunks(cols).zip(vb.chunks(cols)).filter(|(x, y)| argmax(x) == argmax(y)).count();
    Some((agree, rows))
}

/// The smallest cosine similarity between corresponding rows (vectors along the last axis) of two
/// tensors of equal shape and rank ≥ 2; how embedding models are compared.
pub fn worst_row_cosine(a: &Tensor, b: &Tensor) -> Option<f64> {
    let cols = *a.shape().last()?;
    if a.shape().len() < 2 || a.shape() != b.shape() || cols == 0 {
        return None;
    }
    let (va, vb) = (a.to_f64_vec(), b.to_f64_vec());
    va.chunks(cols)
        .zip(vb.chunks(cols))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx = x.iter().map(|p| p * p).sum::<f64>().sqrt();
            let ny = y.iter().map(|q| q * q).sum::<f64>().sqrt();
            if nx == 0.0 && ny == 0.0 {
                1.0
            } else {
                dot / (nx * ny)
            }
        })
        // NaN-propagating minimum: a row that diverged must not vanish from the worst case.
        .reduce(|m, c| if m.is_nan() || c.is_nan() { f64::NAN } else { m.min(c) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyhe_ir::DType;

    fn t(v: Vec<f64>) -> Tensor {
        Tensor::float(DType::F32, vec![2, 2], v).unwrap()
    }

    #[test]
    fn comparisons_do_not_hide_a_nan_row() {
        let expected = t(vec![1.0, 2.0, 3.0, 4.0]);
        let close = t(vec![1.0, 2.0, 3.0, 4.4]);
        assert!((max_rel_error(&close, &expected).unwrap() - 0.1).abs() < 1e-12);
        let diverged = t(vec![1.0, 2.0, f64::NAN, 4.0]);
        assert!(max_rel_error(&diverged, &expected).unwrap().is_nan());
        assert!(worst_row_cosine(&diverged, &expected).unwrap().is_nan());
        assert!(worst_row_cosine(&close, &expected).unwrap() > 0.99);
    }
}
