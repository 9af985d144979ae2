//! Where a program's instructions came from: the compiler's source op (an IR node and its op kind)
//! per instruction. Execution ignores it; time reports use it (`polyhe run --mode encrypted` and
//! `polyhe eval` print the time per layer and per phase), and the text forms show it, so a reader
//! of a 200k-instruction program can find the instructions of one node. Optional: a hand-written
//! program has none ([`Origins::is_empty`]).

/// One source of instructions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The IR node's name (`/encoder/layer.0/attention/MatMul`).
    pub node: String,
    /// The IR node's op (`matmul`, `chebyshev`, …).
    pub op: String,
}

/// The source of every instruction, or of none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins {
    /// Distinct sources, referred to by index.
    pub sources: Vec<Origin>,
    /// Per instruction, its source (`None`: not known, e.g. an output's layout change). Empty when
    /// the program carries no origins; otherwise as long as the instructions.
    pub of_inst: Vec<Option<u32>>,
}

impl Origins {
    /// Builds the table from one (node, op) pair per instruction (consecutive equal pairs share
    /// an entry; an empty node is `None`).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Origins {
        let mut index: std::collections::HashMap<(&str, &str), u32> = std::collections::HashMap::new();
        let mut o = Origins::default();
        for (node, op) in pairs {
            if node.is_empty() {
                o.of_inst.push(None);
                continue;
            }
            let next = o.sources.len() as u32;
            let k = *index.entry((node, op)).or_insert_with(|| {
                o.sources.push(Origin { node: node.to_string(), op: op.to_string() });
                next
            });
            o.of_inst.push(Some(k));
        }
        o
    }

    pub fn is_empty(&self) -> bool {
        self.of_inst.is_empty()
    }

    /// The source of instruction `i`.
    pub fn of(&self, i: usize) -> Option<&Origin> {
        self.of_inst.get(i).copied().flatten().and_then(|k| self.sources.get(k as usize))
    }

    /// Maximal runs of consecutive instructions with one source: (first instruction, length,
    /// source).
    pub fn runs(&self) -> Vec<(usize, usize, Option<u32>)> {
        let mut out: Vec<(usize, usize, Option<u32>)> = Vec::new();
        for (i, &s) in self.of_inst.iter().enumerate() {
            match out.last_mut() {
                Some((_, n, last)) if *last == s => *n += 1,
                _ => out.push((i, 1, s)),
            }
        }
        out
    }

    /// Empty, or one entry per instruction, each naming an existing source.
    pub fn check(&self, insts: usize) -> Result<(), String> {
        if self.is_empty() {
            return if self.sources.is_empty() {
                Ok(())
            } else {
                Err(format!("{} instruction sources but no instruction has one", self.sources.len()))
            };
        }
        if self.of_inst.len() != insts {
            return Err(format!("{} instruction origins for {insts} instructions", self.of_inst.len()));
        }
        if let Some((i, k)) = self
            .of_inst
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.filter(|&k| k as usize >= self.sources.len()).map(|k| (i, k)))
        {
            return Err(format!("instruction {i} names source s{k}, there are {}", self.sources.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_share_sources_and_runs_merge() {
        let o = Origins::from_pairs([("a", "matmul"), ("a", "matmul"), ("", ""), ("b", "mul"), ("a", "matmul")]);
        assert_eq!(o.sources.len(), 2);
        assert_eq!(o.of_inst, vec![Some(0), Some(0), None, Some(1), Some(0)]);
        assert_eq!(o.runs(), vec![(0, 2, Some(0)), (2, 1, None), (3, 1, Some(1)), (4, 1, Some(0))]);
        assert_eq!(o.of(3).map(|s| s.node.as_str()), Some("b"));
        assert!(o.check(5).is_ok());
        assert!(o.check(4).is_err());
        let bad = Origins { sources: vec![], of_inst: vec![Some(0)] };
        assert!(bad.check(1).unwrap_err().contains("s0"));
        assert!(Origins::default().check(7).is_ok());
    }
}
