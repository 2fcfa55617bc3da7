"""GenieBackend through the real worker process, with the fake binding inside it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from antinet_tui.engine.errors import InvalidRequest, UnknownMode
from antinet_tui.engine.genie.errors import (
    GenieBundleError,
    GenieContextFailed,
    GenieNotInstalled,
    GenieQueryFailed,
    GenieWorkerCrashed,
    GenieWorkerHung,
    NpuUnavailable,
)
from antinet_tui.engine.genie.templates import BUILTIN_FORMATS
from antinet_tui.engine.protocol import Backend, GenerationRequest, Message, StopReason

REPLY = "".join(f" w{i}" for i in range(12))  # the fake's full answer


def run(backend, prompt="Hello", cancel=None, **request):
    tokens: list[tuple[int, str]] = []
    result = backend.generate(
        GenerationRequest(prompt, **request),
        lambda token_id, text: tokens.append((token_id, text)),
        cancel or threading.Event(),
    )
    return result, tokens


def test_streams_chunks_and_records_both_sets_of_figures(bundle, make_backend):
    backend = make_backend(bundle)
    assert isinstance(backend, Backend)
    info = backend.load()
    assert info.backend == "genie" and info.context_length == 512
    assert info.details["chat_template"] == "chatml"  # guessed from tokenizer.json

    result, tokens = run(backend, max_new_tokens=100)

    assert result.text == REPLY
    assert "".join(text for _, text in tokens) == REPLY
    assert len(result.token_ids) == len(result.token_times_ns) == len(tokens) == 12
    assert result.stop_reason is StopReason.EOS
    assert result.prefill_done_ns == result.token_times_ns[0]
    # chunks of 1, 2, 1, 2 ... tokens: each chunk's tokens share its arrival stamp
    assert result.backend_profile["chunks"] == 8
    assert result.token_times_ns[1] == result.token_times_ns[2]
    assert [text for _, text in tokens[1:3]] == [" w1 w2", ""]
    profile = result.backend_profile
    assert profile["genie_generated_tokens"] == 12
    assert profile["genie_prompt_tokens"] == result.prompt_tokens
    assert result.prompt_tokens == backend.count_prompt_tokens(GenerationRequest("Hello"))
    assert profile["genie_ttft_ms"] >= 0 and profile["perf_profile"] == "burst"


def test_max_new_tokens_stops_the_query(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    result, tokens = run(backend, max_new_tokens=5)
    assert len(result.token_ids) == 5 and result.stop_reason is StopReason.MAX_TOKENS
    assert result.text == " w0 w1 w2 w3 w4"
    assert result.backend_profile["genie_generated_tokens"] <= 6  # Stop() reached Genie


def test_cancel_calls_stop_and_keeps_the_worker(bundle, make_backend):
    backend = make_backend(bundle, child_env={"FAKE_GENIE_REPLY_TOKENS": "200",
                                              "FAKE_GENIE_TOKEN_DELAY_S": "0.01"})
    backend.load()
    pid = backend.model_info().details["worker_pid"]
    cancel = threading.Event()

    def cancel_after_three(token_id, text):
        if len(seen) == 3:
            cancel.set()
        seen.append(text)

    seen: list[str] = []
    result = backend.generate(GenerationRequest("Hello"), cancel_after_three, cancel)
    assert result.stop_reason is StopReason.CANCELLED
    assert 3 <= len(result.token_ids) < 50
    assert result.backend_profile["genie_generated_tokens"] < 50

    again, _ = run(backend, max_new_tokens=4)
    assert again.stop_reason is StopReason.MAX_TOKENS
    assert "worker_restart_seconds" not in again.backend_profile
    assert backend._worker.process.pid == pid


def test_cancel_during_prefill_ends_the_request_promptly(bundle, make_backend):
    backend = make_backend(bundle, cancel_grace_s=0.3,
                           child_env={"FAKE_GENIE_PREFILL_S": "30"})
    backend.load()
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    result, tokens = run(backend, cancel=cancel)
    assert result.stop_reason is StopReason.CANCELLED and tokens == []
    assert time.monotonic() - started < 5


def test_a_crashed_worker_fails_the_request_and_restarts(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    with pytest.raises(GenieWorkerCrashed, match="(?s)died.*simulated native crash"):
        run(backend, prompt="Hello [[crash@3]]")
    result, _ = run(backend)
    assert result.text == REPLY
    assert result.backend_profile["worker_restart_seconds"] > 0


def test_a_hung_worker_is_killed_and_replaced(bundle, make_backend):
    backend = make_backend(bundle, token_timeout_s=0.5)
    backend.load()
    started = time.monotonic()
    with pytest.raises(GenieWorkerHung, match=r"nothing for 0.5 s \(after 1 token\)"):
        run(backend, prompt="Hello [[hang@2]]")
    assert time.monotonic() - started < 5
    result, _ = run(backend)
    assert result.text == REPLY and "worker_restart_seconds" in result.backend_profile


def test_a_query_genie_only_printed_about_is_a_failure(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    with pytest.raises(GenieQueryFailed, match="Failed to get response from GenieDialog"):
        run(backend, prompt="Hello [[fail]]")


def test_modes_rewrite_private_copies_and_read_back(bundle, make_backend, tmp_path):
    original = {p.name: p.read_bytes() for p in bundle.parent.iterdir()}
    backend = make_backend(bundle)
    backend.load()
    assert backend.capabilities().default_mode == "burst"
    assert backend.current_mode().effective == "burst"
    pid = backend.model_info().details["worker_pid"]
    assert backend.apply_mode("burst").switch_seconds == 0.0  # already loaded: no rebuild
    assert backend._worker.process.pid == pid

    readback = backend.apply_mode("power_saver")

    assert readback.requested == readback.effective == "power_saver" and readback.fully_applied
    assert readback.switch_seconds > 0
    private = Path(readback.settings["htp_config"])
    assert private.parent == tmp_path / "state"
    assert json.loads(private.read_text())["devices"][0]["cores"][0]["perf_profile"] == "power_saver"
    assert backend.current_mode() == readback
    result, _ = run(backend, max_new_tokens=3)
    assert result.backend_profile["perf_profile"] == "power_saver"
    assert {p.name: p.read_bytes() for p in bundle.parent.iterdir()} == original
    with pytest.raises(UnknownMode, match="burst"):
        backend.apply_mode("turbo")


def test_a_mode_whose_context_fails_to_build_is_reported(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    (bundle.parent / "model_part_2_of_2.bin").unlink()  # the context will not build now
    with pytest.raises(GenieContextFailed, match="Failed to create the Genie Dialog"):
        backend.apply_mode("balanced")
    assert backend.current_mode().effective == "burst"


def test_binding_not_installed(bundle, make_backend):
    backend = make_backend(bundle, child_sys_path=[])
    with pytest.raises(GenieNotInstalled, match="not usable.*Windows on Snapdragon.*pip install qai-appbuilder"):
        backend.load()


def test_npu_unavailable_14001(bundle, make_backend):
    backend = make_backend(bundle, child_env={
        "FAKE_GENIE_CREATE_ERROR": "Transport layer setup failed: 14001"})
    with pytest.raises(NpuUnavailable, match="(?s)ADSP_LIBRARY_PATH.*14001"):
        backend.load()


def test_bundle_missing_files_are_named_before_any_worker_starts(bundle, make_backend):
    (bundle.parent / "tokenizer.json").unlink()
    (bundle.parent / "model_part_1_of_2.bin").unlink()
    with pytest.raises(GenieBundleError, match="tokenizer 'tokenizer.json'.*model_part_1_of_2.bin"):
        make_backend(bundle).load()


def test_prompt_beyond_the_context_is_rejected(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    with pytest.raises(InvalidRequest, match="context holds 512"):
        run(backend, prompt="hello " * 600)


def test_a_stop_string_ends_the_reply_before_it_even_across_chunks(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    # the fake streams " w0", " w1 w2", " w3", " w4 w5", ...: "3 w4" spans two chunks
    result, tokens = run(backend, max_new_tokens=100, stop=("3 w4",))
    assert result.stop_reason is StopReason.STOP_STRING and result.backend_profile["stop_string"] == "3 w4"
    assert result.text == " w0 w1 w2 w" == "".join(text for _, text in tokens)
    assert not any("3" in text for _, text in tokens)  # not even the part in the first chunk

    held, tokens = run(backend, max_new_tokens=100, stop=(" w11 and more",))  # starts, never completes
    assert held.stop_reason is StopReason.EOS and held.text == REPLY == "".join(text for _, text in tokens)


def test_a_conversation_is_sent_in_the_bundles_chat_format(bundle, make_backend):
    backend = make_backend(bundle)
    backend.load()
    turns = (Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Capital of France?"))
    conversation = GenerationRequest("", messages=turns, max_new_tokens=3)
    rendered = GenerationRequest(BUILTIN_FORMATS["chatml"].render_conversation(turns), chat=False)
    assert backend.count_prompt_tokens(conversation) == backend.count_prompt_tokens(rendered)
    result = backend.generate(conversation, lambda *_: None, threading.Event())
    assert result.backend_profile["genie_prompt_tokens"] == backend.count_prompt_tokens(rendered)  # what Genie got
    raw = make_backend(bundle, chat_template="raw")
    raw.load()
    with pytest.raises(InvalidRequest, match="no known chat format, so a conversation cannot be rendered"):
        raw.count_prompt_tokens(conversation)
