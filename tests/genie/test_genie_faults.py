"""The NPU path where Genie and qai_appbuilder push back (issue 13, cases 12-14): a reply
that fills the context, the binding versions without `debug`, and the realistic fake
(GIL held through Query, `backend.extensions` optional) as every test's default."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from antinet_tui.engine.genie.errors import GenieNotInstalled
from antinet_tui.engine.protocol import GenerationRequest, StopReason


def run(backend, prompt, **request):
    texts: list[str] = []
    result = backend.generate(GenerationRequest(prompt, chat=False, **request),
                              lambda token_id, text: texts.append(text), threading.Event())
    return result, "".join(texts)


@pytest.mark.parametrize("api_minor", ["13", "12"])
def test_a_reply_that_fills_the_context_keeps_its_text_and_ends_as_context_full(bundle, make_backend, api_minor):
    """The bundle's context holds 512 tokens; 500 of prompt leave room for 12 of reply."""
    backend = make_backend(bundle, child_env={"FAKE_GENIE_REPLY_TOKENS": "100", "FAKE_GENIE_API_MINOR": api_minor})
    backend.load()
    result, streamed = run(backend, "hello " * 500, max_new_tokens=100)
    assert result.stop_reason is StopReason.CONTEXT
    assert result.text == streamed == "".join(f" w{i}" for i in range(12))
    assert result.prompt_tokens + len(result.token_ids) == 512
    again, _ = run(backend, "hello", max_new_tokens=3)  # the worker is fine afterwards
    assert again.text == " w0 w1 w2"


@pytest.mark.parametrize("version", ["2.31.0", "2.33.1"])
def test_a_binding_without_debug_loads_with_the_config_alone(bundle, make_backend, version):
    backend = make_backend(bundle, child_env={"FAKE_GENIE_BINDING_VERSION": version})
    backend.load()
    result, _ = run(backend, "hello", max_new_tokens=2)
    assert result.text == " w0 w1"


def test_debug_on_a_binding_without_it_names_the_versions(bundle, make_backend):
    backend = make_backend(bundle, debug=True, child_env={"FAKE_GENIE_BINDING_VERSION": "2.32.0"})
    with pytest.raises(GenieNotInstalled, match=r"qai_appbuilder 2\.32\.0 .*debug.* needs qai_appbuilder 2\.34"):
        backend.load()


def test_a_query_that_holds_the_gil_leaves_our_process_free(bundle, make_backend):
    """The fake holds the GIL through Query, as the real binding does; that is why the
    binding runs in a worker process: this process's threads keep running meanwhile."""
    backend = make_backend(bundle, child_env={"FAKE_GENIE_TOKEN_DELAY_S": "0.05", "FAKE_GENIE_REPLY_TOKENS": "8"})
    backend.load()
    ticks = 0
    stop = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.monotonic()
    run(backend, "hello", max_new_tokens=8)
    stop.set()
    ticker.join()
    assert ticks > (time.monotonic() - started) * 100  # this process kept running meanwhile


def test_the_fake_holds_the_gil_in_process(bundle, tmp_path, monkeypatch):
    import importlib
    import sys

    from genie_bundles import FAKE_BINDING

    from antinet_tui.engine.genie.bundle import GenieBundle

    monkeypatch.syspath_prepend(str(FAKE_BINDING))
    monkeypatch.setenv("FAKE_GENIE_TOKEN_DELAY_S", "0.02")
    monkeypatch.setenv("FAKE_GENIE_REPLY_TOKENS", "10")
    qai_appbuilder = importlib.import_module("qai_appbuilder")
    try:
        context = qai_appbuilder.GenieContext(str(GenieBundle.open(bundle).write_private(None, tmp_path / "s")))
        ticks: list[float] = []
        stop = threading.Event()

        def tick() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.001)

        ticker = threading.Thread(target=tick)
        ticker.start()
        time.sleep(0.05)
        before = len(ticks)
        context.Query("hello", lambda text: None)  # 10 × 20 ms of waiting, GIL held
        during = len(ticks) - before
        stop.set()
        ticker.join()
        assert during < 40  # sleeping would have allowed ~200 ticks; only the callbacks let it run
    finally:
        sys.modules.pop("qai_appbuilder", None)


def test_a_bundle_without_an_htp_extension_config_loads(bundle, make_backend):
    config = json.loads(bundle.read_text())
    del config["dialog"]["engine"]["backend"]["extensions"]
    bundle.write_text(json.dumps(config))
    backend = make_backend(bundle)
    backend.load()
    assert backend.current_mode().settings["perf_profile"] is None
    assert run(backend, "hello", max_new_tokens=2)[0].text == " w0 w1"


@pytest.mark.parametrize("size", ["abc", 0, -5, [1], 2.5, True])
def test_a_bad_context_size_in_the_bundle_is_named(bundle, size):
    from antinet_tui.engine.genie.bundle import GenieBundle
    from antinet_tui.engine.genie.errors import GenieBundleError

    config = json.loads(bundle.read_text())
    config["dialog"]["context"]["size"] = size
    bundle.write_text(json.dumps(config))
    with pytest.raises(GenieBundleError, match=rf"dialog.context.size must be a positive integer \(tokens\), "
                                               rf"got {re.escape(repr(size))}"):
        GenieBundle.open(bundle)
