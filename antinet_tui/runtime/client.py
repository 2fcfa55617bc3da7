"""The engine service's surface: what every frontend (dashboard, CLI, HTTP server) uses.

`EngineClient` is the contract; `EngineService` (runtime/service.py) implements it
in-process, and a remote implementation can offer the same surface over the wire. So it
hands out only immutable values (snapshots, events) and handles, never live objects:

* `submit()` returns a `RequestHandle` that receives that request's events (routed by
  request id), readable from a thread (`for event in handle`) or from asyncio
  (`async for event in handle`), with `result()` and `cancel()`. A handle that is closed
  or dropped before its request ended cancels the request: nobody generates for nobody.
* `set_mode()` returns a `ModeChange` to wait on for the mode's readback.
* `subscribe()` delivers every event of the service (all requests, breaker transitions,
  mode changes) to a callback.
* snapshots: `breaker_view()`, `metrics_summary()`, `model_info()`, `capabilities()`,
  `mode()`, `queue_length()`, `running_count()`, and the `state` property.

Threads: event callbacks and handle deliveries happen on the service's dispatcher thread,
in the order events were emitted. A callback must not block (it would hold up every other
subscriber and handle) and must not wait for another event.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, Self, runtime_checkable

from antinet_tui.engine.errors import EngineError
from antinet_tui.engine.protocol import Capabilities, GenerationRequest, ModelInfo, ModeReadback
from antinet_tui.runtime.breaker import BreakerSnapshot
from antinet_tui.runtime.events import (
    OPERATOR,
    TERMINAL_EVENTS,
    Event,
    ModeChanged,
    Rejected,
    TerminalEvent,
    Token,
)
from antinet_tui.runtime.metrics import MetricsSummary

Subscriber = Callable[[Event], None]
BreakerView = BreakerSnapshot  # the breaker's state, reason, counts and countdown, as a value

_WAIT_SLICE_S = 0.1  # blocking waits wake this often: Ctrl-C and a dead service end them
_ENDED_EVENT_WAIT_S = 2.0  # an already emitted terminal event reaches its handle well within this


@dataclass(frozen=True)
class LogStatus:
    """The session log at one moment: where it goes, how many records it lost, and
    whether it is losing them now."""

    path: str | None  # None: no session log is written
    lost: int = 0  # records the disk refused (a full disk)
    failure: str | None = None  # why the last one was lost
    failing: bool = False  # the last record was lost (a disk that has room again writes the next)


class EngineReserved(EngineError):
    """Refused: another holder reserved the engine (see EngineClient.reserve)."""


class ServiceState(str, Enum):
    """Where the service is in its life. A str, so it prints and logs as its value."""

    NOT_STARTED = "not_started"
    LOADING = "loading"  # start() was called; requests are queued until the model is ready
    READY = "ready"
    LOAD_FAILED = "load_failed"  # see load_error(); requests are refused (not_ready)
    STOPPED = "stopped"  # shut down; requests are refused (not_ready)


class _Inbox:
    """One stream of events, appended by one producer (the dispatcher thread) and read by
    any number of readers, each from the start: threads block on a condition, asyncio
    tasks await a future the producer resolves through their loop. `final` says which
    event ends the stream; `abort` ends it with an error instead (the service went away)."""

    def __init__(self, final: Callable[[Event], bool]):
        self._final = final
        self._events: list[Event] = []
        self._ended = False
        self._error: str | None = None
        self._cond = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def push(self, event: Event) -> None:
        with self._cond:
            if self._ended:
                return
            self._events.append(event)
            self._ended = self._final(event)
            self._wake()

    def abort(self, error: str) -> None:
        with self._cond:
            if not self._ended:
                self._ended, self._error = True, error
                self._wake()

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def last(self) -> Event | None:
        with self._cond:
            return self._events[-1] if self._events and self._error is None else None

    def get(self, index: int, timeout: float | None) -> Event | None:
        """Event number `index`, waiting up to `timeout` for it; None when the stream ended
        before it. Raises TimeoutError, or EngineError when the stream was aborted."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._settled(index):
                    return self._at(index)
                left = _WAIT_SLICE_S if deadline is None else min(_WAIT_SLICE_S, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError
                self._cond.wait(left)

    async def get_async(self, index: int) -> Event | None:
        """As get(), without blocking the event loop's thread."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._settled(index):
                    return self._at(index)
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, future))
            await future

    def _settled(self, index: int) -> bool:
        """Whether get(index) can answer now: the event is there or none will come.
        The condition is held."""
        return index < len(self._events) or self._ended

    def _at(self, index: int) -> Event | None:
        """Event `index`, None past the end of a finished stream; raises EngineError when
        the stream was aborted. The condition is held and _settled(index)."""
        if index < len(self._events):
            return self._events[index]
        if self._error is not None:
            raise EngineError(self._error)
        return None

    def _wake(self) -> None:
        """The condition is held."""
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RequestHandle:
    """One submitted request: its events, its result, its cancel.

    * `accepted` is False when the request was refused at once; `rejection` then says why
      (the Rejected event: `cause`, `reason`, `retry_after_s`), and iterating yields just it.
    * `for event in handle` (from any thread, blocking) and `async for event in handle`
      (asyncio, no thread held) yield this request's events in order, from Accepted to its
      terminal event (Finished, Cancelled, Failed, or Rejected with cause queue_timeout),
      then stop. Each iteration starts from the first event; several readers may read.
      They raise EngineError if the service stopped without ending the request.
    * `result(timeout)` blocks until the terminal event and returns it.
    * `cancel()` asks the service to cancel it (True if there was something to cancel);
      its Cancelled event follows.
    * `close()`, leaving a `with` block, or dropping the last reference to an unfinished
      handle cancels the request.
    """

    def __init__(
        self,
        request_id: int,
        inbox: _Inbox,
        cancel: Callable[[int], bool],
        abandon: Callable[[int], None],
        *,
        accepted: bool,
        rejection: Rejected | None = None,
        origin: str = OPERATOR,
        measurement: bool = False,
    ):
        """Made by an EngineClient's submit(). `cancel(request_id)` cancels now (called on
        the caller's thread); `abandon(request_id)` is called when the handle is dropped
        unfinished, possibly from the garbage collector: it must only schedule the cancel
        (queue.SimpleQueue.put is safe there), never take a lock."""
        self.request_id = request_id
        self.accepted = accepted
        self.rejection = rejection
        self.origin = origin
        self.measurement = measurement
        self._inbox = inbox
        self._cancel = cancel
        self._finalizer = weakref.finalize(self, _abandon_if_unfinished, inbox, abandon, request_id)

    @property
    def done(self) -> bool:
        """True once the terminal event is here."""
        return self._inbox.ended

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """The request's events as they come; TimeoutError when `timeout` seconds pass
        without the terminal event (the request goes on: cancel it if you gave up)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        index = 0
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = self._inbox.get(index, left)
            if event is None:
                return
            yield event
            index += 1

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    async def __aiter__(self) -> AsyncIterator[Event]:
        index = 0
        while (event := await self._inbox.get_async(index)) is not None:
            yield event
            index += 1

    def tokens(self) -> Iterator[Token]:
        """Only the Token events (blocking, as iteration); see result() for how it ended."""
        for event in self.events():
            if isinstance(event, Token):
                yield event

    def result(self, timeout: float | None = None) -> TerminalEvent:
        """Block until the request ended and return its terminal event: Finished,
        Cancelled, Failed or Rejected. Raises TimeoutError (the request goes on) or
        EngineError (the service stopped before the request ended)."""
        for _ in self.events(timeout):
            pass
        last = self._inbox.last
        assert isinstance(last, TERMINAL_EVENTS), "a handle's stream ends with its terminal event"
        return last

    async def result_async(self) -> TerminalEvent:
        async for _ in self:
            pass
        last = self._inbox.last
        assert isinstance(last, TERMINAL_EVENTS), "a handle's stream ends with its terminal event"
        return last

    def cancel(self) -> bool:
        """Cancel the request (queued: at once; running: within one decode step)."""
        if self._inbox.ended:
            return False
        return self._cancel(self.request_id)

    def close(self) -> None:
        """Cancel the request if it has not ended; the handle can still be read."""
        self._finalizer.detach()
        self.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "refused" if not self.accepted else "done" if self.done else "pending"
        return f"<RequestHandle #{self.request_id} {state} origin={self.origin!r}>"


def _abandon_if_unfinished(inbox: _Inbox, abandon: Callable[[int], None], request_id: int) -> None:
    if not inbox.ended:
        abandon(request_id)


def refused_handle(rejection: Rejected, origin: str = OPERATOR, measurement: bool = False) -> RequestHandle:
    """The handle of a request refused at submission: already ended with its Rejected."""
    inbox = _Inbox(lambda e: True)
    inbox.push(rejection)
    return RequestHandle(rejection.request_id or 0, inbox, lambda _: False, lambda _: None, accepted=False,
                         rejection=rejection, origin=origin, measurement=measurement)


class ModeChange:
    """A requested mode change; `wait()` for what came of it.

    The change applies between requests. A later change requested before this one applied
    supersedes it: wait() then returns the later change's ModeChanged (its `requested`
    differs from this `requested`)."""

    def __init__(self, change_id: int, requested: str, requested_by: str):
        self.change_id = change_id
        self.requested = requested
        self.requested_by = requested_by
        self._inbox = _Inbox(lambda e: True)

    def _resolve(self, event: ModeChanged) -> None:
        self._inbox.push(event)

    def _abort(self, error: str) -> None:
        self._inbox.abort(error)

    @property
    def done(self) -> bool:
        return self._inbox.ended

    def wait(self, timeout: float | None = None) -> ModeChanged:
        """Block until the change was applied or failed. The returned event's `readback`
        says what is in force; `error` is set when it could not be applied. Raises
        TimeoutError, or EngineError when the service stopped first."""
        event = self._inbox.get(0, timeout)
        assert isinstance(event, ModeChanged)
        return event

    async def wait_async(self) -> ModeChanged:
        event = await self._inbox.get_async(0)
        assert isinstance(event, ModeChanged)
        return event


class Reservation:
    """Exclusive use of the engine by one holder (see EngineClient.reserve); release() or
    leaving a `with` block ends it. Releasing twice is harmless."""

    def __init__(self, holder: str, release: Callable[[Reservation], None]):
        self.holder = holder
        self._release = release

    def release(self) -> None:
        self._release(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@runtime_checkable
class EngineClient(Protocol):
    """What a frontend may ask of the engine service. Every method is safe to call from
    any thread and returns promptly (nothing here waits for the engine), except
    `wait_ready()` and the waits on what `submit()` and `set_mode()` return."""

    @property
    def state(self) -> ServiceState:
        """Where the service is: NOT_STARTED, LOADING, READY, LOAD_FAILED, STOPPED."""
        ...

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Any:
        """Begin loading the model (in-process) or connecting (remote); returns at once.
        Raises RuntimeError when already started."""
        ...

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading ended (or `timeout`); True when the model is ready."""
        ...

    def shutdown(self, timeout: float = 1.0) -> None:
        """Cancel everything, stop; returns within about `timeout` seconds. Idempotent."""
        ...

    # -- requests ---------------------------------------------------------------------

    def submit(self, request: GenerationRequest, *, origin: str = OPERATOR,
               measurement: bool = False) -> RequestHandle:
        """Queue a request and return its handle at once; never raises for a refusal.

        `origin` names the sender (a client address such as "127.0.0.1:53122", or
        "operator"); it is carried on Accepted and written to the session log.
        A `measurement` (an experiment's run) is neither refused nor counted by the
        breaker (only isolation refuses it) and stays out of the metrics history.
        Refused (handle.accepted False, handle.rejection says why) when: the input is bad
        (bad_input), the queue is full (queue_full), the breaker refuses (breaker_open),
        the engine failed to load or is stopped (not_ready), or another holder reserved
        the engine (reserved). An accepted request that waits in the queue longer than
        the service allows ends with Rejected(cause="queue_timeout"). Requests submitted
        while the model loads wait in the queue."""
        ...

    def cancel(self, request_id: int) -> bool:
        """Cancel a queued request (ends now) or the running one (within one decode step);
        its Cancelled event follows. False when that request is not queued or running."""
        ...

    # -- modes ------------------------------------------------------------------------

    def set_mode(self, mode: str, *, requested_by: str = OPERATOR) -> ModeChange:
        """Ask for a performance mode; it applies between requests (now, when idle).
        Raises UnknownMode for a name the loaded backend does not offer, EngineReserved
        when another holder reserved the engine, EngineError when the engine failed to
        load or is stopped. While a request runs, ModeChanged(deferred=True) is emitted at once."""
        ...

    def mode(self) -> ModeReadback | None:
        """The mode in force, as last read back (None before the model loaded)."""
        ...

    # -- exclusive use ----------------------------------------------------------------

    def reserve(self, holder: str) -> Reservation:
        """Give `holder` (e.g. "experiment") the engine until released: anyone else's
        set_mode() raises EngineError saying who holds it, and anyone else's request is
        refused (Rejected, cause "reserved"); the holder's own pass when their
        `requested_by` / `origin` is `holder`. Raises EngineReserved when another holder
        has it, EngineError when requests are queued or running."""
        ...

    # -- the breaker --------------------------------------------------------------------

    def isolate_breaker(self) -> None:
        """Force the breaker open (ISOLATED) until reset: requests are refused."""
        ...

    def reset_breaker(self) -> None:
        """Back to CLOSED with an empty window."""
        ...

    # -- snapshots (immutable values) -----------------------------------------------------

    def breaker_view(self) -> BreakerSnapshot:
        """State, the reason of its last transition, window counts, seconds until the next
        probe (OPEN only) and its configuration. Reading it changes nothing."""
        ...

    def metrics_summary(self) -> MetricsSummary:
        """Series, percentiles and counters of this session's requests."""
        ...

    def model_info(self) -> ModelInfo | None:
        """The loaded model (None until loaded)."""
        ...

    def capabilities(self) -> Capabilities | None:
        """The backend's modes and what it can do (None until loaded)."""
        ...

    def load_error(self) -> str | None:
        """Why loading failed (state LOAD_FAILED), else None."""
        ...

    def queue_length(self) -> int:
        """Requests waiting (the running one aside)."""
        ...

    def running_count(self) -> int:
        """Requests the engine is generating now (0 or 1 here)."""
        ...

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the request's prompt takes after the chat template. Raises EngineError
        before the model is loaded."""
        ...

    # -- events and records ---------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on, on the dispatcher thread (it
        must not block). Returns the function that unsubscribes."""
        ...

    def log_record(self, record: dict[str, Any]) -> None:
        """Append a frontend's own record (an experiment's results) to the session log.
        A record the disk refuses is reported as a SessionLogFailed event, not raised."""
        ...

    def log_status(self) -> LogStatus:
        """Where the session log goes and how many records it lost."""
        ...


def generate(
    client: EngineClient,
    request: GenerationRequest,
    on_token: Callable[[Token], None] | None = None,
    *,
    timeout: float | None = None,
    origin: str = OPERATOR,
    measurement: bool = False,
) -> TerminalEvent:
    """Submit, stream the tokens to `on_token` (on this thread), return the terminal event.

    On timeout this request is cancelled and its Cancelled event returned (with what was
    generated). Ctrl-C in this thread cancels it too and returns its Cancelled event; if
    the interrupt came when the request was neither queued nor running (it had just
    ended, or was never queued), the interrupt is re-raised once its end is known."""
    handle = client.submit(request, origin=origin, measurement=measurement)
    delivered = 0  # tokens handed to on_token: after a cancel, the rest still arrive, once each

    def stream(timeout: float | None) -> TerminalEvent:
        nonlocal delivered
        for event in handle.events(timeout):
            if on_token is not None and isinstance(event, Token) and event.index >= delivered:
                delivered = event.index + 1
                on_token(event)
        return handle.result()

    try:
        try:
            return stream(timeout)
        except TimeoutError:
            handle.cancel()
            return stream(None)
    except KeyboardInterrupt:
        if handle.cancel():
            return stream(None)
        try:  # nothing to cancel: it just ended (its end is on the way), or was never queued
            return stream(_ENDED_EVENT_WAIT_S)
        except TimeoutError:
            pass
        raise
    finally:
        handle.close()
