"""`run_dashboard(settings)`: what `antinet-tui` with no subcommand runs."""

from __future__ import annotations

from antinet_tui.config import Settings
from antinet_tui.frontends.app.app import SHUTDOWN_TIMEOUT_S, DashboardApp
from antinet_tui.frontends.wiring import build_service


def run_dashboard(settings: Settings) -> int:
    """Open the dashboard; returns the exit code. The model loads after the first frame.

    A crash inside the app is not swallowed: Textual prints the traceback and the return
    code is non-zero."""
    service = build_service(settings)  # its EngineError is the CLI's to report
    app = DashboardApp(service, settings)
    app.quit_on_termination_signals()
    try:
        app.run()
    finally:
        service.shutdown(SHUTDOWN_TIMEOUT_S)  # idempotent; covers an exit that skipped action_quit
    return app.return_code or 0
