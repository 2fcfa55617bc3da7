"""The knobs of the next request, beside the prompt: max new tokens, temperature, chat/raw.

They change from the keyboard ([ ] tokens, - + temperature, m chat/raw outside the
prompt; the palette anywhere) and apply to the next request sent.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from rich.text import Text
from textual.widgets import Static

TOKEN_STEPS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TEMPERATURE_STEP = 0.1
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int
    temperature: float
    chat: bool

    def step_tokens(self, direction: int) -> GenerationSettings:
        """Move to the next power of two up or down (from any starting value)."""
        if direction > 0:
            index = bisect.bisect_right(TOKEN_STEPS, self.max_new_tokens)
            return replace(self, max_new_tokens=TOKEN_STEPS[min(index, len(TOKEN_STEPS) - 1)])
        index = bisect.bisect_left(TOKEN_STEPS, self.max_new_tokens) - 1
        return replace(self, max_new_tokens=TOKEN_STEPS[max(index, 0)])

    def step_temperature(self, delta: float) -> GenerationSettings:
        value = round(min(MAX_TEMPERATURE, max(0.0, self.temperature + delta)), 2)
        return replace(self, temperature=value)

    def describe(self) -> str:
        temperature = "0 (greedy)" if self.temperature == 0 else f"{self.temperature:.2f}"
        return f"max {self.max_new_tokens} tokens · temp {temperature} · {'chat' if self.chat else 'raw'}"


class GenerationSettingsLabel(Static):
    def show(self, settings: GenerationSettings) -> None:
        self.update(Text(settings.describe()))
