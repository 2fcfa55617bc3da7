"""The link between a frontend and a remote engine, as an event (RemoteClient sends it;
the in-process service never does). Kept apart from runtime/remote.py so the dashboard
can handle it without importing an HTTP client."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from antinet_tui.runtime.events import Event


class ConnectionState(str, Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    REFUSED = "refused"  # the server refused the key: not retried
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionChanged(Event):
    """The link to a remote engine changed. After a LIVE one, every snapshot (breaker,
    metrics, mode, model) may have changed at once: redraw them all. Never on the wire."""

    kind: ClassVar[str] = "connection_changed"
    state: ConnectionState
    url: str
    detail: str = ""  # why it was refused, or the error that broke the stream
    retry_in_s: float | None = None  # RECONNECTING: seconds until the next try
    server_restarted: bool = False  # LIVE: a new server instance (its request ids start over)
    request_id: None = None

    def describe(self) -> str:
        """In words, as the status line shows it."""
        if self.state is ConnectionState.RECONNECTING and self.retry_in_s is not None:
            return f"reconnecting in {math.ceil(self.retry_in_s)} s"
        if self.state is ConnectionState.REFUSED:
            return f"refused: {self.detail}"
        return self.state.value
