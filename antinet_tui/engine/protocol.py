"""The backend protocol: what every engine (numpy CPU, Genie NPU, ...) implements.

A backend serves one request at a time and knows nothing of threads, queues, the
breaker or the UI; the runtime layer owns those. Timing is recorded here as raw
`perf_counter_ns` stamps; the derived figures (TTFT, tok/s) are computed in one place,
`antinet_tui.runtime.metrics`, so every frontend uses the same definitions; the start of
a request is stamped by the runtime, just before it calls generate().
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol, runtime_checkable


class StopReason(str, Enum):
    EOS = "eos"  # the model ended its turn
    MAX_TOKENS = "max_tokens"  # generated max_new_tokens
    CONTEXT = "context"  # the context window is full
    CANCELLED = "cancelled"  # the caller set the cancel flag
    STOP_STRING = "stop_string"  # the text reached one of request.stop (not emitted)


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_new_tokens: int = 256
    temperature: float = 0.8  # llama.cpp's defaults; 0 means greedy
    top_k: int = 40
    top_p: float = 0.95
    seed: int | None = None
    chat: bool = True  # apply the model's chat template; False sends the prompt as is
    system: str | None = None  # None keeps the template's default system prompt
    ignore_eos: bool = False  # benchmarks force an exact token count
    # A conversation (OpenAI `messages`): when given, it is what the chat template renders
    # and `prompt`/`system` are not used. Requires chat=True.
    messages: tuple[Message, ...] = ()
    stop: tuple[str, ...] = ()  # generation ends before any of these; the match is not emitted

    def conversation(self) -> tuple[Message, ...]:
        """The turns the chat template renders: `messages`, or the single prompt (with
        `system` when set; None keeps the template's default system prompt)."""
        if self.messages:
            return self.messages
        turns = (Message("system", self.system),) if self.system is not None else ()
        return (*turns, Message("user", self.prompt))


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stop_reason: StopReason
    prefill_done_ns: int | None  # prompt processed, first logits ready (None: cancelled before)
    token_times_ns: list[int]  # one stamp per generated token, taken when it was sampled
    # the backend's own figures and facts, e.g. {"seed": 42} or Genie's GetProfile() event
    backend_profile: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModeInfo:
    name: str
    description: str  # what the mode does on this backend


@dataclass(frozen=True)
class ModeReadback:
    """What a mode change actually achieved, read back from the system."""

    requested: str
    effective: str  # the mode now in force (== requested when fully applied)
    settings: dict[str, Any]  # measured knobs, e.g. {"threads": 2, "nice": 0}
    not_applied: tuple[str, ...] = ()  # human-readable reasons for anything left out
    switch_seconds: float = 0.0

    @property
    def fully_applied(self) -> bool:
        return not self.not_applied


@dataclass(frozen=True)
class Capabilities:
    modes: tuple[ModeInfo, ...]
    default_mode: str

    @property
    def mode_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modes)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    architecture: str
    backend: str
    context_length: int
    n_params: int | None = None
    quantization: str | None = None
    weights_bytes: int | None = None  # bytes of the working weights read per token
    load_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


OnToken = Callable[[int, str], None]  # (token id, newly decodable text; may be "")
OnProgress = Callable[[float, str], None]  # (fraction 0..1, what is happening)


@runtime_checkable
class Backend(Protocol):
    """An inference engine, as the runtime drives it.

    Threads: the runtime calls every method below from its one engine thread, one call at
    a time (load, then generate/apply_mode/count_prompt_tokens in any order, close last);
    a backend needs no locks for its own state. The one thing shared with other threads
    is the `cancel` event passed to generate(), which any thread may set.

    Step-by-step backends (numpy, onnx) get generate(), count_prompt_tokens() and the CPU
    modes from `antinet_tui.engine.generation.StepwiseBackend` and supply only loading and
    a forward step; a backend that drives a whole generation elsewhere (Genie) implements
    the methods itself, keeping the same contract.
    """

    @property
    def name(self) -> str:
        """The registry's name for it ("numpy", "onnx", "genie"); a class attribute will do."""
        ...

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo:
        """Make the model ready to generate: read, build or fetch from a cache, warm up.

        Reports progress through `on_progress(fraction, what)` (the fraction rises to
        1.0, last message "ready"). Applies the backend's default mode (or the one it
        was created with) before returning. Raises EngineError subclasses with a message
        for the operator (ModelNotFound, ModelFormatError, BackendUnavailable), never a
        library's own exception. `ModelInfo.load_seconds` is the time this call took.
        """
        ...

    def capabilities(self) -> Capabilities:
        """The modes this backend offers and its default one. Callable before load()
        (the CLI checks a --mode before loading)."""
        ...

    def model_info(self) -> ModelInfo:
        """What load() returned. Raises EngineError before load()."""
        ...

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the prompt will occupy (after the chat template), for validation.

        Needs load(). The runtime calls it at submit (and for a request submitted
        before the model was loaded, just before generate()) to check context room.
        """
        ...

    def generate(
        self, request: GenerationRequest, on_token: OnToken, cancel: threading.Event
    ) -> GenerationResult:
        """Run one request to its end, streaming as it goes.

        Validation: calls `engine.validation.validate_request` with the context length
        and the prompt's token count (the engine is usable without the runtime, which
        runs the same checks at submit); a bad request raises InvalidRequest before any
        work.

        Streaming: `on_token(token_id, piece)` once per generated token, in order, on
        the calling thread, right after it is sampled. `piece` is the text that token
        makes visible, valid UTF-8 (bytes of a character split across tokens are held
        back; an unfinished sequence at the end becomes U+FFFD); it may be "". The
        end-of-turn token is reported with "". Text that could be the start of a stop
        string (`request.stop`) is held back until it is ruled out; a matched stop string
        and all after it are never emitted. The pieces joined equal `result.text`.

        Stop reasons: EOS (end of turn, unless request.ignore_eos), STOP_STRING,
        MAX_TOKENS, CONTEXT (the context window is full), CANCELLED.

        Cancel: `cancel` is checked before any work, between prefill chunks and after
        every token; once set, generate returns within one decode step with
        stop_reason CANCELLED and what was generated so far (nothing, if prefill had not
        ended). A cancel is not an error.

        Timing: `prefill_done_ns` is `time.perf_counter_ns()` when the first logits were
        ready (None if cancelled before); `token_times_ns` holds one such stamp per
        generated token, taken when it was sampled. The request's start is stamped by
        the runtime just before this call; metrics.py derives TTFT and rates from these.

        Errors: EngineError subclasses for anything the operator can act on; any other
        exception is a backend fault (the runtime logs it and counts it for the breaker).
        """
        ...

    def apply_mode(self, mode: str) -> ModeReadback:
        """Switch the performance mode for the next request and read back what took
        effect (knobs that could not be set are named in `not_applied`, never skipped
        silently). Never called during generate(). Raises UnknownMode for a name not in
        capabilities()."""
        ...

    def current_mode(self) -> ModeReadback | None:
        """The last readback (None before the first mode was applied)."""
        ...

    def close(self) -> None:
        """Release the model, worker processes, temporary files. Idempotent."""
        ...
