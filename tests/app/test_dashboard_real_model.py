"""End to end on the installed SmolLM2 (skipped when it is not installed): the dashboard
loads the real model in the background and answers the France prompt on screen."""

from __future__ import annotations

from app_helpers import wait_for_text, wait_until
from fake_backend import FixedSampler

from antinet_tui.config import Settings
from antinet_tui.frontends.app.app import DashboardApp
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.frontends.wiring import build_service

FRANCE = "What is the capital of France? Answer in one sentence."


async def test_the_france_prompt_answers_paris_on_screen(real_model, tmp_path):
    settings = Settings(model=str(real_model), no_log=True, temperature=0.0, max_new_tokens=48)
    service = build_service(settings)
    app = DashboardApp(service, settings, sampler=FixedSampler(), export_dir=tmp_path)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: service.state == "ready", "the model to load", timeout=180)
            prompt = app.dashboard.query_one(PromptInput)
            prompt.value = FRANCE
            await pilot.press("enter")
            await wait_until(
                pilot, lambda: 1 in app.exchanges and app.exchanges[1].has_class("-finished"), "the answer", timeout=180
            )
            await wait_for_text(pilot, "Paris")
            assert "mode default" in str(app.exchanges[1].figures.content)
    finally:
        service.shutdown()
