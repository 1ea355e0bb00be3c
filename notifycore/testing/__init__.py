"""Helpers for testing applications and plugins built on notifycore.

``capture_events()`` records what is sent, like Flask-Mail's
``record_messages()``; ``BackendContract`` (in ``notifycore.testing.contract``)
is the test suite every backend passes; the ``pytest11`` plugin in
``notifycore.testing.pytest_plugin`` provides fixtures.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from notifycore.hookspecs import hookimpl
from notifycore.plugins import get_plugins

if TYPE_CHECKING:
    from notifycore.event import Event
    from notifycore.notifications import Notifications
    from notifycore.result import SendResult

__all__ = [
    "CapturedEvents",
    "await_for",
    "capture_events",
    "cut_short",
    "free_port",
    "leave_halfway",
    "wait_for",
]


class CapturedEvents(list["Event"]):
    """The events sent while capturing, in order; ``results`` holds their SendResults."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[SendResult] = []


class _Recorder:
    def __init__(self, notifications: Notifications | None, captured: CapturedEvents) -> None:
        self.notifications = notifications
        self.captured = captured

    @hookimpl
    def notifycore_after_send(
        self, notifications: Notifications, event: Event, result: SendResult
    ) -> None:
        if self.notifications is None or notifications is self.notifications:
            self.captured.append(event)
            self.captured.results.append(result)


@contextmanager
def capture_events(notifications: Notifications | None = None) -> Iterator[CapturedEvents]:
    """Record every event sent (by ``notifications`` only, when given) inside the block."""
    captured = CapturedEvents()
    plugins = get_plugins()
    recorder = _Recorder(notifications, captured)
    plugins.register(recorder, name=f"capture_events-{id(recorder)}")
    try:
        yield captured
    finally:
        plugins.unregister(recorder)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.02)


async def await_for(
    condition: Callable[[], bool], seconds: float, what: str, *, interval: float = 0.005
) -> None:
    """:func:`wait_for` in a running event loop: the loop runs on between the polls.

    ``interval=0`` polls at every turn of the loop, for a state that lasts one turn.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cut_short(method: str, path: str, body: dict[str, Any]) -> list[bytes]:
    """Raw HTTP/1.1 requests whose clients leave before the end of their body (for
    :func:`leave_halfway`): one declared 1000 bytes long that sends 10, one whose complete
    JSON ``body`` comes before its declared end, one whose chunked body has a whole chunk of
    the JSON and no last chunk. None may be acted on: the JSON that came is not the body."""
    data = json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    return [
        f"{head}Content-Length: 1000\r\n\r\n".encode() + data[:10],
        f"{head}Content-Length: {len(data) + 100}\r\n\r\n".encode() + data,
        f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
        + b"%x\r\n" % len(data)
        + data
        + b"\r\n",
    ]


def leave_halfway(base: str, request: bytes, timeout: float = 30.0) -> None:
    """Send the raw ``request`` to the server at ``base`` (``http://127.0.0.1:port``) and
    close the connection without reading an answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as client:
        client.sendall(request)
