"""The bridge from the dispatcher thread: tokens never post a message; other events post
at most one pending wake-up; draining returns everything in order."""

from __future__ import annotations

import threading

from antinet_tui.frontends.app.bridge import EngineBridge, EventsReady
from antinet_tui.runtime.events import Accepted, Started, Token


class RecordingTarget:
    def __init__(self) -> None:
        self.posted: list = []

    def post_message(self, message) -> bool:
        self.posted.append(message)
        return True


def test_tokens_after_the_first_are_buffered_without_waking_the_ui():
    target = RecordingTarget()
    bridge = EngineBridge(target)
    worker = threading.Thread(target=lambda: [bridge(Token(1, 5, "x", i)) for i in range(1, 101)])
    worker.start()
    worker.join()
    assert target.posted == []
    assert [e.index for e in bridge.drain()] == list(range(1, 101))


def test_the_first_token_wakes_the_ui_at_once():
    target = RecordingTarget()
    bridge = EngineBridge(target)
    bridge(Token(1, 5, "x", 0))
    assert len(target.posted) == 1


def test_other_events_wake_the_ui_once_until_drained():
    target = RecordingTarget()
    bridge = EngineBridge(target)
    bridge(Accepted(1, "p", 8, 1))
    bridge(Started(1, 0.1))
    bridge(Token(1, 5, "x", 0))
    bridge(Token(1, 5, "y", 1))
    assert len(target.posted) == 1 and isinstance(target.posted[0], EventsReady)
    assert [e.kind for e in bridge.drain()] == ["accepted", "started", "token", "token"]
    bridge(Started(2, 0.1))
    assert len(target.posted) == 2
