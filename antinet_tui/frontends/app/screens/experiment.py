"""The Experiment screen: `antinet-tui bench` inside the dashboard.

The same code as the CLI (runtime/experiment.py: interleaved pairs, forced token counts,
bootstrap ratios) runs in a thread worker; every finished run arrives as a message, the
table fills in live, Esc aborts (the runs that finished are kept and summarised), and
the result goes to the session log and can be exported as Markdown and JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Static

from antinet_tui.engine.errors import EngineError
from antinet_tui.frontends.app.session import write_export
from antinet_tui.frontends.experiment_report import parse_modes, parse_token_counts, render, summary_lines
from antinet_tui.runtime.client import EngineClient
from antinet_tui.runtime.experiment import (
    DEFAULT_PROMPTS,
    Experiment,
    ExperimentError,
    ExperimentPlan,
    ExperimentReport,
    PlanError,
    RunResult,
    schedule,
)

COLUMNS = ("mode", "tokens", "runs", "TTFT ms", "decode tok/s", "prefill tok/s", "end-to-end ms")


class ExperimentScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_or_close", "Stop / close", id="experiment-stop"),
        Binding("ctrl+s", "export", "Export", id="experiment-export"),  # ctrl+e is the Inputs' end-of-line
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]  # noqa: RUF012 (Textual's type)  # -narrow: the form on two rows

    class RunDone(Message):
        def __init__(self, result: RunResult, done: int, total: int) -> None:
            super().__init__()
            self.result, self.done, self.total = result, done, total

    class Ended(Message):
        def __init__(self, report: ExperimentReport | None, summary: list[str] | None = None,
                     error: str | None = None) -> None:
            super().__init__()
            self.report, self.summary, self.error = report, summary or [], error

    def __init__(self, client: EngineClient, export_dir: Path, modes: str = "burst,default", tokens: str = "16,64",
                 runs: int = 5, warmup: int = 1, engine_for: Callable[[str], EngineClient] | None = None):
        """`engine_for(backend)`: a started engine running another backend, for an engine
        comparison (the screen shuts it down when the experiment ends)."""
        super().__init__(id="experiment")
        self.client = client
        self.engine_for = engine_for
        self.export_dir = export_dir
        self._defaults = (modes, tokens, str(runs), str(warmup))
        self.experiment: Experiment | None = None
        self.plan: ExperimentPlan | None = None
        self.results: list[RunResult] = []
        self.report: ExperimentReport | None = None
        self._worker_done = threading.Event()  # clear while a worker runs, until its record is written
        self._worker_done.set()

    def compose(self) -> ComposeResult:
        modes, tokens, runs, warmup = self._defaults
        with Vertical(id="experiment-body") as body:
            body.border_title = "Experiment · compare performance modes (or engines)"
            with Horizontal(id="experiment-form"):
                with Horizontal(id="experiment-what"):
                    yield Label("modes")
                    yield Input(modes, id="modes")
                    yield Label("backends")
                    yield Input("", id="backends", placeholder="numpy,onnx")
                    yield Label("tokens")
                    yield Input(tokens, id="tokens")
                with Horizontal(id="experiment-how"):
                    yield Label("runs")
                    yield Input(runs, id="runs", type="integer")
                    yield Label("warm-up")
                    yield Input(warmup, id="warmup", type="integer")
                    yield Button("Start", id="start", variant="primary")
            yield Static("Interleaved pairs on fixed prompts, greedy, forced token counts; "
                         "Enter or Start runs, Esc stops (finished runs are kept).", id="experiment-status")
            yield ProgressBar(id="experiment-progress", show_eta=False)
            table: DataTable[str] = DataTable(id="experiment-table", zebra_stripes=True, cursor_type="none")
            table.add_columns(*COLUMNS)
            yield table
            yield Static("", id="experiment-verdict")
        yield Footer()

    # -- starting ---------------------------------------------------------------------

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def start(self) -> None:
        if self.experiment is not None:
            self.notify("an experiment is already running", severity="warning")
            return
        client = self.client
        if client.model_info() is None or client.capabilities() is None:
            self.notify("the model is still loading; start the experiment when it is ready", severity="warning")
            return
        if client.running_count() or client.queue_length():
            self.notify("an answer is still running: wait for it (or stop it) so it cannot skew the runs",
                        severity="warning")
            return
        backends = parse_modes(self.query_one("#backends", Input).value)
        try:
            plan = ExperimentPlan(
                backends=backends,
                modes=parse_modes(self.query_one("#modes", Input).value),
                token_counts=parse_token_counts(self.query_one("#tokens", Input).value, name="tokens"),
                runs=int(self.query_one("#runs", Input).value or 0),
                warmup=int(self.query_one("#warmup", Input).value or 0),
                prompts=DEFAULT_PROMPTS)
            plan.validate_for(client)
            if backends and self.engine_for is None:
                raise PlanError("this dashboard cannot start other engines; use `antinet-tui bench --backends`")
        except (PlanError, ValueError) as exc:
            self.notify(str(exc), title="Cannot start the experiment", severity="error", timeout=10)
            return
        self.plan, self.results, self.report = plan, [], None
        self.experiment = Experiment(client, plan, on_run=self._run_done)
        self._worker_done.clear()
        total = len(schedule(plan))
        self.query_one(ProgressBar).update(total=total, progress=0)
        self.query_one(ProgressBar).display = True
        self.query_one("#experiment-verdict", Static).update("")
        self._show_table()
        self._status(f"running 0 of {total} runs …")
        self.query_one("#start", Button).disabled = True
        self._run(self.experiment)

    def _run_done(self, result: RunResult, done: int, total: int) -> None:
        """On the experiment's thread: hand the run to the UI."""
        self.post_message(self.RunDone(result, done, total))

    @work(thread=True, group="experiment", exit_on_error=False)
    def _run(self, experiment: Experiment) -> None:
        started: list[EngineClient] = []  # engines of other backends, for an engine comparison
        try:
            ended = self._measure(experiment, started)
        finally:
            # released before Ended is posted: when the screen says "done", they are gone
            for engine in started:
                engine.shutdown()
            self._worker_done.set()  # a quit waits for this
        self.post_message(ended)

    def _measure(self, experiment: Experiment, started: list[EngineClient]) -> Ended:
        try:
            self._engines_for(experiment, started)
            report = experiment.run()
            # the statistics and the log write happen here, off the UI thread
            self.client.log_record({"kind": "experiment", **report.to_record()})
            return self.Ended(report, summary_lines(report))
        except (ExperimentError, EngineError) as exc:  # e.g. the engine shut down under it
            return self.Ended(None, error=str(exc))
        except Exception as exc:  # noqa: BLE001 anything else: still end, so Start comes back
            return self.Ended(None, error=f"{type(exc).__name__}: {exc}")

    def _engines_for(self, experiment: Experiment, started: list[EngineClient]) -> None:
        """An engine per backend of the plan: the dashboard's own for its backend, a new
        one (loaded here, in the worker) for each other."""
        own = self.client.model_info()
        for backend in experiment.plan.backends:
            if own is not None and backend == own.backend:
                experiment.clients[backend] = self.client
                continue
            assert self.engine_for is not None
            self.app.call_from_thread(self._status, f"loading the {backend} engine for the comparison …")
            engine = self.engine_for(backend)
            started.append(engine)
            if not engine.wait_ready():
                raise ExperimentError(f"the {backend} engine did not load: {engine.load_error() or engine.state}")
            if experiment.aborted:
                raise ExperimentError("stopped while loading the engines")
            experiment.clients[backend] = engine

    # -- progress ---------------------------------------------------------------------

    def on_experiment_screen_run_done(self, message: RunDone) -> None:
        self.results.append(message.result)
        run, m = message.result.run, message.result.metrics
        label = "warm-up" if run.warmup else f"pair {run.pair + 1}"
        self.query_one(ProgressBar).update(progress=message.done)
        self._status(f"{message.done} of {message.total} runs · last: {run.arm}, {run.token_count} tokens, "
                     f"{label}, end-to-end {m.e2e_ms:.0f} ms")
        self._show_table()

    def on_experiment_screen_ended(self, message: Ended) -> None:
        self.experiment = None
        self.query_one("#start", Button).disabled = False
        if message.error:
            self.notify(message.error, title="The experiment failed", severity="error", timeout=10)
            self._status(f"failed: {message.error}")
            return
        report = self.report = message.report
        assert report is not None  # no error: the report came
        self.results = list(report.results)
        self._show_table()
        self.query_one("#experiment-verdict", Static).update("\n".join(message.summary) or "no comparison (one mode)")
        self._status(report.stopped or f"done: {len(report.results)} runs · written to the session log · "
                                         "ctrl+s exports")

    def _show_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        if self.plan is None:
            return
        if str(table.ordered_columns[0].label) != self.plan.arm_kind:
            table.clear(columns=True)
            table.add_columns(self.plan.arm_kind, *COLUMNS[1:])
        partial = ExperimentReport(self.plan, results=self.results)
        for tokens in self.plan.token_counts:
            for arm in self.plan.arms:
                cell = partial.cell(arm, tokens)
                if cell is None:
                    continue
                med = lambda key, digits, cell=cell: f"{cell[key].median:.{digits}f}" if key in cell else "n/a"
                table.add_row(arm, str(tokens), str(cell["e2e_ms"].n), med("ttft_ms", 0),
                              med("decode_tok_s", 1), med("prefill_tok_s", 0), med("e2e_ms", 0))

    def _status(self, text: str) -> None:
        self.query_one("#experiment-status", Static).update(text)

    # -- keys -------------------------------------------------------------------------

    def stop_on_quit(self, timeout: float) -> None:
        """The app is quitting: abort the run in flight (the worker ends within one decode
        step) and wait until the worker has written the summary of the finished runs."""
        if self.experiment is not None:
            self.experiment.abort()
            self._worker_done.wait(timeout)

    def action_stop_or_close(self) -> None:
        if self.experiment is not None:
            self._status("stopping: cancelling the run in flight …")
            self.experiment.abort()
        else:
            self.dismiss()

    def action_export(self) -> None:
        if self.report is None:
            self.notify("nothing to export yet: run an experiment first", severity="warning")
            return
        self._export(self.report)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, report: ExperimentReport) -> None:
        try:
            paths = write_export(self.export_dir, "experiment",
                                 {".md": render(report, "md"), ".json": render(report, "json")})
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"could not write the export: {exc}",
                                      title="Export failed", severity="error")
            return
        self.app.call_from_thread(self.notify, "\n".join(map(str, paths)), title="Experiment exported")
