"""EngineService: the one place frontends drive a backend through.

Two threads, both daemons:

* the engine thread owns the backend for its whole life (load, generate, apply_mode,
  close): models are not re-entrant. It takes requests from a bounded queue one at a
  time and applies mode changes between requests.
* the dispatcher thread writes each event's session-log record, then delivers the event
  to subscribers (so whatever a subscriber saw finish is already in the log). The
  engine thread only puts events on an unbounded queue, so a slow subscriber (a UI
  repainting, a disk) never stalls generation.

Ordering guarantees: events reach subscribers in the order they were emitted; a
request's Accepted precedes its Started, its Tokens precede its terminal event, and a
request's tokens are never attributed to another (every event carries its id).

Policy, in one place:

* submit() refuses with a Rejected event (and an unaccepted Submission) on bad input,
  when the queue is full, when the breaker refuses, or when the engine failed to load
  or is shut down. Requests submitted while the model loads wait in the queue; their
  token-count checks run when they start and end in Failed if they do not pass.
* The breaker is fed the end-to-end time of every finished and failed call (queue wait
  included: it protects callers, and they wait through it). Cancelled calls give their
  permit back and are not recorded. A backend's InvalidRequest is the request's fault,
  not the engine's: Failed, but not counted as a breaker failure.
* Measurements (an experiment's runs, submitted with measurement=True) bypass the
  breaker and the metrics history: they are long on purpose, and an experiment that the
  breaker cut off halfway, or that filled the operator's latency charts, would be wrong.
  Only the operator's isolation of the breaker refuses them.
* set_mode() with a name the backend does not offer raises UnknownMode synchronously (so
  the CLI can print it and exit); other mode errors arrive as ModeChanged(error=...).
* Backend.count_prompt_tokens is called on the submitting thread, so the backend must
  allow it concurrently with generate (it is a tokenizer call).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import antinet_tui
from antinet_tui.engine.errors import EngineError, InvalidRequest
from antinet_tui.engine.protocol import (
    Backend,
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModeReadback,
    StopReason,
)
from antinet_tui.engine.validation import validate_fits, validate_mode, validate_request
from antinet_tui.runtime.breaker import ISOLATED_REFUSAL, BreakerSnapshot, BreakerState, CircuitBreaker
from antinet_tui.runtime.events import (
    TERMINAL_EVENTS,
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
    RejectCause,
    Rejected,
    SessionLogFailed,
    Started,
    Token,
    jsonable,
)
from antinet_tui.runtime.metrics import MetricsStore, Outcome, PartialResult, RequestMetrics, compute_metrics
from antinet_tui.runtime.session_log import SessionLog, SessionLogError

logger = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]
TerminalEvent = Finished | Cancelled | Failed | Rejected

_LOGGED_KINDS = {"loaded", "load_failed", "finished", "cancelled", "failed", "rejected", "breaker_transition", "mode_changed"}
_STOP_DISPATCHER = object()
_ENDED_EVENT_WAIT_S = 2.0  # an already emitted terminal event reaches a subscriber well within this


@dataclass(frozen=True)
class Submission:
    request_id: int
    accepted: bool
    reason: str | None = None  # why it was refused


class _ShutdownDuringLoad(BaseException):
    """Raised from the load progress callback to abandon a load at shutdown.
    A BaseException so a backend's `except Exception` around its loading does not eat it."""


@dataclass
class _Job:
    request_id: int
    request: GenerationRequest
    accepted_ns: int
    prompt_tokens: int | None  # None until counted (submitted before the model loaded)
    measurement: bool = False  # an experiment's run: outside the breaker and the metrics history
    cancel: threading.Event = field(default_factory=threading.Event)


class EngineService:
    def __init__(
        self,
        backend: Backend,
        *,
        queue_size: int = 8,
        breaker: CircuitBreaker | None = None,
        metrics: MetricsStore | None = None,
        session_log: SessionLog | None = None,
        initial_mode: str | None = None,
    ):
        """`queue_size` counts waiting requests (the running one aside). The service takes
        over `breaker.on_transition`: transitions arrive as BreakerTransition events."""
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._backend = backend
        self._queue_size = queue_size
        self._breaker = breaker or CircuitBreaker()
        self._breaker.on_transition = self._on_breaker_transition
        self._metrics = metrics or MetricsStore()
        self._log = session_log or SessionLog.disabled()

        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the engine thread waits on it
        self._queue: deque[_Job] = deque()
        self._running: _Job | None = None
        # (mode, requested_by) waiting for the engine thread to apply it between requests
        self._pending_mode = (initial_mode, "settings") if initial_mode else None
        self._state = "not_started"
        self._load_error: str | None = None
        self._loaded = threading.Event()  # set when loading ended, either way
        self._stopping = threading.Event()
        self._ids = itertools.count(1)

        self._model_info: ModelInfo | None = None
        self._capabilities: Capabilities | None = None
        self._mode: ModeReadback | None = None

        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._subscribers: tuple[Subscriber, ...] = ()
        self._requests_to_log: dict[int, GenerationRequest] = {}  # until their terminal record
        self._held_transitions = threading.local()
        self._engine_thread = threading.Thread(target=self._engine_main, name="antinet-engine", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="antinet-events", daemon=True)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> EngineService:
        """Start the dispatcher and the engine thread, which loads the model."""
        with self._lock:
            if self._state != "not_started":
                raise RuntimeError(f"the service was already started (state: {self._state})")
        # first, so a log that cannot be written (a full disk) refuses the start: SessionLogError
        self._log.write(
            {
                "kind": "session_start",
                "wall": time.time(),
                "version": antinet_tui.__version__,
                "backend": self._backend.name,
                "pid": os.getpid(),
            }
        )
        with self._lock:
            self._state = "loading"
        self._dispatcher.start()
        self._engine_thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading ended; True when the model is ready."""
        self._loaded.wait(timeout)
        return self.state == "ready"

    def shutdown(self, timeout: float = 1.0) -> None:
        """Cancel the running request, cancel the queued ones, stop both threads.

        Returns within about `timeout` seconds: the running request stops within one
        decode step. A backend stuck longer (a decode step or a load that ignores the
        request) is left to its daemon thread, which closes the backend when it returns.
        Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._loaded.set()  # wake wait_ready(): a load in progress is abandoned
            was_started = self._state != "not_started"
            self._state = "stopped"
            queued = list(self._queue)
            self._queue.clear()
            if self._running is not None:
                self._running.cancel.set()
            self._wakeup.notify_all()
        for job in queued:
            self._cancel_unstarted(job)
        if not was_started:
            self._close_backend()
            return
        self._engine_thread.join(max(0.0, deadline - time.monotonic()))
        if self._engine_thread.is_alive():
            logger.warning("the engine did not stop within %.1f s; it will close the backend when it returns", timeout)
        self._events.put(_STOP_DISPATCHER)
        self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        if not self._dispatcher.is_alive():
            self._log.close()

    def __enter__(self) -> EngineService:
        if self._state == "not_started":
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- observing -----------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every event, on the dispatcher thread. Returns the unsubscribe function."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def metrics(self) -> MetricsStore:
        return self._metrics

    @property
    def session_log(self) -> SessionLog:
        """The log records go to (its `lost` counts records the disk refused)."""
        return self._log

    @property
    def model_info(self) -> ModelInfo | None:
        return self._model_info

    @property
    def capabilities(self) -> Capabilities | None:
        return self._capabilities

    @property
    def current_mode(self) -> ModeReadback | None:
        """The last mode readback: what is in force, not what was asked for."""
        return self._mode

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    @property
    def is_busy(self) -> bool:
        return self._running is not None

    @property
    def state(self) -> str:
        """not_started, loading, ready, failed or stopped."""
        return self._state

    @property
    def load_error(self) -> str | None:
        return self._load_error

    # -- requests ------------------------------------------------------------------

    def submit(self, request: GenerationRequest, measurement: bool = False) -> Submission:
        """Queue a request. A `measurement` (an experiment's run) is deliberately long
        and repeated: the breaker neither refuses nor counts it, and it stays out of the
        metrics history, which describes the operator's requests."""
        submission, _ = self._submit(request, next(self._ids), measurement)
        return submission

    def cancel(self, request_id: int | None = None) -> bool:
        """Cancel the running request (None: whichever is running) or remove a queued one.

        A running request stops within one decode step and ends with Cancelled; a queued
        one ends with Cancelled now. False when there was nothing to cancel."""
        with self._lock:
            running = self._running
            if running is not None and request_id in (None, running.request_id):
                running.cancel.set()
                return True
            job = next((j for j in self._queue if j.request_id == request_id), None)
            if job is None:
                return False
            self._queue.remove(job)
        self._cancel_unstarted(job)
        return True

    def generate_sync(
        self,
        request: GenerationRequest,
        on_token: Callable[[Token], None] | None = None,
        timeout: float | None = None,
        measurement: bool = False,
        stop: threading.Event | None = None,
    ) -> TerminalEvent:
        """Submit (see `submit`) and block until the request's terminal event, which is returned.

        `on_token` runs on the dispatcher thread. On timeout, when `stop` is set (from any
        thread), or on KeyboardInterrupt in the calling thread, this request (and no other)
        is cancelled and its Cancelled event returned (with what was generated so far)."""
        if self._state == "not_started":
            raise RuntimeError("call start() before generate_sync()")
        request_id = next(self._ids)
        ended: list[TerminalEvent] = []
        done = threading.Event()

        def listen(event: Event) -> None:
            if event.request_id != request_id:
                return
            if isinstance(event, Token) and on_token is not None:
                on_token(event)
            elif isinstance(event, TERMINAL_EVENTS):
                ended.append(event)
                done.set()

        unsubscribe = self.subscribe(listen)
        try:
            try:
                _, rejected = self._submit(request, request_id, measurement)
                if rejected is not None:
                    return rejected
                if not self._wait(done, timeout, stop):
                    self.cancel(request_id)
                    self._wait(done, None)
            except KeyboardInterrupt:
                # Ctrl-C can land anywhere above. Queued or running: cancelled, its end
                # follows. Neither: it ended already (its terminal event is on the way)
                # or it was never queued, and then the interrupt is the caller's.
                if not self.cancel(request_id) and not self._wait(done, _ENDED_EVENT_WAIT_S):
                    raise
                self._wait(done, None)
            return ended[0]
        finally:
            unsubscribe()

    def set_mode(self, name: str, requested_by: str = "operator") -> None:
        """Apply a performance mode between requests.

        Raises UnknownMode at once for a name the backend does not offer (checked when
        the model is loaded; before that the engine checks it after loading and reports
        ModeChanged(error=...)). If a request is running, ModeChanged(deferred=True) is
        emitted now and the mode applies before the next request. `requested_by` is
        carried on the ModeChanged events, so a frontend can tell an experiment's
        switches from the operator's."""
        if self._capabilities is not None:
            validate_mode(name, self._capabilities.mode_names)
        with self._lock:
            if self._state in ("failed", "stopped"):
                raise EngineError(f"cannot change the mode: the engine is {self._state}")
            self._pending_mode = (name, requested_by)
            if self._running is not None:
                self._emit(ModeChanged(requested=name, readback=None, deferred=True, requested_by=requested_by))
            self._wakeup.notify_all()

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the request's prompt occupies after the chat template (model loaded)."""
        if self._model_info is None:
            raise EngineError("the model is not loaded yet")
        return self._backend.count_prompt_tokens(request)

    def log_record(self, record: dict) -> None:
        """Append a frontend's own record (an experiment's results, ...) to the session log.
        A record the disk refused is reported to subscribers (SessionLogFailed), not raised."""
        try:
            self._log.write({"wall": time.time(), **jsonable(record)})
        except SessionLogError as exc:
            self._emit(self._log_failure(exc))

    def isolate_breaker(self) -> None:
        self._breaker.isolate()

    def reset_breaker(self) -> None:
        self._breaker.reset()

    # -- submission ----------------------------------------------------------------

    def _submit(
        self, request: GenerationRequest, request_id: int, measurement: bool = False
    ) -> tuple[Submission, Rejected | None]:
        self._requests_to_log[request_id] = request
        prompt_tokens, refusal = self._check_input(request)
        with self._lock:
            if refusal is None:
                refusal = self._check_capacity()
            if refusal is None and measurement:  # only the operator's isolation stops these
                if self._breaker.state is BreakerState.ISOLATED:
                    refusal = (ISOLATED_REFUSAL, "breaker_open")
            elif refusal is None:
                permitted, why = self._breaker.try_acquire()
                if not permitted:
                    refusal = (why, "breaker_open")
            if refusal is None:
                job = _Job(request_id, request, time.perf_counter_ns(), prompt_tokens, measurement)
                self._queue.append(job)
                self._emit(Accepted(request_id, request.prompt, request.max_new_tokens, len(self._queue)))
                self._wakeup.notify_all()
                return Submission(request_id, True), None
        reason, cause = refusal
        rejected = Rejected(request_id, reason, cause)
        if not measurement:
            self._metrics.record_rejection(cause)
        self._emit(rejected)
        return Submission(request_id, False, reason), rejected

    def _check_input(self, request: GenerationRequest) -> tuple[int | None, tuple[str, RejectCause] | None]:
        """(prompt tokens, or None before the model is loaded; the refusal, if any)."""
        info = self._model_info
        prompt_tokens = None
        try:
            validate_request(request)  # before tokenizing: a tokenizer need not cope with bad text
            if info is not None:
                prompt_tokens = self._backend.count_prompt_tokens(request)
                validate_fits(request, info.context_length, prompt_tokens)
        except EngineError as exc:
            return prompt_tokens, (str(exc), "bad_input")
        return prompt_tokens, None

    def _check_capacity(self) -> tuple[str, RejectCause] | None:
        """The lock is held."""
        if self._state == "failed":
            return f"the engine failed to load: {self._load_error}", "not_ready"
        if self._state == "stopped":
            return "the engine is shut down", "not_ready"
        if len(self._queue) >= self._queue_size:
            return f"queue full: {len(self._queue)} requests waiting", "queue_full"
        return None

    def _wait(self, done: threading.Event, timeout: float | None, stop: threading.Event | None = None) -> bool:
        """Wait in short slices: stays responsive to Ctrl-C and to `stop`, and gives up if
        the dispatcher is gone (a shutdown that could not deliver the terminal event).
        False on timeout or stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.1):
            if not self._dispatcher.is_alive() and self._stopping.is_set() and not done.is_set():
                raise EngineError("the service stopped before the request ended")
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if stop is not None and stop.is_set():
                return False
        return True

    # -- the engine thread ----------------------------------------------------------

    def _engine_main(self) -> None:
        try:
            if self._load():
                self._serve()
        finally:
            self._close_backend()

    def _load(self) -> bool:
        def on_progress(fraction: float, message: str) -> None:
            if self._stopping.is_set():
                raise _ShutdownDuringLoad
            self._emit(LoadProgress(fraction, message))

        try:
            info = self._backend.load(on_progress)
            capabilities = self._backend.capabilities()
            mode = self._backend.current_mode()
        except _ShutdownDuringLoad:
            return False
        except Exception as exc:
            if isinstance(exc, EngineError):  # expected (missing file, bad GGUF): its message says it all
                logger.info("loading the model failed: %s", exc)
            else:
                logger.exception("loading the model failed")
            self._fail_load(_describe(exc))
            return False
        with self._lock:
            self._model_info, self._capabilities, self._mode = info, capabilities, mode
            if self._state == "loading":
                self._state = "ready"
            self._emit(Loaded(info, capabilities, mode))
        self._loaded.set()
        return True

    def _fail_load(self, error: str) -> None:
        with self._lock:
            self._load_error = error
            if self._state == "loading":
                self._state = "failed"
            queued = list(self._queue)
            self._queue.clear()
            self._emit(LoadFailed(error))
        self._loaded.set()
        for job in queued:
            self._release_breaker(job)
            metrics = self._compute(job, None, PartialResult(prompt_tokens=job.prompt_tokens), "failed")
            self._emit(Failed(job.request_id, f"the engine failed to load: {error}", metrics))

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._stopping.is_set() and self._pending_mode is None and not self._queue:
                    self._wakeup.wait()
                if self._stopping.is_set():
                    return
                mode, self._pending_mode = self._pending_mode, None
                job = None
                if mode is None:
                    job = self._running = self._queue.popleft()
            if mode is not None:
                self._apply_mode(*mode)
            else:
                self._run(job)

    def _apply_mode(self, name: str, requested_by: str) -> None:
        try:
            validate_mode(name, self._capabilities.mode_names)
            readback = self._backend.apply_mode(name)
        except Exception as exc:
            if not isinstance(exc, EngineError):
                logger.exception("applying mode %r failed", name)
            self._emit(ModeChanged(requested=name, readback=None, error=_describe(exc), requested_by=requested_by))
            return
        self._mode = readback
        self._emit(ModeChanged(requested=name, readback=readback, requested_by=requested_by))

    def _run(self, job: _Job) -> None:
        if job.cancel.is_set():  # cancelled between leaving the queue and starting
            self._clear_running()
            self._cancel_unstarted(job)
            return
        started_ns = time.perf_counter_ns()
        self._emit(Started(job.request_id, (started_ns - job.accepted_ns) / 1e6))
        streamed = PartialResult(prompt_tokens=job.prompt_tokens)

        def on_token(token_id: int, text: str) -> None:
            index = len(streamed.token_ids)
            streamed.add_token(token_id, text, time.perf_counter_ns())
            self._emit(Token(job.request_id, token_id, text, index))

        try:
            if job.prompt_tokens is None:  # submitted before the model was loaded
                job.prompt_tokens = streamed.prompt_tokens = self._backend.count_prompt_tokens(job.request)
                validate_fits(job.request, self._model_info.context_length, job.prompt_tokens)
            result = self._backend.generate(job.request, on_token, job.cancel)
        except InvalidRequest as exc:
            self._conclude(job, started_ns, streamed, "failed", error=_describe(exc), counts_for_breaker=False)
        except Exception as exc:
            logger.exception("request %d failed in the backend", job.request_id)
            self._conclude(job, started_ns, streamed, "failed", error=_describe(exc))
        else:
            outcome: Outcome = "cancelled" if result.stop_reason is StopReason.CANCELLED else "finished"
            self._conclude(job, started_ns, result, outcome)

    def _conclude(
        self,
        job: _Job,
        started_ns: int,
        output: GenerationResult | PartialResult,
        outcome: Outcome,
        error: str | None = None,
        counts_for_breaker: bool = True,
    ) -> None:
        """Metrics, breaker, then the terminal event, then any breaker transition it caused."""
        metrics = self._compute(job, started_ns, output, outcome)
        self._held_transitions.events = held = []
        try:
            if outcome == "cancelled" or not counts_for_breaker:
                self._release_breaker(job)
            elif not job.measurement:
                self._breaker.on_result(metrics.e2e_ms, failed=outcome == "failed")
        finally:
            self._held_transitions.events = None
        self._clear_running()
        token_ids = tuple(output.token_ids)
        if outcome == "finished":
            self._emit(Finished(job.request_id, output.text, token_ids, metrics))
        elif outcome == "cancelled":
            self._emit(Cancelled(job.request_id, output.text, token_ids, metrics))
        else:
            self._emit(Failed(job.request_id, error, metrics))
        for transition in held:
            self._emit(transition)

    def _clear_running(self) -> None:
        with self._lock:
            self._running = None

    def _release_breaker(self, job: _Job) -> None:
        """Give back the permit the job took at submission (measurements take none)."""
        if not job.measurement:
            self._breaker.release()

    def _cancel_unstarted(self, job: _Job) -> None:
        self._release_breaker(job)
        never_ran = PartialResult(prompt_tokens=job.prompt_tokens, stop_reason=StopReason.CANCELLED)
        metrics = self._compute(job, None, never_ran, "cancelled")
        self._emit(Cancelled(job.request_id, "", (), metrics))

    def _compute(
        self, job: _Job, started_ns: int | None, output: GenerationResult | PartialResult, outcome: Outcome
    ) -> RequestMetrics:
        mode = self._mode.effective if self._mode is not None else None
        metrics = compute_metrics(job.accepted_ns, started_ns, output, time.perf_counter_ns(), mode, outcome)
        if not job.measurement:
            self._metrics.record(metrics)
        return metrics

    def _close_backend(self) -> None:
        try:
            self._backend.close()
        except Exception:
            logger.exception("closing the backend failed")

    # -- events ----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.put(event)

    def _on_breaker_transition(
        self, from_state: BreakerState, to_state: BreakerState, reason: str, snapshot: BreakerSnapshot
    ) -> None:
        self._metrics.record_breaker_transition(to_state)
        event = BreakerTransition(from_state, to_state, reason, snapshot)
        held = getattr(self._held_transitions, "events", None)
        if held is not None:  # the engine thread emits it after the terminal event that caused it
            held.append(event)
        else:
            self._emit(event)

    def _dispatch_loop(self) -> None:
        while (event := self._events.get()) is not _STOP_DISPATCHER:
            failure = None
            try:
                self._write_log(event)
            except SessionLogError as exc:
                failure = self._log_failure(exc)
            except (OSError, ValueError):
                logger.exception("could not write the session log")
            for delivered in (event, failure) if failure is not None else (event,):
                for callback in self._subscribers:
                    try:
                        callback(delivered)
                    except Exception:
                        logger.exception("event subscriber %r failed on a %s event", callback, delivered.kind)

    def _log_failure(self, exc: SessionLogError) -> SessionLogFailed:
        logger.error("%s (%d records lost)", exc, self._log.lost)
        return SessionLogFailed(path=str(self._log.path), reason=exc.reason, lost=self._log.lost)

    def _write_log(self, event: Event) -> None:
        if event.kind not in _LOGGED_KINDS:
            return
        record = event.to_record()
        if isinstance(event, TERMINAL_EVENTS) and event.request_id is not None:
            request = self._requests_to_log.pop(event.request_id, None)
            if request is not None:
                record["request"] = jsonable(request)
        self._log.write(record)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


