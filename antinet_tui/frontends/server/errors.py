"""Every error the server answers, in OpenAI's shape:

    {"error": {"message": "...", "type": "...", "param": "..." | null, "code": "..." | null}}

so the official clients raise their usual exceptions (BadRequestError, RateLimitError,
...) with our message in them. Raise `APIError` anywhere in a handler; the app turns it
into the response (with Retry-After when one is given)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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


def unsupported(feature: str, param: str) -> APIError:
    return APIError(400, f"{feature} is not supported by this server", param=param, code="unsupported_parameter")


Handler = Callable[[Request, Exception], Awaitable[Response]]


def exception_handlers(routes_hint: str) -> dict[type[Exception] | int, Handler]:
    """Starlette's exception handlers for a set of routes, every answer in OpenAI's shape:
    an APIError as raised, 404 naming the routes (`routes_hint`), 405, and a 500 for
    anything unexpected (logged with its traceback, which never reaches the client)."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

    async def not_found(request: Request, exc: Exception) -> Response:
        return APIError(404, f"no route {request.url.path}; {routes_hint}", code="not_found").response()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return APIError(405, f"{request.method} is not allowed on {request.url.path}",
                        code="method_not_allowed").response()

    async def internal(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return APIError(500, "internal error; the server's log has the details", type=SERVER_ERROR,
                        code="internal_error").response()

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
