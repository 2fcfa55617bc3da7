"""What every command-line entry point shares: the error line, exit codes for setup
errors, and starting the engine (load, then the requested mode, read back)."""

from __future__ import annotations

import queue
import sys
from typing import TYPE_CHECKING

from antinet_tui.config import APP_NAME
from antinet_tui.engine.errors import EngineError, UnknownBackend, UnknownMode
from antinet_tui.exit_codes import Exit

if TYPE_CHECKING:
    from antinet_tui.runtime.events import Loaded


def fail(message: str, code: Exit) -> int:
    print(f"{APP_NAME}: error: {message}", file=sys.stderr)
    return int(code)


def exit_for(exc: EngineError) -> Exit:
    """A mistyped mode or backend is a usage error; anything else is about the model."""
    return Exit.USAGE if isinstance(exc, (UnknownMode, UnknownBackend)) else Exit.MODEL


def start_engine(service, show_progress: bool, mode: str | None = None) -> Loaded:
    """Start the engine thread and block until the model is loaded and, when `mode` was
    asked for, applied. A knob of the mode that could not be set is printed (a mode is
    never silently a no-op); a mode that could not be applied at all raises EngineError."""
    from antinet_tui.runtime.events import Loaded, LoadFailed, LoadProgress, ModeChanged  # not for --help

    events: queue.Queue = queue.Queue()
    unsubscribe = service.subscribe(lambda e: events.put(e) if isinstance(
        e, (Loaded, LoadFailed, LoadProgress, ModeChanged)) else None)
    loaded = None
    try:
        service.start()
        while True:
            event = events.get()
            if isinstance(event, LoadProgress):
                if show_progress:
                    print(f"\r\033[Kloading: {event.message} ({event.fraction:.0%})", end="", file=sys.stderr,
                          flush=True)
                continue
            if show_progress:
                print("\r\033[K", end="", file=sys.stderr, flush=True)
            if isinstance(event, LoadFailed):
                raise EngineError(event.error)
            if isinstance(event, Loaded):
                loaded = event
                if mode is None:
                    return loaded
            elif isinstance(event, ModeChanged) and event.requested == mode and not event.deferred:
                if event.error or event.readback is None:
                    raise EngineError(f"mode {mode!r} could not be applied: {event.error}")
                for problem in event.readback.not_applied:
                    print(f"{APP_NAME}: warning: mode {mode}: not applied: {problem}", file=sys.stderr)
                if loaded is not None:
                    return loaded
    finally:
        unsubscribe()
