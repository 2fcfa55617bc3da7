"""The fake qai_appbuilder itself behaves as the real binding is documented to."""

from __future__ import annotations

import importlib
import json
import sys
import threading

import pytest
from genie_bundles import FAKE_BINDING

from antinet_tui.engine.genie.bundle import GenieBundle
from antinet_tui.engine.genie.profile import query_events


@pytest.fixture
def qai_appbuilder(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_BINDING))
    module = importlib.import_module("qai_appbuilder")
    yield module
    sys.modules.pop("qai_appbuilder", None)


@pytest.fixture
def private_config(bundle, tmp_path) -> str:
    return str(GenieBundle.open(bundle).write_private(None, tmp_path / "s"))


@pytest.fixture
def context(qai_appbuilder, private_config):
    return qai_appbuilder.GenieContext(private_config)


def test_query_blocks_resets_and_streams_multi_token_chunks(context):
    chunks: list[str] = []
    assert context.Query("hello hello hello", chunks.append) is True
    assert chunks[:3] == [" w0", " w1 w2", " w3"]
    assert context.Query("hello", lambda text: None) is True
    events = query_events(context.GetProfile())
    assert [e["num-prompt-tokens"]["value"] for e in events] == [3, 1]  # no carried-over state


def test_set_params_takes_strings_only_and_caps_the_reply(context):
    with pytest.raises(TypeError, match="incompatible function arguments"):
        context.SetParams(4, "0.8", "40", "0.95")
    with pytest.raises(ValueError):
        context.SetParams("many", "0.8", "40", "0.95")
    assert context.SetParams("4", "0.8", "40", "0.95") is True
    chunks: list[str] = []
    context.Query("hello", chunks.append)
    assert "".join(chunks) == " w0 w1 w2 w3"


def test_stop_from_another_thread(qai_appbuilder, private_config, monkeypatch):
    monkeypatch.setenv("FAKE_GENIE_TOKEN_DELAY_S", "0.01")
    monkeypatch.setenv("FAKE_GENIE_REPLY_TOKENS", "1000")
    context = qai_appbuilder.GenieContext(private_config)
    chunks: list[str] = []
    threading.Timer(0.1, context.Stop).start()
    context.Query("hello", chunks.append)
    assert 0 < len("".join(chunks).split()) < 1000


def test_profile_events_grow_one_query_at_a_time(context):
    created = json.loads(context.GetProfile())["components"][0]["events"]
    assert [e["type"] for e in created] == ["GenieDialog_create"]
    for _ in range(3):
        context.Query("hello", lambda text: None)
    assert len(query_events(context.GetProfile())) == 3


def test_a_bad_config_fails_silently(qai_appbuilder, tmp_path, capfd):
    context = qai_appbuilder.GenieContext(str(tmp_path / "missing.json"))
    assert context.TokenLength("hello") == 0
    assert context.GetProfile() == ""
    assert "Failed to open Genie config file" in capfd.readouterr().err


def test_relative_paths_resolve_against_the_cwd_like_genie(qai_appbuilder, bundle, capfd):
    context = qai_appbuilder.GenieContext(str(bundle))  # the user's file, relative paths
    assert context.TokenLength("hello") == 0
    assert "Failed to create the Genie Dialog." in capfd.readouterr().err
