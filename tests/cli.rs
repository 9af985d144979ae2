//! The command line as users and outside checks see it: exit status 0 on success, 1 with a message that
//! names the file/input/node on bad input, never a panic or a backtrace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polyhe_ir::{DType, Tensor};

fn polyhe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polyhe")).args(args).output().expect("spawn polyhe")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch path of this test process, under cargo's target tmp dir. Folders left by earlier
/// runs (keys and ciphertexts: hundreds of MB each) are removed the first time.
fn tmp(name: &str) -> PathBuf {
    static CLEAN: std::sync::Once = std::sync::Once::new();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mine = format!("cli-{}", std::process::id());
    CLEAN.call_once(|| {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("cli-") && n != mine {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let d = root.join(mine);
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts a clean user error: exit 1, message contains every needle, no panic text.
fn assert_user_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic on bad input:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
}

#[test]
fn run_reference_writes_output_matching_onnxruntime() {
    let m = root().join("models/encoder");
    let out = tmp("encoder_logits.npy");
    let o = polyhe(&[
        "run",
        s(&m.join("model.onnx")),
        "--input",
        s(&m.join("inputs/x.npy")),
        "--output",
        s(&out),
        "--mode",
        "reference",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = polyhe::npy::read(&out).unwrap();
    let want = polyhe::npy::read(&m.join("expected/logits.npy")).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    assert!(polyhe::max_rel_error(&got, &want).unwrap() <= 1e-5);
}

#[test]
fn run_with_named_inputs_and_outputs() {
    let m = root().join("models/bert_tiny");
    let out = tmp("bert_pooler.npy");
    let o = polyhe(&[
        "run",
        s(&m.join("model.onnx")),
        "--input",
        &format!("input_ids={}", s(&m.join("inputs/input_ids.npy"))),
        "--input",
        &format!("attention_mask={}", s(&m.join("inputs/attention_mask.npy"))),
        "--output",
        &format!("pooler_output={}", s(&out)),
        "--compare",
        &format!("pooler_output={}", s(&m.join("expected/pooler_output.npy"))),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("max relative error"));
    assert!(out.exists());
}

#[test]
fn bare_input_for_multi_input_model_is_an_error() {
    let m = root().join("models/bert_tiny");
    let o = polyhe(&["run", s(&m.join("model.onnx")), "--input", s(&m.join("inputs/input_ids.npy"))]);
    assert_user_error(&o, &["input_ids", "attention_mask", "NAME=FILE"]);
}

#[test]
fn truncated_model_file() {
    let bytes = std::fs::read(root().join("models/encoder/model.onnx")).unwrap();
    let p = tmp("truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let o = polyhe(&["inspect", s(&p)]);
    assert_user_error(&o, &["truncated.onnx"]);
}

#[test]
fn random_bytes_model_file() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let p = tmp("random.onnx");
    std::fs::write(&p, bytes).unwrap();
    let o = polyhe(&["inspect", s(&p)]);
    assert_user_error(&o, &["random.onnx"]);
    let o = polyhe(&["run", s(&p), "--input", s(&root().join("models/encoder/inputs/x.npy"))]);
    assert_user_error(&o, &["random.onnx"]);
}

#[test]
fn missing_model_file() {
    let o = polyhe(&["inspect", "/nonexistent/model.onnx"]);
    assert_user_error(&o, &["/nonexistent/model.onnx"]);
}

#[test]
fn unsupported_ops_are_all_named() {
    let p = root().join("tests/fixtures/unsupported_ops.onnx");
    let o = polyhe(&["inspect", s(&p)]);
    assert!(o.status.success(), "inspect lists unsupported ops without failing");
    let text = String::from_utf8_lossy(&o.stdout);
    for n in ["TopK", "topk_node", "NonZero", "nonzero_node"] {
        assert!(text.contains(n), "inspect output lacks {n}:\n{text}");
    }
    let x = tmp("unsup_in.npy");
    polyhe::npy::write(&x, &Tensor::float(DType::F32, vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap()).unwrap();
    let o = polyhe(&["run", s(&p), "--input", s(&x)]);
    assert_user_error(&o, &["TopK", "topk_node", "NonZero", "nonzero_node"]);
}

#[test]
fn input_of_wrong_shape() {
    let m = root().join("models/encoder");
    let x = tmp("wrong_shape.npy");
    polyhe::npy::write(&x, &Tensor::float(DType::F32, vec![2, 5, 7], vec![0.5; 70]).unwrap()).unwrap();
    let o = polyhe(&["run", s(&m.join("model.onnx")), "--input", s(&x)]);
    assert_user_error(&o, &["x"]);
}

#[test]
fn input_of_wrong_dtype() {
    let m = root().join("models/encoder");
    let x = tmp("wrong_dtype.npy");
    polyhe::npy::write(&x, &Tensor::int(DType::I64, vec![8, 16, 32], vec![1; 8 * 16 * 32]).unwrap()).unwrap();
    let o = polyhe(&["run", s(&m.join("model.onnx")), "--input", s(&x)]);
    assert_user_error(&o, &["`x`", "i64"]);
}

#[test]
fn corrupt_npy_input() {
    let m = root().join("models/encoder");
    let x = tmp("corrupt.npy");
    std::fs::write(&x, b"\x93NUMPY\x01\x00garbage").unwrap();
    let o = polyhe(&["run", s(&m.join("model.onnx")), "--input", s(&x)]);
    assert_user_error(&o, &["corrupt.npy"]);
}

#[test]
fn unbound_dynamic_dim() {
    let m = root().join("models/bert_tiny/model.onnx");
    let o = polyhe(&["dump", s(&m)]);
    assert_user_error(&o, &["batch_size"]);
    let o = polyhe(&["dump", s(&m), "--dim", "batch_size=1", "--dim", "sequence_length=12"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("gather"));
}

#[test]
fn dump_dot_and_inspect() {
    let m = root().join("models/vit/model.onnx");
    let o = polyhe(&["dump", s(&m), "--dim", "batch_size=1", "--format", "dot"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("digraph"));
    let o = polyhe(&["inspect", s(&m)]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Conv") && text.contains("pixels"), "{text}");
}

#[test]
fn compile_writes_report_and_poly_ir() {
    let m = root().join("models/encoder");
    let out = tmp("compile_encoder");
    let o = polyhe(&[
        "compile",
        s(&m.join("model.onnx")),
        "--calib",
        s(&m.join("calib/x.npy")),
        "--dim",
        "batch_size=1",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("\"approximations\"") && report.contains("total_depth"), "{report}");
    let ir = std::fs::read_to_string(out.join("poly.ir")).unwrap();
    let g = polyhe_ir::text::parse(&ir).unwrap();
    assert!(g.nodes.values().any(|n| n.op.name() == "chebyshev"));
    assert!(!g.nodes.values().any(|n| matches!(n.op.name(), "softmax" | "layer_norm" | "gelu")));
    assert_eq!(g.ty(g.inputs[0]).shape, vec![1, 16, 32], "--dim binds the deployment batch");
}

#[test]
fn run_poly_mode_matches_onnxruntime_closely() {
    let m = root().join("models/encoder");
    let out = tmp("encoder_poly_logits.npy");
    let o = polyhe(&[
        "run",
        s(&m.join("model.onnx")),
        "--mode",
        "poly",
        "--calib",
        s(&m.join("calib/x.npy")),
        "--input",
        s(&m.join("inputs/x.npy")),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = polyhe::npy::read(&out).unwrap().to_f64_vec();
    let want = polyhe::npy::read(&m.join("expected/logits.npy")).unwrap().to_f64_vec();
    let argmax =
        |v: &[f64]| v.chunks(4).map(|r| (0..4).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap()).collect::<Vec<_>>();
    assert_eq!(argmax(&got), argmax(&want));
}

#[test]
fn poly_mode_without_calibration_is_a_user_error() {
    let m = root().join("models/encoder");
    let o = polyhe(&["run", s(&m.join("model.onnx")), "--mode", "poly", "--input", s(&m.join("inputs/x.npy"))]);
    assert_user_error(&o, &["--calib"]);
}

#[test]
fn dump_poly_stage() {
    let m = root().join("models/sigma_encoder");
    let o = polyhe(&[
        "dump",
        s(&m.join("model.onnx")),
        "--stage",
        "poly",
        "--calib",
        s(&m.join("calib/x.npy")),
        "--dim",
        "batch_size=1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("chebyshev") && !text.contains(" relu "), "{text}");
}

fn square_mlp_compiled(tag: &str) -> PathBuf {
    let f = root().join("tests/fixtures");
    let out = tmp(&format!("sq_{tag}"));
    let o = polyhe(&[
        "compile",
        s(&f.join("square_mlp.onnx")),
        "--calib",
        s(&f.join("square_mlp_calib.npy")),
        "--dim",
        "batch_size=1",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("program.bin").exists() && out.join("ckks_report.json").exists());
    out
}

#[test]
fn run_encrypted_matches_poly_mode() {
    let f = root().join("tests/fixtures");
    let y = tmp("sq_enc_y.npy");
    let o = polyhe(&[
        "run",
        s(&f.join("square_mlp.onnx")),
        "--mode",
        "encrypted",
        "--calib",
        s(&f.join("square_mlp_calib.npy")),
        "--input",
        s(&f.join("square_mlp_x.npy")),
        "--output",
        s(&y),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("keygen") && err.contains("max relative error vs poly mode"), "{err}");
    let got = polyhe::npy::read(&y).unwrap();
    let o = polyhe(&[
        "run",
        s(&f.join("square_mlp.onnx")),
        "--input",
        s(&f.join("square_mlp_x.npy")),
        "--output",
        s(&tmp("sq_ref_y.npy")),
    ]);
    assert!(o.status.success());
    let want = polyhe::npy::read(&tmp("sq_ref_y.npy")).unwrap();
    assert!(polyhe::max_rel_error(&got, &want).unwrap() < 1e-3);
}

#[test]
fn client_server_split_flow_across_processes() {
    let f = root().join("tests/fixtures");
    let out = square_mlp_compiled("split");
    let keys = out.join("keys");
    let o = polyhe(&["keygen", s(&out), "--keys", s(&keys)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ct = out.join("ct");
    let o = polyhe(&["encrypt", s(&out), "--keys", s(&keys), "--input", s(&f.join("square_mlp_x.npy")), "-o", s(&ct)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The server gets a folder with the program, the evaluation keys and the ciphertexts only.
    let server = out.join("server");
    std::fs::create_dir_all(&server).unwrap();
    std::fs::copy(out.join("program.bin"), server.join("program.bin")).unwrap();
    std::fs::copy(keys.join("eval.keys"), server.join("eval.keys")).unwrap();
    let res = server.join("res");
    let o = polyhe(&[
        "eval",
        s(&server),
        "--eval-keys",
        s(&server.join("eval.keys")),
        "--ciphertexts",
        s(&ct),
        "-o",
        s(&res),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y = out.join("y.npy");
    let o = polyhe(&["decrypt", s(&out), "--keys", s(&keys), "--ciphertexts", s(&res), "--output", s(&y)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o =
        polyhe(&["run", s(&f.join("square_mlp.onnx")), "--input", s(&f.join("square_mlp_x.npy")), "--compare", s(&y)]);
    let text = String::from_utf8_lossy(&o.stdout);
    let err: f64 = text.split("= ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(err < 1e-3, "{text}");

    // A server returning the input ciphertexts as the results: refused by their level and scale.
    let swapped = out.join("swapped");
    std::fs::create_dir_all(&swapped).unwrap();
    let input_ct: Vec<PathBuf> = std::fs::read_dir(&ct).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(input_ct.len(), 1, "{input_ct:?}");
    for r in std::fs::read_dir(&res).unwrap() {
        std::fs::copy(&input_ct[0], swapped.join(r.unwrap().file_name())).unwrap();
    }
    let o = polyhe(&["decrypt", s(&out), "--keys", s(&keys), "--ciphertexts", s(&swapped), "--output", s(&y)]);
    assert_user_error(&o, &["not this program's output", "level"]);

    // Corrupt ciphertext file: a clear error naming the file.
    let bad = out.join("ct_bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut bytes = std::fs::read(ct.join("in0.ct")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(bad.join("in0.ct"), bytes).unwrap();
    let o = polyhe(&[
        "eval",
        s(&server),
        "--eval-keys",
        s(&server.join("eval.keys")),
        "--ciphertexts",
        s(&bad),
        "-o",
        s(&res),
    ]);
    assert_user_error(&o, &["in0.ct"]);

    // A key file of the wrong kind (the public key handed over as evaluation keys) is refused by name.
    // (Keys made under other parameters: backend/tests/split_flow.rs and runtime/tests/serial.rs.)
    let o = polyhe(&[
        "eval",
        s(&server),
        "--eval-keys",
        s(&keys.join("public.key")),
        "--ciphertexts",
        s(&ct),
        "-o",
        s(&res),
    ]);
    assert_user_error(&o, &["public.key"]);
    // The server never needs the secret key: it is not in its folder, and eval succeeded above.
    assert!(!server.join("secret.key").exists());
}

/// Backend flags: `--security none` warns loudly and is recorded in the program (the split flow
/// carries it: keygen warns too, and `encrypt` packs inputs from OUT/client_plan.json, never lowering);
/// keys made for other parameters are refused; infeasible overrides are user errors.
#[test]
fn backend_flags_security_none_and_overrides() {
    let f = root().join("tests/fixtures");
    let base = |out: &Path| -> Vec<String> {
        [
            "compile",
            s(&f.join("square_mlp.onnx")),
            "--calib",
            s(&f.join("square_mlp_calib.npy")),
            "--dim",
            "batch_size=1",
            "-o",
            s(out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let insecure = tmp("sq_insecure");
    let mut args = base(&insecure);
    args.extend(["--security", "none", "--log-n", "13", "--log-scale", "30", "--levels", "5"].map(String::from));
    let o = polyhe(&args.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("WARNING") && err.contains("--security none"), "{err}");
    assert!(
        text.contains("N = 2^13") && text.contains("scale 2^30") && text.contains("WARNING: security not set"),
        "{text}"
    );
    // The split flow on the insecure program: every step that loads it warns.
    let keys = insecure.join("keys");
    let o = polyhe(&["keygen", s(&insecure), "--keys", s(&keys)]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--security none"));
    let ct = insecure.join("ct");
    let o =
        polyhe(&["encrypt", s(&insecure), "--keys", s(&keys), "--input", s(&f.join("square_mlp_x.npy")), "-o", s(&ct)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Keys of another parameter set (the default, secure compile) are refused by the evaluator.
    let secure = square_mlp_compiled("flags_secure");
    let o = polyhe(&[
        "eval",
        s(&secure),
        "--eval-keys",
        s(&keys.join("eval.keys")),
        "--ciphertexts",
        s(&ct),
        "-o",
        s(&secure.join("res")),
    ]);
    assert_user_error(&o, &["eval.keys"]);

    // Infeasible overrides: exit 1 with the reason.
    let mut args = base(&tmp("sq_bad_n"));
    args.extend(["--log-n", "12"].map(String::from));
    assert_user_error(&polyhe(&args.iter().map(|x| x.as_str()).collect::<Vec<_>>()), &["log_n = 12"]);
    let mut args = base(&tmp("sq_bad_levels"));
    args.extend(["--levels", "1"].map(String::from));
    assert_user_error(&polyhe(&args.iter().map(|x| x.as_str()).collect::<Vec<_>>()), &["--levels 1"]);
    // An unknown flag value is bad input too: exit 1, naming the flag and the choices.
    let mut args = base(&tmp("sq_bad_layout"));
    args.extend(["--layout", "diagonal"].map(String::from));
    assert_user_error(
        &polyhe(&args.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
        &["--layout", "row, column, auto"],
    );

    // A forced layout is the one the report names; automatic names the estimates it compared.
    for (flag, want) in [("column", &["\"layout\": \"column\""][..]), ("auto", &["\"row\": ", "\"column\": "][..])] {
        let out = tmp(&format!("sq_layout_{flag}"));
        let mut args = base(&out);
        args.extend(["--layout", flag].map(String::from));
        let o = polyhe(&args.iter().map(|x| x.as_str()).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report = std::fs::read_to_string(out.join("ckks_report.json")).unwrap();
        assert!(want.iter().all(|w| report.contains(w)), "--layout {flag}: {report}");
    }
}

#[test]
fn split_flow_with_client_tail_decrypts_to_the_model_outputs() {
    let f = root().join("tests/fixtures");
    let out = tmp("sq_tail");
    let compile = |cut: &str| {
        polyhe(&[
            "compile",
            s(&f.join("square_mlp.onnx")),
            "--calib",
            s(&f.join("square_mlp_calib.npy")),
            "--dim",
            "batch_size=1",
            "--client-tail",
            cut,
            "-o",
            s(&out),
        ])
    };
    // Bad cuts: exit 1 naming the node.
    assert_user_error(&compile("nope"), &["no node named `nope`"]);
    assert_user_error(&compile("fc1"), &["reads the model input `x`"]);
    assert_user_error(&compile("auto"), &["no non-polynomial op"]);
    // The last matmul runs on the client after decryption.
    let o = compile("fc2");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("client tail (after decryption, exact f64): 1 ops from fc2"), "{stdout}");
    assert!(stdout.contains("computed on the client after decryption (exact f64): matmul fc2"), "{stdout}");
    let tail = std::fs::read_to_string(out.join("tail.ir")).unwrap();
    assert!(tail.contains("matmul") && tail.contains("\"square:0\""), "{tail}");
    let keys = out.join("keys");
    let ct = out.join("ct");
    let res = out.join("res");
    let y = out.join("y.npy");
    for args in [
        vec!["keygen", s(&out), "--keys", s(&keys)],
        vec!["encrypt", s(&out), "--keys", s(&keys), "--input", s(&f.join("square_mlp_x.npy")), "-o", s(&ct)],
        vec!["eval", s(&out), "--eval-keys", s(&keys.join("eval.keys")), "--ciphertexts", s(&ct), "-o", s(&res)],
        vec!["decrypt", s(&out), "--keys", s(&keys), "--ciphertexts", s(&res), "--output", s(&y)],
    ] {
        let o = polyhe(&args);
        assert!(o.status.success(), "{}: {}", args[0], String::from_utf8_lossy(&o.stderr));
    }
    // decrypt wrote the model's output `y` [1, 4, 3], not the decrypted cut `square:0` [1, 4, 8].
    let got = polyhe::npy::read(&y).unwrap();
    assert_eq!(got.shape(), &[1, 4, 3]);
    let r = tmp("sq_tail_ref.npy");
    let o =
        polyhe(&["run", s(&f.join("square_mlp.onnx")), "--input", s(&f.join("square_mlp_x.npy")), "--output", s(&r)]);
    assert!(o.status.success());
    let want = polyhe::npy::read(&r).unwrap();
    let err = polyhe::max_rel_error(&got, &want).unwrap();
    assert!(err < 1e-3, "split flow + client tail vs reference: {err:.3e}");
    // The client plan binds the head and the tail (issue 16): an edited tail.ir (a constant
    // changed) is refused by decrypt, a missing one too; an edited head by encrypt.
    let tail_path = out.join("tail.ir");
    let decrypt = || polyhe(&["decrypt", s(&out), "--keys", s(&keys), "--ciphertexts", s(&res), "--output", s(&y)]);
    let edited = tail.replacen("0.", "1.", 1);
    assert_ne!(edited, tail);
    std::fs::write(&tail_path, &edited).unwrap();
    assert_user_error(&decrypt(), &["tail.ir", "does not belong to", "client_plan.json"]);
    std::fs::remove_file(&tail_path).unwrap();
    assert_user_error(&decrypt(), &["tail.ir", "is missing"]);
    std::fs::write(&tail_path, &tail).unwrap();
    assert!(decrypt().status.success());
    let head_path = out.join("client_head.ir");
    let head = std::fs::read_to_string(&head_path).unwrap();
    std::fs::write(&head_path, format!("{head}\n")).unwrap();
    let o = polyhe(&["encrypt", s(&out), "--keys", s(&keys), "--input", s(&f.join("square_mlp_x.npy")), "-o", s(&ct)]);
    assert_user_error(&o, &["client_head.ir", "does not belong to"]);
    std::fs::write(&head_path, &head).unwrap();
    // Recompiling without a tail removes the stale OUT/tail.ir.
    let o = polyhe(&[
        "compile",
        s(&f.join("square_mlp.onnx")),
        "--calib",
        s(&f.join("square_mlp_calib.npy")),
        "--dim",
        "batch_size=1",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success());
    assert!(!out.join("tail.ir").exists());
}

#[test]
fn run_encrypted_with_client_tail_times_the_tail_and_compares_model_outputs() {
    let f = root().join("tests/fixtures");
    let y = tmp("sq_enc_tail_y.npy");
    let o = polyhe(&[
        "run",
        s(&f.join("square_mlp.onnx")),
        "--mode",
        "encrypted",
        "--client-tail",
        "fc2",
        "--calib",
        s(&f.join("square_mlp_calib.npy")),
        "--input",
        s(&f.join("square_mlp_x.npy")),
        "--output",
        s(&y),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(", client tail ") && err.contains("y: max relative error vs poly mode"), "{err}");
    let got = polyhe::npy::read(&y).unwrap();
    assert_eq!(got.shape(), &[1, 4, 3]);
    let r = tmp("sq_enc_tail_ref.npy");
    let o =
        polyhe(&["run", s(&f.join("square_mlp.onnx")), "--input", s(&f.join("square_mlp_x.npy")), "--output", s(&r)]);
    assert!(o.status.success());
    assert!(polyhe::max_rel_error(&got, &polyhe::npy::read(&r).unwrap()).unwrap() < 1e-3);
}

/// `--bootstrap-levels` (test ring): compile writes the client plan beside the program (no
/// backend.args: `encrypt` never lowers again); the split flow runs the bootstraps (keygen adds the conjugation key) and
/// decrypts to the reference; `dump --stage ckks` shows the bootstrap instructions.
#[test]
fn split_flow_with_bootstraps() {
    let f = root().join("tests/fixtures");
    let (model, calib) = (f.join("square_mlp.onnx"), f.join("square_mlp_calib.npy"));
    let out = tmp("sq_boot");
    // 3 compute levels (level 1 is the floor) for a depth-3 program: one refresh.
    let ring = ["--security", "none", "--log-n", "13", "--bootstrap-levels", "3"];
    let mut args = vec!["compile", s(&model), "--calib", s(&calib), "--dim", "batch_size=1", "-o", s(&out)];
    args.extend(ring);
    let o = polyhe(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("bootstraps: 1 ciphertext refresh(es)") && stdout.contains("compute levels 3"), "{stdout}");
    assert!(!out.join("backend.args").exists());
    assert!(out.join("client_plan.json").exists() && out.join("client_head.ir").exists());
    let keys = out.join("keys");
    let ct = out.join("ct");
    let res = out.join("res");
    let y = out.join("y.npy");
    for args in [
        vec!["keygen", s(&out), "--keys", s(&keys)],
        vec!["encrypt", s(&out), "--keys", s(&keys), "--input", s(&f.join("square_mlp_x.npy")), "-o", s(&ct)],
        vec!["eval", s(&out), "--eval-keys", s(&keys.join("eval.keys")), "--ciphertexts", s(&ct), "-o", s(&res)],
        vec!["decrypt", s(&out), "--keys", s(&keys), "--ciphertexts", s(&res), "--output", s(&y)],
    ] {
        let o = polyhe(&args);
        assert!(o.status.success(), "{}: {}", args[0], String::from_utf8_lossy(&o.stderr));
    }
    let r = tmp("sq_boot_ref.npy");
    let o =
        polyhe(&["run", s(&f.join("square_mlp.onnx")), "--input", s(&f.join("square_mlp_x.npy")), "--output", s(&r)]);
    assert!(o.status.success());
    let err = polyhe::max_rel_error(&polyhe::npy::read(&y).unwrap(), &polyhe::npy::read(&r).unwrap()).unwrap();
    assert!(err < 1e-3, "split flow with bootstraps vs reference: {err:.3e}");
    // The same flag on dump: the program text has the refreshes.
    let mut args = vec!["dump", s(&model), "--stage", "ckks", "--calib", s(&calib), "--dim", "batch_size=1"];
    args.extend(ring);
    let o = polyhe(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches("= bootstrap %").count(), 1);
    // With --full, the exact text form, which reads back to the compiled program.
    args.push("--full");
    let o = polyhe(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = polyhe_runtime::Program::parse(&String::from_utf8_lossy(&o.stdout)).unwrap();
    p.validate().unwrap();
    assert_eq!(p.insts.iter().filter(|i| matches!(i.op, polyhe_runtime::ProgramOp::Bootstrap(_))).count(), 1);
}

/// `encrypt` packs inputs from OUT/client_plan.json and OUT/client_head.ir alone (no lowering,
/// no poly.ir); a plan from another compile, a missing plan and a corrupt head are refused.
#[test]
fn encrypt_uses_the_client_plan_bound_to_its_program() {
    let f = root().join("tests/fixtures");
    let compile = |out: &Path, log_scale: &str| compile_square_mlp_test_ring(out, &["--log-scale", log_scale]);
    let (a, b) = (tmp("plan_a"), tmp("plan_b"));
    compile(&a, "30");
    compile(&b, "32");
    let keys = a.join("keys");
    let o = polyhe(&["keygen", s(&a), "--keys", s(&keys)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let x = f.join("square_mlp_x.npy");
    let encrypt =
        |out: &Path| polyhe(&["encrypt", s(out), "--keys", s(&keys), "--input", s(&x), "-o", s(&out.join("ct"))]);
    // Without poly.ir: the plan and the head are all the client reads.
    std::fs::remove_file(a.join("poly.ir")).unwrap();
    let o = encrypt(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan_a = std::fs::read(a.join("client_plan.json")).unwrap();
    std::fs::copy(b.join("client_plan.json"), a.join("client_plan.json")).unwrap();
    assert_user_error(&encrypt(&a), &["client_plan.json", "does not belong", "program.bin"]);
    std::fs::remove_file(a.join("client_plan.json")).unwrap();
    assert_user_error(&encrypt(&a), &["client_plan.json", "missing"]);
    std::fs::write(a.join("client_plan.json"), &plan_a).unwrap();
    std::fs::write(a.join("client_head.ir"), "graph @broken(").unwrap();
    assert_user_error(&encrypt(&a), &["client_head.ir"]);
}

/// `polyhe compile` of the square-MLP fixture on a test ring (`--security none --log-n 13`) into `out`.
fn compile_square_mlp_test_ring(out: &Path, extra: &[&str]) {
    let f = root().join("tests/fixtures");
    let (model, calib) = (f.join("square_mlp.onnx"), f.join("square_mlp_calib.npy"));
    let mut args = vec!["compile", s(&model), "--calib", s(&calib), "--dim", "batch_size=1"];
    args.extend(["--security", "none", "--log-n", "13", "-o", s(out)]);
    args.extend(extra);
    let o = polyhe(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Key files: `keygen` refuses to replace existing keys without `--force`; the secret key is
/// readable by its owner only; a link planted where a key goes is replaced, never written through.
#[test]
fn keygen_protects_existing_keys_and_the_secret_key() {
    let out = tmp("keys_guard");
    compile_square_mlp_test_ring(&out, &[]);
    let keys = out.join("keys");
    let o = polyhe(&["keygen", s(&out), "--keys", s(&keys)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret.key is readable by others: {mode:o}");
    }
    let secret = std::fs::read(keys.join("secret.key")).unwrap();
    assert_user_error(&polyhe(&["keygen", s(&out), "--keys", s(&keys)]), &["secret.key", "already exist", "--force"]);
    assert_eq!(std::fs::read(keys.join("secret.key")).unwrap(), secret, "refused keygen changed the key");
    // A link planted at secret.key: --force replaces the link, the file it pointed to is untouched.
    #[cfg(unix)]
    {
        let victim = out.join("victim.txt");
        std::fs::write(&victim, "do not touch").unwrap();
        std::fs::remove_file(keys.join("secret.key")).unwrap();
        std::os::unix::fs::symlink(&victim, keys.join("secret.key")).unwrap();
        let o = polyhe(&["keygen", s(&out), "--keys", s(&keys), "--force"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
        assert!(!std::fs::symlink_metadata(keys.join("secret.key")).unwrap().file_type().is_symlink());
    }
}

/// `opt` runs passes on a text IR file and prints each one's output; an unknown pass, a missing
/// file and a failing pass exit 1 with the file and pass named.
#[test]
fn opt_runs_passes_on_text_ir() {
    let dir = root().join("tests/filetests");
    let o = polyhe(&["opt", s(&dir.join("poly/egraph_balance.ir")), "--pass", "depth,egraph,depth", "--verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("; after egraph\ndepth 7 -> 3")
            && out.ends_with("total depth 3, ct×ct ops 3\noutput v3: depth 3\n"),
        "{out}"
    );
    let chain = dir.join("ckks/chebyshev.ir");
    let o = polyhe(&["opt", s(&chain), "--pass", "ckks", "--log-n", "13", "--security", "none"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("= mul_relin %"));
    assert_user_error(&polyhe(&["opt", s(&chain), "--pass", "nope"]), &["unknown pass `nope`", "egraph"]);
    assert_user_error(&polyhe(&["opt", "/nonexistent/x.ir", "--pass", "depth"]), &["/nonexistent/x.ir"]);
    // to-poly calibrates on --calib (a stack of 8 samples of the declared [2, 4]).
    let stack: Vec<f64> = (0..64).map(|i| ((i * 37 % 64) as f64 / 16.0) - 2.0).collect();
    let calib = tmp("opt_calib.npy");
    let t = Tensor::new(polyhe_ir::TensorType::new(DType::F32, vec![8, 2, 4]), polyhe_ir::Data::Float(stack)).unwrap();
    polyhe::npy::write(&calib, &t).unwrap();
    let gelu = dir.join("poly/to_poly_gelu.ir");
    let o = polyhe(&["opt", s(&gelu), "--pass", "to-poly,verify", "--calib", &format!("x={}", s(&calib))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("= chebyshev {"));
    assert_user_error(&polyhe(&["opt", s(&gelu), "--pass", "to-poly"]), &["to-poly needs calibration samples"]);
    let div = dir.join("ckks/unsupported_division.ir");
    assert_user_error(
        &polyhe(&["opt", s(&div), "--pass", "verify,ckks", "--log-n", "13", "--security", "none"]),
        &["unsupported_division.ir", "error in ckks", "`ratio`"],
    );
}

/// Runs `tests/fixtures/<name>.onnx` on `<name>_x.npy` in reference, poly and encrypted (test ring)
/// modes and compares each output with onnxruntime's (`<name>_<output>.npy`, written by
/// `tests/fixtures/make_fixtures.py`).
fn matches_onnxruntime_in_every_mode(name: &str, outputs: &[(&str, &str)]) {
    let f = root().join("tests/fixtures");
    let (model, calib, x) =
        (f.join(format!("{name}.onnx")), f.join(format!("{name}_calib.npy")), f.join(format!("{name}_x.npy")));
    for (mode, extra, tol) in [
        ("reference", &[][..], 1e-5),
        ("poly", &[][..], 1e-2),
        ("encrypted", &["--security", "none", "--log-n", "13"][..], 1e-2),
    ] {
        let got: Vec<PathBuf> = outputs.iter().map(|(o, _)| tmp(&format!("{name}_{mode}_{o}.npy"))).collect();
        let specs: Vec<String> = outputs.iter().zip(&got).map(|((o, _), p)| format!("{o}={}", p.display())).collect();
        let mut args = vec!["run", s(&model), "--mode", mode, "--input", s(&x)];
        for spec in &specs {
            args.extend(["--output", spec.as_str()]);
        }
        if mode != "reference" {
            args.extend(["--calib", s(&calib)]);
        }
        args.extend(extra);
        let o = polyhe(&args);
        assert!(o.status.success(), "{name} {mode}: {}", String::from_utf8_lossy(&o.stderr));
        for ((o, want), p) in outputs.iter().zip(&got) {
            let want = polyhe::npy::read(&f.join(want)).unwrap();
            let err = polyhe::max_rel_error(&polyhe::npy::read(p).unwrap(), &want).unwrap();
            assert!(err < tol, "{name} {mode} `{o}` vs onnxruntime: {err:.3e}");
        }
    }
}

/// Ops exporters write around real layers (issue 13): a constant `Pad` on the encrypted input and a
/// `Mod` in a folded shape computation.
#[test]
fn exporter_ops_pad_and_mod_match_onnxruntime_in_every_mode() {
    matches_onnxruntime_in_every_mode("exporter_ops", &[("y", "exporter_ops_y.npy")]);
}

/// The `com.microsoft` ops of ONNX Runtime's transformer optimizer (issue 13): FastGelu with a bias,
/// SkipLayerNormalization with its skip+bias sum read as a second output, BiasGelu, Gelu.
#[test]
fn microsoft_fused_ops_match_onnxruntime_in_every_mode() {
    matches_onnxruntime_in_every_mode("fused_ops", &[("y", "fused_ops_y.npy"), ("skip_sum", "fused_ops_skip_sum.npy")]);
}

/// Einsum as exporters write attention (issue 13): a projection, Q·Kᵀ and P·V over heads, an
/// ellipsis contraction and an implicit-form transpose.
#[test]
fn einsum_attention_matches_onnxruntime_in_every_mode() {
    matches_onnxruntime_in_every_mode(
        "einsum_attention",
        &[("y", "einsum_attention_y.npy"), ("t", "einsum_attention_t.npy")],
    );
}

/// A classifier ending in ArgMax (issue 13): the label is computed exactly on the client after
/// decryption with `--client-tail auto` (onnxruntime's labels, in reference and encrypted modes);
/// without a tail, ArgMax on encrypted values is refused by name.
#[test]
fn argmax_labels_run_on_the_client_tail() {
    let f = root().join("tests/fixtures");
    let (model, calib, x) =
        (f.join("argmax_classifier.onnx"), f.join("argmax_classifier_calib.npy"), f.join("argmax_classifier_x.npy"));
    let want = polyhe::npy::read(&f.join("argmax_classifier_label.npy")).unwrap().to_i64_vec();
    for (mode, extra) in [
        ("reference", &[][..]),
        ("encrypted", &["--calib", s(&calib), "--client-tail", "auto", "--security", "none", "--log-n", "13"][..]),
    ] {
        let y = tmp(&format!("argmax_{mode}.npy"));
        let mut args = vec!["run", s(&model), "--mode", mode, "--input", s(&x), "--output", s(&y)];
        args.extend(extra);
        let o = polyhe(&args);
        assert!(o.status.success(), "{mode}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(polyhe::npy::read(&y).unwrap().to_i64_vec(), want, "{mode}");
    }
    let o = polyhe(&["run", s(&model), "--mode", "poly", "--calib", s(&calib), "--input", s(&x)]);
    assert_user_error(&o, &["unsupported on encrypted values", "argmax"]);
}

/// A static-shape model (`x: f32[8, 16]`, no batch axis) calibrates on a stack of samples
/// `f32[64, 8, 16]` (each slice one sample; issue 13), its poly mode matching the reference; a
/// stack whose samples contradict the declared shape is refused with the shape expected.
#[test]
fn static_shape_models_calibrate_on_a_stack_of_samples() {
    let f = root().join("tests/fixtures");
    let (model, calib, x) = (f.join("static_mlp.onnx"), f.join("static_mlp_calib.npy"), f.join("static_mlp_x.npy"));
    let out = tmp("static_stack");
    let o = polyhe(&["compile", s(&model), "--calib", s(&calib), "-o", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y = tmp("static_stack_y.npy");
    let o = polyhe(&["run", s(&model), "--mode", "poly", "--calib", s(&calib), "--input", s(&x), "--output", s(&y)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = tmp("static_stack_ref.npy");
    let o = polyhe(&["run", s(&model), "--input", s(&x), "--output", s(&r)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = polyhe::max_rel_error(&polyhe::npy::read(&y).unwrap(), &polyhe::npy::read(&r).unwrap()).unwrap();
    assert!(err < 1e-2, "poly vs reference on a stack-calibrated static model: {err:.3e}");
    // Samples of [8, 15] for a declared [8, 16].
    let c = polyhe::npy::read(&calib).unwrap();
    let v: Vec<f32> = c.to_f64_vec().chunks(16).flat_map(|row| row[..15].iter().map(|&x| x as f32)).collect();
    let bad = Tensor::new(
        polyhe_ir::TensorType::new(DType::F32, vec![64, 8, 15]),
        polyhe_ir::Data::Float(v.iter().map(|&x| x as f64).collect()),
    )
    .unwrap();
    let bad_path = tmp("static_stack_bad.npy");
    polyhe::npy::write(&bad_path, &bad).unwrap();
    let o = polyhe(&["compile", s(&model), "--calib", s(&bad_path), "-o", s(&tmp("static_stack_bad"))]);
    assert_user_error(&o, &["calibration input `x`", "expected [samples, 8, 16]"]);
}

/// `encrypt` checks every input against the range seen in calibration (OUT/client_plan.json):
/// an input three times larger is refused with the input and how far outside it is named, and
/// encrypted with a warning under --allow-out-of-range (issue 13: range guards).
#[test]
fn encrypt_refuses_inputs_outside_the_calibrated_range() {
    let f = root().join("tests/fixtures");
    let (model, calib, x) = (f.join("static_mlp.onnx"), f.join("static_mlp_calib.npy"), f.join("static_mlp_x.npy"));
    let out = tmp("range_guard");
    let o = polyhe(&["compile", s(&model), "--calib", s(&calib), "--security", "none", "--log-n", "13", "-o", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keys = out.join("keys");
    let o = polyhe(&["keygen", s(&out), "--keys", s(&keys), "--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ct = out.join("ct");
    let encrypt = |input: &Path, extra: &[&str]| {
        let mut args = vec!["encrypt", s(&out), "--keys", s(&keys), "--input", s(input), "-o", s(&ct)];
        args.extend_from_slice(extra);
        polyhe(&args)
    };
    let o = encrypt(&x, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = polyhe::npy::read(&x).unwrap();
    let big =
        Tensor::new(t.ty.clone(), polyhe_ir::Data::Float(t.to_f64_vec().iter().map(|v| 3.0 * v).collect())).unwrap();
    let big_path = tmp("range_guard_3x.npy");
    polyhe::npy::write(&big_path, &big).unwrap();
    assert_user_error(&encrypt(&big_path, &[]), &["input `x`", "calibrated on", "--allow-out-of-range"]);
    let o = encrypt(&big_path, &["--allow-out-of-range"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("WARNING"));
    // A margin wide enough admits it.
    let o = encrypt(&big_path, &["--range-margin", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Poly mode on an input a million times larger diverges: exit 1, not NaN with exit 0.
    let huge =
        Tensor::new(t.ty.clone(), polyhe_ir::Data::Float(t.to_f64_vec().iter().map(|v| 1e6 * v).collect())).unwrap();
    let huge_path = tmp("range_guard_huge.npy");
    polyhe::npy::write(&huge_path, &huge).unwrap();
    let y = tmp("range_guard_y.npy");
    let o = polyhe(&[
        "run",
        s(&model),
        "--mode",
        "poly",
        "--calib",
        s(&calib),
        "--input",
        s(&huge_path),
        "--output",
        s(&y),
    ]);
    assert_user_error(&o, &["NaN or infinite outputs", "`y`"]);
}

/// Files that are not regular files are refused before they are opened (a FIFO blocks its
/// reader, `/dev/zero` never ends): the ONNX model, a `.npy` input and `OUT/program.bin` (issue 16).
/// Run under `timeout` so a regression fails instead of hanging.
#[test]
fn fifos_and_devices_are_refused_not_read() {
    let fifo = |name: &str| {
        let p = tmp(name);
        let _ = std::fs::remove_file(&p);
        assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
        p
    };
    let (model_fifo, npy_fifo) = (fifo("model_fifo.onnx"), fifo("input_fifo.npy"));
    let out = tmp("zero_out");
    std::fs::create_dir_all(&out).unwrap();
    let program = out.join("program.bin");
    let _ = std::fs::remove_file(&program);
    std::os::unix::fs::symlink("/dev/zero", &program).unwrap();
    let encoder = root().join("models/encoder/model.onnx");
    let timed = |args: &[&str]| {
        Command::new("timeout").arg("60").arg(env!("CARGO_BIN_EXE_polyhe")).args(args).output().expect("spawn")
    };
    let o = timed(&["run", s(&model_fifo), "--input", s(&npy_fifo)]);
    assert_user_error(&o, &["model_fifo.onnx", "not a regular file"]);
    let o = timed(&["run", s(&encoder), "--input", s(&npy_fifo)]);
    assert_user_error(&o, &["input_fifo.npy", "not a regular file"]);
    let o = timed(&["keygen", s(&out), "--keys", s(&tmp("zero_keys"))]);
    assert_user_error(&o, &["program.bin", "not a regular file"]);
    // Each cause once.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("not a regular file").count(), 1, "{err}");
}
