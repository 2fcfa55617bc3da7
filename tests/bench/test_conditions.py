import subprocess
import sys
import time

import psutil

from antinet_tui.platform import conditions


def test_a_busy_neighbour_is_noticed():
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
    # half the cores busy for most of the interval (a noisy machine can only add to it)
    assert record["others_cpu_share"] > 0.5 * spinners / cores
    assert warnings and "other processes used" in warnings[0]


def at(t: float, busy_s: float, own_s: float) -> conditions.Snapshot:
    return conditions.Snapshot(wall=t, cpu_mhz=None, cpu_max_mhz=None, load_average=None, temperatures_c={},
                               _busy_s=busy_s, _own_s=own_s, _t=t)


def test_our_own_cpu_time_is_not_counted_as_a_neighbour():
    cores = psutil.cpu_count()
    # 10 s on every core: 4 s of machine busy time, 3 s of it ours
    record, warnings = conditions.describe(at(0, 100, 50), at(10, 104, 53))
    assert record["others_cpu_share"] == round(1 / (10 * cores), 3)
    record, warnings = conditions.describe(at(0, 100, 50), at(10, 100 + 10 * cores, 50 + 10 * cores))
    assert record["others_cpu_share"] == 0 and not warnings  # all of it ours
