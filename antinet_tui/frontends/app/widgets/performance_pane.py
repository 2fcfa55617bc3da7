"""The performance mode: what was asked for, and what the backend read back as in force.

The two can differ (a priority the OS refused, a change waiting for the running request
to end); the pane shows both, and each knob that was not applied, so a mode is never
silently a no-op.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from antinet_tui.engine.protocol import ModeReadback
from antinet_tui.frontends.app.formatting import NOT_AVAILABLE, cores
from antinet_tui.frontends.app.widgets.pane import Pane


class PerformancePane(Pane):
    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = "Performance"

    def compose(self) -> ComposeResult:
        yield Static(Text("requested  loading…"), id="mode-requested")
        yield Static(Text(f"effective  {NOT_AVAILABLE}"), id="mode-effective")
        yield Static(id="mode-settings")
        yield Static(id="mode-problems")
        yield Static(id="mode-keys", classes="keys")

    def show(self, requested: str | None, readback: ModeReadback | None, note: str | None, toggle_key: str) -> None:
        """`note` says what is in flight: "applying…", "after this answer", an error."""
        line = f"requested  {requested or NOT_AVAILABLE}" + (f"  ({note})" if note else "")
        self.set_line("#mode-requested", line)
        effective = NOT_AVAILABLE
        settings = ""
        problems = ""
        if readback is not None:
            effective = readback.effective
            if readback.switch_seconds:
                effective += f" · switched in {readback.switch_seconds * 1000:.0f} ms"
            settings = _settings_line(readback.settings)
            problems = "\n".join(f"not applied: {reason}" for reason in readback.not_applied)
        self.set_line("#mode-effective", f"effective  {effective}")
        self.set_line("#mode-settings", settings)
        self.set_line("#mode-problems", problems)
        self.query_one("#mode-problems").display = bool(problems)
        self.set_line("#mode-keys", f"{toggle_key} burst/default · ctrl+p every mode")


def _settings_line(settings: dict) -> str:
    known = []
    if "threads" in settings:
        known.append(f"threads {settings['threads']}")
    if "nice" in settings:
        known.append(f"nice {settings['nice']}")
    if "cores" in settings:
        usable = settings.get("usable_cores")
        known.append(f"cores {cores(settings['cores'])}" + (f" of {usable}" if usable else ""))
    others = [
        f"{key} {value}" for key, value in settings.items() if key not in ("threads", "nice", "cores", "usable_cores")
    ]
    return " · ".join(known + others)
