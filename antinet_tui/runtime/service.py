"""EngineService: the one place frontends drive a backend through.

Two threads, both daemons:

* the engine thread owns the backend for its whole life (load, generate, apply_mode,
  close): models are not re-entrant. It takes requests from a bounded queue one at a
  time and applies mode changes between requests.
* the dispatcher thread writes each event's session-log record, then delivers the event
  to every subscriber and then to its request's handle (routed by request id), so
  whatever a reader saw finish is already in the log and known to every subscriber.
  The engine thread only puts events on an unbounded queue, so a slow subscriber (a UI
  repainting, a disk) never stalls generation. The dispatcher also keeps time: it ends requests that waited too long
  and moves an OPEN breaker to HALF_OPEN when its wait is over.

Ordering guarantees: events reach subscribers in the order they were emitted; a
request's Accepted precedes its Started, its Tokens precede its terminal event, and a
request's tokens are never attributed to another (every event carries its id).

Policy, in one place:

* submit() refuses with a Rejected event (and a handle with accepted False) on bad input,
  when the queue is full, when the breaker refuses, when another holder reserved the
  engine, or when the engine failed to load or is shut down. Requests submitted while
  the model loads wait in the queue; their token-count checks run when they start and
  end in Failed if they do not pass.
* Waiting is bounded: a request that waits in the queue longer than `max_queue_wait_s`
  ends with Rejected(cause="queue_timeout", retry_after_s=...): with many clients the
  queue grows on a healthy engine, and a caller is better told to come back than held.
* The breaker judges the engine, not the load: it is fed the service time (the engine
  starts the request -> its last token) of every finished and failed call. Cancelled
  calls give their permit back and are not recorded. A backend's InvalidRequest is the
  request's fault, not the engine's: Failed, but not counted as a breaker failure.
  OPEN turns HALF_OPEN on time (the dispatcher polls it when its wait is over), so the
  transition is an event even when no request arrives.
* Measurements (an experiment's runs, submitted with measurement=True) bypass the
  breaker and the metrics history: they are long on purpose, and an experiment that the
  breaker cut off halfway, or that filled the operator's latency charts, would be wrong.
  Only the operator's isolation of the breaker refuses them.
* Exclusive use: `reserve(holder)` gives one holder (an experiment) the modes and the
  engine; anyone else's set_mode() raises EngineError and their requests are refused
  (cause "reserved"), whoever asks (the dashboard, the CLI, an HTTP client).
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
from typing import Any, Self

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
from antinet_tui.runtime.client import (
    EngineReserved,
    LogStatus,
    ModeChange,
    RequestHandle,
    Reservation,
    ServiceState,
    Subscriber,
    _Inbox,
    refused_handle,
)
from antinet_tui.runtime.events import (
    OPERATOR,
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
from antinet_tui.runtime.metrics import (
    MetricsStore,
    MetricsSummary,
    Outcome,
    PartialResult,
    RequestMetrics,
    compute_metrics,
)
from antinet_tui.runtime.session_log import SessionLog, SessionLogError

logger = logging.getLogger(__name__)

_LOGGED_KINDS = {"loaded", "load_failed", "finished", "cancelled", "failed", "rejected", "breaker_transition",
                 "mode_changed"}
_STOP_DISPATCHER = object()
DEFAULT_MAX_QUEUE_WAIT_S = 60.0  # a full queue of 8 typical answers drains within it here
_TIMEKEEPING_SLICE_S = 0.25  # while something waits on time, the dispatcher looks this often
_RETRY_WHEN_UNKNOWN_S = 1.0  # retry_after_s for a full queue before any request finished


@dataclass(frozen=True)
class _Abandon:
    """A dropped, unfinished handle: the dispatcher cancels its request."""

    request_id: int


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
    deadline: float = float("inf")  # time.monotonic() after which it may no longer wait


@dataclass
class _PendingMode:
    change: ModeChange
    superseded: list[ModeChange] = field(default_factory=list)  # earlier changes this one replaced


class EngineService:
    """The in-process EngineClient (see runtime/client.py for the contract)."""

    def __init__(
        self,
        backend: Backend,
        *,
        queue_size: int = 8,
        max_queue_wait_s: float = DEFAULT_MAX_QUEUE_WAIT_S,
        breaker: CircuitBreaker | None = None,
        metrics: MetricsStore | None = None,
        session_log: SessionLog | None = None,
        initial_mode: str | None = None,
    ):
        """`queue_size` counts waiting requests (the running one aside); `max_queue_wait_s`
        is how long one may wait before it is refused (queue_timeout). The service takes
        over `breaker.on_transition`: transitions arrive as BreakerTransition events.
        `initial_mode` is applied right after loading (requested_by "settings")."""
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not max_queue_wait_s > 0:
            raise ValueError("max_queue_wait_s must be positive")
        self._backend = backend
        self._queue_size = queue_size
        self._max_queue_wait_s = max_queue_wait_s
        self._breaker = breaker or CircuitBreaker()
        self._breaker.on_transition = self._on_breaker_transition
        self._metrics = metrics or MetricsStore()
        self._log = session_log or SessionLog.disabled()

        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the engine thread waits on it
        self._queue: deque[_Job] = deque()
        self._running: _Job | None = None
        self._change_ids = itertools.count(1)
        self._pending_mode: _PendingMode | None = None  # applied by the engine thread between requests
        if initial_mode:
            self._pending_mode = _PendingMode(ModeChange(next(self._change_ids), initial_mode, "settings"))
        self._mode_changes: dict[int, list[ModeChange]] = {}  # change id -> who waits for its event
        self._reservation: Reservation | None = None
        self._state = ServiceState.NOT_STARTED
        self._load_error: str | None = None
        self._loaded = threading.Event()  # set when loading ended, either way
        self._stopping = threading.Event()
        self._ids = itertools.count(1)

        self._model_info: ModelInfo | None = None
        self._capabilities: Capabilities | None = None
        self._mode: ModeReadback | None = None

        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._subscribers: tuple[Subscriber, ...] = ()
        self._routes: dict[int, _Inbox] = {}  # request id -> its handle's inbox, until its terminal event
        self._requests_to_log: dict[int, tuple[GenerationRequest, str]] = {}  # until their terminal record
        self._held_transitions = threading.local()
        self._engine_thread = threading.Thread(target=self._engine_main, name="antinet-engine", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="antinet-events", daemon=True)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> EngineService:
        """Start the dispatcher and the engine thread, which loads the model."""
        with self._lock:
            if self._state is not ServiceState.NOT_STARTED:
                raise RuntimeError(f"the service was already started (state: {self._state.value})")
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
            self._state = ServiceState.LOADING
        self._dispatcher.start()
        self._engine_thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading ended; True when the model is ready."""
        self._loaded.wait(timeout)
        return self._state is ServiceState.READY

    def shutdown(self, timeout: float = 1.0) -> None:
        """Cancel the running request, cancel the queued ones, stop both threads.

        Returns within about `timeout` seconds: the running request stops within one
        decode step. A backend stuck longer (a decode step or a load that ignores the
        request) is left to its daemon thread, which closes the backend when it returns.
        Handles and mode changes still waiting then raise EngineError. Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._loaded.set()  # wake wait_ready(): a load in progress is abandoned
            was_started = self._state is not ServiceState.NOT_STARTED
            self._state = ServiceState.STOPPED
            queued = list(self._queue)
            self._queue.clear()
            if self._running is not None:
                self._running.cancel.set()
            pending, self._pending_mode = self._pending_mode, None
            self._wakeup.notify_all()
        for job in queued:
            self._cancel_unstarted(job)
        if not was_started:
            self._close_backend()
        else:
            self._engine_thread.join(max(0.0, deadline - time.monotonic()))
            if self._engine_thread.is_alive():
                logger.warning("the engine did not stop within %.1f s; it will close the backend when it returns",
                               timeout)
            self._events.put(_STOP_DISPATCHER)
            self._dispatcher.join(max(0.0, deadline - time.monotonic()))
            if not self._dispatcher.is_alive():
                self._log.close()
        # whatever the dispatcher could not end (it is gone, or stuck in a subscriber)
        if pending is not None:
            for change in (*pending.superseded, pending.change):
                change._abort(f"the service stopped before mode {change.requested!r} was applied")
        with self._lock:
            routes, self._routes = self._routes, {}
            waiters, self._mode_changes = self._mode_changes, {}
        for inbox in routes.values():
            inbox.abort("the service stopped before the request ended")
        for changes in waiters.values():
            for change in changes:
                change._abort(f"the service stopped before mode {change.requested!r} was applied")

    def __enter__(self) -> Self:
        if self._state is ServiceState.NOT_STARTED:
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

    def log_status(self) -> LogStatus:
        log = self._log
        return LogStatus(str(log.path) if log.path is not None else None, log.lost, log.failure, log.failing)

    @property
    def state(self) -> ServiceState:
        return self._state

    def load_error(self) -> str | None:
        return self._load_error

    def breaker_view(self) -> BreakerSnapshot:
        return self._breaker.snapshot()

    def metrics_summary(self) -> MetricsSummary:
        return self._metrics.summary()

    def model_info(self) -> ModelInfo | None:
        return self._model_info

    def capabilities(self) -> Capabilities | None:
        return self._capabilities

    def mode(self) -> ModeReadback | None:
        """The last mode readback: what is in force, not what was asked for."""
        return self._mode

    def queue_length(self) -> int:
        return len(self._queue)

    def running_count(self) -> int:
        return 0 if self._running is None else 1

    # -- requests ------------------------------------------------------------------

    def submit(self, request: GenerationRequest, *, origin: str = OPERATOR, measurement: bool = False) -> RequestHandle:
        """Queue a request; see EngineClient.submit. A `measurement` (an experiment's run)
        is deliberately long and repeated: the breaker neither refuses nor counts it, and
        it stays out of the metrics history, which describes the operator's requests."""
        request_id = next(self._ids)
        self._requests_to_log[request_id] = (request, origin)
        prompt_tokens, refusal = self._check_input(request)
        with self._lock:
            if refusal is None:
                refusal = self._check_capacity(origin)
            if refusal is None and measurement:  # only the operator's isolation stops these
                if self._breaker.state is BreakerState.ISOLATED:
                    refusal = (ISOLATED_REFUSAL, "breaker_open")
            elif refusal is None:
                permitted, why = self._breaker.try_acquire()
                if not permitted:
                    refusal = (why or "the breaker refuses", "breaker_open")
            if refusal is None:
                job = _Job(request_id, request, time.perf_counter_ns(), prompt_tokens, measurement,
                           deadline=time.monotonic() + self._max_queue_wait_s)
                inbox = _Inbox(lambda e: isinstance(e, TERMINAL_EVENTS))
                self._routes[request_id] = inbox
                self._queue.append(job)
                self._emit(Accepted(request_id, _preview(request), request.max_new_tokens, len(self._queue),
                                    origin=origin, measurement=measurement))
                self._wakeup.notify_all()
                return RequestHandle(request_id, inbox, self.cancel, self._abandon, accepted=True,
                                     origin=origin, measurement=measurement)
        reason, cause = refusal
        rejected = Rejected(request_id, reason, cause, self._retry_after(cause))
        if not measurement:
            self._metrics.record_rejection(cause)
        self._emit(rejected)
        return refused_handle(rejected, origin, measurement)

    def cancel(self, request_id: int) -> bool:
        """Cancel the running request or remove a queued one.

        A running request stops within one decode step and ends with Cancelled; a queued
        one ends with Cancelled now. False when there was nothing to cancel."""
        with self._lock:
            running = self._running
            if running is not None and request_id == running.request_id:
                running.cancel.set()
                return True
            job = next((j for j in self._queue if j.request_id == request_id), None)
            if job is None:
                return False
            self._queue.remove(job)
        self._cancel_unstarted(job)
        return True

    # -- modes ---------------------------------------------------------------------

    def set_mode(self, mode: str, *, requested_by: str = OPERATOR) -> ModeChange:
        """Apply a performance mode between requests; see EngineClient.set_mode.

        Raises UnknownMode at once for a name the backend does not offer (checked when
        the model is loaded; before that the engine checks it after loading and reports
        ModeChanged(error=...)). If a request is running, ModeChanged(deferred=True) is
        emitted now and the mode applies before the next request. `requested_by` is
        carried on the ModeChanged events, so a frontend can tell an experiment's
        switches from the operator's."""
        if self._capabilities is not None:
            validate_mode(mode, self._capabilities.mode_names)
        with self._lock:
            if self._state in (ServiceState.LOAD_FAILED, ServiceState.STOPPED):
                raise EngineError(f"cannot change the mode: the engine is {self._state.value.replace('_', ' ')}")
            if self._reservation is not None and requested_by != self._reservation.holder:
                raise EngineReserved(f"the modes are reserved by the {self._reservation.holder} until it ends; "
                                  f"stop it first")
            change = ModeChange(next(self._change_ids), mode, requested_by)
            previous = self._pending_mode
            superseded = [*previous.superseded, previous.change] if previous is not None else []
            self._pending_mode = _PendingMode(change, superseded)
            if self._running is not None:
                self._emit(ModeChanged(requested=mode, readback=None, deferred=True, requested_by=requested_by,
                                       change_id=change.change_id))
            self._wakeup.notify_all()
        return change

    # -- exclusive use -------------------------------------------------------------

    def reserve(self, holder: str) -> Reservation:
        """Give `holder` the engine until the reservation is released: others' mode
        changes raise EngineError and their requests are refused (cause "reserved"); the
        holder's own pass when their `requested_by` / `origin` is `holder`. Raises
        EngineReserved when another holder has it, EngineError when requests are queued or
        running (they would share the engine with the holder's)."""
        with self._lock:
            if self._reservation is not None:
                raise EngineReserved(f"the engine is reserved by the {self._reservation.holder}")
            if self._running is not None or self._queue:
                raise EngineError("requests are running: the engine can be reserved once they end")
            self._reservation = reservation = Reservation(holder, self._release)
        return reservation

    def _release(self, reservation: Reservation) -> None:
        with self._lock:
            if self._reservation is reservation:
                self._reservation = None

    # -- the rest of the surface -----------------------------------------------------

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the request's prompt occupies after the chat template (model loaded)."""
        if self._model_info is None:
            raise EngineError("the model is not loaded yet")
        return self._backend.count_prompt_tokens(request)

    def log_record(self, record: dict[str, Any]) -> None:
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

    def _check_capacity(self, origin: str) -> tuple[str, RejectCause] | None:
        """The lock is held."""
        if self._state is ServiceState.NOT_STARTED:
            return "the engine is not started", "not_ready"
        if self._state is ServiceState.LOAD_FAILED:
            return f"the engine failed to load: {self._load_error}", "not_ready"
        if self._state is ServiceState.STOPPED:
            return "the engine is shut down", "not_ready"
        if self._reservation is not None and origin != self._reservation.holder:
            return f"the engine is reserved by the {self._reservation.holder} until it ends", "reserved"
        if len(self._queue) >= self._queue_size:
            return f"queue full: {len(self._queue)} requests waiting", "queue_full"
        return None

    def _retry_after(self, cause: RejectCause) -> float | None:
        """When trying again may succeed, in seconds; None when no time can be told
        (bad input, an isolated breaker or a reservation that only a person ends)."""
        if cause == "breaker_open":
            view = self._breaker.snapshot()
            if view.state is BreakerState.OPEN:
                return view.seconds_until_probe
            return _RETRY_WHEN_UNKNOWN_S if view.state is BreakerState.HALF_OPEN else None
        if cause in ("queue_full", "queue_timeout"):
            # one typical request's service time frees a place in the queue
            typical = self._metrics.percentiles("service_ms")["p50"]
            return typical / 1000 if typical else _RETRY_WHEN_UNKNOWN_S
        if cause == "not_ready" and self._state is ServiceState.LOADING:
            return _RETRY_WHEN_UNKNOWN_S
        return None

    def _abandon(self, request_id: int) -> None:
        """A handle was dropped unfinished: cancel its request on the dispatcher thread
        (this may run inside the garbage collector, where no lock may be taken)."""
        self._events.put(_Abandon(request_id))

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
            if self._state is ServiceState.LOADING:
                self._state = ServiceState.READY
            self._emit(Loaded(info, capabilities, mode))
        self._loaded.set()
        return True

    def _fail_load(self, error: str) -> None:
        with self._lock:
            self._load_error = error
            if self._state is ServiceState.LOADING:
                self._state = ServiceState.LOAD_FAILED
            queued = list(self._queue)
            self._queue.clear()
            pending, self._pending_mode = self._pending_mode, None
            self._emit(LoadFailed(error))
        self._loaded.set()
        if pending is not None:
            self._end_mode_change(pending, None, error=f"the engine failed to load: {error}")
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
                self._apply_mode(mode)
            elif job is not None:
                self._run(job)

    def _apply_mode(self, pending: _PendingMode) -> None:
        name = pending.change.requested
        try:
            assert self._capabilities is not None  # loaded before serving
            validate_mode(name, self._capabilities.mode_names)
            readback = self._backend.apply_mode(name)
        except Exception as exc:
            if not isinstance(exc, EngineError):
                logger.exception("applying mode %r failed", name)
            self._end_mode_change(pending, None, error=_describe(exc))
            return
        self._mode = readback
        self._end_mode_change(pending, readback)

    def _end_mode_change(self, pending: _PendingMode, readback: ModeReadback | None, error: str | None = None) -> None:
        """Emit the ModeChanged that ends this change and the ones it superseded; the
        dispatcher hands it to their waiters."""
        change = pending.change
        with self._lock:
            self._mode_changes[change.change_id] = [*pending.superseded, change]
        self._emit(ModeChanged(requested=change.requested, readback=readback, error=error,
                               requested_by=change.requested_by, change_id=change.change_id))

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
                assert self._model_info is not None
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
        self._held_transitions.events = held = list[BreakerTransition]()
        try:
            if outcome == "cancelled" or not counts_for_breaker:
                self._release_breaker(job)
            elif not job.measurement:
                assert metrics.service_ms is not None  # it started
                self._breaker.on_result(metrics.service_ms, failed=outcome == "failed")
        finally:
            self._held_transitions.events = None
        self._clear_running()
        token_ids = tuple(output.token_ids)
        if outcome == "finished":
            self._emit(Finished(job.request_id, output.text, token_ids, metrics))
        elif outcome == "cancelled":
            self._emit(Cancelled(job.request_id, output.text, token_ids, metrics))
        else:
            self._emit(Failed(job.request_id, error or "failed", metrics))
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
        while True:
            try:
                item = self._events.get(timeout=self._keep_time())
            except queue.Empty:
                continue
            if item is _STOP_DISPATCHER:
                return
            if isinstance(item, _Abandon):
                self.cancel(item.request_id)
                continue
            assert isinstance(item, Event)
            self._dispatch(item)

    def _dispatch(self, event: Event) -> None:
        failure = None
        try:
            self._write_log(event)
        except SessionLogError as exc:
            failure = self._log_failure(exc)
        except (OSError, ValueError):
            logger.exception("could not write the session log")
        self._deliver(event)
        if failure is not None:
            self._deliver(failure)

    def _log_failure(self, exc: SessionLogError) -> SessionLogFailed:
        logger.error("%s (%d records lost)", exc, self._log.lost)
        return SessionLogFailed(path=str(self._log.path), reason=exc.reason, lost=self._log.lost)

    def _deliver(self, event: Event) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                logger.exception("event subscriber %r failed on a %s event", callback, event.kind)
        # after the subscribers: whoever waits on a handle or a mode change is woken when
        # every subscriber (a UI, a metrics exporter) has seen the event too
        request_id = event.about_request
        if request_id is not None:
            inbox = self._routes.get(request_id)
            if inbox is not None:
                inbox.push(event)
                if isinstance(event, TERMINAL_EVENTS):
                    with self._lock:
                        self._routes.pop(request_id, None)
        elif isinstance(event, ModeChanged) and not event.deferred:
            with self._lock:
                waiting = self._mode_changes.pop(event.change_id, [])
            for change in waiting:
                change._resolve(event)

    def _keep_time(self) -> float | None:
        """The dispatcher's clock work: refuse requests that waited too long, let an OPEN
        breaker probe when its wait is over. Returns how long the dispatcher may sleep."""
        if self._breaker.seconds_until_probe() == 0:
            self._breaker.poll()
        now = time.monotonic()
        expired: list[_Job] = []
        with self._lock:
            while self._queue and self._queue[0].deadline <= now:
                expired.append(self._queue.popleft())
            next_deadline = self._queue[0].deadline - now if self._queue else None
        for job in expired:
            self._release_breaker(job)
            waited = (time.perf_counter_ns() - job.accepted_ns) / 1e9
            if not job.measurement:
                self._metrics.record_rejection("queue_timeout")
            self._emit(Rejected(job.request_id, f"waited {waited:.1f} s in the queue, the most allowed is "
                                                f"{self._max_queue_wait_s:g} s", "queue_timeout",
                                self._retry_after("queue_timeout")))
        waits = [w for w in (next_deadline, self._breaker.seconds_until_probe()) if w is not None]
        # capped: the breaker's clock is injected and may be moved rather than waited for
        return max(0.01, min(*waits, _TIMEKEEPING_SLICE_S)) if waits else None

    def _write_log(self, event: Event) -> None:
        if event.kind not in _LOGGED_KINDS:
            return
        record = event.to_record()
        if isinstance(event, TERMINAL_EVENTS) and event.request_id is not None:
            logged = self._requests_to_log.pop(event.request_id, None)
            if logged is not None:
                request, origin = logged
                record["request"] = jsonable(request)
                record["origin"] = origin
        self._log.write(record)


def _preview(request: GenerationRequest) -> str:
    """What Accepted shows of a request: its prompt, or its conversation's last user turn."""
    if request.messages:
        users = [m.content for m in request.messages if m.role == "user"]
        return users[-1] if users else request.messages[-1].content
    return request.prompt


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
