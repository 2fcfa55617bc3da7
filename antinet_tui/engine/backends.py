"""Choosing a backend by name: the one place that knows every backend."""

from __future__ import annotations

from antinet_tui.engine.errors import EngineError, UnknownBackend
from antinet_tui.engine.protocol import Backend

BACKENDS = {
    "numpy": "embedded CPU engine: GGUF models (llama, qwen2) in numpy",
    "genie": "Qualcomm Genie on the Snapdragon NPU: --model path/to/bundle/config.json",
}


def create_backend(name: str, model: str | None = None, *, n_ctx: int | None = None,
                   mode: str | None = None) -> Backend:
    """`mode` is the mode the operator asked for: a backend whose modes are costly to
    switch (Genie rebuilds its NPU context) starts in it instead of switching after load."""
    if name == "numpy":
        from antinet_tui.engine.discovery import resolve_model_path
        from antinet_tui.engine.numpy_backend import NumpyBackend

        return NumpyBackend(resolve_model_path(model), n_ctx=n_ctx)
    if name == "genie":
        if not model:
            raise EngineError("the genie backend needs --model path/to/genie_bundle/config.json")
        from antinet_tui.engine.genie import GenieBackend

        return GenieBackend(model, mode=mode)
    raise UnknownBackend(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
