"""A writer killed during the first cache write leaves its temp folder: the next start
removes it, but never the temp folder of a writer that is still alive (case 4); the
cache's size is shown by `locate`, which can also clear it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from antinet_tui.engine.weight_cache import TEMP_PREFIX, WeightCache

WRITER = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    from pathlib import Path
    from antinet_tui.engine import weight_cache
    calls = []
    real = np.ascontiguousarray

    def halfway(arr):  # the second tensor: the first is on disk, the entry is half written
        calls.append(1)
        if len(calls) == 2:
            if sys.argv[2] == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            print("writing", flush=True)
            time.sleep(600)
        return real(arr)

    weight_cache.np.ascontiguousarray = halfway
    weights = {name: np.ones(250_000, dtype=np.float32) for name in ("a", "b", "c")}
    weight_cache.WeightCache(Path(sys.argv[1])).store("f" * 64, Path(sys.argv[1]) / "src.gguf", weights, {})
""")


def temps(root):
    return sorted(p.name for p in root.glob(TEMP_PREFIX + "*"))


def test_a_killed_writers_temp_is_removed_at_the_next_start_a_live_ones_is_not(tmp_path):
    root = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", WRITER, str(root), "die"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    [abandoned] = temps(root)
    live = subprocess.Popen([sys.executable, "-c", WRITER, str(root), "pause"], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline() == "writing\n"
        [live_temp] = [name for name in temps(root) if name != abandoned]
        assert WeightCache(root).load("0" * 64) is None  # the next start
        assert temps(root) == [live_temp]  # the abandoned one went; the one being written stays
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait(timeout=10)
    WeightCache(root).load("0" * 64)
    assert temps(root) == []


def test_locate_shows_the_cache_size_and_clears_it(tiny_model, tmp_path):
    env = {**os.environ, "ANTINET_CACHE_DIR": str(tmp_path / "cache")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "antinet_tui", *args], capture_output=True, text=True, env=env)

    assert cli("run", "hi", "--model", str(tiny_model), "--max-new-tokens", "1", "--no-log").returncode == 0
    size, entries = WeightCache(tmp_path / "cache").usage()
    assert entries == 1 and size > 10_000
    line = next(x for x in cli("locate").stdout.splitlines() if x.startswith("weights cache"))
    assert f"{tmp_path / 'cache'} ({size / 1e3:,.0f} kB in 1 entries; `antinet-tui locate --clear-cache`" in line
    cleared = cli("locate", "--clear-cache")
    assert cleared.returncode == 0 and f"{size / 1e3:,.0f} kB freed" in cleared.stdout
    assert WeightCache(tmp_path / "cache").usage() == (0, 0)
    assert "(0 kB in 0 entries)" in cleared.stdout


def test_clearing_spares_a_temp_folder_being_written_in_a_sub_cache(tmp_path):
    """The onnx decoders are cached in a subfolder with the same writer locks: clearing
    the cache empties it too, but never under a live writer."""
    root = tmp_path / "cache"
    sub = root / "onnx"
    live = subprocess.Popen([sys.executable, "-c", WRITER, str(sub), "pause"], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline() == "writing\n"
        (sub / "entry-v2").mkdir()
        (sub / "entry-v2" / "manifest.json").write_text("{}")
        (sub / "entry-v2" / "model.onnx").write_bytes(b"x" * 5000)
        size, entries = WeightCache(root).usage()
        assert entries == 1 and size > 5000
        WeightCache(root).clear()
        assert not (sub / "entry-v2").exists() and len(temps(sub)) == 1  # the live writer's temp stays
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait(timeout=10)
    WeightCache(root).clear()
    assert temps(sub) == []
