"""Issue 2's engine figures: `antinet-tui run --json` per mode, and decode speed as a
share of this machine's fp32 memory-bandwidth bound, measured in the same run.

    .venv/bin/python benchmarks/engine.py [--runs 5] [--tokens 64]

Each run is a fresh `antinet-tui run --json` process (so load time and peak RSS are
per launch; the prepared-weights cache is warm after the warm-up). Modes alternate
run by run; the streaming read bandwidth with the mode's thread count is measured just
before each run, and each run's share is its decode tok/s over that run's bound
(bandwidth / bytes of fp32 weights). Medians over the runs; warm-up runs discarded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antinet_tui.engine.cpu_modes import usable_cores  # noqa: E402
from antinet_tui.platform.bandwidth import read_bandwidth_gbs  # noqa: E402

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
THREADS = {"burst": len(usable_cores()), "default": max(1, len(usable_cores()) // 2)}


def run_once(mode: str, tokens: int) -> dict:
    cmd = [sys.executable, "-m", "antinet_tui", "run", PROMPT, "--json", "--temperature", "0",
           "--max-new-tokens", str(tokens), "--mode", mode, "--no-log"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {m: [] for m in THREADS}
    for i in range(args.warmup + args.runs):
        order = list(THREADS) if i % 2 == 0 else list(THREADS)[::-1]
        for mode in order:
            bandwidth = read_bandwidth_gbs(THREADS[mode])
            record = run_once(mode, args.tokens)
            bound = bandwidth * 1e9 / record["weights_bytes"]
            record.update(bandwidth_gbs=bandwidth, bound_tok_s=bound, share=record["decode_tok_s"] / bound)
            if i >= args.warmup:
                rows[mode].append(record)
            print(f"{'warm-up' if i < args.warmup else 'run'} {mode:<8} decode {record['decode_tok_s']:.1f} tok/s "
                  f"of {bound:.1f} bound ({record['share']:.0%}), {record['generated_tokens']} tokens",
                  file=sys.stderr)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[mode])

    print(f"SmolLM2-135M ({rows['burst'][0]['weights_bytes'] / 1e6:.0f} MB of fp32 weights), "
          f"{len(usable_cores())} cores, {args.runs} runs per mode after {args.warmup} warm-up, medians\n")
    print("| mode | threads | decode tok/s | prefill tok/s | TTFT ms | load s | peak RSS MB "
          "| read bandwidth GB/s | fp32 bound tok/s | share of bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in THREADS:
        print(f"| {mode} | {THREADS[mode]} | {med(mode, 'decode_tok_s'):.1f} | {med(mode, 'prefill_tok_s'):.0f} "
              f"| {med(mode, 'ttft_ms'):.0f} | {med(mode, 'load_seconds'):.2f} | {med(mode, 'peak_rss_mb'):.0f} "
              f"| {med(mode, 'bandwidth_gbs'):.1f} | {med(mode, 'bound_tok_s'):.1f} | {med(mode, 'share'):.0%} |")
    ratio = statistics.median(b["decode_tok_s"] / d["decode_tok_s"] for b, d in zip(rows["burst"], rows["default"]))
    print(f"\nburst / default decode tok/s, median of paired runs: {ratio:.2f}x")


if __name__ == "__main__":
    main()
