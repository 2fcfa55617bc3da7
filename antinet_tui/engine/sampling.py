"""Choosing the next token from logits.

Greedy at temperature 0. Otherwise the order of transformers' samplers: temperature,
then top-k, then top-p (nucleus) on what remains, then a draw from a seeded generator,
so the same seed gives the same output.
"""

from __future__ import annotations

import numpy as np


class Sampler:
    def __init__(self, temperature: float, top_k: int, top_p: float, seed: int):
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        if self.temperature <= 0:
            return int(np.argmax(logits))
        # relative to the best logit first: a tiny temperature (1e-320) then sends the others
        # to -inf (probability 0, as greedy) instead of inf - inf = NaN
        logits = logits.astype(np.float64)
        with np.errstate(over="ignore"):
            scaled = (logits - logits.max()) / self.temperature
        if 0 < self.top_k < scaled.size:
            candidates = np.argpartition(scaled, -self.top_k)[-self.top_k:]
        else:
            candidates = np.arange(scaled.size)
        order = candidates[np.argsort(scaled[candidates])[::-1]]  # most likely first
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        if self.top_p < 1.0:
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            keep = int(np.searchsorted(np.cumsum(probs), self.top_p)) + 1
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self._rng.choice(len(order), p=probs)])
