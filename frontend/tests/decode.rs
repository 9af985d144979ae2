//! Decoding: raw vs typed tensor storage for every supported dtype, unsupported dtypes, external data,
//! and bad bytes (errors, never panics).

mod common;

use std::path::Path;

use common::*;
use polyhe_frontend::proto::{
    data_type as dt, ModelProto, StringStringEntryProto, TensorProto, DATA_LOCATION_EXTERNAL,
};
use polyhe_frontend::{decode, import, inspect, load, FrontendError, ImportOptions};
use polyhe_ir::DType;
use prost::Message;

/// A model whose only output is the initializer `t` (through Identity), so import yields it as a constant.
fn const_model(t: TensorProto) -> ModelProto {
    let name = t.name.clone();
    model(13, vec![node("Identity", "id", &[&name], &["y"], vec![])], vec![t], vec![], vec![vout("y")])
}

fn import_const(t: TensorProto) -> Result<polyhe_ir::Tensor, FrontendError> {
    let g = import_model(&const_model(t), &ImportOptions::default())?;
    Ok(g.constant_of(g.outputs[0]).expect("output is a constant").clone())
}

fn raw(name: &str, data_type: i32, dims: &[i64], bytes: Vec<u8>) -> TensorProto {
    TensorProto { name: name.into(), data_type, dims: dims.to_vec(), raw_data: bytes, ..Default::default() }
}

#[test]
fn raw_and_typed_storage_agree_for_every_dtype() {
    // (raw, typed, dtype, values)
    let f16_bits: [u16; 4] = [0x3c00, 0xc000, 0x3555, 0x0001]; // 1, -2, ~1/3, smallest subnormal
    let f16_vals = [1.0, -2.0, 0.333251953125, 5.960464477539063e-8];
    let cases: Vec<(TensorProto, TensorProto, DType, Vec<f64>)> = vec![
        (
            f32_raw("f", &[2, 2], &[1.0, -2.5, 3.25, 0.0]),
            f32_typed("f", &[2, 2], &[1.0, -2.5, 3.25, 0.0]),
            DType::F32,
            vec![1.0, -2.5, 3.25, 0.0],
        ),
        (
            raw("d", dt::DOUBLE, &[2], [0.1f64, -1e300].iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorProto {
                name: "d".into(),
                data_type: dt::DOUBLE,
                dims: vec![2],
                double_data: vec![0.1, -1e300],
                ..Default::default()
            },
            DType::F64,
            vec![0.1, -1e300],
        ),
        (
            raw("h", dt::FLOAT16, &[4], f16_bits.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorProto {
                name: "h".into(),
                data_type: dt::FLOAT16,
                dims: vec![4],
                int32_data: f16_bits.iter().map(|&b| b as i32).collect(),
                ..Default::default()
            },
            DType::F16,
            f16_vals.to_vec(),
        ),
        (
            raw("i8", dt::INT8, &[3], vec![0x80, 0x7f, 0xff]),
            TensorProto {
                name: "i8".into(),
                data_type: dt::INT8,
                dims: vec![3],
                int32_data: vec![-128, 127, -1],
                ..Default::default()
            },
            DType::I8,
            vec![-128.0, 127.0, -1.0],
        ),
        (
            raw("u8", dt::UINT8, &[3], vec![0x80, 0x7f, 0xff]),
            TensorProto {
                name: "u8".into(),
                data_type: dt::UINT8,
                dims: vec![3],
                int32_data: vec![128, 127, 255],
                ..Default::default()
            },
            DType::U8,
            vec![128.0, 127.0, 255.0],
        ),
        (
            raw("i32", dt::INT32, &[2], [-7i32, 1 << 30].iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorProto {
                name: "i32".into(),
                data_type: dt::INT32,
                dims: vec![2],
                int32_data: vec![-7, 1 << 30],
                ..Default::default()
            },
            DType::I32,
            vec![-7.0, (1u64 << 30) as f64],
        ),
        (
            i64_raw("i64", &[2], &[-(1 << 40), 5]),
            i64_typed("i64", &[2], &[-(1 << 40), 5]),
            DType::I64,
            vec![-(2f64.powi(40)), 5.0],
        ),
        (
            raw("b", dt::BOOL, &[3], vec![1, 0, 1]),
            TensorProto {
                name: "b".into(),
                data_type: dt::BOOL,
                dims: vec![3],
                int32_data: vec![1, 0, 1],
                ..Default::default()
            },
            DType::Bool,
            vec![1.0, 0.0, 1.0],
        ),
        (
            raw("u64", dt::UINT64, &[2], [3u64, 1 << 62].iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorProto {
                name: "u64".into(),
                data_type: dt::UINT64,
                dims: vec![2],
                uint64_data: vec![3, 1 << 62],
                ..Default::default()
            },
            DType::I64,
            vec![3.0, 2f64.powi(62)],
        ),
    ];
    for (r, t, dtype, want) in cases {
        for proto in [r, t] {
            let name = proto.name.clone();
            let got = import_const(proto).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.dtype(), dtype, "{name}");
            assert_eq!(got.to_f64_vec(), want, "{name}");
        }
    }
}

#[test]
fn unsupported_dtypes_and_bad_sizes_name_the_tensor() {
    let cases = [
        TensorProto {
            name: "words".into(),
            data_type: dt::STRING,
            dims: vec![1],
            string_data: vec![b"hi".to_vec()],
            ..Default::default()
        },
        raw("bf", dt::BFLOAT16, &[1], vec![0, 0x3f]),
        raw("cplx", dt::COMPLEX64, &[1], vec![0; 8]),
        raw("short", dt::FLOAT, &[3], vec![0; 8]),
        f32_typed("typed_short", &[3], &[1.0]),
        raw("neg", dt::FLOAT, &[-1], vec![]),
        raw("huge_u64", dt::UINT64, &[1], u64::MAX.to_le_bytes().to_vec()),
    ];
    for t in cases {
        let name = t.name.clone();
        let err = import_const(t).unwrap_err();
        assert!(matches!(&err, FrontendError::InvalidTensor { tensor, .. } if *tensor == name), "{name}: {err}");
        assert!(err.to_string().contains(&name), "{err}");
    }
}

#[test]
fn external_data_is_read_relative_to_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let w: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
    let b: Vec<f32> = vec![10.0, 20.0, 30.0];
    // Data file: 16 bytes of padding, then w, then b.
    let mut data = vec![0xAAu8; 16];
    data.extend(w.iter().flat_map(|x| x.to_le_bytes()));
    data.extend(b.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/model.data"), &data).unwrap();
    let ext = |name: &str, dims: &[i64], kv: &[(&str, String)]| TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt::FLOAT,
        data_location: DATA_LOCATION_EXTERNAL,
        external_data: kv
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.clone() })
            .collect(),
        ..Default::default()
    };
    let loc = ("location", "weights/model.data".to_string());
    let mk = |w_kv: Vec<(&str, String)>, b_kv: Vec<(&str, String)>| {
        model(
            13,
            vec![node("MatMul", "mm", &["x", "w"], &["h"], vec![]), node("Add", "add", &["h", "b"], &["y"], vec![])],
            vec![ext("w", &[2, 3], &w_kv), ext("b", &[3], &b_kv)],
            vec![vf("x", &[1, 2])],
            vec![vout("y")],
        )
    };
    // b has no length: it runs to the end of the file.
    let good = mk(
        vec![loc.clone(), ("offset", "16".into()), ("length", "24".into())],
        vec![loc.clone(), ("offset", "40".into())],
    );
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, good.encode_to_vec()).unwrap();
    let m = load(&path).unwrap();
    assert_eq!(inspect(&m).parameter_count, 9);
    let g = import(&m, &ImportOptions::default()).unwrap();
    let out = run(&g, &[tf(&[1, 2], &[1.0, 2.0])]);
    // [1,2] · [[0,.5,1],[1.5,2,2.5]] + b
    assert_close(&out[0], &[1, 3], &[13.0, 24.5, 36.0], 0.0);

    // Out of range.
    let bad = mk(vec![loc.clone(), ("offset", "40".into()), ("length", "24".into())], vec![loc.clone()]);
    std::fs::write(&path, bad.encode_to_vec()).unwrap();
    let err = load(&path).unwrap_err();
    assert!(matches!(&err, FrontendError::MissingExternalData { tensor, .. } if tensor == "w"), "{err}");
    assert!(err.to_string().contains("out of range"), "{err}");
    // Missing file.
    let missing = mk(vec![("location", "nope.data".into())], vec![loc.clone()]);
    std::fs::write(&path, missing.encode_to_vec()).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(&err, FrontendError::MissingExternalData { tensor, path, .. } if tensor == "w" && path.ends_with("nope.data")),
        "{err}"
    );
    // Escaping the model directory.
    let escape = mk(vec![("location", "../x.data".into())], vec![loc.clone()]);
    std::fs::write(&path, escape.encode_to_vec()).unwrap();
    assert!(matches!(load(&path), Err(FrontendError::MissingExternalData { .. })));
    // ... through a symbolic link to a file outside (its bytes would pass for weights, its size
    // would show in messages), or to a folder outside; and a FIFO, which would block the open.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.data"), &data).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.data"), dir.path().join("link.data")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    for location in ["link.data", "linkdir/secret.data"] {
        let m = mk(
            vec![("location", location.into()), ("offset", "16".into()), ("length", "24".into())],
            vec![loc.clone()],
        );
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("outside the model directory") && !err.contains("bytes"), "{location}: {err}");
    }
    let fifo = dir.path().join("fifo.data");
    if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let m = mk(vec![("location", "fifo.data".into())], vec![loc.clone()]);
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("not a regular file"));
    }
    // A link inside the model directory is fine.
    std::os::unix::fs::symlink(dir.path().join("weights/model.data"), dir.path().join("inside.data")).unwrap();
    let m = mk(vec![("location", "inside.data".into()), ("offset", "16".into()), ("length", "24".into())], vec![loc]);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    assert!(load(&path).is_ok());
    // Decoding from memory cannot resolve external data.
    assert!(matches!(
        decode(&good.encode_to_vec(), Path::new("mem.onnx"), None),
        Err(FrontendError::MissingExternalData { .. })
    ));
}

#[test]
fn bad_bytes_are_decode_errors_not_panics() {
    let m = model(
        13,
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![f32_raw("w", &[64], &[1.0; 64])],
        vec![vf("x", &[2])],
        vec![vout("y")],
    );
    let bytes = m.encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.onnx");
    // Every truncation either fails to decode or decodes to something import rejects/accepts cleanly.
    let mut decode_errors = 0;
    for cut in 0..bytes.len() {
        match decode(&bytes[..cut], Path::new("t.onnx"), None) {
            Err(FrontendError::Decode { path, .. }) => {
                assert_eq!(path, Path::new("t.onnx"));
                decode_errors += 1;
            }
            Err(e) => panic!("unexpected error kind for cut {cut}: {e}"),
            Ok(m) => {
                let _ = inspect(&m);
                let _ = import(&m, &ImportOptions::default());
            }
        }
    }
    assert!(decode_errors > bytes.len() / 2, "{decode_errors} of {}", bytes.len());
    // A file cut in half.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load(&path), Err(FrontendError::Decode { .. })));
    // Random bytes.
    for seed in 0..200u64 {
        let junk: Vec<u8> = rand_vec(64 + seed as usize, seed + 1, 128.0).iter().map(|&v| (v + 128.0) as u8).collect();
        match decode(&junk, Path::new("junk.onnx"), None) {
            Err(FrontendError::Decode { .. }) => {}
            Err(e) => panic!("seed {seed}: unexpected {e}"),
            Ok(m) => {
                let _ = inspect(&m);
                let _ = import(&m, &ImportOptions::default());
            }
        }
    }
    // Missing file.
    let err = load(&dir.path().join("absent.onnx")).unwrap_err();
    assert!(matches!(&err, FrontendError::Io { path, .. } if path.ends_with("absent.onnx")), "{err}");
    // Valid protobuf that is not a model.
    assert!(matches!(decode(&[], Path::new("empty.onnx"), None), Err(FrontendError::Decode { .. })));
}

/// Bit flips and byte changes in a real model give errors or a graph, never a panic.
#[test]
fn corrupted_real_model_never_panics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/bert_tiny/model.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let opts = ImportOptions {
        dims: [("batch_size".to_string(), 1), ("sequence_length".to_string(), 4)].into(),
        recognize: true,
        ..Default::default()
    };
    let (mut ok, mut failed) = (0, 0);
    for seed in 0..500u64 {
        let mut b = bytes.clone();
        let r = rand_vec(3, seed + 7, 0.5);
        for (k, v) in r.iter().enumerate() {
            // Positions skewed to the start, where the graph structure (not the weights) lives.
            let frac = (v + 0.5).powi(3);
            let pos = ((frac * b.len() as f64) as usize).min(b.len() - 1);
            b[pos] = b[pos].wrapping_add((seed as u8).wrapping_mul(k as u8 + 3).wrapping_add(1));
        }
        match decode(&b, Path::new("corrupt.onnx"), None) {
            Err(_) => failed += 1,
            Ok(m) => {
                let _ = inspect(&m);
                match import(&m, &opts) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
        }
    }
    // Both outcomes occur: corruption is detected, and harmless flips (in weights) still import.
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
}

#[test]
fn unknown_opsets_and_non_finite_weights_are_refused() {
    // Opsets outside the known range: refused with the version, not imported by guesswork.
    for opset in [0, 5, 9999] {
        let m = model(
            opset,
            vec![node("Identity", "id", &["x"], &["y"], vec![])],
            vec![],
            vec![vf("x", &[2])],
            vec![vout("y")],
        );
        let e = import_model(&m, &ImportOptions::default()).unwrap_err().to_string();
        assert!(e.contains(&format!("opset {opset}")) && e.contains("6 to 26"), "{e}");
    }
    // A NaN or infinite weight: the tensor and the element are named.
    for bad in [f32::NAN, f32::INFINITY] {
        let e = import_const(f32_raw("w", &[3], &[1.0, bad, 2.0])).unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains("element 1") && e.contains("finite"), "{e}");
    }
    assert!(import_const(f32_raw("w", &[2], &[1.0, -2.5])).is_ok());
}
