//! Reading `.onnx` files: protobuf decoding, external data, and conversion of `TensorProto`s to IR
//! tensors.
//!
//! Contract: [`load`] returns a model whose tensors all carry their bytes inline (`raw_data`), external
//! data having been read from files next to the model; it never panics on malformed input. Tensor
//! conversion accepts f32, f64, f16, i8, u8, i32, i64 and bool (raw little-endian or typed fields);
//! i16, u16, u32 and u64 *constants* are widened to i64 (value-preserving, checked). Anything else
//! (strings, bfloat16, complex, float8...) is an error naming the tensor.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use polyhe_ir::{DType, Data, Tensor, TensorType};
use prost::Message;

use crate::proto::{data_type as dt, GraphProto, ModelProto, TensorProto, DATA_LOCATION_EXTERNAL};
use crate::FrontendError;

/// A decoded ONNX model with its external data resolved.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub proto: ModelProto,
    /// Where it was read from (or a label for in-memory models), for messages.
    pub path: PathBuf,
}

impl OnnxModel {
    /// The main graph (an empty one if the file has none; import then reports it).
    pub fn graph(&self) -> Option<&GraphProto> {
        self.proto.graph.as_ref()
    }

    /// The default-domain opset version (`""` or `"ai.onnx"`), if declared.
    pub fn opset(&self) -> Option<i64> {
        self.proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
    }
}

/// Reads a file the user or a server handed over: refused unless it is a regular file (a FIFO
/// would block, `/dev/zero` never ends), and read only up to the size its metadata gives, so
/// memory stays bounded by what is on disk.
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads and decodes an ONNX file, loading external data relative to the file's directory.
pub fn load(path: &Path) -> Result<OnnxModel, FrontendError> {
    let bytes = read_regular_file(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    decode(&bytes, path, Some(&base))
}

/// Decodes a model from bytes. `path` labels messages; external data is resolved against `base_dir`
/// (an external reference with `base_dir = None` is an error).
pub fn decode(bytes: &[u8], path: &Path, base_dir: Option<&Path>) -> Result<OnnxModel, FrontendError> {
    let decode_err = |msg: String| FrontendError::Decode { path: path.to_path_buf(), msg };
    let mut proto = ModelProto::decode(bytes).map_err(|e| decode_err(e.to_string()))?;
    let Some(graph) = proto.graph.as_mut() else {
        return Err(decode_err("the model has no graph".into()));
    };
    // Random bytes sometimes decode as a valid (nonsense) protobuf; a model without any declared
    // opset and without nodes and inputs is not something an exporter writes.
    if proto.opset_import.is_empty() && graph.node.is_empty() && graph.input.is_empty() {
        return Err(decode_err("no opset_import, nodes or inputs (not an ONNX model?)".into()));
    }
    let mut ext = ExternalFiles::new(base_dir);
    for t in graph.initializer.iter_mut() {
        ext.resolve(t)?;
    }
    for n in graph.node.iter_mut() {
        for a in n.attribute.iter_mut() {
            if let Some(t) = a.t.as_mut() {
                ext.resolve(t)?;
            }
            for t in a.tensors.iter_mut() {
                ext.resolve(t)?;
            }
        }
    }
    Ok(OnnxModel { proto, path: path.to_path_buf() })
}

/// Open external data files, so that a file holding hundreds of tensors is opened once.
struct ExternalFiles<'a> {
    base: Option<&'a Path>,
    open: Vec<(PathBuf, File, u64)>,
}

impl<'a> ExternalFiles<'a> {
    fn new(base: Option<&'a Path>) -> Self {
        ExternalFiles { base, open: Vec::new() }
    }

    /// Replaces an external reference by inline `raw_data`.
    fn resolve(&mut self, t: &mut TensorProto) -> Result<(), FrontendError> {
        if t.data_location != DATA_LOCATION_EXTERNAL {
            return Ok(());
        }
        let name = t.name.clone();
        let missing = |path: &Path, msg: String| FrontendError::MissingExternalData {
            tensor: name.clone(),
            path: path.to_path_buf(),
            msg,
        };
        let mut location = None;
        let mut offset = 0u64;
        let mut length = None;
        for kv in &t.external_data {
            let parse =
                |v: &str| v.parse::<u64>().map_err(|_| missing(Path::new(&kv.value), format!("bad {} `{v}`", kv.key)));
            match kv.key.as_str() {
                "location" => location = Some(kv.value.clone()),
                "offset" => offset = parse(&kv.value)?,
                "length" => length = Some(parse(&kv.value)?),
                _ => {} // "checksum" and future keys do not change the bytes
            }
        }
        let Some(location) = location else {
            return Err(missing(Path::new("?"), "no `location` key".into()));
        };
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(missing(rel, "location must be a relative path inside the model directory".into()));
        }
        let Some(base) = self.base else {
            return Err(missing(rel, "model was not read from a file, so external data cannot be found".into()));
        };
        let full = base.join(rel);
        let idx = match self.open.iter().position(|(p, _, _)| *p == full) {
            Some(i) => i,
            None => {
                // Resolved before anything is opened: a symbolic link out of the model's folder
                // would read foreign files as weights (and their sizes into messages), and opening
                // a FIFO blocks forever.
                let inside = match (base.canonicalize(), full.canonicalize()) {
                    (Ok(b), Ok(f)) => f.starts_with(b),
                    (_, Err(e)) => return Err(missing(&full, e.to_string())),
                    (Err(e), _) => return Err(missing(base, e.to_string())),
                };
                if !inside {
                    return Err(missing(
                        rel,
                        "resolves outside the model directory (through a symbolic link): copy the data next to the model"
                            .into(),
                    ));
                }
                if !std::fs::metadata(&full).is_ok_and(|m| m.is_file()) {
                    return Err(missing(rel, "not a regular file".into()));
                }
                let f = File::open(&full).map_err(|e| missing(&full, e.to_string()))?;
                let size = f.metadata().map_err(|e| missing(&full, e.to_string()))?.len();
                self.open.push((full.clone(), f, size));
                self.open.len() - 1
            }
        };
        let (_, file, size) = &mut self.open[idx];
        let size = *size;
        let length = length.unwrap_or(size.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(missing(
                &full,
                format!("bytes {offset}..{} are out of range (file has {size} bytes)", offset.saturating_add(length)),
            ));
        }
        let mut buf = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(offset)).map_err(|e| missing(&full, e.to_string()))?;
        file.read_exact(&mut buf).map_err(|e| missing(&full, e.to_string()))?;
        t.raw_data = buf;
        t.data_location = 0;
        t.external_data.clear();
        Ok(())
    }
}

/// The IR dtype of an ONNX element type usable for graph inputs and values, or `None`.
pub(crate) fn ir_dtype(onnx: i32) -> Option<DType> {
    Some(match onnx {
        dt::FLOAT => DType::F32,
        dt::DOUBLE => DType::F64,
        dt::FLOAT16 => DType::F16,
        dt::INT8 => DType::I8,
        dt::UINT8 => DType::U8,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        _ => return None,
    })
}

/// IEEE half → f64.
pub(crate) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Converts a `TensorProto` (with inline data) to an IR tensor.
pub(crate) fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, FrontendError> {
    let name = if t.name.is_empty() { "<unnamed>" } else { t.name.as_str() };
    let err = |msg: String| FrontendError::InvalidTensor { tensor: name.to_string(), msg };
    if t.data_location == DATA_LOCATION_EXTERNAL {
        return Err(err("external data was not loaded".into()));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(err(format!("negative dimension {d}")));
        }
        shape.push(d as usize);
    }
    let numel =
        shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| err("too many elements".into()))?;
    let raw = &t.raw_data;
    let has_raw = !raw.is_empty();
    // Fixed-width raw data: check the byte count before decoding.
    let raw_chunks = |width: usize| -> Result<std::slice::ChunksExact<'_, u8>, FrontendError> {
        if raw.len() != numel * width {
            return Err(err(format!(
                "raw_data has {} bytes, expected {} ({} elements of {} bytes)",
                raw.len(),
                numel * width,
                numel,
                width
            )));
        }
        Ok(raw.chunks_exact(width))
    };
    let typed_len = |len: usize, field: &str| -> Result<(), FrontendError> {
        if len != numel {
            return Err(err(format!("{field} has {len} elements, expected {numel}")));
        }
        Ok(())
    };
    let (dtype, data) = match t.data_type {
        dt::FLOAT => {
            let v: Vec<f64> = if has_raw {
                raw_chunks(4)?.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
            } else {
                typed_len(t.float_data.len(), "float_data")?;
                t.float_data.iter().map(|&x| x as f64).collect()
            };
            (DType::F32, Data::Float(v))
        }
        dt::DOUBLE => {
            let v: Vec<f64> = if has_raw {
                raw_chunks(8)?.map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
            } else {
                typed_len(t.double_data.len(), "double_data")?;
                t.double_data.clone()
            };
            (DType::F64, Data::Float(v))
        }
        dt::FLOAT16 => {
            let v: Vec<f64> = if has_raw {
                raw_chunks(2)?.map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]]))).collect()
            } else {
                // Typed storage of f16 is the bit pattern in int32_data.
                typed_len(t.int32_data.len(), "int32_data")?;
                t.int32_data.iter().map(|&x| f16_to_f64(x as u16)).collect()
            };
            (DType::F16, Data::Float(v))
        }
        dt::INT8 | dt::UINT8 | dt::INT16 | dt::UINT16 | dt::INT32 => {
            let (dtype, width) = match t.data_type {
                dt::INT8 => (DType::I8, 1),
                dt::UINT8 => (DType::U8, 1),
                dt::INT16 | dt::UINT16 => (DType::I64, 2),
                _ => (DType::I32, 4),
            };
            let v: Vec<i64> = if has_raw {
                let chunks = raw_chunks(width)?;
                match t.data_type {
                    dt::INT8 => chunks.map(|c| c[0] as i8 as i64).collect(),
                    dt::UINT8 => chunks.map(|c| c[0] as i64).collect(),
                    dt::INT16 => chunks.map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
                    dt::UINT16 => chunks.map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect(),
                    _ => chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
                }
            } else {
                typed_len(t.int32_data.len(), "int32_data")?;
                t.int32_data.iter().map(|&x| x as i64).collect()
            };
            (dtype, Data::Int(v))
        }
        dt::INT64 => {
            let v: Vec<i64> = if has_raw {
                raw_chunks(8)?.map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
            } else {
                typed_len(t.int64_data.len(), "int64_data")?;
                t.int64_data.clone()
            };
            (DType::I64, Data::Int(v))
        }
        dt::UINT32 | dt::UINT64 => {
            let v: Vec<u64> = if has_raw {
                if t.data_type == dt::UINT32 {
                    raw_chunks(4)?.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64).collect()
                } else {
                    raw_chunks(8)?.map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
                }
            } else {
                typed_len(t.uint64_data.len(), "uint64_data")?;
                t.uint64_data.clone()
            };
            let v = v
                .into_iter()
                .map(|x| i64::try_from(x).map_err(|_| err(format!("value {x} does not fit in i64"))))
                .collect::<Result<Vec<i64>, _>>()?;
            (DType::I64, Data::Int(v))
        }
        dt::BOOL => {
            let v: Vec<bool> = if has_raw {
                raw_chunks(1)?.map(|c| c[0] != 0).collect()
            } else {
                typed_len(t.int32_data.len(), "int32_data")?;
                t.int32_data.iter().map(|&x| x != 0).collect()
            };
            (DType::Bool, Data::Bool(v))
        }
        other => return Err(err(format!("unsupported element type {}", dt::name(other)))),
    };
    Tensor::new(TensorType::new(dtype, shape), data).map_err(|e| err(e.to_string()))
}
