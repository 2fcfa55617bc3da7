"""An offline Qualcomm AI Hub: qai_hub.client.api functions patched to return real protobufs.

The same technique as qai-hub's own tests (qai_hub/test/test_client.py): the client
code runs for real; only the REST layer (public_rest_api, seen from qai_hub.client as
`api`) is replaced. The client reads a throw-away client.ini via QAIHUB_CLIENT_INI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import qai_hub.public_api_pb2 as api_pb

X_ELITE = api_pb.Device(name="Snapdragon X Elite CRD", os="11", attributes=[
    "abi:aarch64-windows", "chipset:qualcomm-snapdragon-x-elite", "chipset:sc8380xp",
    "framework:onnx", "framework:qnn", "hexagon:v73", "os:windows", "vendor:qualcomm"])
GALAXY_S24 = api_pb.Device(name="Samsung Galaxy S24", os="14", attributes=[
    "chipset:qualcomm-snapdragon-8gen3", "framework:qnn", "framework:tflite", "hexagon:v75",
    "os:android", "vendor:samsung"])
DEVICES = [X_ELITE, GALAXY_S24]

RUNNING = [api_pb.JOB_STATE_PROVISIONING_DEVICE, api_pb.JOB_STATE_RUNNING_INFERENCE]


def profile_detail(inference_us: int, peak_bytes: int, npu: int, cpu: int) -> api_pb.ProfileDetail:
    detail = api_pb.ProfileDetail(major_version=1, minor_version=2, execution_time=inference_us,
                                  after_execution_peak_memory=peak_bytes,
                                  cold_load_time=1374293, warm_load_time=277823)
    units = [api_pb.COMPUTE_UNIT_NPU] * npu + [api_pb.COMPUTE_UNIT_CPU] * cpu
    for index, unit in enumerate(units):
        detail.layer_details.append(api_pb.LayerDetail(
            name=f"layer{index}", layer_type_name="MatMul", compute_unit=unit, execution_time=10))
    return detail


@dataclass
class FakeHub:
    """What the REST layer answers; tests adjust it, then read what was submitted."""

    devices: list = field(default_factory=lambda: list(DEVICES))
    # options string → (inference µs, peak bytes) for the job's profile; unknown → failure
    results: dict[str, tuple[int, int]] = field(default_factory=dict)
    submitted: list[api_pb.InferenceJob] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)

    def get_device_list(self, config, name="", os="", attributes=None, select=False):
        found = api_pb.DeviceList()
        for device in self.devices:
            if (not name or device.name == name) and all(a in device.attributes for a in attributes or []):
                found.devices.append(device)
        found.total_query_count = len(found.devices)
        return found

    def create_and_upload_model(self, config, path, model_type, name=None, project_id=None,
                                verbose=None, is_directory=False, **_):
        self.uploads.append(path)
        return api_pb.CreateUpdateResponse(id=f"m{len(self.uploads):08d}")

    def get_model(self, config, model_id):
        return api_pb.Model(model_id=model_id, name="uploaded.onnx",
                            model_type=api_pb.MODEL_TYPE_ONNX)

    def create_inference_job(self, config, inference_job_pb, project_id=None):
        self.submitted.append(inference_job_pb)
        return api_pb.CreateUpdateResponse(id=f"j{len(self.submitted)}")

    def _job_pb(self, job_id: str) -> api_pb.InferenceJob:
        return self.submitted[int(job_id[1:]) - 1]

    def get_job(self, config, job_id):
        """Two in-progress states, then DONE (or FAILED when the options are unknown)."""
        submitted = self._job_pb(job_id)
        poll = self.polls[job_id] = self.polls.get(job_id, 0) + 1
        job = api_pb.InferenceJob(inference_job_id=job_id, is_profiling_on=True,
                                  model=submitted.model, device=submitted.device)
        if poll <= len(RUNNING):
            job.job_state = RUNNING[poll - 1]
        elif submitted.options in self.results:
            job.job_state = api_pb.JOB_STATE_DONE
        else:
            job.job_state = api_pb.JOB_STATE_FAILED
            job.failure_reason = f"Unsupported option: {submitted.options}"
        return api_pb.Job(inference_job=job)

    def get_job_results(self, config, job_id):
        inference_us, peak = self.results[self._job_pb(job_id).options]
        return api_pb.JobResult(inference_job_result=api_pb.InferenceJobResult(
            inference_job_id=job_id, detail=profile_detail(inference_us, peak, npu=120, cpu=2)))


def write_client_ini(path: Path) -> Path:
    path.write_text("[api]\napi_token = blah\napi_url = https://invalid_domain\n"
                    "web_url = https://invalid_domain\nverbose = False\n")
    return path


@pytest.fixture
def fake_hub(monkeypatch, tmp_path) -> FakeHub:
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(write_client_ini(tmp_path / "client.ini")))
    hub = FakeHub()
    for name in ("get_device_list", "create_and_upload_model", "get_model",
                 "create_inference_job", "get_job", "get_job_results"):
        monkeypatch.setattr(f"qai_hub.client.api.{name}", getattr(hub, name))
    return hub
