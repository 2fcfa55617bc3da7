"""Everything the runtime tells its frontends, as immutable values.

Every event carries `request_id` (None for events about the service as a whole),
`t_ns` (perf_counter_ns at creation, for ordering and intervals) and `wall` (time.time(),
for humans and logs). `to_record()` is the JSON-safe form written to the session log:
enums become their values, dataclasses dicts, and a non-finite float becomes None.

An accepted request ends with exactly one of Finished, Cancelled or Failed; a refused
one with Rejected. No Token event of a request follows its terminal event.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

from antinet_tui.engine.protocol import Capabilities, ModelInfo, ModeReadback
from antinet_tui.runtime.breaker import BreakerSnapshot, BreakerState
from antinet_tui.runtime.metrics import RequestMetrics

RejectCause = Literal["queue_full", "breaker_open", "bad_input", "not_ready"]


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    t_ns: int = field(default_factory=time.perf_counter_ns)
    wall: float = field(default_factory=time.time)

    def to_record(self) -> dict[str, Any]:
        fields = jsonable(self)
        return {"kind": self.kind, "request_id": fields.pop("request_id"), **fields}


@dataclass(frozen=True)
class LoadProgress(Event):
    kind: ClassVar[str] = "load_progress"
    fraction: float
    message: str
    request_id: None = None


@dataclass(frozen=True)
class Loaded(Event):
    kind: ClassVar[str] = "loaded"
    model_info: ModelInfo
    capabilities: Capabilities
    mode: ModeReadback | None
    request_id: None = None


@dataclass(frozen=True)
class LoadFailed(Event):
    kind: ClassVar[str] = "load_failed"
    error: str
    request_id: None = None


@dataclass(frozen=True)
class Accepted(Event):
    kind: ClassVar[str] = "accepted"
    request_id: int
    prompt: str
    max_new_tokens: int
    queue_length: int  # requests waiting, this one included


@dataclass(frozen=True)
class Started(Event):
    kind: ClassVar[str] = "started"
    request_id: int
    queue_wait_ms: float


@dataclass(frozen=True)
class Token(Event):
    kind: ClassVar[str] = "token"
    request_id: int
    token_id: int
    text: str  # newly decodable text; may be ""
    index: int  # 0 for the first generated token


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    request_id: int
    text: str
    token_ids: tuple[int, ...]
    metrics: RequestMetrics


@dataclass(frozen=True)
class Cancelled(Event):
    kind: ClassVar[str] = "cancelled"
    request_id: int
    text: str  # what was generated before the cancel took effect
    token_ids: tuple[int, ...]
    metrics: RequestMetrics


@dataclass(frozen=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    request_id: int
    error: str
    metrics: RequestMetrics


@dataclass(frozen=True)
class Rejected(Event):
    kind: ClassVar[str] = "rejected"
    request_id: int | None
    reason: str
    cause: RejectCause


@dataclass(frozen=True)
class BreakerTransition(Event):
    kind: ClassVar[str] = "breaker_transition"
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    snapshot: BreakerSnapshot
    request_id: None = None


@dataclass(frozen=True)
class ModeChanged(Event):
    """A mode change: deferred (a request is running; it applies before the next one),
    applied (`readback` says what is in force) or failed (`error`). `requested_by` names
    who asked: "operator", "settings" (the configured start-up mode) or "experiment"."""

    kind: ClassVar[str] = "mode_changed"
    requested: str
    readback: ModeReadback | None
    deferred: bool = False
    error: str | None = None
    requested_by: str = "operator"
    request_id: None = None


@dataclass(frozen=True)
class SessionLogFailed(Event):
    """A record could not be written to the session log (disk full, I/O error): the
    operator must know at once that the record they trust is incomplete. Not logged."""

    kind: ClassVar[str] = "session_log_failed"
    path: str
    reason: str
    lost: int  # records lost so far in this session
    request_id: None = None


TERMINAL_EVENTS = (Finished, Cancelled, Failed, Rejected)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of value: what json.dumps(allow_nan=False) accepts."""
    if isinstance(value, Enum):
        return jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)
