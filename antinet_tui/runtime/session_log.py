"""The session log: an append-only JSONL record of what the operator did and got.

One JSON object per line, UTF-8, written with a single unbuffered write and no NaN
(`allow_nan=False`), so a process killed at any moment (SIGKILL included) leaves a file
whose every complete line parses and which holds every record written before the kill.
It survives the death of the process, not of the machine: we do not fsync per record.

A lone surrogate (text that is not valid UTF-8, e.g. a rejected prompt) is written as
its JSON escape "\\udXXX", so the record still round-trips exactly through json.loads.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import platformdirs


def default_log_path() -> Path:
    """A new file per session in the user state dir."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return platformdirs.user_state_path("antinet-tui") / "sessions" / f"session-{stamp}-{os.getpid()}.jsonl"


class SessionLog:
    def __init__(self, path: str | os.PathLike[str] | None):
        """Open (append to) `path`; None makes a log that records nothing (--no-log)."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)

    @classmethod
    def disabled(cls) -> SessionLog:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        data = memoryview(line.encode("utf-8", errors="backslashreplace"))
        with self._lock:
            if self._file.closed:
                raise ValueError(f"session log {self.path} is closed")
            while data:  # a raw write may be partial
                data = data[self._file.write(data) :]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_session(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse a session log. Only the last line may be cut short (the process died while
    writing it): it is dropped. Any other line that does not parse is an error."""
    lines = Path(path).read_bytes().split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            records.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if number == len(lines):  # no newline after it: an interrupted write
                break
            raise ValueError(f"{path}:{number}: not a JSON record: {exc}") from exc
    return records
