"""notify-flask: the extension, and every route over a real threaded server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, render_template_string
from werkzeug.test import TestResponse

from notify_flask import current_notifications, stream_blueprint
from notify_flask.testing import lines, read_events, serve
from notifycore import Event, Notifications, PushConsumer
from notifycore.backends.memory import MemoryBackend
from notifycore.testing import await_for, free_port, wait_for


def json_of(response: TestResponse) -> Any:
    """The JSON body of a test client's response (there must be one)."""
    data = response.get_json()
    assert data is not None, response.data
    return data


def make_app(**blueprint_options: Any) -> tuple[Flask, Notifications]:
    app = Flask("flasktest")
    app.config.update(BACKEND="memory", MAX_TRIES=7, SECRET_KEY="test")
    notifications = Notifications(app, environ={})
    hub = notifications.create_hub("Chat")
    hub.register_consumer(PushConsumer(per_recipient=True))
    blueprint_options.setdefault("heartbeat", 0.2)
    app.register_blueprint(stream_blueprint(**blueprint_options))
    return app, notifications


@pytest.fixture
def chat() -> Iterator[tuple[Flask, Notifications]]:
    app, notifications = make_app()
    yield app, notifications
    notifications.close()


def send(notifications: Notifications, title: str, **kw: Any) -> Event:
    event = Event(None, "chat", title, "body", **kw)
    notifications.send(event)
    return event


async def titles_on_many_streams(
    base: str, clients: int, count: int, send_all: Callable[[httpx.AsyncClient], Awaitable[Any]]
) -> list[list[str]]:
    """Open ``clients`` streams of hub Chat at ``base``; once every one has its response's
    headers (the server subscribes a stream before it answers, so every event sent from
    then on reaches every one), run ``send_all``; the first ``count`` titles of each."""

    async def one(http: httpx.AsyncClient, ready: list[int]) -> list[str]:
        titles: list[str] = []
        async with http.stream("GET", f"{base}/notifications/event-hub-Chat/stream") as response:
            ready.append(1)
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    titles.append(line[6:].split('"title":"', 1)[1].split('"', 1)[0])
                    if len(titles) == count:
                        return titles
        return titles

    ready: list[int] = []
    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tasks = [asyncio.create_task(one(http, ready)) for _ in range(clients)]
        await await_for(lambda: len(ready) == clients, 60, f"all {clients} streams to answer")
        await send_all(http)
        return await asyncio.wait_for(asyncio.gather(*tasks), 120)


def test_the_extension_reads_app_config_and_is_reachable(chat: tuple[Flask, Notifications]) -> None:
    app, notifications = chat
    assert isinstance(notifications.backend, MemoryBackend)
    assert notifications.settings["MAX_TRIES"] == 7
    assert app.extensions["notifications"] is notifications
    with app.app_context():
        assert current_notifications.get_hub("Chat").hub_id == "event-hub-Chat"
    with app.test_request_context():
        assert render_template_string("{{ current_notifications.settings['MAX_TRIES'] }}") == "7"


def test_init_app_later() -> None:
    app = Flask("later")
    app.config["BACKEND"] = "memory"
    notifications = Notifications(config={"MAX_TRIES": 3}, environ={})
    notifications.init_app(app)
    assert (
        isinstance(notifications.backend, MemoryBackend)
        and notifications.settings["MAX_TRIES"] == 3
    )
    notifications.close()


def test_stream_frames_headers_resume_and_reset(chat: tuple[Flask, Notifications]) -> None:
    app, notifications = chat
    with serve(app) as base, httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{base}/notifications/event-hub-Chat/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            assert next(lines(response)) == "retry: 3000"
            threading.Timer(0.2, lambda: [send(notifications, f"m{i}") for i in range(3)]).start()
            got = read_events(response, 3)
        assert [e["data"]["title"] for e in got] == ["m0", "m1", "m2"]
        assert all(e["event"] == "chat" for e in got)
        first_id = got[0]["id"]
        send(notifications, "m3")
        for headers, params in (({"Last-Event-ID": first_id}, {}), ({}, {"lastEventId": first_id})):
            with client.stream(
                "GET", f"{base}/notifications/event-hub-Chat/stream", headers=headers, params=params
            ) as r:
                assert [e["data"]["title"] for e in read_events(r, 3)] == ["m1", "m2", "m3"]
        # Same hubs, a new backend with a short retention.
        notifications.configure({"BACKEND": "memory", "STREAM_MAXLEN": 2})
        for i in range(5):
            send(notifications, f"n{i}")
        with client.stream(
            "GET", f"{base}/notifications/event-hub-Chat/stream", headers={"Last-Event-ID": "1"}
        ) as r:
            got = read_events(r, 3)
        assert got[0]["event"] == "reset"
        assert [e["data"]["title"] for e in got[1:]] == ["n3", "n4"]


def test_errors_are_json(chat: tuple[Flask, Notifications]) -> None:
    app, _ = chat
    client = app.test_client()
    missing = client.get("/notifications/event-hub-Nope/stream")
    assert missing.status_code == 404 and json_of(missing)["error"] == "not_found"
    bad = client.get("/notifications/event-hub-Chat/stream", headers={"Last-Event-ID": "x-y"})
    assert bad.status_code == 400 and json_of(bad)["error"] == "bad_request"
    anonymous = client.get("/notifications/me/stream")
    assert anonymous.status_code == 401 and json_of(anonymous)["error"] == "unauthorized"


def test_history_and_send(chat: tuple[Flask, Notifications]) -> None:
    app, _ = chat
    client = app.test_client()
    sent = client.post(
        "/notifications/events", json={"event_type": "chat", "title": "posted", "sender": "ann"}
    )
    assert sent.status_code == 202
    assert json_of(sent)["hubs"] == ["Chat"]
    history = json_of(client.get("/notifications/event-hub-Chat/events"))
    assert [e["event"]["title"] for e in history["events"]] == ["posted"] and history[
        "reset"
    ] is False
    since = json_of(
        client.get(f"/notifications/event-hub-Chat/events?since={history['events'][0]['id']}")
    )
    assert since["events"] == []
    for body, field in (
        ({"title": "no type"}, "event_type"),
        ({"event_type": "t", "recipients": "x"}, "recipients"),
        ([1], "event"),
    ):
        refused = client.post("/notifications/events", json=body)
        assert refused.status_code == 422 and json_of(refused)["field"] == field


def authed_app() -> tuple[Flask, Notifications]:
    tokens = {"t-alice": "alice", "t-bob": "bob"}

    def authenticate(req: Any) -> str | None:
        header = req.headers.get("Authorization", "")
        token = (
            header.removeprefix("Bearer ")
            if header.startswith("Bearer ")
            else req.args.get("token", "")
        )
        return tokens.get(token)

    return make_app(authenticate=authenticate)


def test_auth_rules_and_private_streams() -> None:
    app, notifications = authed_app()
    client = app.test_client()
    anonymous = client.get("/notifications/event-hub-Chat/stream")
    assert anonymous.status_code == 401 and json_of(anonymous)["error"] == "unauthorized"
    signed_in = client.get(
        "/notifications/event-hub-Chat/stream", headers={"Authorization": "Bearer t-bob"}
    )
    assert signed_in.status_code == 403 and json_of(signed_in)["error"] == "forbidden"
    history = client.get(
        "/notifications/event-hub-Chat/events", headers={"Authorization": "Bearer t-bob"}
    )
    assert history.status_code == 403
    in_url = client.get("/notifications/me/stream?token=t-bob")
    assert in_url.status_code == 401, (
        "a token in the query string is refused unless the app opts in"
    )
    post = client.post("/notifications/events", json={"event_type": "chat"})
    assert post.status_code == 401
    with serve(app) as base, httpx.Client(timeout=10) as http:
        with http.stream(
            "GET", f"{base}/notifications/me/stream", headers={"Authorization": "Bearer t-bob"}
        ) as bob:
            assert bob.status_code == 200
            threading.Timer(
                0.2,
                lambda: (
                    send(notifications, "for alice only", recipients=["alice"]),
                    send(notifications, "for bob", recipients=["bob"]),
                ),
            ).start()
            got = read_events(bob, 1)
        assert [e["data"]["title"] for e in got] == ["for bob"], "alice's event never reaches bob"
    notifications.close()


def test_query_tokens_when_the_app_opts_in() -> None:
    app = Flask("optin")
    app.config["BACKEND"] = "memory"
    notifications = Notifications(app, environ={})
    notifications.create_hub("Chat").register_consumer(PushConsumer(per_recipient=True))
    app.register_blueprint(
        stream_blueprint(
            authenticate=lambda req: req.args.get("token"), allow_query_token=True, heartbeat=0.2
        )
    )
    with (
        serve(app) as base,
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{base}/notifications/me/stream?token=carol") as carol,
    ):
        assert carol.status_code == 200
        threading.Timer(0.2, send, (notifications, "hi carol"), {"recipients": ["carol"]}).start()
        assert read_events(carol, 1)[0]["data"]["title"] == "hi carol"
    notifications.close()


def test_a_slow_client_is_cut_off_and_never_delays_the_others(
    chat: tuple[Flask, Notifications],
) -> None:
    app, notifications = chat
    notifications.fanout.max_pending = 50
    big = "x" * 60_000
    with serve(app) as base, httpx.Client(timeout=30) as http:
        slow_stream = http.stream("GET", f"{base}/notifications/event-hub-Chat/stream")
        slow = slow_stream.__enter__()
        next(lines(slow))  # connected; it reads nothing more for now
        with http.stream("GET", f"{base}/notifications/event-hub-Chat/stream") as fast:

            def publish() -> None:
                for i in range(300):
                    send(notifications, f"big {i}", big=big)
                    time.sleep(0.005)  # a pace a reading client keeps up with

            threading.Timer(0.2, publish).start()
            got = read_events(fast, 300)
        assert [e["data"]["title"] for e in got] == [f"big {i}" for i in range(300)]
        seen = read_events(slow, 1000)  # the server ends its stream: this returns
        slow_stream.__exit__(None, None, None)
        assert len(seen) < 300, "the slow client was disconnected"
        last = seen[-1]["id"] if seen else "0"
        with http.stream(
            "GET", f"{base}/notifications/event-hub-Chat/stream", headers={"Last-Event-ID": last}
        ) as again:
            rest = read_events(again, 300 - len(seen))
        assert [e["data"]["title"] for e in seen + rest] == [f"big {i}" for i in range(300)]


def test_hundreds_of_concurrent_clients_get_every_event_in_order(
    chat: tuple[Flask, Notifications],
) -> None:
    app, notifications = chat
    clients, count = 200, 20

    async def send_all(http: httpx.AsyncClient) -> None:
        await asyncio.to_thread(lambda: [send(notifications, f"e{i}") for i in range(count)])

    with serve(app) as base:
        results = asyncio.run(titles_on_many_streams(base, clients, count, send_all))
    expected = [f"e{i}" for i in range(count)]
    assert len(results) == clients and all(r == expected for r in results)
    assert notifications.fanout.streams in ([], ["event-hub-Chat"])


def test_request_is_the_flask_request(chat: tuple[Flask, Notifications]) -> None:
    seen: list[Any] = []

    def authenticate(request: Any) -> None:
        seen.append(request)

    app, notifications = make_app(authenticate=authenticate)
    app.test_client().get("/notifications/me/stream")
    assert seen and seen[0].path == "/notifications/me/stream"
    notifications.close()


def test_head_requests_leave_no_subscription_behind(chat: tuple[Flask, Notifications]) -> None:
    app, notifications = chat
    with serve(app) as base, httpx.Client(timeout=10) as http:
        for _ in range(3):
            assert http.head(f"{base}/notifications/event-hub-Chat/stream").status_code == 200
    wait_for(lambda: notifications.fanout.streams == [], 30, "every subscription to end")


def test_the_reset_frame_keeps_the_clients_position(chat: tuple[Flask, Notifications]) -> None:
    app, notifications = chat
    notifications.configure({"BACKEND": "memory", "STREAM_MAXLEN": 2})
    for i in range(5):
        send(notifications, f"n{i}")
    with (
        serve(app) as base,
        httpx.Client(timeout=10) as http,
        http.stream(
            "GET", f"{base}/notifications/event-hub-Chat/stream", headers={"Last-Event-ID": "1"}
        ) as response,
    ):
        reset, first, _ = read_events(response, 3)
    assert reset["event"] == "reset" and reset["id"] == "1", (
        "a reconnect after the reset misses nothing"
    )
    assert first["data"]["title"] == "n3"


def test_an_unreachable_backend_is_a_503(
    chat: tuple[Flask, Notifications], monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifycore import BackendUnavailable

    app, notifications = chat

    def down(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("the broker is away")

    monkeypatch.setattr(notifications.backend, "read", down)
    monkeypatch.setattr(notifications.backend, "publish", down)
    client = app.test_client()
    history = client.get("/notifications/event-hub-Chat/events")
    assert history.status_code == 503 and json_of(history)["error"] == "unavailable"
    monkeypatch.setattr(notifications, "send", down)
    sent = client.post("/notifications/events", json={"event_type": "chat"})
    assert sent.status_code == 503


def test_under_gevent_many_clients_get_every_event(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    port = free_port()
    script = Path(__file__).parent / "apps" / "gevent_server.py"
    server = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{port}"
        clients, count = 50, 10

        async def send_all(http: httpx.AsyncClient) -> None:
            for i in range(count):
                sent = await http.post(
                    f"{base}/notifications/events", json={"event_type": "chat", "title": f"g{i}"}
                )
                assert sent.status_code == 202

        results = asyncio.run(titles_on_many_streams(base, clients, count, send_all))
        assert (
            all(r == [f"g{i}" for i in range(count)] for r in results) and len(results) == clients
        )
    finally:
        server.kill()
        server.communicate(timeout=30)
