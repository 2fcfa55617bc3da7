"""OpenAI request bodies -> GenerationRequest, checked field by field.

The request JSON is read by hand rather than through a model library: the checks are
few, and each error must name its field (OpenAI's `param`) and say exactly what is wrong.
Fields we do not implement and that change the answer's shape or meaning (`n` > 1,
`logprobs`, `tools`, non-text `response_format`, penalties) are refused with a 400 that
says so, never silently ignored; fields that change nothing we can act on (`user`,
`metadata`, `store`, ...) are accepted and ignored, as llama.cpp's and Ollama's servers do.
Values we take from the request default to the server's settings (the same defaults as
`antinet-tui run`), not to OpenAI's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from antinet_tui.config import Settings
from antinet_tui.engine.errors import InvalidRequest
from antinet_tui.engine.protocol import GenerationRequest, Message, Role
from antinet_tui.engine.validation import validate_generation
from antinet_tui.frontends.common import unix_newlines
from antinet_tui.frontends.server.errors import APIError, bad_request, unsupported

ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class ParsedRequest:
    kind: str  # "chat" or "text" (/v1/completions)
    model: str | None
    generation: GenerationRequest
    stream: bool
    include_usage: bool


def decode_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the request body is not valid UTF-8 (byte {exc.start})", code="invalid_json") from None
    if not text.strip():
        raise bad_request("the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
        ) from None
    except ValueError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {_json_type(data)}", code="invalid_json")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_chat(body: dict[str, Any], defaults: Settings) -> ParsedRequest:
    _refuse_unsupported(body, chat=True)
    messages = _messages(body)
    last = messages[-1]
    max_tokens = _max_tokens(body, ("max_completion_tokens", "max_tokens"), defaults)
    generation = GenerationRequest(
        prompt=last.content,  # what the dashboard and the log show; the template renders `messages`
        messages=messages,
        chat=True,
        system=defaults.system,
        **_sampling(body, defaults, max_tokens),
    )
    if defaults.system is not None and not any(m.role == "system" for m in messages):
        generation = replace(generation, messages=(Message("system", defaults.system), *messages))
    return _finish("chat", body, generation)


def parse_completion(body: dict[str, Any], defaults: Settings) -> ParsedRequest:
    _refuse_unsupported(body, chat=False)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise bad_request(
                "prompt must be one string (batches of prompts and token arrays are not supported)", "prompt"
            )
        prompt = prompt[0]
    if prompt is None:
        raise bad_request("prompt is required", "prompt", "missing_required_parameter")
    if not isinstance(prompt, str):
        raise bad_request(f"prompt must be a string, got {_json_type(prompt)}", "prompt")
    _check_text(prompt, "prompt")
    prompt = unix_newlines(prompt)  # a Windows client's CRLF is a newline, not a control character
    max_tokens = _max_tokens(body, ("max_tokens",), defaults)
    generation = GenerationRequest(prompt=prompt, chat=False, **_sampling(body, defaults, max_tokens))
    return _finish("text", body, generation)


def _finish(kind: str, body: dict[str, Any], generation: GenerationRequest) -> ParsedRequest:
    try:
        validate_generation(generation)
    except InvalidRequest as exc:
        raise bad_request(str(exc)) from None
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request(f"model must be a string, got {_json_type(model)}", "model")
    stream = _optional(body, "stream", bool, False)
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request(f"stream_options must be an object, got {_json_type(options)}", "stream_options")
        if not stream:
            raise bad_request("stream_options is only allowed when stream is true", "stream_options")
        include_usage = _optional(options, "include_usage", bool, False, "stream_options.include_usage")
    return ParsedRequest(kind, model, generation, stream, include_usage)


def _refuse_unsupported(body: dict[str, Any], chat: bool) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise unsupported("n > 1 (several choices per request)", "n") if _is_int(n) else bad_request(
            f"n must be an integer, got {_json_type(n)}", "n")
    if chat:
        if body.get("logprobs") not in (None, False):
            raise unsupported("logprobs", "logprobs")
        if body.get("top_logprobs") is not None:
            raise unsupported("top_logprobs", "top_logprobs")
    elif body.get("logprobs") is not None:
        raise unsupported("logprobs", "logprobs")
    for name in ("tools", "functions"):
        if body.get(name):
            raise unsupported("tool and function calling", name)
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise unsupported("tool and function calling", name)
    response_format = body.get("response_format")
    plain_text = isinstance(response_format, dict) and response_format.get("type") == "text"
    if response_format is not None and not plain_text:
        raise unsupported("response_format other than {\"type\": \"text\"}", "response_format")
    for name in ("frequency_penalty", "presence_penalty"):
        value = body.get(name)
        if value not in (None, 0, 0.0):
            raise unsupported(f"{name} other than 0", name)
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "logit_bias")
    if not chat:
        if body.get("echo"):
            raise unsupported("echo", "echo")
        if body.get("suffix"):
            raise unsupported("suffix", "suffix")
        best_of = body.get("best_of")
        if best_of not in (None, 1):
            raise unsupported("best_of > 1", "best_of")


def _messages(body: dict[str, Any]) -> tuple[Message, ...]:
    raw = body.get("messages")
    if raw is None:
        raise bad_request("messages is required", "messages", "missing_required_parameter")
    if not isinstance(raw, list):
        raise bad_request(f"messages must be an array, got {_json_type(raw)}", "messages")
    if not raw:
        raise bad_request("messages is empty; send at least one message", "messages")
    messages = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object, got {_json_type(item)}", where)
        role = item.get("role")
        if role in ("tool", "function"):
            raise unsupported("tool and function calling", f"{where}.role")
        if role not in ROLES:
            raise bad_request(
                f"{where}.role must be one of system, developer, user, assistant; got {role!r}", f"{where}.role")
        if item.get("tool_calls"):
            raise unsupported("tool and function calling", f"{where}.tool_calls")
        content = unix_newlines(_content_text(item.get("content"), f"{where}.content"))  # a Windows client's CRLF
        _check_text(content, f"{where}.content")
        messages.append(Message(ROLES[role], content))
    if all(m.role == "system" for m in messages):
        raise bad_request("messages has no user or assistant message", "messages")
    return tuple(messages)


def _content_text(content: Any, where: str) -> str:
    """A message's content: a string, or an array of text parts (joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(f"{where}[{i}] must be an object with a type", f"{where}[{i}]")
            if part["type"] != "text":
                raise unsupported(f"content of type {part['type']!r} (text only)", f"{where}[{i}].type")
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"{where}[{i}].text must be a string, got {_json_type(text)}", f"{where}[{i}].text")
            parts.append(text)
        return "".join(parts)
    if content is None:
        raise bad_request(f"{where} is required", where, "missing_required_parameter")
    raise bad_request(f"{where} must be a string or an array of text parts, got {_json_type(content)}", where)


def _check_text(text: str, where: str) -> None:
    """JSON can carry a lone surrogate (\\ud800) that is not text: refuse it here, by name."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request(
            f"{where} is not valid Unicode: lone surrogate U+{ord(text[exc.start]):04X} at position {exc.start}",
            where) from None


def _max_tokens(body: dict[str, Any], names: tuple[str, ...], defaults: Settings) -> int:
    for name in names:  # the first given wins: max_completion_tokens is OpenAI's newer name
        value = body.get(name)
        if value is not None:
            if not _is_int(value) or value < 1:
                raise bad_request(f"{name} must be an integer of at least 1, got {json.dumps(value)}", name)
            return value
    return defaults.max_new_tokens


def _sampling(body: dict[str, Any], defaults: Settings, max_tokens: int) -> dict[str, Any]:
    temperature = _number(body, "temperature", defaults.temperature, 0, 2)
    top_p = _number(body, "top_p", defaults.top_p, 0, 1)
    if top_p == 0:
        raise bad_request("top_p must be more than 0 and at most 1, got 0", "top_p")
    top_k = _optional(body, "top_k", int, defaults.top_k)  # llama.cpp's extension
    if top_k < 0:
        raise bad_request(f"top_k must be >= 0 (0 turns it off), got {top_k}", "top_k")
    seed = _optional(body, "seed", int, defaults.seed)
    if seed is not None and not 0 <= seed < 2**63:
        raise bad_request(f"seed must be an integer from 0 to 2**63-1, got {seed}", "seed")
    return {"max_new_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
            "seed": seed, "stop": _stop(body)}


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise bad_request(f"stop must be a string or an array of strings, got {_json_type(stop)}", "stop")
    for i, item in enumerate(items):
        if not item:
            raise bad_request(f"stop[{i}] is empty; a stop string needs at least one character", "stop")
        _check_text(item, "stop")
    return tuple(items)


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"{name} must be a number, got {json.dumps(value)}", name)
    if not low <= value <= high:
        raise bad_request(f"{name} must be from {low} to {high}, got {value}", name)
    return float(value)


def _optional(body: dict[str, Any], name: str, kind: type, default: Any, param: str | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise bad_request(f"{param or name} must be {_KIND_WORDS[kind]}, got {json.dumps(value)}", param or name)
    return value


_KIND_WORDS = {bool: "true or false", int: "an integer", str: "a string"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


__all__ = ["APIError", "ParsedRequest", "decode_json", "parse_chat", "parse_completion"]
