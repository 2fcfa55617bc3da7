"""The onnx backend: the GGUF's own quantized blocks run by ONNX Runtime on the CPU.

First load builds one decoder graph from the GGUF (graph.py; the file's Q4_0/Q4_1/Q8_0
blocks as MatMulNBits, never re-quantized) and caches it (model_cache.py); later loads
create a session from the cached file. Generation is the shared loop
(generation.py); this module supplies loading and the thread knob for the CPU modes.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from antinet_tui.engine.errors import BackendUnavailable, ModelFormatError
from antinet_tui.engine.generation import LoadedModel, StepwiseBackend
from antinet_tui.engine.gguf_model import GGUFFile, ModelConfig, check_gguf_file, read_config
from antinet_tui.engine.numpy_backend import chat_template, display_name, model_meta
from antinet_tui.engine.protocol import ModelInfo, OnProgress
from antinet_tui.engine.tokenizer import Tokenizer, VocabSpec
from antinet_tui.engine.weight_cache import file_sha256

if TYPE_CHECKING:
    from antinet_tui.engine.onnx.runner import OnnxForward

# MatMulNBits' accuracy_level for each linear (graph.ROLES): 4 quantizes its input to int8
# per block of 32 (integer kernels, fast), 0 keeps it float32 (slower kernels). The default
# keeps the attention projection's input in float32: int8 there cost the most accuracy
# (SmolLM2, teacher-forced against the numpy fp32 reference: mean per-step largest logit
# error 0.78 -> 0.60, largest 1.53 -> 1.15, llama.cpp's 1.45) for 2.5 % of decode speed.
# "fp32-all" matches the numpy reference to ~1e-4 but its 8-bit LM head takes ~100 ms per
# token at level 0 on a 49k vocabulary: for tests and reference runs, not for serving.
INT8, FP32 = 4, 0
ACTIVATIONS: dict[str, dict[str, int]] = {
    "qkv-fp32": {"qkv": FP32, "o": INT8, "gate_up": INT8, "down": INT8, "head": INT8},
    "int8": {"qkv": INT8, "o": INT8, "gate_up": INT8, "down": INT8, "head": INT8},
    "fp32": {"qkv": FP32, "o": FP32, "gate_up": FP32, "down": FP32, "head": INT8},
    "fp32-all": {"qkv": FP32, "o": FP32, "gate_up": FP32, "down": FP32, "head": FP32},
}
DEFAULT_ACTIVATIONS = "qkv-fp32"


def onnxruntime_available() -> str | None:
    """None when onnxruntime and onnx import; else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc.name}): pip install -e . installs it"
    return None


class OnnxBackend(StepwiseBackend):
    name = "onnx"

    def __init__(self, model_path: str | Path, *, n_ctx: int | None = None, use_cache: bool = True,
                 cache_dir: Path | None = None, activations: str = DEFAULT_ACTIVATIONS):
        super().__init__(model_path, n_ctx=n_ctx)
        if activations not in ACTIVATIONS:
            raise ValueError(f"activations must be one of {', '.join(ACTIVATIONS)}")
        from antinet_tui.engine.onnx.model_cache import DecoderCache

        self._cache = DecoderCache(cache_dir) if use_cache else None
        self._activations = activations
        self._forward: OnnxForward | None = None
        self._scratch: Path | None = None  # the built model when it could not be cached

    def _set_threads(self, n: int) -> int | None:
        return self._forward.use_threads(n) if self._forward is not None else None

    def _load(self, progress: OnProgress) -> LoadedModel:
        missing = onnxruntime_available()
        if missing:
            raise BackendUnavailable(missing)
        from antinet_tui.engine.onnx.runner import OnnxForward

        check_gguf_file(self.model_path)
        progress(0.02, "checking the built-model cache")
        digest = file_sha256(self.model_path)
        variant = f"act-{self._activations}"
        cached = self._cache.load(digest, variant) if self._cache else None
        if cached is not None:
            model_file, meta = cached.model_path, cached.meta
        else:
            model_file, meta = self._build(digest, variant, progress)
        cfg = ModelConfig(**meta["config"])
        vocab = VocabSpec(**meta["vocab"])
        n_ctx = min(self._n_ctx or cfg.context_length, cfg.context_length)
        progress(0.93, "creating the ONNX Runtime session")
        try:
            forward = OnnxForward(model_file, cfg, n_ctx, threads=1)
        except Exception as exc:  # noqa: BLE001 onnxruntime's own Fail/InvalidGraph: a damaged or foreign file
            if cached is None:
                raise ModelFormatError(
                    f"ONNX Runtime could not load the graph built from {self.model_path}: {exc}") from None
            assert self._cache is not None  # it came from the cache
            self._cache.discard(digest, variant)  # cached but unusable: rebuild once, never trust it
            model_file, meta = self._build(digest, variant, progress)
            forward = OnnxForward(model_file, cfg, n_ctx, threads=1)
            cached = None
        self._forward = forward
        progress(0.97, "warming up")
        forward.prefill([0] * min(16, n_ctx), threading.Event())
        info = ModelInfo(
            name=display_name(self.model_path),
            path=str(self.model_path),
            architecture=cfg.architecture,
            backend=self.name,
            context_length=n_ctx,
            n_params=meta["n_params"],
            quantization=meta["quantization"],
            weights_bytes=meta["weights_bytes"],
            details={"from_cache": cached is not None, "sha256": digest, "general_name": meta["name"],
                     "onnx_model": str(model_file), "activations": self._activations, **cfg.to_dict()},
        )
        return LoadedModel(forward, Tokenizer(vocab), chat_template(vocab), info)

    def _build(self, digest: str, variant: str, progress: OnProgress) -> tuple[Path, dict]:
        from antinet_tui.engine.onnx.graph import build_model, check_supported

        progress(0.05, "reading GGUF metadata")
        gf = GGUFFile(self.model_path)
        cfg = read_config(gf)
        check_supported(gf, cfg)
        vocab = VocabSpec.from_gguf(gf)
        Tokenizer(vocab)  # fail on an unsupported tokenizer before the slow part
        model = build_model(gf, cfg, ACTIVATIONS[self._activations],
                            lambda f, m: progress(0.08 + 0.75 * f, m))
        meta = model_meta(gf, cfg, vocab, self.model_path)
        meta["weights_bytes"] = weights_read_per_token(model)
        progress(0.85, "saving the built model")

        def write(path: Path) -> None:
            import onnx

            onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=path.name + ".data", size_threshold=1024)

        if self._cache is not None:
            try:
                return self._cache.store(digest, variant, self.model_path, write, meta), meta
            except OSError as exc:  # a full disk must not stop the model from running
                progress(0.9, f"built model not cached: {exc}")
        self._scratch = Path(tempfile.mkdtemp(prefix="antinet-onnx-"))
        path = self._scratch / "model.onnx"
        write(path)
        return path, meta

    def close(self) -> None:
        super().close()
        self._forward = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def weights_read_per_token(model) -> int:
    """Bytes of initializers a decode step reads: all but the tables it indexes."""
    from onnx.helper import tensor_dtype_to_np_dtype

    skip = {n.input[0] for n in model.graph.node if n.op_type == "Gather"} | {"cos_cache", "sin_cache"}
    return int(sum(int(np.prod(t.dims)) * tensor_dtype_to_np_dtype(t.data_type).itemsize
                   for t in model.graph.initializer if t.name not in skip))
