"""More clients than the queue holds, and clients that go away."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from fakes import EventRecorder, wait_until
from prometheus_client.parser import text_string_to_metric_families

from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.runtime.events import Cancelled, Finished, Started, Token
from antinet_tui.runtime.session_log import read_session

CLIENTS = 24


async def stream_one(http: httpx.AsyncClient, i: int) -> dict:
    body = {"messages": [{"role": "user", "content": f"client {i} says hello"}], "max_tokens": 30, "stream": True,
            "temperature": 0.7, "seed": i}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"status": response.status_code, "retry_after": response.headers.get("Retry-After"),
                    "error": response.json()["error"]}
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    return {"status": 200, "finish": finish, "tokens": chunks[-1]["timings"]["predicted_n"]}


async def many_clients(url: str) -> list[dict]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        return await asyncio.wait_for(asyncio.gather(*(stream_one(http, i) for i in range(CLIENTS))), 120)


def test_beyond_the_queue_every_client_gets_an_answer_or_a_429_and_counts_agree(start_server, slower_model):
    server = start_server(slower_model, queue_size=2)
    # the operator's long answer holds the engine while the clients arrive, so the queue
    # surely fills (without it a fast engine could serve them as they come)
    blocker = server.service.submit(GenerationRequest("hold the engine", max_new_tokens=1000, ignore_eos=True,
                                                      chat=False))
    next(e for e in blocker.events(timeout=30) if isinstance(e, Started))
    results = asyncio.run(many_clients(server.url))  # none hangs: wait_for would raise
    held = blocker.result(60)
    assert isinstance(held, Finished), "the blocker ended before the clients came: nothing was tested"

    answered = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] != 200]
    assert len(answered) + len(refused) == CLIENTS
    assert all(r["finish"] in (["stop"], ["length"]) for r in answered)  # whole answers, properly ended
    assert len(answered) >= 2 and len(refused) >= CLIENTS // 2  # the queue's 2 places, then the rest refused
    for r in refused:
        assert r["status"] == 429 and r["error"]["code"] == "queue_full" and int(r["retry_after"]) >= 1

    metrics = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)}
    outcomes = {s.labels["outcome"]: s.value for s in metrics["antinet_requests"].samples
                if s.name == "antinet_requests_total"}
    assert outcomes == {"finished": len(answered) + 1, "rejected": len(refused), "cancelled": 0, "failed": 0}
    tokens = [s.value for s in metrics["antinet_generation_tokens"].samples if s.name.endswith("_total")]
    assert tokens == [sum(r["tokens"] for r in answered) + held.metrics.generated_tokens]

    server.stop()  # flushes and closes the session log
    records = [r for r in read_session(server.log_file) if r["kind"] in ("finished", "rejected")]
    served = [r for r in records if r["origin"] != "operator"]
    kinds = [r["kind"] for r in served]
    assert kinds.count("finished") == len(answered) and kinds.count("rejected") == len(refused)
    assert all(r["origin"].startswith("127.0.0.1:") for r in served)  # who sent each one
    assert [r["kind"] for r in records if r["origin"] == "operator"] == ["finished"]


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(smol_server):
    recorder = EventRecorder()
    unsubscribe = smol_server.service.subscribe(recorder)
    try:
        body = {"messages": [{"role": "user", "content": "Count from 1 to 500, one number per line."}],
                "max_tokens": 600, "stream": True, "temperature": 0}
        with httpx.Client(base_url=smol_server.url, timeout=60) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                seen = 0
                for line in response.iter_lines():
                    if '"content"' in line and '"role"' not in line:
                        seen += 1
                    if seen == 5:
                        break
                # leaving the block closes the connection mid-answer
        closed_at = time.perf_counter_ns()
        cancelled = recorder.wait_for(lambda e: isinstance(e, Cancelled), timeout=10)
    finally:
        unsubscribe()
    tokens = [e for e in recorder.events if isinstance(e, Token) and e.request_id == cancelled.request_id]
    after_close = [e for e in tokens if e.t_ns > closed_at]
    assert cancelled.metrics.generated_tokens < 600
    # the engine stopped within a few decode steps (~8 ms each here) of the close: the
    # server notices the disconnect on its event loop, then the cancel takes one step
    assert len(after_close) <= 5


def test_a_client_that_gives_up_on_a_plain_reply_cancels_it_too(smol_server):
    recorder = EventRecorder()
    unsubscribe = smol_server.service.subscribe(recorder)
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "Count from 1 to 500."}], "max_tokens": 600,
                           "temperature": 0}).encode()
        host, port = smol_server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            recorder.wait_for(lambda e: isinstance(e, Token) and e.index >= 3, timeout=30)
        cancelled = recorder.wait_for(lambda e: isinstance(e, Cancelled), timeout=10)
    finally:
        unsubscribe()
    assert cancelled.metrics.generated_tokens < 600
    wait_until(lambda: not smol_server.server.state.in_flight)


def test_a_request_that_waits_too_long_in_the_queue_is_a_429_before_any_stream_begins(start_server, real_model):
    server = start_server(real_model, max_queue_wait_s=0.3)
    long_body = {"messages": [{"role": "user", "content": "Count from 1 to 500, one number per line."}],
                 "max_tokens": 150, "stream": True, "temperature": 0}
    with httpx.Client(base_url=server.url, timeout=60) as first, httpx.Client(base_url=server.url, timeout=60) as second:
        with first.stream("POST", "/v1/chat/completions", json=long_body) as running:
            assert running.status_code == 200
            lines = running.iter_lines()
            next(line for line in lines if '"content": "' in line and '"role"' not in line)  # it is generating
            waited = second.post("/v1/chat/completions", json={**long_body, "max_tokens": 4})
            assert waited.status_code == 429, waited.text
            assert waited.json()["error"]["code"] == "queue_timeout" and int(waited.headers["Retry-After"]) >= 1
            rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"  # the running one was not disturbed
    assert json.loads([line for line in rest if line.startswith("data: {")][-1][6:])["choices"][0]["finish_reason"]


def test_an_engine_reserved_by_an_experiment_is_503_saying_so(start_server, tiny_model):
    server = start_server(tiny_model, max_new_tokens=4)
    with server.service.reserve("experiment"):
        refused = httpx.post(server.api + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                             timeout=30)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "reserved"
    assert "experiment" in refused.json()["error"]["message"] and "Retry-After" in refused.headers
    ok = httpx.post(server.api + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                    timeout=30)
    assert ok.status_code == 200
