from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from gguf import GGUFWriter
from tiny_models import write_tiny_model

from antinet_tui.engine.errors import InvalidRequest, ModelFormatError, ModelNotFound
from antinet_tui.engine.numpy_backend import NumpyBackend
from antinet_tui.engine.protocol import GenerationRequest, StopReason


def loaded(path, **kw) -> NumpyBackend:
    backend = NumpyBackend(path, **kw)
    backend.load()
    return backend


def run(backend, prompt="hello there", cancel=None, on_token=None, **kw):
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_new_tokens", 8)
    streamed = []

    def collect(token_id, text):
        streamed.append((token_id, text))
        if on_token:
            on_token(token_id, text)

    result = backend.generate(GenerationRequest(prompt, **kw), collect, cancel or threading.Event())
    return result, streamed


def test_generate_streams_every_token_and_records_stamps(tiny_model):
    result, streamed = run(loaded(tiny_model), max_new_tokens=6)
    assert result.stop_reason is StopReason.MAX_TOKENS
    assert [t for t, _ in streamed] == result.token_ids and len(result.token_ids) == 6
    assert "".join(text for _, text in streamed) == result.text
    stamps = [result.prefill_done_ns, *result.token_times_ns]
    assert stamps == sorted(stamps)
    assert result.prompt_tokens > 10  # the chat template wraps the prompt


def test_raw_mode_sends_the_prompt_as_is(tiny_model):
    backend = loaded(tiny_model)
    assert backend.count_prompt_tokens(GenerationRequest("abc", chat=False)) == 3
    chat = backend.count_prompt_tokens(GenerationRequest("abc"))
    custom = backend.count_prompt_tokens(GenerationRequest("abc", system="x"))
    assert chat > custom > 3


def test_end_of_turn_stops_unless_ignored(tmp_path):
    backend = loaded(write_tiny_model(tmp_path / "end.gguf", always_end=True))
    result, streamed = run(backend)
    assert result.stop_reason is StopReason.EOS and result.token_ids == [0] and result.text == ""
    forced, _ = run(backend, max_new_tokens=5, ignore_eos=True)
    assert forced.stop_reason is StopReason.MAX_TOKENS and len(forced.token_ids) == 5


def test_context_full_stops_generation(tmp_path):
    backend = loaded(write_tiny_model(tmp_path / "short.gguf", context_length=32))
    result, _ = run(backend, prompt="x" * 20, chat=False, max_new_tokens=30)
    assert result.stop_reason is StopReason.CONTEXT
    assert result.prompt_tokens + len(result.token_ids) == 33  # the last token needs no slot


def test_cancel_takes_effect_within_one_step(tiny_model):
    cancel = threading.Event()

    def cancel_after_third(token_id, text):
        if len(seen) == 3:
            cancel.set()

    seen = []
    result, streamed = run(loaded(tiny_model), cancel=cancel, max_new_tokens=50,
                           on_token=lambda t, x: (seen.append(t), cancel_after_third(t, x)))
    assert result.stop_reason is StopReason.CANCELLED
    assert 3 <= len(result.token_ids) <= 4


def test_cancel_before_start_generates_nothing(tiny_model):
    cancel = threading.Event()
    cancel.set()
    result, streamed = run(loaded(tiny_model), cancel=cancel)
    assert result.stop_reason is StopReason.CANCELLED and streamed == [] and result.token_ids == []


def test_same_seed_same_text(tiny_model):
    backend = loaded(tiny_model)
    a, _ = run(backend, temperature=1.5, top_k=0, top_p=1.0, seed=42, max_new_tokens=20)
    b, _ = run(backend, temperature=1.5, top_k=0, top_p=1.0, seed=42, max_new_tokens=20)
    c, _ = run(backend, temperature=1.5, top_k=0, top_p=1.0, seed=43, max_new_tokens=20)
    assert a.token_ids == b.token_ids != c.token_ids
    assert a.backend_profile["seed"] == 42
    drawn, _ = run(backend, temperature=1.0)
    assert isinstance(drawn.backend_profile["seed"], int)  # recorded so the run can be replayed


@pytest.mark.parametrize("kwargs,message", [
    ({"prompt": "   "}, "prompt is only whitespace"),
    ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
    ({"max_new_tokens": 65}, "max_new_tokens is 65; the context holds 64"),
    ({"prompt": "y" * 70, "chat": False}, "prompt is 70 tokens; the context holds 64"),
    ({"seed": -1}, "seed must be an integer from 0 to 2\\*\\*63-1"),
])
def test_bad_requests_are_specific(tiny_model, kwargs, message):
    with pytest.raises(InvalidRequest, match=message):
        run(loaded(tiny_model), **kwargs)


def test_second_load_comes_from_the_cache_and_matches(tiny_model):
    first = loaded(tiny_model)
    second = loaded(tiny_model)
    assert not first.model_info().details["from_cache"] and second.model_info().details["from_cache"]
    assert run(first, max_new_tokens=10)[0].token_ids == run(second, max_new_tokens=10)[0].token_ids


def test_changed_model_file_is_never_served_stale(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", seed=1)
    before = run(loaded(path), max_new_tokens=10)[0].token_ids
    stat = os.stat(path)
    write_tiny_model(path, seed=2)  # same name, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same timestamp
    after = loaded(path)
    assert not after.model_info().details["from_cache"]
    assert run(after, max_new_tokens=10)[0].token_ids != before


def test_corrupt_cache_entry_is_rebuilt(tiny_model, isolated_dirs):
    loaded(tiny_model)
    for blob in (isolated_dirs / "cache").glob("*/weights.bin"):
        with open(blob, "r+b") as f:
            f.truncate(100)
    again = loaded(tiny_model)
    assert not again.model_info().details["from_cache"]
    assert run(again)[0].stop_reason is StopReason.MAX_TOKENS


def test_model_info_describes_the_model(tiny_model):
    info = loaded(tiny_model).model_info()
    assert (info.architecture, info.backend, info.context_length) == ("llama", "numpy", 64)
    assert info.weights_bytes > 0 and info.n_params > 0 and info.load_seconds > 0


# --- bad files ------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFound, match="model file not found"):
        loaded(tmp_path / "nope.gguf")


@pytest.mark.parametrize("content,message", [
    (b"", "not a GGUF model file \\(an empty file\\)"),
    (b"PK\x03\x04 a zip file", "not a GGUF model file \\(starts with b'PK"),
])
def test_not_gguf(tmp_path, content, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=message):
        loaded(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 64])
def test_truncated_gguf(tmp_path, tiny_model, keep):
    data = tiny_model.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(ModelFormatError, match="truncated") as err:
        loaded(path, use_cache=False)
    # either the tensor that runs past the end is named, or the fix is; never numpy's jargon
    assert "ends at byte" in str(err.value) or "download or convert the model again" in str(err.value)
    assert "reshape" not in str(err.value) and "dtype" not in str(err.value)


def test_unsupported_architecture_is_named(tmp_path):
    path = tmp_path / "phi.gguf"
    w = GGUFWriter(str(path), "phi3")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(ModelFormatError, match="unsupported architecture 'phi3'; supported: llama, qwen2"):
        loaded(path)


def test_unsupported_tensor_type_is_named(tmp_path, monkeypatch):
    import tiny_models

    real_tensor_writer = GGUFWriter.add_tensor

    def int_q_weight(self, name, tensor, *args, **kwargs):
        if name == "blk.0.attn_q.weight":
            tensor = tensor.astype(np.int32)  # I32: gguf cannot dequantize it
        return real_tensor_writer(self, name, tensor, *args, **kwargs)

    monkeypatch.setattr(tiny_models.GGUFWriter, "add_tensor", int_q_weight)
    path = tiny_models.write_tiny_model(tmp_path / "int.gguf")
    with pytest.raises(ModelFormatError, match="'blk.0.attn_q.weight' has type I32"):
        loaded(path)


def test_stop_string_on_a_tiny_model(tiny_model):
    backend = loaded(tiny_model)
    free, _ = run(backend, max_new_tokens=24)
    stop = free.text[5:8]
    stopped, streamed = run(backend, max_new_tokens=24, stop=(stop,))
    assert stopped.stop_reason is StopReason.STOP_STRING
    assert stopped.text == free.text[:free.text.find(stop)] == "".join(text for _, text in streamed)
    assert stopped.token_ids == free.token_ids[:len(stopped.token_ids)]
