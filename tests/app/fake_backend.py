"""What the dashboard tests need beyond tests/fakes.py: an answer that stops mid-stream
until the test lets it go, a frozen breaker clock, a fixed psutil sample and a seeded
metrics store, so a screen can be captured mid-answer and look the same on every run."""

from __future__ import annotations

import threading

from fakes import FakeBackend

from antinet_tui.platform.system_stats import SystemSample, SystemSampler
from antinet_tui.runtime.metrics import MetricsStore, RequestMetrics


class PausingBackend(FakeBackend):
    """Emits `pause_after` tokens, then waits for `resume` (or a cancel) before the rest."""

    def __init__(self, *, pause_after: int, **options):
        super().__init__(**options)
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()

    def generate(self, request, on_token, cancel):
        emitted = 0

        def on_token_then_maybe_wait(token_id: int, text: str) -> None:
            nonlocal emitted
            on_token(token_id, text)
            emitted += 1
            if emitted == self.pause_after:
                self.paused.set()
                while not self.resume.wait(0.005) and not cancel.is_set():
                    pass

        return super().generate(request, on_token_then_maybe_wait, cancel)


FIXED_SAMPLE = SystemSample(
    per_core_percent=(12.0, 87.0, 40.0, 5.0),
    cpu_percent=36.0,
    freq_mhz=2400.0,
    freq_max_mhz=3000.0,
    memory_used=6 * 2**30,
    memory_total=16 * 2**30,
    process_rss=300 * 2**20,
    process_threads=7,
    load_average=(1.5, 1.25, 1.0),
    temperatures_c=None,
    battery=None,
)


class FixedSampler(SystemSampler):
    def __init__(self) -> None:  # no psutil: the same sample every time
        pass

    def sample(self) -> SystemSample:
        return FIXED_SAMPLE


def seeded_metrics(n: int = 12) -> MetricsStore:
    """A session's worth of finished requests with fixed figures, so charts have a shape."""
    store = MetricsStore()
    for i in range(n):
        store.record(
            RequestMetrics(
                queue_wait_ms=0.2,
                ttft_ms=180 + 15 * (i % 4),
                prefill_tok_s=210.0 + i,
                decode_tok_s=30.0 + (i % 5),
                e2e_ms=900 + 400 * (i % 6),
                prompt_tokens=40,
                generated_tokens=32,
                mode="default",
                stop_reason="eos",
                outcome="finished",
                service_ms=899.8 + 400 * (i % 6),  # e2e less the queue wait
            )
        )
    return store
