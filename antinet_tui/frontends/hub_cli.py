"""`antinet-tui hub devices` and `antinet-tui hub profile`: Qualcomm AI Hub from the CLI.

Results go to stdout, progress and errors to stderr; every AI Hub failure is a message
naming the fix and a non-zero exit code, never a traceback. A profile run is also
appended to the session log, so it can be opened beside the dashboard's own figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from antinet_tui.exit_codes import Exit
from antinet_tui.hub.errors import HubError
from antinet_tui.hub.profiling import HUB_MODES, ModeProfile, time_ratios


def add_hub_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `hub` (with `devices` and `profile`) to an argparse subparsers object."""
    hub = subparsers.add_parser(
        "hub", help="Qualcomm AI Hub: hosted Snapdragon devices and perf-mode profiling",
        description="Qualcomm AI Hub (needs `pip install qai-hub`, an API token and the network). "
                    "Exit codes: 0 ok, 1 a job failed, 2 usage, 5 not configured, 6 unreachable, 130 interrupted.")
    commands = hub.add_subparsers(dest="hub_command", metavar="HUB_COMMAND", required=True)

    devices = commands.add_parser("devices", help="list the hosted devices",
                                  description="List AI Hub's hosted devices, filtered.")
    devices.add_argument("--name", default="", help="part of the device name (case-insensitive)")
    devices.add_argument("--os", dest="os_family", help="android, windows, linux, ios (attribute os:…)")
    devices.add_argument("--os-version", default="", help="exact OS version, e.g. 11 or 14")
    devices.add_argument("--chipset", help="e.g. qualcomm-snapdragon-x-elite (attribute chipset:…)")
    devices.add_argument("--attribute", action="append", default=[], metavar="KEY:VALUE",
                         help="any AI Hub attribute, e.g. framework:qnn, hexagon:v73 (repeatable)")
    devices.add_argument("--json", action="store_true", help="print JSON instead of a table")

    profile = commands.add_parser(
        "profile", help="profile a model on a hosted device under several HTP perf modes",
        description="Submit one profiling inference job per mode, wait, and compare.")
    profile.add_argument("model", help="compiled model (.bin, .dlc, .onnx, .tflite) or AI Hub model id")
    profile.add_argument("--device", required=True, help='exact device name, e.g. "Snapdragon X Elite CRD"')
    profile.add_argument("--modes", default="burst,default",
                         help=f"comma-separated, from: {', '.join(HUB_MODES)} (default burst,default)")
    profile.add_argument("--options", default="", help="extra AI Hub job options, e.g. '--compute_unit npu'")
    profile.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the jobs")
    profile.add_argument("--poll", type=float, default=10.0, help="seconds between status checks")
    profile.add_argument("--log-file", help="session log (JSONL); default: a new file in the user state dir")
    profile.add_argument("--no-log", action="store_true", help="do not write a session log record")
    profile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return hub


def run_hub(args: argparse.Namespace) -> int:
    """Run a parsed `hub` command; returns the exit code."""
    try:
        if args.hub_command == "devices":
            return _devices(args)
        return _profile(args)
    except HubError as error:
        print(f"antinet-tui hub: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("antinet-tui hub: interrupted; jobs already submitted keep running on AI Hub",
              file=sys.stderr)
        from antinet_tui.frontends.common import interrupted_exit

        return interrupted_exit()  # 130 for Ctrl-C, 143 for SIGTERM


def _devices(args: argparse.Namespace) -> int:
    from antinet_tui.hub.client import connect, list_devices

    attributes = list(args.attribute)
    if args.os_family:
        attributes.append(f"os:{args.os_family.lower()}")
    if args.chipset:
        attributes.append(f"chipset:{args.chipset}")
    rows = list_devices(connect(), args.name, args.os_version, attributes)
    if args.json:
        print(json.dumps([r.as_record() for r in rows], indent=2))
        return Exit.OK
    table = [("NAME", "OS", "CHIPSET", "HEXAGON", "FRAMEWORKS")] + [
        (r.name, " ".join(r.values("os") + [r.os]), ", ".join(r.values("chipset")),
         ", ".join(r.values("hexagon")), ", ".join(r.values("framework")))
        for r in rows
    ]
    _print_table(table)
    print(f"{len(rows)} device(s)", file=sys.stderr)
    return Exit.OK


def _profile(args: argparse.Namespace) -> int:
    from antinet_tui.hub.client import connect
    from antinet_tui.hub.profiling import profile_modes

    modes = list(dict.fromkeys(m.strip() for m in args.modes.split(",") if m.strip()))
    unknown = [m for m in modes if m not in HUB_MODES]
    if not modes or unknown:
        raise HubError(f"unknown mode(s) {', '.join(unknown) or '(none given)'}; valid modes: "
                       f"{', '.join(HUB_MODES)}", exit_code=Exit.USAGE)
    profiles = profile_modes(
        connect(), args.model, args.device, modes,
        on_progress=lambda line: print(line, file=sys.stderr, flush=True),
        extra_options=args.options, poll_seconds=args.poll, timeout_seconds=args.timeout)
    ratios = time_ratios(profiles)
    record = {"kind": "hub_profile", "wall": time.time(), "model": args.model,
              "device": args.device, "profiles": [p.as_record() for p in profiles],
              "time_ratio_vs_first": ratios}
    if not args.no_log:
        print(f"recorded in {log_to_session(record, args.log_file)}", file=sys.stderr)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        _print_profiles(profiles, ratios)
    return Exit.OK if all(p.ok for p in profiles) else Exit.FAILED


def log_to_session(record: dict[str, Any], log_file: str | None) -> str:
    """Append one record to the session log; returns its path."""
    from antinet_tui.runtime.session_log import SessionLog, default_log_path

    with SessionLog(log_file or default_log_path()) as log:
        log.write(record)
        return str(log.path)


def _print_profiles(profiles: list[ModeProfile], ratios: dict[str, float]) -> None:
    baseline = next(iter(ratios), None)
    table = [("MODE", "JOB", "EST. INFERENCE", "PEAK MEMORY", "NPU/GPU/CPU LAYERS",
              f"TIME VS {baseline.upper()}" if baseline else "TIME RATIO")]
    for p in profiles:
        if not p.ok:
            table.append((p.mode, p.job_id, p.status, "", "", ""))
            continue
        units = p.compute_units
        table.append((
            p.mode, p.job_id,
            f"{p.inference_ms:.3f} ms" if p.inference_ms is not None else "n/a",
            f"{p.peak_memory_bytes / 2**20:.1f} MiB" if p.peak_memory_bytes is not None else "n/a",
            "/".join(str(units.get(u, 0)) for u in ("NPU", "GPU", "CPU")),
            f"{ratios[p.mode]:.2f}x" if p.mode in ratios else "",
        ))
    _print_table(table)
    for p in profiles:
        if not p.ok:
            print(f"{p.mode}: job {p.job_id} {p.status}: {p.failure or 'no reason given'} ({p.url})")


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m antinet_tui.frontends.hub_cli devices|profile ...`"""
    parser = argparse.ArgumentParser(prog="antinet-tui")
    add_hub_parser(parser.add_subparsers(dest="command", required=True))
    return run_hub(parser.parse_args(["hub", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
