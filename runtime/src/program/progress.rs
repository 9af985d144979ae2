//! Progress of an execution, with an estimate of the time left.
//!
//! The estimate prices the instructions left with the CPU time the same kind of work has taken so
//! far in this run: three classes (bootstrappings; key switches: rotations, relinearizing products,
//! conjugations; everything else), each weighted by its level (the work of an NTT-domain operation
//! grows with the primes it spans). Until each class left has run once, there is no estimate:
//! a bootstrapping costs as much as hundreds of rotations, and a guess would be worse than none.

use super::{Inst, Op};

/// What [`super::execute_with_progress`] reports about every two seconds, and once at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressReport {
    pub done: usize,
    pub total: usize,
    /// Wall-clock seconds so far.
    pub seconds: f64,
    /// Estimated wall-clock seconds left (`None` until every class of work left has run once).
    pub remaining_seconds: Option<f64>,
    pub bootstraps_done: usize,
    pub bootstraps_total: usize,
}

/// Progress callback of [`super::execute_with_progress`].
pub type Progress<'a> = &'a (dyn Fn(&ProgressReport) + Sync);

const CLASSES: usize = 3;

/// The class and weight of one instruction (see the module doc).
fn class_weight(op: &Op, level: usize) -> (usize, f64) {
    let l = (level + 1) as f64;
    match op {
        Op::Bootstrap(_) | Op::BootstrapPair(..) => (0, 1.0),
        Op::Rotate { .. } | Op::Mul(..) | Op::Conjugate(_) => (1, l),
        _ => (2, l),
    }
}

/// Work left and done per class, and the CPU seconds the done work took.
pub(crate) struct Eta {
    left: [f64; CLASSES],
    done: [f64; CLASSES],
    cpu: [f64; CLASSES],
    pub(crate) bootstraps_done: usize,
    pub(crate) bootstraps_total: usize,
}

impl Eta {
    pub(crate) fn new(insts: &[Inst]) -> Eta {
        let mut left = [0.0; CLASSES];
        let mut bootstraps_total = 0;
        for inst in insts {
            let (c, w) = class_weight(&inst.op, inst.level);
            if let Some(x) = left.get_mut(c) {
                *x += w;
            }
            bootstraps_total += usize::from(c == 0);
        }
        Eta { left, done: [0.0; CLASSES], cpu: [0.0; CLASSES], bootstraps_done: 0, bootstraps_total }
    }

    /// Instruction `op` at `level` ran in `cpu_seconds`.
    pub(crate) fn record(&mut self, op: &Op, level: usize, cpu_seconds: f64) {
        let (c, w) = class_weight(op, level);
        if let (Some(l), Some(d), Some(s)) = (self.left.get_mut(c), self.done.get_mut(c), self.cpu.get_mut(c)) {
            *l = (*l - w).max(0.0);
            *d += w;
            *s += cpu_seconds;
        }
        self.bootstraps_done += usize::from(c == 0);
    }

    /// Wall-clock seconds left, given the wall-clock seconds so far.
    pub(crate) fn remaining(&self, wall: f64) -> Option<f64> {
        let cpu_done: f64 = self.cpu.iter().sum();
        if cpu_done <= 0.0 {
            return None;
        }
        let mut cpu_left = 0.0;
        for c in 0..CLASSES {
            let (l, d, s) = (self.left.get(c)?, self.done.get(c)?, self.cpu.get(c)?);
            if *l > 0.0 {
                if *d <= 0.0 {
                    return None;
                }
                cpu_left += l * s / d;
            }
        }
        Some(cpu_left * wall / cpu_done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_prices_each_class_by_its_own_rate() {
        let inst = |op, level| Inst { op, level, scale: 1.0 };
        let insts = vec![
            inst(Op::Add(0, 0), 1),
            inst(Op::Rotate { src: 0, step: 1 }, 1),
            inst(Op::Rotate { src: 0, step: 1 }, 1),
            inst(Op::Bootstrap(0), 1),
            inst(Op::Bootstrap(0), 1),
        ];
        let mut eta = Eta::new(&insts);
        assert_eq!(eta.bootstraps_total, 2);
        eta.record(&Op::Add(0, 0), 1, 0.1);
        eta.record(&Op::Rotate { src: 0, step: 1 }, 1, 1.0);
        // No bootstrapping has run yet: no estimate.
        assert_eq!(eta.remaining(1.1), None);
        eta.record(&Op::Bootstrap(0), 1, 10.0);
        // Left: one rotation (1 s of CPU) and one bootstrapping (10 s); wall = CPU here.
        let r = eta.remaining(11.1).unwrap();
        assert!((r - 11.0).abs() < 1e-9, "{r}");
        // On two threads the same CPU time takes half the wall time.
        let r = eta.remaining(11.1 / 2.0).unwrap();
        assert!((r - 5.5).abs() < 1e-9, "{r}");
    }
}
