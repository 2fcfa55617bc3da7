"""Snapshots of the main screen in its key states (pytest-textual-snapshot; refresh with
`pytest tests/app/test_snapshots.py --snapshot-update` and look at the SVGs before
committing). Everything that varies is pinned: the fake backend, a frozen breaker
clock, a fixed psutil sample taken once, seeded latency figures, no cursor blink."""

from __future__ import annotations

import pytest
from app_helpers import notifications, send, wait_until
from fake_backend import PausingBackend, seeded_metrics
from fakes import FakeBackend

from antinet_tui.config import Settings
from antinet_tui.frontends.app.screens.help import HelpScreen
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.frontends.app.widgets.status_line import StatusLine
from antinet_tui.runtime.breaker import BreakerState

SETTINGS = Settings(no_log=True, refresh_s=3600)  # one psutil sample, at start


async def settle(pilot) -> None:
    app = pilot.app
    status = app.dashboard.query_one(StatusLine)
    await wait_until(pilot, lambda: app.service.state == "ready" and "ready" in str(status.content), "ready")
    # the pane starts as "CPU n/a": wait for the sampler thread's first sample to be drawn
    await wait_until(pilot, lambda: "%" in str(app.dashboard.query_one("#system-cpu").content), "the system sample")
    app.dashboard.query_one(PromptInput).cursor_blink = False


async def finish(pilot) -> None:
    app = pilot.app
    app.clear_notifications()
    await wait_until(pilot, lambda: not app.screen.query("Toast"), "the toasts to go")  # Textual's Toast widgets


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_idle(snap_compare, make_app, size):
    app = make_app(settings=SETTINGS, metrics=seeded_metrics())

    async def run_before(pilot) -> None:
        await settle(pilot)
        await finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_streaming(snap_compare, make_app):
    backend = PausingBackend(pause_after=9)
    app = make_app(backend, settings=SETTINGS, metrics=seeded_metrics())

    async def run_before(pilot) -> None:
        await settle(pilot)
        await send(pilot, "Tell me about foxes")
        await wait_until(pilot, lambda: 1 in app.exchanges and app.records[1].tokens == 9, "nine tokens on screen")
        await finish(pilot)

    try:
        assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
    finally:
        backend.resume.set()


def test_breaker_open(snap_compare, make_app):
    app = make_app(FakeBackend(fail_on_token=1), settings=SETTINGS, metrics=seeded_metrics())

    async def run_before(pilot) -> None:
        await settle(pilot)
        for n in range(1, 5):
            await send(pilot, f"call {n}")
            await wait_until(pilot, lambda n=n: app.exchanges[n].has_class("-failed"), f"call {n} to fail")
        await wait_until(pilot, lambda: app.service.breaker_view().state is BreakerState.OPEN, "the breaker to open")
        await wait_until(pilot, lambda: "OPEN" in str(app.dashboard.query_one("#breaker-state").content), "OPEN")
        # the pane reads the breaker itself; its transition's toast arrives as an event, maybe later
        await wait_until(pilot, lambda: any(n.startswith("Breaker") for n in notifications(app)), "the toast")
        await finish(pilot)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_help(snap_compare, make_app):
    app = make_app(settings=SETTINGS, metrics=seeded_metrics())

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await finish(pilot)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
