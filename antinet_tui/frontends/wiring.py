"""Settings -> a ready-to-start engine service: shared by the CLI, the dashboard and the
server. The one place the concrete EngineService is built; the frontends see only the
EngineClient surface it implements (runtime/client.py)."""

from __future__ import annotations

from antinet_tui.config import ConfigError, Settings
from antinet_tui.engine.backends import create_backend
from antinet_tui.engine.errors import UnknownMode
from antinet_tui.frontends.common import LOG_CHOICE
from antinet_tui.runtime.breaker import BreakerConfig, CircuitBreaker
from antinet_tui.runtime.client import EngineClient
from antinet_tui.runtime.service import EngineService
from antinet_tui.runtime.session_log import SessionLog, SessionLogError, default_log_path


def build_service(settings: Settings, modes_used: tuple[str, ...] = ()) -> EngineClient:
    """Backend + breaker + session log wired into an EngineService (not started). The
    configured mode is checked here; the frontend asks for it once the service started
    (set_mode(..., requested_by="settings")), so it can wait for its readback.

    `modes_used`: other modes the command will switch to (bench's), checked the same way.
    Raises EngineError (ModelNotFound, UnknownMode, ...) or ConfigError (an unwritable
    session log) with a message for the operator.
    """
    backend = create_backend(settings.backend, settings.model, n_ctx=settings.ctx, mode=settings.mode)
    modes = backend.capabilities().mode_names
    for mode in (settings.mode, *modes_used):  # a mistyped mode is named before any work
        if mode is not None and mode not in modes:
            raise UnknownMode(mode, modes)
    breaker = CircuitBreaker(BreakerConfig(
        window_size=settings.breaker_window, minimum_calls=settings.breaker_min_calls,
        slow_call_ms=settings.slow_call_ms, open_wait_s=settings.breaker_wait_s,
        half_open_probes=settings.breaker_probes))
    log = None
    if not settings.no_log:
        path = settings.log_file or default_log_path()
        try:
            log = SessionLog(path)
        except SessionLogError as exc:
            raise ConfigError(f"{exc} ({LOG_CHOICE})") from None
    return EngineService(backend, queue_size=settings.queue_size, max_queue_wait_s=settings.max_queue_wait_s,
                         breaker=breaker, session_log=log)
