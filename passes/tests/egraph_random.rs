//! Soundness by execution on random graphs: random DAGs of elementwise arithmetic, Chebyshev series,
//! reductions, plaintext-weight matmuls and region boundaries (no-op reshapes, multiple outputs) are
//! optimized; the result must verify, never be deeper, and compute the same outputs (interpreter on
//! random inputs, ≤ 1e-9 of each output's scale).

use polyhe_ir::{interp, verify, DType, Graph, Op, Tensor, TensorType, Value};
use polyhe_passes::{optimize, EgraphOptions};

pub struct Rng(pub u64);
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
    fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

const FULL: [usize; 3] = [2, 3, 4];

fn constant(g: &mut Graph, rng: &mut Rng, shape: &[usize]) -> Value {
    let n: usize = shape.iter().product();
    // Small integers sometimes (free multiplications), otherwise generic values.
    let vals =
        (0..n).map(|_| if rng.next() < 0.2 { rng.below(3) as f64 + 1.0 } else { rng.range(-1.5, 1.5) }).collect();
    g.add_constant(Tensor::float(DType::F32, shape.to_vec(), vals).unwrap(), format!("k{}", g.nodes.len()))
}

fn add(g: &mut Graph, op: Op, inputs: Vec<Value>) -> Value {
    let name = format!("n{}", g.nodes.len());
    let n = g.add_node(op, inputs, name).unwrap();
    g.result(n)
}

pub fn random_graph(rng: &mut Rng) -> Graph {
    let mut g = Graph::new("random");
    let mut pool: Vec<Value> = vec![g.add_input("x", TensorType::new(DType::F32, FULL.to_vec()))];
    if rng.next() < 0.5 {
        pool.push(g.add_input("z", TensorType::new(DType::F32, vec![2, 3, 1])));
    }
    let steps = 6 + rng.below(14);
    for _ in 0..steps {
        // Mostly extend recent values (long chains, few dead ends), sometimes reach back.
        let a = if rng.next() < 0.7 {
            pool[pool.len() - 1 - rng.below(pool.len().min(3))]
        } else {
            pool[rng.below(pool.len())]
        };
        let full = g.ty(a).shape == FULL;
        let v = match rng.below(9) {
            0..=2 => {
                let op = [Op::Add, Op::Sub, Op::Mul][rng.below(3)].clone();
                let b = match rng.below(4) {
                    0 => constant(&mut g, rng, &[]),
                    1 => constant(&mut g, rng, &[4]),
                    2 => constant(&mut g, rng, &[1, 3, 1]),
                    _ => pool[rng.below(pool.len())],
                };
                if rng.next() < 0.5 {
                    add(&mut g, op, vec![a, b])
                } else {
                    add(&mut g, op, vec![b, a])
                }
            }
            3 => add(&mut g, Op::Neg, vec![a]),
            4 => {
                let lo = rng.range(-6.0, 0.0);
                let hi = lo + rng.range(1.0, 8.0);
                let deg = 1 + rng.below(7);
                let coeffs = (0..=deg).map(|k| rng.range(-1.0, 1.0) / (1 + k) as f64).collect();
                add(&mut g, Op::Chebyshev { lo, hi, coeffs }, vec![a])
            }
            5 if full => {
                let w = constant(&mut g, rng, &[4, 4]);
                add(&mut g, Op::MatMul, vec![a, w])
            }
            6 if full => {
                let op = if rng.next() < 0.5 {
                    Op::ReduceMean { axes: vec![2], keepdims: true }
                } else {
                    Op::ReduceSum { axes: vec![2], keepdims: true }
                };
                add(&mut g, op, vec![a])
            }
            7 if rng.next() < 0.5 => {
                // A boundary: a no-op reshape (not a candidate).
                let shape = g.ty(a).shape.clone();
                add(&mut g, Op::Reshape { shape }, vec![a])
            }
            _ => add(&mut g, Op::Mul, vec![a, a]),
        };
        pool.push(v);
    }
    // The last value and up to two more non-input values, distinct.
    let outs = rng.below(3);
    let candidates: Vec<Value> = pool.iter().copied().filter(|v| !g.inputs.contains(v)).collect();
    let last = *pool.last().unwrap();
    g.set_name(last, "out0");
    g.outputs.push(last);
    for _ in 0..outs {
        let v = candidates[rng.below(candidates.len())];
        if !g.outputs.contains(&v) {
            g.set_name(v, format!("out{}", g.outputs.len()));
            g.outputs.push(v);
        }
    }
    g
}

fn depth_of(g: &Graph) -> u32 {
    polyhe_passes::analyze_depth(g).total_depth
}

#[test]
fn random_graphs_keep_their_function_and_never_get_deeper() {
    let mut rng = Rng(2024);
    let (mut improved, mut rewritten) = (0, 0);
    for case in 0..120 {
        let g = random_graph(&mut rng);
        verify::verify(&g).unwrap();
        let (out, report) = optimize(&g, &EgraphOptions::default()).unwrap_or_else(|e| panic!("case {case}: {e}"));
        verify::verify(&out).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert!(depth_of(&out) <= depth_of(&g), "case {case}: deeper {:?}", report.stop_lines());
        improved += usize::from(depth_of(&out) < depth_of(&g));
        // A runner needing a second iteration means a rule changed the e-graph in the first.
        rewritten += usize::from(report.regions.iter().any(|r| r.iterations > 1));
        assert_eq!(out.outputs.len(), g.outputs.len());
        for (a, b) in g.outputs.iter().zip(&out.outputs) {
            assert_eq!(g.value_label(*a), out.value_label(*b), "case {case}: output names");
        }
        for trial in 0..2 {
            let inputs: Vec<Tensor> = g
                .inputs
                .iter()
                .map(|&v| {
                    let ty = g.ty(v).clone();
                    let vals = (0..ty.numel()).map(|_| rng.range(-1.0, 1.0)).collect();
                    Tensor::float(ty.dtype, ty.shape.clone(), vals).unwrap()
                })
                .collect();
            let ra = interp::run(&g, &inputs).unwrap();
            let rb = interp::run(&out, &inputs).unwrap();
            for (k, (x, y)) in ra.iter().zip(&rb).enumerate() {
                assert_eq!(x.ty, y.ty, "case {case} output {k}");
                let (x, y) = (x.to_f64_vec(), y.to_f64_vec());
                let scale = x.iter().fold(1f64, |m, v| m.max(v.abs()));
                let err = x.iter().zip(&y).fold(0f64, |m, (p, q)| m.max((p - q).abs()));
                assert!(
                    err <= 1e-9 * scale,
                    "case {case} trial {trial} output {k}: error {err:e} (scale {scale:e})\n{}",
                    polyhe_ir::text::print(&g, &Default::default())
                );
            }
        }
    }
    eprintln!("of 120 random graphs, {rewritten} were rewritten and {improved} got shallower");
    // The generator must exercise the rewrites, or this test proves nothing.
    assert!(rewritten >= 60 && improved >= 5, "{rewritten} rewritten, {improved} shallower");
}
