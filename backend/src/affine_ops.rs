//! Affine maps of the linear ops, built from the ops' definitions and the plaintext operands.
//!
//! Requires: an op of the polynomial stage that is linear in its encrypted operands (matmul, gemm,
//! conv with plaintext weights; reduce_sum/reduce_mean), its plaintext operands as tensors and its
//! encrypted operands by shape, and the output shape its type inference gives.
//! Guarantees: the map `y = Σ_i M_i x_i + offset` over row-major element indices equal to the op's
//! reference semantics (`polyhe_ir::interp`; the tests check it on random operands), in time and
//! memory proportional to its nonzero entries — the weights times the positions they apply at. The
//! interpreter is never probed: the old extraction ran the op once per input element, quadratic in
//! the activation size (all-MiniLM-L6 at 16 tokens did not compile in 24 GB).
//! Entries of each part are sorted by (output, input); zero weights are left out.

use polyhe_ir::infer::{broadcast_shapes, conv_geom, reduce_mask};
use polyhe_ir::{Op, Tensor};

use crate::linear::{AffineMap, Part, Run};

/// An operand of a linear op: a plaintext tensor, or an encrypted one known by its shape.
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    Plain(&'a Tensor),
    Enc(&'a [usize]),
}

impl Operand<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            Operand::Plain(t) => t.shape(),
            Operand::Enc(s) => s,
        }
    }
    fn is_enc(&self) -> bool {
        matches!(self, Operand::Enc(_))
    }
}

/// The most stored items (entries and runs) one map may have, and the most entries a map may
/// expand to where a placement or composition scatters its runs (1.2 GB as `(usize, usize, f64)`;
/// a map is copied a few times while it is composed, placed and grouped into diagonals). A
/// plaintext matmul stores one run per weight, over the tokens: BERT-base's FFN at 128 tokens is
/// 2.4M runs for 302M entries, which as entries ran out of 16 GB. Beyond this bound the op is
/// refused with its size instead of exhausting memory.
pub(crate) const MAX_MAP_ENTRIES: usize = 50_000_000;

fn check_entries(items: usize) -> Result<(), String> {
    if items > MAX_MAP_ENTRIES {
        return Err(format!(
            "its map has {items} entries or runs, over the backend's bound of {MAX_MAP_ENTRIES} per map \
             (fewer tokens or a smaller hidden size compile)"
        ));
    }
    Ok(())
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Flat index, in an operand of shape `from` broadcast to `to`, of the element at flat index
/// `pos` of `to` (right-aligned numpy broadcasting).
fn broadcast_source(pos: usize, to: &[usize], from: &[usize]) -> usize {
    let mut rem = pos;
    let mut idx = 0;
    let mut stride = 1;
    let off = to.len() - from.len();
    let mut coords = vec![0usize; to.len()];
    for (d, &sz) in to.iter().enumerate().rev() {
        coords[d] = rem % sz.max(1);
        rem /= sz.max(1);
    }
    for (d, &sz) in from.iter().enumerate().rev() {
        let c = if sz == 1 { 0 } else { coords[d + off] };
        idx += c * stride;
        stride *= sz;
    }
    idx
}

/// The affine map of `op` in its encrypted operands (see the module doc), or why there is none.
pub(crate) fn affine_map_of(op: &Op, args: &[Operand<'_>], out_shape: &[usize]) -> Result<AffineMap, String> {
    let out_numel = numel(out_shape);
    let map = match op {
        Op::MatMul => matmul(args, out_numel)?,
        Op::Gemm { alpha, beta, trans_a, trans_b } => gemm(args, *alpha, *beta, *trans_a, *trans_b, out_shape)?,
        Op::Conv { .. } => conv(op, args, out_numel)?,
        Op::ReduceSum { axes, .. } | Op::ReduceMean { axes, .. } => reduce(op, axes, args, out_numel)?,
        _ => return Err(format!("{} is not a linear op with a structured map", op.name())),
    };
    Ok(map)
}

/// `[.., M, K] × [.., K, N]` with numpy batch broadcasting and 1-D promotion.
fn matmul(args: &[Operand<'_>], out_numel: usize) -> Result<AffineMap, String> {
    let [a, b] = args else { return Err("matmul takes two operands".into()) };
    if a.is_enc() == b.is_enc() {
        return Err("matmul map needs exactly one encrypted operand".into());
    }
    let promote = |s: &[usize], first: bool| -> Vec<usize> {
        match s.len() {
            0 => vec![1, 1],
            1 if first => vec![1, s[0]],
            1 => vec![s[0], 1],
            _ => s.to_vec(),
        }
    };
    let (sa, sb) = (promote(a.shape(), true), promote(b.shape(), false));
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k) = (sa[ra - 2], sa[ra - 1]);
    let (k2, n) = (sb[rb - 2], sb[rb - 1]);
    if k != k2 {
        return Err(format!("inner dimensions differ: {sa:?} × {sb:?}"));
    }
    let (ba, bb) = (&sa[..ra - 2], &sb[..rb - 2]);
    let batch =
        broadcast_shapes(ba, bb).ok_or_else(|| format!("batch dimensions {ba:?} and {bb:?} do not broadcast"))?;
    let nb = numel(&batch);
    if nb * m * n != out_numel {
        return Err(format!("{nb}×{m}×{n} products for an output of {out_numel} elements"));
    }
    let (weights, enc_a) = match (a, b) {
        (Operand::Enc(_), Operand::Plain(t)) => (t.to_f64_vec(), true),
        (Operand::Plain(t), Operand::Enc(_)) => (t.to_f64_vec(), false),
        _ => return Err("matmul map needs exactly one encrypted operand".into()),
    };
    // One run per weight and batch entry: along the rows of an encrypted `A` (each weight of `B`
    // meets every row), or along the columns of an encrypted `B`.
    let mut part = Part::default();
    if enc_a {
        check_entries(nb.saturating_mul(n).saturating_mul(k))?;
        part.runs.reserve(nb * n * k);
        for bp in 0..nb {
            let (ab, bbi) = (broadcast_source(bp, &batch, ba), broadcast_source(bp, &batch, bb));
            for j in 0..n {
                for kk in 0..k {
                    let w = weights[(bbi * k + kk) * n + j];
                    if w != 0.0 {
                        let (o, e) = (bp * m * n + j, ab * m * k + kk);
                        part.runs.push(Run { o, e, so: n, se: k, len: m, w });
                    }
                }
            }
        }
    } else {
        check_entries(nb.saturating_mul(m).saturating_mul(k))?;
        part.runs.reserve(nb * m * k);
        for bp in 0..nb {
            let (ab, bbi) = (broadcast_source(bp, &batch, ba), broadcast_source(bp, &batch, bb));
            for i in 0..m {
                for kk in 0..k {
                    let w = weights[(ab * m + i) * k + kk];
                    if w != 0.0 {
                        let (o, e) = ((bp * m + i) * n, bbi * k * n + kk * n);
                        part.runs.push(Run { o, e, so: 1, se: 1, len: n, w });
                    }
                }
            }
        }
    }
    Ok(AffineMap { out_numel, parts: vec![part], offset: None })
}

/// `alpha·op(A)·op(B) + beta·C`, A and B 2-D, C broadcast to the output.
fn gemm(
    args: &[Operand<'_>],
    alpha: f64,
    beta: f64,
    ta: bool,
    tb: bool,
    out_shape: &[usize],
) -> Result<AffineMap, String> {
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else { return Err("gemm takes two or three operands".into()) };
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 2 || sb.len() != 2 || out_shape.len() != 2 {
        return Err(format!("gemm operands must be 2-D, got {sa:?} and {sb:?}"));
    }
    let (m, n) = (out_shape[0], out_shape[1]);
    let k = if ta { sa[0] } else { sa[1] };
    // Flat index of op(A)[i, kk] in A and of op(B)[kk, j] in B.
    let ia = |i: usize, kk: usize| if ta { kk * m + i } else { i * k + kk };
    let ib = |kk: usize, j: usize| if tb { j * k + kk } else { kk * n + j };
    let out_numel = m * n;
    let mut parts = Vec::new();
    match (a, b) {
        (Operand::Enc(_), Operand::Plain(t)) | (Operand::Plain(t), Operand::Enc(_)) => {
            let w = t.to_f64_vec();
            let mut part = Part::default();
            if a.is_enc() {
                // Along the rows of op(A): out stride n, in stride 1 or m as A is transposed.
                check_entries(n.saturating_mul(k))?;
                for j in 0..n {
                    for kk in 0..k {
                        let x = alpha * w[ib(kk, j)];
                        if x != 0.0 {
                            let run = Run { o: j, e: ia(0, kk), so: n, se: if ta { 1 } else { k }, len: m, w: x };
                            part.runs.push(run);
                        }
                    }
                }
            } else {
                // Along the columns of op(B).
                check_entries(m.saturating_mul(k))?;
                for i in 0..m {
                    for kk in 0..k {
                        let x = alpha * w[ia(i, kk)];
                        if x != 0.0 {
                            let run = Run { o: i * n, e: ib(kk, 0), so: 1, se: if tb { k } else { 1 }, len: n, w: x };
                            part.runs.push(run);
                        }
                    }
                }
            }
            parts.push(part);
        }
        _ => return Err("gemm map needs exactly one encrypted factor".into()),
    }
    let mut offset = None;
    match args.get(2) {
        None => {}
        Some(Operand::Plain(c)) => {
            let cv = c.to_f64_vec();
            let off: Vec<f64> = (0..out_numel).map(|o| beta * cv[broadcast_source(o, out_shape, c.shape())]).collect();
            offset = off.iter().any(|x| *x != 0.0).then_some(off);
        }
        Some(Operand::Enc(cs)) => {
            if beta != 0.0 {
                let mut entries: Vec<(usize, usize, f64)> =
                    (0..out_numel).map(|o| (o, broadcast_source(o, out_shape, cs), beta)).collect();
                entries.sort_unstable_by_key(|&(o, e, _)| (o, e));
                parts.push(entries.into());
            } else {
                parts.push(Part::default());
            }
        }
    }
    Ok(AffineMap { out_numel, parts, offset })
}

/// N-D convolution (NCHW…), groups, strides, pads, dilations; encrypted input, plaintext weight
/// and bias.
fn conv(op: &Op, args: &[Operand<'_>], out_numel: usize) -> Result<AffineMap, String> {
    let (Some(Operand::Enc(xs)), Some(Operand::Plain(w))) = (args.first(), args.get(1)) else {
        return Err("conv map needs an encrypted input and a plaintext weight".into());
    };
    let bias = match args.get(2) {
        None => None,
        Some(Operand::Plain(b)) => Some(b.to_f64_vec()),
        Some(Operand::Enc(_)) => return Err("encrypted conv bias".into()),
    };
    let ws = w.shape();
    let geom = conv_geom(op, xs, ws).map_err(|e| e.to_string())?;
    let wv = w.to_f64_vec();
    let (nb, c, mo) = (xs[0], xs[1], ws[0]);
    let (cg, mg) = (c / geom.group, mo / geom.group);
    let in_sp = &xs[2..];
    let in_size = numel(in_sp);
    let k_size = numel(&geom.kernel);
    let out_size = numel(&geom.out_spatial);
    if nb * mo * out_size != out_numel {
        return Err(format!("conv output of {} elements, the type has {out_numel}", nb * mo * out_size));
    }
    check_entries(out_numel.saturating_mul(cg).saturating_mul(numel(&geom.kernel)))?;
    let rank = in_sp.len();
    let in_strides = strides(in_sp);
    let kstr = strides(&geom.kernel);
    let ostr = strides(&geom.out_spatial);
    let mut entries = Vec::new();
    let mut offset = vec![0.0; out_numel];
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(k_size);
    for o in 0..out_size {
        // (kernel offset, input offset) pairs inside the unpadded input.
        pairs.clear();
        'k: for kf in 0..k_size {
            let mut off = 0;
            for d in 0..rank {
                let op_d = (o / ostr[d]) % geom.out_spatial[d];
                let kp_d = (kf / kstr[d]) % geom.kernel[d];
                let p = (op_d * geom.strides[d] + kp_d * geom.dilations[d]) as isize - geom.pad_begin[d] as isize;
                if p < 0 || p as usize >= in_sp[d] {
                    continue 'k;
                }
                off += p as usize * in_strides[d];
            }
            pairs.push((kf, off));
        }
        for n in 0..nb {
            for oc in 0..mo {
                let grp = oc / mg;
                let out = (n * mo + oc) * out_size + o;
                if let Some(b) = &bias {
                    offset[out] = b.get(oc).copied().unwrap_or(0.0);
                }
                for ic in 0..cg {
                    let xb = (n * c + grp * cg + ic) * in_size;
                    let wb = (oc * cg + ic) * k_size;
                    for &(kf, off) in &pairs {
                        let x = wv[wb + kf];
                        if x != 0.0 {
                            entries.push((out, xb + off, x));
                        }
                    }
                }
            }
        }
    }
    entries.sort_unstable_by_key(|&(o, e, _)| (o, e));
    let offset = offset.iter().any(|x| *x != 0.0).then_some(offset);
    Ok(AffineMap { out_numel, parts: vec![entries.into()], offset })
}

/// reduce_sum / reduce_mean over `axes` (empty: all), keepdims either way (the flat order of the
/// kept axes is the same).
fn reduce(op: &Op, axes: &[usize], args: &[Operand<'_>], out_numel: usize) -> Result<AffineMap, String> {
    let Some(Operand::Enc(xs)) = args.first() else { return Err("reduction of a plaintext operand".into()) };
    let mask = reduce_mask(op, axes, xs.len()).map_err(|e| e.to_string())?;
    let kept: Vec<usize> = xs.iter().zip(&mask).map(|(&d, &r)| if r { 1 } else { d }).collect();
    if numel(&kept) != out_numel {
        return Err(format!("reduction to {} elements, the type has {out_numel}", numel(&kept)));
    }
    let n = numel(xs);
    let count = n.checked_div(out_numel).unwrap_or(0);
    let w = if matches!(op, Op::ReduceMean { .. }) { 1.0 / count.max(1) as f64 } else { 1.0 };
    let ks = strides(&kept);
    let xstr = strides(xs);
    let mut entries: Vec<(usize, usize, f64)> = (0..n)
        .map(|e| {
            let o: usize = (0..xs.len()).filter(|&d| !mask[d]).map(|d| ((e / xstr[d]) % xs[d].max(1)) * ks[d]).sum();
            (o, e, w)
        })
        .collect();
    entries.sort_unstable_by_key(|&(o, e, _)| (o, e));
    Ok(AffineMap { out_numel, parts: vec![entries.into()], offset: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyhe_ir::{interp, DType, Graph};

    /// A deterministic pseudo-random tensor (no zero entries).
    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f64> = (0..numel(shape))
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5 + 1e-3
            })
            .collect();
        Tensor::float(DType::F64, shape.to_vec(), v).unwrap()
    }

    /// The map applied to the encrypted operands equals the interpreter's result.
    fn check(op: Op, shapes: &[&[usize]], enc: &[bool]) {
        let g = Graph::new("t");
        let ts: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| tensor(s, i as u64 + 7)).collect();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let want = interp::eval_op(&op, &refs, &g).unwrap().remove(0);
        let args: Vec<Operand<'_>> =
            ts.iter().zip(enc).map(|(t, &e)| if e { Operand::Enc(t.shape()) } else { Operand::Plain(t) }).collect();
        let map = affine_map_of(&op, &args, want.shape()).unwrap();
        let mut got = map.offset.clone().unwrap_or_else(|| vec![0.0; map.out_numel]);
        let encs: Vec<Vec<f64>> = ts.iter().zip(enc).filter(|(_, &e)| e).map(|(t, _)| t.to_f64_vec()).collect();
        assert_eq!(map.parts.len(), encs.len(), "{op:?}");
        for (part, x) in map.parts.iter().zip(&encs) {
            let mut seen: Vec<(usize, usize)> = part.iter().map(|(o, e, _)| (o, e)).collect();
            seen.sort_unstable();
            assert!(seen.windows(2).all(|w| w[0] != w[1]), "{op:?}: an entry repeated");
            for (o, e, w) in part.iter() {
                got[o] += w * x[e];
            }
        }
        let want = want.to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{op:?} element {k}: map {a}, interpreter {b}");
        }
    }

    #[test]
    fn matmul_maps_match_the_interpreter() {
        check(Op::MatMul, &[&[2, 3, 4], &[4, 5]], &[true, false]);
        check(Op::MatMul, &[&[3, 4], &[2, 4, 5]], &[false, true]);
        check(Op::MatMul, &[&[2, 1, 3, 4], &[3, 4, 2]], &[true, false]);
        check(Op::MatMul, &[&[4], &[4, 5]], &[true, false]);
        check(Op::MatMul, &[&[3, 4], &[4]], &[false, true]);
        check(Op::MatMul, &[&[1, 16, 8], &[8, 24]], &[true, false]);
    }

    #[test]
    fn maps_over_the_size_bound_are_refused_before_they_are_built() {
        // [60000, 1, 30] × [30, 30] with the weights broadcast over the batch: 54M runs (one per
        // weight and batch entry), over the bound.
        let w = Tensor::float(DType::F64, vec![30, 30], vec![0.5; 900]).unwrap();
        let err = affine_map_of(&Op::MatMul, &[Operand::Enc(&[60000, 1, 30]), Operand::Plain(&w)], &[60000, 1, 30])
            .unwrap_err();
        assert!(err.contains("54000000 entries or runs") && err.contains("bound"), "{err}");
    }

    #[test]
    fn plaintext_matmuls_are_one_run_per_weight() {
        // [16, 8] × [8, 24]: 192 runs over the 16 rows, not 3072 entries.
        let w = tensor(&[8, 24], 3);
        let map = affine_map_of(&Op::MatMul, &[Operand::Enc(&[1, 16, 8]), Operand::Plain(&w)], &[1, 16, 24]).unwrap();
        assert_eq!((map.parts[0].runs.len(), map.parts[0].entries.len(), map.parts[0].nnz()), (192, 0, 3072));
    }

    #[test]
    fn gemm_maps_match_the_interpreter() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (sa, sb): (&[usize], &[usize]) = match (ta, tb) {
                (false, false) => (&[3, 4], &[4, 5]),
                (true, false) => (&[4, 3], &[4, 5]),
                (false, true) => (&[3, 4], &[5, 4]),
                (true, true) => (&[4, 3], &[5, 4]),
            };
            let op = Op::Gemm { alpha: 0.5, beta: 2.0, trans_a: ta, trans_b: tb };
            check(op.clone(), &[sa, sb, &[5]], &[true, false, false]);
            check(op.clone(), &[sa, sb, &[3, 5]], &[false, true, false]);
            check(op.clone(), &[sa, sb], &[true, false]);
            check(op, &[sa, sb, &[1, 5]], &[true, false, true]);
        }
    }

    #[test]
    fn conv_maps_match_the_interpreter() {
        let conv = |k: Vec<usize>, s: Vec<usize>, p: Vec<usize>, d: Vec<usize>, g: usize| Op::Conv {
            kernel_shape: k,
            strides: s,
            pads: p,
            dilations: d,
            group: g,
        };
        check(
            conv(vec![4, 4], vec![4, 4], vec![], vec![], 1),
            &[&[1, 3, 16, 16], &[8, 3, 4, 4], &[8]],
            &[true, false, false],
        );
        check(
            conv(vec![3, 3], vec![1, 2], vec![1, 0, 1, 2], vec![1, 1], 1),
            &[&[2, 2, 7, 6], &[3, 2, 3, 3]],
            &[true, false],
        );
        check(conv(vec![3], vec![1], vec![2, 2], vec![2], 2), &[&[1, 4, 9], &[6, 2, 3], &[6]], &[true, false, false]);
    }

    #[test]
    fn reduction_maps_match_the_interpreter() {
        check(Op::ReduceSum { axes: vec![2], keepdims: true }, &[&[1, 4, 6]], &[true]);
        check(Op::ReduceMean { axes: vec![1], keepdims: false }, &[&[2, 4, 6]], &[true]);
        check(Op::ReduceMean { axes: vec![0, 2], keepdims: true }, &[&[2, 3, 5]], &[true]);
        check(Op::ReduceSum { axes: vec![], keepdims: false }, &[&[3, 5]], &[true]);
    }
}
