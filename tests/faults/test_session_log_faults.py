"""The session log under the faults an operator's device meets: a disk that fills up,
a writer killed with SIGKILL between and in the middle of a record. Never a half line
for the next writer to glue onto; the reader keeps every intact record and says which
line it skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from disks import fill, pad_log

from antinet_tui.runtime.session_log import SessionLog, SessionLogError, read_session


def test_a_record_the_full_disk_cuts_short_is_taken_back_whole(small_disk):
    path = small_disk / "session.jsonl"
    earlier = pad_log(path, slack=100)
    filler = fill(small_disk)
    log = SessionLog(path)
    log.write({"n": 1})  # fits in the page already allocated
    with pytest.raises(SessionLogError, match="No space left on device"):
        log.write({"n": 2, "text": "y" * 500})  # crosses into a page the disk does not have
    assert log.lost == 1 and log.failure == "No space left on device" and log.failing
    assert path.read_bytes().endswith(b'{"n": 1}\n'), "a half record was left behind"

    filler.unlink()  # space again: the next record starts on a line of its own
    log.write({"n": 3})
    assert not log.failing and log.lost == 1  # writing again; what was lost stays counted
    records = read_session(path)
    assert records == [*earlier, {"n": 1}, {"n": 3}] and records.skipped == []


def test_a_log_on_a_full_disk_is_refused_at_its_first_record(small_disk, dev_full):
    fill(small_disk)
    log = SessionLog(small_disk / "session.jsonl")
    with pytest.raises(SessionLogError) as raised:
        log.write({"kind": "session_start"})
    assert str(raised.value) == f"cannot write the session log {small_disk / 'session.jsonl'}: No space left on device"
    with pytest.raises(SessionLogError, match="No space left on device"):
        SessionLog(dev_full).write({"kind": "session_start"})


KILLED_MID_RECORD = textwrap.dedent("""
    import os, signal, sys
    from antinet_tui.runtime.session_log import SessionLog
    log = SessionLog(sys.argv[1])
    for n in range(3):
        log.write({"n": n})
    # what a write cut by SIGKILL leaves: the first half of a record, no newline
    line = b'{"n": 3, "text": "this record was cut short by the kill"}\\n'
    os.write(os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND), line[: len(line) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_writer_killed_mid_record_then_another_append_keeps_every_intact_record(tmp_path):
    path = tmp_path / "session.jsonl"
    child = subprocess.run([sys.executable, "-c", KILLED_MID_RECORD, str(path)], capture_output=True)
    assert child.returncode == -signal.SIGKILL
    with SessionLog(path) as log:  # the next session appends to the same file
        log.write({"n": 4})
    records = read_session(path)
    assert records == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 4}]
    assert [s.line for s in records.skipped] == [4] and "cut short" in str(records.skipped[0])
    assert str(records.skipped[0]).startswith("line 4 skipped:")


REAL_KILL_WRITER = textwrap.dedent("""
    import sys
    from antinet_tui.runtime.session_log import SessionLog
    log = SessionLog(sys.argv[1])
    n = 0
    while True:
        log.write({"n": n, "text": "z" * 4_000_000})  # large: a kill can land inside the write
        print(n, flush=True)
        n += 1
""")


def test_sigkill_during_large_writes_then_another_append_reads_back(tmp_path):
    """A real SIGKILL at an arbitrary moment of a stream of large writes."""
    path = tmp_path / "session.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", REAL_KILL_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged = [writer.stdout.readline(), writer.stdout.readline()]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with SessionLog(path) as log:
        log.write({"n": "after"})
    records = read_session(path)
    numbers = [r["n"] for r in records]
    assert numbers[-1] == "after" and numbers[:-1] == list(range(len(numbers) - 1))
    assert len(numbers) - 1 >= len([a for a in acknowledged if a])  # every acknowledged record is there
    assert len(records.skipped) <= 1 and all(r["text"] == "z" * 4_000_000 for r in records[:-1])


def test_the_reader_skips_a_bad_line_anywhere_and_names_it(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": \n{"c": 3}\n[1, 2]\n{"d": "cut sho')
    records = read_session(path)
    assert records == [{"a": 1}, {"c": 3}]
    assert [s.line for s in records.skipped] == [2, 4, 5]


def test_a_cut_last_line_is_ended_before_the_next_record(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2, "cut')
    SessionLog(path).write({"c": 3})
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2, "cut\n{"c": 3}\n'


@pytest.mark.parametrize("make,message", [
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt" / "x.jsonl", "file.txt is a file, not a folder"),
    (lambda tmp: tmp, "Is a directory"),
])
def test_a_log_path_that_cannot_be_a_file_says_why(tmp_path, make, message):
    with pytest.raises(SessionLogError, match=message):
        SessionLog(make(tmp_path))


def test_log_records_survive_json_round_trip_after_a_failure(small_disk):
    """After a failure the log keeps working once there is room: nothing stays broken."""
    path = small_disk / "s.jsonl"
    pad_log(path, slack=10)
    filler = fill(small_disk)
    log = SessionLog(path)
    for _ in range(3):
        with pytest.raises(SessionLogError):
            log.write({"big": "b" * 100})
    assert log.lost == 3
    filler.unlink()
    log.write({"big": "b" * 100})
    assert read_session(path)[-1] == {"big": "b" * 100}
    assert all(json.loads(line) for line in path.read_text().splitlines())
    os.sync()
