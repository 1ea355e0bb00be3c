"""Helpers for testing applications and plugins built on notifycore.

``capture_events()`` records what is sent, like Flask-Mail's
``record_messages()``; ``BackendContract`` (in ``notifycore.testing.contract``)
is the test suite every backend passes; the ``pytest11`` plugin in
``notifycore.testing.pytest_plugin`` provides fixtures.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from notifycore.hookspecs import hookimpl
from notifycore.plugins import get_plugins

if TYPE_CHECKING:
    from notifycore.event import Event
    from notifycore.notifications import Notifications
    from notifycore.result import SendResult

__all__ = ["CapturedEvents", "await_for", "capture_events", "free_port", "wait_for"]


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
