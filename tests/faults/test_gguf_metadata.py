"""A GGUF whose metadata is zero, of the wrong type or does not match its tensors is
refused with the key and the value named (case 10), never 'list index out of range'
or 'integer division or modulo by zero'."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiny_models import write_tiny_model


@pytest.mark.parametrize("metadata,message", [
    ({"llama.context_length": 0}, "metadata llama.context_length is 0; it must be at least 1"),
    ({"llama.attention.head_count": 0}, "metadata llama.attention.head_count is 0; it must be at least 1"),
    ({"llama.attention.head_count_kv": 0}, "metadata llama.attention.head_count_kv is 0; it must be at least 1"),
    ({"llama.attention.head_count_kv": 3}, "llama.attention.head_count (4) is not a multiple of "
                                           "llama.attention.head_count_kv (3)"),
    ({"llama.block_count": 0}, "metadata llama.block_count is 0; it must be at least 1"),
    ({"llama.feed_forward_length": 0}, "metadata llama.feed_forward_length is 0; it must be at least 1"),
    ({"llama.vocab_size": 0}, "metadata llama.vocab_size is 0; it must be at least 1"),
    ({"llama.attention.head_count": "four"}, "metadata llama.attention.head_count must be an integer, got 'four'"),
    ({"llama.attention.layer_norm_rms_epsilon": -1.0}, "llama.attention.layer_norm_rms_epsilon is -1.0; "
                                                       "it must be more than 0"),
    ({"llama.rope.freq_base": 0.0}, "metadata llama.rope.freq_base is 0.0; it must be more than 0"),
    ({"llama.rope.dimension_count": 5}, "llama.rope.dimension_count is 5; it must be even and at most the head "
                                        "size (16)"),
    ({"llama.rope.dimension_count": 64}, "llama.rope.dimension_count is 64"),
    ({"llama.embedding_length": 65}, "tensor 'token_embd.weight' has shape (64, "),
    ({"llama.attention.head_count": 3}, "llama.attention.head_count (3) is not a multiple of"),
    ({"llama.attention.head_count": 8, "llama.rope.dimension_count": 8}, "tensor 'blk.0.attn_k.weight' has shape"),
])
def test_broken_metadata_is_named(tmp_path, metadata, message):
    model = write_tiny_model(tmp_path / "m.gguf", metadata=metadata)
    done = subprocess.run([sys.executable, "-m", "antinet_tui", "run", "hi", "--model", str(model), "--no-log",
                           "--max-new-tokens", "2"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and "Warning" not in done.stderr


def test_a_context_too_large_for_memory_says_to_cap_it(tmp_path):
    model = write_tiny_model(tmp_path / "m.gguf", metadata={"llama.context_length": 4_294_967_295})
    done = subprocess.run([sys.executable, "-m", "antinet_tui", "run", "hi", "--model", str(model), "--no-log",
                           "--backend", "numpy"], capture_output=True, text=True)
    assert done.returncode == 3
    assert "not enough memory for a context of 4,294,967,295 tokens" in done.stderr and "--ctx" in done.stderr
    capped = subprocess.run([sys.executable, "-m", "antinet_tui", "run", "hi", "--model", str(model), "--no-log",
                             "--backend", "numpy", "--ctx", "64", "--max-new-tokens", "2"], capture_output=True,
                            text=True)
    assert capped.returncode == 0, capped.stderr
