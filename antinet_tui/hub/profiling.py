"""Profile one model on one hosted device under several HTP performance modes.

One profiling inference job per mode (`submit_inference_job(..., profile=True)`; the
profile-job API is a deprecated alias in qai-hub 0.56), all submitted first so AI Hub
runs them side by side, then polled. The mode travels as the runtime's option string:
QNN models (`.bin` context binaries, `.dlc`) take `--qnn_options
context_htp_performance_mode=…`, ONNX Runtime `--onnx_options qnn_htp_performance_mode=…`,
TFLite `--tflite_options qnn_htp_performance_mode=kHtp…`. These spellings come from
third-party AI Hub wrappers, not the official options page; the exact string sent is
printed and logged, and AI Hub fails a job whose options it rejects. "default" sends no
option: AI Hub's own default applies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antinet_tui.exit_codes import Exit
from antinet_tui.hub.client import find_device, hub_calls
from antinet_tui.hub.errors import HubError

HUB_MODES = ("burst", "sustained_high_performance", "high_performance", "balanced",
             "low_balanced", "high_power_saver", "power_saver", "low_power_saver",
             "extreme_power_saver", "default")
_QNN_TYPES = {"QNN_CONTEXT_BINARY", "QNN_DLC"}
_HUB_MODEL_ID = re.compile(r"m[a-z0-9]{5,}")


def perf_mode_options(model_type: str, mode: str) -> str:
    """The job option string that selects `mode` for a model of this qai_hub type."""
    if mode not in HUB_MODES:
        raise HubError(f"unknown mode {mode!r}; valid modes: {', '.join(HUB_MODES)}", exit_code=Exit.USAGE)
    if mode == "default":
        return ""
    if model_type in _QNN_TYPES:
        return f"--qnn_options context_htp_performance_mode={mode.upper()}"
    if model_type == "ONNX":
        return f"--onnx_options qnn_htp_performance_mode={mode}"
    if model_type == "TFLITE":
        camel = "".join(word.capitalize() for word in mode.split("_"))
        return f"--tflite_options qnn_htp_performance_mode=kHtp{camel}"
    raise HubError(
        f"AI Hub cannot profile a {model_type} model directly; compile it first "
        "(qai-hub's submit_compile_job) and profile the .bin / .dlc / .onnx / .tflite it makes.",
        exit_code=Exit.USAGE)


@dataclass
class ModeProfile:
    """One mode's job and what AI Hub measured (times in ms, memory in bytes)."""

    mode: str
    options: str
    job_id: str
    url: str
    status: str = "SUBMITTED"  # then AI Hub's state name; SUCCESS / FAILED / TIMED_OUT at the end
    failure: str | None = None
    inference_ms: float | None = None
    peak_memory_bytes: int | None = None
    compute_units: dict[str, int] = field(default_factory=dict)  # layers per unit

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    def read_profile(self, profile: dict[str, Any]) -> None:
        """Take the figures from InferenceJob.download_profile()."""
        summary = profile.get("execution_summary", {})
        if isinstance(summary.get("estimated_inference_time"), (int, float)):
            self.inference_ms = summary["estimated_inference_time"] / 1000.0  # µs
        if isinstance(summary.get("estimated_inference_peak_memory"), int):
            self.peak_memory_bytes = summary["estimated_inference_peak_memory"]
        units: dict[str, int] = {}
        for layer in profile.get("execution_detail", []):
            unit = str(layer.get("compute_unit", "UNSPECIFIED"))
            units[unit] = units.get(unit, 0) + 1
        self.compute_units = units

    def as_record(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "options": self.options, "job_id": self.job_id, "url": self.url,
            "status": self.status, "failure": self.failure, "inference_ms": self.inference_ms,
            "peak_memory_bytes": self.peak_memory_bytes, "compute_units": self.compute_units,
        }


def time_ratios(profiles: list[ModeProfile]) -> dict[str, float]:
    """Each measured mode's inference time divided by the first measured mode's."""
    measured = [(p.mode, ms) for p in profiles if p.ok and (ms := p.inference_ms)]
    if not measured:
        return {}
    baseline = measured[0][1]
    return {mode: ms / baseline for mode, ms in measured}


def resolve_model(client: Any, model: str) -> tuple[Any, str]:
    """(qai_hub Model, what it is) for a local file (uploaded once) or an AI Hub model id."""
    path = Path(model).expanduser()
    if path.exists():
        with hub_calls():
            return client.upload_model(str(path)), str(path)
    if _HUB_MODEL_ID.fullmatch(model):
        with hub_calls():
            return client.get_model(model), f"AI Hub model {model}"
    raise HubError(
        f"No model file {model!r}. Give a compiled model (.bin QNN context binary, .dlc, "
        ".onnx, .tflite) or an AI Hub model id (m…).", exit_code=Exit.USAGE)


def profile_modes(
    client: Any,
    model: str,
    device_name: str,
    modes: list[str],
    on_progress: Callable[[str], None],
    extra_options: str = "",
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
) -> list[ModeProfile]:
    """Submit one profiling job per mode, wait for all, and read their profiles."""
    device = find_device(client, device_name)
    hub_model, described = resolve_model(client, model)
    model_type = hub_model.model_type.name
    options = {mode: " ".join(filter(None, [perf_mode_options(model_type, mode), extra_options]))
               for mode in modes}
    on_progress(f"profiling {described} ({model_type}) on {device.name}: {', '.join(modes)}")

    jobs: dict[str, Any] = {}
    profiles: dict[str, ModeProfile] = {}
    for mode in modes:
        with hub_calls():
            job = client.submit_inference_job(
                hub_model, device, profile=True, options=options[mode], retry=False,
                name=f"antinet-tui {mode}")
        jobs[mode] = job
        profiles[mode] = ModeProfile(mode, options[mode], job.job_id, job.url)
        on_progress(f"[{mode}] submitted {job.job_id} {options[mode] or '(AI Hub default)'}: {job.url}")

    started = time.monotonic()
    waiting = dict(jobs)
    while waiting:
        for mode, job in list(waiting.items()):
            with hub_calls():
                status = job.get_status()
            if status.code != profiles[mode].status:
                profiles[mode].status = status.code
                on_progress(f"[{mode}] {job.job_id} {status.code} ({time.monotonic() - started:.0f} s)")
            if status.finished:
                del waiting[mode]
                profiles[mode].failure = status.message if status.failure else None
        if waiting and time.monotonic() - started >= timeout_seconds:
            for mode in waiting:
                profiles[mode].failure = (f"still {profiles[mode].status} after "
                                          f"{timeout_seconds:.0f} s; see {jobs[mode].url}")
                profiles[mode].status = "TIMED_OUT"
            break
        if waiting:
            time.sleep(poll_seconds)

    for mode, profile in profiles.items():
        if profile.ok:
            with hub_calls():
                profile.read_profile(jobs[mode].download_profile())
    return [profiles[mode] for mode in modes]
