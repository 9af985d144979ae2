//! The text form of the IR: [`print()`], [`parse`] (they round-trip exactly) and [`to_dot`] (Graphviz).
//!
//! ```text
//! graph "encoder" (v0: f32[1,16,64] "input", v1: i64[1,16] "mask") {
//!   v2: f32[64,64] = const c0 @"onnx::MatMul_12"
//!   v3: f32[1,16,64] = matmul v0, v2 @"/attn/q/MatMul"
//!   v4: f32[1,16,64] = layer_norm {axis=2, epsilon=1e-5} v3, v2, v2 @"/ln"
//!   v5: f32[1,16,32] "out", v6: f32[1,16,32] = split {axis=2, sizes=[32,32]} v4 @"/split"
//! } -> (v5, v6)
//!
//! const c0: f32[64,64] = [0.1, -0.25, ...]
//! ```
//!
//! Grammar (LL(1); whitespace and newlines are insignificant, `//` starts a comment to end of line):
//!
//! ```text
//! file     := "graph" STRING "(" [decl {"," decl}] ")" "{" {stmt} "}" "->" "(" [VALUE {"," VALUE}] ")" {const}
//! decl     := VALUE ":" type [STRING]                     -- STRING is the value's name
//! type     := DTYPE "[" [INT {"," INT}] "]"               -- f32[1,16,64]; f32[] is a scalar
//! stmt     := results "=" OP [attrs] operands ["@" STRING] -- STRING is the node's name (omitted if empty)
//! results  := "(" ")" | decl {"," decl}
//! attrs    := "{" KEY "=" attr {"," KEY "=" attr} "}"
//! attr     := NUMBER | IDENT | "[" [NUMBER {"," NUMBER}] "]"
//! operands := CONST                                        -- for `const`
//!           | "(" ")" | VALUE {"," VALUE}                  -- for every other op; `()` is no operands
//! const    := "const" CONST ":" type "=" ["f64"] "[" [scalar {"," scalar}] "]"
//! ```
//!
//! Contract:
//! - Nodes print in storage order, so the parser recreates node `n{i}` from the i-th statement. Values
//!   carry their ids (`v3`): the parser requires the declared ids to be exactly `v0..vN` (in any order)
//!   and rebuilds the value arena in id order. Constants print as `c0, c1, ...` in pool order and must be
//!   parsed in that order. Hence `parse(print(g)) == g` for every graph that passes
//!   [`crate::verify::verify`] (really: whose values are each defined exactly once, whose operands come
//!   after their definitions, and whose constants are well-formed) and holds no NaN (`NaN != NaN`), and
//!   `print(parse(s)) == s` for printed `s`.
//! - Floats print with Rust's shortest round-trip form (`{:?}`), so they parse back bit-exactly,
//!   including `-0.0`, `inf`, `-inf` (NaN parses back as the canonical NaN). Attributes are `f64`. The
//!   data of an f16/f32 constant prints in `f32` precision (`0.1`, not `0.10000000149011612`) and is
//!   read back as `f32` then widened, which is exact because every element is an `f32` value; when
//!   some element is not (e.g. the result of folding in f64), the data is written `f64 [...]` and read
//!   in f64 precision.
//! - `parse` checks syntax, that every operand and graph output names a value defined earlier (inputs
//!   and earlier statements), that constant references exist, and that constant data fits its type. It
//!   does not run shape inference: call the verifier for that. It never panics; errors carry the 1-based
//!   line and column (in characters) of the offending token.
//! - With [`PrintOptions::elide_constants_over`], large constants print as a summary
//!   (`<elided 4096 values, min -0.12 max 0.13>`), which is meant for reading; `parse` rejects it.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use indexmap::IndexMap;

use crate::{
    Const, DType, Data, GeluApprox, Graph, IrError, Node, NodeData, Op, Tensor, TensorType, Value, ValueData, ValueDef,
};

/// Options for [`print()`].
#[derive(Clone, Debug, Default)]
pub struct PrintOptions {
    /// `None`: print all constant data (the output parses back). `Some(n)`: constants with more than `n`
    /// elements print as a one-line summary instead, which `parse` rejects.
    pub elide_constants_over: Option<usize>,
}

/// Number of constant elements per printed line when a constant spans several lines.
const ELEMS_PER_LINE: usize = 16;

// ------------------------------------------------------------------------------------------------
// Printing
// ------------------------------------------------------------------------------------------------

/// Prints `g` in the text form. Never panics, even on a graph the verifier would reject (dangling
/// references print as `?`), so it can be used to dump broken graphs.
pub fn print(g: &Graph, opts: &PrintOptions) -> String {
    let mut out = print_structure(g);
    if !g.constants.is_empty() {
        out.push('\n');
    }
    for (c, t) in g.constants.iter() {
        print_constant(&mut out, c, t, opts);
    }
    out
}

/// [`print`] streamed to `w`: the same text, with one constant at a time in memory (a BERT-base
/// poly graph prints 1.2 GB of weights, which as one string added that much to the compile's
/// peak memory).
pub fn write(g: &Graph, opts: &PrintOptions, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut out = print_structure(g);
    if !g.constants.is_empty() {
        out.push('\n');
    }
    w.write_all(out.as_bytes())?;
    for (c, t) in g.constants.iter() {
        out.clear();
        print_constant(&mut out, c, t, opts);
        w.write_all(out.as_bytes())?;
    }
    w.flush()
}

fn print_constant(out: &mut String, c: impl fmt::Display, t: &Tensor, opts: &PrintOptions) {
    let _ = write!(out, "const {c}: {} = ", t.ty);
    match opts.elide_constants_over {
        Some(n) if t.data.len() > n => write_summary(out, &t.data),
        _ => write_data(out, t),
    }
    out.push('\n');
}

/// The graph without its constants' data (the declarations, nodes and outputs).
fn print_structure(g: &Graph) -> String {
    let mut out = String::new();
    let mut defined = vec![false; g.values.len()];
    let mut mark = |v: Value| {
        if let Some(d) = defined.get_mut(v.as_u32() as usize) {
            *d = true;
        }
    };

    out.push_str("graph ");
    write_str_lit(&mut out, &g.name);
    out.push_str(" (");
    for (i, &v) in g.inputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_decl(&mut out, g, v);
        mark(v);
    }
    out.push_str(") {\n");

    for node in g.nodes.values() {
        out.push_str("  ");
        if node.outputs.is_empty() {
            out.push_str("()");
        }
        for (i, &v) in node.outputs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_decl(&mut out, g, v);
            mark(v);
        }
        out.push_str(" = ");
        out.push_str(node.op.name());
        let attrs = op_attrs(&node.op);
        if !attrs.is_empty() {
            out.push_str(" {");
            for (i, (k, val)) in attrs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k}={val}");
            }
            out.push('}');
        }
        if let Op::Constant(c) = node.op {
            let _ = write!(out, " {c}");
        }
        if node.inputs.is_empty() && !matches!(node.op, Op::Constant(_)) {
            // An explicit empty list keeps the grammar LL(1): without it, the next statement's first
            // value would read as an operand.
            out.push_str(" ()");
        }
        for (i, v) in node.inputs.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            let _ = write!(out, "{v}");
        }
        if !node.name.is_empty() {
            out.push_str(" @");
            write_str_lit(&mut out, &node.name);
        }
        out.push('\n');
    }

    out.push_str("} -> (");
    for (i, v) in g.outputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{v}");
    }
    out.push_str(")\n");

    // A value no input or node defines cannot be printed in a parseable way; say so rather than drop it.
    for (v, data) in g.values.iter() {
        if !defined[v.as_u32() as usize] {
            let _ = writeln!(out, "// warning: {v}: {} is not defined by any graph input or node", data.ty);
        }
    }

    out
}

/// Prints with default options (all constant data), i.e. the parseable form.
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self, &PrintOptions::default()))
    }
}

fn write_decl(out: &mut String, g: &Graph, v: Value) {
    match g.values.get(v) {
        Some(data) => {
            let _ = write!(out, "{v}: {}", data.ty);
            if let Some(name) = &data.name {
                out.push(' ');
                write_str_lit(out, name);
            }
        }
        None => {
            let _ = write!(out, "{v}: ?");
        }
    }
}

/// Writes a double-quoted string. Escapes `"`, `\` and control characters; everything else is literal,
/// so ONNX names stay readable.
fn write_str_lit(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn fmt_f64(x: f64) -> String {
    format!("{x:?}")
}

fn fmt_list<T: fmt::Display>(xs: &[T]) -> String {
    let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// The attributes of an op, in print order, as `(key, printed value)`.
fn op_attrs(op: &Op) -> Vec<(&'static str, String)> {
    match op {
        Op::Cast(d) => vec![("to", d.name().to_string())],
        Op::Clip { min, max } => {
            let mut a = Vec::new();
            if let Some(m) = min {
                a.push(("min", fmt_f64(*m)));
            }
            if let Some(m) = max {
                a.push(("max", fmt_f64(*m)));
            }
            a
        }
        Op::Gelu(approx) => vec![("approx", gelu_name(*approx).to_string())],
        Op::Chebyshev { lo, hi, coeffs } => {
            let cs: Vec<String> = coeffs.iter().map(|&c| fmt_f64(c)).collect();
            vec![("lo", fmt_f64(*lo)), ("hi", fmt_f64(*hi)), ("coeffs", format!("[{}]", cs.join(",")))]
        }
        Op::Softmax { axis } | Op::Concat { axis } | Op::Gather { axis } | Op::GatherElements { axis } => {
            vec![("axis", axis.to_string())]
        }
        Op::LayerNorm { axis, epsilon } => vec![("axis", axis.to_string()), ("epsilon", fmt_f64(*epsilon))],
        Op::BatchNorm { epsilon } => vec![("epsilon", fmt_f64(*epsilon))],
        Op::Gemm { alpha, beta, trans_a, trans_b } => vec![
            ("alpha", fmt_f64(*alpha)),
            ("beta", fmt_f64(*beta)),
            ("trans_a", trans_a.to_string()),
            ("trans_b", trans_b.to_string()),
        ],
        Op::Conv { kernel_shape, strides, pads, dilations, group } => vec![
            ("kernel_shape", fmt_list(kernel_shape)),
            ("strides", fmt_list(strides)),
            ("pads", fmt_list(pads)),
            ("dilations", fmt_list(dilations)),
            ("group", group.to_string()),
        ],
        Op::ReduceMean { axes, keepdims }
        | Op::ReduceSum { axes, keepdims }
        | Op::ReduceMax { axes, keepdims }
        | Op::ReduceMin { axes, keepdims } => vec![("axes", fmt_list(axes)), ("keepdims", keepdims.to_string())],
        Op::ArgMax { axis, keepdims, last } | Op::ArgMin { axis, keepdims, last } => {
            vec![("axis", axis.to_string()), ("keepdims", keepdims.to_string()), ("last", last.to_string())]
        }
        Op::Transpose { perm } => vec![("perm", fmt_list(perm))],
        Op::Reshape { shape } | Op::Expand { shape } => vec![("shape", fmt_list(shape))],
        Op::Split { axis, sizes } => vec![("axis", axis.to_string()), ("sizes", fmt_list(sizes))],
        Op::Slice { axes, starts, ends, steps } => vec![
            ("axes", fmt_list(axes)),
            ("starts", fmt_list(starts)),
            ("ends", fmt_list(ends)),
            ("steps", fmt_list(steps)),
        ],
        Op::Constant(_)
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Pow
        | Op::Max
        | Op::Min
        | Op::Equal
        | Op::Less
        | Op::LessOrEqual
        | Op::Greater
        | Op::GreaterOrEqual
        | Op::And
        | Op::Or
        | Op::Xor
        | Op::Neg
        | Op::Abs
        | Op::Sqrt
        | Op::Reciprocal
        | Op::Exp
        | Op::Log
        | Op::Erf
        | Op::Tanh
        | Op::Sigmoid
        | Op::Relu
        | Op::Floor
        | Op::Ceil
        | Op::Not
        | Op::IsNaN
        | Op::IsInf
        | Op::Identity
        | Op::Where
        | Op::MatMul => Vec::new(),
    }
}

fn gelu_name(a: GeluApprox) -> &'static str {
    match a {
        GeluApprox::Erf => "erf",
        GeluApprox::Tanh => "tanh",
    }
}

/// Whether `x` is exactly an `f32` (NaN counts: its payload is not preserved anyway).
fn is_f32_exact(x: f64) -> bool {
    x.is_nan() || (x as f32) as f64 == x
}

/// Whether an f16/f32 constant's elements all print in `f32` precision (shortest `f32` form), the
/// readable default; otherwise the data is written `f64 [...]` in full precision.
fn narrow_floats(t: &Tensor) -> bool {
    match &t.data {
        Data::Float(v) => matches!(t.ty.dtype, DType::F16 | DType::F32) && v.iter().all(|&x| is_f32_exact(x)),
        _ => false,
    }
}

fn write_data(out: &mut String, t: &Tensor) {
    let narrow = narrow_floats(t);
    if matches!(t.data, Data::Float(_)) && t.ty.dtype != DType::F64 && !narrow {
        out.push_str("f64 ");
    }
    let n = t.data.len();
    let multiline = n > ELEMS_PER_LINE;
    out.push('[');
    for i in 0..n {
        if multiline && i % ELEMS_PER_LINE == 0 {
            out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        } else if i > 0 {
            out.push_str(", ");
        }
        let _ = match &t.data {
            Data::Float(v) if narrow => write!(out, "{:?}", v[i] as f32),
            Data::Float(v) => write!(out, "{:?}", v[i]),
            Data::Int(v) => write!(out, "{}", v[i]),
            Data::Bool(v) => write!(out, "{}", v[i]),
        };
    }
    if multiline {
        out.push('\n');
    }
    out.push(']');
}

fn write_summary(out: &mut String, data: &Data) {
    let n = data.len();
    match data {
        Data::Float(v) => {
            let finite_or_inf = v.iter().copied().filter(|x| !x.is_nan());
            let (min, max) =
                finite_or_inf.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
            let nans = v.iter().filter(|x| x.is_nan()).count();
            if nans == n {
                let _ = write!(out, "<elided {n} values, all NaN>");
            } else {
                let short = |x: f64| if is_f32_exact(x) { format!("{:?}", x as f32) } else { fmt_f64(x) };
                let _ = write!(out, "<elided {n} values, min {} max {}", short(min), short(max));
                if nans > 0 {
                    let _ = write!(out, ", {nans} NaN");
                }
                out.push('>');
            }
        }
        Data::Int(v) => {
            let min = v.iter().min().copied().unwrap_or(0);
            let max = v.iter().max().copied().unwrap_or(0);
            let _ = write!(out, "<elided {n} values, min {min} max {max}>");
        }
        Data::Bool(v) => {
            let t = v.iter().filter(|&&b| b).count();
            let _ = write!(out, "<elided {n} values, {t} true>");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Graphviz
// ------------------------------------------------------------------------------------------------

/// Graphviz `dot` source: one box per IR node labelled with its op (and constant id), its name and its
/// result types; graph inputs and outputs as separate house-shaped nodes; one edge per value use,
/// labelled with the value id. Like [`print()`], never panics on a broken graph.
pub fn to_dot(g: &Graph) -> String {
    let mut out = String::new();
    out.push_str("digraph ");
    write_dot_str(&mut out, &g.name);
    out.push_str(" {\n  node [shape=box, fontname=\"monospace\"];\n  edge [fontname=\"monospace\"];\n");

    for (i, &v) in g.inputs.iter().enumerate() {
        let mut label = String::new();
        match g.values.get(v) {
            Some(d) => {
                let _ = write!(label, "{}\n{v}: {}", d.name.as_deref().unwrap_or("input"), d.ty);
            }
            None => {
                let _ = write!(label, "input\n{v}: ?");
            }
        }
        let _ = write!(out, "  in{i} [shape=invhouse, label=");
        write_dot_str(&mut out, &label);
        out.push_str("];\n");
    }
    for (n, node) in g.nodes.iter() {
        let mut label = node.op.name().to_string();
        if let Op::Constant(c) = node.op {
            let _ = write!(label, " {c}");
        }
        if !node.name.is_empty() {
            label.push('\n');
            label.push_str(&node.name);
        }
        for &v in &node.outputs {
            let ty = g.values.get(v).map_or_else(|| "?".to_string(), |d| d.ty.to_string());
            let _ = write!(label, "\n{v}: {ty}");
        }
        let _ = write!(out, "  {n} [label=");
        write_dot_str(&mut out, &label);
        out.push_str("];\n");
    }
    for (i, &v) in g.outputs.iter().enumerate() {
        let name = g.values.get(v).and_then(|d| d.name.clone()).unwrap_or_else(|| "output".to_string());
        let _ = write!(out, "  out{i} [shape=house, label=");
        write_dot_str(&mut out, &name);
        out.push_str("];\n");
    }

    let source = |v: Value| -> Option<String> {
        match g.values.get(v)?.def {
            ValueDef::Input(i) => Some(format!("in{i}")),
            ValueDef::Result(n, _) => Some(n.to_string()),
        }
    };
    for (n, node) in g.nodes.iter() {
        for &v in &node.inputs {
            if let Some(src) = source(v) {
                let _ = writeln!(out, "  {src} -> {n} [label=\"{v}\"];");
            }
        }
    }
    for (i, &v) in g.outputs.iter().enumerate() {
        if let Some(src) = source(v) {
            let _ = writeln!(out, "  {src} -> out{i} [label=\"{v}\"];");
        }
    }
    out.push_str("}\n");
    out
}

/// A DOT double-quoted string; `\n` in `s` becomes a centered line break.
fn write_dot_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ------------------------------------------------------------------------------------------------
// Lexer
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok<'a> {
    /// `[A-Za-z_][A-Za-z0-9_]*`: keywords, op names, value/const ids, dtypes, `true`, `inf`, `NaN`.
    Ident(&'a str),
    /// Starts with a digit, `-`, `+` or `.`; then `[A-Za-z0-9_.+-]*` (covers `1e-5`, `-inf`).
    Num(&'a str),
    Str(String),
    Punct(char),
    Arrow,
    Eof,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Arrow => "`->`".to_string(),
            Tok::Eof => "end of input".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    line: usize,
    col: usize,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
}

fn perr(line: usize, col: usize, msg: impl Into<String>) -> IrError {
    IrError::Parse { line, col, msg: msg.into() }
}

impl<'a> Lexer<'a> {
    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_char2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.peek_char() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.peek_char2() == Some('/') => {
                    while let Some(c) = self.peek_char() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn next_token(&mut self) -> Result<Token<'a>, IrError> {
        self.skip_trivia();
        let (line, col) = (self.line, self.col);
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(Token { tok: Tok::Eof, line, col });
        };
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            while matches!(self.peek_char(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
                self.bump();
            }
            Tok::Ident(&self.src[start..self.pos])
        } else if c == '-' && self.peek_char2() == Some('>') {
            self.bump();
            self.bump();
            Tok::Arrow
        } else if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') {
            self.bump();
            while matches!(self.peek_char(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
            {
                self.bump();
            }
            Tok::Num(&self.src[start..self.pos])
        } else if c == '"' {
            self.bump();
            Tok::Str(self.string_body(line, col)?)
        } else if "(){}[],:=@<>".contains(c) {
            self.bump();
            Tok::Punct(c)
        } else {
            return Err(perr(line, col, format!("unexpected character {c:?}")));
        };
        Ok(Token { tok, line, col })
    }

    /// The rest of a string literal after its opening quote.
    fn string_body(&mut self, line: usize, col: usize) -> Result<String, IrError> {
        let mut s = String::new();
        loop {
            let (eline, ecol) = (self.line, self.col);
            match self.bump() {
                None => return Err(perr(line, col, "unterminated string literal")),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('u') => {
                        if self.bump() != Some('{') {
                            return Err(perr(eline, ecol, "expected `{` after `\\u`"));
                        }
                        let mut hex = String::new();
                        loop {
                            match self.bump() {
                                Some('}') => break,
                                Some(h) if h.is_ascii_hexdigit() && hex.len() < 6 => hex.push(h),
                                _ => return Err(perr(eline, ecol, "malformed `\\u{...}` escape")),
                            }
                        }
                        let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        match ch {
                            Some(ch) => s.push(ch),
                            None => return Err(perr(eline, ecol, format!("invalid unicode escape `\\u{{{hex}}}`"))),
                        }
                    }
                    Some(other) => return Err(perr(eline, ecol, format!("unknown escape `\\{other}`"))),
                    None => return Err(perr(line, col, "unterminated string literal")),
                },
                Some(c) => s.push(c),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Parser
// ------------------------------------------------------------------------------------------------

/// A parsed attribute value, kept as token text until the op says which type it wants.
#[derive(Debug)]
enum AttrVal<'a> {
    Scalar(Tok<'a>),
    List(Vec<(Tok<'a>, usize, usize)>),
}

struct Attr<'a> {
    val: AttrVal<'a>,
    line: usize,
    col: usize,
}

struct Parser<'a> {
    lex: Lexer<'a>,
    cur: Token<'a>,
}

/// Parses the text form (see the module doc). Never panics.
pub fn parse(src: &str) -> Result<Graph, IrError> {
    let mut lex = Lexer { src, pos: 0, line: 1, col: 1 };
    let cur = lex.next_token()?;
    let mut p = Parser { lex, cur };
    p.file()
}

/// A value declaration seen so far: its data and where it was declared.
struct DeclInfo {
    data: ValueData,
    line: usize,
    col: usize,
}

impl<'a> Parser<'a> {
    fn advance(&mut self) -> Result<Token<'a>, IrError> {
        let next = self.lex.next_token()?;
        Ok(std::mem::replace(&mut self.cur, next))
    }

    fn err_here(&self, msg: impl Into<String>) -> IrError {
        perr(self.cur.line, self.cur.col, msg)
    }

    fn unexpected(&self, what: &str) -> IrError {
        self.err_here(format!("expected {what}, found {}", self.cur.tok.describe()))
    }

    fn is_punct(&self, c: char) -> bool {
        self.cur.tok == Tok::Punct(c)
    }

    fn expect_punct(&mut self, c: char) -> Result<(), IrError> {
        if self.is_punct(c) {
            self.advance()?;
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{c}`")))
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), IrError> {
        if self.cur.tok == Tok::Ident(kw) {
            self.advance()?;
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{kw}`")))
        }
    }

    fn expect_string(&mut self, what: &str) -> Result<String, IrError> {
        if let Tok::Str(_) = self.cur.tok {
            match self.advance()?.tok {
                Tok::Str(s) => Ok(s),
                _ => Err(self.unexpected(what)),
            }
        } else {
            Err(self.unexpected(what))
        }
    }

    /// An entity id `<prefix><digits>`, e.g. `v12`, `c3`.
    fn entity_id(&self, prefix: char) -> Option<u32> {
        let Tok::Ident(s) = self.cur.tok else { return None };
        let digits = s.strip_prefix(prefix)?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        // u32::MAX is cranelift-entity's reserved value.
        digits.parse::<u32>().ok().filter(|&n| n < u32::MAX)
    }

    fn is_value(&self) -> bool {
        self.entity_id('v').is_some()
    }

    fn expect_value(&mut self) -> Result<(Value, usize, usize), IrError> {
        match self.entity_id('v') {
            Some(n) => {
                let t = self.advance()?;
                Ok((Value::from_u32(n), t.line, t.col))
            }
            None => Err(self.unexpected("a value (`v0`, `v1`, ...)")),
        }
    }

    fn expect_const(&mut self) -> Result<(Const, usize, usize), IrError> {
        match self.entity_id('c') {
            Some(n) => {
                let t = self.advance()?;
                Ok((Const::from_u32(n), t.line, t.col))
            }
            None => Err(self.unexpected("a constant (`c0`, `c1`, ...)")),
        }
    }

    fn usize_tok(&mut self, what: &str) -> Result<usize, IrError> {
        if let Tok::Num(s) = self.cur.tok {
            if let Ok(n) = s.parse::<usize>() {
                self.advance()?;
                return Ok(n);
            }
        }
        Err(self.unexpected(what))
    }

    /// `f32[1,16,64]`.
    fn ty(&mut self) -> Result<TensorType, IrError> {
        let dtype = match self.cur.tok {
            Tok::Ident(s) => DType::from_name(s),
            _ => None,
        };
        let Some(dtype) = dtype else {
            let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            return Err(self.unexpected(&format!("a type ({}, followed by `[dims]`)", names.join(", "))));
        };
        let (line, col) = (self.cur.line, self.cur.col);
        self.advance()?;
        self.expect_punct('[')?;
        let mut shape = Vec::new();
        if !self.is_punct(']') {
            loop {
                shape.push(self.usize_tok("a dimension (non-negative integer)")?);
                if self.is_punct(',') {
                    self.advance()?;
                } else {
                    break;
                }
            }
        }
        self.expect_punct(']')?;
        if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(perr(line, col, "tensor type has more elements than fit in usize"));
        }
        Ok(TensorType::new(dtype, shape))
    }

    fn file(&mut self) -> Result<Graph, IrError> {
        let mut g = Graph::default();
        // Value id -> declaration; the arena is rebuilt in id order at the end.
        let mut decls: HashMap<u32, DeclInfo> = HashMap::new();
        let mut const_refs: Vec<(Const, usize, usize)> = Vec::new();

        self.expect_keyword("graph")?;
        g.name = self.expect_string("the graph name (a string)")?;
        self.expect_punct('(')?;
        if !self.is_punct(')') {
            loop {
                let idx = g.inputs.len();
                let v = self.decl(&mut decls, ValueDef::Input(idx))?;
                g.inputs.push(v);
                if self.is_punct(',') {
                    self.advance()?;
                } else {
                    break;
                }
            }
        }
        self.expect_punct(')')?;
        self.expect_punct('{')?;

        while !self.is_punct('}') {
            let node = Node::from_u32(g.nodes.len() as u32);
            self.stmt(&mut g, node, &mut decls, &mut const_refs)?;
        }
        self.advance()?;
        if self.cur.tok != Tok::Arrow {
            return Err(self.unexpected("`->` and the graph outputs"));
        }
        self.advance()?;
        self.expect_punct('(')?;
        if !self.is_punct(')') {
            loop {
                let (v, line, col) = self.expect_value()?;
                check_defined(&decls, v, line, col)?;
                g.outputs.push(v);
                if self.is_punct(',') {
                    self.advance()?;
                } else {
                    break;
                }
            }
        }
        self.expect_punct(')')?;

        while self.cur.tok != Tok::Eof {
            self.constant(&mut g)?;
        }

        for (c, line, col) in const_refs {
            if g.constants.get(c).is_none() {
                return Err(perr(
                    line,
                    col,
                    format!("undefined constant {c} (the file defines {} constants)", g.constants.len()),
                ));
            }
        }

        // Value ids must be exactly v0..vN so that the arena can be rebuilt without holes.
        let count = decls.len();
        if let Some((&max, info)) = decls.iter().max_by_key(|(id, _)| **id) {
            if max as usize >= count {
                let missing = (0..count as u32).find(|i| !decls.contains_key(i)).unwrap_or(0);
                return Err(perr(
                    info.line,
                    info.col,
                    format!("value ids must be dense: v{max} is declared but v{missing} is not"),
                ));
            }
        }
        for id in 0..count as u32 {
            match decls.remove(&id) {
                Some(info) => {
                    g.values.push(info.data);
                }
                None => return Err(perr(1, 1, format!("value v{id} is not declared"))),
            }
        }
        Ok(g)
    }

    /// `v3: f32[2,3] "name"`, declaring a new value.
    fn decl(&mut self, decls: &mut HashMap<u32, DeclInfo>, def: ValueDef) -> Result<Value, IrError> {
        let (v, line, col) = self.expect_value()?;
        if let Some(prev) = decls.get(&v.as_u32()) {
            return Err(perr(
                line,
                col,
                format!("value {v} is already defined at line {}, column {}", prev.line, prev.col),
            ));
        }
        self.expect_punct(':')?;
        let ty = self.ty()?;
        let name = if let Tok::Str(_) = self.cur.tok { Some(self.expect_string("a value name")?) } else { None };
        decls.insert(v.as_u32(), DeclInfo { data: ValueData { ty, name, def }, line, col });
        Ok(v)
    }

    fn stmt(
        &mut self,
        g: &mut Graph,
        node: Node,
        decls: &mut HashMap<u32, DeclInfo>,
        const_refs: &mut Vec<(Const, usize, usize)>,
    ) -> Result<(), IrError> {
        // Results are declared only after the operands are read, so `v1: .. = add v1, v0` is a
        // use-before-definition error rather than a self-loop.
        let mut results: Vec<(Value, TensorType, Option<String>, usize, usize)> = Vec::new();
        if self.is_punct('(') {
            self.advance()?;
            self.expect_punct(')')?;
        } else if !self.is_value() {
            return Err(self.unexpected("a statement (`v1: f32[2] = op ...`) or `}`"));
        } else {
            loop {
                let (v, line, col) = self.expect_value()?;
                self.expect_punct(':')?;
                let ty = self.ty()?;
                let name =
                    if let Tok::Str(_) = self.cur.tok { Some(self.expect_string("a value name")?) } else { None };
                results.push((v, ty, name, line, col));
                if self.is_punct(',') {
                    self.advance()?;
                } else {
                    break;
                }
            }
        }
        self.expect_punct('=')?;

        let (kw, kw_line, kw_col) = match self.cur.tok {
            Tok::Ident(s) => (s, self.cur.line, self.cur.col),
            _ => return Err(self.unexpected("an op name")),
        };
        self.advance()?;
        let mut attrs = IndexMap::new();
        if self.is_punct('{') {
            attrs = self.attrs()?;
        }

        let mut inputs = Vec::new();
        let op = if kw == "const" {
            let (c, line, col) = self.expect_const()?;
            const_refs.push((c, line, col));
            build_op(kw, Some(c), attrs, kw_line, kw_col)?
        } else {
            let op = build_op(kw, None, attrs, kw_line, kw_col)?;
            if self.is_punct('(') {
                self.advance()?;
                self.expect_punct(')')?;
            } else {
                if !self.is_value() {
                    return Err(self.unexpected("operands (`v0, v1, ...`, or `()` for none)"));
                }
                loop {
                    let (v, line, col) = self.expect_value()?;
                    check_defined(decls, v, line, col)?;
                    inputs.push(v);
                    if self.is_punct(',') {
                        self.advance()?;
                    } else {
                        break;
                    }
                }
            }
            op
        };

        let name = if self.is_punct('@') {
            self.advance()?;
            self.expect_string("the node name (a string) after `@`")?
        } else {
            String::new()
        };

        let mut outputs = Vec::with_capacity(results.len());
        for (i, (v, ty, vname, line, col)) in results.into_iter().enumerate() {
            if let Some(prev) = decls.get(&v.as_u32()) {
                return Err(perr(
                    line,
                    col,
                    format!("value {v} is already defined at line {}, column {}", prev.line, prev.col),
                ));
            }
            decls.insert(
                v.as_u32(),
                DeclInfo { data: ValueData { ty, name: vname, def: ValueDef::Result(node, i) }, line, col },
            );
            outputs.push(v);
        }
        g.nodes.push(NodeData { op, inputs, outputs, name });
        Ok(())
    }

    /// `{key=value, ...}`; duplicate keys are rejected here, unknown ones by [`build_op`].
    fn attrs(&mut self) -> Result<IndexMap<&'a str, Attr<'a>>, IrError> {
        self.expect_punct('{')?;
        let mut attrs = IndexMap::new();
        loop {
            let (key, line, col) = match self.cur.tok {
                Tok::Ident(s) => (s, self.cur.line, self.cur.col),
                _ => return Err(self.unexpected("an attribute name")),
            };
            self.advance()?;
            if attrs.contains_key(key) {
                return Err(perr(line, col, format!("duplicate attribute `{key}`")));
            }
            self.expect_punct('=')?;
            let (vline, vcol) = (self.cur.line, self.cur.col);
            let val = if self.is_punct('[') {
                self.advance()?;
                let mut items = Vec::new();
                if !self.is_punct(']') {
                    loop {
                        let t = self.advance()?;
                        match t.tok {
                            Tok::Num(_) | Tok::Ident(_) => items.push((t.tok, t.line, t.col)),
                            other => {
                                return Err(perr(
                                    t.line,
                                    t.col,
                                    format!("expected a number, found {}", other.describe()),
                                ))
                            }
                        }
                        if self.is_punct(',') {
                            self.advance()?;
                        } else {
                            break;
                        }
                    }
                }
                self.expect_punct(']')?;
                AttrVal::List(items)
            } else {
                match self.cur.tok {
                    Tok::Num(_) | Tok::Ident(_) => AttrVal::Scalar(self.advance()?.tok),
                    _ => return Err(self.unexpected("an attribute value (number, name or `[list]`)")),
                }
            };
            attrs.insert(key, Attr { val, line: vline, col: vcol });
            if self.is_punct(',') {
                self.advance()?;
            } else {
                break;
            }
        }
        self.expect_punct('}')?;
        Ok(attrs)
    }

    /// `const c0: f32[2] = [1.0, 2.0]`.
    fn constant(&mut self, g: &mut Graph) -> Result<(), IrError> {
        self.expect_keyword("const")?;
        let (c, line, col) = self.expect_const()?;
        let expected = g.constants.next_key();
        if c != expected {
            return Err(perr(
                line,
                col,
                format!("expected constant {expected} here (constants are listed in order), found {c}"),
            ));
        }
        self.expect_punct(':')?;
        let ty = self.ty()?;
        self.expect_punct('=')?;
        if self.is_punct('<') {
            return Err(self.err_here(format!(
                "the data of constant {c} was elided by the printer (elide_constants_over); \
                 print with all constant data to get parseable text"
            )));
        }
        // `f64 [...]`: float data written in full f64 precision (see the module doc).
        let mut wide = ty.dtype == DType::F64;
        if self.cur.tok == Tok::Ident("f64") {
            if !ty.dtype.is_float() {
                return Err(self.err_here(format!("`f64` data only applies to float constants, {c} is {ty}")));
            }
            wide = true;
            self.advance()?;
        }
        let (open_line, open_col) = (self.cur.line, self.cur.col);
        self.expect_punct('[')?;
        let numel = ty.numel();
        let mut floats = Vec::new();
        let mut ints = Vec::new();
        let mut bools = Vec::new();
        let mut count = 0usize;
        if !self.is_punct(']') {
            loop {
                if count == numel {
                    return Err(self.err_here(format!("constant {c} of type {ty} has more than {numel} elements")));
                }
                let t = self.advance()?;
                let ok = match ty.dtype {
                    d if d.is_float() && wide => parse_f64(&t.tok).map(|x| floats.push(x)),
                    d if d.is_float() => parse_f32(&t.tok).map(|x| floats.push(x)),
                    d if d.is_int() => parse_i64(&t.tok).map(|x| ints.push(x)),
                    _ => match t.tok {
                        Tok::Ident("true") => Some(true),
                        Tok::Ident("false") => Some(false),
                        _ => None,
                    }
                    .map(|b| bools.push(b)),
                };
                if ok.is_none() {
                    return Err(perr(
                        t.line,
                        t.col,
                        format!("expected a {} element, found {}", ty.dtype, t.tok.describe()),
                    ));
                }
                count += 1;
                if self.is_punct(',') {
                    self.advance()?;
                } else {
                    break;
                }
            }
        }
        self.expect_punct(']')?;
        if count != numel {
            return Err(perr(
                open_line,
                open_col,
                format!("constant {c} of type {ty} has {count} elements, expected {numel}"),
            ));
        }
        let data = if ty.dtype.is_float() {
            Data::Float(floats)
        } else if ty.dtype.is_int() {
            Data::Int(ints)
        } else {
            Data::Bool(bools)
        };
        let t = Tensor::new(ty, data).map_err(|e| perr(open_line, open_col, e.to_string()))?;
        g.constants.push(t);
        Ok(())
    }
}

fn check_defined(decls: &HashMap<u32, DeclInfo>, v: Value, line: usize, col: usize) -> Result<(), IrError> {
    if decls.contains_key(&v.as_u32()) {
        Ok(())
    } else {
        Err(perr(line, col, format!("value {v} is used before it is defined (or never defined)")))
    }
}

/// The text of a float token, if it is spelled as the printer spells floats: a decimal number, `inf`
/// or `NaN`, optionally signed (`f64::from_str` also accepts `infinity` and any case, which would make
/// the text form needlessly ambiguous).
fn float_text<'t>(t: &Tok<'t>) -> Option<&'t str> {
    match t {
        Tok::Num(s) | Tok::Ident(s) => {
            let body = s.strip_prefix(['-', '+']).unwrap_or(s);
            let ok = body.starts_with(|c: char| c.is_ascii_digit() || c == '.') || body == "inf" || body == "NaN";
            ok.then_some(*s)
        }
        _ => None,
    }
}

fn parse_f64(t: &Tok<'_>) -> Option<f64> {
    float_text(t)?.parse::<f64>().ok()
}

/// A float read in `f32` precision, widened (the default for f16/f32 constant data).
fn parse_f32(t: &Tok<'_>) -> Option<f64> {
    float_text(t)?.parse::<f32>().ok().map(f64::from)
}

fn parse_i64(t: &Tok<'_>) -> Option<i64> {
    match t {
        Tok::Num(s) => s.parse::<i64>().ok(),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------------
// Op construction from keyword + attributes
// ------------------------------------------------------------------------------------------------

/// Attribute accessor for one op: takes attributes by key and reports missing/unknown/ill-typed ones.
struct Attrs<'a> {
    map: IndexMap<&'a str, Attr<'a>>,
    op: &'a str,
    line: usize,
    col: usize,
}

impl<'a> Attrs<'a> {
    fn take(&mut self, key: &str) -> Result<Attr<'a>, IrError> {
        self.map
            .shift_remove(key)
            .ok_or_else(|| perr(self.line, self.col, format!("missing attribute `{key}` for `{}`", self.op)))
    }

    fn scalar(&mut self, key: &str, what: &str, conv: impl Fn(&Tok<'_>) -> Option<f64>) -> Result<f64, IrError> {
        let a = self.take(key)?;
        match &a.val {
            AttrVal::Scalar(t) => conv(t),
            AttrVal::List(_) => None,
        }
        .ok_or_else(|| perr(a.line, a.col, format!("attribute `{key}` of `{}` must be {what}", self.op)))
    }

    fn usize(&mut self, key: &str) -> Result<usize, IrError> {
        let a = self.take(key)?;
        if let AttrVal::Scalar(Tok::Num(s)) = &a.val {
            if let Ok(n) = s.parse::<usize>() {
                return Ok(n);
            }
        }
        Err(perr(a.line, a.col, format!("attribute `{key}` of `{}` must be a non-negative integer", self.op)))
    }

    fn f64(&mut self, key: &str) -> Result<f64, IrError> {
        self.scalar(key, "a number", parse_f64)
    }

    fn opt_f64(&mut self, key: &str) -> Result<Option<f64>, IrError> {
        if self.map.contains_key(key) {
            self.f64(key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn bool(&mut self, key: &str) -> Result<bool, IrError> {
        let a = self.take(key)?;
        match a.val {
            AttrVal::Scalar(Tok::Ident("true")) => Ok(true),
            AttrVal::Scalar(Tok::Ident("false")) => Ok(false),
            _ => Err(perr(a.line, a.col, format!("attribute `{key}` of `{}` must be `true` or `false`", self.op))),
        }
    }

    fn ident(&mut self, key: &str) -> Result<(&'a str, usize, usize), IrError> {
        let a = self.take(key)?;
        match a.val {
            AttrVal::Scalar(Tok::Ident(s)) => Ok((s, a.line, a.col)),
            _ => Err(perr(a.line, a.col, format!("attribute `{key}` of `{}` must be a name", self.op))),
        }
    }

    fn list<T>(&mut self, key: &str, what: &str, conv: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, IrError> {
        let a = self.take(key)?;
        let AttrVal::List(items) = a.val else {
            return Err(perr(
                a.line,
                a.col,
                format!("attribute `{key}` of `{}` must be a list `[...]` of {what}", self.op),
            ));
        };
        items
            .iter()
            .map(|(t, line, col)| {
                match t {
                    Tok::Num(s) => conv(s),
                    _ => None,
                }
                .ok_or_else(|| perr(*line, *col, format!("elements of `{key}` must be {what}")))
            })
            .collect()
    }

    fn usizes(&mut self, key: &str) -> Result<Vec<usize>, IrError> {
        self.list(key, "non-negative integers", |s| s.parse().ok())
    }

    fn i64s(&mut self, key: &str) -> Result<Vec<i64>, IrError> {
        self.list(key, "integers", |s| s.parse().ok())
    }

    /// Fails on any attribute the op did not take.
    fn finish(self) -> Result<(), IrError> {
        match self.map.into_iter().next() {
            Some((k, a)) => Err(perr(a.line, a.col, format!("unknown attribute `{k}` for `{}`", self.op))),
            None => Ok(()),
        }
    }
}

fn build_op<'a>(
    kw: &'a str,
    konst: Option<Const>,
    attrs: IndexMap<&'a str, Attr<'a>>,
    line: usize,
    col: usize,
) -> Result<Op, IrError> {
    let mut a = Attrs { map: attrs, op: kw, line, col };
    let reduce =
        |a: &mut Attrs<'a>| -> Result<(Vec<usize>, bool), IrError> { Ok((a.usizes("axes")?, a.bool("keepdims")?)) };
    let op = match kw {
        "const" => match konst {
            Some(c) => Op::Constant(c),
            None => return Err(perr(line, col, "`const` needs a constant operand")),
        },
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "div" => Op::Div,
        "pow" => Op::Pow,
        "max" => Op::Max,
        "min" => Op::Min,
        "equal" => Op::Equal,
        "less" => Op::Less,
        "less_or_equal" => Op::LessOrEqual,
        "greater" => Op::Greater,
        "greater_or_equal" => Op::GreaterOrEqual,
        "and" => Op::And,
        "or" => Op::Or,
        "xor" => Op::Xor,
        "neg" => Op::Neg,
        "abs" => Op::Abs,
        "sqrt" => Op::Sqrt,
        "reciprocal" => Op::Reciprocal,
        "exp" => Op::Exp,
        "log" => Op::Log,
        "erf" => Op::Erf,
        "tanh" => Op::Tanh,
        "sigmoid" => Op::Sigmoid,
        "relu" => Op::Relu,
        "floor" => Op::Floor,
        "ceil" => Op::Ceil,
        "not" => Op::Not,
        "is_nan" => Op::IsNaN,
        "is_inf" => Op::IsInf,
        "identity" => Op::Identity,
        "cast" => {
            let (s, l, c) = a.ident("to")?;
            match DType::from_name(s) {
                Some(d) => Op::Cast(d),
                None => return Err(perr(l, c, format!("unknown dtype `{s}`"))),
            }
        }
        "clip" => Op::Clip { min: a.opt_f64("min")?, max: a.opt_f64("max")? },
        "gelu" => {
            let (s, l, c) = a.ident("approx")?;
            match s {
                "erf" => Op::Gelu(GeluApprox::Erf),
                "tanh" => Op::Gelu(GeluApprox::Tanh),
                _ => return Err(perr(l, c, format!("unknown gelu approximation `{s}` (expected `erf` or `tanh`)"))),
            }
        }
        "chebyshev" => Op::Chebyshev {
            lo: a.f64("lo")?,
            hi: a.f64("hi")?,
            coeffs: a.list("coeffs", "numbers", |s| parse_f64(&Tok::Num(s)))?,
        },
        "where" => Op::Where,
        "softmax" => Op::Softmax { axis: a.usize("axis")? },
        "layer_norm" => Op::LayerNorm { axis: a.usize("axis")?, epsilon: a.f64("epsilon")? },
        "batch_norm" => Op::BatchNorm { epsilon: a.f64("epsilon")? },
        "matmul" => Op::MatMul,
        "gemm" => Op::Gemm {
            alpha: a.f64("alpha")?,
            beta: a.f64("beta")?,
            trans_a: a.bool("trans_a")?,
            trans_b: a.bool("trans_b")?,
        },
        "conv" => Op::Conv {
            kernel_shape: a.usizes("kernel_shape")?,
            strides: a.usizes("strides")?,
            pads: a.usizes("pads")?,
            dilations: a.usizes("dilations")?,
            group: a.usize("group")?,
        },
        "reduce_mean" => {
            let (axes, keepdims) = reduce(&mut a)?;
            Op::ReduceMean { axes, keepdims }
        }
        "reduce_sum" => {
            let (axes, keepdims) = reduce(&mut a)?;
            Op::ReduceSum { axes, keepdims }
        }
        "reduce_max" => {
            let (axes, keepdims) = reduce(&mut a)?;
            Op::ReduceMax { axes, keepdims }
        }
        "reduce_min" => {
            let (axes, keepdims) = reduce(&mut a)?;
            Op::ReduceMin { axes, keepdims }
        }
        "arg_max" => Op::ArgMax { axis: a.usize("axis")?, keepdims: a.bool("keepdims")?, last: a.bool("last")? },
        "arg_min" => Op::ArgMin { axis: a.usize("axis")?, keepdims: a.bool("keepdims")?, last: a.bool("last")? },
        "transpose" => Op::Transpose { perm: a.usizes("perm")? },
        "reshape" => Op::Reshape { shape: a.usizes("shape")? },
        "expand" => Op::Expand { shape: a.usizes("shape")? },
        "concat" => Op::Concat { axis: a.usize("axis")? },
        "split" => Op::Split { axis: a.usize("axis")?, sizes: a.usizes("sizes")? },
        "slice" => Op::Slice {
            axes: a.usizes("axes")?,
            starts: a.i64s("starts")?,
            ends: a.i64s("ends")?,
            steps: a.i64s("steps")?,
        },
        "gather" => Op::Gather { axis: a.usize("axis")? },
        "gather_elements" => Op::GatherElements { axis: a.usize("axis")? },
        _ => return Err(perr(line, col, format!("unknown op `{kw}`"))),
    };
    a.finish()?;
    Ok(op)
}
