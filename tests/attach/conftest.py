"""A real `antinet-tui serve --headless` process on a loopback port (the tiny generated
model where speed matters) and the attached dashboard, as `antinet-tui attach` builds it."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from antinet_tui.config import Settings
from antinet_tui.frontends.attach_cli import attached_app

sys.path.insert(0, str(Path(__file__).parents[1] / "app"))  # app_helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServeProcess:
    """One `serve --headless` child; `restart()` starts it again on the same port."""

    args: list[str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> ServeProcess:
        self.starts += 1
        log = self.log_dir / f"session-{self.starts}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "antinet_tui", "serve", "--headless", "--port", str(self.port),
             "--log-file", str(log), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
        if wait_ready:
            self.read_until(r"^.*ready: ")
        return self

    def read_until(self, pattern: str, timeout: float = 120) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"serve printed no line matching {pattern!r} within {timeout} s"
            line = self.proc.stdout.readline()
            assert line, f"serve ended before printing {pattern!r}: {self.proc.stderr.read()}"
            if re.search(pattern, line):
                return line

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def snapshot(self, key: str | None = None) -> dict:
        """What the server itself reads back (GET /attach/snapshot)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.get(self.url + "/attach/snapshot", headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def serve(tmp_path, tiny_model):
    """serve(*extra_args) -> a started ServeProcess on the tiny model; stopped at teardown."""
    started: list[ServeProcess] = []

    def make(*args: str, model: Path | None = None, wait_ready: bool = True) -> ServeProcess:
        process = ServeProcess(["--model", str(model or tiny_model), "--temperature", "0", *args], tmp_path)
        started.append(process)
        return process.start(wait_ready)

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def attach(tmp_path):
    """attach(url, **settings) -> the attached DashboardApp (its client shut down at teardown)."""
    apps = []

    def make(url: str, **settings):
        app = attached_app(url, Settings(no_log=True, **settings), export_dir=tmp_path / "exports")
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.service.shutdown(1.0)


@dataclass
class InProcessServer:
    url: str
    service: object
    thread: object

    def stop(self) -> None:
        self.thread.drain_and_stop(10)
        self.service.shutdown()


def launch_in_process(model: Path, log_file: Path, **overrides) -> InProcessServer:
    """The engine service and the HTTP server on its own thread, as `serve` runs them beside
    the dashboard: a real socket, faster to start than a process."""
    from dataclasses import replace

    from antinet_tui.frontends.server.runner import ServerThread, bind, build_server
    from antinet_tui.frontends.wiring import build_service

    settings = replace(Settings(model=str(model), log_file=str(log_file), temperature=0.0), **overrides)
    service = build_service(settings)
    sock = bind("127.0.0.1", 0)
    thread = ServerThread(build_server(service, settings), sock)
    service.start()
    assert service.wait_ready(60), service.load_error()
    thread.start()
    return InProcessServer(f"http://127.0.0.1:{sock.getsockname()[1]}", service, thread)


@pytest.fixture
def start_server(tmp_path):
    running: list[InProcessServer] = []

    def start(model: Path, **overrides) -> InProcessServer:
        item = launch_in_process(model, tmp_path / f"session-{len(running)}.jsonl", **overrides)
        running.append(item)
        return item

    yield start
    for item in running:
        item.stop()
