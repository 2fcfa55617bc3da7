"""`antinet-tui attach URL`: the dashboard on a running `antinet-tui serve`, over HTTP.

The app is the same DashboardApp; only its EngineClient (runtime/remote.py) and its
system-stats feed (the serving machine's samples) differ."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from urllib.parse import urlsplit

from antinet_tui.config import Settings
from antinet_tui.exit_codes import Exit
from antinet_tui.frontends.common import fail


def add_attach_parser(sub, parents: list[argparse.ArgumentParser], epilog: str) -> None:
    p = sub.add_parser(
        "attach", parents=parents, epilog=epilog, help="the dashboard on a running `serve` (another machine's, too)",
        description="Open the dashboard on the engine of a running `antinet-tui serve`: its requests (served and "
                    "typed) with their figures, latency charts, breaker, mode and the serving machine's system "
                    "stats, live. The controls act there: a prompt typed here is served there and streams here, "
                    "b and the palette switch its mode, i/r isolate/reset its breaker, the Experiment screen runs "
                    "there. The status line says whether the link is live; it reconnects by itself. The "
                    "generation options set this watcher's own requests.")
    p.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", help="the server's API key (controls and watching) or its watch key (watching "
                                     "only); prefer $ANTINET_API_KEY: a flag shows in the process list")


def server_url(text: str) -> str:
    """The base URL, checked: http(s)://HOST[:PORT], nothing after the port but an optional '/'.
    Raises ValueError saying what is wrong."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)")
    if not parts.hostname:
        raise ValueError(f"{text!r} names no host (e.g. http://127.0.0.1:8080)")
    try:
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r}: give the server's address only, without a path (e.g. http://127.0.0.1:8080)")
    return f"{parts.scheme}://{parts.netloc}"


def cmd_attach(args: argparse.Namespace, settings: Settings) -> int:
    try:
        url = server_url(args.url)
    except ValueError as exc:
        return fail(str(exc), Exit.USAGE)
    if not sys.stdout.isatty() and not os.environ.get("ANTINET_FORCE_TUI"):
        return fail("attach opens the dashboard, which needs a terminal; for scripts, read "
                    f"{url}/attach/snapshot or {url}/metrics", Exit.USAGE)
    from antinet_tui.frontends.app.app import SHUTDOWN_TIMEOUT_S

    app = attached_app(url, settings)
    app.quit_on_termination_signals()
    try:
        app.run()
    finally:
        app.service.shutdown(SHUTDOWN_TIMEOUT_S)
    return app.return_code or 0


def attached_app(url: str, settings: Settings, **app_options):
    """The dashboard on the engine served at `url` (checked by server_url), not yet running."""
    from antinet_tui.frontends.app.app import DashboardApp, ServingView
    from antinet_tui.frontends.app.pacing import ATTACHED_UI_CPU_BUDGET, DrainPacer
    from antinet_tui.runtime.remote import RemoteClient

    client = RemoteClient(url, settings.api_key)
    # the configured start-up mode is this machine's: attaching must not change the server's
    return DashboardApp(client, replace(settings, mode=None), sampler=client.system,
                        serving=ServingView(urlsplit(url).netloc, lambda: client.connections),
                        pacer=DrainPacer(budget=ATTACHED_UI_CPU_BUDGET), **app_options)
