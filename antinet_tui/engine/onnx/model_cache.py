"""Built ONNX decoders, cached like the prepared weights (see weight_cache.py).

An entry is a folder `<sha256 of the GGUF>-<variant>-v<format>` under
`<cache dir>/onnx/`: `model.onnx` with its weights in `model.onnx.data` (external data:
ONNX Runtime maps it instead of copying it, which keeps the resident size down), and a
manifest with the model's metadata (config, tokenizer, names), so a second launch never
opens the GGUF, plus each file's size and SHA-256. A load checks them before trusting
the files (~0.1 s): a truncated or altered entry is rebuilt. Entries are written to a
temp folder and renamed into place, under the same writer lock as the weight cache's, so
a load clears temp folders a killed writer left behind (see weight_cache.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antinet_tui.engine.weight_cache import WRITER_LOCK, WeightCache, default_cache_dir, write_entry

FORMAT_VERSION = 2  # bump when the graph's layout changes
MODEL_FILE = "model.onnx"


@dataclass
class CachedDecoder:
    model_path: Path
    meta: dict[str, Any]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class DecoderCache:
    def __init__(self, root: Path | None = None):
        self.root = root or default_cache_dir() / "onnx"

    def entry_dir(self, digest: str, variant: str) -> Path:
        return self.root / f"{digest[:32]}-{variant}-v{FORMAT_VERSION}"

    def load(self, digest: str, variant: str) -> CachedDecoder | None:
        """The entry, or None when absent or not exactly what was written."""
        WeightCache(self.root).remove_abandoned()
        entry = self.entry_dir(digest, variant)
        try:
            manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("sha256") != digest or manifest.get("format") != FORMAT_VERSION:
                return None
            for name, (size, sha) in manifest["files"].items():
                if (entry / name).stat().st_size != size or _sha256(entry / name) != sha:
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return CachedDecoder(entry / MODEL_FILE, manifest["meta"])

    def discard(self, digest: str, variant: str) -> None:
        shutil.rmtree(self.entry_dir(digest, variant), ignore_errors=True)

    def store(self, digest: str, variant: str, source: Path, write: Callable[[Path], None],
              meta: dict[str, Any]) -> Path:
        """`write(path)` saves the model at path (with its data file beside it)."""
        def fill(tmp: Path) -> None:
            write(tmp / MODEL_FILE)
            files = {f.name: (f.stat().st_size, _sha256(f)) for f in sorted(tmp.iterdir()) if f.name != WRITER_LOCK}
            manifest = {"format": FORMAT_VERSION, "sha256": digest, "variant": variant,
                        "source": str(source.resolve()), "files": files, "meta": meta}
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
            self._remove_entries_for(source, variant, keep=tmp)

        final = self.entry_dir(digest, variant)
        write_entry(self.root, final, fill)
        return final / MODEL_FILE

    def _remove_entries_for(self, source: Path, variant: str, keep: Path) -> None:
        """Drop entries built from an earlier version of the same file (same variant)."""
        wanted = json.dumps(str(source.resolve()), ensure_ascii=False)
        for manifest in self.root.glob(f"*-{variant}-v*/manifest.json"):
            if manifest.parent == keep:
                continue
            try:
                with open(manifest, encoding="utf-8") as f:
                    head = f.read(4096)  # the source path sits near the front
            except OSError:
                continue
            if wanted in head:
                shutil.rmtree(manifest.parent, ignore_errors=True)
