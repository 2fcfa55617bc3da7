"""The backend protocol: what every engine (numpy CPU, Genie NPU, ...) implements.

A backend serves one request at a time and knows nothing of threads, queues, the
breaker or the UI; the runtime layer owns those. Timing is recorded here as raw
`perf_counter_ns` stamps; the derived figures (TTFT, tok/s) are computed in one place,
`antinet_tui.runtime.metrics`, so every frontend uses the same definitions; the start of
a request is stamped by the runtime, just before it calls generate().
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Literal, Protocol, runtime_checkable


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
    can_cancel: bool = True
    streams_tokens: bool = True

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
    name: str

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo: ...

    def capabilities(self) -> Capabilities: ...

    def model_info(self) -> ModelInfo: ...

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the prompt will occupy (after the chat template), for validation."""
        ...

    def generate(
        self, request: GenerationRequest, on_token: OnToken, cancel: threading.Event
    ) -> GenerationResult: ...

    def apply_mode(self, mode: str) -> ModeReadback: ...

    def current_mode(self) -> ModeReadback | None: ...

    def close(self) -> None: ...
