"""The Latency pane counts slow calls as the breaker does: on service time, not queue wait."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Static

from antinet_tui.frontends.app.widgets.latency_pane import LatencyPane
from antinet_tui.runtime.metrics import SERIES_NAMES, MetricsSummary


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LatencyPane(1000, id="latency")


def summary(e2e: tuple[float, ...], service: tuple[float, ...]) -> MetricsSummary:
    series = {name: () for name in SERIES_NAMES} | {"e2e_ms": e2e, "service_ms": service}
    return MetricsSummary(100, series, {"finished": len(e2e)}, {}, {})


async def test_slow_calls_are_counted_on_service_time_not_end_to_end() -> None:
    async with PaneApp().run_test() as pilot:
        pane = pilot.app.query_one(LatencyPane)
        # Three requests waited long in the queue (end-to-end over the threshold), one of
        # them was also slow to serve.
        pane.show(summary(e2e=(2500.0, 3000.0, 4000.0), service=(300.0, 400.0, 1800.0)))
        await pilot.pause()
        line = str(pilot.app.query_one("#slow-calls", Static).render())
        assert line == "slow service > 1000 ms: 1 of 3"
        assert pane.border_title == "Latency · 3 finished"
