"""One rule for a setting's type, whatever the source (config file, $ANTINET_*, flag):
no value is converted with a loss, and a wrong type is named as such."""

from __future__ import annotations

import subprocess
import sys

import pytest

from antinet_tui.config import ConfigError, load_settings


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("ANTINET_CONFIG", str(path))
    return path


@pytest.mark.parametrize("line,message", [
    ("max_new_tokens = 2.7", "max_new_tokens must be an integer, got 2.7 (a number)"),
    ("max_new_tokens = 3.0", "max_new_tokens must be an integer, got 3.0 (a number)"),
    ("seed = 1.5", "seed must be an integer, got 1.5 (a number)"),
    ("ctx = true", "ctx must be an integer, got True (true/false)"),
    ("model = ['a']", "model must be text, got ['a'] (a list)"),
    ("system = 3", "system must be text, got 3 (an integer)"),
    ("raw = 1", "raw must be true or false, got 1 (an integer)"),
    ("temperature = 'hot'", "temperature must be a number, got 'hot'"),
    ("breaker_window = { a = 1 }", "breaker_window must be an integer, got {'a': 1} (a table)"),
])
def test_the_config_file_refuses_a_value_of_the_wrong_type(config, line, message):
    config.write_text(line + "\n")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == f"{config}: {message}"


@pytest.mark.parametrize("name,value,message", [
    ("MAX_NEW_TOKENS", "3.9", "max_new_tokens must be an integer, got '3.9'"),
    ("SEED", "1.5", "seed must be an integer, got '1.5'"),
    ("TEMPERATURE", "warm", "temperature must be a number, got 'warm'"),
    ("RAW", "maybe", "raw must be true or false, got 'maybe'"),
])
def test_the_environment_follows_the_same_rule(monkeypatch, name, value, message):
    monkeypatch.setenv(f"ANTINET_{name}", value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == f"$ANTINET_{name}: {message}"


def test_what_every_source_accepts(config, monkeypatch):
    config.write_text("max_new_tokens = 7\ntemperature = 1\nmodel = 'm.gguf'\nraw = true\nseed = '5'\n")
    settings = load_settings()
    assert (settings.max_new_tokens, settings.temperature, settings.model, settings.raw, settings.seed) == (
        7, 1.0, "m.gguf", True, 5)
    assert isinstance(settings.temperature, float)
    monkeypatch.setenv("ANTINET_MAX_NEW_TOKENS", " 9 ")
    monkeypatch.setenv("ANTINET_TEMPERATURE", "0.5")
    assert (load_settings().max_new_tokens, load_settings().temperature) == (9, 0.5)
    assert load_settings({"max_new_tokens": 11}).max_new_tokens == 11


def test_a_flag_refuses_a_fraction_too():
    done = subprocess.run([sys.executable, "-m", "antinet_tui", "run", "hi", "--max-new-tokens", "2.7"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--max-new-tokens: invalid int value: '2.7'" in done.stderr
