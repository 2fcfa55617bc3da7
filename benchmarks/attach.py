"""Issue 12's attach figures, on the installed SmolLM2 (benchmarks, not timed tests: run by hand).

    .venv/bin/python benchmarks/attach.py [decode|latency|keys|bytes|all] [--pairs N]

Every part starts a real `antinet-tui serve --headless` process on a free loopback port
(the default model and backend, temperature 0, no session log) and talks to it over
sockets, as a watcher on another machine would (here the same 2 cores, so a watcher's
own work competes with the server: the figures are an upper bound on its cost).

decode   Server decode tok/s of one chat request (96 tokens, greedy: the same tokens every
         run) with three watchers attached (three RemoteClients reading the event stream,
         connected before and closed after each run) ÷ with none, read from the reply's
         own `timings`. Pairs interleaved (order alternating), a warm-up pair discarded;
         each pair's ratio and the median.
latency  Engine token → watcher's screen: the attached dashboard runs headless under Pilot
         in this process; for every token the time from the server's stamp on the token
         (its `wall`, the same clock on one machine) to the moment the watcher's UI thread
         draws it (the app's drain, right before the frame is laid out). Five served answers;
         median / p95 / max.
keys     Key-to-screen in the watcher: `antinet-tui attach URL` in tmux (120x40), characters
         typed into its prompt one at a time while a served answer streams (and idle, as a
         baseline), `tmux capture-pane` polled until the prompt line shows each.
bytes    The event stream's size: a raw reader of GET /attach/events counts bytes while one
         96-token answer streams, and for 10 s idle (system samples and pings only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from antinet_tui.runtime.metrics import percentile

CLI = str(ROOT / ".venv" / "bin" / "antinet-tui")
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
TOKENS = 96


class Server:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([CLI, "serve", "--headless", "--port", str(self.port), "--no-log",
                                      "--temperature", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.proc.stdout.readline() if ready else ""
            if not line:
                raise SystemExit(f"serve did not become ready: {self.proc.stderr.read()}")
            if "ready: " in line:
                print(line.strip(), file=sys.stderr)
                break
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep its pipe drained

    def ask(self, tokens: int = TOKENS) -> dict:
        response = httpx.post(self.url + "/v1/chat/completions", timeout=300, json={
            "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens, "temperature": 0})
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _summary(name: str, values: list[float], unit: str = "ms") -> str:
    return (f"{name}: median {statistics.median(values):.1f} {unit}, p95 {percentile(sorted(values), 95):.1f} {unit}, "
            f"max {max(values):.1f} {unit} (n={len(values)})")


# -- decode: three watchers vs none --------------------------------------------------------------


def bench_decode(server: Server, pairs: int) -> None:
    from antinet_tui.runtime.remote import RemoteClient

    process = psutil.Process(server.proc.pid)
    cpu: dict[int, list[float]] = {0: [], 3: []}

    def run(watchers: int) -> float:
        clients = [RemoteClient(server.url) for _ in range(watchers)]
        for client in clients:
            client.start()
        try:
            assert all(client.wait_ready(20) for client in clients), "a watcher did not connect"
            before = sum(process.cpu_times()[:2])
            timings = server.ask()["timings"]
            cpu[watchers].append(sum(process.cpu_times()[:2]) - before)
            assert timings["predicted_n"] == TOKENS, timings
            return float(timings["decode_tok_s"])
        finally:
            for client in clients:
                client.shutdown()

    run(0), run(3)  # warm-up pair
    ratios, none_rates, three_rates = [], [], []
    for i in range(pairs):
        if i % 2 == 0:
            none, three = run(0), run(3)
        else:
            three, none = run(3), run(0)
        none_rates.append(none)
        three_rates.append(three)
        ratios.append(three / none)
        print(f"pair {i + 1}: none {none:.1f} tok/s, three watchers {three:.1f} tok/s, ratio {three / none:.3f}",
              file=sys.stderr)
    print(f"decode tok/s, no watcher: median {statistics.median(none_rates):.1f}; three watchers: median "
          f"{statistics.median(three_rates):.1f}")
    none_cpu, three_cpu = statistics.median(cpu[0][1:]), statistics.median(cpu[3][1:])
    print(f"server CPU per request (user+system, all its threads): none {none_cpu:.2f} s, three watchers "
          f"{three_cpu:.2f} s (median; ratio {three_cpu / none_cpu:.3f})")
    print(f"three watchers ÷ none: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}–{max(ratios):.3f}, "
          f"{pairs} interleaved pairs, {TOKENS} tokens, target ≥ 0.95)")


# -- latency: engine token -> watcher's screen ------------------------------------------------------


async def _latency(server: Server, answers: int) -> list[float]:
    from antinet_tui.config import Settings
    from antinet_tui.frontends.attach_cli import attached_app
    from antinet_tui.runtime.events import Token

    app = attached_app(server.url, Settings(no_log=True))
    latencies: list[float] = []
    apply = app._apply

    def timed_apply(events):
        now = time.time()
        latencies.extend((now - e.wall) * 1000 for e in events if isinstance(e, Token))
        apply(events)

    app._apply = timed_apply
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 30
        while app._status.status.link != "live" or app.service.model_info() is None:
            assert time.monotonic() < deadline, "the watcher did not attach"
            await pilot.pause(0.05)
        await asyncio.sleep(1.0)
        for _ in range(answers):
            await asyncio.to_thread(server.ask, 64)
            await asyncio.sleep(0.5)  # the last tokens' drain
    app.service.shutdown()
    return latencies


def bench_latency(server: Server) -> None:
    latencies = asyncio.run(_latency(server, 5))
    print(_summary("engine token → watcher's screen", latencies) + " (target p95 ≤ 150 ms)")


# -- keys: key-to-screen in the watcher ---------------------------------------------------------------


def bench_keys(server: Server, count: int) -> None:
    from dashboard import Tmux, _type_and_time

    tmux = Tmux("antinet-bench-attach-keys", f"{CLI} attach {server.url}")
    stop = threading.Event()

    def serve_answers() -> None:
        while not stop.is_set():
            server.ask(TOKENS)

    try:
        tmux.wait_for("attached live")
        idle = _type_and_time(tmux, count // 2)
        tmux.send("C-u")
        asker = threading.Thread(target=serve_answers, daemon=True)
        asker.start()
        tmux.wait_for("running", timeout=60)
        streaming = _type_and_time(tmux, count)
        stop.set()
        print(_summary("key-to-screen in the watcher, idle", idle))
        print(_summary("key-to-screen in the watcher, while a served answer streams", streaming)
              + " (target p95 ≤ 100 ms)")
    finally:
        stop.set()
        tmux.close()


# -- bytes: the stream's size -------------------------------------------------------------------------


def bench_bytes(server: Server) -> None:
    counted: list[tuple[float, int]] = []  # (time, bytes so far)
    total = 0
    done = threading.Event()

    def read() -> None:
        nonlocal total
        with httpx.stream("GET", server.url + "/attach/events", timeout=None) as response:
            for chunk in response.iter_raw():
                total += len(chunk)
                counted.append((time.perf_counter(), total))
                if done.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not counted:
        time.sleep(0.01)
    snapshot_bytes = total
    time.sleep(0.5)
    before, started = total, time.perf_counter()
    reply = server.ask(TOKENS)
    time.sleep(0.2)  # the last batch
    elapsed, streamed = time.perf_counter() - started, total - before
    tokens = reply["timings"]["predicted_n"]
    idle_before, idle_started = total, time.perf_counter()
    time.sleep(10)
    idle = (total - idle_before) / (time.perf_counter() - idle_started)
    done.set()
    print(f"snapshot on connect: {snapshot_bytes} bytes")
    print(f"while one {tokens}-token answer streams: {streamed} bytes in {elapsed:.2f} s = "
          f"{streamed / elapsed:.0f} bytes/s ({streamed / tokens:.0f} bytes per token, all events and system "
          f"samples included)")
    print(f"idle: {idle:.0f} bytes/s (one system sample a second)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["decode", "latency", "keys", "bytes", "all"])
    parser.add_argument("--pairs", type=int, default=7, help="interleaved pairs for decode (default 7)")
    parser.add_argument("--keys", type=int, default=60, help="characters typed while streaming (default 60)")
    args = parser.parse_args()
    os.environ.setdefault("ANTINET_FORCE_TUI", "1")
    server = Server()
    try:
        if args.what in ("decode", "all"):
            bench_decode(server, args.pairs)
        if args.what in ("latency", "all"):
            bench_latency(server)
        if args.what in ("bytes", "all"):
            bench_bytes(server)
        if args.what in ("keys", "all"):
            bench_keys(server, args.keys)
    finally:
        server.close()


if __name__ == "__main__":
    main()
