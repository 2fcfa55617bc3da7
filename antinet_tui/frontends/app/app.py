"""DashboardApp: renders an engine service's events and sends it the operator's requests
(through the EngineClient surface only: the service may be in-process or remote).

Threads and who does what:

* the runtime's dispatcher thread calls `EngineBridge`, which only appends to a buffer;
* the UI thread drains that buffer on a paced timer (tokens; see pacing.py) or at once
  (other events, first tokens) and routes each event to its widget; it talks to the
  engine only through the EngineClient surface (runtime/client.py), whose methods do not
  block: submit, cancel, set_mode, the breaker's isolate/reset, and snapshots;
* psutil sampling and session export run in thread workers (own group,
  `exit_on_error=False`) and report back with messages;
* quitting shuts the service down (joins within a second) off the UI thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input

from antinet_tui.config import APP_NAME, Settings
from antinet_tui.config import export_dir as config_export_dir
from antinet_tui.engine.errors import EngineError
from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.exit_codes import Exit
from antinet_tui.frontends.app import keys
from antinet_tui.frontends.app.bridge import EngineBridge, EventsReady
from antinet_tui.frontends.app.commands import DEFAULT_SOURCES, CommandSource
from antinet_tui.frontends.app.pacing import DrainPacer
from antinet_tui.frontends.app.screens.dashboard import DashboardScreen
from antinet_tui.frontends.app.screens.help import HelpScreen
from antinet_tui.frontends.app.session import RequestRecord, export_session
from antinet_tui.frontends.app.widgets.breaker_pane import LABELS, BreakerPane
from antinet_tui.frontends.app.widgets.conversation import Conversation
from antinet_tui.frontends.app.widgets.exchange import Exchange
from antinet_tui.frontends.app.widgets.generation_settings import GenerationSettings, GenerationSettingsLabel
from antinet_tui.frontends.app.widgets.latency_pane import LatencyPane
from antinet_tui.frontends.app.widgets.performance_pane import PerformancePane
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.frontends.app.widgets.requests_pane import RequestsPane
from antinet_tui.frontends.app.widgets.status_line import StatusLine
from antinet_tui.frontends.app.widgets.system_pane import SystemPane
from antinet_tui.frontends.common import LOG_CHOICE
from antinet_tui.platform.system_stats import SystemFeed, SystemSample, SystemSampler
from antinet_tui.runtime.breaker import BreakerState
from antinet_tui.runtime.client import EngineClient, EngineReserved, RequestHandle, ServiceState
from antinet_tui.runtime.connection import ConnectionChanged, ConnectionState
from antinet_tui.runtime.events import (
    Accepted,
    BreakerTransition,
    Cancelled,
    Event,
    Failed,
    Finished,
    Loaded,
    LoadFailed,
    LoadProgress,
    ModeChanged,
    Rejected,
    SessionLogFailed,
    Started,
    TerminalEvent,
    Token,
)
from antinet_tui.runtime.session_log import SessionLogError

logger = logging.getLogger(__name__)

BREAKER_POLL_S = 0.5  # the countdown moves, and OPEN turns HALF-OPEN on time
CLIENTS_POLL_S = 1.0  # serve mode: connected clients come and go without an event


@dataclass(frozen=True)
class ServingView:
    """What the dashboard shows of the HTTP server beside it (serve mode)."""

    address: str  # where it listens, e.g. "127.0.0.1:8080"
    connections: Callable[[], int]  # open HTTP connections now
SHUTDOWN_TIMEOUT_S = 1.0
DRAIN_TIMER = "drain"  # the paced timer that draws streamed tokens (runs only while generating)


@runtime_checkable
class StopsOnQuit(Protocol):
    """A screen with work in a thread worker that must end when the app quits."""

    def stop_on_quit(self, timeout: float) -> None:
        """Stop the work and wait (up to timeout seconds, on a thread) until it has ended."""


class SystemSampled(Message):
    def __init__(self, sample: SystemSample) -> None:
        super().__init__()
        self.sample = sample


class DashboardApp(App[int]):
    CSS_PATH = "dashboard.tcss"
    TITLE = APP_NAME
    BINDINGS: ClassVar[list[BindingType]] = list(keys.bindings())
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]  # noqa: RUF012 (Textual's type)  # -short: a one-line prompt, to fit 24 rows

    def __init__(
        self,
        service: EngineClient,
        settings: Settings,
        *,
        sampler: SystemFeed | None = None,
        export_dir: Path | None = None,
        command_sources: Sequence[CommandSource] = DEFAULT_SOURCES,
        keymap: dict[str, str] | None = None,
        owns_service: bool = True,
        pacer: DrainPacer | None = None,
        serving: ServingView | None = None,
    ):
        """`owns_service`: start the service if it is not started, and shut it down on quit.
        A caller that shares one service between app sessions (a benchmark) passes False.
        `pacer`: how often streamed tokens are drawn (default: within the in-process budget).
        `serving`: the HTTP API runs on this service (`antinet-tui serve`): the status line
        says where and how many clients are connected, and the Requests pane lists every
        request, served or typed."""
        super().__init__()
        self.service = service
        self.settings = settings
        self.sampler: SystemFeed = sampler or SystemSampler()
        self.export_dir = export_dir or config_export_dir()
        self.command_sources = list(command_sources)
        self.owns_service = owns_service
        self.serving = serving
        self.bridge = EngineBridge(self)
        self.pacer = pacer or DrainPacer()  # how often streamed tokens are drawn (pacing.py)
        self._ticking = False  # the drain timer runs (only while an answer is generated)
        self.generation = GenerationSettings(settings.max_new_tokens, settings.temperature, chat=not settings.raw)
        self.records: dict[int, RequestRecord] = {}  # the operator's requests: their one record each
        self.exchanges: dict[int, Exchange] = {}  # the widget showing each record
        self._handles: dict[int, RequestHandle] = {}  # the unfinished ones (dropping a handle cancels it)
        self.frozen = False
        self.requested_mode: str | None = settings.mode
        self.mode_note: str | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._quitting = threading.Event()  # stops the sampler thread
        self._handle_signals = False
        self._signal_exit: int | None = None  # 128 + the signal that made us quit
        self.dashboard: DashboardScreen  # the main screen, kept: events update it under help or the palette
        if keymap:
            self.set_keymap(keymap)

    def get_default_screen(self) -> Screen:
        info = self.service.model_info()
        backend = info.backend if info else self.settings.backend
        self.dashboard = DashboardScreen(backend, self.service.breaker_view().config.slow_call_ms,
                                         serving=self.serving is not None)
        return self.dashboard

    # -- lifecycle --------------------------------------------------------------------

    def quit_on_termination_signals(self) -> None:
        """SIGTERM (a service manager) and SIGHUP (the terminal closed) quit as ctrl+q does:
        the answer is cancelled and recorded, the terminal restored; exit status 128 + n.
        Called by run_dashboard (not in tests, where the app shares pytest's process)."""
        self._handle_signals = True

    def _terminate(self, signum: int) -> None:
        self._signal_exit = 128 + signum
        self.call_next(self.action_quit)

    def on_mount(self) -> None:
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(signum, self._terminate, signum)
        if self.settings.theme:
            if self.settings.theme in self.available_themes:
                self.theme = self.settings.theme
            else:
                self.notify(
                    f"unknown theme {self.settings.theme!r}; available: {', '.join(sorted(self.available_themes))}",
                    severity="warning",
                )

    def on_ready(self) -> None:
        """The first frame is on screen: now start the engine (it loads in its thread)."""
        self._unsubscribe = self.service.subscribe(self.bridge)
        if self.service.state is ServiceState.NOT_STARTED and self.owns_service:
            try:
                self.service.start()
            except SessionLogError as exc:  # its first record refused (a full disk): as an unwritable path
                self.exit(return_code=int(Exit.USAGE), message=f"{APP_NAME}: error: {exc} ({LOG_CHOICE})")
                return
            if self.settings.mode is not None:  # applied right after loading, before any request
                self.service.set_mode(self.settings.mode, requested_by="settings")
        else:
            self._show_running_service()
        self.set_interval(BREAKER_POLL_S, self._poll_breaker)
        if self.serving is not None:
            self.set_interval(CLIENTS_POLL_S, self._show_clients)
            self._show_clients()
        self._sample_system()
        self._show_generation()
        self._show_latency()
        self._show_breaker()
        self._show_mode()

    def _show_running_service(self) -> None:
        """Adopt a service that was started before this app (it missed the Loaded event)."""
        info = self.service.model_info()
        if info is not None:
            self._status.change(model=info.name, backend=info.backend, engine="ready")
            mode = self.service.mode()
            self.requested_mode = self.requested_mode or (mode.requested if mode else None)
        elif self.service.state is ServiceState.LOAD_FAILED:
            error = self.service.load_error() or ""
            self._status.change(engine=f"load failed: {error}")
            self.dashboard.query_one(Conversation).show_load_failure(error)

    async def action_quit(self) -> None:
        """Quit promptly, even mid-answer: the engine stops within one decode step and the
        service's shutdown joins it within SHUTDOWN_TIMEOUT_S, off the UI thread."""
        self._stop_listening()
        for screen in self.screen_stack:
            if isinstance(screen, StopsOnQuit):
                # e.g. an experiment: its run ends within one decode step, then its summary is
                # written to the session log (as bench's is on Ctrl-C) before the service stops
                await asyncio.to_thread(screen.stop_on_quit, SHUTDOWN_TIMEOUT_S)
        failed = self.service.state is ServiceState.LOAD_FAILED  # the exit code says so, as the CLI's does
        if self.owns_service:
            await asyncio.to_thread(self.service.shutdown, SHUTDOWN_TIMEOUT_S)
        self.exit(return_code=self._signal_exit or (int(Exit.MODEL) if failed else 0))

    def on_unmount(self) -> None:
        self._stop_listening()

    def _stop_listening(self) -> None:
        self._quitting.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- engine events ------------------------------------------------------------------

    def on_events_ready(self, _: EventsReady) -> None:
        self._drain()
        if not self._ticking and self.service.running_count() and self.is_running:
            # an answer is being generated (its Started or first token woke us): tick
            self._ticking = True
            self.pacer.resume()
            self.set_timer(self.pacer.interval, name=DRAIN_TIMER)

    async def on_timer(self, event: events.Timer) -> None:
        """The drain timer's tick (a Timer event, in order with the app's other messages):
        draw buffered tokens, then come back after the pacer's interval; only while an
        answer is being generated: idle, no timer runs at all."""
        if event.timer.name != DRAIN_TIMER:
            return
        streaming = self._drain()
        if self.is_running and (streaming or self.service.running_count()):
            self.set_timer(self.pacer.next_interval(streaming), name=DRAIN_TIMER)
        else:
            self._ticking = False

    def _drain(self) -> bool:
        """Apply buffered events; True when there were tokens among them."""
        if not self.is_running:  # shutting down: the widgets are going or gone
            return False
        events = self.bridge.drain()
        if events:
            self._apply(events)
        return any(isinstance(event, Token) for event in events)

    def _apply(self, events: list[Event]) -> None:
        """Route events in order; consecutive tokens of a request become one text message."""
        text: dict[int, list[str]] = {}

        def flush() -> None:
            for request_id, parts in text.items():
                if self.serving is not None:  # every request, served or typed
                    self._requests_pane.tokens(request_id, len(parts))
                record = self.records.get(request_id)
                if record is None:  # not the operator's
                    continue
                chunk = "".join(parts)
                record.text += chunk
                record.tokens += len(parts)
                if exchange := self.exchanges.get(request_id):
                    exchange.post_message(Exchange.TextArrived(chunk))
            text.clear()

        for event in events:
            if isinstance(event, Token):
                text.setdefault(event.request_id, []).append(event.text)
                continue
            flush()
            self._handle(event)
        flush()

    def _handle(self, event: Event) -> None:
        if self.serving is not None:
            self._list_request(event)
        if isinstance(event, LoadProgress):
            self._status.change(load_fraction=event.fraction, load_message=event.message)
        elif isinstance(event, Loaded):
            info = event.model_info
            self._status.change(model=info.name, backend=info.backend, load_fraction=None, engine="ready")
            if event.mode is not None and self.requested_mode is None:
                self.requested_mode = event.mode.requested
            self._show_mode()
        elif isinstance(event, LoadFailed):
            self._status.change(load_fraction=None, engine="load failed")
            self.dashboard.query_one(Conversation).show_load_failure(event.error)
            self.notify(event.error, title="The model could not be loaded", severity="error", timeout=30)
        elif isinstance(event, Accepted):
            self._status.change(queue=self.service.queue_length())
        elif isinstance(event, Started):
            if record := self.records.get(event.request_id):
                record.outcome = "running"
            if exchange := self.exchanges.get(event.request_id):
                exchange.mark_started()
            self._status.change(engine=f"generating #{event.request_id}", queue=self.service.queue_length())
        elif isinstance(event, (Finished, Cancelled, Failed, Rejected)):
            self._request_ended(event)
        elif isinstance(event, BreakerTransition):
            symbol, word = LABELS[event.to_state]
            refusing = event.to_state in (BreakerState.OPEN, BreakerState.ISOLATED)
            self.notify(
                event.reason, title=f"Breaker {symbol} {word}", severity="warning" if refusing else "information"
            )
            self._show_breaker()
        elif isinstance(event, ModeChanged):
            self._mode_changed(event)
        elif isinstance(event, ConnectionChanged):
            self._connection_changed(event)
        elif isinstance(event, SessionLogFailed):
            self._status.change(log_lost=event.lost, log_failing=True)
            if event.lost == 1:  # at once, and once: the status line keeps counting
                self.notify(f"{event.path}: {event.reason}", title="Session log: records are being lost",
                            severity="error", timeout=30)

    def _request_ended(self, event: TerminalEvent) -> None:
        """Any request's end (the operator's, or a served one's): its record, the status
        line and the panes. A refusal at submission was told when it was sent."""
        record = self.records.get(event.request_id or 0)
        if record is not None:
            if isinstance(event, Rejected):
                record.outcome, record.error = "rejected", event.reason
            elif isinstance(event, Failed):
                record.outcome, record.error, record.metrics = "failed", event.error, event.metrics
            else:
                record.outcome = "finished" if isinstance(event, Finished) else "cancelled"
                record.text, record.metrics = event.text, event.metrics
            if exchange := self.exchanges.get(record.request_id):
                exchange.post_message(Exchange.Ended())
        if isinstance(event, Rejected) and record is not None:  # the operator's, which waited too long
            self.notify(event.reason, title=f"Request #{event.request_id} not served", severity="error", timeout=10)
        if isinstance(event, Failed):
            self.notify(event.error, title=f"Request #{event.request_id} failed", severity="error", timeout=10)
        self._handles.pop(event.request_id or 0, None)
        engine = "ready" if not self.service.running_count() else self._status.status.engine
        self._status.change(engine=engine, queue=self.service.queue_length())
        self._show_latency()
        self._show_breaker()

    def _connection_changed(self, event: ConnectionChanged) -> None:
        """A remote engine's link (attach): its state in words; once live, every figure anew."""
        self._status.change(link=event.describe())
        if event.state is not ConnectionState.LIVE:
            return
        if event.server_restarted:
            self.notify("the server restarted: its figures and request numbers start over",
                        title="Server restarted", severity="warning")
        mode = self.service.mode()
        self.requested_mode = mode.requested if mode else self.requested_mode
        self._show_running_service()
        self.dashboard.query_one(LatencyPane).set_threshold(self.service.breaker_view().config.slow_call_ms)
        self._status.change(queue=self.service.queue_length(),
                            engine="ready" if self.service.state is ServiceState.READY else self.service.state.value)
        self._show_clients()
        self._show_latency()
        self._show_breaker()
        self._show_mode()

    def _mode_changed(self, event: ModeChanged) -> None:
        if event.requested_by == "experiment":  # the Experiment screen reports its own switches
            self._show_mode()
            return
        if event.error:
            self.mode_note = f"failed: {event.error}"
            self.notify(event.error, title=f"Mode {event.requested} not applied", severity="error", timeout=10)
        elif event.deferred:
            self.mode_note = "after this answer"
        else:
            self.mode_note = None
            self.requested_mode = event.requested  # whoever asked: another watcher of a served engine, too
            readback = event.readback
            detail = f"effective {readback.effective}" if readback else ""
            self.notify(detail, title=f"Mode {event.requested}")
        self._show_mode()

    # -- drawing --------------------------------------------------------------------------

    @property
    def _status(self) -> StatusLine:
        return self.dashboard.query_one(StatusLine)

    def _show_latency(self) -> None:
        if not self.frozen:
            self.dashboard.query_one(LatencyPane).show(self.service.metrics_summary())

    def _list_request(self, event: Event) -> None:
        """Serve mode: every request's row in the Requests pane, whoever sent it."""
        pane = self._requests_pane
        if isinstance(event, Accepted):
            pane.accepted(event.request_id, event.origin, event.prompt)
        elif isinstance(event, Started):
            pane.started(event.request_id)
        elif isinstance(event, (Finished, Cancelled, Failed)):
            pane.ended(event.request_id, event.kind, event.metrics)
        elif isinstance(event, Rejected):
            pane.rejected(event.request_id, event.cause)

    @functools.cached_property
    def _requests_pane(self) -> RequestsPane:
        return self.dashboard.query_one(RequestsPane)

    def _show_clients(self) -> None:
        if self.is_running and self.serving is not None:
            self._status.change(serving=self.serving.address, clients=self.serving.connections())

    def _poll_breaker(self) -> None:
        """Only OPEN changes with time (its countdown, and the lazy move to HALF-OPEN);
        every other change arrives as an event. Also the session log's recovery, which
        has no event: a record written again after losses."""
        if not self.is_running:
            return
        if self._status.status.log_failing and not self.service.log_status().failing:
            self._status.change(log_failing=False)
            self.notify(f"{self._status.status.log_lost} records were lost", title="Session log: writing again",
                        timeout=10)
        snapshot = self.dashboard.query_one(BreakerPane).snapshot
        if snapshot is not None and snapshot.state is BreakerState.OPEN:
            self._show_breaker()

    def _show_breaker(self) -> None:
        self.dashboard.query_one(BreakerPane).show(
            self.service.breaker_view(), self.key_display("isolate-breaker"), self.key_display("reset-breaker")
        )

    def _show_mode(self) -> None:
        self.dashboard.query_one(PerformancePane).show(
            self.requested_mode, self.service.mode(), self.mode_note, self.key_display("toggle-burst")
        )

    def _show_generation(self) -> None:
        self.dashboard.query_one(GenerationSettingsLabel).show(self.generation)

    def key_display(self, binding_id: str) -> str:
        """The key bound to binding_id now (after any keymap), as the footer shows it."""
        spec = next(key for key in keys.APP_KEYS if key.id == binding_id)
        mapped = self._keymap.get(binding_id, spec.keys)
        return " / ".join(self.get_key_display(Binding(key, spec.action)) for key in mapped.split(","))

    # -- system sampling ------------------------------------------------------------------

    @work(thread=True, group="system-sampler", exit_on_error=False)
    def _sample_system(self) -> None:
        """One long-lived thread: psutil calls (or waits for a remote engine's samples) never
        run on the UI thread."""
        for sample in self.sampler.samples(self._quitting, self.settings.refresh_s):
            self.post_message(SystemSampled(sample))

    def on_system_sampled(self, message: SystemSampled) -> None:
        if not self.is_running:
            return
        pane = self.dashboard.query_one(SystemPane)
        pane.record(message.sample)
        if not self.frozen:
            pane.show()

    # -- the prompt -----------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    async def send_prompt(self, message: Input.Submitted) -> None:
        prompt_input = self.dashboard.query_one(PromptInput)
        prompt = message.value
        if prompt.strip():
            prompt_input.remember(prompt)
        request = GenerationRequest(
            prompt=prompt,
            max_new_tokens=self.generation.max_new_tokens,
            temperature=self.generation.temperature,
            top_k=self.settings.top_k,
            top_p=self.settings.top_p,
            seed=self.settings.seed,
            chat=self.generation.chat,
            system=self.settings.system,
        )
        handle = self.service.submit(request)
        if handle.rejection is not None:
            self.notify(handle.rejection.reason, title="Not sent", severity="error", timeout=8)
            return
        request_id = handle.request_id
        if not handle.done:
            self._handles[request_id] = handle
        prompt_input.value = ""
        record = self.records[request_id] = RequestRecord(request_id, request, time.time())
        exchange = self.exchanges[request_id] = Exchange(record, self.generation.describe())
        await self.dashboard.query_one(Conversation).add(exchange)

    def set_generation(self, **changes) -> None:
        self.generation = replace(self.generation, **changes)
        self._show_generation()

    # -- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Single-key actions work on the dashboard outside the prompt; hidden elsewhere."""
        if action in keys.OUTSIDE_PROMPT_ACTIONS:
            return self.screen is self.dashboard and not isinstance(self.screen.focused, Input)
        return True

    def action_stop(self) -> None:
        """Stop the running answer and drop the queued ones; with nothing to stop, leave
        the prompt so the single-key commands work."""
        waiting = [rid for rid, record in self.records.items() if not record.ended]
        for request_id in reversed(waiting):  # queued ones first, so none starts as the running one stops
            self.service.cancel(request_id)
        if not waiting and isinstance(self.screen.focused, PromptInput):
            self.dashboard.query_one(Conversation).focus()

    def action_focus_prompt(self) -> None:
        self.dashboard.query_one(PromptInput).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_display, self.service.metrics_summary().window))

    def action_experiment(self) -> None:
        # imported on first use: it brings the statistics (numpy), which a Genie session need not load
        from antinet_tui.frontends.app.screens.experiment import ExperimentScreen

        if not isinstance(self.screen, ExperimentScreen):
            self.push_screen(ExperimentScreen(self.service, self.export_dir, engine_for=self._start_engine_for))

    def _start_engine_for(self, backend: str):
        """A started engine of another backend, for the Experiment screen's engine comparison
        (same model and settings, no session log of its own); the screen shuts it down."""
        from dataclasses import replace

        from antinet_tui.frontends.wiring import build_service

        return build_service(replace(self.settings, backend=backend, no_log=True)).start()

    def action_toggle_burst(self) -> None:
        capabilities = self.service.capabilities()
        if capabilities is None:
            self.notify("the model is still loading; modes can change once it is ready", severity="warning")
            return
        if "burst" not in capabilities.mode_names:
            self.notify(
                f"this backend has no burst mode; its modes: {', '.join(capabilities.mode_names)}", severity="warning"
            )
            return
        self.request_mode(capabilities.default_mode if self.requested_mode == "burst" else "burst")

    def request_mode(self, name: str) -> None:
        try:
            self.service.set_mode(name)
        except EngineReserved as exc:  # an experiment holds the modes: the runtime says so
            self.notify(str(exc), title=f"Mode {name} not applied", severity="warning")
            return
        except EngineError as exc:
            self.notify(str(exc), title=f"Mode {name} not applied", severity="error", timeout=10)
            return
        self.requested_mode = name
        self.mode_note = "applying…"
        self._show_mode()

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self._status.change(frozen=self.frozen)
        for pane in (self.dashboard.query_one(LatencyPane), self.dashboard.query_one(SystemPane)):
            pane.border_subtitle = "FROZEN" if self.frozen else ""
        if not self.frozen:
            self._show_latency()
            self.dashboard.query_one(SystemPane).show()

    def action_isolate_breaker(self) -> None:
        self._breaker_action(self.service.isolate_breaker, "isolated")

    def action_reset_breaker(self) -> None:
        self._breaker_action(self.service.reset_breaker, "reset")

    def _breaker_action(self, action, done: str) -> None:
        try:
            action()
        except EngineError as exc:  # a remote engine that cannot be reached
            self.notify(str(exc), title=f"Breaker not {done}", severity="error", timeout=10)
        self._show_breaker()

    def action_toggle_chat(self) -> None:
        self.set_generation(chat=not self.generation.chat)

    def action_max_tokens(self, direction: int) -> None:
        self.generation = self.generation.step_tokens(direction)
        self._show_generation()

    def action_temperature(self, delta: float) -> None:
        self.generation = self.generation.step_temperature(delta)
        self._show_generation()

    async def action_clear_history(self) -> None:
        ended = [rid for rid, record in self.records.items() if record.ended]
        for request_id in ended:
            del self.records[request_id]
            await self.exchanges.pop(request_id).remove()
        if not self.exchanges:
            await self.dashboard.query_one(Conversation).clear()

    def action_export_session(self) -> None:
        self._export([replace(record) for record in self.records.values()])  # copies: answers may still grow

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, records: list[RequestRecord]) -> None:
        info = self.service.model_info()
        header = {
            "model": info.name if info else None,
            "model_path": info.path if info else None,
            "backend": info.backend if info else self.settings.backend,
            "requests_exported": len(records),
        }
        try:
            json_path, md_path = export_session(records, header, self.export_dir)
        except OSError as exc:
            self.call_from_thread(
                self.notify, f"could not write the export: {exc}", title="Export failed", severity="error", timeout=10
            )
            return
        noun = "request" if len(records) == 1 else "requests"
        self.call_from_thread(
            self.notify, f"{json_path}\n{md_path}", title=f"Exported {len(records)} {noun}", timeout=10
        )

    # -- the palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for source in self.command_sources:
            yield from source(self)
