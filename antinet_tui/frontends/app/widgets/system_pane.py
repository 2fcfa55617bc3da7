"""The machine and this process from psutil samples: CPU over time and per core, frequency,
memory, the engine process's RSS and threads, load, temperatures and battery ("n/a" where
the OS has none)."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from antinet_tui.frontends.app.formatting import NOT_AVAILABLE, size
from antinet_tui.frontends.app.widgets.pane import Pane
from antinet_tui.frontends.app.widgets.series_chart import SeriesChart
from antinet_tui.platform.system_stats import SystemSample

CORE_BAR_WIDTH = 8
HISTORY = 120


class SystemPane(Pane):
    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = "System"
        self.cpu_history: deque[float] = deque(maxlen=HISTORY)
        self.latest: SystemSample | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"CPU {NOT_AVAILABLE}"), id="system-cpu")
        yield SeriesChart(ceiling=100, id="system-cpu-chart")
        yield Static(id="system-cores")
        yield Static(id="system-memory")
        yield Static(id="system-process")
        yield Static(id="system-load")
        yield Static(id="system-sensors")

    def record(self, sample: SystemSample) -> None:
        """Keep the sample; drawing is separate so a frozen pane still collects history."""
        self.latest = sample
        self.cpu_history.append(sample.cpu_percent)

    def show(self) -> None:
        sample = self.latest
        if sample is None:
            return
        freq = NOT_AVAILABLE
        if sample.freq_mhz is not None:
            freq = f"{sample.freq_mhz / 1000:.2f} GHz"
            if sample.freq_max_mhz:
                freq += f" of {sample.freq_max_mhz / 1000:.2f}"
        self.set_line("#system-cpu", f"CPU {sample.cpu_percent:3.0f}% · {freq}")
        self.query_one("#system-cpu-chart", SeriesChart).set_values(self.cpu_history)
        self.set_line("#system-cores", self._cores(sample.per_core_percent))
        memory = f"mem {size(sample.memory_used)} of {size(sample.memory_total)}"
        self.set_line("#system-memory", f"{memory} ({sample.memory_used / sample.memory_total:.0%})")
        self.set_line("#system-process", f"proc RSS {size(sample.process_rss)} · {sample.process_threads} threads")
        load = " ".join(f"{x:.2f}" for x in sample.load_average) if sample.load_average else NOT_AVAILABLE
        self.set_line("#system-load", f"load {load} (1/5/15 min)")
        self.set_line("#system-sensors", f"temp {_temperatures(sample)} · battery {_battery(sample)}")

    def _cores(self, percents: tuple[float, ...]) -> Text:
        cell_width = len("00 ") + CORE_BAR_WIDTH + len(" 100%  ")
        per_line = max(1, (self.content_size.width + 2) // cell_width)
        text = Text()
        for index, percent in enumerate(percents):
            filled = round(percent / 100 * CORE_BAR_WIDTH)
            if index and index % per_line == 0:
                text.append("\n")
            elif index:
                text.append("  ")
            text.append(f"{index:>2} ")
            text.append("█" * filled, "bold")
            text.append("░" * (CORE_BAR_WIDTH - filled), "dim")
            text.append(f" {percent:3.0f}%")
        return text


def _temperatures(sample: SystemSample) -> str:
    if not sample.temperatures_c:
        return NOT_AVAILABLE
    hottest = sorted(sample.temperatures_c, key=lambda pair: pair[1], reverse=True)[:2]
    return " ".join(f"{name} {celsius:.0f}°C" for name, celsius in hottest)


def _battery(sample: SystemSample) -> str:
    if sample.battery is None:
        return NOT_AVAILABLE
    plugged = {True: ", plugged in", False: ", on battery", None: ""}[sample.battery.plugged_in]
    return f"{sample.battery.percent:.0f}%{plugged}"
