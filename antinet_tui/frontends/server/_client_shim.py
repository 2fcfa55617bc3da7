"""TEMPORARY: the EngineClient/RequestHandle contract (TEAM.md) over today's EngineService,
so the server can be built and tested before the runtime's own handles land. Removed
once `antinet_tui.runtime.client` exists."""

from __future__ import annotations

import asyncio
import threading
from enum import Enum
from typing import Any

from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.runtime.events import TERMINAL_EVENTS, Event, Rejected


class ServiceState(str, Enum):
    NOT_STARTED = "not_started"
    LOADING = "loading"
    READY = "ready"
    LOAD_FAILED = "failed"
    STOPPED = "stopped"


class ShimHandle:
    def __init__(self, client: ShimClient, request_id: int):
        self._client = client
        self.request_id = request_id
        self.accepted = True
        self.rejection: Any = None
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._done = False

    def _push(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            if isinstance(event, TERMINAL_EVENTS):
                self._done = True
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, flag in waiters:
            loop.call_soon_threadsafe(flag.set)

    @property
    def done(self) -> bool:
        return self._done

    def __aiter__(self):
        return self._aiter()

    async def _aiter(self):
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        with self._cond:
            self._waiters.append((loop, flag))
        index = 0
        try:
            while True:
                with self._cond:
                    batch = self._events[index:]
                    index += len(batch)
                    done = self._done and not batch
                    flag.clear()
                for event in batch:
                    yield event
                    if isinstance(event, TERMINAL_EVENTS):
                        return
                if done:
                    return
                if not batch:
                    await flag.wait()
        finally:
            with self._cond:
                self._waiters = [w for w in self._waiters if w[1] is not flag]

    def cancel(self) -> None:
        self._client.service.cancel(self.request_id)

    def close(self) -> None:
        if not self._done:
            self.cancel()
        self._client._handles.pop(self.request_id, None)


class ShimClient:
    def __init__(self, service):
        self.service = service
        self._handles: dict[int, ShimHandle] = {}
        self._origins: dict[int, str] = {}
        service.subscribe(self._route)

    def _route(self, event: Event) -> None:
        handle = self._handles.get(event.request_id) if event.request_id is not None else None
        if handle is not None:
            handle._push(event)

    @property
    def state(self) -> ServiceState:
        return ServiceState(self.service.state)

    def submit(self, request: GenerationRequest, *, origin: str = "operator", measurement: bool = False):
        from antinet_tui.runtime import service as service_module

        request_id = next(self.service._ids)
        handle = ShimHandle(self, request_id)
        self._handles[request_id] = handle
        self._origins[request_id] = origin
        _, rejected = self.service._submit(request, request_id, measurement)
        if rejected is not None:
            handle.accepted = False
            retry = None
            if rejected.cause == "breaker_open":
                retry = self.breaker_view().seconds_until_probe
            elif rejected.cause == "queue_full":
                retry = 1.0
            handle.rejection = _Rejection(rejected.reason, rejected.cause, retry)
            handle._done = True
            self._handles.pop(request_id, None)
        del service_module
        return handle

    def subscribe(self, callback):
        return self.service.subscribe(callback)

    def origin_of(self, request_id: int) -> str:
        return self._origins.get(request_id, "operator")

    def breaker_view(self):
        return self.service.breaker.snapshot()

    def model_info(self):
        return self.service.model_info

    def mode(self):
        return self.service.current_mode

    def queue_length(self) -> int:
        return self.service.queue_length

    def running_count(self) -> int:
        return 1 if self.service.is_busy else 0

    def metrics_summary(self):
        return self.service.metrics


class _Rejection:
    def __init__(self, reason: str, cause: str, retry_after_s: float | None):
        self.reason, self.cause, self.retry_after_s = reason, cause, retry_after_s


__all__ = ["ShimClient", "ServiceState", "Rejected"]
