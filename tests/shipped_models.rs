//! End-to-end on the models the project ships (`models/<name>/`): the reference interpreter must match
//! onnxruntime's outputs (`expected/`) to 1e-5 relative, the IR text form must round-trip, the verifier
//! must accept the imported graph, and the printed IR is snapshotted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polyhe::NamedPath;
use polyhe_ir::text::{self, PrintOptions};
use polyhe_ir::{Graph, Tensor};

const SHIPPED: &[&str] = &["encoder", "encoder_decomposed", "sigma_encoder", "vit", "bert_tiny"];

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn npy_dir(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "npy") {
            out.insert(p.file_stem().unwrap().to_string_lossy().into_owned(), p);
        }
    }
    out
}

fn load_and_import(name: &str, recognize: bool) -> (Graph, BTreeMap<String, Tensor>) {
    let dir = model_dir(name);
    let m = polyhe::load_model(&dir.join("model.onnx")).unwrap();
    let given: Vec<NamedPath> =
        npy_dir(&dir.join("inputs")).into_iter().map(|(n, p)| NamedPath { name: Some(n), path: p }).collect();
    let names = polyhe::input_names(&m);
    let inputs = polyhe::read_inputs(&names, &given).unwrap();
    let g = polyhe::import_for_inputs(&m, &BTreeMap::new(), &inputs, recognize).unwrap();
    polyhe_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{name}: verifier: {e}"));
    (g, inputs)
}

fn check_against_onnxruntime(name: &str, recognize: bool) {
    let (g, inputs) = load_and_import(name, recognize);
    let ordered = polyhe::ordered_inputs(&g, &inputs).unwrap();
    let outs = polyhe_ir::interp::run(&g, &ordered).unwrap();
    let expected = npy_dir(&model_dir(name).join("expected"));
    assert_eq!(expected.len(), g.outputs.len(), "{name}: expected/ has one file per output");
    for (&v, t) in g.outputs.iter().zip(&outs) {
        let label = g.value_label(v);
        let exp = polyhe::npy::read(&expected[&label]).unwrap();
        let err = polyhe::max_rel_error(t, &exp).unwrap();
        assert!(err <= 1e-5, "{name} (recognize={recognize}): output {label} relative error {err:e} > 1e-5");
    }
}

#[test]
fn reference_matches_onnxruntime_on_every_shipped_model() {
    for name in SHIPPED {
        check_against_onnxruntime(name, true);
        check_against_onnxruntime(name, false);
    }
}

#[test]
fn ir_text_round_trips_on_every_shipped_model() {
    for name in SHIPPED {
        let (g, _) = load_and_import(name, true);
        let full = text::print(&g, &PrintOptions::default());
        let back = text::parse(&full).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(back == g, "{name}: parse(print(g)) != g");
        assert_eq!(text::print(&back, &PrintOptions::default()), full, "{name}: print is not stable");
    }
}

#[test]
fn recognition_fuses_layer_norm_and_gelu() {
    let count = |g: &Graph, op: &str| g.nodes.values().filter(|n| n.op.name() == op).count();
    for (name, ln, gelu) in [("encoder", 2, 1), ("encoder_decomposed", 2, 1), ("vit", 5, 2), ("bert_tiny", 5, 2)] {
        let (g, _) = load_and_import(name, true);
        assert_eq!(count(&g, "layer_norm"), ln, "{name}: layer_norm count");
        assert_eq!(count(&g, "gelu"), gelu, "{name}: gelu count");
        assert_eq!(
            count(&g, "erf") + count(&g, "tanh") * (name != "bert_tiny") as usize,
            0,
            "{name}: leftover erf/tanh"
        );
    }
}

#[test]
fn snapshot_tensor_ir_of_shipped_models() {
    for name in SHIPPED {
        let (g, _) = load_and_import(name, true);
        let s = text::print(&g, &PrintOptions { elide_constants_over: Some(16) });
        insta::assert_snapshot!(format!("tensor_ir_{name}"), s);
    }
}
