"""Reading a GGUF file: validation, the model's hyper-parameters, and fp32 weights.

The `gguf` package (llama.cpp's own reader) memory-maps the file and dequantizes every
quant type to float32. We dequantize once at load (per-token dequantization would cost
over a second per token) and lay the weights out for the forward pass:

* linear weights are stored transposed, (in, out), because `x @ W` with that layout
  streams memory faster through OpenBLAS than `W @ x` (measured: ~50 vs ~44 tok/s bound);
  the one exception is the down projection, (out, in), where `W @ x` measured faster;
* Q/K/V are fused into one matrix and gate/up into another: fewer, larger matmuls;
* qwen2-architecture Q/K rows are permuted to llama's interleaved-pair RoPE layout (see
  `_interleave_rope_rows`), so one RoPE implementation (a complex rotation) serves both.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from antinet_tui.engine.errors import ModelFormatError, ModelNotFound

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    rope_base: float
    rope_dims: int
    norm_eps: float
    qkv_bias: bool
    tied_embeddings: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


class GGUFFile:
    """An opened, validated GGUF file: metadata values and tensors by name."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        check_gguf_file(self.path)
        from gguf import GGUFReader  # imported here: costs ~70 ms, only needed on a cache miss

        try:
            self.reader = GGUFReader(self.path)
        except Exception as exc:  # the reader's own errors are low-level (reshape, index): to the log
            logger.info("GGUFReader failed on %s", self.path, exc_info=True)
            raise ModelFormatError(
                f"{self.path} is a truncated or corrupt GGUF file ({self.path.stat().st_size:,} bytes): "
                f"its header or tensor data is cut short or damaged ({type(exc).__name__}); "
                "download or convert the model again"
            ) from None
        self.tensors = {t.name: t for t in self.reader.tensors}
        size = self.path.stat().st_size
        for t in self.reader.tensors:
            end = int(t.data_offset) + int(t.n_bytes)
            if end > size:
                raise ModelFormatError(
                    f"{self.path} is truncated: tensor {t.name!r} ends at byte {end:,} "
                    f"but the file has {size:,} bytes"
                )

    def get(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def require(self, key: str) -> Any:
        field = self.reader.fields.get(key)
        if field is None:
            raise ModelFormatError(f"{self.path}: required metadata key {key!r} is missing")
        return field.contents()

    def tensor_types(self) -> dict[str, str]:
        return {name: t.tensor_type.name for name, t in self.tensors.items()}


def check_gguf_file(path: Path) -> None:
    if not path.exists():
        raise ModelNotFound(f"model file not found: {path}")
    if not path.is_file():
        raise ModelNotFound(f"model path is not a file: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        what = "an empty file" if not magic else f"starts with {magic!r}, expected b'GGUF'"
        raise ModelFormatError(f"{path} is not a GGUF model file ({what})")


def read_config(gf: GGUFFile) -> ModelConfig:
    """The model's shape from its metadata, checked: a zero, a wrong type or a count that
    does not match the tensors is named (key and value) here, not met later as an index
    error or a division by zero in the forward pass."""
    arch = gf.require("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelFormatError(
            f"{gf.path}: unsupported architecture {arch!r}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )

    def number(key: str, kind: type = int, default: Any = None, low: float = 1) -> Any:
        raw = gf.get(f"{arch}.{key}") if default is not None else gf.require(f"{arch}.{key}")
        if raw is None:
            return default
        try:
            value = kind(raw)
            if isinstance(raw, (bool, str)) or (kind is int and value != raw) or not math.isfinite(value):
                raise ValueError
        except (TypeError, ValueError):
            word = "an integer" if kind is int else "a number"
            raise ModelFormatError(f"{gf.path}: metadata {arch}.{key} must be {word}, got {raw!r}") from None
        if value < low or (low == 0 and value == 0):
            bound = f"at least {low}" if low else "more than 0"
            raise ModelFormatError(f"{gf.path}: metadata {arch}.{key} is {raw!r}; it must be {bound} "
                                   "(a damaged or hand-edited file?)")
        return value

    n_heads = number("attention.head_count")
    d_model = number("embedding_length")
    head_dim = number("attention.key_length", default=max(1, d_model // n_heads))
    embd = gf.tensors.get("token_embd.weight")
    if embd is None:
        raise ModelFormatError(f"{gf.path}: tensor 'token_embd.weight' is missing")
    config = ModelConfig(
        architecture=arch,
        n_layers=number("block_count"),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=number("attention.head_count_kv", default=n_heads),
        head_dim=head_dim,
        ffn_dim=number("feed_forward_length"),
        vocab_size=number("vocab_size", default=int(embd.shape[1])),
        context_length=number("context_length"),
        rope_base=number("rope.freq_base", float, default=10000.0, low=0),
        rope_dims=number("rope.dimension_count", default=head_dim, low=2),
        norm_eps=number("attention.layer_norm_rms_epsilon", float, default=1e-6, low=0),
        qkv_bias="blk.0.attn_q.bias" in gf.tensors,
        tied_embeddings="output.weight" not in gf.tensors,
    )
    _check_shapes(gf, config)
    return config


def _check_shapes(gf: GGUFFile, c: ModelConfig) -> None:
    key = f"{c.architecture}."
    if c.n_heads % c.n_kv_heads:
        raise ModelFormatError(f"{gf.path}: metadata {key}attention.head_count ({c.n_heads}) is not a multiple of "
                               f"{key}attention.head_count_kv ({c.n_kv_heads})")
    if c.rope_dims % 2 or c.rope_dims > c.head_dim:
        raise ModelFormatError(f"{gf.path}: metadata {key}rope.dimension_count is {c.rope_dims}; it must be even "
                               f"and at most the head size ({c.head_dim})")
    expected = {"token_embd.weight": (c.d_model, c.vocab_size)}  # GGUF order: (columns, rows)
    for i in range(c.n_layers):
        expected |= {f"blk.{i}.attn_q.weight": (c.d_model, c.q_dim), f"blk.{i}.attn_k.weight": (c.d_model, c.kv_dim),
                     f"blk.{i}.attn_v.weight": (c.d_model, c.kv_dim),
                     f"blk.{i}.attn_output.weight": (c.q_dim, c.d_model),
                     f"blk.{i}.ffn_gate.weight": (c.d_model, c.ffn_dim),
                     f"blk.{i}.ffn_up.weight": (c.d_model, c.ffn_dim),
                     f"blk.{i}.ffn_down.weight": (c.ffn_dim, c.d_model)}
    for name, shape in expected.items():
        tensor = gf.tensors.get(name)
        if tensor is None:
            raise ModelFormatError(f"{gf.path}: tensor {name!r} is missing")
        actual = tuple(int(n) for n in tensor.shape)
        if actual != shape:
            raise ModelFormatError(f"{gf.path}: tensor {name!r} has shape {actual}, but the metadata "
                                   f"({key}embedding_length, attention.head_count, ...) make it {shape}")


def _dequantize(gf: GGUFFile, name: str) -> np.ndarray:
    from gguf.quants import dequantize

    t = gf.tensors.get(name)
    if t is None:
        raise ModelFormatError(f"{gf.path}: tensor {name!r} is missing")
    try:
        out = dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        raise ModelFormatError(
            f"{gf.path}: tensor {name!r} has type {t.tensor_type.name}, which this engine "
            "cannot dequantize (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
            "Q2_K..Q6_K and the other types the gguf package dequantizes)"
        ) from None
    # gguf lists dims fastest-first (ne0, ne1); numpy wants them slowest-first.
    shape = tuple(int(d) for d in reversed(t.shape))
    return np.asarray(out, dtype=np.float32).reshape(shape)


def _interleave_rope_rows(w: np.ndarray, n_heads: int, head_dim: int, rope_dims: int) -> np.ndarray:
    """Reorder a qwen2 Q/K weight's (or bias's) rows from rotate-half to interleaved pairs.

    qwen2 files rotate (x_i, x_{i+d/2}) (NEOX layout); llama files, as llama.cpp's converter
    permutes them, rotate adjacent pairs (x0,x1), (x2,x3)... Interleaving each head's two
    halves gives the llama layout. The same permutation on Q and K leaves every q·k dot
    product, and so the model's output, unchanged.
    """
    half = rope_dims // 2
    order = np.concatenate([np.stack([np.arange(half), np.arange(half, rope_dims)], axis=1).ravel(),
                            np.arange(rope_dims, head_dim)])
    rows = w.reshape(n_heads, head_dim, -1)[:, order]
    return rows.reshape(w.shape)


def prepare_weights(
    gf: GGUFFile, cfg: ModelConfig, on_progress: Callable[[float, str], None] | None = None
) -> dict[str, np.ndarray]:
    """Dequantize and lay out every weight the forward pass reads (see module doc)."""
    w: dict[str, np.ndarray] = {}

    def linear_in_out(*names: str) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate([_dequantize(gf, n) for n in names], axis=0).T)

    neox = cfg.architecture == "qwen2"

    def q_k_v(suffix: str) -> list[np.ndarray]:
        q, k, v = (_dequantize(gf, f"{p}attn_{x}.{suffix}") for x in "qkv")
        if neox:
            q = _interleave_rope_rows(q, cfg.n_heads, cfg.head_dim, cfg.rope_dims)
            k = _interleave_rope_rows(k, cfg.n_kv_heads, cfg.head_dim, cfg.rope_dims)
        return [q, k, v]

    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        w[p + "wqkv"] = np.ascontiguousarray(np.concatenate(q_k_v("weight"), axis=0).T)
        if cfg.qkv_bias:
            w[p + "bqkv"] = np.concatenate(q_k_v("bias"))
        w[p + "wo"] = linear_in_out(p + "attn_output.weight")
        w[p + "attn_norm"] = _dequantize(gf, p + "attn_norm.weight")
        w[p + "ffn_norm"] = _dequantize(gf, p + "ffn_norm.weight")
        w[p + "w_gate_up"] = linear_in_out(p + "ffn_gate.weight", p + "ffn_up.weight")
        w[p + "w_down_out_in"] = _dequantize(gf, p + "ffn_down.weight")
        if on_progress:
            on_progress((i + 1) / (cfg.n_layers + 1), f"dequantizing layer {i + 1}/{cfg.n_layers}")
    w["output_norm"] = _dequantize(gf, "output_norm.weight")
    embd = _dequantize(gf, "token_embd.weight")  # (vocab, d)
    if cfg.tied_embeddings:
        # One (d, vocab) copy serves both the LM head and (by column) the embedding lookup.
        w["lm_head"] = np.ascontiguousarray(embd.T)
    else:
        w["token_embd"] = embd
        w["lm_head"] = np.ascontiguousarray(_dequantize(gf, "output.weight").T)
    if "rope_freqs.weight" in gf.tensors:  # llama 3.x long-context frequency factors
        w["rope_freq_factors"] = _dequantize(gf, "rope_freqs.weight")
    if on_progress:
        on_progress(1.0, "weights ready")
    return w


def quantization_summary(gf: GGUFFile) -> str:
    """The most common tensor type among 2-D weights, e.g. 'Q4_1'."""
    counts: dict[str, int] = {}
    for t in gf.tensors.values():
        if len(t.shape) == 2:
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else "unknown"
