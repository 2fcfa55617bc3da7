"""The embedded CPU backend: a GGUF model run by the numpy transformer."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from antinet_tui.engine.errors import EngineError
from antinet_tui.engine.generation import LoadedModel, StepwiseBackend
from antinet_tui.engine.gguf_model import (
    GGUFFile,
    ModelConfig,
    check_gguf_file,
    prepare_weights,
    quantization_summary,
    read_config,
)
from antinet_tui.engine.memory import pack
from antinet_tui.engine.protocol import ModelInfo, OnProgress
from antinet_tui.engine.tokenizer import ChatTemplate, Tokenizer, VocabSpec
from antinet_tui.engine.transformer import PREFILL_CHUNK, Transformer
from antinet_tui.engine.weight_cache import WeightCache, file_sha256


class NumpyBackend(StepwiseBackend):
    """The readable reference: weights dequantized to float32 once, run by numpy."""

    name = "numpy"

    def __init__(self, model_path: str | Path, *, n_ctx: int | None = None, use_cache: bool = True,
                 cache_dir: Path | None = None):
        super().__init__(model_path, n_ctx=n_ctx)
        self._cache = WeightCache(cache_dir) if use_cache else None

    def _load(self, progress: OnProgress) -> LoadedModel:
        check_gguf_file(self.model_path)
        progress(0.02, "checking the prepared-weights cache")
        digest = file_sha256(self.model_path)
        cached = self._cache.load(digest) if self._cache else None
        if cached is not None:
            meta, weights = cached.meta, cached.weights
        else:
            progress(0.05, "reading GGUF metadata")
            gf = GGUFFile(self.model_path)
            cfg = read_config(gf)
            vocab = VocabSpec.from_gguf(gf)
            Tokenizer(vocab)  # fail on an unsupported tokenizer before the slow part
            weights = prepare_weights(gf, cfg, lambda f, m: progress(0.1 + 0.8 * f, m))
            meta = model_meta(gf, cfg, vocab, self.model_path)
            if self._cache:
                progress(0.92, "writing the prepared-weights cache")
                try:
                    self._cache.store(digest, self.model_path, weights, meta)
                except OSError as exc:  # a full disk must not stop the model from running
                    progress(0.95, f"cache not written: {exc}")
            weights = pack(weights)
        cfg = ModelConfig(**meta["config"])
        vocab = VocabSpec(**meta["vocab"])
        try:
            transformer = Transformer(cfg, weights, self._n_ctx)
        except MemoryError:  # the context's caches are sized up front
            n_ctx = min(self._n_ctx or cfg.context_length, cfg.context_length)
            raise EngineError(f"not enough memory for a context of {n_ctx:,} tokens (the model's metadata says "
                              f"{cfg.context_length:,}); cap it with --ctx, e.g. --ctx 4096") from None
        forward = NumpyForward(transformer)
        progress(0.97, "warming up")
        # The first matmuls allocate BLAS buffers and wake its threads (~0.2 s here): pay
        # that now, so the first request's TTFT measures the model, not the start-up.
        forward.prefill([0] * min(16, transformer.n_ctx), threading.Event())
        info = ModelInfo(
            name=display_name(self.model_path),
            path=str(self.model_path),
            architecture=cfg.architecture,
            backend=self.name,
            context_length=transformer.n_ctx,
            n_params=meta["n_params"],
            quantization=meta["quantization"],
            weights_bytes=int(sum(a.nbytes for a in weights.values())),
            details={"from_cache": cached is not None, "sha256": digest, "general_name": meta["name"],
                     **cfg.to_dict()},
        )
        return LoadedModel(forward, Tokenizer(vocab), chat_template(vocab), info)


class NumpyForward:
    """The numpy transformer and its KV cache as a ForwardModel."""

    def __init__(self, transformer: Transformer):
        self.transformer = transformer
        self.cache = transformer.new_cache()
        self.n_ctx = transformer.n_ctx

    @property
    def length(self) -> int:
        return self.cache.length

    def prefill(self, ids: Sequence[int], cancel: threading.Event) -> np.ndarray | None:
        self.cache.reset()
        logits = None
        for start in range(0, len(ids), PREFILL_CHUNK):  # cancellable between chunks
            if cancel.is_set():
                return None
            logits = self.transformer.forward(ids[start:start + PREFILL_CHUNK], self.cache)
        return logits

    def step(self, token: int) -> np.ndarray:
        return self.transformer.decode(token, self.cache)


def model_meta(gf: GGUFFile, cfg: ModelConfig, vocab: VocabSpec, path: Path) -> dict:
    """What a cache keeps besides the weights: config, tokenizer, names."""
    return {
        "config": cfg.to_dict(),
        "vocab": asdict(vocab),
        "name": gf.get("general.name") or path.stem,
        "quantization": quantization_summary(gf),
        "n_params": int(sum(int(np.prod(t.shape)) for t in gf.tensors.values())),
    }


def chat_template(vocab: VocabSpec) -> ChatTemplate:
    return ChatTemplate(vocab.chat_template, bos_token=_token_text(vocab, vocab.bos_id),
                        eos_token=_token_text(vocab, vocab.eos_id))


def display_name(path: Path) -> str:
    """The name operators know a model by: its file name without the quant suffix
    ("SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct"). The file's own
    general.name is often a training-run label ("Smollm2 135M 8k Lc100K Mix1 Ep2")."""
    return re.sub(r"[.-](?:[qf]\d+\w*|bf16|iq\d\w*)$", "", path.stem, flags=re.IGNORECASE) or path.stem


def _token_text(vocab: VocabSpec, token_id: int | None) -> str:
    return vocab.tokens[token_id] if token_id is not None and 0 <= token_id < len(vocab.tokens) else ""
