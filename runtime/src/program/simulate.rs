//! Executing a [`Program`] on plaintext slot vectors: no keys, no encryption, no noise. It computes
//! what the encrypted execution approximates, register by register, so the compiler can measure the
//! values a program's bootstrappings refresh (their input must stay small next to `q_0`: see
//! [`super::ProgramBootstrap::input_shifts`]) and a user can tell which instruction an encrypted run
//! went wrong at.
//!
//! Semantics (the CKKS slot algebra; slots are complex, `N/2` of them): elementwise add, sub,
//! products (plaintext operands are their dense values, zero past their length), `rotate k` reads
//! slot `j + k`, `conjugate`, `mul_i`, rescale and level drops change nothing. A bootstrapping of
//! `n = 2^log_slots` slots returns, in slot `j`, the mean of the input's slots `j + k·n` over `k`
//! (the identity for `n = N/2` or an `n`-periodic input); zero-padded, it returns their sum on slots
//! `0..n` and zero elsewhere. `bootstrap_pair a, b` refreshes `(a + i·b)/2`.
//!
//! Requires: a structurally valid program. Guarantees: registers are freed after their last use, as
//! in [`super::execute`], so memory follows the live set.

use num_complex::Complex64;

use super::{Op, Program, ProgramError, ProgramResult};

/// What [`simulate`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// One row-major tensor per program output (real parts), as [`super::decrypt_outputs`] gives.
    pub outputs: Vec<Vec<f64>>,
    /// For every bootstrapping instruction, the largest slot magnitude it refreshes (a pair: of
    /// both operands).
    pub bootstrap_inputs: Vec<(usize, f64)>,
}

/// Runs `program` on the row-major `inputs` (one per input port) in the clear.
pub fn simulate(program: &Program, inputs: &[Vec<f64>]) -> ProgramResult<Simulation> {
    simulate_observed(program, inputs, &mut |_, _| {})
}

/// [`simulate`], calling `observe` with every instruction's index and slot values.
pub fn simulate_observed(
    program: &Program,
    inputs: &[Vec<f64>],
    observe: &mut dyn FnMut(usize, &[Complex64]),
) -> ProgramResult<Simulation> {
    program.validate_structure()?;
    if inputs.len() != program.inputs.len() {
        return Err(ProgramError::Interface {
            reason: format!("{} input tensors given, the program takes {}", inputs.len(), program.inputs.len()),
        });
    }
    let slots = program.params.slots();
    let mut regs: Vec<Option<Vec<Complex64>>> = Vec::with_capacity(program.num_regs());
    for (port, data) in program.inputs.iter().zip(inputs) {
        for part in port.layout.pack(data)? {
            let mut v = vec![Complex64::new(0.0, 0.0); slots];
            v.iter_mut().zip(&part).for_each(|(s, &x)| *s = Complex64::new(x, 0.0));
            regs.push(Some(v));
        }
    }
    let n_in = regs.len();
    regs.resize_with(program.num_regs(), || None);
    let mut uses_left = vec![0usize; program.num_regs()];
    for inst in &program.insts {
        for r in inst.op.operands() {
            if let Some(u) = uses_left.get_mut(r as usize) {
                *u += 1;
            }
        }
    }
    let mut keep = vec![false; program.num_regs()];
    for o in &program.outputs {
        for &r in &o.regs {
            if let Some(k) = keep.get_mut(r as usize) {
                *k = true;
            }
        }
    }
    let boot = program.bootstrap.as_ref().map(|b| (1usize << b.config.log_slots, b.config.zero_padded));
    let mut bootstrap_inputs = Vec::new();
    for (i, inst) in program.insts.iter().enumerate() {
        let get = |r: u32| -> ProgramResult<&Vec<Complex64>> {
            regs.get(r as usize)
                .and_then(|x| x.as_ref())
                .ok_or(ProgramError::Invalid { inst: i, reason: format!("register %{r} is not available") })
        };
        let constant = |c: u32| -> ProgramResult<Vec<f64>> {
            program
                .constants
                .get(c as usize)
                .map(|v| v.to_dense())
                .ok_or(ProgramError::Invalid { inst: i, reason: format!("constant c{c} does not exist") })
        };
        let map = |a: &Vec<Complex64>, f: &dyn Fn(Complex64) -> Complex64| a.iter().map(|&x| f(x)).collect::<Vec<_>>();
        let zip = |a: &Vec<Complex64>, b: &Vec<Complex64>, f: &dyn Fn(Complex64, Complex64) -> Complex64| {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect::<Vec<_>>()
        };
        let with_plain = |a: &Vec<Complex64>, c: &[f64], f: &dyn Fn(Complex64, f64) -> Complex64| {
            a.iter().enumerate().map(|(j, &x)| f(x, c.get(j).copied().unwrap_or(0.0))).collect::<Vec<_>>()
        };
        let refresh = |x: &Vec<Complex64>| -> Vec<Complex64> {
            let Some((n, padded)) = boot else { return x.clone() };
            if n >= slots {
                return x.clone();
            }
            let copies = slots / n;
            let mut sum = vec![Complex64::new(0.0, 0.0); n];
            for (j, v) in x.iter().enumerate() {
                if let Some(s) = sum.get_mut(j % n) {
                    *s += v;
                }
            }
            (0..slots)
                .map(|j| match (padded, j < n) {
                    (true, true) => sum.get(j).copied().unwrap_or_default(),
                    (true, false) => Complex64::new(0.0, 0.0),
                    (false, _) => sum.get(j % n).copied().unwrap_or_default() / copies as f64,
                })
                .collect()
        };
        let abs_max = |x: &Vec<Complex64>| x.iter().map(|v| v.norm()).fold(0.0, f64::max);
        let out = match inst.op {
            Op::Add(a, b) => zip(get(a)?, get(b)?, &|x, y| x + y),
            Op::Sub(a, b) => zip(get(a)?, get(b)?, &|x, y| x - y),
            Op::Mul(a, b) => zip(get(a)?, get(b)?, &|x, y| x * y),
            Op::Neg(a) => map(get(a)?, &|x| -x),
            Op::AddPlain(a, c) => with_plain(get(a)?, &constant(c)?, &|x, y| x + y),
            Op::SubPlain(a, c) => with_plain(get(a)?, &constant(c)?, &|x, y| x - y),
            Op::MulPlain { src, constant: c, .. } => with_plain(get(src)?, &constant(c)?, &|x, y| x * y),
            Op::MulScalar { src, value, .. } => map(get(src)?, &|x| x * value),
            Op::MulInt(a, k) => map(get(a)?, &|x| x * k as f64),
            Op::Rescale(a) | Op::DropLevel { src: a, .. } => get(a)?.clone(),
            Op::Rotate { src, step } => {
                let x = get(src)?;
                let k = step.rem_euclid(slots as i64) as usize;
                (0..slots).map(|j| x.get((j + k) % slots).copied().unwrap_or_default()).collect()
            }
            Op::Conjugate(a) => map(get(a)?, &|x| x.conj()),
            Op::MulI(a) => map(get(a)?, &|x| x * Complex64::i()),
            Op::Bootstrap(a) => {
                let x = get(a)?;
                bootstrap_inputs.push((i, abs_max(x)));
                refresh(x)
            }
            Op::BootstrapPair(a, b) => {
                let (x, y) = (get(a)?, get(b)?);
                bootstrap_inputs.push((i, abs_max(x).max(abs_max(y))));
                let z = zip(x, y, &|u, v| (u + Complex64::i() * v) / 2.0);
                refresh(&z)
            }
        };
        observe(i, &out);
        if let Some(slot) = regs.get_mut(n_in + i) {
            *slot = Some(out);
        }
        for r in inst.op.operands() {
            let r = r as usize;
            if let Some(u) = uses_left.get_mut(r) {
                *u = u.saturating_sub(1);
                if *u == 0 && !keep.get(r).copied().unwrap_or(true) {
                    if let Some(slot) = regs.get_mut(r) {
                        *slot = None;
                    }
                }
            }
        }
    }
    let mut outputs = Vec::new();
    for o in &program.outputs {
        let parts = o
            .regs
            .iter()
            .map(|&r| {
                regs.get(r as usize)
                    .and_then(|x| x.as_ref())
                    .map(|v| v.iter().map(|c| c.re).collect::<Vec<f64>>())
                    .ok_or(ProgramError::Invalid {
                        inst: program.insts.len(),
                        reason: format!("output register %{r} was never computed"),
                    })
            })
            .collect::<ProgramResult<Vec<_>>>()?;
        outputs.push(o.layout.unpack(&parts)?);
    }
    Ok(Simulation { outputs, bootstrap_inputs })
}
