"""The dashboard in serve mode (`antinet-tui serve`): the real app over a real engine
(a tiny GGUF) with the HTTP server beside it on a loopback port, driven by Pilot and by
HTTP requests over real sockets."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from app_helpers import screen_text, send, wait_for_text, wait_until
from fake_backend import FixedSampler

from antinet_tui.config import Settings
from antinet_tui.frontends.app.app import DashboardApp, ServingView
from antinet_tui.frontends.app.widgets.latency_pane import LatencyPane
from antinet_tui.frontends.app.widgets.requests_pane import RequestsPane
from antinet_tui.frontends.server.runner import ServerThread, bind, build_server
from antinet_tui.frontends.wiring import build_service


@pytest.fixture
def serving(tmp_path, tiny_model):
    settings = Settings(model=str(tiny_model), no_log=True, max_new_tokens=8, temperature=0.0, refresh_s=0.5)
    service = build_service(settings)
    server = build_server(service, settings)
    sock = bind("127.0.0.1", 0)
    thread = ServerThread(server, sock)
    service.start()
    thread.start()
    address = f"127.0.0.1:{sock.getsockname()[1]}"
    app = DashboardApp(service, settings, owns_service=False, sampler=FixedSampler(), export_dir=tmp_path,
                       serving=ServingView(address, lambda: len(server.server_state.connections)))
    yield app, address
    thread.drain_and_stop(10)
    service.shutdown()


async def test_a_request_sent_over_http_shows_in_the_requests_pane_and_the_charts(serving):
    app, address = serving
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for_text(pilot, f"serving {address}")
        await wait_for_text(pilot, "ready", timeout=30)
        pane = app.dashboard.query_one(RequestsPane)
        latency = app.dashboard.query_one(LatencyPane)

        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
            reply = await http.post("/v1/chat/completions",
                                    json={"messages": [{"role": "user", "content": "Hello from an app"}]})
            assert reply.status_code == 200
            rid = reply.json()["timings"]["request_id"]
            tokens = reply.json()["usage"]["completion_tokens"]
            await wait_until(pilot, lambda: rid in pane.request_ids and pane.cell(rid, "outcome") == "finished",
                             "the served request's row, finished")
            assert pane.cell(rid, "origin").startswith("127.0.0.1:")
            assert pane.cell(rid, "prompt") == "Hello from an app"
            assert pane.cell(rid, "tokens") == str(tokens)
            assert pane.cell(rid, "ttft") not in ("", "n/a") and pane.cell(rid, "e2e") not in ("", "n/a")
            await wait_until(pilot, lambda: latency.border_title == "Latency · 1 finished", "the latency chart")

            # the operator's own prompt joins the same list and the same charts
            await send(pilot, "typed at the dashboard")
            await wait_until(pilot, lambda: len(pane.request_ids) == 2
                             and pane.cell(pane.request_ids[0], "outcome") == "finished", "the typed request")
            assert pane.cell(pane.request_ids[0], "origin") == "operator"
            await wait_until(pilot, lambda: latency.border_title == "Latency · 2 finished", "both in the charts")

            # refusals are counted in the title, by cause (rows would flood under overload)
            app.service.isolate_breaker()
            for _ in range(2):
                refused = await http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
                assert refused.status_code == 503
            await wait_until(pilot, lambda: pane.border_title == "Requests · refused at once: breaker_open 2",
                             "the refusals counted")
            assert len(pane.request_ids) == 2
            # the connected-clients count follows the open connection
            await wait_until(pilot, lambda: "· 1 client" in screen_text(app), "one connected client")
        await wait_until(pilot, lambda: "· 0 clients" in screen_text(app), "no connected client")
        await asyncio.sleep(0)
