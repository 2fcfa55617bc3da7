"""A Genie model bundle: its config.json, the files it names, and private copies of both.

Genie receives the config as JSON *text*, so relative paths in it resolve against the
process's working directory, not the config's folder. Qualcomm's own tools therefore
rewrite the file references to absolute paths before use (GenieAPIService's
config_fixer, ai-hub-apps' LlmUtils.ps1); we do the same. A perf mode is applied by
writing `perf_profile` into a private copy of the HTP extension config and pointing a
private copy of config.json at it: the user's bundle is never modified.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antinet_tui.engine.errors import ModelNotFound
from antinet_tui.engine.genie.errors import GenieBundleError
from antinet_tui.fileio import write_atomically

# HTP performance profiles Genie's HTP extension config accepts (the strings Qualcomm's
# parser maps); what each does is QNN's vote for the Hexagon clocks and power rails.
PERF_PROFILES: dict[str, str] = {
    "burst": "highest HTP clocks and bus votes, no power saving: fastest, hottest",
    "sustained_high_performance": "high clocks that can be held without thermal throttling",
    "high_performance": "high clocks with some power saving between inferences",
    "balanced": "clocks balanced against power",
    "low_balanced": "below balanced: lower clocks, lower power",
    "high_power_saver": "the fastest of the power-saver votes",
    "power_saver": "low clocks, saves power",
    "low_power_saver": "lower clocks than power_saver",
    "extreme_power_saver": "lowest clocks: slowest, coolest",
    "default": "QNN's default vote",
    "system_settings": "no vote from us: the OS power policy decides",
}

PRIVATE_CONFIG_NAME = "config.json"
PRIVATE_HTP_CONFIG_NAME = "htp_backend_ext_config.json"


def _engines(config: dict[str, Any]) -> list[dict[str, Any]]:
    """dialog.engine is one object, or a list of them (speculative-decoding dialogs)."""
    engine = config.get("dialog", {}).get("engine")
    if isinstance(engine, list):
        return [e for e in engine if isinstance(e, dict)]
    return [engine] if isinstance(engine, dict) else []


def _resolve(reference: str, config_dir: Path) -> Path | None:
    """Find a file the config names.

    First as GenieAPIService's ConfigFixer (quic/ai-engine-direct-helper, config_fixer.h)
    does: a relative path against the bundle folder, then the bare file name inside the
    bundle folder (its last resort, the service's own folder, has no counterpart here).
    Then, our addition, against the working directory: what Genie itself would do with
    the text, and what qai_appbuilder's samples rely on.
    """
    native = reference.replace("\\", os.sep).replace("/", os.sep)
    path = Path(native)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [config_dir / path, config_dir / path.name, Path.cwd() / path]
    return next((c.resolve() for c in candidates if c.exists()), None)


@dataclass(frozen=True)
class GenieBundle:
    config_path: Path  # the user's config.json, absolute
    config: dict[str, Any]  # with every file reference rewritten to an absolute path
    htp_config: dict[str, Any]  # the bundle's HTP extension config ({} if it has none)
    tokenizer_path: Path
    ctx_bins: tuple[Path, ...]

    @classmethod
    def open(cls, config_path: str | Path) -> GenieBundle:
        """Read and check a bundle; every missing file is named in one error."""
        config_path = Path(config_path).expanduser()
        if not config_path.is_file():
            raise ModelNotFound(
                f"Genie config not found: {config_path}. Pass the bundle's config.json "
                "(AI Hub bundles call it genie_config.json)."
            )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GenieBundleError(f"{config_path} is not a readable JSON file: {exc}") from exc
        if not isinstance(config, dict) or not isinstance(config.get("dialog"), dict):
            raise GenieBundleError(f"{config_path} has no 'dialog' section: not a Genie config.")

        config_path = config_path.resolve()
        config = copy.deepcopy(config)
        config_dir = config_path.parent
        dialog = config["dialog"]
        missing: list[str] = []

        def absolute(reference: Any, what: str) -> Path | None:
            found = _resolve(str(reference), config_dir) if reference else None
            if found is None:
                missing.append(f"{what} {reference!r}" if reference else f"{what} (not set)")
            return found

        tokenizer = dialog.setdefault("tokenizer", {})
        tokenizer_path = absolute(tokenizer.get("path"), "tokenizer")
        tokenizer["path"] = str(tokenizer_path)
        ctx_bins: list[str] = []
        htp_config: dict[str, Any] = {}
        for engine in _engines(config):
            backend = engine.setdefault("backend", {})
            if backend.get("extensions"):
                htp_path = absolute(backend["extensions"], "HTP extension config")
                if htp_path is not None:
                    backend["extensions"] = str(htp_path)
                    htp_config = _read_htp_config(htp_path)
            binary = engine.get("model", {}).get("binary", {})
            binary["ctx-bins"] = [str(absolute(b, "context binary")) for b in binary.get("ctx-bins", [])]
            ctx_bins.extend(binary["ctx-bins"])
        if not _engines(config):
            missing.append("dialog.engine (no engine section)")
        elif not ctx_bins:
            missing.append("context binaries (dialog.engine.model.binary.ctx-bins is empty)")
        for ssd_key in ("ssd-q1", "lade"):
            section = dialog.get(ssd_key)
            if isinstance(section, dict) and section.get("forecast-prefix-name"):
                section["forecast-prefix-name"] = _absolute_prefix(
                    section["forecast-prefix-name"], config_dir
                )
        size = dialog.get("context", {}).get("size") if isinstance(dialog.get("context"), dict) else None
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise GenieBundleError(f"{config_path}: dialog.context.size must be a positive integer (tokens), "
                                   f"got {size!r}")
        if missing:
            raise GenieBundleError(
                f"The Genie bundle {config_dir} is incomplete; missing: " + "; ".join(missing)
                + ". Copy the files next to the config (or fix the paths in it)."
            )
        return cls(
            config_path=config_path,
            config=config,
            htp_config=htp_config,
            tokenizer_path=Path(tokenizer["path"]),
            ctx_bins=tuple(Path(b) for b in ctx_bins),
        )

    @property
    def context_size(self) -> int:
        """Tokens the dialog holds (checked by open()); 0 when the config does not say."""
        context = self.config["dialog"].get("context")
        return int(context.get("size", 0)) if isinstance(context, dict) else 0

    @property
    def bundled_perf_profile(self) -> str | None:
        """The perf_profile the user's bundle ships with (None: the key is absent)."""
        return perf_profile_of(self.htp_config)

    def write_private(self, mode: str | None, directory: Path) -> Path:
        """Write config.json + HTP config with `perf_profile = mode` into `directory`.

        `mode=None` keeps the bundle's HTP settings as they are. Returns the private
        config.json path. Files are replaced atomically, so a context being created
        from a previous copy never reads half a file.
        """
        if mode is not None and mode not in PERF_PROFILES:
            raise ValueError(f"unknown perf profile {mode!r}")
        directory.mkdir(parents=True, exist_ok=True)
        htp_config = self.htp_config if mode is None else with_perf_profile(self.htp_config, mode)
        htp_path = directory / PRIVATE_HTP_CONFIG_NAME
        _write_json(htp_path, htp_config)
        config = copy.deepcopy(self.config)
        for engine in _engines(config):
            engine.setdefault("backend", {})["extensions"] = str(htp_path)
        config_path = directory / PRIVATE_CONFIG_NAME
        _write_json(config_path, config)
        return config_path


def _absolute_prefix(prefix: str, config_dir: Path) -> str:
    """SSD's forecast-prefix-name is a folder prefix ending in a separator: keep it so."""
    native = prefix.replace("\\", os.sep).replace("/", os.sep)
    path = Path(native)
    if not path.is_absolute():
        path = config_dir / path if (config_dir / path).exists() else Path.cwd() / path
    return str(path.resolve()) + os.sep


def _read_htp_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GenieBundleError(f"HTP extension config {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise GenieBundleError(f"HTP extension config {path} is not a JSON object.")
    return data


def with_perf_profile(htp_config: dict[str, Any], mode: str) -> dict[str, Any]:
    """A copy of the HTP config with every core's perf_profile set to `mode`.

    AI Hub's template carries devices[].cores[]; a config without them gets one device
    with one core, the minimal shape QNN's HTP config schema accepts.
    """
    result = copy.deepcopy(htp_config)
    devices = result.get("devices")
    if not isinstance(devices, list) or not devices:
        devices = result["devices"] = [{}]
    for device in devices:
        cores = device.get("cores")
        if not isinstance(cores, list) or not cores:
            cores = device["cores"] = [{"core_id": 0}]
        for core in cores:
            core["perf_profile"] = mode
    return result


def perf_profile_of(htp_config: dict[str, Any]) -> str | None:
    """The perf_profile of the first core that sets one."""
    for device in htp_config.get("devices") or []:
        for core in device.get("cores") or []:
            if isinstance(core, dict) and core.get("perf_profile"):
                return str(core["perf_profile"])
    return None


def read_back_perf_profile(config_path: Path) -> tuple[str | None, Path | None]:
    """(perf_profile, HTP config path) as named by a config file on disk right now."""
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    for engine in _engines(config):
        extensions = engine.get("backend", {}).get("extensions")
        if extensions:
            htp_path = Path(extensions)
            return perf_profile_of(_read_htp_config(htp_path)), htp_path
    return None, None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2))
