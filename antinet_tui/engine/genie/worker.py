"""The Genie worker: a child process that owns one qai_appbuilder.GenieContext.

Why a process: the binding holds the GIL for a whole Query (no gil_scoped_release in
its pybind code), so in-process it would freeze every other Python thread, the
dashboard included; and a native crash or hang must not take the app down with it.

Pipe protocol (tuples, first item the kind):
  parent → child  ("query", prompt, (max_length, temp, top_k, top_p))  all strings
                  ("stop",)   ask Genie to abort the running query
                  ("exit",)
  child → parent  ("ready", {"perf_profile", "htp_config", "load_seconds"})
                  ("load_failed", "not_installed" | "native", detail)
                  ("chunk", text)   one callback: may hold several tokens
                  ("done", {"event": last new GenieDialog_query event | None, "output": str})
                  ("query_error", message)   Python exception raised by the binding

The child sees "stop" only inside the Query callback (the binding runs our Python only
there), so a query still in prefill cannot be stopped; the parent kills the process
after a grace period instead. Everything the native code prints goes to a log file, not
the terminal the dashboard draws on; the child sends the new part after each call.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from antinet_tui.engine.genie.bundle import read_back_perf_profile
from antinet_tui.engine.genie.profile import query_events

# Probe text for a half-built context: TokenLength() is 0 when Genie has no dialog.
_PROBE_TEXT = "hello"


@dataclass(frozen=True)
class WorkerSpec:
    config_path: str  # the private config.json to load
    log_path: str  # receives the child's stdout and stderr
    sys_path: tuple[str, ...] = ()  # prepended to sys.path (tests: the fake qai_appbuilder)
    env: dict[str, str] = field(default_factory=dict)  # e.g. ADSP_LIBRARY_PATH
    debug: bool = False  # GenieContext(debug=True): Genie's verbose log into log_path


class _Output:
    """The child's stdout+stderr, redirected at the file-descriptor level to a log file."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        for target in (1, 2):
            os.dup2(fd, target)
        os.close(fd)
        if sys.platform == "win32":
            _point_win32_std_handles_at_fds()
        self._reader = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 read for the child's life

    def new_text(self) -> str:
        """What was printed since the last call."""
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        return self._reader.read()


def _point_win32_std_handles_at_fds() -> None:
    """Native code may write through GetStdHandle(), which dup2 does not change."""
    import ctypes
    import msvcrt

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    for fd, std_handle in ((1, -11), (2, -12)):  # STD_OUTPUT_HANDLE, STD_ERROR_HANDLE
        kernel32.SetStdHandle(std_handle, msvcrt.get_osfhandle(fd))  # type: ignore[attr-defined,unused-ignore]


def child_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of the worker process (multiprocessing, spawn)."""
    output = _Output(spec.log_path)
    os.environ.update(spec.env)
    sys.path[:0] = list(spec.sys_path)
    try:
        context = _create_context(conn, spec, output)
        if context is None:
            return
        while True:
            message = conn.recv()
            if message[0] == "exit":
                return
            if message[0] == "query":
                _run_query(conn, context, message[1], message[2], output)
            # a "stop" that arrives after its query ended needs nothing
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent went away


def _create_context(conn: Connection, spec: WorkerSpec, output: _Output) -> Any | None:
    try:
        qai_appbuilder = importlib.import_module("qai_appbuilder")
    except ImportError as exc:
        conn.send(("load_failed", "not_installed", f"import qai_appbuilder failed: {exc}"))
        return None
    except OSError as exc:  # its __init__ loads libappbuilder.so / libGenie.so on Linux
        conn.send(("load_failed", "native", f"{exc}\n{output.new_text()}"))
        return None
    _default_adsp_library_path(qai_appbuilder)
    started = time.perf_counter()
    try:
        # qai_appbuilder 2.31-2.33 take the config only; `debug` came in 2.34. Without
        # debug, the one-argument call works on every version.
        if spec.debug:
            context = qai_appbuilder.GenieContext(spec.config_path, True)
        else:
            context = qai_appbuilder.GenieContext(spec.config_path)
    except NameError as exc:  # the wrapper imports its extension only if present
        conn.send(("load_failed", "not_installed",
                   f"qai_appbuilder has no Genie extension (geniebuilder): {exc}"))
        return None
    except TypeError as exc:  # a signature we do not know
        version = _binding_version(qai_appbuilder)
        if spec.debug:
            detail = (f"qai_appbuilder {version} has no debug option (GenieContext({spec.config_path!r}, True): "
                      f"{exc}); Genie's debug log needs qai_appbuilder 2.34 or later: run without debug, or "
                      "upgrade it")
        else:
            detail = (f"qai_appbuilder {version}: GenieContext(config) failed: {exc}; antinet-tui drives "
                      "qai_appbuilder 2.31 to 2.34")
        conn.send(("load_failed", "not_installed", detail))
        return None
    except RuntimeError as exc:
        conn.send(("load_failed", "native", f"{exc}\n{output.new_text()}"))
        return None
    # The constructor prints and returns on failure; a half-built context has no dialog.
    token_length = context.TokenLength(_PROBE_TEXT)
    printed = output.new_text()
    if token_length == 0 or "Failed to" in printed:
        conn.send(("load_failed", "native", printed))
        return None
    perf_profile, htp_config = read_back_perf_profile(Path(spec.config_path))
    conn.send(("ready", {
        "perf_profile": perf_profile,
        "htp_config": str(htp_config) if htp_config else None,
        "load_seconds": time.perf_counter() - started,
    }))
    return context


def _binding_version(qai_appbuilder: Any) -> str:
    from importlib import metadata

    for name in ("qai_appbuilder", "qai-appbuilder"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(qai_appbuilder, "__version__", "(version unknown)"))


def _default_adsp_library_path(qai_appbuilder: Any) -> None:
    """On Linux the DSP skel libraries ship inside the package; tell FastRPC where.

    qai_appbuilder's QNNConfig.Config() does this for QNN models, GenieContext does not.
    """
    if not sys.platform.startswith("linux") or "ADSP_LIBRARY_PATH" in os.environ:
        return
    libs = Path(qai_appbuilder.__file__).parent / "libs"
    if libs.is_dir():
        os.environ["ADSP_LIBRARY_PATH"] = str(libs)


def _run_query(conn: Connection, context: Any, prompt: str, params: tuple[str, ...],
               output: _Output) -> None:
    def on_chunk(text: str) -> bool:
        conn.send(("chunk", text))
        if conn.poll() and conn.recv()[0] == "stop":
            context.Stop()
        return True

    try:
        context.SetParams(*params)
        events_before = len(query_events(context.GetProfile()))
        context.Query(prompt, on_chunk)
        events = query_events(context.GetProfile())
    except (TypeError, ValueError, RuntimeError) as exc:
        conn.send(("query_error", f"{type(exc).__name__}: {exc}\n{output.new_text()}"))
        return
    new_event = events[-1] if len(events) > events_before else None
    conn.send(("done", {"event": new_event, "output": output.new_text()}))
