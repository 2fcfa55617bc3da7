"""How figures read on screen: one place, so every pane writes "n/a" and units the same way."""

from __future__ import annotations

from antinet_tui.runtime.metrics import RequestMetrics

NOT_AVAILABLE = "n/a"


def ms(value: float | None) -> str:
    if value is None:
        return NOT_AVAILABLE
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def rate(value: float | None) -> str:
    if value is None:
        return NOT_AVAILABLE
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def size(n_bytes: float | None) -> str:
    if n_bytes is None:
        return NOT_AVAILABLE
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit in ("B", "KiB") or n_bytes >= 100 else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def cores(core_ids: list[int] | tuple[int, ...] | None) -> str:
    """[0, 1, 2, 3, 6] -> "0-3,6": affinity masks stay short on many-core machines."""
    if not core_ids:
        return NOT_AVAILABLE
    ids = sorted(core_ids)
    runs: list[str] = []
    start = previous = ids[0]
    for core in [*ids[1:], None]:
        if core is not None and core == previous + 1:
            previous = core
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if core is not None:
            start = previous = core
    return ",".join(runs)


def stop_words(stop_reason: str) -> str:
    """Why an answer ended, as shown under it (the other reasons read as they are)."""
    return {"stop_string": "stop string"}.get(stop_reason, stop_reason)


def request_figures(metrics: RequestMetrics) -> str:
    """The line under a finished answer, in the order an operator reads them."""
    parts = [
        f"TTFT {ms(metrics.ttft_ms)} ms",
        f"decode {rate(metrics.decode_tok_s)} tok/s",
        f"prefill {rate(metrics.prefill_tok_s)} tok/s",
        f"{metrics.generated_tokens} tokens" + (f" ({stop_words(metrics.stop_reason)})" if metrics.stop_reason else ""),
        f"e2e {ms(metrics.e2e_ms)} ms",
        f"mode {metrics.mode or NOT_AVAILABLE}",
    ]
    if metrics.queue_wait_ms >= 50:
        parts.append(f"queued {ms(metrics.queue_wait_ms)} ms")
    return " · ".join(parts)
