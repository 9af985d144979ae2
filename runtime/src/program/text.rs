//! The human-readable text form of a [`Program`] (`polyhe dump --stage ckks`).
//!
//! Every instruction line ends with its result's `@L<level> 2^<log2 scale>` annotation, so a snapshot
//! shows the level and scale management. Constants are summarized: length, nonzeros, runs and the
//! first runs as `value×count` (`value` alone for a run of one). A port's layout is `row_major/<slots>`
//! or `axes<order>/<slots>`.

use std::fmt::Write;

use super::{Op, Port, Program, ProgramError, ProgramResult, SlotLayout, SlotVector};

/// A port: `name: f64[shape] layout [%regs]` for reading, or (`exact`) with the name quoted (no
/// colon) for [`Program::parse`].
fn port(p: &Port, exact: bool) -> String {
    let layout = match &p.layout {
        SlotLayout::RowMajor { slots, .. } => format!("row_major/{slots}"),
        SlotLayout::Axes { order, slots, .. } => format!("axes{order:?}/{slots}"),
    };
    let regs: Vec<String> = p.regs.iter().map(|r| format!("%{r}")).collect();
    let name = if exact { quoted(&p.name) } else { format!("{}:", p.name) };
    format!("{name} f64{:?} {layout} [{}]", p.layout.shape(), regs.join(", "))
}

/// An instruction's operands and attributes: scales as `2^<log2>` and values in `{:e}` for
/// reading, or (`exact`) as shortest round-trip decimals for [`Program::parse`].
fn inst_args(op: &Op, exact: bool) -> String {
    let scale = |x: f64| if exact { format!("{x:?}") } else { format!("2^{:.4}", x.log2()) };
    match op {
        Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) => format!("%{a}, %{b}"),
        Op::Neg(a) | Op::Rescale(a) | Op::Bootstrap(a) | Op::Conjugate(a) | Op::MulI(a) => format!("%{a}"),
        Op::BootstrapPair(a, b) => format!("%{a}, %{b}"),
        Op::AddPlain(a, c) | Op::SubPlain(a, c) => format!("%{a}, c{c}"),
        Op::MulPlain { src, constant, pt_scale } => format!("%{src}, c{constant} {{pt_scale={}}}", scale(*pt_scale)),
        Op::MulScalar { src, value, const_scale } => {
            let value = if exact { format!("{value:?}") } else { format!("{value:e}") };
            format!("%{src}, {value} {{const_scale={}}}", scale(*const_scale))
        }
        Op::MulInt(a, k) => format!("%{a}, {k}"),
        Op::DropLevel { src, level } => format!("%{src} {{level={level}}}"),
        Op::Rotate { src, step } => format!("%{src} {{step={step}}}"),
    }
}

/// The bootstrapping configuration's fields after `log_slots`, as both text forms write them.
fn config_fields(c: &crate::bootstrap::BootstrapConfig) -> String {
    format!(
        "k={} cos_degree={} double_angle={} cts_levels={} stc_levels={} log_message_ratio={} giant_step_cost={}",
        c.k, c.cos_degree, c.double_angle, c.cts_levels, c.stc_levels, c.log_message_ratio, c.giant_step_cost
    )
}

impl Program {
    /// ` {input_shift=k}` on a bootstrapping instruction with a shift (both text forms).
    fn input_shift_attr(&self, i: usize) -> String {
        match self.bootstrap.as_ref().and_then(|b| b.input_shifts.get(&i)) {
            Some(k) => format!(" {{input_shift={k}}}"),
            None => String::new(),
        }
    }

    /// Prints the program.
    pub fn print(&self) -> String {
        let mut s = String::new();
        let p = &self.params;
        let _ = writeln!(s, "ckks_program \"{}\"", self.name);
        let _ = writeln!(
            s,
            "params log_n={} q_bits={:?} p_bits={:?} dnum={} log_scale={}{} fingerprint={:016x}{}",
            p.log_n,
            p.q_bits,
            p.p_bits,
            p.dnum,
            p.log_scale,
            p.hamming_weight.map(|h| format!(" hamming_weight={h}")).unwrap_or_default(),
            p.fingerprint,
            match p.security {
                crate::params::Security::Bits128 => " security=128",
                crate::params::Security::NotSet => " security=none (INSECURE: test parameters)",
            }
        );
        if let Some(b) = &self.bootstrap {
            let c = &b.config;
            let _ = writeln!(
                s,
                "bootstrap log_slots={}{} {} output_scale=2^{:.4} -> @L{}",
                c.log_slots,
                if c.zero_padded { " zero_padded" } else { "" },
                config_fields(c),
                b.output_scale.log2(),
                self.bootstrap_output_level().map_or_else(|| "?".to_string(), |l| l.to_string())
            );
        }
        for i in &self.inputs {
            let _ = writeln!(s, "input {} @L{} 2^{:.4}", port(i, false), self.input_level, self.input_scale.log2());
        }
        for (k, c) in self.constants.iter().enumerate() {
            const HEAD: usize = 4;
            let head: Vec<String> = c
                .runs()
                .take(HEAD)
                .map(|(x, n)| if n == 1 { format!("{x:.6e}") } else { format!("{x:.6e}×{n}") })
                .collect();
            let runs = c.num_runs();
            let more = if runs > HEAD { ", ..." } else { "" };
            let _ = writeln!(
                s,
                "const c{k}: {} slots, {} nonzero, {runs} runs [{}{more}]",
                c.len(),
                c.nonzeros(),
                head.join(", ")
            );
        }
        let n_in = self.num_input_regs();
        let mut source = None;
        for (i, inst) in self.insts.iter().enumerate() {
            let here = self.origins.of_inst.get(i).copied().flatten();
            if here != source && here.is_some() {
                if let Some(o) = self.origins.of(i) {
                    let _ = writeln!(s, "// {} ({})", o.node, o.op);
                }
            }
            source = here;
            let args = inst_args(&inst.op, false) + &self.input_shift_attr(i);
            let _ =
                writeln!(s, "%{} = {} {args} @L{} 2^{:.4}", n_in + i, inst.op.name(), inst.level, inst.scale.log2());
        }
        for o in &self.outputs {
            let _ = writeln!(s, "output {}", port(o, false));
        }
        s
    }
}

// ------------------------------------------------------------------------------------------------
// The exact form: everything a program holds, and a parser that reads it back
// ------------------------------------------------------------------------------------------------

/// A quoted string: `"` and `\` escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Program {
    /// The program in full, as [`Program::parse`] reads it back to an equal program: every
    /// parameter and modulus, every constant's runs (`value×count`, exact), every level and scale
    /// exact (shortest round-trip decimals). [`Program::print`] is the summary for reading.
    pub fn print_exact(&self) -> String {
        let mut s = String::new();
        let p = &self.params;
        let _ = writeln!(s, "ckks_program {}", quoted(&self.name));
        let _ = writeln!(
            s,
            "params log_n={} q_bits={:?} p_bits={:?} dnum={} log_scale={} fingerprint={:016x} security={}{}",
            p.log_n,
            p.q_bits,
            p.p_bits,
            p.dnum,
            p.log_scale,
            p.fingerprint,
            p.security.code(),
            p.hamming_weight.map(|h| format!(" hamming_weight={h}")).unwrap_or_default(),
        );
        let _ = writeln!(s, "moduli {:?}", p.moduli);
        if let Some(b) = &self.bootstrap {
            let c = &b.config;
            let _ = writeln!(
                s,
                "bootstrap log_slots={} {} output_scale={:?}{}",
                c.log_slots,
                config_fields(c),
                b.output_scale,
                if c.zero_padded { " zero_padded" } else { "" }
            );
        }
        let _ = writeln!(s, "inputs_at @L{} {:?}", self.input_level, self.input_scale);
        for i in &self.inputs {
            let _ = writeln!(s, "input {}", port(i, true));
        }
        for (k, c) in self.constants.iter().enumerate() {
            let runs: Vec<String> =
                c.runs().map(|(x, n)| if n == 1 { format!("{x:?}") } else { format!("{x:?}×{n}") }).collect();
            let _ = writeln!(s, "const c{k} [{}]", runs.join(", "));
        }
        for (k, o) in self.origins.sources.iter().enumerate() {
            let _ = writeln!(s, "source s{k} {} {}", quoted(&o.node), quoted(&o.op));
        }
        let n_in = self.num_input_regs();
        let run_starts: std::collections::HashMap<usize, Option<u32>> =
            self.origins.runs().into_iter().map(|(i, _, src)| (i, src)).collect();
        for (i, inst) in self.insts.iter().enumerate() {
            if let Some(src) = run_starts.get(&i) {
                let _ = writeln!(s, "at {}", src.map_or_else(|| "none".to_string(), |k| format!("s{k}")));
            }
            let args = inst_args(&inst.op, true) + &self.input_shift_attr(i);
            let _ = writeln!(s, "%{} = {} {args} @L{} {:?}", n_in + i, inst.op.name(), inst.level, inst.scale);
        }
        for o in &self.outputs {
            let _ = writeln!(s, "output {}", port(o, true));
        }
        s
    }

    /// Reads the form [`Program::print_exact`] writes; the result is structurally validated
    /// ([`Program::validate_structure`]; [`Program::validate`] re-proves levels and scales). A
    /// malformed line is an error naming the line and what was expected.
    pub fn parse(text: &str) -> ProgramResult<Program> {
        let mut name = None;
        let mut params = None;
        let mut moduli = None;
        let mut bootstrap = None;
        let mut inputs_at = None;
        let (mut inputs, mut outputs, mut constants, mut insts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut n_in = 0usize;
        // Origins: the source table, and the source the `at` line before each instruction named.
        let (mut sources, mut of_inst, mut at) = (Vec::new(), Vec::new(), None::<Option<u32>>);
        let mut shifts = std::collections::BTreeMap::new();
        for (ln, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            let mut c = Cursor { s: line, line: ln + 1 };
            let kw = c.word()?;
            match kw {
                "ckks_program" => name = Some(c.quoted()?),
                "params" => {
                    let log_n = c.kv("log_n")?;
                    let q_bits = c.kv_list("q_bits")?;
                    let p_bits = c.kv_list("p_bits")?;
                    let dnum = c.kv("dnum")?;
                    let log_scale = c.kv("log_scale")?;
                    c.key("fingerprint")?;
                    let fp = c.word()?;
                    let fingerprint =
                        u64::from_str_radix(fp, 16).map_err(|e| c.err(format!("fingerprint `{fp}`: {e}")))?;
                    let code: u32 = c.kv("security")?;
                    let security = crate::params::Security::from_code(code)
                        .ok_or_else(|| c.err(format!("security={code}: 128 or 0")))?;
                    let hamming_weight = if c.rest().is_empty() { None } else { Some(c.kv("hamming_weight")?) };
                    params = Some((log_n, q_bits, p_bits, dnum, log_scale, fingerprint, security, hamming_weight));
                }
                "moduli" => moduli = Some(c.list()?),
                "bootstrap" => {
                    let mut config = crate::bootstrap::BootstrapConfig {
                        log_slots: c.kv("log_slots")?,
                        k: c.kv("k")?,
                        cos_degree: c.kv("cos_degree")?,
                        double_angle: c.kv("double_angle")?,
                        cts_levels: c.kv("cts_levels")?,
                        stc_levels: c.kv("stc_levels")?,
                        log_message_ratio: c.kv("log_message_ratio")?,
                        zero_padded: false,
                        giant_step_cost: c.kv("giant_step_cost")?,
                    };
                    let output_scale = c.kv("output_scale")?;
                    config.zero_padded = !c.rest().is_empty() && {
                        let w = c.word()?;
                        if w != "zero_padded" {
                            return Err(c.err(format!("`{w}` after output_scale: expected `zero_padded` or nothing")));
                        }
                        true
                    };
                    bootstrap =
                        Some(super::ProgramBootstrap { config, output_scale, input_shifts: Default::default() });
                }
                "inputs_at" => inputs_at = Some(c.level_scale()?),
                "input" => {
                    let p = c.port()?;
                    n_in += p.regs.len();
                    inputs.push(p);
                }
                "output" => outputs.push(c.port()?),
                "const" => {
                    c.literal(&format!("c{}", constants.len()))?;
                    c.literal("[")?;
                    let mut runs: Vec<(f64, usize)> = Vec::new();
                    while !c.eat("]") {
                        if !runs.is_empty() {
                            c.literal(",")?;
                        }
                        let x: f64 = c.number_until(&['×', ',', ']'])?;
                        let n = if c.eat("×") { c.number_until(&[',', ']'])? } else { 1usize };
                        runs.push((x, n));
                    }
                    constants.push(SlotVector::from_runs(runs));
                }
                "source" => {
                    c.literal(&format!("s{}", sources.len()))?;
                    let node = c.quoted()?;
                    let op = c.quoted()?;
                    sources.push(super::Origin { node, op });
                }
                "at" => {
                    let w = c.word()?;
                    let src = match w {
                        "none" => None,
                        _ => match w.strip_prefix('s').and_then(|k| k.parse::<u32>().ok()) {
                            Some(k) if (k as usize) < sources.len() => Some(k),
                            _ => {
                                return Err(c.err(format!(
                                    "`at {w}`: expected `none` or a declared source s0..s{}",
                                    sources.len()
                                )))
                            }
                        },
                    };
                    at = Some(src);
                }
                r if r.starts_with('%') => {
                    let reg: usize = r[1..].parse().map_err(|_| c.err(format!("register `{r}`")))?;
                    if reg != n_in + insts.len() {
                        return Err(c.err(format!("register %{reg} out of order: expected %{}", n_in + insts.len())));
                    }
                    c.literal("=")?;
                    let op = c.op()?;
                    if op.is_bootstrap() && c.s.trim_start().starts_with('{') {
                        shifts.insert(insts.len(), c.attr("input_shift")?);
                    }
                    let (level, scale) = c.level_scale()?;
                    insts.push(super::Inst { op, level, scale });
                    if let Some(src) = at {
                        of_inst.resize(insts.len() - 1, None);
                        of_inst.push(src);
                    }
                }
                other => return Err(c.err(format!("unknown line `{other}`"))),
            }
            if !c.rest().is_empty() {
                return Err(c.err(format!("unexpected `{}`", c.rest())));
            }
        }
        let missing = |what: &str| ProgramError::Text { reason: format!("without {what}") };
        match bootstrap.as_mut() {
            Some(b) => b.input_shifts = shifts,
            None if !shifts.is_empty() => return Err(missing("a `bootstrap` line for the input shifts")),
            None => {}
        }
        let (log_n, q_bits, p_bits, dnum, log_scale, fingerprint, security, hamming_weight) =
            params.ok_or_else(|| missing("a `params` line"))?;
        let (input_level, input_scale) = inputs_at.ok_or_else(|| missing("an `inputs_at` line"))?;
        let program = Program {
            name: name.ok_or_else(|| missing("a `ckks_program` line"))?,
            params: super::ProgramParams {
                log_n,
                q_bits,
                p_bits,
                dnum,
                log_scale,
                fingerprint,
                moduli: moduli.ok_or_else(|| missing("a `moduli` line"))?,
                security,
                hamming_weight,
            },
            inputs,
            input_level,
            input_scale,
            constants,
            insts,
            outputs,
            bootstrap,
            origins: super::Origins { sources, of_inst },
        };
        program.validate_structure()?;
        Ok(program)
    }
}

/// A position in one line of the exact form.
struct Cursor<'a> {
    s: &'a str,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: impl Into<String>) -> ProgramError {
        ProgramError::Text { reason: format!("line {}: {}", self.line, reason.into()) }
    }

    fn rest(&self) -> &'a str {
        self.s.trim()
    }

    fn eat(&mut self, lit: &str) -> bool {
        let t = self.s.trim_start();
        match t.strip_prefix(lit) {
            Some(r) => {
                self.s = r;
                true
            }
            None => false,
        }
    }

    fn literal(&mut self, lit: &str) -> ProgramResult<()> {
        if self.eat(lit) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{lit}` at `{}`", self.rest())))
        }
    }

    /// The next whitespace-delimited word.
    fn word(&mut self) -> ProgramResult<&'a str> {
        let t = self.s.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        if end == 0 {
            return Err(self.err("unexpected end of line"));
        }
        self.s = &t[end..];
        Ok(&t[..end])
    }

    /// A number ending at whitespace or one of `stops`.
    fn number_until<T: std::str::FromStr>(&mut self, stops: &[char]) -> ProgramResult<T>
    where
        T::Err: std::fmt::Display,
    {
        let t = self.s.trim_start();
        let end = t.find(|ch: char| ch.is_whitespace() || stops.contains(&ch)).unwrap_or(t.len());
        let (tok, rest) = t.split_at(end);
        self.s = rest;
        tok.parse().map_err(|e: T::Err| self.err(format!("number `{tok}`: {e}")))
    }

    fn key(&mut self, key: &str) -> ProgramResult<()> {
        self.literal(key)?;
        self.literal("=")
    }

    fn kv<T: std::str::FromStr>(&mut self, key: &str) -> ProgramResult<T>
    where
        T::Err: std::fmt::Display,
    {
        self.key(key)?;
        self.number_until(&[])
    }

    fn kv_list<T: std::str::FromStr>(&mut self, key: &str) -> ProgramResult<Vec<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.key(key)?;
        self.list()
    }

    /// `[a, b, ...]`.
    fn list<T: std::str::FromStr>(&mut self) -> ProgramResult<Vec<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.literal("[")?;
        let mut v = Vec::new();
        while !self.eat("]") {
            if !v.is_empty() {
                self.literal(",")?;
            }
            v.push(self.number_until(&[',', ']'])?);
        }
        Ok(v)
    }

    fn quoted(&mut self) -> ProgramResult<String> {
        self.literal("\"")?;
        let mut out = String::new();
        let mut chars = self.s.char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.s = &self.s[i + 1..];
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                _ => out.push(ch),
            }
        }
        Err(self.err("unterminated string"))
    }

    fn reg(&mut self) -> ProgramResult<super::Reg> {
        self.literal("%")?;
        self.number_until(&[',', ']', '{'])
    }

    /// `"name" f64[shape] row_major/S [%r, ...]` or `... axes[order]/S [...]`.
    fn port(&mut self) -> ProgramResult<Port> {
        let name = self.quoted()?;
        self.literal("f64")?;
        let shape: Vec<usize> = self.list()?;
        let layout = if self.eat("row_major/") {
            SlotLayout::RowMajor { shape, slots: self.number_until(&[])? }
        } else if self.eat("axes") {
            let order: Vec<usize> = self.list()?;
            self.literal("/")?;
            SlotLayout::Axes { shape, order, slots: self.number_until(&[])? }
        } else {
            return Err(self.err(format!("expected row_major/S or axes[..]/S at `{}`", self.rest())));
        };
        self.literal("[")?;
        let mut regs = Vec::new();
        while !self.eat("]") {
            if !regs.is_empty() {
                self.literal(",")?;
            }
            regs.push(self.reg()?);
        }
        Ok(Port { name, layout, regs })
    }

    /// `@L<level> <scale>`.
    fn level_scale(&mut self) -> ProgramResult<(usize, f64)> {
        self.literal("@L")?;
        let level = self.number_until(&[])?;
        let scale = self.number_until(&[])?;
        Ok((level, scale))
    }

    fn constant(&mut self) -> ProgramResult<u32> {
        self.literal("c")?;
        self.number_until(&[',', '{'])
    }

    fn attr<T: std::str::FromStr>(&mut self, key: &str) -> ProgramResult<T>
    where
        T::Err: std::fmt::Display,
    {
        self.literal("{")?;
        self.key(key)?;
        let v = self.number_until(&['}'])?;
        self.literal("}")?;
        Ok(v)
    }

    fn op(&mut self) -> ProgramResult<Op> {
        let name = self.word()?;
        let two = |c: &mut Self| -> ProgramResult<(super::Reg, super::Reg)> {
            let a = c.reg()?;
            c.literal(",")?;
            Ok((a, c.reg()?))
        };
        Ok(match name {
            "add" => two(self).map(|(a, b)| Op::Add(a, b))?,
            "sub" => two(self).map(|(a, b)| Op::Sub(a, b))?,
            "mul_relin" => two(self).map(|(a, b)| Op::Mul(a, b))?,
            "neg" => Op::Neg(self.reg()?),
            "rescale" => Op::Rescale(self.reg()?),
            "bootstrap" => Op::Bootstrap(self.reg()?),
            "bootstrap_pair" => two(self).map(|(a, b)| Op::BootstrapPair(a, b))?,
            "conjugate" => Op::Conjugate(self.reg()?),
            "mul_i" => Op::MulI(self.reg()?),
            "add_plain" | "sub_plain" => {
                let a = self.reg()?;
                self.literal(",")?;
                let c = self.constant()?;
                if name == "add_plain" {
                    Op::AddPlain(a, c)
                } else {
                    Op::SubPlain(a, c)
                }
            }
            "mul_plain" => {
                let src = self.reg()?;
                self.literal(",")?;
                let constant = self.constant()?;
                Op::MulPlain { src, constant, pt_scale: self.attr("pt_scale")? }
            }
            "mul_scalar" => {
                let src = self.reg()?;
                self.literal(",")?;
                let value = self.number_until(&['{'])?;
                Op::MulScalar { src, value, const_scale: self.attr("const_scale")? }
            }
            "mul_int" => {
                let a = self.reg()?;
                self.literal(",")?;
                Op::MulInt(a, self.number_until(&[])?)
            }
            "drop_level" => {
                let src = self.reg()?;
                Op::DropLevel { src, level: self.attr("level")? }
            }
            "rotate" => {
                let src = self.reg()?;
                Op::Rotate { src, step: self.attr("step")? }
            }
            other => return Err(self.err(format!("unknown instruction `{other}`"))),
        })
    }
}
