"""Everything the runtime tells its frontends, as immutable values.

Every event carries `request_id` (None for events about the service as a whole),
`t_ns` (perf_counter_ns at creation, for ordering and intervals; meaningful only within
the process that made it) and `wall` (time.time(), for humans and logs). `to_record()`
is the JSON-safe form written to the session log and sent over the wire: enums become
their values, dataclasses dicts, tuples lists, and a non-finite float becomes None.
`Event.from_record(record)` rebuilds the event (keys it does not know, such as the
session log's "request", are ignored).

An accepted request ends with exactly one of Finished, Cancelled, Failed, or Rejected
with cause "queue_timeout" (it waited in the queue longer than the service allows); a
refused one with Rejected. No Token event of a request follows its terminal event.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal, TypeVar

from antinet_tui.engine.protocol import Capabilities, ModelInfo, ModeReadback
from antinet_tui.runtime.breaker import BreakerSnapshot, BreakerState
from antinet_tui.runtime.metrics import RequestMetrics

# queue_full: no room in the queue; queue_timeout: waited longer than the queue allows;
# breaker_open: the breaker refuses (open, half-open with its probes taken, isolated);
# bad_input: the request itself is wrong; not_ready: loading, failed to load or stopped;
# reserved: an experiment holds the engine (exclusive use).
RejectCause = Literal["queue_full", "queue_timeout", "breaker_open", "bad_input", "not_ready", "reserved"]
OPERATOR = "operator"  # the origin of requests typed at this machine (dashboard, CLI)


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    t_ns: int = field(default_factory=time.perf_counter_ns)
    wall: float = field(default_factory=time.time)

    @property
    def about_request(self) -> int | None:
        """The request this event is about (every subclass has a `request_id` field, at
        its own position); None for events about the service as a whole."""
        return getattr(self, "request_id", None)

    def to_record(self) -> dict[str, Any]:
        fields = jsonable(self)
        return {"kind": self.kind, "request_id": fields.pop("request_id"), **fields}

    @staticmethod
    def from_record(record: dict[str, Any]) -> Event:
        """The event a `to_record()` dict describes. Raises ValueError for an unknown kind
        or a record that lacks a field."""
        kind = record.get("kind")
        cls = event_types().get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ValueError(f"not an event record: kind {kind!r}")
        return from_jsonable(cls, record)


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
    prompt: str  # the prompt, or a conversation's last user turn (a preview)
    max_new_tokens: int
    queue_length: int  # requests waiting, this one included
    origin: str = OPERATOR  # who sent it: a client's address ("127.0.0.1:53122") or "operator"
    measurement: bool = False  # an experiment's run: outside the breaker and the metrics history


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
    retry_after_s: float | None = None  # when trying again may succeed; None: no estimate


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
    change_id: int = 0  # the ModeChange this ends (a later change supersedes a pending one)
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
TerminalEvent = Finished | Cancelled | Failed | Rejected


def event_types() -> dict[str, type[Event]]:
    """The runtime's event classes by kind (what a record or the wire may carry);
    a frontend's own subclasses of Event stay its own."""
    return {cls.kind: cls for cls in Event.__subclasses__() if cls.__module__ == __name__}


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


T = TypeVar("T")


def from_jsonable(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a dataclass from its `jsonable()` form, guided by its type hints: nested
    dataclasses, enums, tuples and optional fields come back as they were. Keys that are
    not fields are ignored."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        if f.name in data:
            values[f.name] = _rebuild(hints[f.name], data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__} record lacks {f.name!r}")
    return cls(**values)


def _rebuild(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:  # the first that fits (float before int: JSON may write 3.0 as 3)
            try:
                return _rebuild(option, value)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{value!r} fits none of {hint}")
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_rebuild(item, v) for v in value)
    if origin is dict:
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: _rebuild(item, v) for k, v in value.items()}
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{value!r} is not one of {typing.get_args(hint)}")
        return value
    if hint is Any or origin is not None:
        return value
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TypeError(f"expected a {hint.__name__} object, got {value!r}")
        return from_jsonable(hint, value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise TypeError(f"expected {hint.__name__}, got {value!r}")
    return value
