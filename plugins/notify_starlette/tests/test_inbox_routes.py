"""The inbox and preference routes on Starlette: the core's route tests against real uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette_helpers import WAIT, ServerThread

from notify_starlette import routes
from notifycore import Notifications
from notifycore.testing.inbox_web import InboxClient, InboxRoutesContract


class UvicornClient:
    def __init__(self, app: Starlette) -> None:
        self.server = ServerThread(lambda thread: app).start()
        self.client = httpx.Client(base_url=self.server.url, timeout=httpx.Timeout(WAIT))

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, Any]:
        response = self.client.request(method, path, headers=headers or {}, content=body)
        assert response.headers["content-type"].startswith("application/json"), response.text
        return response.status_code, response.json()

    def close(self) -> None:
        self.client.close()
        self.server.stop()


class TestStarletteInboxRoutes(InboxRoutesContract):
    def make_client(
        self, notifications: Notifications, authenticate: Callable[[Any], Any]
    ) -> InboxClient:
        app = Starlette(
            routes=[Mount("/notifications", routes(notifications, authenticate=authenticate))]
        )
        return UvicornClient(app)
