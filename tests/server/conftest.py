"""A real server on a free loopback port, in this process: the engine service, the
Starlette app and uvicorn on its own thread, exactly as `antinet-tui serve` runs them
beside the dashboard. Clients talk to it over real sockets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from tiny_models import write_tiny_model

from antinet_tui.config import Settings
from antinet_tui.frontends.server.runner import ServerThread, bind, build_server
from antinet_tui.frontends.wiring import build_service


@dataclass
class RunningServer:
    url: str
    service: object
    server: object
    thread: ServerThread
    served: list
    log_file: Path

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        self.thread.drain_and_stop(10)
        self.service.shutdown()


def launch(model, log_file: Path, *, wait_ready: bool = True, start_service: bool = True,
           **overrides) -> RunningServer:
    settings = replace(Settings(model=str(model), log_file=str(log_file), temperature=0.0), **overrides)
    service = build_service(settings)
    served: list = []
    server = build_server(service, settings, served.append)
    sock = bind("127.0.0.1", 0)
    thread = ServerThread(server, sock)
    if start_service:
        service.start()
        if wait_ready:
            assert service.wait_ready(120), service.load_error()
    thread.start()
    assert server.started, "the HTTP server did not start"
    return RunningServer(f"http://127.0.0.1:{sock.getsockname()[1]}", service, server, thread, served, log_file)


@pytest.fixture
def start_server(tmp_path):
    """start_server(model, [log_file=PATH], **settings) -> RunningServer; drained and stopped at teardown."""
    running: list[RunningServer] = []

    def start(model, log_file: Path | None = None, **kwargs) -> RunningServer:
        item = launch(model, log_file or tmp_path / f"session-{len(running)}.jsonl", **kwargs)
        running.append(item)
        return item

    yield start
    for item in running:
        item.stop()


@pytest.fixture(scope="session")
def slower_model(tmp_path_factory):
    """A tiny model big enough that a long answer holds the engine for seconds."""
    return write_tiny_model(tmp_path_factory.mktemp("serve") / "slower.gguf", context_length=4096, d_model=256,
                            n_layers=6, ffn_dim=768)


@pytest.fixture(scope="module")
def smol_server(tmp_path_factory, real_model):
    """One server on the real SmolLM2 for a whole module (loading it takes seconds), with
    its caches and logs kept out of the user's directories like every test's."""
    root = tmp_path_factory.mktemp("smol-server")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANTINET_CACHE_DIR", str(root / "cache"))
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        item = launch(real_model, root / "session.jsonl")
        yield item
        item.stop()
