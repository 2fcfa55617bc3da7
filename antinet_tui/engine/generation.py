"""The one generation loop, for every backend that runs a GGUF model step by step.

A step-by-step backend (numpy, onnx) supplies loading and a `ForwardModel`: a prefill
over the prompt and one decode step, each returning logits. Everything else a request
needs is here, once: the prompt's token ids (chat template, tokenizer), validation,
sampling, stop reasons and stop strings, UTF-8-safe streamed pieces, the timing stamps
and the cancel checks, and the CPU performance modes (`StepwiseBackend`).
"""

from __future__ import annotations

import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from antinet_tui.engine.cpu_modes import DEFAULT_CPU_MODE, CpuModeController
from antinet_tui.engine.errors import EngineError
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
from antinet_tui.engine.stop_strings import StopStrings
from antinet_tui.engine.tokenizer import ChatTemplate, StreamDecoder, Tokenizer
from antinet_tui.engine.validation import validate_request


class ForwardModel(Protocol):
    """A model's forward pass over a KV cache it owns (one request at a time)."""

    n_ctx: int  # positions the cache holds

    @property
    def length(self) -> int:
        """Positions processed so far in this request."""
        ...

    def prefill(self, ids: Sequence[int], cancel: threading.Event) -> np.ndarray | None:
        """Empty the cache and process `ids` from position 0. Returns the last position's
        logits (vocab,), or None when `cancel` was seen (checked between chunks)."""
        ...

    def step(self, token: int) -> np.ndarray:
        """Process one token at position `length`; returns its logits (vocab,)."""
        ...


def generate_stepwise(
    model: ForwardModel,
    tokenizer: Tokenizer,
    request: GenerationRequest,
    ids: Sequence[int],
    on_token: OnToken,
    cancel: threading.Event,
) -> GenerationResult:
    """Run one request to its end. `ids` is the prompt, already validated to fit."""
    seed = request.seed if request.seed is not None else secrets.randbits(63)
    sample = Sampler(request.temperature, request.top_k, request.top_p, seed)
    profile: dict = {"seed": seed}

    def result(stop: StopReason, out: list[int], times: list[int], text: str,
               prefill_done: int | None) -> GenerationResult:
        return GenerationResult(text=text, token_ids=out, prompt_tokens=len(ids), stop_reason=stop,
                                prefill_done_ns=prefill_done, token_times_ns=times, backend_profile=profile)

    if cancel.is_set():
        return result(StopReason.CANCELLED, [], [], "", None)
    logits = model.prefill(ids, cancel)
    if logits is None:
        return result(StopReason.CANCELLED, [], [], "", None)
    prefill_done = time.perf_counter_ns()

    decoder = StreamDecoder(tokenizer)
    stops = StopStrings(request.stop)
    end_of_generation = tokenizer.end_of_generation
    out: list[int] = []
    times: list[int] = []
    pieces: list[str] = []
    while True:
        token = sample(logits)
        times.append(time.perf_counter_ns())
        out.append(token)
        is_end = token in end_of_generation and not request.ignore_eos
        piece = "" if is_end else stops.push(decoder.push(token))
        if is_end:
            stop = StopReason.EOS
        elif stops.matched is not None:
            stop = StopReason.STOP_STRING
            profile["stop_string"] = stops.matched
        elif len(out) >= request.max_new_tokens:
            stop = StopReason.MAX_TOKENS
        elif model.length >= model.n_ctx:
            stop = StopReason.CONTEXT
        elif cancel.is_set():
            stop = StopReason.CANCELLED
        else:
            stop = None
        if stop is not None and stop is not StopReason.STOP_STRING:
            # an unfinished UTF-8 sequence becomes U+FFFD; text held back as a possible
            # stop string's start is released
            piece += stops.push(decoder.flush()) + stops.flush()
        pieces.append(piece)
        on_token(token, piece)
        if stop is not None:
            return result(stop, out, times, "".join(pieces), prefill_done)
        logits = model.step(token)


@dataclass
class LoadedModel:
    """What a step-by-step backend's loader hands to `StepwiseBackend`."""

    forward: ForwardModel
    tokenizer: Tokenizer
    template: ChatTemplate
    info: ModelInfo  # load_seconds is filled in by StepwiseBackend


class StepwiseBackend(ABC):
    """The Backend protocol for GGUF models run step by step on this machine's CPU.

    A subclass implements `_load` (read the file, build the forward pass) and, when
    its thread count is not BLAS's, `_set_threads`; the rest is shared.
    """

    name: str

    def __init__(self, model_path: str | Path, *, n_ctx: int | None = None):
        self.model_path = Path(model_path)
        self._n_ctx = n_ctx
        self._modes = CpuModeController(self._set_threads)
        self._model: LoadedModel | None = None

    @abstractmethod
    def _load(self, progress: OnProgress) -> LoadedModel: ...

    def _set_threads(self, n: int) -> int | None:
        """Use n threads for the forward pass; return the count in effect (None: no knob)."""
        from antinet_tui.engine.cpu_modes import set_blas_threads

        return set_blas_threads(n)

    # --- Backend protocol ----------------------------------------------------------

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo:
        progress = on_progress or (lambda fraction, message: None)
        started = time.perf_counter()
        model = self._load(progress)
        self._modes.apply(DEFAULT_CPU_MODE)
        model.info = replace(model.info, load_seconds=time.perf_counter() - started)
        self._model = model
        progress(1.0, "ready")
        return model.info

    def model_info(self) -> ModelInfo:
        return self._require_loaded().info

    def capabilities(self) -> Capabilities:
        return Capabilities(modes=CpuModeController.modes(), default_mode=DEFAULT_CPU_MODE)

    def apply_mode(self, mode: str) -> ModeReadback:
        return self._modes.apply(mode)

    def current_mode(self) -> ModeReadback | None:
        return self._modes.current

    def close(self) -> None:
        self._model = None

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        model = self._require_loaded()
        text = model.template.render_conversation(request.conversation()) if request.chat else request.prompt
        return model.tokenizer.encode(text)

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(self.prompt_ids(request))

    def generate(self, request: GenerationRequest, on_token: OnToken,
                 cancel: threading.Event) -> GenerationResult:
        model = self._require_loaded()
        ids = self.prompt_ids(request)
        validate_request(request, model.forward.n_ctx, len(ids))
        return generate_stepwise(model.forward, model.tokenizer, request, ids, on_token, cancel)

    def _require_loaded(self) -> LoadedModel:
        if self._model is None:
            raise EngineError("the model is not loaded")
        return self._model
