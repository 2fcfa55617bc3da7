"""The HTTP API as a Starlette app over an EngineClient.

Each generation request goes through its own request handle: the handler submits, then
reads that request's events with `async for` (no thread per request); the handle is
closed when the response ends, so a client that goes away mid-answer cancels its
generation (Starlette's streaming response watches for the disconnect and cancels the
stream; a non-streamed reply watches for it itself).

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health
(liveness: the process answers), GET /ready (503 while loading, draining or with the
breaker refusing), GET /metrics (Prometheus). Everything but /health needs the API key
when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from antinet_tui.config import Settings
from antinet_tui.engine.errors import EngineError
from antinet_tui.frontends.server import openai_format
from antinet_tui.frontends.server.errors import (
    RATE_LIMIT,
    SERVER_ERROR,
    UNAVAILABLE,
    APIError,
    Refusals,
    bad_request,
    bearer_token,
    client_address,
    draining_refusal,
    exception_handlers,
    key_refused,
    refusal_outcome,
)
from antinet_tui.frontends.server.prometheus import CONTENT_TYPE, ServerMetrics
from antinet_tui.frontends.server.schemas import ParsedRequest, decode_json, parse_chat, parse_completion
from antinet_tui.frontends.server.served import OnServed, Served, reporter
from antinet_tui.runtime.breaker import BreakerState
from antinet_tui.runtime.client import EngineClient, RequestHandle
from antinet_tui.runtime.events import TERMINAL_EVENTS, Cancelled, Event, Failed, Finished, Rejected, Started, Token
from antinet_tui.runtime.metrics import RequestMetrics

logger = logging.getLogger(__name__)

OPEN_ROUTES = {"/health"}
LOADING_RETRY_S = 5.0  # Retry-After while the model loads (a few seconds on this machine)
# A stream writes the first token at once, then at most one chunk per interval (a chunk may
# carry several tokens). A write per token costs the engine's process a socket write and the
# client a wake-up per token: measured (benchmarks/serve.py), 18 % more CPU per request
# than headless at ~100 tok/s, against 6 % with this interval. 20 writes a second still
# read as a smooth stream.
STREAM_WRITE_INTERVAL_S = 0.05


@dataclass
class ServerOptions:
    settings: Settings  # the request defaults (max tokens, temperature, ...) and limits
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    on_served: OnServed | None = None  # told of every request answered (generation or refused)


class ServerState:
    """What the HTTP side knows that the runtime does not: draining, requests in flight."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight: set[RequestHandle] = set()  # handles of generation requests being answered
        self.connections: Callable[[], int] = lambda: 0  # open HTTP connections (the runner sets it)


def create_app(client: EngineClient, options: ServerOptions, state: ServerState | None = None) -> ASGIApp:
    """The app: routes behind the gate (key, drain). Its metrics subscribe to `client`'s
    events for the client's life (a served engine is served until the process ends)."""
    state = state or ServerState()
    metrics = ServerMetrics(client, connected_clients=lambda: state.connections(), draining=lambda: state.draining)
    handlers = _Handlers(client, options, state, metrics)
    refusals = Refusals(client.log_record, options.on_served)
    app = Starlette(routes=[
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
        Route("/v1/completions", handlers.completions, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/ready", handlers.ready, methods=["GET"]),
        Route("/metrics", handlers.metrics, methods=["GET"]),
    ], exception_handlers=exception_handlers(
        "see /v1/chat/completions, /v1/completions, /v1/models, /health, /ready, /metrics", refusals))
    client.subscribe(metrics.on_event)
    return _Gate(app, options, state, metrics, refusals)


class _Gate:
    """ASGI middleware in front of every route: refuses while draining, checks the API
    key, and counts responses by route and status. Pure ASGI (not BaseHTTPMiddleware),
    so streamed bodies and disconnects pass through untouched."""

    def __init__(self, app: Starlette, options: ServerOptions, state: ServerState, metrics: ServerMetrics,
                 refusals: Refusals):
        self.app = app
        self.options = options
        self.server_state = state
        self.metrics = metrics
        self.refusals = refusals
        self._key = options.api_key.encode("utf-8") if options.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _KNOWN_ROUTES else "other"
        status_seen: list[int] = []

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        refusal = self._refusal(scope)
        try:
            if refusal is not None:
                await self.refusals.response(scope, refusal)(scope, receive, counted_send)
            else:
                await self.app(scope, receive, counted_send)
        finally:
            if status_seen:
                self.metrics.http_responses.labels(route, str(status_seen[0])).inc()

    def _refusal(self, scope: Scope) -> APIError | None:
        path = scope["path"]
        if path in OPEN_ROUTES:
            return None
        if self._key is not None:
            given = bearer_token(scope.get("headers", ()))
            if given is None or not hmac.compare_digest(given, self._key):
                return key_refused(given)
        if self.server_state.draining and path != "/metrics":
            return draining_refusal()
        return None


_KNOWN_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready", "/metrics"}


class _Handlers:
    def __init__(self, client: EngineClient, options: ServerOptions, state: ServerState, metrics: ServerMetrics):
        self.client = client
        self.options = options
        self.state = state
        self.metrics_store = metrics
        self._served = reporter(options.on_served)

    # -- generation ---------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, parse_chat)

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, parse_completion)

    async def _generate(self, request: Request, parse: Callable[..., ParsedRequest]) -> Response:
        """A generation request, told once to on_served however it ends (an APIError it
        raises is told by the exception handler's Refusals)."""
        origin, method, route = client_address(request.scope), request.method, request.url.path
        try:
            parsed = parse(decode_json(await self._body(request)), self.options.settings)
            model = self._check_ready_and_model(parsed.model)
        except ClientDisconnect:
            self._served(Served(None, origin, method, route, 499, "disconnected"))
            return Response(status_code=499)
        handle = self.client.submit(parsed.generation, origin=origin)
        if not handle.accepted:
            error = self._refused(handle.rejection)
            self._served(Served(handle.request_id, origin, method, route, error.status,
                                refusal_outcome(error.status), error.cause, parsed.generation.prompt,
                                error=error.message))
            return error.response()
        exchange = _Exchange(handle, parsed, openai_format.completion_id(parsed.kind, handle.request_id), model,
                             origin, method, route)
        self.state.in_flight.add(handle)
        streaming = False
        try:
            if parsed.stream:
                # Headers wait until the engine starts the request: a request that waits too
                # long in the queue can still be answered 429, which a begun stream cannot.
                first = await _first_of(_until_started(exchange.events), _disconnected(request))
                if isinstance(first, Started):
                    streaming = True
                    return _EventStream(self._stream(exchange), lambda: self._done(handle))
                end = first
            else:
                end = await _first_of(_terminal(exchange.events), _disconnected(request))
            return self._whole_reply(exchange, end)
        finally:
            if not streaming:
                self._done(handle)

    async def _body(self, request: Request) -> bytes:
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(len(body), limit)
        return bytes(body)

    def _check_ready_and_model(self, requested: str | None) -> str:
        state = _value(self.client.state)
        if state == "loading" or state == "not_started":
            raise APIError(503, "the model is still loading; try again shortly", type=UNAVAILABLE,
                           code="model_loading", retry_after_s=LOADING_RETRY_S)
        if state != "ready":
            raise APIError(503, f"the engine is not available ({state.replace('_', ' ')})", type=UNAVAILABLE,
                           code="not_ready")
        served = self.model_id()
        if requested is not None and requested not in (served, "default"):
            raise APIError(404, f"the model {requested!r} is not served here; this server serves {served!r}",
                           param="model", code="model_not_found")
        return served

    def model_id(self) -> str:
        info = self.client.model_info()
        return info.name if info is not None else "not loaded"

    def _refused(self, rejection) -> APIError:
        cause, reason = rejection.cause, rejection.reason
        retry = rejection.retry_after_s
        if cause == "bad_input":
            return bad_request(reason, code="invalid_input")
        if cause in ("queue_full", "queue_timeout"):
            return APIError(429, reason, type=RATE_LIMIT, code=cause, retry_after_s=retry if retry else 1.0)
        if cause == "breaker_open":
            if retry is None:
                retry = self._breaker_retry()
            return APIError(503, reason, type=UNAVAILABLE, code=cause, retry_after_s=retry)
        return APIError(503, reason, type=UNAVAILABLE, code=cause, retry_after_s=retry if retry else LOADING_RETRY_S)

    def _breaker_retry(self) -> float:
        view = self.client.breaker_view()
        if view.seconds_until_probe is not None:
            return view.seconds_until_probe
        return view.config.open_wait_s  # ISOLATED: no probe is due; the usual cool-down is a fair guess

    def _whole_reply(self, exchange: _Exchange, end: object) -> Response:
        """The non-streamed answer, or the error that ended the request before a stream began."""
        rid = exchange.handle.request_id
        if end is None:  # the client went away: the generation stops (its handle closes)
            self._served(exchange.served(499, "disconnected"))
            return Response(status_code=499)
        if isinstance(end, Finished):
            body = openai_format.full_reply(exchange.parsed.kind, exchange.cid, exchange.model, end.text,
                                            end.metrics, rid)
            self._served(exchange.served(200, "finished", end.metrics))
            return JSONResponse(body)
        if isinstance(end, Rejected):
            error = self._refused(end)
        elif isinstance(end, _Gone):
            error = _engine_gone(end.error)
        else:
            error = _ended_early(end)
        self._served(exchange.served(error.status, _outcome_of(end), getattr(end, "metrics", None), error))
        return error.response()

    async def _stream(self, exchange: _Exchange) -> AsyncIterator[bytes]:
        writer = openai_format.ChunkWriter(exchange.parsed.kind, exchange.cid, exchange.model)
        rid = exchange.handle.request_id
        outcome, metrics, error = "disconnected", None, None  # error: an APIError the stream ended with
        try:
            if first := writer.first():
                yield first
            held: list[str] = []  # text that came since the last write
            last_write = 0.0
            try:
                async for event in exchange.events:
                    if isinstance(event, Token):
                        held.append(event.text)
                        now = time.monotonic()
                        if now - last_write >= STREAM_WRITE_INTERVAL_S and "".join(held):
                            last_write = now
                            yield writer.text("".join(held))
                            held.clear()
                        continue
                    if "".join(held):
                        yield writer.text("".join(held))
                        held.clear()
                    if isinstance(event, Finished):
                        outcome, metrics = "finished", event.metrics
                        yield writer.last(event.metrics, rid, exchange.parsed.include_usage)
                    elif isinstance(event, TERMINAL_EVENTS):
                        error = _ended_early(event)
                        outcome, metrics = _outcome_of(event), getattr(event, "metrics", None)
                        yield openai_format.sse(error.body()) + openai_format.DONE
            except EngineError as exc:  # the service stopped under the request
                outcome, error = "failed", _engine_gone(exc)
                yield openai_format.sse(error.body()) + openai_format.DONE
        finally:
            self._done(exchange.handle)
            self._served(exchange.served(499 if outcome == "disconnected" else 200, outcome, metrics, error))

    def _done(self, handle) -> None:
        handle.close()  # cancels the generation if it is still going (the client left)
        self.state.in_flight.discard(handle)

    # -- the rest -----------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        info = self.client.model_info()
        data = []
        if info is not None:
            data.append({"id": info.name, "object": "model", "created": 0, "owned_by": "antinet-tui",
                         "backend": info.backend, "context_length": info.context_length})
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """200 when a request sent now would be served; 503 with the reason otherwise."""
        state = _value(self.client.state)
        breaker = self.client.breaker_view()
        body = {"status": "ready", "engine": state, "breaker": _value(breaker.state),
                "queue": self.client.queue_length(), "running": self.client.running_count()}
        headers = {}
        if self.state.draining:
            body["status"] = "draining"
        elif state in ("loading", "not_started"):
            body["status"] = "loading"
            headers["Retry-After"] = str(int(LOADING_RETRY_S))
        elif state != "ready":
            body["status"] = "unavailable"
        elif breaker.state in (BreakerState.OPEN, BreakerState.ISOLATED):
            body["status"] = "breaker_open"
            body["reason"] = breaker.reason
            from antinet_tui.frontends.server.errors import retry_after_header

            headers["Retry-After"] = retry_after_header(self._breaker_retry())
        return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503, headers=headers)

    async def metrics(self, request: Request) -> Response:
        return Response(self.metrics_store.render(), media_type=CONTENT_TYPE)


def _value(state: object) -> str:
    return str(getattr(state, "value", state))


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"the request body is {size} bytes; the limit is {limit}", code="request_too_large")


def _ended_early(event: object) -> APIError:
    """A Failed or Cancelled request's error (what else ended early says so in words)."""
    if isinstance(event, Failed):
        return APIError(500, f"the generation failed: {event.error}", type=SERVER_ERROR, code="generation_failed")
    tokens = len(event.token_ids) if isinstance(event, Cancelled) else 0
    return APIError(503, f"the request was cancelled by the server after {tokens} tokens "
                    "(shutdown, or the operator stopped it)", type=UNAVAILABLE, code="cancelled")


class _EventStream(StreamingResponse):
    """An SSE response that releases its request when the response ends, however it ends:
    a client gone before the first chunk means the body generator never ran (its own
    `finally` never runs), and the request would go on generating for nobody."""

    def __init__(self, content: AsyncIterator[bytes], on_end: Callable[[], None]):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_end()


def _engine_gone(why: object) -> APIError:
    return APIError(503, f"the engine stopped before the request ended: {why}", type=UNAVAILABLE, code="not_ready")


def _outcome_of(end: object) -> str:
    return getattr(end, "kind", "failed")


@dataclass
class _Exchange:
    """One generation request being answered."""

    handle: RequestHandle
    parsed: ParsedRequest
    cid: str
    model: str
    origin: str
    method: str
    route: str
    events: AsyncIterator[Event] = field(init=False)

    def __post_init__(self) -> None:
        self.events = aiter(self.handle)  # one reader, continued from the wait for Started to the stream

    def served(self, status: int, outcome: str, metrics: RequestMetrics | None = None,
               error: APIError | None = None) -> Served:
        """How this request ended, for on_served (`error`: what the client was told)."""
        return Served(self.handle.request_id, self.origin, self.method, self.route, status, outcome,
                      error.cause if error else None, self.parsed.generation.prompt, metrics,
                      error.message if error else None)


async def _until_started(events: AsyncIterator[Event]) -> Event:
    """The request's Started event, or its terminal event if it ended first (refused after
    waiting too long, cancelled or failed in the queue)."""
    try:
        while True:
            event = await anext(events)
            if isinstance(event, (Started, *TERMINAL_EVENTS)):
                return event
    except EngineError as exc:
        return _Gone(str(exc))


async def _terminal(events: AsyncIterator[Event]) -> Event:
    end: Event | None = None
    try:
        async for event in events:
            end = event
    except EngineError as exc:
        return _Gone(str(exc))
    assert end is not None
    return end


@dataclass(frozen=True)
class _Gone(Event):
    """Not a runtime event: the service stopped before the request ended."""

    error: str


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _first_of(result, disconnect):
    """The handle's end, or None when the client disconnected first."""
    result_task = asyncio.ensure_future(result)
    disconnect_task = asyncio.ensure_future(disconnect)
    try:
        done, _ = await asyncio.wait({result_task, disconnect_task}, return_when=asyncio.FIRST_COMPLETED)
        if result_task in done:
            return result_task.result()
        return None
    finally:
        for task in (result_task, disconnect_task):
            if not task.done():
                task.cancel()
