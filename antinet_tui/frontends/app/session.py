"""This dashboard session's requests, as the operator saw them, and their export.

The runtime's JSONL session log is the durable record of everything; this is the
shorter, per-request view the palette's "Export session" writes as JSON and Markdown.
Both files are rewritten whole, so they go through a temp file and `os.replace`: a crash
mid-export never leaves a truncated file under the final name.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from antinet_tui.config import APP_NAME
from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.fileio import write_atomically
from antinet_tui.frontends.app.formatting import request_figures
from antinet_tui.runtime.events import jsonable
from antinet_tui.runtime.metrics import RequestMetrics

# queued and running until it ends; then the runtime's outcome: finished, cancelled,
# failed, or rejected (it waited in the queue longer than the service allows)
RequestOutcome = Literal["queued", "running", "finished", "cancelled", "failed", "rejected"]


@dataclass
class RequestRecord:
    """One request the operator sent, the only copy of its text and state in the app:
    the Exchange widget shows it, the export writes it."""

    request_id: int
    request: GenerationRequest
    submitted_wall: float
    outcome: RequestOutcome = "queued"
    text: str = ""
    tokens: int = 0  # tokens streamed so far
    error: str | None = None
    metrics: RequestMetrics | None = None

    @property
    def ended(self) -> bool:
        return self.outcome not in ("queued", "running")


def write_export(directory: Path, kind: str, texts: dict[str, str]) -> list[Path]:
    """Write `<kind>-<time>.<suffix>` for each suffix -> text; a second export within the
    same second gets `-2`, ... rather than replacing the first. Returns the paths."""
    base = time.strftime(f"{kind}-%Y%m%d-%H%M%S")
    stem, n = directory / base, 1
    while any(stem.with_suffix(suffix).exists() for suffix in texts):
        n += 1
        stem = directory / f"{base}-{n}"
    paths = [stem.with_suffix(suffix) for suffix in texts]
    for path, text in zip(paths, texts.values()):
        write_atomically(path, text)
    return paths


def export_session(records: list[RequestRecord], header: dict, directory: Path) -> list[Path]:
    """Write `session-<time>.json` and `.md` into directory; returns their paths."""
    document = {**header, "exported_wall": time.time(), "requests": [jsonable(r) for r in records]}
    return write_export(directory, "session", {
        ".json": json.dumps(document, ensure_ascii=False, allow_nan=False, indent=2) + "\n",
        ".md": _markdown(records, header),
    })


def _markdown(records: list[RequestRecord], header: dict) -> str:
    lines = [f"# {APP_NAME} session", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    for record in records:
        when = time.strftime("%H:%M:%S", time.localtime(record.submitted_wall))
        lines += ["", f"## #{record.request_id} at {when} ({record.outcome})", ""]
        lines += [f"> {line}" for line in record.request.prompt.splitlines() or [""]]
        lines += ["", record.text or "*(no text)*", ""]
        if record.error:
            lines.append(f"**Error:** {record.error}")
        if record.metrics is not None:
            lines.append(request_figures(record.metrics))
    return "\n".join(lines) + "\n"
