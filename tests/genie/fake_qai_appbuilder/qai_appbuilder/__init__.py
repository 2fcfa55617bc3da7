"""A fake qai_appbuilder for tests: GenieContext as the real binding behaves.

Modelled on quic/ai-engine-direct-helper's own sources: script/qai_appbuilder/
geniecontext.py (the Python class) and pybind/GenieBuilder.cpp (the native side):

- the constructor takes the config *path* (and, from qai_appbuilder 2.34, `debug`;
  2.31-2.33 take the path only), resolves the files it names against the working
  directory (Genie gets JSON text, not a location), and on any failure prints
  `Failed to ...` to stderr and returns a half-built object instead of raising;
  `TokenLength()` on such an object prints and returns 0;
- `backend.extensions` (the HTP extension config) is optional, as it is to Genie;
- `Query(prompt, callback)` blocks until done, resets the dialog first, calls the
  callback on the calling thread with text chunks that may hold several tokens, ignores
  its return value, and always returns True (failures are only printed). It holds the
  GIL throughout, as the real binding does (no gil_scoped_release): waits are busy
  loops that let no other thread run;
- the dialog holds `dialog.context.size` tokens, prompt and reply together. When the
  reply fills it, Genie API 1.13 and later (newer QAIRT) end the query with an error,
  so the binding prints `Failed to get response from GenieDialog.` after the text it
  already streamed; earlier APIs end the reply quietly;
- `SetParams` takes four strings (TypeError otherwise, ValueError for a non-number
  length) and caps the reply at max_length tokens by calling Stop() itself;
- `Stop()` is safe from another thread or from the callback;
- `GetProfile()` returns JSON whose event list grows: GenieDialog_create, then one
  GenieDialog_query per completed Query, with Genie's metric names and units.

Deviation: Query on a half-built context raises RuntimeError here; the real binding
prints `Failed to reset Genie Dialog.` and then spins forever.

Behaviour knobs (environment, read at construction), all optional:
  FAKE_GENIE_REPLY_TOKENS  tokens in a full reply (12)      FAKE_GENIE_CHUNKS  chunk sizes, cycled ("1,2")
  FAKE_GENIE_PREFILL_S     wait before the first token (0)  FAKE_GENIE_TOKEN_DELAY_S  wait per token (0)
  FAKE_GENIE_HOLD_GIL=0    waits sleep and release the GIL (kinder than the real binding)
  FAKE_GENIE_API_MINOR     Genie API minor version (13): below 13 a full context ends quietly
  FAKE_GENIE_BINDING_VERSION  qai_appbuilder's version (2.34.0): 2.31-2.33 take no `debug`
  FAKE_GENIE_CREATE_ERROR  text printed before the dialog fails to build (e.g. a QNN 14001 line)
Faults for one query, written in its prompt: `[[crash@N]]` (the process dies before reply
token N), `[[hang@N]]` (spins forever holding the GIL), `[[fail]]` (prints Genie's failure
line, answers nothing, returns True).
Waits are scaled by the loaded perf_profile, so modes are measurably different.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from tokenizers import Tokenizer

_SPEED = {  # wait multiplier per HTP perf profile
    "burst": 1.0, "sustained_high_performance": 1.1, "high_performance": 1.2, "default": 1.2,
    "balanced": 1.5, "low_balanced": 1.8, "high_power_saver": 2.0, "power_saver": 2.5,
    "low_power_saver": 3.0, "extreme_power_saver": 4.0, "system_settings": 1.5,
}


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _us(seconds: float) -> int:
    return int(seconds * 1e6)


def _fault_index(prompt: str, kind: str) -> int:
    match = re.search(rf"\[\[{kind}@(\d+)\]\]", prompt)
    return int(match.group(1)) if match else -1


__version__ = os.environ.get("FAKE_GENIE_BINDING_VERSION", "2.34.0")


def _takes_debug() -> bool:
    major, minor = (int(n) for n in __version__.split(".")[:2])
    return (major, minor) >= (2, 34)


class GenieContext:
    def __init__(self, config: str = "None", *args) -> None:
        if args and not _takes_debug():  # the Python wrapper's signature was (self, config)
            raise TypeError(f"GenieContext.__init__() takes 2 positional arguments but {2 + len(args)} were given")
        if len(args) > 1:
            raise TypeError(f"GenieContext.__init__() takes from 1 to 3 positional arguments but {2 + len(args)} "
                            "were given")
        self.config = config
        self.debug = bool(args[0]) if args else False
        self._context_size = 4096
        self._abort = threading.Event()
        self._max_length = 4096
        self._events: list[dict] = []
        self._tokenizer: Tokenizer | None = None
        self._dialog: list[int] | None = None  # token ids in the dialog; None: not built
        self.perf_profile: str | None = None
        self._reply_tokens = int(os.environ.get("FAKE_GENIE_REPLY_TOKENS", "12"))
        self._chunks = [int(n) for n in os.environ.get("FAKE_GENIE_CHUNKS", "1,2").split(",")]
        self._prefill_s = _env_float("FAKE_GENIE_PREFILL_S", 0.0)
        self._token_delay_s = _env_float("FAKE_GENIE_TOKEN_DELAY_S", 0.0)
        self._hold_gil = os.environ.get("FAKE_GENIE_HOLD_GIL", "1") != "0"
        self._api_minor = int(os.environ.get("FAKE_GENIE_API_MINOR", "13"))
        started = time.perf_counter()
        self._build(os.environ.get("FAKE_GENIE_CREATE_ERROR"))
        if self._dialog is not None:
            elapsed = time.perf_counter() - started
            self._events.append({
                "type": "GenieDialog_create", "duration": _us(elapsed),
                "start": _us(started), "stop": _us(started + elapsed),
                "init-time": {"value": _us(elapsed), "unit": "us"},
            })

    def _build(self, create_error: str | None) -> None:
        try:
            text = Path(self.config).read_text(encoding="utf-8")
        except OSError:
            print(f"Failed to open Genie config file: {self.config}", end="", file=sys.stderr)
            text = ""
        try:
            dialog = json.loads(text)["dialog"]
        except (ValueError, KeyError, TypeError):
            print("Failed to create the Genie Dialog config.", file=sys.stderr)
            return
        if create_error:
            print(create_error, file=sys.stderr)
            print("Failed to create the Genie Dialog.", file=sys.stderr)
            return
        engine = dialog.get("engine", {})
        extensions = engine.get("backend", {}).get("extensions")  # optional
        files = [dialog.get("tokenizer", {}).get("path", ""),
                 *([extensions] if extensions is not None else []),
                 *engine.get("model", {}).get("binary", {}).get("ctx-bins", [])]
        if not all(f and Path(f).is_file() for f in files):  # relative → the cwd, as Genie
            print("Failed to create the Genie Dialog.", file=sys.stderr)
            return
        self._context_size = int(dialog.get("context", {}).get("size", 4096))
        if extensions is not None:
            ext = json.loads(Path(extensions).read_text(encoding="utf-8"))
            profiles = {c.get("perf_profile") for d in ext.get("devices", []) for c in d.get("cores", [])}
            self.perf_profile = next(iter(profiles), None)
        if self.perf_profile is not None and self.perf_profile not in _SPEED:
            print(f"[ERROR] invalid perf_profile {self.perf_profile}", file=sys.stderr)
            print("Failed to create the Genie Dialog.", file=sys.stderr)
            return
        self._tokenizer = Tokenizer.from_file(files[0])
        self._dialog = []

    # -- the binding's methods -------------------------------------------------------

    def TokenLength(self, text: str) -> int:
        if self._dialog is None or self._tokenizer is None:
            print("get tokenizer failed, error code: -5", file=sys.stderr)
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def SetParams(self, max_length: str, temp: str, top_k: str, top_p: str) -> bool:
        if not all(isinstance(v, str) for v in (max_length, temp, top_k, top_p)):
            raise TypeError(
                "SetParams(): incompatible function arguments. The following argument types "
                "are supported:\n    1. (self, arg0: str, arg1: str, arg2: str, arg3: str) -> bool"
            )
        self._max_length = int(max_length)  # std::stoi → ValueError on junk
        return True

    def Stop(self) -> bool:
        self._abort.set()
        return True

    def GetProfile(self) -> str:
        if self._dialog is None:
            print("Failed to get the profile data.", file=sys.stderr)
            return ""
        return json.dumps({
            "header": {"header_version": {"major": 0, "minor": 1, "patch": 0},
                       "artifact_type": "GENIE_PROFILE"},
            "metadata": {"timestamp": _us(time.perf_counter())},
            "components": [{"name": "dialog0", "type": "dialog", "events": self._events}],
        })

    def Query(self, prompt: str, callback) -> bool:
        if self._dialog is None:
            print("Failed to reset Genie Dialog.", file=sys.stderr)
            raise RuntimeError("fake qai_appbuilder: the real binding would now spin forever")
        self._dialog = []  # GenieDialog_reset: no state survives between queries
        self._abort.clear()
        crash_at, hang_at = (_fault_index(prompt, kind) for kind in ("crash", "hang"))
        started = time.perf_counter()
        prompt_tokens = self.TokenLength(prompt)
        self._dialog.extend(range(prompt_tokens))
        speed = _SPEED.get(self.perf_profile or "default", 1.2)
        self._wait(self._prefill_s * speed)
        prefill_done = time.perf_counter()
        if "[[fail]]" in prompt:
            print("Failed to get response from GenieDialog.", file=sys.stderr)
            return True
        first_token_at = None
        generated = length_seen = 0
        pending: list[str] = []
        sizes = itertools.cycle(self._chunks)
        chunk_size = next(sizes)
        context_full = False
        for index in range(self._reply_tokens):
            if self._abort.is_set():
                break
            if len(self._dialog) >= self._context_size:
                context_full = True
                break
            if index == crash_at:
                print("fake qai_appbuilder: simulated native crash", file=sys.stderr, flush=True)
                os._exit(134)
            if index == hang_at:
                self._wait(float("inf"), hold_gil=True)
            self._wait(self._token_delay_s * speed)
            pending.append(f" w{index}")
            generated += 1
            self._dialog.append(index)
            first_token_at = first_token_at or time.perf_counter()
            if len(pending) == chunk_size:
                chunk = "".join(pending)
                pending, chunk_size = [], next(sizes)
                callback(chunk)
                length_seen += self.TokenLength(chunk)
                if length_seen >= self._max_length:
                    self.Stop()
        if pending:  # the binding flushes what accumulated, aborted or not
            callback("".join(pending))
        if context_full and self._api_minor >= 13:  # the query ends in an error: no profile event
            # (the error line's wording is ours; Genie's varies by version, so nothing matches on it)
            print(f"[ERROR] \"Context limit ({self._context_size}) exceeded.\"", file=sys.stderr)
            print("Failed to get response from GenieDialog.", file=sys.stderr)
            return True
        stopped = time.perf_counter()
        first_token_at = first_token_at or stopped
        generation = max(stopped - first_token_at, 1e-6)
        self._events.append({
            "type": "GenieDialog_query", "duration": _us(stopped - started),
            "start": _us(started), "stop": _us(stopped),
            "num-prompt-tokens": {"value": prompt_tokens, "unit": ""},
            "prompt-processing-rate": {
                "value": prompt_tokens / max(prefill_done - started, 1e-6), "unit": "toks/sec"},
            "time-to-first-token": {"value": _us(first_token_at - started), "unit": "us"},
            "num-generated-tokens": {"value": generated, "unit": ""},
            "token-generation-rate": {"value": max(generated - 1, 0) / generation,
                                      "unit": "toks/sec"},
            "token-generation-time": {"value": _us(generation), "unit": "us"},
        })
        return True

    def _wait(self, seconds: float, hold_gil: bool | None = None) -> None:
        """Sleep, or, with FAKE_GENIE_HOLD_GIL=1, spin without letting other threads run."""
        if seconds <= 0:
            return
        if not (self._hold_gil if hold_gil is None else hold_gil):
            time.sleep(seconds)
            return
        previous = sys.getswitchinterval()
        sys.setswitchinterval(1000.0)  # no thread switch while we spin
        try:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                pass
        finally:
            sys.setswitchinterval(previous)
