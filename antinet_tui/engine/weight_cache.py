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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from antinet_tui.engine.memory import layout, read_into_buffer, views

FORMAT_VERSION = 4  # bump when the prepared layout changes


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
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry_dir(digest)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            index, size = layout(weights)
            with open(tmp / "weights.bin", "wb") as f:
                for (_, _, _, offset), arr in zip(index, weights.values()):
                    f.write(b"\0" * (offset - f.tell()))
                    f.write(np.ascontiguousarray(arr).data)
            manifest = {"format": FORMAT_VERSION, "sha256": digest, "source": str(source.resolve()),
                        "size": size, "tensors": index, "meta": meta}
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
            self._remove_entries_for(source, keep=tmp)
            try:
                os.replace(tmp, final)
            except OSError:  # another process stored the same entry first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

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
