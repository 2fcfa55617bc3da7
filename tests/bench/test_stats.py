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
    assert est.ratio == pytest.approx(math.sqrt(8))
    # resampling two pairs gives only {2, sqrt 8, 4}; each extreme has 1/4 of the mass
    assert (est.low, est.high) == (pytest.approx(2.0), pytest.approx(4.0))


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


def test_verdict_wording_and_threshold():
    assert verdict("burst", "default", RatioEstimate(1.62, 1.55, 1.70, 5), "end-to-end") == \
        "burst is 1.62× faster end-to-end (95 % CI 1.55–1.70)"
    assert verdict("burst", "default", RatioEstimate(1.02, 0.97, 1.08, 5), "end-to-end") == \
        "no difference detected end-to-end between burst and default (ratio 1.02, 95 % CI 0.97–1.08)"
    # the interval must exclude 1: touching it is not enough
    assert verdict("a", "b", RatioEstimate(1.1, 1.0, 1.2, 5), "x").startswith("no difference detected")
    assert verdict("a", "b", RatioEstimate(0.5, 0.4, 0.625, 5), "end-to-end") == \
        "a is 2.00× slower end-to-end (95 % CI 1.60–2.50)"
