"""The dashboard attached to a real `serve` process, driven by Pilot: what a served
request, the watcher's keys and the server's life look like from the watcher."""

from __future__ import annotations

import httpx
import openai
import pytest
from app_helpers import screen_text, send, wait_for_text, wait_until

from antinet_tui.frontends.app.widgets.conversation import Conversation
from antinet_tui.frontends.app.widgets.requests_pane import RequestsPane

SIZE = (130, 44)


def link(app) -> str | None:
    return app._status.status.link


async def attached(pilot) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: link(app) == "live", "the link to be live", timeout=20)
    await wait_until(pilot, lambda: "tiny" in str(app._status.content), "the server's model in the status line")


async def leave_prompt(pilot) -> None:
    pilot.app.dashboard.query_one(Conversation).focus()
    await pilot.pause()


@pytest.mark.asyncio
async def test_a_request_from_the_openai_client_shows_in_the_watcher(serve, attach):
    server = serve()
    app = attach(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot)
        pane = app.dashboard.query_one(RequestsPane)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi there"}],
                                               max_tokens=6)
        assert reply.choices[0].finish_reason == "length"
        await wait_until(pilot, lambda: pane.request_ids and pane.cell(pane.request_ids[0], "outcome") == "finished",
                         "the served request, finished, in the Requests pane")
        rid = pane.request_ids[0]
        assert pane.cell(rid, "origin").startswith("127.0.0.1:")
        assert pane.cell(rid, "tokens") == "6"
        assert "hi there" in pane.cell(rid, "prompt")
        # the figures came with it: the latency pane counts the finished request
        await wait_until(pilot, lambda: "1 finished" in screen_text(app), "the latency pane's count")


@pytest.mark.asyncio
async def test_the_watchers_prompt_is_served_there_and_streams_here(serve, attach):
    server = serve()
    app = attach(server.url, max_new_tokens=8, temperature=0.0, raw=True)  # the tiny model has 64 positions
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot)
        await send(pilot, "Tell me about foxes")
        await wait_until(pilot, lambda: app.records and next(iter(app.records.values())).outcome == "finished",
                         "the watcher's own answer to finish")
        record = next(iter(app.records.values()))
        assert record.metrics is not None and record.metrics.generated_tokens == 8
        snapshot = server.snapshot()
        served = [r for r in snapshot["requests"] if r["accepted"]["request_id"] == record.request_id]
        assert served and served[0]["accepted"]["origin"].startswith("watcher@127.0.0.1:")
        assert served[0]["end"]["text"] == record.text


@pytest.mark.asyncio
async def test_b_in_the_watcher_changes_the_servers_mode(serve, attach):
    server = serve()
    app = attach(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot)
        assert server.snapshot()["mode"]["requested"] != "burst"
        await leave_prompt(pilot)
        await pilot.press("b")
        await wait_until(pilot, lambda: (app.service.mode() or None) and app.service.mode().effective == "burst",
                         "the burst readback on the stream")
        readback = server.snapshot()["mode"]
        assert readback["requested"] == "burst" and readback["effective"] == "burst"
        assert readback["settings"]["threads"] >= 1
        await pilot.press("b")
        await wait_until(pilot, lambda: server.snapshot()["mode"]["requested"] != "burst", "back to default there")


@pytest.mark.asyncio
async def test_isolate_in_the_watcher_refuses_the_next_served_request_with_503(serve, attach):
    server = serve()
    app = attach(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot)
        await leave_prompt(pilot)
        await pilot.press("i")
        await wait_for_text(pilot, "ISOLATED")
        response = httpx.post(server.url + "/v1/chat/completions", timeout=10,
                              json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert response.status_code == 503
        assert "Retry-After" in response.headers
        assert "isolated" in response.json()["error"]["message"]
        await pilot.press("r")
        await wait_until(pilot, lambda: server.snapshot()["breaker"]["state"] == "closed", "the reset there")
        response = httpx.post(server.url + "/v1/chat/completions", timeout=10,
                              json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert response.status_code == 200


@pytest.mark.asyncio
async def test_killing_and_restarting_the_server_shows_reconnecting_then_live(serve, attach):
    server = serve()
    app = attach(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot)
        first = server.snapshot()["instance"]
        server.kill()
        await wait_until(pilot, lambda: (link(app) or "").startswith("reconnecting in "), "reconnecting in N s")
        await wait_for_text(pilot, "attached reconnecting in")
        server.start()
        await wait_until(pilot, lambda: link(app) == "live", "live again", timeout=30)
        assert server.snapshot()["instance"] != first
        await wait_for_text(pilot, "attached live")


@pytest.mark.asyncio
async def test_a_wrong_key_shows_the_refusal(serve, attach):
    server = serve("--api-key", "right-key")
    app = attach(server.url, api_key="wrong-key")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: link(app) == "refused: wrong key", "the refusal in words")
        await wait_for_text(pilot, "refused: wrong key")


@pytest.mark.asyncio
async def test_a_watch_key_watches_but_does_not_control(serve, attach):
    server = serve("--api-key", "control-key", "--watch-key", "watch-key")
    app = attach(server.url, api_key="watch-key")
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot)
        await leave_prompt(pilot)
        await pilot.press("i")
        await wait_until(pilot, lambda: any("may watch but not control" in str(n.message)
                                            for n in app._notifications), "the refusal of the control")
        assert server.snapshot("control-key")["breaker"]["state"] == "closed"
