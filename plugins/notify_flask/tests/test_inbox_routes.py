"""The inbox and preference routes on Flask: the core's route tests on Flask's test client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from flask import Flask

from notify_flask import stream_blueprint
from notify_flask.testing import read_events, serve
from notifycore import Event, Notifications, PushConsumer
from notifycore.testing.inbox_web import InboxClient, InboxRoutesContract


class FlaskClient:
    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, Any]:
        response = self.client.open(path, method=method, headers=headers or {}, data=body)
        assert response.headers["Content-Type"].startswith("application/json"), response.data
        return response.status_code, response.get_json()


class TestFlaskInboxRoutes(InboxRoutesContract):
    def make_client(
        self, notifications: Notifications, authenticate: Callable[[Any], Any]
    ) -> InboxClient:
        app = Flask("inbox")
        app.register_blueprint(stream_blueprint(notifications, authenticate=authenticate))
        return FlaskClient(app)


def test_two_tabs_follow_the_changes_and_a_reconnecting_one_catches_up() -> None:
    notifications = Notifications(config={"BACKEND": "memory", "INBOX": "on"}, environ={})
    notifications.create_hub("comments").register_consumer(PushConsumer(), name="push")
    app = Flask("tabs")

    def authenticate(request: Any) -> str | None:
        return {"Bearer tok-alice": "alice"}.get(request.headers.get("Authorization", ""))

    app.register_blueprint(stream_blueprint(notifications, authenticate=authenticate, heartbeat=0))
    alice = {"Authorization": "Bearer tok-alice"}
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            with client.stream("GET", "/notifications/me/stream", headers=alice) as tab:
                assert tab.status_code == 200
                event = Event(None, "comment", "hello", recipients=["alice"])
                notifications.send(event)
                first = read_events(tab, 2)
                assert [f["event"] for f in first] == ["inbox.item", "comment"]
                assert first[0]["data"]["inbox"]["unread"] == 1
                # The other tab marks it read: this one hears of it at once.
                answer = client.post(
                    "/notifications/me/inbox/read",
                    json={"ids": [event.event_id]},
                    headers=alice,
                )
                assert answer.status_code == 200 and answer.json()["unread"] == 0
                (read,) = read_events(tab, 1)
                assert read["event"] == "inbox.read"
                assert read["data"]["inbox"] == {"ids": [event.event_id], "unread": 0}
            # A tab that was away since the first change catches up with Last-Event-ID.
            resumed = {**alice, "Last-Event-ID": first[0]["id"]}
            with client.stream("GET", "/notifications/me/stream", headers=resumed) as tab:
                caught = read_events(tab, 2)
                assert [f["event"] for f in caught] == ["comment", "inbox.read"]
    finally:
        notifications.close()
