//! E-graph depth minimization of the polynomial stage ([egg](https://egraphs-good.github.io/)).
//!
//! **Requires** a verified graph (normally the poly stage, but any graph works: only candidate nodes
//! are touched). **Guarantees** a new graph (the input is not mutated) that verifies, computes the same
//! function up to floating-point reassociation, keeps graph inputs/outputs and their names, and whose
//! multiplicative depth per region is no larger than before under the cost model of [`model`] —
//! extraction picks, per region root, the form minimizing (depth, ct×ct multiplications, ops).
//! File tests: `passes/tests/egraph_*.rs`.
//!
//! Steps:
//! 1. [`region`]: maximal convex regions of elementwise `add/sub/neg/mul/chebyshev` (and
//!    `matmul`/`gemm` with constant weights, `reduce_sum`/`reduce_mean` as `rsum`·1/n) on encrypted
//!    values; values used outside a region (or graph outputs) are its roots.
//! 2. Each region becomes an e-graph over [`lang::PolyLang`]: constants of one element whose
//!    broadcasting does not change the other operand's shape become scalars `Num`, other constants
//!    `Tensor` references, values from outside opaque `Leaf`s carrying their depth in the graph.
//! 3. An egg `Runner` applies [`rules::RULES`], bounded by [`EgraphOptions`]: node and iteration limits
//!    per region and one time budget shared by all regions (later regions get what is left; a region
//!    reached with no time left is extracted as built). Every stop reason is in the report.
//! 4. Extraction with [`model::DepthCost`]; the graph is rebuilt unit by unit (regions and other
//!    nodes) in a topological order, compile-time subterms (e.g. `scale_const c W`) are evaluated into
//!    new constants, and a root whose rewritten shape lost broadcast dimensions gets an `expand`. A
//!    root rewritten to a value that already exists (`y = x·1`) and that is a graph output gets a
//!    no-op `reshape` to carry its name.
//!
//! Depth model and sharing: depth is a max over operands, so the tree cost used by extraction is exact
//! for depth even on DAGs; multiplication and op counts are tree sums (a shared subterm is counted per
//! use), which only affects tie-breaking between forms of equal depth. Guard: a region whose
//! extracted form is not better than the region as written *on the DAG* (shared e-classes counted
//! once) is emitted as written ([`RegionReport::kept_original`]). Design notes: `docs/egraph.md`.
//!
//! Polynomials: a chain of `mul`/`add` in one variable (e.g. Horner's form, depth `d`) is recognized
//! by the analysis and re-evaluated by a depth-budgeted baby-step giant-step plan ([`power`]) at depth
//! `ceil(log2(d + 1))`, the minimum for generic coefficients. For comparison, OpenFHE's
//! `EvalChebyshevSeries` (Paterson–Stockmeyer) consumes about one level more than this bound for most
//! degrees, because its scalar multiplications are not folded into the giant-step products; the
//! approx library's Chebyshev plans and these power-basis plans fold them. A `chebyshev` node is
//! priced by its own plan ([`crate::approx::EvalPlan::chebyshev`]), so extraction sees its true depth
//! without expanding the plan into the e-graph; the Chebyshev rules fold neighbouring scalar and
//! constant affine maps into the series for free.

pub mod lang;
pub mod model;
pub mod power;
pub mod region;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cranelift_entity::SecondaryMap;
use egg::{EGraph, Extractor, Id, Language, Runner, StopReason};
use polyhe_ir::{interp, verify, Const, DType, Graph, IrError, Node, Op, Tensor, Value, ValueDef};
use serde::Serialize;

use lang::{AxesSpec, ChebSpec, ConstRef, LeafRef, PolyLang, Scalar};
use model::{DepthCost, Kind, PolyAnalysis};

pub use rules::rule_names;

/// The rule table (family, name, lhs, rhs, condition, why), in table order; see [`rules::RULES`].
pub fn rules() -> &'static [rules::Rule] {
    rules::RULES
}

/// Bounds of the e-graph pass.
#[derive(Debug, Clone, PartialEq)]
pub struct EgraphOptions {
    /// E-node limit per region.
    pub node_limit: usize,
    /// Iteration limit per region.
    pub iter_limit: usize,
    /// Total time for all regions together.
    pub time_limit: Duration,
}

impl Default for EgraphOptions {
    /// The node and iteration limits are the bounds that act (the shipped models' regions take
    /// 20–100 ms in all); the time budget is only a safety net. It was 1 s, which a loaded machine
    /// exhausted (ViT: 3 regions skipped, depth 73 instead of 72), so compiled programs depended on
    /// the machine's load.
    fn default() -> Self {
        EgraphOptions { node_limit: 10_000, iter_limit: 30, time_limit: Duration::from_secs(60) }
    }
}

/// Why a region's runner stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    Saturated,
    /// The iteration limit was reached.
    IterationLimit {
        limit: usize,
    },
    /// The e-graph grew past the node limit. egg checks limits between iterations, so `nodes` (the
    /// size when it stopped) can exceed `limit` by one iteration's growth.
    NodeLimit {
        limit: usize,
        nodes: usize,
    },
    /// The time left in the shared budget ran out after `seconds` in this region.
    TimeLimit {
        seconds: f64,
    },
    /// The shared time budget was exhausted before this region: extracted as built.
    BudgetExhausted,
    Other {
        reason: String,
    },
}

impl Stop {
    fn from_egg(r: &StopReason, node_limit: usize, iter_limit: usize) -> Stop {
        match r {
            StopReason::Saturated => Stop::Saturated,
            StopReason::IterationLimit(_) => Stop::IterationLimit { limit: iter_limit },
            StopReason::NodeLimit(n) => Stop::NodeLimit { limit: node_limit, nodes: *n },
            StopReason::TimeLimit(s) => Stop::TimeLimit { seconds: *s },
            StopReason::Other(s) => Stop::Other { reason: s.clone() },
        }
    }

    /// Whether a bound (not saturation) stopped the runner: the result may be less optimized.
    pub fn is_limit(&self) -> bool {
        !matches!(self, Stop::Saturated)
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Saturated => write!(f, "saturated"),
            Stop::IterationLimit { limit } => write!(f, "iteration limit ({limit})"),
            Stop::NodeLimit { limit, nodes } => write!(f, "node limit ({nodes} e-nodes > {limit})"),
            Stop::TimeLimit { seconds } => write!(f, "time limit ({seconds:.3} s)"),
            Stop::BudgetExhausted => write!(f, "time budget exhausted before this region"),
            Stop::Other { reason } => write!(f, "{reason}"),
        }
    }
}

/// One region's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionReport {
    /// Name of the region's first node.
    pub first_node: String,
    /// Graph nodes in the region.
    pub nodes: usize,
    /// Values of the region used outside it.
    pub roots: usize,
    pub stop: Stop,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    /// Deepest root, before and after (graph depth analysis).
    pub depth_before: u32,
    pub depth_after: u32,
    /// ct×ct multiplications among the region's nodes (a chebyshev counts its plan's), before/after.
    pub ct_mults_before: usize,
    pub ct_mults_after: usize,
    /// Graph nodes emitted for the region.
    pub nodes_after: usize,
    /// The extracted form was not better than the region as written on the DAG (sharing counted
    /// once), so the region was kept as written.
    pub kept_original: bool,
}

/// What the pass did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgraphReport {
    pub regions: Vec<RegionReport>,
    /// Whole-graph depth (deepest output) and ct×ct multiplication count, before and after.
    pub depth_before: u32,
    pub depth_after: u32,
    pub ct_mults_before: usize,
    pub ct_mults_after: usize,
    /// Regions whose runner was stopped by a bound rather than saturation.
    pub limited_regions: usize,
    pub elapsed_ms: f64,
}

impl EgraphReport {
    /// One line per region: where, why the runner stopped, depth and multiplications before → after.
    pub fn stop_lines(&self) -> Vec<String> {
        self.regions
            .iter()
            .map(|r| {
                format!(
                    "region at {} ({} nodes): {} after {} iterations, {} e-nodes; depth {} -> {}, ct×ct {} -> {}",
                    r.first_node,
                    r.nodes,
                    r.stop,
                    r.iterations,
                    r.egraph_nodes,
                    r.depth_before,
                    r.depth_after,
                    r.ct_mults_before,
                    r.ct_mults_after
                )
            })
            .collect()
    }
}

/// Errors of the e-graph pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgraphError {
    #[error("invalid e-graph options: {msg}")]
    InvalidOptions { msg: String },
    #[error("input graph does not verify: {0}")]
    InvalidGraph(#[source] IrError),
    #[error("rebuilding the region at {node}: {source}")]
    Rebuild {
        node: String,
        #[source]
        source: IrError,
    },
    /// A bug in this pass (the rebuilt graph is inconsistent).
    #[error("internal e-graph pass error: {msg}")]
    Internal { msg: String },
}

type EG = EGraph<PolyLang, PolyAnalysis>;

/// A region translated into an e-graph.
struct Built {
    egraph: EG,
    /// Old root value → its e-class.
    roots: Vec<(Value, Id)>,
    /// Old leaf values referenced by `Leaf` nodes.
    leaves: BTreeSet<Value>,
    /// Constants made while building (a `gemm`'s `alpha·op(B)`), referenced as `Tensor(c)` with
    /// `c = old constant count + index`.
    extra: Vec<Tensor>,
}

/// Whether the constant `c` (one element) can be a broadcast scalar in `node`: the node's result has
/// the shape of its other operand.
fn scalar_constant(g: &Graph, node: Node, c: Value) -> Option<f64> {
    let t = g.constant_of(c)?;
    if t.numel() != 1 || !t.dtype().is_float() {
        return None;
    }
    let d = &g.nodes[node];
    let out = g.ty(d.outputs[0]);
    let other = d.inputs.iter().copied().find(|&v| v != c);
    let same = match other {
        Some(o) => g.ty(o).shape == out.shape,
        None => false,
    };
    same.then(|| t.to_f64_vec()[0])
}

fn build_region(
    g: &Graph,
    nodes: &[Node],
    in_region: &SecondaryMap<Node, bool>,
    leaf_depth: &dyn Fn(Value) -> Option<u32>,
    uses_outside: &dyn Fn(Value) -> bool,
) -> Built {
    let mut egraph = EG::new(PolyAnalysis::default());
    let mut class: HashMap<Value, Id> = HashMap::new();
    let mut leaves = BTreeSet::new();
    let mut roots = Vec::new();
    let mut extra: Vec<Tensor> = Vec::new();
    let produced_inside = |v: Value| match g.values[v].def {
        ValueDef::Result(p, _) => in_region[p],
        ValueDef::Input(_) => false,
    };
    for &n in nodes {
        let d = &g.nodes[n];
        let mut operand = |eg: &mut EG, v: Value, scalar_ok: bool| -> Id {
            if produced_inside(v) {
                if let Some(&id) = class.get(&v) {
                    return id;
                }
            }
            if scalar_ok {
                if let Some(c) = scalar_constant(g, n, v) {
                    return eg.add(PolyLang::Num(Scalar::new(c)));
                }
            }
            if let (Some(_), ValueDef::Result(p, _)) = (g.constant_of(v), g.values[v].def) {
                if let Op::Constant(c) = g.nodes[p].op {
                    eg.analysis.const_shapes.insert(ConstRef(c.as_u32()), g.ty(v).shape.clone());
                    return eg.add(PolyLang::Tensor(ConstRef(c.as_u32())));
                }
            }
            let l = LeafRef(v.as_u32());
            eg.analysis.leaves.insert(l, leaf_depth(v));
            eg.analysis.leaf_shapes.insert(l, g.ty(v).shape.clone());
            leaves.insert(v);
            eg.add(PolyLang::Leaf(l))
        };
        let id = match &d.op {
            Op::Add | Op::Sub | Op::Mul => {
                let a = operand(&mut egraph, d.inputs[0], true);
                let b = operand(&mut egraph, d.inputs[1], true);
                // Scalars go right (the rules' convention); add and mul commute.
                let (a, b) =
                    if matches!(d.op, Op::Sub) || egraph[a].data.kind != Kind::Compile { (a, b) } else { (b, a) };
                egraph.add(match d.op {
                    Op::Add => PolyLang::Add([a, b]),
                    Op::Sub => PolyLang::Sub([a, b]),
                    _ => PolyLang::Mul([a, b]),
                })
            }
            Op::Neg => {
                let a = operand(&mut egraph, d.inputs[0], false);
                egraph.add(PolyLang::Neg(a))
            }
            Op::Chebyshev { lo, hi, coeffs } => {
                let a = operand(&mut egraph, d.inputs[0], false);
                let s = egraph.add(PolyLang::Spec(ChebSpec::new(*lo, *hi, coeffs)));
                egraph.add(PolyLang::Cheb([s, a]))
            }
            Op::ReduceSum { axes, keepdims } | Op::ReduceMean { axes, keepdims } => {
                let a = operand(&mut egraph, d.inputs[0], false);
                let spec = egraph.add(PolyLang::Axes(AxesSpec { axes: axes.clone(), keepdims: *keepdims }));
                let sum = egraph.add(PolyLang::RSum([spec, a]));
                if matches!(d.op, Op::ReduceMean { .. }) {
                    let shape = &g.ty(d.inputs[0]).shape;
                    let n: usize = axes.iter().filter_map(|&ax| shape.get(ax)).product();
                    let inv = egraph.add(PolyLang::Num(Scalar::new(1.0 / n.max(1) as f64)));
                    egraph.add(PolyLang::Mul([sum, inv]))
                } else {
                    sum
                }
            }
            Op::MatMul => {
                let a = operand(&mut egraph, d.inputs[0], false);
                let w = operand(&mut egraph, d.inputs[1], false);
                egraph.add(PolyLang::MatMulW([a, w]))
            }
            Op::Gemm { alpha, beta, trans_b, .. } => {
                // alpha·A·op(B) + beta·C = A @ (alpha·op(B)) + beta·C, the weights made once here.
                let a = operand(&mut egraph, d.inputs[0], false);
                let b = g.constant_of(d.inputs[1]).cloned().unwrap_or_else(|| unreachable!("candidate gemm"));
                let (k, n) = if *trans_b { (b.shape()[1], b.shape()[0]) } else { (b.shape()[0], b.shape()[1]) };
                let bv = b.to_f64_vec();
                let w: Vec<f64> = (0..k * n)
                    .map(|i| {
                        let (r, c) = (i / n, i % n);
                        alpha * if *trans_b { bv[c * k + r] } else { bv[r * n + c] }
                    })
                    .collect();
                let wt = Tensor::float(b.dtype(), vec![k, n], w).unwrap_or_else(|_| unreachable!("k·n elements"));
                let c = ConstRef((g.constants.len() + extra.len()) as u32);
                extra.push(wt);
                egraph.analysis.const_shapes.insert(c, vec![k, n]);
                let w = egraph.add(PolyLang::Tensor(c));
                let mut y = egraph.add(PolyLang::MatMulW([a, w]));
                if let Some(&cv) = d.inputs.get(2) {
                    let mut bias = operand(&mut egraph, cv, false);
                    if *beta != 1.0 {
                        let s = egraph.add(PolyLang::Num(Scalar::new(*beta)));
                        bias = egraph.add(PolyLang::Mul([bias, s]));
                    }
                    y = egraph.add(PolyLang::Add([y, bias]));
                }
                y
            }
            _ => unreachable!("region nodes are candidates (region::is_candidate)"),
        };
        let out = d.outputs[0];
        class.insert(out, id);
        if uses_outside(out) {
            roots.push((out, id));
        }
    }
    egraph.rebuild();
    Built { egraph, roots, leaves, extra }
}

/// Emits extracted e-classes into the new graph.
struct Emitter<'a> {
    old: &'a Graph,
    extra: &'a [Tensor],
    egraph: &'a EG,
    extractor: Extractor<'a, DepthCost<'a>, PolyLang, PolyAnalysis>,
    memo: HashMap<Id, Value>,
    dtype: DType,
    name: String,
    emitted: usize,
}

impl Emitter<'_> {
    fn add(&mut self, new: &mut Graph, op: Op, inputs: Vec<Value>) -> Result<Value, IrError> {
        self.emitted += 1;
        let n = new.add_node(op, inputs, format!("{}.eg{}", self.name, self.emitted))?;
        Ok(new.result(n))
    }

    /// The compile-time tensor of a `Compile` class.
    fn constant(&self, id: Id) -> Result<Tensor, IrError> {
        let node = self.extractor.find_best_node(id).clone();
        let scalar = |c: f64| Tensor::float(self.dtype, vec![], vec![c]);
        if let Some(c) = self.egraph[id].data.num {
            return scalar(c);
        }
        let bin = |op: Op, a: Tensor, b: Tensor| -> Result<Tensor, IrError> {
            interp::eval_op(&op, &[&a, &b], self.old)?.pop().ok_or_else(|| IrError::Verifier("no result".into()))
        };
        match node {
            PolyLang::Num(c) => scalar(c.get()),
            PolyLang::Tensor(c) => {
                let i = c.0 as usize;
                match i.checked_sub(self.old.constants.len()) {
                    None => Ok(self.old.constants[Const::from_u32(c.0)].clone()),
                    Some(j) => self.extra.get(j).cloned().ok_or_else(|| IrError::Verifier(format!("no constant {c}"))),
                }
            }
            PolyLang::Add([a, b]) => bin(Op::Add, self.constant(a)?, self.constant(b)?),
            PolyLang::Sub([a, b]) => bin(Op::Sub, self.constant(a)?, self.constant(b)?),
            PolyLang::Mul([a, b]) | PolyLang::ScaleConst([a, b]) => bin(Op::Mul, self.constant(a)?, self.constant(b)?),
            PolyLang::Square(a) => {
                let t = self.constant(a)?;
                bin(Op::Mul, t.clone(), t)
            }
            PolyLang::Neg(a) => {
                let t = self.constant(a)?;
                bin(Op::Mul, t, scalar(-1.0)?)
            }
            PolyLang::MatMulW([a, b]) => bin(Op::MatMul, self.constant(a)?, self.constant(b)?),
            PolyLang::ScaleRows([t, w]) => {
                // diag(t)·W: row k of W times t_k (the rule checked that t has W's row count).
                let (t, w) = (self.constant(t)?, self.constant(w)?);
                let (tv, mut wv) = (t.to_f64_vec(), w.to_f64_vec());
                let n = w.shape().get(1).copied().unwrap_or(0);
                if w.shape().len() != 2 || tv.len() != w.shape()[0] {
                    return Err(IrError::Verifier(format!("scale_rows of {} by {}", w.ty, t.ty)));
                }
                for (i, x) in wv.iter_mut().enumerate() {
                    *x *= tv[i / n.max(1)];
                }
                Tensor::float(w.dtype(), w.shape().to_vec(), wv)
            }
            other => Err(IrError::Verifier(format!("`{other}` is not a compile-time constant"))),
        }
    }

    fn emit(&mut self, new: &mut Graph, leaf: &HashMap<Value, Value>, id: Id) -> Result<Value, IrError> {
        let id = self.egraph.find(id);
        if let Some(&v) = self.memo.get(&id) {
            return Ok(v);
        }
        let v = if self.egraph[id].data.kind == Kind::Compile {
            let t = self.constant(id)?;
            self.emitted += 1;
            new.add_constant(t, format!("{}.eg{}", self.name, self.emitted))
        } else {
            let node = self.extractor.find_best_node(id).clone();
            match node {
                PolyLang::Leaf(l) => *leaf
                    .get(&Value::from_u32(l.0))
                    .ok_or_else(|| IrError::Verifier(format!("leaf v{} not mapped", l.0)))?,
                PolyLang::Add([a, b]) => {
                    let (a, b) = (self.emit(new, leaf, a)?, self.emit(new, leaf, b)?);
                    self.add(new, Op::Add, vec![a, b])?
                }
                PolyLang::Sub([a, b]) => {
                    let (a, b) = (self.emit(new, leaf, a)?, self.emit(new, leaf, b)?);
                    self.add(new, Op::Sub, vec![a, b])?
                }
                PolyLang::Mul([a, b]) | PolyLang::ScaleConst([a, b]) => {
                    let (a, b) = (self.emit(new, leaf, a)?, self.emit(new, leaf, b)?);
                    self.add(new, Op::Mul, vec![a, b])?
                }
                PolyLang::Square(a) => {
                    let a = self.emit(new, leaf, a)?;
                    self.add(new, Op::Mul, vec![a, a])?
                }
                PolyLang::Neg(a) => {
                    let a = self.emit(new, leaf, a)?;
                    self.add(new, Op::Neg, vec![a])?
                }
                PolyLang::MatMulW([a, w]) => {
                    let (a, w) = (self.emit(new, leaf, a)?, self.emit(new, leaf, w)?);
                    self.add(new, Op::MatMul, vec![a, w])?
                }
                PolyLang::RSum([s, x]) => {
                    let spec = self.egraph[s]
                        .nodes
                        .iter()
                        .find_map(|n| match n {
                            PolyLang::Axes(a) => Some(a.clone()),
                            _ => None,
                        })
                        .ok_or_else(|| IrError::Verifier("rsum without axes".into()))?;
                    let x = self.emit(new, leaf, x)?;
                    self.add(new, Op::ReduceSum { axes: spec.axes, keepdims: spec.keepdims }, vec![x])?
                }
                PolyLang::Cheb([s, x]) => {
                    let spec = model::spec_in(self.egraph, s)
                        .ok_or_else(|| IrError::Verifier("chebyshev without a spec".into()))?;
                    let x = self.emit(new, leaf, x)?;
                    let op = Op::Chebyshev { lo: spec.lo.get(), hi: spec.hi.get(), coeffs: spec.coeffs_f64() };
                    self.add(new, op, vec![x])?
                }
                other => return Err(IrError::Verifier(format!("cannot emit `{other}` as a value"))),
            }
        };
        self.memo.insert(id, v);
        Ok(v)
    }
}

/// Cost of the extracted terms of `roots` on the DAG: deepest root, then ct×ct multiplications and
/// ops counted once per e-class reachable through the best nodes.
fn dag_cost(egraph: &EG, roots: &[Id]) -> (u32, usize, usize) {
    let extractor = Extractor::new(egraph, DepthCost { egraph });
    let depth = roots.iter().map(|&r| extractor.find_best_cost(r).depth).max().unwrap_or(0);
    let (mut ct, mut ops) = (0, 0);
    let mut seen = BTreeSet::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) || egraph[id].data.kind != Kind::Cipher {
            continue;
        }
        let node = extractor.find_best_node(id);
        let own = model::node_cost(
            node,
            |c| {
                let d = &egraph[c].data;
                model::Operand { kind: d.kind, num: d.num, depth: 0 }
            },
            |l| egraph.analysis.leaves.get(&l).copied().unwrap_or(Some(0)),
            |c| model::spec_in(egraph, c).map(|s| model::spec_cost(&s)),
        );
        ct += own.ct_mults;
        ops += own.ops;
        stack.extend(node.children().iter().map(|&c| egraph.find(c)));
    }
    (depth, ct, ops)
}

/// A unit of emission: a region or a single other node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Region(usize),
    Node(Node),
}

fn ct_mults_of(g: &Graph, enc: &SecondaryMap<Value, bool>, nodes: &[Node]) -> usize {
    nodes
        .iter()
        .map(|&n| {
            let d = &g.nodes[n];
            match &d.op {
                Op::Mul if d.inputs.iter().all(|&v| enc[v]) => 1,
                Op::Chebyshev { lo, hi, coeffs } => model::spec_cost(&ChebSpec::new(*lo, *hi, coeffs)).ct_mults,
                _ => 0,
            }
        })
        .sum()
}

/// Encryption and depth of the values of a graph under construction, updated incrementally with
/// the rules of [`crate::depth`] (copied nodes keep the encryption the old graph gave them, which
/// covers embedding lookups on plaintext token ids).
#[derive(Default)]
struct Tracker {
    enc: SecondaryMap<Value, bool>,
    depth: SecondaryMap<Value, u32>,
    done: usize,
}

impl Tracker {
    fn update(&mut self, g: &Graph) {
        for d in g.nodes.values().skip(self.done) {
            let ins: Vec<Value> = d.inputs.iter().copied().filter(|&v| self.enc[v]).collect();
            if matches!(d.op, Op::Constant(_)) {
                continue;
            }
            let copied = d.outputs.iter().any(|&o| self.enc[o]);
            if ins.is_empty() && !copied {
                continue;
            }
            let base = ins.iter().map(|&v| self.depth[v]).max().unwrap_or(0);
            let integer = |v: Value| g.constant_of(v).is_some_and(|t| t.to_f64_vec().iter().all(|x| x.fract() == 0.0));
            let plus = match &d.op {
                Op::Mul if ins.len() >= 2 => 1,
                Op::Mul => u32::from(!d.inputs.iter().any(|&v| !self.enc[v] && integer(v))),
                Op::MatMul | Op::Gemm { .. } | Op::Conv { .. } => 1,
                Op::Chebyshev { .. } => d.op.poly_depth(),
                Op::ReduceMean { .. } => {
                    let (i, o) = (g.ty(d.inputs[0]).numel(), g.ty(d.outputs[0]).numel());
                    u32::from(i != o)
                }
                Op::Div => 1,
                _ => 0,
            };
            for &o in &d.outputs {
                self.enc[o] = true;
                self.depth[o] = base + plus;
            }
        }
        self.done = g.nodes.len();
    }
}

/// Runs the pass (module doc).
pub fn optimize(g: &Graph, opts: &EgraphOptions) -> Result<(Graph, EgraphReport), EgraphError> {
    let start = Instant::now();
    if opts.node_limit == 0 || opts.iter_limit == 0 {
        return Err(EgraphError::InvalidOptions {
            msg: format!("node_limit ({}) and iter_limit ({}) must be positive", opts.node_limit, opts.iter_limit),
        });
    }
    verify::verify(g).map_err(EgraphError::InvalidGraph)?;
    let enc = crate::to_poly::encrypted_values(g);
    let depth_before = crate::depth::analyze_depth(g);
    let regions = region::find_regions(g, &enc);

    let mut region_of: SecondaryMap<Node, Option<usize>> = SecondaryMap::with_default(None);
    for (i, r) in regions.iter().enumerate() {
        for &n in &r.nodes {
            region_of[n] = Some(i);
        }
    }
    let unit_of = |n: Node| region_of[n].map_or(Unit::Node(n), Unit::Region);
    let producer = |v: Value| match g.values[v].def {
        ValueDef::Result(p, _) => Some(p),
        ValueDef::Input(_) => None,
    };
    let mut is_output: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &g.outputs {
        is_output[v] = true;
    }
    let mut users: SecondaryMap<Value, Vec<Node>> = SecondaryMap::new();
    for (n, d) in g.nodes.iter() {
        for &v in &d.inputs {
            users[v].push(n);
        }
    }

    // Units in a topological order (Kahn, smallest first node first). Constants are emitted on demand.
    let mut units: BTreeMap<Unit, Node> = BTreeMap::new();
    for (n, d) in g.nodes.iter() {
        if matches!(d.op, Op::Constant(_)) {
            continue;
        }
        units.entry(unit_of(n)).or_insert(n);
    }
    let mut deps: BTreeMap<Unit, BTreeSet<Unit>> = units.keys().map(|&u| (u, BTreeSet::new())).collect();
    let mut rdeps: BTreeMap<Unit, BTreeSet<Unit>> = BTreeMap::new();
    for (n, d) in g.nodes.iter() {
        if matches!(d.op, Op::Constant(_)) {
            continue;
        }
        let u = unit_of(n);
        for &v in &d.inputs {
            if let Some(p) = producer(v) {
                if matches!(g.nodes[p].op, Op::Constant(_)) {
                    continue;
                }
                let pu = unit_of(p);
                if pu != u {
                    deps.entry(u).or_default().insert(pu);
                    rdeps.entry(pu).or_default().insert(u);
                }
            }
        }
    }
    let mut ready: BTreeSet<(Node, Unit)> =
        deps.iter().filter(|(_, d)| d.is_empty()).map(|(&u, _)| (units[&u], u)).collect();
    let mut order = Vec::with_capacity(units.len());
    while let Some(first) = ready.pop_first() {
        let u = first.1;
        order.push(u);
        for &r in rdeps.get(&u).into_iter().flatten() {
            if let Some(d) = deps.get_mut(&r) {
                d.remove(&u);
                if d.is_empty() {
                    ready.insert((units[&r], r));
                }
            }
        }
    }
    if order.len() != units.len() {
        return Err(EgraphError::Internal { msg: "regions are not convex (unit graph has a cycle)".into() });
    }

    // Rebuild. Encryption and depth of the new graph's values are kept up to date unit by unit.
    let mut track = Tracker::default();
    let mut new = Graph::new(g.name.clone());
    let mut map: HashMap<Value, Value> = HashMap::new();
    for &v in &g.inputs {
        let data = &g.values[v];
        let nv = new.add_input(data.name.clone().unwrap_or_else(|| v.to_string()), data.ty.clone());
        if data.name.is_none() {
            new.values[nv].name = None;
        }
        map.insert(v, nv);
        track.enc[nv] = enc[v];
    }
    let mut const_map: HashMap<Value, Value> = HashMap::new();
    let copy_const = |new: &mut Graph, const_map: &mut HashMap<Value, Value>, v: Value| -> Option<Value> {
        if let Some(&nv) = const_map.get(&v) {
            return Some(nv);
        }
        let p = producer(v)?;
        let Op::Constant(c) = g.nodes[p].op else { return None };
        let nv = new.add_constant(g.constants[c].clone(), g.nodes[p].name.clone());
        if let Some(name) = &g.values[v].name {
            new.set_name(nv, name.clone());
        }
        const_map.insert(v, nv);
        Some(nv)
    };

    let deadline = start + opts.time_limit;
    let rewrites = rules::rewrites();
    let mut reports = Vec::with_capacity(regions.len());

    for u in order {
        match u {
            Unit::Node(n) => {
                let d = &g.nodes[n];
                let mut inputs = Vec::with_capacity(d.inputs.len());
                for &v in &d.inputs {
                    let nv = match map.get(&v) {
                        Some(&nv) => nv,
                        None => copy_const(&mut new, &mut const_map, v).ok_or_else(|| EgraphError::Internal {
                            msg: format!("value {v} used by {} before it is emitted", d.name),
                        })?,
                    };
                    inputs.push(nv);
                }
                let types = d.outputs.iter().map(|&o| g.ty(o).clone()).collect();
                let nn = new.add_node_typed(d.op.clone(), inputs, types, d.name.clone());
                for (i, &o) in d.outputs.iter().enumerate() {
                    let nv = new.nodes[nn].outputs[i];
                    if let Some(name) = &g.values[o].name {
                        new.set_name(nv, name.clone());
                    }
                    map.insert(o, nv);
                    track.enc[nv] = enc[o];
                }
                track.update(&new);
            }
            Unit::Region(ri) => {
                let region = &regions[ri];
                let mut in_region: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
                for &n in &region.nodes {
                    in_region[n] = true;
                }
                let uses_outside = |v: Value| is_output[v] || users[v].iter().any(|&u| !in_region[u]);
                // Leaf depths on the graph built so far (upstream regions already optimized).
                let leaf_depth = |v: Value| -> Option<u32> {
                    let nv = *map.get(&v)?;
                    track.enc[nv].then(|| track.depth[nv])
                };
                let built = build_region(g, &region.nodes, &in_region, &leaf_depth, &uses_outside);
                let first = &g.nodes[region.nodes[0]];
                let dtype = g.ty(first.outputs[0]).dtype;
                let original = built.egraph.clone();
                let now = Instant::now();
                let (egraph, stop, iterations) = if now >= deadline {
                    (built.egraph, Stop::BudgetExhausted, 0)
                } else {
                    let runner = Runner::default()
                        .with_egraph(built.egraph)
                        .with_node_limit(opts.node_limit)
                        .with_iter_limit(opts.iter_limit)
                        .with_time_limit(deadline - now)
                        .run(&rewrites);
                    let stop = runner
                        .stop_reason
                        .as_ref()
                        .map_or(Stop::Saturated, |r| Stop::from_egg(r, opts.node_limit, opts.iter_limit));
                    (runner.egraph, stop, runner.iterations.len())
                };
                let (egraph_nodes, egraph_classes) = (egraph.total_number_of_nodes(), egraph.number_of_classes());
                // Extraction's tree cost can overrate forms that share less (module doc); on the DAG,
                // the region as written may be better: then keep it.
                let root_ids: Vec<Id> = built.roots.iter().map(|r| r.1).collect();
                let kept_original = dag_cost(&egraph, &root_ids) > dag_cost(&original, &root_ids);
                let egraph = if kept_original { original } else { egraph };
                // Leaves: every leaf the region references is mapped (emitted earlier) or a constant.
                let mut leaf_map = HashMap::new();
                for &v in &built.leaves {
                    let nv = match map.get(&v) {
                        Some(&nv) => nv,
                        None => copy_const(&mut new, &mut const_map, v).ok_or_else(|| EgraphError::Internal {
                            msg: format!("leaf {v} of region at {} is not emitted", first.name),
                        })?,
                    };
                    leaf_map.insert(v, nv);
                }
                let extractor = Extractor::new(&egraph, DepthCost { egraph: &egraph });
                let mut em = Emitter {
                    old: g,
                    extra: &built.extra,
                    egraph: &egraph,
                    extractor,
                    memo: HashMap::new(),
                    dtype,
                    name: first.name.clone(),
                    emitted: 0,
                };
                let nodes_before = new.nodes.len();
                let values_before = new.values.len();
                let mut claimed: BTreeSet<Value> = BTreeSet::new();
                for &(old_v, id) in &built.roots {
                    let rebuild_err = |source| EgraphError::Rebuild { node: first.name.clone(), source };
                    let mut nv = em.emit(&mut new, &leaf_map, id).map_err(rebuild_err)?;
                    let want = g.ty(old_v);
                    if new.ty(nv).shape != want.shape {
                        // Rewrites may drop a broadcast dimension that only a folded constant carried.
                        nv = em
                            .add(&mut new, Op::Expand { shape: want.shape.clone() }, vec![nv])
                            .map_err(rebuild_err)?;
                    }
                    if new.ty(nv) != want {
                        return Err(EgraphError::Internal {
                            msg: format!(
                                "region at {}: root {old_v} has type {} instead of {want}",
                                first.name,
                                new.ty(nv)
                            ),
                        });
                    }
                    // A root may have been rewritten to a value that exists already (`y = x·1` is `x`)
                    // or that another root also became. A graph output needs its own value (its
                    // name must not rename an input or another output): a no-op reshape carries it.
                    let shared = nv.as_u32() < values_before as u32 || claimed.contains(&nv);
                    if shared && is_output[old_v] {
                        nv = em
                            .add(&mut new, Op::Reshape { shape: want.shape.clone() }, vec![nv])
                            .map_err(rebuild_err)?;
                    }
                    if let (Some(name), false) = (&g.values[old_v].name, shared && !is_output[old_v]) {
                        new.set_name(nv, name.clone());
                    }
                    claimed.insert(nv);
                    map.insert(old_v, nv);
                }
                let emitted: Vec<Node> = new.nodes.keys().skip(nodes_before).collect();
                track.update(&new);
                reports.push(RegionReport {
                    first_node: first.name.clone(),
                    nodes: region.nodes.len(),
                    roots: built.roots.len(),
                    stop,
                    iterations,
                    egraph_nodes,
                    egraph_classes,
                    kept_original,
                    depth_before: built.roots.iter().map(|(v, _)| depth_before.value_depth(*v)).max().unwrap_or(0),
                    depth_after: built.roots.iter().map(|(v, _)| track.depth[map[v]]).max().unwrap_or(0),
                    ct_mults_before: ct_mults_of(g, &enc, &region.nodes),
                    ct_mults_after: ct_mults_of(&new, &track.enc, &emitted),
                    nodes_after: emitted.iter().filter(|&&n| !matches!(new.nodes[n].op, Op::Constant(_))).count(),
                });
            }
        }
    }
    for &v in &g.outputs {
        let nv = match map.get(&v) {
            Some(&nv) => nv,
            None => copy_const(&mut new, &mut const_map, v)
                .ok_or_else(|| EgraphError::Internal { msg: format!("graph output {v} was not emitted") })?,
        };
        new.outputs.push(nv);
    }
    verify::verify(&new).map_err(|e| EgraphError::Internal { msg: format!("rebuilt graph does not verify: {e}") })?;
    let depth_after = crate::depth::analyze_depth(&new);
    let limited_regions = reports.iter().filter(|r| r.stop.is_limit()).count();
    let report = EgraphReport {
        regions: reports,
        depth_before: depth_before.total_depth,
        depth_after: depth_after.total_depth,
        ct_mults_before: depth_before.ct_mult_ops,
        ct_mults_after: depth_after.ct_mult_ops,
        limited_regions,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    Ok((new, report))
}

#[doc(hidden)]
/// Test helper: the e-graph of an expression after running `rules` (or all rules), for rule tests.
/// Leaves are `v{i}` with the given depths; every leaf has shape `[1]`, constants `c{i}` have the
/// given shapes (default `[1, 1]`), so `matmul_w` is a 1×1 product.
pub fn run_rules(
    expr: &egg::RecExpr<PolyLang>,
    leaves: &[(u32, Option<u32>)],
    const_shapes: &[(u32, Vec<usize>)],
    names: Option<&[&str]>,
    iter_limit: usize,
) -> (EG, Id, Stop) {
    let mut analysis = PolyAnalysis::default();
    for &(l, d) in leaves {
        analysis.leaves.insert(LeafRef(l), d);
        analysis.leaf_shapes.insert(LeafRef(l), vec![1]);
    }
    for i in 0..8 {
        analysis.const_shapes.insert(ConstRef(i), vec![1, 1]);
    }
    for (c, s) in const_shapes {
        analysis.const_shapes.insert(ConstRef(*c), s.clone());
    }
    let rewrites: Vec<_> =
        rules::RULES.iter().filter(|r| names.is_none_or(|ns| ns.contains(&r.name))).map(rules::build).collect();
    let runner = Runner::default()
        .with_egraph(EG::new(analysis))
        .with_expr(expr)
        .with_node_limit(10_000)
        .with_iter_limit(iter_limit)
        .with_time_limit(Duration::from_secs(5))
        .run(&rewrites);
    let root = runner.egraph.find(runner.roots[0]);
    let stop = runner.stop_reason.as_ref().map_or(Stop::Saturated, |r| Stop::from_egg(r, 10_000, iter_limit));
    (runner.egraph, root, stop)
}

#[doc(hidden)]
/// Test helper: the best term of a class and its cost.
pub fn extract(egraph: &EG, id: Id) -> (model::Cost, egg::RecExpr<PolyLang>) {
    Extractor::new(egraph, DepthCost { egraph }).find_best(id)
}
