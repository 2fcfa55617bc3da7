"""`antinet-tui attach` on the command line: bad URLs and a missing terminal are told
plainly with exit 2; --help documents it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from antinet_tui.frontends.attach_cli import server_url


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "antinet_tui", "attach", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("url", "says"), [
    ("127.0.0.1:8080", "not an http:// or https:// URL"),
    ("ftp://host:21", "not an http:// or https:// URL"),
    ("http://", "names no host"),
    ("http://host:99999", "invalid port"),
    ("http://host:8080/v1", "without a path"),
])
def test_a_bad_url_is_named_with_exit_2(url, says):
    done = run(url)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr


def test_without_a_terminal_it_says_what_to_use_instead():
    done = run("http://127.0.0.1:9")  # stdout is a pipe here
    assert done.returncode == 2
    assert "needs a terminal" in done.stderr and "/attach/snapshot" in done.stderr


def test_help_documents_it():
    done = run("--help")
    assert done.returncode == 0
    assert "--api-key" in done.stdout and "watch key" in done.stdout


def test_a_good_url_is_kept_to_its_base():
    assert server_url(" http://devkit.local:8080/ ") == "http://devkit.local:8080"
    assert server_url("https://[::1]:9000") == "https://[::1]:9000"
