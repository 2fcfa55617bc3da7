"""The session log: JSONL that round-trips, survives SIGKILL, and never holds NaN."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from antinet_tui.engine.protocol import ModeReadback
from antinet_tui.runtime.breaker import BreakerConfig, BreakerSnapshot, BreakerState
from antinet_tui.runtime.events import (
    Accepted,
    BreakerTransition,
    Cancelled,
    Event,
    Failed,
    Finished,
    Loaded,
    LoadFailed,
    LoadProgress,
    ModeChanged,
    Rejected,
    Started,
    Token,
)
from antinet_tui.runtime.metrics import RequestMetrics
from antinet_tui.runtime.session_log import SessionLog, default_log_path, read_session

WORKER = Path(__file__).with_name("session_log_worker.py")


def metrics(**changes) -> RequestMetrics:
    base = dict(
        queue_wait_ms=1.0,
        ttft_ms=2.0,
        prefill_tok_s=3.0,
        decode_tok_s=4.0,
        e2e_ms=5.0,
        prompt_tokens=6,
        generated_tokens=7,
        mode="burst",
        stop_reason="eos",
        outcome="finished",
    )
    return RequestMetrics(**{**base, **changes})


def test_records_round_trip_with_any_text(tmp_path):
    path = tmp_path / "s.jsonl"
    records = [
        {"kind": "finished", "text": "naïve café 🦊 漢字\nline two\t\"quoted\" \\ back", "n": 3},
        {"kind": "rejected", "prompt": "lone \ud800 surrogate", "ok": None},
        {"kind": "x", "nested": {"list": [1, 2.5, True]}},
    ]
    with SessionLog(path) as log:
        for record in records:
            log.write(record)
    assert read_session(path) == records
    raw = path.read_bytes()
    raw.decode("utf-8")  # valid UTF-8 throughout
    assert "🦊".encode() in raw  # ensure_ascii=False: the text is readable as is
    assert raw.count(b"\n") == 3


def test_appends_to_an_existing_log(tmp_path):
    path = tmp_path / "nested" / "dir" / "s.jsonl"
    SessionLog(path).write({"n": 1})
    SessionLog(path).write({"n": 2})
    assert read_session(path) == [{"n": 1}, {"n": 2}]


def test_nan_is_refused_rather_than_written(tmp_path):
    log = SessionLog(tmp_path / "s.jsonl")
    with pytest.raises(ValueError):
        log.write({"x": math.nan})
    assert (tmp_path / "s.jsonl").read_bytes() == b""


def test_the_disabled_log_writes_nothing(tmp_path):
    log = SessionLog.disabled()
    log.write({"a": 1})
    assert not log.enabled and log.path is None


def test_concurrent_writers_never_interleave_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    log = SessionLog(path)
    text = "x" * 20_000  # larger than one pipe buffer or one write

    def write(worker: int) -> None:
        for i in range(50):
            log.write({"worker": worker, "i": i, "text": text})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = read_session(path)
    assert len(records) == 200 and all(r["text"] == text for r in records)


def test_default_path_is_a_new_file_in_the_user_state_dir(isolated_dirs):
    path = default_log_path()
    assert path.parent == isolated_dirs / "state" / "antinet-tui" / "sessions"
    assert re.fullmatch(rf"session-\d{{8}}-\d{{6}}-{os.getpid()}\.jsonl", path.name)


def every_event() -> list[Event]:
    snapshot = BreakerSnapshot(BreakerState.OPEN, "why", 12.0, 3, 0, 4, BreakerConfig())
    readback = ModeReadback("burst", "burst (partial)", {"threads": 8, "ratio": math.inf}, ("nice refused",), 0.01)
    return [
        LoadProgress(0.5, "loading"),
        Loaded(model_info=None, capabilities=None, mode=readback),
        LoadFailed("not a GGUF file"),
        Accepted(1, "hi", 8, 1),
        Started(1, 0.25),
        Token(1, 42, "hé", 0),
        Finished(1, "hé", (42,), metrics(decode_tok_s=math.nan)),
        Cancelled(2, "", (), metrics(outcome="cancelled", e2e_ms=math.inf)),
        Failed(3, "boom", metrics(outcome="failed", stop_reason=None)),
        Rejected(4, "queue full: 8 requests waiting", "queue_full"),
        BreakerTransition(BreakerState.CLOSED, BreakerState.OPEN, "why", snapshot),
        ModeChanged("burst", readback),
    ]


def test_every_event_becomes_a_strict_json_record():
    events = every_event()
    assert len({type(e).kind for e in events}) == len(events)  # one kind per class
    for event in events:
        record = event.to_record()
        json.dumps(record, allow_nan=False)  # raises on NaN or inf
        assert record["kind"] == event.kind and record["request_id"] == event.request_id
        assert isinstance(record["t_ns"], int) and isinstance(record["wall"], float)


def test_records_say_none_for_non_finite_figures_and_use_enum_values():
    finished, cancelled = every_event()[6:8]
    assert finished.to_record()["metrics"]["decode_tok_s"] is None
    assert cancelled.to_record()["metrics"]["e2e_ms"] is None
    transition = every_event()[10].to_record()
    assert (transition["from_state"], transition["to_state"]) == ("closed", "open")
    assert transition["snapshot"]["config"]["slow_call_ms"] == 3000
    assert every_event()[11].to_record()["readback"]["settings"] == {"threads": 8, "ratio": None}


def test_events_are_immutable():
    with pytest.raises(AttributeError):
        every_event()[5].text = "changed"


def test_sigkill_mid_generation_leaves_a_parseable_log_with_every_finished_request(tmp_path):
    """A real process runs an EngineService that logs, and is killed with SIGKILL while
    it generates and writes. Every line must parse, and every request the process saw
    finish (it prints them from a subscriber) must be in the log."""
    path = tmp_path / "session.jsonl"
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    finished_ids: list[int] = []
    try:
        while len(finished_ids) < 40:
            line = worker.stdout.readline()
            if not line:
                pytest.fail(f"the worker exited early: {worker.wait()} {worker.stderr.read()}")
            finished_ids.append(int(line.split()[1]))
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL

    raw = path.read_bytes()
    lines = raw.split(b"\n")
    assert lines[-1] == b"", "the log ends in the middle of a record"
    records = [json.loads(line) for line in lines[:-1]]  # every line parses, strictly
    assert records[0]["kind"] == "session_start"
    logged = {r["request_id"]: r for r in records if r["kind"] == "finished"}
    assert set(finished_ids) <= set(logged)
    sample = logged[finished_ids[-1]]
    assert sample["request"]["prompt"] == f"prompt {finished_ids[-1]}: ünïcode ✓"
    assert sample["text"] and sample["metrics"]["generated_tokens"] == 12
