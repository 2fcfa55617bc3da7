"""The prompt: Enter sends, Up/Down walk this session's prompts like a shell's history.

Walking up from a half-typed prompt keeps it as a draft, and walking back down past the
newest entry restores it, so browsing history never loses what was being typed.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input


class PromptInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history_previous", "Previous", tooltip="Previous prompt", id="history-previous"),
        Binding("down", "history_next", "Next", tooltip="Next prompt (back to the draft)", id="history-next"),
    ]

    def __init__(self, *, id: str | None = None):
        super().__init__(placeholder="Ask something and press Enter", id=id, select_on_focus=False)
        self.history: list[str] = []
        self._position: int | None = None  # index into history while browsing, else None
        self._draft = ""

    def remember(self, prompt: str) -> None:
        if not self.history or self.history[-1] != prompt:
            self.history.append(prompt)
        self._position = None
        self._draft = ""

    def action_history_previous(self) -> None:
        if not self.history:
            return
        if self._position is None:
            self._draft = self.value
            self._position = len(self.history)
        self._position = max(0, self._position - 1)
        self._show(self.history[self._position])

    def action_history_next(self) -> None:
        if self._position is None:
            return
        self._position += 1
        if self._position >= len(self.history):
            self._position = None
            self._show(self._draft)
        else:
            self._show(self.history[self._position])

    def _show(self, text: str) -> None:
        self.value = text
        self.cursor_position = len(text)
