"""How fast the onnx engine could decode on this machine, and what stands in the way.

    .venv/bin/python benchmarks/onnx_ceiling.py [--rounds 7] [--tokens 64] \\
        [--peer-python /work/llamacpp-venv/bin/python] [--threads N]

Three graphs derived from the one the onnx backend builds (default activations), each
stepped in its own process (an idle ONNX Runtime session's spinning threads would slow
its neighbour), interleaved round by round, with the same thread count:

* exact: the shipped graph, the file's weights value for value;
* no minimum: the same graph with each Q4_1 minimum correction (`blocksum(x) @ m`, a
  Gemm per linear) cut out, so its weights are wrong: a probe of what exactness costs,
  never shipped;
* kernels alone: only its MatMulNBits nodes, fed fixed inputs: ONNX Runtime's quantized
  kernels reading every weight once, the floor of any graph made of them.

With `--peer-python`, llama.cpp (engines.py's worker) decodes the same prompt in the same
rounds, and each figure gets its median per-round ratio to it. Decode: a 39-token chat
prompt, then N greedy steps; tok/s over the steps after the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engines import Worker  # beside this script, so on the path; after ROOT, which it imports from


def without_minimum(model):
    """The graph with every Q4_1 correction Gemm removed: its consumers read the product."""
    gemms = {n.output[0]: n.input[2] for n in model.graph.node if n.op_type == "Gemm" and n.input[1].endswith(".min_t")}
    kept = [n for n in model.graph.node if n.output[0] not in gemms]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in gemms:
                node.input[i] = gemms[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model, len(gemms)


def kernels_alone(model):
    """Only the MatMulNBits nodes, each with its own (1, K) input."""
    from onnx import TensorProto, helper

    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    inputs, outputs = [], []
    for i, node in enumerate(nodes):
        attrs = {a.name: a.i for a in node.attribute}
        node.input[0] = f"x{i}"
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, attrs["K"]]))
        outputs.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, [1, attrs["N"]]))
    used = {name for n in nodes for name in n.input}
    graph = helper.make_graph(nodes, "kernels", inputs, outputs,
                              [t for t in model.graph.initializer if t.name in used])
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data", size_threshold=1024)
    return path


def decode_tok_s(forward, prompt: list[int], n: int) -> float:
    logits = forward.prefill(prompt, threading.Event())
    stamps = []
    for _ in range(n):
        token = int(np.argmax(logits))
        stamps.append(time.perf_counter())
        logits = forward.step(token)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


class KernelsAlone:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        from antinet_tui.engine.onnx.runner import session_options

        self.session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.binding = self.session.io_binding()
        rng = np.random.default_rng(0)
        for i in self.session.get_inputs():
            self.binding.bind_cpu_input(i.name, rng.standard_normal(i.shape).astype(np.float32))
        for o in self.session.get_outputs():
            self.binding.bind_output(o.name)

    def tok_s(self, n: int) -> float:
        self.session.run_with_iobinding(self.binding)
        started = time.perf_counter()
        for _ in range(n - 1):
            self.session.run_with_iobinding(self.binding)
        return (n - 1) / (time.perf_counter() - started)


def worker(kind: str, path: str, threads: int) -> None:
    """One graph in this process, answering decode requests (JSON lines) from the parent."""
    from antinet_tui.engine.gguf_model import ModelConfig
    from antinet_tui.engine.onnx.runner import OnnxForward

    cfg = ModelConfig(**json.loads(Path(path).with_suffix(".config.json").read_text()))
    kernels = KernelsAlone(Path(path), threads) if kind == "kernels alone" else None
    forward = None if kernels else OnnxForward(Path(path), cfg, 512, threads)
    print(json.dumps({}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        rate = kernels.tok_s(cmd["n"]) if kernels else decode_tok_s(forward, cmd["prompt"], cmd["n"])
        print(json.dumps({"decode_tok_s": rate}), flush=True)


class Graph(Worker):
    """A worker process running one graph (engines.py's protocol)."""

    def __init__(self, kind: str, path: Path, threads: int):
        self.start(kind, [sys.executable, __file__, "--worker", kind, "--path", str(path), "--threads", str(threads)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="GGUF file (default: the installed SmolLM2)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--peer-python", help="a Python that can import llama_cpp (the peer); default: none")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.path, args.threads)
        return

    import onnx
    from engines import SHORT

    from antinet_tui.engine.discovery import resolve_model_path
    from antinet_tui.engine.gguf_model import ModelConfig
    from antinet_tui.engine.onnx.backend import OnnxBackend
    from antinet_tui.engine.protocol import GenerationRequest

    model = str(resolve_model_path(args.model))
    scratch = Path(tempfile.mkdtemp(prefix="antinet-ceiling-"))
    backend = OnnxBackend(model, cache_dir=scratch / "cache")
    info = backend.load()
    prompt = backend.prompt_ids(GenerationRequest(SHORT))
    config = json.dumps({k: info.details[k] for k in ModelConfig.__dataclass_fields__})
    exact = Path(info.details["onnx_model"])
    backend.close()

    probe, cut = without_minimum(onnx.load(str(exact)))
    paths = {"exact": exact, "no minimum": save(probe, scratch / "no-minimum.onnx"),
             "kernels alone": save(kernels_alone(onnx.load(str(exact))), scratch / "kernels.onnx")}
    for path in paths.values():
        path.with_suffix(".config.json").write_text(config)
    workers: dict = {k: Graph(k, p, args.threads) for k, p in paths.items()}
    if args.peer_python:
        workers["llama.cpp"] = Worker("llama.cpp", args.peer_python, model, args.threads, str(scratch / "peer"))
    print(f"{Path(model).name}; {args.threads} threads; {cut} minimum corrections cut for the probe; "
          f"decode {args.tokens} tokens after {len(prompt)}", file=sys.stderr)

    names = list(workers)
    rates: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds + 1):  # round 0 warms up
        for k in names[r % len(names):] + names[:r % len(names)]:
            rate = workers[k].ask(cmd="decode", prompt=prompt, n=args.tokens)["decode_tok_s"]
            if r:
                rates[k].append(rate)
    for w in workers.values():
        w.close()

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    peer = "llama.cpp" in rates
    print("\n| graph | decode tok/s | ms per token | ÷ exact |" + (" ÷ llama.cpp |" if peer else ""))
    print("| --- | ---: | ---: | ---: |" + (" ---: |" if peer else ""))
    for k in names:
        median = statistics.median(rates[k])
        print(f"| {k} | {median:.1f} | {1e3 / median:.2f} | {ratio(k, 'exact'):.2f} |"
              + (f" {ratio(k, 'llama.cpp'):.2f} |" if peer else ""))


if __name__ == "__main__":
    main()
