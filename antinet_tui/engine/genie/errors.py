"""Genie failures as operator-facing errors, and the reading of what the binding prints.

qai_appbuilder's GenieContext rarely raises: the constructor, Query and SetParams print
`Failed to ...` lines (and QNN prints `[ERROR] ...` lines) and return. The worker captures
that output; `native_failure` turns it into the error a person can act on.
"""

from __future__ import annotations

import re

from antinet_tui.engine.errors import BackendUnavailable, EngineError, ModelFormatError

INSTALL_HINT = (
    "It exists only for Snapdragon devices: Windows on Snapdragon (ARM64 Python, or x64 Python as ARM64EC) "
    "and Linux aarch64 boards. Install it with `pip install qai-appbuilder`, or the wheel matching your "
    "Python from https://github.com/quic/ai-engine-direct-helper/releases "
    "(qai_appbuilder-<ver>-cp312-cp312-win_arm64.whl, ...-linux_aarch64.whl). "
    "Other machines: use --backend numpy."
)


class GenieBundleError(ModelFormatError):
    """The bundle is incomplete or malformed (files named in the message)."""


class GenieNotInstalled(BackendUnavailable):
    pass


class NpuUnavailable(BackendUnavailable):
    """QNN could not bring up the Hexagon NPU (error 14001 and its family)."""


class GenieContextFailed(BackendUnavailable):
    """GenieContext printed an error and returned a half-built object."""


class GenieWorkerCrashed(EngineError):
    """The Genie worker process died; the next request starts a new one."""


class GenieWorkerHung(EngineError):
    """The Genie worker made no progress in time and was killed."""


class GenieQueryFailed(EngineError):
    """Query returned without an answer (the binding prints instead of raising)."""


# (pattern, error class, what it means and what to do). First match wins.
_NATIVE_FAILURES: tuple[tuple[re.Pattern[str], type[EngineError], str], ...] = (
    (
        re.compile(r"\b(14001|14002|1008|4000)\b|Transport layer setup failed|Failed to load skel"
                   r"|Stub lib id mismatch|Failed to create transport", re.IGNORECASE),
        NpuUnavailable,
        ("The Hexagon NPU runtime could not start (QNN device/transport error). Usually the "
         "QNN/QAIRT libraries on the loader path do not match each other or the DSP skel "
         "(check ADSP_LIBRARY_PATH on Linux, and that qai_appbuilder's version matches the "
         "QAIRT version the bundle was compiled with), or another process holds the NPU: "
         "close other NPU apps and retry."),
    ),
    (
        re.compile(r"\b5000\b|Create From Binary FAILED|Could not create context from binary",
                   re.IGNORECASE),
        NpuUnavailable,
        ("QNN could not load the bundle's context binaries: they were compiled for another "
         "QAIRT version or another chipset. Re-export the bundle for this device "
         "(--chipset) with the QAIRT version qai_appbuilder ships, or install the matching "
         "qai_appbuilder."),
    ),
    (
        re.compile(r"Unable to find a valid interface|getQnnInterface FAILED", re.IGNORECASE),
        NpuUnavailable,
        ("The QNN HTP backend library could not be loaded: wrong or missing QNN libraries on "
         "the loader path (PATH on Windows, LD_LIBRARY_PATH on Linux)."),
    ),
    (
        re.compile(r"Failed to open Genie config file", re.IGNORECASE),
        GenieContextFailed,
        "Genie could not open the config file it was given.",
    ),
    (
        re.compile(r"Failed to create the Genie Dialog config", re.IGNORECASE),
        GenieContextFailed,
        "Genie rejected the bundle's config.json (schema or value error).",
    ),
    (
        re.compile(r"Failed to create the (Genie )?Dialog|Failed to create the profile"
                   r"|Failed to bind the profile|Failed to create sampler|Failed to get sampler"
                   r"|get tokenizer failed", re.IGNORECASE),
        GenieContextFailed,
        "Genie could not create the dialog: the model did not load onto the NPU.",
    ),
)


def native_failure(output: str, fallback: type[EngineError], summary: str) -> EngineError:
    """The operator's error for native output, quoting the lines that matter."""
    for pattern, error_class, advice in _NATIVE_FAILURES:
        if pattern.search(output):
            return error_class(f"{summary}: {advice}{_quote(output)}")
    return fallback(f"{summary}.{_quote(output)}")


def _quote(output: str, max_lines: int = 8) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"fail|error|\berr\b", line, re.IGNORECASE)]
    shown = (errors or lines)[-max_lines:]
    return "\nLast output from Genie:\n  " + "\n  ".join(shown) if shown else ""
