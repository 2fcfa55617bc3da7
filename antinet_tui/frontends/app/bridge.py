"""From the runtime's dispatcher thread to the UI, without the engine ever waiting on the UI.

Every event goes into one ordered buffer (so a request's tokens are always handled before
its terminal event). Tokens reach the UI through its drain timer: at 30+ tokens/s a
message or `call_from_thread` per token would make the UI repaint per token and, on a
small machine, take the engine's CPU and GIL. Any other event, and a request's first
token (its TTFT is what the operator watches for), posts one `EventsReady` message (at
most one is pending at a time), so it shows at once rather than at the next tick.
"""

from __future__ import annotations

import threading
from collections import deque

from textual.message import Message
from textual.message_pump import MessagePump

from antinet_tui.runtime.events import Event, Token


class EventsReady(Message):
    """Non-token events are waiting in the bridge: drain it."""


class EngineBridge:
    def __init__(self, target: MessagePump) -> None:
        self._target = target
        self._pending: deque[Event] = deque()
        self._wake_lock = threading.Lock()
        self._wake_posted = False

    def __call__(self, event: Event) -> None:
        """The runtime subscriber: runs on the dispatcher thread and never blocks."""
        self._pending.append(event)
        if isinstance(event, Token) and event.index > 0:
            return
        with self._wake_lock:
            if self._wake_posted:
                return
            self._wake_posted = True
        self._target.post_message(EventsReady())

    def drain(self) -> list[Event]:
        """Everything buffered, oldest first. Called on the UI thread only."""
        with self._wake_lock:
            self._wake_posted = False  # before popping: an event appended after this wakes us again
        events = []
        while self._pending:
            events.append(self._pending.popleft())
        return events
