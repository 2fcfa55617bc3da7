"""A bordered pane of one-line Statics that repaints only what changed.

The panes redraw on timers (breaker countdown, psutil samples). A Static update normally
asks for a layout of the whole screen, which on a small machine takes CPU (and the GIL)
from the engine; unchanged lines are skipped, and a line that fits the pane's width
before and after is repainted without a layout.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static


class Pane(Vertical):
    def set_line(self, selector: str, text: str | Text) -> None:
        line = text if isinstance(text, Text) else Text(text)
        static = self.query_one(selector, Static)
        old = static.content
        if isinstance(old, Text) and (old.plain, old.spans, old.style) == (line.plain, line.spans, line.style):
            return
        static.update(line, layout=not (isinstance(old, Text) and _same_shape(old, line, static.content_size.width)))


def _same_shape(old: Text, new: Text, width: int) -> bool:
    """Both have the same number of lines and no line wraps: the height cannot change."""
    old_lines, new_lines = old.plain.split("\n"), new.plain.split("\n")
    return (
        width > 0
        and len(old_lines) == len(new_lines)
        and all(cell_len(line) <= width for line in old_lines + new_lines)
    )
