"""The command line, run for real in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from tiny_models import write_tiny_model

from antinet_tui import __version__
from antinet_tui.runtime.session_log import read_session


def cli(*args, input=None, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "antinet_tui", *map(str, args)], capture_output=True, text=True,
                          input=input, timeout=timeout, env={**os.environ, **(env or {})})


def test_version_and_help():
    assert cli("--version").stdout.strip() == f"antinet-tui {__version__}"
    help_text = cli("--help").stdout
    for word in ("run", "info", "bench", "hub", "locate", "exit codes"):
        assert word in help_text


def test_run_json_reports_text_and_measured_figures(tiny_model, tmp_path):
    log = tmp_path / "session.jsonl"
    done = cli("run", "hello", "--model", tiny_model, "--json", "--temperature", "0", "--max-new-tokens", "5",
               "--mode", "default", "--log-file", log)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["generated_tokens"] == len(record["token_ids"]) == 5 and record["stop_reason"] == "max_tokens"
    assert record["ttft_ms"] > 0 and record["e2e_ms"] >= record["ttft_ms"] and record["decode_tok_s"] > 0
    assert record["mode"]["requested"] == "default" and record["mode"]["settings"]["threads"] >= 1
    assert record["backend"] == "onnx" and record["model"] == str(tiny_model)
    finished = [r for r in read_session(log) if r["kind"] == "finished"]
    assert len(finished) == 1 and finished[0]["text"] == record["text"] and finished[0]["request"]["prompt"] == "hello"


def test_run_reads_the_prompt_from_stdin(tiny_model):
    done = cli("run", "-", "--model", tiny_model, "--raw", "--max-new-tokens", "3", "--json", "--no-log",
               input="abc\n")
    assert done.returncode == 0 and json.loads(done.stdout)["prompt_tokens"] == 4  # a, b, c, newline


@pytest.mark.parametrize("args,message", [
    (["run", "   "], "prompt is only whitespace"),
    (["run", "a\x07b"], "control character U+0007"),
    (["run", "hi", "--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    (["run", "hi", "--max-new-tokens", "100"], "max_new_tokens is 100; the context holds 64"),
    (["run", "x" * 80, "--raw", "--max-new-tokens", "8"], "prompt is 80 tokens; the context holds 64"),
    (["run", "hi", "--mode", "turbo"], "unknown mode 'turbo'; valid modes: burst, sustained_high_performance, "
                                       "default, power_saver"),
    (["run", "hi", "--backend", "tpu"], "unknown backend 'tpu'; available: auto, onnx, numpy, genie"),
    (["run", "hi", "--seed", "-1"], "seed must be an integer from 0 to 2**63-1, got -1"),
    (["run", "hi", "--temperature", "nan"], "temperature must be a finite number >= 0 (0 is greedy), got nan"),
])
def test_bad_input_is_a_clear_message_and_exits_2(tiny_model, args, message):
    done = cli(*args, "--model", tiny_model, "--no-log")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("content,message", [
    (None, "model file not found"),
    (b"not a model", "is not a GGUF model file"),
])
def test_bad_model_files_exit_3(tmp_path, content, message):
    path = tmp_path / "m.gguf"
    if content is not None:
        path.write_bytes(content)
    done = cli("run", "hi", "--model", path, "--no-log")
    assert done.returncode == 3 and message in done.stderr and "Traceback" not in done.stderr


def test_settings_out_of_range_and_unwritable_log_exit_2(tiny_model, tmp_path):
    done = cli("--refresh", "0")  # checked before anything opens
    assert done.returncode == 2 and "refresh_s must be at least 0.1, got 0.0" in done.stderr
    done = cli("run", "hi", "--model", tiny_model, env={"ANTINET_QUEUE_SIZE": "0"})
    assert done.returncode == 2 and "queue_size must be at least 1, got 0" in done.stderr
    done = cli("run", "hi", "--model", tiny_model, env={"ANTINET_TEMPERATURE": "inf"})  # the engine's own rule
    assert done.returncode == 2 and "temperature must be a finite number >= 0 (0 is greedy), got inf" in done.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = cli("run", "hi", "--model", tiny_model, "--log-file", blocker / "log.jsonl")
    assert done.returncode == 2 and "cannot write the session log" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_json_of_a_failed_request_is_still_json():
    from antinet_tui.engine.protocol import ModelInfo
    from antinet_tui.frontends.cli import run_record
    from antinet_tui.runtime.events import Failed
    from antinet_tui.runtime.metrics import RequestMetrics

    metrics = RequestMetrics(queue_wait_ms=0.1, ttft_ms=None, prefill_tok_s=None, decode_tok_s=None, e2e_ms=3.0,
                             prompt_tokens=5, generated_tokens=0, mode="default", stop_reason=None,
                             outcome="failed", backend_profile={"odd": float("nan")})
    info = ModelInfo("m", "/m.gguf", "llama", "numpy", 64)
    record = run_record(Failed(1, "the NPU went away", metrics), info, None)
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["error"] == "the NPU went away" and record["text"] == "" and record["token_ids"] == []
    assert record["backend_profile"]["odd"] is None


def test_bad_config_file_is_named(tmp_path, tiny_model):
    config = tmp_path / "config.toml"
    config.write_text("temperature = 'hot'\n")
    done = cli("run", "hi", "--model", tiny_model, env={"ANTINET_CONFIG": str(config)})
    assert done.returncode == 2 and f"{config}: temperature must be a number, got 'hot'" in done.stderr


@pytest.mark.parametrize("where,message", [
    ("missing.toml", "no such config file (named by $ANTINET_CONFIG)"),
    (".", "cannot read the config file: Is a directory"),
])
def test_a_named_config_file_that_cannot_be_read_is_a_usage_error(tmp_path, tiny_model, where, message):
    config = (tmp_path / where).resolve()
    done = cli("run", "hi", "--model", tiny_model, "--no-log", env={"ANTINET_CONFIG": str(config)})
    assert done.returncode == 2 and f"{config}: {message}" in done.stderr and "Traceback" not in done.stderr


def test_env_and_flags_layer_over_the_config_file(tmp_path, tiny_model):
    config = tmp_path / "config.toml"
    config.write_text("max_new_tokens = 2\ntemperature = 0\n")
    env = {"ANTINET_CONFIG": str(config), "ANTINET_MODEL": str(tiny_model)}
    assert json.loads(cli("run", "hi", "--json", "--no-log", env=env).stdout)["generated_tokens"] == 2
    env["ANTINET_MAX_NEW_TOKENS"] = "3"
    assert json.loads(cli("run", "hi", "--json", "--no-log", env=env).stdout)["generated_tokens"] == 3
    assert json.loads(cli("run", "hi", "--json", "--no-log", "--max-new-tokens", "4", env=env).stdout)[
        "generated_tokens"] == 4


def test_info_json(tiny_model):
    done = cli("info", "--json", "--model", tiny_model, "--no-log")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["backend"] == "onnx" and info["model"]["architecture"] == "llama"
    assert info["backend_reason"].startswith("the default: runs the file's own quantized blocks")
    assert [m["name"] for m in info["modes"]] == ["burst", "sustained_high_performance", "default", "power_saver"]
    assert info["effective"]["requested"] == "default" and info["cores"]["usable"] >= 1
    assert info["memory"]["total_bytes"] > info["memory"]["available_bytes"] > 0


def test_info_says_which_backend_runs_and_why(tmp_path, tiny_model):
    f32 = write_tiny_model(tmp_path / "f32.gguf")  # F32 weights: no exact MatMulNBits form
    fallback = json.loads(cli("info", "--json", "--model", f32, "--no-log").stdout)
    assert fallback["backend"] == "numpy"
    assert fallback["backend_reason"].startswith("fallback: the onnx backend cannot run this file")
    assert "has type F32" in fallback["backend_reason"]
    chosen = cli("info", "--model", tiny_model, "--backend", "numpy", "--no-log")
    assert re.search(r"^backend\s+numpy;.*\n\s+chosen with --backend numpy$", chosen.stdout, re.M)
    refused = cli("run", "hi", "--model", f32, "--backend", "onnx", "--no-log")
    assert refused.returncode == 3 and "has type F32" in refused.stderr and "--backend numpy" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_locate_names_every_place():
    out = cli("locate").stdout
    for name in ("config", "session logs", "diagnostics", "weights cache", "default model"):
        assert re.search(rf"^{name}\s+\S", out, re.M)


def read_some(stream, n: int, timeout: float = 120) -> str:
    """At least n bytes of a child's output, or a failure after timeout (never a hung CI)."""
    got, fd = b"", stream.fileno()
    deadline = time.monotonic() + timeout
    while len(got) < n:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"fewer than {n} bytes of output within {timeout} s"
        chunk = os.read(fd, 4096)
        assert chunk, "the process ended before writing enough"
        got += chunk
    return got.decode(errors="replace")


def test_ctrl_c_cancels_keeps_the_output_and_exits_130(real_model, sigint_raises):
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "run", "Write a very long story about a dragon.",
                             "--max-new-tokens", "400", "--temperature", "0", "--no-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = read_some(proc.stdout, 20)  # the answer has started streaming
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert len(first + rest) > 20 and "cancelled after" in err and "Traceback" not in err


def test_a_reader_that_goes_away_ends_the_run_quietly(real_model):
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "run", "Write a very long story about a dragon.",
                             "--max-new-tokens", "400", "--temperature", "0", "--no-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    read_some(proc.stdout, 5)
    proc.stdout.close()  # what `antinet-tui run ... | head -c 5` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_france_on_the_real_model(real_model):
    done = cli("run", "What is the capital of France? Answer in one sentence.", "--temperature", "0", "--no-log")
    assert done.returncode == 0 and done.stdout == "The capital of France is Paris.\n"


# --- bench ----------------------------------------------------------------------------

def test_bench_end_to_end_in_every_format(roomy_model, tmp_path):
    base = ["bench", "--model", roomy_model, "--modes", "burst,default", "--tokens", "3,6", "--runs", "2",
            "--warmup", "1", "--no-log"]
    as_json = cli(*base, "--format", "json", "--output", tmp_path / "r.json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    runs = report["runs"]
    assert len(runs) == 2 * 2 * 3 and sum(r["warmup"] for r in runs) == 4
    assert all(r["generated_tokens"] == r["token_count"] for r in runs)  # forced counts
    assert [r["mode"] for r in runs[:6]] == ["burst", "default", "default", "burst", "burst", "default"]
    assert {c["tokens"] for c in report["comparisons"]} == {3, 6}
    assert all("2 pairs, too few for a verdict" in c["verdict"] for c in report["comparisons"])
    assert "[12/12]" in as_json.stderr  # progress on stderr

    rows = list(csv.DictReader(io.StringIO(cli(*base, "--format", "csv").stdout)))
    assert len(rows) == 12 and {r["mode"] for r in rows} == {"burst", "default"}
    assert all(int(r["generated_tokens"]) == int(r["token_count"]) for r in rows)

    md = cli(*base).stdout
    table = [line for line in md.splitlines() if line.startswith("| burst |") or line.startswith("| default |")]
    assert len(table) == 4 and all(line.count("|") == 8 for line in table)
    assert "| tokens | comparison |" in md and "under 500 ms target" in md and "conditions: " in md


@pytest.mark.parametrize("args,message", [
    (["--modes", "burst"], "a comparison needs two modes"),
    (["--modes", "burst,turbo"], "unknown mode 'turbo'; valid modes: burst, sustained_high_performance"),
    (["--runs", "0"], "runs must be at least 1"),
    (["--tokens", "8,x"], "--tokens takes comma-separated integers"),
    (["--tokens", "600"], "600 tokens do not fit: the context holds 512 tokens"),
    (["--prompts", "/nonexistent/prompts.txt"], "cannot read the prompts file"),
    (["--output", "/proc/no/such/place/r.md"], "cannot write --output: /proc/no/such/place/r.md: its folder"),
])
def test_bench_bad_input_exits_2(roomy_model, args, message):
    done = cli("bench", "--model", roomy_model, "--no-log", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_bench_compares_backends(roomy_model, tmp_path):
    done = cli("bench", "--model", roomy_model, "--backends", "numpy,onnx", "--tokens", "4", "--runs", "3",
               "--warmup", "1", "--format", "json", "--log-file", tmp_path / "log.jsonl")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["plan"]["backends"] == ["numpy", "onnx"] and report["plan"]["modes"] == ["burst"]
    runs = report["runs"]
    assert [r["backend"] for r in runs] == ["numpy", "onnx", "onnx", "numpy", "numpy", "onnx", "onnx", "numpy"]
    assert all(r["mode"] == r["readback"]["requested"] == "burst" for r in runs)
    (comparison,) = report["comparisons"]
    assert (comparison["mode_a"], comparison["mode_b"]) == ("numpy", "onnx")
    assert comparison["e2e_speedup"]["method"] == "t" and report["interval_methods"] == ["t"]
    assert {c["backend"] for c in report["cells"]} == {"numpy", "onnx"}
    md = cli("bench", "--model", roomy_model, "--backends", "numpy,onnx", "--tokens", "4", "--runs", "2",
             "--warmup", "0", "--no-log").stdout
    assert md.startswith("backends numpy, onnx in mode burst") and "| backend | tokens |" in md
    assert "2 pairs, too few for a verdict" in md and "intervals: t-interval on the log ratios" in md
    assert cli("bench", "--model", roomy_model, "--backends", "numpy,onnx", "--modes", "burst,default",
               "--no-log").stderr.count("runs every backend in one mode") == 1


def test_bench_single_mode_sweep_with_no_compare(roomy_model):
    done = cli("bench", "--model", roomy_model, "--modes", "burst", "--no-compare", "--tokens", "2", "--runs", "1",
               "--warmup", "0", "--format", "json", "--no-log")
    assert done.returncode == 0 and json.loads(done.stdout)["comparisons"] == []
