"""RemoteClient: the EngineClient surface of a serving engine, over HTTP (`antinet-tui attach`).

It reads the server's one event stream (GET /attach/events, Server-Sent Events; see
frontends/server/attach.py) on its own thread and keeps what the snapshots return
(breaker view, metrics summary, mode readback, model, queue) up to date from it, so the
snapshot methods answer at once from memory, as EngineService's do. Requests, mode
changes, the breaker's isolate/reset and reservations are short POSTs (made on the
caller's thread, like EngineService's non-blocking calls: a loopback round trip is a
millisecond or two); a request's events come back on the stream and feed its
`RequestHandle`, the same class the in-process service hands out.

Differences a frontend may notice, all deliberate:

* Subscribers run on the stream's reader thread (the "dispatcher" of a remote engine).
  Besides the runtime's events they get `ConnectionChanged` (connecting / live /
  reconnecting in N s / refused), which the in-process service never sends. On every
  (re)connection the snapshot's recent requests are replayed as their events (only those
  the subscribers have not seen), so a late watcher's panes fill at once.
* Request ids are the server's, except after the server restarted (a new instance numbers
  from 1 again): the ids then continue above the highest one seen, so they stay unique
  in this client. A request of ours that the restart lost ends with Failed.
* When the stream drops, the server cancels the requests this client submitted and
  releases its reservation (nobody generates for a watcher that went away); their
  Cancelled events arrive with the snapshot after reconnecting.
* Event `t_ns` stamps are this process's (the arrival time), so intervals between events
  mean something here; `wall` is the server's clock.
* A stream that breaks or sends garbage never raises out of here: a frame that cannot be
  read is counted (`garbled`) and skipped; a broken connection is retried with backoff
  (0.5 s doubling to 10 s). A refused key is not retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from antinet_tui.engine.errors import EngineError, UnknownMode
from antinet_tui.engine.protocol import Capabilities, GenerationRequest, ModelInfo, ModeReadback
from antinet_tui.platform.system_stats import SystemSample
from antinet_tui.runtime.breaker import BreakerConfig, BreakerSnapshot, BreakerState
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
from antinet_tui.runtime.connection import ConnectionChanged, ConnectionState
from antinet_tui.runtime.events import (
    OPERATOR,
    TERMINAL_EVENTS,
    Accepted,
    Event,
    Failed,
    Loaded,
    ModeChanged,
    Rejected,
    Started,
    Token,
    from_jsonable,
    jsonable,
)
from antinet_tui.runtime.metrics import MetricsSummary, RequestMetrics

logger = logging.getLogger(__name__)

PROTOCOL = 1  # the attach wire format this client reads (frontends/server/attach.py)
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
READ_TIMEOUT_S = 45.0  # the server pings an idle stream every 15 s
CONTROL_TIMEOUT_S = 5.0
SESSION_HEADER = "X-Antinet-Session"
SYSTEM_BACKLOG = 240


class _Refused(Exception):
    """The server refused us (wrong or missing key, another protocol): retrying won't help."""


class _Broken(Exception):
    """The stream could not start or stopped making sense: reconnect."""


class _ControlError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class RemoteSystemFeed:
    """The serving machine's system samples, as they arrive on the stream; `samples()` is what
    the dashboard's sampling worker reads (platform.system_stats.SystemFeed)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, SystemSample]] = deque(maxlen=SYSTEM_BACKLOG)
        self._cond = threading.Condition()
        self._last_wall = 0.0  # a reconnection's history repeats samples: each is taken once

    def add(self, wall: float, sample: SystemSample) -> None:
        with self._cond:
            if wall <= self._last_wall:
                return
            self._last_wall = wall
            self._samples.append((wall, sample))
            self._cond.notify_all()

    def samples(self, stop: threading.Event, interval: float) -> Iterator[SystemSample]:
        """Each sample once, as it arrives (the server's own interval), until `stop` is set."""
        while not stop.is_set():
            with self._cond:
                if not self._samples:
                    self._cond.wait(0.2)
                batch = list(self._samples)
                self._samples.clear()
            for _, sample in batch:
                yield sample


def _placeholder_breaker() -> BreakerSnapshot:
    """What breaker_view() says before the first snapshot arrived."""
    return BreakerSnapshot(BreakerState.CLOSED, "not connected yet", None, 0, 0, 0, BreakerConfig())


class RemoteClient:
    """An EngineClient for the engine behind `url` (an `antinet-tui serve`)."""

    def __init__(self, url: str, api_key: str | None = None, *, transport: httpx.BaseTransport | None = None,
                 backoff_first_s: float = BACKOFF_FIRST_S, backoff_max_s: float = BACKOFF_MAX_S):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.backoff_first_s, self.backoff_max_s = backoff_first_s, backoff_max_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_keepalive_connections=2)
        self._stream_http = httpx.Client(base_url=self.url, headers=headers, transport=transport,
                                         timeout=httpx.Timeout(CONTROL_TIMEOUT_S, read=READ_TIMEOUT_S))
        self._control_http = httpx.Client(base_url=self.url, headers=headers, transport=transport,
                                          timeout=CONTROL_TIMEOUT_S, limits=limits)
        self._control_lock = threading.Lock()  # one control call at a time on its connection
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._started = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx.Response | None = None
        self._abandoned: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        # what the snapshots return
        self._state = ServiceState.NOT_STARTED
        self._load_error: str | None = None
        self._model_info: ModelInfo | None = None
        self._capabilities: Capabilities | None = None
        self._mode: ModeReadback | None = None
        self._breaker = _placeholder_breaker()
        self._breaker_at = time.monotonic()
        self._metrics = MetricsSummary.empty()
        self._queue = 0
        self._running = 0
        self._log = LogStatus(None)
        self.connection = ConnectionChanged(state=ConnectionState.CONNECTING, url=self.url)
        self.connections = 0  # open HTTP connections on the server (its last system frame)
        self.watchers = 0
        self.garbled = 0  # stream frames that could not be read (skipped)
        self.system = RemoteSystemFeed()
        # the stream's bookkeeping
        self._instance: str | None = None
        self._session: str | None = None
        self._seq = 0
        self._offset = 0  # local id = server id + offset (offset grows when the server restarts)
        self._highest_id = 0
        self._delivered: OrderedDict[int, set[str]] = OrderedDict()  # request -> stages subscribers saw
        self._inboxes: dict[int, _Inbox] = {}
        self._submitting = 0
        self._early: dict[int, list[Event]] = {}  # events of requests whose submit() has not returned yet
        self._mode_changes: dict[int, ModeChange] = {}
        self._last_mode_event: ModeChanged | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def state(self) -> ServiceState:
        return self._state

    def start(self) -> None:
        """Start connecting (in a thread); returns at once."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        self._state = ServiceState.LOADING
        self._thread = threading.Thread(target=self._run, name="antinet-attach", daemon=True)
        self._thread.start()
        threading.Thread(target=self._cancel_abandoned, name="antinet-attach-cancel", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the server was seen past loading, with its history delivered, or the
        key was refused (or `timeout`); True when its engine is ready."""
        self._ready.wait(timeout)
        return self._state is ServiceState.READY

    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop watching: cancel this client's unfinished requests, release its reservation
        (the server would do both when the stream closes anyway), close the connection."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._abandoned.put(None)
        with self._lock:
            unfinished = [rid for rid, inbox in self._inboxes.items() if not inbox.ended]
        for request_id in unfinished:
            self.cancel(request_id)
        response = self._response
        if response is not None:
            with contextlib.suppress(httpx.HTTPError, httpx.StreamError, OSError, RuntimeError):
                response.close()  # wakes the reader thread (already closed: it ends on its own)
        if self._thread is not None:
            self._thread.join(timeout)
        self._emit(ConnectionChanged(state=ConnectionState.CLOSED, url=self.url))
        for client in (self._stream_http, self._control_http):
            with contextlib.suppress(httpx.HTTPError, OSError, RuntimeError):
                client.close()
        with self._lock:
            inboxes = list(self._inboxes.values())
            changes = list(self._mode_changes.values())
        for inbox in inboxes:
            inbox.abort("the connection to the server was closed")
        for change in changes:
            change._abort("the connection to the server was closed")

    # -- requests ------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, *, origin: str = OPERATOR,
               measurement: bool = False) -> RequestHandle:
        with self._lock:
            self._submitting += 1
        try:
            reply = self._post("/attach/requests", {"request": jsonable(request), "origin": origin,
                                                    "measurement": measurement})
        except _ControlError as exc:
            with self._lock:
                self._submitting -= 1
            rejection = Rejected(request_id=None, reason=f"not sent: {exc}", cause="not_ready")
            return refused_handle(rejection, origin, measurement)
        with self._lock:
            self._submitting -= 1
            if not reply.get("accepted"):
                if not self._submitting:
                    self._early.clear()
                return refused_handle(self._rejection(reply.get("rejection")), origin, measurement)
            local = self._local(int(reply["request_id"]))
            early = self._early.pop(local, [])
            if not self._submitting:
                self._early.clear()
            inbox = _Inbox(lambda e: isinstance(e, TERMINAL_EVENTS))
            for event in early:
                inbox.push(event)
            if not inbox.ended:
                self._inboxes[local] = inbox
        return RequestHandle(local, inbox, self.cancel, self._abandoned.put, accepted=True, origin=origin,
                             measurement=measurement)

    def _rejection(self, record: object) -> Rejected:
        try:
            event = Event.from_record(record)  # type: ignore[arg-type]
            assert isinstance(event, Rejected)
        except (ValueError, TypeError, AssertionError, AttributeError):
            return Rejected(request_id=None, reason="refused by the server", cause="not_ready")
        rid = event.request_id
        return event if rid is None else dataclasses.replace(event, request_id=self._local(rid))

    def cancel(self, request_id: int) -> bool:
        server_id = request_id - self._offset
        if server_id <= 0:
            return False  # a request of a server instance that is gone
        try:
            return bool(self._post(f"/attach/requests/{server_id}/cancel", {}).get("cancelled"))
        except _ControlError as exc:
            logger.warning("cancel #%d: %s", request_id, exc)
            return False

    def _cancel_abandoned(self) -> None:
        """Handles dropped unfinished (maybe by the garbage collector) are cancelled here."""
        while (request_id := self._abandoned.get()) is not None:
            self.cancel(request_id)

    # -- modes -----------------------------------------------------------------------------------

    def set_mode(self, mode: str, *, requested_by: str = OPERATOR) -> ModeChange:
        try:
            reply = self._post("/attach/mode", {"mode": mode, "requested_by": requested_by})
        except _ControlError as exc:
            if exc.code == "unknown_mode":
                caps = self._capabilities
                raise UnknownMode(mode, caps.mode_names if caps else ()) from None
            if exc.code == "reserved":
                raise EngineReserved(str(exc)) from None
            raise EngineError(str(exc)) from None
        change = ModeChange(int(reply["change_id"]), str(reply["requested"]), str(reply.get("requested_by", "")))
        with self._lock:
            last = self._last_mode_event
            if last is not None and last.change_id >= change.change_id:
                change._resolve(last)  # its readback came on the stream before this reply
            else:
                self._mode_changes[change.change_id] = change
        return change

    def mode(self) -> ModeReadback | None:
        return self._mode

    # -- exclusive use ---------------------------------------------------------------------------

    def reserve(self, holder: str) -> Reservation:
        try:
            reply = self._post("/attach/reservations", {"holder": holder})
        except _ControlError as exc:
            if exc.code == "reserved":
                raise EngineReserved(str(exc)) from None
            raise EngineError(str(exc)) from None
        token = str(reply["token"])
        released = threading.Event()

        def release(_: Reservation) -> None:
            if not released.is_set():
                released.set()
                try:
                    self._delete(f"/attach/reservations/{token}")
                except _ControlError as exc:  # the stream closing releases it on the server anyway
                    logger.warning("release of %s: %s", holder, exc)

        return Reservation(holder, release)

    # -- the breaker -----------------------------------------------------------------------------

    def isolate_breaker(self) -> None:
        self._breaker_action("isolate")

    def reset_breaker(self) -> None:
        self._breaker_action("reset")

    def _breaker_action(self, action: str) -> None:
        try:
            reply = self._post(f"/attach/breaker/{action}", {})
        except _ControlError as exc:
            raise EngineError(f"the breaker was not changed: {exc}") from None
        try:
            view = from_jsonable(BreakerSnapshot, reply["breaker"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            self._breaker, self._breaker_at = view, time.monotonic()

    # -- snapshots -------------------------------------------------------------------------------

    def breaker_view(self) -> BreakerSnapshot:
        with self._lock:
            view, at = self._breaker, self._breaker_at
        if view.seconds_until_probe is None:
            return view
        left = max(0.0, view.seconds_until_probe - (time.monotonic() - at))
        return dataclasses.replace(view, seconds_until_probe=left)

    def metrics_summary(self) -> MetricsSummary:
        return self._metrics

    def model_info(self) -> ModelInfo | None:
        return self._model_info

    def capabilities(self) -> Capabilities | None:
        return self._capabilities

    def load_error(self) -> str | None:
        return self._load_error

    def queue_length(self) -> int:
        return self._queue

    def running_count(self) -> int:
        return self._running

    def log_status(self) -> LogStatus:
        """The server's session log (its SessionLogFailed events come on the stream too)."""
        return self._log

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        try:
            return int(self._post("/attach/count-tokens", {"request": jsonable(request)})["tokens"])
        except _ControlError as exc:
            raise EngineError(str(exc)) from None

    # -- events and records ----------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def log_record(self, record: dict[str, Any]) -> None:
        try:
            self._post("/attach/records", {"record": jsonable(record)})
        except _ControlError as exc:
            raise EngineError(f"the record was not written to the server's session log: {exc}") from None

    # -- HTTP ------------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, body)

    def _delete(self, path: str) -> dict[str, Any]:
        return self._call("DELETE", path, None)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        if self._stop.is_set():
            raise _ControlError("the connection to the server was closed")
        headers = {SESSION_HEADER: self._session} if self._session else {}
        try:
            with self._control_lock:
                response = self._control_http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _ControlError(f"the server could not be reached ({_describe(exc)})") from None
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            raise _ControlError(message or f"HTTP {response.status_code}", response.status_code, code)
        return data if isinstance(data, dict) else {}

    # -- the stream (its own thread) -------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            detail = ""
            try:
                if self._stream():
                    attempt = 0  # it was live: the next try comes quickly
            except _Refused as exc:
                self._state = ServiceState.NOT_STARTED if self._instance is None else self._state
                self._set_connection(ConnectionState.REFUSED, str(exc))
                self._ready.set()
                return
            except (_Broken, httpx.HTTPError, httpx.StreamError, OSError, ValueError) as exc:
                detail = _describe(exc)
            except Exception as exc:  # never let the reader thread die: reconnect
                if not self._stop.is_set():
                    logger.exception("the attach stream failed")
                detail = _describe(exc)
            finally:
                self._response = None
            if self._stop.is_set():
                return
            delay = min(self.backoff_max_s, self.backoff_first_s * 2 ** attempt)
            attempt += 1
            deadline = time.monotonic() + delay
            while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
                self._set_connection(ConnectionState.RECONNECTING, detail, retry_in_s=left)
                self._stop.wait(min(1.0, left - math.floor(left) or 1.0))
            if not self._stop.is_set():
                self._set_connection(ConnectionState.CONNECTING, detail)

    def _stream(self) -> bool:
        """One connection, until it ends. True when it got as far as a snapshot."""
        live = False
        with self._stream_http.stream("GET", "/attach/events", headers={"Accept": "text/event-stream"}) as response:
            self._response = response
            if response.status_code in (401, 403):
                response.read()
                raise _Refused(self._refusal(response))
            if response.status_code != 200:
                raise _Broken(f"HTTP {response.status_code} from {self.url}/attach/events")
            for name, data in sse_messages(response.iter_lines()):
                if self._stop.is_set():
                    return live
                if name == "bye":
                    raise _Broken(_field(data, "reason") or "the server ended the stream")
                if not live:
                    if name != "snapshot":
                        raise _Broken(f"the stream began with {name!r}, not a snapshot")
                    self._apply_snapshot(_json_object(data))
                    live = True
                    continue
                try:
                    if name == "events":
                        self._apply_events(_json_object(data))
                    elif name == "system":
                        self._apply_system(_json_object(data))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    self.garbled += 1
                    logger.warning("skipped an unreadable %r frame from %s: %s", name, self.url, exc)
        if not live:
            raise _Broken("the stream ended before its snapshot")
        raise _Broken("the server closed the stream")

    def _refusal(self, response: httpx.Response) -> str:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = ""
        if response.status_code == 401:
            return "wrong key" if self.api_key else "the server needs a key (--api-key)"
        return message or f"HTTP {response.status_code}"

    def _apply_snapshot(self, snap: dict[str, Any]) -> None:
        if snap.get("protocol") != PROTOCOL:
            raise _Refused(f"the server speaks attach protocol {snap.get('protocol')!r}, this client {PROTOCOL}")
        instance = str(snap["instance"])
        restarted = self._instance is not None and instance != self._instance
        with self._lock:
            lost: list[int] = []
            if restarted:  # its request ids start over: continue ours above the highest seen
                self._offset = self._highest_id
                lost = [rid for rid, inbox in self._inboxes.items() if not inbox.ended]
                for change in self._mode_changes.values():
                    change._abort("the server restarted")
                self._mode_changes.clear()
                self._last_mode_event = None
            self._instance = instance
            self._session = str(snap["session"])
            self._seq = int(snap["seq"])
            self._apply_status(snap, settle=False)
            self._load_error = snap.get("load_error")
            self._model_info = _value(ModelInfo, snap.get("model_info"))
            self._capabilities = _value(Capabilities, snap.get("capabilities"))
            self.connections, self.watchers = int(snap.get("connections", 0)), int(snap.get("watchers", 0))
        for request_id in lost:
            self._deliver(Failed(request_id=request_id, error="the server restarted; this request was lost",
                                 metrics=_lost_metrics()), translate=False)
        for trace in snap.get("requests", ()):
            for stage in ("accepted", "started", "end"):
                if (record := trace.get(stage)) is not None:
                    self._deliver(Event.from_record(record))
        for sample in snap.get("system", ()):
            self._apply_system(sample)
        if self._state is not ServiceState.LOADING:
            self._ready.set()  # after the history: a caller of wait_ready() finds it delivered
        self._set_connection(ConnectionState.LIVE, server_restarted=restarted)

    def _apply_events(self, body: dict[str, Any]) -> None:
        if (status := body.get("status")) is not None:
            with self._lock:
                self._apply_status(status)  # first: a subscriber handling Finished reads the new figures
        for record in body["events"]:
            try:
                self._apply_record(record)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # one record: skip it alone
                self.garbled += 1
                logger.warning("skipped an unreadable record from %s: %s", self.url, exc)

    def _apply_record(self, record: dict[str, Any]) -> None:
        seq = int(record["seq"])
        if record.get("kind") == "tokens":
            index, rid = int(record["index"]), int(record["request_id"])
            for i, (token_id, text, wall) in enumerate(zip(record["ids"], record["texts"], record["wall"],
                                                           strict=True)):
                if seq + i > self._seq:
                    self._deliver(Token(request_id=rid, token_id=int(token_id), text=str(text), index=index + i,
                                        wall=float(wall)))
            self._seq = max(self._seq, seq + len(record["ids"]) - 1)
        elif seq > self._seq:
            self._seq = seq
            self._deliver(Event.from_record(record))

    def _apply_status(self, status: dict[str, Any], *, settle: bool = True) -> None:
        """The lock is held. `settle`: wake wait_ready() if loading is over (a snapshot
        does that itself, once its history was delivered)."""
        if (log := status.get("log")) is not None:
            self._log = from_jsonable(LogStatus, log)
        self._state = ServiceState(status["state"])
        self._queue, self._running = int(status["queue"]), int(status["running"])
        self._mode = _value(ModeReadback, status.get("mode"))
        if (breaker := status.get("breaker")) is not None:
            self._breaker, self._breaker_at = from_jsonable(BreakerSnapshot, breaker), time.monotonic()
        if (metrics := status.get("metrics")) is not None:
            self._metrics = from_jsonable(MetricsSummary, metrics)
        if settle and self._state is not ServiceState.LOADING:
            self._ready.set()

    def _apply_system(self, body: dict[str, Any]) -> None:
        sample = from_jsonable(SystemSample, body["sample"])
        if "connections" in body:
            self.connections, self.watchers = int(body["connections"]), int(body.get("watchers", 0))
        self.system.add(float(body["wall"]), sample)

    def _deliver(self, event: Event, *, translate: bool = True) -> None:
        """Route one event (server ids made local) to its handle and every subscriber, once."""
        event = dataclasses.replace(event, t_ns=time.perf_counter_ns())  # stamps mean something here
        rid = event.about_request
        if rid is not None and translate:
            rid = self._local(rid)
            event = dataclasses.replace(event, request_id=rid)  # type: ignore[call-arg]
        with self._lock:
            if rid is not None and not isinstance(event, Token):
                stage = "accepted" if isinstance(event, Accepted) else "started" if isinstance(event, Started) \
                    else "end" if isinstance(event, TERMINAL_EVENTS) else event.kind
                seen = self._delivered.setdefault(rid, set())
                if stage in seen:
                    return  # a replayed stage the subscribers already have
                seen.add(stage)
                while len(self._delivered) > 1000:
                    self._delivered.popitem(last=False)
            if rid is not None:
                if (inbox := self._inboxes.get(rid)) is not None:
                    inbox.push(event)
                    if inbox.ended:
                        del self._inboxes[rid]
                elif self._submitting and (isinstance(event, Accepted) or rid in self._early):
                    self._early.setdefault(rid, []).append(event)
            if isinstance(event, ModeChanged):
                self._mode_changed(event)
            elif isinstance(event, Loaded):
                self._model_info, self._capabilities, self._mode = event.model_info, event.capabilities, event.mode
            subscribers = list(self._subscribers)
        self._emit(event, subscribers)

    def _mode_changed(self, event: ModeChanged) -> None:
        """The lock is held. A change applied (or failed) ends every pending change up to it:
        a later request supersedes an earlier one still waiting."""
        if event.readback is not None and not event.deferred:
            self._mode = event.readback
        if event.deferred:
            return
        self._last_mode_event = event
        for change_id in [cid for cid in self._mode_changes if cid <= event.change_id]:
            self._mode_changes.pop(change_id)._resolve(event)

    def _local(self, server_id: int) -> int:
        local = server_id + self._offset
        self._highest_id = max(self._highest_id, local)
        return local

    def _set_connection(self, state: ConnectionState, detail: str = "", *, retry_in_s: float | None = None,
                        server_restarted: bool = False) -> None:
        self.connection = ConnectionChanged(state=state, url=self.url, detail=detail, retry_in_s=retry_in_s,
                                            server_restarted=server_restarted)
        self._emit(self.connection)

    def _emit(self, event: Event, subscribers: Iterable[Subscriber] | None = None) -> None:
        if subscribers is None:
            with self._lock:
                subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # one subscriber's bug must not stop the others or the stream
                logger.exception("an event subscriber failed")


def sse_messages(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per Server-Sent Events message; comments and ids are skipped."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)


def _json_object(data: str) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise TypeError("a frame's data is not a JSON object")
    return value


def _field(data: str, key: str) -> str | None:
    try:
        value = _json_object(data).get(key)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _value(cls: type, data: object) -> Any:
    return None if data is None else from_jsonable(cls, data)  # type: ignore[arg-type]


def _lost_metrics() -> RequestMetrics:
    """A request the server forgot when it restarted: nothing about it was measured."""
    return RequestMetrics(queue_wait_ms=0.0, ttft_ms=None, prefill_tok_s=None, decode_tok_s=None, e2e_ms=0.0,
                          prompt_tokens=None, generated_tokens=0, mode=None, stop_reason=None, outcome="failed")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
