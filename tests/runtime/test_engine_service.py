"""EngineService against deterministic fake backends: queueing, cancel, failure, breaker,
modes, shutdown, events and the session log."""

from __future__ import annotations

import _thread
import logging
import threading
import time

import pytest
from fakes import EventRecorder, FakeBackend, FakeClock, wait_until

from antinet_tui.engine.errors import EngineError, InvalidRequest, ModelFormatError, UnknownMode
from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.runtime.breaker import BreakerConfig, BreakerState, CircuitBreaker
from antinet_tui.runtime.events import (
    Accepted,
    BreakerTransition,
    Cancelled,
    Failed,
    Finished,
    Loaded,
    LoadFailed,
    LoadProgress,
    ModeChanged,
    Rejected,
    Token,
)
from antinet_tui.runtime.client import ServiceState, generate
from antinet_tui.runtime.service import EngineService
from antinet_tui.runtime.session_log import SessionLog, read_session

LONG = GenerationRequest("write forever", max_new_tokens=4000, ignore_eos=True)  # minutes with a delay


@pytest.fixture
def running():
    """Start services over given backends and always shut them down."""
    services: list[EngineService] = []

    def start(backend: FakeBackend, **options) -> tuple[EngineService, EventRecorder]:
        service = EngineService(backend, **options)
        recorder = EventRecorder()
        service.subscribe(recorder)
        services.append(service.start())
        return service, recorder

    yield start
    for service in services:
        service.shutdown()


def is_(kind, request_id=None):
    return lambda e: isinstance(e, kind) and (request_id is None or e.request_id == request_id)


# -- loading ---------------------------------------------------------------------------


def test_loads_on_the_engine_thread_and_reports_progress(running):
    backend = FakeBackend()
    service, events = running(backend)
    loaded = events.wait_for(is_(Loaded))
    assert service.wait_ready(5) and service.state == "ready"
    progress = [e for e in events.events if isinstance(e, LoadProgress)]
    assert [p.fraction for p in progress] == [0.0, 0.5, 1.0]
    assert loaded.model_info.name == "fake-tiny" and loaded.mode.effective == "default"
    assert loaded.capabilities.mode_names == ("burst", "default", "power_saver")
    assert service.model_info() == loaded.model_info and service.mode() == loaded.mode
    generate(service, GenerationRequest("hi"))
    assert backend.threads_seen == {"antinet-engine"}


def test_requests_submitted_while_loading_wait_and_then_run(running):
    loading = threading.Event()
    service, events = running(FakeBackend(load_gate=loading))
    submission = service.submit(GenerationRequest("early bird"))
    assert submission.accepted and submission.rejection is None and not submission.done
    loading.set()
    finished = events.wait_for(is_(Finished, submission.request_id))
    kinds = events.kinds()
    assert kinds.index("loaded") < kinds.index("started")
    assert finished.metrics.queue_wait_ms > 0 and finished.metrics.prompt_tokens == 8


def test_a_prompt_too_long_found_only_after_loading_fails_the_request(running):
    loading = threading.Event()
    service, events = running(FakeBackend(load_gate=loading, context_length=10))
    submission = service.submit(GenerationRequest("one two three four five", max_new_tokens=4))  # 5 + 6 template
    loading.set()
    failed = events.wait_for(is_(Failed, submission.request_id))
    assert failed.error == "prompt is 11 tokens; the context holds 10"
    assert service.breaker_view().calls_in_window == 0  # the request's fault, not the engine's


def test_a_load_failure_fails_queued_requests_and_refuses_new_ones(running):
    loading = threading.Event()
    service, events = running(FakeBackend(load_gate=loading, load_error=ModelFormatError("not a GGUF file")))
    queued = service.submit(GenerationRequest("hi"))
    loading.set()
    assert not service.wait_ready(5)
    assert service.state is ServiceState.LOAD_FAILED and service.load_error() == "not a GGUF file"
    assert events.wait_for(is_(LoadFailed)).error == "not a GGUF file"
    failed = events.wait_for(is_(Failed, queued.request_id))
    assert failed.error == "the engine failed to load: not a GGUF file"
    later = service.submit(GenerationRequest("hi"))
    assert later.rejection.reason == "the engine failed to load: not a GGUF file"
    assert events.wait_for(is_(Rejected, later.request_id)).cause == "not_ready"


# -- a request's life --------------------------------------------------------------------


def test_a_request_streams_in_order_and_finishes_with_its_metrics(running):
    service, events = running(FakeBackend(token_delay_s=0.001))
    finished = generate(service, GenerationRequest("tell me", max_new_tokens=5))
    assert isinstance(finished, Finished)
    mine = events.of(finished.request_id)
    assert [e.kind for e in mine] == ["accepted", "started"] + ["token"] * 5 + ["finished"]
    tokens = [e for e in mine if isinstance(e, Token)]
    assert [t.index for t in tokens] == [0, 1, 2, 3, 4]
    assert "".join(t.text for t in tokens) == finished.text == "The quick brown fox jumps"
    assert finished.token_ids == tuple(t.token_id for t in tokens)
    m = finished.metrics
    assert (m.generated_tokens, m.prompt_tokens, m.stop_reason, m.outcome, m.mode) == (
        5,
        8,
        "max_tokens",
        "finished",
        "default",
    )
    assert m.ttft_ms > 0 and m.decode_tok_s > 0 and m.e2e_ms >= m.ttft_ms
    assert mine[0].queue_length == 1 and mine[1].queue_wait_ms >= 0
    assert service.metrics_summary().outcomes["finished"] == 1 and service.metrics_summary().series("e2e_ms") == (m.e2e_ms,)


def test_a_request_before_start_is_refused():
    service = EngineService(FakeBackend())
    refused = generate(service, GenerationRequest("hi"))
    assert isinstance(refused, Rejected) and (refused.cause, refused.reason) == ("not_ready", "the engine is not started")
    service.shutdown()


def test_bad_input_is_rejected_with_its_message_and_nothing_runs(running):
    backend = FakeBackend()
    service, events = running(backend)
    service.wait_ready(5)
    submission = service.submit(GenerationRequest("bell \x07"))
    assert not submission.accepted
    assert submission.rejection.reason == "prompt contains control character U+0007 at position 5"
    rejected = events.wait_for(is_(Rejected, submission.request_id))
    assert rejected == submission.rejection and rejected.cause == "bad_input" and rejected.retry_after_s is None
    too_long = generate(service, GenerationRequest("word " * 5000))
    assert too_long.reason == "prompt is 5006 tokens; the context holds 4096"
    assert backend.generate_calls == 0 and service.metrics_summary().rejections == {"bad_input": 2}


def test_cancel_mid_stream_takes_effect_within_one_decode_step(running):
    backend = FakeBackend(token_delay_s=0.02)
    service, events = running(backend)
    request_id_handle = service.submit(LONG)
    request_id = request_id_handle.request_id
    events.wait_for(lambda e: isinstance(e, Token) and e.index == 3)
    assert service.cancel(request_id)
    steps_at_cancel = backend.decode_steps  # read after: a step that began before the cancel may end
    cancelled = events.wait_for(is_(Cancelled, request_id))
    assert backend.decode_steps - steps_at_cancel <= 1

    mine = events.of(request_id)
    assert mine[-1] is cancelled  # no token after the terminal event
    tokens = [e for e in mine if isinstance(e, Token)]
    assert cancelled.text == "".join(t.text for t in tokens)
    assert cancelled.token_ids == tuple(t.token_id for t in tokens)
    assert (cancelled.metrics.outcome, cancelled.metrics.stop_reason) == ("cancelled", "cancelled")

    backend.token_delay_s = 0
    after = generate(service, GenerationRequest("next", max_new_tokens=3))
    assert after.text == "The quick brown"  # nothing of the cancelled answer leaks in
    assert all(e.request_id == after.request_id for e in events.events[events.events.index(cancelled) + 1 :] if isinstance(e, Token))


def test_cancel_through_the_service_or_the_handle(running):
    backend = FakeBackend(token_delay_s=0.01)
    service, events = running(backend)
    assert not service.cancel(1)  # nothing running
    handle = service.submit(LONG)
    events.wait_for(is_(Token, handle.request_id))
    assert service.running_count() == 1 and service.cancel(handle.request_id)
    assert isinstance(handle.result(5), Cancelled)
    assert not service.running_count() and not service.cancel(12345) and not handle.cancel()
    second = service.submit(LONG)
    events.wait_for(is_(Token, second.request_id))
    assert second.cancel() and isinstance(second.result(5), Cancelled)


def test_cancelling_a_queued_request_ends_it_at_once_and_it_never_runs(running):
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    service, events = running(backend)
    first_handle = service.submit(GenerationRequest("first"))
    first = first_handle.request_id
    second_handle = service.submit(GenerationRequest("second"))
    second = second_handle.request_id
    assert backend.started_requests.acquire(timeout=5)
    assert service.queue_length() == 1
    assert service.cancel(second)
    cancelled = events.wait_for(is_(Cancelled, second))
    assert (cancelled.text, cancelled.metrics.ttft_ms, service.queue_length()) == ("", None, 0)
    gate.set()
    events.wait_for(is_(Finished, first))
    assert backend.generate_calls == 1 and [r.prompt for r in backend.requests] == ["first"]
    assert events.kinds(second) == ["accepted", "cancelled"]


def test_the_queue_is_bounded_and_says_so(running):
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    service, events = running(backend, queue_size=2)
    handles = [service.submit(GenerationRequest("r0"))]
    assert backend.started_requests.acquire(timeout=5)  # r0 runs (held at the gate)
    handles += [service.submit(GenerationRequest(f"r{i}")) for i in (1, 2)]
    refused = service.submit(GenerationRequest("r3"))
    assert not refused.accepted and refused.done
    assert (refused.rejection.reason, refused.rejection.cause) == ("queue full: 2 requests waiting", "queue_full")
    assert refused.result() is refused.rejection and list(refused) == [refused.rejection]
    assert events.wait_for(is_(Rejected, refused.request_id)) == refused.rejection
    gate.set()
    for handle in handles:
        assert isinstance(handle.result(5), Finished)
    assert service.submit(GenerationRequest("room again")).accepted


def test_concurrent_submitters_get_whole_ordered_streams(running):
    service, events = running(FakeBackend(), queue_size=64)
    service.wait_ready(5)
    results: list = []

    def submit_many() -> None:
        for _ in range(10):
            results.append(generate(service, GenerationRequest("go", max_new_tokens=4)))

    threads = [threading.Thread(target=submit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 40 and all(isinstance(r, Finished) for r in results)
    per_request = [e for e in events.events if e.request_id is not None and not isinstance(e, Accepted)]
    for i in range(0, len(per_request), 6):  # started, 4 tokens, finished: never interleaved
        block = per_request[i : i + 6]
        assert [e.kind for e in block] == ["started", "token", "token", "token", "token", "finished"]
        assert len({e.request_id for e in block}) == 1


# -- failures and the breaker ------------------------------------------------------------


def test_a_backend_exception_fails_the_request_and_the_service_keeps_serving(running, caplog):
    backend = FakeBackend(fail_on_token=3)
    service, events = running(backend)
    failed = generate(service, GenerationRequest("hi"))
    assert isinstance(failed, Failed)
    assert failed.error == "fake backend failed at token 3"
    assert (failed.metrics.generated_tokens, failed.metrics.outcome, failed.metrics.stop_reason) == (2, "failed", None)
    assert [e.kind for e in events.of(failed.request_id)][-1] == "failed"
    assert "request 1 failed in the backend" in caplog.text
    assert service.breaker_view().failed_calls == 1

    backend.fail_on_token = None
    assert isinstance(generate(service, GenerationRequest("again")), Finished)
    assert service.metrics_summary().outcomes == {"finished": 1, "cancelled": 0, "failed": 1, "rejected": 0}


def test_an_invalid_request_from_the_backend_is_not_held_against_the_engine(running):
    service, _ = running(FakeBackend(fail_on_token=1, fail_with=InvalidRequest))
    failed = generate(service, GenerationRequest("hi"))
    assert failed.error == "fake backend failed at token 1"
    assert service.breaker_view().calls_in_window == 0


def test_a_slow_backend_trips_the_breaker_and_requests_are_refused_with_the_reason(running):
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=2, slow_call_ms=200), clock=clock)
    backend = FakeBackend(token_delay_s=0.06)
    service, events = running(backend, breaker=breaker)
    slow = GenerationRequest("slow", max_new_tokens=4, ignore_eos=True)  # >= 240 ms; the probe below must take < 200 ms
    first, second = generate(service, slow), generate(service, slow)
    assert first.metrics.e2e_ms > 200 and second.metrics.e2e_ms > 200
    transition = events.wait_for(is_(BreakerTransition))
    assert (transition.from_state, transition.to_state) == (BreakerState.CLOSED, BreakerState.OPEN)
    assert transition.reason == "2 of the last 2 calls were slower than 200 ms"
    assert events.events.index(transition) == events.events.index(second) + 1  # caused by it, told after it

    refused = generate(service, GenerationRequest("please"))
    assert isinstance(refused, Rejected) and refused.cause == "breaker_open"
    assert refused.reason == "breaker open: 2 of the last 2 calls were slower than 200 ms; next probe in 30 s"
    assert backend.generate_calls == 2

    clock.now += 30  # the probe goes through, is fast, and closes the breaker
    backend.token_delay_s = 0
    assert isinstance(generate(service, GenerationRequest("probe", max_new_tokens=2)), Finished)
    assert service.breaker_view().state is BreakerState.CLOSED
    assert service.metrics_summary().breaker_transitions == {"open": 1, "half_open": 1, "closed": 1}


def test_a_measurement_passes_an_open_breaker_and_is_kept_out_of_its_window_and_the_history(running):
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=1, slow_call_ms=20), clock=clock)
    service, events = running(FakeBackend(token_delay_s=0.01), breaker=breaker)
    slow = GenerationRequest("slow", max_new_tokens=4, ignore_eos=True)  # >= 40 ms
    generate(service, slow)
    assert breaker.state is BreakerState.OPEN
    measured = generate(service, slow, measurement=True)
    assert isinstance(measured, Finished) and measured.metrics.e2e_ms > 20
    assert breaker.state is BreakerState.OPEN and breaker.snapshot().calls_in_window == 1
    assert service.metrics_summary().outcomes["finished"] == 1  # the operator's call only
    service.isolate_breaker()  # the operator's isolation stops measurements too
    refused = generate(service, slow, measurement=True)
    assert isinstance(refused, Rejected) and refused.reason.startswith("breaker isolated by the operator")


def test_a_cancelled_probe_gives_its_permit_back(running):
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(minimum_calls=1), clock=clock)
    backend = FakeBackend(fail_on_token=1)
    service, events = running(backend, breaker=breaker)
    generate(service, GenerationRequest("boom"))
    assert service.breaker_view().state is BreakerState.OPEN
    clock.now += 30
    backend.fail_on_token, backend.token_delay_s = None, 0.01
    probe = service.submit(LONG)
    assert probe.accepted
    assert service.submit(GenerationRequest("hi")).rejection.reason == "breaker half-open: waiting for 1 probe call to finish"
    events.wait_for(is_(Token, probe.request_id))
    service.cancel(probe.request_id)
    events.wait_for(is_(Cancelled, probe.request_id))
    assert service.breaker_view().state is BreakerState.HALF_OPEN
    assert service.submit(GenerationRequest("hi")).accepted


def test_isolate_and_reset_through_the_service(running):
    service, events = running(FakeBackend())
    service.wait_ready(5)
    service.isolate_breaker()
    refused = generate(service, GenerationRequest("hi"))
    assert refused.reason == "breaker isolated by the operator; reset it to let requests through"
    service.reset_breaker()
    assert isinstance(generate(service, GenerationRequest("hi")), Finished)
    states = [e.to_state for e in events.events if isinstance(e, BreakerTransition)]
    assert states == [BreakerState.ISOLATED, BreakerState.CLOSED]


# -- modes -----------------------------------------------------------------------------


def test_initial_mode_is_applied_after_loading_and_before_the_first_request(running):
    backend = FakeBackend()
    service, events = running(backend, initial_mode="burst")
    finished = generate(service, GenerationRequest("hi"))
    assert events.kinds()[3:5] == ["loaded", "mode_changed"]
    changed = events.wait_for(is_(ModeChanged))
    assert (changed.requested, changed.deferred, changed.error, changed.requested_by) == (
        "burst", False, None, "settings")
    assert changed.readback.settings == {"threads": 8, "nice": -5, "cores": list(range(8)), "usable_cores": 8}
    assert finished.metrics.mode == "burst" and backend.modes_during_generate == ["burst"]


def test_set_mode_while_idle_applies_it_and_reports_the_readback(running):
    backend = FakeBackend()
    service, events = running(backend)
    service.wait_ready(5)
    service.set_mode("power_saver")
    changed = events.wait_for(is_(ModeChanged))
    assert changed.readback.effective == "power_saver" and changed.readback.settings["cores"] == [7]
    assert changed.requested_by == "operator"
    assert service.mode() == changed.readback and backend.applied_modes == ["power_saver"]


def test_set_mode_during_a_request_is_deferred_to_the_next_one(running):
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    service, events = running(backend)
    first_handle = service.submit(GenerationRequest("first", max_new_tokens=5, ignore_eos=True))
    first = first_handle.request_id
    second_handle = service.submit(GenerationRequest("second", max_new_tokens=2))
    second = second_handle.request_id
    assert backend.started_requests.acquire(timeout=5)  # "first" runs, held at the gate
    service.set_mode("burst", requested_by="experiment")
    deferred = events.wait_for(is_(ModeChanged))
    gate.set()
    assert (deferred.deferred, deferred.readback, deferred.requested) == (True, None, "burst")
    done_first = events.wait_for(is_(Finished, first))
    done_second = events.wait_for(is_(Finished, second))
    applied = events.wait_for(lambda e: isinstance(e, ModeChanged) and not e.deferred)
    order = events.events
    assert order.index(done_first) < order.index(applied) < order.index(done_second)
    assert deferred.requested_by == applied.requested_by == "experiment"
    assert (done_first.metrics.mode, done_second.metrics.mode) == ("default", "burst")
    assert backend.modes_during_generate == ["default", "burst"]


def test_an_unknown_mode_is_refused_at_once_with_the_valid_ones(running):
    backend = FakeBackend()
    service, events = running(backend)
    service.wait_ready(5)
    with pytest.raises(UnknownMode, match="unknown mode 'turbo'; valid modes: burst, default, power_saver"):
        service.set_mode("turbo")
    generate(service, GenerationRequest("hi"))
    assert backend.applied_modes == [] and "mode_changed" not in events.kinds()


def test_an_unknown_mode_asked_for_before_loading_is_reported_as_an_event(running):
    service, events = running(FakeBackend(load_delay_s=0.1), initial_mode="turbo")
    changed = events.wait_for(is_(ModeChanged))
    assert changed.error == "unknown mode 'turbo'; valid modes: burst, default, power_saver"
    assert service.mode().effective == "default"


def test_a_mode_that_fails_to_apply_is_an_error_event_not_a_silent_no_op(running):
    backend = FakeBackend(mode_errors={"burst": EngineError("cannot set the HTP profile: device busy")})
    service, events = running(backend)
    service.wait_ready(5)
    service.set_mode("burst")
    changed = events.wait_for(is_(ModeChanged))
    assert (changed.error, changed.readback) == ("cannot set the HTP profile: device busy", None)
    assert service.mode().effective == "default"


def test_a_partly_applied_mode_shows_what_is_really_in_force(running):
    service, events = running(FakeBackend(nice_permitted=False), initial_mode="burst")
    readback = events.wait_for(is_(ModeChanged)).readback
    assert readback.effective == "burst (partial)" and readback.settings["nice"] == 0
    assert readback.not_applied == ("priority: nice -5 not permitted (needs CAP_SYS_NICE or root)",)
    assert generate(service, GenerationRequest("hi")).metrics.mode == "burst (partial)"


# -- subscribers -----------------------------------------------------------------------


def test_a_failing_subscriber_is_logged_and_does_not_stop_delivery(running, caplog):
    def broken(event):
        raise ValueError("subscriber bug")

    service, events = running(FakeBackend())
    service.subscribe(broken)
    with caplog.at_level(logging.ERROR):
        assert isinstance(generate(service, GenerationRequest("hi")), Finished)
    assert "subscriber bug" in caplog.text and "failed on a finished event" in caplog.text


def test_a_slow_subscriber_never_stalls_generation():
    unblock = threading.Event()
    backend = FakeBackend()
    service = EngineService(backend)
    service.subscribe(lambda event: unblock.wait(10))
    service.start()
    try:
        handle = service.submit(GenerationRequest("hi", max_new_tokens=50, ignore_eos=True))  # noqa: F841 (dropping cancels)
        wait_until(lambda: backend.decode_steps == 50 and not backend.generating.is_set())
        assert not unblock.is_set()  # the subscriber is still stuck on the first event
    finally:
        unblock.set()
        service.shutdown()


def test_unsubscribe_stops_delivery(running):
    service, events = running(FakeBackend())
    late = EventRecorder()
    unsubscribe = service.subscribe(late)
    generate(service, GenerationRequest("one"))
    unsubscribe()
    second = generate(service, GenerationRequest("two"))
    events.wait_for(is_(Finished, second.request_id))
    assert second.request_id not in {e.request_id for e in late.events}


# -- generate() interruptions -------------------------------------------------------------


def test_ctrl_c_during_generate_cancels_and_returns_the_partial_answer(running, sigint_raises):
    backend = FakeBackend(token_delay_s=0.01)
    service, _ = running(backend)

    def press_ctrl_c(token: Token) -> None:
        if token.index == 2:
            _thread.interrupt_main()  # what SIGINT does: KeyboardInterrupt in the main thread

    result = generate(service, LONG, on_token=press_ctrl_c)
    assert isinstance(result, Cancelled)
    assert result.text.startswith("The quick brown") and 3 <= len(result.token_ids) < 100
    assert not service.running_count()


class CtrlCWhileCounting(FakeBackend):
    """Ctrl-C while the first request is being checked, before it is queued."""

    interrupted = False

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        if not self.interrupted:
            self.interrupted = True
            _thread.interrupt_main()
        return super().count_prompt_tokens(request)


def test_ctrl_c_before_the_request_is_queued_is_the_callers_and_leaves_the_service_usable(running, monkeypatch,
                                                                                         sigint_raises):
    monkeypatch.setattr("antinet_tui.runtime.client._ENDED_EVENT_WAIT_S", 0.2)
    backend = CtrlCWhileCounting()
    service, events = running(backend)
    service.wait_ready(5)
    with pytest.raises(KeyboardInterrupt):
        generate(service, GenerationRequest("hi"))
    assert not service.running_count() and service.queue_length() == 0 and "accepted" not in events.kinds()
    assert isinstance(generate(service, GenerationRequest("hi")), Finished)


def test_generate_timeout_cancels(running):
    service, _ = running(FakeBackend(token_delay_s=0.01))
    started = time.monotonic()
    result = generate(service, LONG, timeout=0.2)
    assert isinstance(result, Cancelled) and time.monotonic() - started < 2


# -- shutdown --------------------------------------------------------------------------


def test_shutdown_during_generation_joins_within_one_second(running):
    backend = FakeBackend(token_delay_s=0.05)
    threads_before = set(threading.enumerate())
    service, events = running(backend)
    running_id_handle = service.submit(LONG)
    running_id = running_id_handle.request_id
    queued_id_handle = service.submit(LONG)
    queued_id = queued_id_handle.request_id
    events.wait_for(is_(Token, running_id))
    started = time.monotonic()
    service.shutdown()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"shutdown took {elapsed:.2f} s"
    assert backend.closed and service.state == "stopped"
    assert set(threading.enumerate()) <= threads_before  # the engine and dispatcher threads joined
    assert events.of(running_id)[-1].kind == "cancelled" and events.of(queued_id)[-1].kind == "cancelled"
    assert service.submit(GenerationRequest("hi")).rejection.reason == "the engine is shut down"
    service.shutdown()  # idempotent


def test_shutdown_returns_even_if_the_backend_ignores_cancel(running):
    backend = FakeBackend(token_delay_s=0.01, respects_cancel=False)
    service, events = running(backend)
    handle = service.submit(GenerationRequest("hi", max_new_tokens=60, ignore_eos=True))  # noqa: F841 ~0.6 s
    events.wait_for(is_(Token))
    started = time.monotonic()
    service.shutdown(timeout=0.1)
    assert time.monotonic() - started < 0.5 and not backend.closed
    wait_until(lambda: backend.closed)  # the engine thread closes it when generate returns


def test_shutdown_during_loading_abandons_the_load(running):
    backend = FakeBackend(load_delay_s=0.4)
    service, events = running(backend)
    events.wait_for(is_(LoadProgress))
    started = time.monotonic()
    service.shutdown()
    assert time.monotonic() - started < 1.0
    assert backend.closed and "loaded" not in events.kinds() and not service.wait_ready(0)


def test_shutdown_without_start_closes_the_backend():
    backend = FakeBackend()
    EngineService(backend).shutdown()
    assert backend.closed


def test_context_manager_starts_and_stops():
    backend = FakeBackend()
    with EngineService(backend) as service:
        assert isinstance(generate(service, GenerationRequest("hi")), Finished)
    assert backend.closed and service.state == "stopped"


# -- session log -------------------------------------------------------------------------


def test_the_session_log_holds_every_outcome_with_prompt_and_output(tmp_path):
    path = tmp_path / "session.jsonl"
    backend = FakeBackend(token_delay_s=0.005)
    breaker = CircuitBreaker(BreakerConfig(minimum_calls=1))
    with EngineService(backend, session_log=SessionLog(path), breaker=breaker, initial_mode="burst") as service:
        finished = generate(service, GenerationRequest("héllo 🦊", max_new_tokens=3))
        cancelled = generate(service, LONG, timeout=0.05)
        rejected = generate(service, GenerationRequest(" "))
        backend.fail_on_token = 1
        failed = generate(service, GenerationRequest("fail"))
    records = read_session(path)
    kinds = [r["kind"] for r in records]
    assert kinds == [
        "session_start",
        "loaded",
        "mode_changed",
        "finished",
        "cancelled",
        "rejected",
        "failed",
        "breaker_transition",
    ]
    start = records[0]
    assert (start["backend"], start["version"]) == ("fake", "0.1.0")
    by_id = {r["request_id"]: r for r in records if r.get("request_id") is not None}
    assert by_id[finished.request_id]["request"]["prompt"] == "héllo 🦊"
    assert by_id[finished.request_id]["text"] == finished.text == "The quick brown"
    assert by_id[finished.request_id]["metrics"]["mode"] == "burst"
    assert by_id[cancelled.request_id]["text"] == cancelled.text
    assert by_id[rejected.request_id]["reason"] == "prompt is only whitespace"
    assert by_id[failed.request_id]["error"] == "fake backend failed at token 1"
    assert records[-1]["reason"] == "1 of the last 2 calls failed"  # the finished one and this
