"""`antinet-tui serve`: the OpenAI-compatible HTTP API on the engine service, with the
dashboard on the same service (unless --headless or stdout is not a terminal)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from antinet_tui.config import APP_NAME, Settings, config_path
from antinet_tui.exit_codes import Exit
from antinet_tui.frontends.common import fail, log_loss_message, log_lost_exit

if TYPE_CHECKING:
    from antinet_tui.frontends.server.served import Served
    from antinet_tui.runtime.client import LogStatus

logger = logging.getLogger(__name__)


def add_serve_parser(sub, parents: list[argparse.ArgumentParser], epilog: str) -> None:
    p = sub.add_parser(
        "serve", parents=parents, epilog=epilog, help="serve the model over HTTP (OpenAI-compatible API, /metrics)",
        description="Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, "
                    "/v1/models), with /health, /ready and Prometheus /metrics. The dashboard watches the served "
                    "traffic unless --headless is given or stdout is not a terminal. The generation options set the "
                    "defaults for requests that leave a field out. SIGTERM or Ctrl-C drains: new requests get 503, "
                    "requests in flight finish (up to --drain-timeout), then the process exits 0.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1); a non-loopback address needs an API key")
    p.add_argument("--port", type=int, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every route but /health "
                                     "(prefer $ANTINET_API_KEY: a flag shows in the process list)")
    p.add_argument("--watch-key", help="a second key that lets `antinet-tui attach` watch but not control "
                                       "(prefer $ANTINET_WATCH_KEY); see docs/attach.md")
    p.add_argument("--headless", action="store_true", help="no dashboard: one line per request on stdout "
                                                           "(what a systemd unit runs)")
    p.add_argument("--drain-timeout", dest="drain_timeout_s", type=float,
                   help="seconds requests in flight may take to finish on shutdown (default 30)")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from antinet_tui.frontends.server.runner import bind, is_loopback

    if settings.api_key is None and not is_loopback(settings.host):
        return fail(
            f"refusing to serve on {settings.host} without an API key: anyone who can reach it could use the "
            f"model. Set a key with --api-key KEY, the environment variable ANTINET_API_KEY=KEY, or "
            f"api_key = \"KEY\" in {config_path()}; or bind 127.0.0.1", Exit.USAGE)
    headless = getattr(args, "headless", False) or not (sys.stdout.isatty() or os.environ.get("ANTINET_FORCE_TUI"))

    from antinet_tui.frontends.wiring import build_service  # imports numpy: not for --help

    service = build_service(settings)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        service.shutdown()
        return fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", Exit.USAGE)
    try:
        if headless:
            return _serve_headless(service, settings, sock)
        return _serve_with_dashboard(service, settings, sock)
    finally:
        service.shutdown()
        sock.close()


def _url(sock, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _serve_headless(service, settings: Settings, sock) -> int:
    import asyncio

    from antinet_tui.frontends.server.runner import build_server
    from antinet_tui.runtime.events import Loaded, LoadFailed, SessionLogFailed

    lines = LinePrinter(sys.stdout, sys.stderr, LogLossNotices(service.log_status))
    load_failed: list[str] = []
    server = build_server(service, settings, lines.served)
    url = _url(sock, settings.host)

    def on_event(event) -> None:
        if isinstance(event, Loaded):
            info = event.model_info
            lines.put(f"ready: {info.name} on {info.backend}, serving {url}/v1")
        elif isinstance(event, LoadFailed):
            load_failed.append(event.error)
            lines.put(f"the model could not be loaded: {event.error}")
            server.begin_drain()
        elif isinstance(event, SessionLogFailed):
            lines.check_notices()

    service.subscribe(on_event)
    lines.put(f"{APP_NAME} listening on {url} (the model loads; requests get 503 until it is ready)")
    service.start()
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:  # a Ctrl-C landing outside uvicorn's handler (start-up)
        pass
    lines.put(f"stopped ({_plural(server.in_flight, 'request')} cancelled)" if server.in_flight else "stopped")
    lines.close()
    if load_failed:
        return fail(load_failed[0], Exit.MODEL)
    return log_lost_exit(service, Exit.OK)


def _serve_with_dashboard(service, settings: Settings, sock) -> int:
    """The dashboard owns the main thread (and SIGTERM/SIGHUP: they quit it as ctrl+q does);
    the server runs beside it and drains once the dashboard has quit."""
    import signal

    from antinet_tui.frontends.app.app import DashboardApp, ServingView
    from antinet_tui.frontends.server.runner import ServerThread, build_server

    server = build_server(service, settings)
    thread = ServerThread(server, sock)
    service.start()
    thread.start()
    if not server.started:
        thread.drain_and_stop(5)
        return fail(f"the HTTP server did not start: {thread.error or 'no reason given'} (see the diagnostics log)",
                    Exit.FAILED)
    address = _url(sock, settings.host).removeprefix("http://")
    app = DashboardApp(service, settings, owns_service=False,
                       serving=ServingView(address, lambda: len(server.server_state.connections)))
    app.quit_on_termination_signals()
    try:
        app.run()
    finally:
        if server.in_flight:
            print(f"{APP_NAME}: draining {_plural(server.in_flight, 'request')} "
                  f"(up to {settings.drain_timeout_s:g} s)", file=sys.stderr)
        thread.drain_and_stop(settings.drain_timeout_s + 5)
    code = app.return_code or 0
    # a termination signal asked for the drain that just happened: that is a clean stop
    return log_lost_exit(service, 0 if code in (128 + signal.SIGTERM, 128 + signal.SIGHUP) else code)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


LINE_BACKLOG = 1000  # lines waiting for stdout; more are dropped and counted (a line is ~0.2-2 KB)


class LinePrinter:
    """The headless output: a line per answered request on `out`, the session log's
    notices (`notices`, see LogLossNotices) on `err`, written by a thread of its own.

    Callers never wait on it. put() is called on the event loop (check_notices() on the
    runtime's dispatcher): blocking either on a stdout nobody reads fast enough
    (a pipe to a slow consumer, a stalled journald) would stop every client's answer, the
    drain and /health for the sake of a log line, so the lock is held for an append or a
    swap, never for a write. The cost is that lines are dropped instead: at most `backlog`
    wait (so memory stays bounded under any flood); further ones are counted, and one
    "N lines dropped" line is written where they are missing once the printer catches up."""

    def __init__(self, out: TextIO, err: TextIO, notices: Callable[[], list[str]] = list,
                 backlog: int = LINE_BACKLOG):
        self._out, self._err = out, err
        self._notices = notices
        self._backlog = backlog
        self._lines: deque[str] = deque()
        self._dropped = 0  # lines dropped since the writer last took the backlog
        self._check = False  # the notices may have changed
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._write, name="antinet-lines", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        with self._wake:
            if len(self._lines) >= self._backlog:
                self._dropped += 1
                return
            self._lines.append(line)
            self._wake.notify()

    def served(self, served: Served) -> None:
        self.put(format_served(served))

    def check_notices(self) -> None:
        """Ask for the notices again soon (the session log just lost a record)."""
        with self._wake:
            self._check = True
            self._wake.notify()

    @property
    def backlog(self) -> int:
        """Lines waiting to be written."""
        with self._wake:
            return len(self._lines)

    def close(self, timeout: float = 2.0) -> None:
        """Write what waits (for up to `timeout` s: stdout may be stuck), then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _write(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._lines or self._dropped or self._check or self._closed)
                # the whole backlog at once: the lines dropped since the last take all came after these
                lines, dropped, closing = list(self._lines), self._dropped, self._closed
                self._lines.clear()
                self._dropped, self._check = 0, False
            if dropped:
                lines.append(f"{time.strftime('%H:%M:%S')} {_plural(dropped, 'line')} dropped: "
                             "standard output did not keep up")
            try:
                if lines:
                    self._out.write("".join(f"{line}\n" for line in lines))
                    self._out.flush()
                # after every batch too: the records of the requests just told may have been
                # the first the log could write again
                if notices := self._safe_notices():
                    self._err.write("".join(f"{notice}\n" for notice in notices))
                    self._err.flush()
            except (OSError, ValueError):  # the output is gone (closed, broken pipe): drop from now on
                return
            if closing:
                return

    def _safe_notices(self) -> list[str]:
        try:
            return self._notices()
        except Exception:
            logger.exception("the headless notices failed")
            return []


class LogLossNotices:
    """The session log's health as a headless operator reads it (on stderr): one notice
    when records start being lost (with the reason and the path), one when a record is
    written again (a disk that has room again), not one per lost record. Called on the
    printer's thread only, so it needs no lock."""

    def __init__(self, log_status: Callable[[], LogStatus]):
        self._log_status = log_status
        self._lost = 0  # records lost when last looked
        self._lost_before: int | None = None  # while losing: records lost before this spell began

    def __call__(self) -> list[str]:
        status = self._log_status()
        notices = []
        if self._lost_before is None and status.lost > self._lost:
            notices.append(log_loss_message(status.path, status.failure))
            self._lost_before = self._lost
        if self._lost_before is not None and not status.failing:
            notices.append(f"{APP_NAME}: session log {status.path}: records are written again "
                           f"({_plural(status.lost - self._lost_before, 'record')} lost)")
            self._lost_before = None
        self._lost = status.lost
        return notices


def format_served(served: Served) -> str:
    """The headless line: time, request id (- when the runtime never saw the request),
    client, method and path, status, outcome, the error's cause, the figures when there
    are any, and the message the client got."""
    when = time.strftime("%H:%M:%S", time.localtime(served.wall))
    rid = f"#{served.request_id}" if served.request_id is not None else "-"
    parts = [when, rid, served.origin, served.method, _one_line(served.route), str(served.status), served.outcome]
    if served.cause and served.cause != served.outcome:
        parts.append(served.cause)
    m = served.metrics
    if m is not None:
        parts.append(f"tokens {m.prompt_tokens or 0}+{m.generated_tokens}")
        if m.ttft_ms is not None:
            parts.append(f"ttft {m.ttft_ms:.0f}ms")
        if m.decode_tok_s is not None:
            parts.append(f"decode {m.decode_tok_s:.1f}tok/s")
        parts.append(f"e2e {m.e2e_ms:.0f}ms")
        parts.append(f"queue {m.queue_wait_ms:.0f}ms")
        if m.mode:
            parts.append(f"mode {m.mode}")
        if m.stop_reason:
            parts.append(f"stop {m.stop_reason}")
    if served.error:
        parts[-1] += f": {_one_line(served.error)}"
    return " ".join(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str) -> str:
    """`text` with its control characters escaped as Python writes them (\\n, \\x85): a
    path or a message is the client's to choose ("%0A" in a path is a newline), and must
    not start a line of its own."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)
