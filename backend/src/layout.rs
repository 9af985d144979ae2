//! Slot layouts of encrypted tensors and the policy that picks one per tensor.
//!
//! Requires: nothing (pure index arithmetic).
//! Guarantees: a [`Layout`] is a bijection from the row-major element indices of a tensor onto the
//! positions `0..numel` (position `p` = ciphertext `p / S`, slot `p % S`), so the ciphertext count
//! and the occupied slots are those of the row-major layout, and unused slots stay the same. Maps
//! are built over elements (`affine_ops.rs`, index tracing) and moved to positions only when they
//! are emitted (`lower.rs`), so every op's lowering is layout-independent.
//!
//! Why column-major: a transformer activation `[.., T, d]` (tokens × hidden) laid out row-major
//! puts token `t`'s features at `t·d + j`; a projection to `d'` features then has diagonals
//! `k − j − t·(d' − d)` that drift with the token, e.g. 16 tokens × 384 → 1536 gives ~19k
//! diagonals. With the last two axes swapped (token fastest, `t + T·j`, the "column" or
//! hidden-major packing of MOAI/THOR) every diagonal offset is `T·(k − j)` whatever the token:
//! `d + d' − 1` diagonals, each repeating one value per feature over the `T` token slots (which
//! the program stores run-length encoded).

use polyhe_runtime::SlotLayout;

/// How a tensor's elements are placed in the slots (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    kind: LayoutKind,
    shape: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayoutKind {
    RowMajor,
    /// The last two axes swapped.
    ColumnMajor,
    /// `[.., I, J]` by rotated diagonals: element `(.., i, j)` at `r·I + i` of its `I·J` block,
    /// `r = (j − i) mod J` (attention scores as [`crate::lower`]'s rotated products make them:
    /// their sum lands here with a few diagonals per head, where the column layout needs one per
    /// head, offset and wrap). Never a port's layout.
    Skewed,
}

/// Which layout the lowering gives the tensors it materializes (`--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum LayoutPolicy {
    /// Every tensor row-major.
    #[default]
    #[serde(rename = "row")]
    RowMajor,
    /// Tensors of rank ≥ 2 with the last two axes swapped (token-fastest for `[.., T, d]`).
    #[serde(rename = "column")]
    ColumnMajor,
}

impl std::fmt::Display for LayoutPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutPolicy::RowMajor => "row",
            LayoutPolicy::ColumnMajor => "column",
        })
    }
}

impl std::str::FromStr for LayoutPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "row" => Ok(LayoutPolicy::RowMajor),
            "column" => Ok(LayoutPolicy::ColumnMajor),
            other => Err(format!("unknown layout `{other}` (row, column or auto)")),
        }
    }
}

impl LayoutPolicy {
    /// The layout of a tensor of `shape` the lowering materializes.
    pub(crate) fn layout_for(self, shape: &[usize]) -> Layout {
        match self {
            LayoutPolicy::RowMajor => Layout::row_major(shape),
            // The last two axes swapped at every rank: activations `[.., T, H]` get tokens
            // fastest, and per-head tensors `[1, heads, T, d]` then sit where the `[T, heads·d]`
            // activation they are split from sits (the head split is free).
            LayoutPolicy::ColumnMajor => Layout::column_major(shape),
        }
    }
}

/// `row[1, 16, 32]` / `column[1, 16, 32]` (traces).
impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            LayoutKind::RowMajor => "row",
            LayoutKind::ColumnMajor => "column",
            LayoutKind::Skewed => "skewed",
        };
        write!(f, "{kind}{:?}", self.shape)
    }
}

impl Layout {
    pub(crate) fn row_major(shape: &[usize]) -> Layout {
        Layout { kind: LayoutKind::RowMajor, shape: shape.to_vec() }
    }

    /// The last two axes swapped; row-major when that places every element where row-major does
    /// (rank < 2, or one of the two axes has size 1), so equal placements compare equal.
    pub(crate) fn column_major(shape: &[usize]) -> Layout {
        let r = shape.len();
        if r < 2 || shape[r - 1] <= 1 || shape[r - 2] <= 1 {
            return Layout::row_major(shape);
        }
        Layout { kind: LayoutKind::ColumnMajor, shape: shape.to_vec() }
    }

    /// See [`LayoutKind::Skewed`]; `None` below rank 2 or with a last axis of size 1.
    pub(crate) fn skewed(shape: &[usize]) -> Option<Layout> {
        let r = shape.len();
        (r >= 2 && shape[r - 1] > 1 && shape[r - 2] > 1)
            .then(|| Layout { kind: LayoutKind::Skewed, shape: shape.to_vec() })
    }

    pub(crate) fn is_skewed(&self) -> bool {
        self.kind == LayoutKind::Skewed
    }

    pub(crate) fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub(crate) fn is_row_major(&self) -> bool {
        self.kind == LayoutKind::RowMajor
    }

    /// The position of row-major element `e`.
    pub(crate) fn position(&self, e: usize) -> usize {
        match self.kind {
            LayoutKind::RowMajor => e,
            LayoutKind::ColumnMajor => {
                let r = self.shape.len();
                let (a, b) = (self.shape[r - 2], self.shape[r - 1]);
                let (outer, inner) = (e / (a * b), e % (a * b));
                let (i, j) = (inner / b, inner % b);
                outer * a * b + j * a + i
            }
            LayoutKind::Skewed => {
                let r = self.shape.len();
                let (a, b) = (self.shape[r - 2], self.shape[r - 1]);
                let (outer, inner) = (e / (a * b), e % (a * b));
                let (i, j) = (inner / b, inner % b);
                outer * a * b + ((j + b - i % b) % b) * a + i
            }
        }
    }

    /// Along the walk `e, e + se, …` (at most `len` elements): `(ps, n)`, the longest prefix of
    /// `n ≥ 1` elements whose positions advance by the one stride `ps` (`ps` is meaningless when
    /// `n = 1`). Constant time: a plaintext matmul's runs over the tokens are placed as one
    /// stretch each, not element by element.
    pub(crate) fn stride_along(&self, e: usize, se: usize, len: usize) -> (usize, usize) {
        if len <= 1 {
            return (0, len.max(1));
        }
        let r = self.shape.len();
        if self.kind == LayoutKind::RowMajor || r < 2 {
            return (se, len);
        }
        let (a, b) = (self.shape[r - 2], self.shape[r - 1]);
        let block = a * b;
        if se.is_multiple_of(block.max(1)) {
            // Whole blocks: the placement within a block is the same.
            return (se, len);
        }
        let inner = e % block;
        let (i, j) = (inner / b, inner % b);
        match self.kind {
            // position j·a + i
            LayoutKind::ColumnMajor if se == b => (1, len.min(a - i)),
            LayoutKind::ColumnMajor if se == 1 => (a, len.min(b - j)),
            // position ((j − i) mod b)·a + i: along a row `r` grows until it wraps
            LayoutKind::Skewed if se == 1 => {
                let rot = (j + b - i % b) % b;
                (a, len.min(b - j).min(b - rot))
            }
            _ => (0, 1),
        }
    }

    /// The shape whose row-major order is the slot order (the last two axes swapped when
    /// column-major).
    pub(crate) fn slot_shape(&self) -> Vec<usize> {
        let mut s = self.shape.clone();
        if self.kind != LayoutKind::RowMajor {
            let r = s.len();
            s.swap(r - 1, r - 2);
        }
        s
    }

    /// A row-major vector (e.g. a broadcast plaintext operand) in slot order.
    pub(crate) fn scatter(&self, v: &[f64]) -> Vec<f64> {
        if self.is_row_major() {
            return v.to_vec();
        }
        let mut out = vec![0.0; v.len()];
        for (e, &x) in v.iter().enumerate() {
            if let Some(slot) = out.get_mut(self.position(e)) {
                *slot = x;
            }
        }
        out
    }

    /// The program port layout.
    pub(crate) fn slot_layout(&self, slots: usize) -> SlotLayout {
        match self.kind {
            LayoutKind::RowMajor => SlotLayout::RowMajor { shape: self.shape.clone(), slots },
            // (ports are moved out of skewed placements first: `lower::port_layout`)
            LayoutKind::ColumnMajor | LayoutKind::Skewed => {
                let r = self.shape.len();
                let mut order: Vec<usize> = (0..r).collect();
                order.swap(r - 1, r - 2);
                SlotLayout::Axes { shape: self.shape.clone(), order, slots }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_is_a_bijection_with_the_token_fastest() {
        let l = Layout::column_major(&[2, 3, 4]);
        let pos: Vec<usize> = (0..24).map(|e| l.position(e)).collect();
        let mut sorted = pos.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..24).collect::<Vec<_>>());
        // element (0, 1, 2) = 6: token 1 of feature 2 → 2·3 + 1
        assert_eq!(l.position(6), 7);
        // second batch entry starts after the first's 12 positions
        assert_eq!(l.position(12), 12);
        assert_eq!(l.slot_shape(), vec![2, 4, 3]);
        assert_eq!(l.scatter(&(0..24).map(|e| e as f64).collect::<Vec<_>>())[7], 6.0);
    }

    #[test]
    fn skewed_layout_puts_rotated_diagonals_in_blocks() {
        let l = Layout::skewed(&[2, 3, 3]).unwrap();
        let pos: Vec<usize> = (0..18).map(|e| l.position(e)).collect();
        let mut sorted = pos.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..18).collect::<Vec<_>>());
        // (0, i, j) with j = i: diagonal r = 0 at slot i
        assert_eq!((l.position(0), l.position(4), l.position(8)), (0, 1, 2));
        // (0, 2, 0): r = (0 − 2) mod 3 = 1 → 1·3 + 2
        assert_eq!(l.position(6), 5);
        // second batch entry after the first's 9 positions: (1, 0, 1) → 9 + 1·3 + 0
        assert_eq!(l.position(10), 12);
        assert!(Layout::skewed(&[4, 1]).is_none());
    }

    #[test]
    fn strides_along_walks_match_the_positions() {
        // Every layout kind, every walk stride the maps use (along a row, down a column, whole
        // blocks) and a few others: the returned prefix advances by exactly the returned stride.
        let layouts = [
            Layout::row_major(&[2, 5, 7]),
            Layout::column_major(&[2, 5, 7]),
            Layout::skewed(&[2, 5, 5]).unwrap(),
            Layout::skewed(&[3, 4, 6]).unwrap(),
        ];
        for l in &layouts {
            let (n, b) = (l.numel(), l.shape()[l.shape().len() - 1]);
            let a = l.shape()[l.shape().len() - 2];
            for se in [1, 2, b, a * b, a * b * 2, 3] {
                for e in 0..n {
                    let len = (n - 1 - e) / se + 1;
                    let (ps, k) = l.stride_along(e, se, len);
                    assert!((1..=len).contains(&k), "{l} e {e} se {se}: prefix {k} of {len}");
                    for j in 1..k {
                        assert_eq!(l.position(e + j * se), l.position(e) + j * ps, "{l} e {e} se {se} j {j}");
                    }
                }
            }
            // Along a column of the column layout the tokens are consecutive slots.
            if *l == Layout::column_major(&[2, 5, 7]) {
                assert_eq!(l.stride_along(7, 7, 5), (1, 4), "rows 1..5 of column 0");
            }
        }
    }

    #[test]
    fn degenerate_column_layouts_are_row_major() {
        assert!(Layout::column_major(&[1, 16, 1]).is_row_major());
        assert!(Layout::column_major(&[16]).is_row_major());
        assert!(!Layout::column_major(&[1, 16, 32]).is_row_major());
        assert_eq!(Layout::column_major(&[1, 1, 32]), Layout::row_major(&[1, 1, 32]));
    }
}
