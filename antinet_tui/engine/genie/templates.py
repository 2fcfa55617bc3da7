"""The chat prompt format for a Genie bundle.

Genie applies no chat template: the caller sends the fully formatted text, and because
Query resets the dialog each time, the whole conversation every time. Bundles carry no
template either, so we take, in order: an explicit choice, the bundle's `prompt.json`
(the format of Qualcomm's GenieAPIService samples, with `string` as the placeholder), or
a guess from the special tokens in tokenizer.json; failing all, the prompt goes as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from antinet_tui.engine.genie.errors import GenieBundleError

DEFAULT_SYSTEM = "You are a helpful assistant."
PLACEHOLDER = "string"


@dataclass(frozen=True)
class ChatFormat:
    name: str
    system: str  # wraps the system text; contains PLACEHOLDER
    user: str  # wraps the user text; contains PLACEHOLDER
    assistant_start: str  # opens the assistant's turn

    def render(self, prompt: str, system: str | None) -> str:
        return (
            self.system.replace(PLACEHOLDER, system or DEFAULT_SYSTEM, 1)
            + self.user.replace(PLACEHOLDER, prompt, 1)
            + self.assistant_start
        )


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
    "llama2": ChatFormat("llama2", "<s>[INST] <<SYS>>\nstring\n<</SYS>>\n\n", "string [/INST]", ""),
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
