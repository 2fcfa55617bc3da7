"""The default backend: onnx when it can run the file, else numpy, saying which and why.

onnx runs the GGUF's own Q4_0/Q4_1/Q8_0 blocks (several times faster than numpy); a
file with other tensor types, or a machine without onnxruntime, falls back to numpy,
which runs every type the gguf package dequantizes. Any other failure (no such file,
not a GGUF) is the file's fault and is reported as is.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from antinet_tui.engine.cpu_modes import DEFAULT_CPU_MODE, CpuModeController
from antinet_tui.engine.errors import BackendUnavailable, EngineError, UnsupportedByBackend
from antinet_tui.engine.protocol import (
    Backend,
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModeReadback,
    OnProgress,
    OnToken,
)

AUTO = "auto"


class DefaultBackend:
    """Delegates every call to the backend that loaded (see the module doc)."""

    def __init__(self, model_path: str | Path, *, n_ctx: int | None = None):
        self.model_path = Path(model_path)
        self._n_ctx = n_ctx
        self._active: Backend | None = None

    @property
    def name(self) -> str:
        return self._active.name if self._active is not None else AUTO

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo:
        from antinet_tui.engine.numpy_backend import NumpyBackend
        from antinet_tui.engine.onnx.backend import OnnxBackend

        onnx = OnnxBackend(self.model_path, n_ctx=self._n_ctx)
        try:
            info = onnx.load(on_progress)
            reason = "the default: runs the file's own quantized blocks with ONNX Runtime"
            self._active = onnx
        except (BackendUnavailable, UnsupportedByBackend) as exc:
            onnx.close()
            numpy = NumpyBackend(self.model_path, n_ctx=self._n_ctx)
            info = numpy.load(on_progress)
            reason = f"fallback: the onnx backend cannot run this file ({exc})"
            self._active = numpy
        self._info = replace(info, details={**info.details, "backend_reason": reason})
        return self._info

    def _require(self) -> Backend:
        if self._active is None:
            raise EngineError("the model is not loaded")
        return self._active

    def capabilities(self) -> Capabilities:
        if self._active is not None:
            return self._active.capabilities()
        return Capabilities(modes=CpuModeController.modes(), default_mode=DEFAULT_CPU_MODE)  # both backends' modes

    def model_info(self) -> ModelInfo:
        self._require()
        return self._info

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return self._require().count_prompt_tokens(request)

    def generate(self, request: GenerationRequest, on_token: OnToken, cancel: threading.Event) -> GenerationResult:
        return self._require().generate(request, on_token, cancel)

    def apply_mode(self, mode: str) -> ModeReadback:
        return self._require().apply_mode(mode)

    def current_mode(self) -> ModeReadback | None:
        return self._active.current_mode() if self._active is not None else None

    def close(self) -> None:
        if self._active is not None:
            self._active.close()
