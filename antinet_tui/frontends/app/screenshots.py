"""Screenshots of a real session on the default model: `make screenshots`, or

    python -m antinet_tui.frontends.app.screenshots [DIRECTORY]   (default: screenshots)

The app runs headless at 120x40 on the installed SmolLM2 through the same EngineService
as `antinet-tui`, at temperature 0. It answers the France prompt (idle.svg), captures a
longer answer while it streams (mid-answer.svg), sends long answers until the breaker
opens (breaker-open.svg), opens help (help.svg), then resets the breaker and runs a
small burst-vs-default experiment (experiment.svg). The session uses a 400 ms slow-call
threshold instead of 3000 ms so real calls trip the breaker in seconds; the screen says
so ("slow service > 400 ms").
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from textual.pilot import Pilot
from textual.widgets import Input

from antinet_tui.config import Settings
from antinet_tui.frontends.app.app import DashboardApp
from antinet_tui.frontends.app.screens.experiment import ExperimentScreen
from antinet_tui.frontends.app.screens.help import HelpScreen
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.frontends.wiring import build_service
from antinet_tui.runtime.breaker import BreakerState
from antinet_tui.runtime.client import ServiceState

SIZE = (120, 40)
SLOW_CALL_MS = 400  # onnx answers 96 tokens in about 0.6 s: real answers must be able to trip it
FRANCE = "What is the capital of France? Answer in one sentence."
STORY = "Write a short story about a lighthouse keeper who finds a message in a bottle."
LONG_ANSWERS = (
    "Explain in detail how a steam engine works.",
    "Describe the water cycle step by step, in detail.",
    "List ten facts about the Moon, one sentence each.",
    "Explain how bread is made, from flour to loaf.",
)
MID_ANSWER_TOKENS = 40
MAX_ANSWERS_TO_TRIP = 8


async def _until(pilot: Pilot, condition: Callable[[], object], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: gave up waiting for {what} after {timeout} s")
        await pilot.pause(0.05)


async def _ask(pilot: Pilot, prompt: str) -> int:
    app = cast(DashboardApp, pilot.app)
    prompt_input = app.dashboard.query_one(PromptInput)
    prompt_input.focus()
    prompt_input.value = prompt
    await pilot.press("enter")
    await _until(pilot, lambda: prompt_input.value == "", f"{prompt!r} to be accepted", timeout=10)
    return max(app.records)


async def _finish(pilot: Pilot, request_id: int) -> None:
    app = cast(DashboardApp, pilot.app)
    await _until(pilot, lambda: app.records[request_id].ended, "the answer")
    await pilot.pause(0.3)  # the final Markdown render and the panes


def _save(app: DashboardApp, directory: Path, name: str) -> None:
    app.clear_notifications()
    app.save_screenshot(f"{name}.svg", str(directory))
    print(f"wrote {directory / name}.svg")


async def capture(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(no_log=True, temperature=0.0, max_new_tokens=96, slow_call_ms=SLOW_CALL_MS)
    service = build_service(settings)
    app = DashboardApp(service, settings)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: service.state in (ServiceState.READY, ServiceState.LOAD_FAILED),
                         "the model to load")
            if service.state is ServiceState.LOAD_FAILED:
                raise RuntimeError(f"the model did not load: {service.load_error()}")

            await _finish(pilot, await _ask(pilot, FRANCE))
            _save(app, directory, "idle")

            # A longer story, so that a fast engine is still writing it when the shot is taken.
            for _ in range(2):
                app.action_max_tokens(1)
            story = await _ask(pilot, STORY)
            await _until(pilot, lambda: app.records[story].tokens >= MID_ANSWER_TOKENS, "the story to stream")
            await pilot.pause(0.1)
            _save(app, directory, "mid-answer")
            await _finish(pilot, story)
            for _ in range(2):
                app.action_max_tokens(-1)

            for prompt in (LONG_ANSWERS * 2)[:MAX_ANSWERS_TO_TRIP]:
                if service.breaker_view().state is BreakerState.OPEN:
                    break
                await _finish(pilot, await _ask(pilot, prompt))
            if service.breaker_view().state is not BreakerState.OPEN:
                raise RuntimeError(f"the breaker did not open after {MAX_ANSWERS_TO_TRIP} long answers")
            await pilot.pause(0.6)  # one breaker poll: the countdown is on screen
            _save(app, directory, "breaker-open")

            await pilot.press("f1")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
            await pilot.pause(0.3)
            _save(app, directory, "help")

            await pilot.press("escape")
            app.action_reset_breaker()
            app.action_experiment()
            await _until(pilot, lambda: isinstance(app.screen, ExperimentScreen) and app.screen.query("#warmup"),
                         "the experiment screen")
            experiment = cast(ExperimentScreen, app.screen)
            for field, value in (("#tokens", "8,16"), ("#runs", "3"), ("#warmup", "1")):
                experiment.query_one(field, Input).value = value
            await pilot.click("#start")
            await _until(pilot, lambda: experiment.report is not None, "the experiment")
            await pilot.pause(0.3)
            _save(app, directory, "experiment")
    finally:
        service.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(capture(Path(args[0] if args else "screenshots")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
