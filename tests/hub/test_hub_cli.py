"""`hub devices` and `hub profile` against an offline AI Hub (real qai_hub client code)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import requests

from antinet_tui.exit_codes import Exit
from antinet_tui.frontends import hub_cli
from antinet_tui.hub.profiling import perf_mode_options
from antinet_tui.runtime.session_log import read_session

BURST = "--qnn_options context_htp_performance_mode=BURST"


def hub(*argv: str) -> int:
    """Parse as the main CLI will (a `hub` subparser), then run; offline, polls don't wait."""
    parser = argparse.ArgumentParser(prog="antinet-tui")
    hub_cli.add_hub_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["hub", *argv])
    if args.hub_command == "profile":
        args.poll = 0.0
    return hub_cli.run_hub(args)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0" * 64)
    return path


def test_devices_filtered_by_name_os_and_chipset(fake_hub, capsys):
    assert hub("devices", "--name", "x elite", "--os", "windows") == 0
    out = capsys.readouterr().out
    assert "Snapdragon X Elite CRD" in out and "qualcomm-snapdragon-x-elite" in out
    assert "Galaxy" not in out

    assert hub("devices", "--chipset", "qualcomm-snapdragon-8gen3", "--json") == 0
    [device] = json.loads(capsys.readouterr().out)
    assert device["name"] == "Samsung Galaxy S24" and device["os"] == "14"

    assert hub("devices", "--os-version", "11") == 0
    assert "Galaxy" not in capsys.readouterr().out


def test_profile_compares_modes_and_logs_the_run(fake_hub, model_file, tmp_path, capsys):
    fake_hub.results = {BURST: (3652, 166711296), "": (5950, 168000000)}
    log = tmp_path / "session.jsonl"

    code = hub("profile", str(model_file), "--device", "Snapdragon X Elite CRD",
               "--modes", "burst,default", "--log-file", str(log))

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [job.options for job in fake_hub.submitted] == [BURST, ""]
    assert all(job.is_profiling_on for job in fake_hub.submitted)
    assert len(fake_hub.uploads) == 1  # uploaded once, profiled per mode
    lines = captured.out.splitlines()
    assert lines[0].split()[:2] == ["MODE", "JOB"]
    assert "3.652 ms" in lines[1] and "159.0 MiB" in lines[1] and "120/0/2" in lines[1]
    assert lines[1].endswith("1.00x") and lines[2].endswith("1.63x")
    assert "PROVISIONING_DEVICE" in captured.err and "SUCCESS" in captured.err  # progress
    [record] = read_session(log)
    assert record["kind"] == "hub_profile"
    assert [p["inference_ms"] for p in record["profiles"]] == [3.652, 5.95]
    assert record["profiles"][0]["compute_units"] == {"NPU": 120, "CPU": 2}
    assert record["time_ratio_vs_first"]["default"] == pytest.approx(5950 / 3652)


def test_a_failed_job_is_reported_with_its_reason(fake_hub, model_file, capsys):
    fake_hub.results = {BURST: (3652, 166711296)}  # the balanced option "is rejected"
    code = hub("profile", str(model_file), "--device", "Snapdragon X Elite CRD",
               "--modes", "burst,balanced", "--no-log")
    out = capsys.readouterr().out
    assert code == Exit.FAILED
    assert "balanced: job j2 FAILED: Unsupported option: --qnn_options " in out
    assert "3.652 ms" in out  # the successful mode is still shown


def test_jobs_still_running_at_the_timeout(fake_hub, model_file, capsys):
    code = hub("profile", str(model_file), "--device", "Snapdragon X Elite CRD",
               "--modes", "burst", "--timeout", "0", "--no-log")
    assert code == Exit.FAILED
    assert "TIMED_OUT" in capsys.readouterr().out


def test_usage_errors_name_the_fix(fake_hub, model_file, capsys):
    assert hub("profile", str(model_file), "--device", "Snapdragon X Elite", "--no-log") == 2
    assert "Similar names: Snapdragon X Elite CRD" in capsys.readouterr().err
    assert hub("profile", str(model_file), "--device", "Samsung Galaxy S24",
               "--modes", "burst,turbo", "--no-log") == 2
    assert "unknown mode(s) turbo" in capsys.readouterr().err
    assert hub("profile", "missing.bin", "--device", "Samsung Galaxy S24", "--no-log") == 2
    assert "No model file 'missing.bin'" in capsys.readouterr().err


def test_an_ai_hub_model_id_is_profiled_with_its_runtime_option(fake_hub, capsys):
    fake_hub.results = {"--onnx_options qnn_htp_performance_mode=burst": (1000, 1)}
    assert hub("profile", "mabc12345", "--device", "Snapdragon X Elite CRD",
               "--modes", "burst", "--no-log") == 0
    assert fake_hub.uploads == []


def test_mode_options_per_runtime():
    assert perf_mode_options("QNN_DLC", "power_saver") == (
        "--qnn_options context_htp_performance_mode=POWER_SAVER")
    assert perf_mode_options("TFLITE", "sustained_high_performance") == (
        "--tflite_options qnn_htp_performance_mode=kHtpSustainedHighPerformance")
    assert perf_mode_options("ONNX", "default") == ""


def test_no_token_configured(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent.ini"))
    assert hub("devices") == 5
    err = capsys.readouterr().err
    assert "not configured" in err and "qai-hub configure --api_token" in err
    assert "Traceback" not in err


def test_token_missing_from_the_file(monkeypatch, tmp_path, capsys):
    (tmp_path / "client.ini").write_text("[api]\napi_url = https://invalid_domain\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "client.ini"))
    assert hub("devices") == 5
    assert "has no API token" in capsys.readouterr().err


def test_qai_hub_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "qai_hub", None)  # makes `import qai_hub` fail
    assert hub("devices") == 5
    assert "pip install qai-hub" in capsys.readouterr().err


def test_no_network(fake_hub, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr("qai_hub.client.api.get_device_list", offline)
    assert hub("devices") == 6
    err = capsys.readouterr().err
    assert "Cannot reach Qualcomm AI Hub" in err and "Traceback" not in err


def test_module_entry_point_and_lazy_import(tmp_path):
    """`python -m …hub_cli` works; importing the CLI module does not import qai_hub."""
    env = {"QAIHUB_CLIENT_INI": str(tmp_path / "absent.ini"), "PATH": ""}
    done = subprocess.run([sys.executable, "-m", "antinet_tui.frontends.hub_cli", "devices"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 5 and "qai-hub configure" in done.stderr
    probe = ("import sys, antinet_tui.frontends.hub_cli, antinet_tui.engine.genie; "
             "print('qai_hub' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60).stdout.strip() == "False"
