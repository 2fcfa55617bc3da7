"""Issue 4's dashboard figures, on the installed SmolLM2 (not timed tests: run by hand).

    .venv/bin/python benchmarks/dashboard.py [decode|keys|launch|all] [--runs N]

decode  Decode tok/s of one request streamed into the dashboard vs the same request
        headless through runtime.client.generate, in one process, one loaded model,
        pairs interleaved (order alternating), warm-up pair discarded. The dashboard runs
        headless under Pilot (rendering, Markdown streaming, panes, psutil sampling all
        happen; the frames go nowhere). Temperature 0, so both generate the same tokens.
        Each dashboard run is a fresh app, settled for 1 s before the prompt, that starts
        from the redraw pacing the previous run learned (as a running session would).
        Reports each pair's ratio (dashboard / headless) and the median ratio.
keys    Key-to-screen latency while a long generation streams: the real app in tmux
        (120x40); one character typed into the prompt at a time with `tmux send-keys`,
        then `tmux capture-pane` polled until the prompt line shows it. Median/p95/max,
        and the same while idle as a baseline.
        With --genie-fake: the same through the Genie backend's worker process over the
        test suite's fake qai_appbuilder, whose Query holds the worker's GIL in busy
        loops (3 s prefill, then 50 ms per token), as the real binding does.
launch  Launch to first frame: `tmux new-session` running `antinet-tui` until the
        status line is on screen (includes the Python interpreter's start). Median of N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antinet_tui.runtime.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv" / "bin" / "antinet-tui")
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
DECODE_TOKENS = 128


# -- decode: dashboard vs headless ---------------------------------------------------------


async def _dashboard_once(service, settings, pacing: dict) -> tuple[float, int]:
    """One answer in a fresh app that has settled (first frame, first psutil sample) and
    carries over the redraw pacing learned in the previous dashboard run, as a session
    that has already answered would."""
    from antinet_tui.frontends.app.app import DashboardApp
    from antinet_tui.frontends.app.widgets.prompt_input import PromptInput

    app = DashboardApp(service, settings, owns_service=False)
    app.pacer.interval = pacing.get("interval", app.pacer.interval)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.sleep(1.0)
        prompt = app.dashboard.query_one(PromptInput)
        prompt.value = PROMPT
        await pilot.press("enter")
        while not app.records or not app.records[max(app.records)].ended:
            await asyncio.sleep(0.1)  # not pilot.pause: that forces screen work the real app would not do
        record = app.records[max(app.records)]
        await pilot.pause(0.2)  # let the final render land before the app closes
        pacing["interval"] = app.pacer.interval
    assert record.outcome == "finished", record.error
    return record.metrics.decode_tok_s, record.metrics.generated_tokens


def bench_decode(runs: int) -> None:
    from antinet_tui.config import Settings
    from antinet_tui.engine.protocol import GenerationRequest
    from antinet_tui.frontends.wiring import build_service
    from antinet_tui.runtime.client import generate

    # A long answer takes ~4 s here: past the default slow-call threshold, the breaker would
    # open after four pairs and refuse the rest. The breaker is not what is measured.
    settings = Settings(no_log=True, temperature=0.0, max_new_tokens=DECODE_TOKENS, slow_call_ms=600_000)
    service = build_service(settings)
    service.start()
    if not service.wait_ready(120):
        raise SystemExit(f"the model did not load: {service.load_error()}")
    request = GenerationRequest(
        PROMPT, max_new_tokens=DECODE_TOKENS, temperature=0.0, top_k=settings.top_k, top_p=settings.top_p
    )

    def headless() -> tuple[float, int]:
        event = generate(service, request)
        return event.metrics.decode_tok_s, event.metrics.generated_tokens

    pacing: dict = {}

    def dashboard() -> tuple[float, int]:
        return asyncio.run(_dashboard_once(service, settings, pacing))

    ratios, rates = [], {"headless": [], "dashboard": []}
    try:
        for i in range(runs + 1):
            order = (("headless", headless), ("dashboard", dashboard))
            if i % 2:
                order = order[::-1]
            pair = {}
            for name, run in order:
                pair[name] = run()
            (h_rate, h_tokens), (d_rate, d_tokens) = pair["headless"], pair["dashboard"]
            assert h_tokens == d_tokens, f"different answers: {h_tokens} vs {d_tokens} tokens"
            label = "warm-up" if i == 0 else f"pair {i}"
            print(
                f"{label:<8} headless {h_rate:5.1f} tok/s  dashboard {d_rate:5.1f} tok/s  "
                f"ratio {d_rate / h_rate:.3f}  ({h_tokens} tokens, {order[0][0]} first)",
                file=sys.stderr,
            )
            if i:
                ratios.append(d_rate / h_rate)
                rates["headless"].append(h_rate)
                rates["dashboard"].append(d_rate)
    finally:
        service.shutdown()
    print(
        f"decode tok/s, {DECODE_TOKENS} tokens at temperature 0, {runs} interleaved pairs: "
        f"headless median {statistics.median(rates['headless']):.1f}, "
        f"dashboard median {statistics.median(rates['dashboard']):.1f}; "
        f"paired ratio median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


# -- tmux-driven: keys and launch ------------------------------------------------------------


class Tmux:
    def __init__(self, name: str, command: str, size: tuple[int, int] = (120, 40), env: dict | None = None):
        if shutil.which("tmux") is None:
            raise SystemExit("tmux is not installed")
        self.name = name
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)
        env = {**os.environ, "ANTINET_FORCE_TUI": "1", **(env or {})}
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), command],
            check=True,
            env=env,
        )

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True,
                              check=False).stdout

    def send(self, *keys: str, literal: bool = False) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *(["-l"] if literal else []), *keys], check=True)

    def wait_for(self, text: str, timeout: float = 120) -> float:
        started = time.perf_counter()
        while text not in self.screen():
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{text!r} not on screen after {timeout} s:\n{self.screen()}")
        return time.perf_counter() - started

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True, check=False)


def _prompt_line(screen: str) -> str:
    """The input's text row: the one the next request's settings sit beside."""
    return next((line for line in screen.splitlines() if line.startswith("▊") and " tokens · temp " in line), "")


def _type_and_time(tmux: Tmux, count: int) -> list[float]:
    """Type `count` characters one at a time; time each until the prompt line shows it.
    Starts from an empty prompt (the placeholder must not satisfy the first match)."""
    latencies = []
    typed = "z"
    tmux.send("z", literal=True)
    while "▊  z" not in _prompt_line(tmux.screen()):
        time.sleep(0.005)
    for i in range(count):
        char = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        expected = (typed + char)[-40:]
        started = time.perf_counter()
        tmux.send(char, literal=True)
        while expected not in _prompt_line(tmux.screen()):
            if time.perf_counter() - started > 5:
                raise TimeoutError(f"{expected!r} never reached the screen")
        latencies.append((time.perf_counter() - started) * 1000)
        typed += char
        time.sleep(0.05)
        if len(typed) >= 60:  # keep the prompt within the visible width
            tmux.send("C-u")
            tmux.send("z", literal=True)
            while "▊  z " not in _prompt_line(tmux.screen()):
                time.sleep(0.005)
            typed = "z"
    return latencies


def _summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(values):.1f} ms, p95 {percentile(sorted(values), 95):.1f} ms, "
        f"max {max(values):.1f} ms (n={len(values)})"
    )


def _genie_fake() -> tuple[str, dict]:
    """CLI arguments and environment for the Genie backend over the fake binding."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "genie"))
    from genie_bundles import FAKE_BINDING, write_bundle

    bundle = write_bundle(Path(tempfile.mkdtemp(prefix="antinet-fake-genie-")))
    env = {"PYTHONPATH": str(FAKE_BINDING), "FAKE_GENIE_HOLD_GIL": "1", "FAKE_GENIE_PREFILL_S": "3",
           "FAKE_GENIE_TOKEN_DELAY_S": "0.05", "FAKE_GENIE_REPLY_TOKENS": "400"}
    return f"--backend genie --model {bundle} --max-new-tokens 400", env


def bench_keys(runs: int, genie_fake: bool = False) -> None:
    count = max(40, runs * 20)
    backend, env = _genie_fake() if genie_fake else ("--max-new-tokens 4096", {})
    tmux = Tmux("antinet-bench-keys", f"{CLI} --no-log --temperature 0 {backend}", env=env)
    try:
        tmux.wait_for("ready")
        idle = _type_and_time(tmux, count // 2)
        tmux.send("C-u")
        tmux.send(PROMPT, literal=True)
        tmux.send("Enter")
        tmux.wait_for("generating… ")
        busy = _type_and_time(tmux, count)
        still_generating = "generating #" in tmux.screen()
        tmux.send("C-q")
    finally:
        tmux.close()
    print(_summary("key to screen, idle", idle))
    print(
        _summary("key to screen, while generating", busy)
        + ("" if still_generating else "  (WARNING: the generation ended before the last key)")
    )


def bench_launch(runs: int) -> None:
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        tmux = Tmux("antinet-bench-launch", f"{CLI} --no-log")
        try:
            while "queue 0" not in tmux.screen():
                if time.perf_counter() - started > 30:
                    raise TimeoutError(f"no first frame after 30 s:\n{tmux.screen()}")
            elapsed = time.perf_counter() - started
            tmux.send("C-q")
            time.sleep(0.5)
        finally:
            tmux.close()
        print(f"{'warm-up' if i == 0 else f'launch {i}'}: first frame after {elapsed * 1000:.0f} ms", file=sys.stderr)
        if i:
            times.append(elapsed * 1000)
    print(f"launch to first frame: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms (n={runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", default="all", choices=("decode", "keys", "launch", "all"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--genie-fake", action="store_true",
                        help="keys: through the Genie worker over the fake binding")
    args = parser.parse_args()
    if args.which in ("decode", "all"):
        bench_decode(args.runs)
    if args.which in ("keys", "all"):
        bench_keys(args.runs, args.genie_fake)
    if args.which in ("launch", "all"):
        bench_launch(args.runs)


if __name__ == "__main__":
    main()
