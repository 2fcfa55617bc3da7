"""The chat prompt format for a Genie bundle.

Genie applies no chat template: the caller sends the fully formatted text, and because
Query resets the dialog each time, the whole conversation every time. Bundles carry no
template either, so we take, in order: an explicit choice, the bundle's `prompt.json`
(the format of Qualcomm's GenieAPIService samples, with `string` as the placeholder), or
a guess from the special tokens in tokenizer.json; failing all, the prompt goes as is.

A conversation renders as: the system wrap once (every system turn's text, joined; the
default system text when there is none), then each user turn in the user wrap and each
earlier assistant turn in the assistant wrap, then the opening of the assistant's turn.
A prompt.json has no assistant wrap: its user wrap's end (the end-of-turn marker after
the placeholder) closes an assistant turn too, as it does in every format here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from antinet_tui.engine.genie.errors import GenieBundleError
from antinet_tui.engine.protocol import Message

DEFAULT_SYSTEM = "You are a helpful assistant."
PLACEHOLDER = "string"


@dataclass(frozen=True)
class ChatFormat:
    name: str
    system: str  # wraps the system text; contains PLACEHOLDER
    user: str  # wraps the user text; contains PLACEHOLDER
    assistant_start: str  # opens the assistant's turn
    assistant: str = ""  # wraps an earlier assistant turn; "" derives it (see the module doc)

    def render(self, prompt: str, system: str | None) -> str:
        turns = (Message("system", system),) if system else ()
        return self.render_conversation((*turns, Message("user", prompt)))

    def render_conversation(self, turns: Sequence[Message]) -> str:
        systems = [turn.content for turn in turns if turn.role == "system"]
        parts = [self.system.replace(PLACEHOLDER, "\n\n".join(systems) or DEFAULT_SYSTEM, 1)]
        for turn in turns:
            if turn.role == "user":
                parts.append(self.user.replace(PLACEHOLDER, turn.content, 1))
            elif turn.role == "assistant":
                parts.append(self.assistant_wrap.replace(PLACEHOLDER, turn.content, 1))
        return "".join(parts) + self.assistant_start

    @property
    def assistant_wrap(self) -> str:
        if self.assistant:
            return self.assistant
        end_of_turn = self.user.split(PLACEHOLDER, 1)[1]
        return self.assistant_start + PLACEHOLDER + end_of_turn


BUILTIN_FORMATS: dict[str, ChatFormat] = {
    "llama3": ChatFormat(
        "llama3",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nstring<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nstring<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "chatml": ChatFormat(
        "chatml",
        "<|im_start|>system\nstring<|im_end|>\n",
        "<|im_start|>user\nstring<|im_end|>\n",
        "<|im_start|>assistant\n",
    ),
    "phi3": ChatFormat(
        "phi3",
        "<|system|>\nstring<|end|>\n",
        "<|user|>\nstring<|end|>\n",
        "<|assistant|>\n",
    ),
    # llama2 has no end-of-turn marker after the user's text: an answer ends with </s>,
    # and the next user turn opens a new [INST]
    "llama2": ChatFormat("llama2", "<s>[INST] <<SYS>>\nstring\n<</SYS>>\n\n", "string [/INST]", "",
                         " string </s><s>[INST] "),
}

# A special token that only one family's tokenizer carries → that family's format.
_SIGNATURE_TOKENS = (
    ("<|start_header_id|>", "llama3"),
    ("<|im_start|>", "chatml"),
    ("<|assistant|>", "phi3"),
)


def choose_format(choice: str | None, bundle_dir: Path, tokenizer_path: Path) -> ChatFormat | None:
    """The format to use (None: send prompts as is). `choice` is a name, "raw" or a path."""
    if choice == "raw":
        return None
    if choice in BUILTIN_FORMATS:
        return BUILTIN_FORMATS[choice]
    if choice:
        return _from_prompt_json(Path(choice))
    if (bundle_dir / "prompt.json").is_file():
        return _from_prompt_json(bundle_dir / "prompt.json")
    return _guess_from_tokenizer(tokenizer_path)


def _from_prompt_json(path: Path) -> ChatFormat:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ChatFormat(
            f"prompt.json ({path})",
            data["prompt_system"],
            data["prompt_user"],
            data["prompt_start"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        valid = ", ".join([*BUILTIN_FORMATS, "raw"])
        raise GenieBundleError(
            f"chat template {str(path)!r} is neither a known format ({valid}) nor a readable "
            f"prompt.json with prompt_system, prompt_user and prompt_start: {exc}"
        ) from exc


def _guess_from_tokenizer(tokenizer_path: Path) -> ChatFormat | None:
    try:
        added = json.loads(tokenizer_path.read_text(encoding="utf-8")).get("added_tokens", [])
    except (OSError, ValueError, AttributeError):
        return None
    contents = {token.get("content") for token in added if isinstance(token, dict)}
    return next(
        (BUILTIN_FORMATS[name] for token, name in _SIGNATURE_TOKENS if token in contents), None
    )
