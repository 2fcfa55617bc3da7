"""Settings, layered: defaults < config file (TOML) < ANTINET_* env vars < CLI flags.

The config file lives in the platform's user config dir (`antinet-tui locate` prints
it). Every key is optional; an unknown key or a value of the wrong type is an error
that names the file, the key and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

APP_NAME = "antinet-tui"
ENV_PREFIX = "ANTINET_"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # GGUF path (auto, onnx, numpy) or Genie bundle config.json (genie)
    backend: str = "auto"  # onnx when it can run the file, else numpy
    mode: str | None = None  # None: the backend's default mode
    ctx: int | None = None  # context window cap; None: the model's own
    max_new_tokens: int = 256
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    seed: int | None = None
    system: str | None = None
    raw: bool = False
    log_file: str | None = None  # None: a new file in the user state dir
    no_log: bool = False
    queue_size: int = 8
    max_queue_wait_s: float = 60.0  # a request waiting longer is refused (queue_timeout, HTTP 429)
    slow_call_ms: float = 3000.0
    breaker_window: int = 10
    breaker_min_calls: int = 4
    breaker_wait_s: float = 30.0
    breaker_probes: int = 1
    refresh_s: float = 1.0  # system-stats refresh interval in the dashboard
    theme: str | None = None
    # `serve`
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None  # required to bind a non-loopback address
    watch_key: str | None = None  # `serve`: lets `attach` watch (not control) with this key instead
    drain_timeout_s: float = 30.0  # on SIGTERM, how long requests in flight may take to finish
    max_body_bytes: int = 1 << 20


def config_path() -> Path:
    named = os.environ.get(ENV_PREFIX + "CONFIG")
    if named:
        return Path(named)
    import platformdirs

    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def export_dir() -> Path:
    """Where the dashboard writes session and experiment exports."""
    import platformdirs

    return platformdirs.user_state_path(APP_NAME) / "exports"


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


def _coerce(name: str, kind: type, value: Any, where: str) -> Any:
    """The field's value from a config file's TOML value or an environment variable's text.

    One rule for every source: the value must be of the field's type, never converted
    with a loss (2.7 is not an integer, in the file as in $ANTINET_* and on the command
    line); an integer is a number. Text (an environment variable, a quoted TOML value) is
    parsed as the type; any other TOML value must be of the type as it is."""
    wrong = ConfigError(f"{where}: {name} must be {_TYPE_NAMES[kind]}, got {_describe(value)}")
    if isinstance(value, str) and kind is not str:  # env text (TOML strings for non-text keys too)
        if kind is bool:
            text = value.strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise wrong
        try:
            return int(value.strip()) if kind is int else float(value.strip())
        except ValueError:
            raise wrong from None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(value, bool):  # True is an int to Python, not to an operator
        raise wrong
    if kind is int and isinstance(value, int):
        return value
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise wrong


def _describe(value: Any) -> str:
    kinds = {bool: "true/false", int: "an integer", float: "a number", str: "text", list: "a list", dict: "a table"}
    kind = next((word for t, word in kinds.items() if isinstance(value, t)), type(value).__name__)
    return f"{value!r}" if isinstance(value, str) else f"{value!r} ({kind})"


def _field_types() -> dict[str, type]:
    types: dict[str, type] = {}
    for f in fields(Settings):
        text = str(f.type)
        types[f.name] = bool if "bool" in text else int if "int" in text else float if "float" in text else str
    return types


def load_settings(cli: Mapping[str, Any] | None = None) -> Settings:
    types = _field_types()
    values: dict[str, Any] = {}

    path = config_path()
    data: dict[str, Any] = {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except FileNotFoundError:
        if os.environ.get(ENV_PREFIX + "CONFIG"):  # named explicitly: it must exist
            raise ConfigError(f"{path}: no such config file (named by ${ENV_PREFIX}CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in types:
            raise ConfigError(f"{path}: unknown key {key!r}; valid keys: {', '.join(sorted(types))}")
        values[name] = _coerce(name, types[name], value, str(path))

    for name, kind in types.items():
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, kind, raw, f"${ENV_PREFIX}{name.upper()}")

    for name, value in (cli or {}).items():
        if name in types and value is not None:
            values[name] = value
    settings = replace(Settings(), **values)
    _check_ranges(settings)
    return settings


# (setting, smallest allowed value, inclusive?) for the numbers that have a floor; the
# generation settings are checked by the engine's own request validation
_RANGES = (("queue_size", 1, True), ("max_queue_wait_s", 0, False), ("ctx", 1, True), ("slow_call_ms", 0, False),
           ("breaker_window", 1, True), ("breaker_min_calls", 1, True), ("breaker_wait_s", 0, True),
           ("breaker_probes", 1, True), ("refresh_s", 0.1, True), ("port", 0, True), ("drain_timeout_s", 0, True),
           ("max_body_bytes", 1, True))


def _check_ranges(settings: Settings) -> None:
    from antinet_tui.engine.errors import InvalidRequest  # not for --help
    from antinet_tui.engine.protocol import GenerationRequest
    from antinet_tui.engine.validation import validate_generation

    try:
        validate_generation(GenerationRequest("", max_new_tokens=settings.max_new_tokens,
                                              temperature=settings.temperature, top_k=settings.top_k,
                                              top_p=settings.top_p, seed=settings.seed))
    except InvalidRequest as exc:
        raise ConfigError(str(exc)) from None
    for name, low, inclusive in _RANGES:
        value = getattr(settings, name)
        if value is not None and (value < low if inclusive else value <= low):
            bound = f"at least {low}" if inclusive else f"more than {low}"
            raise ConfigError(f"{name} must be {bound}, got {value}")
    if settings.port > 65535:
        raise ConfigError(f"port must be at most 65535, got {settings.port}")
    if settings.api_key is not None and not settings.api_key.strip():
        raise ConfigError("api_key is empty; set a key or leave it out")
    if settings.watch_key is not None and not settings.watch_key.strip():
        raise ConfigError("watch_key is empty; set a key or leave it out")
    if settings.watch_key is not None and settings.watch_key == settings.api_key:
        raise ConfigError("watch_key must differ from api_key (it gives less: watching, not control)")
