"""What `antinet-tui serve --headless` prints: one line on stdout for every request it
answers (generation requests however they end, every refusal: the key, draining, an
unknown route), one notice on stderr when the session log starts losing records and one
when it writes again, and never more memory or a blocked event loop for a stdout that
does not keep up (the printer drops lines and says how many)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from child_output import ChildOutput
from disks import fill, pad_to_page
from fakes import wait_until

from antinet_tui.frontends.serve_cli import LinePrinter, LogLossNotices
from antinet_tui.runtime.client import LogStatus
from antinet_tui.runtime.session_log import read_session

KEY = "headless-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@dataclass
class Serving:
    proc: subprocess.Popen
    url: str
    out: ChildOutput
    err: ChildOutput

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.out.finish()
        self.err.finish()
        return code


def serve(*args: str) -> Serving:
    proc = subprocess.Popen([sys.executable, "-m", "antinet_tui", "serve", "--headless", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    out, err = ChildOutput(proc.stdout), ChildOutput(proc.stderr)
    url = out.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    out.wait_for(r"^ready: ")
    return Serving(proc, url, out, err)


def send(url: str, method: str, path: str, headers: dict[str, str], body: object = None) -> tuple[str, int]:
    """One request over its own connection: (the client's "host:port", the status)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.connect()
        host, port = connection.sock.getsockname()[:2]
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        response.read()
        return f"{host}:{port}", response.status
    finally:
        connection.close()


def lines_of(lines: list[str], origin: str) -> list[str]:
    return [line for line in lines if f" {origin} " in line]


def test_every_request_answered_is_one_line_refusals_of_the_gates_and_unknown_routes_included(real_model):
    served = serve("--api-key", KEY, "--no-log", "--temperature", "0", "--drain-timeout", "2")
    try:
        no_key = send(served.url, "GET", "/v1/models", {})
        wrong_key = send(served.url, "POST", CHAT, {"Authorization": "Bearer not-it"}, HELLO)
        unknown = send(served.url, "GET", "/v1/nowhere%0A12:00:00%20-%20forged%20line", AUTH)
        not_allowed = send(served.url, "GET", CHAT, AUTH)
        bad_body = send(served.url, "POST", CHAT, AUTH, b"{not json")
        answered = send(served.url, "POST", CHAT, AUTH, HELLO)
        assert [r[1] for r in (no_key, wrong_key, unknown, not_allowed, bad_body, answered)] == [
            401, 401, 404, 405, 400, 200]

        # draining: a long answer holds the drain open, a new request meanwhile gets 503
        held: list[tuple[str, int]] = []
        holder = threading.Thread(target=lambda: held.append(send(served.url, "POST", "/v1/completions", AUTH, {
            "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 1000, "stream": True})))
        holder.start()
        wait_until_generating(served.url)
        served.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (draining := send(served.url, "GET", "/v1/models", AUTH))[1] == 200 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the signal lands (a 200 here prints no line)
        assert draining[1] == 503
        assert served.proc.wait(60) == 0
        holder.join(60)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    out, err = served.out.finish(), served.err.finish()

    expected = {
        no_key: r"^\d\d:\d\d:\d\d - {o} GET /v1/models 401 error invalid_api_key: no API key was sent",
        wrong_key: r"^\d\d:\d\d:\d\d - {o} POST /v1/chat/completions 401 error invalid_api_key: the API key is not",
        unknown: r"^\d\d:\d\d:\d\d - {o} GET /v1/nowhere\\n12:00:00 - forged line 404 error not_found: no route",
        not_allowed: r"^\d\d:\d\d:\d\d - {o} GET /v1/chat/completions 405 error method_not_allowed: GET is not",
        bad_body: r"^\d\d:\d\d:\d\d - {o} POST /v1/chat/completions 400 error invalid_json: ",
        answered: r"^\d\d:\d\d:\d\d #\d+ {o} POST /v1/chat/completions 200 finished tokens \d+\+\d+ ttft \d+ms",
        held[0]: r"^\d\d:\d\d:\d\d #\d+ {o} POST /v1/completions 200 (finished|cancelled) tokens ",
        draining: r"^\d\d:\d\d:\d\d - {o} GET /v1/models 503 rejected draining: the server is shutting down",
    }
    for (origin, _), pattern in expected.items():
        mine = lines_of(out, origin)
        assert len(mine) == 1, (origin, mine)
        assert re.search(pattern.format(o=re.escape(origin)), mine[0]), (pattern, mine[0])
    requests = [line for line in out if " 127.0.0.1:" in line]
    assert len(requests) == len(expected), requests  # one line per request, none besides
    assert not [line for line in out if line.startswith("12:00:00")]  # the client's newline stayed in its line
    assert "Traceback" not in "\n".join(err)


def wait_until_generating(url: str, timeout: float = 60) -> None:
    """Until the engine is generating (/ready's `running`; a probe answered 200 prints nothing)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            connection.request("GET", "/ready", headers=AUTH)
            if json.loads(connection.getresponse().read())["running"] == 1:
                return
        finally:
            connection.close()
        time.sleep(0.05)
    raise AssertionError(f"the engine did not start the held request within {timeout} s")


LOST = r"antinet-tui: error: session log (\S+): records are being lost: (.+)$"
WRITTEN_AGAIN = r"antinet-tui: session log (\S+): records are written again \((\d+) records? lost\)$"


def test_a_full_disk_is_told_once_on_stderr_while_clients_are_answered_and_its_recovery_once(
        tiny_model, small_disk):
    log = small_disk / "session.jsonl"
    served = serve("--model", str(tiny_model), "--log-file", str(log), "--max-new-tokens", "4")
    try:
        warm = send(served.url, "POST", CHAT, {}, HELLO)  # its record written: the log is settled
        served.out.wait_for(rf" {re.escape(warm[0])} POST {CHAT} 200 finished")
        pad_to_page(log, slack=10)  # the next record needs a page the disk will not have
        filler = fill(small_disk)

        refused = [send(served.url, "POST", CHAT, {}, b"{not json") for _ in range(3)]
        answered = send(served.url, "POST", CHAT, {}, HELLO)
        assert [r[1] for r in refused] == [400] * 3 and answered[1] == 200  # answered as ever
        for origin, _ in (*refused, answered):  # and each has its line
            served.out.wait_for(rf" {re.escape(origin)} POST ")
        path, reason = served.err.wait_for(LOST).groups()
        assert path == str(log) and reason == "No space left on device"

        filler.unlink()  # room again: the next record is written, and that is told once too
        kept = send(served.url, "POST", CHAT, {}, {"messages": [{"role": "user", "content": "hi"}], "n": 2})
        assert kept[1] == 400
        again = served.err.wait_for(WRITTEN_AGAIN)
        assert again.group(1) == str(log) and again.group(2) == "4"  # 3 refusals + 1 answer
        assert served.stop() == 7  # served all it was asked, but records were lost: as `run` and `bench` say
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    err = served.err.finish()
    assert len([line for line in err if re.search(LOST, line)]) == 1, err  # not one per lost record
    assert len([line for line in err if re.search(WRITTEN_AGAIN, line)]) == 1, err
    assert "Traceback" not in "\n".join(err)
    assert any(f"the session log {log} lost 4 record(s)" in line for line in err), err
    records = read_session(log)
    assert records.skipped == []  # no half line
    assert [r["origin"] for r in records if r["kind"] == "http_error"] == [kept[0]]


class StuckStream:
    """A stdout whose reader has stalled: write() blocks until released."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.writing = threading.Event()
        self.released = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        assert self.released.wait(60)
        self.text.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return "".join(self.text).splitlines()


class Collected:
    def __init__(self) -> None:
        self.text: list[str] = []

    def write(self, text: str) -> int:
        self.text.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_stdout_that_does_not_keep_up_costs_dropped_lines_not_memory_nor_a_blocked_caller():
    out = StuckStream()
    printer = LinePrinter(out, Collected(), backlog=10)
    printer.put("line 0")
    assert out.writing.wait(10)  # the printer is stuck writing line 0

    def flood() -> None:
        for n in range(1, 1001):
            printer.put(f"line {n}")

    caller = threading.Thread(target=flood)  # the event loop's part
    caller.start()
    caller.join(30)
    assert not caller.is_alive(), "put() waited for the stuck stdout"
    assert printer.backlog == 10  # what waits is bounded, whatever the flood

    out.released.set()  # the reader catches up
    deadline = time.monotonic() + 30
    while len(out.lines()) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    printer.put("line 1001")  # after the gap
    printer.close()
    lines = out.lines()
    assert lines[:11] == [f"line {n}" for n in range(11)]
    assert re.fullmatch(r"\d\d:\d\d:\d\d 990 lines dropped: standard output did not keep up", lines[11])
    assert lines[12:] == ["line 1001"]  # one count for the gap, then lines again


def test_the_notices_go_to_stderr_beside_the_lines():
    out, err = Collected(), Collected()
    told = iter([["the log is losing records"]])
    printer = LinePrinter(out, err, notices=lambda: next(told, []))
    printer.check_notices()
    printer.put("a line")
    printer.close()
    assert "".join(out.text) == "a line\n" and "".join(err.text) == "the log is losing records\n"


def test_log_loss_notices_tell_each_spell_of_losses_once_and_its_end_once():
    statuses = iter([
        LogStatus("/s.jsonl"),
        LogStatus("/s.jsonl", 1, "No space left on device", failing=True),
        LogStatus("/s.jsonl", 5, "No space left on device", failing=True),  # more lost: nothing new to tell
        LogStatus("/s.jsonl", 5, "No space left on device", failing=False),  # written again
        LogStatus("/s.jsonl", 5, "No space left on device", failing=False),
        LogStatus("/s.jsonl", 7, "Input/output error", failing=False),  # lost and written again since last look
    ])
    notices = LogLossNotices(lambda: next(statuses))
    told = [notices() for _ in range(6)]
    assert told == [
        [],
        ["antinet-tui: error: session log /s.jsonl: records are being lost: No space left on device"],
        [],
        ["antinet-tui: session log /s.jsonl: records are written again (5 records lost)"],
        [],
        ["antinet-tui: error: session log /s.jsonl: records are being lost: Input/output error",
         "antinet-tui: session log /s.jsonl: records are written again (2 records lost)"],
    ]


def test_a_client_gone_while_sending_its_body_is_one_line_too(start_server, tiny_model):
    server = start_server(tiny_model)
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as client:
        origin = "{}:{}".format(*client.getsockname()[:2])
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 1000\r\n\r\n{\"messages\": [")  # ... and never the rest
        time.sleep(0.2)
    wait_until(lambda: server.served)
    [told] = server.served
    assert (told.origin, told.method, told.route, told.status, told.outcome) == (
        origin, "POST", CHAT, 499, "disconnected")
