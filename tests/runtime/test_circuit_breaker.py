"""Every breaker transition, driven by a fake clock so the timings are exact."""

from __future__ import annotations

import inspect
import time

import pytest
from fakes import FakeClock

from antinet_tui.runtime.breaker import BreakerConfig, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN, ISOLATED = BreakerState


def make(**config) -> tuple[CircuitBreaker, FakeClock, list[tuple]]:
    clock = FakeClock()
    transitions: list[tuple] = []
    breaker = CircuitBreaker(
        BreakerConfig(**config),
        clock=clock,
        on_transition=lambda old, new, reason, snap: transitions.append((old, new, reason, snap)),
    )
    return breaker, clock, transitions


def record(breaker: CircuitBreaker, *outcomes: str) -> None:
    """'f' fast, 's' slow (4000 ms > 3000 ms), 'x' failed, through the permit path."""
    for outcome in outcomes:
        permitted, reason = breaker.try_acquire()
        assert permitted, reason
        breaker.on_result(4000 if outcome == "s" else 100, failed=outcome == "x")


def trip_open(breaker: CircuitBreaker) -> None:
    record(breaker, "s", "s", "s", "f")
    assert breaker.state is OPEN


def test_defaults_match_the_issue_and_use_the_monotonic_clock():
    assert BreakerConfig() == BreakerConfig(
        window_size=10,
        minimum_calls=4,
        slow_call_ms=3000,
        slow_rate_threshold=0.5,
        failure_rate_threshold=0.5,
        open_wait_s=30,
        half_open_probes=1,
    )
    assert inspect.signature(CircuitBreaker).parameters["clock"].default is time.monotonic


def test_stays_closed_below_the_minimum_number_of_calls_however_bad_they_are():
    breaker, _, transitions = make()
    record(breaker, "s", "x", "s")
    assert breaker.state is CLOSED and transitions == []
    snap = breaker.snapshot()
    assert (snap.calls_in_window, snap.slow_calls, snap.failed_calls) == (3, 2, 1)


def test_opens_when_the_slow_rate_reaches_the_threshold_with_the_reason():
    breaker, _, transitions = make()
    record(breaker, "s", "s", "f")
    record(breaker, "s")
    assert breaker.state is OPEN
    (old, new, reason, snap), = transitions
    assert (old, new) == (CLOSED, OPEN)
    assert reason == "3 of the last 4 calls were slower than 3000 ms"
    assert snap.state is OPEN and snap.seconds_until_probe == 30


def test_slow_rate_just_below_the_threshold_keeps_it_closed():
    breaker, _, _ = make(slow_rate_threshold=0.75)
    record(breaker, "s", "s", "f", "f")  # 50 % < 75 %
    assert breaker.state is CLOSED


def test_a_call_of_exactly_the_slow_threshold_is_not_slow():
    breaker, _, _ = make(minimum_calls=1)
    breaker.on_result(3000, failed=False)
    assert breaker.snapshot().slow_calls == 0
    breaker.on_result(3000.001, failed=False)
    assert breaker.state is OPEN


def test_opens_when_the_failure_rate_reaches_the_threshold():
    breaker, _, transitions = make()
    record(breaker, "x", "f", "f", "x")
    assert breaker.state is OPEN
    assert transitions[0][2] == "2 of the last 4 calls failed"


def test_both_rates_are_named_when_both_are_reached():
    breaker, _, transitions = make(minimum_calls=2)
    record(breaker, "s", "x")
    assert transitions[0][2] == "1 of the last 2 calls failed and 1 of the last 2 calls was slower than 3000 ms"


def test_the_window_slides_old_calls_out():
    breaker, _, transitions = make(window_size=4, slow_rate_threshold=0.75)
    record(breaker, "f", "f", "f", "f", "s", "s")
    assert breaker.state is CLOSED  # window is f f s s: 50 %
    record(breaker, "s")  # window f s s s: 75 %; over all 7 calls it would be 43 %
    assert transitions[0][2] == "3 of the last 4 calls were slower than 3000 ms"


def test_minimum_calls_above_the_window_size_is_capped_to_it():
    breaker, _, _ = make(window_size=3, minimum_calls=10)
    record(breaker, "s", "s", "s")
    assert breaker.state is OPEN


def test_open_refuses_with_the_reason_and_the_time_to_the_next_probe():
    breaker, clock, _ = make()
    trip_open(breaker)
    assert breaker.try_acquire() == (
        False,
        "breaker open: 3 of the last 4 calls were slower than 3000 ms; next probe in 30 s",
    )
    clock.advance(17.5)
    assert breaker.try_acquire() == (
        False,
        "breaker open: 3 of the last 4 calls were slower than 3000 ms; next probe in 13 s",
    )
    assert breaker.snapshot().seconds_until_probe == pytest.approx(12.5)


def test_outcomes_arriving_while_open_are_not_recorded():
    breaker, _, _ = make()
    trip_open(breaker)
    breaker.on_result(100, failed=False)
    assert breaker.snapshot().calls_in_window == 4 and breaker.state is OPEN


def test_open_becomes_half_open_on_poll_once_the_wait_has_passed_and_looking_changes_nothing():
    breaker, clock, transitions = make()
    trip_open(breaker)
    clock.advance(29.9)
    breaker.poll()
    assert breaker.state is OPEN and breaker.seconds_until_probe() == pytest.approx(0.1)
    clock.advance(0.1)
    snap = breaker.snapshot()  # a look, however often, is not a transition
    assert snap.state is OPEN and snap.seconds_until_probe == 0 and breaker.seconds_until_probe() == 0
    assert len(transitions) == 1 and breaker.state is OPEN
    breaker.poll()
    snap = breaker.snapshot()
    assert snap.state is HALF_OPEN and snap.seconds_until_probe is None and snap.calls_in_window == 0
    assert breaker.seconds_until_probe() is None
    assert transitions[-1][:3] == (OPEN, HALF_OPEN, "waited 30 s; letting 1 probe call through")


def test_try_acquire_also_moves_open_to_half_open_and_takes_the_probe_permit():
    breaker, clock, _ = make()
    trip_open(breaker)
    clock.advance(30)
    assert breaker.try_acquire() == (True, None)
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire() == (False, "breaker half-open: waiting for 1 probe call to finish")


def test_half_open_probe_success_closes_with_a_fresh_window():
    breaker, clock, transitions = make()
    trip_open(breaker)
    clock.advance(30)
    record(breaker, "f")
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.calls_in_window == 0
    assert transitions[-1][:3] == (HALF_OPEN, CLOSED, "1 probe call healthy")


def test_half_open_probe_failure_reopens_and_restarts_the_wait():
    breaker, clock, transitions = make()
    trip_open(breaker)
    clock.advance(30)
    record(breaker, "x")
    assert transitions[-1][:3] == (HALF_OPEN, OPEN, "1 of 1 probe calls failed")
    assert breaker.try_acquire() == (False, "breaker open: 1 of 1 probe calls failed; next probe in 30 s")


def test_half_open_slow_probe_reopens():
    breaker, clock, transitions = make()
    trip_open(breaker)
    clock.advance(30)
    record(breaker, "s")
    assert transitions[-1][:3] == (HALF_OPEN, OPEN, "1 of 1 probe calls was slower than 3000 ms")


def test_several_probes_decide_together_on_the_rates():
    breaker, clock, _ = make(half_open_probes=3)
    trip_open(breaker)
    clock.advance(30)
    record(breaker, "x", "f")
    assert breaker.state is HALF_OPEN  # 2 of 3 outcomes in: no decision yet
    record(breaker, "f")  # 1 of 3 failed: 33 % < 50 %
    assert breaker.state is CLOSED

    trip_open(breaker)
    clock.advance(30)
    record(breaker, "x", "f", "x")
    assert breaker.state is OPEN


def test_a_released_probe_permit_can_be_used_again():
    breaker, clock, transitions = make()
    trip_open(breaker)
    clock.advance(30)
    assert breaker.try_acquire()[0]
    breaker.release()  # the probe was cancelled before it ran
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire() == (True, None)
    assert len(transitions) == 2


def test_release_outside_half_open_changes_nothing():
    breaker, _, _ = make()
    breaker.release()
    record(breaker, "f")
    assert breaker.snapshot().calls_in_window == 1


def test_isolate_forces_open_until_reset_whatever_the_clock_says():
    breaker, clock, transitions = make()
    record(breaker, "f")
    breaker.isolate()
    assert transitions[-1][:3] == (CLOSED, ISOLATED, "isolated by the operator")
    clock.advance(3600)
    assert breaker.try_acquire() == (False, "breaker isolated by the operator; reset it to let requests through")
    breaker.on_result(100, failed=False)
    breaker.isolate()  # already isolated: no second transition
    assert breaker.state is ISOLATED and len(transitions) == 1

    breaker.reset()
    assert transitions[-1][:3] == (ISOLATED, CLOSED, "reset by the operator")
    assert breaker.try_acquire() == (True, None)


def test_isolate_from_open_and_half_open():
    breaker, clock, transitions = make()
    trip_open(breaker)
    breaker.isolate()
    assert transitions[-1][:2] == (OPEN, ISOLATED)
    breaker.reset()
    trip_open(breaker)
    clock.advance(30)
    breaker.try_acquire()
    breaker.isolate()
    assert transitions[-1][:2] == (HALF_OPEN, ISOLATED)


def test_reset_from_open_closes_with_an_empty_window():
    breaker, _, transitions = make()
    trip_open(breaker)
    breaker.reset()
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.calls_in_window == 0 and snap.reason == "reset by the operator"
    assert transitions[-1][:2] == (OPEN, CLOSED)


def test_reset_while_closed_clears_the_window_without_a_transition():
    breaker, _, transitions = make()
    record(breaker, "s", "s", "s")
    breaker.reset()
    record(breaker, "s")  # would have been the 4th slow call
    assert breaker.state is CLOSED and transitions == []


def test_snapshot_carries_the_config_and_the_last_reason():
    breaker, _, _ = make(slow_call_ms=50)
    snap = breaker.snapshot()
    assert snap.config.slow_call_ms == 50 and snap.reason is None and snap.seconds_until_probe is None


@pytest.mark.parametrize(
    "config",
    [
        {"window_size": 0},
        {"minimum_calls": 0},
        {"half_open_probes": 0},
        {"slow_rate_threshold": 0},
        {"failure_rate_threshold": 1.5},
        {"slow_call_ms": 0},
        {"open_wait_s": -1},
    ],
)
def test_nonsensical_config_is_refused(config):
    with pytest.raises(ValueError):
        BreakerConfig(**config)
