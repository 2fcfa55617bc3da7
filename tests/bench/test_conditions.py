import os
import subprocess
import sys
import time

import psutil

from antinet_tui.platform import conditions


def test_a_busy_neighbours_cpu_time_is_counted(tmp_path):
    spinners = max(1, len(os.sched_getaffinity(0)) // 2)
    # neighbours: grandchildren re-parented away from us, each spinning for ~1 s and then
    # writing down the CPU time it used (less than 1 s if it had to share a core)
    spin = "import sys, time\nt = time.time()\nwhile time.time() - t < 1: pass\n" \
           "open(sys.argv[1], 'w').write(str(time.process_time()))"
    reports = [tmp_path / f"spinner{i}" for i in range(spinners)]
    before = conditions.snapshot()
    for report in reports:
        subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{spin}" "{report}" >/dev/null 2>&1 &'], check=True)
    deadline = time.monotonic() + 30
    while not all(r.exists() and r.read_text() for r in reports):  # our own work meanwhile: must not count
        assert time.monotonic() < deadline, "the spinners did not finish"
        sum(range(10_000))
    after = conditions.snapshot()
    spun = sum(float(r.read_text()) for r in reports)
    others = conditions.others_share(before, after) * (after._t - before._t) * psutil.cpu_count()
    # a noisy machine can only add to what other processes used; our own loop adds nothing
    assert others >= 0.8 * spun


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


def test_a_busy_neighbour_raises_a_warning():
    cores = psutil.cpu_count()
    record, warnings = conditions.describe(at(0, 100, 50), at(10, 100 + 3 * cores, 50))  # others: 30 %
    assert record["others_cpu_share"] == 0.3
    assert warnings == ["other processes used 30% of the machine's CPU during the run: figures may be low and noisy"]
