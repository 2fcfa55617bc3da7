import subprocess
import sys
import time

import psutil

from antinet_tui.platform import conditions


def test_a_busy_neighbour_is_noticed_and_our_own_work_is_not():
    before = conditions.snapshot()
    # a neighbour: a grandchild re-parented away from us, spinning for ~1.5 s
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{spin}" >/dev/null 2>&1 &'], check=True)
    end = time.monotonic() + 1.7
    while time.monotonic() < end:  # our own work meanwhile: must not count
        sum(range(10_000))
    record, warnings = conditions.describe(before, conditions.snapshot())
    cores = psutil.cpu_count()
    # one core busy for most of the interval; our own spinning (the other core) not counted
    assert 0.5 / cores < record["others_cpu_share"] < 1.5 / cores
    assert warnings and "other processes used" in warnings[0]
