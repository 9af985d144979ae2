//! Hand-built poly-stage graphs lowered to CKKS programs and executed encrypted at small rings,
//! compared with the reference interpreter (tier "polynomial ↔ encrypted").

mod common;

use common::{rand_vec, run_encrypted, tensor};
use polyhe_backend::{compile_ckks, BackendError, BackendOptions};
use polyhe_ir::{DType, Graph, Op, TensorType};

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> polyhe_ir::Value {
    g.add_input(name, TensorType::new(DType::F32, shape.to_vec()))
}

fn node(g: &mut Graph, op: Op, ins: Vec<polyhe_ir::Value>) -> polyhe_ir::Value {
    let n = g.nodes.len();
    let id = g.add_node(op, ins, format!("n{n}")).unwrap();
    g.result(id)
}

fn constant(g: &mut Graph, shape: &[usize], seed: u64) -> polyhe_ir::Value {
    let n = shape.iter().product();
    g.add_constant(tensor(shape, rand_vec(n, seed)), format!("c{seed}"))
}

#[test]
fn elementwise_chain_at_n_2_13() {
    // y = (x·x + c) · w − 0.5·x, with a broadcast [8] weight; z = 3 − y (integer scalars are free).
    let mut g = Graph::new("elementwise");
    let x = input(&mut g, "x", &[4, 8]);
    let c = constant(&mut g, &[4, 8], 1);
    let w = constant(&mut g, &[8], 2);
    let half = g.add_constant(tensor(&[], vec![0.5]), "half");
    let three = g.add_constant(tensor(&[], vec![3.0]), "three");
    let xx = node(&mut g, Op::Mul, vec![x, x]);
    let a = node(&mut g, Op::Add, vec![xx, c]);
    let b = node(&mut g, Op::Mul, vec![a, w]);
    let h = node(&mut g, Op::Mul, vec![x, half]);
    let y = node(&mut g, Op::Sub, vec![b, h]);
    let z = node(&mut g, Op::Sub, vec![three, y]);
    let z2 = node(&mut g, Op::Neg, vec![z]);
    g.outputs = vec![y, z2];
    let out = run_encrypted(&g, &[tensor(&[4, 8], rand_vec(32, 7))], &BackendOptions::default());
    assert_eq!(out.compiled.report.log_n, Some(13));
    assert_eq!(out.compiled.report.depth, 2);
    assert_eq!(out.compiled.report.rotations, 0);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    // The program's text form annotates levels and scales; the binary form round-trips.
    let p = out.compiled.program.as_ref().unwrap();
    let text = p.print();
    assert!(text.contains("= mul_relin %0, %0 @L2 2^80.0000"), "{text}");
    assert!(text.contains("= rescale"), "{text}");
    assert_eq!(&polyhe_runtime::Program::from_bytes(&p.to_bytes()).unwrap(), p);
    // A loaded program rebuilds exactly the parameters it was compiled for (the split flow).
    assert_eq!(&p.params.to_params().unwrap(), out.compiled.params.as_ref().unwrap());
}

#[test]
fn matmul_gemm_with_plaintext_weights() {
    let mut g = Graph::new("linear");
    let x = input(&mut g, "x", &[6, 8]);
    let w = constant(&mut g, &[8, 5], 3);
    let w2 = constant(&mut g, &[5, 4], 4);
    let b2 = constant(&mut g, &[4], 5);
    let h = node(&mut g, Op::MatMul, vec![x, w]);
    let y = node(&mut g, Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false }, vec![h, w2, b2]);
    g.outputs = vec![y];
    let x = tensor(&[6, 8], rand_vec(48, 8));
    // Row-major (the automatic choice takes the column layout here: 11 diagonals, no packing).
    let row = BackendOptions { layout: Some(polyhe_backend::LayoutPolicy::RowMajor), ..Default::default() };
    let out = run_encrypted(&g, std::slice::from_ref(&x), &row);
    // The one-call helper the CLI uses gives the same answer (on the client's program inputs: the
    // client packs x so the map has 14 diagonals instead of 31, see `packing.rs`); raw x is
    // refused, not misread.
    assert!(polyhe_backend::run_encrypted(&out.compiled, &[x.to_f64_vec()]).is_err());
    let data = polyhe_backend::program_inputs(&g, &out.compiled, std::slice::from_ref(&x)).unwrap();
    let run = polyhe_backend::run_encrypted(&out.compiled, &data).unwrap();
    let want = polyhe_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    assert!(run.outputs[0].iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3 * (1.0 + b.abs())));
    assert!(run.timings.eval > 0.0 && run.stats.rotations > 0);
    let r = &out.compiled.report;
    // Consecutive affine maps compose: both products and the bias cost one level.
    assert_eq!(r.depth, 1);
    assert_eq!(r.affine_maps, 1);
    assert_eq!(r.diagonals, 14);
    assert!(r.rotations > 0 && r.rotations < r.naive_rotations, "bsgs {} vs naive {}", r.rotations, r.naive_rotations);
    assert_eq!(out.stats.rotations, r.rotations);
    assert!(out.stats.hoists > 0);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    // Rotation keys, on a map that mixes every input into every output (a plaintext factor on
    // the left too): no packing applies and its steps outnumber their powers of two.
    let mut g = Graph::new("mixing");
    let xv = input(&mut g, "x", &[6, 8]);
    let a = constant(&mut g, &[6, 6], 6);
    let w = constant(&mut g, &[8, 5], 3);
    let ax = node(&mut g, Op::MatMul, vec![a, xv]);
    let y = node(&mut g, Op::MatMul, vec![ax, w]);
    g.outputs = vec![y];
    let out = run_encrypted(&g, std::slice::from_ref(&x), &BackendOptions::default());
    let r = &out.compiled.report;
    assert!(r.client_side.is_empty(), "{:?}", r.client_side);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    // Power-of-two Galois keys only: rotations become NAF chains, same answer.
    let pow2 = BackendOptions { pow2_rotations: true, ..Default::default() };
    let out2 = run_encrypted(&g, std::slice::from_ref(&x), &pow2);
    assert!(
        out2.compiled.rotation_steps.iter().all(|s| s.unsigned_abs().is_power_of_two()),
        "{:?}",
        out2.compiled.rotation_steps
    );
    assert!(out2.compiled.report.rotations >= r.rotations);
    assert!(out2.rel_err < 1e-3, "error {}", out2.rel_err);
    // A key budget between the two: at most that many keys, the rest reached by chains over them
    // (fewer key switches than powers of two alone), same answer.
    let budget = r.rotation_keys - 1;
    println!("exact keys {}, pow2 keys {}", r.rotation_keys, out2.compiled.rotation_steps.len());
    let capped = BackendOptions { max_rotation_keys: Some(budget), ..Default::default() };
    let out3 = run_encrypted(&g, std::slice::from_ref(&x), &capped);
    let r3 = &out3.compiled.report;
    assert!(r3.rotation_keys <= budget, "{} keys > {budget}", r3.rotation_keys);
    assert!(r3.rotations > r.rotations && r3.rotations <= out2.compiled.report.rotations);
    assert!(out3.rel_err < 1e-3, "error {}", out3.rel_err);
    // A budget below the powers of two the steps need is refused with a reason.
    let tiny = BackendOptions { max_rotation_keys: Some(1), ..Default::default() };
    let err = polyhe_backend::compile_ckks(&g, &tiny).unwrap_err();
    assert!(err.to_string().contains("rotation keys is too small"), "{err}");
}

#[test]
fn reductions_transpose_reshape() {
    let mut g = Graph::new("reduce");
    let x = input(&mut g, "x", &[2, 4, 8]);
    let m = node(&mut g, Op::ReduceMean { axes: vec![2], keepdims: true }, vec![x]);
    let d = node(&mut g, Op::Sub, vec![x, m]); // broadcast of an encrypted [2,4,1]
    let t = node(&mut g, Op::Transpose { perm: vec![0, 2, 1] }, vec![d]);
    let r = node(&mut g, Op::Reshape { shape: vec![16, 4] }, vec![t]);
    // (a sum over axis 0 would be identically zero: every row of `d` is mean-centred)
    let s = node(&mut g, Op::ReduceSum { axes: vec![1], keepdims: false }, vec![r]);
    g.outputs = vec![r, s];
    let out = run_encrypted(
        &g,
        &[tensor(&[2, 4, 8], rand_vec(64, 9))],
        &BackendOptions { min_log_n: 14, ..Default::default() },
    );
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    // The row-major reshape is free: no instruction is attributed to it.
    assert!(!out.compiled.report.insts_per_ir_op.contains_key("reshape"));
}

#[test]
fn chebyshev_polynomial() {
    let mut g = Graph::new("cheb");
    let x = input(&mut g, "x", &[3, 10]);
    let coeffs: Vec<f64> = (0..16).map(|k| 0.9f64.powi(k) * if k % 3 == 0 { -1.0 } else { 1.0 }).collect();
    let y = node(&mut g, Op::Chebyshev { lo: -1.5, hi: 1.5, coeffs }, vec![x]);
    g.outputs = vec![y];
    let out = run_encrypted(&g, &[tensor(&[3, 10], rand_vec(30, 10))], &BackendOptions::default());
    // Degree 15: 4 levels for the polynomial, 1 for the input's affine map to [-1, 1].
    assert_eq!(out.compiled.report.depth, 5);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
}

#[test]
fn tiny_attention_ct_ct_matmuls() {
    // scores = (x Wq)(x Wk)ᵀ, p = poly(scores), out = p (x Wv).
    let mut g = Graph::new("attention");
    let x = input(&mut g, "x", &[4, 6]);
    let wq = constant(&mut g, &[6, 4], 11);
    let wk = constant(&mut g, &[6, 4], 12);
    let wv = constant(&mut g, &[6, 3], 13); // J = 3: replication by hoisted rotations, not doubling
    let q = node(&mut g, Op::MatMul, vec![x, wq]);
    let k = node(&mut g, Op::MatMul, vec![x, wk]);
    let v = node(&mut g, Op::MatMul, vec![x, wv]);
    let kt = node(&mut g, Op::Transpose { perm: vec![1, 0] }, vec![k]);
    let s = node(&mut g, Op::MatMul, vec![q, kt]);
    let p = node(&mut g, Op::Chebyshev { lo: -4.0, hi: 4.0, coeffs: vec![0.5, 0.4, 0.1] }, vec![s]);
    let o = node(&mut g, Op::MatMul, vec![p, v]);
    g.outputs = vec![o];
    let out = run_encrypted(&g, &[tensor(&[4, 6], rand_vec(24, 14))], &BackendOptions::default());
    assert!(out.compiled.report.ct_ct_mults >= 3);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
}

#[test]
fn attention_products_over_several_ciphertexts() {
    // Batched heads whose ct×ct products do not fit one ciphertext of 4096 slots, but every
    // K-slice [heads, I, J] does: each ciphertext holds whole slices at a power-of-two stride
    // (q·k: 3·17·17 = 867 → 1024, K = 8 → two ciphertexts), and replication stays rotations.
    // I = J = 17 are no powers of two (binary replication: 4 doublings and one placement).
    let (h, t, d) = (3usize, 17usize, 8usize);
    let mut g = Graph::new("heads");
    let q = input(&mut g, "q", &[h, t, d]);
    let k = input(&mut g, "k", &[h, d, t]);
    let v = input(&mut g, "v", &[h, t, d]);
    let s = node(&mut g, Op::MatMul, vec![q, k]);
    let p = node(&mut g, Op::Chebyshev { lo: -4.0, hi: 4.0, coeffs: vec![0.5, 0.4, 0.1] }, vec![s]);
    let o = node(&mut g, Op::MatMul, vec![p, v]);
    g.outputs = vec![o];
    let inputs = [
        tensor(&[h, t, d], rand_vec(h * t * d, 21)),
        tensor(&[h, d, t], rand_vec(h * t * d, 22)),
        tensor(&[h, t, d], rand_vec(h * t * d, 23)),
    ];
    let opts = BackendOptions { log_n: Some(13), security: polyhe_runtime::Security::NotSet, ..Default::default() };
    let out = run_encrypted(&g, &inputs, &opts);
    let r = &out.compiled.report;
    println!("{r}");
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    // q·k: 8 slices of 1024 slots → 2 ciphertexts; the square in the
    // polynomial: 1; p·v: slices of 3·17·8 → 512, ·17 → 3 ciphertexts.
    assert_eq!(r.ct_ct_mults, 2 + 1 + 3);
    // Spreading maps place each row of an operand once (≤ heads·I·K offsets each), instead of
    // expanding it over all of [heads, I, J, K] (several thousand diagonals here).
    assert!(r.diagonals < 1500, "{} diagonals", r.diagonals);
}

/// `q·(k − mean_j k)` (softmax's centered scores, as to_poly emits them) next to `q·k`, on one
/// ciphertext of 4096 slots: `(heads, tokens, head dim)`.
fn centered_scores(h: usize, t: usize, d: usize, center: bool) -> common::Outcome {
    let mut g = Graph::new("centered");
    // Q and K computed (as projections are), K transposed: Kᵀ of a column-major K is K's
    // placement read row-major, the mirror image of Q.
    let q = input(&mut g, "q", &[h, t, d]);
    let wq = constant(&mut g, &[h, t, d], 33);
    let q = node(&mut g, Op::Mul, vec![q, wq]);
    let k = input(&mut g, "k", &[h, t, d]);
    let wk = constant(&mut g, &[h, t, d], 34);
    let k = node(&mut g, Op::Mul, vec![k, wk]);
    let k = node(&mut g, Op::Transpose { perm: vec![0, 2, 1] }, vec![k]);
    let k = if center {
        let sum = node(&mut g, Op::ReduceSum { axes: vec![2], keepdims: true }, vec![k]);
        let inv = g.add_constant(tensor(&[], vec![1.0 / t as f64]), "inv_t");
        let mean = node(&mut g, Op::Mul, vec![sum, inv]);
        node(&mut g, Op::Sub, vec![k, mean])
    } else {
        k
    };
    let s = node(&mut g, Op::MatMul, vec![q, k]);
    let p = node(&mut g, Op::Chebyshev { lo: -4.0, hi: 4.0, coeffs: vec![0.5, 0.4, 0.1] }, vec![s]);
    g.outputs = vec![p];
    let inputs = [tensor(&[h, t, d], rand_vec(h * t * d, 31)), tensor(&[h, t, d], rand_vec(h * t * d, 32))];
    let opts = BackendOptions {
        log_n: Some(13),
        security: polyhe_runtime::Security::NotSet,
        layout: Some(polyhe_backend::LayoutPolicy::ColumnMajor),
        ..Default::default()
    };
    run_encrypted(&g, &inputs, &opts)
}

#[test]
fn centered_keys_cost_rotations_inside_the_rotated_product_not_a_map() {
    // Rotations the centering adds: the products' blocks fill the ciphertext (2·16·8 = 256 → 16
    // blocks of 256 = 4096 slots: the sum over the blocks is cyclic, log2 16), fill at most half
    // of it (2·8·8 → 8 blocks of 128: over a copy, 1 + log2 8), or span two ciphertexts
    // (3·12·8 = 288 → blocks of 512, 8 + 4 of them: a cyclic sum over 8 positions in each; there
    // the key sum's read of the raw input `k` also changes the client's packing of `k`, so only
    // the error, depth and products are compared).
    for (h, t, d, extra) in [(2, 16, 8, Some(4)), (2, 8, 8, Some(4)), (3, 12, 8, None)] {
        let plain = centered_scores(h, t, d, false);
        let centered = centered_scores(h, t, d, true);
        let (rp, rc) = (&plain.compiled.report, &centered.compiled.report);
        assert!(centered.rel_err < 1e-3, "{t} tokens: error {}\n{rc}", centered.rel_err);
        // The centering is exact arithmetic on the keys' blocks: no level, one product, no
        // diagonal; log2(T) rotations (plus one for the copy).
        assert_eq!(rc.depth, rp.depth);
        assert_eq!(rc.ct_ct_mults, rp.ct_ct_mults);
        if let Some(extra) = extra {
            assert_eq!(rc.diagonals, rp.diagonals, "{rc}\n{rp}");
            assert_eq!(rc.rotations, rp.rotations + extra, "{rc}\n{rp}");
        }
    }
}

#[test]
fn multi_ciphertext_tensors() {
    // 6000 elements over two ciphertexts of 4096 slots; a slice crosses the boundary.
    let mut g = Graph::new("multi");
    let x = input(&mut g, "x", &[3, 2000]);
    let c = constant(&mut g, &[3, 2000], 15);
    let y = node(&mut g, Op::Mul, vec![x, c]);
    let s = node(&mut g, Op::Slice { axes: vec![1], starts: vec![500], ends: vec![1500], steps: vec![1] }, vec![y]);
    g.outputs = vec![s];
    let out = run_encrypted(&g, &[tensor(&[3, 2000], rand_vec(6000, 16))], &BackendOptions::default());
    let p = out.compiled.program.as_ref().unwrap();
    assert_eq!(p.inputs[0].regs.len(), 2);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
}

#[test]
fn user_overrides_and_errors() {
    let mut g = Graph::new("chain");
    let x = input(&mut g, "x", &[8]);
    let mut y = x;
    for _ in 0..6 {
        y = node(&mut g, Op::Mul, vec![y, y]);
    }
    g.outputs = vec![y];
    // Depth 6 does not fit N = 2^13 at 128-bit security, nor does a chain with bootstrapping.
    let e = compile_ckks(&g, &BackendOptions { log_n: Some(13), ..Default::default() }).unwrap_err();
    assert!(matches!(e, BackendError::ParametersInfeasible { .. }), "{e}");
    assert!(e.to_string().contains("with bootstrapping: no chain with bootstrapping"), "{e}");
    let e = compile_ckks(&g, &BackendOptions { log_n: Some(12), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("log_n = 12 must be in 13..=16"), "{e}");
    let e = compile_ckks(&g, &BackendOptions { levels: Some(3), ..Default::default() }).unwrap_err();
    assert!(matches!(e, BackendError::ParametersInfeasible { .. }), "{e}");
    let ok = compile_ckks(&g, &BackendOptions::default()).unwrap();
    assert_eq!(ok.report.depth, 6);
    assert_eq!(ok.report.log_n, Some(14));
    // An op that is not in the polynomial stage is refused with its node name.
    let mut g = Graph::new("relu");
    let x = input(&mut g, "x", &[8]);
    let r = node(&mut g, Op::Relu, vec![x]);
    g.outputs = vec![r];
    let e = compile_ckks(&g, &BackendOptions::default()).unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");
}

#[test]
fn client_side_embedding_lookup() {
    // Token ids are a plaintext client input: the lookup (and the scaling after it) runs on the
    // client, whose result is encrypted as an extra program input.
    let mut g = Graph::new("embed");
    let x = input(&mut g, "x", &[2, 4]);
    let ids = g.add_input("ids", TensorType::new(DType::I64, vec![2]));
    let table = constant(&mut g, &[10, 4], 30);
    let two = g.add_constant(tensor(&[], vec![2.0]), "two");
    let emb = node(&mut g, Op::Gather { axis: 0 }, vec![table, ids]);
    let emb2 = node(&mut g, Op::Mul, vec![emb, two]);
    let y = node(&mut g, Op::Mul, vec![x, emb2]);
    g.outputs = vec![y];
    let ids_t = polyhe_ir::Tensor::int(DType::I64, vec![2], vec![7, 3]).unwrap();
    let out = run_encrypted(&g, &[tensor(&[2, 4], rand_vec(8, 31)), ids_t.clone()], &BackendOptions::default());
    let p = out.compiled.program.as_ref().unwrap();
    assert_eq!(p.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["x", "client:v4"]);
    assert_eq!(out.compiled.report.client_side, ["v4"]);
    assert_eq!(out.compiled.report.depth, 1);
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    // The client plan: x as given, then the head graph's lookup (only the nodes it needs, in a
    // text form that parses back), the same data as the compile-time path.
    let xs = [tensor(&[2, 4], rand_vec(8, 31)), ids_t];
    let want = polyhe_backend::program_inputs(&g, &out.compiled, &xs).unwrap();
    let bytes = out.compiled.program.as_ref().unwrap().to_bytes();
    let (plan, head) = polyhe_backend::ClientPlan::new(&g, &out.compiled, &bytes).unwrap();
    assert!(head.nodes.iter().all(|(_, n)| !matches!(n.op, Op::Mul) || n.inputs.iter().all(|&v| v != x)));
    let head = polyhe_ir::text::parse(&polyhe_ir::text::print(&head, &Default::default())).unwrap();
    assert_eq!(plan.inputs(&head, &xs).unwrap(), want);
}

#[test]
fn deep_program_compiles_with_bootstraps() {
    let mut g = Graph::new("deep");
    let x = input(&mut g, "x", &[8]);
    let mut y = x;
    for _ in 0..60 {
        let s = node(&mut g, Op::Mul, vec![y, y]);
        let half = g.add_constant(tensor(&[], vec![0.5]), "h");
        y = node(&mut g, Op::Mul, vec![s, half]);
    }
    g.outputs = vec![y];
    // The ring forced (the shipped-model test covers the automatic choice, which lands on the
    // same ring): a chain that cannot hold the depth compiles with bootstraps at that ring.
    let c = compile_ckks(&g, &BackendOptions { log_n: Some(16), ..Default::default() }).unwrap();
    println!("{}", c.report);
    // Depth 120 does not fit N = 2^16: a chain with bootstrapping primes under the sparse-secret
    // 128-bit budget, and one refresh per round of the single ciphertext.
    let (p, params) = c.runnable().unwrap();
    assert_eq!(params.log_n(), 16);
    assert_eq!(params.hamming_weight(), Some(192));
    assert!(params.log_qp() <= 1546.0, "log QP {}", params.log_qp());
    let b = c.report.bootstrap.as_ref().unwrap();
    assert!(b.depth >= 120, "{}", b.depth);
    assert!(b.max_levels >= 3, "{}", b.max_levels);
    assert!(b.cuts.iter().all(|c| c.ciphertexts == 1));
    assert_eq!(c.report.bootstraps, b.cuts.len());
    assert!(b.cuts.len() >= 120 / b.usable_after_bootstrap - 1, "{} rounds", b.cuts.len());
    assert_eq!(p.bootstraps(), c.report.bootstraps);
    assert!(p.rotation_steps().len() > 10 && p.needs_conjugation());
}

#[test]
fn data_movement_conv_and_gemm_variants() {
    // Every affine op kind the poly stage has, on two encrypted inputs, against the interpreter.
    let mut g = Graph::new("movement");
    let x = input(&mut g, "x", &[2, 3, 4]);
    let img = input(&mut g, "img", &[1, 2, 5, 5]);
    let y = input(&mut g, "y", &[3, 4]);
    let pad = constant(&mut g, &[2, 1, 4], 21);
    let cat = node(&mut g, Op::Concat { axis: 1 }, vec![x, pad]);
    let split = g.add_node(Op::Split { axis: 2, sizes: vec![1, 3] }, vec![cat], "split").unwrap();
    let s1 = g.nodes[split].outputs[1];
    let idx = g.add_constant(polyhe_ir::Tensor::int(DType::I64, vec![2], vec![2, 0]).unwrap(), "idx");
    let gth = node(&mut g, Op::Gather { axis: 1 }, vec![s1, idx]);
    let exp = node(&mut g, Op::Expand { shape: vec![2, 2, 2, 3] }, vec![gth]);
    let sl = node(&mut g, Op::Slice { axes: vec![2], starts: vec![0], ends: vec![4], steps: vec![2] }, vec![x]);
    let w = constant(&mut g, &[3, 2, 3, 3], 22);
    let cb = constant(&mut g, &[3], 23);
    let conv = node(
        &mut g,
        Op::Conv {
            kernel_shape: vec![3, 3],
            strides: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            dilations: vec![1, 1],
            group: 1,
        },
        vec![img, w, cb],
    );
    let b = constant(&mut g, &[5, 4], 24);
    let gemm = node(&mut g, Op::Gemm { alpha: 0.5, beta: 1.0, trans_a: false, trans_b: true }, vec![y, b]);
    let sum = node(&mut g, Op::ReduceSum { axes: vec![1, 2], keepdims: false }, vec![conv]);
    // Two encrypted operands at different levels (x at the top, x·x one below) in one map.
    let xx = node(&mut g, Op::Mul, vec![x, x]);
    let cat2 = node(&mut g, Op::Concat { axis: 2 }, vec![x, xx]);
    g.outputs = vec![exp, sl, conv, gemm, sum, cat2];
    let inputs = [
        tensor(&[2, 3, 4], rand_vec(24, 25)),
        tensor(&[1, 2, 5, 5], rand_vec(50, 26)),
        tensor(&[3, 4], rand_vec(12, 27)),
    ];
    let out = run_encrypted(&g, &inputs, &BackendOptions::default());
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
}

#[test]
fn patch_embedding_input_is_packed_on_the_client() {
    // A ViT patch embedding on encrypted pixels: Conv with stride = kernel, then tokens × hidden
    // (reshape, transpose), a class token and position embeddings. Row-major pixels put each
    // token's 48 inputs at scattered offsets; the client packs them in chunks of the hidden size
    // aligned with the token's output row (`packing.rs`).
    // The shipped ViT's sizes.
    let (c, hw, k, hidden) = (3, 16, 4, 32);
    let pp = hw / k; // patches per side
    let mut g = Graph::new("patches");
    let px = input(&mut g, "pixels", &[1, c, hw, hw]);
    let w = constant(&mut g, &[hidden, c, k, k], 40);
    let b = constant(&mut g, &[hidden], 41);
    let conv = node(
        &mut g,
        Op::Conv { kernel_shape: vec![k, k], strides: vec![k, k], pads: vec![0; 4], dilations: vec![1, 1], group: 1 },
        vec![px, w, b],
    );
    let r = node(&mut g, Op::Reshape { shape: vec![1, hidden, pp * pp] }, vec![conv]);
    let t = node(&mut g, Op::Transpose { perm: vec![0, 2, 1] }, vec![r]);
    let cls = constant(&mut g, &[1, 1, hidden], 42);
    let cat = node(&mut g, Op::Concat { axis: 1 }, vec![cls, t]);
    let pos = constant(&mut g, &[1, pp * pp + 1, hidden], 43);
    let y = node(&mut g, Op::Add, vec![cat, pos]);
    g.outputs = vec![y];
    let x = tensor(&[1, c, hw, hw], rand_vec(c * hw * hw, 44));
    let out = run_encrypted(&g, std::slice::from_ref(&x), &BackendOptions::default());
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    let p = out.compiled.program.as_ref().unwrap();
    assert_eq!(p.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["client:pack(pixels)"]);
    assert_eq!(out.compiled.report.client_side.len(), 1, "{:?}", out.compiled.report.client_side);
    // Diagonals of the one map from row-major pixels: offsets `in − out` over every
    // (token, feature, pixel) the conv reads.
    let mut row_major = std::collections::BTreeSet::new();
    for ph in 0..pp {
        for pw in 0..pp {
            let token = 1 + ph * pp + pw;
            for o in 0..hidden {
                for ch in 0..c {
                    for kh in 0..k {
                        for kw in 0..k {
                            let i = (ch * hw + ph * k + kh) * hw + pw * k + kw;
                            row_major.insert(i as i64 - (token * hidden + o) as i64);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(row_major.len(), 871);
    // Packed: the 48 features of a token in chunks of 32 and 16, each lined up with the token's
    // row: offsets `chunk·544 + f − o`, 32 + 32 − 1 and 16 + 32 − 1.
    assert_eq!(out.compiled.report.diagonals, 63 + 47);
    // The server's program takes the packed tensor: raw pixels are refused, not misread.
    let data = polyhe_backend::program_inputs(&g, &out.compiled, std::slice::from_ref(&x)).unwrap();
    assert_eq!(data[0].len(), p.inputs[0].layout.numel());
    assert_ne!(data[0].len(), x.to_f64_vec().len());
    // The client plan packs the same way without the compile.
    let bytes = out.compiled.program.as_ref().unwrap().to_bytes();
    let (plan, head) = polyhe_backend::ClientPlan::new(&g, &out.compiled, &bytes).unwrap();
    let plan = polyhe_backend::ClientPlan::from_json(&plan.to_json()).unwrap();
    assert_eq!(plan.inputs(&head, std::slice::from_ref(&x)).unwrap(), data);
}

/// `g` run encrypted in the row-major and the column layout, each within 1e-3 of the reference.
fn run_in_both_layouts(g: &Graph, xs: &[polyhe_ir::Tensor]) -> (common::Outcome, common::Outcome) {
    let opts = |layout| BackendOptions { layout: Some(layout), ..Default::default() };
    let row = run_encrypted(g, xs, &opts(polyhe_backend::LayoutPolicy::RowMajor));
    let col = run_encrypted(g, xs, &opts(polyhe_backend::LayoutPolicy::ColumnMajor));
    assert!(row.rel_err < 1e-3, "row: error {}", row.rel_err);
    assert!(col.rel_err < 1e-3, "column: error {}", col.rel_err);
    println!("row: {}\ncolumn: {}", row.compiled.report, col.compiled.report);
    (row, col)
}

#[test]
fn column_layout_puts_tokens_fastest() {
    // A transformer block's plaintext side: x [T, H] → FFN (H → 2H → H) with a polynomial between,
    // a residual, and a per-token mean (LayerNorm's first step). Row-major and column layouts give
    // the same answer; column-major diagonals repeat each weight T times, so the program's
    // constants take fewer stored values, and the output port records the permuted axes.
    let (t, h) = (8usize, 16usize);
    let mut g = Graph::new("block");
    let x = input(&mut g, "x", &[t, h]);
    let w1 = constant(&mut g, &[h, 2 * h], 31);
    let b1 = constant(&mut g, &[2 * h], 32);
    let w2 = constant(&mut g, &[2 * h, h], 33);
    let a = node(&mut g, Op::MatMul, vec![x, w1]);
    let a = node(&mut g, Op::Add, vec![a, b1]);
    let a = node(&mut g, Op::Chebyshev { lo: -8.0, hi: 8.0, coeffs: vec![0.5, 0.4, 0.1] }, vec![a]);
    let y = node(&mut g, Op::MatMul, vec![a, w2]);
    let y = node(&mut g, Op::Add, vec![y, x]);
    let m = node(&mut g, Op::ReduceMean { axes: vec![1], keepdims: true }, vec![y]);
    let c = node(&mut g, Op::Sub, vec![y, m]);
    g.outputs = vec![c];
    let xs = [tensor(&[t, h], rand_vec(t * h, 34))];
    let (row, col) = run_in_both_layouts(&g, &xs);
    let (rr, rc) = (&row.compiled.report, &col.compiled.report);
    assert!(
        rc.constant_stored_values < rr.constant_stored_values,
        "stored values: column {} vs row {}",
        rc.constant_stored_values,
        rr.constant_stored_values
    );
    let port = &col.compiled.program.as_ref().unwrap().outputs[0];
    assert!(
        matches!(&port.layout, polyhe_runtime::SlotLayout::Axes { order, .. } if order == &[1, 0]),
        "{:?}",
        port.layout
    );
}

/// Attention on `x [t, h]` as every transformer has it: Q, K, V projections (weights from seeds
/// `seed..seed + 3`), head split into `heads`, QKᵀ, a polynomial in place of softmax, P·V and the
/// head merge.
fn attention_block(t: usize, h: usize, heads: usize, seed: u64) -> Graph {
    let dh = h / heads;
    let mut g = Graph::new("attention");
    let x = input(&mut g, "x", &[t, h]);
    let split = |g: &mut Graph, w: polyhe_ir::Value, perm: Vec<usize>| {
        let p = node(g, Op::MatMul, vec![x, w]);
        let p = node(g, Op::Reshape { shape: vec![t, heads, dh] }, vec![p]);
        node(g, Op::Transpose { perm }, vec![p])
    };
    let (wq, wk, wv) =
        (constant(&mut g, &[h, h], seed), constant(&mut g, &[h, h], seed + 1), constant(&mut g, &[h, h], seed + 2));
    let q = split(&mut g, wq, vec![1, 0, 2]);
    let kt = split(&mut g, wk, vec![1, 2, 0]);
    let v = split(&mut g, wv, vec![1, 0, 2]);
    let s = node(&mut g, Op::MatMul, vec![q, kt]);
    let p = node(&mut g, Op::Chebyshev { lo: -8.0, hi: 8.0, coeffs: vec![0.5, 0.4, 0.1] }, vec![s]);
    let o = node(&mut g, Op::MatMul, vec![p, v]);
    let o = node(&mut g, Op::Transpose { perm: vec![1, 0, 2] }, vec![o]);
    let o = node(&mut g, Op::Reshape { shape: vec![t, h] }, vec![o]);
    g.outputs = vec![o];
    g
}

#[test]
fn column_attention_products_need_few_diagonals() {
    // One attention head pair on x [T, H]: Q, K, V projections, head split, QKᵀ, a polynomial in
    // place of softmax, P·V and the head merge, the shape of every transformer's attention. In
    // the column layout Q and Kᵀ are mirror images (both token-fastest), so QKᵀ goes by rotated
    // diagonals (`rotated_matmul`: no transposing spread), and P·V's K-slices are laid out as
    // the output, so its sum over K and the head merge land in place (8 diagonals against 120
    // row-major): under half the diagonals of row-major and fewer rotations, the same answer.
    let (t, h) = (8usize, 16usize);
    let g = attention_block(t, h, 2, 41);
    let xs = [tensor(&[t, h], rand_vec(t * h, 44))];
    let (row, col) = run_in_both_layouts(&g, &xs);
    let (rr, rc) = (&row.compiled.report, &col.compiled.report);
    assert!(2 * rc.diagonals < rr.diagonals, "diagonals: column {} vs row {}", rc.diagonals, rr.diagonals);
    assert!(rc.rotations < rr.rotations, "rotations: column {} vs row {}", rc.rotations, rr.rotations);
}

#[test]
fn column_attention_over_several_ciphertexts() {
    // Two heads of 128 on 32 tokens at 4096 slots: Q, K and V span two ciphertexts each (one
    // head per ciphertext), as BERT-base's heads span three at 2^16. QKᵀ and P·V still go by
    // rotated diagonals, each block of the product space being the operand's ciphertexts: one
    // product per (block, ciphertext) — 32·2 for QKᵀ, 32·2 for P·V — and the polynomial's square.
    let (t, h) = (32usize, 256usize);
    let g = attention_block(t, h, 2, 51);
    let xs = [tensor(&[t, h], rand_vec(t * h, 54))];
    let opts = BackendOptions {
        log_n: Some(13),
        security: polyhe_runtime::Security::NotSet,
        layout: Some(polyhe_backend::LayoutPolicy::ColumnMajor),
        ..Default::default()
    };
    let out = run_encrypted(&g, &xs, &opts);
    let r = &out.compiled.report;
    println!("{r}");
    assert!(out.rel_err < 1e-3, "error {}", out.rel_err);
    assert_eq!(r.ct_ct_mults, 32 * 2 + 1 + 32 * 2);
}
