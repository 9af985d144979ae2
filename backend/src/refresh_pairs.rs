//! Pairing refreshes: two real values refreshed in one bootstrapping.
//!
//! Requires: a lowering with bootstrapping (`Builder` instructions with `bootstrap` ops), every
//! encrypted value real (the lowering never makes a complex one).
//! Guarantees: a `bootstrap %a` and a later `bootstrap %b` whose operand is already defined at the
//! first and at the same level (so, by the builder's invariant, at the same scale) become one
//! `bootstrap_pair %a, %b` at the first, split by one conjugation: `a = z + z̄` and
//! `b = i·(z̄ − z)` for the refreshed `z = (a + i·b)/2`
//! (`polyhe_runtime::Bootstrapper::bootstrap_complex`). The second bootstrap is dropped and its
//! uses read the split `b`. Pairs are taken greedily in program order, each bootstrap with the
//! earliest later partner it can have. Values, levels and scales are unchanged; so are slot
//! supports (a pair refreshes the hull of both, and the zero-padded check covers both operands).
//!
//! Why: a bootstrapping costs seconds at N = 2^16, the split one key switch (the conjugation, at
//! the refreshed level) and a few additions; about one bit of precision is lost
//! (`docs/bootstrapping.md`, "Two real ciphertexts per bootstrapping").

use std::collections::BTreeMap;

use polyhe_runtime::{Inst, ProgramOp as Op, Reg};

use crate::lower::Lowered;

/// Pairs the bootstraps of `l` (see the module doc); returns the number of pairs made.
pub(crate) fn pair_refreshes(l: &mut Lowered) -> usize {
    let n_in = l.builder.n_in;
    let insts = &l.builder.insts;
    let boots: Vec<(usize, Reg)> = insts
        .iter()
        .enumerate()
        .filter_map(|(k, i)| match i.op {
            Op::Bootstrap(a) => Some((k, a)),
            _ => None,
        })
        .collect();
    let mut uses = vec![0usize; n_in + insts.len()];
    for i in insts {
        for r in i.op.operands() {
            if let Some(u) = uses.get_mut(r as usize) {
                *u += 1;
            }
        }
    }
    // The operand of a bootstrap, as it can be computed at instruction `i`: the register itself
    // when defined before `i`, or, for the rotation that moves a value to slot 0 for its refresh
    // (`Builder::refresh_for`), that rotation redone at `i` (`Some(step)`) when its source is.
    let available = |b: Reg, i: usize| -> Option<(Reg, Option<Inst>)> {
        if (b as usize) < n_in + i {
            return Some((b, None));
        }
        let rot = insts.get((b as usize).checked_sub(n_in)?)?;
        match rot.op {
            Op::Rotate { src, .. } if (src as usize) < n_in + i && uses.get(b as usize) == Some(&1) => {
                Some((src, Some(rot.clone())))
            }
            _ => None,
        }
    };
    // first bootstrap → (its partner, the partner's operand as available at the first)
    let mut partner: BTreeMap<usize, (usize, Reg, Option<Inst>)> = BTreeMap::new();
    // first bootstrap → its partner's slot-0 rotation, redone at the first and dropped where it was
    let mut moved: BTreeMap<usize, usize> = BTreeMap::new();
    let mut taken = vec![false; boots.len()];
    for (x, &(i, a)) in boots.iter().enumerate() {
        if taken.get(x).copied().unwrap_or(true) {
            continue;
        }
        let found = boots.iter().enumerate().skip(x + 1).find_map(|(y, &(j, b))| {
            let (src, step) = available(b, i)?;
            let ok = !taken.get(y).copied().unwrap_or(true) && b != a && l.builder.level(b) == l.builder.level(a);
            ok.then_some((y, j, b, src, step))
        });
        if let Some((y, j, b, src, step)) = found {
            taken[x] = true;
            taken[y] = true;
            if step.is_some() {
                moved.insert(i, b as usize - n_in);
            }
            partner.insert(i, (j, src, step));
        }
    }
    if partner.is_empty() {
        return 0;
    }
    // dropped instruction → the register its value has now
    let mut now: BTreeMap<usize, Reg> = BTreeMap::new();
    let (origin, reg_map) = l.builder.rebuild(|k, inst, next, map| {
        if let Some(&r) = now.get(&k) {
            return (Vec::new(), r);
        }
        let (Some((j, src, rot)), Op::Bootstrap(a)) = (partner.get(&k), &inst.op) else { return (vec![inst], next) };
        let at = |op, inst: &Inst| Inst { op, level: inst.level, scale: inst.scale };
        let mut out = Vec::new();
        let mut b = map.get(*src as usize).copied().unwrap_or(*src);
        if let (Some(rot), Some(&old)) = (rot, moved.get(&k)) {
            // the partner's slot-0 rotation, redone here from its (renumbered) source
            out.push(Inst { op: rot.op.map_operands(|_| b), ..rot.clone() });
            b = next;
            now.insert(old, b);
        }
        let z = next + out.len() as Reg;
        let (zc, d) = (z + 1, z + 3);
        out.extend([
            at(Op::BootstrapPair(*a, b), &inst),
            at(Op::Conjugate(z), &inst),
            at(Op::Add(z, zc), &inst), // a
            at(Op::Sub(zc, z), &inst), // −i·b
            at(Op::MulI(d), &inst),    // b
        ]);
        now.insert(*j, z + 4);
        (out, z + 2)
    });
    l.remap(&origin, &reg_map);
    partner.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels::Builder;
    use polyhe_runtime::{Port, SlotLayout};

    fn lowered(b: Builder, outputs: Vec<Reg>) -> Lowered {
        let slots = 64;
        Lowered {
            builder: b,
            inputs: Vec::new(),
            outputs: vec![Port {
                name: "y".into(),
                layout: SlotLayout::RowMajor { shape: vec![slots * outputs.len()], slots },
                regs: outputs,
            }],
            stats: Default::default(),
            inst_node: Vec::new(),
            inst_op: Vec::new(),
            client_values: Vec::new(),
            value_names: Default::default(),
            packings: Default::default(),
        }
    }

    /// Two values refreshed one after the other, the second rotated to slot 0 first: the pair
    /// takes the second's rotation along (redone before the pair, dropped where it was), both
    /// refreshed copies keep their uses, and the levels are the refreshes'.
    #[test]
    fn a_later_refresh_and_its_slot_zero_rotation_join_the_first() {
        let mut b = Builder::new(vec![1 << 50, 1 << 40, 1 << 40], 40, 2, 64);
        b.enable_bootstrapping();
        let x = b.input(8);
        let y = b.input(8);
        let x2 = b.mul(x, x).unwrap();
        let yr = b.rotate(y, 2); // nonzero slots wrap: refreshed via slot 0
        let y2 = b.mul(yr, yr).unwrap();
        let fx = b.ensure(x2).unwrap();
        let fy = b.ensure(y2).unwrap();
        let out = b.add(fx, fy).unwrap();
        let before: Vec<Op> = b.insts.iter().map(|i| i.op.clone()).collect();
        assert_eq!(before.iter().filter(|o| matches!(o, Op::Bootstrap(_))).count(), 2);
        let mut l = lowered(b, vec![out]);
        assert_eq!(pair_refreshes(&mut l), 1);
        let ops: Vec<&Op> = l.builder.insts.iter().map(|i| &i.op).collect();
        assert!(!ops.iter().any(|o| matches!(o, Op::Bootstrap(_))), "{ops:?}");
        let pair = ops.iter().position(|o| matches!(o, Op::BootstrapPair(..))).unwrap();
        // the partner's rotation right before the pair, none left after it
        assert!(matches!(ops[pair - 1], Op::Rotate { step: -2, .. }), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::Rotate { step: -2, .. })).count(), 1);
        assert!(matches!(&ops[pair + 1..pair + 5], [Op::Conjugate(_), Op::Add(..), Op::Sub(..), Op::MulI(_)]));
        // every operand defined before use, the output the last instruction
        let n_in = l.builder.n_in;
        for (k, o) in ops.iter().enumerate() {
            assert!(o.operands().iter().all(|&r| (r as usize) < n_in + k), "{k}: {o:?}");
        }
        assert_eq!(l.outputs[0].regs, vec![(n_in + ops.len() - 1) as Reg]);
        assert_eq!(l.inst_node.len(), ops.len());
    }
}
