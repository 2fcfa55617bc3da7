"""The command line under the operating system's push-back: full disks, signals, odd
output paths, Windows line endings. Each runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading

import pytest
from disks import fill, pad_log

from antinet_tui.runtime.session_log import read_session


def cli(*args, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "antinet_tui", *map(str, args)], capture_output=True, text=True,
                          input=input, timeout=timeout)


# --- full disk ----------------------------------------------------------------------

def test_a_full_disk_at_start_is_the_unwritable_path_message_and_exit_2(tiny_model, small_disk, dev_full):
    fill(small_disk)
    for log in (dev_full, small_disk / "session.jsonl"):
        done = cli("run", "hi", "--model", tiny_model, "--max-new-tokens", "2", "--log-file", log)
        assert done.returncode == 2, done.stderr
        assert done.stderr == (f"antinet-tui: error: cannot write the session log {log}: No space left on device "
                               "(choose another --log-file, or --no-log)\n")


def test_a_disk_that_fills_mid_session_is_reported_at_once_and_leaves_no_half_line(tiny_model, small_disk):
    log = small_disk / "session.jsonl"
    earlier = pad_log(log, slack=200)  # room for session_start, not for the records after it
    filler = fill(small_disk)
    done = cli("run", "hi", "--model", tiny_model, "--max-new-tokens", "4", "--temperature", "0", "--log-file", log)
    assert done.returncode == 7, done.stderr
    assert f"session log {log}: records are being lost: No space left on device" in done.stderr
    assert "lost" in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr
    assert log.read_bytes().endswith(b"\n")
    records = read_session(log)
    assert records[: len(earlier)] == earlier and records[-1]["kind"] == "session_start" and not records.skipped

    filler.unlink()  # the next session appends to the same file, cleanly
    again = cli("run", "hi", "--model", tiny_model, "--max-new-tokens", "4", "--temperature", "0", "--log-file", log)
    assert again.returncode == 0, again.stderr
    records = read_session(log)
    assert not records.skipped and [r["kind"] for r in records].count("session_start") == 2
    assert records[-1]["kind"] == "finished"


def test_a_log_path_under_a_file_says_so(tiny_model, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    done = cli("run", "hi", "--model", tiny_model, "--log-file", tmp_path / "file.txt" / "x.jsonl")
    assert done.returncode == 2
    assert f"{tmp_path / 'file.txt'} is a file, not a folder" in done.stderr and "File exists" not in done.stderr


# --- signals ---------------------------------------------------------------------------

def read_until(stream, n: int) -> str:
    got = ""
    while len(got) < n:
        chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
        assert chunk, "the process ended before writing enough"
        got += chunk
    return got


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_during_run_cancels_keeps_the_text_and_records_it(real_model, tmp_path, signum, code):
    log = tmp_path / "session.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "run", "Write a very long story about a dragon.",
                             "--max-new-tokens", "400", "--temperature", "0", "--log-file", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = read_until(proc.stdout, 20)  # the answer has started streaming
    proc.send_signal(signum)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    printed = (first + rest.decode()).strip()
    assert "cancelled after" in err.decode() and b"Traceback" not in err
    [cancelled] = [r for r in read_session(log) if r["kind"] == "cancelled"]
    assert cancelled["text"] and printed.startswith(cancelled["text"].strip()[:20])


# --- odd output paths -------------------------------------------------------------------

BENCH = ["bench", "--modes", "burst,default", "--tokens", "1", "--runs", "1", "--warmup", "0", "--no-log"]


def test_bench_output_through_a_symlink_writes_its_target(roomy_model, tmp_path):
    target = tmp_path / "real.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    done = cli(*BENCH, "--model", roomy_model, "--output", link)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "| burst | 1 | 1 |" in target.read_text()


def test_bench_output_onto_devices_and_fifos_writes_them_in_place(roomy_model, tmp_path, dev_full):
    full = cli(*BENCH, "--model", roomy_model, "--output", dev_full)
    assert full.returncode == 2 and f"cannot write --output: {dev_full}: No space left on device" in full.stderr
    assert stat.S_ISCHR(os.stat(dev_full).st_mode)  # still the device
    assert "| burst | 1 | 1 |" in full.stdout  # the results are not lost

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    done = cli(*BENCH, "--model", roomy_model, "--format", "json", "--output", fifo)
    reader.join(30)
    assert done.returncode == 0, done.stderr
    assert json.loads(got[0])["plan"]["token_counts"] == [1] and fifo.is_fifo()

    to_stdout = cli(*BENCH, "--model", roomy_model, "--format", "json", "--output", "/dev/stdout")
    assert to_stdout.returncode == 0 and json.loads(to_stdout.stdout)["plan"]["runs"] == 1
    dash = cli(*BENCH, "--model", roomy_model, "--format", "json", "--output", "-")
    assert dash.returncode == 0 and json.loads(dash.stdout)["plan"]["runs"] == 1 and not os.path.exists("-")


def test_bench_refuses_a_bad_output_before_running(roomy_model, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for output, message in ((tmp_path, f"{tmp_path} is a folder; name a file"),
                            (tmp_path / "file.txt" / "r.md", f"{tmp_path / 'file.txt'} is a file, not a folder")):
        done = cli(*BENCH, "--model", roomy_model, "--output", output)
        assert done.returncode == 2 and message in done.stderr
        assert "[1/" not in done.stderr  # no run was made


def test_bench_md_with_one_token_says_n_a_not_nan(roomy_model):
    done = cli(*BENCH, "--model", roomy_model)
    assert done.returncode == 0, done.stderr
    assert "nan" not in done.stdout and "| 1 | burst vs default |" in done.stdout and "| n/a |" in done.stdout


def test_bench_names_an_unknown_mode_before_counting_them(roomy_model):
    done = cli("bench", "--modes", "nope", "--model", roomy_model, "--no-log")
    assert done.returncode == 2
    assert "unknown mode 'nope'; valid modes: burst, sustained_high_performance, default, power_saver" in done.stderr


# --- Windows line endings ----------------------------------------------------------------

@pytest.mark.parametrize("text", ["abc\r\nd\r\n", "abc\rd\r"])
def test_crlf_and_lone_cr_on_stdin_read_as_newlines(tiny_model, text):
    done = cli("run", "-", "--model", tiny_model, "--raw", "--max-new-tokens", "2", "--json", "--no-log",
               input=text)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prompt_tokens"] == 6  # a b c \n d \n


def test_crlf_in_the_prompt_argument(tiny_model):
    done = cli("run", "abc\r\nd", "--model", tiny_model, "--raw", "--max-new-tokens", "2", "--json", "--no-log")
    assert done.returncode == 0 and json.loads(done.stdout)["prompt_tokens"] == 5


def test_a_full_disk_under_the_diagnostics_log_prints_no_logging_traceback(small_disk):
    state = small_disk / "state"
    (state / "antinet-tui" / "log").mkdir(parents=True)
    fill(small_disk)
    code = ("import logging; from antinet_tui.frontends.cli import configure_logging; configure_logging(); "
            "logging.getLogger('antinet_tui').error('x' * 100_000); print('still here')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "XDG_STATE_HOME": str(state)})
    assert done.returncode == 0 and done.stdout == "still here\n"
    assert done.stderr == ""  # logging's "--- Logging error ---" traceback would be here


@pytest.mark.parametrize("command", [["run", "hi", "--max-new-tokens", "4"], ["run", "hi", "--json", "--max-new-tokens", "4"], ["info"]])
def test_standard_output_on_a_full_disk_is_a_message_not_a_traceback(tiny_model, tmp_path, dev_full, command):
    log = tmp_path / "session.jsonl"
    with open(dev_full, "w") as full:
        done = subprocess.run([sys.executable, "-m", "antinet_tui", *command, "--model", str(tiny_model),
                               "--log-file", str(log)], stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1
    assert done.stderr.endswith("antinet-tui: error: cannot write to standard output: No space left on device\n")
    assert "Traceback" not in done.stderr
    assert not read_session(log).skipped
    if command[0] == "run":  # the answer it could not print is recorded (cut short if it was still running)
        assert [r["kind"] for r in read_session(log)][-1] in ("cancelled", "finished")


def test_locate_with_standard_output_full(dev_full):
    with open(dev_full, "w") as full:
        done = subprocess.run([sys.executable, "-m", "antinet_tui", "locate"], stdout=full, stderr=subprocess.PIPE,
                              text=True)
    assert done.returncode == 1 and "cannot write to standard output" in done.stderr


def test_bench_prompts_from_stdin_with_windows_line_endings(roomy_model):
    done = cli(*BENCH, "--model", roomy_model, "--format", "json", "--prompts", "-", input="hello there\r\nsay hi\r\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plan"]["prompts"] == ["hello there", "say hi"]


def test_served_requests_read_windows_line_endings_as_newlines():
    from antinet_tui.config import Settings
    from antinet_tui.frontends.server.schemas import parse_chat, parse_completion

    chat = parse_chat({"messages": [{"role": "user", "content": "Say hi.\r\nThanks\r"}]}, Settings())
    assert chat.generation.prompt == "Say hi.\nThanks\n"
    assert [m.content for m in chat.generation.messages] == ["Say hi.\nThanks\n"]
    completion = parse_completion({"prompt": "a\r\nb"}, Settings())
    assert completion.generation.prompt == "a\nb"


def test_sigterm_during_bench_reports_the_finished_runs_and_records_them(roomy_model, tmp_path):
    log = tmp_path / "session.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "bench", "--model", str(roomy_model), "--modes",
                             "burst,default", "--tokens", "2,400", "--runs", "4", "--warmup", "0", "--format", "json",
                             "--log-file", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "[8/16]" not in (line := proc.stderr.readline()):  # the 2-token runs are done; 400-token ones run
        assert line, "bench ended early"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by the operator after" in err and "Traceback" not in err
    assert 8 <= len(json.loads(out)["runs"]) < 16
    [record] = [r for r in read_session(log) if r["kind"] == "experiment"]
    assert 8 <= len(record["runs"]) < 16
