"""What the server reports of each request it answered: one `Served` per generation
request however it ended, and one per request the HTTP layer refused (errors.Refusals).
`serve --headless` prints each as a line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from antinet_tui.runtime.metrics import RequestMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One request as the server answered it."""

    request_id: int | None  # the runtime's id; None when the runtime never saw the request
    origin: str  # the client's "host:port"
    method: str
    route: str  # the path (a refusal's is cut as its session-log record's is)
    status: int
    outcome: str  # finished / cancelled / failed / rejected / disconnected / error
    cause: str | None = None  # the error's code (or type) as the client got it
    prompt: str = ""
    metrics: RequestMetrics | None = None
    error: str | None = None  # the message the client got
    wall: float = field(default_factory=time.time)


OnServed = Callable[[Served], None]


def reporter(on_served: OnServed | None) -> OnServed:
    """`on_served` guarded: a callback that fails is logged and never fails the answer."""

    def report(served: Served) -> None:
        if on_served is None:
            return
        try:
            on_served(served)
        except Exception:
            logger.exception("on_served failed")

    return report
