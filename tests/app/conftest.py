"""A dashboard over a deterministic fake backend, with a frozen breaker clock and a fixed
system sample; every service made here is shut down after the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import NotifiedDashboard
from fake_backend import FixedSampler
from fakes import FakeBackend, FakeClock

from antinet_tui.config import Settings
from antinet_tui.runtime.breaker import BreakerConfig, CircuitBreaker
from antinet_tui.runtime.metrics import MetricsStore
from antinet_tui.runtime.service import EngineService
from antinet_tui.runtime.session_log import SessionLog


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(tmp_path: Path, clock: FakeClock):
    services: list[EngineService] = []

    def make(
        backend: FakeBackend | None = None,
        *,
        settings: Settings | None = None,
        queue_size: int = 8,
        metrics: MetricsStore | None = None,
        log: bool | Path = False,
        **app_options,
    ) -> NotifiedDashboard:
        breaker = CircuitBreaker(BreakerConfig(), clock=clock)
        session_log = SessionLog(tmp_path / "session.jsonl" if log is True else log) if log else None
        service = EngineService(
            backend or FakeBackend(), queue_size=queue_size, breaker=breaker, metrics=metrics, session_log=session_log
        )
        services.append(service)
        settings = settings or Settings(no_log=True, refresh_s=0.5)
        app_options.setdefault("export_dir", tmp_path / "exports")
        return NotifiedDashboard(service, settings, sampler=FixedSampler(), **app_options)

    yield make
    for service in services:
        service.shutdown()
