"""The Experiment screen drives the same experiment code as `antinet-tui bench`."""

from __future__ import annotations

from app_helpers import notifications, screen_text, wait_for_text, wait_until
from fakes import FakeBackend
from textual.widgets import DataTable, Input

from antinet_tui.frontends.app.screens.experiment import ExperimentScreen
from antinet_tui.runtime.service import EngineService
from antinet_tui.runtime.session_log import read_session


async def open_experiment(pilot, modes: str, tokens: str, runs: str, warmup: str = "0") -> ExperimentScreen:
    app = pilot.app
    await wait_until(pilot, lambda: app.service.state == "ready", "the model to load")
    app.action_experiment()
    await wait_until(pilot, lambda: isinstance(app.screen, ExperimentScreen) and app.screen.query("#warmup"),
                     "the experiment screen")
    screen = app.screen
    for field, value in (("#modes", modes), ("#tokens", tokens), ("#runs", runs), ("#warmup", warmup)):
        screen.query_one(field, Input).value = value
    return screen


async def test_experiment_fills_the_table_and_gives_a_verdict(make_app, tmp_path):
    app = make_app(FakeBackend(token_delay_s=0.03), log=True)  # the fake's burst halves every delay
    async with app.run_test(size=(120, 40)) as pilot:
        # 5 pairs: the t-interval of 3 pairs (t = 4.30) is too wide to call a 2x fake on a busy machine
        screen = await open_experiment(pilot, "burst,default", "6,12", "5", warmup="1")  # first use: imports, renders
        await pilot.click("#start")
        await wait_until(pilot, lambda: screen.report is not None, "the experiment to end", timeout=30)
        assert screen.query_one(DataTable).row_count == 4  # 2 modes x 2 token counts
        await wait_for_text(pilot, "12 tokens: ")  # the verdicts, one line per token count
        text = screen_text(app)
        # the direction the fake builds in, for both token counts: burst about twice as fast
        for tokens in (6, 12):
            assert f"{tokens} tokens: burst is " in text and text.count("× faster end-to-end") == 2
        assert "slower" not in text and "no difference" not in text
        assert all(1.3 < c.e2e_speedup.ratio < 3 for c in screen.report.comparisons())
        assert "written to the session log" in text
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: list((tmp_path / "exports").glob("experiment-*.json")), "the export")
        assert list((tmp_path / "exports").glob("experiment-*.md"))
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.dashboard, "back to the dashboard")
    records = [r for r in read_session(tmp_path / "session.jsonl") if r["kind"] == "experiment"]
    assert len(records) == 1 and len(records[0]["runs"]) == 24  # (5 pairs + 1 warm-up) x 2 modes x 2 counts
    assert all(r["generated_tokens"] == r["token_count"] for r in records[0]["runs"])


async def test_escape_aborts_and_keeps_the_finished_runs(make_app):
    app = make_app(FakeBackend(token_delay_s=0.01))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_experiment(pilot, "burst,default", "2,400", "3")
        await pilot.click("#start")
        await wait_until(pilot, lambda: len(screen.results) >= 6, "the short runs", timeout=30)
        await pilot.press("escape")  # during the first 400-token run
        await wait_until(pilot, lambda: screen.report is not None, "the abort", timeout=10)
        assert screen.report.interrupted and len(screen.report.results) == 6
        await wait_for_text(pilot, "stopped by the operator after 6 of 12 runs")
        assert screen.query_one(DataTable).row_count == 2


async def test_a_plan_that_cannot_run_is_explained(make_app):
    app = make_app(FakeBackend())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_experiment(pilot, "burst", "8", "2")
        await pilot.click("#start")
        await wait_until(pilot, lambda: any("two modes" in n for n in notifications(app)), "the refusal")
        assert screen.experiment is None and screen.report is None


async def test_mode_changes_during_an_experiment_raise_no_toasts(make_app):
    app = make_app(FakeBackend())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_experiment(pilot, "burst,default", "2", "3")
        await pilot.click("#start")
        await wait_until(pilot, lambda: screen.report is not None, "the experiment to end", timeout=30)
        # The toast is decided per event, not by whether an experiment is still running:
        # an experiment's last change (its restore) may reach the app after the screen's Ended.
        await pilot.press("escape")
        app.service.set_mode("power_saver", requested_by="experiment")
        # Events reach the app in order: once the operator's toast shows, the above was handled.
        app.request_mode("burst")
        await wait_until(pilot, lambda: any(n.startswith("Mode burst") for n in notifications(app)), "the toast")
        assert [n for n in notifications(app) if n.startswith("Mode ")] == ["Mode burst: effective burst"]


async def test_the_screen_compares_engines(make_app):
    """Backends instead of modes: the dashboard's own engine and one it starts for the
    other backend (here a slower fake), interleaved, then shut down again."""
    app = make_app(FakeBackend(token_delay_s=0.005))
    started = []

    def engine_for(backend):
        engine = EngineService(FakeBackend(token_delay_s=0.02), session_log=None).start()
        started.append((backend, engine))
        return engine

    app._start_engine_for = engine_for
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_experiment(pilot, "default", "4", "3", warmup="1")  # first use: imports, renders
        screen.query_one("#backends", Input).value = "fake,slow"
        await pilot.click("#start")
        await wait_until(pilot, lambda: screen.report is not None, "the experiment to end", timeout=30)
        assert [name for name, _ in started] == ["slow"] and started[0][1].state.value == "stopped"
        assert [r.run.backend for r in screen.report.measured] == ["slow", "fake", "fake", "slow", "slow", "fake"]
        table = screen.query_one(DataTable)
        assert str(table.ordered_columns[0].label) == "backend" and table.row_count == 2
        (comparison,) = screen.report.comparisons()
        assert (comparison.mode_a, comparison.mode_b) == ("fake", "slow") and comparison.e2e_speedup.ratio > 1.5  # 4 by design
        assert app.service.state.value == "ready"  # the dashboard's own engine is left running
