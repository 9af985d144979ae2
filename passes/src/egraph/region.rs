//! Elementwise regions: maximal convex sets of nodes the e-graph may rewrite together.
//!
//! A node is a *candidate* when its result is encrypted and floating-point and its op is `add`,
//! `sub`, `neg`, `mul`, `chebyshev`, `reduce_sum`, `reduce_mean`, or `matmul`/`gemm` with a
//! constant 2-D right operand (plaintext weights, kept as `matmul_w` so scalars can be fused into
//! them; a `gemm` becomes `matmul_w` of `alpha·op(B)` plus `beta·C`). Two candidates join when one consumes the
//! other's result and **all** uses of that result are candidates (a value also used by a
//! non-candidate is a region boundary). Joining is refused when it would make the region non-convex
//! (a path leaving the region and re-entering it), so every region can be emitted as one unit in a
//! topological order of regions and other nodes.
//!
//! Convexity is tracked with, per value, the set of regions it depends on *through a node outside
//! that region* (`escaped`): a node may join region `R` only if none of its inputs escaped from `R`,
//! and two regions may merge through a node only if neither escaped into the other.

use std::collections::{BTreeMap, BTreeSet};

use cranelift_entity::SecondaryMap;
use polyhe_ir::{Graph, Node, Op, Value, ValueDef};

/// One region: its nodes in storage order.
#[derive(Debug, Clone)]
pub struct Region {
    pub nodes: Vec<Node>,
}

/// Whether `n` may be rewritten by the e-graph (module doc).
pub fn is_candidate(g: &Graph, enc: &SecondaryMap<Value, bool>, n: Node) -> bool {
    let d = &g.nodes[n];
    let Some(&out) = d.outputs.first() else { return false };
    if d.outputs.len() != 1 || !enc[out] || !g.ty(out).dtype.is_float() {
        return false;
    }
    match &d.op {
        Op::Add | Op::Sub | Op::Mul => d.inputs.len() == 2,
        Op::Neg | Op::Chebyshev { .. } => d.inputs.len() == 1,
        // Linear reductions: `reduce_mean` is `reduce_sum` times 1/n, and that scalar can fold.
        Op::ReduceSum { .. } | Op::ReduceMean { .. } => d.inputs.len() == 1,
        // alpha·A·op(B) + beta·C with constant 2-D B (a linear layer).
        Op::Gemm { trans_a: false, .. } => {
            (d.inputs.len() == 2 || d.inputs.len() == 3)
                && enc[d.inputs[0]]
                && g.constant_of(d.inputs[1]).is_some_and(|t| t.dtype().is_float() && t.ty.rank() == 2)
        }
        Op::MatMul => {
            d.inputs.len() == 2
                && enc[d.inputs[0]]
                && g.constant_of(d.inputs[1]).is_some_and(|t| t.dtype().is_float() && t.ty.rank() >= 2)
        }
        _ => false,
    }
}

struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut c = x;
        while self.0[c] != r {
            let next = self.0[c];
            self.0[c] = r;
            c = next;
        }
        r
    }
}

/// Finds the regions of `g` (module doc), in order of their first node.
pub fn find_regions(g: &Graph, enc: &SecondaryMap<Value, bool>) -> Vec<Region> {
    let cand: SecondaryMap<Node, bool> = {
        let mut m = SecondaryMap::with_default(false);
        for n in g.nodes.keys() {
            m[n] = is_candidate(g, enc, n);
        }
        m
    };
    // Uses of each value: consumers, and whether it is a graph output.
    let mut users: SecondaryMap<Value, Vec<Node>> = SecondaryMap::new();
    for (n, d) in g.nodes.iter() {
        for &v in &d.inputs {
            users[v].push(n);
        }
    }
    let mut is_output: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &g.outputs {
        is_output[v] = true;
    }
    let producer = |v: Value| match g.values[v].def {
        ValueDef::Result(p, _) => Some(p),
        ValueDef::Input(_) => None,
    };
    let mergeable = |v: Value| !is_output[v] && users[v].iter().all(|&u| cand[u]);

    // Region ids are union-find indices; `region[n]` is the id a candidate node was given.
    let mut dsu = Dsu(Vec::new());
    let mut region: SecondaryMap<Node, Option<usize>> = SecondaryMap::with_default(None);
    let mut escaped: SecondaryMap<Value, BTreeSet<usize>> = SecondaryMap::new();
    // Per region: the regions its nodes' inputs escaped from.
    let mut region_esc: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();

    for (n, d) in g.nodes.iter() {
        // Everything this node's inputs escaped from, canonicalized.
        let mut bad: BTreeSet<usize> = BTreeSet::new();
        for &v in &d.inputs {
            for &r in &escaped[v] {
                bad.insert(dsu.find(r));
            }
        }
        let mut own: Option<usize> = None;
        if cand[n] {
            let mut join: BTreeSet<usize> = BTreeSet::new();
            for &v in &d.inputs {
                if let Some(p) = producer(v) {
                    if let Some(r) = region[p] {
                        if mergeable(v) {
                            join.insert(dsu.find(r));
                        }
                    }
                }
            }
            join.retain(|r| !bad.contains(r));
            // Pairwise: regions that escaped into each other cannot merge.
            let mut chosen: Vec<usize> = Vec::new();
            for r in join {
                let esc_r: BTreeSet<usize> = region_esc.get(&r).into_iter().flatten().map(|&x| dsu.find(x)).collect();
                let ok = chosen.iter().all(|&c| {
                    let esc_c: BTreeSet<usize> =
                        region_esc.get(&c).into_iter().flatten().map(|&x| dsu.find(x)).collect();
                    !esc_r.contains(&c) && !esc_c.contains(&r)
                });
                if ok {
                    chosen.push(r);
                }
            }
            let id = match chosen.first() {
                Some(&first) => {
                    for &other in &chosen[1..] {
                        let root = dsu.find(first);
                        dsu.0[other] = root;
                        let moved = region_esc.remove(&other).unwrap_or_default();
                        region_esc.entry(root).or_default().extend(moved);
                    }
                    dsu.find(first)
                }
                None => {
                    dsu.0.push(dsu.0.len());
                    dsu.0.len() - 1
                }
            };
            region_esc.entry(id).or_default().extend(bad.iter().copied());
            region[n] = Some(id);
            own = Some(id);
        }
        // Escape sets of the results: inherited, plus every input region this node is outside of.
        let mut out_esc = bad;
        for &v in &d.inputs {
            if let Some(p) = producer(v) {
                if let Some(r) = region[p] {
                    let r = dsu.find(r);
                    if own.map(|o| dsu.find(o)) != Some(r) {
                        out_esc.insert(r);
                    }
                }
            }
        }
        for &o in &d.outputs {
            escaped[o] = out_esc.clone();
        }
    }

    let mut by_root: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
    for n in g.nodes.keys() {
        if let Some(r) = region[n] {
            let root = dsu.find(r);
            by_root.entry(root).or_default().push(n);
        }
    }
    let mut regions: Vec<Region> = by_root.into_values().map(|nodes| Region { nodes }).collect();
    regions.sort_by_key(|r| r.nodes[0]);
    regions
}
