"""`antinet-tui bench`: a fair performance-mode (or engine) experiment from the command line.

The experiment itself (interleaving, forced token counts, statistics) lives in
runtime/experiment.py, its text forms in experiment_report.py; this module is the
command: arguments, progress on stderr, the report to stdout or --output.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from antinet_tui.fileio import STDOUT, OutputError, check_output, write_atomically
from antinet_tui.frontends.experiment_report import FORMATS, parse_modes, parse_token_counts, read_prompts, render


def add_bench_parser(sub, parents: list[argparse.ArgumentParser], epilog: str) -> None:
    bench = sub.add_parser(
        "bench", parents=parents, epilog=epilog,
        help="compare performance modes (BURST vs default) or engines (--backends numpy,onnx) fairly",
        description="Run the modes (or, with --backends, the engines) interleaved on the same prompts, forced "
                    "to each token count, and report medians, spreads and paired ratios with 95 % intervals "
                    "(a t-interval on the log ratios below 20 pairs, a bootstrap from 20; no verdict below 3).")
    bench.add_argument("--modes", help="comma-separated modes (default burst,default; with --backends one "
                                       "mode, default burst)")
    bench.add_argument("--backends", help="compare these engines instead of modes, e.g. numpy,onnx: each is "
                                          "loaded, and every run uses the one --modes mode")
    bench.add_argument("--tokens", default="8,16,32,64",
                       help="comma-separated generated-token counts (default 8,16,32,64)")
    bench.add_argument("--runs", type=int, default=5, help="measured runs per mode and token count (default 5)")
    bench.add_argument("--warmup", type=int, default=1,
                       help="discarded warm-up runs per mode and token count (default 1)")
    bench.add_argument("--prompts", help="file with one prompt per line, '-' for standard input "
                                         "(default: three built-in prompts)")
    bench.add_argument("--format", choices=FORMATS, default="md", help="report format (default md)")
    bench.add_argument("--output", help="write the results to this file ('-': stdout, the default); a symlink "
                                        "is written through, a device or FIFO written in place")
    bench.add_argument("--no-compare", dest="compare", action="store_false",
                       help="a sweep of the given mode(s) without a comparison")


def cmd_bench(args: argparse.Namespace, settings) -> int:
    from antinet_tui.exit_codes import Exit
    from antinet_tui.frontends.common import fail, interrupted_exit, log_lost_exit, start_engine, watch_session_log
    from antinet_tui.runtime.experiment import DEFAULT_PROMPTS, Experiment, ExperimentError, ExperimentPlan, PlanError

    backends = parse_modes(args.backends) if args.backends else ()
    try:
        plan = ExperimentPlan(
            modes=parse_modes(args.modes or ("burst" if backends else "burst,default")),
            token_counts=parse_token_counts(args.tokens), runs=args.runs, warmup=args.warmup,
            prompts=read_prompts(args.prompts) if args.prompts else DEFAULT_PROMPTS, compare=args.compare,
            backends=backends)
    except ValueError as exc:
        return fail(str(exc), Exit.USAGE)

    from antinet_tui.frontends.wiring import build_service

    output = args.output if args.output and args.output != STDOUT else None
    try:  # before any run: a benchmark is too long to lose to a bad path
        if output is not None:
            check_output(output)
    except OutputError as exc:
        return fail(f"cannot write --output: {exc}", Exit.USAGE)
    # a backend comparison loads one engine per backend; the first one writes the session log
    engines = {name: replace(settings, backend=name, no_log=settings.no_log or i > 0)
               for i, name in enumerate(backends)} or {settings.backend: settings}
    services = {}
    try:
        for name, engine_settings in engines.items():  # an unknown mode or backend: EngineError, exit 2
            services[name] = build_service(engine_settings, modes_used=plan.modes)
        try:
            plan.validate()  # what can be checked before loading a model
        except PlanError as exc:
            return fail(str(exc), Exit.USAGE)
        service = next(iter(services.values()))
        watch_session_log(service)
        for engine in services.values():
            start_engine(engine, sys.stderr.isatty(), settings.mode)
        try:
            for engine in services.values():
                plan.validate_for(engine)
        except PlanError as exc:
            return fail(str(exc), Exit.USAGE)
        try:  # Ctrl-C (or SIGTERM) cancels the run in flight; the runs that finished are reported
            report = Experiment(service, plan, on_run=_progress, clients=services if backends else None).run()
        except ExperimentError as exc:
            return fail(str(exc), Exit.FAILED)
        service.log_record({"kind": "experiment", **report.to_record()})
    finally:
        for engine in services.values():
            engine.shutdown()
    text = render(report, args.format)
    if output is not None:
        try:
            write_atomically(output, text)
            print(f"results written to {output}", file=sys.stderr)
        except OSError as exc:  # the results are not lost: they go to stdout instead
            sys.stdout.write(text)
            return fail(f"cannot write --output: {exc}; the results are above", Exit.USAGE)
    else:
        sys.stdout.write(text)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.interrupted:
        return fail(report.stopped or "interrupted", interrupted_exit())
    if report.stopped:
        return fail(report.stopped, Exit.REJECTED if report.refused else Exit.FAILED)
    return log_lost_exit(service, Exit.OK)


def _progress(result, done: int, total: int) -> None:
    m, run = result.metrics, result.run
    label = "warm-up" if run.warmup else f"pair {run.pair + 1}"
    decode = f"{m.decode_tok_s:.1f} tok/s" if m.decode_tok_s else "n/a"
    print(f"[{done}/{total}] {run.arm:<10} {run.token_count:>4} tokens {label:<8} "
          f"e2e {m.e2e_ms:7.0f} ms  decode {decode}", file=sys.stderr, flush=True)

