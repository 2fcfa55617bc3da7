"""Bad input is refused at the runtime boundary with a message that names the problem."""

from __future__ import annotations

import pytest

from antinet_tui.engine.errors import InvalidRequest, UnknownMode
from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.engine.validation import validate_mode, validate_prompt, validate_request


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("", "prompt is empty"),
        ("  \n\t ", "prompt is only whitespace"),
        ("ring the bell\x07 now", "prompt contains control character U+0007 at position 13"),
        ("escape \x1b[31m red", "prompt contains control character U+001B at position 7"),
        ("dos line\r\n", "prompt contains control character U+000D at position 8"),
        ("c1 \x85 next line", "prompt contains control character U+0085 at position 3"),
        ("delete \x7f", "prompt contains control character U+007F at position 7"),
        ("half a pair \ud83d here", "prompt is not valid UTF-8: lone surrogate U+D83D at position 12"),
        (b"bytes", "prompt must be text, got bytes"),
    ],
)
def test_bad_prompts_are_named(prompt, message):
    with pytest.raises(InvalidRequest) as raised:
        validate_prompt(prompt)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "prompt",
    ["hello", "two\nlines\tand a tab", "emoji 🦊 and accents éü and CJK 漢字", "zero\u200bwidth joiner\u200d"],
)
def test_good_prompts_pass(prompt):
    validate_prompt(prompt)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be at least 1, got 0"),
        ({"max_new_tokens": 9000}, "max_new_tokens is 9000; the context holds 8192"),
        ({"temperature": -0.1}, "temperature must be a finite number >= 0 (0 is greedy), got -0.1"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0 (0 is greedy), got nan"),
        ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ({"top_p": 1.01}, "top_p must be in (0, 1], got 1.01"),
        ({"top_k": -1}, "top_k must be >= 0 (0 turns it off), got -1"),
        ({"prompt": ""}, "prompt is empty"),
    ],
)
def test_bad_request_parameters_are_named(changes, message):
    request = GenerationRequest(**{"prompt": "hi", **changes})
    with pytest.raises(InvalidRequest) as raised:
        validate_request(request, context_length=8192, prompt_tokens=10)
    assert str(raised.value) == message


def test_a_prompt_longer_than_the_context_says_both_counts():
    with pytest.raises(InvalidRequest, match=r"^prompt is 9000 tokens; the context holds 8192$"):
        validate_request(GenerationRequest("long"), context_length=8192, prompt_tokens=9000)


def test_a_prompt_that_fills_the_context_leaves_no_room():
    with pytest.raises(InvalidRequest, match="the context holds 8192 and leaves no room for an answer"):
        validate_request(GenerationRequest("long"), context_length=8192, prompt_tokens=8192)


def test_edges_that_are_allowed():
    validate_request(GenerationRequest("hi", max_new_tokens=8192, temperature=0, top_p=1.0, top_k=0), 8192, 8191)


def test_checks_that_need_the_model_are_skipped_until_it_is_known():
    validate_request(GenerationRequest("hi", max_new_tokens=10**6))


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(UnknownMode, match=r"unknown mode 'turbo'; valid modes: burst, default, power_saver"):
        validate_mode("turbo", ("burst", "default", "power_saver"))
    validate_mode("burst", ("burst", "default"))
