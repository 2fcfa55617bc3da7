"""Full-disk helpers for the fault-injection tests (the `small_disk` fixture is in conftest)."""

from __future__ import annotations

from pathlib import Path


def fill(disk: Path) -> Path:
    """Fill `disk` up with one file; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def pad_log(path: Path, slack: int) -> list[dict]:
    """Start a session log with one earlier record that leaves `slack` bytes free in its
    last 4 KiB page: on a full tmpfs, a record that crosses into the next page is cut
    short by the kernel (a short write), as on a real disk that fills mid-session."""
    path.write_bytes(b"")
    record = pad_to_page(path, slack)
    assert path.stat().st_size == 4096 - slack
    return [record]


def pad_to_page(path: Path, slack: int) -> dict:
    """Append one record to the log at `path` so that it ends `slack` bytes before a 4 KiB
    page boundary (see pad_log); returns the record."""
    import json

    record = {"kind": "earlier", "pad": ""}
    bare = len(json.dumps(record)) + 1
    size = path.stat().st_size
    room = (-(size + slack)) % 4096
    if room < bare:
        room += 4096
    record["pad"] = "x" * (room - bare)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return record
