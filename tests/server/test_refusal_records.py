"""Requests refused over HTTP are in the session log, once each: those the HTTP layer
refuses itself as an `http_error` record (who, what, the status, cause and message the
client got; never the body or the key), and as one headless line; those the runtime
refuses as its `rejected` record alone. A client is answered the same when its record
cannot be written."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from disks import fill, pad_to_page
from fakes import EventRecorder, wait_until

from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.frontends.server.errors import RECORDED_TEXT_LIMIT as LIMIT
from antinet_tui.runtime.events import SessionLogFailed, Started
from antinet_tui.runtime.session_log import read_session

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"
SECRET_PROMPT = "a prompt that must stay out of the log"
HELLO = [{"role": "user", "content": SECRET_PROMPT}]


@dataclass
class Reply:
    origin: str  # the client's end of the connection, as the server sees it
    status: int
    body: dict


def send(url: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> Reply:
    """One request over its own connection, so the client's address is known."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.connect()
        host, port = connection.sock.getsockname()[:2]
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return Reply(f"{host}:{port}", response.status, json.loads(response.read()))
    finally:
        connection.close()


def chat(body: object) -> bytes:
    return json.dumps(body).encode()


# (what, method, path, headers, body, status, cause, param)
REFUSALS = [
    ("bad JSON", "POST", CHAT, AUTH, b'{"messages": [', 400, "invalid_json", None),
    ("invalid UTF-8", "POST", CHAT, AUTH, b"\xff\xfe{}", 400, "invalid_json", None),
    ("a wrong type", "POST", CHAT, AUTH, chat({"messages": HELLO, "temperature": "hot"}), 400,
     "invalid_request_error", "temperature"),
    ("n > 1", "POST", CHAT, AUTH, chat({"messages": HELLO, "n": 2}), 400, "unsupported_parameter", "n"),
    ("tools", "POST", CHAT, AUTH, chat({"messages": HELLO, "tools": [{"type": "function"}]}), 400,
     "unsupported_parameter", "tools"),
    ("no key", "POST", CHAT, {}, chat({"messages": HELLO}), 401, "invalid_api_key", None),
    ("a wrong key", "GET", "/v1/models", {"Authorization": "Bearer not-the-key-4711"}, None, 401,
     "invalid_api_key", None),
    ("an unknown model", "POST", CHAT, AUTH, chat({"model": "gpt-4o", "messages": HELLO}), 404,
     "model_not_found", "model"),
    ("an unknown route", "GET", "/v1/whatever", AUTH, None, 404, "not_found", None),
    ("a body over the limit", "POST", CHAT, AUTH, chat({"messages": HELLO, "pad": "x" * 3000}), 413,
     "request_too_large", None),
    ("an attach route without the key", "GET", "/attach/snapshot", {}, None, 401, "invalid_api_key", None),
]


@pytest.mark.parametrize("what, method, path, headers, body, status, cause, param", REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_each_refusal_of_the_http_layer_is_one_record_with_what_the_client_was_told(
        start_server, tiny_model, what, method, path, headers, body, status, cause, param):
    server = start_server(tiny_model, api_key=KEY, max_body_bytes=2000, max_new_tokens=4)
    before = len(read_session(server.log_file))
    reply = send(server.url, method, path, headers, body)

    assert reply.status == status and set(reply.body) == {"error"}  # OpenAI's shape
    error = reply.body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    records = read_session(server.log_file)[before:]  # written before the answer went out
    assert len(records) == 1, records
    record = records[0]
    assert record["kind"] == "http_error" and record["origin"] == reply.origin
    assert (record["method"], record["path"], record["status"]) == (method, path, status)
    assert record["cause"] == cause == (error["code"] or error["type"])
    assert (record["message"], record["param"]) == (error["message"], error["param"])
    assert isinstance(record["wall"], float)
    log = server.log_file.read_text()
    assert SECRET_PROMPT not in log and KEY not in log and "not-the-key-4711" not in log
    [told] = server.served  # and one headless line, from the same place (errors.Refusals)
    assert (told.request_id, told.origin, told.method, told.route, told.status, told.cause, told.error) == (
        None, reply.origin, method, path, status, cause, error["message"])


def test_a_record_keeps_a_bounded_part_of_a_long_path_or_message(start_server, tiny_model):
    """A client chooses the path and what a message quotes (a model's name): its record
    must not grow with them."""
    server = start_server(tiny_model)
    route = "/v1/" + "r" * 5000
    told = send(server.url, "POST", CHAT, {}, chat({"model": "m" * 50_000, "messages": HELLO})).body["error"]
    assert send(server.url, "GET", route, {}).status == 404
    unknown_model, unknown_route = [r for r in read_session(server.log_file) if r["kind"] == "http_error"]
    assert len(told["message"]) > 50_000  # the client is told in full
    assert unknown_model["message"] == told["message"][:LIMIT] + f"... ({len(told['message']) - LIMIT} more characters)"
    assert unknown_route["path"] == route[:LIMIT] + f"... ({len(route) - LIMIT} more characters)"
    assert len(unknown_route["message"]) < LIMIT + 100


def test_loading_and_draining_refusals_are_recorded_too(start_server, tiny_model):
    server = start_server(tiny_model, start_service=False)  # the model loads only once started
    loading = send(server.url, "POST", CHAT, {}, chat({"messages": HELLO}))
    assert loading.status == 503 and loading.body["error"]["code"] == "model_loading"
    server.service.start()
    assert server.service.wait_ready(30)
    state = server.server.state
    state.draining = True  # what a SIGTERM sets (without the deadline that would stop the server)
    try:
        draining = send(server.url, "POST", CHAT, {}, chat({"messages": HELLO}))
    finally:
        state.draining = False
    assert draining.status == 503 and draining.body["error"]["code"] == "draining"
    records = [r for r in read_session(server.log_file) if r["kind"] == "http_error"]
    assert [(r["origin"], r["status"], r["cause"]) for r in records] == [
        (loading.origin, 503, "model_loading"), (draining.origin, 503, "draining")]


def test_a_refusal_of_the_runtime_is_its_own_record_alone(start_server, slower_model):
    server = start_server(slower_model, queue_size=1)
    long = GenerationRequest("hold the engine", max_new_tokens=2000, ignore_eos=True, chat=False)
    running = server.service.submit(long)  # the operator's answer holds the engine ...
    next(e for e in running.events(timeout=30) if isinstance(e, Started))
    waiting = server.service.submit(long)  # ... and another fills the queue's one place
    try:
        full = send(server.url, "POST", CHAT, {}, chat({"messages": HELLO, "max_tokens": 4}))
        too_long = send(server.url, "POST", CHAT, {}, chat({"messages": [
            {"role": "user", "content": "word " * 5000}], "max_tokens": 4}))  # over the context: the runtime's 400
    finally:
        waiting.cancel()
        running.cancel()
    assert full.status == 429 and full.body["error"]["code"] == "queue_full"
    assert too_long.status == 400 and "the context holds" in too_long.body["error"]["message"]

    def records_of(reply: Reply) -> list[dict]:
        return [r for r in read_session(server.log_file) if r.get("origin") == reply.origin]

    for reply, cause in ((full, "queue_full"), (too_long, "bad_input")):
        wait_until(lambda reply=reply: records_of(reply))  # the runtime writes it from its dispatcher
        records = records_of(reply)
        assert [(r["kind"], r["cause"]) for r in records] == [("rejected", cause)], records
    assert not [r for r in read_session(server.log_file) if r["kind"] == "http_error"]


def test_a_refusal_is_answered_alike_when_the_log_cannot_take_its_record(start_server, tiny_model, small_disk):
    server = start_server(tiny_model, log_file=small_disk / "session.jsonl")
    recorder = EventRecorder()
    server.service.subscribe(recorder)
    wait_until(lambda: server.log_file.stat().st_size > 0)
    pad_to_page(server.log_file, slack=10)  # the next record needs a page the disk will not have
    filler = fill(small_disk)

    lost = send(server.url, "POST", CHAT, {}, b"{not json")
    assert lost.status == 400 and lost.body["error"]["code"] == "invalid_json"
    failed = recorder.wait_for(lambda e: isinstance(e, SessionLogFailed))
    assert failed.lost == 1 and "No space left" in failed.reason
    assert server.service.log_status().lost == 1
    assert send(server.url, "GET", "/health", {}).status == 200  # still up

    filler.unlink()  # room again: the next refusal is recorded, and no half line is left
    kept = send(server.url, "POST", CHAT, {}, chat({"messages": HELLO, "n": 3}))
    assert kept.status == 400 and kept.body["error"]["code"] == "unsupported_parameter"
    records = read_session(server.log_file)
    assert records.skipped == []
    assert [r["origin"] for r in records if r["kind"] == "http_error"] == [kept.origin]
