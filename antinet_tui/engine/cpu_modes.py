"""Performance modes on the CPU: real knobs, applied and then read back.

Names follow Qualcomm's HTP profiles so an operator sees the same words on every
backend. On the CPU a mode is a bundle of
  * BLAS threads (threadpoolctl) -- single-stream decode is memory-bound, and more
    threads pull more bandwidth (~24 vs ~40 tok/s for 1 vs 2 threads here);
  * process priority (nice, via psutil) -- raising it needs CAP_SYS_NICE / root;
  * CPU affinity (psutil) -- power_saver keeps the process on one core.
`apply_mode` returns what the system reports afterwards, and names each knob that
could not be set, so a mode is never silently a no-op. On Linux priority and affinity
belong to each thread: they are set on every thread of the process and read back from
the engine's own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy  # noqa: F401  -- loads OpenBLAS, so threadpoolctl can find it to limit
import psutil

from antinet_tui.engine.errors import UnknownMode
from antinet_tui.engine.protocol import ModeInfo, ModeReadback


@dataclass(frozen=True)
class CpuMode:
    name: str
    threads: str  # "all", "half" or "one" of the usable cores
    nice: int
    one_core: bool
    description: str


CPU_MODES = (
    CpuMode("burst", "all", -5, False, "all usable cores, raised priority (nice -5) where permitted"),
    CpuMode("sustained_high_performance", "all", 0, False, "all usable cores, normal priority"),
    CpuMode("default", "half", 0, False, "half the usable cores (at least 1), normal priority"),
    CpuMode("power_saver", "one", 10, True, "1 thread pinned to one core, lowered priority (nice 10)"),
)
DEFAULT_CPU_MODE = "default"


def usable_cores() -> list[int]:
    """Cores this process may run on (respects taskset/cgroup cpusets)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


class CpuModeController:
    """Applies modes; `set_threads(n)` is the backend's thread knob (BLAS's for numpy, a
    session with n intra-op threads for onnx) and returns the count then in effect."""

    def __init__(self, set_threads: Callable[[int], int | None] | None = None) -> None:
        self._set_threads = set_threads or set_blas_threads
        self._cores = usable_cores()  # remembered: power_saver narrows the affinity
        self._process = psutil.Process()
        self._current: ModeReadback | None = None

    @staticmethod
    def modes() -> tuple[ModeInfo, ...]:
        return tuple(ModeInfo(m.name, m.description) for m in CPU_MODES)

    @property
    def current(self) -> ModeReadback | None:
        return self._current

    def apply(self, name: str) -> ModeReadback:
        mode = next((m for m in CPU_MODES if m.name == name), None)
        if mode is None:
            raise UnknownMode(name, [m.name for m in CPU_MODES])
        started = time.perf_counter()
        n_cores = len(self._cores)
        want_threads = {"all": n_cores, "half": max(1, n_cores // 2), "one": 1}[mode.threads]
        want_cores = self._cores[-1:] if mode.one_core else self._cores
        problems: list[str] = []

        threads = self._set_threads(want_threads)
        if threads is None:
            problems.append("threads: no thread pool found to limit")
        elif threads != want_threads:
            problems.append(f"threads: asked for {want_threads}, the engine reports {threads}")

        affinity: list[int] | None
        if _thread_ids() is not None:  # Linux: priority and affinity are per thread
            nice, affinity = self._apply_to_every_thread(mode.nice, want_cores, problems)
        else:
            nice, affinity = self._apply_to_process(mode, want_cores, problems)

        settings = {"threads": threads, "nice": nice, "cores": affinity, "usable_cores": n_cores}
        self._current = ModeReadback(
            requested=name,
            effective=name if not problems else f"{name} (partial)",
            settings=settings,
            not_applied=tuple(problems),
            switch_seconds=time.perf_counter() - started,
        )
        return self._current


    def _apply_to_every_thread(self, nice: int, cores: list[int], problems: list[str]) -> tuple[int, list[int]]:
        """Set nice and affinity on every thread of the process and read them back from
        the calling one (the engine's). On Linux both are per thread: setting them for
        the process id changes the main thread only, and the engine thread and its
        thread pools would keep running on every core at the old priority."""
        refused_nice = refused_cores = None
        for tid in _thread_ids() or []:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            except PermissionError:
                refused_nice = f"priority: nice {nice} not permitted (needs CAP_SYS_NICE or root)"
            except ProcessLookupError:  # the thread ended meanwhile
                pass
            try:
                os.sched_setaffinity(tid, cores)
            except ProcessLookupError:
                pass
            except OSError as exc:
                refused_cores = f"affinity: could not set cores {cores}: {exc}"
        problems += [p for p in (refused_nice, refused_cores) if p]
        me = threading.get_native_id()
        got_nice, got_cores = os.getpriority(os.PRIO_PROCESS, me), sorted(os.sched_getaffinity(me))
        others = [tid for tid in _thread_ids() or [] if _thread_differs(tid, got_nice, got_cores)]
        if others:
            problems.append(f"{len(others)} thread(s) kept another priority or affinity")
        return got_nice, got_cores

    def _apply_to_process(self, mode: CpuMode, cores: list[int], problems: list[str]) -> tuple[int, list[int] | None]:
        try:
            self._process.nice(mode.nice)
        except (psutil.AccessDenied, PermissionError):
            problems.append(f"priority: nice {mode.nice} not permitted (needs CAP_SYS_NICE or root)")
        nice = self._process.nice()
        affinity: list[int] | None = None
        if hasattr(self._process, "cpu_affinity"):
            try:
                self._process.cpu_affinity(cores)
            except (psutil.AccessDenied, PermissionError, OSError) as exc:
                problems.append(f"affinity: could not set cores {cores}: {exc}")
            affinity = self._process.cpu_affinity()
        elif mode.one_core:
            problems.append("affinity: not supported on this OS")
        return nice, affinity


def _thread_ids() -> list[int] | None:
    """Every thread of this process (Linux), or None where threads cannot be listed."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return None


def _thread_differs(tid: int, nice: int, cores: list[int]) -> bool:
    try:
        return os.getpriority(os.PRIO_PROCESS, tid) != nice or sorted(os.sched_getaffinity(tid)) != cores
    except OSError:  # ended meanwhile
        return False


def set_blas_threads(n: int) -> int | None:
    """Limit every loaded BLAS to n threads; return the count BLAS reports afterwards."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    blas = controller.select(user_api="blas")
    if not blas.lib_controllers:
        return None
    # Without a `with` block the limit persists until changed again: that is the point.
    blas.limit(limits=n)
    counts = {lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers}
    return counts.pop() if len(counts) == 1 else min(counts)
