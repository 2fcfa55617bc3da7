"""The attach wire format and the remote client, without a dashboard: every event type
round-trips through the server's packing, SSE framing and the client's reading; a
garbled or dropped stream is survived; a late watcher starts from the snapshot; the
server ends what a watcher that went away left running; an experiment runs remotely."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time

import httpx
import pytest
from fakes import one_event_of_each, wait_until

from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.frontends.server.attach import frame, pack
from antinet_tui.runtime.breaker import BreakerState
from antinet_tui.runtime.connection import ConnectionChanged, ConnectionState
from antinet_tui.runtime.events import (
    Accepted,
    Cancelled,
    Event,
    Finished,
    Token,
    event_types,
)
from antinet_tui.runtime.remote import RemoteClient, sse_messages


def _comparable(event: Event) -> Event:
    """t_ns is each process's own clock; token walls travel to 0.1 ms."""
    event = dataclasses.replace(event, t_ns=0)
    if isinstance(event, Token):
        event = dataclasses.replace(event, wall=round(event.wall, 4))
    return event


def test_every_event_type_round_trips_through_the_stream():
    events = one_event_of_each()
    assert {type(e) for e in events} == set(event_types().values())
    records = pack(list(enumerate(events, start=1)))
    assert [r["kind"] for r in records].count("tokens") == 1  # three tokens in a row travel as one record
    data = frame("events", {"events": records}).decode()
    [(name, body)] = list(sse_messages(data.splitlines()))
    assert name == "events"

    client = RemoteClient("http://127.0.0.1:9")  # never started: only its reading is used
    received: list[Event] = []
    client.subscribe(received.append)
    client._apply_events(json.loads(body))
    assert [_comparable(e) for e in received] == [_comparable(e) for e in events]
    assert client.mode() == events[-3].readback  # the applied ModeChanged's readback is the mode now
    assert client.model_info() == events[1].model_info


# -- a hand-made server: what a broken or hostile peer may send ------------------------------------


SNAPSHOT = {"protocol": 1, "instance": "abc", "session": "s1", "seq": 0, "state": "ready", "queue": 0, "running": 0,
            "mode": None, "breaker": None, "metrics": None, "load_error": None, "model_info": None,
            "capabilities": None, "requests": [], "system": []}


class RawServer:
    """Answers every connection with `script(n)` (n counts connections), then closes."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                for chunk in self.script(self.connections):
                    if chunk is None:
                        time.sleep(0.2)
                        continue
                    conn.sendall(chunk)

    def close(self) -> None:
        self.sock.close()


def _accepted_frame(seq: int, request_id: int) -> bytes:
    return frame("events", {"events": [{"seq": seq, **Accepted(request_id, "p", 4, 1).to_record()}]})


def test_a_garbled_stream_is_survived_frame_by_frame():
    def script(n):
        yield frame("snapshot", {**SNAPSHOT, "instance": "abc"})
        yield b"event: events\ndata: {not json\n\n"
        yield b"event: events\ndata: [1, 2]\n\n"
        yield b"event: events\ndata: {\"events\": [{\"seq\": 1, \"kind\": \"nonsense\"}]}\n\n"
        yield b"event: system\ndata: {\"sample\": 3}\n\n"
        yield b"\xff\xfe\x00 not a line of anything\n\n"
        yield b"event: whatever\ndata: {}\n\n"  # an unknown frame name is ignored
        yield _accepted_frame(2 + 10 * n, n)
        yield None  # a moment before the connection drops
    server = RawServer(script)
    client = RemoteClient(server.url, backoff_first_s=0.2)
    got: list[Event] = []
    client.subscribe(got.append)
    try:
        client.start()
        wait_until(lambda: any(isinstance(e, Accepted) for e in got), "the good frame after the garbage")
        assert client.garbled == 4
        wait_until(lambda: any(isinstance(e, ConnectionChanged) and e.state is ConnectionState.RECONNECTING
                               for e in got), "reconnecting after the drop")
        wait_until(lambda: [e.request_id for e in got if isinstance(e, Accepted)] == [1, 2], "the second connection")
        states = [e.state for e in got if isinstance(e, ConnectionChanged)]
        assert states[0] is ConnectionState.LIVE and ConnectionState.LIVE in states[states.index(
            ConnectionState.RECONNECTING):]
    finally:
        client.shutdown()
        server.close()


def test_a_stream_that_does_not_start_with_a_snapshot_is_retried_not_trusted():
    def script(n):
        if n == 1:
            yield _accepted_frame(1, 1)
        else:
            yield frame("snapshot", SNAPSHOT)
            yield None
    server = RawServer(script)
    client = RemoteClient(server.url, backoff_first_s=0.1)
    got: list[Event] = []
    client.subscribe(got.append)
    try:
        client.start()
        assert client.wait_ready(10)
        wait_until(lambda: server.connections >= 2, "a second connection")
        assert not any(isinstance(e, Accepted) for e in got)  # the event before a snapshot was not used
        reconnecting = [e for e in got if isinstance(e, ConnectionChanged) and e.state is ConnectionState.RECONNECTING]
        assert reconnecting and "not a snapshot" in reconnecting[0].detail
    finally:
        client.shutdown()
        server.close()


def test_nothing_listening_means_reconnecting_with_a_countdown():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = RemoteClient(url, backoff_first_s=2.0)
    got: list[Event] = []
    client.subscribe(got.append)
    try:
        client.start()
        wait_until(lambda: any(isinstance(e, ConnectionChanged) and e.describe() == "reconnecting in 2 s" for e in got),
                   "the countdown")
        handle = client.submit(GenerationRequest("hi"))  # refused at once, never raised
        assert not handle.accepted and handle.rejection is not None and "not sent" in handle.rejection.reason
    finally:
        client.shutdown()


# -- against a real server (in this process, on a real socket) ---------------------------------------


@pytest.fixture
def tiny_server(start_server, roomy_model):
    return start_server(roomy_model)


def test_a_late_watcher_starts_from_the_snapshot(tiny_server):
    service = tiny_server.service
    from antinet_tui.runtime.client import generate

    for _ in range(3):
        generate(service, GenerationRequest("hello", max_new_tokens=4, temperature=0.0))
    client = RemoteClient(tiny_server.url)
    got: list[Event] = []
    client.subscribe(got.append)
    try:
        client.start()
        assert client.wait_ready(10)
        assert client.metrics_summary().outcomes["finished"] == 3
        assert len(client.metrics_summary().series("e2e_ms")) == 3
        assert [e.request_id for e in got if isinstance(e, Finished)] == [1, 2, 3]  # the history, at once
        assert client.model_info() == service.model_info()
        assert client.mode() == service.mode()
        assert client.breaker_view().state is BreakerState.CLOSED
        wait_until(lambda: client.system._samples, "the server's system samples")
    finally:
        client.shutdown()


def test_the_snapshot_keeps_only_the_recent_requests_even_when_all_are_refused(tiny_server):
    """The late watchers' history is bounded by requests, whatever ended them: with the
    breaker isolated every request is refused at submission (no Accepted), and a server
    refusing clients all night must not keep a record of each."""
    from antinet_tui.frontends.server.attach import RECENT_REQUESTS

    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(base_url=tiny_server.url, timeout=30) as http:
        assert http.post("/attach/breaker/isolate").status_code == 200
        for _ in range(RECENT_REQUESTS + 30):
            refused = http.post("/v1/chat/completions", json=body)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "breaker_open"
        requests = http.get("/attach/snapshot").json()["requests"]
    assert len(requests) == RECENT_REQUESTS
    ids = [r["end"]["request_id"] for r in requests]
    assert ids == sorted(ids) and ids[-1] == RECENT_REQUESTS + 30  # the newest are the ones kept


@pytest.mark.parametrize("how", ["the link drops", "the watcher cancels"])
def test_a_watchers_request_is_cancelled_there(how):
    """The engine pauses mid-answer (a fake backend, so the answer cannot end first); the
    watcher cancels it (Esc), or its link drops and the server cancels it for nobody."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "app"))
    from fake_backend import PausingBackend

    from antinet_tui.config import Settings
    from antinet_tui.frontends.server.runner import ServerThread, bind, build_server
    from antinet_tui.runtime.service import EngineService

    backend = PausingBackend(pause_after=2)
    service = EngineService(backend)
    sock = bind("127.0.0.1", 0)
    thread = ServerThread(build_server(service, Settings(no_log=True)), sock)
    service.start()
    thread.start()
    client = RemoteClient(f"http://127.0.0.1:{sock.getsockname()[1]}", backoff_first_s=0.1)
    try:
        client.start()
        assert client.wait_ready(10)
        handle = client.submit(GenerationRequest("hello", max_new_tokens=50))
        assert handle.accepted
        wait_until(backend.paused.is_set, "the answer to be under way")
        if how == "the link drops":
            client._response.close()  # the client itself reconnects
        else:
            assert handle.cancel()
        wait_until(lambda: service.running_count() == 0, "the server to stop generating")
        wait_until(lambda: handle.done, "the Cancelled event")
        result = handle.result()
        assert isinstance(result, Cancelled) and len(result.token_ids) == 2
    finally:
        backend.resume.set()
        client.shutdown()
        thread.drain_and_stop(10)
        service.shutdown()


def test_an_experiment_runs_on_the_remote_engine_with_its_reservation(tiny_server):
    from antinet_tui.runtime.experiment import Experiment, ExperimentPlan

    service = tiny_server.service
    client = RemoteClient(tiny_server.url)
    client.start()
    assert client.wait_ready(10)
    try:
        plan = ExperimentPlan(modes=("burst", "default"), token_counts=(4,), runs=2, warmup=0,
                              prompts=("Hello there",))
        plan.validate_for(client)
        blocked: list = []

        def on_run(result, done, total):
            if not blocked:  # mid-experiment, someone else is refused by the reservation
                blocked.append(generate_elsewhere(tiny_server.url))

        report = Experiment(client, plan, on_run=on_run).run()
        assert len(report.measured) == 4
        assert {r.run.mode for r in report.measured} == {"burst", "default"}
        assert blocked and blocked[0] == 503
        assert service.metrics_summary().outcomes["finished"] == 0  # measurements stay out of the history
    finally:
        client.shutdown()


def generate_elsewhere(url: str) -> int:
    return httpx.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=10).status_code
