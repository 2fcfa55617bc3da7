"""The top line: model, backend, load progress then "ready" (or what is running), queue;
in serve mode also where the API listens and how many clients are connected; attached to a
remote engine, the link's state in words."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.text import Text
from textual.widgets import Static

from antinet_tui.config import APP_NAME

PROGRESS_WIDTH = 10


@dataclass(frozen=True)
class Status:
    model: str = "model not loaded"
    backend: str = ""
    engine: str = "starting"  # loading / ready / generating #n / load failed / stopped
    load_fraction: float | None = None  # while loading
    load_message: str = ""
    queue: int = 0
    frozen: bool = False
    log_lost: int = 0  # session-log records the disk refused
    log_failing: bool = False  # still refusing them (False once a record is written again)
    serving: str | None = None  # serve mode: where the API listens ("127.0.0.1:8080")
    clients: int = 0  # serve mode: open HTTP connections
    link: str | None = None  # attached to a remote engine: connecting / live / reconnecting in N s / refused: …


class StatusLine(Static):
    def __init__(self, backend: str, *, id: str | None = None):
        super().__init__(id=id)
        self.status = Status(backend=backend)

    def on_mount(self) -> None:
        self._draw()

    def change(self, **fields) -> None:
        updated = replace(self.status, **fields)
        if updated != self.status:
            self.status = updated
            self._draw()

    def _draw(self) -> None:
        status = self.status
        text = Text()
        text.append(f" {APP_NAME} ", "reverse bold")
        text.append(f"  {status.model}")
        if status.backend:
            text.append(f" · {status.backend}")
        text.append("  │  ")
        if status.load_fraction is not None:
            filled = round(status.load_fraction * PROGRESS_WIDTH)
            text.append(f"loading {'█' * filled}{'░' * (PROGRESS_WIDTH - filled)} {status.load_fraction:.0%}")
            if status.load_message:
                text.append(f" {status.load_message}")
        else:
            text.append(status.engine, "bold")
        text.append(f"  │  queue {status.queue}")
        if status.link is not None:
            text.append("  │  attached ")
            text.append(status.link, "bold" if status.link == "live" else "bold reverse")
        if status.serving is not None:
            noun = "client" if status.clients == 1 else "clients"
            text.append(f"  │  serving {status.serving} · {status.clients} {noun}")
        if status.frozen:
            text.append("  │  ")
            text.append("charts FROZEN", "bold reverse")
        if status.log_lost:
            text.append("  │  ")
            if status.log_failing:
                text.append(f"LOG FAILING: {status.log_lost} lost", "bold reverse")
            else:  # the disk had room again: the loss stays on record, no longer an alarm
                text.append(f"log: {status.log_lost} lost earlier", "bold")
        self.update(text, layout=False)  # one line, always: no layout needed
