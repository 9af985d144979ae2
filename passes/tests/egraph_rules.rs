//! Rule tests: every rule of the table fires on a concrete instantiation, and every rule is sound —
//! after running it, every e-node of every e-class evaluates (on random points) to its class's value
//! (soundness by execution, as in cranelift's e-graph fuzzing).

use std::collections::HashMap;

use egg::{AstSize, EGraph, Extractor, Id, Language, RecExpr};
use polyhe_passes::egraph::lang::PolyLang;
use polyhe_passes::egraph::model::{spec_in, PolyAnalysis};
use polyhe_passes::egraph::rules::{rewrite_spec, Custom, RULES};
use polyhe_passes::egraph::{extract, rule_names, run_rules};

const S: &str = "cheb<-2.0,3.0;0.5,-1.25,0.75,0.3>";

/// A concrete left side per rule, and leaf depths (leaf index, depth) that make its condition hold.
fn instance(name: &str) -> (String, Vec<(u32, Option<u32>)>) {
    let shallow = vec![(0, Some(0)), (1, Some(0)), (2, Some(0))];
    let e = match name {
        "fold-const" => "(add 1.5 (mul 2.0 0.25))".to_string(),
        "const-right-mul" => "(mul 0.75 v0)".into(),
        "const-right-add" => "(add 0.75 v0)".into(),
        "sub-const" => "(sub v0 0.75)".into(),
        "mul-neg-one" => "(mul v0 -1.0)".into(),
        "neg-neg" => "(neg (neg v0))".into(),
        "neg-mul-const" => "(neg (mul v0 0.75))".into(),
        "mul-neg-const" => "(mul (neg v0) 0.75)".into(),
        "add-neg" => "(add v0 (neg v1))".into(),
        "sub-neg" => "(sub v0 (neg v1))".into(),
        "mul-one" => "(mul v0 1.0)".into(),
        "add-zero" => "(add v0 0.0)".into(),
        "sub-zero" => "(sub v0 0.0)".into(),
        "mul-self" => "(mul v0 v0)".into(),
        "mul-const-assoc" => "(mul (mul v0 0.75) -2.5)".into(),
        "add-const-assoc" => "(add (add v0 0.75) -2.5)".into(),
        "distribute-const" => "(mul (add v0 0.75) -2.5)".into(),
        "scale-scale" => "(matmul_w v0 (scale_const 0.5 (scale_const 3.0 c0)))".into(),
        "factor-right" => "(add (mul v0 v2) (mul v1 v2))".into(),
        "factor-left" => "(add (mul v2 v0) (mul v2 v1))".into(),
        "factor-sub-right" => "(sub (mul v0 v2) (mul v1 v2))".into(),
        "balance-rotate-right" => {
            return ("(mul (mul v0 v1) v2)".into(), vec![(0, Some(3)), (1, Some(0)), (2, Some(0))])
        }
        "balance-rotate-left" => {
            return ("(mul v0 (mul v1 v2))".into(), vec![(0, Some(0)), (1, Some(0)), (2, Some(3))])
        }
        "balance-swap" => return ("(mul (mul v0 v1) v2)".into(), vec![(0, Some(0)), (1, Some(3)), (2, Some(0))]),
        "fuse-scale-matmul-out" => "(mul (matmul_w v0 c0) 0.75)".into(),
        "fuse-scale-matmul-in" => "(matmul_w (mul v0 0.75) c0)".into(),
        "fuse-neg-matmul-out" => "(neg (matmul_w v0 c0))".into(),
        "fuse-neg-matmul-in" => "(matmul_w (neg v0) c0)".into(),
        "cheb-scale-in" => format!("(cheb {S} (mul v0 -0.75))"),
        "fuse-channel-scale-matmul-in" => "(matmul_w (mul v0 c1) c0)".into(),
        "fuse-channel-scale-matmul-out" => "(mul (matmul_w v0 c0) c1)".into(),
        "distribute-matmul-const" => "(matmul_w (add v0 c1) c0)".into(),
        "fuse-matmul-matmul" => "(matmul_w (matmul_w v0 c0) c2)".into(),
        "cheb-scale-shift-in" => format!("(cheb {S} (add (mul v0 -0.75) c0))"),
        "cheb-shift-in" => format!("(cheb {S} (add v0 0.75))"),
        "cheb-neg-in" => format!("(cheb {S} (neg v0))"),
        "cheb-scale-out" => format!("(mul (cheb {S} v0) -0.75)"),
        "cheb-shift-out" => format!("(add (cheb {S} v0) 0.75)"),
        "cheb-neg-out" => format!("(neg (cheb {S} v0))"),
        "poly-balanced" => {
            "(add (mul (add (mul (add (mul (add (mul (add (mul v0 0.3) -0.7) v0) 0.45) v0) 1.1) v0) -0.25) v0) 0.6)"
                .into()
        }
        "poly-horner" => "(add (add (mul (square v0) 0.3) (mul v0 -0.7)) 0.45)".into(),
        other => panic!("no instance for rule {other}: add one"),
    };
    (e, shallow)
}

/// Deterministic pseudo-random numbers (SplitMix64).
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
}

/// Scalar semantics of one e-node (a 1×1 `matmul_w` is a product), children given by `val`.
fn eval_node(
    eg: &EGraph<PolyLang, PolyAnalysis>,
    n: &PolyLang,
    val: &dyn Fn(Id) -> f64,
    env: &HashMap<String, f64>,
) -> f64 {
    match n {
        PolyLang::Num(c) => c.get(),
        PolyLang::Leaf(_) | PolyLang::Tensor(_) => env[&n.to_string()],
        PolyLang::Spec(_) | PolyLang::Axes(_) => f64::NAN,
        // Leaves have one element: a sum over them is the element.
        PolyLang::RSum([_, x]) => val(*x),
        PolyLang::Add([a, b]) => val(*a) + val(*b),
        PolyLang::Sub([a, b]) => val(*a) - val(*b),
        PolyLang::Mul([a, b])
        | PolyLang::ScaleConst([a, b])
        | PolyLang::ScaleRows([a, b])
        | PolyLang::MatMulW([a, b]) => val(*a) * val(*b),
        PolyLang::Neg(a) => -val(*a),
        PolyLang::Square(a) => val(*a) * val(*a),
        PolyLang::Cheb([s, x]) => {
            let spec = spec_in(eg, *s).expect("cheb has a spec");
            polyhe_ir::interp::chebyshev(spec.lo.get(), spec.hi.get(), &spec.coeffs_f64(), val(*x))
        }
    }
}

fn eval_expr(e: &RecExpr<PolyLang>, env: &HashMap<String, f64>) -> f64 {
    let mut v: Vec<f64> = Vec::new();
    for n in e.as_ref() {
        let x = match n {
            PolyLang::Num(c) => c.get(),
            PolyLang::Leaf(_) | PolyLang::Tensor(_) => env[&n.to_string()],
            PolyLang::Spec(_) | PolyLang::Axes(_) => f64::NAN,
            PolyLang::RSum([_, x]) => v[usize::from(*x)],
            PolyLang::Add([a, b]) => v[usize::from(*a)] + v[usize::from(*b)],
            PolyLang::Sub([a, b]) => v[usize::from(*a)] - v[usize::from(*b)],
            PolyLang::Mul([a, b])
            | PolyLang::ScaleConst([a, b])
            | PolyLang::ScaleRows([a, b])
            | PolyLang::MatMulW([a, b]) => v[usize::from(*a)] * v[usize::from(*b)],
            PolyLang::Neg(a) => -v[usize::from(*a)],
            PolyLang::Square(a) => v[usize::from(*a)] * v[usize::from(*a)],
            PolyLang::Cheb([s, x]) => {
                let PolyLang::Spec(spec) = &e[*s] else { panic!("cheb's first child is a spec") };
                polyhe_ir::interp::chebyshev(spec.lo.get(), spec.hi.get(), &spec.coeffs_f64(), v[usize::from(*x)])
            }
        };
        v.push(x);
    }
    *v.last().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Runs one rule on its instance; checks it fired and that every e-node of every class agrees with
/// its class on random points. Returns the root's best cost and term.
fn check_rule(name: &str) -> (polyhe_passes::egraph::model::Cost, RecExpr<PolyLang>) {
    let (src, leaves) = instance(name);
    let expr: RecExpr<PolyLang> = src.parse().unwrap_or_else(|e| panic!("{name}: {src}: {e}"));
    let names: Vec<&str> = if name == "fold-const" { vec![] } else { vec![name] };
    let (eg, root, _) = run_rules(&expr, &leaves, &[(1, vec![1])], Some(&names), 4);
    let before_nodes = expr.as_ref().len();
    assert!(
        eg[root].nodes.len() >= 2 || eg.total_number_of_nodes() > before_nodes,
        "{name} did not fire on {src}: root class {:?}",
        eg[root].nodes
    );
    // Acyclic representative per class (smallest term), used for children's values.
    let ext = Extractor::new(&eg, AstSize);
    let mut rng = Rng(0x5eed ^ name.len() as u64);
    for trial in 0..25 {
        let mut env = HashMap::new();
        for i in 0..3 {
            env.insert(format!("v{i}"), rng.range(-2.0, 2.0));
        }
        env.insert("c0".to_string(), rng.range(-2.0, 2.0));
        env.insert("c1".to_string(), rng.range(-2.0, 2.0));
        env.insert("c2".to_string(), rng.range(-2.0, 2.0));
        let want = eval_expr(&expr, &env);
        // Class values by the representative terms.
        let mut class_val: HashMap<Id, f64> = HashMap::new();
        for c in eg.classes() {
            let (_, best) = ext.find_best(c.id);
            class_val.insert(c.id, eval_expr(&best, &env));
        }
        assert!(close(class_val[&root], want), "{name} trial {trial}: root {} vs lhs {want}", class_val[&root]);
        for c in eg.classes() {
            if matches!(c.nodes[0], PolyLang::Spec(_) | PolyLang::Axes(_)) {
                continue;
            }
            for n in &c.nodes {
                let got = eval_node(&eg, n, &|id| class_val[&eg.find(id)], &env);
                assert!(
                    close(got, class_val[&c.id]),
                    "{name} unsound (trial {trial}): node {n} = {got}, class {} = {}",
                    c.id,
                    class_val[&c.id]
                );
            }
        }
    }
    extract(&eg, root)
}

#[test]
fn every_rule_has_an_instance_fires_and_is_sound() {
    for name in rule_names() {
        check_rule(name);
    }
}

#[test]
fn rule_names_are_unique_and_grouped_in_one_table() {
    let names = rule_names();
    let set: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(set.len(), names.len(), "duplicate rule names");
    // Families are contiguous in the table (one readable group each).
    let mut seen = Vec::new();
    for r in RULES {
        if seen.last() != Some(&r.family) {
            assert!(!seen.contains(&r.family), "family {} is split in the table", r.family);
            seen.push(r.family);
        }
        assert!(!r.why.is_empty(), "{} has no reason", r.name);
    }
}

/// Each rule's right side is no worse than its left side: the best cost after the rule is ≤ the
/// cost of the instance as written.
#[test]
fn every_rule_is_never_worse_than_its_left_side() {
    for name in rule_names() {
        let (src, leaves) = instance(name);
        let expr: RecExpr<PolyLang> = src.parse().unwrap();
        // Cost of the instance alone: run no rules.
        let (eg0, root0, _) = run_rules(&expr, &leaves, &[(1, vec![1])], Some(&[]), 1);
        let (before, _) = extract(&eg0, root0);
        let (after, best) = check_rule(name);
        assert!(after <= before, "{name}: {before:?} -> {after:?} ({best})");
    }
}

#[test]
fn scalar_after_matmul_is_fused_into_the_weights() {
    let (cost, best) = check_rule("fuse-scale-matmul-out");
    assert_eq!(cost.depth, 1, "{best}");
    assert!(best.to_string().contains("scale_const"), "{best}");
    let (cost, best) = check_rule("fuse-scale-matmul-in");
    assert_eq!(cost.depth, 1, "{best}");
}

#[test]
fn chebyshev_absorbs_affine_maps_for_free() {
    for name in [
        "cheb-scale-in",
        "cheb-scale-shift-in",
        "cheb-shift-in",
        "cheb-neg-in",
        "cheb-scale-out",
        "cheb-shift-out",
        "cheb-neg-out",
    ] {
        let (cost, best) = check_rule(name);
        // The series has degree 3: depth 2 alone; the scalar's level is gone.
        assert_eq!(cost.depth, 2, "{name}: {best}");
        let chebs = best.as_ref().iter().filter(|n| matches!(n, PolyLang::Cheb(_))).count();
        assert_eq!(chebs, 1, "{name}: {best}");
        if name != "cheb-scale-shift-in" {
            assert_eq!(best.as_ref().len(), 3, "{name}: only spec, leaf and cheb remain: {best}");
        }
    }
}

#[test]
fn chebyshev_rescaling_maps_the_interval_exactly() {
    use polyhe_passes::egraph::lang::ChebSpec;
    let s = ChebSpec::new(-2.0, 3.0, &[0.5, -1.25, 0.75, 0.3]);
    // p(c·x) for c < 0: interval [3/c, −2/c], odd coefficients negated.
    let r = rewrite_spec(Custom::ChebScaleIn, &s, -0.5).unwrap();
    assert_eq!((r.lo.get(), r.hi.get()), (-6.0, 4.0));
    assert_eq!(r.coeffs_f64(), vec![0.5, 1.25, 0.75, -0.3]);
    // Out-of-range behaviour is preserved: x ∈ new interval ⇔ c·x ∈ old interval.
    let r = rewrite_spec(Custom::ChebShiftIn, &s, 1.0).unwrap();
    assert_eq!((r.lo.get(), r.hi.get()), (-3.0, 2.0));
    // Scaling by 0 into the interval is refused (not a valid series).
    assert!(rewrite_spec(Custom::ChebScaleIn, &s, 0.0).is_none());
}

#[test]
fn balancing_reduces_depth_of_product_chains() {
    for name in ["balance-rotate-right", "balance-rotate-left", "balance-swap"] {
        let (cost, best) = check_rule(name);
        assert_eq!(cost.depth, 4, "{name}: deep factor at 3 plus one product: {best}");
    }
}

#[test]
fn factoring_saves_a_multiplication() {
    for name in ["factor-right", "factor-left", "factor-sub-right"] {
        let (cost, best) = check_rule(name);
        assert_eq!((cost.depth, cost.ct_mults), (1, 1), "{name}: {best}");
    }
}

#[test]
fn horner_chain_gets_the_balanced_plan() {
    let (cost, best) = check_rule("poly-balanced");
    // Degree 5: ceil(log2 6) = 3 instead of Horner's 5.
    assert_eq!(cost.depth, 3, "{best}");
}

#[test]
fn mul_self_becomes_square() {
    let (_, best) = check_rule("mul-self");
    assert_eq!(best.to_string(), "(square v0)");
}

#[test]
fn constant_folding_reaches_a_number() {
    let (_, best) = check_rule("fold-const");
    assert_eq!(best.to_string(), "2.0");
}

#[test]
fn balancing_does_not_fire_when_it_would_not_help() {
    // All factors at the same depth: (a·b)·c is already as shallow as a·(b·c).
    let expr: RecExpr<PolyLang> = "(mul (mul v0 v1) v2)".parse().unwrap();
    let leaves = [(0, Some(0)), (1, Some(0)), (2, Some(0))];
    let (eg, root, _) =
        run_rules(&expr, &leaves, &[], Some(&["balance-rotate-right", "balance-rotate-left", "balance-swap"]), 5);
    assert_eq!(eg[root].nodes.len(), 1, "{:?}", eg[root].nodes);
    let _ = eg[root].nodes[0].children();
}

#[test]
fn chebyshev_nodes_cost_their_plans_depth_and_products() {
    // Extraction prices a series by the approx library's depth-optimal plan: ceil(log2(d + 1)).
    for d in 2..=31usize {
        let coeffs: Vec<String> = (0..=d).map(|k| format!("{:?}", 0.37 / (k + 1) as f64)).collect();
        let src = format!("(cheb cheb<-3.0,5.0;{}> v0)", coeffs.join(","));
        let expr: RecExpr<PolyLang> = src.parse().unwrap();
        let (eg, root, _) = run_rules(&expr, &[(0, Some(2))], &[], Some(&[]), 1);
        let (cost, _) = extract(&eg, root);
        let spec = polyhe_passes::egraph::lang::ChebSpec::new(
            -3.0,
            5.0,
            &(0..=d).map(|k| 0.37 / (k + 1) as f64).collect::<Vec<_>>(),
        );
        let plan = polyhe_passes::egraph::model::spec_cost(&spec);
        assert_eq!(cost.depth, 2 + polyhe_passes::depth_for_degree(d), "degree {d}: input at depth 2");
        assert_eq!(cost.ct_mults, plan.ct_mults, "degree {d}");
    }
}
