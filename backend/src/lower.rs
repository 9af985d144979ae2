//! Lowering the polynomial-stage graph to a CKKS program.
//!
//! Requires: a graph that passes `polyhe_passes::verify_poly_stage` (only add/sub/neg/mul,
//! matmul/gemm/conv, reductions, data movement, constants and `chebyshev` on encrypted values); all
//! float graph inputs are encrypted.
//! Guarantees: only nodes the outputs depend on are lowered; values computed from plaintext client
//! inputs alone (token ids → embedding rows) run on the client, and those an encrypted node reads
//! become extra encrypted program inputs named `client:<value>` (after the float graph inputs); every graph output is an encrypted value in the row-major layout; any other case is a
//! [`BackendError::Unsupported`] naming the node — never a silently wrong program.
//!
//! Layout: every encrypted tensor is placed by a [`Layout`] over `ceil(numel / S)` ciphertexts:
//! the policy's layout for its shape when it is materialized (`layout.rs`: row-major, or column
//! with tokens fastest); maps are built over elements and placed into slot positions when they are
//! emitted. Program inputs are row-major (see `polyhe_runtime::SlotLayout`), except those the client packs (`packing.rs`: chosen
//! from the maps a first lowering reads from the row-major input, kept only when the second
//! lowering is cheaper by the per-op cost estimate), which enter as the pending map from their
//! packed slots back to row-major, so consumers compose their own maps with it. Per op:
//! - values that do not depend on an encrypted input are folded at compile time (reference
//!   interpreter) into plaintext tensors;
//! - elementwise add/sub/mul: slot-wise; an encrypted operand with a smaller (broadcast) shape is
//!   first expanded by a data-movement map; plaintext operands are broadcast at compile time; a
//!   uniform plaintext factor is a scalar multiply (free for integers);
//! - every op that is affine in its encrypted operands (matmul/gemm/conv with plaintext weights,
//!   reduce_sum/mean, transpose, reshape, expand, slice, concat, split, gather with constant
//!   indices) is an [`AffineMap`]: built from the weights for matmul/gemm/conv and reductions
//!   (`affine_ops.rs`, bounded in size), by index tracing through the reference interpreter for
//!   pure data movement (one run, exact) — never by probing with basis vectors — and lowered by the diagonal method
//!   (`linear.rs`); identity maps such as row-major reshapes cost nothing;
//! - ct×ct matmul `[.., I, K] × [.., K, J]`: both operands are expanded to the product layout
//!   `[K, .., I, J]`, multiplied slot-wise, and summed over `K` by a map (K diagonals, left pending
//!   so it fuses with what follows). When the product fits one ciphertext, the expansion is a
//!   "spread" map (A at j = 0, B at i = 0: `T/J` and `B·K` diagonals instead of `T` and `T/J`)
//!   followed by rotate-and-add replication along J and I (no level);
//! - `chebyshev`: the depth-optimal `EvalPlan` of the polynomial, op by op; additive constants are
//!   masked to the tensor's slots so unused slots stay bounded.

use std::collections::BTreeMap;

use cranelift_entity::SecondaryMap;
use polyhe_ir::{interp, DType, Graph, Op, Tensor, Value};
use polyhe_passes::{Chebyshev, EvalPlan, Interval, PlanOp};
use polyhe_runtime::{Port, Reg};

use crate::affine_ops::{affine_map_of, Operand};
use crate::layout::{Layout, LayoutPolicy};
use crate::levels::Builder;
use crate::linear::{lower_affine, AffineMap, LinearStats, Part};
use crate::packing::{self, InputPacking, InputRead};
use crate::BackendError;

/// `Some(B)` when `nd` is `B − mean(B)` over `B`'s last axis (keepdims), the mean written as
/// `reduce_mean`, or as `reduce_sum` times `1/n` (the e-graph's form).
fn centering_source(g: &Graph, nd: &polyhe_ir::NodeData) -> Option<Value> {
    let (&[b, m], Op::Sub) = (nd.inputs.as_slice(), &nd.op) else { return None };
    let shape = &g.ty(b).shape;
    let last = shape.len().checked_sub(1)?;
    let n = *shape.last()? as f64;
    let def = |v: Value| match g.values[v].def {
        polyhe_ir::ValueDef::Result(node, _) => Some(&g.nodes[node]),
        _ => None,
    };
    let scalar = |v: Value| g.constant_of(v).filter(|t| t.numel() == 1).and_then(|t| t.to_f64_vec().first().copied());
    let (mut v, mut w) = (m, 1.0f64);
    let d = def(v)?;
    if d.op == Op::Mul {
        let (x, c) = match (scalar(d.inputs[0]), scalar(d.inputs[1])) {
            (_, Some(c)) => (d.inputs[0], c),
            (Some(c), _) => (d.inputs[1], c),
            _ => return None,
        };
        v = x;
        w = c;
    }
    let r = def(v)?;
    let is_mean = match &r.op {
        Op::ReduceMean { axes, keepdims: true } => axes == &[last] && (w - 1.0).abs() < 1e-12,
        Op::ReduceSum { axes, keepdims: true } => axes == &[last] && (w * n - 1.0).abs() < 1e-9,
        _ => false,
    };
    (is_mean && r.inputs.first() == Some(&b)).then_some(b)
}

/// Whether operand `k` of an add/sub is a pending map over the ciphertexts the other operand is
/// (or is pending over): [`Ctx::merged_sum`] may make the two one map.
fn shares_base(op: &Op, args: &[Val], k: usize) -> bool {
    matches!(op, Op::Add | Op::Sub)
        && args.len() == 2
        && matches!(args[k], Val::Lazy { .. })
        && args[k].base().is_some()
        && args[k].base() == args[1 - k].base()
}

#[derive(Clone, Debug)]
enum Val {
    Plain(Tensor),
    Ct {
        regs: Vec<Reg>,
        shape: Vec<usize>,
        /// Where the elements sit (a function of the flat element index; its own shape may differ
        /// from `shape` by size-1 or reshaped axes).
        layout: Layout,
    },
    /// `map(base)`, not yet emitted: consecutive affine ops compose into one map (one level).
    /// The map is over elements; `base_layout` places the base's elements.
    Lazy {
        base: Vec<Reg>,
        base_layout: Layout,
        map: AffineMap,
        shape: Vec<usize>,
    },
    /// Depends on a plaintext client input (not known at compile time).
    Client(String),
}

/// The result of lowering.
pub(crate) struct Lowered {
    pub builder: Builder,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    pub stats: LinearStats,
    /// IR node name per instruction (for bootstrap placement and reports).
    pub inst_node: Vec<String>,
    /// IR op name per instruction.
    pub inst_op: Vec<&'static str>,
    /// Client-computed values encrypted as extra program inputs (after the float graph inputs).
    pub client_values: Vec<Value>,
    /// Labels of the client values.
    pub value_names: BTreeMap<Value, String>,
    /// Encrypted inputs (float graph inputs or client values) the client packs before
    /// encryption (`packing.rs`); the others are row-major.
    pub packings: BTreeMap<Value, InputPacking>,
}

impl Lowered {
    /// After [`Builder::rebuild`]: each new instruction's node and op from the old instruction it
    /// came from (`origin`), the outputs' registers through `reg_map`.
    pub fn remap(&mut self, origin: &[usize], reg_map: &[Reg]) {
        self.inst_node = origin.iter().map(|&k| self.inst_node.get(k).cloned().unwrap_or_default()).collect();
        self.inst_op = origin.iter().map(|&k| self.inst_op.get(k).copied().unwrap_or("")).collect();
        for port in &mut self.outputs {
            for r in &mut port.regs {
                *r = reg_map.get(*r as usize).copied().unwrap_or(*r);
            }
        }
    }
}

struct Ctx<'g> {
    g: &'g Graph,
    slots: usize,
    /// A composed map may have at most `fusion_growth · (d₁ + d₂) + 64·fusion_growth` diagonals.
    fusion_growth: usize,
    b: Builder,
    stats: LinearStats,
    /// Shape an elementwise result is computed at (see [`broadcast_hints`]).
    hint: SecondaryMap<Value, Option<Vec<usize>>>,
    /// Unpacked encrypted inputs `(value, ciphertexts, layout)`, whose maps are recorded in
    /// `reads` when `record` is set (the first lowering, for [`packing::choose`]).
    input_regs: Vec<(Value, Vec<Reg>, Layout)>,
    /// The layout materialized tensors get.
    policy: LayoutPolicy,
    reads: BTreeMap<Value, Vec<InputRead>>,
    record: bool,
    /// The node being lowered and whether `POLYHE_TRACE` asks for per-node figures.
    current: String,
    trace: bool,
    /// First registers of [`Ctx::rotated_matmul`]'s products (their maps may land skewed).
    rotated_products: std::collections::BTreeSet<Reg>,
    /// Inputs read by a map too large to record (never packed).
    unpackable: std::collections::BTreeSet<Value>,
    /// `B − mean_j B` values (softmax's centered keys, see [`centering_source`]) → `B`.
    centered_keys: BTreeMap<Value, Val>,
    /// Set while lowering a ct×ct matmul whose right operand is a centered `B`: that `B`.
    centered_operand: Option<Val>,
}

/// The most entries of a map read from an input that the packing choice records.
const MAX_RECORDED_READ: usize = 1 << 22;

/// Whether `POLYHE_TRACE` asks for lowering figures on stderr.
fn tracing() -> bool {
    std::env::var_os("POLYHE_TRACE").is_some()
}

/// Whether `POLYHE_TRACE=maps` asks for one line per emitted map as well (node, operand and
/// output placements, diagonals, rotations).
fn tracing_maps() -> bool {
    std::env::var_os("POLYHE_TRACE").is_some_and(|v| v == "maps")
}

/// `a/layer.3/b` → `a/layer.*/b`: one line per op of a repeated layer in traces.
fn fold_layer_index(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find("layer.") {
        out.push_str(&rest[..at + 6]);
        rest = &rest[at + 6..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('*');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn unsupported(op: &Op, node: &str, reason: impl Into<String>) -> BackendError {
    BackendError::Unsupported { op: op.name().to_string(), node: node.to_string(), reason: reason.into() }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn f64_tensor(shape: &[usize], v: Vec<f64>) -> Result<Tensor, BackendError> {
    Tensor::float(DType::F64, shape.to_vec(), v).map_err(|e| BackendError::Internal(e.to_string()))
}

/// A plaintext tensor widened to f64 so probes are not rounded to f32.
fn widen(t: &Tensor) -> Result<Tensor, BackendError> {
    if t.dtype().is_float() {
        f64_tensor(t.shape(), t.to_f64_vec())
    } else {
        Ok(t.clone())
    }
}

/// What one lowering runs against: the chain `moduli` with `2^log_scale` input scale, inputs at
/// `input_level`, `slots` per ciphertext, the map-fusion bound, whether values are refreshed by
/// bootstrapping and the layout policy.
#[derive(Clone)]
pub(crate) struct LowerSetup {
    pub moduli: Vec<u64>,
    pub log_scale: u32,
    pub input_level: usize,
    pub slots: usize,
    pub fusion_growth: usize,
    pub bootstrapping: bool,
    pub layout: LayoutPolicy,
    /// The input packings a dry run chose (its [`Lowered::packings`]): lowered once with them
    /// instead of choosing again. The real chain holds the depth of the dry run's choice, which
    /// the unpacked lowering may exceed (a rotated product that only packed inputs allow).
    pub packings: Option<BTreeMap<Value, InputPacking>>,
}

/// Lowers `g` against `setup`.
///
/// Encrypted inputs start row-major; when the maps this first lowering reads from an input have
/// fewer diagonals under a client-side packing ([`packing::choose`]), `g` is lowered again with
/// the input packed, and that lowering is kept if it is cheaper by the per-op cost estimate.
pub(crate) fn lower(g: &Graph, setup: &LowerSetup) -> Result<Lowered, BackendError> {
    if let Some(packings) = &setup.packings {
        return lower_pass(g, setup, packings).map(|(l, _)| l);
    }
    let trace = tracing();
    let t0 = std::time::Instant::now();
    let (first, reads) = lower_pass(g, setup, &BTreeMap::new())?;
    if trace {
        eprintln!(
            "lower: {} slots, {} levels, layout {}: {} instructions, {} diagonals in {:.1} s",
            setup.slots,
            setup.input_level,
            setup.layout,
            first.builder.insts.len(),
            first.stats.diagonals,
            t0.elapsed().as_secs_f64()
        );
        let mut top: Vec<(&String, &usize)> = first.stats.diagonals_per_node.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        for (node, d) in top.iter().take(12) {
            eprintln!("  {d:>8} diagonals  {node}");
        }
    }
    let packings: BTreeMap<Value, InputPacking> = reads
        .iter()
        .filter_map(|(&v, rs)| packing::choose(numel(&g.ty(v).shape), setup.slots, rs).map(|(p, _, _)| (v, p)))
        .collect();
    if packings.is_empty() {
        return Ok(first);
    }
    let (second, _) = lower_pass(g, setup, &packings)?;
    // By the per-op costs of `estimated_eval_seconds` (a rotation 60 ms, a diagonal 13.5 ms):
    // the packing trades diagonals for rotations now that baby and giant steps follow the
    // offsets' progressions.
    let cost = |l: &Lowered| 60.0 * l.stats.rotations as f64 + 13.5 * l.stats.diagonals as f64;
    Ok(if cost(&second) < cost(&first) { second } else { first })
}

/// One lowering with the given input packings; with none, also returns the maps read from each
/// row-major encrypted input.
fn lower_pass(
    g: &Graph,
    setup: &LowerSetup,
    packings: &BTreeMap<Value, InputPacking>,
) -> Result<(Lowered, BTreeMap<Value, Vec<InputRead>>), BackendError> {
    let LowerSetup { moduli, log_scale, input_level, slots, fusion_growth, bootstrapping, layout, .. } = setup.clone();
    let mut cx = Ctx {
        g,
        slots,
        fusion_growth,
        b: Builder::new(moduli, log_scale, input_level, slots),
        stats: LinearStats::default(),
        hint: SecondaryMap::new(),
        input_regs: Vec::new(),
        policy: layout,
        reads: BTreeMap::new(),
        record: packings.is_empty(),
        current: String::new(),
        trace: tracing(),
        rotated_products: Default::default(),
        unpackable: Default::default(),
        centered_keys: BTreeMap::new(),
        centered_operand: None,
    };
    if bootstrapping {
        cx.b.enable_bootstrapping();
    }
    let mut vals: SecondaryMap<Value, Option<Val>> = SecondaryMap::new();
    // Only nodes the outputs depend on are lowered (dead code costs no levels).
    let mut live: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &g.outputs {
        live[v] = true;
    }
    let mut uses: SecondaryMap<Value, usize> = SecondaryMap::with_default(0);
    for &v in &g.outputs {
        uses[v] += 1;
    }
    for (_, nd) in g.nodes.iter().rev() {
        if nd.outputs.iter().any(|&o| live[o]) {
            for &i in &nd.inputs {
                live[i] = true;
                uses[i] += 1;
            }
        }
    }
    // Values computed from plaintext client inputs only (token ids → embedding rows) that an
    // encrypted node consumes: the client evaluates them and encrypts them as extra inputs.
    // A node runs on the client when it reads a client value and no encrypted one (as
    // `polyhe_passes::encrypted_values` defines them: float inputs and embedding lookups onward).
    // Client values read by any other live node form the frontier: the client computes and
    // encrypts them (an embedding lookup's result is one).
    let enc = polyhe_passes::encrypted_values(g);
    cx.hint = broadcast_hints(g, &live, &enc, slots);
    let mut client: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &g.inputs {
        client[v] = !g.ty(v).dtype.is_float();
    }
    let mut frontier: Vec<Value> = Vec::new();
    for (_, nd) in g.nodes.iter() {
        let from_client = nd.inputs.iter().any(|&i| client[i]);
        let from_enc = nd.inputs.iter().any(|&i| enc[i]);
        if from_client && !from_enc {
            nd.outputs.iter().for_each(|&o| client[o] = true);
            continue;
        }
        if nd.outputs.iter().any(|&o| live[o]) {
            for &i in &nd.inputs {
                if client[i] && !frontier.contains(&i) {
                    frontier.push(i);
                }
            }
        }
    }
    let mut inputs = Vec::new();
    for &v in &g.inputs {
        let name = g.value_label(v);
        if g.ty(v).dtype.is_float() {
            let (port, val) = cx.input_port(v, name, false, packings.get(&v));
            inputs.push(port);
            vals[v] = Some(val);
        } else {
            vals[v] = Some(Val::Client(name));
        }
    }
    for &v in &frontier {
        let (port, val) = cx.input_port(v, g.value_label(v), true, packings.get(&v));
        inputs.push(port);
        vals[v] = Some(val);
    }
    let mut inst_node = Vec::new();
    let mut inst_op = Vec::new();
    for (_, nd) in g.nodes.iter() {
        if !nd.outputs.iter().any(|&o| live[o]) {
            continue;
        }
        if nd.outputs.iter().all(|&o| client[o]) {
            // Runs on the client; frontier values are already program inputs.
            for &o in &nd.outputs {
                if vals[o].is_none() {
                    vals[o] = Some(Val::Client(g.value_label(o)));
                }
            }
            continue;
        }
        // A value's last reader takes it (a pending map can hold millions of entries: neither
        // cloned for the last use nor kept once dead).
        let mut args: Vec<Val> = Vec::with_capacity(nd.inputs.len());
        for &v in &nd.inputs {
            uses[v] = uses[v].saturating_sub(1);
            let a = if uses[v] == 0 { vals[v].take() } else { vals[v].clone() };
            args.push(a.ok_or_else(|| BackendError::Internal(format!("value {v} used before definition")))?);
        }
        let before = cx.b.insts.len();
        let n_enc = args.iter().filter(|a| a.is_enc()).count();
        let out_shape = nd.outputs.first().map(|&v| cx.shape_of(v)).unwrap_or_default();
        for (k, &v) in nd.inputs.iter().enumerate() {
            let Some(Val::Lazy { shape, .. }) = args.get(k) else { continue };
            let other_plain = args.iter().enumerate().all(|(j, x)| j == k || matches!(x, Val::Plain(_)));
            let keep = match nd.op {
                // Affine in the encrypted operand when the other one is a plaintext: composes.
                Op::Add | Op::Sub | Op::Mul => other_plain || *shape != out_shape || shares_base(&nd.op, &args, k),
                Op::Chebyshev { .. } => true,
                Op::MatMul => n_enc == 2 || is_affine_op(&nd.op),
                ref op => n_enc == 1 && (is_affine_op(op) || matches!(op, Op::Identity)),
            };
            if !keep {
                // (taken, not cloned: a pending map can hold millions of entries; every slot
                // reading `v` gets the materialized value below)
                let Some(slot) = args.get_mut(k) else { continue };
                let a = std::mem::replace(slot, Val::Client(String::new()));
                let m = cx.materialize(a)?;
                if uses[v] > 0 {
                    vals[v] = Some(m.clone());
                }
                // Every operand slot reading `v` (x·x) gets the one emitted value.
                for (j, _) in nd.inputs.iter().enumerate().filter(|(_, &w)| w == v) {
                    if let Some(x) = args.get_mut(j) {
                        *x = m.clone();
                    }
                }
            }
        }
        cx.current = nd.name.clone();
        // Softmax's centered keys `B − mean_j B` (to_poly's `center_keys`): `B` is kept for the
        // product reading them, which centers inside its rotated form instead of by a map.
        if centering_source(g, nd).is_some() {
            if let (Some(b), Some(&out)) = (args.first(), nd.outputs.first()) {
                cx.centered_keys.insert(out, b.clone());
            }
        }
        cx.centered_operand = match nd.op {
            Op::MatMul => nd.inputs.get(1).and_then(|v| cx.centered_keys.remove(v)),
            _ => None,
        };
        let outs = cx.node(&nd.op, &nd.name, &nd.outputs, &args)?;
        cx.centered_operand = None;
        for _ in before..cx.b.insts.len() {
            inst_node.push(nd.name.clone());
            inst_op.push(nd.op.name());
        }
        for (&v, o) in nd.outputs.iter().zip(outs) {
            vals[v] = Some(o);
        }
    }
    let mut outputs = Vec::new();
    for &v in &g.outputs {
        let name = g.value_label(v);
        let val = match vals[v].clone() {
            Some(l @ Val::Lazy { .. }) => Some(cx.materialize(l)?),
            other => other,
        };
        let val = match val {
            Some(v @ Val::Ct { .. }) => Some(cx.port_layout(v)?),
            other => other,
        };
        match val {
            Some(Val::Ct { regs, layout, .. }) => outputs.push(Port { name, layout: layout.slot_layout(slots), regs }),
            _ => {
                return Err(BackendError::Unsupported {
                    op: "output".into(),
                    node: name,
                    reason: "the output does not depend on an encrypted input (nothing to compute homomorphically)"
                        .into(),
                })
            }
        }
    }
    // Instructions that give outputs their port layouts belong to no node.
    inst_node.resize(cx.b.insts.len(), "(output layouts)".to_string());
    inst_op.resize(cx.b.insts.len(), "output");
    let mut reads = std::mem::take(&mut cx.reads);
    reads.retain(|v, _| !cx.unpackable.contains(v));
    let lowered = Lowered {
        builder: cx.b,
        inputs,
        outputs,
        stats: cx.stats,
        inst_node,
        inst_op,
        value_names: frontier.iter().chain(packings.keys()).map(|&v| (v, g.value_label(v))).collect(),
        client_values: frontier,
        packings: packings.clone(),
    };
    Ok((lowered, reads))
}

impl Ctx<'_> {
    /// The program input of the encrypted value `v` (`client:<label>` for a client value,
    /// `client:pack(<label>)` when packed) and the value consumers see: the ciphertexts, or the
    /// pending map from the packed slots back to the row-major tensor.
    fn input_port(&mut self, v: Value, label: String, client: bool, packing: Option<&InputPacking>) -> (Port, Val) {
        let shape = self.g.ty(v).shape.clone();
        let n = numel(&shape);
        let slots = self.slots;
        let layout = match packing {
            Some(p) => Layout::row_major(&[p.gather.len()]),
            None => self.policy.layout_for(&shape),
        };
        let name = match packing {
            Some(_) => format!("client:pack({label})"),
            None if client => format!("client:{label}"),
            None => label,
        };
        let port_layout = layout.slot_layout(slots);
        let elements = numel(port_layout.shape());
        let regs: Vec<Reg> =
            (0..port_layout.num_cts()).map(|k| self.b.input(elements.saturating_sub(k * slots))).collect();
        let val = match packing {
            Some(p) => {
                Val::Lazy { base: regs.clone(), base_layout: layout, map: p.unpack_map(n), shape: shape.clone() }
            }
            None => {
                self.input_regs.push((v, regs.clone(), layout.clone()));
                Val::Ct { regs: regs.clone(), shape, layout }
            }
        };
        (Port { name, layout: port_layout, regs }, val)
    }

    /// Lowers `map` (over elements) of the operands `inputs` placed by their layouts into
    /// `out` (see [`lower_affine`]), first recording the parts read straight from an unpacked
    /// input (for the packing choice).
    fn emit(&mut self, inputs: &[(Vec<Reg>, Layout)], map: &AffineMap, out: &Layout) -> Result<Vec<Reg>, BackendError> {
        let placed = place(map, inputs.iter().map(|(_, l)| l), out);
        if self.record {
            for ((regs, l), part) in inputs.iter().zip(&placed.parts) {
                if let Some((v, _, _)) = self.input_regs.iter().find(|(_, r, m)| r == regs && m == l) {
                    if part.nnz() > MAX_RECORDED_READ {
                        // (A projection of the whole input: its placement already lines the
                        // weights up; a packing would only be searched over millions of entries.)
                        self.unpackable.insert(*v);
                        continue;
                    }
                    // Output positions against input elements: the client permutes elements.
                    let entries: Vec<(usize, usize, f64)> = if l.is_row_major() {
                        part.iter().collect()
                    } else {
                        let pos: Vec<usize> = (0..l.numel()).map(|e| l.position(e)).collect();
                        let mut inv = vec![0; pos.len()];
                        for (e, &p) in pos.iter().enumerate() {
                            if let Some(x) = inv.get_mut(p) {
                                *x = e;
                            }
                        }
                        part.iter().map(|(o, p, w)| (o, inv.get(p).copied().unwrap_or(p), w)).collect()
                    };
                    let read = InputRead { entries, out_shape: out.slot_shape() };
                    self.reads.entry(*v).or_default().push(read);
                }
            }
        }
        let regs: Vec<Vec<Reg>> = inputs.iter().map(|(r, _)| r.clone()).collect();
        let nums: Vec<usize> = inputs.iter().map(|(_, l)| l.numel()).collect();
        let before = self.stats.diagonals;
        let rot_before = self.stats.rotations;
        let out_desc = out.to_string();
        let out =
            lower_affine(&mut self.b, self.slots, &regs, &nums, &placed, &mut self.stats).map_err(|e| match e {
                BackendError::Unsupported { op, node, reason } if node.is_empty() => {
                    BackendError::Unsupported { op, node: self.current.clone(), reason }
                }
                e => e,
            })?;
        if self.trace {
            let key = fold_layer_index(&self.current);
            *self.stats.diagonals_per_node.entry(key).or_default() += self.stats.diagonals - before;
            if tracing_maps() {
                let ins: Vec<String> = inputs.iter().map(|(r, l)| format!("{} ct {l}", r.len())).collect();
                let (d, r) = (self.stats.diagonals - before, self.stats.rotations - rot_before);
                eprintln!("map {}: {} -> {out_desc}: {d} diagonals, {r} rotations", self.current, ins.join(", "));
            }
        }
        Ok(out)
    }

    /// An output value in the layout its port declares: its own when that layout has the
    /// output's shape (or is row-major), else moved to the policy's layout for the shape.
    fn port_layout(&mut self, v: Val) -> Result<Val, BackendError> {
        match v {
            Val::Ct { regs, shape, layout } if layout.is_skewed() => {
                let to = self.policy.layout_for(&shape);
                self.convert(Val::Ct { regs, shape, layout }, &to)
            }
            Val::Ct { regs, shape, layout } if layout.shape() != shape.as_slice() => {
                if layout.is_row_major() {
                    return Ok(Val::Ct { regs, layout: Layout::row_major(&shape), shape });
                }
                let to = self.policy.layout_for(&shape);
                self.convert(Val::Ct { regs, shape, layout }, &to)
            }
            other => Ok(other),
        }
    }

    /// `v` placed in `to` (an identity map over elements between two layouts; nothing to emit
    /// when they agree).
    fn convert(&mut self, v: Val, to: &Layout) -> Result<Val, BackendError> {
        let v = self.materialize(v)?;
        let Val::Ct { regs, shape, layout } = v else {
            return Err(BackendError::Internal("convert of a non-encrypted value".into()));
        };
        if (0..layout.numel()).all(|e| layout.position(e) == to.position(e)) {
            return Ok(Val::Ct { regs, shape, layout: to.clone() });
        }
        let n = numel(&shape);
        let id = AffineMap::identity(n);
        let out = self.emit(&[(regs, layout)], &id, to)?;
        Ok(Val::Ct { regs: out, shape, layout: to.clone() })
    }

    /// The shape `v` is computed at: its type's, or the broadcast shape its consumers need.
    fn shape_of(&self, v: Value) -> Vec<usize> {
        self.hint[v].clone().unwrap_or_else(|| self.g.ty(v).shape.clone())
    }

    fn node(&mut self, op: &Op, name: &str, outs: &[Value], args: &[Val]) -> Result<Vec<Val>, BackendError> {
        if let Some(Val::Client(c)) = args.iter().find(|a| matches!(a, Val::Client(_))) {
            if args.iter().any(Val::is_enc) {
                return Err(BackendError::Internal(format!("{name}: client value `{c}` next to an encrypted operand")));
            }
            // Runs on the client (before encryption); only its frontier values reach the program.
            return Ok(outs.iter().map(|_| Val::Client(c.clone())).collect());
        }
        let any_ct = args.iter().any(Val::is_enc);
        if !any_ct {
            let ts: Vec<&Tensor> =
                args.iter().filter_map(|a| if let Val::Plain(t) = a { Some(t) } else { None }).collect();
            let r = interp::eval_op(op, &ts, self.g).map_err(|e| BackendError::Eval {
                op: op.name().into(),
                node: name.into(),
                reason: e.to_string(),
            })?;
            return Ok(r.into_iter().map(Val::Plain).collect());
        }
        let shapes: Vec<Vec<usize>> = outs.iter().map(|&v| self.shape_of(v)).collect();
        let out_shape = |k: usize| shapes.get(k).cloned().unwrap_or_default();
        match op {
            Op::Add | Op::Sub | Op::Mul => Ok(vec![self.binary(op, name, &out_shape(0), args)?]),
            Op::Neg => {
                let (regs, shape, layout) = ct(args.first(), op, name)?;
                Ok(vec![Val::Ct { regs: regs.iter().map(|&r| self.b.neg(r)).collect(), shape, layout }])
            }
            Op::Identity => Ok(vec![args.first().cloned().ok_or_else(|| unsupported(op, name, "no input"))?]),
            Op::Chebyshev { lo, hi, coeffs } => {
                let p = Chebyshev::new(
                    Interval::new(*lo, *hi).map_err(|e| unsupported(op, name, e.to_string()))?,
                    coeffs.clone(),
                )
                .map_err(|e| unsupported(op, name, e.to_string()))?;
                let plan = EvalPlan::chebyshev(&p);
                let arg = args.first().cloned().ok_or_else(|| unsupported(op, name, "no input"))?;
                // Computed at the broadcast shape its consumers need: the expand composes with a
                // pending producer map instead of costing a level after the polynomial.
                let wide = out_shape(0);
                let arg = if numel(arg.shape()) != numel(&wide) {
                    self.affine(&Op::Expand { shape: wide.clone() }, name, &[arg], 0, &wide, false)?
                } else {
                    arg
                };
                // The plan's map of x onto [-1, 1] (its only use of the input, as the plan's own
                // depth model assumes) folds into a pending affine producer: no level of its own.
                let input_affines: Vec<(f64, f64)> = plan
                    .ops()
                    .iter()
                    .filter_map(|o| match *o {
                        PlanOp::Affine { src, scale, shift } if src.0 == 0 => Some((scale, shift)),
                        _ => None,
                    })
                    .collect();
                let input_uses = plan.ops().iter().filter(|o| o.operands().iter().flatten().any(|r| r.0 == 0)).count()
                    + usize::from(plan.output().0 == 0);
                let (arg, folded) = match (&arg, input_affines.as_slice()) {
                    (Val::Lazy { shape, .. }, [(scale, shift)]) if input_uses == 1 => {
                        let n = numel(shape);
                        let m = AffineMap {
                            out_numel: n,
                            parts: vec![(0..n).map(|o| (o, o, *scale)).collect::<Vec<_>>().into()],
                            offset: Some(vec![*shift; n]),
                        };
                        let sh = shape.clone();
                        (self.apply(arg.clone(), m, &sh)?, true)
                    }
                    _ => (arg, false),
                };
                let (regs, shape, layout) = ct(Some(&self.materialize(arg)?), op, name)?;
                let n = numel(&shape);
                let mut out = Vec::new();
                for (k, &r) in regs.iter().enumerate() {
                    let valid = n.saturating_sub(k * self.slots).min(self.slots);
                    // One refresh before the polynomial rather than one per power that runs dry.
                    let r = self.b.refresh_for(r, plan.depth() as usize)?;
                    out.push(self.plan(&plan, r, valid, folded)?);
                }
                Ok(vec![Val::Ct { regs: out, shape, layout }])
            }
            Op::MatMul if args.iter().all(Val::is_enc) => Ok(vec![self.ct_matmul(op, name, &out_shape(0), args)?]),
            Op::Gemm { .. } | Op::Conv { .. } if args.iter().take(2).all(Val::is_enc) => {
                Err(unsupported(op, name, "both factors are encrypted; only matmul has a ct×ct lowering"))
            }
            Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Expand { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Gather { .. }
            | Op::GatherElements { .. } => {
                (0..outs.len()).map(|k| self.affine(op, name, args, k, &out_shape(k), false)).collect()
            }
            Op::MatMul | Op::Gemm { .. } | Op::Conv { .. } | Op::ReduceSum { .. } | Op::ReduceMean { .. } => {
                Ok(vec![self.affine(op, name, args, 0, &out_shape(0), true)?])
            }
            _ => Err(unsupported(op, name, "not a polynomial-stage op on encrypted data (run the poly passes first)")),
        }
    }

    /// Extracts and lowers the affine map of output `k` of `op` in its encrypted operands.
    fn affine(
        &mut self,
        op: &Op,
        name: &str,
        args: &[Val],
        k: usize,
        out_shape: &[usize],
        linear: bool,
    ) -> Result<Val, BackendError> {
        if matches!(op, Op::Gather { .. } | Op::GatherElements { .. }) && args.get(1).is_some_and(Val::is_enc) {
            return Err(unsupported(op, name, "encrypted gather indices"));
        }
        if linear {
            return self.linear_op(op, name, args, out_shape);
        }
        let eval_err = |e: polyhe_ir::IrError| BackendError::Eval {
            op: op.name().into(),
            node: name.into(),
            reason: e.to_string(),
        };
        let mut probe: Vec<Tensor> = Vec::new();
        let mut cts = Vec::new();
        for (i, a) in args.iter().enumerate() {
            match a {
                Val::Plain(t) => probe.push(widen(t)?),
                Val::Ct { regs, shape, .. } => {
                    probe.push(f64_tensor(shape, vec![0.0; numel(shape)])?);
                    cts.push((i, regs.clone(), numel(shape)));
                }
                Val::Lazy { shape, .. } => {
                    probe.push(f64_tensor(shape, vec![0.0; numel(shape)])?);
                    cts.push((i, Vec::new(), numel(shape)));
                }
                Val::Client(_) => return Err(BackendError::Internal("client value in affine".into())),
            }
        }
        let run = |probe: &[Tensor]| -> Result<Vec<f64>, BackendError> {
            let refs: Vec<&Tensor> = probe.iter().collect();
            let r = interp::eval_op(op, &refs, self.g).map_err(eval_err)?;
            Ok(r.get(k).map(|t| t.to_f64_vec()).unwrap_or_default())
        };
        let offset = run(&probe)?;
        let out_numel = numel(out_shape);
        if offset.len() != out_numel {
            return Err(BackendError::Internal(format!(
                "{name}: probe gave {} values for shape {out_shape:?}",
                offset.len()
            )));
        }
        let mut map = AffineMap { out_numel, parts: Vec::new(), offset: None };
        if offset.iter().any(|x| *x != 0.0) {
            map.offset = Some(offset.clone());
        }
        // Index tracing: the operand holds `e + 1` at element `e`; each output element shows
        // which element it copies (one run of the op per encrypted operand).
        for (i, _, n) in &cts {
            let mut entries = Vec::new();
            let shape = probe.get(*i).map(|t| t.shape().to_vec()).unwrap_or_default();
            if let Some(p) = probe.get_mut(*i) {
                *p = f64_tensor(&shape, (0..*n).map(|e| (e + 1) as f64).collect())?;
            }
            let y = run(&probe)?;
            for (o, (a, z)) in y.iter().zip(&offset).enumerate() {
                let t = a - z;
                if t != 0.0 {
                    let src = t - 1.0;
                    if src.fract() != 0.0 || src < 0.0 || src >= *n as f64 {
                        return Err(BackendError::Internal(format!("{name}: {} is not a data-movement op", op.name())));
                    }
                    entries.push((o, src as usize, 1.0));
                }
            }
            entries.sort_by_key(|&(o, e, _)| (o, e));
            map.parts.push(entries.into());
            if let Some(p) = probe.get_mut(*i) {
                *p = f64_tensor(&shape, vec![0.0; *n])?;
            }
        }
        let operands: Vec<usize> = cts.iter().map(|(i, _, _)| *i).collect();
        self.apply_map(name, args, &operands, map, out_shape)
    }

    /// The map of a linear op (matmul/gemm/conv with plaintext weights, reductions), built from
    /// its definition (`affine_ops.rs`).
    fn linear_op(&mut self, op: &Op, name: &str, args: &[Val], out_shape: &[usize]) -> Result<Val, BackendError> {
        let operands: Vec<Operand<'_>> = args
            .iter()
            .map(|a| match a {
                Val::Plain(t) => Ok(Operand::Plain(t)),
                Val::Ct { shape, .. } | Val::Lazy { shape, .. } => Ok(Operand::Enc(shape)),
                Val::Client(_) => Err(BackendError::Internal("client value in a linear op".into())),
            })
            .collect::<Result<_, _>>()?;
        let map = affine_map_of(op, &operands, out_shape).map_err(|reason| unsupported(op, name, reason))?;
        let enc: Vec<usize> = args.iter().enumerate().filter(|(_, a)| a.is_enc()).map(|(i, _)| i).collect();
        self.apply_map(name, args, &enc, map, out_shape)
    }

    /// `map` of the encrypted operands `args[operands[k]]`: pending when there is one operand (it
    /// composes with what follows), emitted otherwise.
    fn apply_map(
        &mut self,
        name: &str,
        args: &[Val],
        operands: &[usize],
        map: AffineMap,
        out_shape: &[usize],
    ) -> Result<Val, BackendError> {
        if let [i] = operands {
            let operand = args.get(*i).cloned().ok_or(BackendError::Internal("operand".into()))?;
            return self.apply(operand, map, out_shape);
        }
        let mut inputs: Vec<(Vec<Reg>, Layout)> = Vec::new();
        for &i in operands {
            match args.get(i) {
                Some(Val::Ct { regs: r, layout, .. }) => inputs.push((r.clone(), layout.clone())),
                _ => {
                    return Err(BackendError::Internal(format!(
                        "{name}: unmaterialized operand of a multi-operand map"
                    )))
                }
            }
        }
        let layout = self.policy.layout_for(out_shape);
        let out = self.emit(&inputs, &map, &layout)?;
        Ok(Val::Ct { regs: out, shape: out_shape.to_vec(), layout })
    }

    /// Where a pending map of `base` lands: the policy's layout, unless the other axis order of
    /// the last two axes needs at most a quarter of its diagonals (a transposed head `Kᵀ` of a
    /// column-major activation is that activation's placement read row-major: 63 diagonals
    /// instead of 993 in the toy encoder). Consumers accept any layout: maps read positions,
    /// elementwise ops move a mismatched operand, which the 4× margin pays for.
    fn placement_for(&self, map: &AffineMap, base_layout: &Layout, shape: &[usize], from_rotated: bool) -> Layout {
        let preferred = self.policy.layout_for(shape);
        let other = if preferred.is_row_major() { Layout::column_major(shape) } else { Layout::row_major(shape) };
        if other == preferred || self.policy != LayoutPolicy::ColumnMajor {
            return preferred;
        }
        let count = |to: &Layout, limit: usize| map.placed_diagonal_count_up_to(base_layout, to, self.slots, limit);
        let limit = count(&preferred, usize::MAX) / 4;
        let mut best = (limit, preferred);
        // The skewed placement only where a rotated product made the map (its P·V is rotated
        // too); elsewhere it would only move the transposition to the next map.
        let skewed = if from_rotated { Layout::skewed(shape) } else { None };
        for cand in std::iter::once(other).chain(skewed) {
            let c = count(&cand, best.0);
            if c <= best.0 {
                best = (c, cand);
            }
        }
        best.1
    }

    /// Emits a pending map, in the layout [`Self::placement_for`] picks.
    fn materialize(&mut self, v: Val) -> Result<Val, BackendError> {
        match self.layout_once_materialized(&v) {
            Some(layout) => self.materialize_in(v, &layout),
            None => Ok(v),
        }
    }

    /// Emits a pending map into `layout` (the one [`Self::layout_once_materialized`] gave).
    fn materialize_in(&mut self, v: Val, layout: &Layout) -> Result<Val, BackendError> {
        match v {
            Val::Lazy { base, base_layout, map, shape } => {
                let regs = self.emit(&[(base, base_layout)], &map, layout)?;
                Ok(Val::Ct { regs, shape, layout: layout.clone() })
            }
            other => Ok(other),
        }
    }

    /// `map(v)` as a pending value, composed with `v`'s own pending map unless the composition
    /// would multiply the diagonals (rotations, plaintexts) by more than it saves in levels.
    fn apply(&mut self, v: Val, map: AffineMap, shape: &[usize]) -> Result<Val, BackendError> {
        match v {
            Val::Ct { regs, layout, .. } => {
                Ok(Val::Lazy { base: regs, base_layout: layout, map, shape: shape.to_vec() })
            }
            Val::Lazy { base, base_layout, map: inner, shape: s } => {
                let t0 = std::time::Instant::now();
                let composed = map.compose_after(&inner);
                if self.trace && t0.elapsed().as_secs_f64() > 0.02 {
                    eprintln!(
                        "compose {}: {:.0} ms, {} ∘ {} entries ({} -> {} -> {} elements)",
                        self.current,
                        t0.elapsed().as_secs_f64() * 1e3,
                        map.parts.iter().map(|p| p.nnz()).sum::<usize>(),
                        inner.parts.iter().map(|p| p.nnz()).sum::<usize>(),
                        base_layout.numel(),
                        inner.out_numel,
                        map.out_numel
                    );
                }
                let Some(composed) = composed else {
                    // Too large to compose: the inner map is emitted first.
                    let m = self.materialize(Val::Lazy { base, base_layout, map: inner, shape: s })?;
                    return self.apply(m, map, shape);
                };
                let (mid, out) = (self.policy.layout_for(&s), self.policy.layout_for(shape));
                // A slot-wise factor (γ·x, a bias, a sign) composed with a map in the same
                // placement has the other map's diagonals: always worth its level.
                if (inner.is_slotwise() && base_layout == mid) || (map.is_slotwise() && mid == out) {
                    return Ok(Val::Lazy { base, base_layout, map: composed, shape: shape.to_vec() });
                }
                // Diagonals in the layouts each map would be lowered in.
                let count = |m: &AffineMap, from: &Layout, to: &Layout, limit: usize| {
                    m.placed_diagonal_count_up_to(from, to, self.slots, limit)
                };
                let (d1, d2) = (count(&inner, &base_layout, &mid, usize::MAX), count(&map, &mid, &out, usize::MAX));
                // Counting the composition stops at the bound (a rejected one is often the largest).
                let bound =
                    (self.fusion_growth * (d1 + d2) + 64 * self.fusion_growth).min((1 << 26) / self.slots.max(1));
                // The composition lands where `placement_for` will put it: the policy's layout
                // or the other order of the last two axes (a head split and transpose to `Kᵀ`
                // costs nothing read row-major, and everything in the policy's).
                let other = if out.is_row_major() { Layout::column_major(shape) } else { Layout::row_major(shape) };
                let fits = |to: &Layout| count(&composed, &base_layout, to, bound) <= bound;
                if fits(&out) || (self.policy == LayoutPolicy::ColumnMajor && other != out && fits(&other)) {
                    Ok(Val::Lazy { base, base_layout, map: composed, shape: shape.to_vec() })
                } else {
                    let m = self.materialize(Val::Lazy { base, base_layout, map: inner, shape: s })?;
                    self.apply(m, map, shape)
                }
            }
            _ => Err(BackendError::Internal("apply on a plaintext value".into())),
        }
    }

    /// An encrypted value broadcast to `shape` (a data-movement map unless already that shape).
    fn broadcast_ct(&mut self, name: &str, v: Val, to: &[usize]) -> Result<(Vec<Reg>, Layout), BackendError> {
        let shape = v.shape().to_vec();
        // Equal sizes: the same row-major data with other size-1 dims.
        let v = if numel(&shape) == numel(to) {
            v
        } else {
            self.affine(&Op::Expand { shape: to.to_vec() }, name, &[v], 0, to, false)?
        };
        match self.materialize(v)? {
            Val::Ct { regs, layout, .. } => Ok((regs, layout)),
            _ => Err(BackendError::Internal("broadcast".into())),
        }
    }

    /// A plaintext operand broadcast to `out_shape`, row-major.
    fn broadcast_plain(&self, name: &str, p: &Tensor, out_shape: &[usize]) -> Result<Vec<f64>, BackendError> {
        let pv = if p.shape() == out_shape {
            p.to_f64_vec()
        } else {
            let t = interp::eval_op(&Op::Expand { shape: out_shape.to_vec() }, &[&widen(p)?], self.g)
                .map_err(|e| BackendError::Eval { op: "expand".into(), node: name.into(), reason: e.to_string() })?;
            t.first().map(|t| t.to_f64_vec()).unwrap_or_default()
        };
        if pv.len() != numel(out_shape) {
            return Err(BackendError::Unsupported {
                op: "broadcast".into(),
                node: name.into(),
                reason: format!("plaintext operand of shape {:?} does not broadcast to {out_shape:?}", p.shape()),
            });
        }
        Ok(pv)
    }

    fn binary(&mut self, op: &Op, name: &str, out_shape: &[usize], args: &[Val]) -> Result<Val, BackendError> {
        let (a, b) = match args {
            [a, b] => (a, b),
            _ => return Err(unsupported(op, name, "expects two operands")),
        };
        if matches!(op, Op::Mul) {
            // A plaintext factor on a finished ciphertext stays pending as a diagonal map, so it
            // composes with a broadcast before it and with affine ops after it (LayerNorm's γ·x
            // folds into the next matmul): no level of its own.
            match (a, b) {
                (Val::Ct { regs, shape, layout }, p @ Val::Plain(_))
                | (p @ Val::Plain(_), Val::Ct { regs, shape, layout }) => {
                    let m = numel(shape);
                    let id = AffineMap::identity(m);
                    let lazy =
                        Val::Lazy { base: regs.clone(), base_layout: layout.clone(), map: id, shape: shape.clone() };
                    return self.binary(op, name, out_shape, &[lazy, p.clone()]);
                }
                _ => {}
            }
        }
        let n = numel(out_shape);
        let slots = self.slots;
        let chunk = |v: &[f64], k: usize| -> Vec<f64> {
            v.get(k * slots..((k + 1) * slots).min(n)).map(|s| s.to_vec()).unwrap_or_default()
        };
        if matches!(op, Op::Add | Op::Sub) {
            if let Some(v) = self.merged_sum(op, name, out_shape, a, b)? {
                return Ok(v);
            }
        }
        match (a, b) {
            (a, b) if a.is_enc() && b.is_enc() => {
                let (ra, la) = self.broadcast_ct(name, a.clone(), out_shape)?;
                // x·x of a pending (broadcast) value: one map, not the same map twice.
                let (rb, lb) = if a.same_enc(b) {
                    (ra.clone(), la.clone())
                } else {
                    self.broadcast_ct(name, b.clone(), out_shape)?
                };
                // Both operands in one placement (the policy gives equal shapes equal layouts, so
                // this moves only an input or a reshaped value).
                let rb = if la == lb {
                    rb
                } else {
                    let shape = out_shape.to_vec();
                    match self.convert(Val::Ct { regs: rb, shape, layout: lb }, &la)? {
                        Val::Ct { regs, .. } => regs,
                        _ => return Err(BackendError::Internal("convert".into())),
                    }
                };
                let mut out = Vec::new();
                for (&x, &y) in ra.iter().zip(&rb) {
                    out.push(match op {
                        Op::Add => self.b.add(x, y)?,
                        Op::Sub => self.b.sub(x, y)?,
                        _ => self.b.mul(x, y)?,
                    });
                }
                Ok(Val::Ct { regs: out, shape: out_shape.to_vec(), layout: la })
            }
            (e @ Val::Lazy { .. }, Val::Plain(p)) | (Val::Plain(p), e @ Val::Lazy { .. }) => {
                let ct_first = a.is_enc();
                let v = if numel(e.shape()) == n {
                    e.clone()
                } else {
                    self.affine(
                        &Op::Expand { shape: out_shape.to_vec() },
                        name,
                        std::slice::from_ref(e),
                        0,
                        out_shape,
                        false,
                    )?
                };
                let pv = self.broadcast_plain(name, p, out_shape)?;
                let (w, off): (Vec<f64>, Vec<f64>) = match op {
                    Op::Add => (vec![1.0; n], pv),
                    Op::Sub if ct_first => (vec![1.0; n], pv.iter().map(|x| -x).collect()),
                    Op::Sub => (vec![-1.0; n], pv),
                    _ => (pv, vec![0.0; n]),
                };
                let off = if off.iter().any(|x| *x != 0.0) { Some(off) } else { None };
                let m = AffineMap {
                    out_numel: n,
                    parts: vec![w.iter().enumerate().map(|(o, &x)| (o, o, x)).collect::<Vec<_>>().into()],
                    offset: off,
                };
                self.apply(v, m, out_shape)
            }
            (e, Val::Plain(p)) | (Val::Plain(p), e) if e.is_enc() => {
                let ct_first = a.is_enc();
                let (regs, layout) = self.broadcast_ct(name, e.clone(), out_shape)?;
                let pv = layout.scatter(&self.broadcast_plain(name, p, out_shape)?);
                let uniform = pv.first().filter(|&&f| pv.iter().all(|x| *x == f)).copied();
                let mut out = Vec::new();
                for (k, &x) in regs.iter().enumerate() {
                    let c = chunk(&pv, k);
                    out.push(match op {
                        Op::Add => self.b.add_plain(x, c),
                        Op::Sub if ct_first => self.b.add_plain(x, c.iter().map(|v| -v).collect::<Vec<f64>>()),
                        Op::Sub => {
                            let nx = self.b.neg(x);
                            self.b.add_plain(nx, c)
                        }
                        _ => match uniform {
                            Some(u) => self.b.mul_scalar(x, u)?,
                            None => self.b.mul_plain(x, c)?,
                        },
                    });
                }
                Ok(Val::Ct { regs: out, shape: out_shape.to_vec(), layout })
            }
            _ => Err(BackendError::Internal("binary op without encrypted operand".into())),
        }
    }

    /// `a ± b` as one pending map when both are maps of the same ciphertexts (a value minus its
    /// own broadcast row mean, as softmax's centering makes): the two maps would be emitted side by
    /// side from the same base anyway, so their sum costs no level more, and it stays pending for
    /// what follows. Kept only when the sum needs no more diagonals than the two maps apart;
    /// `None` leaves the operands to the general case.
    fn merged_sum(
        &mut self,
        op: &Op,
        name: &str,
        out_shape: &[usize],
        a: &Val,
        b: &Val,
    ) -> Result<Option<Val>, BackendError> {
        let same_base = a.base().is_some() && a.base() == b.base();
        if !same_base || !matches!((a, b), (Val::Lazy { .. }, _) | (_, Val::Lazy { .. })) {
            return Ok(None);
        }
        // The value as a map of its ciphertexts (a materialized one: the identity).
        let pending = |v: Val| match v {
            Val::Ct { regs, shape, layout } => Some((regs, layout, AffineMap::identity(numel(&shape)))),
            Val::Lazy { base, base_layout, map, .. } => Some((base, base_layout, map)),
            _ => None,
        };
        let n = numel(out_shape);
        let broadcast = |cx: &mut Self, v: &Val| -> Result<Val, BackendError> {
            if numel(v.shape()) == n {
                return Ok(v.clone());
            }
            cx.affine(&Op::Expand { shape: out_shape.to_vec() }, name, std::slice::from_ref(v), 0, out_shape, false)
        };
        let (a, b) = (broadcast(self, a)?, broadcast(self, b)?);
        let (Some((base, base_layout, ma)), Some((base_b, layout_b, mb))) = (pending(a), pending(b)) else {
            return Ok(None);
        };
        if base != base_b || base_layout != layout_b {
            return Ok(None);
        }
        let out = self.policy.layout_for(out_shape);
        let count = |m: &AffineMap, limit: usize| m.placed_diagonal_count_up_to(&base_layout, &out, self.slots, limit);
        let apart = count(&ma, usize::MAX) + count(&mb, usize::MAX);
        let w = if matches!(op, Op::Sub) { -1.0 } else { 1.0 };
        let sum = ma.plus_scaled(mb, w);
        if count(&sum, apart + 1) > apart {
            return Ok(None);
        }
        Ok(Some(Val::Lazy { base, base_layout, map: sum, shape: out_shape.to_vec() }))
    }

    /// `[.., I, K] × [.., K, J]` with both operands encrypted.
    fn ct_matmul(&mut self, op: &Op, name: &str, out_shape: &[usize], args: &[Val]) -> Result<Val, BackendError> {
        let (Some(va), Some(vb)) = (args.first(), args.get(1)) else {
            return Err(BackendError::Internal("ct_matmul operands".into()));
        };
        let (sa, sb) = (&va.shape().to_vec(), &vb.shape().to_vec());
        let (ra_n, rb_n) = (sa.len(), sb.len());
        if ra_n < 2 || rb_n < 2 || out_shape.len() < 2 {
            return Err(unsupported(op, name, "ct×ct matmul of 1-D operands"));
        }
        let (i_n, k_n) = (sa[ra_n - 2], sa[ra_n - 1]);
        let j_n = sb[rb_n - 1];
        let batch: Vec<usize> = out_shape[..out_shape.len() - 2].to_vec();
        let nb = numel(&batch);
        let t_numel = nb * i_n * j_n * k_n;
        // Index of a batch position in an operand whose batch dims broadcast to `batch`.
        let bidx = |bpos: usize, shape: &[usize]| -> usize {
            let ob = &shape[..shape.len() - 2];
            let mut rem = bpos;
            let mut idx = 0;
            let mut stride = 1;
            let mut coords = vec![0usize; batch.len()];
            for (d, &sz) in batch.iter().enumerate().rev() {
                coords[d] = rem % sz.max(1);
                rem /= sz.max(1);
            }
            for (d, &sz) in ob.iter().enumerate().rev() {
                let od = d + batch.len() - ob.len();
                let c = if sz == 1 { 0 } else { coords[od] };
                idx += c * stride;
                stride *= sz;
            }
            idx
        };
        // Replication by rotations needs every K-slice `[batch, I, J]` inside one ciphertext
        // (replicated blocks never straddle). K is outermost, so the sum over K is K diagonals
        // (shifts by multiples of the slice stride). When the whole product does not fit one
        // ciphertext, each slice gets a power-of-two stride (a divisor of the slot count), so a
        // ciphertext holds whole slices and the product spans several ciphertexts.
        // Where each operand lands once materialized (counted once for both rotated forms).
        if let (Some(la), Some(lb)) = (self.layout_once_materialized(va), self.layout_once_materialized(vb)) {
            let dims = (nb, i_n, k_n, j_n);
            // Centered keys: the product of the keys as they are, centered inside the rotated form.
            if let Some(b) = self.centered_operand.take() {
                if let Some(lb) = self.layout_once_materialized(&b) {
                    if let Some(v) = self.rotated_matmul((va, &la), (&b, &lb), dims, out_shape, true)? {
                        return Ok(v);
                    }
                }
            }
            if let Some(v) = self.rotated_matmul((va, &la), (vb, &lb), dims, out_shape, false)? {
                return Ok(v);
            }
            if let Some(v) = self.rotated_pv((va, &la), (vb, &lb), dims, out_shape)? {
                return Ok(v);
            }
        }
        let slice = nb * i_n * j_n;
        let stride = if t_numel <= self.slots { slice } else { slice.next_power_of_two() };
        let fill = stride <= self.slots;
        // Each K-slice is laid out as the product itself will be (`policy`'s layout of
        // `[batch, I, J]`), so the sum over K is K shifts by the slice stride straight into the
        // output's placement: column-major outputs otherwise cost a transpose of every slice
        // (2032 diagonals for the toy encoder's P·V instead of 16), and operands in column-major
        // (token-fastest) placements spread with few diagonals.
        let slice_layout = self.policy.layout_for(&[nb, i_n, j_n]);
        let (i_stride, j_stride) = (slice_layout.position(j_n.min(slice - 1)), slice_layout.position(1.min(slice - 1)));
        let (i_stride, j_stride) = (if i_n > 1 { i_stride } else { 0 }, if j_n > 1 { j_stride } else { 0 });
        let t_numel = if fill { k_n * stride } else { t_numel };
        let mut ma = Vec::with_capacity(t_numel);
        let mut mb = Vec::with_capacity(t_numel);
        let mut mr = Vec::with_capacity(t_numel);
        for bp in 0..nb {
            let (ab, bb) = (bidx(bp, sa), bidx(bp, sb));
            for i in 0..i_n {
                for j in 0..j_n {
                    for k in 0..k_n {
                        let t = if fill {
                            k * stride + slice_layout.position((bp * i_n + i) * j_n + j)
                        } else {
                            ((k * nb + bp) * i_n + i) * j_n + j
                        };
                        // With `fill`, the maps only place A at j = 0 and B at i = 0 ("spread",
                        // few diagonals); rotations then copy them along J and I.
                        if !fill || j == 0 {
                            ma.push((t, (ab * i_n + i) * k_n + k, 1.0));
                        }
                        if !fill || i == 0 {
                            mb.push((t, (bb * k_n + k) * j_n + j, 1.0));
                        }
                        mr.push(((bp * i_n + i) * j_n + j, t, 1.0));
                    }
                }
            }
        }
        ma.sort_by_key(|&(o, e, _)| (o, e));
        mb.sort_by_key(|&(o, e, _)| (o, e));
        let t_shape = [t_numel];
        let xa =
            self.apply(va.clone(), AffineMap { out_numel: t_numel, parts: vec![ma.into()], offset: None }, &t_shape)?;
        let xb =
            self.apply(vb.clone(), AffineMap { out_numel: t_numel, parts: vec![mb.into()], offset: None }, &t_shape)?;
        let (Val::Ct { regs: mut xa, .. }, Val::Ct { regs: mut xb, .. }) =
            (self.materialize(xa)?, self.materialize(xb)?)
        else {
            return Err(BackendError::Internal("ct_matmul materialize".into()));
        };
        if fill {
            xa = xa.into_iter().map(|r| self.replicate(r, j_n, j_stride)).collect::<Result<_, _>>()?;
            xb = xb.into_iter().map(|r| self.replicate(r, i_n, i_stride)).collect::<Result<_, _>>()?;
        }
        let mut prod = Vec::new();
        for (&x, &y) in xa.iter().zip(&xb) {
            prod.push(self.b.mul(x, y)?);
        }
        // The sum over K stays pending, so it fuses with what follows (head merge, projection).
        let map = AffineMap { out_numel: numel(out_shape), parts: vec![mr.into()], offset: None };
        Ok(Val::Lazy { base: prod, base_layout: Layout::row_major(&[t_numel]), map, shape: out_shape.to_vec() })
    }

    /// Whether `base` holds the products of [`Self::rotated_matmul`].
    fn is_rotated_product(&self, base: &[Reg]) -> bool {
        base.first().is_some_and(|r| self.rotated_products.contains(r))
    }

    /// The layout a value has once materialized (see [`Self::placement_for`]).
    fn layout_once_materialized(&self, v: &Val) -> Option<Layout> {
        match v {
            Val::Ct { layout, .. } => Some(layout.clone()),
            Val::Lazy { base, base_layout, map, shape } => {
                Some(self.placement_for(map, base_layout, shape, self.is_rotated_product(base)))
            }
            _ => None,
        }
    }

    /// `A·B` for `A: [.., T, K]`, `B: [.., K, T]` placed as mirror images, element `A[b, x, k]`
    /// in the slot of `B[b, k, x]` (`Q` and `Kᵀ` of a column-major activation: both token-fastest,
    /// so the expand method's spreads must transpose one of them, 6144 diagonals per MiniLM layer).
    /// Instead, by rotated diagonals (the Halevi–Shoup order, as THOR multiplies attention):
    /// block `r` of the product space holds `A` and `B` rotated within its token axis by `r`
    /// (`B[b, k, (x + r) mod T]` at `A[b, x, k]`'s slot: two diagonals per `r`), so one
    /// multiplication gives `A[b, x, k]·B[b, k, x + r]` for all `r`; `A` is copied into the blocks
    /// by doubling; the sum over `K` is rotate-and-sum at `K`'s stride (no level: the following
    /// map reads only the `k = 0` slots, so the partial sums elsewhere never reach a result); and
    /// `S[b, x, (x + r) mod T]` is a pending map from the `k = 0` slots. `None` when the operands
    /// are not placed so (row-major programs), or `A` spans more than one ciphertext.
    fn rotated_matmul(
        &mut self,
        (va, la): (&Val, &Layout),
        (vb, lb): (&Val, &Layout),
        (nb, i_n, k_n, j_n): (usize, usize, usize, usize),
        out_shape: &[usize],
        center: bool,
    ) -> Result<Option<Val>, BackendError> {
        if i_n != j_n || i_n < 2 || !unbroadcast(va, vb, (nb, i_n, k_n, j_n)) {
            return Ok(None);
        }
        let numel_a = nb * i_n * k_n;
        let s = self.slots;
        let cts_a = numel_a.div_ceil(s);
        // Within one ciphertext, blocks of a power of two side by side; over several, each block
        // is `A`'s ciphertexts (BERT-base: 3 per head group, 128 blocks).
        let block = if cts_a <= 1 { numel_a.next_power_of_two() } else { cts_a * s };
        let pos_a = |bp: usize, x: usize, k: usize| la.position((bp * i_n + x) * k_n + k);
        let pos_b = |bp: usize, k: usize, x: usize| lb.position((bp * k_n + k) * j_n + x);
        // Mirror images, and K on one stride inside one ciphertext (for the rotate-and-sum).
        let k_stride = if k_n > 1 { pos_a(0, 0, 1).wrapping_sub(pos_a(0, 0, 0)) } else { 0 };
        for bp in 0..nb {
            for x in 0..i_n {
                let first = pos_a(bp, x, 0);
                for k in 0..k_n {
                    let p = pos_a(bp, x, k);
                    if p != pos_b(bp, k, x) || p != first.wrapping_add(k * k_stride) || p / s != first / s {
                        return Ok(None);
                    }
                }
            }
        }
        let (Val::Ct { regs: ra, .. }, Val::Ct { regs: rb, layout: lb, .. }) =
            (self.materialize_in(va.clone(), la)?, self.materialize_in(vb.clone(), lb)?)
        else {
            return Err(BackendError::Internal("rotated matmul operands".into()));
        };
        if ra.len() != cts_a.max(1) {
            return Ok(None);
        }
        let total = j_n * block;
        // `B` needs levels for its rotation map, the product and the scores' map; `A` the last two.
        let (ra, rb) = self.refresh_before_product(total, (ra, 2), (rb, 3))?;
        // Every product ciphertext holds `A` (one ciphertext: `per_ct` copies of it; several:
        // ciphertext `q` of block `r` is `A`'s ciphertext `q`).
        let a_regs = if cts_a <= 1 {
            let per_ct = (s / block).min(j_n);
            vec![self.replicate(ra[0], per_ct, block)?]
        } else {
            ra
        };
        // B rotated by `r` within its token axis: runs along the tokens, cut where they wrap.
        let entries = (0..j_n).flat_map(|r| {
            (0..nb).flat_map(move |bp| {
                (0..k_n).flat_map(move |k| {
                    (0..i_n).map(move |x| (r * block + pos_a(bp, x, k), (bp * k_n + k) * j_n + (x + r) % j_n, 1.0))
                })
            })
        });
        let map = AffineMap { out_numel: total, parts: vec![Part::compressed(entries)], offset: None };
        let xb = self.emit(&[(rb, lb)], &map, &Layout::row_major(&[total]))?;
        let xb = if center { self.center_blocks(xb, j_n, block)? } else { xb };
        let mut prod = Vec::with_capacity(xb.len());
        for (q, &y) in xb.iter().enumerate() {
            let a = a_regs[q % a_regs.len()];
            let p = self.b.mul(a, y)?;
            prod.push(self.shifted_sum(p, k_n, k_stride, false)?);
        }
        // Centered blocks hold `T·(B − mean B)`.
        let weight = if center { 1.0 / j_n as f64 } else { 1.0 };
        let mut mr = Vec::with_capacity(nb * i_n * j_n);
        for bp in 0..nb {
            for x in 0..i_n {
                for j in 0..j_n {
                    let r = (j + j_n - x) % j_n;
                    mr.push(((bp * i_n + x) * j_n + j, r * block + pos_a(bp, x, 0), weight));
                }
            }
        }
        let map = AffineMap { out_numel: numel(out_shape), parts: vec![mr.into()], offset: None };
        if let Some(&p) = prod.first() {
            self.rotated_products.insert(p);
        }
        Ok(Some(Val::Lazy { base: prod, base_layout: Layout::row_major(&[total]), map, shape: out_shape.to_vec() }))
    }

    /// `T·x − Σ_r x_r` for the `T` rotated copies of `B` in the blocks of a rotated product
    /// (block `r` holds `B` rotated by `r` along its token axis, so the blocks' sum is `T` times the
    /// token mean everywhere): the centered keys times `T`, with integer weights (no level).
    /// - Blocks within a ciphertext (a power of two each, unused slots zero): per ciphertext, the
    ///   cyclic rotate-and-sum over all `S/block` block positions puts that ciphertext's block sum
    ///   at every block, and the ciphertexts' sums add up. When all blocks sit in one ciphertext
    ///   filling at most half of it, a copy of them placed after them makes the window sum from
    ///   each block cover all `T` (`log₂ T + 1` rotations instead of `log₂(S/block)`; the copy's
    ///   slots end as bounded garbage that the product with `A`, zero there, clears).
    /// - Blocks of several ciphertexts: additions.
    fn center_blocks(&mut self, xb: Vec<Reg>, t: usize, block: usize) -> Result<Vec<Reg>, BackendError> {
        let s = self.slots;
        let total = t * block;
        let sums: Vec<Reg> = if block >= s {
            let per_block = xb.len() / t;
            let mut sums = Vec::with_capacity(per_block);
            for q in 0..per_block {
                let mut acc = xb[q];
                for r in 1..t {
                    acc = self.b.add(acc, xb[r * per_block + q])?;
                }
                sums.push(acc);
            }
            sums
        } else if xb.len() == 1 && 2 * total <= s {
            let copy = self.b.rotate(xb[0], (s - total) as i64);
            self.stats.rotations += 1;
            let x2 = self.b.add(xb[0], copy)?;
            vec![self.shifted_sum(x2, t, block, false)?]
        } else {
            let mut acc: Option<Reg> = None;
            for &x in &xb {
                let sum = self.shifted_sum(x, s / block, block, false)?;
                acc = Some(match acc {
                    Some(a) => self.b.add(a, sum)?,
                    None => sum,
                });
            }
            acc.into_iter().collect()
        };
        let mut out = Vec::with_capacity(xb.len());
        for (i, &x) in xb.iter().enumerate() {
            let scaled = self.b.mul_scalar(x, t as f64)?;
            out.push(self.b.sub(scaled, sums[i % sums.len()])?);
        }
        Ok(out)
    }

    /// `P·V` for skewed `P: [.., T, T]` (attention weights from [`Self::rotated_matmul`]) and
    /// `V: [.., T, C]`, by the same rotated diagonals: block `r` holds `P[b, x, (x + r) mod T]`
    /// at `V[b, x, c]`'s slot for every `c` (placed at `c = 0`, then copied along `C` by
    /// doubling) and `V[b, (x + r) mod T, c]` (`V` rotated within its token axis); one product
    /// per ciphertext, the sum over `r` by rotate-and-sum over the blocks and additions across
    /// ciphertexts, and the result sits where `V` sits. `None` when `P` is not skewed, `V` spans
    /// more than one ciphertext or its `C` axis is not on one stride.
    fn rotated_pv(
        &mut self,
        (va, la): (&Val, &Layout),
        (vb, lv): (&Val, &Layout),
        (nb, i_n, k_n, j_n): (usize, usize, usize, usize),
        out_shape: &[usize],
    ) -> Result<Option<Val>, BackendError> {
        if i_n != k_n || !unbroadcast(va, vb, (nb, i_n, k_n, j_n)) {
            return Ok(None);
        }
        let s = self.slots;
        let numel_v = numel(vb.shape());
        let cts_v = numel_v.div_ceil(s);
        // As in `rotated_matmul`: power-of-two blocks in one ciphertext, or `V`'s ciphertexts.
        let block = if cts_v <= 1 { numel_v.next_power_of_two() } else { cts_v * s };
        if !la.is_skewed() {
            return Ok(None);
        }
        let pos_v = |bp: usize, x: usize, c: usize| lv.position((bp * k_n + x) * j_n + c);
        let c_stride = if j_n > 1 { pos_v(0, 0, 1).wrapping_sub(pos_v(0, 0, 0)) } else { 0 };
        for bp in 0..nb {
            for x in 0..k_n {
                let first = pos_v(bp, x, 0);
                for c in 0..j_n {
                    let p = pos_v(bp, x, c);
                    if p != first.wrapping_add(c * c_stride) || p / s != first / s {
                        return Ok(None);
                    }
                }
            }
        }
        let (Val::Ct { regs: rp, layout: la, .. }, Val::Ct { regs: rv, layout: lv, .. }) =
            (self.materialize_in(va.clone(), la)?, self.materialize_in(vb.clone(), lv)?)
        else {
            return Err(BackendError::Internal("rotated P·V operands".into()));
        };
        let t = k_n;
        let total = t * block;
        // Both operands need levels for their map, the product and the result's map.
        let (rp, rv) = self.refresh_before_product(total, (rp, 3), (rv, 3))?;
        let per_ct = (s / block).min(t);
        let mp = (0..t).flat_map(|r| {
            (0..nb).flat_map(move |bp| {
                (0..i_n).map(move |x| (r * block + pos_v(bp, x, 0), (bp * i_n + x) * k_n + (x + r) % t, 1.0))
            })
        });
        // `V` rotated by `r` within its token axis: runs along the tokens, cut where they wrap.
        let mv = (0..t).flat_map(|r| {
            (0..nb).flat_map(move |bp| {
                (0..j_n).flat_map(move |c| {
                    (0..i_n).map(move |x| (r * block + pos_v(bp, x, c), (bp * k_n + (x + r) % t) * j_n + c, 1.0))
                })
            })
        });
        let all = Layout::row_major(&[total]);
        let (mp, mv) = (Part::compressed(mp), Part::compressed(mv));
        let xp = self.emit(&[(rp, la)], &AffineMap { out_numel: total, parts: vec![mp], offset: None }, &all)?;
        let xv = self.emit(&[(rv, lv)], &AffineMap { out_numel: total, parts: vec![mv], offset: None }, &all)?;
        // One ciphertext: the blocks of each product are folded by rotate-and-sum, and the
        // products added; several: product `q` adds into `V`'s ciphertext `q mod cts_v`.
        let mut accs: Vec<Option<Reg>> = vec![None; if cts_v <= 1 { 1 } else { cts_v }];
        for (q, (&p, &v)) in xp.iter().zip(&xv).enumerate() {
            let p = self.replicate(p, j_n, c_stride)?;
            let prod = self.b.mul(p, v)?;
            let folded = if cts_v <= 1 { self.shifted_sum(prod, per_ct, block, false)? } else { prod };
            let slot = q % accs.len();
            accs[slot] = Some(match accs[slot] {
                Some(a) => self.b.add(a, folded)?,
                None => folded,
            });
        }
        let Some(accs) = accs.into_iter().collect::<Option<Vec<Reg>>>() else { return Ok(None) };
        let base_len = if cts_v <= 1 { per_ct * block } else { cts_v * s };
        let mut mo = Vec::with_capacity(nb * i_n * j_n);
        for bp in 0..nb {
            for x in 0..i_n {
                for c in 0..j_n {
                    mo.push(((bp * i_n + x) * j_n + c, pos_v(bp, x, c), 1.0));
                }
            }
        }
        let map = AffineMap { out_numel: numel(out_shape), parts: vec![mo.into()], offset: None };
        Ok(Some(Val::Lazy { base: accs, base_layout: Layout::row_major(&[base_len]), map, shape: out_shape.to_vec() }))
    }

    /// The operands of a rotated product over `total` positions, each refreshed now if it has
    /// fewer than its `need` levels left (its map, the product, the result's map), when the
    /// product space outnumbers the operands more than 4× — otherwise every product ciphertext
    /// would be refreshed before the result's map (BERT-base: 384 per product, from 3 + 3).
    fn refresh_before_product(
        &mut self,
        total: usize,
        (a, need_a): (Vec<Reg>, usize),
        (b, need_b): (Vec<Reg>, usize),
    ) -> Result<(Vec<Reg>, Vec<Reg>), BackendError> {
        if total.div_ceil(self.slots.max(1)) <= 4 * (a.len() + b.len()) {
            return Ok((a, b));
        }
        let mut refresh = |regs: Vec<Reg>, need: usize| -> Result<Vec<Reg>, BackendError> {
            regs.into_iter().map(|r| self.b.refresh_for(r, need)).collect()
        };
        Ok((refresh(a, need_a)?, refresh(b, need_b)?))
    }

    /// Copies the content at block offset 0 to offsets `stride·1 … stride·(count−1)` of each block of
    /// `stride·count` slots (the other offsets are zero): by doubling, `x + rot(x, stride)` holds two
    /// copies, then four, …; the copies of the binary digits of `count` are placed side by side
    /// (`⌊log₂ count⌋ + popcount(count) − 1` rotations, e.g. 5 for 17 where one rotation per copy
    /// would be 16). No level.
    fn replicate(&mut self, x: Reg, count: usize, stride: usize) -> Result<Reg, BackendError> {
        self.shifted_sum(x, count, stride, true)
    }

    /// `Σ_{c < count} x` shifted by `c·stride` slots: toward higher slots (`up`, [`Self::replicate`])
    /// or toward lower ones (rotate-and-sum: slot `p` gets `x[p] + x[p + stride] + …`), by the
    /// same doubling.
    fn shifted_sum(&mut self, x: Reg, count: usize, stride: usize, up: bool) -> Result<Reg, BackendError> {
        let s = self.slots;
        let right = |by: usize| if up { ((s - by % s) % s) as i64 } else { (by % s) as i64 };
        let mut acc: Option<Reg> = None;
        let mut placed = 0usize; // copies in `acc`: offsets [0, placed)
        let mut pow = x; // copies at offsets [0, have)
        let mut have = 1usize;
        let mut rest = count;
        while rest > 0 {
            if rest & 1 == 1 {
                acc = Some(match acc {
                    None => pow,
                    Some(a) => {
                        let r = self.b.rotate(pow, right(placed * stride));
                        self.stats.rotations += 1;
                        self.b.add(a, r)?
                    }
                });
                placed += have;
            }
            rest >>= 1;
            if rest > 0 {
                let r = self.b.rotate(pow, right(have * stride));
                self.stats.rotations += 1;
                pow = self.b.add(pow, r)?;
                have *= 2;
            }
        }
        Ok(acc.unwrap_or(x))
    }

    /// Lowers an evaluation plan on one ciphertext whose first `valid` slots hold data.
    /// With `input_mapped`, `x` already holds the plan's affine map of its input.
    fn plan(&mut self, plan: &EvalPlan, x: Reg, valid: usize, input_mapped: bool) -> Result<Reg, BackendError> {
        use PlanVal as P;
        type Lin = LinForm;
        let mut regs: Vec<P> = Vec::with_capacity(plan.ops().len());
        let mut lins: Vec<Lin> = Vec::new();
        let get = |regs: &Vec<P>, r: polyhe_passes::Reg| {
            regs.get(r.0).copied().ok_or(BackendError::Internal(format!("plan register {r}")))
        };
        // `a·u + b·v` over linear forms.
        let combine = |lins: &Vec<Lin>, u: P, a: f64, v: P, b: f64| -> Lin {
            let mut terms: Vec<(Reg, f64)> = Vec::new();
            let mut k = 0.0;
            for (p, w) in [(u, a), (v, b)] {
                let (ts, c) = p.linear(lins);
                k += w * c;
                for (r, c) in ts {
                    match terms.iter_mut().find(|(q, _)| *q == r) {
                        Some(t) => t.1 += w * c,
                        None => terms.push((r, w * c)),
                    }
                }
            }
            (terms, k)
        };
        for op in plan.ops() {
            let v = match *op {
                PlanOp::Input => P::Ct(x),
                PlanOp::Const(c) => P::S(c),
                PlanOp::Affine { src, .. } if input_mapped && src.0 == 0 => P::Ct(x),
                PlanOp::Affine { src, scale, shift } => match get(&regs, src)? {
                    P::S(v) => P::S(scale * v + shift),
                    p => {
                        lins.push(combine(&lins, p, scale, P::S(shift), 1.0));
                        P::Lin(lins.len() - 1)
                    }
                },
                PlanOp::Mul(a, b) => match (get(&regs, a)?, get(&regs, b)?) {
                    (P::S(u), P::S(v)) => P::S(u * v),
                    (p, P::S(v)) | (P::S(v), p) => {
                        lins.push(combine(&lins, p, v, P::S(0.0), 0.0));
                        P::Lin(lins.len() - 1)
                    }
                    (p, q) => {
                        let r = self.plan_value(&mut regs, &lins, a.0, p, valid, x)?;
                        let s = self.plan_value(&mut regs, &lins, b.0, q, valid, x)?;
                        P::Ct(self.b.mul(r, s)?)
                    }
                },
                PlanOp::MulConst(a, c) => match get(&regs, a)? {
                    P::S(u) => P::S(u * c),
                    p => {
                        lins.push(combine(&lins, p, c, P::S(0.0), 0.0));
                        P::Lin(lins.len() - 1)
                    }
                },
                PlanOp::Add(a, b) | PlanOp::Sub(a, b) => {
                    let w = if matches!(op, PlanOp::Sub(..)) { -1.0 } else { 1.0 };
                    match (get(&regs, a)?, get(&regs, b)?) {
                        (P::S(u), P::S(v)) => P::S(u + w * v),
                        (p, q) => {
                            lins.push(combine(&lins, p, 1.0, q, w));
                            P::Lin(lins.len() - 1)
                        }
                    }
                }
                PlanOp::AddConst(a, c) => match get(&regs, a)? {
                    P::S(u) => P::S(u + c),
                    p => {
                        lins.push(combine(&lins, p, 1.0, P::S(c), 1.0));
                        P::Lin(lins.len() - 1)
                    }
                },
            };
            regs.push(v);
        }
        let (terms, k) = get(&regs, plan.output())?.linear(&lins);
        self.emit_linear(&terms, k, valid, x)
    }

    /// A plan register as a ciphertext (a pending linear form emitted once; the register then
    /// holds the ciphertext for its other uses).
    fn plan_value(
        &mut self,
        regs: &mut [PlanVal],
        lins: &[LinForm],
        index: usize,
        p: PlanVal,
        valid: usize,
        x: Reg,
    ) -> Result<Reg, BackendError> {
        if let PlanVal::Ct(r) = p {
            return Ok(r);
        }
        let (terms, k) = p.linear(lins);
        let r = self.emit_linear(&terms, k, valid, x)?;
        if let Some(slot) = regs.get_mut(index) {
            *slot = PlanVal::Ct(r);
        }
        Ok(r)
    }

    /// `Σ c·ct + k` on the first `valid` slots (`x` supplies a ciphertext for a constant).
    fn emit_linear(&mut self, terms: &[(Reg, f64)], k: f64, valid: usize, x: Reg) -> Result<Reg, BackendError> {
        let terms: Vec<(Reg, f64)> = terms.iter().copied().filter(|&(_, c)| c != 0.0).collect();
        let r = if terms.is_empty() { self.b.mul_scalar(x, 0.0)? } else { self.b.linear_combination(&terms)? };
        Ok(if k != 0.0 || terms.is_empty() { self.b.add_plain(r, vec![k; valid]) } else { r })
    }
}

/// Whether `A: [.., I, K]` and `B: [.., K, J]` of a batched product both hold every batch entry
/// (no broadcast batch axis): the rotated products place them block for block.
fn unbroadcast(va: &Val, vb: &Val, (nb, i_n, k_n, j_n): (usize, usize, usize, usize)) -> bool {
    let (sa, sb) = (va.shape(), vb.shape());
    sa.len() == sb.len() && numel(sa) == nb * i_n * k_n && numel(sb) == nb * k_n * j_n
}

/// A register of a polynomial's evaluation plan while it is lowered: a ciphertext, a scalar, or a
/// pending linear combination `Σ c·ct + k` (an index into the plan's [`LinForm`]s), emitted as one
/// [`Builder::linear_combination`] when a product or the output needs it (Chebyshev sums
/// `Σ c_i·T_i` cost one rescale, not one per term and per level mismatch).
#[derive(Clone, Copy)]
enum PlanVal {
    Ct(Reg),
    S(f64),
    Lin(usize),
}

/// `(terms, constant)` of a pending linear combination.
type LinForm = (Vec<(Reg, f64)>, f64);

impl PlanVal {
    /// The register as a linear form (a ciphertext is `1·ct`, a scalar its constant).
    fn linear(self, lins: &[LinForm]) -> LinForm {
        match self {
            PlanVal::Ct(r) => (vec![(r, 1.0)], 0.0),
            PlanVal::S(c) => (Vec::new(), c),
            PlanVal::Lin(i) => lins.get(i).cloned().unwrap_or_default(),
        }
    }
}

fn ct(a: Option<&Val>, op: &Op, name: &str) -> Result<(Vec<Reg>, Vec<usize>, Layout), BackendError> {
    match a {
        Some(Val::Ct { regs, shape, layout }) => Ok((regs.clone(), shape.clone(), layout.clone())),
        _ => Err(unsupported(op, name, "expected an encrypted operand")),
    }
}

impl Val {
    /// The ciphertexts an encrypted value is (or is a pending map of), with their layout.
    fn base(&self) -> Option<(&[Reg], &Layout)> {
        match self {
            Val::Ct { regs, layout, .. } => Some((regs, layout)),
            Val::Lazy { base, base_layout, .. } => Some((base, base_layout)),
            _ => None,
        }
    }

    fn is_enc(&self) -> bool {
        matches!(self, Val::Ct { .. } | Val::Lazy { .. })
    }
    /// The same encrypted value (equal ciphertexts, or the same pending map of the same ones).
    fn same_enc(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Ct { regs: a, shape: s, layout: x }, Val::Ct { regs: b, shape: t, layout: y }) => {
                a == b && s == t && x == y
            }
            (
                Val::Lazy { base: a, base_layout: n, map: m, shape: s },
                Val::Lazy { base: b, base_layout: k, map: l, shape: t },
            ) => a == b && n == k && s == t && m == l,
            _ => false,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            Val::Ct { shape, .. } | Val::Lazy { shape, .. } => shape,
            Val::Plain(t) => t.shape(),
            Val::Client(_) => &[],
        }
    }
}

/// Elementwise results whose every consumer broadcasts them to one larger shape `H` are computed
/// at `H` directly (`hint[v] = Some(H)`): a chebyshev of a row sum that multiplies a whole row
/// (softmax's 1/Σ, LayerNorm's 1/σ) then needs no broadcast map — one level less — and the
/// broadcast composes with the pending reduction before the polynomial. Only for values of one
/// ciphertext (`numel(H) ≤ slots`, so the ciphertext count is unchanged) that are not graph
/// outputs; consumers are elementwise ops (add, sub, mul, neg, chebyshev), which accept operands
/// of any shape that broadcasts to theirs.
fn broadcast_hints(
    g: &Graph,
    live: &SecondaryMap<Value, bool>,
    enc: &SecondaryMap<Value, bool>,
    slots: usize,
) -> SecondaryMap<Value, Option<Vec<usize>>> {
    // None: no consumer seen; Some(None): not widenable; Some(Some(H)): every consumer so far wants H.
    let mut want: SecondaryMap<Value, Option<Option<Vec<usize>>>> = SecondaryMap::new();
    let mut hint: SecondaryMap<Value, Option<Vec<usize>>> = SecondaryMap::new();
    for &v in &g.outputs {
        want[v] = Some(None);
    }
    for (_, nd) in g.nodes.iter().rev() {
        if !nd.outputs.iter().any(|&o| live[o]) {
            continue;
        }
        let elementwise = matches!(nd.op, Op::Add | Op::Sub | Op::Mul | Op::Neg | Op::Chebyshev { .. });
        for &o in nd.outputs.iter().filter(|_| elementwise) {
            let shape = &g.ty(o).shape;
            if let Some(Some(h)) = &want[o] {
                let rank_ok =
                    h.len() >= shape.len() && shape.iter().rev().zip(h.iter().rev()).all(|(&s, &t)| s == t || s == 1);
                if enc[o] && rank_ok && numel(h) > numel(shape) && numel(h) <= slots {
                    hint[o] = Some(h.clone());
                }
            }
        }
        let target = match nd.outputs.as_slice() {
            [o] if elementwise => Some(hint[*o].clone().unwrap_or_else(|| g.ty(*o).shape.clone())),
            _ => None,
        };
        for &i in &nd.inputs {
            want[i] = match (&want[i], &target) {
                (None, t) => Some(t.clone()),
                (Some(Some(h)), Some(t)) if h == t => Some(Some(h.clone())),
                _ => Some(None),
            };
        }
    }
    hint
}

/// Ops lowered as affine maps of their encrypted operand.
fn is_affine_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Expand { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Gather { .. }
            | Op::GatherElements { .. }
            | Op::MatMul
            | Op::Gemm { .. }
            | Op::Conv { .. }
            | Op::ReduceSum { .. }
            | Op::ReduceMean { .. }
    )
}

/// `map` (over elements) moved to positions: output element `o` at `out.position(o)`, element `e`
/// of operand `i` at `inputs[i].position(e)`.
fn place<'a>(map: &AffineMap, inputs: impl Iterator<Item = &'a Layout>, out: &Layout) -> AffineMap {
    let ins: Vec<&Layout> = inputs.collect();
    if out.is_row_major() && ins.iter().all(|l| l.is_row_major()) {
        return map.clone();
    }
    let parts = map.parts.iter().enumerate().map(|(i, part)| part.placed(ins.get(i).copied(), out)).collect();
    let offset = map.offset.as_ref().map(|off| out.scatter(off));
    AffineMap { out_numel: map.out_numel, parts, offset }
}

#[cfg(test)]
mod tests {
    #[test]
    fn layer_indices_fold_in_trace_names() {
        assert_eq!(super::fold_layer_index("/encoder/layer.11/attention/MatMul"), "/encoder/layer.*/attention/MatMul");
        assert_eq!(super::fold_layer_index("layer.2/x/layer.30"), "layer.*/x/layer.*");
        assert_eq!(super::fold_layer_index("/pooling/Mul.eg2"), "/pooling/Mul.eg2");
        assert_eq!(super::fold_layer_index("layer.norm"), "layer.norm");
    }
}
