"""A child process's output read line by line on a thread of its own: select() on a
buffered text pipe misses a line that readline() already took into its buffer (two lines
that arrive together), and a test would wait for it forever."""

from __future__ import annotations

import re
import threading
from typing import IO

LINE_TIMEOUT_S = 120.0


class ChildOutput:
    def __init__(self, stream: IO[str]):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = LINE_TIMEOUT_S) -> re.Match:
        """The first line matching `pattern` (waiting for it), or fail after `timeout`."""
        with self._changed:
            found = self._changed.wait_for(lambda: self._match(pattern), timeout)
        assert found, f"no line matching {pattern!r} within {timeout} s; got {self.lines}"
        return found

    def _match(self, pattern: str) -> re.Match | None:
        return next((m for line in self.lines if (m := re.search(pattern, line))), None)

    def finish(self, timeout: float = 30) -> list[str]:
        """Every line, once the child closed the stream."""
        self._thread.join(timeout)
        return self.lines
