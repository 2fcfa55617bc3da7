"""The EngineClient surface through EngineService: per-request handles (threads and
asyncio), mode changes to wait on, exclusive use, the two serving policies (the breaker
judges service time; queue waits are bounded) and events that round-trip through records."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import threading
import time

import pytest
from fakes import EventRecorder, FakeBackend, FakeClock, one_event_of_each, wait_until

from antinet_tui.engine.errors import EngineError
from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.runtime.breaker import BreakerConfig, BreakerState, CircuitBreaker
from antinet_tui.runtime.client import EngineClient, EngineReserved, ServiceState, generate
from antinet_tui.runtime.events import (
    Accepted,
    BreakerTransition,
    Cancelled,
    Event,
    Finished,
    Rejected,
    Token,
    event_types,
)
from antinet_tui.runtime.metrics import MetricsSummary
from antinet_tui.runtime.service import EngineService
from antinet_tui.runtime.session_log import SessionLog, read_session

LONG = GenerationRequest("write forever", max_new_tokens=4000, ignore_eos=True)


@pytest.fixture
def running():
    services: list[EngineService] = []

    def start(backend: FakeBackend, **options) -> tuple[EngineService, EventRecorder]:
        service = EngineService(backend, **options)
        recorder = EventRecorder()
        service.subscribe(recorder)
        services.append(service.start())
        assert service.wait_ready(5)
        return service, recorder

    yield start
    for service in services:
        service.shutdown()


def test_the_service_is_an_engine_client():
    assert isinstance(EngineService(FakeBackend()), EngineClient)


# -- handles ---------------------------------------------------------------------------


def test_a_handle_yields_its_own_events_in_order_while_another_request_streams(running):
    service, events = running(FakeBackend(token_delay_s=0.002), queue_size=4)
    first = service.submit(GenerationRequest("one", max_new_tokens=6), origin="10.0.0.7:4100")
    second = service.submit(GenerationRequest("two", max_new_tokens=4))
    read: dict[int, list[Event]] = {}

    def read_all(handle) -> None:
        read[handle.request_id] = list(handle)

    readers = [threading.Thread(target=read_all, args=(h,)) for h in (first, second)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(5)
    for handle, n in ((first, 6), (second, 4)):
        mine = read[handle.request_id]
        assert [e.kind for e in mine] == ["accepted", "started"] + ["token"] * n + ["finished"]
        assert all(e.request_id == handle.request_id for e in mine)
        assert mine == events.of(handle.request_id)  # what a global subscriber saw of it, in the same order
        assert list(handle) == mine and handle.result() is mine[-1]  # read again, from the start
    assert read[first.request_id][0].origin == "10.0.0.7:4100" and read[second.request_id][0].origin == "operator"


def test_async_for_reads_handles_without_a_thread_each(running):
    service, _ = running(FakeBackend(token_delay_s=0.002), queue_size=16)
    threads_before = threading.active_count()

    async def main() -> list[list[str]]:
        handles = [service.submit(GenerationRequest(f"n{i}", max_new_tokens=3)) for i in range(10)]

        async def read(handle) -> list[str]:
            kinds = [event.kind async for event in handle]
            assert (await handle.result_async()).kind == "finished"
            return kinds

        readers = asyncio.gather(*(read(h) for h in handles))
        await asyncio.sleep(0.01)
        assert threading.active_count() == threads_before  # ten readers, no thread among them
        return await readers

    kinds = asyncio.run(main())
    assert kinds == [["accepted", "started", "token", "token", "token", "finished"]] * 10


def test_result_times_out_without_ending_the_request(running):
    service, _ = running(FakeBackend(token_delay_s=0.01))
    with service.submit(LONG) as handle:
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.1)
        assert not handle.done and service.running_count() == 1
    assert isinstance(handle.result(5), Cancelled)  # leaving `with` cancelled it


@pytest.mark.parametrize("where", ["running", "queued"])
def test_dropping_an_unfinished_handle_cancels_its_request(running, where):
    gate = threading.Event()
    backend = FakeBackend(token_delay_s=0.01, start_gate=gate if where == "queued" else None)
    service, events = running(backend)
    holder = service.submit(GenerationRequest("ahead")) if where == "queued" else None
    handle = service.submit(LONG)
    request_id = handle.request_id
    if where == "running":
        events.wait_for(lambda e: isinstance(e, Token) and e.request_id == request_id)
    del handle
    gc.collect()
    cancelled = events.wait_for(lambda e: isinstance(e, Cancelled) and e.request_id == request_id)
    assert cancelled.metrics.generated_tokens < 4000
    gate.set()
    if holder is not None:
        assert isinstance(holder.result(5), Finished)


def test_a_finished_handle_dropped_or_closed_cancels_nothing(running):
    service, events = running(FakeBackend())
    handle = service.submit(GenerationRequest("hi", max_new_tokens=2))
    assert isinstance(handle.result(5), Finished)
    handle.close()
    assert not handle.cancel()
    follower = service.submit(GenerationRequest("next", max_new_tokens=2))
    del handle
    gc.collect()
    assert isinstance(follower.result(5), Finished)
    assert "cancelled" not in events.kinds()


def test_a_refused_handle_holds_its_rejection(running):
    service, events = running(FakeBackend())
    handle = service.submit(GenerationRequest("   "))
    assert (handle.accepted, handle.done) == (False, True)
    assert handle.rejection.cause == "bad_input" and handle.rejection.reason == "prompt is only whitespace"
    assert list(handle) == [handle.rejection] and handle.result() is handle.rejection
    assert events.wait_for(lambda e: isinstance(e, Rejected)) == handle.rejection  # everyone else sees it too


def test_generate_times_out_to_a_cancel(running):
    service, _ = running(FakeBackend(token_delay_s=0.01))
    seen: list[int] = []
    result = generate(service, LONG, lambda token: seen.append(token.index), timeout=0.2)
    assert isinstance(result, Cancelled) and len(result.token_ids) == len(seen) > 0
    assert seen == list(range(len(seen)))


def test_a_stopped_service_ends_waiting_mode_changes_with_an_error(running):
    service, _ = running(FakeBackend(start_gate=threading.Event()))
    handle = service.submit(GenerationRequest("held"))
    wait_until(lambda: service.running_count() == 1)
    change = service.set_mode("burst")  # waits for the held request
    service.shutdown()
    with pytest.raises(EngineError, match="the service stopped before mode 'burst' was applied"):
        change.wait(5)
    assert isinstance(handle.result(5), Cancelled)


# -- modes -------------------------------------------------------------------------------


def test_set_mode_returns_a_change_to_wait_on(running):
    service, _ = running(FakeBackend())
    changed = service.set_mode("power_saver").wait(5)
    assert (changed.requested, changed.readback.effective, changed.error) == ("power_saver", "power_saver", None)
    assert service.mode() == changed.readback


def test_a_superseded_change_ends_with_the_one_that_replaced_it(running):
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    service, _ = running(backend)
    held = service.submit(GenerationRequest("held"))
    wait_until(lambda: service.running_count() == 1)
    first, second = service.set_mode("burst"), service.set_mode("power_saver")
    with pytest.raises(TimeoutError):
        first.wait(0.05)
    gate.set()
    assert first.wait(5) is second.wait(5)
    assert first.wait().requested == "power_saver" and backend.applied_modes == ["power_saver"]
    assert isinstance(held.result(5), Finished)


def test_a_mode_that_fails_is_told_to_its_waiter(running):
    service, _ = running(FakeBackend(mode_errors={"burst": EngineError("device busy")}))
    changed = service.set_mode("burst").wait(5)
    assert (changed.error, changed.readback) == ("device busy", None)


# -- exclusive use -------------------------------------------------------------------------


def test_a_reservation_refuses_everyone_else_with_the_holders_name(running):
    service, _ = running(FakeBackend())
    with service.reserve("experiment"):
        with pytest.raises(EngineReserved, match="reserved by the experiment"):
            service.reserve("someone else")
        with pytest.raises(EngineReserved, match="the modes are reserved by the experiment"):
            service.set_mode("burst")
        refused = service.submit(GenerationRequest("hi"), origin="127.0.0.1:9")
        assert (refused.rejection.cause, refused.rejection.retry_after_s) == ("reserved", None)
        mine = generate(service, GenerationRequest("hi", max_new_tokens=2), origin="experiment")
        assert isinstance(mine, Finished)
        assert service.set_mode("burst", requested_by="experiment").wait(5).readback.effective == "burst"
    assert service.set_mode("default").wait(5).readback.effective == "default"
    assert isinstance(generate(service, GenerationRequest("hi", max_new_tokens=2)), Finished)


# -- serving policies ------------------------------------------------------------------------


def test_a_request_waiting_too_long_is_refused_with_a_retry_hint(running):
    gate = threading.Event()
    service, events = running(FakeBackend(start_gate=gate), max_queue_wait_s=0.3)
    ahead = service.submit(GenerationRequest("ahead"))
    wait_until(lambda: service.running_count() == 1)
    waiting = service.submit(GenerationRequest("behind"), origin="10.1.1.1:80")
    assert waiting.accepted
    ended = waiting.result(5)
    assert isinstance(ended, Rejected) and ended.cause == "queue_timeout"
    assert ended.reason.startswith("waited 0.") and ended.reason.endswith("the most allowed is 0.3 s")
    assert ended.retry_after_s == 1.0  # no request finished yet to tell a typical time by
    assert [e.kind for e in waiting] == ["accepted", "rejected"] and service.queue_length() == 0
    gate.set()
    assert isinstance(ahead.result(5), Finished)  # the running one is not waiting: untouched
    assert service.metrics_summary().rejections == {"queue_timeout": 1}


def test_the_breaker_judges_service_time_not_queue_wait(running):
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=4, slow_call_ms=150))
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    service, _ = running(backend, breaker=breaker)
    first = service.submit(GenerationRequest("first", max_new_tokens=2))
    queued = [service.submit(GenerationRequest(f"q{i}", max_new_tokens=2)) for i in range(3)]
    time.sleep(0.3)  # the load to be judged: the queued requests wait 300 ms for the first to start
    gate.set()
    results = [h.result(5) for h in (first, *queued)]
    assert all(r.metrics.e2e_ms > 250 for r in results)  # slower than the threshold end to end ...
    assert all(r.metrics.service_ms < 150 for r in results[1:])  # ... but quick once started
    view = service.breaker_view()
    assert view.state is BreakerState.CLOSED
    assert view.slow_calls == 1 and view.calls_in_window == 4  # only the first, held at the gate, was slow

    backend.token_delay_s = 0.1  # now the engine itself is slow
    for _ in range(2):
        generate(service, GenerationRequest("slow", max_new_tokens=2, ignore_eos=True))
    assert service.breaker_view().state is BreakerState.OPEN


def test_refusals_say_when_to_retry(running):
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(minimum_calls=1, open_wait_s=30), clock=clock)
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    service, _ = running(backend, breaker=breaker, queue_size=1)
    gate.set()
    for _ in range(3):
        generate(service, GenerationRequest("x", max_new_tokens=2))
    typical_s = service.metrics_summary().percentiles("service_ms")["p50"] / 1000
    gate.clear()
    held = service.submit(GenerationRequest("held"))
    wait_until(lambda: service.running_count() == 1)
    queued = service.submit(GenerationRequest("queued"))
    full = service.submit(GenerationRequest("full"))
    assert full.rejection.cause == "queue_full" and full.rejection.retry_after_s == pytest.approx(typical_s)
    gate.set()
    for handle in (held, queued):
        handle.result(5)

    service.reset_breaker()  # an empty window: the next failure opens it
    backend.fail_on_token = 1
    generate(service, GenerationRequest("boom"))
    clock.advance(12)
    refused = service.submit(GenerationRequest("hi")).rejection
    assert refused.cause == "breaker_open" and refused.retry_after_s == pytest.approx(18)
    service.isolate_breaker()
    assert service.submit(GenerationRequest("hi")).rejection.retry_after_s is None  # until a person resets it


def test_open_turns_half_open_on_time_without_a_request(running):
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(minimum_calls=1, open_wait_s=30), clock=clock)
    service, events = running(FakeBackend(fail_on_token=1), breaker=breaker)
    generate(service, GenerationRequest("boom"))
    events.wait_for(lambda e: isinstance(e, BreakerTransition) and e.to_state is BreakerState.OPEN)
    assert service.breaker_view().seconds_until_probe == 30
    clock.advance(30)
    half_open = events.wait_for(lambda e: isinstance(e, BreakerTransition) and e.to_state is BreakerState.HALF_OPEN)
    assert half_open.reason == "waited 30 s; letting 1 probe call through"
    assert service.breaker_view().state is BreakerState.HALF_OPEN


# -- snapshots and records -------------------------------------------------------------------


def test_snapshots_are_values_that_do_not_follow_the_service(running):
    service, _ = running(FakeBackend())
    before = service.metrics_summary()
    generate(service, GenerationRequest("hi", max_new_tokens=3))
    after = service.metrics_summary()
    assert before.outcomes["finished"] == 0 and before.series("e2e_ms") == ()
    assert after.outcomes["finished"] == 1 and len(after.series("service_ms")) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.window = 3  # type: ignore[misc]
    assert service.state is ServiceState.READY and service.state == "ready"


def test_the_session_log_records_each_requests_origin(tmp_path):
    path = tmp_path / "session.jsonl"
    with EngineService(FakeBackend(), session_log=SessionLog(path)) as service:
        assert service.wait_ready(5)
        generate(service, GenerationRequest("hi", max_new_tokens=2), origin="127.0.0.1:53122")
        generate(service, GenerationRequest("hi", max_new_tokens=2))
    finished = [r for r in read_session(path) if r["kind"] == "finished"]
    assert [r["origin"] for r in finished] == ["127.0.0.1:53122", "operator"]
    assert all(isinstance(Event.from_record(r), Finished) for r in finished)  # extra keys are ignored


def test_every_event_type_round_trips_through_its_record():
    events = one_event_of_each()
    assert {type(e) for e in events} == set(event_types().values())
    for event in events:
        record = json.loads(json.dumps(event.to_record(), allow_nan=False))  # as the log or the wire carries it
        assert Event.from_record(record) == event, event.kind


def test_records_that_are_not_events_are_refused():
    with pytest.raises(ValueError, match="not an event record: kind 'session_start'"):
        Event.from_record({"kind": "session_start", "wall": 1.0})
    record = Token(1, 5, "x", 0).to_record()
    del record["token_id"]
    with pytest.raises(ValueError, match="Token record lacks 'token_id'"):
        Event.from_record(record)
    with pytest.raises(ValueError):
        Event.from_record({**Rejected(1, "no", "queue_full").to_record(), "cause": "bored"})


def test_a_metrics_summary_round_trips_too():
    summary = MetricsSummary(100, {"e2e_ms": (1.0, 2.5)}, {"finished": 2}, {"queue_full": 1}, {"open": 1})
    from antinet_tui.runtime.events import from_jsonable, jsonable

    assert from_jsonable(MetricsSummary, json.loads(json.dumps(jsonable(summary)))) == summary


def test_a_conversation_is_previewed_by_its_last_user_turn(running):
    from antinet_tui.engine.protocol import Message

    service, _ = running(FakeBackend())
    conversation = (Message("system", "be brief"), Message("user", "hi"), Message("assistant", "hello"),
                    Message("user", "and the capital of France?"))
    handle = service.submit(GenerationRequest("", messages=conversation, max_new_tokens=2))
    accepted = next(iter(handle))
    assert isinstance(accepted, Accepted) and accepted.prompt == "and the capital of France?"
    assert isinstance(handle.result(5), Finished)
