"""Serve mode: the recent requests, served or typed, one row each, updated live.

Fed by the runtime's events (the app routes them here), so it shows what the engine
saw, whoever sent it: id, origin (a client's address, or "operator"), a preview of the
prompt, tokens generated so far, TTFT, end-to-end and how it ended (or "queued" /
"running"). Requests refused at submission (queue full, breaker open, ...) get no row:
under overload they come by the dozen a second and would push the served ones out of
sight; the pane's title counts them by cause instead. The newest row is at the top; only
the last `MAX_ROWS` are kept.
"""

from __future__ import annotations

from collections import Counter

from textual.widgets import DataTable

from antinet_tui.frontends.app.formatting import ms
from antinet_tui.runtime.metrics import RequestMetrics

MAX_ROWS = 100
# Cell changes are applied together at most this often. Any change re-renders the whole
# table; done per token drain (15-30 a second under load) it took most of the UI thread
# (profiled with 32 clients) and slowed keys and the engine.
APPLY_INTERVAL_S = 0.5
PREVIEW_CHARS = 40
# the prompt last: on a narrow screen it is the column that gets cut, not the outcome
COLUMNS = (("id", "#"), ("origin", "origin"), ("outcome", "outcome"), ("tokens", "tokens"), ("ttft", "TTFT ms"),
           ("e2e", "e2e ms"), ("prompt", "prompt"))


def preview(prompt: str) -> str:
    flat = " ".join(prompt.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


class RequestsPane(DataTable):
    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.border_title = "Requests"
        self.refused: Counter[str] = Counter()  # refused at submission, by cause
        self._tokens: dict[int, int] = {}
        self._order: list[int] = []  # oldest first
        self._cells_to_set: dict[tuple[int, str], str] = {}  # (request id, column) -> value, not yet shown
        self._rows_to_add: list[tuple[int, str, str, str]] = []

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self.set_interval(APPLY_INTERVAL_S, self.apply_changes)

    def accepted(self, request_id: int, origin: str, prompt: str) -> None:
        self._tokens[request_id] = 0
        self._rows_to_add.append((request_id, origin, preview(prompt), "queued"))

    def started(self, request_id: int) -> None:
        self._set(request_id, "outcome", "running")

    def tokens(self, request_id: int, count: int) -> None:
        if request_id in self._tokens:
            self._tokens[request_id] += count
            self._set(request_id, "tokens", str(self._tokens[request_id]))

    def ended(self, request_id: int, outcome: str, metrics: RequestMetrics | None) -> None:
        if request_id not in self._tokens:
            return
        if metrics is not None:
            self._tokens[request_id] = metrics.generated_tokens
            self._set(request_id, "tokens", str(metrics.generated_tokens))
            self._set(request_id, "ttft", ms(metrics.ttft_ms))
            self._set(request_id, "e2e", ms(metrics.e2e_ms))
        self._set(request_id, "outcome", outcome)

    def rejected(self, request_id: int | None, cause: str) -> None:
        """A request refused after waiting (queue_timeout: it has a row) or at submission
        (counted in the title)."""
        if request_id is not None and request_id in self._tokens:
            self._set(request_id, "outcome", f"refused: {cause}")
            return
        self.refused[cause] += 1

    @property
    def request_ids(self) -> list[int]:
        """Newest first, as shown."""
        return list(reversed(self._order))

    def cell(self, request_id: int, column: str) -> str:
        return str(self.get_cell(str(request_id), column))

    def apply_changes(self) -> None:
        """Show what changed since the last call: new rows, then cell values, then the title."""
        if self._rows_to_add:
            for request_id, origin, prompt, outcome in self._rows_to_add:
                self._order.append(request_id)
                self.add_row(str(request_id), origin, outcome, "0", "", "", prompt, key=str(request_id))
            self._rows_to_add.clear()
            self.sort("id", key=lambda rid: -int(rid))  # newest on top
            while len(self._order) > MAX_ROWS:
                oldest = self._order.pop(0)
                self._tokens.pop(oldest, None)
                self.remove_row(str(oldest))
        cells, self._cells_to_set = self._cells_to_set, {}
        for (request_id, column), value in cells.items():
            if request_id in self._tokens:
                self.update_cell(str(request_id), column, value)
        if self.refused:
            causes = ", ".join(f"{cause} {n}" for cause, n in self.refused.most_common())
            title = f"Requests · refused at once: {causes}"
            if self.border_title != title:
                self.border_title = title

    def _set(self, request_id: int, column: str, value: str) -> None:
        if request_id in self._tokens:
            self._cells_to_set[(request_id, column)] = value
