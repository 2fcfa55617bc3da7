"""The one writer for files that are rewritten whole (exports, reports, bundle configs).

A regular file goes through a temp file in the same folder and os.replace, so a crash
never leaves a half-written file under the name. What the name points at is what gets
written: through a symlink to its target (the link stays), and a device, FIFO or
/dev/stdout is written directly, never replaced by a regular file. `-` is stdout.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

STDOUT = "-"


class OutputError(OSError):
    """The output cannot be written; str() says which path and why, for the operator."""

    def __str__(self) -> str:
        return str(self.strerror)


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise OutputError when `path` cannot be written, before any work is done: a folder,
    a file where a folder is needed, a folder we cannot create or write a temp file in.
    (Creates the missing folders, as the write would.)"""
    if str(path) == STDOUT:
        return
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise OutputError(exc.errno, f"{path}: {exc.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(errno.EISDIR, f"{path} is a folder; name a file")
    if mode is not None and not stat.S_ISREG(mode):  # a device or FIFO, written in place
        if not os.access(path, os.W_OK):
            raise OutputError(errno.EACCES, f"{path} is not writable")
        return
    folder = Path(os.path.realpath(path)).parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(errno.ENOTDIR, f"{blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(exc.errno, f"{path}: its folder {folder} cannot be written ({exc.strerror})") from None


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write text as the whole content of path (see the module's docstring).
    Raises OutputError (an OSError) with the path and the reason."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        _write(Path(path), text)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(exc.errno, f"{path}: {exc.strerror or exc}") from None


def _write(path: Path, text: str) -> None:
    check_output(path)  # a folder, a file in the way: said plainly
    try:
        mode = os.stat(path).st_mode  # follows symlinks, /dev/stdout's included
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):  # a device, FIFO, terminal: write in place
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return
    target = Path(os.path.realpath(path))  # through symlinks: the link stays a link
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        # an existing file keeps its permissions; a new one is 0644, not mkstemp's private 0600
        os.chmod(temp, stat.S_IMODE(mode) if mode is not None else 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
