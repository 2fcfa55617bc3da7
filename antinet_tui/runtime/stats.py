"""Statistics for performance-mode experiments: spreads, paired ratios, a verdict.

Runs of two modes are paired (same prompt, same token count, back to back), so the
comparison uses the ratio within each pair, which cancels slow drifts of the machine.
The point estimate is the geometric mean of the paired ratios (ratios multiply; their
arithmetic mean is biased upward). The 95 % interval is a t-interval on the log ratios
for fewer than 20 pairs (a percentile bootstrap of a handful of pairs is too narrow: with
2 pairs it is just their range) and a percentile bootstrap over the pairs from 20 on,
with a fixed seed so the same runs always give the same interval. No verdict is given
below 3 pairs.
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
    low: float  # 95 % interval
    high: float
    pairs: int
    method: str = ""  # how the interval was made (INTERVAL_METHODS), named in reports


MIN_PAIRS_FOR_VERDICT = 3
BOOTSTRAP_FROM_PAIRS = 20  # below, the t-interval: a percentile bootstrap of a few pairs
# is too narrow to be a 95 % interval (with 2 pairs it is just their range)
INTERVAL_METHODS = {
    "t": "t-interval on the log ratios",
    "bootstrap": "percentile bootstrap of the log ratios' mean",
    "none": "no interval (one pair)",
}
# Student's t, 0.975 quantile, for 1..19 degrees of freedom
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
          2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093)


def paired_ratio(numerators: list[float], denominators: list[float], confidence: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> RatioEstimate:
    """Geometric mean of numerator_i / denominator_i with a 95 % interval: a t-interval on
    the log ratios below BOOTSTRAP_FROM_PAIRS pairs, a percentile bootstrap from there."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("paired_ratio needs two equally long, non-empty lists")
    if any(v <= 0 for v in (*numerators, *denominators)):
        raise ValueError("ratios need positive values")
    if confidence != 0.95:
        raise ValueError("only 95 % intervals are supported")
    logs = np.log(np.asarray(numerators, dtype=np.float64)) - np.log(np.asarray(denominators, dtype=np.float64))
    n = len(logs)
    point = float(np.exp(logs.mean()))
    if n == 1:
        return RatioEstimate(point, point, point, 1, "none")
    if n < BOOTSTRAP_FROM_PAIRS:
        half = _T_975[n - 2] * float(logs.std(ddof=1)) / math.sqrt(n)
        return RatioEstimate(point, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half)), n, "t")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    means = np.exp(logs[picks].mean(axis=1))
    low, high = np.percentile(means, [2.5, 97.5])
    return RatioEstimate(point, float(low), float(high), n, "bootstrap")


def verdict(mode_a: str, mode_b: str, speedup: RatioEstimate, what: str) -> str:
    """Plain words for a speedup of mode_a over mode_b (>1: mode_a is faster).

    A difference is stated only when the 95 % interval excludes 1 (no difference), and
    not at all with fewer than MIN_PAIRS_FOR_VERDICT pairs."""
    interval = f"95 % CI {_fmt(speedup.low)}–{_fmt(speedup.high)}"
    if speedup.pairs < MIN_PAIRS_FOR_VERDICT:
        return (f"{mode_a} vs {mode_b}: {speedup.pairs} pair{'s' * (speedup.pairs != 1)}, too few for a verdict "
                f"(at least {MIN_PAIRS_FOR_VERDICT}); ratio {_fmt(speedup.ratio)}")
    if speedup.low > 1.0:
        return f"{mode_a} is {_fmt(speedup.ratio)}× faster {what} ({interval})"
    if speedup.high < 1.0:
        slower = f"95 % CI {_fmt(1 / speedup.high)}–{_fmt(1 / speedup.low)}"
        return f"{mode_a} is {_fmt(1 / speedup.ratio)}× slower {what} ({slower})"
    return f"no difference detected {what} between {mode_a} and {mode_b} (ratio {_fmt(speedup.ratio)}, {interval})"


def _fmt(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "n/a"
