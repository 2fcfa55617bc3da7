"""Every error the server answers, in OpenAI's shape:

    {"error": {"message": "...", "type": "...", "param": "..." | null, "code": "..." | null}}

so the official clients raise their usual exceptions (BadRequestError, RateLimitError,
...) with our message in them. Raise `APIError` anywhere in a handler; the app turns it
into the response (with Retry-After when one is given).

A request the HTTP layer answers with an error of its own, before the runtime sees it
(a bad body, a wrong key, an unknown model or route, draining, loading), is answered
through `Refusals`, which also writes it to the session log and reports it (the headless
line). The runtime's refusals (a full queue, an open breaker, a prompt over the context)
are answered by the routes from the runtime's Rejected event, which the runtime logs
itself."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from antinet_tui.frontends.server.served import OnServed, Served, reporter

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"
SERVER_ERROR = "server_error"
UNAVAILABLE = "service_unavailable_error"


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    @property
    def cause(self) -> str:
        """What kind of error, in one word: its code, or its type when it has none."""
        return self.code or self.type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = retry_after_header(self.retry_after_s)
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers())


def retry_after_header(seconds: float) -> str:
    """HTTP's delay-seconds: a whole number, rounded up, at least 1 (0 invites a hot loop)."""
    return str(max(1, math.ceil(seconds)))


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def key_refused(given: bytes | None) -> APIError:
    """401 for a request without the key, or with another one (the API and attach gates)."""
    what = "no API key was sent" if given is None else "the API key is not valid"
    return APIError(401, f"{what}: send the header 'Authorization: Bearer KEY'", type=AUTHENTICATION,
                    code="invalid_api_key")


DRAIN_RETRY_S = 5.0  # Retry-After while draining: a restarted server listens again in a few seconds


def draining_refusal() -> APIError:
    """503 for a new request while the server drains for a stop (the API and attach gates)."""
    return APIError(503, "the server is shutting down and takes no new requests", type=UNAVAILABLE,
                    code="draining", retry_after_s=DRAIN_RETRY_S)


def unsupported(feature: str, param: str) -> APIError:
    return APIError(400, f"{feature} is not supported by this server", param=param, code="unsupported_parameter")


HTTP_ERROR = "http_error"  # the session log's kind of record for a request the HTTP layer answered with an error
RECORDED_TEXT_LIMIT = 1000  # characters of a path or message a record keeps (a message may quote the client)


class Refusals:
    """Answers the requests the HTTP layer refuses itself (or fails on: a 500), and tells
    of each refusal in one place: one session-log record (`log_record`:
    EngineClient.log_record) with its time, the client's address, method, path, status,
    cause (APIError.cause), param and the message the client was sent, never the body or
    the headers; and one `Served` to `on_served` (the headless line). The record is
    written and flushed before the answer goes out and nothing of it is kept, so a flood
    of bad requests costs one small append each; a record the log cannot take (a full
    disk) is the runtime's to report, and the client is answered anyway."""

    def __init__(self, log_record: Callable[[dict[str, Any]], None], on_served: OnServed | None = None):
        self._log_record = log_record
        self._report = reporter(on_served)

    def response(self, scope: Scope, error: APIError) -> JSONResponse:
        self.record(scope, error)
        return error.response()

    def record(self, scope: Scope, error: APIError) -> None:
        origin, method, path = client_address(scope), scope.get("method", ""), _clip(scope.get("path", ""))
        message = _clip(error.message)
        try:
            self._log_record({
                "kind": HTTP_ERROR, "origin": origin, "method": method, "path": path, "status": error.status,
                "cause": error.cause, "param": error.param, "message": message,
            })
        except Exception:  # the client is answered whatever became of its record
            logger.exception("could not record the refused request in the session log")
        self._report(Served(None, origin, method, path, error.status, refusal_outcome(error.status), error.cause,
                            error=message))


def refusal_outcome(status: int) -> str:
    """A refused request's outcome word: `rejected` when it may be sent again later (429,
    503: load, loading, draining), `error` when the request itself is wrong."""
    return "rejected" if status in (429, 503) else "error"


def _clip(text: str) -> str:
    if len(text) <= RECORDED_TEXT_LIMIT:
        return text
    return f"{text[:RECORDED_TEXT_LIMIT]}... ({len(text) - RECORDED_TEXT_LIMIT} more characters)"


def client_address(scope: Scope) -> str:
    """Who sent the request: "host:port" of the client's end of the connection."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


Handler = Callable[[Request, Exception], Awaitable[Response]]


def exception_handlers(routes_hint: str, refusals: Refusals) -> dict[type[Exception] | int, Handler]:
    """Starlette's exception handlers for a set of routes, every answer in OpenAI's shape
    and in the session log (`refusals`): an APIError as raised, 404 naming the routes
    (`routes_hint`), 405, and a 500 for anything unexpected (logged with its traceback,
    which never reaches the client)."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return refusals.response(request.scope, exc)

    async def not_found(request: Request, exc: Exception) -> Response:
        return refusals.response(request.scope, APIError(404, f"no route {request.url.path}; {routes_hint}",
                                                         code="not_found"))

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return refusals.response(request.scope, APIError(405, f"{request.method} is not allowed on "
                                                         f"{request.url.path}", code="method_not_allowed"))

    async def internal(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return refusals.response(request.scope, APIError(500, "internal error; the server's log has the details",
                                                         type=SERVER_ERROR, code="internal_error"))

    return {APIError: api_error, 404: not_found, 405: not_allowed, Exception: internal}


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an `Authorization: Bearer ...` header in an ASGI scope's headers: None
    when there is no such header, b"" when it is there but holds no bearer token (wrong,
    not missing)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return None
