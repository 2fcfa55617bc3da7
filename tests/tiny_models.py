"""Tiny random GGUF models written with gguf's own GGUFWriter, for fast engine tests.

The vocabulary is byte-level BPE over all 256 bytes plus a few merges and the ChatML
control tokens, so any text (Chinese, emoji) tokenizes and the model can emit any byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter
from gguf.quants import quantize

from antinet_tui.engine.tokenizer import CONTROL, NORMAL, _byte_decoder

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "a n"]
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# gguf cannot quantize K-quants; tests write random blocks with small, finite scales.
K_QUANTS = {GGMLQuantizationType.Q4_K: (144, (0, 2)), GGMLQuantizationType.Q6_K: (210, (208,))}


def random_kquant_blocks(rng: np.random.Generator, shape: tuple[int, int],
                         qtype: GGMLQuantizationType) -> np.ndarray:
    block_bytes, f16_offsets = K_QUANTS[qtype]
    rows, cols = shape
    blocks = rng.integers(0, 256, size=(rows, cols // 256, block_bytes), dtype=np.uint8)
    for off in f16_offsets:  # the per-block fp16 scales (d, dmin)
        blocks[..., off:off + 2] = np.frombuffer(np.float16(0.002).tobytes(), np.uint8)
    return blocks.reshape(rows, -1)


def tiny_vocab() -> tuple[list[str], list[int], list[str]]:
    byte_chars = sorted(_byte_decoder(), key=lambda c: _byte_decoder()[c])
    tokens = SPECIALS + byte_chars + ["".join(m.split(" ")) for m in MERGES]
    types = [CONTROL] * len(SPECIALS) + [NORMAL] * (len(tokens) - len(SPECIALS))
    return tokens, types, MERGES


class _EditedWriter(GGUFWriter):
    """A GGUFWriter that writes some metadata values differently (a value, or None to
    leave the key out): models with broken metadata for the error-message tests."""

    def __init__(self, path: str, arch: str, metadata: dict):
        self.metadata = metadata
        super().__init__(path, arch)

    def add_key_value(self, key, val, vtype, sub_type=None):
        if key in self.metadata:
            val = self.metadata[key]
            if val is None:
                return
            if isinstance(val, str):
                vtype = GGUFValueType.STRING
            elif isinstance(val, float):
                vtype = GGUFValueType.FLOAT32
        super().add_key_value(key, val, vtype, sub_type)


def write_tiny_model(
    path: Path,
    arch: str = "llama",
    qtype: GGMLQuantizationType = GGMLQuantizationType.F32,
    *,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    ffn_dim: int = 96,
    context_length: int = 64,
    tied: bool = True,
    seed: int = 0,
    chat_template: str | None = CHATML,
    tokenizer_model: str = "gpt2",
    always_end: bool = False,
    metadata: dict | None = None,
) -> Path:
    """Write a random model; `always_end` zeroes the final norm so every logit ties and
    greedy decoding picks token 0, <|endoftext|>: a model that ends its turn at once."""
    rng = np.random.default_rng(seed)
    tokens, types, merges = tiny_vocab()
    head_dim = d_model // n_heads
    w = _EditedWriter(str(path), arch, metadata or {})
    w.add_name(f"tiny-{arch}")
    w.add_block_count(n_layers)
    w.add_context_length(context_length)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(ffn_dim)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model(tokenizer_model)
    w.add_tokenizer_pre("smollm" if arch == "llama" else "qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    def tensor(name: str, shape: tuple[int, ...], scale: float = 0.2) -> None:
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        if len(shape) == 1:  # norms stay F32, near 1
            data = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        if len(shape) == 2 and qtype in K_QUANTS:
            w.add_tensor(name, random_kquant_blocks(rng, shape, qtype), raw_dtype=qtype)
        elif len(shape) == 2 and qtype != GGMLQuantizationType.F32:
            w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, data)

    vocab = len(tokens)
    tensor("token_embd.weight", (vocab, d_model), scale=1.0)
    if not tied:
        tensor("output.weight", (vocab, d_model))
    if always_end:
        w.add_tensor("output_norm.weight", np.zeros(d_model, dtype=np.float32))
    else:
        tensor("output_norm.weight", (d_model,))
    for i in range(n_layers):
        p = f"blk.{i}."
        tensor(p + "attn_norm.weight", (d_model,))
        tensor(p + "attn_q.weight", (n_heads * head_dim, d_model))
        tensor(p + "attn_k.weight", (n_kv_heads * head_dim, d_model))
        tensor(p + "attn_v.weight", (n_kv_heads * head_dim, d_model))
        if arch == "qwen2":
            for x, n in (("q", n_heads), ("k", n_kv_heads), ("v", n_kv_heads)):
                w.add_tensor(p + f"attn_{x}.bias", (rng.standard_normal(n * head_dim) * 0.1).astype(np.float32))
        tensor(p + "attn_output.weight", (d_model, n_heads * head_dim))
        tensor(p + "ffn_norm.weight", (d_model,))
        tensor(p + "ffn_gate.weight", (ffn_dim, d_model))
        tensor(p + "ffn_up.weight", (ffn_dim, d_model))
        tensor(p + "ffn_down.weight", (d_model, ffn_dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
