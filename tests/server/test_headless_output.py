"""What `antinet-tui serve --headless` prints: one line on stdout for every request it
answers (generation requests however they end, every refusal: the key, draining, an
unknown route)."""

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
from fakes import wait_until

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
