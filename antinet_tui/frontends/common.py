"""What every command-line entry point shares: the error line, exit codes for setup
errors, and starting the engine (load, then the requested mode, read back)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING

from antinet_tui.config import APP_NAME
from antinet_tui.engine.errors import EngineError, UnknownBackend, UnknownMode
from antinet_tui.exit_codes import Exit

if TYPE_CHECKING:
    from antinet_tui.engine.protocol import ModelInfo
    from antinet_tui.runtime.client import EngineClient
    from antinet_tui.runtime.events import Event

_PROGRESS_END_WAIT_S = 2.0  # the dispatcher clears the progress line well within this


LOG_CHOICE = "choose another --log-file, or --no-log"


def fail(message: str, code: Exit) -> int:
    print(f"{APP_NAME}: error: {message}", file=sys.stderr)
    return int(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping us) or SIGHUP (the terminal closed), raised in
    the main thread like Ctrl-C, so the same cleanup runs: the request is cancelled, its
    partial text kept and recorded. The exit status is still the signal's (128 + n)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the termination signals this process received


def _raise_terminated(signum: int, _frame) -> None:
    _received.append(signum)
    raise Terminated(signum)


def end_on_termination_signals() -> None:
    """Handle SIGTERM and SIGHUP as Ctrl-C is handled (see Terminated)."""
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, _raise_terminated)


def interrupted_exit() -> Exit:
    """The exit code of an interrupted command: 130 for Ctrl-C, 128 + n for signal n."""
    return Exit(128 + _received[-1]) if _received else Exit.INTERRUPTED


def watch_session_log(client: EngineClient) -> None:
    """Tell the operator on stderr, at once, the first time the session log loses a
    record (a full disk); `log_lost_exit` turns it into the exit code at the end."""
    from antinet_tui.runtime.events import SessionLogFailed

    def on_event(event: Event) -> None:
        if isinstance(event, SessionLogFailed) and event.lost == 1:
            print(f"\n{log_loss_message(event.path, event.reason)}", file=sys.stderr, flush=True)

    client.subscribe(on_event)


def log_loss_message(path: str | None, reason: str | None) -> str:
    """What the operator is told when the session log starts losing records."""
    return f"{APP_NAME}: error: session log {path}: records are being lost: {reason}"


def log_lost_exit(client: EngineClient, code: int) -> int:
    """`code`, or Exit.LOG_LOST when the command succeeded but the log lost records."""
    log = client.log_status()
    if code == Exit.OK and log.lost:
        return fail(f"the session log {log.path} lost {log.lost} record(s): {log.failure}", Exit.LOG_LOST)
    return code


def unix_newlines(text: str) -> str:
    """CRLF (Windows) and a lone CR (old Mac) read as the newline they mean."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def exit_for(exc: EngineError) -> Exit:
    """A mistyped mode or backend is a usage error; anything else is about the model."""
    return Exit.USAGE if isinstance(exc, (UnknownMode, UnknownBackend)) else Exit.MODEL


def start_engine(client: EngineClient, show_progress: bool, mode: str | None = None) -> ModelInfo:
    """Start the engine and block until the model is loaded and, when `mode` was asked
    for, applied (it applies right after loading, before any request). A knob of the
    mode that could not be set is printed (a mode is never silently a no-op); a model
    that did not load or a mode that could not be applied at all raises EngineError."""
    from antinet_tui.runtime.client import ServiceState  # not for --help
    from antinet_tui.runtime.events import Loaded, LoadFailed, LoadProgress

    shown = threading.Event()  # the progress line is cleared: loading ended

    def show(event: Event) -> None:  # the dispatcher thread: sees every LoadProgress before the end
        if isinstance(event, LoadProgress):
            print(f"\r\033[Kloading: {event.message} ({event.fraction:.0%})", end="", file=sys.stderr, flush=True)
        elif isinstance(event, (Loaded, LoadFailed)):
            print("\r\033[K", end="", file=sys.stderr, flush=True)
            shown.set()

    unsubscribe = client.subscribe(show) if show_progress else None
    try:
        client.start()
        change = client.set_mode(mode, requested_by="settings") if mode is not None else None
        ready = client.wait_ready()
        if show_progress:
            shown.wait(_PROGRESS_END_WAIT_S)
    finally:
        if unsubscribe is not None:
            unsubscribe()
    info = client.model_info()
    if not ready or info is None:
        if client.state is ServiceState.STOPPED:
            raise EngineError("the engine was stopped while loading")
        raise EngineError(client.load_error() or "the model did not load")
    if change is not None:
        applied = change.wait()
        if applied.error or applied.readback is None:
            raise EngineError(f"mode {mode!r} could not be applied: {applied.error}")
        for problem in applied.readback.not_applied:
            print(f"{APP_NAME}: warning: mode {mode}: not applied: {problem}", file=sys.stderr)
    return info
