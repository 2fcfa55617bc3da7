"""An experiment's report as text: Markdown tables (like llama-bench's), CSV (one row per
run) or JSON (everything), and the parsing of an experiment's settings. Shared by
`antinet-tui bench` and the dashboard's Experiment screen."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

FORMATS = ("md", "csv", "json")


def parse_modes(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def parse_token_counts(text: str, name: str = "--tokens") -> tuple[int, ...]:
    """`name`: what the operator filled in (the flag, or the Experiment form's field)."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{name} takes comma-separated integers, e.g. 8,16,32,64 (got {text!r})") from None
    if not counts:
        raise ValueError(f"{name} is empty: give token counts, e.g. 8,16,32,64")
    return counts


def read_prompts(path: str) -> tuple[str, ...]:
    """One prompt per line (any line ending: LF, CRLF, CR); `-` is standard input."""
    try:
        if path == "-":
            import sys

            lines = sys.stdin.buffer.read().decode("utf-8").splitlines()
        else:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the prompts file: {exc.strerror}: {path}") from None
    except UnicodeDecodeError:
        raise ValueError(f"the prompts file is not UTF-8 text: {path}") from None
    prompts = tuple(line.strip() for line in lines if line.strip())
    if not prompts:
        raise ValueError(f"the prompts file has no prompts: {path}")
    return prompts


def summary_lines(report) -> list[str]:
    """The verdicts, the tiers under the target and the warnings, a line each."""
    lines = [f"{c.token_count} tokens: {c.verdict}" for c in report.comparisons()]
    tiers = report.tiers()
    if tiers:
        under = [f"{t['arm']} {t['tokens']}" for t in tiers if t["under_target"]]
        lines.append(f"median end-to-end under {tiers[0]['target_ms']:.0f} ms: {', '.join(under) or 'none'}")
    return lines + [f"warning: {w}" for w in report.warnings]


def render(report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_record(), ensure_ascii=False, allow_nan=False, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(report)
    return render_markdown(report)


CSV_COLUMNS = ("token_count", "pair", "warmup", "backend", "mode", "prompt_index", "effective_mode", "threads", "nice",
               "ttft_ms", "decode_tok_s", "prefill_tok_s", "e2e_ms", "queue_wait_ms",
               "prompt_tokens", "generated_tokens", "stop_reason")


def render_csv(report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in report.results:
        m = r.metrics
        writer.writerow({
            "token_count": r.run.token_count, "pair": r.run.pair, "warmup": r.run.warmup,
            "backend": r.run.backend or report.backend, "mode": r.run.mode,
            "prompt_index": r.run.prompt_index, "effective_mode": r.readback.effective,
            "threads": r.readback.settings.get("threads"), "nice": r.readback.settings.get("nice"),
            "ttft_ms": m.ttft_ms, "decode_tok_s": m.decode_tok_s, "prefill_tok_s": m.prefill_tok_s,
            "e2e_ms": m.e2e_ms, "queue_wait_ms": m.queue_wait_ms, "prompt_tokens": m.prompt_tokens,
            "generated_tokens": m.generated_tokens, "stop_reason": m.stop_reason})
    return out.getvalue()


def _spread(s, digits: int) -> str:
    return f"{s.median:.{digits}f} ± {s.stddev:.{digits}f} ({s.minimum:.{digits}f}–{s.maximum:.{digits}f})"


def _ratio(r) -> str:
    """A ratio with its interval; "n/a" where it is undefined (JSON says null), e.g. the
    decode rate of 1-token runs, never "nan×"."""
    if not all(math.isfinite(v) for v in (r.ratio, r.low, r.high)):
        return "n/a"
    return f"{r.ratio:.2f}× ({r.low:.2f}–{r.high:.2f})"


def render_markdown(report) -> str:
    plan = report.plan
    cond = report.conditions
    engines = (f"backends {', '.join(plan.backends)} in mode {plan.modes[0]}" if plan.backends
               else f"backend {report.backend}")
    lines = [(f"{engines}, model {Path(report.model).name}, {cond.get('cores')} cores; "
              f"{plan.runs} runs per cell after {plan.warmup} warm-up, greedy, forced token counts; "
              "median ± stddev (min–max)"), ""]
    lines += [f"| {plan.arm_kind} | tokens | runs | TTFT ms | decode tok/s | prefill tok/s | end-to-end ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for tokens in plan.token_counts:
        for arm in plan.arms:
            cell = report.cell(arm, tokens)
            if cell is None:
                continue
            get = lambda k, d, cell=cell: _spread(cell[k], d) if k in cell else "n/a"
            lines.append(f"| {arm} | {tokens} | {cell['e2e_ms'].n} | {get('ttft_ms', 1)} | {get('decode_tok_s', 1)} "
                         f"| {get('prefill_tok_s', 0)} | {get('e2e_ms', 1)} |")
    comparisons = report.comparisons()
    if comparisons:
        lines += ["", "| tokens | comparison | end-to-end speedup (95 % CI) | decode tok/s ratio (95 % CI) | verdict |",
                  "| ---: | --- | --- | --- | --- |"]
        for c in comparisons:
            e, d = c.e2e_speedup, c.decode_ratio
            lines.append(f"| {c.token_count} | {c.mode_a} vs {c.mode_b} | {_ratio(e)} | {_ratio(d)} | {c.verdict} |")
        from antinet_tui.runtime.stats import BOOTSTRAP_FROM_PAIRS, INTERVAL_METHODS, MIN_PAIRS_FOR_VERDICT

        used = {m for c in comparisons for m in (c.e2e_speedup.method, c.decode_ratio.method)}
        methods = sorted(INTERVAL_METHODS[m] for m in used if m != "none")
        lines.append(f"intervals: {'; '.join(methods) or 'none (one pair)'} (t below {BOOTSTRAP_FROM_PAIRS} pairs, "
                     f"no verdict below {MIN_PAIRS_FOR_VERDICT})")
    tiers = report.tiers()
    if tiers:
        target, slow = tiers[0]["target_ms"], tiers[0]["slow_call_ms"]
        lines += ["", (f"| tokens | {plan.arm_kind} | median end-to-end ms | under {target:.0f} ms target "
                       f"| under {slow:.0f} ms slow-call threshold |"),
                  "| ---: | --- | ---: | --- | --- |"]
        for t in tiers:
            lines.append(f"| {t['tokens']} | {t['arm']} | {t['median_e2e_ms']:.0f} | "
                         f"{'yes' if t['under_target'] else 'no'} | {'yes' if t['under_slow_call'] else 'no'} |")
    before, after = cond.get("before", {}), cond.get("after", {})
    lines += ["", ("conditions: "
                   f"CPU {before.get('cpu_mhz')} → {after.get('cpu_mhz')} MHz; "
                   f"load average {_load(before)} → {_load(after)}; "
                   f"other processes used {cond.get('others_cpu_share', 0):.0%} of the CPU; "
                   f"temperatures {_temps(after)}")]
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
