"""One prompt and its answer. The answer streams in as Markdown and, when the request
ends, is replaced by one full render of the final text, with the request's figures under it.

Text and the end arrive as messages to this widget, so they are handled in order on its
own queue and a slow Markdown render never holds up the app's key handling. Streaming
uses `Markdown.get_stream`, which merges fragments when rendering falls behind.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from antinet_tui.frontends.app.formatting import request_figures
from antinet_tui.frontends.app.session import RequestRecord


class Exchange(Vertical):
    """Shows one RequestRecord; the app updates the record, then tells the widget."""

    class TextArrived(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Ended(Message):
        """The record's outcome is final."""

    def __init__(self, record: RequestRecord, settings_note: str):
        super().__init__(id=f"exchange-{record.request_id}", classes="exchange")
        self.record = record
        self.settings_note = settings_note
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        prompt = Text("› ", style="bold")
        prompt.append(self.record.request.prompt)
        prompt.append(f"   #{self.record.request_id} · {self.settings_note}", style="dim")
        yield Static(prompt, classes="prompt")
        yield Markdown(classes="answer")
        yield Static(Text("queued"), classes="figures")

    @property
    def figures(self) -> Static:
        return self.query_one(".figures", Static)

    def mark_started(self) -> None:
        self.figures.update(Text("generating…"))

    async def on_exchange_text_arrived(self, message: TextArrived) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        await self._stream.write(message.text)
        self.figures.update(Text(f"generating… {self.record.tokens} tokens"), layout=False)  # same one line

    async def on_exchange_ended(self, _: Ended) -> None:
        record = self.record
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        await self.query_one(Markdown).update(record.text)
        figures = request_figures(record.metrics) if record.metrics is not None else ""
        n = record.metrics.generated_tokens if record.metrics is not None else record.tokens
        if record.outcome == "finished":
            line = Text(figures)
        elif record.outcome == "cancelled":
            line = Text("■ stopped", style="bold")
            line.append(f" · {figures}" if n else " before it started")  # figures give the count
        elif record.outcome == "rejected":
            line = Text("✗ refused", style="bold")
            line.append(f": {record.error}")
        else:
            line = Text("✗ failed", style="bold")
            line.append(f": {record.error} · after {n} tokens")
        self.figures.update(line)
        self.add_class(f"-{record.outcome}")
