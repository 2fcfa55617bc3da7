"""`run_dashboard(settings)`: what `antinet-tui` with no subcommand runs."""

from __future__ import annotations

import sys

from antinet_tui.config import APP_NAME, Settings
from antinet_tui.engine.errors import EngineError
from antinet_tui.frontends.app.app import SHUTDOWN_TIMEOUT_S, DashboardApp
from antinet_tui.frontends.common import exit_for
from antinet_tui.frontends.wiring import build_service


def run_dashboard(settings: Settings) -> int:
    """Open the dashboard; returns the exit code. The model loads after the first frame.

    A crash inside the app is not swallowed: Textual prints the traceback and the return
    code is non-zero."""
    try:
        service = build_service(settings)
    except EngineError as exc:
        print(f"{APP_NAME}: error: {exc}", file=sys.stderr)
        return int(exit_for(exc))
    app = DashboardApp(service, settings)
    try:
        app.run()
    finally:
        service.shutdown(SHUTDOWN_TIMEOUT_S)  # idempotent; covers an exit that skipped action_quit
    return app.return_code or 0
