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
from antinet_tui.runtime.events import Cancelled, Failed, Finished


class Exchange(Vertical):
    class TextArrived(Message):
        def __init__(self, text: str, tokens: int) -> None:
            super().__init__()
            self.text = text
            self.tokens = tokens

    class Ended(Message):
        def __init__(self, event: Finished | Cancelled | Failed) -> None:
            super().__init__()
            self.event = event

    def __init__(self, request_id: int, prompt: str, settings_note: str):
        super().__init__(id=f"exchange-{request_id}", classes="exchange")
        self.request_id = request_id
        self.prompt = prompt
        self.settings_note = settings_note
        self.text = ""
        self.tokens = 0
        self.outcome = "queued"  # queued, generating, finished, stopped, failed
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        prompt = Text("› ", style="bold")
        prompt.append(self.prompt)
        prompt.append(f"   #{self.request_id} · {self.settings_note}", style="dim")
        yield Static(prompt, classes="prompt")
        yield Markdown(classes="answer")
        yield Static(Text("queued"), classes="figures")

    @property
    def figures(self) -> Static:
        return self.query_one(".figures", Static)

    def mark_started(self) -> None:
        self.outcome = "generating"
        self.figures.update(Text("generating…"))

    async def on_exchange_text_arrived(self, message: TextArrived) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        self.text += message.text
        self.tokens += message.tokens
        await self._stream.write(message.text)
        self.figures.update(Text(f"generating… {self.tokens} tokens"), layout=False)  # same one line

    async def on_exchange_ended(self, message: Ended) -> None:
        event = message.event
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if isinstance(event, (Finished, Cancelled)):
            self.text = event.text
        await self.query_one(Markdown).update(self.text)
        figures = request_figures(event.metrics)
        if isinstance(event, Finished):
            self.outcome = "finished"
            line = Text(figures)
        elif isinstance(event, Cancelled):
            self.outcome = "stopped"
            n = event.metrics.generated_tokens
            line = Text("■ stopped", style="bold")
            line.append(f" · {figures}" if n else " before it started")  # figures give the count
        else:
            self.outcome = "failed"
            line = Text("✗ failed", style="bold")
            line.append(f": {event.error} · after {event.metrics.generated_tokens} tokens")
        self.figures.update(line)
        self.add_class(f"-{self.outcome}")
