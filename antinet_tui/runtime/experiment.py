"""A fair performance-mode (or engine) experiment, run through the EngineService.

Design (what makes the comparison honest):
* identical work per pair: the same fixed prompt, greedy decoding, and generation forced
  to the requested token count (end-of-turn ignored), so a "16-token" cell always
  measures 16 tokens;
* interleaving: for every token count, the modes run back to back (A B, then B A, ...;
  the order rotates per pair), so drifts of a shared machine hit both modes alike;
* warm-up pairs are run and discarded;
* the mode is applied and read back before every run, and the readback is recorded;
* runs are submitted as measurements: the circuit breaker neither stops nor counts them
  (long token counts exceed its slow-call threshold by design).

A plan with `backends` compares engines the same way: one loaded engine per backend,
every run in the plan's one mode, the backends interleaved as the modes would be.

The CLI (`antinet-tui bench`) and the dashboard's Experiment screen both run this code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from antinet_tui.engine.errors import EngineError
from antinet_tui.engine.protocol import GenerationRequest, ModeReadback
from antinet_tui.platform import conditions
from antinet_tui.runtime.breaker import BreakerConfig
from antinet_tui.runtime.client import EngineClient, RequestHandle, ServiceState
from antinet_tui.runtime.events import Cancelled, Finished, Rejected, TerminalEvent, jsonable
from antinet_tui.runtime.metrics import RequestMetrics
from antinet_tui.runtime.stats import RatioEstimate, Spread, paired_ratio, verdict

DEFAULT_PROMPTS = (
    "Explain how a refrigerator keeps food cold.",
    "Write a short poem about the sea at night.",
    "Give three tips for learning a new language.",
)
FIGURES = ("ttft_ms", "decode_tok_s", "prefill_tok_s", "e2e_ms")
LATENCY_TARGET_MS = 500.0  # the report's interactive target


class PlanError(ValueError):
    """A plan that cannot run; the message says why and what is valid."""


@dataclass(frozen=True)
class ExperimentPlan:
    modes: tuple[str, ...]
    token_counts: tuple[int, ...]
    runs: int = 5
    warmup: int = 1
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    compare: bool = True
    target_ms: float = LATENCY_TARGET_MS
    # Engines to compare instead of modes: each backend runs every run in the one mode
    # given, interleaved the same way (the arms are the backends).
    backends: tuple[str, ...] = ()

    @property
    def arms(self) -> tuple[str, ...]:
        """What is compared: the backends when given, else the modes."""
        return self.backends or self.modes

    @property
    def arm_kind(self) -> str:
        return "backend" if self.backends else "mode"

    def validate(self, valid_modes: tuple[str, ...] | None = None, context_length: int | None = None,
                 longest_prompt_tokens: int = 0) -> None:
        """Raise PlanError on a plan that cannot run. Modes and the context are checked
        when given (they are known once a backend is loaded)."""
        if valid_modes is not None:
            unknown = [m for m in self.modes if m not in valid_modes]
            if unknown:
                raise PlanError(f"unknown mode {unknown[0]!r}; valid modes: {', '.join(valid_modes)}")
        if len(set(self.modes)) != len(self.modes):
            raise PlanError("a mode is listed twice")
        if len(set(self.backends)) != len(self.backends):
            raise PlanError("a backend is listed twice")
        if self.backends and len(self.modes) != 1:
            raise PlanError("a backend comparison runs every backend in one mode: pass one mode "
                            "(e.g. --modes burst)")
        if self.compare and len(self.arms) < 2:
            raise PlanError(f"a comparison needs two {self.arm_kind}s (e.g. "
                            f"{'--backends numpy,onnx' if self.backends else '--modes burst,default'}); "
                            f"for a sweep of one {self.arm_kind} pass --no-compare")
        if not self.modes:
            raise PlanError("no modes given")
        if self.runs < 1:
            raise PlanError(f"runs must be at least 1 (got {self.runs})")
        if self.warmup < 0:
            raise PlanError(f"warm-up runs cannot be negative (got {self.warmup})")
        if not self.token_counts or any(t < 1 for t in self.token_counts):
            raise PlanError("token counts must be positive integers, e.g. --tokens 8,16,32,64")
        if not self.prompts or not all(p.strip() for p in self.prompts):
            raise PlanError("the prompts must not be empty")
        if context_length is not None:
            room = context_length - longest_prompt_tokens
            too_long = [t for t in self.token_counts if t > room]
            if too_long:
                raise PlanError(f"{too_long[0]} tokens do not fit: the context holds {context_length} tokens "
                                f"and the longest prompt takes {longest_prompt_tokens}, leaving {room}")

    def validate_for(self, client: EngineClient) -> None:
        """validate() against a loaded service: its modes, its context, its longest prompt."""
        capabilities, info = client.capabilities(), client.model_info()
        if capabilities is None or info is None:
            raise PlanError("the model is not loaded yet")
        longest = max(client.count_prompt_tokens(GenerationRequest(p)) for p in self.prompts)
        self.validate(capabilities.mode_names, info.context_length, longest)


@dataclass(frozen=True)
class ScheduledRun:
    token_count: int
    pair: int  # 0.. for measured pairs; negative for warm-up pairs
    mode: str
    prompt_index: int
    backend: str = ""  # set in a backend comparison: which engine ran it

    @property
    def warmup(self) -> bool:
        return self.pair < 0

    @property
    def arm(self) -> str:
        return self.backend or self.mode


def schedule(plan: ExperimentPlan) -> list[ScheduledRun]:
    runs = []
    for tokens in plan.token_counts:
        for i in range(plan.warmup + plan.runs):
            shift = i % len(plan.arms)
            order = plan.arms[shift:] + plan.arms[:shift]  # A B, B A, ... (rotates for >2)
            for arm in order:
                if plan.backends:
                    runs.append(ScheduledRun(tokens, i - plan.warmup, plan.modes[0], i % len(plan.prompts), arm))
                else:
                    runs.append(ScheduledRun(tokens, i - plan.warmup, arm, i % len(plan.prompts)))
    return runs


@dataclass(frozen=True)
class RunResult:
    run: ScheduledRun
    metrics: RequestMetrics
    readback: ModeReadback

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self.run), "warmup": self.run.warmup, **jsonable(self.metrics),
                "readback": jsonable(self.readback)}


@dataclass(frozen=True)
class Comparison:
    token_count: int
    mode_a: str
    mode_b: str
    e2e_speedup: RatioEstimate  # e2e of B / e2e of A: > 1 means A is faster
    decode_ratio: RatioEstimate  # decode tok/s of A / of B
    verdict: str
    decode_verdict: str


@dataclass
class ExperimentReport:
    plan: ExperimentPlan
    results: list[RunResult] = field(default_factory=list)
    conditions: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    backend: str = ""
    model: str = ""
    stopped: str | None = None  # why the experiment ended early, if it did
    interrupted: bool = False  # ended early because the operator asked
    refused: bool = False  # ended early because the runtime refused a run (queue full, bad input)

    def stop_by_operator(self, done: int, total: int) -> None:
        self.stopped, self.interrupted = f"stopped by the operator after {done} of {total} runs", True

    @property
    def measured(self) -> list[RunResult]:
        return [r for r in self.results if not r.run.warmup]

    def cell(self, arm: str, tokens: int) -> dict[str, Spread] | None:
        """The figures of one arm (a mode, or a backend in a backend comparison)."""
        rows = [r.metrics for r in self.measured if r.run.arm == arm and r.run.token_count == tokens]
        if not rows:
            return None
        return {f: Spread.of([getattr(m, f) for m in rows if getattr(m, f) is not None])
                for f in FIGURES if any(getattr(m, f) is not None for m in rows)}

    def comparisons(self) -> list[Comparison]:
        if not self.plan.compare or len(self.plan.arms) < 2:
            return []
        out = []
        a = self.plan.arms[0]
        for b in self.plan.arms[1:]:
            for tokens in self.plan.token_counts:
                pairs = self._pairs(a, b, tokens)
                if not pairs:
                    continue
                e2e = paired_ratio([pb.e2e_ms for _, pb in pairs], [pa.e2e_ms for pa, _ in pairs])
                with_decode = [(rate_a, rate_b) for pa, pb in pairs
                               if (rate_a := pa.decode_tok_s) and (rate_b := pb.decode_tok_s)]
                decode = (paired_ratio([rate_a for rate_a, _ in with_decode], [rate_b for _, rate_b in with_decode])
                          if with_decode else RatioEstimate(float("nan"), float("nan"), float("nan"), 0, "none"))
                out.append(Comparison(tokens, a, b, e2e, decode, verdict(a, b, e2e, "end-to-end"),
                                      verdict(a, b, decode, "in decode tok/s")))
        return out

    def tiers(self) -> list[dict[str, Any]]:
        """Per token count and mode: is the median end-to-end under the target, and
        under the breaker's slow-call threshold?"""
        slow_ms = self.conditions.get("slow_call_ms", BreakerConfig().slow_call_ms)
        rows = []
        for tokens in self.plan.token_counts:
            for arm in self.plan.arms:
                cell = self.cell(arm, tokens)
                if cell is None or "e2e_ms" not in cell:
                    continue
                median = cell["e2e_ms"].median
                rows.append({"tokens": tokens, "arm": arm, self.plan.arm_kind: arm, "median_e2e_ms": median,
                             "under_target": median < self.plan.target_ms, "target_ms": self.plan.target_ms,
                             "under_slow_call": median < slow_ms, "slow_call_ms": slow_ms})
        return rows

    def to_record(self) -> dict[str, Any]:
        """Everything, JSON-safe: plan, conditions, cells, comparisons, tiers, every run."""
        cells = []
        for tokens in self.plan.token_counts:
            for arm in self.plan.arms:
                cell = self.cell(arm, tokens)
                if cell is not None:
                    cells.append({self.plan.arm_kind: arm, "tokens": tokens, **cell})
        return jsonable({
            "plan": self.plan, "backend": self.backend, "model": self.model,
            "interval_methods": {c.e2e_speedup.method for c in self.comparisons()} - {"none"},
            "conditions": self.conditions, "warnings": self.warnings, "stopped": self.stopped,
            "cells": cells,
            "comparisons": [{"tokens": c.token_count, "mode_a": c.mode_a, "mode_b": c.mode_b,
                             "e2e_speedup": c.e2e_speedup, "decode_ratio": c.decode_ratio,
                             "verdict": c.verdict, "decode_verdict": c.decode_verdict}
                            for c in self.comparisons()],
            "tiers": self.tiers(),
            "runs": [r.to_record() for r in self.results],
        })

    def _pairs(self, a: str, b: str, tokens: int) -> list[tuple[RequestMetrics, RequestMetrics]]:
        by_pair: dict[int, dict[str, RequestMetrics]] = {}
        for r in self.measured:
            if r.run.token_count == tokens and r.run.arm in (a, b):
                by_pair.setdefault(r.run.pair, {})[r.run.arm] = r.metrics
        return [(p[a], p[b]) for _, p in sorted(by_pair.items()) if a in p and b in p]


OnRun = Callable[[RunResult, int, int], None]  # (result, runs done, runs in total)


class ExperimentError(Exception):
    pass


class Experiment:
    """Runs a plan through an engine service that is started and loaded.

    It reserves the engine for its whole run (EngineClient.reserve): nobody else can
    change the mode or slip a request between its runs, whoever asks."""

    HOLDER = "experiment"  # its reservation's holder, its runs' origin, its mode changes' requested_by

    def __init__(self, client: EngineClient, plan: ExperimentPlan, on_run: OnRun | None = None,
                 mode_timeout_s: float = 60.0, clients: Mapping[str, EngineClient] | None = None):
        """`clients`: for a backend comparison, a started, loaded engine per backend in
        plan.backends (`client` may be one of them; it is the one whose mode is restored)."""
        self.client = client
        self.clients = dict(clients or {})  # may be filled in until run()
        self.plan = plan
        self.on_run = on_run
        self.mode_timeout_s = mode_timeout_s
        self._stop = threading.Event()
        self._in_flight: RequestHandle | None = None

    @property
    def aborted(self) -> bool:
        return self._stop.is_set()

    def abort(self) -> None:
        """Stop now (from any thread): the run in flight is cancelled (only ours, never an
        operator's request); finished runs are kept."""
        self._stop.set()
        handle = self._in_flight
        if handle is not None:
            handle.cancel()

    def run(self) -> ExperimentReport:
        """Raises EngineError when an engine cannot be reserved (busy, or reserved)."""
        missing = [b for b in self.plan.backends if b not in self.clients]
        if missing:
            raise ExperimentError(f"no engine given for backend {missing[0]!r}")
        with ExitStack() as reservations:
            for client in {id(c): c for c in (self.client, *self.clients.values())}.values():
                reservations.enter_context(client.reserve(self.HOLDER))
            return self._run()

    def _client_for(self, run: ScheduledRun) -> EngineClient:
        return self.clients[run.backend] if run.backend else self.client

    def _run(self) -> ExperimentReport:
        stop = self._stop
        client = self.client
        info = client.model_info()
        report = ExperimentReport(self.plan, backend=info.backend if info else "", model=info.path if info else "")
        runs = schedule(self.plan)
        before = conditions.snapshot()
        start_mode = client.mode()
        initial_mode = start_mode.requested if start_mode else None
        try:
            for done, scheduled in enumerate(runs, start=1):
                if stop.is_set():
                    report.stop_by_operator(done - 1, len(runs))
                    break
                engine = self._client_for(scheduled)
                try:
                    readback = self._apply_mode(scheduled.mode, engine)
                except ExperimentError:
                    if not stop.is_set():
                        raise
                    report.stop_by_operator(done - 1, len(runs))
                    break
                request = GenerationRequest(self.plan.prompts[scheduled.prompt_index],
                                            max_new_tokens=scheduled.token_count, temperature=0.0,
                                            ignore_eos=True)
                outcome = self._measure(request, engine)
                if isinstance(outcome, Cancelled) or stop.is_set():  # abort(), or Ctrl-C
                    report.stop_by_operator(done - 1, len(runs))
                    break
                if not isinstance(outcome, Finished):
                    report.refused = isinstance(outcome, Rejected)
                    why = outcome.reason if isinstance(outcome, Rejected) else outcome.error
                    report.stopped = f"run {done} of {len(runs)} ({scheduled.arm}, {scheduled.token_count} tokens) " \
                                     f"did not finish: {why}"
                    break
                result = RunResult(scheduled, outcome.metrics, readback)
                report.results.append(result)
                if self.on_run:
                    self.on_run(result, done, len(runs))
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) between runs or in a mode switch: as in a run
            stop.set()
            report.stop_by_operator(len(report.results), len(runs))
        finally:
            now = client.mode()
            current = now.requested if now else None
            if initial_mode is not None and (stop.is_set() or initial_mode != current):
                try:  # leave the engine as the operator had it
                    if stop.is_set():  # no waiting once aborted (a change of ours may still be pending:
                        # this one replaces it); it applies before the next request
                        client.set_mode(initial_mode, requested_by=self.HOLDER)
                    else:
                        self._apply_mode(initial_mode)
                except (EngineError, ExperimentError) as exc:
                    report.warnings.append(f"could not restore mode {initial_mode!r}: {exc}")
            record, warnings = conditions.describe(before, conditions.snapshot())
            record["slow_call_ms"] = client.breaker_view().config.slow_call_ms
            report.conditions = record
            report.warnings += warnings
        return report

    def _measure(self, request: GenerationRequest, engine: EngineClient) -> TerminalEvent:
        """One run; abort() or Ctrl-C on this thread cancel it (its Cancelled is returned)."""
        with engine.submit(request, origin=self.HOLDER, measurement=True) as handle:
            self._in_flight = handle
            try:
                if self._stop.is_set():  # abort() came between the check and the submit
                    handle.cancel()
                return handle.result()
            except KeyboardInterrupt:
                self._stop.set()
                handle.cancel()
                return handle.result()
            finally:
                self._in_flight = None

    def _apply_mode(self, mode: str, engine: EngineClient | None = None) -> ModeReadback:
        """Apply a mode and wait for its readback (it applies between requests)."""
        engine = engine or self.client
        change = engine.set_mode(mode, requested_by=self.HOLDER)
        deadline = time.monotonic() + self.mode_timeout_s
        while True:  # in short waits, so abort() and a stopped engine end it promptly
            try:
                event = change.wait(0.1)
                break
            except TimeoutError:
                if self._stop.is_set() or engine.state is not ServiceState.READY:
                    raise ExperimentError(f"stopped while applying mode {mode!r}") from None
                if time.monotonic() > deadline:
                    raise ExperimentError(
                        f"mode {mode!r} was not applied within {self.mode_timeout_s:.0f} s") from None
            except EngineError as exc:  # the service stopped
                raise ExperimentError(f"mode {mode!r} was not applied: {exc}") from None
        if event.error or event.readback is None:
            raise ExperimentError(f"mode {mode!r} could not be applied: {event.error}")
        return event.readback
