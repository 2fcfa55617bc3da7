"""Fixtures: a bundle in a temp dir, and GenieBackends whose worker imports the fake binding."""

from __future__ import annotations

from pathlib import Path

import pytest
from genie_bundles import FAKE_BINDING, write_bundle

from antinet_tui.engine.genie import GenieBackend


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundle's config path; the working directory is elsewhere, as for a real user."""
    config = write_bundle(tmp_path / "bundle")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return config


@pytest.fixture
def make_backend(tmp_path: Path):
    """GenieBackend(config, **options) wired to the fake binding, closed after the test."""
    backends: list[GenieBackend] = []

    def make(config: Path, **options) -> GenieBackend:
        options.setdefault("child_sys_path", [str(FAKE_BINDING)])
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("load_timeout_s", 30.0)
        options.setdefault("first_token_timeout_s", 10.0)
        options.setdefault("token_timeout_s", 10.0)
        backend = GenieBackend(config, **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()
