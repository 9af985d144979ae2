//! The client/server split across files: the client compiles, makes keys and encrypts; the server
//! sees only `program.bin`, the evaluation keys and the input ciphertexts (never the secret key);
//! the client decrypts. Keys made under other parameters are refused.

mod common;

use common::{rand_vec, tensor};
use polyhe_backend::{compile_ckks, program_inputs, BackendOptions};
use polyhe_ir::{interp, DType, Graph, Op, TensorType};
use polyhe_runtime::{
    decrypt_outputs, encrypt_inputs, execute, Ciphertext, CkksContext, CkksParams, ClientKeys, EvaluationKeys,
    Evaluator, Program, PublicKey,
};

fn graph() -> Graph {
    let mut g = Graph::new("split");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![4, 8]));
    let w = g.add_constant(tensor(&[8, 4], rand_vec(32, 40)), "w");
    let h = g.add_node(Op::MatMul, vec![x, w], "mm").unwrap();
    let h = g.result(h);
    let sq = g.add_node(Op::Mul, vec![h, h], "sq").unwrap();
    g.outputs = vec![g.result(sq)];
    g
}

/// Server: loads only public artifacts.
fn server(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let program = Program::from_bytes(&std::fs::read(dir.join("program.bin"))?)?;
    program.validate()?;
    let ctx = CkksContext::new(program.params.to_params()?)?;
    let keys = EvaluationKeys::read_from(&ctx, dir.join("eval.keys"))?;
    let evaluator = Evaluator::new(&ctx, keys)?;
    let n_in = program.num_input_regs();
    let cts =
        (0..n_in).map(|k| Ciphertext::read_from(&ctx, dir.join(format!("in{k}.ct")))).collect::<Result<Vec<_>, _>>()?;
    for (k, ct) in execute(&program, &evaluator, cts)?.iter().enumerate() {
        ct.write_to(dir.join(format!("out{k}.ct")))?;
    }
    Ok(())
}

#[test]
fn client_and_server_through_files() {
    let dir = std::env::temp_dir().join(format!("polyhe-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let g = graph();
    let x = tensor(&[4, 8], rand_vec(32, 41));
    // Client: compile, keys, encrypt.
    let compiled = compile_ckks(&g, &BackendOptions::default()).unwrap();
    let (program, params) = compiled.runnable().unwrap();
    std::fs::write(dir.join("program.bin"), program.to_bytes()).unwrap();
    let ctx = CkksContext::new(params.clone()).unwrap();
    let keys = ClientKeys::generate(&ctx).unwrap();
    keys.secret_key().write_to(dir.join("secret.key")).unwrap();
    keys.public_key().write_to(dir.join("public.key")).unwrap();
    keys.evaluation_keys(&compiled.rotation_steps, false).unwrap().write_to(dir.join("eval.keys")).unwrap();
    let public = PublicKey::read_from(&ctx, dir.join("public.key")).unwrap();
    let encryptor = polyhe_runtime::Encryptor::new(&ctx, public).unwrap();
    let data = program_inputs(&g, &compiled, std::slice::from_ref(&x)).unwrap();
    for (k, ct) in encrypt_inputs(program, &ctx, &encryptor, &data).unwrap().iter().enumerate() {
        ct.write_to(dir.join(format!("in{k}.ct"))).unwrap();
    }
    // Server, without the secret key in its directory.
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    for f in ["program.bin", "eval.keys", "in0.ct"] {
        std::fs::copy(dir.join(f), server_dir.join(f)).unwrap();
    }
    server(&server_dir).unwrap();
    // Client: decrypt and compare with the interpreter.
    let outs: Vec<Ciphertext> = (0..program.outputs.iter().map(|o| o.regs.len()).sum::<usize>())
        .map(|k| Ciphertext::read_from(&ctx, server_dir.join(format!("out{k}.ct"))).unwrap())
        .collect();
    let got = decrypt_outputs(program, &ctx, &keys, &outs).unwrap();
    let want = interp::run(&g, &[x]).unwrap()[0].to_f64_vec();
    let mag = want.iter().fold(1e-9f64, |m, v| m.max(v.abs()));
    let err = want.iter().zip(&got[0]).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err / mag < 1e-3, "error {}", err / mag);
    // Evaluation keys of other parameters are refused by the server.
    let other = CkksContext::new(CkksParams::new(13, &[60, 40, 40], &[60], 3, 35).unwrap()).unwrap();
    let okeys = ClientKeys::generate(&other).unwrap();
    okeys.evaluation_keys(&compiled.rotation_steps, false).unwrap().write_to(server_dir.join("eval.keys")).unwrap();
    assert!(server(&server_dir).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
