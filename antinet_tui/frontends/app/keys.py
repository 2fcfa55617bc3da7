"""Every key of the dashboard, in one table: the app's BINDINGS and the help screen are
both built from it. Each binding has an id, so `DashboardApp(keymap={"toggle-burst":
"ctrl+b"})` remaps it (Textual keymaps, as posting does).

Single keys (b, f, i, r, ...) act only outside the prompt: in the prompt they are text.
Esc leaves the prompt when nothing is generating; Enter (or Tab) goes back to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    id: str
    keys: str
    action: str
    description: str
    where: str  # "anywhere", "prompt" or "outside the prompt"
    show: bool = True  # in the footer
    priority: bool = False


APP_KEYS = (
    Key("quit", "ctrl+q", "quit", "Quit (stops a running answer)", "anywhere", priority=True),
    Key("stop", "escape", "stop", "Stop the answer; when idle, leave the prompt", "anywhere"),
    Key("help", "f1", "help", "Help: keys and definitions", "anywhere"),
    Key("help-key", "question_mark", "help", "Help", "outside the prompt", show=False),
    Key("toggle-burst", "b", "toggle_burst", "Burst/default mode", "outside the prompt"),
    Key("freeze", "f", "freeze", "Freeze/unfreeze the charts", "outside the prompt"),
    Key("experiment", "x", "experiment", "Experiment: compare performance modes", "outside the prompt"),
    Key("isolate-breaker", "i", "isolate_breaker", "Isolate the breaker (refuse requests)", "outside the prompt"),
    Key("reset-breaker", "r", "reset_breaker", "Reset the breaker to CLOSED", "outside the prompt"),
    Key("toggle-chat", "m", "toggle_chat", "Chat template on/off (raw prompt)", "outside the prompt"),
    Key(
        "fewer-tokens",
        "left_square_bracket",
        "max_tokens(-1)",
        "Halve max new tokens",
        "outside the prompt",
        show=False,
    ),
    Key(
        "more-tokens",
        "right_square_bracket",
        "max_tokens(1)",
        "Double max new tokens",
        "outside the prompt",
        show=False,
    ),
    Key("cooler", "minus", "temperature(-0.1)", "Temperature −0.1", "outside the prompt", show=False),
    Key("warmer", "plus,equals_sign", "temperature(0.1)", "Temperature +0.1", "outside the prompt", show=False),
    Key("focus-prompt", "enter", "focus_prompt", "Back to the prompt", "outside the prompt", show=False),
)

# Documented here, bound elsewhere (by Textual or by the prompt widget).
OTHER_KEYS = (
    ("enter", "Send the prompt", "prompt"),
    ("up / down", "Walk this session's prompts", "prompt"),
    ("ctrl+p", "Command palette: every mode, breaker, export, clear, settings", "anywhere"),
    ("tab / shift+tab", "Move between the prompt, the answers and the panes", "anywhere"),
)


def _actions(where: str) -> set[str]:
    return {key.action.split("(")[0] for key in APP_KEYS if key.where == where}


# Actions only single keys reach: hidden from the footer (and off) while the prompt has focus.
OUTSIDE_PROMPT_ACTIONS = frozenset(_actions("outside the prompt") - _actions("anywhere"))


def bindings() -> list[Binding]:
    # Short footer labels: the footer must fit 80 columns.
    short = {
        "quit": "Quit",
        "stop": "Stop",
        "help": "Help",
        "toggle-burst": "Burst",
        "freeze": "Freeze",
        "isolate-breaker": "Isolate",
        "reset-breaker": "Reset",
        "toggle-chat": "Chat/raw",
        "experiment": "Experiment",
    }
    return [
        Binding(
            key.keys,
            key.action,
            short.get(key.id, key.description),
            show=key.show,
            priority=key.priority,
            id=key.id,
            tooltip=key.description,
        )
        for key in APP_KEYS
    ]
