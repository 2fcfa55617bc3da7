"""The machine's conditions around a measurement: what could explain odd figures.

Sampled before and after an experiment: CPU frequency, load average, temperatures
(where the OS exposes them), and how much CPU *other* processes used meanwhile -- on a
shared 2-core machine a neighbour's build halves a benchmark without anyone noticing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from antinet_tui.platform.system_stats import cpu_freq, load_average, temperatures

BUSY_NEIGHBOUR_SHARE = 0.10  # other processes using >10 % of all cores: warn


@dataclass(frozen=True)
class Snapshot:
    wall: float
    cpu_mhz: float | None
    cpu_max_mhz: float | None
    load_average: tuple[float, float, float] | None
    temperatures_c: dict[str, float]
    _busy_s: float  # whole-machine busy CPU seconds
    _own_s: float  # this process's CPU seconds
    _t: float

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def snapshot() -> Snapshot:
    freq = cpu_freq()
    load = load_average()
    times = psutil.cpu_times()
    # work done by processes; not idle/iowait, and not guest (Linux counts it in user too)
    busy = sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
    own = psutil.Process().cpu_times()
    return Snapshot(
        wall=time.time(),
        cpu_mhz=round(freq[0], 1) if freq else None,
        cpu_max_mhz=round(freq[1], 1) if freq and freq[1] else None,
        load_average=(round(load[0], 2), round(load[1], 2), round(load[2], 2)) if load else None,
        temperatures_c=dict(temperatures() or ()),
        _busy_s=busy,
        _own_s=own.user + own.system + own.children_user + own.children_system,
        _t=time.monotonic(),
    )


def others_share(before: Snapshot, after: Snapshot) -> float:
    """Share of all cores' time that processes other than this one used in between."""
    elapsed = (after._t - before._t) * (psutil.cpu_count() or 1)
    if elapsed <= 0:
        return 0.0
    others = (after._busy_s - before._busy_s) - (after._own_s - before._own_s)
    return max(0.0, min(1.0, others / elapsed))


def describe(before: Snapshot, after: Snapshot) -> tuple[dict[str, Any], list[str]]:
    """(conditions record, warnings) for an interval."""
    share = others_share(before, after)
    warnings = []
    if share > BUSY_NEIGHBOUR_SHARE:
        warnings.append(f"other processes used {share:.0%} of the machine's CPU during the run: "
                        "figures may be low and noisy")
    if before.cpu_mhz and after.cpu_mhz and after.cpu_mhz < 0.9 * before.cpu_mhz:
        warnings.append(f"CPU frequency fell from {before.cpu_mhz:.0f} to {after.cpu_mhz:.0f} MHz "
                        "(thermal or power throttling?)")
    record = {"before": before.to_dict(), "after": after.to_dict(), "others_cpu_share": round(share, 3),
              "cores": psutil.cpu_count(), "warnings": warnings}
    return record, warnings
