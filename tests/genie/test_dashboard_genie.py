"""The same dashboard drives the Genie backend: its worker process is spawned while the
Textual app runs (and has replaced sys.stderr), and the answer streams on screen."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "app"))

from app_helpers import screen_text, wait_for_text, wait_until  # noqa: E402
from fake_backend import FixedSampler  # noqa: E402

from antinet_tui.config import Settings  # noqa: E402
from antinet_tui.frontends.app.app import DashboardApp  # noqa: E402
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput  # noqa: E402
from antinet_tui.runtime.service import EngineService  # noqa: E402


async def test_a_genie_answer_streams_into_the_dashboard(bundle, make_backend, tmp_path):
    service = EngineService(make_backend(bundle), session_log=None)
    app = DashboardApp(service, Settings(no_log=True, max_new_tokens=12), sampler=FixedSampler(),
                       export_dir=tmp_path / "exports")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: service.state in ("ready", "load_failed"), "the Genie worker to load", 30)
            assert service.state == "ready", service.load_error()
            prompt = app.dashboard.query_one(PromptInput)
            prompt.value = "hello"
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.records and app.records[1].outcome == "finished", "the answer", 30)
            assert app.records[1].text.split() == [f"w{i}" for i in range(12)]
            await wait_for_text(pilot, "w11")  # the answer's widget draws after the record is complete
            assert "genie" in screen_text(app)
    finally:
        service.shutdown()
