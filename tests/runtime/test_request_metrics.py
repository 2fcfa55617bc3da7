"""The metric definitions against hand-computed cases, and the rolling store."""

from __future__ import annotations

import threading

import pytest

from antinet_tui.engine.protocol import GenerationResult, StopReason
from antinet_tui.runtime.metrics import MetricsStore, PartialResult, RequestMetrics, compute_metrics, percentile

MS = 1_000_000  # ns


def result(token_ms: list[float], prompt_tokens: int = 20, prefill_done_ms: float = 12, stop=StopReason.MAX_TOKENS):
    return GenerationResult(
        text="x" * len(token_ms),
        token_ids=list(range(len(token_ms))),
        prompt_tokens=prompt_tokens,
        stop_reason=stop,
        prefill_done_ns=int(prefill_done_ms * MS),
        token_times_ns=[int(t * MS) for t in token_ms],
        backend_profile={"kv": "f32"},
    )


def test_a_finished_request_by_hand():
    # accepted at 0, engine starts at 2 ms, prompt (20 tokens) done at 12 ms,
    # tokens at 15, 25, 35, 45 ms, generate returns at 50 ms.
    m = compute_metrics(0, 2 * MS, result([15, 25, 35, 45]), 50 * MS, "burst", "finished")
    assert m.queue_wait_ms == 2
    assert m.ttft_ms == 13  # start -> first token; the queue wait is not in it
    assert m.prefill_tok_s == pytest.approx(2000)  # 20 tokens / 10 ms
    assert m.decode_tok_s == pytest.approx(100)  # 3 intervals / 30 ms
    assert m.e2e_ms == 45  # accepted -> last token
    assert (m.prompt_tokens, m.generated_tokens) == (20, 4)
    assert (m.mode, m.stop_reason, m.outcome) == ("burst", "max_tokens", "finished")
    assert m.backend_profile == {"kv": "f32"}


def test_decode_rate_ignores_max_new_tokens_and_ttft():
    # same token stamps, whatever was asked for: the rate is only between first and last token
    slow_start = compute_metrics(0, 2 * MS, result([500, 510, 520]), 600 * MS, None, "finished")
    assert slow_start.decode_tok_s == pytest.approx(100)
    assert slow_start.ttft_ms == 498


def test_one_token_has_no_decode_rate():
    m = compute_metrics(0, 2 * MS, result([15]), 20 * MS, None, "finished")
    assert m.decode_tok_s is None and m.ttft_ms == 13 and m.e2e_ms == 15


def test_no_token_at_all():
    m = compute_metrics(0, 2 * MS, result([], stop=StopReason.EOS), 20 * MS, None, "finished")
    assert (m.ttft_ms, m.decode_tok_s, m.generated_tokens) == (None, None, 0)
    assert m.e2e_ms == 20  # no last token: until the request ended
    assert m.stop_reason == "eos"


def test_a_cancelled_request_ends_at_the_cancel_not_the_last_token():
    m = compute_metrics(0, 2 * MS, result([15, 25], stop=StopReason.CANCELLED), 31 * MS, None, "cancelled")
    assert m.e2e_ms == 31 and m.decode_tok_s == pytest.approx(100) and m.stop_reason == "cancelled"


def test_a_failed_request_from_what_the_runtime_saw():
    seen = PartialResult(prompt_tokens=7)
    seen.add_token(5, "a", 10 * MS)
    seen.add_token(6, "b", 30 * MS)
    m = compute_metrics(1 * MS, 4 * MS, seen, 41 * MS, "default", "failed")
    assert (m.queue_wait_ms, m.ttft_ms, m.e2e_ms) == (3, 6, 40)
    assert m.prefill_tok_s is None  # the runtime cannot see when the prompt was done
    assert m.decode_tok_s == pytest.approx(50)
    assert (m.stop_reason, m.outcome, m.generated_tokens, seen.text) == (None, "failed", 2, "ab")


def test_a_request_cancelled_while_queued_waited_until_the_cancel():
    m = compute_metrics(1 * MS, None, PartialResult(prompt_tokens=3), 9 * MS, None, "cancelled")
    assert (m.queue_wait_ms, m.e2e_ms, m.ttft_ms, m.prefill_tok_s) == (8, 8, None, None)


def test_an_instant_prefill_has_no_rate_rather_than_infinity():
    m = compute_metrics(0, 12 * MS, result([15], prefill_done_ms=12), 20 * MS, None, "finished")
    assert m.prefill_tok_s is None


def finished(e2e: float, ttft: float | None = 1.0, decode: float | None = 10.0) -> RequestMetrics:
    return RequestMetrics(
        queue_wait_ms=0.5,
        ttft_ms=ttft,
        prefill_tok_s=100.0,
        decode_tok_s=decode,
        e2e_ms=e2e,
        prompt_tokens=3,
        generated_tokens=4,
        mode="default",
        stop_reason="eos",
        outcome="finished",
    )


def test_percentiles_interpolate_linearly_like_numpy():
    store = MetricsStore(window=100)
    for value in range(1, 101):
        store.record(finished(float(value)))
    assert store.percentiles("e2e_ms") == {"p50": 50.5, "p95": pytest.approx(95.05), "p99": pytest.approx(99.01), "n": 100}


def test_percentile_by_hand_on_a_small_sample():
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25
    assert percentile([10.0, 20.0, 30.0, 40.0], 95) == pytest.approx(38.5)  # 30 + 0.85 * 10
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_the_window_keeps_only_the_latest_values():
    store = MetricsStore(window=3)
    for value in (100.0, 1.0, 2.0, 3.0):
        store.record(finished(value))
    assert store.series("e2e_ms") == [1.0, 2.0, 3.0]
    assert store.percentiles("e2e_ms")["n"] == 3 and store.percentiles("e2e_ms")["p99"] < 100
    assert store.latest("e2e_ms") == 3.0


def test_undefined_figures_are_left_out_of_their_series():
    store = MetricsStore()
    store.record(finished(5.0, decode=None))
    store.record(finished(6.0, decode=20.0))
    assert store.series("decode_tok_s") == [20.0]
    assert store.series("e2e_ms") == [5.0, 6.0]


def test_only_finished_requests_feed_the_series_but_every_outcome_is_counted():
    store = MetricsStore()
    store.record(finished(5.0))
    store.record(RequestMetrics(0, None, None, None, 1.0, 3, 0, None, "cancelled", "cancelled"))
    store.record(RequestMetrics(0, 2.0, None, None, 9.0, 3, 1, None, None, "failed"))
    store.record_rejection("queue_full")
    store.record_rejection("breaker_open")
    store.record_rejection("breaker_open")
    assert store.series("e2e_ms") == [5.0]
    assert store.outcome_counts() == {"finished": 1, "cancelled": 1, "failed": 1, "rejected": 3}
    assert store.rejection_counts() == {"queue_full": 1, "breaker_open": 2}


def test_breaker_states_are_counted():
    store = MetricsStore()
    for state in ("open", "half_open", "open", "half_open", "closed"):
        store.record_breaker_transition(state)
    assert store.breaker_counts() == {"open": 2, "half_open": 2, "closed": 1}


def test_empty_store_and_unknown_series():
    store = MetricsStore()
    assert store.percentiles("ttft_ms") == {"p50": None, "p95": None, "p99": None, "n": 0}
    assert store.latest("ttft_ms") is None
    with pytest.raises(KeyError, match="unknown series 'tps'; known: queue_wait_ms"):
        store.series("tps")


def test_reads_from_another_thread_while_the_engine_writes():
    store = MetricsStore(window=50)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                store.percentiles("e2e_ms")
                assert len(store.series("e2e_ms")) <= 50
        except BaseException as exc:  # reported below, on the test thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for value in range(5000):
        store.record(finished(float(value)))
    done.set()
    reader.join()
    assert errors == [] and store.series("e2e_ms") == [float(v) for v in range(4950, 5000)]
