"""The attach API: what `antinet-tui attach URL` runs the dashboard on.

One event stream and a few control routes, under /attach/, beside the OpenAI API:

* ``GET /attach/events`` (Server-Sent Events): first a ``snapshot`` (state, model,
  capabilities, mode readback, breaker view, metrics summary, the recent requests with
  their events, the recent system samples), then ``events`` frames (the runtime's events,
  a request's consecutive tokens packed into one ``tokens`` record, batched every
  ``batch_s`` and encoded once for every watcher, followed by the service's status when it
  changed), ``system`` frames (this machine's psutil sample every ``refresh_s``), ``: ping``
  comments while idle, and ``bye`` when the server drains. Every event carries ``seq``, a
  number that grows by one per runtime event; the snapshot says up to which ``seq`` it
  already includes, so a watcher drops what it has seen.
* ``GET /attach/snapshot``: the same snapshot as JSON (for curl and scripts).
* control: ``POST /attach/requests`` (submit; its events come on the stream),
  ``POST /attach/requests/{id}/cancel``, ``POST /attach/mode``,
  ``POST /attach/breaker/isolate`` and ``/reset``, ``POST /attach/reservations`` and
  ``DELETE /attach/reservations/{token}``, ``POST /attach/count-tokens``,
  ``POST /attach/records`` (a record for this server's session log).

Why SSE and not WebSocket: the stream goes one way (the controls are rare, ordinary
POSTs with the same key and error bodies as the rest of the API); it is plain HTTP that
the server's stack (Starlette's StreamingResponse on uvicorn's h11) already speaks, with
no extra dependency; curl can watch it; proxies pass it.

Who may do what: with an API key configured, every /attach/ route needs
``Authorization: Bearer KEY``; a separate watch key (``--watch-key``) allows the two
watching routes and nothing else (403 on the controls). Without any key, the routes are
open only when the server listens on loopback only; otherwise they are refused.

A watcher's stream is its session (``X-Antinet-Session``, given in the snapshot): when
the stream closes, the requests submitted in that session are cancelled and its
reservation released, so nobody generates for a watcher that went away.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from antinet_tui import __version__
from antinet_tui.engine.errors import EngineError, UnknownMode
from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.frontends.server.errors import (
    AUTHENTICATION,
    UNAVAILABLE,
    APIError,
    Refusals,
    bad_request,
    bearer_token,
    client_address,
    draining_refusal,
    exception_handlers,
    key_refused,
)
from antinet_tui.frontends.server.served import OnServed
from antinet_tui.platform.system_stats import SystemSampler
from antinet_tui.runtime.client import EngineClient, EngineReserved, RequestHandle, Reservation
from antinet_tui.runtime.events import (
    TERMINAL_EVENTS,
    Accepted,
    Event,
    Started,
    Token,
    from_jsonable,
    jsonable,
)

logger = logging.getLogger(__name__)

PREFIX = "/attach/"
PROTOCOL = 1  # the wire format's version; a watcher refuses another
BATCH_S = 0.04  # events are sent at most this often: tokens of ~25 ms each travel in pairs or threes
PING_S = 15.0  # an idle stream sends a comment this often (a dead connection shows up)
RECENT_REQUESTS = 100  # requests a late watcher is told about
SYSTEM_HISTORY = 120  # system samples a late watcher is told about (two minutes at 1 s)
WATCHER_BACKLOG = 512  # frames a watcher may fall behind before it is cut off (it reconnects)
SESSION_HEADER = "x-antinet-session"


@dataclass(frozen=True)
class AttachOptions:
    api_key: str | None = None  # full control (and watching)
    watch_key: str | None = None  # watching only
    loopback_only: bool = True  # the server listens on loopback addresses only
    refresh_s: float = 1.0  # system sample interval
    batch_s: float = BATCH_S


# -- the hub: one subscriber to the engine, one encoding per batch, many watchers ------------------


@dataclass
class _Trace:
    """What a late watcher is told about one recent request: its events so far."""

    accepted: dict[str, Any] | None = None
    started: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "started": self.started, "end": self.end, "tokens": self.tokens}


class _Watcher:
    """One open event stream: frames waiting to be written, and what its session owns."""

    def __init__(self, session: str, address: str):
        self.session = session
        self.address = address
        self.frames: deque[bytes] = deque()
        self.ready = asyncio.Event()
        self.cut_off = False  # fell too far behind: the stream ends, the watcher reconnects

    def push(self, frame: bytes) -> None:
        if len(self.frames) >= WATCHER_BACKLOG:
            self.cut_off = True
        else:
            self.frames.append(frame)
        self.ready.set()


@dataclass
class _Session:
    """What a watcher's session owns on the server: ended when its stream closes."""

    address: str
    handles: dict[int, RequestHandle] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)  # token -> reservation


class WatchHub:
    """Subscribes once to the engine and fans events out to every watcher.

    The dispatcher thread only appends to a list (and, once per batch, schedules a flush on
    the event loop); the loop encodes each batch once and hands the same bytes to every
    watcher, so a watcher costs the engine one append per event and no JSON."""

    def __init__(self, client: EngineClient, options: AttachOptions, connections: Callable[[], int] = lambda: 0):
        self.client = client
        self.options = options
        self.connections = connections
        self.instance = uuid.uuid4().hex[:12]  # a restarted server is another instance
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: list[tuple[int, Event]] = []
        self._flush_scheduled = False
        self._requests: OrderedDict[int, _Trace] = OrderedDict()
        self._system: deque[dict[str, Any]] = deque(maxlen=SYSTEM_HISTORY)
        self._watchers: dict[str, _Watcher] = {}
        self.sessions: dict[str, _Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sampler_stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._unsubscribe = client.subscribe(self._on_event)

    # -- the dispatcher thread ---------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._seq += 1
            self._trace(event)
            if not self._watchers or self._loop is None:
                return
            self._pending.append((self._seq, event))
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
            loop = self._loop
        try:
            loop.call_soon_threadsafe(loop.call_later, self.options.batch_s, self._flush)
        except RuntimeError:  # the loop closed: the server is gone
            pass

    def _trace(self, event: Event) -> None:
        """Keep the recent requests' events for late watchers (the lock is held)."""
        rid = event.about_request
        if rid is None:
            return
        if isinstance(event, Token):
            if (trace := self._requests.get(rid)) is not None:
                trace.tokens += 1
            return
        record = {"seq": self._seq, **event.to_record()}
        if isinstance(event, Accepted):
            self._requests[rid] = _Trace(accepted=record)
        elif isinstance(event, Started):
            if (trace := self._requests.get(rid)) is not None:
                trace.started = record
        elif isinstance(event, TERMINAL_EVENTS):
            trace = self._requests.get(rid)
            if trace is None:  # refused at submission: no Accepted before it
                trace = self._requests[rid] = _Trace()
            trace.end = record
        # after either insertion: refusals alone (a breaker held open, clients retrying) must not grow it
        while len(self._requests) > RECENT_REQUESTS:
            self._requests.popitem(last=False)

    # -- the event loop ----------------------------------------------------------------------

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._flush_scheduled = False
        if not pending or not self._watchers:
            return
        records = pack(pending)
        body: dict[str, Any] = {"events": records}
        if any(r["kind"] != "tokens" for r in records):  # token-only batches change no figure
            body["status"] = self.status(metrics=any(r["kind"] in _ENDS for r in records))
        self._broadcast(frame("events", body))

    def _broadcast(self, data: bytes) -> None:
        for watcher in list(self._watchers.values()):
            watcher.push(data)

    def status(self, *, metrics: bool) -> dict[str, Any]:
        """The service's figures that change with events (sent after a batch that changed them)."""
        client = self.client
        status = {
            "state": client.state.value,
            "queue": client.queue_length(),
            "running": client.running_count(),
            "mode": jsonable(client.mode()),
            "breaker": jsonable(client.breaker_view()),
            "log": jsonable(client.log_status()),
        }
        if metrics:
            status["metrics"] = jsonable(client.metrics_summary())
        return status

    def start(self) -> None:
        """On the event loop, when the first watcher comes: remember the loop, start sampling."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample, name="antinet-attach-sampler", daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        """This machine's psutil samples, kept for late watchers and sent to the present ones."""
        sampler = SystemSampler()
        self._sampler_stop.wait(min(0.2, self.options.refresh_s))  # cpu_percent needs an interval to measure
        while not self._sampler_stop.is_set():
            try:
                sample = {"sample": jsonable(sampler.sample()), "wall": time.time()}
            except (OSError, RuntimeError, psutil.Error) as exc:  # a sensor that fails once: go on
                logger.warning("system sample failed: %s", exc)
                self._sampler_stop.wait(self.options.refresh_s)
                continue
            self._system.append(sample)
            loop = self._loop
            if self._watchers and loop is not None:
                body = {**sample, "connections": self.connections(), "watchers": len(self._watchers)}
                try:
                    loop.call_soon_threadsafe(self._broadcast, frame("system", body))
                except RuntimeError:
                    return
            self._sampler_stop.wait(self.options.refresh_s)

    def attach(self, address: str) -> tuple[_Watcher, dict[str, Any]]:
        """A new watcher and the snapshot it starts from (events after its `seq` follow)."""
        self.start()
        session = uuid.uuid4().hex
        watcher = _Watcher(session, address)
        with self._lock:
            self._watchers[session] = watcher
            seq = self._seq
            requests = [trace.to_json() for trace in self._requests.values()]
            system = list(self._system)
        self.sessions[session] = _Session(address)
        client = self.client
        snapshot = {
            "protocol": PROTOCOL,
            "version": __version__,
            "instance": self.instance,
            "session": session,
            "seq": seq,
            **self.status(metrics=True),
            "load_error": client.load_error(),
            "model_info": jsonable(client.model_info()),
            "capabilities": jsonable(client.capabilities()),
            "requests": requests,
            "system": system,
            "connections": self.connections(),
            "watchers": len(self._watchers),
            "refresh_s": self.options.refresh_s,
            "batch_s": self.options.batch_s,
        }
        return watcher, snapshot

    def detach(self, watcher: _Watcher) -> None:
        """The watcher's stream closed: end what its session owns."""
        with self._lock:
            self._watchers.pop(watcher.session, None)
        session = self.sessions.pop(watcher.session, None)
        if session is None:
            return
        for handle in session.handles.values():
            handle.close()  # cancels it if it has not ended
        for reservation in session.reservations.values():
            reservation.release()

    def close(self) -> None:
        self._unsubscribe()
        self._sampler_stop.set()


_ENDS = {cls.kind for cls in TERMINAL_EVENTS}


def pack(pending: list[tuple[int, Event]]) -> list[dict[str, Any]]:
    """The records of a batch: each event's `to_record()` with its `seq`, except that a
    request's consecutive tokens become one `tokens` record (about a third of the bytes)."""
    records: list[dict[str, Any]] = []
    run: dict[str, Any] | None = None
    for seq, event in pending:
        if isinstance(event, Token):
            if run is not None and run["request_id"] == event.request_id and run["seq"] + len(run["ids"]) == seq:
                run["ids"].append(event.token_id)
                run["texts"].append(event.text)
                run["wall"].append(round(event.wall, 4))
                continue
            run = {"kind": "tokens", "seq": seq, "request_id": event.request_id, "index": event.index,
                   "ids": [event.token_id], "texts": [event.text], "wall": [round(event.wall, 4)]}
            records.append(run)
            continue
        run = None
        records.append({"seq": seq, **event.to_record()})
    return records


def frame(name: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


# -- the routes --------------------------------------------------------------------------------


WATCH, CONTROL = "watch", "control"


class _Routes:
    def __init__(self, hub: WatchHub, options: AttachOptions, draining: Callable[[], bool]):
        self.hub = hub
        self.client = hub.client
        self.options = options
        self.draining = draining
        self._held: set[asyncio.Task[Any]] = set()  # asyncio keeps only weak references to tasks

    # -- watching ----------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        watcher, snapshot = self.hub.attach(client_address(request.scope))

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield frame("snapshot", snapshot)
                idle_since = time.monotonic()
                while not watcher.cut_off:
                    if self.draining():
                        yield frame("bye", {"reason": "the server is shutting down"})
                        return
                    try:
                        await asyncio.wait_for(watcher.ready.wait(), 1.0)
                    except TimeoutError:
                        if time.monotonic() - idle_since >= PING_S:
                            idle_since = time.monotonic()
                            yield b": ping\n\n"
                        continue
                    watcher.ready.clear()
                    while watcher.frames:
                        yield watcher.frames.popleft()
                    idle_since = time.monotonic()
                if watcher.cut_off:
                    yield frame("bye", {"reason": "this watcher fell too far behind; reconnect"})
            finally:
                self.hub.detach(watcher)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def snapshot(self, request: Request) -> Response:
        watcher, snapshot = self.hub.attach(client_address(request.scope))
        self.hub.detach(watcher)
        return JSONResponse(snapshot)

    # -- control -----------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        body = await _json(request)
        generation = _generation(body.get("request"))
        session = self._session(request)
        measurement = body.get("measurement", False)
        if not isinstance(measurement, bool):
            raise bad_request("'measurement' must be true or false", param="measurement")
        origin = self._acting_as(session, body.get("origin"), request)
        handle = self.client.submit(generation, origin=origin, measurement=measurement)
        if handle.accepted and not handle.done:
            # hold the handle until the request ends (dropping it would cancel it); in a
            # session, the stream's end cancels it
            task = asyncio.ensure_future(self._hold(session, handle))
            self._held.add(task)
            task.add_done_callback(self._held.discard)
        rejection = handle.rejection.to_record() if handle.rejection is not None else None
        return JSONResponse({"accepted": handle.accepted, "request_id": handle.request_id, "origin": origin,
                             "rejection": rejection})

    async def _hold(self, session: _Session | None, handle: RequestHandle) -> None:
        if session is not None:
            session.handles[handle.request_id] = handle
        try:
            await handle.result_async()
        except EngineError:  # the service stopped under it
            pass
        if session is not None:
            session.handles.pop(handle.request_id, None)

    async def cancel(self, request: Request) -> Response:
        try:
            request_id = int(request.path_params["request_id"])
        except ValueError:
            raise bad_request("the request id must be a whole number") from None
        return JSONResponse({"cancelled": self.client.cancel(request_id)})

    async def mode(self, request: Request) -> Response:
        body = await _json(request)
        mode = body.get("mode")
        if not isinstance(mode, str) or not mode:
            raise bad_request("'mode' must be a mode name", param="mode")
        requested_by = self._acting_as(self._session(request), body.get("requested_by"), request)
        try:
            change = self.client.set_mode(mode, requested_by=requested_by)
        except UnknownMode as exc:
            raise bad_request(str(exc), param="mode", code="unknown_mode") from None
        except EngineReserved as exc:
            raise APIError(409, str(exc), code="reserved") from None
        except EngineError as exc:
            raise APIError(503, str(exc), type=UNAVAILABLE, code="not_ready") from None
        return JSONResponse({"change_id": change.change_id, "requested": change.requested,
                             "requested_by": change.requested_by})

    async def isolate(self, request: Request) -> Response:
        self.client.isolate_breaker()
        return JSONResponse({"breaker": jsonable(self.client.breaker_view())})

    async def reset(self, request: Request) -> Response:
        self.client.reset_breaker()
        return JSONResponse({"breaker": jsonable(self.client.breaker_view())})

    async def reserve(self, request: Request) -> Response:
        body = await _json(request)
        holder = body.get("holder")
        if not isinstance(holder, str) or not holder:
            raise bad_request("'holder' must be a name", param="holder")
        session = self._session(request)
        if session is None:
            raise bad_request(f"a reservation needs the {SESSION_HEADER} header of an open event stream "
                              "(it ends when that stream closes)", code="no_session")
        try:
            reservation = self.client.reserve(holder)
        except EngineReserved as exc:
            raise APIError(409, str(exc), code="reserved") from None
        except EngineError as exc:
            raise APIError(409, str(exc), code="busy") from None
        token = uuid.uuid4().hex
        session.reservations[token] = reservation
        return JSONResponse({"token": token, "holder": holder})

    async def release(self, request: Request) -> Response:
        token = request.path_params["token"]
        for session in self.hub.sessions.values():
            if (reservation := session.reservations.pop(token, None)) is not None:
                reservation.release()
                return JSONResponse({"released": True})
        return JSONResponse({"released": False})

    async def count_tokens(self, request: Request) -> Response:
        generation = _generation((await _json(request)).get("request"))
        try:
            return JSONResponse({"tokens": self.client.count_prompt_tokens(generation)})
        except EngineError as exc:
            raise APIError(503, str(exc), type=UNAVAILABLE, code="not_ready") from None

    async def record(self, request: Request) -> Response:
        record = (await _json(request)).get("record")
        if not isinstance(record, dict):
            raise bad_request("'record' must be a JSON object", param="record")
        self.client.log_record(record)
        return Response(status_code=204)

    # -- helpers ---------------------------------------------------------------------------

    def _session(self, request: Request) -> _Session | None:
        name = request.headers.get(SESSION_HEADER)
        if name is None:
            return None
        session = self.hub.sessions.get(name)
        if session is None:
            raise APIError(409, "that attach session has ended (its event stream closed); reconnect",
                           code="session_ended")
        return session

    def _acting_as(self, session: _Session | None, name: object, request: Request) -> str:
        """Who a watcher's request or mode change is from. A watcher may name a reservation's
        holder only while its own session holds that reservation (so one watcher cannot pass
        another's experiment); otherwise it is the watcher, by address."""
        if isinstance(name, str) and session is not None \
                and any(r.holder == name for r in session.reservations.values()):
            return name
        return f"watcher@{client_address(request.scope)}"


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _generation(data: object) -> GenerationRequest:
    if not isinstance(data, dict):
        raise bad_request("'request' must be a JSON object (a GenerationRequest)", param="request")
    try:
        return from_jsonable(GenerationRequest, data)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"'request' is not a valid GenerationRequest: {exc}", param="request") from None


# -- mounting -----------------------------------------------------------------------------------


class AttachGate:
    """ASGI app in front of the server: /attach/ routes go to the attach API (with its own
    rule of who may watch and who may control); everything else to `inner` unchanged."""

    def __init__(self, inner: ASGIApp, client: EngineClient, options: AttachOptions,
                 connections: Callable[[], int] = lambda: 0, draining: Callable[[], bool] = lambda: False,
                 on_served: OnServed | None = None):
        self.inner = inner
        self.options = options
        self.hub = WatchHub(client, options, connections)
        routes = _Routes(self.hub, options, draining)
        self.draining = draining
        self.watch_paths = {"/attach/events", "/attach/snapshot"}
        self.refusals = Refusals(client.log_record, on_served)  # each refusal: a record, a headless line
        self.app = Starlette(routes=[
            Route("/attach/events", routes.events, methods=["GET"]),
            Route("/attach/snapshot", routes.snapshot, methods=["GET"]),
            Route("/attach/requests", routes.submit, methods=["POST"]),
            Route("/attach/requests/{request_id}/cancel", routes.cancel, methods=["POST"]),
            Route("/attach/mode", routes.mode, methods=["POST"]),
            Route("/attach/breaker/isolate", routes.isolate, methods=["POST"]),
            Route("/attach/breaker/reset", routes.reset, methods=["POST"]),
            Route("/attach/reservations", routes.reserve, methods=["POST"]),
            Route("/attach/reservations/{token}", routes.release, methods=["DELETE"]),
            Route("/attach/count-tokens", routes.count_tokens, methods=["POST"]),
            Route("/attach/records", routes.record, methods=["POST"]),
        ], exception_handlers=exception_handlers(f"the attach routes are under {PREFIX}", self.refusals))
        self._keys = {CONTROL: _encode(options.api_key), WATCH: _encode(options.watch_key)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.inner(scope, receive, send)
            return
        needed = WATCH if scope["path"] in self.watch_paths and scope["method"] == "GET" else CONTROL
        refusal = self._refusal(scope, needed)
        if refusal is None and needed == CONTROL and self.draining():
            refusal = draining_refusal()
        if refusal is not None:
            await self.refusals.response(scope, refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, needed: str) -> APIError | None:
        control_key, watch_key = self._keys[CONTROL], self._keys[WATCH]
        given = bearer_token(scope.get("headers", ()))
        if control_key is None:  # no API key: open on loopback, else only a watch key can watch
            if self.options.loopback_only:
                return None
            if needed == WATCH and watch_key is not None and given is not None \
                    and hmac.compare_digest(given, watch_key):
                return None
            return APIError(403, "attaching needs an API key on a server that other machines can reach: "
                                 "start serve with --api-key (and --watch-key for read-only watchers)",
                            type=AUTHENTICATION, code="key_required")
        if given is None:
            return key_refused(given)
        if hmac.compare_digest(given, control_key):
            return None
        if watch_key is not None and hmac.compare_digest(given, watch_key):
            if needed == WATCH:
                return None
            return APIError(403, "this key may watch but not control (use the API key for controls)",
                            type=AUTHENTICATION, code="watch_only")
        return key_refused(given)


def _encode(key: str | None) -> bytes | None:
    return key.encode("utf-8") if key else None
