//! ClientTail: splits a tensor-stage graph at a cut into the part that runs encrypted and a *tail*
//! the client runs after decryption, exactly, with the f64 reference interpreter on the original ops.
//!
//! Requires: a verified tensor-stage graph (before polynomial replacement).
//!
//! Guarantees, for the returned [`ClientTail`]:
//! - `encrypted` has the original graph inputs (same order and names) and, as outputs, the cut values
//!   (first the inputs the tail reads, in the tail's node order, then any original output that no tail
//!   node computes, passed through); each is named (its original name, else `<node>:<k>`).
//! - `tail` has one input per cut value (same name and type) and the original outputs, in order and
//!   with their names; it reads no model input and holds every constant it needs (constant-only
//!   subgraphs it uses are copied into it).
//! - `interp::run(tail, interp::run(encrypted, x)) == interp::run(g, x)`: both halves are the original
//!   nodes, unchanged; both pass the verifier. Node names are kept, so a calibration of the whole
//!   model applies to `encrypted`.
//!
//! Cut selection:
//! - [`TailCut::Nodes`]: the tail is the named nodes and everything downstream of them.
//! - [`TailCut::Auto`]: the tail starts at the last non-polynomial ops on input-dependent values (those
//!   with no other such op downstream, e.g. a final LayerNorm, Softmax, LogSoftmax), plus any
//!   non-polynomial op whose results feed only the tail or the outputs (the final norm before a
//!   pooler's tanh). Candidates whose tail would read a model input are skipped.
//!
//! Errors ([`PassError::ClientTail`]): an unknown node name, a named node that feeds no output, a tail
//! that would need a model input, no output computed by the tail, a model with no non-polynomial op
//! for `auto`. Test: `passes/tests/client_tail.rs`.

use std::collections::BTreeSet;

use cranelift_entity::SecondaryMap;
use polyhe_ir::{verify::verify, Graph, Node, Value, ValueDef};
use serde::Serialize;

use crate::error::PassError;
use crate::to_poly::is_poly_stage_op;

/// Where the client tail starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailCut {
    /// The last non-polynomial ops feeding the outputs (module doc).
    Auto,
    /// Cut right before these nodes (by node name).
    Nodes(Vec<String>),
}

impl std::str::FromStr for TailCut {
    type Err = String;
    /// `auto`, or a comma-separated list of node names.
    fn from_str(s: &str) -> Result<TailCut, String> {
        if s == "auto" {
            return Ok(TailCut::Auto);
        }
        let names: Vec<String> = s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect();
        if names.is_empty() {
            return Err(format!("`{s}`: expected `auto` or NODE[,NODE...]"));
        }
        Ok(TailCut::Nodes(names))
    }
}

/// What runs where, for the reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TailSummary {
    /// The nodes the cut was placed before.
    pub cut_nodes: Vec<String>,
    /// The values decrypted and handed to the tail.
    pub cut_values: Vec<String>,
    /// `op node` for each non-constant tail node, in order.
    pub tail_ops: Vec<String>,
}

impl std::fmt::Display for TailSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "client tail (after decryption, exact f64): {} ops from {}; decrypted cut values: {}",
            self.tail_ops.len(),
            self.cut_nodes.join(", "),
            self.cut_values.join(", ")
        )
    }
}

/// The split graph (module doc).
#[derive(Debug, Clone)]
pub struct ClientTail {
    pub encrypted: Graph,
    pub tail: Graph,
    pub summary: TailSummary,
}

fn err(msg: impl Into<String>) -> PassError {
    PassError::ClientTail(msg.into())
}

/// Splits `g` at `cut` (module doc).
pub fn split_client_tail(g: &Graph, cut: &TailCut) -> Result<ClientTail, PassError> {
    // Which values depend on a model input (the rest is constant folding material).
    let mut dynamic: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &g.inputs {
        dynamic[v] = true;
    }
    let mut consumers: SecondaryMap<Value, Vec<Node>> = SecondaryMap::new();
    for (n, d) in g.nodes.iter() {
        let any = d.inputs.iter().any(|&v| dynamic[v]);
        for &o in &d.outputs {
            dynamic[o] = any;
        }
        for &v in &d.inputs {
            consumers[v].push(n);
        }
    }
    let is_output: BTreeSet<Value> = g.outputs.iter().copied().collect();
    let node_dynamic = |n: Node| g.nodes[n].outputs.iter().any(|&o| dynamic[o]);
    // Whether some graph output is downstream of (or produced by) each node.
    let mut reaches_out: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
    for (n, d) in g.nodes.iter().rev() {
        reaches_out[n] =
            d.outputs.iter().any(|&o| is_output.contains(&o) || consumers[o].iter().any(|&c| reaches_out[c]));
    }

    let starts: Vec<Node> = match cut {
        TailCut::Nodes(names) => {
            let mut starts = Vec::new();
            for name in names {
                let n = g
                    .nodes
                    .iter()
                    .find(|(_, d)| &d.name == name)
                    .map(|(n, _)| n)
                    .ok_or_else(|| err(format!("--client-tail: the graph has no node named `{name}`")))?;
                if !reaches_out[n] {
                    return Err(err(format!("--client-tail: node `{name}` feeds no model output")));
                }
                starts.push(n);
            }
            starts
        }
        TailCut::Auto => auto_starts(g, &consumers, &is_output, &node_dynamic)?,
    };

    let in_tail = tail_nodes(g, &starts, &consumers, &node_dynamic);
    // The tail must not read model inputs: the client holds them, but a tail that needs them is not
    // "after the last encrypted need" (and the cut would not separate the outputs).
    for (_, d) in g.nodes.iter().filter(|(n, _)| in_tail[*n]) {
        if let Some(&v) = d.inputs.iter().find(|&&v| matches!(g.values[v].def, ValueDef::Input(_))) {
            return Err(err(format!(
                "--client-tail: the tail node `{}` reads the model input `{}`; cut after its last use",
                d.name,
                g.value_label(v)
            )));
        }
    }
    let produced_by_tail = |v: Value| matches!(g.values[v].def, ValueDef::Result(p, _) if in_tail[p]);
    if !g.outputs.iter().any(|&o| produced_by_tail(o)) {
        return Err(err("--client-tail: the cut leaves no model output to compute after decryption"));
    }

    // Cut values: what the tail reads from the encrypted part, then outputs passed through.
    let mut cut_values: Vec<Value> = Vec::new();
    for (_, d) in g.nodes.iter().filter(|(n, _)| in_tail[*n]) {
        for &v in &d.inputs {
            if !produced_by_tail(v) && !cut_values.contains(&v) {
                cut_values.push(v);
            }
        }
    }
    for &o in &g.outputs {
        if !produced_by_tail(o) && !cut_values.contains(&o) {
            cut_values.push(o);
        }
    }
    let label = |v: Value| match (&g.values[v].name, g.values[v].def) {
        (Some(n), _) => n.clone(),
        (None, ValueDef::Result(p, k)) => format!("{}:{k}", g.nodes[p].name),
        (None, ValueDef::Input(_)) => v.to_string(),
    };

    // The encrypted part: every non-tail node some cut value needs (constant nodes the tail copied
    // stay here too when the encrypted part uses them).
    let mut live: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
    let mut need: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for &v in &cut_values {
        need[v] = true;
    }
    for (n, d) in g.nodes.iter().rev() {
        let core_tail = in_tail[n] && node_dynamic(n);
        if !core_tail && d.outputs.iter().any(|&o| need[o]) {
            live[n] = true;
            for &v in &d.inputs {
                need[v] = true;
            }
        }
    }
    let mut encrypted = Graph::new(g.name.clone());
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_default(None);
    for &v in &g.inputs {
        map[v] = Some(encrypted.add_input(label(v), g.ty(v).clone()));
    }
    copy_nodes(g, &mut encrypted, &mut map, |n| live[n]);
    for &v in &cut_values {
        let nv = map[v].ok_or_else(|| internal("a cut value is not computed by the encrypted part"))?;
        if matches!(encrypted.values[nv].def, ValueDef::Result(..)) {
            encrypted.set_name(nv, label(v));
        }
        encrypted.outputs.push(nv);
    }

    let mut tail = Graph::new(format!("{}.tail", g.name));
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_default(None);
    for &v in &cut_values {
        map[v] = Some(tail.add_input(label(v), g.ty(v).clone()));
    }
    copy_nodes(g, &mut tail, &mut map, |n| in_tail[n]);
    for &o in &g.outputs {
        tail.outputs.push(map[o].ok_or_else(|| internal("an output is not computed by the tail"))?);
    }

    verify(&encrypted).map_err(|source| PassError::Verifier { pass: "client_tail(encrypted)", source })?;
    verify(&tail).map_err(|source| PassError::Verifier { pass: "client_tail(tail)", source })?;
    let summary = TailSummary {
        cut_nodes: starts.iter().map(|&n| g.nodes[n].name.clone()).collect(),
        cut_values: cut_values.iter().map(|&v| label(v)).collect(),
        tail_ops: g
            .nodes
            .iter()
            .filter(|(n, _)| in_tail[*n] && node_dynamic(*n))
            .map(|(_, d)| format!("{} {}", d.op.name(), d.name))
            .collect(),
    };
    Ok(ClientTail { encrypted, tail, summary })
}

fn internal(msg: &str) -> PassError {
    PassError::Internal { pass: "client_tail", msg: msg.to_string() }
}

/// The downstream closure of `starts`, plus the constant-only subgraphs it reads.
fn tail_nodes(
    g: &Graph,
    starts: &[Node],
    consumers: &SecondaryMap<Value, Vec<Node>>,
    node_dynamic: &dyn Fn(Node) -> bool,
) -> SecondaryMap<Node, bool> {
    let mut in_tail: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
    let mut produced: SecondaryMap<Value, bool> = SecondaryMap::with_default(false);
    for (n, d) in g.nodes.iter() {
        if starts.contains(&n) || d.inputs.iter().any(|&v| produced[v]) {
            in_tail[n] = true;
            for &o in &d.outputs {
                produced[o] = true;
            }
        }
    }
    // Reverse order visits consumers before producers, so whole constant chains are pulled in.
    for (n, d) in g.nodes.iter().rev() {
        if !in_tail[n] && !node_dynamic(n) && d.outputs.iter().any(|&o| consumers[o].iter().any(|&c| in_tail[c])) {
            in_tail[n] = true;
        }
    }
    in_tail
}

/// [`TailCut::Auto`]'s start nodes (module doc).
fn auto_starts(
    g: &Graph,
    consumers: &SecondaryMap<Value, Vec<Node>>,
    is_output: &BTreeSet<Value>,
    node_dynamic: &dyn Fn(Node) -> bool,
) -> Result<Vec<Node>, PassError> {
    let candidate = |n: Node| node_dynamic(n) && !is_poly_stage_op(&g.nodes[n].op);
    // Whether a candidate lies strictly downstream of each node.
    let mut cand_below: SecondaryMap<Node, bool> = SecondaryMap::with_default(false);
    for (n, d) in g.nodes.iter().rev() {
        cand_below[n] = d.outputs.iter().flat_map(|&o| consumers[o].iter()).any(|&c| candidate(c) || cand_below[c]);
    }
    let reads_input = |starts: &[Node]| {
        let t = tail_nodes(g, starts, consumers, node_dynamic);
        g.nodes.iter().any(|(n, d)| t[n] && d.inputs.iter().any(|&v| matches!(g.values[v].def, ValueDef::Input(_))))
    };
    let mut starts: Vec<Node> =
        g.nodes.keys().filter(|&n| candidate(n) && !cand_below[n] && !reads_input(&[n])).collect();
    if starts.is_empty() {
        return Err(err(
            "--client-tail auto: no non-polynomial op feeds the outputs without needing a model input; name the cut with --client-tail NODE",
        ));
    }
    // Pull earlier candidates in while all their uses are already in the tail (or are outputs).
    loop {
        let t = tail_nodes(g, &starts, consumers, node_dynamic);
        let more = g.nodes.iter().find(|(n, d)| {
            candidate(*n)
                && !t[*n]
                && d.outputs.iter().all(|&o| consumers[o].iter().all(|&c| t[c]))
                && d.outputs.iter().any(|&o| is_output.contains(&o) || !consumers[o].is_empty())
        });
        match more {
            Some((n, _)) => {
                let mut next = starts.clone();
                next.push(n);
                if reads_input(&next) {
                    break;
                }
                starts = next;
            }
            None => break,
        }
    }
    starts.sort();
    Ok(starts)
}

/// Copies the nodes `keep` selects, in storage order, with their value names.
fn copy_nodes(g: &Graph, out: &mut Graph, map: &mut SecondaryMap<Value, Option<Value>>, keep: impl Fn(Node) -> bool) {
    for (n, d) in g.nodes.iter() {
        if !keep(n) {
            continue;
        }
        let ins: Vec<Value> = d.inputs.iter().map(|&v| map[v].expect("inputs are copied before their uses")).collect();
        let op = match d.op {
            polyhe_ir::Op::Constant(c) => {
                let v = out.add_constant(g.constants[c].clone(), d.name.clone());
                map[d.outputs[0]] = Some(v);
                if let Some(name) = &g.values[d.outputs[0]].name {
                    out.set_name(v, name.clone());
                }
                continue;
            }
            ref op => op.clone(),
        };
        let tys = d.outputs.iter().map(|&o| g.ty(o).clone()).collect();
        let nn = out.add_node_typed(op, ins, tys, d.name.clone());
        for (k, &o) in d.outputs.iter().enumerate() {
            let nv = out.nodes[nn].outputs[k];
            map[o] = Some(nv);
            if let Some(name) = &g.values[o].name {
                out.set_name(nv, name.clone());
            }
        }
    }
}
