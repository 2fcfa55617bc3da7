"""The API key on every route but /health, and /metrics as Prometheus parses it."""

from __future__ import annotations

import time

import httpx
import pytest
from openai import AuthenticationError, OpenAI
from prometheus_client.parser import text_string_to_metric_families

HELLO = [{"role": "user", "content": "hello"}]


def test_the_key_is_enforced_on_every_route_but_health(start_server, tiny_model):
    server = start_server(tiny_model, api_key="s3cret-key", max_new_tokens=4)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/health").status_code == 200
        for method, path in (("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models"),
                             ("GET", "/ready"), ("GET", "/metrics")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-key"},
                            {"Authorization": "Bearer s3cret-ke"}):
                response = http.request(method, path, headers=headers, json={"messages": HELLO, "prompt": "x"})
                assert response.status_code == 401, (path, headers)
                assert response.json()["error"]["code"] == "invalid_api_key"
                assert "Authorization: Bearer KEY" in response.json()["error"]["message"]
        good = {"Authorization": "Bearer s3cret-key"}
        assert http.get("/v1/models", headers=good).status_code == 200
        assert http.get("/metrics", headers=good).status_code == 200
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.api, api_key="nope", max_retries=0).models.list()
    client = OpenAI(base_url=server.api, api_key="s3cret-key", max_retries=0)
    reply = client.chat.completions.create(model=client.models.list().data[0].id, messages=HELLO)
    assert reply.usage.completion_tokens >= 1


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(family, suffix: str = "", **labels) -> float:
    matches = [s.value for s in family.samples if s.name == family.name + suffix
               and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (family.name, suffix, labels, family.samples)
    return matches[0]


def test_metrics_parse_and_count_what_clients_saw(start_server, tiny_model):
    server = start_server(tiny_model, max_new_tokens=5)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = families(http.get("/metrics").text)
        for name, kind in (("antinet_time_to_first_token_seconds", "histogram"),
                           ("antinet_e2e_request_latency_seconds", "histogram"),
                           ("antinet_time_per_output_token_seconds", "histogram"),
                           ("antinet_request_queue_time_seconds", "histogram"),
                           ("antinet_requests", "counter"), ("antinet_request_rejections", "counter"),
                           ("antinet_prompt_tokens", "counter"), ("antinet_generation_tokens", "counter"),
                           ("antinet_requests_waiting", "gauge"), ("antinet_requests_running", "gauge"),
                           ("antinet_breaker_state", "gauge"), ("antinet_performance_mode", "gauge"),
                           ("antinet_model_info", "gauge"), ("antinet_service_state", "gauge"),
                           ("antinet_http_clients_connected", "gauge"), ("process_resident_memory_bytes", "gauge"),
                           ("process_cpu_seconds", "counter")):
            assert before[name].type == kind, name
        assert sample(before["antinet_requests"], "_total", outcome="finished") == 0
        assert sample(before["antinet_breaker_state"], state="closed") == 1
        assert sample(before["antinet_service_state"], state="ready") == 1
        info = before["antinet_model_info"].samples[0].labels
        assert info["model"] == "tiny-llama" and info["backend"] == server.service.model_info().backend

        usage = [http.post("/v1/chat/completions", json={"messages": HELLO}).json()["usage"] for _ in range(3)]
        server.service.isolate_breaker()
        assert http.post("/v1/chat/completions", json={"messages": HELLO}).status_code == 503
        # counted when the runtime's event is dispatched and after the answer's last byte:
        # a scrape right after the answer may come a moment before either
        deadline = time.monotonic() + 10
        while True:
            after = families(http.get("/metrics").text)
            counted = (sample(after["antinet_requests"], "_total", outcome="rejected"),
                       sample(after["antinet_http_responses"], "_total", route="/v1/chat/completions", status="503"))
            if counted == (1, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.02)

    assert sample(after["antinet_requests"], "_total", outcome="finished") == 3
    assert sample(after["antinet_requests"], "_total", outcome="rejected") == 1
    assert sample(after["antinet_request_rejections"], "_total", cause="breaker_open") == 1
    assert sample(after["antinet_generation_tokens"], "_total") == sum(u["completion_tokens"] for u in usage)
    assert sample(after["antinet_prompt_tokens"], "_total") == sum(u["prompt_tokens"] for u in usage)
    assert sample(after["antinet_time_to_first_token_seconds"], "_count") == 3
    assert sample(after["antinet_e2e_request_latency_seconds"], "_count") == 3
    assert sample(after["antinet_breaker_state"], state="isolated") == 1
    assert sample(after["antinet_http_responses"], "_total", route="/v1/chat/completions", status="200") == 3
    assert sample(after["antinet_http_responses"], "_total", route="/v1/chat/completions", status="503") == 1
    assert sample(after["process_resident_memory_bytes"]) > 10e6
