"""Genie's profile JSON, its printed failures, and chat formats (no worker)."""

from __future__ import annotations

import json

import pytest
from genie_bundles import write_tokenizer

from antinet_tui.engine.genie.errors import (
    GenieBundleError,
    GenieContextFailed,
    GenieQueryFailed,
    NpuUnavailable,
    native_failure,
)
from antinet_tui.engine.genie.profile import figures, query_events
from antinet_tui.engine.genie.templates import BUILTIN_FORMATS, choose_format
from antinet_tui.engine.protocol import Message

# Abridged from a real `genie-t2t-run --profile` output: the metric names and units Genie emits
# for GenieDialog_create and GenieDialog_query events.
GENIE_PROFILE = {
    "header": {"header_version": {"major": 0, "minor": 1, "patch": 0}, "artifact_type": "GENIE_PROFILE"},
    "components": [{"name": "dialog0", "type": "dialog", "events": [
        {"type": "GenieDialog_create", "duration": 1124864, "init-time": {"value": 1124713, "unit": "us"}},
        {"type": "GenieDialog_query", "duration": 1000, "num-generated-tokens": {"value": 1, "unit": ""}},
        {"type": "GenieDialog_query", "duration": 5726945,
         "num-prompt-tokens": {"value": 823, "unit": ""},
         "prompt-processing-rate": {"value": 1547.9876708984375, "unit": "toks/sec"},
         "time-to-first-token": {"value": 531665, "unit": "us"},
         "num-generated-tokens": {"value": 200, "unit": ""},
         "token-generation-rate": {"value": 38.52525329589844, "unit": "toks/sec"},
         "token-generation-time": {"value": 5191579, "unit": "us"}},
        {"type": "GenieDialog_free", "duration": 32347},
    ]}],
}


def test_the_last_query_event_by_type_not_by_position():
    events = query_events(json.dumps(GENIE_PROFILE))
    assert len(events) == 2
    assert figures(events[-1]) == {
        "genie_ttft_ms": pytest.approx(531.665),
        "genie_generation_ms": pytest.approx(5191.579),
        "genie_prefill_tok_s": pytest.approx(1547.99, abs=0.01),
        "genie_decode_tok_s": pytest.approx(38.525, abs=0.001),
        "genie_prompt_tokens": 823,
        "genie_generated_tokens": 200,
        "genie_query_ms": pytest.approx(5726.945),
    }


def test_missing_or_broken_profiles_give_nothing():
    assert query_events("") == [] and query_events("{not json") == []
    assert figures({"type": "GenieDialog_query", "time-to-first-token": {"value": 5, "unit": "furlong"}}) == {}


@pytest.mark.parametrize("printed, error, advice", [
    ("Transport layer setup failed: 14001\nFailed to create the Genie Dialog.", NpuUnavailable, "ADSP_LIBRARY_PATH"),
    ("QnnDevice_create = 14001 / 0x36b1", NpuUnavailable, "another process holds the NPU"),
    ('[ERROR] "Could not create context from binary for context index = 0 : err 5000"', NpuUnavailable,
     "another QAIRT version"),
    ('[ERROR] "Unable to find a valid interface."', NpuUnavailable, "QNN HTP backend library"),
    ("Failed to create the Genie Dialog config.", GenieContextFailed, "rejected the bundle's config.json"),
    ("Failed to create the Genie Dialog.", GenieContextFailed, "did not load onto the NPU"),
    ("something unexpected", GenieQueryFailed, "something unexpected"),
])
def test_printed_failures_become_advice(printed, error, advice):
    failure = native_failure(printed, GenieQueryFailed, "summary")
    assert type(failure) is error
    assert advice in str(failure) and str(failure).startswith("summary")


def test_chat_format_guessed_from_the_tokenizer(tmp_path):
    write_tokenizer(tmp_path / "llama.json", ["<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"])
    write_tokenizer(tmp_path / "plain.json", [])
    assert choose_format(None, tmp_path, tmp_path / "llama.json") is BUILTIN_FORMATS["llama3"]
    assert choose_format(None, tmp_path, tmp_path / "plain.json") is None
    assert choose_format("raw", tmp_path, tmp_path / "llama.json") is None
    assert BUILTIN_FORMATS["chatml"].render("Hi", None) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_bundle_prompt_json_wins_and_bad_choices_are_named(tmp_path):
    write_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "prompt.json").write_text(json.dumps({
        "prompt_system": "<sys> string </sys>", "prompt_user": "<u> string </u>", "prompt_start": "<a>"}))
    chosen = choose_format(None, tmp_path, tmp_path / "tokenizer.json")
    assert chosen.render("Hi", "Be brief.") == "<sys> Be brief. </sys><u> Hi </u><a>"
    with pytest.raises(GenieBundleError, match="neither a known format"):
        choose_format("vicuna", tmp_path, tmp_path / "tokenizer.json")


CONVERSATION = (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
                Message("user", "Capital of France?"))


@pytest.mark.parametrize("name, expected", [
    ("chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
               "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
               "<|im_start|>assistant\n"),
    ("llama3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nCapital of France?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("phi3", "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
             "<|user|>\nCapital of France?<|end|>\n<|assistant|>\n"),
    ("llama2", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Capital of France? [/INST]"),
])
def test_a_conversation_in_each_builtin_format(name, expected):
    assert BUILTIN_FORMATS[name].render_conversation(CONVERSATION) == expected


def test_a_prompt_json_closes_an_assistant_turn_with_its_end_of_turn_marker(tmp_path):
    write_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "prompt.json").write_text(json.dumps({
        "prompt_system": "<sys> string </sys>", "prompt_user": "<u> string </u>", "prompt_start": "<a>"}))
    chosen = choose_format(None, tmp_path, tmp_path / "tokenizer.json")
    assert chosen.render_conversation(CONVERSATION) == (
        "<sys> Be brief. </sys><u> Hi </u><a>Hello! </u><u> Capital of France? </u><a>")
    no_system = chosen.render_conversation((Message("user", "Hi"),))
    assert no_system.startswith("<sys> You are a helpful assistant. </sys>")
