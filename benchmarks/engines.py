"""Engines side by side in one run: onnx, numpy and, when it is installed, llama.cpp.

    .venv/bin/python benchmarks/engines.py [--rounds 5] [--tokens 64] [--prefill 300] \\
        [--peer-python /work/llamacpp-venv/bin/python] [--threads N]

Every engine runs in its own worker process (so its load time and peak RSS are its
own) on the same GGUF, the same token ids (our tokenizer's) and the same thread count;
the parent interleaves them round by round (the order rotates), so a busy shared
machine hits them alike, and reports medians and the median of the per-round ratios.

Figures: decode tok/s (a short chat prompt, N greedy tokens forced), prefill tok/s (a
~300-token prompt), TTFT and end-to-end for the seed's case (the France prompt, 16 new
tokens), load time on a first launch (empty cache) and a second one, peak RSS, the
onnx mode-switch time, and quality: along numpy's greedy answers to a few prompts
(teacher-forced), the logit error of each engine against numpy's fp32 reference, with
onnx also built with int8 activations everywhere and with float32 layers, and what each
of those decodes back to back. Then the int4 bandwidth bound (bytes read per token /
streaming bandwidth with the same threads) and the share onnx reaches, and where a decode
step goes (ONNX Runtime's per-operator profile; session run vs. the Python around it).
benchmarks/onnx_ceiling.py shows what a faster graph could reach.

llama.cpp (llama-cpp-python, built by ../shared/tools/build-llamacpp.sh into its own
venv) is a benchmark peer only, never a dependency: `--peer-python` names the
interpreter that can import it; without one, the peer is skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRANCE = "What is the capital of France? Answer in one sentence."
SHORT = "Tell me a story about a lighthouse keeper."
QUALITY_PROMPTS = [FRANCE, "Write a haiku about the sea.", "Explain what a CPU cache is.",
                   "List three prime numbers.", "请用中文写一句关于春天的话。"]
QUALITY_STEPS = 24
# our onnx engines by the activations they run (onnx.backend.ACTIVATIONS): the default, and
# the all-int8 and float32-layer variants that the quality section weighs it against
ONNX_VARIANTS = {"onnx": "qkv-fp32", "onnx-int8": "int8", "onnx-fp32": "fp32"}


# --- workers (one engine per process) ------------------------------------------------------

class OurEngine:
    def __init__(self, kind: str, model: str, threads: int, cache: str):
        from antinet_tui.engine.numpy_backend import NumpyBackend
        from antinet_tui.engine.onnx.backend import OnnxBackend

        started = time.perf_counter()
        if kind == "numpy":
            self.backend = NumpyBackend(model, cache_dir=Path(cache))
        else:
            self.backend = OnnxBackend(model, cache_dir=Path(cache), activations=ONNX_VARIANTS[kind])
        info = self.backend.load()
        self.load_seconds = time.perf_counter() - started
        self.from_cache = info.details["from_cache"]
        # normal priority, no pinning (llama.cpp gets neither): all cores, or default's one thread
        mode = "sustained_high_performance" if threads > 1 else "default"
        self.readback = self.backend.apply_mode(mode)
        if self.readback.settings["threads"] != threads:
            raise SystemExit(f"{mode} runs {self.readback.settings['threads']} threads here, not {threads}")
        self.forward = self.backend._model.forward
        self.cancel = threading.Event()

    def prefill(self, ids):
        return self.forward.prefill(ids, self.cancel)

    def step(self, token):
        return self.forward.step(token)


class LlamaCppEngine:
    def __init__(self, model: str, threads: int):
        import llama_cpp

        started = time.perf_counter()
        self.llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                                   n_batch=512, verbose=False)
        self.load_seconds = time.perf_counter() - started
        self.from_cache = None
        self.n_vocab = self.llm.n_vocab()
        self._get = llama_cpp.llama_get_logits_ith

    def _logits(self):
        return np.ctypeslib.as_array(self._get(self.llm.ctx, -1), shape=(self.n_vocab,))

    def prefill(self, ids):
        self.llm.reset()
        self.llm.eval(ids)
        return self._logits()

    def step(self, token):
        self.llm.eval([token])
        return self._logits()


def worker(kind: str, model: str, threads: int, cache: str) -> None:
    engine = LlamaCppEngine(model, threads) if kind == "llama.cpp" else OurEngine(kind, model, threads, cache)
    reply({"load_seconds": engine.load_seconds, "from_cache": engine.from_cache})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "decode":
            started = time.perf_counter()
            logits = engine.prefill(cmd["prompt"])
            stamps, tokens = [], []
            for _ in range(cmd["n"]):
                token = int(np.argmax(logits))
                stamps.append(time.perf_counter())
                tokens.append(token)
                if len(tokens) < cmd["n"]:
                    logits = engine.step(token)
            reply({"ttft_ms": (stamps[0] - started) * 1e3, "e2e_ms": (stamps[-1] - started) * 1e3,
                   "decode_tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]), "tokens": tokens})
        elif cmd["cmd"] == "prefill":
            started = time.perf_counter()
            engine.prefill(cmd["prompt"])
            reply({"prefill_tok_s": len(cmd["prompt"]) / (time.perf_counter() - started)})
        elif cmd["cmd"] == "logits":
            out = [np.array(engine.prefill(cmd["prompt"]), dtype=np.float32)]
            for token in cmd["forced"][:-1]:
                out.append(np.array(engine.step(token), dtype=np.float32))
            np.save(cmd["out"], np.stack(out))
            reply({})
        elif cmd["cmd"] == "switch":  # onnx only: mode switch times
            times = []
            for mode in ["default", "burst"] * cmd["n"]:
                times.append(engine.backend.apply_mode(mode).switch_seconds)
            reply({"switch_seconds": times})
        elif cmd["cmd"] == "step_split":  # onnx only: a decode step's session run vs the rest
            reply(step_split(engine))
        elif cmd["cmd"] == "profile":
            reply(op_profile(engine, cmd["path"]))
        elif cmd["cmd"] == "rss":
            reply({"peak_rss_mb": peak_rss_mb()})


def peak_rss_mb() -> float:
    """This process's peak resident size (VmHWM: unlike ru_maxrss, not inherited from the
    parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reply(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def step_split(engine) -> dict:
    """Wall time of a generated token (the shared loop: sampling, decoding, stop checks)
    vs. the session run inside it."""
    from antinet_tui.engine.protocol import GenerationRequest

    forward = engine.forward
    session_ns = []
    real_run = forward._session.run_with_iobinding

    def timed(binding):
        t = time.perf_counter_ns()
        real_run(binding)
        session_ns.append(time.perf_counter_ns() - t)

    forward._session.run_with_iobinding = timed  # type: ignore[method-assign]
    try:
        result = engine.backend.generate(GenerationRequest(SHORT, temperature=0, max_new_tokens=64, ignore_eos=True),
                                         lambda *_: None, threading.Event())
    finally:
        del forward._session.run_with_iobinding
    stamps = result.token_times_ns
    # token i+1's interval holds exactly session run i+1 (run 0 is the prefill): pair them
    intervals = [b - a for a, b in itertools.pairwise(stamps)]
    outside = [gap - run for gap, run in zip(intervals, session_ns[1:])]
    per_token = statistics.median(intervals) / 1e6
    session = statistics.median(session_ns[1:]) / 1e6
    return {"per_token_ms": per_token, "session_run_ms": session, "python_ms": statistics.median(outside) / 1e6}


def op_profile(engine, prefix: str) -> dict:
    """Per-operator share of a decode step, from ONNX Runtime's own profiler."""
    import collections

    import onnxruntime as ort

    from antinet_tui.engine.onnx import runner

    options = runner.session_options(engine.forward.threads)
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    session = ort.InferenceSession(str(engine.forward.model_path), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    prefill, step = engine.forward._bind(session)
    engine.forward._session, engine.forward._step_binding = session, step
    engine.forward._prefill_binding = prefill
    engine.forward.prefill(list(range(20)), threading.Event())
    for i in range(64):
        engine.forward.step(100 + i)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    return {op: round(100 * t / total, 1) for op, t in by_op.most_common()}


# --- the parent ---------------------------------------------------------------------------

class Worker:
    """An engine in its own process, answering each JSON-line command with one JSON line."""

    def __init__(self, kind: str, python: str, model: str, threads: int, cache: str):
        self.start(kind, [python, __file__, "--worker", kind, "--model", model, "--threads", str(threads),
                          "--cache", cache])

    def start(self, kind: str, argv: list[str]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        self.loaded = self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} worker died")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def median(values):
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="GGUF file (default: the installed SmolLM2)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prefill", type=int, default=300)
    parser.add_argument("--peer-python", help="a Python that can import llama_cpp (the peer); default: none")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.threads, args.cache)
        return

    from antinet_tui.engine.discovery import resolve_model_path
    from antinet_tui.engine.numpy_backend import NumpyBackend
    from antinet_tui.engine.protocol import GenerationRequest
    from antinet_tui.platform.bandwidth import read_bandwidth_gbs

    model = str(resolve_model_path(args.model))
    scratch = Path(tempfile.mkdtemp(prefix="antinet-engines-"))
    tok = NumpyBackend(model, cache_dir=scratch / "tok")
    tok.load()

    def ids(prompt, chat=True):
        return tok.prompt_ids(GenerationRequest(prompt, chat=chat))

    short, france = ids(SHORT), ids(FRANCE)
    long_text = " ".join(["The quick brown fox jumps over the lazy dog while the sun sets behind the hills."] * 40)
    long_ids = ids(long_text, chat=False)[:args.prefill]
    quality_ids = [ids(p) for p in QUALITY_PROMPTS]
    tok.close()  # the parent only tokenizes: its memory is nobody's figure
    print(f"model {Path(model).name}; {args.threads} threads; prompts: decode {len(short)} tokens, "
          f"prefill {len(long_ids)}, seed case {len(france)}", file=sys.stderr)

    kinds = ["onnx", "numpy"] + (["llama.cpp"] if args.peer_python else [])
    python = {k: sys.executable for k in kinds} | ({"llama.cpp": args.peer_python} if args.peer_python else {})
    # first launch of onnx: an empty cache, so it builds; the measuring worker is a second launch
    first = Worker("onnx", sys.executable, model, args.threads, str(scratch / "onnx"))
    first_peak = first.ask(cmd="rss")["peak_rss_mb"]
    first.close()
    workers = {k: Worker(k, python[k], model, args.threads, str(scratch / ("onnx" if k == "onnx" else k)))
               for k in kinds}
    load = {k: w.loaded for k, w in workers.items()}
    load["onnx (first launch)"] = first.loaded

    decode = {k: [] for k in kinds}
    prefill = {k: [] for k in kinds}
    seed = {k: [] for k in kinds}
    for r in range(args.rounds + 1):  # round 0 is a warm-up
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        for k in order:
            d = workers[k].ask(cmd="decode", prompt=short, n=args.tokens)
            p = workers[k].ask(cmd="prefill", prompt=long_ids)
            s = workers[k].ask(cmd="decode", prompt=france, n=16)
            if r:
                decode[k].append(d["decode_tok_s"])
                prefill[k].append(p["prefill_tok_s"])
                seed[k].append(s)
        print(f"round {r}/{args.rounds} done", file=sys.stderr)

    def ratio(a, b, table):
        return median([x / y for x, y in zip(table[a], table[b])])

    print("\n## Speed (medians of interleaved rounds)\n")
    print("| engine | decode tok/s | prefill tok/s | seed case TTFT ms | seed case e2e ms (16 tokens) | load s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k in kinds:
        print(f"| {k} | {median(decode[k]):.1f} | {median(prefill[k]):.0f} | "
              f"{median([s['ttft_ms'] for s in seed[k]]):.0f} | {median([s['e2e_ms'] for s in seed[k]]):.0f} | "
              f"{load[k]['load_seconds']:.2f} |")
    print(f"\nonnx load: first launch (builds the graph) {first.loaded['load_seconds']:.2f} s, "
          f"second launch {load['onnx']['load_seconds']:.2f} s (from cache: {load['onnx']['from_cache']})")
    print(f"onnx ÷ numpy decode {ratio('onnx', 'numpy', decode):.2f}×, prefill {ratio('onnx', 'numpy', prefill):.2f}×")
    if "llama.cpp" in kinds:
        print(f"onnx ÷ llama.cpp decode {ratio('onnx', 'llama.cpp', decode):.2f}×, "
              f"prefill {ratio('onnx', 'llama.cpp', prefill):.2f}× (median of per-round ratios)")

    # quality: teacher-forced along numpy's greedy answers
    print("\n## Logit error against numpy fp32, teacher-forced along numpy's greedy answers\n")
    quality_kinds = [k for k in kinds if k != "numpy"]
    for k in ("onnx-int8", "onnx-fp32"):
        workers[k] = Worker(k, sys.executable, model, args.threads, str(scratch / k))
        quality_kinds.append(k)
    errors = {k: [] for k in quality_kinds}  # per prompt: each step's largest error
    for i, p in enumerate(quality_ids):
        forced = workers["numpy"].ask(cmd="decode", prompt=p, n=QUALITY_STEPS)["tokens"]
        workers["numpy"].ask(cmd="logits", prompt=p, forced=forced, out=str(scratch / f"numpy-{i}.npy"))
        reference = np.load(scratch / f"numpy-{i}.npy")
        for k in quality_kinds:
            workers[k].ask(cmd="logits", prompt=p, forced=forced, out=str(scratch / f"{k}-{i}.npy"))
            errors[k].append(np.abs(np.load(scratch / f"{k}-{i}.npy") - reference).max(axis=1))
    print("| engine | largest logit error | mean of each step's largest | largest per prompt |")
    print("| --- | ---: | ---: | --- |")
    for k in quality_kinds:
        steps = np.concatenate(errors[k])
        print(f"| {k} | {steps.max():.2f} | {steps.mean():.2f} | {', '.join(f'{e.max():.2f}' for e in errors[k])} |")
    variants = [k for k in ONNX_VARIANTS if k in workers]
    back_to_back = {k: [] for k in variants}
    for r in range(5):
        for k in variants[r % len(variants):] + variants[:r % len(variants)]:
            back_to_back[k].append(workers[k].ask(cmd="decode", prompt=short, n=args.tokens)["decode_tok_s"])
    print("\nwhat accuracy costs, decode interleaved back to back (activations: onnx's default keeps the "
          "attention projection's input float32): "
          + ", ".join(f"{k} ({ONNX_VARIANTS[k]}) {median(back_to_back[k]):.1f} tok/s" for k in variants)
          + f"; default ÷ int8 {ratio('onnx', 'onnx-int8', back_to_back):.3f}")

    # memory, mode switches, the bound and the step
    onnx = workers["onnx"]
    onnx_peak = onnx.ask(cmd="rss")["peak_rss_mb"]
    switch = onnx.ask(cmd="switch", n=3)["switch_seconds"]
    split = onnx.ask(cmd="step_split")
    profile = onnx.ask(cmd="profile", path=str(scratch / "profile"))
    print("\n## onnx: memory, modes, bandwidth, where a step goes\n")
    print(f"peak RSS: second launch {onnx_peak:.0f} MB (after every measurement above), first launch (building) "
          f"{first_peak:.0f} MB; "
          + ", ".join(f"{k} {workers[k].ask(cmd='rss')['peak_rss_mb']:.0f} MB" for k in kinds if k != "onnx"))
    print(f"mode switch (burst <-> default: a new session with the other thread count): median "
          f"{median(switch) * 1e3:.0f} ms (range {min(switch) * 1e3:.0f}-{max(switch) * 1e3:.0f})")
    from antinet_tui.engine.onnx.backend import OnnxBackend

    probe = OnnxBackend(model, cache_dir=scratch / "onnx")
    info = probe.load()
    probe.close()
    gguf_blocks = os.path.getsize(model)
    bandwidth = read_bandwidth_gbs(args.threads)
    graph_bytes = info.weights_bytes
    print(f"bytes read per token: {graph_bytes / 1e6:.0f} MB as the graph holds them (float32 scales and minima), "
          f"the file's blocks {gguf_blocks / 1e6:.0f} MB; streaming bandwidth with {args.threads} threads "
          f"{bandwidth:.1f} GB/s")
    bound_graph, bound_file = bandwidth * 1e9 / graph_bytes, bandwidth * 1e9 / gguf_blocks
    print(f"int4 bound: {bound_graph:.0f} tok/s for the graph's bytes ({bound_file:.0f} for the file's); onnx "
          f"reaches {median(decode['onnx']) / bound_graph:.0%} ({median(decode['onnx']) / bound_file:.0%})")
    print(f"a generated token: {split['per_token_ms']:.2f} ms, of which the session run {split['session_run_ms']:.2f} "
          f"ms and Python (sampling, decoding, stop checks, binding) {split['python_ms']:.2f} ms")
    print("operators' share of the session's kernel time: "
          + ", ".join(f"{op} {share}%" for op, share in profile.items()))
    for w in workers.values():
        w.close()


if __name__ == "__main__":
    main()
