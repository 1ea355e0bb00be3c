"""The inbox and preference routes on Flask: the core's route tests on Flask's test client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from notify_flask import stream_blueprint
from notifycore import Notifications
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
