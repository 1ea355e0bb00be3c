"""The lifespan ends every open stream when the server shuts down; the plugin claims apps."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette_helpers import SSE, WAIT, Serve, event
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import notify_starlette
from notify_starlette import plugin
from notifycore import ConfigurationError, Notifications
from notifycore.testing import await_for, wait_for
from notifycore.web import process_state


def test_shutdown_ends_open_streams(serve: Serve, notes: Notifications) -> None:
    # No grace timeout: without the lifespan closing the streams, uvicorn would wait forever.
    served = serve(notes, server_options={"timeout_graceful_shutdown": None})
    with (
        httpx.Client(timeout=httpx.Timeout(WAIT)) as client,
        client.stream("GET", served.base + "/alerts/stream") as response,
        connect(served.ws, open_timeout=WAIT) as ws,
    ):
        sse = SSE(response)
        sse.next()
        ws.send(json.dumps({"action": "subscribe", "stream": "alerts"}))
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "subscribed"
        notes.send(event("before"))
        assert sse.next()["id"] == "1"
        assert json.loads(ws.recv(timeout=WAIT))["id"] == "1"
        served.server.server.should_exit = True
        assert list(sse.frames) == []  # the body ends cleanly, nothing more in it
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
    served.server.thread.join(WAIT)
    assert not served.server.thread.is_alive()
    assert notes.fanout.streams == []


def test_close_streams_refuses_new_ones(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes)
    with client.stream("GET", served.base + "/alerts/stream") as response:
        sse = SSE(response)
        sse.next()
        asyncio.run(notify_starlette.close_streams(notes))
        assert list(sse.frames) == []
    refused = client.get(served.base + "/alerts/stream")
    assert refused.status_code == 503
    assert refused.json()["error"] == "shutting_down"
    with connect(served.ws, open_timeout=WAIT) as ws:
        ws.send(json.dumps({"action": "subscribe", "stream": "alerts"}))
        assert json.loads(ws.recv(timeout=WAIT))["error"] == "shutting_down"
    # History and sending still work while the server drains.
    assert client.get(served.base + "/alerts/events").status_code == 200


def test_lifespan_context(notes: Notifications) -> None:
    app = Starlette()

    async def run() -> None:
        async with notify_starlette.lifespan(notes)(app):
            assert app.state.notifications is notes
            assert process_state(notes).closing is False
            notes.fanout.subscribe("event-hub-alerts")
            assert notes.fanout.streams == ["event-hub-alerts"]
        assert process_state(notes).closing is True
        assert notes.fanout.streams == []

    asyncio.run(run())


def test_lifespan_ignores_a_broken_should_exit(notes: Notifications) -> None:
    calls: list[int] = []

    def broken() -> bool:
        calls.append(1)
        raise RuntimeError("boom")

    async def run() -> None:
        async with notify_starlette.lifespan(notes, should_exit=broken, poll=0.01)(Starlette()):
            # Polled again after it raised: the watch goes on.
            await await_for(lambda: len(calls) >= 3, WAIT, "should_exit polled again")
            assert process_state(notes).closing is False

    asyncio.run(run())


def test_notifications_claims_a_starlette_app() -> None:
    app = Starlette()
    notifications = Notifications(app, config={"BACKEND": "memory"}, environ={})
    try:
        assert app.state.notifications is notifications
        assert plugin.notifycore_init_app(notifications, object()) is None
        with pytest.raises(ConfigurationError):
            notifications.init_app(object())
    finally:
        notifications.close()


@pytest.mark.parametrize(
    "options",
    [{"heartbeat": -1}, {"retry_ms": -1}, {"send_timeout": 0}, {"max_pending": 0}],
)
def test_routes_rejects_bad_options(notes: Notifications, options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        notify_starlette.routes(notes, **options)  # type: ignore[arg-type]


def test_shutdown_lets_a_send_on_the_loop_finish(
    serve: Serve, notes: Notifications, no_sync_hooks: bool
) -> None:
    # The server's grace ends while the POST's send is still awaiting a consumer: uvicorn
    # cancels the request, and the send (awaited on the loop) must still run to its end.
    release = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []
    log: list[str] = []

    async def slow(e: Any) -> None:
        loops.append(asyncio.get_running_loop())
        log.append("started")
        await asyncio.wait_for(release.wait(), WAIT)
        log.append("finished")

    hub = notes.get_hub("alerts")
    hub.register_consumer(slow, name="slow")
    hub.register_consumer(lambda e: None, name="later", mode="queued")
    assert notes.delivery.awaitable()
    served = serve(notes, server_options={"timeout_graceful_shutdown": 0.2})
    with (
        httpx.Client(timeout=httpx.Timeout(WAIT)) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        answer = pool.submit(client.post, served.base + "/events", json=event("x"))
        wait_for(lambda: log == ["started"], WAIT, "the send to start")
        served.server.server.should_exit = True
        wait_for(answer.done, WAIT, "the server to give up on the request")
        assert log == ["started"]
        loops[0].call_soon_threadsafe(release.set)
        served.server.thread.join(WAIT)
    assert not served.server.thread.is_alive()
    assert log == ["started", "finished"], "the send ran to its end"
    jobs = notes.backend.browse("notifycore")
    assert len(jobs) == 1, "the queued consumer after it got its job"
