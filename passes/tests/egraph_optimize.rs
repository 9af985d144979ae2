//! Graph-level tests of the e-graph pass: depth of polynomials written as Horner chains, scalar
//! fusion into matmul weights and Chebyshev series, region boundaries, runner limits. Every rebuilt
//! graph is verified and compared with the original on random inputs through the interpreter.

use std::time::Duration;

use polyhe_ir::{interp, verify, DType, Graph, Node, Op, Tensor, TensorType, Value, ValueDef};
use polyhe_passes::egraph::power::depth_bound;
use polyhe_passes::{optimize, EgraphOptions, EgraphReport, Stop};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
    /// A non-integer coefficient in ±[0.1, 1.1].
    fn coeff(&mut self) -> f64 {
        let m = self.range(0.1, 1.1);
        if self.next() < 0.5 {
            -m
        } else {
            m
        }
    }
}

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

fn scalar(g: &mut Graph, c: f64) -> Value {
    g.add_constant(Tensor::float(DType::F32, vec![], vec![c]).unwrap(), format!("k{c}"))
}

fn node(g: &mut Graph, op: Op, inputs: Vec<Value>) -> Value {
    let name = format!("n{}", g.nodes.len());
    let n = g.add_node(op, inputs, name).unwrap();
    g.result(n)
}

/// Independent depth measure: a ct×ct product adds 1 to the max of its operands; a multiplication
/// by a constant adds 1 unless all its elements are integers; plaintext-weight matmul adds 1;
/// chebyshev adds ceil(log2(degree + 1)); everything else takes the max of its operands. Constants
/// have no depth (`None`).
fn measure_depth(g: &Graph) -> u32 {
    let mut d: Vec<Option<u32>> = vec![None; g.values.len()];
    for &v in &g.inputs {
        d[v.as_u32() as usize] = Some(0);
    }
    for (_, nd) in g.nodes.iter() {
        let ins: Vec<Option<u32>> = nd.inputs.iter().map(|v| d[v.as_u32() as usize]).collect();
        let enc: Vec<u32> = ins.iter().flatten().copied().collect();
        let out = if enc.is_empty() {
            None
        } else {
            let base = *enc.iter().max().unwrap();
            let plus = match &nd.op {
                Op::Mul if enc.len() == 2 => 1,
                Op::Mul => {
                    let c = nd.inputs.iter().find_map(|&v| g.constant_of(v)).unwrap();
                    u32::from(!c.to_f64_vec().iter().all(|x| x.fract() == 0.0))
                }
                Op::MatMul => 1,
                Op::Chebyshev { coeffs, .. } => depth_bound(coeffs.len() - 1),
                _ => 0,
            };
            Some(base + plus)
        };
        for &o in &nd.outputs {
            d[o.as_u32() as usize] = out;
        }
    }
    g.outputs.iter().map(|v| d[v.as_u32() as usize].unwrap_or(0)).max().unwrap_or(0)
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes.values().filter(|n| pred(&n.op)).count()
}

/// Runs both graphs on random inputs in `[lo, hi]` and compares outputs (≤ 1e-9 relative).
fn assert_same_function(a: &Graph, b: &Graph, lo: f64, hi: f64, seed: u64) {
    let mut rng = Rng(seed);
    for _ in 0..3 {
        let inputs: Vec<Tensor> = a
            .inputs
            .iter()
            .map(|&v| {
                let ty = a.ty(v).clone();
                let vals = (0..ty.numel()).map(|_| rng.range(lo, hi)).collect();
                Tensor::float(ty.dtype, ty.shape.clone(), vals).unwrap()
            })
            .collect();
        let ra = interp::run(a, &inputs).unwrap();
        let rb = interp::run(b, &inputs).unwrap();
        assert_eq!(ra.len(), rb.len());
        for (x, y) in ra.iter().zip(&rb) {
            assert_eq!(x.ty, y.ty);
            for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0), "{p} vs {q}");
            }
        }
    }
}

fn run(g: &Graph, opts: &EgraphOptions) -> (Graph, EgraphReport) {
    verify::verify(g).unwrap();
    let (out, report) = optimize(g, opts).unwrap();
    verify::verify(&out).unwrap();
    (out, report)
}

/// `((a_d·x + a_{d−1})·x + …)·x + a_0` as graph nodes.
fn horner_graph(coeffs: &[f64], n: usize) -> Graph {
    let mut g = Graph::new("horner");
    let x = g.add_input("x", f32t(&[n]));
    let d = coeffs.len() - 1;
    let c = scalar(&mut g, coeffs[d]);
    let mut acc = node(&mut g, Op::Mul, vec![x, c]);
    for i in (0..d).rev() {
        let c = scalar(&mut g, coeffs[i]);
        acc = node(&mut g, Op::Add, vec![acc, c]);
        if i > 0 {
            acc = node(&mut g, Op::Mul, vec![acc, x]);
        }
    }
    g.outputs.push(acc);
    g.set_name(acc, "y");
    g
}

#[test]
fn horner_polynomials_are_extracted_at_depth_ceil_log2_d_plus_1() {
    let mut rng = Rng(7);
    for d in (2..=15).chain([31]) {
        let coeffs: Vec<f64> = (0..=d).map(|_| rng.coeff()).collect();
        let g = horner_graph(&coeffs, 16);
        let before = measure_depth(&g);
        assert_eq!(before, d as u32, "Horner with a non-integer leading coefficient has depth d");
        let (out, report) = run(&g, &EgraphOptions { time_limit: Duration::from_secs(5), ..Default::default() });
        let after = measure_depth(&out);
        assert_eq!(after, depth_bound(d), "degree {d}: report {:?}", report.stop_lines());
        assert_eq!(report.depth_after, after, "degree {d}: the report agrees");
        assert_eq!(report.regions.len(), 1);
        assert_same_function(&g, &out, -1.0, 1.0, d as u64);
    }
}

#[test]
fn power_basis_plans_meet_the_bound_and_compute_the_polynomial() {
    use polyhe_passes::egraph::power::{balanced, horner};
    let mut rng = Rng(11);
    for d in 1..=40usize {
        let a: Vec<f64> = (0..=d).map(|_| rng.coeff()).collect();
        let p = balanced(&a);
        assert_eq!(p.depth(), depth_bound(d), "degree {d}\n{p}");
        assert_eq!(horner(&a).depth(), d as u32, "Horner: the leading scalar, then d − 1 products");
        for k in 0..20 {
            let x = -1.0 + 2.0 * k as f64 / 19.0;
            let want: f64 = a.iter().rev().fold(0.0, |acc, c| acc * x + c);
            assert!((p.eval(x) - want).abs() <= 1e-12 * want.abs().max(1.0), "degree {d} at {x}");
        }
    }
    // Integer coefficients need no scalar levels: x^4 + 2x costs only the squarings.
    assert_eq!(balanced(&[0.0, 2.0, 0.0, 0.0, 1.0]).depth(), 2);
}

#[test]
fn scalar_after_matmul_is_fused_into_the_weights() {
    let mut rng = Rng(3);
    let mut g = Graph::new("fuse");
    let x = g.add_input("x", f32t(&[2, 8]));
    let w = g.add_constant(Tensor::float(DType::F32, vec![8, 4], (0..32).map(|_| rng.coeff()).collect()).unwrap(), "W");
    let y = node(&mut g, Op::MatMul, vec![x, w]);
    let c = scalar(&mut g, 0.37);
    let z = node(&mut g, Op::Mul, vec![y, c]);
    // ... and a scalar before a second matmul.
    let h = scalar(&mut g, -1.5);
    let z2 = node(&mut g, Op::Mul, vec![z, h]);
    let w2 =
        g.add_constant(Tensor::float(DType::F32, vec![4, 3], (0..12).map(|_| rng.coeff()).collect()).unwrap(), "W2");
    let o = node(&mut g, Op::MatMul, vec![z2, w2]);
    g.outputs.push(o);
    assert_eq!(measure_depth(&g), 4);
    let (out, report) = run(&g, &EgraphOptions::default());
    // The scalars fold into the weights, and the two weight matrices into one product.
    assert_eq!(measure_depth(&out), 1, "one matmul, no scalar levels left");
    assert_eq!(count(&out, |op| matches!(op, Op::Mul)), 0, "scalars folded into new weight constants");
    assert_eq!(count(&out, |op| matches!(op, Op::MatMul)), 1);
    assert_eq!((report.depth_before, report.depth_after), (4, 1));
    assert_same_function(&g, &out, -2.0, 2.0, 1);
    // The original weights are untouched (the pass builds a new graph).
    assert_eq!(g.nodes.len(), 8);
}

#[test]
fn layer_norm_affine_is_fused_into_the_next_linear_layer() {
    // y = (c·s)·gamma + beta feeds x@W + b and a residual addition.
    let mut rng = Rng(13);
    let mut g = Graph::new("ln");
    let c = g.add_input("centered", f32t(&[2, 3, 4]));
    let s = g.add_input("inv_std", f32t(&[2, 3, 1]));
    let cs = node(&mut g, Op::Mul, vec![c, s]);
    let gamma =
        g.add_constant(Tensor::float(DType::F32, vec![4], (0..4).map(|_| rng.coeff()).collect()).unwrap(), "gamma");
    let y0 = node(&mut g, Op::Mul, vec![cs, gamma]);
    let beta =
        g.add_constant(Tensor::float(DType::F32, vec![4], (0..4).map(|_| rng.coeff()).collect()).unwrap(), "beta");
    let y = node(&mut g, Op::Add, vec![y0, beta]);
    let w = g.add_constant(Tensor::float(DType::F32, vec![4, 5], (0..20).map(|_| rng.coeff()).collect()).unwrap(), "W");
    let h = node(&mut g, Op::MatMul, vec![y, w]);
    let b = g.add_constant(Tensor::float(DType::F32, vec![5], (0..5).map(|_| rng.coeff()).collect()).unwrap(), "b");
    let hb = node(&mut g, Op::Add, vec![h, b]);
    // A per-output-channel scale after the linear layer folds into W's columns too.
    let t = g.add_constant(Tensor::float(DType::F32, vec![1, 5], (0..5).map(|_| rng.coeff()).collect()).unwrap(), "t");
    let o = node(&mut g, Op::Mul, vec![hb, t]);
    // The residual branch: y's uses are all elementwise or linear, so one region holds both.
    let z = g.add_input("residual", f32t(&[2, 3, 4]));
    let r = node(&mut g, Op::Add, vec![y, z]);
    g.outputs.push(o);
    g.outputs.push(r);
    let before = measure_depth(&g);
    assert_eq!(before, 4, "ct×ct, gamma, W, t");
    let (out, _) = run(&g, &EgraphOptions::default());
    // Output 0 alone: ct×ct then one matmul with the fused weights.
    let mut only0 = out.clone();
    only0.outputs.truncate(1);
    assert_eq!(measure_depth(&only0), 2, "{}", polyhe_ir::text::print(&out, &Default::default()));
    assert_same_function(&g, &out, -1.5, 1.5, 13);
}

#[test]
fn the_mean_of_a_reduction_folds_into_the_following_chebyshev() {
    // LayerNorm's 1/sqrt(var) guess: cheb(mean(c²)) = cheb'(sum(c²)) on an interval n times wider.
    let mut g = Graph::new("var");
    let c = g.add_input("centered", f32t(&[2, 3, 4]));
    let sq = node(&mut g, Op::Mul, vec![c, c]);
    let v = node(&mut g, Op::ReduceMean { axes: vec![2], keepdims: true }, vec![sq]);
    let p = node(&mut g, Op::Chebyshev { lo: 0.0, hi: 4.0, coeffs: vec![1.2, -0.6, 0.2, -0.05] }, vec![v]);
    let y = node(&mut g, Op::Mul, vec![c, p]);
    g.outputs.push(y);
    // square, 1/n, degree 3, product.
    assert_eq!(measure_depth_with_mean(&g), 5);
    let (out, report) = run(&g, &EgraphOptions::default());
    assert_eq!(measure_depth_with_mean(&out), 4);
    assert_eq!((report.depth_before, report.depth_after), (5, 4));
    assert!(out.nodes.values().any(|n| matches!(n.op, Op::ReduceSum { .. })));
    assert!(!out.nodes.values().any(|n| matches!(n.op, Op::ReduceMean { .. })));
    let Some(Op::Chebyshev { hi, .. }) =
        out.nodes.values().map(|n| &n.op).find(|op| matches!(op, Op::Chebyshev { .. }))
    else {
        panic!()
    };
    assert!((hi - 16.0).abs() < 1e-12, "interval scaled by n = 4: {hi}");
    assert_same_function(&g, &out, -1.0, 1.0, 14);
}

/// [`measure_depth`] plus a level for `reduce_mean` (its 1/n scaling).
fn measure_depth_with_mean(g: &Graph) -> u32 {
    let mut h = g.clone();
    // Express each reduce_mean as reduce_sum·(1/n) so measure_depth sees the scalar multiplication.
    let mut rebuilt = Graph::new("m");
    let mut map = std::collections::HashMap::new();
    for &v in &h.inputs {
        let nv = rebuilt.add_input(h.values[v].name.clone().unwrap(), h.ty(v).clone());
        map.insert(v, nv);
    }
    for (_, d) in std::mem::take(&mut h.nodes).into_iter() {
        let out = match &d.op {
            Op::Constant(c) => rebuilt.add_constant(h.constants[*c].clone(), "k"),
            Op::ReduceMean { axes, keepdims } => {
                let x = map[&d.inputs[0]];
                let n: usize = axes.iter().map(|&a| rebuilt.ty(x).shape[a]).product();
                let s = node(&mut rebuilt, Op::ReduceSum { axes: axes.clone(), keepdims: *keepdims }, vec![x]);
                let k = scalar(&mut rebuilt, 1.0 / n as f64);
                node(&mut rebuilt, Op::Mul, vec![s, k])
            }
            op => node(&mut rebuilt, op.clone(), d.inputs.iter().map(|v| map[v]).collect()),
        };
        map.insert(d.outputs[0], out);
    }
    rebuilt.outputs = h.outputs.iter().map(|v| map[v]).collect();
    measure_depth(&rebuilt)
}

#[test]
fn gemm_is_a_linear_layer_that_absorbs_scales() {
    // ViT's head: LayerNorm's gamma, then gemm {alpha, beta, trans_b}.
    let mut rng = Rng(17);
    let mut g = Graph::new("head");
    let x = g.add_input("x", f32t(&[3, 4]));
    let s = g.add_input("s", f32t(&[3, 1]));
    let xs = node(&mut g, Op::Mul, vec![x, s]);
    let gamma =
        g.add_constant(Tensor::float(DType::F32, vec![4], (0..4).map(|_| rng.coeff()).collect()).unwrap(), "gamma");
    let y = node(&mut g, Op::Mul, vec![xs, gamma]);
    let w = g.add_constant(Tensor::float(DType::F32, vec![5, 4], (0..20).map(|_| rng.coeff()).collect()).unwrap(), "W");
    let b = g.add_constant(Tensor::float(DType::F32, vec![5], (0..5).map(|_| rng.coeff()).collect()).unwrap(), "b");
    let o = node(&mut g, Op::Gemm { alpha: 0.5, beta: 2.0, trans_a: false, trans_b: true }, vec![y, w, b]);
    g.set_name(o, "logits");
    g.outputs.push(o);
    assert_eq!(polyhe_passes::analyze_depth(&g).total_depth, 3);
    let (out, report) = run(&g, &EgraphOptions::default());
    assert_eq!(report.depth_after, 2, "gamma folded into the weights: {:?}", report.stop_lines());
    assert!(!out.nodes.values().any(|n| matches!(n.op, Op::Gemm { .. })), "rebuilt as matmul + bias");
    assert_eq!(out.value_label(out.outputs[0]), "logits");
    assert_same_function(&g, &out, -1.0, 1.0, 17);
}

#[test]
fn chebyshev_absorbs_neighbouring_affine_maps() {
    let mut g = Graph::new("cheb");
    let x = g.add_input("x", f32t(&[32]));
    let c = scalar(&mut g, 0.25);
    let xs = node(&mut g, Op::Mul, vec![x, c]);
    let b = scalar(&mut g, 0.5);
    let xb = node(&mut g, Op::Add, vec![xs, b]);
    let p = node(&mut g, Op::Chebyshev { lo: -1.0, hi: 2.0, coeffs: vec![0.1, 0.7, -0.3, 0.05, 0.02] }, vec![xb]);
    let s = scalar(&mut g, 1.7);
    let ps = node(&mut g, Op::Mul, vec![p, s]);
    let t = scalar(&mut g, -0.2);
    let y = node(&mut g, Op::Sub, vec![ps, t]);
    g.outputs.push(y);
    // 1 (scale in) + 3 (degree 4) + 1 (scale out).
    assert_eq!(measure_depth(&g), 5);
    let (out, _) = run(&g, &EgraphOptions::default());
    assert_eq!(measure_depth(&out), 3);
    assert_eq!(count(&out, |op| !matches!(op, Op::Constant(_))), 1, "one chebyshev node and nothing else");
    let Some(n) = out.nodes.values().find(|n| matches!(n.op, Op::Chebyshev { .. })) else { panic!() };
    let Op::Chebyshev { lo, hi, .. } = n.op else { unreachable!() };
    // (x·0.25 + 0.5) ∈ [-1, 2] ⇔ x ∈ [-6, 6]: the out-of-range accounting is unchanged.
    assert!((lo + 6.0).abs() < 1e-12 && (hi - 6.0).abs() < 1e-12, "[{lo}, {hi}]");
    assert_same_function(&g, &out, -6.0, 6.0, 2);
}

#[test]
fn scaled_scores_with_per_head_shifts_fold_into_the_chebyshev() {
    // Attention's exp(scores/sqrt(d) − shift[head]): the scale costs a level unless the series absorbs it.
    let mut g = Graph::new("scores");
    let s = g.add_input("scores", f32t(&[2, 4, 3, 3]));
    let c = scalar(&mut g, 0.125);
    let a = node(&mut g, Op::Mul, vec![s, c]);
    let shift =
        g.add_constant(Tensor::float(DType::F32, vec![1, 4, 1, 1], vec![0.5, -1.0, 2.0, 0.25]).unwrap(), "shift");
    let b = node(&mut g, Op::Sub, vec![a, shift]);
    let e = node(
        &mut g,
        Op::Chebyshev { lo: -8.0, hi: 2.0, coeffs: vec![0.3, 0.5, 0.2, 0.1, 0.05, 0.01, 0.003, 0.001] },
        vec![b],
    );
    g.outputs.push(e);
    assert_eq!(measure_depth(&g), 4);
    let (out, _) = run(&g, &EgraphOptions::default());
    assert_eq!(measure_depth(&out), 3, "the scale's level is gone");
    assert_eq!(count(&out, |op| matches!(op, Op::Mul)), 0);
    assert_same_function(&g, &out, -40.0, 40.0, 12);
}

#[test]
fn goldschmidt_products_are_not_expanded_into_the_power_basis() {
    // 1/S ≈ c·(1 + e)(1 + e²)(1 + e⁴)(1 + e⁸), e = 1 − c·S with S ~ 1/c: a polynomial of degree 15
    // in S, but evaluating S^8 of a row sum would overflow CKKS; the bounded form must stay.
    let mut g = Graph::new("goldschmidt");
    let s = g.add_input("row_sum", f32t(&[4, 1]));
    let c = scalar(&mut g, 0.0625);
    let cs = node(&mut g, Op::Mul, vec![s, c]);
    let one = scalar(&mut g, 1.0);
    let e = node(&mut g, Op::Sub, vec![one, cs]);
    let mut acc = node(&mut g, Op::Add, vec![e, one]);
    acc = node(&mut g, Op::Mul, vec![acc, c]);
    let mut p = e;
    for _ in 0..3 {
        p = node(&mut g, Op::Mul, vec![p, p]);
        let f = node(&mut g, Op::Add, vec![p, one]);
        acc = node(&mut g, Op::Mul, vec![acc, f]);
    }
    g.outputs.push(acc);
    let (out, report) = run(&g, &EgraphOptions::default());
    assert!(report.ct_mults_after <= report.ct_mults_before, "{:?}", report.stop_lines());
    assert!(report.depth_after <= report.depth_before);
    assert!(count(&out, |op| matches!(op, Op::Mul)) <= count(&g, |op| matches!(op, Op::Mul)));
    assert_same_function(&g, &out, 8.0, 24.0, 15);
}

#[test]
fn product_chains_are_balanced() {
    // x^8 as a left-leaning chain of seven ct×ct products: depth 7 → 3.
    let mut g = Graph::new("chain");
    let x = g.add_input("x", f32t(&[8]));
    let mut acc = x;
    for _ in 0..7 {
        acc = node(&mut g, Op::Mul, vec![acc, x]);
    }
    g.outputs.push(acc);
    assert_eq!(measure_depth(&g), 7);
    let (out, _) = run(&g, &EgraphOptions::default());
    assert_eq!(measure_depth(&out), 3);
    assert_eq!(count(&out, |op| matches!(op, Op::Mul)), 3, "three squarings");
    assert_same_function(&g, &out, -1.2, 1.2, 3);
}

#[test]
fn values_used_outside_stay_regions_roots_and_regions_stay_convex() {
    // s = 2x; p = s + 1 (also reshaped: a boundary); m = s·s; out = m + reshape(p).
    let mut g = Graph::new("convex");
    let x = g.add_input("x", f32t(&[4, 4]));
    let two = scalar(&mut g, 2.0);
    let s = node(&mut g, Op::Mul, vec![x, two]);
    let one = scalar(&mut g, 1.0);
    let p = node(&mut g, Op::Add, vec![s, one]);
    let r = node(&mut g, Op::Transpose { perm: vec![1, 0] }, vec![p]);
    let m = node(&mut g, Op::Mul, vec![s, s]);
    let o = node(&mut g, Op::Add, vec![m, r]);
    let h = scalar(&mut g, 0.5);
    let o2 = node(&mut g, Op::Mul, vec![o, h]);
    g.outputs.push(o2);
    g.outputs.push(p);
    let (out, report) = run(&g, &EgraphOptions::default());
    assert_eq!(report.regions.len(), 2, "{:?}", report.stop_lines());
    assert_eq!(out.outputs.len(), 2);
    assert_same_function(&g, &out, -1.0, 1.0, 4);
}

#[test]
fn runner_limits_are_respected_and_reported() {
    let mut rng = Rng(5);
    let coeffs: Vec<f64> = (0..=31).map(|_| rng.coeff()).collect();
    let g = horner_graph(&coeffs, 4);
    // Node limit.
    let (out, report) = run(&g, &EgraphOptions { node_limit: 60, ..Default::default() });
    assert!(
        matches!(report.regions[0].stop, Stop::NodeLimit { limit: 60, nodes } if nodes > 60),
        "{:?}",
        report.regions[0].stop
    );
    assert_eq!(report.limited_regions, 1);
    assert_same_function(&g, &out, -1.0, 1.0, 5);
    // Iteration limit.
    let (_, report) = run(&g, &EgraphOptions { iter_limit: 1, ..Default::default() });
    assert!(matches!(report.regions[0].stop, Stop::IterationLimit { limit: 1 }), "{:?}", report.regions[0].stop);
    assert!(report.regions[0].iterations <= 1);
    // No time at all: regions are extracted as built, never worse than before.
    let (out, report) = run(&g, &EgraphOptions { time_limit: Duration::ZERO, ..Default::default() });
    assert_eq!(report.regions[0].stop, Stop::BudgetExhausted);
    assert_eq!(measure_depth(&out), measure_depth(&g));
    assert_same_function(&g, &out, -1.0, 1.0, 6);
    // Saturation on a tiny region.
    let mut t = Graph::new("tiny");
    let x = t.add_input("x", f32t(&[3]));
    let one = scalar(&mut t, 1.0);
    let y = node(&mut t, Op::Mul, vec![x, one]);
    let z = node(&mut t, Op::Neg, vec![y]);
    t.outputs.push(z);
    let (out, report) = run(&t, &EgraphOptions::default());
    assert_eq!(report.regions[0].stop, Stop::Saturated);
    assert_eq!(count(&out, |op| !matches!(op, Op::Constant(_))), 1, "x·1 is gone");
    assert_same_function(&t, &out, -1.0, 1.0, 7);
    // The report serializes (it goes into report.json).
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"saturated\""), "{json}");
}

#[test]
fn outputs_rewritten_to_an_input_or_to_each_other_keep_their_names() {
    // y1 = x·1 is x itself, y2 = (x + 0)·1 too: both outputs and the input keep distinct names.
    let mut g = Graph::new("names");
    let x = g.add_input("x", f32t(&[3]));
    let one = scalar(&mut g, 1.0);
    let zero = scalar(&mut g, 0.0);
    let y1 = node(&mut g, Op::Mul, vec![x, one]);
    let a = node(&mut g, Op::Add, vec![x, zero]);
    let y2 = node(&mut g, Op::Mul, vec![a, one]);
    g.set_name(y1, "y1");
    g.set_name(y2, "y2");
    g.outputs.push(y1);
    g.outputs.push(y2);
    let (out, _) = run(&g, &EgraphOptions::default());
    assert_eq!(out.value_label(out.inputs[0]), "x");
    assert_eq!(out.value_label(out.outputs[0]), "y1");
    assert_eq!(out.value_label(out.outputs[1]), "y2");
    assert_same_function(&g, &out, -1.0, 1.0, 8);
}

#[test]
fn bad_options_and_graphs_are_errors() {
    let g = horner_graph(&[0.5, 0.25, 0.125], 2);
    let err = optimize(&g, &EgraphOptions { node_limit: 0, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("node_limit"), "{err}");
    let mut bad = g.clone();
    bad.outputs.push(Value::from_u32(999));
    assert!(optimize(&bad, &EgraphOptions::default()).is_err());
}

#[test]
fn plaintext_and_non_elementwise_parts_are_copied() {
    // A mask-like plaintext branch (integer input) and a reduce in the middle.
    let mut g = Graph::new("mixed");
    let x = g.add_input("x", f32t(&[2, 4]));
    let m = g.add_input("mask", TensorType::new(DType::I64, vec![2, 4]));
    let mf = node(&mut g, Op::Cast(DType::F32), vec![m]);
    let xm = node(&mut g, Op::Mul, vec![x, mf]);
    let c = scalar(&mut g, 0.3);
    let a = node(&mut g, Op::Mul, vec![xm, c]);
    let r = node(&mut g, Op::ReduceSum { axes: vec![1], keepdims: true }, vec![a]);
    let sq = node(&mut g, Op::Mul, vec![r, r]);
    let k = scalar(&mut g, 3.0);
    let y = node(&mut g, Op::Mul, vec![sq, k]);
    g.outputs.push(y);
    let (out, _) = run(&g, &EgraphOptions::default());
    assert!(out.nodes.values().any(|n| matches!(n.op, Op::ReduceSum { .. })));
    assert!(out.nodes.values().any(|n| matches!(n.op, Op::Cast(_))));
    let mut rng = Rng(9);
    let xs = Tensor::float(DType::F32, vec![2, 4], (0..8).map(|_| rng.range(-1.0, 1.0)).collect()).unwrap();
    let ms = Tensor::int(DType::I64, vec![2, 4], vec![1, 0, 1, 1, 0, 1, 1, 0]).unwrap();
    let ra = interp::run(&g, &[xs.clone(), ms.clone()]).unwrap();
    let rb = interp::run(&out, &[xs, ms]).unwrap();
    for (p, q) in ra[0].to_f64_vec().iter().zip(rb[0].to_f64_vec()) {
        assert!((p - q).abs() <= 1e-9 * p.abs().max(1.0));
    }
    let _ = (ValueDef::Input(0), Node::from_u32(0));
}
