#!/usr/bin/env python3
"""Write a BERT-base-shaped encoder stack as ONNX, with random weights and sample data.

Run:  models/make_bert_base.sh [--layers N --seq T --hidden D --heads H --ffn F --out DIR]
      (or models/.venv/bin/python models/make_bert_base.py ... after setup.sh)

Not a trained model: the shape of bert-base-uncased's encoder (12 layers, hidden 768, 12 heads of 64,
FFN 3072, erf GELU, post-LN with LayerNormalization eps 1e-12, softmax attention) with weights drawn from
fixed seeds at BERT-init magnitudes, so compile time, memory and the CKKS program size of a BERT-base
circuit can be measured without a checkpoint. Embeddings in (no token ids, no mask), like MiniLM's
encoder.onnx. The graph is written with make_models.py's layer builders, in the HF BERT op pattern.

Output (git-ignored), by default in models/pretrained/bert_base_shape/ (other shapes: bert_L<N>_T<T>_D<D>_H<H>/):

    model.onnx + model.onnx.data        x f32[batch_size, T, D] -> last_hidden_state f32[batch_size, T, D]
    calib/x.npy                         4 calibration samples
    inputs/x.npy                        2 samples (another seed)
    expected/last_hidden_state.npy      onnxruntime outputs for inputs/ (graph optimizations off)
    README.md

Checks: onnx.checker (full), onnxruntime vs an independent numpy float64 forward pass.
Deterministic: layer i's weights come from seed (SEED, i), so a smaller --layers gives the same first layers.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_models as mm  # noqa: E402  (graph builder and layer patterns)
from make_minilm import run, save_dir, save_external, session  # noqa: E402

OPSET = 17
EPS = 1e-12  # BERT's LayerNorm eps
SEED = 768
N_CALIB, N_INPUTS = 4, 2
CALIB_SEED, INPUT_SEED = 2000, 1000


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------
def layer_params(i: int, hidden: int, ffn: int) -> dict:
    """One layer's weights in make_models' layout ([in, out] MatMul weights).

    BERT initializes every Linear with N(0, 0.02²). Query, key and the FFN's first projection
    use 1/√fan_in instead (0.036 at hidden 768), which gives attention rows that are not flat and
    GELU inputs of std ≈ 1 (the operating range of a trained BERT); value, output and the FFN's
    second projection keep 0.02 (≈ 1/√3072), so each residual branch adds a fraction of the stream.
    """
    rng = np.random.default_rng([SEED, i])

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    def linear(fan_in, fan_out, std):
        return normal((fan_in, fan_out), std), normal((fan_out,), 0.02)

    wide = 1.0 / math.sqrt(hidden)
    attn = {}
    for name, std in (("query", wide), ("key", wide), ("value", 0.02), ("o", 0.02)):
        attn[f"{name}_w"], attn[f"{name}_b"] = linear(hidden, hidden, std)
    ln = lambda: (normal((hidden,), 0.05, 1.0), normal((hidden,), 0.02))  # noqa: E731
    return {
        "attn": attn,
        "ln1": ln(),
        "fc1": linear(hidden, ffn, wide),
        "fc2": linear(ffn, hidden, 0.02),
        "ln2": ln(),
    }


def embeddings(n: int, seq: int, hidden: int, seed: int) -> np.ndarray:
    """Embedding-LayerNorm outputs: word + position + per-sample topic, normalized per token, then scaled."""
    rng = np.random.default_rng(seed)
    pos = np.random.default_rng([SEED, 10_000]).standard_normal((1, seq, hidden)) * 0.5  # shared by all samples
    x = rng.standard_normal((n, seq, hidden)) + 0.8 * rng.standard_normal((n, 1, hidden)) + pos
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + EPS)
    g = np.random.default_rng([SEED, 10_001])
    gamma, beta = 1.0 + 0.05 * g.standard_normal(hidden), 0.02 * g.standard_normal(hidden)
    return (x * gamma + beta).astype(np.float32)


# --------------------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------------------
def build(layers: list[dict], seq: int, hidden: int, heads: int) -> onnx.ModelProto:
    g = mm.G("bert-base-shape", OPSET)
    h = g.input("x", TensorProto.FLOAT, ["batch_size", seq, hidden])
    for i, b in enumerate(layers):
        with g.scope(f"encoder/layer.{i}"):
            # Reshape targets from Shape subgraphs, as HF exports with dynamic axes write them.
            a = mm.attention(g, h, b["attn"], "attention", heads, None, shape_subgraph=True)
            h = mm.layer_norm(g, g.op("Add", [a, h]), *b["ln1"], EPS, "attention/LayerNorm", decomposed=False)
            f = mm.ffn(g, h, b, "erf")
            h = mm.layer_norm(g, g.op("Add", [f, h]), *b["ln2"], EPS, "output/LayerNorm", decomposed=False)
    g.output(h, "last_hidden_state", TensorProto.FLOAT, ["batch_size", seq, hidden])
    return g.model(f"BERT-base-shaped encoder stack ({len(layers)} layers, hidden {hidden}, {heads} heads), "
                   "random weights, written by polyhe make_bert_base.py")


# --------------------------------------------------------------------------------------
# Independent float64 reference
# --------------------------------------------------------------------------------------
def np_forward(layers: list[dict], x: np.ndarray, heads: int) -> tuple[np.ndarray, dict]:
    """Returns the output and the largest |value| entering each non-polynomial op (for the README)."""
    erf = np.vectorize(math.erf)
    stats = {"gelu_in": 0.0, "scores": 0.0, "max_prob": []}
    B, S, D = x.shape
    dh = D // heads
    x = x.astype(np.float64)

    def ln(v, gb):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + EPS) * gb[0] + gb[1]

    for b in layers:
        a = {k: v.astype(np.float64) for k, v in b["attn"].items()}
        split = lambda t: t.reshape(B, S, heads, dh).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(x @ a[f"{n}_w"] + a[f"{n}_b"]) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
        stats["scores"] = max(stats["scores"], float(np.abs(s).max()))
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        stats["max_prob"].append(float(p.max(-1).mean()))
        ctx = (p @ v).transpose(0, 2, 1, 3).reshape(B, S, D)
        x = ln(ctx @ a["o_w"] + a["o_b"] + x, b["ln1"])
        hm = x @ b["fc1"][0].astype(np.float64) + b["fc1"][1]
        stats["gelu_in"] = max(stats["gelu_in"], float(np.abs(hm).max()))
        hm = 0.5 * hm * (1.0 + erf(hm / math.sqrt(2.0)))
        x = ln(hm @ b["fc2"][0].astype(np.float64) + b["fc2"][1] + x, b["ln2"])
    return x, stats


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--seq", type=int, default=128, help="sequence length T (fixed in the graph)")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=None, help="FFN width (default 4 × hidden)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default under models/pretrained/)")
    args = ap.parse_args(argv)
    L, T, D, H = args.layers, args.seq, args.hidden, args.heads
    F = args.ffn or 4 * D
    if D % H:
        ap.error(f"--hidden {D} is not a multiple of --heads {H}")
    base = (L, T, D, H, F) == (12, 128, 768, 12, 3072)
    out = args.out or HERE / "pretrained" / ("bert_base_shape" if base else f"bert_L{L}_T{T}_D{D}_H{H}")
    out.mkdir(parents=True, exist_ok=True)

    layers = [layer_params(i, D, F) for i in range(L)]
    model = build(layers, T, D, H)
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    n_nodes = len(model.graph.node)
    save_external(model, out / "model.onnx")  # also runs onnx.checker (full) on the saved file
    del model

    calib, inputs = embeddings(N_CALIB, T, D, CALIB_SEED), embeddings(N_INPUTS, T, D, INPUT_SEED)
    sess = session(out / "model.onnx")
    expected = run(sess, {"x": inputs})
    calib_out = run(sess, {"x": calib})["last_hidden_state"]
    for name, v in (("inputs", expected["last_hidden_state"]), ("calib", calib_out)):
        if not np.all(np.isfinite(v)):
            raise SystemExit(f"non-finite onnxruntime output on {name}/")
    save_dir(out / "calib", {"x": calib})
    save_dir(out / "inputs", {"x": inputs})
    save_dir(out / "expected", expected)

    ref, stats = np_forward(layers, inputs, H)
    y = expected["last_hidden_state"]
    err = float(np.abs(y - ref).max() / np.abs(ref).max())
    row_cos = float(min(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))
                        for a, b in zip(y.reshape(-1, D), ref.reshape(-1, D))))
    # How much the stack changes its input: a stack that passes x through would hide errors.
    in_cos = float(np.mean(np.sum(y * inputs, -1) / (np.linalg.norm(y, axis=-1) * np.linalg.norm(inputs, axis=-1))))
    size = (out / "model.onnx.data").stat().st_size
    print(f"{out}: {L} layers, T {T}, hidden {D}, {H} heads, FFN {F}; {n_nodes} nodes, {n_params} parameters, "
          f"{size / 2**20:.0f} MiB external data")
    print(f"ORT vs numpy float64: max relative error {err:.2e}, worst token cosine {row_cos:.8f}")
    print(f"largest |GELU input| {stats['gelu_in']:.2f}, |attention score| {stats['scores']:.2f}, "
          f"mean max attention probability per layer {[round(p, 3) for p in stats['max_prob']]}")
    print(f"output std {y.std():.3f}, mean cosine(output token, input token) {in_cos:.3f}")

    (out / "README.md").write_text(f"""# BERT-base-shaped encoder stack (generated, not committed)

Written by `models/make_bert_base.py --layers {L} --seq {T} --hidden {D} --heads {H} --ffn {F}`: ONNX opset
{OPSET}, {L} post-LN layers of hidden {D}, {H} heads of {D // H}, FFN {F}, erf GELU (Div/Erf/Add/Mul/Mul),
LayerNormalization ops (eps 1e-12), softmax attention with Reshape targets from Shape subgraphs, no mask.
**Random weights** (not a trained model) at BERT-init magnitudes from fixed seeds: query/key/FFN-in projections
std 1/√{D}, value/output/FFN-out std 0.02, biases std 0.02, LayerNorm gamma 1 ± 0.05, beta std 0.02.
{n_nodes} nodes, {n_params} parameters, in `model.onnx.data` ({size / 2**20:.0f} MiB).

- input `x` f32[batch_size, {T}, {D}]: embeddings (after an embedding LayerNorm), as MiniLM's `encoder.onnx` takes them
- output `last_hidden_state` f32[batch_size, {T}, {D}]
- `calib/x.npy` ({N_CALIB} samples) and `inputs/x.npy` ({N_INPUTS} samples, another seed): N(0,1) tokens plus a
  per-sample topic and a shared position vector, normalized per token and scaled by gamma 1 ± 0.05, beta std 0.02
- `expected/last_hidden_state.npy`: onnxruntime (graph optimizations off) on `inputs/`

Check at generation: onnxruntime vs a numpy float64 forward pass, max relative error {err:.1e}, worst token cosine
{row_cos:.8f}. Activation ranges on `inputs/`: largest |GELU input| {stats['gelu_in']:.2f}, largest |attention
score| {stats['scores']:.2f}, mean max attention probability per layer {[round(p, 3) for p in stats['max_prob']]};
mean cosine between output and input tokens {in_cos:.3f}.
""")
    if err > 1e-4:
        print(f"FAILED: onnxruntime vs numpy error {err:.2e} above 1e-4", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
