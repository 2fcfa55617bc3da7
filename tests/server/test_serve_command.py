"""`antinet-tui serve` as a process: start-up refusals, headless lines, SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from child_output import ChildOutput


def serve_process(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "antinet_tui", "serve", "--headless", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def start(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str, ChildOutput]:
    """A ready server: the process, its URL and its stdout being read."""
    proc = serve_process(*args, env=env)
    out = ChildOutput(proc.stdout)
    url = out.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    out.wait_for(r"^ready: ")
    return proc, url, out


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "antinet_tui", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_help_lists_the_serving_and_engine_options():
    out = cli("serve", "--help").stdout
    for option in ("--host", "--port", "--api-key", "--headless", "--drain-timeout", "--model", "--mode",
                   "--max-new-tokens", "--temperature", "--system", "--log-file"):
        assert option in out


def test_a_public_address_without_a_key_is_refused_with_how_to_set_one(tiny_model):
    result = cli("serve", "--headless", "--host", "0.0.0.0", "--model", str(tiny_model))
    assert result.returncode == 2
    assert "without an API key" in result.stderr and "--api-key" in result.stderr
    assert "ANTINET_API_KEY" in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error(tiny_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--headless", "--port", str(port), "--model", str(tiny_model), "--no-log")
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [(("--port", "70000"), "port must be at most 65535"),
                                           (("--drain-timeout", "-1"), "drain_timeout_s must be at least 0")])
def test_bad_serving_settings_exit_2(tiny_model, args, message):
    result = cli("serve", "--headless", "--model", str(tiny_model), *args)
    assert result.returncode == 2 and message in result.stderr


def test_the_key_from_the_environment_is_enforced_and_lines_are_printed(tiny_model):
    proc, url, out = start("--model", str(tiny_model), "--no-log", "--max-new-tokens", "4",
                           env={"ANTINET_API_KEY": "from-env"})
    try:
        assert httpx.get(url + "/v1/models").status_code == 401
        out.wait_for(r"^\d\d:\d\d:\d\d - 127\.0\.0\.1:\d+ GET /v1/models 401 error invalid_api_key: ")
        reply = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer from-env"},
                           json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        assert reply.status_code == 200
        line = out.wait_for(r"#(\d+) 127\.0\.0\.1:\d+ POST /v1/chat/completions 200 finished (.*)")
        assert line.group(1) == str(reply.json()["timings"]["request_id"])
        assert "ttft" in line.group(2) and "e2e" in line.group(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def stream_in_thread(url: str, body: dict) -> tuple[threading.Thread, list, threading.Event]:
    lines: list[str] = []
    started = threading.Event()

    def run() -> None:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                if '"content": "' in line and '"role"' not in line:
                    started.set()
        started.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, lines, started


def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0(real_model):
    proc, url, out = start("--no-log", "--temperature", "0")
    body = {"messages": [{"role": "user", "content": "Write a short poem about the sea."}], "max_tokens": 48,
            "stream": True}
    thread, lines, started = stream_in_thread(url, body)
    assert started.wait(60)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while True:  # the signal lands within moments; from then on new requests get 503
        refused = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                             timeout=30)
        if refused.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
    assert "Retry-After" in refused.headers
    thread.join(60)
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][6:])
    assert last["choices"][0]["finish_reason"] in ("stop", "length")  # finished, not cut off
    assert proc.wait(30) == 0
    assert "stopped" in out.finish() and "Traceback" not in proc.stderr.read()


def test_requests_outliving_the_drain_timeout_are_cancelled_and_the_exit_is_still_0(real_model):
    proc, url, _ = start("--no-log", "--temperature", "0", "--drain-timeout", "0.5")
    body = {"messages": [{"role": "user", "content": "Count from 1 to 500, one number per line."}],
            "max_tokens": 1000, "stream": True}
    thread, lines, started = stream_in_thread(url, body)
    assert started.wait(60)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert time.monotonic() - signalled < 10
    thread.join(30)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["error"]["code"] == "cancelled"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_dashboard_and_the_api_run_in_one_process_and_sigterm_drains_it(tiny_model):
    """`serve` on a terminal: the dashboard on a pseudo-terminal, the API beside it."""
    import fcntl
    import pty
    import struct
    import termios

    port = free_port()
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))  # rows, columns: room for it all
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "serve", "--port", str(port), "--model",
                             str(tiny_model), "--no-log", "--max-new-tokens", "4"],
                            stdin=child, stdout=child, stderr=child, env={**os.environ, "TERM": "xterm-256color"})
    os.close(child)
    screen = bytearray()
    reader = threading.Thread(target=lambda: _drain_pty(main, screen), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        assert reply.status_code == 200
        deadline = time.monotonic() + 30
        while b"serving 127.0.0.1:" not in screen and time.monotonic() < deadline:  # the dashboard is up
            time.sleep(0.05)
        assert b"serving 127.0.0.1:" in screen
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert b"Traceback" not in screen


def _drain_pty(fd: int, into: bytearray) -> None:
    """Read the dashboard's output (a terminal that nobody reads would block it)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)
