"""Raw HTTP for every error the API promises: status, OpenAI's error body, Retry-After."""

from __future__ import annotations

import json

import httpx
import pytest

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def tiny_server(start_server, tiny_model):
    return start_server(tiny_model, max_new_tokens=16)


@pytest.fixture
def http(tiny_server):
    with httpx.Client(base_url=tiny_server.url, timeout=30) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def served_model(http) -> str:
    return http.get("/v1/models").json()["data"][0]["id"]


@pytest.mark.parametrize("body, param, words", [
    ({"messages": HELLO, "temperature": "hot"}, "temperature", "temperature must be a number"),
    ({"messages": HELLO, "temperature": 3}, "temperature", "from 0 to 2"),
    ({"messages": HELLO, "max_tokens": 0}, "max_tokens", "at least 1"),
    ({"messages": HELLO, "max_tokens": 2.5}, "max_tokens", "integer"),
    ({"messages": HELLO, "seed": True}, "seed", "integer"),
    ({"messages": HELLO, "stream": "yes"}, "stream", "true or false"),
    ({"messages": HELLO, "stop": 5}, "stop", "string or an array of strings"),
    ({"messages": HELLO, "top_p": 0}, "top_p", "more than 0"),
    ({"messages": "hello"}, "messages", "must be an array"),
    ({"messages": []}, "messages", "empty"),
    ({}, "messages", "required"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "string or an array"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content", "lone surrogate"),
    ({"messages": HELLO, "stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream"),
])
def test_wrong_fields_are_400_naming_the_field(http, body, param, words):
    error = error_of(http.post(CHAT, content=json.dumps(body)), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert words in error["message"]


@pytest.mark.parametrize("extra, param, words", [
    ({"n": 2}, "n", "n > 1"),
    ({"logprobs": True}, "logprobs", "logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tool and function calling"),
    ({"response_format": {"type": "json_object"}}, "response_format", "response_format"),
    ({"presence_penalty": 0.5}, "presence_penalty", "presence_penalty"),
])
def test_features_we_do_not_do_are_400_saying_so(http, extra, param, words):
    error = error_of(http.post(CHAT, json={"messages": HELLO, **extra}), 400)
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert words in error["message"] and "not supported" in error["message"]


@pytest.mark.parametrize("content, words", [
    (b'{"messages": [', "not valid JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "empty"),
    (b'{"messages": [], "temperature": NaN}', "not valid JSON"),
])
def test_malformed_bodies_are_400(http, content, words):
    error = error_of(http.post(CHAT, content=content), 400)
    assert error["code"] == "invalid_json" and words in error["message"]


def test_unknown_model_is_404_naming_the_served_one(http):
    served = served_model(http)
    error = error_of(http.post(CHAT, json={"model": "gpt-4o", "messages": HELLO}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-4o" in error["message"] and served in error["message"]


def test_a_prompt_longer_than_the_context_is_400_naming_both_counts(http):
    long = " ".join(["word"] * 200)  # the tiny model's context holds 64 tokens
    error = error_of(http.post(CHAT, json={"messages": [{"role": "user", "content": long}], "max_tokens": 8}), 400)
    message = error["message"]
    assert "the context holds 64" in message
    prompt_tokens = int(message.split("prompt is ")[1].split(" tokens")[0])
    assert prompt_tokens > 64


def test_a_body_over_the_limit_is_413(start_server, tiny_model):
    server = start_server(tiny_model, max_body_bytes=2000)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        big = {"messages": [{"role": "user", "content": "x" * 5000}]}
        error = error_of(http.post(CHAT, json=big), 413)
        assert error["code"] == "request_too_large" and "limit is 2000" in error["message"]

        def chunked():  # no Content-Length: counted as it arrives
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        error_of(http.post(CHAT, content=chunked()), 413)
        assert http.get("/health").status_code == 200  # still up


def test_unknown_routes_and_methods_answer_in_the_same_shape(http):
    assert error_of(http.get("/v2/whatever"), 404)["code"] == "not_found"
    assert error_of(http.get(CHAT), 405)["code"] == "method_not_allowed"


def test_an_open_breaker_is_503_with_retry_after(tiny_server, http):
    tiny_server.service.isolate_breaker()  # what the operator's `i` does
    response = http.post(CHAT, json={"messages": HELLO})
    error = error_of(response, 503)
    assert error["code"] == "breaker_open" and int(response.headers["Retry-After"]) >= 1
    ready = http.get("/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "breaker_open"
    assert "Retry-After" in ready.headers
    tiny_server.service.reset_breaker()
    assert http.post(CHAT, json={"messages": HELLO, "max_tokens": 2}).status_code == 200
    assert http.get("/ready").json()["status"] == "ready"


def test_while_the_model_is_not_loaded_requests_get_503(start_server, tiny_model):
    server = start_server(tiny_model, start_service=False)  # the model loads only once started
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post(CHAT, json={"messages": HELLO})
        error = error_of(response, 503)
        assert error["code"] == "model_loading" and "Retry-After" in response.headers
        ready = http.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        assert http.get("/health").status_code == 200  # alive, not ready
        server.service.start()
        assert server.service.wait_ready(30)
        assert http.post(CHAT, json={"messages": HELLO, "max_tokens": 2}).status_code == 200


def test_a_failed_load_is_503_not_ready(start_server, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    server = start_server(bad, wait_ready=False)
    server.service.wait_ready(30)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        error = error_of(http.post(CHAT, json={"messages": HELLO}), 503)
        assert error["code"] == "not_ready"
        assert http.get("/ready").json()["status"] == "unavailable"
