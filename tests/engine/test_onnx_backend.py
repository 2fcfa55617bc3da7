"""The onnx backend on tiny generated GGUFs (llama and qwen2; Q4_0, Q4_1, Q8_0).

Tolerances: with float32 activations everywhere ("fp32-all") the graph must match the
numpy reference to 1e-3 (float rounding of the same sums in another order); with the
default int8 activations (ONNX Runtime quantizes each block of 32 inputs) to 10 % of
the logits' largest magnitude (random 64-wide models measured up to 7.7 %; the real
model's agreement is checked token by token in test_real_model.py).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import dequantize, quantize
from tiny_models import write_tiny_model

from antinet_tui.engine.cpu_modes import usable_cores
from antinet_tui.engine.errors import InvalidRequest, ModelFormatError, UnsupportedByBackend
from antinet_tui.engine.numpy_backend import NumpyBackend
from antinet_tui.engine.onnx.backend import ACTIVATIONS, OnnxBackend
from antinet_tui.engine.onnx.blocks import from_gguf_blocks
from antinet_tui.engine.protocol import GenerationRequest, StopReason

EXACT = [Q.Q4_0, Q.Q4_1, Q.Q8_0]


def loaded(backend):
    backend.load()
    return backend


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx-models")
    return {(arch, q): write_tiny_model(folder / f"{arch}-{q.name}.gguf", arch, q, seed=3)
            for arch in ("llama", "qwen2") for q in EXACT}


def run(backend, prompt="hello there", cancel=None, on_token=None, **kw):
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_new_tokens", 8)
    pieces = []

    def collect(token_id, text):
        pieces.append(text)
        if on_token:
            on_token(token_id, text)

    return backend.generate(GenerationRequest(prompt, **kw), collect, cancel or threading.Event()), pieces


def logits_along(backend, ids, steps):
    """Logits after the prompt, then after each of `steps` fed one by one."""
    forward = backend._model.forward
    out = [forward.prefill(ids, threading.Event()).copy()]
    out += [forward.step(token).copy() for token in steps]
    return np.array(out)


# --- weights: the file's blocks, value for value -----------------------------------------

@pytest.mark.parametrize("qtype", EXACT, ids=lambda q: q.name)
def test_blocks_dequantize_to_exactly_the_numpy_reference_values(qtype):
    rng = np.random.default_rng(7)
    weights = (rng.standard_normal((48, 96)) * rng.uniform(0.01, 3, (48, 1))).astype(np.float32)
    raw = quantize(weights, qtype)
    reference = dequantize(raw, qtype).reshape(48, 96)  # what the numpy backend runs
    ours = from_gguf_blocks(qtype.name, raw, 48, 96).dequantize()
    assert np.array_equal(ours, reference)


# --- the graph against the numpy reference -------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("qtype", EXACT, ids=lambda q: q.name)
def test_logits_match_numpy(models, arch, qtype, tmp_path):
    path = models[(arch, qtype)]
    reference = loaded(NumpyBackend(path, cache_dir=tmp_path))
    ids = reference.prompt_ids(GenerationRequest("hello there"))
    steps = [40, 41, 42, 43, 44]
    expected = logits_along(reference, ids, steps)
    exact = logits_along(loaded(OnnxBackend(path, cache_dir=tmp_path, activations="fp32-all")), ids, steps)
    assert np.abs(exact - expected).max() < 1e-3
    fast = logits_along(loaded(OnnxBackend(path, cache_dir=tmp_path)), ids, steps)
    assert np.abs(fast - expected).max() < 0.10 * np.abs(expected).max()


@pytest.mark.parametrize("activations", list(ACTIVATIONS))
def test_each_linear_runs_at_the_accuracy_level_its_preset_names(models, activations, tmp_path):
    import onnx
    from onnx.helper import get_attribute_value

    info = OnnxBackend(models[("llama", Q.Q4_1)], cache_dir=tmp_path, activations=activations).load()
    graph = onnx.load(info.details["onnx_model"], load_external_data=False).graph
    levels: dict[str, set] = {}
    for node in graph.node:
        if node.op_type == "MatMulNBits":  # weights are named blk.N.<role>.q, or the head's
            weight = node.input[1]
            role = "head" if weight in ("token_embd.q", "lm_head.q") else weight.split(".")[2]
            level = next(get_attribute_value(a) for a in node.attribute if a.name == "accuracy_level")
            levels.setdefault(role, set()).add(level)
    assert levels == {role: {level} for role, level in ACTIVATIONS[activations].items()}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_prefill_matches_step_by_step_decode(models, arch, tmp_path):
    backend = loaded(OnnxBackend(models[(arch, Q.Q4_1)], cache_dir=tmp_path, activations="fp32-all"))
    ids = backend.prompt_ids(GenerationRequest("the quick brown fox"))
    at_once = logits_along(backend, ids, [])[-1]
    one_by_one = logits_along(backend, ids[:1], ids[1:])[-1]
    assert np.abs(at_once - one_by_one).max() < 1e-3


# --- generation through the shared loop ----------------------------------------------------

def test_generates_the_same_greedy_tokens_as_numpy(models, tmp_path):
    path = models[("llama", Q.Q8_0)]
    ours, pieces = run(loaded(OnnxBackend(path, cache_dir=tmp_path, activations="fp32-all")), max_new_tokens=12)
    theirs, _ = run(loaded(NumpyBackend(path, cache_dir=tmp_path)), max_new_tokens=12)
    assert ours.token_ids == theirs.token_ids and ours.text == theirs.text == "".join(pieces)
    assert ours.stop_reason is StopReason.MAX_TOKENS and ours.prompt_tokens == theirs.prompt_tokens


def test_cancel_takes_effect_within_one_step(models, tmp_path):
    backend = loaded(OnnxBackend(models[("llama", Q.Q4_0)], cache_dir=tmp_path))
    cancel = threading.Event()
    seen = []

    def on_token(token_id, text):
        seen.append(token_id)
        if len(seen) == 3:
            cancel.set()

    result, _ = run(backend, cancel=cancel, on_token=on_token, max_new_tokens=50)
    assert result.stop_reason is StopReason.CANCELLED and 3 <= len(result.token_ids) <= 4


def test_stop_string_and_context_end(models, tmp_path):
    backend = loaded(OnnxBackend(models[("qwen2", Q.Q4_0)], cache_dir=tmp_path, n_ctx=40))
    free, _ = run(backend, chat=False, max_new_tokens=20, ignore_eos=True)
    stop = free.text[4:6]
    stopped, pieces = run(backend, chat=False, max_new_tokens=20, ignore_eos=True, stop=(stop,))
    assert stopped.stop_reason is StopReason.STOP_STRING
    assert stopped.text == free.text[:free.text.find(stop)] == "".join(pieces)
    full, _ = run(backend, prompt="x" * 30, chat=False, max_new_tokens=20, ignore_eos=True)
    assert full.stop_reason is StopReason.CONTEXT and full.prompt_tokens + len(full.token_ids) == 41


def test_bad_requests_are_specific(models, tmp_path):
    backend = loaded(OnnxBackend(models[("llama", Q.Q4_0)], cache_dir=tmp_path))
    with pytest.raises(InvalidRequest, match="prompt is 70 tokens; the context holds 64"):
        run(backend, prompt="y" * 70, chat=False)
    with pytest.raises(InvalidRequest, match="max_new_tokens must be at least 1"):
        run(backend, max_new_tokens=0)


# --- modes -----------------------------------------------------------------------------

def test_modes_read_back_the_session_thread_count(models, tmp_path):
    backend = loaded(OnnxBackend(models[("llama", Q.Q8_0)], cache_dir=tmp_path))
    cores = len(usable_cores())
    before, _ = run(backend)
    for mode, threads in (("burst", cores), ("power_saver", 1), ("sustained_high_performance", cores),
                          ("default", max(1, cores // 2))):
        readback = backend.apply_mode(mode)
        assert readback.settings["threads"] == threads == backend._model.forward.threads
        assert not any(p.startswith("threads") for p in readback.not_applied)
        assert run(backend)[0].token_ids == before.token_ids  # the new session runs the same model


# --- the built-model cache ---------------------------------------------------------------

def test_second_load_comes_from_the_cache(models, tmp_path):
    path = models[("llama", Q.Q4_1)]
    first = loaded(OnnxBackend(path, cache_dir=tmp_path))
    second = loaded(OnnxBackend(path, cache_dir=tmp_path))
    assert not first.model_info().details["from_cache"] and second.model_info().details["from_cache"]
    assert run(first)[0].token_ids == run(second)[0].token_ids


def test_changed_model_file_is_rebuilt(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", qtype=Q.Q4_0, seed=1)
    before = run(loaded(OnnxBackend(path, cache_dir=tmp_path / "c")), max_new_tokens=10)[0].token_ids
    stat = os.stat(path)
    write_tiny_model(path, qtype=Q.Q4_0, seed=2)  # same name, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same timestamp
    after = loaded(OnnxBackend(path, cache_dir=tmp_path / "c"))
    assert not after.model_info().details["from_cache"]
    assert run(after, max_new_tokens=10)[0].token_ids != before
    assert len(list((tmp_path / "c").glob("*/manifest.json"))) == 1  # the stale entry is gone


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_is_rebuilt_not_trusted(models, tmp_path, damage):
    path = models[("llama", Q.Q8_0)]
    expected = run(loaded(OnnxBackend(path, cache_dir=tmp_path)))[0].token_ids
    (data,) = tmp_path.glob("*/model.onnx.data")
    if damage == "truncate":
        with open(data, "r+b") as f:
            f.truncate(data.stat().st_size // 2)
    else:  # same size, one weight byte changed
        blob = bytearray(data.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        data.write_bytes(bytes(blob))
    again = loaded(OnnxBackend(path, cache_dir=tmp_path))
    assert not again.model_info().details["from_cache"]
    assert run(again)[0].token_ids == expected


# --- files it cannot run -----------------------------------------------------------------

@pytest.mark.parametrize("qtype", [Q.F32, Q.Q5_0], ids=lambda q: q.name)
def test_other_tensor_types_are_refused_naming_the_numpy_backend(tmp_path, qtype):
    path = write_tiny_model(tmp_path / "m.gguf", qtype=qtype)
    with pytest.raises(UnsupportedByBackend, match=f"has type {qtype.name}.*--backend numpy"):
        loaded(OnnxBackend(path, cache_dir=tmp_path))


def test_not_a_gguf(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ModelFormatError, match="not a GGUF model file"):
        loaded(OnnxBackend(path, cache_dir=tmp_path))


def test_model_info_describes_the_model(models, tmp_path):
    info = loaded(OnnxBackend(models[("qwen2", Q.Q4_1)], cache_dir=tmp_path)).model_info()
    assert (info.architecture, info.backend, info.context_length, info.quantization) == ("qwen2", "onnx", 64, "Q4_1")
    reader = GGUFReader(models[("qwen2", Q.Q4_1)])
    blocks = sum(int(t.n_bytes) for t in reader.tensors if len(t.shape) == 2)
    # the blocks with float32 scales/minima (GGUF keeps them in float16): more bytes, same values
    assert blocks < info.weights_bytes < 2 * blocks


def test_a_killed_builders_temp_folder_is_removed_on_load(models, tmp_path):
    path = models[("llama", Q.Q4_0)]
    loaded(OnnxBackend(path, cache_dir=tmp_path))
    left = tmp_path / ".tmp-killed"  # as a builder killed mid-write leaves it: no lock held
    left.mkdir()
    (left / "model.onnx.data").write_bytes(b"\0" * 1000)
    os.utime(left, (1, 1))
    again = loaded(OnnxBackend(path, cache_dir=tmp_path))
    assert again.model_info().details["from_cache"] and not left.exists()
