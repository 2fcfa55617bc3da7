"""One psutil sample of the machine and this process (the dashboard samples it off the UI thread).

Every field the OS may not expose (frequency, load average, temperatures, battery) is
None when absent, so the pane can say "n/a" instead of guessing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import psutil

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Battery:
    percent: float
    plugged_in: bool | None


@dataclass(frozen=True)
class SystemSample:
    per_core_percent: tuple[float, ...]
    cpu_percent: float
    freq_mhz: float | None
    freq_max_mhz: float | None
    memory_used: int
    memory_total: int
    process_rss: int
    process_threads: int
    load_average: tuple[float, float, float] | None
    temperatures_c: tuple[tuple[str, float], ...] | None  # (sensor, hottest reading) pairs
    battery: Battery | None


class SystemFeed(Protocol):
    """Where the dashboard's System pane gets its samples: this machine (SystemSampler) or a
    serving machine's, as they arrive over the wire (runtime.remote.RemoteSystemFeed)."""

    def samples(self, stop: threading.Event, interval: float) -> Iterator[SystemSample]:
        """Samples as they come (blocking; run it in a thread) until `stop` is set."""
        ...


class SystemSampler:
    """Samples psutil. `cpu_percent` is measured since the previous sample, so the first
    call primes the counters here and every later one covers one refresh interval."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        psutil.cpu_percent(percpu=True)

    def sample(self) -> SystemSample:
        per_core = tuple(psutil.cpu_percent(percpu=True))
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            threads = self._process.num_threads()
        freq = cpu_freq()
        return SystemSample(
            per_core_percent=per_core,
            cpu_percent=sum(per_core) / len(per_core) if per_core else 0.0,
            freq_mhz=freq[0] if freq else None,
            freq_max_mhz=freq[1] if freq else None,
            memory_used=memory.total - memory.available,
            memory_total=memory.total,
            process_rss=rss,
            process_threads=threads,
            load_average=load_average(),
            temperatures_c=temperatures(),
            battery=battery_status(),
        )

    def samples(self, stop: threading.Event, interval: float) -> Iterator[SystemSample]:
        """One sample every `interval` seconds until `stop` is set; a sensor that fails once
        is logged and skipped."""
        while not stop.is_set():
            try:
                yield self.sample()
            except (OSError, RuntimeError, psutil.Error) as exc:
                logger.warning("system sample failed: %s", exc)
            stop.wait(interval)


def cpu_freq() -> tuple[float, float | None] | None:
    try:
        freq = psutil.cpu_freq()
    except (AttributeError, NotImplementedError, OSError):
        return None
    if freq is None or not freq.current:
        return None
    return freq.current, freq.max or None


def load_average() -> tuple[float, float, float] | None:
    try:
        return psutil.getloadavg()
    except (AttributeError, OSError):
        return None


def temperatures() -> tuple[tuple[str, float], ...] | None:
    read = getattr(psutil, "sensors_temperatures", None)  # absent on macOS and Windows
    if read is None:
        return None
    try:
        sensors = read()
    except OSError:
        return None
    hottest = tuple(
        (name, max(reading.current for reading in readings)) for name, readings in sensors.items() if readings
    )
    return hottest or None


def battery_status() -> Battery | None:
    read = getattr(psutil, "sensors_battery", None)
    if read is None:
        return None
    try:
        battery = read()
    except OSError:
        return None
    return None if battery is None else Battery(battery.percent, battery.power_plugged)
