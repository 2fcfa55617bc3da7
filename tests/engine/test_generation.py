"""The shared generation loop: stop strings, UTF-8 pieces, stop reasons, cancel, stamps.

A scripted ForwardModel makes the model say exactly the bytes a test wants, through the
tiny byte-level vocabulary, so every split of a stop string across tokens can be tried.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tiny_models import tiny_vocab

from antinet_tui.engine.backends import REGISTRY, create_backend
from antinet_tui.engine.errors import InvalidRequest, UnknownBackend
from antinet_tui.engine.generation import generate_stepwise
from antinet_tui.engine.protocol import GenerationRequest, StopReason
from antinet_tui.engine.stop_strings import StopStrings
from antinet_tui.engine.tokenizer import Tokenizer, VocabSpec
from antinet_tui.engine.validation import validate_request

TOKENS, TYPES, MERGES = tiny_vocab()
TOKENIZER = Tokenizer(VocabSpec(model="gpt2", pre="smollm", tokens=TOKENS, token_types=TYPES, merges=MERGES,
                                bos_id=1, eos_id=2, eot_id=None, add_bos=False, chat_template=None))
END = 2  # <|im_end|> in the tiny vocabulary


class ScriptedModel:
    """A ForwardModel whose logits pick `script[i]` at step i (then END)."""

    def __init__(self, script: list[int], n_ctx: int = 1000):
        self.script = script
        self.n_ctx = n_ctx
        self.length = 0
        self.steps = 0

    def _logits(self) -> np.ndarray:
        logits = np.zeros(len(TOKENS), dtype=np.float32)
        index = self.length - self.prompt_length
        logits[self.script[index] if index < len(self.script) else END] = 10.0
        return logits

    def prefill(self, ids, cancel):
        if cancel.is_set():
            return None
        self.length = self.prompt_length = len(ids)
        return self._logits()

    def step(self, token):
        self.steps += 1
        self.length += 1
        return self._logits()


def byte_tokens(text: str) -> list[int]:
    """One token per UTF-8 byte (no merges), so a stop string can be split anywhere."""
    return [TOKENIZER.token_bytes.index(bytes([b])) for b in text.encode("utf-8")]


def generate(script, *, cancel=None, on_token=None, n_ctx=1000, **kw):
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_new_tokens", 200)
    request = GenerationRequest("hi", **kw)
    validate_request(request)
    pieces: list[str] = []

    def collect(token_id, piece):
        pieces.append(piece)
        if on_token:
            on_token(token_id, piece)

    model = ScriptedModel(script, n_ctx)
    result = generate_stepwise(model, TOKENIZER, request, [5, 6, 7], collect, cancel or threading.Event())
    return result, pieces


# --- stop strings ------------------------------------------------------------------------

@pytest.mark.parametrize("stop", [("<|user|>",), ("user",), ("<",), ("xyz", "<|us"), ("Héllo wörld<|user|>",)])
def test_stop_string_ends_before_the_match_and_never_streams_any_of_it(stop):
    said = "Héllo wörld<|user|> and more"
    result, pieces = generate(byte_tokens(said), stop=stop)
    first = min(said.find(s) for s in stop if s in said)
    assert result.stop_reason is StopReason.STOP_STRING
    assert result.text == said[:first] == "".join(pieces)
    # the token that completed the match is the last one generated (it counts, it is not shown)
    assert len(result.token_ids) == len(said[:first + len(result.backend_profile["stop_string"])].encode())
    assert len(pieces) == len(result.token_ids) and len(result.token_times_ns) == len(result.token_ids)


def test_text_that_only_looks_like_a_stop_string_is_released():
    said = "a <|use it <|us"
    result, pieces = generate(byte_tokens(said), stop=("<|user|>",))
    assert result.stop_reason is StopReason.EOS and result.text == said == "".join(pieces)
    streamed = ""
    for piece in pieces:
        streamed += piece
        assert said.startswith(streamed)
    # the held-back start "<|us" comes out only with the end of the turn
    assert pieces[-1] == "<|us"


def test_a_stop_string_split_inside_a_character_is_found():
    said = "春天来了。夏天"
    result, pieces = generate(byte_tokens(said), stop=("天来",))
    assert result.stop_reason is StopReason.STOP_STRING and result.text == "春" == "".join(pieces)
    assert all("\ufffd" not in p for p in pieces)


def test_the_earliest_of_several_stop_strings_wins():
    result, _ = generate(byte_tokens("one two three"), stop=("three", "two"))
    assert result.text == "one " and result.backend_profile["stop_string"] == "two"


def test_max_tokens_releases_held_text():
    said = "abc<|u"
    result, pieces = generate(byte_tokens(said), stop=("<|user|>",), max_new_tokens=len(said))
    assert result.stop_reason is StopReason.MAX_TOKENS and result.text == said == "".join(pieces)


def test_stop_strings_filter_in_isolation():
    stops = StopStrings(["</s>", "END"])
    assert stops.push("hello </") == "hello "
    assert stops.push("p") == "</p"
    assert stops.push(" EN") == " "
    assert stops.push("D tail") == "" and stops.matched == "END"
    assert stops.push("more") == "" and stops.flush() == ""


@pytest.mark.parametrize("stop,message", [
    (("",), "stop\\[0\\] must be a non-empty string"),
    ("END", "stop must be a list of strings"),
    (tuple(str(i) for i in range(17)), "at most 16"),
])
def test_bad_stop_strings_are_named(stop, message):
    with pytest.raises(InvalidRequest, match=message):
        validate_request(GenerationRequest("hi", stop=stop))


# --- the rest of the loop ----------------------------------------------------------------

def test_utf8_pieces_are_whole_characters():
    said = "naïve 🙂 中文"
    result, pieces = generate(byte_tokens(said))
    assert result.text == said and all("\ufffd" not in p for p in pieces)
    assert sum(p == "" for p in pieces) >= len(said.encode()) - len(said)  # continuation bytes held


def test_unfinished_character_at_the_end_becomes_a_replacement():
    cut = "é".encode()[:1]
    result, pieces = generate([TOKENIZER.token_bytes.index(cut)], max_new_tokens=1)
    assert result.stop_reason is StopReason.MAX_TOKENS and result.text == "\ufffd" == pieces[-1]


def test_context_and_eos_and_stamps():
    result, pieces = generate(byte_tokens("abcdefgh"), n_ctx=6)  # 3 prompt positions
    assert result.stop_reason is StopReason.CONTEXT and result.text == "abcd"
    stamps = [result.prefill_done_ns, *result.token_times_ns]
    assert stamps == sorted(stamps)
    ended, pieces = generate(byte_tokens("ab"))
    assert ended.stop_reason is StopReason.EOS and ended.token_ids[-1] == END and pieces[-1] == ""


def test_cancel_is_seen_within_one_step():
    cancel = threading.Event()
    result, _ = generate(byte_tokens("abcdefgh"), cancel=cancel,
                         on_token=lambda token, piece: cancel.set() if piece == "c" else None)
    # the step already under way when the flag was set ends, and its token is kept
    assert result.stop_reason is StopReason.CANCELLED and result.text == "abcd"
    cancel_first = threading.Event()
    cancel_first.set()
    nothing, pieces = generate(byte_tokens("abc"), cancel=cancel_first)
    assert nothing.stop_reason is StopReason.CANCELLED and pieces == [] and nothing.prefill_done_ns is None


# --- the registry ------------------------------------------------------------------------

def test_registry_names_every_backend_and_refuses_others(tiny_model):
    assert list(REGISTRY) == ["auto", "onnx", "numpy", "genie"]
    assert create_backend("numpy", str(tiny_model)).name == "numpy"
    assert create_backend("onnx", str(tiny_model)).name == "onnx"
    assert create_backend("auto", str(tiny_model)).name == "auto"  # until it has loaded one
    with pytest.raises(UnknownBackend, match="unknown backend 'tpu'; available: auto, onnx, numpy, genie"):
        create_backend("tpu")
