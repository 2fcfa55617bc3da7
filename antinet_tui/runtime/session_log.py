"""The session log: an append-only JSONL record of what the operator did and got.

One JSON object per line, UTF-8, no NaN (`allow_nan=False`). Each record is one
`os.write` of the whole line to an O_APPEND descriptor, so a process killed between
records leaves only whole lines. What the operating system can still cut short:

* a full disk (or a file-size limit) makes a write short or fail: the writer truncates
  the file back to where the line began, so no half line is left for the next record
  to be glued onto, and raises SessionLogError (the runtime tells the operator);
* a SIGKILL in the middle of a large write can leave a half line: the next writer to
  open the file ends it with a newline first, and the reader skips it and says so.

It survives the death of the process, not of the machine: we do not fsync per record.
Taking a cut record back assumes one writing process per file (the default path holds
the pid); records of several processes appending to one file never interleave, but a
failure in one could take back a record another appended in between.

A lone surrogate (text that is not valid UTF-8, e.g. a rejected prompt) is written as
its JSON escape "\\udXXX", so the record still round-trips exactly through json.loads.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import platformdirs


def default_log_path() -> Path:
    """A new file per session in the user state dir."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return platformdirs.user_state_path("antinet-tui") / "sessions" / f"session-{stamp}-{os.getpid()}.jsonl"


class SessionLogError(OSError):
    """A record could not be written (disk full, I/O error, ...); nothing of it was kept."""

    def __init__(self, path: Path | None, cause: OSError):
        reason = cause.strerror or str(cause)
        super().__init__(cause.errno, f"cannot write the session log {path}: {reason}")
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return str(self.strerror)


class SessionLog:
    def __init__(self, path: str | os.PathLike[str] | None):
        """Open (append to) `path`; None makes a log that records nothing (--no-log).
        Raises SessionLogError when the file cannot be opened or its cut last line ended."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._regular = False  # a regular file can be truncated back; a device or FIFO cannot
        self.lost = 0  # records that could not be written
        self.failure: str | None = None  # why the last record was lost
        self.failing = False  # the last record was lost; False again once one is written
        if self.path is None:
            return
        try:
            if self.path.parent != self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            mode = os.fstat(self._fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "it is a directory")
            self._regular = stat.S_ISREG(mode)
            if self._regular:
                self._end_a_cut_line()
        except OSError as exc:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if isinstance(exc, FileExistsError) or exc.errno == errno.ENOTDIR:  # a file where a folder must be
                exc = OSError(exc.errno, f"{_file_in_the_way(self.path)} is a file, not a folder")
            raise SessionLogError(self.path, exc) from None

    def _end_a_cut_line(self) -> None:
        """A writer killed mid-record may have left a line without its newline: end it,
        so our first record starts a line of its own (the reader skips the cut one)."""
        assert self._fd is not None and self.path is not None  # open
        size = os.fstat(self._fd).st_size
        if not size:
            return
        try:
            with open(self.path, "rb") as f:  # ours is write-only
                f.seek(size - 1)
                last = f.read(1)
        except OSError:
            return  # unreadable to us (write-only permissions): the reader still copes
        if last != b"\n":
            self._write_all(b"\n", size)

    @classmethod
    def disabled(cls) -> SessionLog:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record, whole or not at all. Raises SessionLogError (counted in
        `lost`, reason in `failure`, `failing` until a record is written again) when the
        OS refuses it; ValueError for NaN."""
        if self.path is None:
            return
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        data = line.encode("utf-8", errors="backslashreplace")
        with self._lock:
            if self._fd is None:
                raise ValueError(f"session log {self.path} is closed")
            start = os.fstat(self._fd).st_size if self._regular else 0
            try:
                self._write_all(data, start)
            except OSError as exc:
                self.lost += 1
                self.failure = exc.strerror or str(exc)
                self.failing = True
                raise SessionLogError(self.path, exc) from None
            self.failing = False

    def _write_all(self, data: bytes, start: int) -> None:
        """One write of the whole line (O_APPEND: at the end, even with other writers).
        A short write is retried for the rest; a failure truncates back to `start`."""
        assert self._fd is not None  # open
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError:
            if self._regular and len(view) < len(data):
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass  # the reader still skips the cut line and says so
            raise

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _file_in_the_way(path: Path) -> Path:
    """The nearest ancestor of path that exists and is not a folder."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


@dataclass(frozen=True)
class SkippedLine:
    line: int  # 1-based
    reason: str

    def __str__(self) -> str:
        return f"line {self.line} skipped: {self.reason}"


class SessionRecords(list):
    """read_session's records, plus the lines it had to skip (`skipped`)."""

    skipped: list[SkippedLine]


def read_session(path: str | os.PathLike[str]) -> SessionRecords:
    """Parse a session log. A line that is not a JSON record (a writer killed mid-record,
    or a disk that filled before this version truncated back) is skipped and listed in
    the result's `skipped`, so every intact record is kept."""
    records = SessionRecords()
    records.skipped = []
    for number, line in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        if not line:
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            records.skipped.append(SkippedLine(number, f"cut short or not a JSON record ({exc})"))
            continue
        if not isinstance(record, dict):
            records.skipped.append(SkippedLine(number, f"a JSON {type(record).__name__}, not a record"))
            continue
        records.append(record)
    return records
