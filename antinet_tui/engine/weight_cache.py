"""A cache of prepared (dequantized, laid-out) weights, so a second launch loads fast.

Opening a GGUF and dequantizing it costs seconds (the 49k-entry vocabulary alone takes
~2 s to parse). The cache keeps the result in the user cache dir: one flat file of the
prepared tensors, read back into a huge-page buffer (see memory.py; a warm read comes
from the OS page cache), and a JSON manifest with the config, the tokenizer metadata
and the tensor index.

Entries are keyed by the SHA-256 of the model file's bytes (~0.06 s for 98 MB), so a
changed model file can never be served stale, whatever its name or timestamps. Entries
are written to a temp folder and renamed into place, so a crash never leaves half an
entry; older entries for the same source path are removed when a new one is written.

A writer killed mid-write leaves its temp folder (hundreds of MB): each writer holds an
exclusive lock (flock) on a file in its temp folder while it writes, and every load
removes the temp folders whose lock it can take (their writer is gone), never one that
another live process is still writing. `antinet-tui locate` shows the cache's size;
`antinet-tui locate --clear-cache` empties it the same safe way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from antinet_tui.engine.memory import layout, read_into_buffer, views

FORMAT_VERSION = 4  # bump when the prepared layout changes
TEMP_PREFIX = ".tmp-"
WRITER_LOCK = ".writer.lock"  # in a temp folder, locked while its writer lives
UNLOCKED_TEMP_AGE_S = 3600  # a temp folder without a lock file (a writer killed before taking it)


def default_cache_dir() -> Path:
    env = os.environ.get("ANTINET_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_cache_path("antinet-tui") / "prepared-weights"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class CachedModel:
    weights: dict[str, np.ndarray]
    meta: dict[str, Any]  # whatever the writer stored: config, vocab, ...
    path: Path


class WeightCache:
    def __init__(self, root: Path | None = None):
        self.root = root or default_cache_dir()

    def entry_dir(self, digest: str) -> Path:
        return self.root / f"{digest[:32]}-v{FORMAT_VERSION}"

    def load(self, digest: str) -> CachedModel | None:
        self.remove_abandoned()
        entry = self.entry_dir(digest)
        try:
            manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("sha256") != digest or manifest.get("format") != FORMAT_VERSION:
                return None
            with open(entry / "weights.bin", "rb") as f:
                buffer = read_into_buffer(f, manifest["size"])
            weights = views(buffer, manifest["tensors"])
        except (OSError, ValueError, KeyError):
            return None  # absent, truncated or unreadable: rebuild
        return CachedModel(weights, manifest["meta"], entry)

    def store(self, digest: str, source: Path, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        def fill(tmp: Path) -> None:
            index, size = layout(weights)
            with open(tmp / "weights.bin", "wb") as f:
                for (_, _, _, offset), arr in zip(index, weights.values()):
                    f.write(b"\0" * (offset - f.tell()))
                    f.write(np.ascontiguousarray(arr).data)
            manifest = {"format": FORMAT_VERSION, "sha256": digest, "source": str(source.resolve()),
                        "size": size, "tensors": index, "meta": meta}
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
            self._remove_entries_for(source, keep=tmp)

        final = self.entry_dir(digest)
        write_entry(self.root, final, fill)
        return final

    def remove_abandoned(self) -> int:
        """Remove temp folders whose writer is gone (see the module's docstring); returns
        the bytes freed. Safe while other processes write: a held lock is left alone."""
        freed = 0
        with suppress(OSError):
            for tmp in self.root.glob(TEMP_PREFIX + "*"):
                freed += _remove_if_abandoned(tmp)
        return freed

    def usage(self) -> tuple[int, int]:
        """(bytes, entries) on disk, abandoned temp folders' bytes included; entries of
        caches kept in subfolders (the onnx decoders') counted with ours."""
        entries = 0
        total = 0
        with suppress(OSError):
            for child in self.root.iterdir():
                if _is_sub_cache(child):
                    size, count = WeightCache(child).usage()
                    total, entries = total + size, entries + count
                    continue
                entries += not child.name.startswith(TEMP_PREFIX) and child.is_dir()
                total += _size(child)
        return total, entries

    def clear(self) -> int:
        """Remove every entry and abandoned temp folder, in subfolder caches too; returns
        the bytes freed. A temp folder another process is writing is left to it."""
        freed = self.remove_abandoned()
        with suppress(OSError):
            for child in self.root.iterdir():
                if _is_sub_cache(child):
                    freed += WeightCache(child).clear()
                elif child.is_dir() and not child.name.startswith(TEMP_PREFIX):
                    size = _size(child)
                    shutil.rmtree(child, ignore_errors=True)
                    freed += size - _size(child)
        return freed

    def _remove_entries_for(self, source: Path, keep: Path) -> None:
        """Drop entries built from an earlier version of the same file."""
        wanted = str(source.resolve())
        for manifest in self.root.glob("*/manifest.json"):
            if manifest.parent == keep:
                continue
            try:
                with open(manifest, encoding="utf-8") as f:
                    # the source path sits near the front; avoid parsing whole vocabularies
                    head = f.read(4096)
            except OSError:
                continue
            if json.dumps(wanted, ensure_ascii=False) in head:
                shutil.rmtree(manifest.parent, ignore_errors=True)


def write_entry(root: Path, final: Path, fill: Callable[[Path], None]) -> None:
    """Publish a cache entry whole: `fill(tmp)` writes its files into a temp folder that
    holds WRITER_LOCK while it is written (so remove_abandoned never takes a live writer's
    folder), then one rename makes it `final`. A corrupt entry at `final` is replaced; if
    another process published the same entry first, ours is dropped."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=root))
    lock = _lock(tmp / WRITER_LOCK)  # held until the folder is renamed or removed
    try:
        fill(tmp)
        (tmp / WRITER_LOCK).unlink()  # the entry carries no lock file; ours stays held until closed
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process stored the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _lock(path: Path) -> int | None:
    """Create and exclusively lock path; the open descriptor (None where flock is missing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # Windows: abandoned temps are recognised by age instead
        os.close(fd)
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _remove_if_abandoned(tmp: Path) -> int:
    try:
        fd = os.open(tmp / WRITER_LOCK, os.O_RDWR)
    except FileNotFoundError:  # no lock: a writer killed between mkdtemp and the lock, or done
        try:
            if time.time() - tmp.stat().st_mtime < UNLOCKED_TEMP_AGE_S:
                return 0
        except OSError:
            return 0
        fd = None
    except OSError:
        return 0
    try:
        if fd is not None:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:
                if time.time() - tmp.stat().st_mtime < UNLOCKED_TEMP_AGE_S:
                    return 0
            except OSError:  # held: its writer is alive
                return 0
        size = _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        return size
    finally:
        if fd is not None:
            os.close(fd)


def _is_sub_cache(path: Path) -> bool:
    """A folder of entries (the onnx decoders'), not an entry (which has a manifest)."""
    return path.is_dir() and not path.name.startswith(TEMP_PREFIX) and not (path / "manifest.json").exists()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
