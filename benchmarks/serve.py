"""Issue 10's serving figures, on the installed SmolLM2 (benchmarks, not timed tests: run by hand).

    .venv/bin/python benchmarks/serve.py decode [--runs N]
    .venv/bin/python benchmarks/serve.py load [--seconds 300] [--clients 32] [--dashboard]
    .venv/bin/python benchmarks/serve.py refusals [--runs 7] [--requests 2000] [--clients 32]

decode  One request streamed over HTTP to one client vs the same request headless
        (runtime.client.generate), in one server process with one loaded model,
        pairs interleaved (order alternating), a warm-up pair discarded, temperature 0
        (both generate the same tokens). The HTTP client is a separate process (as an
        app on the device would be) that stamps each SSE chunk as it arrives:
        decode tok/s over HTTP = (chunks - 1) / (last chunk - first chunk) at the client;
        headless = the engine's own figure. Also the TTFT added by HTTP: the client's
        time from sending the request to the first token's chunk, minus the engine's
        queue wait + TTFT for that request (from the reply's `timings`).
load    `antinet-tui serve --headless` (or, with --dashboard, the dashboard in tmux) with
        the default queue of 8, and N concurrent streaming clients (one process, asyncio)
        for S seconds. A client that is refused waits what Retry-After says, as the
        openai package does. Reports requests completed, refused by status, lost (no
        whole answer and no proper refusal: must be 0), the server's RSS and threads at
        start and end, and /metrics scrape time (one scrape a second) median/p95.
        With --dashboard: key-to-screen latency in the dashboard's prompt meanwhile
        (tmux send-keys, capture-pane polled, as benchmarks/dashboard.py does).
refusals  What recording the HTTP layer's refusals in the session log costs under a flood
        of bad requests: two `serve --headless`, one writing its session log, one with
        --no-log, each sent N malformed JSON bodies (400) by C concurrent clients per
        run, the two alternating (order alternating), a warm-up pair discarded. Reports
        refusals/s of each, the paired ratio logged / unlogged, the logged server's RSS
        before and after every flood, and the log's records against the requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antinet_tui.runtime.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv" / "bin" / "antinet-tui")
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
DECODE_TOKENS = 128


# -- the client process ---------------------------------------------------------------------


def client_main(url: str) -> None:
    """Read request bodies (JSON lines) on stdin; stream each; print what arrived when."""
    import httpx

    with httpx.Client(base_url=url, timeout=300) as http:
        for line in sys.stdin:
            body = json.loads(line)
            stamps, timings = [], None
            sent = time.perf_counter()
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                for raw in response.iter_lines():
                    if not raw.startswith("data: {"):
                        continue
                    chunk = json.loads(raw[6:])
                    if chunk.get("timings"):
                        timings = chunk["timings"]
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        stamps.append(time.perf_counter())
            print(json.dumps({"sent": sent, "stamps": stamps, "timings": timings}), flush=True)


# -- decode -------------------------------------------------------------------------------


def bench_decode(runs: int) -> None:
    import psutil

    from antinet_tui.config import Settings
    from antinet_tui.frontends.server.runner import ServerThread, bind, build_server
    from antinet_tui.frontends.server.schemas import parse_chat
    from antinet_tui.frontends.wiring import build_service
    from antinet_tui.runtime.client import generate

    settings = Settings(no_log=True, temperature=0.0, slow_call_ms=600_000)
    service = build_service(settings)
    server = build_server(service, settings)
    sock = bind("127.0.0.1", 0)
    thread = ServerThread(server, sock)
    service.start()
    assert service.wait_ready(120), service.load_error()
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": DECODE_TOKENS, "stream": True,
            "temperature": 0}
    request = parse_chat(body, settings).generation
    client = subprocess.Popen([sys.executable, __file__, "client", url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)

    client_process = psutil.Process(client.pid)
    cpu: dict[str, list[float]] = {"http": [], "headless": []}

    def cpu_now() -> float:
        times = client_process.cpu_times()
        return time.process_time() + times.user + times.system

    def over_http() -> tuple[float, float, int]:
        cpu0 = cpu_now()
        client.stdin.write(json.dumps(body) + "\n")
        client.stdin.flush()
        got = json.loads(client.stdout.readline())
        cpu["http"].append(cpu_now() - cpu0)
        stamps, t = got["stamps"], got["timings"]
        # the first chunk carries the first token alone; later chunks may carry several
        rate = (t["predicted_n"] - 1) / (stamps[-1] - stamps[0])
        added_ms = (stamps[0] - got["sent"]) * 1000 - (t["queue_wait_ms"] + t["ttft_ms"])
        engine_rates.append(t["decode_tok_s"])
        return rate, added_ms, len(stamps)

    def headless() -> tuple[float, int]:
        cpu0 = cpu_now()
        outcome = generate(service, request)
        cpu["headless"].append(cpu_now() - cpu0)
        return outcome.metrics.decode_tok_s, outcome.metrics.generated_tokens

    ratios, added, engine_rates = [], [], []
    try:
        for i in range(runs + 1):
            first_http = i % 2 == 0
            if first_http:
                http_rate, added_ms, chunks = over_http()
                plain, tokens = headless()
            else:
                plain, tokens = headless()
                http_rate, added_ms, chunks = over_http()
            label = "warm-up" if i == 0 else f"pair {i}"
            print(f"{label}: http {http_rate:.1f} tok/s ({chunks} chunks), headless {plain:.1f} tok/s ({tokens} "
                  f"tokens), ratio {http_rate / plain:.3f}, TTFT added by HTTP {added_ms:.1f} ms, engine's own "
                  f"decode while serving HTTP {engine_rates[-1]:.1f} tok/s"
                  f"{' (http first)' if first_http else ''}", file=sys.stderr)
            if i:
                ratios.append(http_rate / plain)
                added.append(added_ms)
    finally:
        client.stdin.close()
        client.wait(10)
        thread.drain_and_stop(10)
        service.shutdown()
    print(f"decode over HTTP / headless: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}, n={runs} interleaved pairs)")
    print(f"TTFT added by HTTP: median {statistics.median(added):.1f} ms (range {min(added):.1f}-{max(added):.1f})")
    print(f"CPU per request (server process + client): http median {statistics.median(cpu['http'][1:]):.3f} s, "
          f"headless {statistics.median(cpu['headless'][1:]):.3f} s")


# -- load ---------------------------------------------------------------------------------


async def _load_clients(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    import httpx

    counts: dict[str, int] = {"completed": 0, "lost": 0}
    lost_examples: list[str] = []
    deadline = time.monotonic() + seconds

    async def one_client(i: int, http: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = {"messages": [{"role": "user", "content": f"Client {i}, question {n}: tell me about the sea."}],
                    "max_tokens": max_tokens, "stream": True, "temperature": 0.7}
            try:
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        await response.aread()
                        retry = response.headers.get("Retry-After")
                        if response.status_code in (429, 503) and retry is not None and "error" in response.json():
                            key = f"refused {response.status_code} {response.json()['error']['code']}"
                            counts[key] = counts.get(key, 0) + 1
                            await asyncio.sleep(min(float(retry), max(0.0, deadline - time.monotonic())))
                        else:
                            counts["lost"] += 1
                            lost_examples.append(f"{response.status_code} {response.text[:200]}")
                        continue
                    finish, done = None, False
                    async for line in response.aiter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: {"):
                            chunk = json.loads(line[6:])
                            if chunk.get("choices") and chunk["choices"][0].get("finish_reason"):
                                finish = chunk["choices"][0]["finish_reason"]
                    if done and finish in ("stop", "length"):
                        counts["completed"] += 1
                    else:
                        counts["lost"] += 1
                        lost_examples.append(f"stream ended without a finish (done={done}, finish={finish})")
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                counts["lost"] += 1
                lost_examples.append(repr(exc))

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(one_client(i, http) for i in range(clients)))
    counts["lost_examples"] = lost_examples[:5]  # type: ignore[assignment]
    return counts


def _scrape_loop(url: str, stop: threading.Event, times: list[float]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.wait(1.0):
            started = time.perf_counter()
            response = http.get("/metrics")
            if response.status_code == 200:
                times.append((time.perf_counter() - started) * 1000)


def _process_figures(pid: int) -> tuple[float, int]:
    import psutil

    process = psutil.Process(pid)
    return process.memory_info().rss / 2**20, process.num_threads()


def _server_pid(port: int) -> int:
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise RuntimeError(f"no process listens on port {port}")


def bench_load(seconds: float, clients: int, max_tokens: int, dashboard: bool, port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    args = f"serve --port {port} --no-log"
    tmux = proc = None
    if dashboard:
        from dashboard import Tmux, _summary, _type_and_time  # benchmarks/dashboard.py

        tmux = Tmux("antinet-bench-serve", f"{CLI} {args}")
        tmux.wait_for("ready")
    else:
        proc = subprocess.Popen([CLI, *args.split(), "--headless"], stdout=subprocess.DEVNULL)
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url + "/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pid = _server_pid(port)
    rss0, threads0 = _process_figures(pid)
    stop, scrape_times = threading.Event(), []
    scraper = threading.Thread(target=_scrape_loop, args=(url, stop, scrape_times))
    scraper.start()
    key_times: list[float] = []
    if tmux is not None:
        def type_keys() -> None:
            time.sleep(10)  # the load is on
            while not stop.is_set():
                key_times.extend(_type_and_time(tmux, 20))
        typist = threading.Thread(target=type_keys, daemon=True)
        typist.start()
    started = time.monotonic()
    counts = asyncio.run(_load_clients(url, clients, seconds, max_tokens))
    elapsed = time.monotonic() - started
    stop.set()
    scraper.join()
    time.sleep(1)  # the last requests' threads wind down
    rss1, threads1 = _process_figures(pid)
    metrics = httpx.get(url + "/metrics").text
    if tmux is not None:
        tmux.send("C-q")
        time.sleep(3)
        tmux.close()
    else:
        proc.terminate()
        proc.wait(60)
    examples = counts.pop("lost_examples")
    refused = {k: v for k, v in counts.items() if k.startswith("refused")}
    print(f"load: {clients} streaming clients, {elapsed:.0f} s, queue 8, max_tokens {max_tokens}"
          f"{', dashboard on' if dashboard else ', headless'}")
    print(f"  completed {counts['completed']}, refused {sum(refused.values())} {refused}, lost {counts['lost']}")
    for example in examples:
        print(f"  lost: {example}")
    print(f"  server RSS {rss0:.0f} -> {rss1:.0f} MiB, threads {threads0} -> {threads1}")
    print("  " + _summary_ms("/metrics scrape", scrape_times))
    finished = [line for line in metrics.splitlines() if line.startswith("antinet_requests_total")]
    print("  server's counts: " + ", ".join(finished))
    if key_times:
        print("  " + _summary("key to screen under load", key_times))


# -- refusals -------------------------------------------------------------------------------


async def _flood(url: str, requests: int, clients: int) -> float:
    """Send `requests` malformed bodies over `clients` keep-alive connections; refusals per
    second. Raw sockets, each request in one write: a client that writes the headers and
    the body apart (httpx) meets Nagle's algorithm and delayed ACKs, and measures those
    40 ms waits instead of the server."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = b'{"messages": ['
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    each = requests // clients

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            for _ in range(each):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 400 "), head
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return each * clients / (time.perf_counter() - started)


def _start_headless(port: int, log: str | None) -> subprocess.Popen:
    import httpx

    log_args = ["--log-file", log] if log else ["--no-log"]
    proc = subprocess.Popen([CLI, "serve", "--headless", "--port", str(port), *log_args], stdout=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"serve on port {port} did not get ready")


def bench_refusals(runs: int, requests: int, clients: int, port: int) -> None:
    import tempfile

    from antinet_tui.runtime.session_log import read_session

    folder = tempfile.mkdtemp(prefix="antinet-refusals-")
    log = os.path.join(folder, "session.jsonl")
    logged, unlogged = _start_headless(port, log), _start_headless(port + 1, None)
    urls = {"logged": f"http://127.0.0.1:{port}", "unlogged": f"http://127.0.0.1:{port + 1}"}
    rates: dict[str, list[float]] = {"logged": [], "unlogged": []}
    try:
        rss0, _ = _process_figures(logged.pid)
        for i in range(runs + 1):
            order = ("logged", "unlogged") if i % 2 == 0 else ("unlogged", "logged")
            got = {which: asyncio.run(_flood(urls[which], requests, clients)) for which in order}
            label = "warm-up" if i == 0 else f"pair {i}"
            print(f"{label}: logged {got['logged']:.0f}/s, unlogged {got['unlogged']:.0f}/s, "
                  f"ratio {got['logged'] / got['unlogged']:.3f} ({order[0]} first)", file=sys.stderr)
            if i:
                for which, series in rates.items():
                    series.append(got[which])
        rss1, _ = _process_figures(logged.pid)
    finally:
        for proc in (logged, unlogged):
            proc.terminate()
            proc.wait(60)
    ratios = [a / b for a, b in zip(rates["logged"], rates["unlogged"], strict=True)]
    sent = (runs + 1) * (requests // clients) * clients
    records = [r for r in read_session(log) if r["kind"] == "http_error"]
    print(f"refusals: {runs} interleaved pairs of {requests} malformed bodies from {clients} clients")
    print(f"  logged median {statistics.median(rates['logged']):.0f}/s, unlogged median "
          f"{statistics.median(rates['unlogged']):.0f}/s, ratio median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    print(f"  logged server RSS {rss0:.1f} -> {rss1:.1f} MiB over {sent} refusals; the log holds {len(records)} "
          f"http_error records, {os.path.getsize(log) / max(1, len(records)):.0f} bytes each on average")


def _summary_ms(name: str, values: list[float]) -> str:
    return (f"{name}: median {statistics.median(values):.1f} ms, p95 {percentile(sorted(values), 95):.1f} ms, "
            f"max {max(values):.1f} ms (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=("decode", "load", "refusals", "client"))
    parser.add_argument("url", nargs="?")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--dashboard", action="store_true")
    args = parser.parse_args()
    if args.which == "client":
        client_main(args.url)
    elif args.which == "decode":
        bench_decode(args.runs)
    elif args.which == "refusals":
        bench_refusals(args.runs, args.requests, min(args.clients, args.requests), args.port)
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        bench_load(args.seconds, args.clients, args.max_tokens, args.dashboard, args.port)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
