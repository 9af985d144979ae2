//! What the client needs to build a compiled program's inputs, written next to the program so
//! `polyhe encrypt` (or a host program linking only the runtime and the IR) never lowers again.
//!
//! Requires: a [`CkksCompiled`] and the poly-stage graph it was lowered from.
//! Guarantees: [`ClientPlan::inputs`] gives exactly what [`crate::program_inputs`] gives for the
//! same graph inputs, from the plan and the client head alone: one entry per program input port,
//! in port order, each either a graph input or a value of the head graph (the plaintext ops the
//! client computes before encryption, e.g. an embedding lookup), packed when the lowering chose a
//! packing. The plan names the program it belongs to by a digest of its bytes, so a plan and a
//! program from different compiles are refused instead of silently producing a misread input.

use serde::{Deserialize, Serialize};

use polyhe_ir::{Graph, Tensor};

use crate::{BackendError, CkksCompiled, InputPacking};

/// Where one program input port's data comes from (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PortSource {
    /// The graph input `name`, as given.
    Input { name: String, packing: Option<Vec<Option<usize>>> },
    /// Output `index` of the client head graph.
    Head { index: usize, name: String, packing: Option<Vec<Option<usize>>> },
}

/// The client side of a compiled program (`OUT/client_plan.json`, with the head graph in
/// `OUT/client_head.ir`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientPlan {
    /// FNV-1a of the program's bytes ([`program_digest`]), hexadecimal.
    pub program_digest: String,
    pub ports: Vec<PortSource>,
    /// Per float graph input, the range of its values in the calibration set: the polynomials
    /// were fitted for inputs like those ([`ClientPlan::range_violations`]).
    #[serde(default)]
    pub input_ranges: std::collections::BTreeMap<String, InputRange>,
    /// [`program_digest`] of `client_head.ir`'s bytes (empty in plans from before it was
    /// recorded): `encrypt` refuses a head edited or from another compile.
    #[serde(default)]
    pub head_digest: String,
    /// [`program_digest`] of `tail.ir`'s bytes when the compile wrote one: `decrypt` refuses a
    /// tail edited, missing, or present when the compile made none.
    #[serde(default)]
    pub tail_digest: Option<String>,
}

/// The smallest and largest value of one input over the calibration set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputRange {
    pub min: f64,
    pub max: f64,
}

impl InputRange {
    /// The range of `values` (`None` when empty or not finite).
    pub fn of(values: &[f64]) -> Option<InputRange> {
        let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        (min.is_finite() && max.is_finite()).then_some(InputRange { min, max })
    }
}

/// FNV-1a (64 bits) of a program's serialized bytes: binds a plan to its program.
pub fn program_digest(program_bytes: &[u8]) -> String {
    let mut d = Digest::default();
    d.update(program_bytes);
    d.hex()
}

/// [`program_digest`] of bytes given piece by piece (a file as it is streamed out).
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The digest so far, as [`program_digest`] writes it.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl ClientPlan {
    /// The plan of `compiled` (lowered from `graph`, its program serialized as `program_bytes`,
    /// the bytes written to program.bin: serialized once) and the client head: `graph`'s inputs,
    /// the client values as outputs, and only the nodes they need.
    pub fn new(
        graph: &Graph,
        compiled: &CkksCompiled,
        program_bytes: &[u8],
    ) -> Result<(ClientPlan, Graph), BackendError> {
        let (program, _) = compiled.runnable()?;
        let packing = |v: polyhe_ir::Value| compiled.input_packing.get(&v).map(|p: &InputPacking| p.gather.clone());
        let mut ports: Vec<PortSource> = graph
            .inputs
            .iter()
            .filter(|&&v| graph.ty(v).dtype.is_float())
            .map(|&v| PortSource::Input { name: graph.value_label(v), packing: packing(v) })
            .collect();
        for (index, &v) in compiled.client_values.iter().enumerate() {
            ports.push(PortSource::Head { index, name: graph.value_label(v), packing: packing(v) });
        }
        if ports.len() != program.inputs.len() {
            return Err(BackendError::Internal(format!(
                "client plan: {} port sources for {} program inputs",
                ports.len(),
                program.inputs.len()
            )));
        }
        // Only the constants the head's nodes read are copied (a BERT-base graph's weights are
        // gigabytes; the head is an embedding lookup at most).
        let mut needed = vec![false; graph.constants.len()];
        let mut seen = vec![false; graph.values.len()];
        let mut stack = compiled.client_values.clone();
        while let Some(v) = stack.pop() {
            match seen.get_mut(v.as_u32() as usize) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            if let Some(polyhe_ir::ValueDef::Result(n, _)) = graph.values.get(v).map(|d| &d.def) {
                if let Some(nd) = graph.nodes.get(*n) {
                    if let polyhe_ir::Op::Constant(c) = nd.op {
                        if let Some(x) = needed.get_mut(c.as_u32() as usize) {
                            *x = true;
                        }
                    }
                    stack.extend(nd.inputs.iter().copied());
                }
            }
        }
        let mut constants = cranelift_entity::PrimaryMap::new();
        for (c, t) in graph.constants.iter() {
            let keep = needed.get(c.as_u32() as usize).copied().unwrap_or(false);
            constants.push(if keep { t.clone() } else { Tensor::scalar_f32(0.0) });
        }
        let head = Graph {
            name: format!("{}_client_head", graph.name),
            values: graph.values.clone(),
            nodes: graph.nodes.clone(),
            constants,
            inputs: graph.inputs.clone(),
            outputs: compiled.client_values.clone(),
        };
        let (head, _) = polyhe_passes::prune(head);
        let plan = ClientPlan {
            program_digest: program_digest(program_bytes),
            ports,
            input_ranges: Default::default(),
            head_digest: String::new(),
            tail_digest: None,
        };
        Ok((plan, head))
    }

    /// The inputs whose values leave their calibrated range widened by `margin` of its span on
    /// each side (or are not finite), one message each naming the input and how far outside it
    /// is: the polynomials were fitted on the calibrated ranges, so such an input would decrypt
    /// to a wrong result with nothing to tell (issue: a sample ×3 gave the wrong argmax, exit 0).
    pub fn range_violations(&self, inputs: &[(String, &Tensor)], margin: f64) -> Vec<String> {
        let mut out = Vec::new();
        for (name, t) in inputs {
            let Some(r) = self.input_ranges.get(name) else { continue };
            let v = t.to_f64_vec();
            let bad = v.iter().filter(|x| !x.is_finite()).count();
            if bad > 0 {
                out.push(format!("input `{name}`: {bad} values are NaN or infinite"));
                continue;
            }
            let Some(got) = InputRange::of(&v) else { continue };
            let span = (r.max - r.min).max(f64::MIN_POSITIVE);
            let (lo, hi) = (r.min - margin * span, r.max + margin * span);
            if got.min < lo || got.max > hi {
                let outside = v.iter().filter(|&&x| x < lo || x > hi).count();
                let beyond = (lo - got.min).max(got.max - hi) / span;
                out.push(format!(
                    "input `{name}`: values in [{:.4e}, {:.4e}], calibrated on [{:.4e}, {:.4e}] (allowed with a {:.0}% margin: \
                     [{lo:.4e}, {hi:.4e}]); {outside} of {} values outside, the furthest {beyond:.2}× the calibrated span beyond",
                    got.min,
                    got.max,
                    r.min,
                    r.max,
                    margin * 100.0,
                    v.len()
                ));
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<ClientPlan, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The program's input tensors from the head graph's inputs (`graph_inputs`, in the head's
    /// input order, already checked against its declared types).
    pub fn inputs(&self, head: &Graph, graph_inputs: &[Tensor]) -> Result<Vec<Vec<f64>>, BackendError> {
        let bad = |reason: String| BackendError::Eval { op: "client plan".into(), node: head.name.clone(), reason };
        let needs_head = self.ports.iter().any(|p| matches!(p, PortSource::Head { .. }));
        let head_values = if needs_head {
            polyhe_ir::interp::run(head, graph_inputs).map_err(|e| bad(e.to_string()))?
        } else {
            Vec::new()
        };
        let pack = |name: &str, x: Vec<f64>, packing: &Option<Vec<Option<usize>>>| match packing {
            None => Ok(x),
            Some(g) => InputPacking { gather: g.clone() }
                .pack(&x)
                .ok_or_else(|| bad(format!("`{name}`: {} elements do not fit its packing", x.len()))),
        };
        self.ports
            .iter()
            .map(|p| match p {
                PortSource::Input { name, packing } => {
                    let k = head
                        .inputs
                        .iter()
                        .position(|&v| head.value_label(v) == *name)
                        .ok_or_else(|| bad(format!("the plan reads input `{name}`, which the head graph lacks")))?;
                    let t = graph_inputs.get(k).ok_or_else(|| bad(format!("input `{name}` not given")))?;
                    pack(name, t.to_f64_vec(), packing)
                }
                PortSource::Head { index, name, packing } => {
                    let t = head_values
                        .get(*index)
                        .ok_or_else(|| bad(format!("the head graph has no output {index} (`{name}`)")))?;
                    pack(name, t.to_f64_vec(), packing)
                }
            })
            .collect()
    }
}
