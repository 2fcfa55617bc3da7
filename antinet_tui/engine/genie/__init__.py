"""The Snapdragon NPU backend: Qualcomm Genie LLM bundles run by qai_appbuilder.

`GenieBackend(config_path, **options)` implements the engine's Backend protocol; the
binding itself runs in a worker process (worker.py). Nothing here imports
qai_appbuilder: only the worker does, so this package imports on any machine.
"""

from antinet_tui.engine.genie.backend import GenieBackend
from antinet_tui.engine.genie.bundle import PERF_PROFILES

__all__ = ["PERF_PROFILES", "GenieBackend"]
