"""TTFT, decode tok/s and end-to-end over the session: a chart each, with latest/p50/p95.

The charts auto-scale, so the numbers beside them carry the scale. End-to-end is drawn
against the breaker's slow-call threshold, and the count of slow calls is written out as
the breaker counts them: on service time (start -> last token), since queue wait is load,
not slowness.
Figures are the runtime's metrics summary (finished requests only), never recomputed here.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from antinet_tui.frontends.app.formatting import ms, rate
from antinet_tui.frontends.app.widgets.pane import Pane
from antinet_tui.frontends.app.widgets.series_chart import SeriesChart
from antinet_tui.runtime.metrics import MetricsSummary

# (series name, row label, formatter)
ROWS = (
    ("ttft_ms", "TTFT ms", ms),
    ("decode_tok_s", "decode tok/s", rate),
    ("e2e_ms", "e2e ms", ms),
)


def _row(label: str, *cells: str) -> str:
    return f"{label:<12}" + "".join(f"{cell:>7}" for cell in cells)


class LatencyPane(Pane):
    def __init__(self, slow_call_ms: float, *, id: str | None = None):
        super().__init__(id=id)
        self.slow_call_ms = slow_call_ms
        self.border_title = "Latency"

    def compose(self) -> ComposeResult:
        yield Static(_row("", "latest", "p50", "p95"), classes="table-heading")
        for name, _, _ in ROWS:
            yield Static(id=f"{name}-figures", classes="figures")
            yield SeriesChart(threshold=self.slow_call_ms if name == "e2e_ms" else None, id=f"{name}-chart")
        yield Static(id="slow-calls")

    def set_threshold(self, slow_call_ms: float) -> None:
        """The breaker's slow-call threshold changed (a remote engine's became known)."""
        self.slow_call_ms = slow_call_ms
        self.query_one("#e2e_ms-chart", SeriesChart).threshold = slow_call_ms

    def show(self, metrics: MetricsSummary) -> None:
        for name, label, fmt in ROWS:
            quantiles = metrics.percentiles(name)
            cells = (fmt(metrics.latest(name)), fmt(quantiles["p50"]), fmt(quantiles["p95"]))
            self.set_line(f"#{name}-figures", _row(label, *cells))
            self.query_one(f"#{name}-chart", SeriesChart).set_values(metrics.series(name))
        service = metrics.series("service_ms")
        slow = sum(value > self.slow_call_ms for value in service)
        self.set_line(
            "#slow-calls",
            Text(f"slow service > {self.slow_call_ms:g} ms: {slow} of {len(service)}", style="bold" if slow else ""),
        )
        finished = len(metrics.series("e2e_ms"))
        self.border_title = f"Latency · {finished} finished" if finished else "Latency"
