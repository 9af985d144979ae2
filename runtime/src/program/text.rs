//! The human-readable text form of a [`Program`] (`polyhe dump --stage ckks`).
//!
//! Every instruction line ends with its result's `@L<level> 2^<log2 scale>` annotation, so a snapshot
//! shows the level and scale management. Constants are summarized: length, nonzeros, runs and the
//! first runs as `value×count` (`value` alone for a run of one). A port's layout is `row_major/<slots>`
//! or `axes<order>/<slots>`.

use std::fmt::Write;

use super::{Op, Port, Program, SlotLayout};

fn port(p: &Port) -> String {
    let layout = match &p.layout {
        SlotLayout::RowMajor { slots, .. } => format!("row_major/{slots}"),
        SlotLayout::Axes { order, slots, .. } => format!("axes{order:?}/{slots}"),
    };
    let regs: Vec<String> = p.regs.iter().map(|r| format!("%{r}")).collect();
    format!("{}: f64{:?} {layout} [{}]", p.name, p.layout.shape(), regs.join(", "))
}

impl Program {
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
                "bootstrap log_slots={} k={} cos_degree={} double_angle={} cts_levels={} stc_levels={} log_message_ratio={} output_scale=2^{:.4} -> @L{}",
                c.log_slots,
                c.k,
                c.cos_degree,
                c.double_angle,
                c.cts_levels,
                c.stc_levels,
                c.log_message_ratio,
                b.output_scale.log2(),
                self.bootstrap_output_level().map_or_else(|| "?".to_string(), |l| l.to_string())
            );
        }
        for i in &self.inputs {
            let _ = writeln!(s, "input {} @L{} 2^{:.4}", port(i), self.input_level, self.input_scale.log2());
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
        for (i, inst) in self.insts.iter().enumerate() {
            let args = match &inst.op {
                Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) => format!("%{a}, %{b}"),
                Op::Neg(a) | Op::Rescale(a) | Op::Bootstrap(a) => format!("%{a}"),
                Op::AddPlain(a, c) | Op::SubPlain(a, c) => format!("%{a}, c{c}"),
                Op::MulPlain { src, constant, pt_scale } => {
                    format!("%{src}, c{constant} {{pt_scale=2^{:.4}}}", pt_scale.log2())
                }
                Op::MulScalar { src, value, const_scale } => {
                    format!("%{src}, {value:e} {{const_scale=2^{:.4}}}", const_scale.log2())
                }
                Op::MulInt(a, k) => format!("%{a}, {k}"),
                Op::DropLevel { src, level } => format!("%{src} {{level={level}}}"),
                Op::Rotate { src, step } => format!("%{src} {{step={step}}}"),
            };
            let _ =
                writeln!(s, "%{} = {} {args} @L{} 2^{:.4}", n_in + i, inst.op.name(), inst.level, inst.scale.log2());
        }
        for o in &self.outputs {
            let _ = writeln!(s, "output {}", port(o));
        }
        s
    }
}
