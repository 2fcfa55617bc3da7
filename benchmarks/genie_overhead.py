"""What the worker process costs per token: GenieBackend vs calling the binding in-process.

Runs N tokens through the real child-process path with a zero-delay fake binding (one
token per callback, the worst case) and the same fake called directly in this process,
with warm-up and repetitions; reports medians. Needs a source checkout: the fake binding
and the bundle writer live in tests/genie.

    .venv/bin/python benchmarks/genie_overhead.py --tokens 1000 --runs 7
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from antinet_tui.engine.genie.backend import GenieBackend
from antinet_tui.engine.genie.bundle import GenieBundle
from antinet_tui.engine.protocol import GenerationRequest

TESTS_GENIE = Path(__file__).resolve().parents[1] / "tests" / "genie"


def _in_process_seconds(config: Path, tokens: int) -> float:
    """One Query of `tokens` tokens on the fake, in this process, callback appending text."""
    qai_appbuilder = importlib.import_module("qai_appbuilder")
    context = qai_appbuilder.GenieContext(str(config))
    context.SetParams(str(tokens), "1", "1", "1")
    received: list[str] = []
    started = time.perf_counter()
    context.Query("hello", received.append)
    return time.perf_counter() - started


def _child_seconds(backend: GenieBackend, tokens: int) -> float:
    request = GenerationRequest("hello", max_new_tokens=tokens, temperature=0, chat=False)
    started = time.perf_counter()
    result = backend.generate(request, lambda token_id, text: None, threading.Event())
    elapsed = time.perf_counter() - started
    if len(result.token_ids) != tokens:
        raise RuntimeError(f"expected {tokens} tokens, got {len(result.token_ids)}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not (TESTS_GENIE / "fake_qai_appbuilder").is_dir():
        print(f"needs a source checkout: {TESTS_GENIE}/fake_qai_appbuilder not found", file=sys.stderr)
        return 2
    sys.path[:0] = [str(TESTS_GENIE), str(TESTS_GENIE / "fake_qai_appbuilder")]
    from genie_bundles import FAKE_BINDING, write_bundle

    fake_env = {"FAKE_GENIE_REPLY_TOKENS": str(args.tokens), "FAKE_GENIE_CHUNKS": "1"}
    os.environ.update(fake_env)  # the in-process fake reads the same knobs
    with tempfile.TemporaryDirectory(prefix="antinet-genie-bench-") as temp:
        config = write_bundle(Path(temp) / "bundle")
        private = GenieBundle.open(config).write_private(None, Path(temp) / "inproc")
        backend = GenieBackend(config, chat_template="raw", state_dir=Path(temp) / "state",
                               child_sys_path=[str(FAKE_BINDING)], child_env=fake_env)
        backend.load()
        try:
            child, in_process = [], []
            for run in range(args.warmup + args.runs):
                child_s = _child_seconds(backend, args.tokens)
                in_process_s = _in_process_seconds(private, args.tokens)
                if run >= args.warmup:
                    child.append(child_s)
                    in_process.append(in_process_s)
        finally:
            backend.close()

    per_token_ms = {
        "child_process": statistics.median(child) / args.tokens * 1e3,
        "in_process": statistics.median(in_process) / args.tokens * 1e3,
    }
    overhead = per_token_ms["child_process"] - per_token_ms["in_process"]
    report = {"tokens": args.tokens, "runs": args.runs, "warmup": args.warmup,
              "per_token_ms_median": per_token_ms, "overhead_ms_per_token": overhead,
              "child_process_runs_s": child, "in_process_runs_s": in_process}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.tokens} tokens, one per callback; median of {args.runs} runs after "
          f"{args.warmup} warm-up")
    print(f"  child process (GenieBackend): {per_token_ms['child_process']:.4f} ms/token")
    print(f"  in process (fake called directly): {per_token_ms['in_process']:.4f} ms/token")
    print(f"  overhead of the worker path: {overhead:.4f} ms/token (target <= 0.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
