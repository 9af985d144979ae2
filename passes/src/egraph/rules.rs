//! The rewrite rules, grouped by family in one table ([`RULES`]): name → lhs → rhs, the condition,
//! and why. Conventions: scalar constants are kept on the *right* of `mul`/`add` (the normalizing
//! rules move them there, the frontend and the graph builder put them there), so no rule needs
//! general commutativity; the only re-association is the depth-reducing balancing of ct×ct products,
//! which fires only when it lowers the class's best depth (a strictly decreasing bound, so it
//! terminates). Every right side is no worse than its left side under the cost model
//! ([`super::model`]); rules that only *enable* others (distributing a scalar over a constant
//! addend) are cost-neutral.
//!
//! Custom right sides (`{...}` in the table) compute new data: Chebyshev rescaling builds a new
//! series; the polynomial rules insert a whole evaluation plan ([`super::power`]) for a class that the
//! analysis knows to be a polynomial `p(x)` in one ciphertext class.

use egg::{Applier, Condition, EGraph, Id, Pattern, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};

use super::lang::{ChebSpec, PolyLang, Scalar};
use super::model::{node_cost, Kind, Operand, PolyAnalysis};
use super::power;
use crate::approx::{EvalPlan, PlanOp};

type EG = EGraph<PolyLang, PolyAnalysis>;

/// A condition on the matched variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Always,
    /// The listed variables are scalar constants.
    Num(&'static [&'static str]),
    /// The listed variables are scalar constants other than zero.
    NonZero(&'static [&'static str]),
    /// `c` is a compile-time constant and `x` is not (moves constants right).
    ConstLeft {
        c: &'static str,
        x: &'static str,
    },
    /// The listed variables are compile-time constants (scalars or tensors).
    Compile(&'static [&'static str]),
    /// `c` is a non-zero scalar and `k` a compile-time constant.
    ScaleShift {
        c: &'static str,
        k: &'static str,
    },
    /// `t` is a per-input-channel constant vector of `w` (2-D, `[K, N]`): shape `[1, .., 1, K]`, and
    /// `x` already has the shape of `x·t` (the product does not broadcast `x`).
    RowScale {
        x: &'static str,
        t: &'static str,
        w: &'static str,
    },
    /// `t` is a per-output-channel constant vector of `w` (2-D, `[K, N]`): shape `[1, .., 1, N]`, and
    /// the product with `x @ w` does not broadcast it.
    ColScale {
        x: &'static str,
        t: &'static str,
        w: &'static str,
    },
    /// `b` is a constant of rank ≥ 1 that does not broadcast `x`, `w` is 2-D.
    ThroughMatmul {
        x: &'static str,
        b: &'static str,
        w: &'static str,
    },
    /// `a` and `b` are compile-time 2-D matrices that multiply (`[K, M]`, `[M, N]`).
    Chain {
        a: &'static str,
        b: &'static str,
    },
    /// The listed variables are ciphertexts.
    Cipher(&'static [&'static str]),
    /// The listed variables are ciphertexts and the right side is strictly shallower than the class.
    CipherShallower(&'static [&'static str]),
}

/// How the right side is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rhs {
    Pattern(&'static str),
    Custom(Custom),
}

/// Right sides computed by code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Custom {
    /// `cheb(s, x·c)` → `cheb(s', x)` with the interval divided by `c`.
    ChebScaleIn,
    /// `cheb(s, x·c + k)` → `cheb(s', x + k/c)` with the interval divided by `c` (`k` any constant).
    ChebScaleShiftIn,
    /// `cheb(s, x + c)` → `cheb(s', x)` with the interval shifted by `−c`.
    ChebShiftIn,
    /// `cheb(s, −x)` → `cheb(s', x)` with the interval mirrored.
    ChebNegIn,
    /// `cheb(s, x)·c` → `cheb(c·s, x)`.
    ChebScaleOut,
    /// `cheb(s, x) + c` → `cheb(s + c, x)`.
    ChebShiftOut,
    /// `−cheb(s, x)` → `cheb(−s, x)`.
    ChebNegOut,
    /// A polynomial class gets the depth-optimal baby-step giant-step plan.
    PolyBalanced,
    /// A polynomial class gets Horner's form.
    PolyHorner,
}

/// One row of the rule table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub family: &'static str,
    pub name: &'static str,
    /// Pattern searched (`"*"` for the polynomial rules, which match classes by their analysis).
    pub lhs: &'static str,
    pub rhs: Rhs,
    pub cond: Cond,
    pub why: &'static str,
}

const fn pat(
    family: &'static str,
    name: &'static str,
    lhs: &'static str,
    rhs: &'static str,
    cond: Cond,
    why: &'static str,
) -> Rule {
    Rule { family, name, lhs, rhs: Rhs::Pattern(rhs), cond, why }
}

const fn custom(
    family: &'static str,
    name: &'static str,
    lhs: &'static str,
    rhs: Custom,
    cond: Cond,
    why: &'static str,
) -> Rule {
    Rule { family, name, lhs, rhs: Rhs::Custom(rhs), cond, why }
}

use Cond::*;

/// The rule table. `fold-const` (constant folding) is done by the analysis and listed for completeness.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // ---- normalization: constants to the right, subtraction of constants as addition ----
    pat("normalize", "const-right-mul", "(mul ?c ?x)", "(mul ?x ?c)", ConstLeft { c: "?c", x: "?x" },
        "one orientation for every constant pattern below, instead of unbounded commutativity"),
    pat("normalize", "const-right-add", "(add ?c ?x)", "(add ?x ?c)", ConstLeft { c: "?c", x: "?x" },
        "same, for additions"),
    pat("normalize", "sub-const", "(sub ?x ?c)", "(add ?x (neg ?c))", Compile(&["?c"]),
        "x − c = x + (−c); (neg c) folds at compile time, and the add-constant rules then apply"),
    pat("normalize", "mul-neg-one", "(mul ?x -1.0)", "(neg ?x)", Always,
        "a negation needs no scalar multiplication"),
    pat("normalize", "neg-neg", "(neg (neg ?x))", "?x", Always, "two ops fewer"),
    pat("normalize", "neg-mul-const", "(neg (mul ?x ?c))", "(mul ?x (neg ?c))", Num(&["?c"]),
        "the sign folds into the scalar"),
    pat("normalize", "mul-neg-const", "(mul (neg ?x) ?c)", "(mul ?x (neg ?c))", Num(&["?c"]),
        "the sign folds into the scalar"),
    pat("normalize", "add-neg", "(add ?x (neg ?y))", "(sub ?x ?y)", Always, "one op fewer"),
    pat("normalize", "sub-neg", "(sub ?x (neg ?y))", "(add ?x ?y)", Always, "one op fewer"),
    // ---- identities ----
    pat("identity", "mul-one", "(mul ?x 1.0)", "?x", Always, "no op"),
    pat("identity", "add-zero", "(add ?x 0.0)", "?x", Always, "no op"),
    pat("identity", "sub-zero", "(sub ?x 0.0)", "?x", Always, "no op"),
    pat("identity", "mul-self", "(mul ?x ?x)", "(square ?x)", Cipher(&["?x"]),
        "the backend squares with one fewer key-switch input; same depth"),
    // ---- scalar chains ----
    pat("scalar", "mul-const-assoc", "(mul (mul ?x ?a) ?b)", "(mul ?x (mul ?a ?b))", Compile(&["?a", "?b"]),
        "two plaintext multiplications (two levels) become one, the constant product folds at compile time"),
    pat("scalar", "add-const-assoc", "(add (add ?x ?a) ?b)", "(add ?x (add ?a ?b))", Compile(&["?a", "?b"]),
        "one addition fewer"),
    pat("scalar", "distribute-const", "(mul (add ?x ?k) ?c)", "(add (mul ?x ?c) (mul ?k ?c))", Compile(&["?k", "?c"]),
        "cost-neutral (k·c folds); exposes x·c to the weight and Chebyshev fusions"),
    pat("scalar", "scale-scale", "(scale_const ?a (scale_const ?b ?w))", "(scale_const (mul ?a ?b) ?w)", Num(&["?a", "?b"]),
        "one compile-time scaling instead of two"),
    // ---- distributivity (factoring only: fewer multiplications, same depth) ----
    pat("factor", "factor-right", "(add (mul ?x ?a) (mul ?y ?a))", "(mul (add ?x ?y) ?a)", Always,
        "a·x + a·y = a·(x + y): one multiplication fewer at the same depth"),
    pat("factor", "factor-left", "(add (mul ?a ?x) (mul ?a ?y))", "(mul ?a (add ?x ?y))", Always,
        "same, common factor on the left"),
    pat("factor", "factor-sub-right", "(sub (mul ?x ?a) (mul ?y ?a))", "(mul (sub ?x ?y) ?a)", Always,
        "same, for differences"),
    // ---- balancing ct×ct product chains (depth-reducing direction only) ----
    pat("balance", "balance-rotate-right", "(mul (mul ?a ?b) ?c)", "(mul ?a (mul ?b ?c))",
        CipherShallower(&["?a", "?b", "?c"]), "only when the right side is strictly shallower"),
    pat("balance", "balance-rotate-left", "(mul ?a (mul ?b ?c))", "(mul (mul ?a ?b) ?c)",
        CipherShallower(&["?a", "?b", "?c"]), "only when the right side is strictly shallower"),
    pat("balance", "balance-swap", "(mul (mul ?a ?b) ?c)", "(mul (mul ?a ?c) ?b)",
        CipherShallower(&["?a", "?b", "?c"]), "pairs the two shallow factors first; only when shallower"),
    // ---- fusing scalars into plaintext weights ----
    pat("weights", "fuse-scale-matmul-out", "(mul (matmul_w ?x ?w) ?c)", "(matmul_w ?x (scale_const ?c ?w))", Num(&["?c"]),
        "c·(x@W) = x@(cW): the scalar's level disappears into the weights"),
    pat("weights", "fuse-scale-matmul-in", "(matmul_w (mul ?x ?c) ?w)", "(matmul_w ?x (scale_const ?c ?w))", Num(&["?c"]),
        "(c·x)@W = x@(cW)"),
    pat("weights", "fuse-neg-matmul-out", "(neg (matmul_w ?x ?w))", "(matmul_w ?x (scale_const -1.0 ?w))", Always,
        "−(x@W) = x@(−W): one op fewer"),
    pat("weights", "fuse-neg-matmul-in", "(matmul_w (neg ?x) ?w)", "(matmul_w ?x (scale_const -1.0 ?w))", Always,
        "(−x)@W = x@(−W): one op fewer"),
    pat("weights", "fuse-channel-scale-matmul-in", "(matmul_w (mul ?x ?t) ?w)", "(matmul_w ?x (scale_rows ?t ?w))",
        RowScale { x: "?x", t: "?t", w: "?w" },
        "(x·t)@W = x@(diag(t)W) for a per-channel t (LayerNorm's gamma before a linear layer): one level fewer"),
    pat("weights", "fuse-channel-scale-matmul-out", "(mul (matmul_w ?x ?w) ?t)", "(matmul_w ?x (mul ?w ?t))",
        ColScale { x: "?x", t: "?t", w: "?w" },
        "(x@W)·t = x@(W·t) for a per-output-channel t: one level fewer"),
    pat("weights", "distribute-matmul-const", "(matmul_w (add ?x ?b) ?w)", "(add (matmul_w ?x ?w) (matmul_w ?b ?w))",
        ThroughMatmul { x: "?x", b: "?b", w: "?w" },
        "(x + b)@W = x@W + b@W with b@W folded (a bias before a linear layer): cost-neutral, exposes x·t to the fusion"),
    pat("weights", "fuse-matmul-matmul", "(matmul_w (matmul_w ?x ?a) ?b)", "(matmul_w ?x (matmul_w ?a ?b))",
        Chain { a: "?a", b: "?b" },
        "(x@A)@B = x@(AB) for two plaintext weight matrices with nothing between them: one level fewer"),
    // ---- Chebyshev series absorb affine maps for free ----
    custom("chebyshev", "cheb-scale-in", "(cheb ?s (mul ?x ?c))", Custom::ChebScaleIn, NonZero(&["?c"]),
        "p(c·x) on [lo,hi] is p on [lo/c, hi/c] (mirrored for c < 0): the scalar level disappears"),
    custom("chebyshev", "cheb-scale-shift-in", "(cheb ?s (add (mul ?x ?c) ?k))", Custom::ChebScaleShiftIn,
        ScaleShift { c: "?c", k: "?k" },
        "p(c·x + k) = p'(x + k/c) with p' = p on [lo/c, hi/c], k a constant tensor (per-head shifts): the level goes"),
    custom("chebyshev", "cheb-shift-in", "(cheb ?s (add ?x ?c))", Custom::ChebShiftIn, Num(&["?c"]),
        "p(x + c) on [lo,hi] is p on [lo − c, hi − c]"),
    custom("chebyshev", "cheb-neg-in", "(cheb ?s (neg ?x))", Custom::ChebNegIn, Always,
        "p(−x) on [lo,hi] is p on [−hi,−lo] with odd coefficients negated"),
    custom("chebyshev", "cheb-scale-out", "(mul (cheb ?s ?x) ?c)", Custom::ChebScaleOut, Num(&["?c"]),
        "c·p has coefficients c·c_k: the scalar level disappears"),
    custom("chebyshev", "cheb-shift-out", "(add (cheb ?s ?x) ?c)", Custom::ChebShiftOut, Num(&["?c"]),
        "p + c changes only c_0"),
    custom("chebyshev", "cheb-neg-out", "(neg (cheb ?s ?x))", Custom::ChebNegOut, Always,
        "−p negates the coefficients"),
    // ---- polynomials in the power basis (explicit mul/add chains) ----
    custom("polynomial", "poly-balanced", "*", Custom::PolyBalanced, Always,
        "a degree-d polynomial p(x) gets the baby-step giant-step plan at depth ceil(log2(d+1)); only if strictly shallower than the class"),
    custom("polynomial", "poly-horner", "*", Custom::PolyHorner, Always,
        "Horner's form (fewest products); only if no deeper than the class, i.e. for tiny degrees"),
];

/// The name of the analysis-driven constant folding, listed by [`rule_names`].
pub const FOLD_CONST: &str = "fold-const";

/// All rule names, table order, with `fold-const` first.
pub fn rule_names() -> Vec<&'static str> {
    std::iter::once(FOLD_CONST).chain(RULES.iter().map(|r| r.name)).collect()
}

fn var(s: &str) -> Var {
    s.parse().unwrap_or_else(|_| unreachable!("rule table variables are well-formed: {s}"))
}

fn num_of(egraph: &EG, subst: &Subst, v: &str) -> Option<f64> {
    egraph[subst[var(v)]].data.num
}

fn kind_of(egraph: &EG, subst: &Subst, v: &str) -> Kind {
    egraph[subst[var(v)]].data.kind
}

/// Depth of a pattern instantiated with `subst`, under the cost model (used by `CipherShallower`).
fn pattern_depth(egraph: &EG, ast: &PatternAst<PolyLang>, subst: &Subst) -> Option<u32> {
    let mut depth: Vec<Operand> = Vec::with_capacity(ast.as_ref().len());
    for node in ast.as_ref() {
        let o = match node {
            egg::ENodeOrVar::Var(v) => {
                let d = &egraph[*subst.get(*v)?].data;
                Operand { kind: d.kind, num: d.num, depth: d.depth }
            }
            egg::ENodeOrVar::ENode(n) => {
                // Children of a pattern node are indices into `depth`.
                let c = node_cost(
                    n,
                    |id| depth[usize::from(id)],
                    |l| egraph.analysis.leaves.get(&l).copied().unwrap_or(Some(0)),
                    |_| None,
                );
                Operand { kind: c.kind, num: None, depth: c.depth }
            }
        };
        depth.push(o);
    }
    depth.last().map(|o| o.depth)
}

struct Check {
    cond: Cond,
    rhs: Option<Pattern<PolyLang>>,
}

impl Condition<PolyLang, PolyAnalysis> for Check {
    fn check(&self, egraph: &mut EG, eclass: Id, subst: &Subst) -> bool {
        let eg: &EG = egraph;
        match self.cond {
            Always => true,
            Num(vs) => vs.iter().all(|v| num_of(eg, subst, v).is_some()),
            NonZero(vs) => vs.iter().all(|v| num_of(eg, subst, v).is_some_and(|c| c != 0.0)),
            ConstLeft { c, x } => kind_of(eg, subst, c) == Kind::Compile && kind_of(eg, subst, x) != Kind::Compile,
            Compile(vs) => vs.iter().all(|v| kind_of(eg, subst, v) == Kind::Compile),
            Chain { a, b } => {
                let shape = |v: &str| eg[subst[var(v)]].data.shape.clone();
                let compile = kind_of(eg, subst, a) == Kind::Compile && kind_of(eg, subst, b) == Kind::Compile;
                match (shape(a).as_deref(), shape(b).as_deref()) {
                    (Some(&[_, m]), Some(&[m2, _])) => compile && m == m2,
                    _ => false,
                }
            }
            RowScale { x, t, w } | ColScale { x, t, w } | ThroughMatmul { x, b: t, w } => {
                let shape = |v: &str| eg[subst[var(v)]].data.shape.clone();
                let (Some(xs), Some(ts), Some(ws)) = (shape(x), shape(t), shape(w)) else { return false };
                let compile = kind_of(eg, subst, t) == Kind::Compile && kind_of(eg, subst, w) == Kind::Compile;
                let [k, n] = ws[..] else { return false };
                let channel = |len: usize| ts.last() == Some(&len) && ts[..ts.len() - 1].iter().all(|&d| d == 1);
                let keeps = |base: &[usize]| polyhe_ir::infer::broadcast_shapes(base, &ts).as_deref() == Some(base);
                compile
                    && !ts.is_empty()
                    && match self.cond {
                        RowScale { .. } => channel(k) && xs.last() == Some(&k) && keeps(&xs),
                        ColScale { .. } => {
                            channel(n) && super::model::matmul_shape(&xs, &ws).is_some_and(|o| keeps(&o))
                        }
                        _ => xs.last() == Some(&k) && keeps(&xs),
                    }
            }
            ScaleShift { c, k } => {
                num_of(eg, subst, c).is_some_and(|c| c != 0.0) && kind_of(eg, subst, k) == Kind::Compile
            }
            Cipher(vs) => vs.iter().all(|v| kind_of(eg, subst, v) == Kind::Cipher),
            CipherShallower(vs) => {
                vs.iter().all(|v| kind_of(eg, subst, v) == Kind::Cipher)
                    && self
                        .rhs
                        .as_ref()
                        .and_then(|p| pattern_depth(eg, &p.ast, subst))
                        .is_some_and(|d| d < eg[eclass].data.depth)
            }
        }
    }
}

struct ChebApplier {
    kind: Custom,
}

fn odd_negated(c: &[f64]) -> Vec<f64> {
    c.iter().enumerate().map(|(k, &v)| if k % 2 == 1 { -v } else { v }).collect()
}

/// The rewritten series, or `None` when it would not be a valid one (non-finite values).
pub fn rewrite_spec(kind: Custom, s: &ChebSpec, c: f64) -> Option<ChebSpec> {
    let (lo, hi, coeffs) = (s.lo.get(), s.hi.get(), s.coeffs_f64());
    let out = match kind {
        Custom::ChebScaleIn | Custom::ChebScaleShiftIn if c > 0.0 => ChebSpec::new(lo / c, hi / c, &coeffs),
        Custom::ChebScaleIn | Custom::ChebScaleShiftIn if c < 0.0 => {
            ChebSpec::new(hi / c, lo / c, &odd_negated(&coeffs))
        }
        Custom::ChebShiftIn => ChebSpec::new(lo - c, hi - c, &coeffs),
        Custom::ChebNegIn => ChebSpec::new(-hi, -lo, &odd_negated(&coeffs)),
        Custom::ChebScaleOut => ChebSpec::new(lo, hi, &coeffs.iter().map(|v| v * c).collect::<Vec<_>>()),
        Custom::ChebShiftOut => {
            let mut k = coeffs;
            k[0] += c;
            ChebSpec::new(lo, hi, &k)
        }
        Custom::ChebNegOut => ChebSpec::new(lo, hi, &coeffs.iter().map(|v| -v).collect::<Vec<_>>()),
        _ => return None,
    };
    out.is_valid().then_some(out)
}

impl Applier<PolyLang, PolyAnalysis> for ChebApplier {
    fn apply_one(
        &self,
        egraph: &mut EG,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<PolyLang>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let Some(spec) = super::model::spec_in(egraph, subst[var("?s")]) else {
            return vec![];
        };
        let c = match self.kind {
            Custom::ChebNegIn | Custom::ChebNegOut => -1.0,
            _ => match num_of(egraph, subst, "?c") {
                Some(c) => c,
                None => return vec![],
            },
        };
        let Some(new) = rewrite_spec(self.kind, &spec, c) else {
            return vec![];
        };
        let s = egraph.add(PolyLang::Spec(new));
        let mut x = subst[var("?x")];
        if self.kind == Custom::ChebScaleShiftIn {
            // x + k/c: the shift is folded at compile time.
            let inv = egraph.add(PolyLang::Num(Scalar::new(1.0 / c)));
            let k = egraph.add(PolyLang::Mul([subst[var("?k")], inv]));
            x = egraph.add(PolyLang::Add([x, k]));
        }
        let node = egraph.add(PolyLang::Cheb([s, x]));
        if egraph.union(eclass, node) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// Matches classes the analysis knows as polynomials of degree ≥ 2, written as power chains
/// ([`super::model::ClassData::chain`]), not yet planned. Other polynomial-valued forms are left
/// alone: re-evaluating them in the power basis would compute `x^(2^k)` of a variable whose range
/// is unknown (Goldschmidt's row sum is ~n), which CKKS cannot hold, while the form as written keeps
/// its intermediates bounded.
struct PolySearcher;

impl Searcher<PolyLang, PolyAnalysis> for PolySearcher {
    fn search_eclass_with_limit(&self, egraph: &EG, eclass: Id, limit: usize) -> Option<SearchMatches<'_, PolyLang>> {
        let d = &egraph[eclass].data;
        let poly = d.poly.as_ref()?;
        (limit > 0 && !d.planned && d.chain && d.kind == Kind::Cipher && poly.degree() >= 2).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

/// Inserts `plan` applied to class `x` into the e-graph; returns the output class and the classes
/// created. Affine ops on the input become `add(mul(x, s), b)`.
pub fn insert_plan(egraph: &mut EG, x: Id, plan: &EvalPlan) -> (Id, Vec<Id>) {
    let mut regs: Vec<Id> = Vec::with_capacity(plan.ops().len());
    let num = |eg: &mut EG, c: f64| eg.add(PolyLang::Num(Scalar::new(c)));
    for op in plan.ops() {
        let id = match *op {
            PlanOp::Input => x,
            PlanOp::Const(c) => num(egraph, c),
            PlanOp::Affine { src, scale, shift } => {
                let s = num(egraph, scale);
                let m = egraph.add(PolyLang::Mul([regs[src.0], s]));
                let b = num(egraph, shift);
                egraph.add(PolyLang::Add([m, b]))
            }
            PlanOp::Mul(a, b) if a == b => egraph.add(PolyLang::Square(regs[a.0])),
            PlanOp::Mul(a, b) => egraph.add(PolyLang::Mul([regs[a.0], regs[b.0]])),
            PlanOp::MulConst(a, c) => {
                let k = num(egraph, c);
                egraph.add(PolyLang::Mul([regs[a.0], k]))
            }
            PlanOp::Add(a, b) => egraph.add(PolyLang::Add([regs[a.0], regs[b.0]])),
            PlanOp::Sub(a, b) => egraph.add(PolyLang::Sub([regs[a.0], regs[b.0]])),
            PlanOp::AddConst(a, c) => {
                let k = num(egraph, c);
                egraph.add(PolyLang::Add([regs[a.0], k]))
            }
        };
        regs.push(id);
    }
    let out = regs[plan.output().0];
    (out, regs)
}

struct PolyApplier {
    kind: Custom,
}

impl Applier<PolyLang, PolyAnalysis> for PolyApplier {
    fn apply_one(
        &self,
        egraph: &mut EG,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<PolyLang>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let data = egraph[eclass].data.clone();
        let Some(poly) = data.poly else { return vec![] };
        let x = egraph.find(poly.var);
        let plan = match self.kind {
            Custom::PolyHorner => power::horner(&poly.coeffs),
            _ => power::balanced(&poly.coeffs),
        };
        let xd = egraph[x].data.depth;
        // Never worse than the class. The balanced plan must be strictly shallower: at equal depth
        // the form as written usually shares more (e.g. Goldschmidt's squarings) than the tree cost
        // of extraction can see, so an equally deep plan would only add multiplications. Horner's
        // form has the fewest products of all, so equal depth suffices.
        let plan_depth = xd + plan.depth();
        let better = match self.kind {
            Custom::PolyHorner => plan_depth <= data.depth,
            _ => plan_depth < data.depth,
        };
        if !better {
            return vec![];
        }
        let (out, created) = insert_plan(egraph, x, &plan);
        // The plan's inner classes are sub-polynomials already evaluated well: do not re-plan them.
        for id in created.into_iter().chain([out, eclass]) {
            let id = egraph.find(id);
            if id != x {
                egraph[id].data.planned = true;
            }
        }
        if egraph.union(eclass, out) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// Marks classes planned after both polynomial rules looked at them (so a class gets both forms).
struct MarkPlanned<A>(A);

impl<A: Applier<PolyLang, PolyAnalysis>> Applier<PolyLang, PolyAnalysis> for MarkPlanned<A> {
    fn apply_one(
        &self,
        egraph: &mut EG,
        eclass: Id,
        subst: &Subst,
        ast: Option<&PatternAst<PolyLang>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let changed = self.0.apply_one(egraph, eclass, subst, ast, rule);
        let c = egraph.find(eclass);
        egraph[c].data.planned = true;
        changed
    }
}

/// Builds the egg rewrites from [`RULES`].
pub fn rewrites() -> Vec<Rewrite<PolyLang, PolyAnalysis>> {
    RULES.iter().map(build).collect()
}

/// Builds one rule's rewrite.
pub fn build(r: &Rule) -> Rewrite<PolyLang, PolyAnalysis> {
    let parse = |s: &str| -> Pattern<PolyLang> {
        s.parse().unwrap_or_else(|e| unreachable!("rule table pattern {s} is well-formed: {e}"))
    };
    let result = match r.rhs {
        Rhs::Pattern(rhs) => {
            let rhs_p = parse(rhs);
            let cond = Check { cond: r.cond, rhs: Some(rhs_p.clone()) };
            Rewrite::new(r.name, parse(r.lhs), egg::ConditionalApplier { condition: cond, applier: rhs_p })
        }
        Rhs::Custom(k @ (Custom::PolyBalanced | Custom::PolyHorner)) => {
            // Horner runs first in table order and must not hide the class from the balanced rule,
            // so only the balanced rule marks classes planned.
            if k == Custom::PolyBalanced {
                Rewrite::new(r.name, PolySearcher, MarkPlanned(PolyApplier { kind: k }))
            } else {
                Rewrite::new(r.name, PolySearcher, PolyApplier { kind: k })
            }
        }
        Rhs::Custom(k) => {
            let cond = Check { cond: r.cond, rhs: None };
            Rewrite::new(
                r.name,
                parse(r.lhs),
                egg::ConditionalApplier { condition: cond, applier: ChebApplier { kind: k } },
            )
        }
    };
    result.unwrap_or_else(|e| unreachable!("rule {} is well-formed: {e}", r.name))
}
