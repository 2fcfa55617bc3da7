"""A tiny Genie bundle on disk (AI Hub layout) and where the fake binding lives."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

FAKE_BINDING = Path(__file__).parent / "fake_qai_appbuilder"
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>"]


def write_tokenizer(path: Path, special_tokens: list[str] = SPECIAL_TOKENS) -> None:
    words = ["[UNK]", *special_tokens, "system", "user", "assistant", "hello", "Hello",
             *(f"w{i}" for i in range(300))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(special_tokens)
    tokenizer.save(str(path))


def write_bundle(directory: Path, perf_profile: str | None = "burst", n_bins: int = 2) -> Path:
    """An AI Hub style bundle: genie_config.json naming its files relative to itself."""
    directory.mkdir(parents=True, exist_ok=True)
    write_tokenizer(directory / "tokenizer.json")
    bins = [f"model_part_{i}_of_{n_bins}.bin" for i in range(1, n_bins + 1)]
    for name in bins:
        (directory / name).write_bytes(b"\0" * 1024)
    core = {"core_id": 0, "rpc_control_latency": 100}
    if perf_profile:
        core["perf_profile"] = perf_profile
    (directory / "htp_backend_ext_config.json").write_text(json.dumps({
        "devices": [{"soc_model": 60, "dsp_arch": "v73", "cores": [core]}],
        "memory": {"mem_type": "shared_buffer"},
        "context": {"weight_sharing_enabled": True},
    }))
    config = {"dialog": {
        "version": 1, "type": "basic",
        "context": {"version": 1, "size": 512, "n-vocab": 305, "bos-token": 1, "eos-token": 2},
        "sampler": {"version": 1, "seed": 42, "temp": 0.8, "top-k": 40, "top-p": 0.95},
        "tokenizer": {"version": 1, "path": "tokenizer.json"},
        "engine": {
            "version": 1, "n-threads": 3,
            "backend": {"version": 1, "type": "QnnHtp", "QnnHtp": {"version": 1},
                        "extensions": "htp_backend_ext_config.json"},
            "model": {"version": 1, "type": "binary",
                      "binary": {"version": 1, "ctx-bins": bins}},
        },
    }}
    path = directory / "genie_config.json"
    path.write_text(json.dumps(config, indent=2))
    return path
