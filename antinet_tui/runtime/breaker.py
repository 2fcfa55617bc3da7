"""A circuit breaker that protects callers from a slow or failing engine.

Modelled on resilience4j's CircuitBreaker with a COUNT_BASED sliding window:

* CLOSED: every call is permitted. The outcome of the last `window_size` calls is kept;
  once at least `minimum_calls` are in the window, the breaker opens when the share of
  failed calls reaches `failure_rate_threshold` or the share of slow calls (duration
  strictly above `slow_call_ms`) reaches `slow_rate_threshold`. A call can be both slow
  and failed; it then counts towards both rates, as in resilience4j.
* OPEN: every call is refused with a reason until `open_wait_s` has passed.
* HALF_OPEN: `half_open_probes` calls are permitted; once that many outcomes are in,
  the rates over them decide: either threshold reached -> OPEN, otherwise -> CLOSED.
* ISOLATED: forced open by the operator (resilience4j's FORCED_OPEN); only `reset()`
  leaves it.

Where we differ from resilience4j, deliberately:

* Thresholds are fractions (0.5), not percentages (50.0).
* OPEN -> HALF_OPEN happens on the next `try_acquire()` or `poll()`, whichever comes
  first (resilience4j's automaticTransitionFromOpenToHalfOpenEnabled, with the timer
  outside: EngineService calls `poll()` when `seconds_until_probe()` has passed, so the
  transition is reported on time). `snapshot()` only reads: looking never changes state.
* Cancelled calls are never recorded: the caller gives their permit back with
  `release()` (resilience4j's releasePermission), so a cancelled probe does not decide
  anything and does not leak a half-open permit.
* Outcomes that arrive while OPEN or ISOLATED are dropped (the window is rebuilt on the
  way out anyway). In HALF_OPEN any outcome counts towards the decision, as in
  resilience4j, even one from a call admitted before the breaker opened: with a single
  engine thread such a call ran just now and says as much about the engine's health as
  the probe itself.
* `minimum_calls` above `window_size` is capped to `window_size` (resilience4j's builder
  does the same for count-based windows). There is no maxWaitDurationInHalfOpenState.
* `reset()` reports a transition only when the state actually changes.

The clock is injected (default `time.monotonic`: wall-clock time jumps) so tests are exact.
`on_transition(from_state, to_state, reason, snapshot)` is called while the breaker's lock
is held, so transitions are reported in order; it must be quick and must not call back
into the breaker.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"


@dataclass(frozen=True)
class BreakerConfig:
    window_size: int = 10  # calls in the count-based sliding window
    minimum_calls: int = 4  # calls needed in the window before rates are judged
    slow_call_ms: float = 3000  # a call strictly slower than this is slow
    slow_rate_threshold: float = 0.5  # share of slow calls that opens the breaker
    failure_rate_threshold: float = 0.5  # share of failed calls that opens the breaker
    open_wait_s: float = 30  # how long OPEN refuses before letting probes through
    half_open_probes: int = 1  # calls permitted in HALF_OPEN; their outcome decides

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.minimum_calls < 1 or self.half_open_probes < 1:
            raise ValueError("window_size, minimum_calls and half_open_probes must be at least 1")
        for name in ("slow_rate_threshold", "failure_rate_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.slow_call_ms <= 0 or self.open_wait_s < 0:
            raise ValueError("slow_call_ms must be positive and open_wait_s not negative")


@dataclass(frozen=True)
class BreakerSnapshot:
    state: BreakerState
    reason: str | None  # why the last transition happened
    seconds_until_probe: float | None  # OPEN only: time left before HALF_OPEN
    slow_calls: int  # in the current window (the probe window in HALF_OPEN)
    failed_calls: int
    calls_in_window: int
    config: BreakerConfig


OnTransition = Callable[[BreakerState, BreakerState, str, BreakerSnapshot], None]


@dataclass(frozen=True)
class _Outcome:
    slow: bool
    failed: bool


ISOLATED_REFUSAL = "breaker isolated by the operator; reset it to let requests through"


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_transition: OnTransition | None = None,
    ):
        self.config = config or BreakerConfig()
        self._clock = clock
        self.on_transition = on_transition
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._reason: str | None = None
        self._window: deque[_Outcome] = deque(maxlen=self.config.window_size)
        self._opened_at = 0.0
        self._probes_permitted = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    def seconds_until_probe(self) -> float | None:
        """OPEN: time left before HALF_OPEN (0 when due); None in any other state."""
        with self._lock:
            return self._seconds_until_probe() if self._state is BreakerState.OPEN else None

    def poll(self) -> None:
        """Make the OPEN -> HALF_OPEN transition if its time has come."""
        with self._lock:
            self._open_to_half_open_if_due()

    def try_acquire(self) -> tuple[bool, str | None]:
        """Ask to make a call: (True, None), or (False, a sentence saying why not)."""
        with self._lock:
            self._open_to_half_open_if_due()
            if self._state is BreakerState.CLOSED:
                return True, None
            if self._state is BreakerState.HALF_OPEN:
                if self._probes_permitted < self.config.half_open_probes:
                    self._probes_permitted += 1
                    return True, None
                n = self.config.half_open_probes
                return False, f"breaker half-open: waiting for {_calls(n, 'probe call')} to finish"
            if self._state is BreakerState.ISOLATED:
                return False, ISOLATED_REFUSAL
            wait = math.ceil(self._seconds_until_probe())
            return False, f"breaker open: {self._reason}; next probe in {wait} s"

    def release(self) -> None:
        """Give back the permit of a call that was never recorded (cancelled, not run)."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and self._probes_permitted > 0:
                self._probes_permitted -= 1

    def on_result(self, duration_ms: float, failed: bool) -> None:
        """Record a permitted call's outcome and change state if the rates say so.
        `duration_ms` is what is judged slow (EngineService passes the service time)."""
        with self._lock:
            if self._state in (BreakerState.OPEN, BreakerState.ISOLATED):
                return
            self._window.append(_Outcome(slow=duration_ms > self.config.slow_call_ms, failed=failed))
            if self._state is BreakerState.CLOSED:
                minimum = min(self.config.minimum_calls, self.config.window_size)
                if len(self._window) >= minimum and (verdict := self._rates_exceeded(in_half_open=False)):
                    self._transition(BreakerState.OPEN, verdict)
            elif len(self._window) >= self.config.half_open_probes:
                verdict = self._rates_exceeded(in_half_open=True)
                if verdict:
                    self._transition(BreakerState.OPEN, verdict)
                else:
                    self._transition(BreakerState.CLOSED, f"{_calls(len(self._window), 'probe call')} healthy")

    def isolate(self) -> None:
        """Force the breaker open until `reset()`: the operator takes the engine out of service."""
        with self._lock:
            if self._state is not BreakerState.ISOLATED:
                self._transition(BreakerState.ISOLATED, "isolated by the operator")

    def reset(self) -> None:
        """Back to CLOSED with an empty window, whatever the state."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                self._window.clear()
            else:
                self._transition(BreakerState.CLOSED, "reset by the operator")

    def snapshot(self) -> BreakerSnapshot:
        """The state now, as an immutable value; changes nothing."""
        with self._lock:
            return self._snapshot()

    # -- internals; the lock is held ----------------------------------------------

    def _snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            state=self._state,
            reason=self._reason,
            seconds_until_probe=self._seconds_until_probe() if self._state is BreakerState.OPEN else None,
            slow_calls=sum(o.slow for o in self._window),
            failed_calls=sum(o.failed for o in self._window),
            calls_in_window=len(self._window),
            config=self.config,
        )

    def _seconds_until_probe(self) -> float:
        return max(0.0, self._opened_at + self.config.open_wait_s - self._clock())

    def _open_to_half_open_if_due(self) -> None:
        if self._state is BreakerState.OPEN and self._seconds_until_probe() <= 0:
            probes = _calls(self.config.half_open_probes, "probe call")
            self._transition(
                BreakerState.HALF_OPEN, f"waited {self.config.open_wait_s:g} s; letting {probes} through"
            )

    def _rates_exceeded(self, in_half_open: bool) -> str | None:
        """The sentence explaining why the window's rates open the breaker, or None."""
        n = len(self._window)
        failed = sum(o.failed for o in self._window)
        slow = sum(o.slow for o in self._window)
        reasons = []
        if failed / n >= self.config.failure_rate_threshold:
            reasons.append(f"{_share(failed, n, in_half_open)} failed")
        if slow / n >= self.config.slow_rate_threshold:
            verb = "was" if slow == 1 else "were"
            reasons.append(f"{_share(slow, n, in_half_open)} {verb} slower than {self.config.slow_call_ms:g} ms")
        return " and ".join(reasons) or None

    def _transition(self, to_state: BreakerState, reason: str) -> None:
        from_state = self._state
        self._state = to_state
        self._reason = reason
        self._probes_permitted = 0
        if to_state is BreakerState.OPEN:
            self._opened_at = self._clock()
        else:  # CLOSED and HALF_OPEN start a fresh window; ISOLATED's is irrelevant
            self._window.clear()
        if self.on_transition is not None:
            self.on_transition(from_state, to_state, reason, self._snapshot())


def _calls(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _share(count: int, n: int, in_half_open: bool) -> str:
    return f"{count} of {n} probe calls" if in_half_open else f"{count} of the last {n} calls"
