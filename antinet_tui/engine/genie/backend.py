"""GenieBackend: Qualcomm Genie LLM bundles on the Snapdragon NPU, via a worker process.

The backend side of the pipe (see worker.py for the protocol and why a process). What
the binding gives us, and what we make of it:

- Text chunks, not token ids: one callback may carry several tokens. We re-tokenize each
  chunk with the bundle's own tokenizer.json to count tokens; all tokens of a chunk get
  the chunk's arrival time (when the user could see them). Genie's own counts and rates
  from GetProfile() go into `result.backend_profile` beside ours.
- No prefill boundary: the first token appears when prefill ends, so `prefill_done_ns`
  is the first chunk's arrival.
- A crashed worker, or one silent past a timeout, fails the request with an EngineError
  and is replaced on the next request. Cancel asks Genie to Stop(); a query that cannot
  hear it (still in prefill) is ended by killing the worker after a grace period.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import threading
import time
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from antinet_tui.engine.errors import EngineError, InvalidRequest, UnknownMode
from antinet_tui.engine.genie.bundle import PERF_PROFILES, GenieBundle
from antinet_tui.engine.genie.errors import (
    INSTALL_HINT,
    GenieBundleError,
    GenieContextFailed,
    GenieNotInstalled,
    GenieQueryFailed,
    GenieWorkerCrashed,
    GenieWorkerHung,
    native_failure,
)
from antinet_tui.engine.genie.profile import figures
from antinet_tui.engine.genie.templates import ChatFormat, choose_format
from antinet_tui.engine.genie.worker import WorkerSpec, child_main
from antinet_tui.engine.protocol import (
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ModeInfo,
    ModelInfo,
    ModeReadback,
    OnProgress,
    OnToken,
    StopReason,
)
from antinet_tui.engine.stop_strings import StopStrings
from antinet_tui.engine.validation import validate_request

NO_TOKEN_ID = -1  # a chunk the tokenizer maps to no id still counts as one token
_POLL_SECONDS = 0.05  # how often a waiting request looks at its cancel flag


class _Worker:
    """One worker process and our end of its pipe."""

    def __init__(self, spec: WorkerSpec):
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe(duplex=True)
        self.log_path = Path(spec.log_path)
        self.process = context.Process(
            target=child_main, args=(child_conn, spec), name="antinet-genie-worker", daemon=True
        )
        self.process.start()
        child_conn.close()  # so the child's death reads as EOF here

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self.conn.send(message)
        except OSError as exc:  # BrokenPipeError, ConnectionResetError, ...
            raise self.crashed() from exc

    def receive(self, timeout: float) -> tuple[Any, ...] | None:
        """The next message, or None if none came within `timeout` seconds."""
        try:
            if not self.conn.poll(timeout):
                return None
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            raise self.crashed() from exc

    def crashed(self) -> EngineError:
        self.process.join(timeout=2)
        summary = (f"The Genie worker process died (exit code {self.process.exitcode}); "
                   "it restarts on the next request")
        output = self.output_tail()
        if not output:  # it died before redirecting its output: while being spawned
            summary += (". It died while starting; its error went to this terminal's stderr. "
                        "If you drive GenieBackend from your own script, run that code under "
                        "`if __name__ == \"__main__\":` (the worker is started with "
                        "multiprocessing's spawn, which re-imports the main script)")
        return native_failure(output, GenieWorkerCrashed, summary)

    def output_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-max_chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(("exit",))
        except OSError:
            pass  # already gone: nothing to ask
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()


class GenieBackend:
    """A Genie bundle (its config.json) served by a qai_appbuilder worker process.

    Options: `mode` (initial HTP perf profile; default: the bundle's own),
    `chat_template` (llama3 | chatml | phi3 | llama2 | raw | path to a prompt.json),
    `state_dir` (private config copies and the worker log; default a temp dir removed on
    close), timeouts in seconds, `child_sys_path` / `child_env` (prepended to the
    worker's sys.path / added to its environment) and `debug` (Genie's verbose log).

    The worker is started with multiprocessing's spawn method: a script that uses this
    class must keep its top-level code under `if __name__ == "__main__":`.
    """

    name = "genie"

    def __init__(
        self,
        config_path: str | Path,
        *,
        mode: str | None = None,
        chat_template: str | None = None,
        state_dir: str | Path | None = None,
        load_timeout_s: float = 600.0,
        first_token_timeout_s: float = 120.0,
        token_timeout_s: float = 30.0,
        cancel_grace_s: float = 5.0,
        child_sys_path: tuple[str, ...] | list[str] = (),
        child_env: dict[str, str] | None = None,
        debug: bool = False,
    ):
        if mode is not None and mode not in PERF_PROFILES:
            raise UnknownMode(mode, tuple(PERF_PROFILES))
        # spawn's resource tracker passes sys.stderr's descriptor to its process when it
        # first starts. Under the dashboard Textual has replaced sys.stderr and starting
        # it fails ("bad value(s) in fds_to_keep"), so start it now, before any UI runs.
        resource_tracker.ensure_running()
        self.config_path = Path(config_path)
        self._mode = mode  # None: the bundle's perf_profile, untouched
        self._chat_template = chat_template
        self._given_state_dir = Path(state_dir) if state_dir else None
        self._state_dir: Path | None = None
        self._load_timeout = load_timeout_s
        self._first_token_timeout = first_token_timeout_s
        self._token_timeout = token_timeout_s
        self._cancel_grace = cancel_grace_s
        self._child_sys_path = tuple(str(p) for p in child_sys_path)
        self._child_env = dict(child_env or {})
        self._debug = debug
        self._bundle: GenieBundle | None = None
        self._tokenizer: Tokenizer | None = None
        self._chat_format: ChatFormat | None = None
        self._worker: _Worker | None = None
        self._ready: dict[str, Any] = {}  # the worker's "ready" report
        self._readback: ModeReadback | None = None
        self._model_info: ModelInfo | None = None

    # -- loading ---------------------------------------------------------------------

    def load(self, on_progress: OnProgress | None = None) -> ModelInfo:
        progress = on_progress or (lambda fraction, what: None)
        started = time.perf_counter()
        progress(0.0, "checking the Genie bundle")
        self._bundle = GenieBundle.open(self.config_path)
        try:
            self._tokenizer = Tokenizer.from_file(str(self._bundle.tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise GenieBundleError(
                f"tokenizer {self._bundle.tokenizer_path} is not a tokenizer.json the "
                f"Hugging Face tokenizers library can read: {exc}"
            ) from exc
        self._chat_format = choose_format(
            self._chat_template, self._bundle.config_path.parent, self._bundle.tokenizer_path
        )
        if self._given_state_dir:
            self._state_dir = self._given_state_dir
        elif self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="antinet-genie-"))
        progress(0.2, "loading the model onto the NPU (Genie worker)")
        self._stop_worker()  # a second load() replaces the first worker
        self._start_worker()
        self._readback = self._read_back(self._mode or self._readback_effective(), 0.0)
        bundle = self._bundle
        self._model_info = ModelInfo(
            name=bundle.config_path.parent.name,
            path=str(bundle.config_path),
            architecture=f"genie {bundle.config['dialog'].get('type', 'basic')}",
            backend=self.name,
            context_length=bundle.context_size,
            weights_bytes=sum(b.stat().st_size for b in bundle.ctx_bins),
            load_seconds=time.perf_counter() - started,
            details={
                "context_binaries": len(bundle.ctx_bins),
                "tokenizer": str(bundle.tokenizer_path),
                "chat_template": self._chat_format.name if self._chat_format else "none (raw)",
                "bundled_perf_profile": bundle.bundled_perf_profile,
                "state_dir": str(self._state_dir),
                "worker_pid": self._worker.process.pid if self._worker else None,
            },
        )
        progress(1.0, "ready")
        return self._model_info

    def _start_worker(self) -> float:
        """Start a worker on a fresh private config; returns the seconds it took."""
        assert self._bundle is not None and self._state_dir is not None
        started = time.perf_counter()
        config = self._bundle.write_private(self._mode, self._state_dir)
        log_path = self._state_dir / "worker-output.log"
        log_path.unlink(missing_ok=True)  # an old worker's lines must not explain this one
        worker = _Worker(WorkerSpec(
            config_path=str(config),
            log_path=str(log_path),
            sys_path=self._child_sys_path,
            env=self._child_env,
            debug=self._debug,
        ))
        message = worker.receive(self._load_timeout)
        if message is None:
            worker.kill()
            raise native_failure(
                worker.output_tail(), GenieWorkerHung,
                f"The Genie context did not load within {self._load_timeout:g} s and the worker "
                "was killed (a large bundle may need a longer load_timeout_s)",
            )
        kind = message[0]
        if kind == "load_failed":
            worker.stop()
            _, reason, detail = message
            if reason == "not_installed":
                raise GenieNotInstalled(
                    f"qai_appbuilder, Qualcomm's Python binding for Genie, is not usable in this "
                    f"Python ({detail.strip()}). {INSTALL_HINT}"
                )
            raise native_failure(detail, GenieContextFailed, "Genie could not load the bundle")
        self._worker = worker
        self._ready = message[1]
        return time.perf_counter() - started

    def _readback_effective(self) -> str:
        return self._ready.get("perf_profile") or "default"

    def _read_back(self, requested: str, switch_seconds: float) -> ModeReadback:
        """What the worker found in the config Genie actually loaded."""
        loaded = self._ready.get("perf_profile")
        effective = self._readback_effective()
        not_applied: tuple[str, ...] = ()
        if loaded is None:
            not_applied = ("the loaded HTP config sets no perf_profile: QNN's default applies",)
        elif loaded != requested:
            not_applied = (f"the loaded HTP config says perf_profile={loaded!r}",)
        return ModeReadback(
            requested=requested,
            effective=effective,
            settings={
                "perf_profile": loaded,
                "htp_config": self._ready.get("htp_config"),
                "context_load_seconds": round(self._ready.get("load_seconds", 0.0), 3),
            },
            not_applied=not_applied,
            switch_seconds=switch_seconds,
        )

    # -- protocol ----------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        bundled = self._bundle.bundled_perf_profile if self._bundle else None
        return Capabilities(
            modes=tuple(
                ModeInfo(name, f"HTP perf_profile={name} (re-creates the Genie context): {what}")
                for name, what in PERF_PROFILES.items()
            ),
            default_mode=bundled if bundled in PERF_PROFILES else "default",
        )

    def model_info(self) -> ModelInfo:
        if self._model_info is None:
            raise EngineError("the Genie backend is not loaded yet: call load() first")
        return self._model_info

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(self._encode(self._render(request)))

    def apply_mode(self, mode: str) -> ModeReadback:
        """Re-create the context on a private config carrying `mode`; measure the switch.

        A mode the running context already loaded costs nothing (e.g. an initial
        `--mode burst` on a bundle that ships burst).
        """
        if mode not in PERF_PROFILES:
            raise UnknownMode(mode, tuple(PERF_PROFILES))
        if self._bundle is None:
            raise EngineError("the Genie backend is not loaded yet: call load() first")
        if self._worker is not None and self._ready.get("perf_profile") == mode:
            self._readback = self._read_back(mode, 0.0)  # already loaded with it: no rebuild
            return self._readback
        started = time.perf_counter()
        self._stop_worker()
        previous, self._mode = self._mode, mode
        try:
            self._start_worker()
        except EngineError:
            self._mode = previous  # the next request restarts the worker in the old mode
            raise
        self._readback = self._read_back(mode, time.perf_counter() - started)
        return self._readback

    def current_mode(self) -> ModeReadback | None:
        return self._readback

    def close(self) -> None:
        self._stop_worker()
        if self._state_dir is not None and self._given_state_dir is None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    # -- generation --------------------------------------------------------------------

    def _render(self, request: GenerationRequest) -> str:
        if self._tokenizer is None:
            raise EngineError("the Genie backend is not loaded yet: call load() first")
        if request.chat and self._chat_format is not None:
            return self._chat_format.render_conversation(request.conversation())
        if request.messages:
            raise InvalidRequest("this bundle has no known chat format, so a conversation cannot be rendered; "
                                 "name one with chat_template (llama3, chatml, phi3, llama2 or a prompt.json)")
        return request.prompt

    def _encode(self, text: str) -> list[int]:
        assert self._tokenizer is not None
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def generate(
        self, request: GenerationRequest, on_token: OnToken, cancel: threading.Event
    ) -> GenerationResult:
        prompt = self._render(request)
        prompt_tokens = len(self._encode(prompt))
        context_size = self._bundle.context_size if self._bundle else 0
        validate_request(request, context_size or None, prompt_tokens)
        restart_seconds = None
        if self._worker is not None and not self._worker.process.is_alive():
            self._kill_worker()  # died between requests
        if self._worker is None:
            restart_seconds = self._start_worker()
        worker = self._worker
        assert worker is not None and self._tokenizer is not None  # loaded

        worker.send(("query", prompt, _sampler_params(request)))
        stream = _Stream(request.max_new_tokens, on_token, self._tokenizer, StopStrings(request.stop))
        done: dict[str, Any] | None = None
        stop_sent = False
        cancel_deadline: float | None = None
        while done is None:
            if cancel.is_set() and cancel_deadline is None:
                cancel_deadline = time.monotonic() + self._cancel_grace
                if not stop_sent:
                    worker.send(("stop",))
                    stop_sent = True
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                self._kill_worker()  # still in prefill: Stop() cannot reach it
                break
            message = self._next_message(worker, stream, cancel)
            if message is None:
                continue  # cancel was set while waiting
            if message[0] == "chunk":
                stream.add(message[1], time.perf_counter_ns())
                if stream.ended and not stop_sent:
                    worker.send(("stop",))
                    stop_sent = True
            elif message[0] == "done":
                done = message[1]
                stream.finish(time.perf_counter_ns())  # a held tail that never became a stop string
            elif message[0] == "query_error":
                raise GenieQueryFailed(f"Genie rejected the query: {message[1].strip()}")

        output = done["output"] if done else ""
        event = done["event"] if done else None
        answered = stream.ids or event is not None or cancel.is_set()
        failed = "Failed to get response" in output
        # Genie API 1.13+ ends a query whose reply fills the context with an error, after
        # the text it streamed: that answer stands, ended by the context as on the CPU
        context_filled = failed and bool(stream.ids) and _fills(context_size, prompt_tokens + len(stream.ids))
        if (failed and not context_filled) or (done and not answered):
            raise native_failure(output, GenieQueryFailed, "Genie returned no answer")
        profile: dict[str, Any] = figures(event) if event else {}
        profile.update(perf_profile=self._ready.get("perf_profile"), chunks=stream.chunks)
        if restart_seconds is not None:
            profile["worker_restart_seconds"] = round(restart_seconds, 3)
        not_applied = [name for name, wanted in (("seed", request.seed is not None),
                                                 ("ignore_eos", request.ignore_eos)) if wanted]
        if not_applied:
            profile["not_applied"] = not_applied  # the binding has no way to set these

        generated = len(stream.ids)
        if stream.stops.matched is not None:
            stop_reason = StopReason.STOP_STRING
            profile["stop_string"] = stream.stops.matched
        elif cancel.is_set():
            stop_reason = StopReason.CANCELLED
        elif stream.full:
            stop_reason = StopReason.MAX_TOKENS
        elif context_filled or _fills(context_size, prompt_tokens + generated, _genie_count(event)):
            stop_reason = StopReason.CONTEXT
        else:
            stop_reason = StopReason.EOS
        return GenerationResult(
            text=stream.text,
            token_ids=stream.ids,
            prompt_tokens=prompt_tokens,
            stop_reason=stop_reason,
            prefill_done_ns=stream.times[0] if stream.times else None,  # no token: prefill never ended
            token_times_ns=stream.times,
            backend_profile=profile,
        )

    def _next_message(self, worker: _Worker, stream: _Stream,
                      cancel: threading.Event) -> tuple[Any, ...] | None:
        """The worker's next message; None as soon as cancel is set; kill it if silent."""
        timeout = self._token_timeout if stream.ids else self._first_token_timeout
        deadline = time.monotonic() + timeout
        while True:
            message = worker.receive(_POLL_SECONDS)
            if message is not None:
                return message
            if cancel.is_set():
                return None
            if time.monotonic() > deadline:
                tail = worker.output_tail()
                self._kill_worker()
                count = len(stream.ids)
                where = f"after {count} token{'s' * (count != 1)}" if count else "before the first token"
                raise native_failure(
                    tail, GenieWorkerHung,
                    f"The Genie worker sent nothing for {timeout:g} s ({where}) and was killed; "
                    "it restarts on the next request",
                )

    def _kill_worker(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None


class _Stream:
    """The answer as it arrives: text, token ids (re-tokenized per chunk), stamps. Stop
    strings are the shared filter's (engine/stop_strings.py): text that may begin one is
    held back, and a match ends the answer without any of it shown."""

    def __init__(self, max_tokens: int, on_token: OnToken, tokenizer: Tokenizer, stops: StopStrings):
        self.max_tokens = max_tokens
        self.on_token = on_token
        self.tokenizer = tokenizer
        self.stops = stops
        self.text = ""
        self.ids: list[int] = []
        self.times: list[int] = []
        self.chunks = 0

    @property
    def full(self) -> bool:
        return len(self.ids) >= self.max_tokens

    @property
    def ended(self) -> bool:
        """Nothing more is wanted: the token budget is spent or a stop string matched."""
        return self.full or self.stops.matched is not None

    def add(self, chunk: str, arrived_ns: int) -> None:
        if self.ended or not chunk:
            return  # Genie may emit a little past our stop
        self.chunks += 1
        self._emit(self.stops.push(chunk), arrived_ns)

    def finish(self, arrived_ns: int) -> None:
        """The reply is complete: release what was held back for a stop string that never came."""
        if not self.full:
            self._emit(self.stops.flush(), arrived_ns)

    def _emit(self, chunk: str, arrived_ns: int) -> None:
        if not chunk:
            return
        ids = self.tokenizer.encode(chunk, add_special_tokens=False).ids or [NO_TOKEN_ID]
        room = self.max_tokens - len(self.ids)
        if len(ids) > room:
            ids = ids[:room]
            chunk = self._text_of(chunk, ids)
        self.text += chunk
        self.ids.extend(ids)
        self.times.extend([arrived_ns] * len(ids))
        self.on_token(ids[0], chunk)
        for token_id in ids[1:]:
            self.on_token(token_id, "")


    def _text_of(self, chunk: str, ids: list[int]) -> str:
        """The shortest prefix of `chunk` that encodes to `ids` (decode() can lose spaces)."""
        for end in range(1, len(chunk) + 1):
            if self.tokenizer.encode(chunk[:end], add_special_tokens=False).ids == ids:
                return chunk[:end]
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def _fills(context_size: int, ours: int, genies: int | None = None) -> bool:
    """Does the dialog (prompt and reply) fill the context? Genie's own count when it gave
    one; else ours, from re-tokenizing the streamed text, which may differ from Genie's
    by a few tokens: within 1 % of the size counts as full."""
    if not context_size:
        return False
    if genies is not None:
        return genies >= context_size
    return ours >= context_size - max(4, context_size // 100)


def _genie_count(event: dict[str, Any] | None) -> int | None:
    """Prompt + reply tokens as Genie counted them (its query profile event), if known."""
    try:
        return int(event["num-prompt-tokens"]["value"]) + int(event["num-generated-tokens"]["value"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None


def _sampler_params(request: GenerationRequest) -> tuple[str, str, str, str]:
    """SetParams(max_length, temp, top_k, top_p): the binding takes strings only.

    Greedy is top-k 1, as Qualcomm's own samples do it (the binding cannot set `greedy`).
    """
    if request.temperature <= 0:
        return (str(request.max_new_tokens), "1", "1", "1")
    return (str(request.max_new_tokens), str(request.temperature), str(request.top_k),
            str(request.top_p))
