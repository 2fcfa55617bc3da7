"""Polling waits and screen reading for Pilot tests (oterm-style: wait on conditions,
never on fixed sleeps, so the tests hold on a noisy 2-core machine)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from antinet_tui.frontends.app.widgets.prompt_input import PromptInput

DEFAULT_TIMEOUT_S = 10.0


async def wait_until(pilot: Pilot, condition: Callable[[], object], what: str, timeout: float = DEFAULT_TIMEOUT_S):
    """Let the app run until condition() is true; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}\n--- screen ---\n{screen_text(pilot.app)}"
            )
        await pilot.pause(0.01)


def screen_text(app: App) -> str:
    """The screen as plain text, as a terminal would show it (what the operator reads)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        record=True,
        legacy_windows=False,
        force_terminal=True,
        color_system=None,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for_text(pilot: Pilot, text: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    await wait_until(pilot, lambda: text in screen_text(pilot.app), f"{text!r} on screen", timeout)


async def send(pilot: Pilot, prompt: str) -> None:
    """Put the prompt in the input (typing is tested on its own) and press Enter."""
    prompt_input = pilot.app.dashboard.query_one(PromptInput)
    prompt_input.focus()
    prompt_input.value = prompt
    await pilot.press("enter")


def notifications(app: App) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]
