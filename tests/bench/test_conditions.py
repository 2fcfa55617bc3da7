import subprocess
import sys
import time

import psutil

from antinet_tui.platform import conditions


def test_a_busy_neighbour_is_noticed_and_our_own_work_is_not():
    cores = psutil.cpu_count()
    spinners = max(1, cores // 2)
    before = conditions.snapshot()
    # neighbours: grandchildren re-parented away from us, each spinning one core for ~1.5 s
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"
    for _ in range(spinners):
        subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{spin}" >/dev/null 2>&1 &'], check=True)
    end = time.monotonic() + 1.7
    while time.monotonic() < end:  # our own work meanwhile: must not count
        sum(range(10_000))
    record, warnings = conditions.describe(before, conditions.snapshot())
    # half the cores busy for most of the interval; our own spinning not counted
    assert 0.5 * spinners / cores < record["others_cpu_share"] < 1.5 * spinners / cores
    assert warnings and "other processes used" in warnings[0]
