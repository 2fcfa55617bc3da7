"""The output pane: this session's exchanges, newest at the bottom.

It is anchored: while the operator is at the bottom it follows the newest text; scrolling
up releases the anchor (Textual's `anchor()`), scrolling back to the end restores it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from antinet_tui.frontends.app.widgets.exchange import Exchange

HINT = (
    "Type a prompt below and press Enter; the answer streams here.\n"
    "Esc stops an answer (or leaves the prompt, for the single-key commands).\n"
    "F1 lists every key; ctrl+p opens the command palette."
)


class Conversation(VerticalScroll):
    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = "Answers"

    def compose(self) -> ComposeResult:
        yield Static(Text(HINT), id="conversation-hint")

    def on_mount(self) -> None:
        self.anchor()

    def show_load_failure(self, error: str) -> None:
        """Replace the how-to hint: with no model, the prompt cannot be answered."""
        self.query_one("#conversation-hint", Static).update(Text.assemble(
            ("The model could not be loaded.\n", "bold red"), f"{error}\n\n",
            "Quit (ctrl+q) and start again with --model PATH (or $ANTINET_MODEL); "
            "`antinet-tui info` shows which model would be used.",
        ))

    async def add(self, exchange: Exchange) -> None:
        self.query_one("#conversation-hint").display = False
        await self.mount(exchange)

    async def clear(self) -> None:
        await self.query(Exchange).remove()
        self.query_one("#conversation-hint").display = True
