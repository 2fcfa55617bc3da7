"""The circuit breaker: its state in words and colour, why, when it probes, and its window.

The state is always written out (CLOSED / OPEN / HALF-OPEN / ISOLATED) with a symbol, so
it reads the same under NO_COLOR. The pane is redrawn from a BreakerSnapshot; the app
polls one every half second so the countdown moves and OPEN turns HALF-OPEN on time.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from antinet_tui.frontends.app.widgets.pane import Pane
from antinet_tui.runtime.breaker import BreakerSnapshot, BreakerState

LABELS = {
    BreakerState.CLOSED: ("●", "CLOSED"),
    BreakerState.OPEN: ("✖", "OPEN"),
    BreakerState.HALF_OPEN: ("◐", "HALF-OPEN"),
    BreakerState.ISOLATED: ("⊘", "ISOLATED"),
}


class BreakerPane(Pane):
    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = "Breaker"
        self.snapshot: BreakerSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="breaker-state")
        yield Static(id="breaker-reason")
        yield Static(id="breaker-next")
        yield Static(id="breaker-window")
        yield Static(id="breaker-keys", classes="keys")

    def show(self, snapshot: BreakerSnapshot, isolate_key: str, reset_key: str) -> None:
        self.snapshot = snapshot
        symbol, word = LABELS[snapshot.state]
        state_class = f"-{snapshot.state.value.replace('_', '-')}"
        state = self.query_one("#breaker-state", Static)
        if not state.has_class(state_class):
            state.set_classes(state_class)
        self.set_line("#breaker-state", Text(f"{symbol} {word}", style="bold"))
        self.set_line("#breaker-reason", f"why: {snapshot.reason or 'no transition yet'}")
        self.set_line("#breaker-next", _next_step(snapshot))
        self.set_line(
            "#breaker-window",
            f"window: {snapshot.slow_calls} slow · {snapshot.failed_calls} failed"
            f" of {snapshot.calls_in_window} (min {snapshot.config.minimum_calls})",
        )
        self.set_line("#breaker-keys", f"{isolate_key} isolate · {reset_key} reset")


def _next_step(snapshot: BreakerSnapshot) -> str:
    config = snapshot.config
    if snapshot.state is BreakerState.OPEN:
        wait = math.ceil(snapshot.seconds_until_probe or 0)
        return f"next probe in {wait} s (refusing requests)"
    if snapshot.state is BreakerState.HALF_OPEN:
        probes = config.half_open_probes
        return f"probing: {probes} call{'s' if probes != 1 else ''} let through decide"
    if snapshot.state is BreakerState.ISOLATED:
        return "refusing requests until reset"
    if config.slow_rate_threshold == config.failure_rate_threshold:
        return f"opens at ≥{config.slow_rate_threshold:.0%} slow or failed"
    return f"opens at ≥{config.slow_rate_threshold:.0%} slow or ≥{config.failure_rate_threshold:.0%} failed"
