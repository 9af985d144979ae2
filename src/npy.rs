//! Reading and writing NumPy `.npy` files (format versions 1–3) as IR tensors.
//!
//! Supported dtypes: `<f2 <f4 <f8 |i1 |u1 <i4 <i8 |b1` (and `<u4`/`<u8`/`<i2`/`<u2` read as i64).
//! Big-endian and Fortran-order arrays are rejected with a message rather than silently transposed.
//! Every malformed header or short payload is an error naming the file; nothing here panics on input.

use std::path::Path;

use polyhe_ir::{DType, Data, Tensor, TensorType};

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid .npy file: {msg}")]
    Format { path: String, msg: String },
    #[error(
        "{path}: unsupported .npy dtype `{descr}` (supported: float16/32/64, int8/16/32/64, uint8/16/32/64, bool)"
    )]
    Dtype { path: String, descr: String },
}

fn fmt_err(path: &str, msg: impl Into<String>) -> NpyError {
    NpyError::Format { path: path.to_string(), msg: msg.into() }
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let p = path.display().to_string();
    let bytes = crate::read_regular_file(path).map_err(|source| NpyError::Io { path: p.clone(), source })?;
    parse(&bytes, &p)
}

/// Parses `.npy` bytes; `path` is only used in messages.
pub fn parse(bytes: &[u8], path: &str) -> Result<Tensor, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt_err(path, "missing \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(fmt_err(path, "truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(fmt_err(path, format!("unknown format version {v}"))),
    };
    let header = bytes.get(hstart..hstart.saturating_add(hlen)).ok_or_else(|| fmt_err(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| fmt_err(path, "header is not UTF-8"))?;
    let descr = dict_str(header, "descr").ok_or_else(|| fmt_err(path, "header has no 'descr'"))?;
    let fortran = dict_raw(header, "fortran_order").ok_or_else(|| fmt_err(path, "header has no 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(fmt_err(path, "Fortran-order arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape = parse_shape(header).ok_or_else(|| fmt_err(path, "header has no valid 'shape'"))?;
    let numel =
        shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| fmt_err(path, "shape overflows"))?;
    let payload = &bytes[hstart + hlen..];

    let (dtype, width): (DType, usize) = match descr.as_str() {
        "<f2" => (DType::F16, 2),
        "<f4" => (DType::F32, 4),
        "<f8" => (DType::F64, 8),
        "|i1" => (DType::I8, 1),
        "|u1" => (DType::U8, 1),
        "<i2" | "<u2" => (DType::I32, 2),
        "<i4" | "<u4" => (DType::I32, 4),
        "<i8" | "<u8" => (DType::I64, 8),
        "|b1" => (DType::Bool, 1),
        _ => return Err(NpyError::Dtype { path: path.to_string(), descr }),
    };
    let need = numel.checked_mul(width).ok_or_else(|| fmt_err(path, "shape overflows"))?;
    if payload.len() < need {
        return Err(fmt_err(
            path,
            format!("payload has {} bytes, shape {:?} of {} needs {}", payload.len(), shape, descr, need),
        ));
    }
    let chunks = payload[..need].chunks_exact(width.max(1));
    let data = match descr.as_str() {
        "<f2" => Data::Float(chunks.map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]]))).collect()),
        "<f4" => Data::Float(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()),
        "<f8" => Data::Float(chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        "|i1" => Data::Int(chunks.map(|c| c[0] as i8 as i64).collect()),
        "|u1" => Data::Int(chunks.map(|c| c[0] as i64).collect()),
        "<i2" => Data::Int(chunks.map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        "<u2" => Data::Int(chunks.map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        "<i4" => Data::Int(chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
        "<u4" => Data::Int(chunks.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
        "<i8" => Data::Int(chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        "<u8" => Data::Int(chunks.map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i64).collect()),
        "|b1" => Data::Bool(chunks.map(|c| c[0] != 0).collect()),
        _ => return Err(NpyError::Dtype { path: path.to_string(), descr }),
    };
    Tensor::new(TensorType::new(dtype, shape), data).map_err(|e| fmt_err(path, e.to_string()))
}

/// Writes a tensor as `.npy` in its own dtype (format version 1.0).
pub fn write(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    std::fs::write(path, to_bytes(t)).map_err(|source| NpyError::Io { path: path.display().to_string(), source })
}

pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let descr = match t.dtype() {
        DType::F16 | DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    };
    let shape = match t.shape().len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape()[0]),
        _ => format!("({})", t.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the payload starts on a 64-byte boundary, header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.numel() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match (&t.data, descr) {
        (Data::Float(v), "<f4") => v.iter().for_each(|&x| out.extend_from_slice(&(x as f32).to_le_bytes())),
        (Data::Float(v), _) => v.iter().for_each(|&x| out.extend_from_slice(&x.to_le_bytes())),
        (Data::Int(v), "|i1") => v.iter().for_each(|&x| out.push(x as i8 as u8)),
        (Data::Int(v), "|u1") => v.iter().for_each(|&x| out.push(x as u8)),
        (Data::Int(v), "<i4") => v.iter().for_each(|&x| out.extend_from_slice(&(x as i32).to_le_bytes())),
        (Data::Int(v), _) => v.iter().for_each(|&x| out.extend_from_slice(&x.to_le_bytes())),
        (Data::Bool(v), _) => v.iter().for_each(|&x| out.push(x as u8)),
    }
    out
}

fn dict_raw<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let pos = header.find(&k1).map(|p| p + k1.len()).or_else(|| header.find(&k2).map(|p| p + k2.len()))?;
    let rest = header[pos..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

fn dict_str(header: &str, key: &str) -> Option<String> {
    let rest = dict_raw(header, key)?;
    let q = rest.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let end = rest[1..].find(q)?;
    Some(rest[1..1 + end].to_string())
}

fn parse_shape(header: &str) -> Option<Vec<usize>> {
    let rest = dict_raw(header, "shape")?;
    let rest = rest.strip_prefix('(')?;
    let end = rest.find(')')?;
    rest[..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().ok())
        .collect()
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_dtype() {
        let cases = vec![
            Tensor::float(DType::F32, vec![2, 3], vec![1.5, -2.0, 0.0, 3.25, 0.0009765625, 7.0]).unwrap(),
            Tensor::float(DType::F64, vec![3], vec![0.1, -1e300, 5e-324]).unwrap(),
            Tensor::int(DType::I64, vec![2, 2], vec![1, -2, i64::MAX, 0]).unwrap(),
            Tensor::int(DType::I32, vec![], vec![-7]).unwrap(),
            Tensor::boolean(vec![4], vec![true, false, false, true]).unwrap(),
            Tensor::float(DType::F32, vec![0, 4], vec![]).unwrap(),
        ];
        for t in cases {
            let bytes = to_bytes(&t);
            assert_eq!((10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64, 0);
            let back = parse(&bytes, "t.npy").unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn corrupt_inputs_are_errors_not_panics() {
        let good = to_bytes(&Tensor::float(DType::F32, vec![4, 4], vec![1.0; 16]).unwrap());
        for cut in 0..good.len() {
            let r = parse(&good[..cut], "cut.npy");
            if cut < good.len() {
                assert!(r.is_err(), "truncated at {cut} parsed");
            }
        }
        let mut bad = good.clone();
        bad[20] = b'?';
        let _ = parse(&bad, "bad.npy");
        let err = parse(b"hello world, not npy", "x.npy").unwrap_err().to_string();
        assert!(err.contains("x.npy") && err.contains("magic"), "{err}");
    }

    #[test]
    fn rejects_big_endian_with_dtype_name() {
        let mut b = to_bytes(&Tensor::float(DType::F32, vec![1], vec![1.0]).unwrap());
        let pos = b.windows(3).position(|w| w == b"<f4").unwrap();
        b[pos] = b'>';
        let err = parse(&b, "be.npy").unwrap_err().to_string();
        assert!(err.contains(">f4"), "{err}");
    }
}
