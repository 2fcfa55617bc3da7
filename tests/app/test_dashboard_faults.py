"""The dashboard under the operating system's push-back: a session log on a full disk
(at start, and filling mid-session), SIGTERM, a quit in the middle of an experiment."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from app_helpers import notifications, screen_text, send, wait_for_text, wait_until
from disks import fill, pad_log
from fakes import FakeBackend

from antinet_tui.runtime.session_log import read_session


async def test_a_log_on_a_full_disk_ends_the_dashboard_with_the_message_and_exit_2(make_app, capsys, dev_full):
    app = make_app(log=dev_full)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 2
    printed = " ".join(capsys.readouterr().err.split())  # rich wraps it at the terminal's width
    assert (f"antinet-tui: error: cannot write the session log {dev_full}: No space left on device "
            "(choose another --log-file, or --no-log)") in printed


async def test_a_disk_filling_mid_session_shows_in_the_status_line_at_once_and_its_recovery(make_app, small_disk):
    log = small_disk / "session.jsonl"
    pad_log(log, slack=200)
    filler = fill(small_disk)
    app = make_app(FakeBackend(), log=log)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hi")
        await wait_for_text(pilot, "LOG FAILING")
        assert any("Session log: records are being lost" in n and "No space left on device" in n
                   for n in notifications(app))
        assert "Traceback" not in screen_text(app)
        filler.unlink()  # room again: the next record is written, and the alarm ends
        await send(pilot, "again")
        await wait_for_text(pilot, "lost earlier")
        assert "LOG FAILING" not in screen_text(app)
        await wait_until(pilot, lambda: any("Session log: writing again" in n for n in notifications(app)),
                         "the toast that writing resumed")
    assert log.read_bytes().endswith(b"\n") and not read_session(log).skipped


def read_pty(fd: int, until: bytes, timeout: float = 60) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while until not in got:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{until!r} not seen within {timeout} s; got {got[-500:]!r}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        got += chunk
    return got


def test_sigterm_quits_the_dashboard_as_ctrl_q_does_and_restores_the_terminal(tiny_model, tmp_path):
    log = tmp_path / "session.jsonl"
    parent, child = pty.openpty()
    os.set_blocking(parent, True)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "--model", str(tiny_model), "--log-file", str(log)],
                            stdin=child, stdout=child, stderr=child, env=env, start_new_session=True)
    os.close(child)
    try:
        read_pty(parent, b"ready")
        proc.send_signal(signal.SIGTERM)
        rest = b""
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([parent], [], [], 0.1)
            if ready:
                try:
                    rest += os.read(parent, 65536)
                except OSError:
                    break
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        os.close(parent)
    assert b"\x1b[?1049l" in rest  # the alternate screen left: the terminal is restored
    assert b"Traceback" not in rest
    kinds = [r["kind"] for r in read_session(log)]
    assert kinds[0] == "session_start" and "loaded" in kinds


async def test_quitting_mid_experiment_keeps_its_summary_record(make_app, tmp_path):
    from test_experiment_screen import open_experiment

    app = make_app(FakeBackend(token_delay_s=0.01), log=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_experiment(pilot, "burst,default", "2,400", "3")
        await pilot.click("#start")
        await wait_until(pilot, lambda: len(screen.results) >= 6, "the short runs", timeout=30)
        await pilot.press("ctrl+q")  # during the first 400-token run
        await wait_until(pilot, lambda: app.return_code is not None, "the quit")
    [record] = [r for r in read_session(tmp_path / "session.jsonl") if r["kind"] == "experiment"]
    assert len(record["runs"]) == 6
    assert record["stopped"] == "stopped by the operator after 6 of 12 runs"


async def test_the_experiment_forms_empty_tokens_field_is_named_as_the_field(make_app):
    from test_experiment_screen import open_experiment

    app = make_app(FakeBackend())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_experiment(pilot, "burst,default", "", "2")
        await pilot.click("#start")
        await wait_until(pilot, lambda: any("tokens is empty" in n for n in notifications(app)), "the refusal")
        assert not any("--tokens" in n for n in notifications(app))


async def test_an_export_the_disk_refuses_is_said_plainly(make_app, tmp_path, small_disk):
    app = make_app(FakeBackend(), export_dir=small_disk / "exports")
    fill(small_disk)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hi")
        await wait_until(pilot, lambda: app.records and app.records[1].outcome == "finished", "the answer")
        app.action_export_session()
        await wait_until(pilot, lambda: any(n.startswith("Export failed") for n in notifications(app)), "the failure")
        [failure] = [n for n in notifications(app) if n.startswith("Export failed")]
        assert "No space left on device" in failure and "Errno" not in failure
    assert not [p for p in (small_disk / "exports").rglob("*") if p.name.startswith(".")]  # no temp left behind


def test_sigterm_mid_answer_cancels_and_records_the_partial_answer(real_model, tmp_path):
    log = tmp_path / "session.jsonl"
    parent, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "--log-file", str(log), "--max-new-tokens", "400",
                             "--temperature", "0"], stdin=child, stdout=child, stderr=child, env=env,
                            start_new_session=True)
    os.close(child)
    try:
        read_pty(parent, b"ready")
        os.write(parent, b"Write a very long story about a dragon.\r")
        read_pty(parent, b"generating")
        read_pty(parent, b"Once", timeout=60)  # the answer (greedy: it starts so) is streaming
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([parent], [], [], 0.1)[0]:
                try:
                    os.read(parent, 65536)
                except OSError:
                    break
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        os.close(parent)
    [cancelled] = [r for r in read_session(log) if r["kind"] == "cancelled"]
    assert cancelled["text"] and cancelled["request"]["prompt"] == "Write a very long story about a dragon."
