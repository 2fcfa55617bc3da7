"""A one-line bar chart of a series, newest value at the right; up to three columns a
value while the series is short, one a value once it fills the width.

Unlike Textual's Sparkline (which stretches min..max over the height and buckets the data)
bars start at zero, so a 5 % wobble looks like a 5 % wobble. With a threshold the chart's
top is at least the threshold, so a series well under it stays visibly low; values above
it are drawn in the "over" colour, and the pane beside says how many (never colour alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

BARS = "▁▂▃▄▅▆▇█"
MAX_BAR_WIDTH = 3


class SeriesChart(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"series-chart--bar", "series-chart--over"}
    DEFAULT_CSS = """
    SeriesChart { height: 1; }
    SeriesChart > .series-chart--bar { color: $accent; }
    SeriesChart > .series-chart--over { color: $error; }
    """

    def __init__(
        self,
        *,
        threshold: float | None = None,
        ceiling: float | None = None,
        id: str | None = None,
        classes: str | None = None,
    ):
        """`ceiling` fixes the top (100 for a percentage); without it the chart auto-scales."""
        super().__init__(id=id, classes=classes)
        self.threshold = threshold
        self.ceiling = ceiling
        self._values: tuple[float, ...] = ()

    @property
    def values(self) -> tuple[float, ...]:
        return self._values

    def set_values(self, values: Sequence[float]) -> None:
        values = tuple(values)
        if values != self._values:
            self._values = values
            self.refresh()

    def render(self) -> Text:
        width = self.size.width
        shown = self._values[-width:] if width else ()
        if not shown:
            return Text("·" * width, style=self.get_component_rich_style("series-chart--bar"))
        bar_width = max(1, min(MAX_BAR_WIDTH, width // len(shown)))
        ceiling = self.ceiling or max(max(shown), self.threshold or 0.0) or 1.0
        bar_style = self.get_component_rich_style("series-chart--bar")
        over_style = self.get_component_rich_style("series-chart--over")
        text = Text(" " * (width - len(shown) * bar_width))
        for value in shown:
            level = min(len(BARS) - 1, int(max(value, 0.0) / ceiling * (len(BARS) - 1) + 0.5))
            over = self.threshold is not None and value > self.threshold
            text.append(BARS[level] * bar_width, over_style if over else bar_style)
        return text
