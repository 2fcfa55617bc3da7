"""Issue 10's serving figures, on the installed SmolLM2 (benchmarks, not timed tests: run by hand).

    .venv/bin/python benchmarks/serve.py decode [--runs N]
    .venv/bin/python benchmarks/serve.py load [--seconds 300] [--clients 32] [--dashboard]
                                              [--sample-every 60] [--tracemalloc]
    .venv/bin/python benchmarks/serve.py shapes [--rounds 3] [--lengths 30,200,800,1600]
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
        Every --sample-every seconds (and once before the load) a line: requests so far,
        the server's RSS and threads. Headless, the server runs under a memory probe
        (`probe` below) and the lines also carry what is inside the RSS: anonymous and
        file-backed resident memory, glibc's heap in use and free (mallinfo2), mmapped
        blocks, Python's allocated blocks and gc objects. At the end: the RSS slope over
        the second half of the run (KiB per 1000 completed requests), the mappings whose
        resident size grew most in the warm-up (before the load -> the first sample) and
        after it (-> the end), and what malloc_trim(0) gives back. With --tracemalloc
        (slower): Python's allocations traced from the start, snapshots at the same three
        points, and the sites that grew most in each part (a snapshot frees tens of MiB in
        the probe thread's malloc arena; the probe trims it, which trims the server's free
        memory too: read the RSS and the trim from a run without it).
shapes  The same headless server under the probe, one raw completion at a time (8
        tokens, greedy) with the prompt growing (--lengths, in words), for --rounds rounds:
        the server's memory after each. What a longer prompt than any before adds stays
        (the KV cache's pages, ONNX Runtime's arena); the question is whether the same
        lengths again add anything.
refusals  What recording the HTTP layer's refusals in the session log costs under a flood
        of bad requests: two `serve --headless`, one writing its session log, one with
        --no-log, each sent N malformed JSON bodies (400) by C concurrent clients per
        run, the two alternating (order alternating), a warm-up pair discarded. Reports
        refusals/s of each, the paired ratio logged / unlogged, the logged server's RSS
        before and after every flood, and the log's records against the requests sent.
probe   (used by load and shapes) antinet-tui's own CLI in a process that also
        answers commands on stdin, one JSON line each appended to a file: `figures
        LABEL`, `maps`, `snapshot PATH` (tracemalloc), `trim` (malloc_trim(0), RSS before
        and after).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
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


async def _load_clients(url: str, clients: int, seconds: float, max_tokens: int, counts: dict[str, int]) -> list[str]:
    """Fills `counts` as answers come (completed, lost, refused by status and code);
    returns a few examples of what was lost."""
    import httpx

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
    return lost_examples[:5]


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


def bench_load(seconds: float, clients: int, max_tokens: int, dashboard: bool, port: int, sample_every: float,
               trace: bool) -> None:
    url = f"http://127.0.0.1:{port}"
    args = f"serve --port {port} --no-log"
    tmux = proc = probe = None
    workdir = Path(tempfile.mkdtemp(prefix="antinet-bench-serve-"))
    if dashboard:
        from dashboard import Tmux, _summary, _type_and_time  # benchmarks/dashboard.py

        tmux = Tmux("antinet-bench-serve", f"{CLI} {args}")
        tmux.wait_for("ready")
    else:
        probe = Probe(workdir / "figures.jsonl", args.split() + ["--headless"], TRACE_FRAMES if trace else 0)
        proc = probe.proc
    import httpx

    _wait_ready(url)
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
    counts: dict[str, int] = {"completed": 0, "lost": 0}
    samples: list[dict] = []
    maps: dict[str, list] = {}  # "ready" (before the load), "warm" (the first sample), "end"
    started = time.monotonic()

    def sample(label: str) -> None:
        rss, threads = _process_figures(pid)
        row = {"t": time.monotonic() - started, "completed": counts["completed"],
               "refused": sum(v for k, v in counts.items() if k.startswith("refused")), "rss": rss, "threads": threads}
        if probe is not None:
            row |= probe.ask(f"figures {label}")
            stage = "ready" if not samples else "warm" if len(samples) == 1 else None
            if stage is not None:  # a baseline of the growth figures
                if trace:
                    probe.ask(f"snapshot {workdir / stage}.tracemalloc")
                maps[stage] = probe.ask("maps")["maps"]
        samples.append(row)
        print(_sample_line(row), file=sys.stderr)

    sample("ready")

    def sample_loop() -> None:
        while not stop.wait(sample_every):
            sample(f"t={time.monotonic() - started:.0f}s")
    sampler = threading.Thread(target=sample_loop, daemon=True)
    sampler.start()
    examples = asyncio.run(_load_clients(url, clients, seconds, max_tokens, counts))
    elapsed = time.monotonic() - started
    stop.set()
    scraper.join()
    sampler.join()
    time.sleep(1)  # the last requests' threads wind down
    sample("end")
    rss1, threads1 = _process_figures(pid)
    metrics = httpx.get(url + "/metrics").text
    inside: list[str] = []
    if probe is not None:
        inside = _inside_report(probe, samples, maps, workdir if trace else None)
    if tmux is not None:
        tmux.send("C-q")
        time.sleep(3)
        tmux.close()
    else:
        assert proc is not None and probe is not None
        proc.terminate()
        proc.wait(60)
        probe.close()
    refused = {k: v for k, v in counts.items() if k.startswith("refused")}
    print(f"load: {clients} streaming clients, {elapsed:.0f} s, queue 8, max_tokens {max_tokens}"
          f"{', dashboard on' if dashboard else ', headless'}{', tracemalloc on' if trace else ''}")
    print(f"  completed {counts['completed']}, refused {sum(refused.values())} {refused}, lost {counts['lost']}")
    for example in examples:
        print(f"  lost: {example}")
    print(f"  server RSS {rss0:.0f} -> {rss1:.0f} MiB, threads {threads0} -> {threads1}"
          f"{' (the probe thread included)' if probe else ''}")
    for row in samples:
        print("  " + _sample_line(row))
    for line in inside:
        print("  " + line)
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
    log_args = ["--log-file", log] if log else ["--no-log"]
    proc = subprocess.Popen([CLI, "serve", "--headless", "--port", str(port), *log_args], stdout=subprocess.DEVNULL)
    if _wait_ready(f"http://127.0.0.1:{port}"):
        return proc
    proc.terminate()
    raise RuntimeError(f"serve on port {port} did not get ready")


def bench_refusals(runs: int, requests: int, clients: int, port: int) -> None:
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
def _wait_ready(url: str) -> bool:
    """True once the server at `url` answers /ready with 200 (within a minute)."""
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url + "/ready").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def bench_shapes(port: int, rounds: int, lengths: list[int]) -> None:
    import httpx

    url = f"http://127.0.0.1:{port}"
    probe = Probe(Path(tempfile.mkdtemp(prefix="antinet-bench-shapes-")) / "figures.jsonl",
                  ["serve", "--port", str(port), "--no-log", "--headless"], 0)
    _wait_ready(url)
    words = " ".join(["the sea is wide and deep and blue"] * max(lengths)).split()
    print("shapes: one raw completion at a time (8 tokens, greedy), the prompt growing, the same lengths again")
    print(_shape_line("before any request", probe.ask("figures ready")))
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            for round_ in range(1, rounds + 1):
                for n in lengths:
                    reply = http.post("/v1/completions", json={"prompt": " ".join(words[:n]), "max_tokens": 8,
                                                               "temperature": 0})
                    reply.raise_for_status()
                    tokens = reply.json()["usage"]["prompt_tokens"]
                    print(_shape_line(f"round {round_}, prompt {tokens:5d} tokens", probe.ask("figures")))
    finally:
        probe.proc.terminate()
        probe.proc.wait(60)
        probe.close()


def _shape_line(label: str, row: dict) -> str:
    return (f"  {label:30s} RSS {row['rss_anon'] + row['rss_file']:6.1f} MiB: anon {row['rss_anon']:6.1f}  file "
            f"{row['rss_file']:6.1f}  malloc in use "
            f"{row['malloc_in_use']:6.1f}  free {row['malloc_free']:5.1f}  mmapped {row['malloc_mmapped']:6.1f}")


def _sample_line(row: dict) -> str:
    line = (f"t {row['t']:5.0f} s  completed {row['completed']:5d}  refused {row['refused']:6d}  "
            f"RSS {row['rss']:6.1f} MiB  threads {row['threads']}")
    if "malloc_in_use" in row:
        line += (f"  | anon {row['rss_anon']:5.1f} file {row['rss_file']:5.1f}"
                 f"  malloc in use {row['malloc_in_use']:5.1f} free {row['malloc_free']:5.1f} "
                 f"mmapped {row['malloc_mmapped']:5.1f} MiB  python blocks {row['python_blocks'] / 1000:.0f}k "
                 f"gc objects {row['gc_objects'] / 1000:.0f}k")
    if row.get("traced") is not None:
        line += f"  traced {row['traced']:.1f} MiB"
    return line


def _inside_report(probe: Probe, samples: list[dict], maps: dict[str, list], trace_dir: Path | None) -> list[str]:
    """The end of a headless run, from inside the server: RSS slope, growing mappings,
    what malloc_trim gives back, tracemalloc's growth sites; the warm-up (before the
    load -> the first sample) apart from the rest (the first sample -> the end)."""
    lines = []
    half = [row for row in samples if row["t"] >= samples[-1]["t"] / 2]
    if len(half) >= 3 and half[-1]["completed"] > half[0]["completed"]:
        per_request = _slope([row["completed"] for row in half], [row["rss"] for row in half])
        per_hour = _slope([row["t"] for row in half], [row["rss"] for row in half])
        lines.append(f"RSS slope over the second half ({len(half)} samples, {half[0]['completed']}-"
                     f"{half[-1]['completed']} completed): {per_request * 1024 * 1000:+.0f} KiB per 1000 completed "
                     f"requests, {per_hour * 3600:+.1f} MiB per hour")
    maps["end"] = probe.ask("maps")["maps"]
    for early, late in (("ready", "warm"), ("warm", "end")):
        if early in maps and late in maps:
            lines.append(f"mappings whose resident size grew most, {_STAGES[early]} -> {_STAGES[late]} (KiB):")
            lines.extend("  " + line for line in _grown_maps(maps[early], maps[late]))
    trim = probe.ask("trim")
    lines.append(f"malloc_trim(0) at the end: RSS {trim['rss_before']:.1f} -> {trim['rss_after']:.1f} MiB "
                 f"({trim['rss_before'] - trim['rss_after']:.1f} MiB given back)")
    if trace_dir is not None:
        probe.ask(f"snapshot {trace_dir / 'end.tracemalloc'}")
        for early, late, top in (("ready", "warm", 8), ("warm", "end", 15)):
            lines.extend(_tracemalloc_growth(trace_dir / f"{early}.tracemalloc", trace_dir / f"{late}.tracemalloc",
                                             f"{_STAGES[early]} -> {_STAGES[late]}", top))
    return lines


_STAGES = {"ready": "before the load", "warm": "the first sample", "end": "the end"}


def _grown_maps(before: list[list], after: list[list], top: int = 6) -> list[str]:
    """The mappings (by start address: a heap that grew keeps its start) whose resident
    KiB grew most; a new one counts from 0."""
    known = {m[0]: m for m in before}
    grown = []
    for start, size_kib, rss_kib, perms, name in after:
        old = known.get(start)
        note = " new" if old is None else f" (was {old[1]} KiB)" if old[1] != size_kib else ""
        grown.append((rss_kib - (old[2] if old else 0), start, size_kib, rss_kib, perms, name, note))
    grown.sort(reverse=True)
    return [f"{growth:+7d}  now {rss_kib:7d} of {size_kib:8d}  {perms} {start} {name or '[anon]'}{note}"
            for growth, start, size_kib, rss_kib, perms, name, note in grown[:top] if growth > 0]


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _tracemalloc_growth(early_path: Path, late_path: Path, what: str, top: int) -> list[str]:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>"),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap*"), tracemalloc.Filter(False, __file__)]
    early = tracemalloc.Snapshot.load(str(early_path)).filter_traces(ignore)
    late = tracemalloc.Snapshot.load(str(late_path)).filter_traces(ignore)
    by_line = late.compare_to(early, "lineno")
    total = sum(stat.size_diff for stat in by_line)
    sizes = [sum(stat.size for stat in snapshot.statistics("filename")) / 2**20 for snapshot in (early, late)]
    lines = [(f"tracemalloc, {what}: Python's traced memory {total / 1024:+.0f} KiB "
              f"({sizes[0]:.1f} -> {sizes[1]:.1f} MiB); the sites that grew most:")]
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        lines.append(f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+7d} blocks  {_short(frame.filename)}:"
                     f"{frame.lineno}")
    lines.append("the three largest, by where they were allocated from:")
    for stat in late.compare_to(early, "traceback")[:min(3, top)]:
        lines.append(f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+7d} blocks")
        for frame in list(stat.traceback)[-6:]:
            lines.append(f"      {_short(frame.filename)}:{frame.lineno}")
    return lines


def _short(filename: str) -> str:
    for marker in ("site-packages/", "antinet_tui/", "lib/python"):
        if marker in filename:
            return filename[filename.index(marker):]
    return filename


# -- the probe: the server process's memory from inside -----------------------------------------

TRACE_FRAMES = 10  # stack depth tracemalloc keeps per allocation (--tracemalloc)


class Probe:
    """A headless server started through `serve.py probe`; ask() sends one command and
    returns its answer."""

    def __init__(self, figures: Path, cli_args: list[str], trace_frames: int):
        self.figures = figures
        figures.touch()
        self.proc = subprocess.Popen([sys.executable, __file__, "probe", str(figures), "--trace-frames",
                                      str(trace_frames), "--", *cli_args],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self._answers = 0
        self._lock = threading.Lock()

    def ask(self, command: str, timeout: float = 120) -> dict:
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                lines = self.figures.read_text().splitlines()
                if len(lines) > self._answers:
                    self._answers += 1
                    return json.loads(lines[self._answers - 1])
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the probe did not answer {command!r}")
                time.sleep(0.05)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def probe_main(figures: str, trace_frames: int, cli_args: list[str]) -> int:
    if trace_frames:
        tracemalloc.start(trace_frames)
    threading.Thread(target=_answer_commands, args=(Path(figures),), name="bench-probe", daemon=True).start()
    from antinet_tui.frontends.cli import main as cli_main

    return cli_main(cli_args)


def _answer_commands(figures: Path) -> None:
    import psutil

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    process = psutil.Process()
    mib = 2**20
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        answer: dict = {}
        if command == "figures":
            info = libc.mallinfo2()
            status = dict(entry.split(":", 1) for entry in Path("/proc/self/status").read_text().splitlines())
            answer = {"label": argument, "rss_anon": int(status["RssAnon"].split()[0]) / 1024,
                      "rss_file": int(status["RssFile"].split()[0]) / 1024,
                      "malloc_in_use": info.uordblks / mib, "malloc_free": info.fordblks / mib,
                      "malloc_mmapped": info.hblkhd / mib, "python_blocks": sys.getallocatedblocks(),
                      "gc_objects": len(gc.get_objects()),
                      "traced": tracemalloc.get_traced_memory()[0] / mib if tracemalloc.is_tracing() else None}
        elif command == "maps":
            answer = {"maps": [[m.addr.split("-")[0], m.size // 1024, m.rss // 1024, m.perms, m.path]
                               for m in process.memory_maps(grouped=False)]}
        elif command == "snapshot":
            tracemalloc.take_snapshot().dump(argument)
            libc.malloc_trim(0)  # what the snapshot took and freed: not the server's memory
            answer = {"snapshot": argument}
        elif command == "trim":
            before = process.memory_info().rss / mib
            libc.malloc_trim(0)
            answer = {"rss_before": before, "rss_after": process.memory_info().rss / mib}
        with figures.open("a") as out:
            out.write(json.dumps(answer) + "\n")


def _summary_ms(name: str, values: list[float]) -> str:
    return (f"{name}: median {statistics.median(values):.1f} ms, p95 {percentile(sorted(values), 95):.1f} ms, "
            f"max {max(values):.1f} ms (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=("decode", "load", "shapes", "refusals", "client", "probe"))
    parser.add_argument("url", nargs="?")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--dashboard", action="store_true")
    parser.add_argument("--sample-every", type=float, default=60, help="seconds between RSS samples (load)")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python's allocations in the server (load, "
                        "headless; slower)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of prompt lengths (shapes)")
    parser.add_argument("--lengths", default="30,200,800,1600", help="prompt lengths in words (shapes)")
    parser.add_argument("--trace-frames", type=int, default=0, help=argparse.SUPPRESS)  # probe
    if sys.argv[1:2] == ["probe"]:  # probe FIGURES [--trace-frames N] -- the CLI's arguments
        split = sys.argv.index("--")
        args = parser.parse_args(sys.argv[1:split])
        raise SystemExit(probe_main(args.url, args.trace_frames, sys.argv[split + 1:]))
    args = parser.parse_args()
    if args.tracemalloc and args.dashboard:
        parser.error("--tracemalloc needs the headless server (the dashboard's server runs in tmux)")
    if args.which == "client":
        client_main(args.url)
    elif args.which == "decode":
        bench_decode(args.runs)
    elif args.which == "refusals":
        bench_refusals(args.runs, args.requests, min(args.clients, args.requests), args.port)
    elif args.which == "shapes":
        bench_shapes(args.port, args.rounds, [int(n) for n in args.lengths.split(",")])
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        bench_load(args.seconds, args.clients, args.max_tokens, args.dashboard, args.port, args.sample_every,
                   args.tracemalloc)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
