"""Test helpers: real uvicorn servers on 127.0.0.1 in background threads, SSE parsing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

import notify_starlette
from notifycore import Notifications, PushConsumer
from notifycore.testing import free_port

WAIT = 30.0  # the bound of every wait in these tests, never a pass/fail threshold
TOKENS = {"t-alice": {"id": "alice"}, "t-bob": {"id": "bob"}}
PREFIX = "/n"


def make_notifications(**config: Any) -> Notifications:
    notifications = Notifications(config={"BACKEND": "memory", **config}, environ={})
    hub = notifications.create_hub("alerts")
    hub.register_consumer(PushConsumer(per_recipient=True))
    return notifications


def token_auth(request: Any) -> Any:
    """The app's authenticate: a principal for a known Bearer (or allowed query) token."""
    token = request.state.token or request.query_params.get("token")  # naive on purpose
    return TOKENS.get(token) if token else None


class ServerThread:
    """One uvicorn server in a thread; stop() sets should_exit and joins it."""

    def __init__(self, app_factory: Callable[[ServerThread], Starlette], **options: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.config = uvicorn.Config(
            app_factory(self),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="on",
            **options,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the server did not stop"


@dataclass
class Served:
    notifications: Notifications
    server: ServerThread

    @property
    def base(self) -> str:
        return self.server.url + PREFIX

    @property
    def ws(self) -> str:
        return self.server.ws_url + PREFIX + "/ws"


@dataclass
class Serve:
    """``serve(notifications, **routes_options)``: an app with the routes, running."""

    servers: list[ServerThread] = field(default_factory=list)

    def __call__(
        self,
        notifications: Notifications,
        *,
        server_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Served:
        # No heartbeats unless asked: they would keep a stuck read from ever timing out.
        options.setdefault("heartbeat", 0)

        def factory(thread: ServerThread) -> Starlette:
            return Starlette(
                routes=[Mount(PREFIX, app=notify_starlette.routes(notifications, **options))],
                lifespan=notify_starlette.lifespan(
                    notifications, should_exit=lambda: thread.server.should_exit, poll=0.05
                ),
            )

        # A bounded grace period unless a test asks otherwise: a stuck stream cannot hang the run.
        opts = {"timeout_graceful_shutdown": WAIT, **(server_options or {})}
        server = ServerThread(factory, **opts)
        self.servers.append(server.start())
        return Served(notifications, server)


def sse_frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Parse an SSE body into frames: field name to value (``data`` lines joined)."""
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if current:
                yield current
            current = {}
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        name = name or "comment"
        current[name] = current[name] + "\n" + value if name in current else value
    if current:
        yield current


class SSE:
    """A streaming SSE response read frame by frame (comments skipped unless asked)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.frames = sse_frames(response)

    def next(self, *, comments: bool = False) -> dict[str, str]:
        for frame in self.frames:
            if "comment" in frame and not comments:
                continue
            return frame
        raise EOFError("the stream ended")

    def events(self, count: int) -> list[dict[str, str]]:
        return [self.next() for _ in range(count)]


def event(title: str, *recipients: str, **extra: Any) -> dict[str, Any]:
    return {"event_type": "alert", "title": title, "recipients": list(recipients), **extra}


def data_of(frame: dict[str, str]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(frame["data"])
    return parsed
