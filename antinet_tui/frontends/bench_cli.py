"""`antinet-tui bench`: a fair performance-mode experiment from the command line.

The experiment itself (interleaving, forced token counts, statistics) lives in
runtime/experiment.py; this module parses arguments and renders the report as
Markdown tables (like llama-bench's), CSV (one row per run) or JSON (everything).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

FORMATS = ("md", "csv", "json")


def add_bench_parser(sub, parents: list[argparse.ArgumentParser], epilog: str) -> None:
    bench = sub.add_parser(
        "bench", parents=parents, epilog=epilog, help="compare performance modes fairly (BURST vs default)",
        description="Run the modes interleaved on the same prompts, forced to each token count, "
                    "and report medians, spreads and paired ratios with 95 % bootstrap intervals.")
    bench.add_argument("--modes", default="burst,default", help="comma-separated modes (default burst,default)")
    bench.add_argument("--tokens", default="8,16,32,64", help="comma-separated generated-token counts")
    bench.add_argument("--runs", type=int, default=5, help="measured runs per mode and token count")
    bench.add_argument("--warmup", type=int, default=1, help="discarded warm-up runs per mode and token count")
    bench.add_argument("--prompts", help="file with one prompt per line (default: three built-in prompts)")
    bench.add_argument("--format", choices=FORMATS, default="md")
    bench.add_argument("--output", help="write the results here instead of stdout")
    bench.add_argument("--no-compare", dest="compare", action="store_false",
                       help="a sweep of the given mode(s) without a comparison")


def parse_token_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--tokens takes comma-separated integers, e.g. 8,16,32,64 (got {text!r})") from None
    if not counts:
        raise ValueError("--tokens is empty")
    return counts


def read_prompts(path: str) -> tuple[str, ...]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the prompts file: {exc.strerror}: {path}") from None
    except UnicodeDecodeError:
        raise ValueError(f"the prompts file is not UTF-8 text: {path}") from None
    prompts = tuple(line.strip() for line in lines if line.strip())
    if not prompts:
        raise ValueError(f"the prompts file has no prompts: {path}")
    return prompts


def cmd_bench(args: argparse.Namespace, settings) -> int:
    from antinet_tui.engine.errors import EngineError
    from antinet_tui.exit_codes import Exit
    from antinet_tui.frontends.cli import _fail, exit_for, _start_and_wait_loaded
    from antinet_tui.runtime.experiment import DEFAULT_PROMPTS, Experiment, ExperimentError, ExperimentPlan, PlanError

    try:
        plan = ExperimentPlan(
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
            token_counts=parse_token_counts(args.tokens), runs=args.runs, warmup=args.warmup,
            prompts=read_prompts(args.prompts) if args.prompts else DEFAULT_PROMPTS, compare=args.compare)
    except ValueError as exc:
        return _fail(str(exc), Exit.USAGE)

    from antinet_tui.frontends.wiring import build_service

    try:
        plan.validate()  # what can be checked before loading a model
        service = build_service(settings)
    except PlanError as exc:
        return _fail(str(exc), Exit.USAGE)
    except EngineError as exc:
        return _fail(str(exc), exit_for(exc))
    try:
        try:
            loaded = _start_and_wait_loaded(service, show_progress=sys.stderr.isatty())
        except EngineError as exc:
            return _fail(str(exc), Exit.MODEL)
        try:
            plan.validate(loaded.capabilities.mode_names, loaded.model_info.context_length,
                          _longest_prompt(service, plan))
        except PlanError as exc:
            return _fail(str(exc), Exit.USAGE)
        try:  # Ctrl-C cancels the run in flight; the runs that finished are reported
            report = Experiment(service, plan, on_run=_progress).run()
        except ExperimentError as exc:
            return _fail(str(exc), Exit.FAILED)
        service.log_record({"kind": "experiment", **report.to_record()})
    finally:
        service.shutdown()
    text = render(report, args.format)
    if args.output:
        write_atomically(Path(args.output), text)
        print(f"results written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.interrupted:
        return _fail(report.stopped, Exit.INTERRUPTED)
    if report.stopped:
        return _fail(report.stopped, Exit.REJECTED if "breaker" in report.stopped else Exit.FAILED)
    return int(Exit.OK)


def _longest_prompt(service, plan) -> int:
    from antinet_tui.engine.protocol import GenerationRequest

    return max(service.count_prompt_tokens(GenerationRequest(p)) for p in plan.prompts)


def _progress(result, done: int, total: int) -> None:
    m, run = result.metrics, result.run
    label = "warm-up" if run.warmup else f"pair {run.pair + 1}"
    decode = f"{m.decode_tok_s:.1f} tok/s" if m.decode_tok_s else "n/a"
    print(f"[{done}/{total}] {run.mode:<10} {run.token_count:>4} tokens {label:<8} "
          f"e2e {m.e2e_ms:7.0f} ms  decode {decode}", file=sys.stderr, flush=True)


def write_atomically(path: Path, text: str) -> None:
    """Whole-file writes go through a temp file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- rendering -----------------------------------------------------------------------------

def render(report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_record(), ensure_ascii=False, allow_nan=False, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(report)
    return render_markdown(report)


CSV_COLUMNS = ("token_count", "pair", "warmup", "mode", "prompt_index", "effective_mode", "threads", "nice",
               "ttft_ms", "decode_tok_s", "prefill_tok_s", "e2e_ms", "queue_wait_ms",
               "prompt_tokens", "generated_tokens", "stop_reason")


def render_csv(report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in report.results:
        m = r.metrics
        writer.writerow({
            "token_count": r.run.token_count, "pair": r.run.pair, "warmup": r.run.warmup, "mode": r.run.mode,
            "prompt_index": r.run.prompt_index, "effective_mode": r.readback.effective,
            "threads": r.readback.settings.get("threads"), "nice": r.readback.settings.get("nice"),
            "ttft_ms": m.ttft_ms, "decode_tok_s": m.decode_tok_s, "prefill_tok_s": m.prefill_tok_s,
            "e2e_ms": m.e2e_ms, "queue_wait_ms": m.queue_wait_ms, "prompt_tokens": m.prompt_tokens,
            "generated_tokens": m.generated_tokens, "stop_reason": m.stop_reason})
    return out.getvalue()


def _spread(s, digits: int) -> str:
    return f"{s.median:.{digits}f} ± {s.stddev:.{digits}f} ({s.minimum:.{digits}f}–{s.maximum:.{digits}f})"


def render_markdown(report) -> str:
    plan = report.plan
    cond = report.conditions
    lines = [f"backend {report.backend}, model {Path(report.model).name}, {cond.get('cores')} cores; "
             f"{plan.runs} runs per cell after {plan.warmup} warm-up, greedy, forced token counts; "
             "median ± stddev (min–max)", ""]
    lines += ["| mode | tokens | runs | TTFT ms | decode tok/s | prefill tok/s | end-to-end ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for tokens in plan.token_counts:
        for mode in plan.modes:
            cell = report.cell(mode, tokens)
            if cell is None:
                continue
            get = lambda k, d: _spread(cell[k], d) if k in cell else "n/a"  # noqa: E731
            lines.append(f"| {mode} | {tokens} | {cell['e2e_ms'].n} | {get('ttft_ms', 1)} | {get('decode_tok_s', 1)} "
                         f"| {get('prefill_tok_s', 0)} | {get('e2e_ms', 1)} |")
    comparisons = report.comparisons()
    if comparisons:
        lines += ["", "| tokens | comparison | end-to-end speedup (95 % CI) | decode tok/s ratio (95 % CI) | verdict |",
                  "| ---: | --- | --- | --- | --- |"]
        for c in comparisons:
            e, d = c.e2e_speedup, c.decode_ratio
            lines.append(f"| {c.token_count} | {c.mode_a} vs {c.mode_b} | {e.ratio:.2f}× ({e.low:.2f}–{e.high:.2f}) "
                         f"| {d.ratio:.2f}× ({d.low:.2f}–{d.high:.2f}) | {c.verdict} |")
    tiers = report.tiers()
    if tiers:
        target, slow = tiers[0]["target_ms"], tiers[0]["slow_call_ms"]
        lines += ["", f"| tokens | mode | median end-to-end ms | under {target:.0f} ms target "
                      f"| under {slow:.0f} ms slow-call threshold |",
                  "| ---: | --- | ---: | --- | --- |"]
        for t in tiers:
            lines.append(f"| {t['tokens']} | {t['mode']} | {t['median_e2e_ms']:.0f} | "
                         f"{'yes' if t['under_target'] else 'no'} | {'yes' if t['under_slow_call'] else 'no'} |")
    before, after = cond.get("before", {}), cond.get("after", {})
    lines += ["", "conditions: "
              f"CPU {before.get('cpu_mhz')} → {after.get('cpu_mhz')} MHz; "
              f"load average {_load(before)} → {_load(after)}; "
              f"other processes used {cond.get('others_cpu_share', 0):.0%} of the CPU; "
              f"temperatures {_temps(after)}"]
    partial = sorted({r.readback.effective for r in report.results if r.readback.not_applied})
    if partial:
        lines.append(f"modes not fully applied: {', '.join(partial)} "
                     f"({'; '.join(sorted({p for r in report.results for p in r.readback.not_applied}))})")
    lines += [f"warning: {w}" for w in report.warnings]
    if report.stopped:
        lines.append(f"stopped early: {report.stopped}")
    return "\n".join(lines) + "\n"


def _load(snapshot: dict) -> str:
    load = snapshot.get("load_average")
    return "/".join(f"{x:.2f}" for x in load) if load else "n/a"


def _temps(snapshot: dict) -> str:
    temps = snapshot.get("temperatures_c") or {}
    return ", ".join(f"{k} {v:.0f} °C" for k, v in temps.items()) or "n/a"
