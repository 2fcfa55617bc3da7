"""Build one ONNX decoder graph (llama / qwen2) from a GGUF file's own blocks.

The graph runs a whole forward step, prefill or decode, in one session run:

    embed -> (SimplifiedLayerNorm -> MatMulNBits QKV -> GroupQueryAttention (RoPE inside,
    KV cache in place) -> MatMulNBits O -> SkipSimplifiedLayerNorm -> MatMulNBits gate/up
    -> SiLU * up -> MatMulNBits down -> SkipSimplifiedLayerNorm) x L -> last position -> LM head

Inputs: `input_ids` int64 (1, T); `seqlens_k` int32 (1,) = positions after this run - 1;
`total_sequence_length` int32 scalar = positions after this run; `past_key.i` /
`past_value.i` float32 (1, kv_heads, n_ctx, head_dim), n_ctx chosen by the backend (the
RoPE tables cover the model's whole context). Outputs: `logits` (1, vocab) of
the last position, and `present_key.i` / `present_value.i`, which the backend binds to
the same buffers as the past ones, so GroupQueryAttention appends in place.

Weights stay as the file has them (see blocks.py); Q/K/V and gate/up are fused into one
MatMulNBits each. Activations are (T, width) matrices, so Q4_1's correction is one Gemm
that adds to the product (reshaped to (1, T, .) only around GroupQueryAttention). RoPE
layout: llama files are converted with Q/K rows permuted for adjacent-pair rotation
(`rotary_interleaved=1`); qwen2 files rotate halves (`=0`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from antinet_tui.engine.errors import ModelFormatError, UnsupportedByBackend
from antinet_tui.engine.gguf_model import GGUFFile, ModelConfig, _dequantize
from antinet_tui.engine.onnx.blocks import (
    BLOCK,
    EXACT_TYPES,
    NBitsWeight,
    concat_rows,
    from_gguf_blocks,
    with_block_sum_rows,
)

OPSET = 18
MS = "com.microsoft"
UNSUPPORTED_HINT = "run it with --backend numpy, which dequantizes every GGUF type"


def check_supported(gf: GGUFFile, cfg: ModelConfig) -> None:
    """Refuse, before any work, a file whose linear weights have no exact MatMulNBits form."""
    for name, t in gf.tensors.items():
        if len(t.shape) == 2 and t.tensor_type.name not in EXACT_TYPES:
            raise UnsupportedByBackend(
                f"{gf.path}: tensor {name!r} has type {t.tensor_type.name}; the onnx backend runs "
                f"the file's own blocks only for {', '.join(EXACT_TYPES)} (it never re-quantizes); "
                + UNSUPPORTED_HINT
            )
    if cfg.rope_dims % 2 or cfg.rope_dims > cfg.head_dim:
        raise UnsupportedByBackend(f"{gf.path}: rope dimension {cfg.rope_dims} with head size {cfg.head_dim}; "
                                   + UNSUPPORTED_HINT)


# the linears of a block, and the LM head: each takes its own MatMulNBits accuracy_level
ROLES = ("qkv", "o", "gate_up", "down", "head")


class _Builder:
    def __init__(self, accuracy: Mapping[str, int]):
        self.nodes: list = []
        self.initializers: list = []
        self.accuracy = accuracy
        self._names: dict[str, int] = {}
        self._consts: set[str] = set()

    def name(self, base: str) -> str:
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_outputs: int = 1, domain: str = "", **attrs) -> list[str]:
        from onnx import helper

        base = self.name(op_type.lower())
        outputs = [f"{base}.out{i}" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=base, domain=domain or None, **attrs))
        return outputs

    def linear(self, x: str, w: NBitsWeight, name: str, role: str, bias: np.ndarray | None = None) -> str:
        """x @ W.T as MatMulNBits on the file's blocks (+ Q4_1's per-block minimum)."""
        n_blocks = w.k // BLOCK
        if w.block_min is not None:
            # sum(x[block] * (d*q + m)) = MatMulNBits(x) + blocksum(x) @ m.T. The block sums
            # come from the same MatMulNBits: one extra output row per block, weight 1 on
            # that block's inputs (exact in 4 bits: scale 1, q 1, zero point 0), so they
            # sum the very activations the product used (int8 ones, at accuracy level 4:
            # summing the float inputs instead doubled the logit error)
            w = with_block_sum_rows(w)
        inputs = [x, self.const(f"{name}.q", w.packed), self.const(f"{name}.scales", w.scales)]
        if w.zero_points is not None:
            inputs.append(self.const(f"{name}.zp", w.zero_points))
        (y,) = self.op("MatMulNBits", inputs, domain=MS, K=w.k, N=w.n, bits=w.bits, block_size=BLOCK,
                       accuracy_level=self.accuracy[role])
        if w.block_min is not None:
            n = w.n - n_blocks
            y, sums = self.op("Split", [y, self.shape_const(n, n_blocks)], n_outputs=2, axis=-1)
            # Gemm adds the minimum's term to the product in the same node
            (y,) = self.op("Gemm", [sums, self.const(f"{name}.min_t", np.ascontiguousarray(w.block_min[:n].T)), y])
        if bias is not None:
            (y,) = self.op("Add", [y, self.const(f"{name}.bias", bias.astype(np.float32))])
        return y

    def shape_const(self, *dims: int) -> str:
        name = "shape_" + "_".join(str(d).replace("-", "m") for d in dims)
        if name not in self._consts:
            self._consts.add(self.const(name, np.array(dims, np.int64)))
        return name


def rope_tables(cfg: ModelConfig, n_ctx: int, freq_factors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin caches (n_ctx, rope_dims/2) as GroupQueryAttention takes them."""
    half = cfg.rope_dims // 2
    inv_freq = 1.0 / (cfg.rope_base ** (np.arange(half, dtype=np.float64) * 2 / cfg.rope_dims))
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors[:half].astype(np.float64)
    angles = np.outer(np.arange(n_ctx, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def build_model(gf: GGUFFile, cfg: ModelConfig, accuracy: Mapping[str, int],
                on_progress: Callable[[float, str], None] | None = None):
    """The decoder as an onnx.ModelProto (not yet serialized). `accuracy` gives each of
    ROLES its MatMulNBits accuracy_level (4: int8 activations, 0: float32)."""
    from onnx import TensorProto, helper

    check_supported(gf, cfg)
    progress = on_progress or (lambda fraction, message: None)
    missing = set(ROLES) - set(accuracy)
    if missing:
        raise ValueError(f"no accuracy level for {', '.join(sorted(missing))}")
    b = _Builder(accuracy)

    def blocks(name: str) -> NBitsWeight:
        t = gf.tensors.get(name)
        if t is None:
            raise ModelFormatError(f"{gf.path}: tensor {name!r} is missing")
        k, n = (int(d) for d in t.shape)  # gguf: fastest dimension first
        return from_gguf_blocks(t.tensor_type.name, t.data, n, k)

    def fused(names: list[str], x: str, label: str, role: str, bias: np.ndarray | None = None) -> str:
        parts = [blocks(n) for n in names]
        if len({(p.qtype, p.k) for p in parts}) == 1:
            return b.linear(x, concat_rows(parts), label, role, bias)
        outs = [b.linear(x, p, f"{label}.{i}", role) for i, p in enumerate(parts)]
        (y,) = b.op("Concat", outs, axis=-1)
        if bias is not None:
            (y,) = b.op("Add", [y, b.const(f"{label}.bias", bias.astype(np.float32))])
        return y

    # embedding: Q8_0 rows are gathered from the blocks; other types from a float table
    embd_t = gf.tensors["token_embd.weight"]
    if embd_t.tensor_type.name == "Q8_0":
        embd = blocks("token_embd.weight")
        table = b.const("token_embd.q", embd.packed)  # (vocab, K/32, 32), shared with a tied LM head
        scales = b.const("token_embd.scales", embd.scales[..., None])
        (x,) = b.op("GatherBlockQuantized", [table, "input_ids", scales], domain=MS,
                    bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=2)
    else:
        table = b.const("token_embd.f32", _dequantize(gf, "token_embd.weight"))
        (x,) = b.op("Gather", [table, "input_ids"], axis=0)
    (x,) = b.op("Reshape", [x, b.shape_const(-1, cfg.d_model)])  # activations are (T, width) throughout

    freqs = _dequantize(gf, "rope_freqs.weight") if "rope_freqs.weight" in gf.tensors else None
    cos, sin = rope_tables(cfg, cfg.context_length, freqs)
    b.const("cos_cache", cos)
    b.const("sin_cache", sin)
    eps = float(cfg.norm_eps)
    interleaved = 1 if cfg.architecture == "llama" else 0

    residual = x
    first_norm = b.const("blk.0.attn_norm", _dequantize(gf, "blk.0.attn_norm.weight"))
    (h,) = b.op("SimplifiedLayerNormalization", [x, first_norm], axis=-1, epsilon=eps, stash_type=1)
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        bias = None
        if cfg.qkv_bias:
            bias = np.concatenate([_dequantize(gf, f"{p}attn_{s}.bias") for s in "qkv"])
        qkv = fused([f"{p}attn_q.weight", f"{p}attn_k.weight", f"{p}attn_v.weight"], h, f"{p}qkv", "qkv", bias)
        (qkv,) = b.op("Reshape", [qkv, b.shape_const(1, -1, cfg.q_dim + 2 * cfg.kv_dim)])  # GQA wants (1, T, .)
        attn, _, _ = b.op(
            "GroupQueryAttention",
            [qkv, "", "", f"past_key.{i}", f"past_value.{i}", "seqlens_k", "total_sequence_length",
             "cos_cache", "sin_cache"],
            n_outputs=3, domain=MS, num_heads=cfg.n_heads, kv_num_heads=cfg.n_kv_heads,
            do_rotary=1, rotary_interleaved=interleaved, scale=1.0 / math.sqrt(cfg.head_dim),
        )
        b.nodes[-1].output[1], b.nodes[-1].output[2] = f"present_key.{i}", f"present_value.{i}"
        (attn,) = b.op("Reshape", [attn, b.shape_const(-1, cfg.q_dim)])
        o = b.linear(attn, blocks(f"{p}attn_output.weight"), f"{p}o", "o")
        h, _, _, residual = b.op("SkipSimplifiedLayerNormalization",
                                 [o, residual, b.const(f"{p}ffn_norm", _dequantize(gf, f"{p}ffn_norm.weight"))],
                                 n_outputs=4, domain=MS, epsilon=eps)
        gate_up = fused([f"{p}ffn_gate.weight", f"{p}ffn_up.weight"], h, f"{p}gate_up", "gate_up")
        gate, up = b.op("Split", [gate_up, b.const("gate_up_split", np.array([cfg.ffn_dim] * 2, np.int64))],
                        n_outputs=2, axis=-1)
        (sig,) = b.op("Sigmoid", [gate])
        (act,) = b.op("Mul", [gate, sig])
        (act,) = b.op("Mul", [act, up])
        down = b.linear(act, blocks(f"{p}ffn_down.weight"), f"{p}down", "down")
        last = i == cfg.n_layers - 1
        norm_name = "output_norm" if last else f"blk.{i + 1}.attn_norm"
        h, _, _, residual = b.op("SkipSimplifiedLayerNormalization",
                                 [down, residual, b.const(norm_name, _dequantize(gf, norm_name + ".weight"))],
                                 n_outputs=4, domain=MS, epsilon=eps)
        progress((i + 1) / (cfg.n_layers + 1), f"building the ONNX graph: layer {i + 1}/{cfg.n_layers}")

    starts, ends, axes = (b.const(n, np.array([v], np.int64)) for n, v in
                          (("last_start", -1), ("last_end", np.iinfo(np.int64).max), ("seq_axis", 0)))
    (h,) = b.op("Slice", [h, starts, ends, axes])
    if cfg.tied_embeddings and embd_t.tensor_type.name == "Q8_0":
        head = blocks("token_embd.weight")
        inputs = [h, "token_embd.q", b.const("lm_head.scales", head.scales)]
        (logits,) = b.op("MatMulNBits", inputs, domain=MS, K=head.k, N=head.n, bits=8, block_size=BLOCK,
                         accuracy_level=accuracy["head"])
    else:
        logits = b.linear(h, blocks("token_embd.weight" if cfg.tied_embeddings else "output.weight"), "lm_head",
                          "head")
    assert b.nodes[-1].output[0] == logits
    b.nodes[-1].output[0] = "logits"

    kv_shape: list[str | int | None] = [1, cfg.n_kv_heads, "n_ctx", cfg.head_dim]
    graph_inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, cfg.vocab_size])]
    for i in range(cfg.n_layers):
        for kind in ("key", "value"):
            graph_inputs.append(helper.make_tensor_value_info(f"past_{kind}.{i}", TensorProto.FLOAT, kv_shape))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}.{i}", TensorProto.FLOAT, kv_shape))
    graph = helper.make_graph(b.nodes, "antinet-decoder", graph_inputs, outputs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
                              producer_name="antinet-tui")
    model.ir_version = 9
    progress(1.0, "graph built")
    return model
