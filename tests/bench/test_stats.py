import math

import pytest

from antinet_tui.runtime.stats import RatioEstimate, Spread, paired_ratio, verdict


def test_spread_of_hand_computed_values():
    s = Spread.of([4.0, 1.0, 3.0, 2.0])
    assert (s.n, s.median, s.minimum, s.maximum) == (4, 2.5, 1.0, 4.0)
    assert s.stddev == pytest.approx(math.sqrt(5 / 3))  # sample stddev
    assert Spread.of([7.0]).stddev == 0.0


def test_paired_ratio_is_the_geometric_mean_of_pair_ratios():
    est = paired_ratio([2.0, 8.0], [1.0, 2.0])  # pair ratios 2 and 4
    assert est.ratio == pytest.approx(math.sqrt(8)) and est.method == "t"
    # two pairs: t(0.975, 1 df) = 12.706 times the standard error of the log ratios,
    # far wider than the pairs' range (2-4), which is all a bootstrap could give
    half = 12.706 * (math.log(2) / math.sqrt(2)) / math.sqrt(2)
    assert est.low == pytest.approx(math.sqrt(8) / math.exp(half))
    assert est.high == pytest.approx(math.sqrt(8) * math.exp(half))
    assert est.low < 0.1 and est.high > 50


def test_t_interval_below_twenty_pairs_then_the_bootstrap():
    rng = __import__("random").Random(5)
    nums = [1.5 + rng.random() * 0.2 for _ in range(40)]
    dens = [1.0] * 40
    small, large = paired_ratio(nums[:5], dens[:5]), paired_ratio(nums, dens)
    assert (small.method, large.method) == ("t", "bootstrap")
    logs = [math.log(x) for x in nums[:5]]
    mean = sum(logs) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 4)
    assert small.low == pytest.approx(math.exp(mean - 2.776 * sd / math.sqrt(5)))
    assert large.low < large.ratio < large.high and large.high - large.low < small.high - small.low


def test_identical_ratios_give_a_degenerate_interval():
    est = paired_ratio([3.0] * 5, [2.0] * 5)
    assert (est.ratio, est.low, est.high) == (pytest.approx(1.5), pytest.approx(1.5), pytest.approx(1.5))


def test_interval_is_reproducible_and_contains_the_estimate():
    nums, dens = [410, 395, 430, 402, 415], [620, 660, 610, 700, 640]
    a, b = paired_ratio(dens, nums), paired_ratio(dens, nums)
    assert a == b
    assert a.low < a.ratio < a.high and a.low > 1


def test_paired_ratio_rejects_bad_input():
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_ratio([0.0], [1.0])


def test_no_verdict_below_three_pairs():
    assert verdict("a", "b", RatioEstimate(3.0, 2.9, 3.1, 2, "t"), "end-to-end") == \
        "a vs b: 2 pairs, too few for a verdict (at least 3); ratio 3.00"
    assert verdict("a", "b", paired_ratio([3.0], [1.0]), "x").startswith("a vs b: 1 pair, too few")


def test_verdict_wording_and_threshold():
    assert verdict("burst", "default", RatioEstimate(1.62, 1.55, 1.70, 5), "end-to-end") == \
        "burst is 1.62× faster end-to-end (95 % CI 1.55–1.70)"
    assert verdict("burst", "default", RatioEstimate(1.02, 0.97, 1.08, 5), "end-to-end") == \
        "no difference detected end-to-end between burst and default (ratio 1.02, 95 % CI 0.97–1.08)"
    # the interval must exclude 1: touching it is not enough
    assert verdict("a", "b", RatioEstimate(1.1, 1.0, 1.2, 5), "x").startswith("no difference detected")
    assert verdict("a", "b", RatioEstimate(0.5, 0.4, 0.625, 5), "end-to-end") == \
        "a is 2.00× slower end-to-end (95 % CI 1.60–2.50)"
