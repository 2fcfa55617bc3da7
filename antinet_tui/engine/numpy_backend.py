"""The embedded CPU backend: a GGUF model run by the numpy transformer."""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from antinet_tui.engine.cpu_modes import DEFAULT_CPU_MODE, CpuModeController
from antinet_tui.engine.errors import EngineError
from antinet_tui.engine.gguf_model import (
    GGUFFile,
    ModelConfig,
    check_gguf_file,
    prepare_weights,
    quantization_summary,
    read_config,
)
from antinet_tui.engine.memory import pack
from antinet_tui.engine.protocol import (
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModeReadback,
    OnProgress,
    OnToken,
    StopReason,
)
from antinet_tui.engine.sampling import Sampler
from antinet_tui.engine.tokenizer import ChatTemplate, StreamDecoder, Tokenizer, VocabSpec
from antinet_tui.engine.transformer import PREFILL_CHUNK, Transformer
from antinet_tui.engine.validation import validate_request
from antinet_tui.engine.weight_cache import WeightCache, file_sha256


class NumpyBackend:
    name = "numpy"

    def __init__(self, model_path: str | Path, *, n_ctx: int | None = None, use_cache: bool = True,
                 cache_dir: Path | None = None):
        self.model_path = Path(model_path)
        self._n_ctx = n_ctx
        self._cache = WeightCache(cache_dir) if use_cache else None
        self._modes = CpuModeController()
        self._info: ModelInfo | None = None
        self._model: Transformer | None = None

    # --- loading -----------------------------------------------------------------------

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo:
        progress = on_progress or (lambda fraction, message: None)
        started = time.perf_counter()
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
            meta = {
                "config": cfg.to_dict(),
                "vocab": asdict(vocab),
                "name": gf.get("general.name") or self.model_path.stem,
                "quantization": quantization_summary(gf),
                "n_params": int(sum(int(np.prod(t.shape)) for t in gf.tensors.values())),
            }
            if self._cache:
                progress(0.92, "writing the prepared-weights cache")
                try:
                    self._cache.store(digest, self.model_path, weights, meta)
                except OSError as exc:  # a full disk must not stop the model from running
                    progress(0.95, f"cache not written: {exc}")
            weights = pack(weights)
        cfg = ModelConfig(**meta["config"])
        vocab = VocabSpec(**meta["vocab"])
        self.tokenizer = Tokenizer(vocab)
        self.template = ChatTemplate(vocab.chat_template, bos_token=_token_text(vocab, vocab.bos_id),
                                     eos_token=_token_text(vocab, vocab.eos_id))
        self._model = Transformer(cfg, weights, self._n_ctx)
        self._cache_kv = self._model.new_cache()
        progress(0.97, "warming up")
        # The first matmuls allocate BLAS buffers and wake its threads (~0.2 s here): pay
        # that now, so the first request's TTFT measures the model, not the start-up.
        self._model.forward(np.zeros(min(16, self._model.n_ctx), dtype=np.int64), self._cache_kv)
        self._cache_kv.reset()
        self._modes.apply(DEFAULT_CPU_MODE)
        self._info = ModelInfo(
            name=display_name(self.model_path),
            path=str(self.model_path),
            architecture=cfg.architecture,
            backend=self.name,
            context_length=self._model.n_ctx,
            n_params=meta["n_params"],
            quantization=meta["quantization"],
            weights_bytes=int(sum(a.nbytes for a in weights.values())),
            load_seconds=time.perf_counter() - started,
            details={"from_cache": cached is not None, "sha256": digest, "general_name": meta["name"],
                     **cfg.to_dict()},
        )
        progress(1.0, "ready")
        return self._info

    def model_info(self) -> ModelInfo:
        return self._require_loaded()

    def capabilities(self) -> Capabilities:
        return Capabilities(modes=CpuModeController.modes(), default_mode=DEFAULT_CPU_MODE)

    def apply_mode(self, mode: str) -> ModeReadback:
        return self._modes.apply(mode)

    def current_mode(self) -> ModeReadback | None:
        return self._modes.current

    def close(self) -> None:
        self._model = None
        self._cache_kv = None

    # --- generation --------------------------------------------------------------------

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        self._require_loaded()
        text = self.template.render(request.prompt, request.system) if request.chat else request.prompt
        return self.tokenizer.encode(text)

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(self.prompt_ids(request))

    def generate(self, request: GenerationRequest, on_token: OnToken,
                 cancel: threading.Event) -> GenerationResult:
        model, cache = self._model, self._cache_kv
        if model is None:
            raise EngineError("the model is not loaded")
        ids = self.prompt_ids(request)
        validate_request(request, model.n_ctx, len(ids))
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        sample = Sampler(request.temperature, request.top_k, request.top_p, seed)

        def result(stop: StopReason, out: list[int], times: list[int], text: str, prefill_done: int | None):
            return GenerationResult(text=text, token_ids=out, prompt_tokens=len(ids), stop_reason=stop,
                                    prefill_done_ns=prefill_done,
                                    token_times_ns=times, backend_profile={"seed": seed})

        cache.reset()
        for start in range(0, len(ids), PREFILL_CHUNK):  # cancellable between chunks
            if cancel.is_set():
                return result(StopReason.CANCELLED, [], [], "", None)
            logits = model.forward(ids[start:start + PREFILL_CHUNK], cache)
        prefill_done = time.perf_counter_ns()

        decoder = StreamDecoder(self.tokenizer)
        end_of_generation = self.tokenizer.end_of_generation
        out: list[int] = []
        times: list[int] = []
        pieces: list[str] = []
        while True:
            token = sample(logits)
            times.append(time.perf_counter_ns())
            out.append(token)
            is_end = token in end_of_generation and not request.ignore_eos
            piece = "" if is_end else decoder.push(token)
            if is_end:
                stop = StopReason.EOS
            elif len(out) >= request.max_new_tokens:
                stop = StopReason.MAX_TOKENS
            elif cache.length >= cache.n_ctx:
                stop = StopReason.CONTEXT
            elif cancel.is_set():
                stop = StopReason.CANCELLED
            else:
                stop = None
            if stop is not None:
                piece += decoder.flush()  # an unfinished UTF-8 sequence becomes U+FFFD
            pieces.append(piece)
            on_token(token, piece)
            if stop is not None:
                return result(stop, out, times, "".join(pieces), prefill_done)
            logits = model.decode(token, cache)

    def _require_loaded(self) -> ModelInfo:
        if self._info is None:
            raise EngineError("the model is not loaded")
        return self._info


def display_name(path: Path) -> str:
    """The name operators know a model by: its file name without the quant suffix
    ("SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct"). The file's own
    general.name is often a training-run label ("Smollm2 135M 8k Lc100K Mix1 Ep2")."""
    return re.sub(r"[.-](?:[qf]\d+\w*|bf16|iq\d\w*)$", "", path.stem, flags=re.IGNORECASE) or path.stem


def _token_text(vocab: VocabSpec, token_id: int | None) -> str:
    return vocab.tokens[token_id] if token_id is not None and 0 <= token_id < len(vocab.tokens) else ""
