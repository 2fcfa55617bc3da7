"""Every error the server answers, in OpenAI's shape:

    {"error": {"message": "...", "type": "...", "param": "..." | null, "code": "..." | null}}

so the official clients raise their usual exceptions (BadRequestError, RateLimitError,
...) with our message in them. Raise `APIError` anywhere in a handler; the app turns it
into the response (with Retry-After when one is given)."""

from __future__ import annotations

import math

from starlette.responses import JSONResponse

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
