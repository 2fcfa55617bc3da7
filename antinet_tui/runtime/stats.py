"""Statistics for performance-mode experiments: spreads, paired ratios, a verdict.

Runs of two modes are paired (same prompt, same token count, back to back), so the
comparison uses the ratio within each pair, which cancels slow drifts of the machine.
The point estimate is the geometric mean of the paired ratios (ratios multiply; their
arithmetic mean is biased upward), and the 95 % interval is a percentile bootstrap over
the pairs, with a fixed seed so the same runs always give the same interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20261126


@dataclass(frozen=True)
class Spread:
    n: int
    median: float
    minimum: float
    maximum: float
    stddev: float  # sample standard deviation; 0 for a single value

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        return cls(n=len(values), median=statistics.median(values), minimum=min(values),
                   maximum=max(values), stddev=statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float  # geometric mean of the paired ratios
    low: float  # 95 % bootstrap interval
    high: float
    pairs: int


def paired_ratio(numerators: list[float], denominators: list[float], confidence: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> RatioEstimate:
    """Geometric mean of numerator_i / denominator_i with a percentile-bootstrap interval."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("paired_ratio needs two equally long, non-empty lists")
    if any(v <= 0 for v in (*numerators, *denominators)):
        raise ValueError("ratios need positive values")
    logs = np.log(np.asarray(numerators, dtype=np.float64)) - np.log(np.asarray(denominators, dtype=np.float64))
    point = float(np.exp(logs.mean()))
    if len(logs) == 1:
        return RatioEstimate(point, point, point, 1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(logs), size=(resamples, len(logs)))
    means = np.exp(logs[picks].mean(axis=1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return RatioEstimate(point, float(low), float(high), len(logs))


def verdict(mode_a: str, mode_b: str, speedup: RatioEstimate, what: str) -> str:
    """Plain words for a speedup of mode_a over mode_b (>1: mode_a is faster).

    A difference is stated only when the 95 % interval excludes 1 (no difference)."""
    interval = f"95 % CI {_fmt(speedup.low)}–{_fmt(speedup.high)}"
    if speedup.pairs < 2:
        return f"{mode_a} vs {mode_b}: one pair only, no interval; ratio {_fmt(speedup.ratio)}"
    if speedup.low > 1.0:
        return f"{mode_a} is {_fmt(speedup.ratio)}× faster {what} ({interval})"
    if speedup.high < 1.0:
        slower = f"95 % CI {_fmt(1 / speedup.high)}–{_fmt(1 / speedup.low)}"
        return f"{mode_a} is {_fmt(1 / speedup.ratio)}× slower {what} ({slower})"
    return f"no difference detected {what} between {mode_a} and {mode_b} (ratio {_fmt(speedup.ratio)}, {interval})"


def _fmt(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "n/a"
