"""Soak the runtime: many requests through one EngineService, watching threads and RSS.

    .venv/bin/python benchmarks/soak.py --requests 500 [--model tiny.gguf] [--backend SPEC]

The mix exercises every path that could leak: finished requests, a cancel after the
first token (every 10th), bad input (every 25th), a mode switch (every 50th). It prints
the engine process's threads and RSS after a warm-up, every 100 requests, at the end,
and the thread count after shutdown. Exit status 1 when threads grew, a request failed,
or an outcome was not the expected one.

--backend is `fake` (tests/fakes.py, the default), a backend name
known to engine.backends (`numpy`, `genie`), or `package.module:factory`: a callable
taking the model path (or None) and returning a Backend. `main(argv, backend_factory_override=...)`
takes such a callable directly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from antinet_tui.engine.protocol import Backend, GenerationRequest
from antinet_tui.runtime.client import generate
from antinet_tui.runtime.events import Rejected, Token
from antinet_tui.runtime.service import EngineService
from antinet_tui.runtime.session_log import SessionLog

BackendFactory = Callable[[str | None], Backend]
WARM_UP = 10


def backend_factory(spec: str) -> BackendFactory:
    if spec == "fake":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from fakes import FakeBackend

        return lambda model: FakeBackend(token_delay_s=0.002, keep_history=False)  # ms per token, like a tiny model
    if ":" in spec:
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)
    from antinet_tui.engine.backends import create_backend

    return lambda model: create_backend(spec, model)


def vitals() -> str:
    process = psutil.Process()
    return (
        f"rss {process.memory_info().rss / 2**20:7.1f} MiB  "
        f"threads {threading.active_count()} python / {process.num_threads()} OS"
    )


def run_one(service: EngineService, i: int, max_new_tokens: int) -> str:
    """One request of the mix; returns the outcome kind, or the surprise that happened."""
    if i % 25 == 24:
        outcome = generate(service, GenerationRequest("   "))
        refused = isinstance(outcome, Rejected) and outcome.cause == "bad_input"
        return "rejected" if refused else f"unexpected {outcome.kind}"
    # raw and short: fits a tiny test model's context; the soak is about the runtime, not the answers
    request = GenerationRequest(f"soak {i}", max_new_tokens=max_new_tokens, seed=i, chat=False)
    if i % 10 == 9:

        def cancel_after_first(token: Token) -> None:
            if token.index == 0:
                service.cancel(token.request_id)

        return generate(service, request, cancel_after_first).kind
    return generate(service, request).kind


def main(argv: list[str] | None = None, backend_factory_override: BackendFactory | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--model", help="model path for the backend (default: the backend's own)")
    parser.add_argument("--backend", default="fake", help="fake, numpy, genie or module:factory")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--log-file", type=Path, help="also write a session log (default: none)")
    args = parser.parse_args(argv)

    factory = backend_factory_override or backend_factory(args.backend)
    log = SessionLog(args.log_file) if args.log_file else None
    service = EngineService(factory(args.model), session_log=log)
    service.start()
    if not service.wait_ready():
        print(f"load failed: {service.load_error()}", file=sys.stderr)
        service.shutdown()
        return 1
    capabilities = service.capabilities()
    assert capabilities is not None  # loaded
    modes = capabilities.mode_names
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(args.requests):
        if i == WARM_UP:
            threads_at_start = threading.active_count()
            print(f"start ({WARM_UP} requests in):  {vitals()}")
        if i % 50 == 49:
            service.set_mode(modes[(i // 50) % len(modes)])
        outcomes[run_one(service, i, args.max_new_tokens)] += 1
        if (i + 1) % 100 == 0:
            print(f"{i + 1:5d} requests:       {vitals()}")
    elapsed = time.perf_counter() - started
    threads_at_end = threading.active_count()
    print(f"end:                  {vitals()}")
    service.shutdown()
    print(f"after shutdown:       threads {threading.active_count()} python")

    e2e = service.metrics_summary().percentiles("e2e_ms")
    print(f"{args.requests} requests in {elapsed:.1f} s: {dict(sorted(outcomes.items()))}")
    if e2e["n"]:
        print(f"e2e of the last {e2e['n']} finished: p50 {e2e['p50']:.1f} ms, p95 {e2e['p95']:.1f} ms")
    expected_rejections = sum(1 for i in range(args.requests) if i % 25 == 24)
    surprises = [kind for kind in outcomes if kind not in ("finished", "cancelled", "rejected")]
    healthy = (
        not surprises
        and outcomes["rejected"] == expected_rejections
        and threads_at_end <= threads_at_start
    )
    if not healthy:
        print(
            f"UNHEALTHY: unexpected outcomes {surprises}, {outcomes['rejected']} rejected"
            f" (expected {expected_rejections}), threads {threads_at_start} -> {threads_at_end}",
            file=sys.stderr,
        )
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
