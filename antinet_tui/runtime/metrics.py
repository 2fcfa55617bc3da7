"""Per-request figures and their rolling series: the only place they are computed.

Definitions (the help screen and README say the same), all from `time.perf_counter_ns()` stamps:

* queue wait: accepted -> the engine thread starts the request.
* TTFT: the engine starts the request -> first generated token (queue wait excluded).
* prefill tok/s: prompt tokens / (prefill done - the engine starts the request).
* decode tok/s: (generated - 1) / (last token - first token); undefined (None) with
  fewer than 2 tokens. Never divided by max_new_tokens, never mixed with TTFT.
* end-to-end: accepted -> last token, or -> the moment of cancel / error (or the end of
  the request when it produced no token).
* service time: the engine starts the request -> its last token (or cancel / error): the
  engine's own time, what the breaker judges (queue wait is load, not slowness). None
  for a request that never started.

A figure that is undefined is None, never NaN or 0, so logs stay valid JSON and a
dashboard can say "n/a".
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from antinet_tui.engine.protocol import GenerationResult

Outcome = Literal["finished", "cancelled", "failed"]

SERIES_NAMES = ("queue_wait_ms", "ttft_ms", "prefill_tok_s", "decode_tok_s", "e2e_ms", "service_ms")


@dataclass
class PartialResult:
    """What the runtime saw of a request that has no GenerationResult (failed, or never ran)."""

    prompt_tokens: int | None = None
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    token_times_ns: list[int] = field(default_factory=list)
    prefill_done_ns: int | None = None
    stop_reason: str | None = None
    backend_profile: dict[str, Any] = field(default_factory=dict)

    def add_token(self, token_id: int, text: str, t_ns: int) -> None:
        self.token_ids.append(token_id)
        self.token_times_ns.append(t_ns)
        self.text += text


@dataclass(frozen=True)
class RequestMetrics:
    queue_wait_ms: float
    ttft_ms: float | None
    prefill_tok_s: float | None
    decode_tok_s: float | None
    e2e_ms: float
    prompt_tokens: int | None
    generated_tokens: int
    mode: str | None  # the effective mode the request ran in
    stop_reason: str | None  # StopReason value; None when the request failed
    outcome: Outcome
    backend_profile: dict[str, Any] = field(default_factory=dict)
    service_ms: float | None = None  # started -> last token; None when it never started


def compute_metrics(
    accepted_ns: int,
    started_ns: int | None,
    result_or_partial: GenerationResult | PartialResult,
    ended_ns: int,
    mode: str | None,
    outcome: Outcome,
) -> RequestMetrics:
    """Apply the definitions above. `started_ns` is None for a request that never started."""
    times = result_or_partial.token_times_ns
    n = len(times)
    prompt_tokens = result_or_partial.prompt_tokens
    prefill_done = result_or_partial.prefill_done_ns
    stop = result_or_partial.stop_reason
    end_of_work = times[-1] if times and outcome == "finished" else ended_ns

    return RequestMetrics(
        queue_wait_ms=_ms((started_ns if started_ns is not None else ended_ns) - accepted_ns),
        ttft_ms=_ms(times[0] - started_ns) if times and started_ns is not None else None,
        prefill_tok_s=_rate(prompt_tokens, prefill_done - started_ns)
        if prompt_tokens and prefill_done is not None and started_ns is not None
        else None,
        decode_tok_s=_rate(n - 1, times[-1] - times[0]) if n >= 2 else None,
        e2e_ms=_ms(end_of_work - accepted_ns),
        prompt_tokens=prompt_tokens,
        generated_tokens=n,
        mode=mode,
        stop_reason=getattr(stop, "value", stop),
        outcome=outcome,
        backend_profile=dict(result_or_partial.backend_profile),
        service_ms=_ms(end_of_work - started_ns) if started_ns is not None else None,
    )


def _ms(ns: int) -> float:
    return ns / 1e6


def _rate(count: int, ns: int) -> float | None:
    return count / (ns / 1e9) if ns > 0 else None


class MetricsStore:
    """Rolling series (for sparklines), percentiles and counters over a session.

    Series hold the figures of *finished* requests only: a cancelled answer's shorter
    end-to-end time or a failure's would make the latency percentiles lie. Cancelled and
    failed requests are counted. Undefined figures (None) are left out of a series, so the
    series differ in length. Written from the engine thread, read from any thread.
    """

    def __init__(self, window: int = 100):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._lock = threading.Lock()
        self._series: dict[str, deque[float]] = {name: deque(maxlen=window) for name in SERIES_NAMES}
        self._outcomes: Counter[str] = Counter()
        self._rejections: Counter[str] = Counter()
        self._breaker_transitions: Counter[str] = Counter()

    def record(self, metrics: RequestMetrics) -> None:
        with self._lock:
            self._outcomes[metrics.outcome] += 1
            if metrics.outcome != "finished":
                return
            for name in SERIES_NAMES:
                value = getattr(metrics, name)
                if value is not None:
                    self._series[name].append(value)

    def record_rejection(self, cause: str) -> None:
        with self._lock:
            self._outcomes["rejected"] += 1
            self._rejections[cause] += 1

    def record_breaker_transition(self, to_state: str) -> None:
        with self._lock:
            self._breaker_transitions[str(getattr(to_state, "value", to_state))] += 1

    def series(self, name: str) -> list[float]:
        with self._lock:
            return list(self._values(name))

    def latest(self, name: str) -> float | None:
        with self._lock:
            values = self._values(name)
            return values[-1] if values else None

    def percentiles(self, name: str) -> dict[str, float | None]:
        """p50/p95/p99 over the last `window` values (linear interpolation, numpy's default)."""
        with self._lock:
            values = sorted(self._values(name))
        return {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
            "n": len(values),
        }

    def outcome_counts(self) -> dict[str, int]:
        """finished / cancelled / failed / rejected, each present even when 0."""
        with self._lock:
            return {k: self._outcomes[k] for k in ("finished", "cancelled", "failed", "rejected")}

    def rejection_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejections)

    def breaker_counts(self) -> dict[str, int]:
        """How many times the breaker entered each state this session."""
        with self._lock:
            return dict(self._breaker_transitions)

    def summary(self) -> MetricsSummary:
        """Everything above as one immutable value, taken under one lock acquisition."""
        with self._lock:
            series = {name: tuple(values) for name, values in self._series.items()}
            outcomes = {k: self._outcomes[k] for k in ("finished", "cancelled", "failed", "rejected")}
            rejections, transitions = dict(self._rejections), dict(self._breaker_transitions)
        return MetricsSummary(self.window, series, outcomes, rejections, transitions)

    def _values(self, name: str) -> deque[float]:
        try:
            return self._series[name]
        except KeyError:
            raise KeyError(f"unknown series {name!r}; known: {', '.join(SERIES_NAMES)}") from None


@dataclass(frozen=True)
class MetricsSummary:
    """A copy of the metrics at one moment: what a frontend draws, and what a remote
    engine sends. Series hold finished requests' figures, oldest first, at most `window`.
    Its dicts are its own copies (nobody else sees a change to them)."""

    window: int
    series_values: dict[str, tuple[float, ...]]
    outcomes: dict[str, int]  # finished / cancelled / failed / rejected
    rejections: dict[str, int]  # by RejectCause
    breaker_transitions: dict[str, int]  # entries into each breaker state

    def series(self, name: str) -> tuple[float, ...]:
        try:
            return self.series_values[name]
        except KeyError:
            raise KeyError(f"unknown series {name!r}; known: {', '.join(self.series_values)}") from None

    def latest(self, name: str) -> float | None:
        values = self.series(name)
        return values[-1] if values else None

    def percentiles(self, name: str) -> dict[str, float | None]:
        """p50/p95/p99 and n, as MetricsStore.percentiles."""
        values = sorted(self.series(name))
        return {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99),
                "n": len(values)}

    @classmethod
    def empty(cls, window: int = 100) -> MetricsSummary:
        return cls(window, {name: () for name in SERIES_NAMES}, dict.fromkeys(
            ("finished", "cancelled", "failed", "rejected"), 0), {}, {})


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile of already sorted values, interpolating linearly between ranks."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q / 100
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)
