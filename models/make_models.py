#!/usr/bin/env python3
"""Build the small transformer ONNX models shipped with polyhe, plus their sample data.

Run:  models/.venv/bin/python models/make_models.py [name ...]

For every model <name> this writes, next to this script:

    <name>/model.onnx                   the graph (weights from a fixed seed)
    <name>/inputs/<input>.npy           a batch of 8 sample inputs
    <name>/calib/<input>.npy            a batch of 32 calibration inputs (other seed)
    <name>/expected/<output>.npy        onnxruntime outputs for inputs/
    <name>/README.md                    what the model is

The graphs are written node by node with onnx.helper, imitating the op patterns that
real exporters (torch.onnx, HF transformers) emit, so the Rust frontend is tested on
realistic shapes of graphs rather than on whatever is easiest to import. Every model
input/output has a symbolic `batch_size` batch axis.

The script is deterministic: the same package versions give byte-identical files.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
N_SAMPLES = 8
N_CALIB = 32

_NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}


# --------------------------------------------------------------------------------------
# Graph builder
# --------------------------------------------------------------------------------------
class G:
    """Tiny helper around onnx.helper: unique value names, scoped node names."""

    def __init__(self, name: str, opset: int):
        self.name = name
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._scope: list[str] = []

    # names -------------------------------------------------------------------------
    def _unique(self, base: str) -> str:
        name, i = base, 0
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def scope(self, s: str) -> "_Scope":
        return _Scope(self, s)

    def _prefix(self) -> str:
        return "/" + "/".join(self._scope) if self._scope else ""

    # graph pieces --------------------------------------------------------------------
    def input(self, name: str, dtype, dims) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, dtype, dims))
        return name

    def output(self, value: str, name: str, dtype, dims) -> None:
        """Declare `value` as graph output `name` (renaming the producing node's output)."""
        for n in self.nodes:
            for i, o in enumerate(n.output):
                if o == value:
                    n.output[i] = name
            for i, o in enumerate(n.input):
                if o == value:
                    n.input[i] = name
        self._used.add(name)
        self.outputs.append(helper.make_tensor_value_info(name, dtype, dims))

    def weight(self, name: str, arr: np.ndarray) -> str:
        """An initializer (trained parameter or exporter-folded constant).

        Named like a torch state_dict key: the scope path joined by dots, then `name`.
        """
        path = ".".join(p for s in self._scope for p in s.split("/"))
        name = self._unique(f"{path}.{name}" if path else name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const(self, arr, dtype=np.float32, hint: str = "Constant") -> str:
        """A Constant node, as torch.onnx emits for scalars and shape pieces."""
        arr = np.asarray(arr, dtype=dtype)
        return self.op("Constant", [], hint=hint, value=numpy_helper.from_array(arr))

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, hint: str | None = None, **attrs):
        base = f"{self._prefix()}/{hint or op_type}"
        node_name = self._unique(base)
        outs = [self._unique(f"{node_name}_output_{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        # IR version 8 is what ORT and exporters of this opset era write; keep it explicit
        # so a newer onnx package does not silently bump it.
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="polyhe-make_models",
            ir_version=8,
            doc_string=doc,
        )
        return m


class _Scope:
    def __init__(self, g: G, s: str):
        self.g, self.s = g, s

    def __enter__(self):
        self.g._scope.append(self.s)

    def __exit__(self, *exc):
        self.g._scope.pop()


# --------------------------------------------------------------------------------------
# Layer patterns
# --------------------------------------------------------------------------------------
def unsqueeze(g: G, x: str, axes: list[int]) -> str:
    # Opset >= 13 takes axes as an input (all models here are >= 13).
    return g.op("Unsqueeze", [x, g.const(axes, np.int64)])


def squeeze(g: G, x: str, axes: list[int]) -> str:
    return g.op("Squeeze", [x, g.const(axes, np.int64)])


def reduce_mean(g: G, x: str, axes: list[int], keepdims: int) -> str:
    if g.opset >= 18:
        return g.op("ReduceMean", [x, g.const(axes, np.int64)], keepdims=keepdims)
    return g.op("ReduceMean", [x], axes=axes, keepdims=keepdims)


def linear(g: G, x: str, w: np.ndarray, b: np.ndarray, name: str, bias_first: bool = True) -> str:
    """torch nn.Linear on a >=3-D input: MatMul(x, Wᵀ) then Add(bias, ·).

    `w` is stored already transposed ([in, out]) as torch.onnx does for MatMul.
    torch writes the bias as the *first* Add operand; `bias_first=False` flips it to
    exercise both operand orders in the frontend.
    """
    with g.scope(name):
        y = g.op("MatMul", [x, g.weight("weight", w)])
        bn = g.weight("bias", b)
        return g.op("Add", [bn, y] if bias_first else [y, bn])


def layer_norm(g: G, x: str, gamma: np.ndarray, beta: np.ndarray, eps: float, name: str,
               decomposed: bool) -> str:
    with g.scope(name):
        gw = g.weight("weight", gamma)
        bw = g.weight("bias", beta)
        if not decomposed:
            return g.op("LayerNormalization", [x, gw, bw], axis=-1, epsilon=eps)
        # The pattern torch.onnx (opset < 17) writes for nn.LayerNorm.
        mean = reduce_mean(g, x, [-1], 1)
        d = g.op("Sub", [x, mean])
        var = reduce_mean(g, g.op("Pow", [d, g.const(2.0)]), [-1], 1)
        std = g.op("Sqrt", [g.op("Add", [var, g.const(eps)])])
        y = g.op("Div", [d, std])
        return g.op("Add", [g.op("Mul", [y, gw]), bw])


def gelu(g: G, x: str, kind: str) -> str:
    with g.scope("act"):
        if kind == "erf":
            # torch.onnx: x * 0.5 * (1 + erf(x / sqrt(2))) as Div/Erf/Add/Mul/Mul.
            e = g.op("Erf", [g.op("Div", [x, g.const(math.sqrt(2.0))])])
            return g.op("Mul", [g.op("Mul", [x, g.op("Add", [e, g.const(1.0)])]), g.const(0.5)])
        if kind == "tanh":
            # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
            cube = g.op("Pow", [x, g.const(3.0)])
            inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715)])])
            t = g.op("Tanh", [g.op("Mul", [inner, g.const(math.sqrt(2.0 / math.pi))])])
            return g.op("Mul", [g.op("Mul", [x, g.op("Add", [t, g.const(1.0)])]), g.const(0.5)])
        if kind == "relu":
            return g.op("Relu", [x])
    raise ValueError(kind)


def dim_of(g: G, x: str, axis: int) -> str:
    """Shape(x) -> Gather(axis) -> Unsqueeze(0): a 1-element int64 tensor holding one dim."""
    s = g.op("Shape", [x])
    d = g.op("Gather", [s, g.const(axis, np.int64)], axis=0)
    return unsqueeze(g, d, [0])


def attention(g: G, x: str, p: dict, name: str, heads: int, seq: int | None, *,
              shape_subgraph: bool, kind: str = "softmax", mask: str | None = None) -> str:
    """Multi-head self-attention on x [B, S, H] as torch.onnx writes it.

    shape_subgraph: compute the Reshape targets from Shape(x) (dynamic exports) instead of
    constant [-1, S, heads, dh]; required when S is symbolic (seq=None).
    kind: "softmax" or "sigma" (ReLU(QKᵀ/sqrt(d)) / S, the HE-friendly variant).
    mask: additive mask broadcastable to [B, heads, S, S].
    """
    hidden = p["query_w"].shape[0]
    dh = hidden // heads
    with g.scope(name):
        if shape_subgraph:
            b, s = dim_of(g, x, 0), dim_of(g, x, 1)
            split_shape = g.op("Concat", [b, s, g.const([heads], np.int64), g.const([dh], np.int64)], axis=0)
            merge_shape = g.op("Concat", [b, s, g.const([hidden], np.int64)], axis=0)
        else:
            assert seq is not None
            split_shape = g.const([-1, seq, heads, dh], np.int64)
            merge_shape = g.const([-1, seq, hidden], np.int64)

        def heads_of(proj: str, perm: list[int]) -> str:
            y = linear(g, x, p[f"{proj}_w"], p[f"{proj}_b"], proj)
            return g.op("Transpose", [g.op("Reshape", [y, split_shape])], perm=perm)

        q = heads_of("query", [0, 2, 1, 3])       # [B, h, S, dh]
        k = heads_of("key", [0, 2, 3, 1])         # [B, h, dh, S]
        v = heads_of("value", [0, 2, 1, 3])       # [B, h, S, dh]
        scores = g.op("Div", [g.op("MatMul", [q, k]), g.const(math.sqrt(dh))])
        if mask is not None:
            scores = g.op("Add", [scores, mask])
        if kind == "softmax":
            probs = g.op("Softmax", [scores], axis=-1)
        elif kind == "sigma":
            assert seq is not None
            probs = g.op("Div", [g.op("Relu", [scores]), g.const(float(seq))])
        else:
            raise ValueError(kind)
        ctx = g.op("MatMul", [probs, v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        return linear(g, ctx, p["o_w"], p["o_b"], "output", bias_first=False)


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------
class Params:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def normal(self, shape, std: float, mean: float = 0.0) -> np.ndarray:
        return (mean + std * self.rng.standard_normal(shape)).astype(np.float32)

    def uniform(self, shape, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def linear(self, fan_in: int, fan_out: int, std: float | None = None):
        std = std if std is not None else 1.0 / math.sqrt(fan_in)
        return self.normal((fan_in, fan_out), std), self.normal((fan_out,), 0.05)

    def ln(self, hidden: int):
        return self.normal((hidden,), 0.1, 1.0), self.normal((hidden,), 0.05)

    def attn(self, hidden: int) -> dict:
        # Keys are the torch module names attention() scopes the projections with.
        p = {}
        for n in ("query", "key", "value", "o"):
            p[f"{n}_w"], p[f"{n}_b"] = self.linear(hidden, hidden)
        return p

    def block(self, hidden: int, ffn: int) -> dict:
        b = {"attn": self.attn(hidden)}
        b["ln1"] = self.ln(hidden)
        b["fc1"] = self.linear(hidden, ffn)
        b["fc2"] = self.linear(ffn, hidden)
        b["ln2"] = self.ln(hidden)
        return b


def ffn(g: G, x: str, b: dict, act: str) -> str:
    with g.scope("mlp"):
        h = linear(g, x, *b["fc1"], "fc1")
        return linear(g, gelu(g, h, act), *b["fc2"], "fc2")


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------
ENC_SEQ, ENC_HID, ENC_HEADS, ENC_FFN, ENC_CLASSES = 16, 32, 4, 64, 4
ENC_SEED = 1701


def post_ln_block(g: G, x: str, b: dict, name: str, *, heads: int, seq: int | None, decomposed: bool,
                  act: str, shape_subgraph: bool, eps: float) -> str:
    with g.scope(name):
        a = attention(g, x, b["attn"], "attention", heads, seq, shape_subgraph=shape_subgraph)
        x = layer_norm(g, g.op("Add", [x, a]), *b["ln1"], eps, "norm1", decomposed)
        f = ffn(g, x, b, act)
        return layer_norm(g, g.op("Add", [x, f]), *b["ln2"], eps, "norm2", decomposed)


def classifier(g: G, pooled: str, w: np.ndarray, bias: np.ndarray) -> str:
    # nn.Linear on 2-D input exports as Gemm(transB=1) with the torch-layout [out, in] weight.
    with g.scope("classifier"):
        return g.op("Gemm", [pooled, g.weight("weight", w), g.weight("bias", bias)],
                    alpha=1.0, beta=1.0, transB=1)


def encoder_params() -> tuple[dict, tuple]:
    p = Params(ENC_SEED)
    block = p.block(ENC_HID, ENC_FFN)
    head = (p.normal((ENC_CLASSES, ENC_HID), 0.5), p.normal((ENC_CLASSES,), 0.05))
    return block, head


def build_encoder() -> onnx.ModelProto:
    g = G("encoder", 17)
    x = g.input("x", TensorProto.FLOAT, ["batch_size", ENC_SEQ, ENC_HID])
    block, head = encoder_params()
    h = post_ln_block(g, x, block, "layer.0", heads=ENC_HEADS, seq=ENC_SEQ, decomposed=False, act="erf",
                      shape_subgraph=False, eps=1e-5)
    pooled = reduce_mean(g, h, [1], 0)
    g.output(classifier(g, pooled, *head), "logits", TensorProto.FLOAT, ["batch_size", ENC_CLASSES])
    return g.model("One post-LN transformer encoder block + mean pool + classifier (polyhe test model).")


def build_encoder_decomposed() -> onnx.ModelProto:
    g = G("encoder_decomposed", 13)
    x = g.input("x", TensorProto.FLOAT, ["batch_size", ENC_SEQ, ENC_HID])
    block, head = encoder_params()  # same weights as `encoder`: outputs differ only by tanh-vs-erf GELU
    h = post_ln_block(g, x, block, "layer.0", heads=ENC_HEADS, seq=ENC_SEQ, decomposed=True, act="tanh",
                      shape_subgraph=True, eps=1e-5)
    pooled = squeeze(g, reduce_mean(g, h, [1], 1), [1])
    g.output(classifier(g, pooled, *head), "logits", TensorProto.FLOAT, ["batch_size", ENC_CLASSES])
    return g.model("The `encoder` block written as opset-13 exporters do: decomposed LayerNorm, "
                   "tanh GELU, Shape-computed Reshape targets.")


def build_sigma_encoder() -> onnx.ModelProto:
    g = G("sigma_encoder", 18)
    x = g.input("x", TensorProto.FLOAT, ["batch_size", ENC_SEQ, ENC_HID])
    p = Params(2311)
    b = p.block(ENC_HID, ENC_FFN)

    def bn(g: G, x: str, name: str, mean: np.ndarray, var: np.ndarray) -> str:
        # BatchNorm1d over the hidden channels: [B,S,H] -> [B,H,S] -> BN -> [B,S,H].
        with g.scope(name):
            scale, beta = p.ln(ENC_HID)
            t = g.op("Transpose", [x], perm=[0, 2, 1])
            y = g.op("BatchNormalization", [t, g.weight("weight", scale), g.weight("bias", beta),
                                            g.weight("running_mean", mean),
                                            g.weight("running_var", var)],
                     epsilon=1e-5, momentum=0.9)
            return g.op("Transpose", [y], perm=[0, 2, 1])

    # Running statistics as training would leave them: the pre-norm sums have per-channel
    # means of order 0.1-0.3 and variances around 1-2.5 for unit-variance inputs.
    with g.scope("layer.0"):
        a = attention(g, x, b["attn"], "attention", ENC_HEADS, ENC_SEQ, shape_subgraph=False, kind="sigma")
        h = bn(g, g.op("Add", [x, a]), "norm1", p.normal((ENC_HID,), 0.2), p.uniform((ENC_HID,), 1.0, 2.5))
        f = ffn(g, h, b, "relu")
        h = bn(g, g.op("Add", [h, f]), "norm2", p.normal((ENC_HID,), 0.3), p.uniform((ENC_HID,), 1.0, 2.5))
    pooled = reduce_mean(g, h, [1], 0)
    head = (p.normal((ENC_CLASSES, ENC_HID), 0.5), p.normal((ENC_CLASSES,), 0.05))
    g.output(classifier(g, pooled, *head), "logits", TensorProto.FLOAT, ["batch_size", ENC_CLASSES])
    return g.model("HE-friendly encoder block (arXiv 2311.08610): sigma-attention ReLU(QK^T/sqrt(d))/n, "
                   "BatchNorm instead of LayerNorm, ReLU FFN.")


VIT_IMG, VIT_PATCH, VIT_HID, VIT_HEADS, VIT_FFN, VIT_CLASSES, VIT_LAYERS = 16, 4, 32, 2, 64, 10, 2
VIT_TOKENS = (VIT_IMG // VIT_PATCH) ** 2 + 1


def build_vit() -> onnx.ModelProto:
    g = G("vit", 17)
    pix = g.input("pixels", TensorProto.FLOAT, ["batch_size", 3, VIT_IMG, VIT_IMG])
    p = Params(1929)
    with g.scope("embeddings"):
        w = p.normal((VIT_HID, 3, VIT_PATCH, VIT_PATCH), 1.0 / math.sqrt(3 * VIT_PATCH * VIT_PATCH))
        conv = g.op("Conv", [pix, g.weight("patch_embed.weight", w), g.weight("patch_embed.bias", p.normal((VIT_HID,), 0.05))],
                    kernel_shape=[VIT_PATCH, VIT_PATCH], strides=[VIT_PATCH, VIT_PATCH], pads=[0, 0, 0, 0],
                    dilations=[1, 1], group=1)
        # flatten(2): [B, H, 4, 4] -> [B, H, 16]; the 0 copies the (symbolic) batch dim.
        flat = g.op("Reshape", [conv, g.const([0, VIT_HID, -1], np.int64)])
        tokens = g.op("Transpose", [flat], perm=[0, 2, 1])
        cls_shape = g.op("Concat", [dim_of(g, pix, 0), g.const([1, 1], np.int64)], axis=0)
        cls = g.op("Expand", [g.weight("cls_token", p.normal((1, 1, VIT_HID), 0.5)), cls_shape])
        h = g.op("Concat", [cls, tokens], axis=1)
        h = g.op("Add", [h, g.weight("pos_embed", p.normal((1, VIT_TOKENS, VIT_HID), 0.3))])
    for i in range(VIT_LAYERS):
        b = p.block(VIT_HID, VIT_FFN)
        with g.scope(f"blocks.{i}"):  # pre-norm ViT block
            n1 = layer_norm(g, h, *b["ln1"], 1e-6, "norm1", decomposed=False)
            h = g.op("Add", [h, attention(g, n1, b["attn"], "attn", VIT_HEADS, VIT_TOKENS, shape_subgraph=False)])
            n2 = layer_norm(g, h, *b["ln2"], 1e-6, "norm2", decomposed=False)
            h = g.op("Add", [h, ffn(g, n2, b, "erf")])
    cls_tok = g.op("Gather", [h, g.const(0, np.int64)], axis=1)  # x[:, 0]
    normed = layer_norm(g, cls_tok, *p.ln(VIT_HID), 1e-6, "norm", decomposed=False)
    head = (p.normal((VIT_CLASSES, VIT_HID), 0.4), p.normal((VIT_CLASSES,), 0.05))
    g.output(classifier(g, normed, *head), "logits", TensorProto.FLOAT, ["batch_size", VIT_CLASSES])
    return g.model("Tiny ViT: 4x4 conv patches, class token, 2 pre-norm blocks, 10-way head.")


BERT_VOCAB, BERT_HID, BERT_HEADS, BERT_FFN, BERT_LAYERS, BERT_MAXPOS, BERT_SEQ = 128, 32, 2, 64, 2, 64, 12
BERT_PAD, BERT_CLS, BERT_SEP = 0, 1, 2


def build_bert_tiny() -> onnx.ModelProto:
    g = G("bert_tiny", 14)
    ids = g.input("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])
    mask = g.input("attention_mask", TensorProto.INT64, ["batch_size", "sequence_length"])
    p = Params(4242)
    eps = 1e-12
    with g.scope("embeddings"):
        words = g.op("Gather", [g.weight("word_embeddings.weight", p.normal((BERT_VOCAB, BERT_HID), 0.5)), ids], axis=0)
        seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const(1, np.int64)], axis=0)
        # position_ids = arange(seq_len)[None, :]
        pos_ids = unsqueeze(g, g.op("Range", [g.const(0, np.int64), seq_len, g.const(1, np.int64)]), [0])
        pos = g.op("Gather", [g.weight("position_embeddings.weight", p.normal((BERT_MAXPOS, BERT_HID), 0.3)), pos_ids], axis=0)
        # token_type_ids = buffered zeros[:, :seq_len].expand(B, S), as HF BertEmbeddings does.
        tt_buf = g.weight("token_type_ids", np.zeros((1, BERT_MAXPOS), np.int64))
        tt = g.op("Slice", [tt_buf, g.const([0], np.int64), unsqueeze(g, seq_len, [0]), g.const([1], np.int64)])
        tt = g.op("Expand", [tt, g.op("Shape", [ids])])
        types = g.op("Gather", [g.weight("token_type_embeddings.weight", p.normal((2, BERT_HID), 0.3)), tt], axis=0)
        h = g.op("Add", [g.op("Add", [words, types]), pos])
        h = layer_norm(g, h, *p.ln(BERT_HID), eps, "LayerNorm", decomposed=True)
    with g.scope("extended_attention_mask"):
        # (1 - mask[:, None, None, :].float()) * -10000
        m = g.op("Cast", [unsqueeze(g, mask, [1, 2])], to=TensorProto.FLOAT)
        ext = g.op("Mul", [g.op("Sub", [g.const(1.0), m]), g.const(-10000.0)])
    for i in range(BERT_LAYERS):
        b = p.block(BERT_HID, BERT_FFN)
        with g.scope(f"encoder/layer.{i}"):
            a = attention(g, h, b["attn"], "attention", BERT_HEADS, None, shape_subgraph=True, mask=ext)
            h = layer_norm(g, g.op("Add", [a, h]), *b["ln1"], eps, "attention/LayerNorm", decomposed=True)
            f = ffn(g, h, b, "erf")
            h = layer_norm(g, g.op("Add", [f, h]), *b["ln2"], eps, "output/LayerNorm", decomposed=True)
    with g.scope("pooler"):
        first = g.op("Gather", [h, g.const(0, np.int64)], axis=1)
        pw, pb = p.normal((BERT_HID, BERT_HID), 1.0 / math.sqrt(BERT_HID)), p.normal((BERT_HID,), 0.05)
        pooled = g.op("Tanh", [g.op("Gemm", [first, g.weight("dense.weight", pw), g.weight("dense.bias", pb)],
                                    alpha=1.0, beta=1.0, transB=1)])
    g.output(h, "last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", BERT_HID])
    g.output(pooled, "pooler_output", TensorProto.FLOAT, ["batch_size", BERT_HID])
    return g.model("Tiny BERT (2 layers, hidden 32) in the HF-export op pattern (polyhe test model).")


# --------------------------------------------------------------------------------------
# Sample data
# --------------------------------------------------------------------------------------
def seq_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # A per-sample "topic" vector shared by all tokens makes pooled features (and so the
    # classifier's argmax) differ between samples, as real sequences do.
    x = rng.standard_normal((n, ENC_SEQ, ENC_HID)) + 0.8 * rng.standard_normal((n, 1, ENC_HID))
    return {"x": x.astype(np.float32)}


def vit_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Smooth-ish images in [-1, 1] (normalized pixels): a per-image colour + gradient + noise.
    yy, xx = np.meshgrid(np.linspace(-1, 1, VIT_IMG), np.linspace(-1, 1, VIT_IMG), indexing="ij")
    colour = rng.uniform(-0.6, 0.6, (n, 3, 1, 1))
    grad = rng.uniform(-0.4, 0.4, (n, 3, 1, 1)) * xx + rng.uniform(-0.4, 0.4, (n, 3, 1, 1)) * yy
    img = np.clip(colour + grad + 0.25 * rng.standard_normal((n, 3, VIT_IMG, VIT_IMG)), -1, 1)
    return {"pixels": img.astype(np.float32)}


def bert_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.full((n, BERT_SEQ), BERT_PAD, np.int64)
    mask = np.zeros((n, BERT_SEQ), np.int64)
    for r in range(n):
        # Every other row is padded: real lengths between 5 and seq-1.
        length = BERT_SEQ if r % 2 == 0 else int(rng.integers(5, BERT_SEQ))
        ids[r, 0], ids[r, length - 1] = BERT_CLS, BERT_SEP
        ids[r, 1:length - 1] = rng.integers(3, BERT_VOCAB, length - 2)
        mask[r, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def io_desc(vis) -> str:
    out = []
    for vi in vis:
        t = vi.type.tensor_type
        dims = ", ".join(d.dim_param if d.dim_param else str(d.dim_value) for d in t.shape.dim)
        out.append(f"`{vi.name}` {helper.tensor_dtype_to_np_dtype(t.elem_type).name}[{dims}]")
    return ", ".join(out)


MODELS = {
    "encoder": (build_encoder, seq_inputs,
                "One post-LN transformer encoder block as a modern torch.onnx export writes it (opset 17): "
                "Q/K/V MatMul+Add, Reshape to 4 heads with a constant shape, Transpose, QKᵀ, Div by sqrt(8), "
                "Softmax, MatMul V, head merge, output projection, residual, LayerNormalization (the op, eps 1e-5), "
                "FFN 32→64→32 with erf GELU written as Div/Erf/Add/Mul/Mul, residual, LayerNormalization, "
                "then ReduceMean over tokens and a Gemm classifier to 4 logits."),
    "encoder_decomposed": (build_encoder_decomposed, seq_inputs,
                           "The `encoder` block (same weights) as an opset-13 exporter writes it: LayerNorm decomposed "
                           "into ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add (ReduceMean with an `axes` attribute), "
                           "tanh-approximate GELU (Pow 3, Mul 0.044715, Add, Mul sqrt(2/π), Tanh, Add 1, Mul, Mul 0.5), "
                           "head split/merge Reshape targets computed by Shape→Gather→Unsqueeze→Concat, "
                           "mean pool as ReduceMean(keepdims=1)+Squeeze (axes as input, opset 13), Gemm head to 4 logits. "
                           "Logits match `encoder` up to the GELU approximation."),
    "sigma_encoder": (build_sigma_encoder, seq_inputs,
                      "The HE-friendly encoder block of arXiv 2311.08610 (opset 18): σ-attention ReLU(QKᵀ/sqrt(8))/16 "
                      "(n = sequence length 16) instead of Softmax, BatchNormalization in inference mode (running "
                      "mean/var set, eps 1e-5) applied over the hidden channels via Transpose [B,S,H]→[B,H,S] and back, "
                      "in place of LayerNorm, FFN 32→64→32 with ReLU, then ReduceMean (axes as input, opset 18) over "
                      "tokens and a Gemm classifier to 4 logits."),
    "vit": (build_vit, vit_inputs,
            "A tiny Vision Transformer (opset 17): Conv patch embedding (3→32 channels, kernel = stride = 4, "
            "so 16 patches), Reshape [0,32,-1] + Transpose to tokens, a class token Expanded to the batch "
            "(shape from Shape(pixels)) and Concatenated in front (17 tokens), learned position-embedding Add, "
            "2 pre-norm blocks (LayerNormalization eps 1e-6, 2-head softmax attention, FFN 32→64→32 with "
            "erf GELU written out), class token taken with Gather(axis=1, index 0), LayerNormalization, Gemm "
            "head to 10 classes."),
    "bert_tiny": (build_bert_tiny, bert_inputs,
                  "A tiny BERT (opset 14) in the HF-transformers export pattern: vocab 128, hidden 32, 2 heads, "
                  "FFN 64, 2 layers, max positions 64. Word/position/token-type embedding Gathers (position ids "
                  "by Range over Shape(input_ids)[1]; token-type ids from a zero buffer Sliced to the sequence "
                  "length and Expanded), decomposed LayerNorm (eps 1e-12), extended attention mask "
                  "Unsqueeze→Cast→(1 − mask)·−10000 added to the scores, Reshape targets from Shape subgraphs "
                  "(both batch and sequence axes are symbolic), erf GELU, and a Tanh(Gemm) pooler on the first "
                  "token. Sample and calibration inputs use sequence length 12 (odd rows are padded; "
                  "token 0 = [PAD], 1 = [CLS], 2 = [SEP])."),
}


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    # The reference is the graph as written: no fusion of LayerNorm/GELU/attention.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def write_model(name: str) -> dict:
    build, make_inputs, blurb = MODELS[name]
    model = build()
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)

    d = HERE / name
    for sub in ("inputs", "calib", "expected"):
        (d / sub).mkdir(parents=True, exist_ok=True)
        for f in (d / sub).glob("*.npy"):
            f.unlink()
    onnx.save_model(model, str(d / "model.onnx"))

    inputs = make_inputs(N_SAMPLES, 1000)
    calib = make_inputs(N_CALIB, 2000)
    outputs = run_ort(model, inputs)
    run_ort(model, calib)  # calibration data must run too
    for k, v in inputs.items():
        np.save(d / "inputs" / f"{k}.npy", v)
    for k, v in calib.items():
        np.save(d / "calib" / f"{k}.npy", v)
    for k, v in outputs.items():
        assert np.all(np.isfinite(v)), f"{name}: non-finite output {k}"
        np.save(d / "expected" / f"{k}.npy", v)

    n_nodes = len(model.graph.node)
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    ops = sorted({n.op_type for n in model.graph.node})
    (d / "README.md").write_text(
        f"# {name}\n\n{blurb} Inputs: {io_desc(model.graph.input)}. Outputs: {io_desc(model.graph.output)}. "
        f"{n_nodes} nodes, {n_params} parameters, ops: {', '.join(ops)}. "
        f"`inputs/` holds {N_SAMPLES} samples, `calib/` {N_CALIB} calibration samples (another seed), "
        f"`expected/` the onnxruntime outputs for `inputs/` (graph optimizations disabled). "
        f"Generated by `models/make_models.py`; do not edit by hand.\n")
    return {"model": model, "inputs": inputs, "outputs": outputs, "nodes": n_nodes, "params": n_params,
            "size": (d / "model.onnx").stat().st_size}


def main(argv: list[str]) -> int:
    names = argv or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model(s): {unknown}; known: {list(MODELS)}", file=sys.stderr)
        return 2
    results = {}
    print(f"{'model':<20} {'opset':>5} {'nodes':>6} {'params':>7} {'bytes':>8}  outputs")
    for n in names:
        r = results[n] = write_model(n)
        m = r["model"]
        outs = "; ".join(f"{k} {list(v.shape)} std {v.std():.3f}" for k, v in r["outputs"].items())
        print(f"{n:<20} {m.opset_import[0].version:>5} {r['nodes']:>6} {r['params']:>7} {r['size']:>8}  {outs}")
        if "logits" in r["outputs"]:
            am = r["outputs"]["logits"].argmax(-1)
            print(f"{'':<20} argmax over the {N_SAMPLES} samples: {am.tolist()}")
            # A test model whose classifier always answers the same is useless for checking
            # an HE pipeline end to end.
            assert len(set(am.tolist())) >= 3, f"{n}: argmax too uniform: {am}"
    if "encoder" in results and "encoder_decomposed" in results:
        # Same weights, same inputs: only the GELU approximation differs, so this catches a
        # wrong decomposition or head split in either graph.
        diff = np.abs(results["encoder"]["outputs"]["logits"] - results["encoder_decomposed"]["outputs"]["logits"]).max()
        print(f"encoder vs encoder_decomposed max |Δlogits| = {diff:.2e} (erf vs tanh GELU)")
        assert diff < 1e-2, diff
    total = sum(f.stat().st_size for n in names for f in (HERE / n).rglob("*") if f.is_file())
    print(f"total size of written folders: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
