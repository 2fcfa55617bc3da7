"""CPU performance modes, applied in a child process so the test session's own priority
and affinity stay untouched."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from antinet_tui.engine.cpu_modes import CPU_MODES, CpuModeController, usable_cores
from antinet_tui.engine.errors import UnknownMode

APPLY_ALL = """
import json, psutil
from threadpoolctl import threadpool_info
from antinet_tui.engine.cpu_modes import CpuModeController
c = CpuModeController()
out = []
for name in ["burst", "power_saver", "default", "sustained_high_performance"]:
    r = c.apply(name)
    blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    out.append({"name": name, "effective": r.effective, "settings": r.settings,
                "not_applied": list(r.not_applied), "blas": sorted(blas),
                "nice": psutil.Process().nice(), "cores": psutil.Process().cpu_affinity()})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def applied():
    proc = subprocess.run([sys.executable, "-c", APPLY_ALL], capture_output=True, text=True, check=True)
    return {r["name"]: r for r in json.loads(proc.stdout)}


def test_readback_is_what_the_system_reports(applied):
    for r in applied.values():
        assert r["blas"] == [r["settings"]["threads"]]
        assert r["settings"]["nice"] == r["nice"]
        assert r["settings"]["cores"] == r["cores"]
        # fully applied, or it says which knob was not
        assert (r["effective"] == r["name"]) == (not r["not_applied"])


def test_thread_counts_follow_the_usable_cores(applied):
    n = len(usable_cores())
    assert applied["burst"]["settings"]["threads"] == n
    assert applied["default"]["settings"]["threads"] == max(1, n // 2)
    assert applied["power_saver"]["settings"]["threads"] == 1
    assert len(applied["power_saver"]["cores"]) == 1
    assert len(applied["default"]["cores"]) == n  # widened again after power_saver


@pytest.mark.skipif(not hasattr(psutil.Process(), "cpu_affinity"), reason="no affinity on this OS")
def test_priorities(applied):
    if applied["power_saver"]["not_applied"]:  # started above nice 10 without privilege: says so
        assert any("nice 10 not permitted" in p for p in applied["power_saver"]["not_applied"])
    else:
        assert applied["power_saver"]["nice"] == 10
    if applied["burst"]["not_applied"]:  # unprivileged: says so instead of pretending
        assert any("nice -5 not permitted" in p for p in applied["burst"]["not_applied"])
    else:
        assert applied["burst"]["nice"] == -5


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(UnknownMode) as err:
        CpuModeController().apply("turbo")
    assert str(err.value) == "unknown mode 'turbo'; valid modes: " + ", ".join(m.name for m in CPU_MODES)


FROM_AN_ENGINE_THREAD = """
import json, os, threading
from antinet_tui.engine.cpu_modes import CpuModeController
spinning = threading.Event()
def pool_worker():  # a thread that exists before the mode is applied, like a BLAS/ORT pool's
    spinning.wait()
pool = threading.Thread(target=pool_worker); pool.start()
out = {}
def engine():
    r = CpuModeController().apply("power_saver")
    out["readback"] = {"cores": r.settings["cores"], "nice": r.settings["nice"], "not_applied": list(r.not_applied)}
    out["threads"] = {name: [sorted(os.sched_getaffinity(tid)), os.getpriority(os.PRIO_PROCESS, tid)]
                      for name, tid in (("engine", threading.get_native_id()), ("main", os.getpid()),
                                        ("pool", pool.native_id))}
t = threading.Thread(target=engine); t.start(); t.join(); spinning.set(); pool.join()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority and affinity are Linux's")
def test_a_mode_applied_from_the_engine_thread_reaches_every_thread():
    """On Linux priority and affinity are per thread: setting them for the process id
    alone changed the main thread, and the engine thread went on using every core."""
    out = json.loads(subprocess.run([sys.executable, "-c", FROM_AN_ENGINE_THREAD], capture_output=True, text=True,
                                    check=True).stdout)
    readback = out["readback"]
    for cores, nice in out["threads"].values():
        assert cores == readback["cores"] and len(cores) == 1
        assert nice == readback["nice"]
    assert readback["nice"] == 10 or any("nice 10" in p for p in readback["not_applied"])
