"""The attached dashboard on an in-process server with a fake engine: a snapshot, and Esc
mid-answer (the fake pauses, so the cancel cannot lose a race with the answer's end).

The snapshot (pytest-textual-snapshot; refresh with
`pytest tests/attach/test_snapshot.py --snapshot-update` and look at the SVG). The server
runs in this process on a fake backend with seeded figures, a frozen breaker clock and
a fixed system sample, on a fixed port (the status line shows it), so nothing varies."""

from __future__ import annotations

import pytest
from app_helpers import wait_until
from fake_backend import FixedSampler, seeded_metrics
from fakes import FakeBackend, FakeClock

from antinet_tui.config import Settings
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.frontends.attach_cli import attached_app
from antinet_tui.frontends.server import attach as attach_api
from antinet_tui.frontends.server.runner import ServerThread, bind, build_server
from antinet_tui.runtime.breaker import BreakerConfig, CircuitBreaker
from antinet_tui.runtime.service import EngineService

PORT = 47613  # fixed: the status line shows where the watcher is attached


@pytest.fixture
def fake_server(monkeypatch):
    monkeypatch.setattr(attach_api, "SystemSampler", FixedSampler)  # the serving machine's sample, pinned
    service = EngineService(FakeBackend(), breaker=CircuitBreaker(BreakerConfig(), clock=FakeClock()),
                            metrics=seeded_metrics())
    try:
        sock = bind("127.0.0.1", PORT)
    except OSError as exc:
        raise AssertionError(f"the snapshot test needs port {PORT} free: {exc}") from None
    thread = ServerThread(build_server(service, Settings(no_log=True, refresh_s=3600)), sock)
    service.start()
    assert service.wait_ready(10)
    thread.start()
    yield f"http://127.0.0.1:{PORT}"
    thread.drain_and_stop(10)
    service.shutdown()
    sock.close()


def test_attached_idle(snap_compare, fake_server, tmp_path):
    app = attached_app(fake_server, Settings(no_log=True, refresh_s=3600), export_dir=tmp_path)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: app._status.status.link == "live", "live")
        await wait_until(pilot, lambda: "%" in str(app.dashboard.query_one("#system-cpu").content),
                         "the server's system sample")
        await wait_until(pilot, lambda: "12 finished" in str(app.dashboard.query_one("#latency").border_title or ""),
                         "the server's figures")
        app.dashboard.query_one(PromptInput).cursor_blink = False
        app.clear_notifications()
        await pilot.pause(0.1)

    try:
        assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
    finally:
        app.service.shutdown()


@pytest.fixture
def pausing_server(monkeypatch):
    """An in-process server whose engine stops after two tokens until told (or cancelled)."""
    from fake_backend import PausingBackend

    backend = PausingBackend(pause_after=2)
    service = EngineService(backend)
    sock = bind("127.0.0.1", 0)
    thread = ServerThread(build_server(service, Settings(no_log=True)), sock)
    service.start()
    assert service.wait_ready(10)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", backend, service
    backend.resume.set()
    thread.drain_and_stop(10)
    service.shutdown()


async def test_esc_in_the_watcher_cancels_its_own_request_there(pausing_server, tmp_path):
    from app_helpers import send

    url, backend, service = pausing_server
    app = attached_app(url, Settings(no_log=True, max_new_tokens=50), export_dir=tmp_path)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app._status.status.link == "live", "live")
            await send(pilot, "Tell me about foxes")
            await wait_until(pilot, backend.paused.is_set, "the answer under way there")
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.records and next(iter(app.records.values())).outcome == "cancelled",
                             "the watcher's request cancelled")
            assert service.running_count() == 0 and service.metrics_summary().outcomes["cancelled"] == 1
    finally:
        app.service.shutdown()
