//! Binding dynamic dims: from `--dim`, from concrete input shapes, and the errors when they are missing
//! or disagree; `inspect` shows symbolic dims by name.

mod common;

use std::collections::BTreeMap;

use common::*;
use polyhe_frontend::proto::{data_type as dt, ModelProto};
use polyhe_frontend::{decode, inspect, Dim, FrontendError, ImportOptions};

/// `ids: i64[batch_size, sequence_length]`, `mask: f32[batch_size, sequence_length]`, `z: f32[?, 4]`.
fn bert_like() -> ModelProto {
    model(
        14,
        vec![
            node("Cast", "cast", &["ids"], &["idf"], vec![a_int("to", dt::FLOAT as i64)]),
            node("Mul", "mul", &["idf", "mask"], &["y"], vec![]),
            node("ReduceSum", "rs", &["z"], &["zs"], vec![a_int("keepdims", 0)]),
        ],
        vec![],
        vec![
            vi("ids", dt::INT64, &[D::P("batch_size"), D::P("sequence_length")]),
            vi("mask", dt::FLOAT, &[D::P("batch_size"), D::P("sequence_length")]),
            vi("z", dt::FLOAT, &[D::Unnamed, D::N(4)]),
        ],
        vec![vi("y", dt::FLOAT, &[D::P("batch_size"), D::P("sequence_length")]), vout("zs")],
    )
}

fn opts(dims: &[(&str, usize)], shapes: &[(&str, &[usize])]) -> ImportOptions {
    ImportOptions {
        dims: dims.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        input_shapes: shapes.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect::<BTreeMap<_, _>>(),
        recognize: false,
    }
}

#[test]
fn dims_bind_from_options_and_input_shapes() {
    let m = bert_like();
    let g = import_model(&m, &opts(&[("batch_size", 2), ("sequence_length", 5)], &[("z", &[3, 4])])).unwrap();
    let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|&v| g.ty(v).shape.clone()).collect();
    assert_eq!(shapes, vec![vec![2, 5], vec![2, 5], vec![3, 4]]);
    // The same from concrete shapes only: `ids` binds both names, `mask` then must agree.
    let g = import_model(&m, &opts(&[], &[("ids", &[2, 5]), ("z", &[1, 4])])).unwrap();
    assert_eq!(g.ty(g.inputs[1]).shape, vec![2, 5]);
    assert_eq!(g.ty(g.outputs[0]).shape, vec![2, 5]);
    let out = run(
        &g,
        &[ti(&[2, 5], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), tf(&[2, 5], &[1.0; 10]), tf(&[1, 4], &[1.0, 2.0, 3.0, 4.0])],
    );
    assert_close(&out[0], &[2, 5], &(1..=10).map(f64::from).collect::<Vec<_>>(), 0.0);
    // ReduceSum-13 without axes reduces everything.
    assert_close(&out[1], &[], &[10.0], 0.0);
}

#[test]
fn unbound_dims_name_input_axis_and_dim() {
    let m = bert_like();
    let err = import_model(&m, &opts(&[("batch_size", 1)], &[("z", &[1, 4])])).unwrap_err();
    match &err {
        FrontendError::UnboundDim { input, axis, dim } => {
            assert_eq!((input.as_str(), *axis, dim.as_str()), ("ids", 1, "sequence_length"));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("--dim sequence_length="), "{err}");
    // An unnamed dim can only come from a concrete shape.
    let err = import_model(&m, &opts(&[("batch_size", 1), ("sequence_length", 3)], &[])).unwrap_err();
    assert!(matches!(&err, FrontendError::UnboundDim { input, axis: 0, .. } if input == "z"), "{err}");
}

#[test]
fn conflicting_dims_are_errors() {
    let m = bert_like();
    // --dim says 2, the tensor says 3.
    let err = import_model(&m, &opts(&[("batch_size", 2)], &[("ids", &[3, 5]), ("z", &[1, 4])])).unwrap_err();
    assert!(
        matches!(&err, FrontendError::DimConflict { input, axis: 0, dim, expected: 2, got: 3 } if input == "ids" && dim == "batch_size"),
        "{err}"
    );
    // Two inputs disagree on sequence_length.
    let err = import_model(&m, &opts(&[], &[("ids", &[1, 5]), ("mask", &[1, 6]), ("z", &[1, 4])])).unwrap_err();
    assert!(
        matches!(&err, FrontendError::DimConflict { input, axis: 1, dim, expected: 5, got: 6 } if input == "mask" && dim == "sequence_length"),
        "{err}"
    );
    // A static dim disagrees with the tensor.
    let err = import_model(&m, &opts(&[("batch_size", 1), ("sequence_length", 1)], &[("z", &[1, 5])])).unwrap_err();
    assert!(
        matches!(&err, FrontendError::DimConflict { input, axis: 1, expected: 4, got: 5, .. } if input == "z"),
        "{err}"
    );
    // Wrong rank, unknown input name.
    let err = import_model(&m, &opts(&[], &[("z", &[4])])).unwrap_err();
    assert!(matches!(&err, FrontendError::InputRank { input, expected: 2, got: 1 } if input == "z"), "{err}");
    let err = import_model(&m, &opts(&[], &[("input_ids", &[1, 4])])).unwrap_err();
    assert!(matches!(&err, FrontendError::UnknownInput { input, .. } if input == "input_ids"), "{err}");
    assert!(err.to_string().contains("`ids`"), "{err}");
}

#[test]
fn inspect_needs_no_binding() {
    let m = bert_like();
    let om = decode(&prost::Message::encode_to_vec(&m), "bert_like.onnx".as_ref(), None).unwrap();
    let info = inspect(&om);
    assert_eq!(info.opset, Some(14));
    assert_eq!(info.inputs[0].name, "ids");
    assert_eq!(info.inputs[0].dtype, "i64");
    assert_eq!(info.inputs[0].shape, Some(vec![Dim::Named("batch_size".into()), Dim::Named("sequence_length".into())]));
    assert_eq!(info.inputs[2].shape, Some(vec![Dim::Unknown, Dim::Fixed(4)]));
    assert_eq!(info.op_histogram.values().sum::<usize>(), 3);
    assert!(info.unsupported.is_empty());
    let text = info.to_string();
    assert!(text.contains("ids: i64[batch_size,sequence_length]"), "{text}");
    assert!(text.contains("z: f32[?,4]"), "{text}");
    assert!(text.contains("opset 14"), "{text}");
}

#[test]
fn declared_output_shapes_are_checked() {
    // `y` is declared [sequence_length, batch_size] but computes [batch_size, sequence_length].
    let mut m = bert_like();
    m.graph.as_mut().unwrap().output[0] = vi("y", dt::FLOAT, &[D::P("sequence_length"), D::P("batch_size")]);
    let o = opts(&[("batch_size", 2), ("sequence_length", 5)], &[("z", &[1, 4])]);
    let err = import_model(&m, &o).unwrap_err();
    assert!(
        matches!(&err, FrontendError::Graph { msg } if msg.contains("`y`") && msg.contains("sequence_length")),
        "{err}"
    );
    // Equal values cannot be told apart and are accepted.
    let o = opts(&[("batch_size", 3), ("sequence_length", 3)], &[("z", &[1, 4])]);
    assert!(import_model(&m, &o).is_ok());
    // A wrong element type.
    let mut m = bert_like();
    m.graph.as_mut().unwrap().output[0] = vi("y", dt::INT64, &[D::P("batch_size"), D::P("sequence_length")]);
    let o = opts(&[("batch_size", 2), ("sequence_length", 5)], &[("z", &[1, 4])]);
    assert!(matches!(import_model(&m, &o), Err(FrontendError::Graph { .. })));
}
