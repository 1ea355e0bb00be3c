"""Redis down under a web app: every route answers 503 JSON, the WebSocket session goes on.

A real redis-server is stopped while Flask (werkzeug) and Starlette (uvicorn)
serve; what the reviewer of issue 12 saw on Starlette (a 500, a reset
connection, a killed WebSocket session) must never come back, on any route.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.sync.client import connect

import notify_flask.testing
import notify_starlette
import notify_starlette.testing
from notify_flask import stream_blueprint
from notify_redis.testing import RedisServer
from notifycore import Event, Notifications, PushConsumer

WAIT = 30.0
TOKENS = {"t-bob": "bob"}
BOB = {"Authorization": "Bearer t-bob"}


def authenticate(request: Any) -> str | None:
    header = request.headers.get("Authorization", "")
    return TOKENS.get(header.removeprefix("Bearer "))


def authorize(user: Any, stream: str) -> bool:
    return user is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This module's own redis-server: the tests stop it (the session's is shared)."""
    try:
        found = RedisServer(tmp_path_factory.mktemp("outage"))
        found.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield found
    found.stop()


@pytest.fixture
def notifications(server: RedisServer) -> Iterator[Notifications]:
    if server.process is None:
        server.start()
    config = {
        "BACKEND": "redis",
        "REDIS_URL": server.url,
        "REDIS_PREFIX": f"outage-{uuid.uuid4().hex[:8]}:",
        "REDIS_RETRIES": 1,
    }
    found = Notifications(config=config, environ={})
    hub = found.create_hub("alerts")
    hub.register_consumer(PushConsumer(), name="push")
    # A queued consumer: sending needs the broker for its job, so a send is a 503 too.
    hub.register_consumer(lambda event: None, name="later", mode="queued")
    found.send(Event(None, "alert", "before"))
    yield found
    found.close()


def flask_site(notifications: Notifications) -> AbstractContextManager[str]:
    app = Flask("outage")
    app.register_blueprint(
        stream_blueprint(
            notifications, url_prefix="/n", authenticate=authenticate, authorize=authorize
        )
    )
    return notify_flask.testing.serve(app)


def starlette_site(notifications: Notifications) -> AbstractContextManager[str]:
    routes = notify_starlette.routes(notifications, authenticate=authenticate, authorize=authorize)
    return notify_starlette.testing.serve(Starlette(routes=[Mount("/n", app=routes)]))


Site = Callable[[Notifications], AbstractContextManager[str]]


@pytest.mark.parametrize("site", [flask_site, starlette_site], ids=["flask", "starlette"])
def test_every_route_answers_503_json_while_redis_is_down(
    site: Site, server: RedisServer, notifications: Notifications
) -> None:
    with site(notifications) as base, httpx.Client(base_url=base + "/n", timeout=WAIT) as http:
        assert http.get("/alerts/events", headers=BOB).status_code == 200
        server.stop()
        answers = {
            "history": http.get("/alerts/events", headers=BOB),
            "history since": http.get("/alerts/events?since=1-0", headers=BOB),
            "stream": http.get("/alerts/stream", headers=BOB),
            "resumed stream": http.get("/alerts/stream?lastEventId=1-0", headers=BOB),
            "resumed by header": http.get(
                "/alerts/stream", headers={**BOB, "Last-Event-ID": "1-0"}
            ),
            "my stream": http.get("/me/stream", headers=BOB),
            "my history": http.get("/me/events", headers=BOB),
            "send": http.post("/events", json={"event_type": "alert"}, headers=BOB),
        }
    got = {what: (r.status_code, r.headers["content-type"]) for what, r in answers.items()}
    assert got == dict.fromkeys(answers, (503, "application/json"))
    assert {r.json()["error"] for r in answers.values()} == {"unavailable"}
    assert notifications.fanout.streams == [], "no subscription is left behind"


def test_a_websocket_session_goes_on_through_the_outage(
    server: RedisServer, notifications: Notifications
) -> None:
    with (
        starlette_site(notifications) as base,
        connect(
            base.replace("http://", "ws://") + "/n/ws", additional_headers=BOB, open_timeout=WAIT
        ) as ws,
    ):

        def ask(**message: Any) -> dict[str, Any]:
            ws.send(json.dumps(message))
            answer: dict[str, Any] = json.loads(ws.recv(timeout=WAIT))
            return answer

        server.stop()
        down = [
            ask(action="subscribe", stream="alerts", after="1-0"),
            ask(action="subscribe", stream="alerts"),
            ask(action="subscribe", stream="me"),
        ]
        assert [(m["type"], m["stream"], m["error"]) for m in down] == [
            ("error", "event-hub-alerts", "unavailable"),
            ("error", "event-hub-alerts", "unavailable"),
            ("error", "user:bob", "unavailable"),
        ]
        server.start()
        # Back: the same session subscribes, and receives.
        assert ask(action="subscribe", stream="alerts") == {
            "type": "subscribed",
            "stream": "event-hub-alerts",
        }
        sent = notifications.send(Event(None, "alert", "after"))
        assert [str(o.status) for o in sent.outcomes] == ["ran", "enqueued"]
        event = json.loads(ws.recv(timeout=WAIT))
        assert (event["type"], event["event"]["title"]) == ("event", "after")
