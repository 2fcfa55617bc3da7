"""The redraw pacer: slower when the UI thread is over its CPU budget while streaming,
faster when well under, unchanged when nothing streams."""

from __future__ import annotations

from antinet_tui.frontends.app.pacing import DrainPacer


class Clocks:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def tick(self, seconds: float, ui_share: float) -> None:
        self.wall += seconds
        self.cpu += seconds * ui_share


def make_pacer(clocks: Clocks) -> DrainPacer:
    return DrainPacer(
        budget=0.05, fastest=0.05, first=0.1, slowest=0.3, wall_clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu
    )


def test_over_budget_while_streaming_slows_down_to_the_slowest():
    clocks = Clocks()
    pacer = make_pacer(clocks)
    intervals = []
    for _ in range(12):
        clocks.tick(pacer.interval, ui_share=0.2)
        intervals.append(pacer.next_interval(streaming=True))
    assert intervals == sorted(intervals) and intervals[-1] == 0.3


def test_well_under_budget_speeds_up_again():
    clocks = Clocks()
    pacer = make_pacer(clocks)
    pacer.interval = 0.3
    for _ in range(12):
        clocks.tick(pacer.interval, ui_share=0.01)
        pacer.next_interval(streaming=True)
    assert pacer.interval == 0.05


def test_idle_ticks_keep_what_was_learned():
    clocks = Clocks()
    pacer = make_pacer(clocks)
    pacer.interval = 0.2
    for share in (0.0, 0.5):
        clocks.tick(0.2, ui_share=share)
        assert pacer.next_interval(streaming=False) == 0.2
