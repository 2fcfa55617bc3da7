"""How often streamed tokens are drawn: as often as the UI thread's CPU budget allows.

The dashboard shares a process (and the GIL) with the engine, so every millisecond the
UI thread spends laying out and painting a growing answer is a millisecond the engine's
Python glue may wait. On the 2-core dev box one redraw costs ~7 ms and 25 redraws a
second cut decode speed by ~25 %; a fast laptop redraws in a fraction of that. So the
interval is not fixed: after each redraw tick the pacer looks at the UI thread's CPU
time over the last tick and lengthens the interval when it is above the budget, and
shortens it when well below (only while an answer streams, so what was learned carries
over to the next answer). The figures the dashboard shows stay the engine's, not
the dashboard's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FASTEST_S = 0.05  # 20 redraws a second: smoother reads no faster
FIRST_S = 0.1  # where a session starts, before it has measured anything
SLOWEST_S = 0.3  # still a live stream: a few words at a time
UI_CPU_BUDGET = 0.05  # share of one core the UI thread may use while an answer streams
# Attached to a remote engine (attach), the dashboard shares no process or GIL with it:
# redraws may take more of the watcher's own CPU, so tokens reach the screen sooner.
ATTACHED_UI_CPU_BUDGET = 0.3
STEP = 1.5  # from FASTEST_S to SLOWEST_S in five ticks


class DrainPacer:
    def __init__(
        self,
        budget: float = UI_CPU_BUDGET,
        fastest: float = FASTEST_S,
        first: float = FIRST_S,
        slowest: float = SLOWEST_S,
        wall_clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ):
        """`cpu_clock` must measure the thread that calls `next_interval` (the UI thread)."""
        self.budget, self.fastest, self.slowest = budget, fastest, slowest
        self.interval = first
        self._wall_clock, self._cpu_clock = wall_clock, cpu_clock
        self._wall, self._cpu = wall_clock(), cpu_clock()

    def resume(self) -> None:
        """Start measuring afresh after an idle spell (which says nothing about redraws)."""
        self._wall, self._cpu = self._wall_clock(), self._cpu_clock()

    def next_interval(self, streaming: bool) -> float:
        """The delay before the next tick; `streaming`: this tick drew tokens."""
        wall, cpu = self._wall_clock(), self._cpu_clock()
        elapsed = wall - self._wall
        duty = (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        if streaming and duty > self.budget:
            self.interval = min(self.slowest, self.interval * STEP)
        elif streaming and duty < self.budget / 2:
            self.interval = max(self.fastest, self.interval / STEP)
        return self.interval
