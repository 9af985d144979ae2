//! The cost model (CKKS levels) and the e-class analysis built on it.
//!
//! Every e-class has a [`Kind`]: `Compile` (a compile-time constant: scalars, the graph's constant
//! tensors and arithmetic on them, folded when the graph is rebuilt), `Plain` (plaintext computed at
//! run time from client data, e.g. masks), `Cipher` (depends on an encrypted value) or `Spec`
//! (Chebyshev parameters). Only `Cipher` work costs anything:
//!
//! | node (result `Cipher`) | depth | ct×ct mults | ops |
//! |---|---|---|---|
//! | `add`, `sub`, `neg` | max of operands | 0 | 1 |
//! | `mul` ct×ct, `square` | max + 1 | 1 | 1 |
//! | `mul` by an integer scalar | operand | 0 | 1 |
//! | `mul` by a non-integer scalar or a plaintext tensor | operand + 1 | 0 | 1 |
//! | `matmul_w x W` | depth(x) + 1 | 0 | 1 |
//! | `cheb s x` | depth(x) + plan depth | plan's | plan's |
//! | leaf | its depth in the graph (given) | 0 | 0 |
//!
//! A scalar multiply that folds into a neighbour (weights, a Chebyshev interval or its coefficients)
//! costs nothing because the folding *rules* remove it; what is left in an extracted term is a real
//! multiplication. The Chebyshev plan's depth is [`crate::approx::EvalPlan::chebyshev`]'s: the affine
//! map of the input onto `[-1, 1]` is assumed folded upstream, the convention of `Op::poly_depth`.
//!
//! The analysis keeps per class: kind, scalar value (constant folding), the *minimum* depth over the
//! class's nodes (a lattice: it only decreases as rules add cheaper forms; the balancing and polynomial
//! rules fire only when they lower it), and, when the class is a polynomial of degree ≤
//! [`MAX_POLY_DEGREE`] in one ciphertext class with scalar coefficients, that polynomial (power basis).

use std::collections::HashMap;

use egg::{Analysis, DidMerge, EGraph, Id, Language};

use super::lang::{ChebSpec, ConstRef, LeafRef, PolyLang, Scalar};
use crate::approx::{Chebyshev, Interval, PlanCost};

/// Polynomials above this degree are treated as opaque by the analysis.
pub const MAX_POLY_DEGREE: usize = 63;

/// What an e-class holds (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Spec,
    Compile,
    Plain,
    Cipher,
}

/// `Σ coeffs[i]·var^i` with `var` a ciphertext e-class.
#[derive(Debug, Clone, PartialEq)]
pub struct Poly1 {
    pub var: Id,
    pub coeffs: Vec<f64>,
}

impl Poly1 {
    pub fn degree(&self) -> usize {
        self.coeffs.iter().rposition(|&c| c != 0.0).unwrap_or(0)
    }
}

/// Analysis data of an e-class (module doc).
#[derive(Debug, Clone)]
pub struct ClassData {
    pub kind: Kind,
    pub num: Option<f64>,
    pub depth: u32,
    pub poly: Option<Poly1>,
    /// The polynomial rules already inserted their alternatives for this class (or it came from one).
    pub planned: bool,
    /// Static shape, when known (leaves and constants are given theirs; ops broadcast).
    pub shape: Option<Vec<usize>>,
    /// The polynomial is written as a power chain: somewhere it multiplies by its variable itself
    /// (Horner's form, `x·x·x`), as opposed to e.g. Goldschmidt's products of `(1 + e^(2^i))` with
    /// `e = 1 − c·x`. Only chains are re-evaluated in the power basis (see `poly-balanced`).
    pub chain: bool,
}

/// The e-class analysis: leaf depths from the graph and a cache of Chebyshev plan costs.
#[derive(Debug, Default, Clone)]
pub struct PolyAnalysis {
    /// Depth of each leaf value; `None` = plaintext (not downstream of an encrypted input). Leaves not
    /// listed are ciphertexts at depth 0.
    pub leaves: HashMap<LeafRef, Option<u32>>,
    pub plan_costs: HashMap<ChebSpec, PlanCost>,
    /// Shapes of leaves and of the graph's constants referenced by `Tensor` nodes.
    pub leaf_shapes: HashMap<LeafRef, Vec<usize>>,
    pub const_shapes: HashMap<ConstRef, Vec<usize>>,
}

/// Cost of a Chebyshev series under the plan model; an invalid spec is priced prohibitively.
pub fn spec_cost(spec: &ChebSpec) -> PlanCost {
    let ok = spec.is_valid();
    let cheb = ok
        .then(|| Interval::new(spec.lo.get(), spec.hi.get()).ok())
        .flatten()
        .and_then(|iv| Chebyshev::new(iv, spec.coeffs_f64()).ok());
    match cheb {
        Some(c) => c.plan().cost(),
        None => PlanCost { depth: 1000, ct_mults: 1000, scalar_mults: 0, ops: 1000 },
    }
}

impl PolyAnalysis {
    pub fn plan_cost(&mut self, spec: &ChebSpec) -> PlanCost {
        if let Some(c) = self.plan_costs.get(spec) {
            return *c;
        }
        let c = spec_cost(spec);
        self.plan_costs.insert(spec.clone(), c);
        c
    }
}

/// What the cost model needs to know about an operand.
#[derive(Debug, Clone, Copy)]
pub struct Operand {
    pub kind: Kind,
    pub num: Option<f64>,
    pub depth: u32,
}

/// Cost of one node given its operands (module-doc table): result kind, depth, own ct×ct mults,
/// own ops, own "general" (non-square) ct×ct mults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCost {
    pub kind: Kind,
    pub depth: u32,
    pub ct_mults: usize,
    pub ops: usize,
    pub general: usize,
}

fn is_integer(c: f64) -> bool {
    c.is_finite() && c.fract() == 0.0
}

/// The module-doc model for one node. `leaf` gives a leaf's depth (`None` = plaintext), `plan` a
/// Chebyshev spec's plan cost.
pub fn node_cost(
    node: &PolyLang,
    op: impl Fn(Id) -> Operand,
    leaf: impl Fn(LeafRef) -> Option<u32>,
    spec_of: impl Fn(Id) -> Option<PlanCost>,
) -> NodeCost {
    let free = |kind| NodeCost { kind, depth: 0, ct_mults: 0, ops: 0, general: 0 };
    let kind_of = |ids: &[Id]| ids.iter().map(|&i| op(i).kind).max().unwrap_or(Kind::Compile);
    match node {
        PolyLang::Num(_) | PolyLang::Tensor(_) => free(Kind::Compile),
        PolyLang::Spec(_) | PolyLang::Axes(_) => free(Kind::Spec),
        PolyLang::RSum([_, x]) => {
            let o = op(*x);
            if o.kind != Kind::Cipher {
                return free(o.kind);
            }
            // Rotations and additions: no level.
            NodeCost { kind: o.kind, depth: o.depth, ct_mults: 0, ops: 1, general: 0 }
        }
        PolyLang::Leaf(l) => match leaf(*l) {
            Some(d) => NodeCost { kind: Kind::Cipher, depth: d, ct_mults: 0, ops: 0, general: 0 },
            None => free(Kind::Plain),
        },
        PolyLang::Add(ids) | PolyLang::Sub(ids) => {
            let kind = kind_of(ids);
            if kind != Kind::Cipher {
                return free(kind);
            }
            let depth = op(ids[0]).depth.max(op(ids[1]).depth);
            NodeCost { kind, depth, ct_mults: 0, ops: 1, general: 0 }
        }
        PolyLang::Neg(a) => {
            let o = op(*a);
            if o.kind != Kind::Cipher {
                return free(o.kind);
            }
            NodeCost { kind: o.kind, depth: o.depth, ct_mults: 0, ops: 1, general: 0 }
        }
        PolyLang::Square(a) => {
            let o = op(*a);
            if o.kind != Kind::Cipher {
                return free(o.kind);
            }
            NodeCost { kind: o.kind, depth: o.depth + 1, ct_mults: 1, ops: 1, general: 0 }
        }
        PolyLang::Mul(ids) | PolyLang::ScaleConst(ids) | PolyLang::ScaleRows(ids) => {
            let (a, b) = (op(ids[0]), op(ids[1]));
            let kind = a.kind.max(b.kind);
            if kind != Kind::Cipher {
                return free(kind);
            }
            if a.kind == Kind::Cipher && b.kind == Kind::Cipher {
                let general = usize::from(ids[0] != ids[1]);
                return NodeCost { kind, depth: a.depth.max(b.depth) + 1, ct_mults: 1, ops: 1, general };
            }
            let (ct, pt) = if a.kind == Kind::Cipher { (a, b) } else { (b, a) };
            let level = match pt.num {
                Some(c) if is_integer(c) => 0,
                _ => 1,
            };
            NodeCost { kind, depth: ct.depth + level, ct_mults: 0, ops: 1, general: 0 }
        }
        PolyLang::MatMulW(ids) => {
            let kind = kind_of(ids);
            if kind != Kind::Cipher {
                return free(kind);
            }
            let (x, w) = (op(ids[0]), op(ids[1]));
            NodeCost { kind, depth: x.depth.max(w.depth) + 1, ct_mults: 0, ops: 1, general: 0 }
        }
        PolyLang::Cheb(ids) => {
            let x = op(ids[1]);
            if x.kind != Kind::Cipher {
                return free(x.kind);
            }
            let plan = spec_of(ids[0]).unwrap_or(PlanCost { depth: 1000, ct_mults: 1000, scalar_mults: 0, ops: 1000 });
            NodeCost {
                kind: x.kind,
                depth: x.depth + plan.depth,
                ct_mults: plan.ct_mults,
                ops: plan.ops.max(1),
                general: plan.ct_mults,
            }
        }
    }
}

/// The Chebyshev spec held by a `Spec` e-class.
pub fn spec_in(egraph: &EGraph<PolyLang, PolyAnalysis>, id: Id) -> Option<ChebSpec> {
    egraph[id].nodes.iter().find_map(|n| match n {
        PolyLang::Spec(s) => Some(s.clone()),
        _ => None,
    })
}

type EG = EGraph<PolyLang, PolyAnalysis>;

fn operand(egraph: &EG, id: Id) -> Operand {
    let d = &egraph[id].data;
    Operand { kind: d.kind, num: d.num, depth: d.depth }
}

/// The class's value as a polynomial in a ciphertext class: constants are degree 0 (`var` None),
/// an atomic ciphertext class is `var^1`.
fn as_poly(egraph: &EG, id: Id) -> Option<(Option<Id>, Vec<f64>)> {
    let d = &egraph[id].data;
    if let Some(c) = d.num {
        return Some((None, vec![c]));
    }
    if d.kind != Kind::Cipher {
        return None;
    }
    match &d.poly {
        Some(p) => Some((Some(egraph.find(p.var)), p.coeffs.clone())),
        None => Some((Some(egraph.find(id)), vec![0.0, 1.0])),
    }
}

fn unify(a: Option<Id>, b: Option<Id>) -> Option<Option<Id>> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => None,
        (Some(x), _) | (_, Some(x)) => Some(Some(x)),
        (None, None) => Some(None),
    }
}

fn poly_add(a: &[f64], b: &[f64], sign: f64) -> Vec<f64> {
    let mut r = vec![0.0; a.len().max(b.len())];
    for (i, v) in a.iter().enumerate() {
        r[i] += v;
    }
    for (i, v) in b.iter().enumerate() {
        r[i] += sign * v;
    }
    r
}

fn poly_mul(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut r = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            r[i + j] += x * y;
        }
    }
    r
}

fn trim(mut c: Vec<f64>) -> Vec<f64> {
    while c.len() > 1 && c.last() == Some(&0.0) {
        c.pop();
    }
    c
}

fn make_poly(egraph: &EG, node: &PolyLang) -> Option<Poly1> {
    let (var, coeffs) = match node {
        PolyLang::Add([a, b]) | PolyLang::Sub([a, b]) => {
            let (va, ca) = as_poly(egraph, *a)?;
            let (vb, cb) = as_poly(egraph, *b)?;
            let sign = if matches!(node, PolyLang::Sub(_)) { -1.0 } else { 1.0 };
            (unify(va, vb)?, poly_add(&ca, &cb, sign))
        }
        PolyLang::Neg(a) => {
            let (va, ca) = as_poly(egraph, *a)?;
            (va, ca.iter().map(|c| -c).collect())
        }
        PolyLang::Mul([a, b]) => {
            let (va, ca) = as_poly(egraph, *a)?;
            let (vb, cb) = as_poly(egraph, *b)?;
            (unify(va, vb)?, poly_mul(&ca, &cb))
        }
        PolyLang::Square(a) => {
            let (va, ca) = as_poly(egraph, *a)?;
            (va, poly_mul(&ca, &ca))
        }
        _ => return None,
    };
    let var = var?;
    let coeffs = trim(coeffs);
    if coeffs.len() - 1 > MAX_POLY_DEGREE || coeffs.iter().any(|c| !c.is_finite()) {
        return None;
    }
    Some(Poly1 { var, coeffs })
}

fn fold(egraph: &EG, node: &PolyLang) -> Option<f64> {
    let n = |id: &Id| egraph[*id].data.num;
    let v = match node {
        PolyLang::Num(c) => c.get(),
        PolyLang::Add([a, b]) => n(a)? + n(b)?,
        PolyLang::Sub([a, b]) => n(a)? - n(b)?,
        PolyLang::Mul([a, b]) => n(a)? * n(b)?,
        PolyLang::Neg(a) => -n(a)?,
        PolyLang::Square(a) => n(a)? * n(a)?,
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// Shape of a reduction's result.
pub fn reduced_shape(x: &[usize], a: &super::lang::AxesSpec) -> Option<Vec<usize>> {
    if a.axes.iter().any(|&ax| ax >= x.len()) {
        return None;
    }
    Some(
        x.iter()
            .enumerate()
            .filter_map(|(i, &d)| match (a.axes.contains(&i), a.keepdims) {
                (false, _) => Some(d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect(),
    )
}

/// Shape of `x @ W` for a 2-D `W`.
pub fn matmul_shape(x: &[usize], w: &[usize]) -> Option<Vec<usize>> {
    let (&k, rest) = x.split_last()?;
    match w {
        [k2, n] if *k2 == k => Some(rest.iter().copied().chain([*n]).collect()),
        _ => None,
    }
}

fn make_shape(egraph: &EG, node: &PolyLang) -> Option<Vec<usize>> {
    let sh = |id: &Id| egraph[*id].data.shape.clone();
    match node {
        PolyLang::Num(_) => Some(vec![]),
        PolyLang::Spec(_) | PolyLang::Axes(_) => None,
        PolyLang::RSum([a, x]) => {
            let spec = egraph[*a].nodes.iter().find_map(|n| match n {
                PolyLang::Axes(s) => Some(s.clone()),
                _ => None,
            })?;
            reduced_shape(&sh(x)?, &spec)
        }
        PolyLang::Tensor(c) => egraph.analysis.const_shapes.get(c).cloned(),
        PolyLang::Leaf(l) => egraph.analysis.leaf_shapes.get(l).cloned(),
        PolyLang::Add([a, b]) | PolyLang::Sub([a, b]) | PolyLang::Mul([a, b]) | PolyLang::ScaleConst([a, b]) => {
            polyhe_ir::infer::broadcast_shapes(&sh(a)?, &sh(b)?)
        }
        PolyLang::Neg(a) | PolyLang::Square(a) => sh(a),
        PolyLang::Cheb([_, x]) => sh(x),
        PolyLang::ScaleRows([_, w]) => sh(w),
        PolyLang::MatMulW([x, w]) => matmul_shape(&sh(x)?, &sh(w)?),
    }
}

/// Whether `node` (whose polynomial has variable `var`) continues a power chain ([`ClassData::chain`]).
fn make_chain(egraph: &EG, node: &PolyLang, var: Id) -> bool {
    let d = |id: &Id| &egraph[*id].data;
    let is_var = |id: &Id| egraph.find(*id) == var;
    let cipher = |id: &Id| d(id).kind == Kind::Cipher;
    let konst = |id: &Id| d(id).kind == Kind::Compile;
    match node {
        PolyLang::Mul([a, b]) => {
            (is_var(a) && cipher(b)) || (is_var(b) && cipher(a)) || (konst(b) && d(a).chain) || (konst(a) && d(b).chain)
        }
        PolyLang::Square(a) => is_var(a) || d(a).chain,
        PolyLang::Add([a, b]) | PolyLang::Sub([a, b]) => d(a).chain || d(b).chain,
        PolyLang::Neg(a) => d(a).chain,
        _ => false,
    }
}

impl Analysis<PolyLang> for PolyAnalysis {
    type Data = ClassData;

    fn make(egraph: &mut EG, enode: &PolyLang, _id: Id) -> ClassData {
        let spec_cost = match enode {
            PolyLang::Cheb([s, _]) => spec_in(egraph, *s).map(|s| egraph.analysis.plan_cost(&s)),
            _ => None,
        };
        let eg: &EG = egraph;
        let cost = node_cost(
            enode,
            |id| operand(eg, id),
            |l| eg.analysis.leaves.get(&l).copied().unwrap_or(Some(0)),
            |_| spec_cost,
        );
        let num = fold(eg, enode);
        let poly = if num.is_some() { None } else { make_poly(eg, enode) };
        let shape = make_shape(eg, enode);
        let chain = poly.as_ref().is_some_and(|p| make_chain(eg, enode, eg.find(p.var)));
        ClassData { kind: cost.kind, num, depth: cost.depth, poly, planned: false, shape, chain }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let mut changed_a = false;
        let mut changed_b = false;
        if b.kind > a.kind {
            a.kind = b.kind;
            changed_a = true;
        } else if a.kind > b.kind {
            changed_b = true;
        }
        match (a.num, b.num) {
            (None, Some(c)) => {
                a.num = Some(c);
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            _ => {}
        }
        if b.depth < a.depth {
            a.depth = b.depth;
            changed_a = true;
        } else if a.depth < b.depth {
            changed_b = true;
        }
        match (&a.poly, b.poly) {
            (None, Some(p)) => {
                a.poly = Some(p);
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            _ => {}
        }
        match (&a.shape, b.shape) {
            (None, Some(s)) => {
                a.shape = Some(s);
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            _ => {}
        }
        if b.chain && !a.chain {
            a.chain = true;
            changed_a = true;
        } else if a.chain && !b.chain {
            changed_b = true;
        }
        if b.planned && !a.planned {
            a.planned = true;
            changed_a = true;
        } else if a.planned && !b.planned {
            changed_b = true;
        }
        DidMerge(changed_a, changed_b)
    }

    fn modify(egraph: &mut EG, id: Id) {
        // Constant folding ("fold-const"): a class with a known scalar value gets its `Num` node.
        if let Some(c) = egraph[id].data.num {
            let n = egraph.add(PolyLang::Num(Scalar::new(c)));
            egraph.union(id, n);
        }
    }
}

/// The tuple cost minimized by extraction, compared lexicographically: depth first, then ct×ct
/// multiplications, then ops, then non-square products, then term size (which makes every cost
/// strictly monotone, so extraction never picks a cycle).
///
/// Depth is a max over operands, exact on DAGs. The other fields are *tree* sums: a subterm shared
/// by two parents is counted twice, so between two forms of equal depth the extractor may misjudge
/// which has fewer multiplications when one relies on sharing (Paterson–Stockmeyer powers). The
/// report recounts multiplications on the rebuilt DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost {
    pub depth: u32,
    pub ct_mults: usize,
    pub ops: usize,
    pub general: usize,
    pub size: usize,
}

/// Extraction cost function over an e-graph built with [`PolyAnalysis`].
pub struct DepthCost<'a> {
    pub egraph: &'a EG,
}

impl egg::CostFunction<PolyLang> for DepthCost<'_> {
    type Cost = Cost;

    fn cost<C>(&mut self, enode: &PolyLang, mut costs: C) -> Cost
    where
        C: FnMut(Id) -> Cost,
    {
        let child: Vec<(Id, Cost)> = enode.children().iter().map(|&id| (id, costs(id))).collect();
        let find = |id: Id| child.iter().find(|(c, _)| *c == id).map(|(_, c)| *c);
        let eg = self.egraph;
        let nc = node_cost(
            enode,
            |id| {
                let d = &eg[id].data;
                Operand { kind: d.kind, num: d.num, depth: find(id).map_or(d.depth, |c| c.depth) }
            },
            |l| eg.analysis.leaves.get(&l).copied().unwrap_or(Some(0)),
            |id| spec_in(eg, id).map(|s| eg.analysis.plan_costs.get(&s).copied().unwrap_or_else(|| spec_cost(&s))),
        );
        let mut total = Cost { depth: nc.depth, ct_mults: nc.ct_mults, ops: nc.ops, general: nc.general, size: 1 };
        for (_, c) in &child {
            total.ct_mults += c.ct_mults;
            total.ops += c.ops;
            total.general += c.general;
            total.size += c.size;
        }
        total
    }
}
