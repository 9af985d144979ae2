//! A host program that links only `polyhe-runtime` (no compiler crate) and runs a program compiled by
//! `polyhe compile`: client keygen, encryption, server-side evaluation with the evaluation keys alone,
//! and decryption.
//!
//! ```sh
//! polyhe compile tests/fixtures/square_mlp.onnx --calib tests/fixtures/square_mlp_calib.npy --dim batch_size=1 -o out/
//! cargo run --release -p polyhe-runtime --example host_program -- out/program.bin
//! ```
//!
//! The input here is a deterministic ramp with the program's input shape; a real host reads its data
//! (a `.npy`, a request body) and flattens it row-major.

use std::error::Error;

use polyhe_runtime::{decrypt_outputs, encrypt_inputs, execute, CkksContext, ClientKeys, Evaluator, Program};

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args().nth(1).ok_or("usage: host_program OUT/program.bin")?;
    let program = Program::from_bytes(&std::fs::read(&path)?)?;
    program.validate()?;
    let ctx = CkksContext::new(program.params.to_params()?)?;

    // Client: keys (the secret key never leaves this side) and encrypted inputs.
    let client = ClientKeys::generate(&ctx)?;
    let eval_keys = client.evaluation_keys_at_levels(&program.rotation_key_levels(), program.needs_conjugation())?;
    let inputs: Vec<Vec<f64>> = program
        .inputs
        .iter()
        .map(|port| {
            let n = port.layout.shape().iter().product::<usize>();
            (0..n).map(|i| (i as f64 / n as f64) - 0.5).collect()
        })
        .collect();
    let cts = encrypt_inputs(&program, &ctx, &client.encryptor(), &inputs)?;

    // Server: only the program and the public evaluation keys.
    let evaluator = Evaluator::new(&ctx, eval_keys)?;
    let t = std::time::Instant::now();
    let outs = execute(&program, &evaluator, cts)?;
    let eval_s = t.elapsed().as_secs_f64();

    // Client: decrypt.
    let values = decrypt_outputs(&program, &ctx, &client, &outs)?;
    for (port, v) in program.outputs.iter().zip(&values) {
        let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.5}")).collect();
        println!("{} {:?}: [{}, ...]", port.name, port.layout.shape(), head.join(", "));
    }
    println!("evaluated {} instructions in {eval_s:.2} s", program.insts.len());
    Ok(())
}
