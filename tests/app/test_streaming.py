"""Send, stream, stop, fail, quit: the answer's life on screen, against the fake backend."""

from __future__ import annotations

import threading
import time

from app_helpers import notifications, screen_text, send, wait_for_text, wait_until
from fake_backend import PausingBackend
from fakes import DEFAULT_REPLY, FakeBackend
from textual import events

from antinet_tui.frontends.app.app import DRAIN_TIMER
from antinet_tui.frontends.app.widgets.exchange import Exchange
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput

PIECES = DEFAULT_REPLY.split(" ")


async def test_first_frame_shows_loading_then_ready(make_app):
    app = make_app(FakeBackend(load_delay_s=0.4))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "loading")
        await wait_for_text(pilot, "ready")
        text = screen_text(app)
        assert "fake-tiny · fake" in text
        assert "queue 0" in text


async def test_answer_streams_as_markdown_then_shows_its_figures(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "Tell me about foxes")
        await wait_until(
            pilot, lambda: 1 in app.exchanges and app.exchanges[1].has_class("-finished"), "the answer to finish"
        )
        text = screen_text(app)
        assert "› Tell me about foxes" in text
        assert "The quick brown fox jumps over the lazy dog" in text
        figures = str(app.exchanges[1].figures.content)
        for figure in ("TTFT", "ms · decode", "tok/s · prefill", "14 tokens (eos)", "e2e", "mode default"):
            assert figure in figures
        assert figures.split(" ·")[0] in text  # the figures line is on screen (it may wrap)
        assert app.dashboard.query_one(PromptInput).value == ""
        assert app.records[1].text == DEFAULT_REPLY


async def test_tokens_show_before_the_answer_ends(make_app):
    backend = PausingBackend(pause_after=4)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_for_text(pilot, "The quick brown fox")
        await wait_for_text(pilot, "generating… 4 tokens")  # the figures line is drawn separately
        assert "jumps" not in screen_text(app)
        backend.resume.set()
        await wait_until(pilot, lambda: app.exchanges[1].has_class("-finished"), "the rest of the answer")
        assert "lazy dog" in screen_text(app)


class SteppingBackend(FakeBackend):
    """Pauses before every token after the first until the test lets one more through."""

    def __init__(self, **options):
        super().__init__(**options)
        self.step = threading.Semaphore(0)

    def generate(self, request, on_token, cancel):
        emitted = 0

        def on_token_then_wait(token_id: int, text: str) -> None:
            nonlocal emitted
            on_token(token_id, text)
            emitted += 1
            while not self.step.acquire(timeout=0.005) and not cancel.is_set():
                pass

        return super().generate(request, on_token_then_wait, cancel)


async def test_the_drain_timer_draws_tokens_while_generating_and_stops_when_idle(make_app):
    """Only a request's first token wakes the UI; later ones are drawn by the paced drain
    timer, which runs while an answer is generated, however slowly, and not when idle."""
    backend = SteppingBackend()
    app = make_app(backend)
    drains: list[float] = []

    def count_drains(message) -> None:
        if isinstance(message, events.Timer) and message.timer.name == DRAIN_TIMER:
            drains.append(time.monotonic())

    async with app.run_test(size=(120, 40), message_hook=count_drains) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_for_text(pilot, "generating… 1 tokens")
        for n, word in ((2, "quick"), (3, "brown")):
            backend.step.release()  # one token, after a pause longer than several ticks
            await wait_for_text(pilot, f"generating… {n} tokens")
            assert word in screen_text(app)
        backend.step.release(20)
        await wait_until(pilot, lambda: app.exchanges[1].has_class("-finished"), "the rest of the answer")
        await pilot.pause(0.3)  # a tick in flight may still land
        idle_since, ticks = time.monotonic(), len(drains)
        await pilot.pause(0.5)
        assert len(drains) == ticks, f"the drain timer ticked {len(drains) - ticks} times while idle"
        assert ticks > 0 and drains[-1] < idle_since


async def test_a_burst_of_tokens_is_drawn_in_a_few_messages_not_one_per_token(make_app):
    """The UI repaints per drain, not per token (the engine never waits on it)."""
    backend = PausingBackend(pause_after=1)
    app = make_app(backend)
    seen: dict[int, str] = {}  # a message is seen at every node it bubbles through: count it once

    def count_texts(message) -> None:
        if isinstance(message, Exchange.TextArrived):
            seen.setdefault(id(message), message.text)

    async with app.run_test(size=(120, 40), message_hook=count_texts) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_until(pilot, lambda: 1 in app.records and app.records[1].tokens == 1, "the first token")
        backend.resume.set()  # the other 13 tokens come at once
        await wait_until(pilot, lambda: app.exchanges[1].has_class("-finished"), "the rest of the answer")
    texts = list(seen.values())
    assert "".join(texts) == DEFAULT_REPLY and app.records[1].tokens == 14
    assert len(texts) <= 3, f"{len(texts)} text messages for 14 tokens"


async def test_escape_stops_the_answer_and_keeps_the_partial_text(make_app):
    backend = PausingBackend(pause_after=3)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_for_text(pilot, "The quick brown")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.exchanges[1].has_class("-cancelled"), "the answer to stop")
        await wait_for_text(pilot, "■ stopped · TTFT")
        text = screen_text(app)
        assert "The quick brown" in text and "fox" not in text
        assert "3 tokens (cancelled)" in text and text.count("3 tokens") == 1
        assert app.records[1].outcome == "cancelled"
        assert isinstance(app.focused, PromptInput)  # Esc with something to stop does not leave the prompt


async def test_escape_also_drops_queued_requests(make_app):
    backend = PausingBackend(pause_after=2)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "first")
        await send(pilot, "second")
        await wait_until(pilot, lambda: 2 in app.exchanges, "the second request queued")
        await pilot.press("escape")
        await wait_until(pilot, lambda: all(e.has_class("-cancelled") for e in app.exchanges.values()), "both stopped")
        assert backend.generate_calls == 1
        assert "■ stopped before it started" in screen_text(app)


async def test_an_engine_failure_is_a_notification_and_the_app_keeps_running(make_app):
    backend = FakeBackend(fail_on_token=3)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_until(pilot, lambda: app.exchanges[1].has_class("-failed"), "the failure")
        assert any("fake backend failed at token 3" in n for n in notifications(app))
        assert "✗ failed: fake backend failed at token 3" in screen_text(app)
        backend.fail_on_token = None
        await send(pilot, "again")
        await wait_until(pilot, lambda: app.exchanges[2].has_class("-finished"), "the next answer")
        assert app.is_running


async def test_bad_input_is_refused_with_the_runtime_message(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "   ")
        await wait_until(pilot, lambda: any("prompt is only whitespace" in n for n in notifications(app)), "refusal")
        prompt = app.dashboard.query_one(PromptInput)
        prompt.value = "ring \x07 bell"
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("control character U+0007" in n for n in notifications(app)), "refusal")
        assert prompt.value == "ring \x07 bell"  # kept, so it can be fixed
        assert not app.exchanges


async def test_a_full_queue_is_refused_with_the_runtime_message(make_app):
    backend = PausingBackend(pause_after=1)
    app = make_app(backend, queue_size=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "running")
        await wait_until(pilot, backend.paused.is_set, "the first answer to be running")
        await send(pilot, "queued")
        await send(pilot, "one too many")
        await wait_until(pilot, lambda: any("queue full" in n for n in notifications(app)), "refusal")
        await wait_for_text(pilot, "queue 1")  # from the Accepted event, which may arrive after the toast
        backend.resume.set()


async def test_a_load_failure_is_shown_the_app_keeps_running_and_exits_3(make_app):
    app = make_app(FakeBackend(load_error=RuntimeError("weights are corrupt")))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "load failed")
        assert any("weights are corrupt" in n for n in notifications(app))
        await send(pilot, "hello")
        await wait_until(pilot, lambda: any("the engine failed to load" in n for n in notifications(app)), "refusal")
        assert app.is_running
        app.clear_notifications()
        await wait_for_text(pilot, "The model could not be loaded.")  # in the answers pane, where the hint was
        assert "weights are corrupt" in screen_text(app) and "--model PATH" in screen_text(app)
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_code == 3  # as the CLI's "model could not be loaded"


async def test_ctrl_q_quits_promptly_during_a_generation(make_app):
    backend = FakeBackend(token_delay_s=0.05)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "a long answer please")
        await wait_until(pilot, backend.generating.is_set, "the answer to start")
        started = time.monotonic()
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
        quit_seconds = time.monotonic() - started
    assert backend.closed  # the engine thread left its loop and closed the backend
    assert app.service.state == "stopped"
    assert quit_seconds < 5  # generous: the service's own bound is 1 s; this catches a hang
