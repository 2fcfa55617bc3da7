"""Deterministic fake backends implementing the Backend protocol, for runtime and UI tests.

`FakeBackend` is one configurable class. It replies with the words of `reply` (cycled
when `ignore_eos` asks for an exact count), and can be made slow (`prefill_delay_s`,
`token_delay_s`, scaled by the mode in force), made to fail (`fail_on_token`,
`load_error`, `mode_errors`), or held at the start of a request (`start_gate`) so a
test can fill the queue. It counts what happened so tests can assert on it: decode
steps, the modes applied and the mode each
request ran in, the threads that called it.

Its modes are a CPU backend's: burst / default / power_saver, read back like
engine.cpu_modes does (threads, nice, cores), including the partial readback when
raising priority is not permitted.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from dataclasses import dataclass

from antinet_tui.engine.errors import EngineError, UnknownMode
from antinet_tui.engine.protocol import (
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ModeInfo,
    ModelInfo,
    ModeReadback,
    OnProgress,
    OnToken,
    StopReason,
)
from antinet_tui.runtime.breaker import BreakerConfig, BreakerSnapshot, BreakerState
from antinet_tui.runtime.events import (
    Accepted,
    BreakerTransition,
    Cancelled,
    Event,
    Failed,
    Finished,
    Loaded,
    LoadFailed,
    LoadProgress,
    ModeChanged,
    Rejected,
    SessionLogFailed,
    Started,
    Token,
)
from antinet_tui.runtime.metrics import RequestMetrics


@dataclass(frozen=True)
class FakeMode:
    name: str
    threads: int
    nice: int
    cores: tuple[int, ...]
    speed: float  # delays are divided by this
    description: str


FAKE_CORES = (0, 1, 2, 3, 4, 5, 6, 7)
FAKE_MODES = (
    FakeMode("burst", 8, -5, FAKE_CORES, 2.0, "all 8 cores, raised priority (nice -5) where permitted"),
    FakeMode("default", 4, 0, FAKE_CORES, 1.0, "half the cores, normal priority"),
    FakeMode("power_saver", 1, 10, (7,), 0.5, "1 thread pinned to core 7, lowered priority (nice 10)"),
)

DEFAULT_REPLY = "The quick brown fox jumps over the lazy dog near the quiet river bank."


class FakeBackendError(RuntimeError):
    pass


class FakeClock:
    """A monotonic clock the test moves (the breaker's)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        *,
        reply: str = DEFAULT_REPLY,
        context_length: int = 4096,
        chat_overhead_tokens: int = 6,
        load_delay_s: float = 0.0,
        load_error: Exception | None = None,
        prefill_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        fail_on_token: int | None = None,  # raise when about to emit this (1-based) token
        fail_with: type[Exception] = FakeBackendError,
        start_gate: threading.Event | None = None,  # generate waits for it (or cancel) first
        load_gate: threading.Event | None = None,  # load waits for it before finishing
        nice_permitted: bool = True,  # False: burst's raised priority is refused, as without CAP_SYS_NICE
        mode_errors: dict[str, Exception] | None = None,  # apply_mode(name) raises this
        respects_cancel: bool = True,  # False: a backend that never checks the flag
        keep_history: bool = True,  # False for soaks: `requests` and `modes_during_generate` stay empty
    ):
        self.reply_pieces = re.findall(r"\s*\S+", reply)
        self.context_length = context_length
        self.chat_overhead_tokens = chat_overhead_tokens
        self.load_delay_s = load_delay_s
        self.load_error = load_error
        self.prefill_delay_s = prefill_delay_s
        self.token_delay_s = token_delay_s
        self.fail_on_token = fail_on_token
        self.fail_with = fail_with
        self.start_gate = start_gate
        self.load_gate = load_gate
        self.nice_permitted = nice_permitted
        self.mode_errors = dict(mode_errors or {})
        self.respects_cancel = respects_cancel
        self.keep_history = keep_history

        self.loaded = False
        self.closed = False
        self.generate_calls = 0
        self.decode_steps = 0
        self.requests: list[GenerationRequest] = []
        self.applied_modes: list[str] = []
        self.modes_during_generate: list[str | None] = []
        self.threads_seen: set[str] = set()
        self.generating = threading.Event()  # set while inside generate
        self.started_requests = threading.Semaphore(0)  # released once per generate call
        self._mode: ModeReadback | None = None
        self._info: ModelInfo | None = None

    # -- protocol ------------------------------------------------------------------

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo:
        self._touch()
        started = time.perf_counter()
        for fraction, message in ((0.0, "reading fake weights"), (0.5, "building fake tokenizer"), (1.0, "fake weights in memory")):
            if on_progress is not None:
                on_progress(fraction, message)
            if fraction < 1.0 and self.load_delay_s:
                time.sleep(self.load_delay_s / 2)
        if self.load_gate is not None:
            self.load_gate.wait(30)
        if self.load_error is not None:
            raise self.load_error
        self._info = ModelInfo(
            name="fake-tiny",
            path="<fake>",
            architecture="fake",
            backend=self.name,
            context_length=self.context_length,
            n_params=1000,
            quantization="F32",
            weights_bytes=4000,
            load_seconds=time.perf_counter() - started,
        )
        self._mode = self._readback("default", switch_seconds=0.0)
        self.loaded = True
        return self._info

    def capabilities(self) -> Capabilities:
        return Capabilities(modes=tuple(ModeInfo(m.name, m.description) for m in FAKE_MODES), default_mode="default")

    def model_info(self) -> ModelInfo:
        if self._info is None:
            raise EngineError("the fake model is not loaded")
        return self._info

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(request.prompt.split()) + (self.chat_overhead_tokens if request.chat else 0)

    def generate(self, request: GenerationRequest, on_token: OnToken, cancel: threading.Event) -> GenerationResult:
        self._touch()
        if not self.loaded or self.closed:
            raise EngineError("the fake backend is not loaded")
        self.generate_calls += 1
        if self.keep_history:
            self.requests.append(request)
            self.modes_during_generate.append(self._mode.requested if self._mode else None)
        self.generating.set()
        self.started_requests.release()
        try:
            return self._generate(request, on_token, cancel)
        finally:
            self.generating.clear()

    def apply_mode(self, mode: str) -> ModeReadback:
        self._touch()
        if mode not in {m.name for m in FAKE_MODES}:
            raise UnknownMode(mode, [m.name for m in FAKE_MODES])
        if mode in self.mode_errors:
            raise self.mode_errors[mode]
        started = time.perf_counter()
        self.applied_modes.append(mode)
        self._mode = self._readback(mode, switch_seconds=time.perf_counter() - started)
        return self._mode

    def current_mode(self) -> ModeReadback | None:
        return self._mode

    def close(self) -> None:
        self.closed = True

    # -- internals -----------------------------------------------------------------

    def _generate(self, request: GenerationRequest, on_token: OnToken, cancel: threading.Event) -> GenerationResult:
        prompt_tokens = self.count_prompt_tokens(request)
        if self.start_gate is not None:
            while not self.start_gate.wait(0.005) and not cancel.is_set():
                pass
        self._sleep(self.prefill_delay_s)
        prefill_done_ns = time.perf_counter_ns()

        room = self.context_length - prompt_tokens
        limit = min(request.max_new_tokens, room)
        if not request.ignore_eos:
            limit = min(limit, len(self.reply_pieces))
        token_ids: list[int] = []
        times: list[int] = []
        text = ""
        stop = None
        while len(token_ids) < limit:
            if cancel.is_set() and self.respects_cancel:
                stop = StopReason.CANCELLED
                break
            self.decode_steps += 1
            if self.fail_on_token is not None and len(token_ids) + 1 == self.fail_on_token:
                raise self.fail_with(f"fake backend failed at token {self.fail_on_token}")
            self._sleep(self.token_delay_s)
            position = len(token_ids) % len(self.reply_pieces)
            piece = self.reply_pieces[position]
            token_ids.append(100 + position)
            times.append(time.perf_counter_ns())
            text += piece
            on_token(token_ids[-1], piece)
        if stop is None:
            n = len(token_ids)
            stop = StopReason.MAX_TOKENS if n == request.max_new_tokens else StopReason.CONTEXT if n == room else StopReason.EOS
        return GenerationResult(
            text=text,
            token_ids=token_ids,
            prompt_tokens=prompt_tokens,
            stop_reason=stop,
            prefill_done_ns=prefill_done_ns,
            token_times_ns=times,
            backend_profile={"fake": True, "decode_steps": len(token_ids)},
        )

    def _sleep(self, seconds: float) -> None:
        """Simulated compute: slower or faster with the mode, like the real thing."""
        if seconds:
            speed = next(m.speed for m in FAKE_MODES if m.name == self._mode.requested)
            time.sleep(seconds / speed)

    def _readback(self, name: str, switch_seconds: float) -> ModeReadback:
        mode = next(m for m in FAKE_MODES if m.name == name)
        nice, not_applied = mode.nice, ()
        if mode.nice < 0 and not self.nice_permitted:
            nice = 0
            not_applied = (f"priority: nice {mode.nice} not permitted (needs CAP_SYS_NICE or root)",)
        return ModeReadback(
            requested=name,
            effective=name if not not_applied else f"{name} (partial)",
            settings={"threads": mode.threads, "nice": nice, "cores": list(mode.cores), "usable_cores": len(FAKE_CORES)},
            not_applied=not_applied,
            switch_seconds=switch_seconds,
        )

    def _touch(self) -> None:
        self.threads_seen.add(threading.current_thread().name)


class EventRecorder:
    """A subscriber that keeps every event and lets a test wait for one, without sleeping."""

    def __init__(self) -> None:
        self.events: list = []
        self._changed = threading.Condition()

    def __call__(self, event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = 5.0):
        """The first event matching predicate, waiting up to timeout seconds for it."""
        with self._changed:
            found = self._changed.wait_for(lambda: next((e for e in self.events if predicate(e)), None), timeout)
            if found is None:
                raise AssertionError(f"no matching event within {timeout} s; got {[e.kind for e in self.events]}")
            return found

    def of(self, request_id: int) -> list:
        with self._changed:
            return [e for e in self.events if e.request_id == request_id]

    def kinds(self, request_id: int | None = None) -> list[str]:
        with self._changed:
            return [e.kind for e in self.events if request_id is None or e.request_id == request_id]


def wait_until(condition, what: str = "the condition", timeout: float = 10.0, interval: float = 0.005) -> None:
    """Poll a condition that no event signals (e.g. a backend counter), like oterm's helper."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def one_event_of_each() -> list[Event]:
    """Every event type with its optional fields filled, for the round trips (record, stream);
    three tokens in a row, the last one empty, as a stream batches them."""
    info = ModelInfo("m", "/m.gguf", "llama", "numpy", 2048, n_params=135, quantization="Q4_1",
                     details={"from_cache": True})
    caps = Capabilities((ModeInfo("burst", "all cores"), ModeInfo("default", "half")), "default")
    readback = ModeReadback("burst", "burst (partial)", {"threads": 2, "nice": 0}, ("priority: not permitted",), 0.01)
    metrics = RequestMetrics(1.5, 20.0, 300.0, 40.0, 900.0, 12, 8, "burst", "eos", "finished", {"seed": 4}, 880.5)
    snapshot = BreakerSnapshot(BreakerState.OPEN, "4 of the last 4 calls failed", 30.0, 0, 4, 4,
                               BreakerConfig(slow_call_ms=1500))
    return [
        LoadProgress(0.5, "dequantizing"),
        Loaded(info, caps, readback),
        LoadFailed("not a GGUF file"),
        Accepted(7, "hello", 64, 2, origin="127.0.0.1:53122", measurement=True),
        Started(7, 3.25),
        Token(7, 504, "The", 0),
        Token(7, 3575, " capital", 1),
        Token(7, 0, "", 2),
        Finished(7, "The capital", (504, 3575, 0), metrics),
        Cancelled(8, "", (), dataclasses.replace(metrics, outcome="cancelled", ttft_ms=None, service_ms=None)),
        Failed(9, "the NPU went away", dataclasses.replace(metrics, outcome="failed", stop_reason=None)),
        Rejected(10, "queue full: 8 requests waiting", "queue_full", 2.5),
        Rejected(None, "breaker isolated", "breaker_open"),
        BreakerTransition(BreakerState.CLOSED, BreakerState.OPEN, "4 of the last 4 calls failed", snapshot),
        ModeChanged("burst", readback, requested_by="experiment", change_id=3),
        ModeChanged("turbo", None, error="unknown mode 'turbo'"),
        SessionLogFailed("/var/log/antinet/session.jsonl", "No space left on device", 3),
    ]
