"""Bad input, named: the one set of request checks, with messages that say what is wrong.

Each check raises `InvalidRequest` (or `UnknownMode`). Backends call `validate_request`
in generate() (the engine is usable on its own); the runtime calls the same function at
submit and turns the error into a Rejected event, so a request it accepts passes here.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

from antinet_tui.engine.errors import InvalidRequest, UnknownMode
from antinet_tui.engine.protocol import GenerationRequest, Message

_ALLOWED_CONTROLS = {"\n", "\t"}


def validate_prompt(text: str, what: str = "prompt") -> None:
    """Text the model is given: not empty, valid UTF-8, no control characters but
    newline and tab. `what` names it in the message ("prompt", "messages[2].content")."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be text, got {type(text).__name__}")
    if not text.strip():
        raise InvalidRequest(f"{what} is empty" if not text else f"{what} is only whitespace")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{what} is not valid UTF-8: lone surrogate U+{ord(text[exc.start]):04X} at position {exc.start}"
        ) from None
    for position, char in enumerate(text):
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            raise InvalidRequest(f"{what} contains control character U+{ord(char):04X} at position {position}")


ROLES = ("system", "user", "assistant")


def validate_conversation(messages: Sequence[Message], chat: bool) -> None:
    """A conversation: each turn a known role with text; at least one user or assistant
    turn; rendered by the chat template, so a raw request cannot carry one."""
    if not chat:
        raise InvalidRequest("a conversation (messages) needs the chat template; it cannot be sent raw")
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {message.role!r}")
        validate_prompt(message.content, f"messages[{i}].content")
    if all(message.role == "system" for message in messages):
        raise InvalidRequest("messages holds no user or assistant turn")


def validate_request(
    request: GenerationRequest, context_length: int | None = None, prompt_tokens: int | None = None
) -> None:
    """The whole request. Checks that need the model (context, token count) are skipped
    while those are unknown (None): the runtime makes them (`validate_fits`) once it knows."""
    if request.messages:
        validate_conversation(request.messages, request.chat)
    else:
        validate_prompt(request.prompt)
    validate_generation(request)
    if context_length is not None:
        validate_fits(request, context_length, prompt_tokens)


def validate_generation(request: GenerationRequest) -> None:
    """The generation settings alone (the config file's are checked with this too)."""
    if not isinstance(request.max_new_tokens, int) or request.max_new_tokens < 1:
        raise InvalidRequest(f"max_new_tokens must be at least 1, got {request.max_new_tokens!r}")
    if not (math.isfinite(request.temperature) and request.temperature >= 0):
        raise InvalidRequest(f"temperature must be a finite number >= 0 (0 is greedy), got {request.temperature}")
    if not 0 < request.top_p <= 1:
        raise InvalidRequest(f"top_p must be in (0, 1], got {request.top_p}")
    if request.top_k < 0:
        raise InvalidRequest(f"top_k must be >= 0 (0 turns it off), got {request.top_k}")
    if request.seed is not None and not (isinstance(request.seed, int) and 0 <= request.seed < 2**63):
        raise InvalidRequest(f"seed must be an integer from 0 to 2**63-1, got {request.seed!r}")
    validate_stop(request.stop)


MAX_STOP_STRINGS = 16


def validate_stop(stop: Sequence[str]) -> None:
    if isinstance(stop, str):
        raise InvalidRequest("stop must be a list of strings, not one string")
    if len(stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"stop holds {len(stop)} strings; at most {MAX_STOP_STRINGS} are allowed")
    for i, text in enumerate(stop):
        if not isinstance(text, str) or not text:
            raise InvalidRequest(f"stop[{i}] must be a non-empty string, got {text!r}")


def validate_fits(request: GenerationRequest, context_length: int, prompt_tokens: int | None = None) -> None:
    """Room in the context for the answer and the prompt (needs the model)."""
    if request.max_new_tokens > context_length:
        raise InvalidRequest(f"max_new_tokens is {request.max_new_tokens}; the context holds {context_length}")
    if prompt_tokens is not None and prompt_tokens >= context_length:
        leaves = "" if prompt_tokens > context_length else " and leaves no room for an answer"
        raise InvalidRequest(f"prompt is {prompt_tokens} tokens; the context holds {context_length}{leaves}")


def validate_mode(name: str, valid: Sequence[str]) -> None:
    if name not in valid:
        raise UnknownMode(name, tuple(valid))
