"""The transformer forward pass (llama / qwen2 family) in numpy, with a KV cache.

Reads top to bottom as the architecture does:
    embed -> (norm -> attention -> residual -> norm -> MLP -> residual) x L -> norm -> logits

Weights come from `gguf_model.prepare_weights`: fp32, linear layers as (in, out), Q/K/V
fused, gate/up fused, Q/K in interleaved-pair RoPE layout for both architectures.

Two entry points share the weights: `forward` processes a batch of positions (prefill,
chunked), `decode` one position. Decode is bandwidth-bound: its matmuls stream every
weight once per token, so it is written with as few numpy calls as possible (each costs
~1 µs of Python overhead, x ~30 per layer x 30 layers). Tests check that the two agree.
"""

from __future__ import annotations

import math

import numpy as np

from antinet_tui.engine.gguf_model import ModelConfig
from antinet_tui.engine.memory import small_page_buffer

PREFILL_CHUNK = 256  # bounds the attention score matrix during long prompts


class KVCache:
    """Keys and values of every processed position, preallocated for the whole context.

    The buffers reserve address space only; 4 KiB pages become resident as positions
    fill, so a short conversation does not pay for an 8k-token cache (SmolLM2: 755 MB).
    """

    def __init__(self, cfg: ModelConfig, n_ctx: int):
        shape = (cfg.n_layers, cfg.n_kv_heads, n_ctx, cfg.head_dim)
        nbytes = int(np.prod(shape)) * 4
        self.k = small_page_buffer(nbytes).view(np.float32).reshape(shape)
        self.v = small_page_buffer(nbytes).view(np.float32).reshape(shape)
        self.n_ctx = n_ctx
        self.length = 0  # positions filled

    def reset(self) -> None:
        self.length = 0


class Transformer:
    def __init__(self, cfg: ModelConfig, weights: dict[str, np.ndarray], n_ctx: int | None = None):
        self.cfg = cfg
        self.n_ctx = min(n_ctx or cfg.context_length, cfg.context_length)
        self._layers = [
            (weights[f"blk.{i}.attn_norm"], weights[f"blk.{i}.wqkv"], weights.get(f"blk.{i}.bqkv"),
             weights[f"blk.{i}.wo"], weights[f"blk.{i}.ffn_norm"], weights[f"blk.{i}.w_gate_up"],
             weights[f"blk.{i}.w_down_out_in"])
            for i in range(cfg.n_layers)
        ]
        self._output_norm = weights["output_norm"]
        self._lm_head = weights["lm_head"]  # (d, vocab)
        self._embd = weights.get("token_embd")  # (vocab, d), or None when tied to lm_head
        self._rope = _rope_rotations(cfg, self.n_ctx, weights.get("rope_freq_factors"))
        self._scale = np.float32(1.0 / math.sqrt(cfg.head_dim))

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg, self.n_ctx)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        if self._embd is not None:
            return self._embd[tokens]
        return np.ascontiguousarray(self._lm_head[:, tokens].T)

    # --- many positions (prefill) ------------------------------------------------------

    def forward(self, tokens, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Process `tokens` at positions cache.length.. and return logits.

        Returns the last position's logits (vocab,), or every position's (T, vocab) when
        `all_logits` (tests compare it with incremental decoding).
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        self._check_room(cache, len(tokens))
        outs = []
        for start in range(0, len(tokens), PREFILL_CHUNK):
            with np.errstate(over="ignore"):
                h = self._forward_chunk(tokens[start:start + PREFILL_CHUNK], cache)
            outs.append(h if all_logits else h[-1:])
        logits = (np.concatenate(outs) if len(outs) > 1 else outs[0]) @ self._lm_head
        return logits if all_logits else logits[-1]

    def _forward_chunk(self, tokens: np.ndarray, cache: KVCache) -> np.ndarray:
        """Every layer over one chunk; returns the final-normed hidden states (T, d)."""
        cfg = self.cfg
        pos, n = cache.length, len(tokens)
        qd, kvd, hd, group = cfg.q_dim, cfg.kv_dim, cfg.head_dim, cfg.n_heads // cfg.n_kv_heads
        rotation = self._rope[pos:pos + n, None, :]
        mask = _causal_mask(n, pos)
        x = self.embed(tokens)
        for layer, (attn_norm, wqkv, bqkv, wo, ffn_norm, w_gate_up, w_down) in enumerate(self._layers):
            # attention
            qkv = _rms_norm(x, attn_norm, cfg.norm_eps) @ wqkv
            if bqkv is not None:
                qkv += bqkv
            qk = qkv[:, :qd + kvd].reshape(n, cfg.n_heads + cfg.n_kv_heads, hd)
            qk.view(np.complex64)[...] *= rotation  # RoPE on queries and keys at once
            cache.k[layer, :, pos:pos + n] = qk[:, cfg.n_heads:].transpose(1, 0, 2)
            cache.v[layer, :, pos:pos + n] = qkv[:, qd + kvd:].reshape(n, cfg.n_kv_heads, hd).transpose(1, 0, 2)
            # (T, H, hd) -> (kv, group, T, hd): each KV head serves `group` query heads
            q = qk[:, :cfg.n_heads].reshape(n, cfg.n_kv_heads, group, hd).transpose(1, 2, 0, 3)
            scores = (q @ cache.k[layer, :, None, :pos + n].swapaxes(-1, -2)) * self._scale + mask
            attn = _softmax(scores) @ cache.v[layer, :, None, :pos + n]  # (kv, group, T, hd)
            x = x + attn.transpose(2, 0, 1, 3).reshape(n, qd) @ wo
            # MLP (SwiGLU)
            gate_up = _rms_norm(x, ffn_norm, cfg.norm_eps) @ w_gate_up
            x = x + (_silu(gate_up[:, :cfg.ffn_dim]) * gate_up[:, cfg.ffn_dim:]) @ w_down.T
        cache.length = pos + n
        return _rms_norm(x, self._output_norm, cfg.norm_eps)

    # --- one position (decode) ---------------------------------------------------------

    def decode(self, token: int, cache: KVCache) -> np.ndarray:
        """Process one token at position cache.length; returns its logits (vocab,)."""
        with np.errstate(over="ignore"):
            return self._decode(token, cache)

    def _decode(self, token: int, cache: KVCache) -> np.ndarray:
        cfg = self.cfg
        self._check_room(cache, 1)
        pos = cache.length
        length = pos + 1
        qd, kvd, hd, eps = cfg.q_dim, cfg.kv_dim, cfg.head_dim, cfg.norm_eps
        qk_heads, ffn = cfg.n_heads + cfg.n_kv_heads, cfg.ffn_dim
        q_shape = (cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads, hd)
        rotation = self._rope[pos]
        inv_d = 1.0 / cfg.d_model
        x = self.embed(np.array([token]))[0]
        for layer, (attn_norm, wqkv, bqkv, wo, ffn_norm, w_gate_up, w_down) in enumerate(self._layers):
            # attention
            h = x * (attn_norm * np.float32(1.0 / math.sqrt(float(x @ x) * inv_d + eps)))
            qkv = h @ wqkv
            if bqkv is not None:
                qkv += bqkv
            qk = qkv[:qd + kvd].view(np.complex64).reshape(qk_heads, -1)
            qk *= rotation  # RoPE on queries and keys at once
            keys = cache.k[layer, :, :length]
            values = cache.v[layer, :, :length]
            keys[:, pos] = qkv[qd:qd + kvd].reshape(cfg.n_kv_heads, hd)
            values[:, pos] = qkv[qd + kvd:].reshape(cfg.n_kv_heads, hd)
            scores = qkv[:qd].reshape(q_shape) @ keys.swapaxes(1, 2)  # (kv, group, L)
            scores *= self._scale
            attn = _softmax_inplace(scores) @ values  # (kv, group, hd)
            x = x + attn.reshape(qd) @ wo
            # MLP (SwiGLU)
            h = x * (ffn_norm * np.float32(1.0 / math.sqrt(float(x @ x) * inv_d + eps)))
            gate_up = h @ w_gate_up
            x = x + w_down @ (_silu(gate_up[:ffn]) * gate_up[ffn:])
        cache.length = length
        h = x * (self._output_norm * np.float32(1.0 / math.sqrt(float(x @ x) * inv_d + eps)))
        return h @ self._lm_head

    def _check_room(self, cache: KVCache, n: int) -> None:
        if cache.length + n > cache.n_ctx:
            raise ValueError(f"{cache.length} + {n} tokens exceed the context of {cache.n_ctx}")


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    mean_square = np.einsum("td,td->t", x, x)[:, None] / np.float32(x.shape[-1])
    return x * (1.0 / np.sqrt(mean_square + np.float32(eps))) * weight


def _silu(x: np.ndarray) -> np.ndarray:
    # exp(-x) overflows to inf for x < -88; x / inf = -0 is the right limit (callers
    # silence the warning with np.errstate once per step, not per call)
    return x / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_inplace(x: np.ndarray) -> np.ndarray:
    # ufunc.reduce directly: ndarray.max/sum add a Python-level wrapper per call
    x -= np.maximum.reduce(x, axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= np.add.reduce(x, axis=-1, keepdims=True)
    return x


def _rope_rotations(cfg: ModelConfig, n_ctx: int, freq_factors: np.ndarray | None) -> np.ndarray:
    """(n_ctx, head_dim/2) unit complex numbers: RoPE as a rotation of adjacent pairs.

    Pairs past rope_dims (partial rotary) get 1+0j, so one multiply covers the whole head.
    """
    half = cfg.rope_dims // 2
    inv_freq = 1.0 / (cfg.rope_base ** (np.arange(half, dtype=np.float64) * 2 / cfg.rope_dims))
    if freq_factors is not None:  # llama 3.x long-context scaling
        inv_freq = inv_freq / freq_factors[:half].astype(np.float64)
    rot = np.ones((n_ctx, cfg.head_dim // 2), dtype=np.complex64)
    rot[:, :half] = np.exp(1j * np.outer(np.arange(n_ctx, dtype=np.float64), inv_freq))
    return rot


def _causal_mask(n: int, pos: int) -> np.ndarray:
    """(T, pos+T) additive mask: query t sees keys 0..pos+t."""
    q_pos = np.arange(pos, pos + n)[:, None]
    k_pos = np.arange(pos + n)[None, :]
    return np.where(k_pos <= q_pos, np.float32(0), np.float32(-np.inf))
