"""Keys, palette and panes: history, modes and their readback, the breaker, freezing,
generation settings, export, clear, help, remapping and themes."""

from __future__ import annotations

import json

from app_helpers import notifications, screen_text, send, wait_for_text, wait_until
from fake_backend import PausingBackend
from fakes import FakeBackend
from textual.widgets import Markdown

from antinet_tui.config import Settings
from antinet_tui.frontends.app.screens.help import HelpScreen
from antinet_tui.frontends.app.widgets.conversation import Conversation
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.runtime.session_log import read_session


async def leave_prompt(pilot) -> None:
    await pilot.press("escape")
    await wait_until(pilot, lambda: isinstance(pilot.app.focused, Conversation), "focus to leave the prompt")


def palette(app) -> dict:
    return {command.title: command for command in app.get_system_commands(app.screen)}


async def test_typing_and_history_walk_like_a_shell(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await pilot.press("h", "i", "enter")
        await wait_until(pilot, lambda: 1 in app.exchanges, "the first request")
        await send(pilot, "second prompt")
        await wait_until(pilot, lambda: 2 in app.exchanges, "the second request")
        prompt = app.dashboard.query_one(PromptInput)
        await pilot.press("d", "r", "a", "f", "t")
        await pilot.press("up")
        assert prompt.value == "second prompt"
        await pilot.press("up")
        assert prompt.value == "hi"
        await pilot.press("up")
        assert prompt.value == "hi"  # the oldest stays
        await pilot.press("down")
        assert prompt.value == "second prompt"
        await pilot.press("down")
        assert prompt.value == "draft"  # back to what was being typed


async def test_single_keys_are_text_in_the_prompt_and_commands_outside_it(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await pilot.press("b", "f")
        assert app.dashboard.query_one(PromptInput).value == "bf"
        await leave_prompt(pilot)
        assert "b Burst" in screen_text(app).splitlines()[-1]
        await pilot.press("f1")  # over the dashboard, the single keys are not the app's
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await pilot.press("f", "b")
        assert not app.frozen and app.requested_mode == "default"
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.dashboard, "the dashboard")
        await pilot.press("enter")
        assert isinstance(app.focused, PromptInput)


async def test_b_toggles_burst_and_the_readback_shows_on_screen_and_in_the_log(make_app, tmp_path):
    app = make_app(log=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await leave_prompt(pilot)
        await pilot.press("b")
        await wait_for_text(pilot, "threads 8 · nice -5 · cores 0-7 of 8")
        text = screen_text(app)
        assert "requested  burst" in text and "effective  burst" in text
        await pilot.press("b")
        await wait_for_text(pilot, "threads 4 · nice 0 · cores 0-7 of 8")
        assert "requested  default" in screen_text(app)
    modes = [r["requested"] for r in read_session(tmp_path / "session.jsonl") if r["kind"] == "mode_changed"]
    assert modes == ["burst", "default"]


async def test_a_partly_applied_mode_says_what_was_not_applied(make_app):
    app = make_app(FakeBackend(nice_permitted=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await leave_prompt(pilot)
        await pilot.press("b")
        await wait_for_text(pilot, "effective  burst (partial)")
        assert "not applied: priority: nice -5" in screen_text(app)


async def test_a_mode_change_during_an_answer_waits_for_it(make_app):
    backend = PausingBackend(pause_after=2)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_until(pilot, backend.paused.is_set, "the answer to be running")
        await pilot.press("tab")  # Esc would stop the answer; Tab leaves the prompt
        assert not isinstance(app.focused, PromptInput)
        await pilot.press("b")
        await wait_for_text(pilot, "requested  burst  (after this answer)")
        assert "effective  default" in screen_text(app)
        backend.resume.set()
        await wait_for_text(pilot, "effective  burst")


async def test_the_palette_offers_every_mode_and_applies_it(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        commands = palette(app)
        for title in (
            "Mode: burst",
            "Mode: default",
            "Mode: power_saver",
            "Breaker: isolate",
            "Breaker: reset",
            "Export the session",
            "Clear history",
        ):
            assert title in commands
        commands["Mode: power_saver"].callback()
        await wait_for_text(pilot, "threads 1 · nice 10 · cores 7 of 8")


async def test_the_palette_opens_with_ctrl_p_and_runs_a_command(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await pilot.press("ctrl+p")
        await pilot.press(*"isolate")
        await wait_for_text(pilot, "Breaker: isolate")
        await pilot.press("enter")
        await wait_for_text(pilot, "⊘ ISOLATED")


async def test_breaker_transitions_show_in_words(make_app, clock):
    backend = FakeBackend(fail_on_token=1)
    app = make_app(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "● CLOSED")
        for n in range(1, 5):
            await send(pilot, f"call {n}")
            await wait_until(pilot, lambda n=n: app.records[n].outcome == "failed", f"call {n} to fail")
        await wait_for_text(pilot, "✖ OPEN")
        text = screen_text(app)
        assert "why: 4 of the last 4 calls failed" in text
        assert "next probe in 30 s" in text
        await send(pilot, "refused")
        await wait_until(pilot, lambda: any("breaker open" in n for n in notifications(app)), "the refusal")
        clock.advance(12)
        await wait_for_text(pilot, "next probe in 18 s")
        clock.advance(18)
        await wait_for_text(pilot, "◐ HALF-OPEN")
        backend.fail_on_token = None
        await send(pilot, "probe")
        await wait_for_text(pilot, "● CLOSED")
        assert "why: 1 probe call healthy" in screen_text(app)


async def test_isolate_and_reset_keys(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await leave_prompt(pilot)
        await pilot.press("i")
        await wait_for_text(pilot, "⊘ ISOLATED")
        assert "why: isolated by the operator" in screen_text(app)
        await send(pilot, "hello")
        await wait_until(pilot, lambda: any("isolated by the operator" in n for n in notifications(app)), "refusal")
        await leave_prompt(pilot)
        await pilot.press("r")
        await wait_for_text(pilot, "● CLOSED")
        assert "why: reset by the operator" in screen_text(app)


async def test_f_freezes_the_charts(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await leave_prompt(pilot)
        await pilot.press("f")
        await wait_for_text(pilot, "charts FROZEN")
        await send(pilot, "hello")
        await wait_until(pilot, lambda: app.records[1].outcome == "finished", "the answer")
        assert "Latency · 1 finished" not in screen_text(app)
        await leave_prompt(pilot)
        await pilot.press("f")
        await wait_for_text(pilot, "Latency · 1 finished")
        assert "FROZEN" not in screen_text(app)


async def test_generation_settings_from_the_keyboard_reach_the_request(make_app):
    backend = FakeBackend()
    app = make_app(backend, settings=Settings(no_log=True, max_new_tokens=256, temperature=0.8))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "256 tokens · temp 0.80 · chat")
        await leave_prompt(pilot)
        await pilot.press("left_square_bracket", "left_square_bracket", "minus", "minus", "m")
        await wait_for_text(pilot, "64 tokens · temp 0.60 · raw")
        await pilot.press("right_square_bracket", "plus")
        await wait_for_text(pilot, "128 tokens · temp 0.70 · raw")
        await send(pilot, "hello")
        await wait_until(pilot, lambda: backend.requests, "the request")
        request = backend.requests[0]
        assert (request.max_new_tokens, request.temperature, request.chat) == (128, 0.7, False)


async def test_export_writes_json_and_markdown_of_this_session(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "Tell me about foxes")
        await wait_until(pilot, lambda: app.records[1].outcome == "finished", "the answer")
        palette(app)["Export the session"].callback()
        await wait_until(pilot, lambda: any("Exported 1 request:" in n for n in notifications(app)), "the export")
    exports = tmp_path / "exports"
    document = json.loads(next(exports.glob("*.json")).read_text())
    assert document["model"] == "fake-tiny"
    assert document["requests"][0]["request"]["prompt"] == "Tell me about foxes"
    assert document["requests"][0]["outcome"] == "finished"
    assert document["requests"][0]["metrics"]["generated_tokens"] == 14
    markdown = next(exports.glob("*.md")).read_text()
    assert "> Tell me about foxes" in markdown and "The quick brown fox" in markdown
    assert not list(exports.glob(".*.tmp"))


async def test_clear_history_empties_the_answers(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await send(pilot, "hello")
        await wait_until(pilot, lambda: app.records[1].outcome == "finished", "the answer")
        await app.action_clear_history()
        await wait_for_text(pilot, "Type a prompt below")
        assert "The quick brown fox" not in screen_text(app)
        assert not app.records
        await pilot.press("up")
        assert app.dashboard.query_one(PromptInput).value == "hello"  # prompt recall is kept


async def test_help_lists_keys_and_definitions_and_closes(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await wait_for_text(pilot, "Burst/default mode")
        assert "| TTFT |" in app.screen.query_one(Markdown).source
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.dashboard, "help to close")
        await leave_prompt(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help from ?")


async def test_bindings_can_be_remapped_by_id(make_app):
    app = make_app(keymap={"toggle-burst": "ctrl+b"})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "ready")
        await wait_for_text(pilot, "^b burst/default")
        await leave_prompt(pilot)
        await pilot.press("ctrl+b")
        await wait_for_text(pilot, "requested  burst")


async def test_theme_from_settings_and_unknown_theme_warns(make_app):
    app = make_app(settings=Settings(no_log=True, theme="nord"))
    async with app.run_test(size=(120, 40)):
        assert app.theme == "nord"
    app = make_app(settings=Settings(no_log=True, theme="no-such-theme"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(
            pilot, lambda: any("unknown theme 'no-such-theme'" in n for n in notifications(app)), "warning"
        )
