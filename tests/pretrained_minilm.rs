//! all-MiniLM-L6-v2 (a real pretrained 6-layer BERT): the reference interpreter against onnxruntime, for
//! the full model (token ids + attention mask in) and the encoder stack (embeddings in).
//!
//! The ONNX files (90 MB with external data) are generated on demand by `models/make_minilm.sh` into the
//! git-ignored `models/pretrained/minilm/`; these tests are `#[ignore]`d because of that and their run
//! time, and `.ci/run` runs them after generating the model. The shipped `bert_tiny` model covers the same
//! code paths (Gather embeddings, attention mask, LayerNorm, erf GELU) in the default test run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polyhe::NamedPath;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pretrained/minilm")
}

fn named_npys(d: &Path) -> Vec<NamedPath> {
    let mut v: Vec<NamedPath> = std::fs::read_dir(d)
        .unwrap_or_else(|e| panic!("{}: {e} (run models/make_minilm.sh first)", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .map(|p| NamedPath { name: Some(p.file_stem().unwrap().to_string_lossy().into_owned()), path: p })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn check(model: &str, inputs: &str, expected: &str) {
    let d = dir();
    let m = polyhe::load_model(&d.join(model)).unwrap();
    let names = polyhe::input_names(&m);
    let given = polyhe::read_inputs(&names, &named_npys(&d.join(inputs))).unwrap();
    let g = polyhe::import_for_inputs(&m, &BTreeMap::new(), &given, true).unwrap();
    polyhe_ir::verify::verify(&g).unwrap();
    assert!(g.nodes.values().any(|n| n.op.name() == "gelu"), "{model}: GELU recognized");
    let outs = polyhe_ir::interp::run(&g, &polyhe::ordered_inputs(&g, &given).unwrap()).unwrap();
    let want: BTreeMap<String, PathBuf> =
        named_npys(&d.join(expected)).into_iter().map(|n| (n.name.unwrap(), n.path)).collect();
    for (&v, t) in g.outputs.iter().zip(&outs) {
        let label = g.value_label(v);
        let exp = polyhe::npy::read(&want[&label]).unwrap();
        let err = polyhe::max_rel_error(t, &exp).unwrap();
        eprintln!("{model} {label}: max relative error {err:.3e}");
        assert!(err <= 1e-5, "{model}: {label} relative error {err:e}");
    }
}

#[test]
#[ignore = "needs models/make_minilm.sh (90 MB generated model); run by .ci/run"]
fn minilm_full_model_matches_onnxruntime() {
    check("model.onnx", "inputs", "expected");
}

#[test]
#[ignore = "needs models/make_minilm.sh (90 MB generated model); run by .ci/run"]
fn minilm_encoder_stack_matches_onnxruntime() {
    check("encoder.onnx", "encoder_inputs", "encoder_expected");
}

/// The whole pretrained model compiles to a CKKS program at 128 bits (16 tokens, the pooling and
/// normalization on the client): the column layout, bootstraps, a program that loads and validates.
/// ≈ 40 s and 3 GB in release (before structured maps it was killed at 24 GB).
#[test]
#[ignore = "needs models/make_minilm.sh (90 MB generated model); run by .ci/run"]
fn minilm_compiles_to_a_ckks_program() {
    let d = dir();
    let out = std::env::temp_dir().join(format!("polyhe-minilm-ckks-{}", std::process::id()));
    let calib = |n: &str| format!("{n}={}", d.join("calib").join(format!("{n}.npy")).display());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_polyhe"))
        .args(["compile", d.join("model.onnx").to_str().unwrap()])
        .args(["--calib", &calib("input_ids"), "--calib", &calib("attention_mask")])
        .args(["--dim", "batch_size=1", "--dim", "sequence_length=16", "--client-tail", "auto", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(out.join("ckks_report.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["layout"], "column", "{report}");
    assert!(r["bootstraps"].as_u64().unwrap() > 0);
    let bytes = std::fs::read(out.join("program.bin")).unwrap();
    let p = polyhe_runtime::Program::from_bytes(&bytes).unwrap();
    p.validate().unwrap();
    assert_eq!(p.insts.len() as u64, r["instructions"].as_u64().unwrap());
    let _ = std::fs::remove_dir_all(&out);
}
