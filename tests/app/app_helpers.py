"""Polling waits and screen reading for Pilot tests (oterm-style: wait on conditions,
never on fixed sleeps, so the tests hold on a noisy 2-core machine)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from pathlib import Path

from rich.cells import cell_len
from textual.app import App
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot

from antinet_tui.frontends.app import app as app_module
from antinet_tui.frontends.app.app import DashboardApp
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


_SVG_TEXT = re.compile(
    r'<text [^>]*?x="([\d.]+)"[^>]*?textLength="([\d.]+)"[^>]*?clip-path="url\(#[^)]*?-line-(\d+)\)">([^<]*)</text>')


def screen_text(app: App) -> str:
    """The screen as plain text, as a terminal would show it (what the operator reads),
    from the app's own SVG screenshot (`export_screenshot`: every layer, toasts included)."""
    width, height = app.size
    segments: dict[int, list[tuple[int, str]]] = {}
    cell = None
    for x, length, line, escaped in _SVG_TEXT.findall(app.export_screenshot()):
        text = html.unescape(escaped).replace("\xa0", " ")
        cell = cell or float(length) / max(1, cell_len(text))  # the width of one cell
        segments.setdefault(int(line), []).append((round(float(x) / cell), text))
    rows = []
    for y in range(height):
        row = ""
        for column, text in sorted(segments.get(y, [])):
            row += " " * max(0, column - cell_len(row)) + text
        rows.append(row.rstrip())
    return "\n".join(rows) + "\n"


async def wait_for_text(pilot: Pilot, text: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    await wait_until(pilot, lambda: text in screen_text(pilot.app), f"{text!r} on screen", timeout)


async def send(pilot: Pilot, prompt: str) -> None:
    """Put the prompt in the input (typing is tested on its own) and press Enter."""
    prompt_input = pilot.app.dashboard.query_one(PromptInput)
    prompt_input.focus()
    prompt_input.value = prompt
    await pilot.press("enter")


class NotifiedDashboard(DashboardApp):
    """The dashboard, keeping what it told the operator (Textual's Notify messages, seen
    through run_test's message hook) as "title: message" lines in `told`."""

    CSS_PATH = str(Path(app_module.__file__).with_name("dashboard.tcss"))  # relative paths follow the subclass

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.told: list[str] = []

    def run_test(self, *args, message_hook: Callable[[Message], None] | None = None, **options):
        def hook(message: Message) -> None:
            if isinstance(message, Notify):
                self.told.append(f"{message.notification.title}: {message.notification.message}")
            if message_hook is not None:
                message_hook(message)

        return super().run_test(*args, message_hook=hook, **options)


def notifications(app: App) -> list[str]:
    """What the app told the operator in toasts: recorded by NotifiedDashboard under
    run_test; under App.run (snapshots) the toasts on screen (Textual's Toast widgets,
    by their CSS type selector)."""
    if isinstance(app, NotifiedDashboard) and app.told:
        return list(app.told)
    return [str(toast.render()).replace("\n", " ") for toast in app.screen.query("Toast")]
