//! The e-graph language of the polynomial stage: elementwise arithmetic over tensors.
//!
//! | node | meaning |
//! |---|---|
//! | `Num(c)` | a scalar compile-time constant (broadcasts) |
//! | `Tensor(cN)` | the original graph's constant `cN` (a plaintext tensor) |
//! | `Leaf(vN)` | a value computed outside the region (input, matmul result, ...): opaque |
//! | `Spec(cheb<lo,hi;c0,..>)` | the parameters of a Chebyshev series (only as `cheb`'s first child) |
//! | `(add a b)`, `(sub a b)`, `(neg a)`, `(mul a b)` | numpy-broadcasting elementwise arithmetic |
//! | `(square a)` | `a·a` (a ct×ct product the backend may evaluate as a cheaper squaring) |
//! | `(cheb s x)` | `Σ c_k T_k(t)`, `t = (2x − lo − hi)/(hi − lo)`, as `Op::Chebyshev` |
//! | `(rsum a x)` | `reduce_sum` of `x` over the axes of `a` (an `Axes` leaf); `reduce_mean` is `rsum·(1/n)` |
//! | `(matmul_w x W)` | `x @ W` with `W` a compile-time constant (plaintext weights) |
//! | `(scale_const c W)` | `c·W` folded at compile time into a new constant |
//! | `(scale_rows t W)` | `diag(t)·W` for a 2-D `W` and a per-input-channel vector `t`, folded at compile time |
//!
//! Scalars are `f64` under a total order ([`Scalar`]): `-0.0` is canonicalized to `0.0` so that
//! hash-consing never keeps two zeros apart, and NaN is never created by the rules (they refuse
//! non-finite results).

use std::fmt;
use std::str::FromStr;

use egg::{define_language, Id};

/// An `f64` with a total order (`f64::total_cmp`), for use as e-node data.
#[derive(Debug, Clone, Copy)]
pub struct Scalar(f64);

impl Scalar {
    /// Wraps `x`; `-0.0` becomes `0.0`.
    pub fn new(x: f64) -> Self {
        Scalar(if x == 0.0 { 0.0 } else { x })
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Scalar {}
impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl std::hash::Hash for Scalar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}
impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` always prints a decimal point or exponent and round-trips.
        write!(f, "{:?}", self.0)
    }
}
impl FromStr for Scalar {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // Only plain decimal literals: `inf`/`nan` spellings are left to other variants.
        if !s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
            return Err(format!("not a scalar: {s}"));
        }
        s.parse::<f64>().map(Scalar::new).map_err(|e| e.to_string())
    }
}

/// Parameters of a Chebyshev series: interval and coefficients.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChebSpec {
    pub lo: Scalar,
    pub hi: Scalar,
    pub coeffs: Vec<Scalar>,
}

impl ChebSpec {
    pub fn new(lo: f64, hi: f64, coeffs: &[f64]) -> Self {
        ChebSpec { lo: Scalar::new(lo), hi: Scalar::new(hi), coeffs: coeffs.iter().map(|&c| Scalar::new(c)).collect() }
    }

    pub fn coeffs_f64(&self) -> Vec<f64> {
        self.coeffs.iter().map(|c| c.get()).collect()
    }

    /// Whether the spec denotes a usable series: finite values, `lo < hi`, at least one coefficient.
    pub fn is_valid(&self) -> bool {
        let (lo, hi) = (self.lo.get(), self.hi.get());
        lo.is_finite()
            && hi.is_finite()
            && lo < hi
            && (hi - lo).is_finite()
            && !self.coeffs.is_empty()
            && self.coeffs.iter().all(|c| c.get().is_finite())
    }
}

impl fmt::Display for ChebSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cheb<{},{};", self.lo, self.hi)?;
        for (i, c) in self.coeffs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str(">")
    }
}

impl FromStr for ChebSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let body = s
            .strip_prefix("cheb<")
            .and_then(|r| r.strip_suffix('>'))
            .ok_or_else(|| format!("not a chebyshev spec: {s}"))?;
        let (range, coeffs) = body.split_once(';').ok_or("missing ';'")?;
        let (lo, hi) = range.split_once(',').ok_or("missing ','")?;
        let coeffs = coeffs.split(',').map(|c| c.parse::<Scalar>()).collect::<Result<Vec<_>, _>>()?;
        Ok(ChebSpec { lo: lo.parse()?, hi: hi.parse()?, coeffs })
    }
}

/// Axes of a reduction and whether reduced dimensions are kept (`axes<1,2;keep>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AxesSpec {
    pub axes: Vec<usize>,
    pub keepdims: bool,
}

impl fmt::Display for AxesSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axes: Vec<String> = self.axes.iter().map(|a| a.to_string()).collect();
        write!(f, "axes<{};{}>", axes.join(","), if self.keepdims { "keep" } else { "drop" })
    }
}

impl FromStr for AxesSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let body = s
            .strip_prefix("axes<")
            .and_then(|r| r.strip_suffix('>'))
            .ok_or_else(|| format!("not an axes spec: {s}"))?;
        let (axes, keep) = body.split_once(';').ok_or("missing ';'")?;
        let axes = if axes.is_empty() {
            vec![]
        } else {
            axes.split(',').map(|a| a.parse::<usize>().map_err(|e| e.to_string())).collect::<Result<_, _>>()?
        };
        let keepdims = match keep {
            "keep" => true,
            "drop" => false,
            other => return Err(format!("expected keep or drop, got {other}")),
        };
        Ok(AxesSpec { axes, keepdims })
    }
}

/// A value of the original graph used as an opaque leaf (`v12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeafRef(pub u32);

impl fmt::Display for LeafRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
impl FromStr for LeafRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix('v').and_then(|n| n.parse().ok()).map(LeafRef).ok_or_else(|| format!("not a leaf: {s}"))
    }
}

/// A constant of the original graph's pool (`c3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConstRef(pub u32);

impl fmt::Display for ConstRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}
impl FromStr for ConstRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix('c').and_then(|n| n.parse().ok()).map(ConstRef).ok_or_else(|| format!("not a constant: {s}"))
    }
}

define_language! {
    /// Elementwise tensor arithmetic of the polynomial stage (module doc).
    pub enum PolyLang {
        "add" = Add([Id; 2]),
        "sub" = Sub([Id; 2]),
        "neg" = Neg(Id),
        "mul" = Mul([Id; 2]),
        "square" = Square(Id),
        "cheb" = Cheb([Id; 2]),
        "matmul_w" = MatMulW([Id; 2]),
        "scale_const" = ScaleConst([Id; 2]),
        "scale_rows" = ScaleRows([Id; 2]),
        "rsum" = RSum([Id; 2]),
        Num(Scalar),
        Spec(ChebSpec),
        Axes(AxesSpec),
        Leaf(LeafRef),
        Tensor(ConstRef),
    }
}
