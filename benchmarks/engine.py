"""Issue 2's engine figures: `antinet-tui run --json` per mode, and decode speed as a
share of this machine's fp32 memory-bandwidth bound, measured in the same run.

    .venv/bin/python benchmarks/engine.py [--runs 5] [--tokens 64]

Each run is a fresh `antinet-tui run --json` process (so load time and peak RSS are
per launch; the prepared-weights cache is warm after the warm-up). Modes alternate
run by run; the streaming read bandwidth with the mode's thread count is measured just
before each run, and each run's share is its decode tok/s over that run's bound
(bandwidth / bytes of fp32 weights). Medians over the runs; warm-up runs discarded.

Then, in this process, the matmul floor: one decode step's matrix-vector products
alone (every weight once, nothing else), timed with each thread count, both in the
engine's layout (fused Q/K/V and gate/up, (in, out) matrices, down as (out, in)) and
in a straightforward one (separate matrices as stored in the GGUF, `W @ x`). No numpy
decoder can beat its floor; the gap between the two floors is what the layout buys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antinet_tui.engine.cpu_modes import usable_cores
from antinet_tui.platform.bandwidth import read_bandwidth_gbs

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
    for mode, threads in THREADS.items():
        print(f"| {mode} | {threads} | {med(mode, 'decode_tok_s'):.1f} | {med(mode, 'prefill_tok_s'):.0f} "
              f"| {med(mode, 'ttft_ms'):.0f} | {med(mode, 'load_seconds'):.2f} | {med(mode, 'peak_rss_mb'):.0f} "
              f"| {med(mode, 'bandwidth_gbs'):.1f} | {med(mode, 'bound_tok_s'):.1f} | {med(mode, 'share'):.0%} |")
    ratio = statistics.median(b["decode_tok_s"] / d["decode_tok_s"] for b, d in zip(rows["burst"], rows["default"]))
    print(f"\nburst / default decode tok/s, median of paired runs: {ratio:.2f}x")
    print_matmul_floors()


def print_matmul_floors(repeats: int = 11) -> None:
    import time

    import numpy as np
    from threadpoolctl import threadpool_limits

    from antinet_tui.engine.discovery import resolve_model_path
    from antinet_tui.engine.gguf_model import ModelConfig
    from antinet_tui.engine.weight_cache import WeightCache, file_sha256

    cached = WeightCache().load(file_sha256(resolve_model_path()))  # warm after the runs above
    cfg, w = ModelConfig(**cached.meta["config"]), cached.weights
    d, ffn, qd, kvd = cfg.d_model, cfg.ffn_dim, cfg.q_dim, cfg.kv_dim
    x_d, x_ffn = np.ones(d, np.float32), np.ones(ffn, np.float32)
    # (vector, matrix, vector-on-the-left?) as the engine's decode step multiplies them
    ours, plain = [], []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        ours += [(x_d, w[p + "wqkv"], True), (x_d, w[p + "wo"], True), (x_d, w[p + "w_gate_up"], True),
                 (x_ffn, w[p + "w_down_out_in"], False)]
        wqkv, wgu = w[p + "wqkv"], w[p + "w_gate_up"]
        for block in (wqkv[:, :qd], wqkv[:, qd:qd + kvd], wqkv[:, qd + kvd:], w[p + "wo"], wgu[:, :ffn], wgu[:, ffn:]):
            plain.append((x_d, np.ascontiguousarray(block.T), False))  # GGUF's (out, in), W @ x
        plain.append((x_ffn, w[p + "w_down_out_in"], False))
    ours.append((x_d, w["lm_head"], True))
    plain.append((x_d, np.ascontiguousarray(w["lm_head"].T), False))
    nbytes = sum(m.nbytes for _, m, _ in ours)

    def step(products) -> None:
        for x, m, left in products:
            _ = x @ m if left else m @ x

    print("\n| threads | matmul floor, engine layout tok/s | straightforward layout tok/s "
          "| read bandwidth GB/s | engine floor, share of bound |")
    print("|---|---|---|---|---|")
    for threads in sorted(set(THREADS.values()), reverse=True):
        rates: dict[str, list[float]] = {"ours": [], "plain": []}
        bandwidths, shares = [], []
        for _ in range(repeats):  # bandwidth and both floors interleaved: drifts hit all alike
            bandwidths.append(read_bandwidth_gbs(threads))
            with threadpool_limits(threads):
                for name, products in (("ours", ours), ("plain", plain)):
                    started = time.perf_counter()
                    step(products)
                    rates[name].append(1 / (time.perf_counter() - started))
            shares.append(rates["ours"][-1] / (bandwidths[-1] * 1e9 / nbytes))
        med = statistics.median
        print(f"| {threads} | {med(rates['ours']):.1f} | {med(rates['plain']):.1f} | {med(bandwidths):.1f} "
              f"| {med(shares):.0%} |")


if __name__ == "__main__":
    main()
