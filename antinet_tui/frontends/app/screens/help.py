"""The help screen: every key (as currently mapped) and what each figure on screen means.

The definitions are runtime/metrics.py's, word for word in substance: an operator comparing a
number here with one from `antinet-tui run --json` must know they are the same number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from antinet_tui.frontends.app.keys import APP_KEYS, OTHER_KEYS

DEFINITIONS = """\
## What the figures mean

| Figure | Definition |
|---|---|
| TTFT | the engine starts the request → first generated token (queue wait excluded) |
| decode tok/s | (generated − 1) / (last token time − first token time) |
| prefill tok/s | prompt tokens / prefill time |
| e2e | request accepted → last token (or the stop / error) |
| p50 / p95 | over the last {window} finished requests of this session |

Charts hold finished requests only, newest at the right, bars from zero; the numbers
beside them give the scale. End-to-end is drawn against the breaker's slow-call
threshold; calls above it are counted in words under the chart.

## Breaker states

| State | Meaning |
|---|---|
| ● CLOSED | requests pass; opens when too many calls in the window are slow or failed |
| ✖ OPEN | requests are refused until the countdown ends |
| ◐ HALF-OPEN | a few probe requests pass; their outcome closes or re-opens it |
| ⊘ ISOLATED | forced open by the operator; only a reset closes it |

## Performance

*requested* is the mode asked for; *effective* is what the backend read back from the
system after applying it, with each knob that could not be set. A change made while an
answer is running applies before the next request. Mode changes go to the session log.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,question_mark,q", "dismiss", "Close help", id="close-help"),
    ]

    def __init__(self, key_display: Callable[[str], str], percentile_window: int):
        """`key_display(binding_id)` gives the key as the app has it mapped now."""
        super().__init__(id="help")
        self.key_display = key_display
        self.percentile_window = percentile_window

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Help · Esc closes"
            yield Markdown(self._keys_table() + "\n" + DEFINITIONS.format(window=self.percentile_window))

    def _keys_table(self) -> str:
        rows = [(self.key_display(key.id), key.description, key.where) for key in APP_KEYS]
        rows += list(OTHER_KEYS)
        order = {"anywhere": 0, "prompt": 1, "outside the prompt": 2}
        rows.sort(key=lambda row: order[row[2]])
        lines = ["## Keys", "", "| Key | Does | Where |", "|---|---|---|"]
        lines += [f"| `{keys}` | {what} | {where} |" for keys, what, where in rows]
        return "\n".join(lines) + "\n"
