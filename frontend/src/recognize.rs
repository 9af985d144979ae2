//! Pattern recognition: fuse the decomposed LayerNorm and GELU subgraphs exporters emit into
//! `layer_norm` and `gelu`.
//!
//! Requires: a graph from the importer (static shapes, constants folded).
//! Guarantees: the result computes the same function (the fused ops are defined by the same formulas;
//! the epsilon is taken from the model's own constant), has the same inputs and outputs, and contains
//! no dead nodes. A subgraph is fused only if every intermediate value is used solely inside it (not by
//! other nodes, not as a graph output), its constants match within 1e-4 relative, and the fused
//! result has exactly the type of the subgraph's result. Matching is read-only; the rewrite is one
//! [`rebuild`](crate::rebuild::rebuild) into a new graph.
//!
//! Patterns (`~` = constant within tolerance; commutative operands in either order):
//! - LayerNorm: `m = ReduceMean(x, axes=a..r, keepdims)`, `d = x - m`, `v = ReduceMean(d^2 | d*d)`,
//!   `s = Sqrt(v + eps)`, `n = d / s | d * Reciprocal(s)`, then optionally `* scale`, `+ bias` with
//!   `scale`/`bias` of the normalized shape.
//! - GELU (erf): `e = Erf(x / ~√2 | x * ~1/√2)`, `a = e + ~1`, then `(x * a) * ~0.5`,
//!   `(x * ~0.5) * a` or `x * (a * ~0.5)`.
//! - GELU (tanh): `c = x^~3 | x*(x*x)`, `t = Tanh((x + c * ~0.044715) * ~√(2/π))`, `a = t + ~1`, and the
//!   same three tails.

use std::collections::{HashMap, HashSet};

use cranelift_entity::SecondaryMap;
use polyhe_ir::{Data, GeluApprox, Graph, Node, NodeData, Op, Tensor, TensorType, Value, ValueDef};

use crate::rebuild::{rebuild, NewInput, Replacement};
use crate::FrontendError;

const REL_TOL: f64 = 1e-4;

/// Fuses every LayerNorm and GELU subgraph (see the module doc).
pub(crate) fn recognize(g: Graph) -> Result<Graph, FrontendError> {
    let m = Matcher::new(&g);
    let mut taken: HashSet<Node> = HashSet::new();
    let mut replace: HashMap<Node, Replacement> = HashMap::new();
    for (n, data) in g.nodes.iter() {
        let found = match data.op {
            Op::ReduceMean { .. } => m.layer_norm(n),
            Op::Erf => m.gelu_erf(n),
            Op::Tanh => m.gelu_tanh(n),
            _ => None,
        };
        let Some(f) = found else { continue };
        if f.nodes.iter().any(|n| taken.contains(n)) {
            continue;
        }
        taken.extend(f.nodes.iter().copied());
        replace.insert(f.last, f.replacement);
    }
    if replace.is_empty() {
        return Ok(g);
    }
    rebuild(g, &replace)
}

/// A matched subgraph: all its nodes, the last one (whose result it produces) and what replaces it.
struct Fusion {
    nodes: Vec<Node>,
    last: Node,
    replacement: Replacement,
}

struct Matcher<'g> {
    g: &'g Graph,
    uses: SecondaryMap<Value, usize>,
    users: SecondaryMap<Value, Vec<Node>>,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= REL_TOL * b.abs()
}

impl<'g> Matcher<'g> {
    fn new(g: &'g Graph) -> Self {
        let mut users: SecondaryMap<Value, Vec<Node>> = SecondaryMap::new();
        for (n, d) in g.nodes.iter() {
            for &v in &d.inputs {
                if !users[v].contains(&n) {
                    users[v].push(n);
                }
            }
        }
        Matcher { g, uses: g.use_counts(), users }
    }

    fn producer(&self, v: Value) -> Option<(Node, &'g NodeData)> {
        match self.g.values[v].def {
            ValueDef::Result(n, 0) => Some((n, &self.g.nodes[n])),
            _ => None,
        }
    }

    /// The only node using `v`, if `v` has exactly `count` uses, all by that node.
    fn sole_user(&self, v: Value, count: usize) -> Option<(Node, &'g NodeData)> {
        if self.uses[v] != count || self.users[v].len() != 1 {
            return None;
        }
        let n = self.users[v][0];
        Some((n, &self.g.nodes[n]))
    }

    /// The value of a constant whose elements are all equal.
    fn scalar(&self, v: Value) -> Option<f64> {
        let t = self.g.constant_of(v)?;
        let Data::Float(xs) = &t.data else {
            return match &t.data {
                Data::Int(xs) if !xs.is_empty() && xs.iter().all(|&x| x == xs[0]) => Some(xs[0] as f64),
                _ => None,
            };
        };
        let first = *xs.first()?;
        xs.iter().all(|&x| x == first).then_some(first)
    }

    fn is_const(&self, v: Value, target: f64) -> bool {
        self.scalar(v).is_some_and(|c| close(c, target))
    }

    /// For a binary commutative node on `(p, q)`: if one side satisfies `pred`, the other side.
    fn other_operand(&self, d: &NodeData, pred: impl Fn(Value) -> bool) -> Option<Value> {
        let (p, q) = (d.inputs[0], d.inputs[1]);
        if pred(q) {
            Some(p)
        } else if pred(p) {
            Some(q)
        } else {
            None
        }
    }

    fn same_type(&self, a: Value, b: Value) -> bool {
        self.g.ty(a) == self.g.ty(b)
    }

    // ---------------------------------------------------------------- LayerNorm

    fn layer_norm(&self, r1: Node) -> Option<Fusion> {
        let g = self.g;
        let r1d = &g.nodes[r1];
        let Op::ReduceMean { axes, keepdims: true } = &r1d.op else {
            return None;
        };
        let x = r1d.inputs[0];
        let rank = g.ty(x).rank();
        let axis = *axes.first()?;
        if *axes != (axis..rank).collect::<Vec<_>>() || !g.ty(x).dtype.is_float() {
            return None;
        }
        let mean = r1d.outputs[0];
        let (sub, subd) = self.sole_user(mean, 1)?;
        if subd.op != Op::Sub || subd.inputs != [x, mean] {
            return None;
        }
        let d = subd.outputs[0];
        // d feeds the square (once via Pow, twice via Mul(d, d)) and the normalization.
        let users = &self.users[d];
        if users.len() != 2 {
            return None;
        }
        let is_square = |n: Node| {
            let nd = &g.nodes[n];
            (nd.op == Op::Pow && nd.inputs[0] == d && self.is_const(nd.inputs[1], 2.0))
                || (nd.op == Op::Mul && nd.inputs == [d, d])
        };
        let (sq, norm) = if is_square(users[0]) {
            (users[0], users[1])
        } else if is_square(users[1]) {
            (users[1], users[0])
        } else {
            return None;
        };
        let sq_uses = if g.nodes[sq].op == Op::Mul { 2 } else { 1 };
        if self.uses[d] != sq_uses + 1 {
            return None;
        }
        let (r2, r2d) = self.sole_user(g.nodes[sq].outputs[0], 1)?;
        if r2d.op != r1d.op {
            return None;
        }
        let (add, addd) = self.sole_user(r2d.outputs[0], 1)?;
        if addd.op != Op::Add {
            return None;
        }
        let var = r2d.outputs[0];
        let eps_v = self.other_operand(addd, |v| v == var)?;
        let epsilon = self.scalar(eps_v)?;
        if epsilon.is_nan() || epsilon < 0.0 || g.ty(eps_v).numel() != 1 {
            return None;
        }
        let (sqrt, sqrtd) = self.sole_user(addd.outputs[0], 1)?;
        if sqrtd.op != Op::Sqrt {
            return None;
        }
        let s = sqrtd.outputs[0];
        let mut nodes = vec![r1, sub, sq, r2, add, sqrt];
        let normd = &g.nodes[norm];
        match normd.op {
            Op::Div if normd.inputs == [d, s] && self.uses[s] == 1 => {}
            Op::Mul => {
                let (rec, recd) = self.sole_user(s, 1)?;
                let r = recd.outputs[0];
                if recd.op != Op::Reciprocal || self.uses[r] != 1 || self.other_operand(normd, |v| v == r) != Some(d) {
                    return None;
                }
                nodes.push(rec);
            }
            _ => return None,
        }
        nodes.push(norm);
        let mut last = norm;
        let mut out = normd.outputs[0];
        let norm_shape = g.ty(x).shape[axis..].to_vec();
        let fits = |v: Value| g.ty(v).shape == norm_shape && g.ty(v).dtype == g.ty(x).dtype;
        // Optional affine part.
        let mut scale = None;
        let mut bias = None;
        if let Some((mul, muld)) = self.sole_user(out, 1) {
            if muld.op == Op::Mul {
                let o = out;
                if let Some(sc) = self.other_operand(muld, |v| v == o).filter(|&v| fits(v) && v != o) {
                    scale = Some(sc);
                    nodes.push(mul);
                    last = mul;
                    out = muld.outputs[0];
                }
            }
        }
        if scale.is_some() {
            if let Some((badd, baddd)) = self.sole_user(out, 1) {
                if baddd.op == Op::Add {
                    let o = out;
                    if let Some(b) = self.other_operand(baddd, |v| v == o).filter(|&v| fits(v) && v != o) {
                        bias = Some(b);
                        nodes.push(badd);
                        last = badd;
                        out = baddd.outputs[0];
                    }
                }
            }
        }
        if !self.same_type(out, x) {
            return None;
        }
        let scale = match scale {
            Some(v) => NewInput::Old(v),
            None => {
                let ty = TensorType::new(g.ty(x).dtype, norm_shape.clone());
                let n = ty.numel();
                NewInput::Const(Tensor::new(ty, Data::Float(vec![1.0; n])).ok()?)
            }
        };
        let mut inputs = vec![NewInput::Old(x), scale];
        inputs.extend(bias.map(NewInput::Old));
        Some(Fusion { nodes, last, replacement: Replacement { op: Op::LayerNorm { axis, epsilon }, inputs } })
    }

    // ---------------------------------------------------------------- GELU

    /// The common tail `a → 0.5 · x · a` in its three orders; returns the nodes and the last one.
    fn gelu_tail(&self, x: Value, a: Value) -> Option<(Vec<Node>, Node)> {
        let (m1, m1d) = self.sole_user(a, 1)?;
        if m1d.op != Op::Mul {
            return None;
        }
        let other = self.other_operand(m1d, |v| v == a)?;
        let out1 = m1d.outputs[0];
        if other == x {
            // (x * a) * 0.5
            let (m2, m2d) = self.sole_user(out1, 1)?;
            (m2d.op == Op::Mul && self.other_operand(m2d, |v| v == out1).is_some_and(|c| self.is_const(c, 0.5)))
                .then(|| (vec![m1, m2], m2))
        } else if self.is_const(other, 0.5) {
            // x * (a * 0.5)
            let (m2, m2d) = self.sole_user(out1, 1)?;
            (m2d.op == Op::Mul && self.other_operand(m2d, |v| v == out1) == Some(x)).then(|| (vec![m1, m2], m2))
        } else {
            // (x * 0.5) * a
            let (h, hd) = self.producer(other)?;
            let ok = hd.op == Op::Mul
                && self.uses[other] == 1
                && self.other_operand(hd, |v| v == x).is_some_and(|c| c != x && self.is_const(c, 0.5));
            ok.then(|| (vec![h, m1], m1))
        }
    }

    fn gelu_fusion(&self, x: Value, mut nodes: Vec<Node>, a: Value, approx: GeluApprox) -> Option<Fusion> {
        if !self.g.ty(x).dtype.is_float() {
            return None;
        }
        let (tail, last) = self.gelu_tail(x, a)?;
        nodes.extend(tail);
        if !self.same_type(self.g.nodes[last].outputs[0], x) {
            return None;
        }
        Some(Fusion { nodes, last, replacement: Replacement { op: Op::Gelu(approx), inputs: vec![NewInput::Old(x)] } })
    }

    /// `a = 1 + f(...)`: the Add consuming the unary node `n`'s result.
    fn plus_one(&self, n: Node) -> Option<(Node, Value)> {
        let e = self.g.nodes[n].outputs[0];
        let (add, addd) = self.sole_user(e, 1)?;
        (addd.op == Op::Add && self.other_operand(addd, |v| v == e).is_some_and(|c| c != e && self.is_const(c, 1.0)))
            .then(|| (add, addd.outputs[0]))
    }

    fn gelu_erf(&self, erf: Node) -> Option<Fusion> {
        let g = self.g;
        let d = g.nodes[erf].inputs[0];
        if self.uses[d] != 1 {
            return None;
        }
        let (scale, sd) = self.producer(d)?;
        let x = match sd.op {
            Op::Div if self.is_const(sd.inputs[1], std::f64::consts::SQRT_2) => sd.inputs[0],
            Op::Mul => self.other_operand(sd, |c| self.is_const(c, std::f64::consts::FRAC_1_SQRT_2))?,
            _ => return None,
        };
        if g.constant_of(x).is_some() {
            return None;
        }
        let (add, a) = self.plus_one(erf)?;
        self.gelu_fusion(x, vec![scale, erf, add], a, GeluApprox::Erf)
    }

    /// If `c` is `x³` (as `Pow(x, 3)`, `x * (x * x)` or `(x * x) * x`) used once, its nodes and `x`.
    fn cube(&self, c: Value) -> Option<(Vec<Node>, Value)> {
        if self.uses[c] != 1 {
            return None;
        }
        let (n, nd) = self.producer(c)?;
        match nd.op {
            Op::Pow if self.is_const(nd.inputs[1], 3.0) => Some((vec![n], nd.inputs[0])),
            Op::Mul => {
                for (sq, x) in [(nd.inputs[0], nd.inputs[1]), (nd.inputs[1], nd.inputs[0])] {
                    if let Some((sn, snd)) = self.producer(sq) {
                        if snd.op == Op::Mul && snd.inputs == [x, x] && self.uses[sq] == 1 {
                            return Some((vec![sn, n], x));
                        }
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn gelu_tanh(&self, tanh: Node) -> Option<Fusion> {
        let g = self.g;
        let t = g.nodes[tanh].inputs[0];
        if self.uses[t] != 1 {
            return None;
        }
        let (outer, od) = self.producer(t)?;
        if od.op != Op::Mul {
            return None;
        }
        let s = self.other_operand(od, |c| self.is_const(c, (2.0 / std::f64::consts::PI).sqrt()))?;
        if self.uses[s] != 1 {
            return None;
        }
        let (sum, sumd) = self.producer(s)?;
        if sumd.op != Op::Add {
            return None;
        }
        for (x, k) in [(sumd.inputs[0], sumd.inputs[1]), (sumd.inputs[1], sumd.inputs[0])] {
            if self.uses[k] != 1 {
                continue;
            }
            let Some((kn, kd)) = self.producer(k) else {
                continue;
            };
            if kd.op != Op::Mul {
                continue;
            }
            let Some(c) = self.other_operand(kd, |c| self.is_const(c, 0.044715)) else {
                continue;
            };
            let Some((cube_nodes, cx)) = self.cube(c) else {
                continue;
            };
            if cx != x || g.constant_of(x).is_some() {
                continue;
            }
            let (add, a) = self.plus_one(tanh)?;
            let mut nodes = cube_nodes;
            nodes.extend([kn, sum, outer, tanh, add]);
            return self.gelu_fusion(x, nodes, a, GeluApprox::Tanh);
        }
        None
    }
}
