"""GGUF weight blocks -> ONNX Runtime's quantized operators, without re-quantizing.

`MatMulNBits` (com.microsoft) stores a linear weight as rows of blocks, the same shape
as GGUF's: B (N, blocks, block bytes), one scale per block, optional zero points, and
dequantizes `(q - zero_point) * scale`. So GGUF's blocks map over value for value:

* Q4_0 (d, 32 nibbles): `d * (q - 8)` -> 4 bits, scale d, zero point 8.
* Q8_0 (d, 32 int8):    `d * q`       -> 8 bits, scale d, q + 128 with zero point 128.
* Q4_1 (d, m, 32 nibbles): `d * q + m` -> 4 bits, scale d, zero point 0, plus a
  correction `m` per block that the graph adds as `blocksum(x) @ m` (x summed over each
  block of 32 inputs; the sums come out of the same MatMulNBits, see
  `with_block_sum_rows`). A float zero point `-m/d` would be exact too but turns off
  ORT's weight prepacking (the matrix is dequantized on every call, ~50x slower);
  rounding it to an integer would change every weight (~6 % error per matrix).

Nibble order differs: GGUF keeps weight j in the low nibble and j+16 in the high nibble
of byte j; MatMulNBits wants weights 2i (low) and 2i+1 (high) in byte i.

The rule for every other type (F32/F16/BF16, Q5_x, K-quants): the backend refuses the
file and names `--backend numpy`, which runs them all (`UNSUPPORTED_HINT`). Re-quantizing
would change the model's weights, which this backend promises never to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32  # weights per block in Q4_0, Q4_1 and Q8_0
EXACT_TYPES = ("Q4_0", "Q4_1", "Q8_0")
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}


@dataclass
class NBitsWeight:
    """One linear weight (N outputs, K inputs) in MatMulNBits' layout."""

    qtype: str
    n: int
    k: int
    bits: int
    packed: np.ndarray  # uint8 (N, K/32, 16 or 32)
    scales: np.ndarray  # float32 (N, K/32)
    zero_points: np.ndarray | None  # uint8, packed two per byte for 4 bits; None: the default (8-bit: 128)
    block_min: np.ndarray | None  # float32 (N, K/32): Q4_1's m, added as blocksum(x) @ m.T

    def dequantize(self) -> np.ndarray:
        """(N, K) float32, computed the way MatMulNBits (plus the Q4_1 correction) does."""
        if self.bits == 8:
            q = self.packed.astype(np.float32) - 128.0
        else:
            q = np.empty((*self.packed.shape[:2], BLOCK), dtype=np.uint8)
            q[..., 0::2] = self.packed & 0x0F
            q[..., 1::2] = self.packed >> 4
            q = q.astype(np.float32) - (8.0 if self.qtype == "Q4_0" else 0.0)
        w = q * self.scales[..., None]
        if self.block_min is not None:
            w = w + self.block_min[..., None]
        return w.reshape(self.n, self.k)


def from_gguf_blocks(qtype: str, raw: np.ndarray, n: int, k: int) -> NBitsWeight:
    """`raw` is the tensor's bytes as GGUFReader gives them: uint8 (N, K/32 * block bytes)."""
    if qtype not in EXACT_TYPES:
        raise ValueError(f"{qtype} has no exact MatMulNBits form")
    if k % BLOCK:
        raise ValueError(f"{k} inputs are not whole blocks of {BLOCK}")
    blocks = np.ascontiguousarray(raw).reshape(n, k // BLOCK, BLOCK_BYTES[qtype])
    scales = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if qtype == "Q8_0":
        q = blocks[..., 2:].view(np.int8).astype(np.int16) + 128
        return NBitsWeight(qtype, n, k, 8, q.astype(np.uint8), scales, None, None)
    offset = 2 if qtype == "Q4_0" else 4
    qs = blocks[..., offset:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # weight j at index j
    packed = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)
    n_blocks = k // BLOCK
    zero = 8 if qtype == "Q4_0" else 0
    zero_points = np.full((n, (n_blocks + 1) // 2), zero | (zero << 4), dtype=np.uint8)
    block_min = None
    if qtype == "Q4_1":
        block_min = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    return NBitsWeight(qtype, n, k, 4, packed, scales, zero_points, block_min)


def concat_rows(parts: list[NBitsWeight]) -> NBitsWeight:
    """Several weights of one type and K stacked along N (fused Q/K/V, gate/up)."""
    first = parts[0]
    minima = [p.block_min for p in parts]
    return NBitsWeight(
        first.qtype, sum(p.n for p in parts), first.k, first.bits,
        np.concatenate([p.packed for p in parts]), np.concatenate([p.scales for p in parts]),
        None if first.zero_points is None else np.concatenate([p.zero_points for p in parts]),
        None if minima[0] is None else np.concatenate([m for m in minima if m is not None]),
    )


def with_block_sum_rows(w: NBitsWeight) -> NBitsWeight:
    """`w` (4-bit, zero point 0) with one more output row per block of inputs: row b has
    weight 1 on block b's inputs and 0 elsewhere, so its output is that block's sum."""
    n_blocks = w.k // BLOCK
    packed = np.zeros((n_blocks, n_blocks, BLOCK // 2), dtype=np.uint8)
    packed[np.arange(n_blocks), np.arange(n_blocks)] = 0x11  # q = 1 in both nibbles
    scales = np.eye(n_blocks, dtype=np.float32)  # scale 1 on the row's own block, 0 elsewhere
    zero_points = np.zeros((n_blocks, (n_blocks + 1) // 2), dtype=np.uint8)
    extra = NBitsWeight(w.qtype, n_blocks, w.k, 4, packed, scales, zero_points, np.zeros_like(scales))
    return concat_rows([w, extra])
