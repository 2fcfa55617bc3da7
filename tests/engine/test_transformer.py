"""The forward pass: incremental decode with the KV cache against full recomputation,
and both against an independent textbook implementation read straight from the GGUF."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import dequantize
from tiny_models import write_tiny_model

from antinet_tui.engine import transformer as transformer_module
from antinet_tui.engine.gguf_model import GGUFFile, prepare_weights, read_config
from antinet_tui.engine.transformer import Transformer

CASES = [
    ("llama", Q.F32, True), ("llama", Q.Q8_0, True), ("llama", Q.Q4_1, False),
    ("llama", Q.Q4_0, True), ("llama", Q.Q5_1, True), ("llama", Q.BF16, False),
    ("qwen2", Q.F32, True), ("qwen2", Q.Q5_0, False), ("qwen2", Q.F16, True),
    ("llama", Q.Q4_K, True), ("qwen2", Q.Q6_K, True),
]


def load(path, n_ctx=None) -> Transformer:
    gf = GGUFFile(path)
    cfg = read_config(gf)
    return Transformer(cfg, prepare_weights(gf, cfg), n_ctx)


def model_file(tmp_path, arch, qtype, tied):
    kquant = qtype in (Q.Q4_K, Q.Q6_K)
    return write_tiny_model(tmp_path / f"{arch}-{qtype.name}.gguf", arch, qtype, tied=tied,
                            d_model=256 if kquant else 64, ffn_dim=256 if kquant else 96)


@pytest.mark.parametrize("arch,qtype,tied", CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_incremental_decode_equals_full_recompute(tmp_path, arch, qtype, tied):
    model = load(model_file(tmp_path, arch, qtype, tied))
    tokens = np.random.default_rng(1).integers(0, 256, size=20)
    full = model.forward(tokens, model.new_cache(), all_logits=True)

    cache = model.new_cache()
    incremental = [model.forward(tokens[:8], cache)]
    incremental += [model.decode(int(t), cache) for t in tokens[8:]]

    # float32 sums in another order: agree to 1e-4 of the logits' scale
    np.testing.assert_allclose(np.array(incremental), full[7:], rtol=1e-4, atol=1e-4 * np.abs(full).max())
    assert cache.length == len(tokens)


def test_chunked_prefill_equals_one_chunk(tmp_path, monkeypatch):
    model = load(model_file(tmp_path, "qwen2", Q.F32, True))
    tokens = np.arange(40) % 200
    whole = model.forward(tokens, model.new_cache(), all_logits=True)
    monkeypatch.setattr(transformer_module, "PREFILL_CHUNK", 7)
    chunked = model.forward(tokens, model.new_cache(), all_logits=True)
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-4)


def reference_logits(path, tokens) -> np.ndarray:
    """A textbook forward pass on the file's own tensors (no fusing, no permutation):
    RoPE on adjacent pairs for llama files, on halves (NEOX) for qwen2 files."""
    r = GGUFReader(path)
    t = {x.name: dequantize(x.data, x.tensor_type).reshape([int(d) for d in reversed(x.shape)])
         for x in r.tensors}
    f = lambda k: r.fields[k].contents()  # noqa: E731
    arch = f("general.architecture")
    n_layers, n_heads, n_kv = f(f"{arch}.block_count"), f(f"{arch}.attention.head_count"), f(f"{arch}.attention.head_count_kv")
    eps, base = f(f"{arch}.attention.layer_norm_rms_epsilon"), f(f"{arch}.rope.freq_base")
    x = t["token_embd.weight"][tokens].astype(np.float64)
    n, d = x.shape
    hd = d // n_heads
    pos = np.arange(n)[:, None]
    theta = pos * base ** (-np.arange(0, hd, 2) / hd)  # (n, hd/2)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]

    def rope(v):  # v: (n, heads, hd)
        if arch == "llama":
            a, b = v[..., 0::2], v[..., 1::2]
            out = np.empty_like(v)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out
        a, b = v[..., :hd // 2], v[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def norm(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    for i in range(n_layers):
        p = f"blk.{i}."
        h = norm(x, t[p + "attn_norm.weight"])
        q, k, v = (h @ t[p + f"attn_{c}.weight"].T + t.get(p + f"attn_{c}.bias", 0) for c in "qkv")
        q, k, v = rope(q.reshape(n, n_heads, hd)), rope(k.reshape(n, n_kv, hd)), v.reshape(n, n_kv, hd)
        k, v = np.repeat(k, n_heads // n_kv, axis=1), np.repeat(v, n_heads // n_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + np.triu(np.full((n, n), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", a, v).reshape(n, d) @ t[p + "attn_output.weight"].T
        h = norm(x, t[p + "ffn_norm.weight"])
        g, u = h @ t[p + "ffn_gate.weight"].T, h @ t[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ t[p + "ffn_down.weight"].T
    head = t.get("output.weight", t["token_embd.weight"])
    return norm(x, t["output_norm.weight"]) @ head.T


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("tied", [True, False])
def test_engine_matches_textbook_reference(tmp_path, arch, tied):
    path = write_tiny_model(tmp_path / "m.gguf", arch, Q.F32, tied=tied)
    tokens = np.random.default_rng(2).integers(0, 256, size=12)
    ours = load(path).forward(tokens, load(path).new_cache(), all_logits=True)
    np.testing.assert_allclose(ours, reference_logits(path, tokens), rtol=1e-3, atol=1e-3)


def test_forward_beyond_context_raises(tmp_path):
    model = load(write_tiny_model(tmp_path / "m.gguf", context_length=16))
    cache = model.new_cache()
    model.forward(np.arange(16), cache)
    with pytest.raises(ValueError, match="exceed the context of 16"):
        model.decode(1, cache)
