"""What the command palette (ctrl+p) offers, gathered from a list of sources.

A source is a function `(app) -> iterable of SystemCommand`. The app asks every source in
`DashboardApp.command_sources` each time the palette opens, so commands that depend on
state (the modes the loaded backend supports) are always current. To add commands (an
experiment runner, say), write a source and append it: `command_sources=[*DEFAULT_SOURCES,
experiment_commands]` when constructing the app; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from antinet_tui.frontends.app.widgets.generation_settings import TOKEN_STEPS

if TYPE_CHECKING:
    from antinet_tui.frontends.app.app import DashboardApp

CommandSource = Callable[["DashboardApp"], Iterable[SystemCommand]]

PALETTE_TEMPERATURES = (0.0, 0.2, 0.5, 0.8, 1.0)


def mode_commands(app: DashboardApp) -> Iterable[SystemCommand]:
    capabilities = app.service.capabilities()
    if capabilities is None:
        yield SystemCommand(
            "Mode: (the model is still loading)", "Modes are listed once the backend is ready", app.bell
        )
        return
    for mode in capabilities.modes:
        marker = " (the backend's default)" if mode.name == capabilities.default_mode != "default" else ""
        yield SystemCommand(f"Mode: {mode.name}{marker}", mode.description, partial(app.request_mode, mode.name))


def breaker_commands(app: DashboardApp) -> Iterable[SystemCommand]:
    yield SystemCommand(
        "Breaker: isolate", "Force the breaker open: refuse requests until reset", app.action_isolate_breaker
    )
    yield SystemCommand("Breaker: reset", "Back to CLOSED with an empty window", app.action_reset_breaker)


def session_commands(app: DashboardApp) -> Iterable[SystemCommand]:
    yield SystemCommand(
        "Export the session", "Write this session's requests as JSON and Markdown", app.action_export_session
    )
    yield SystemCommand(
        "Clear history",
        "Remove the answers from the screen and from the export (the session log keeps them)",
        app.action_clear_history,
    )
    yield SystemCommand("Freeze / unfreeze the charts", "Stop redrawing latency and system charts", app.action_freeze)


def generation_commands(app: DashboardApp) -> Iterable[SystemCommand]:
    for tokens in TOKEN_STEPS:
        yield SystemCommand(
            f"Max new tokens: {tokens}", "For the next requests", partial(app.set_generation, max_new_tokens=tokens)
        )
    for temperature in PALETTE_TEMPERATURES:
        label = "0 (greedy)" if temperature == 0 else f"{temperature:g}"
        yield SystemCommand(
            f"Temperature: {label}", "For the next requests", partial(app.set_generation, temperature=temperature)
        )
    yield SystemCommand(
        "Chat template: on", "Wrap prompts in the model's chat template", partial(app.set_generation, chat=True)
    )
    yield SystemCommand("Chat template: off (raw)", "Send prompts as typed", partial(app.set_generation, chat=False))


def experiment_commands(app: DashboardApp) -> Iterable[SystemCommand]:
    yield SystemCommand(
        "Run experiment…",
        "Compare performance modes fairly: interleaved pairs, forced token counts, 95 % intervals",
        app.action_experiment,
    )


DEFAULT_SOURCES: tuple[CommandSource, ...] = (
    mode_commands, experiment_commands, breaker_commands, generation_commands, session_commands,
)
