"""The main screen's layout: status line; answers beside the measurement panes; the prompt
with the next request's settings; the footer. Behaviour lives in the app, which owns the
engine subscription; this screen only arranges the widgets."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from antinet_tui.frontends.app.widgets.breaker_pane import BreakerPane
from antinet_tui.frontends.app.widgets.conversation import Conversation
from antinet_tui.frontends.app.widgets.generation_settings import GenerationSettingsLabel
from antinet_tui.frontends.app.widgets.latency_pane import LatencyPane
from antinet_tui.frontends.app.widgets.performance_pane import PerformancePane
from antinet_tui.frontends.app.widgets.prompt_input import PromptInput
from antinet_tui.frontends.app.widgets.requests_pane import RequestsPane
from antinet_tui.frontends.app.widgets.status_line import StatusLine
from antinet_tui.frontends.app.widgets.system_pane import SystemPane


class DashboardScreen(Screen):
    AUTO_FOCUS = "#prompt"

    def __init__(self, backend: str, slow_call_ms: float, serving: bool = False):
        """`serving`: the HTTP API runs on this engine; the Requests pane goes under the answers."""
        super().__init__(id="dashboard")
        self.backend = backend
        self.slow_call_ms = slow_call_ms
        self.serving = serving

    def compose(self) -> ComposeResult:
        yield StatusLine(self.backend, id="status")
        with Horizontal(id="main"):
            with Vertical(id="answers"):
                yield Conversation(id="conversation")
                if self.serving:
                    yield RequestsPane(id="requests")
            with VerticalScroll(id="sidebar"):
                yield LatencyPane(self.slow_call_ms, id="latency")
                yield BreakerPane(id="breaker")
                yield PerformancePane(id="performance")
                yield SystemPane(id="system")
        with Horizontal(id="prompt-bar"):
            yield PromptInput(id="prompt")
            yield GenerationSettingsLabel(id="generation-settings")
        yield Footer()
