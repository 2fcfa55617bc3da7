"""Choosing a backend by name: the registry, the one place that knows every backend.

Each entry names a factory that imports its backend's module only when called, so
`--help` and the frontends' start-up never pay for numpy, onnxruntime or Genie.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from antinet_tui.engine.errors import EngineError, UnknownBackend
from antinet_tui.engine.protocol import Backend


@dataclass(frozen=True)
class BackendOptions:
    model: str | None = None  # what --model gave (a GGUF path, a Genie config.json)
    n_ctx: int | None = None  # context cap
    mode: str | None = None  # the mode the operator asked for


@dataclass(frozen=True)
class BackendEntry:
    name: str
    description: str
    create: Callable[[BackendOptions], Backend]


def _numpy(options: BackendOptions) -> Backend:
    from antinet_tui.engine.discovery import resolve_model_path
    from antinet_tui.engine.numpy_backend import NumpyBackend

    return NumpyBackend(resolve_model_path(options.model), n_ctx=options.n_ctx)


def _auto(options: BackendOptions) -> Backend:
    from antinet_tui.engine.default_backend import DefaultBackend
    from antinet_tui.engine.discovery import resolve_model_path

    return DefaultBackend(resolve_model_path(options.model), n_ctx=options.n_ctx)


def _onnx(options: BackendOptions) -> Backend:
    from antinet_tui.engine.discovery import resolve_model_path
    from antinet_tui.engine.onnx.backend import OnnxBackend

    return OnnxBackend(resolve_model_path(options.model), n_ctx=options.n_ctx)


def _genie(options: BackendOptions) -> Backend:
    if not options.model:
        raise EngineError("the genie backend needs --model path/to/genie_bundle/config.json")
    from antinet_tui.engine.genie import GenieBackend

    # Genie rebuilds its NPU context to switch modes: it starts in the asked-for one.
    return GenieBackend(options.model, mode=options.mode)


REGISTRY: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry("auto", "the default: onnx when it can run the file, else numpy (info says which and why)",
                     _auto),
        BackendEntry("onnx", "embedded CPU engine: the GGUF's own Q4_0/Q4_1/Q8_0 blocks run by ONNX Runtime",
                     _onnx),
        BackendEntry("numpy", "embedded CPU engine: GGUF models (llama, qwen2) in numpy, the reference", _numpy),
        BackendEntry("genie", "Qualcomm Genie on the Snapdragon NPU: --model path/to/bundle/config.json",
                     _genie),
    )
}


def backend_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def create_backend(name: str, model: str | None = None, *, n_ctx: int | None = None,
                   mode: str | None = None) -> Backend:
    """`mode` is the mode the operator asked for: a backend whose modes are costly to
    switch starts in it instead of switching after load."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise UnknownBackend(f"unknown backend {name!r}; available: {', '.join(REGISTRY)}")
    return entry.create(BackendOptions(model=model, n_ctx=n_ctx, mode=mode))
