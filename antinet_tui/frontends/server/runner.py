"""Running the HTTP server: uvicorn on a socket we bind ourselves, and a graceful drain.

Drain (SIGTERM, SIGINT, or the dashboard quitting): new requests get 503 at once; those
in flight run to their end for up to `drain_timeout_s`; whatever is still running then
is cancelled (its client gets an error chunk or a 503), and the server stops. A second
signal during the drain stops at once. uvicorn's own handling would instead close the
listening socket (new clients see "connection refused", not a 503) and, after the
server stops, re-raise the signal, so the process would die of it instead of exiting 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from types import FrameType

import uvicorn

from antinet_tui.config import Settings
from antinet_tui.frontends.server.app import ServerOptions, ServerState, create_app
from antinet_tui.frontends.server.attach import AttachGate, AttachOptions
from antinet_tui.frontends.server.served import OnServed
from antinet_tui.runtime.client import EngineClient

logger = logging.getLogger(__name__)

CANCEL_GRACE_S = 2.0  # after cancelling what outlived the drain, time for its last bytes


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, drain_timeout_s: float):
        super().__init__(config)
        self.state = state
        self.drain_timeout_s = drain_timeout_s
        self._drain_deadline: float | None = None
        self._cancelled_at: float | None = None
        state.connections = lambda: len(self.server_state.connections)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler (main thread only; uvicorn installs it in serve())."""
        if self.state.draining:
            self.force_exit = self.should_exit = True  # a second signal: stop now
        else:
            self.begin_drain()

    def begin_drain(self) -> None:
        """Start draining; callable from any thread."""
        if not self.state.draining:
            self._drain_deadline = time.monotonic() + self.drain_timeout_s
            self.state.draining = True
            logger.info("draining: %d request(s) in flight", len(self.state.in_flight))

    async def on_tick(self, counter: int) -> bool:
        """uvicorn calls this every 0.1 s; True ends the main loop."""
        if self.state.draining and self._drain_deadline is not None:
            now = time.monotonic()
            if all(handle.done for handle in self.state.in_flight):
                return True
            if now >= self._drain_deadline and self._cancelled_at is None:
                logger.warning("drain timeout: cancelling %d request(s)", len(self.state.in_flight))
                for handle in list(self.state.in_flight):
                    handle.cancel()
                self._cancelled_at = now
            if self._cancelled_at is not None and now - self._cancelled_at > CANCEL_GRACE_S:
                return True
        return await super().on_tick(counter)

    @property
    def in_flight(self) -> int:
        return len(self.state.in_flight)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: any free port). Raises OSError with the reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def is_loopback(host: str) -> bool:
    """True when every address the host name stands for is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def build_server(service: EngineClient, settings: Settings, on_served: OnServed | None = None) -> DrainingServer:
    """The HTTP server over `service` (any EngineClient), set up from `settings` (not
    started); `on_served` is told of every generation request and every refusal."""
    state = ServerState()
    options = ServerOptions(settings, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                            on_served=on_served)
    attach = AttachOptions(api_key=settings.api_key, watch_key=settings.watch_key,
                           loopback_only=is_loopback(settings.host), refresh_s=settings.refresh_s)
    app = AttachGate(create_app(service, options, state), service, attach,
                     connections=lambda: state.connections(), draining=lambda: state.draining, on_served=on_served)
    return make_server(app, state, settings.drain_timeout_s)


def make_server(app, state: ServerState, drain_timeout_s: float) -> DrainingServer:
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=int(CANCEL_GRACE_S),
                            lifespan="off", server_header=False)
    return DrainingServer(config, state, drain_timeout_s)


class ServerThread:
    """The server on its own thread and event loop, beside the dashboard (which owns the
    main thread and the signals)."""

    def __init__(self, server: DrainingServer, sock: socket.socket):
        self.server = server
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="antinet-http", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by stop(); the dashboard keeps running
            logger.exception("the HTTP server stopped")
            self.error = exc

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def drain_and_stop(self, timeout: float | None = None) -> None:
        self.server.begin_drain()
        self._thread.join(timeout)
