"""POST /events sends on the event loop only when nothing in the send can block it.

With only ``nonblocking`` consumers (PushConsumer) and async send hooks, the
send runs on the server's loop (``asend``): no hand-off to a worker thread.
A sync consumer or hook anywhere sends the whole event from a worker
thread instead, and a blocking backend's publish never runs on the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette_helpers import Serve, event, make_notifications

from notifycore import Event, Notifications, PushConsumer, hookimpl
from notifycore.consumers import Consumer
from notifycore.plugins import get_plugins


class Where(Consumer):
    """Records the thread each delivery ran in."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def consume(self, event: Event) -> None:
        self.threads.append(threading.get_ident())


class NonblockingWhere(Where):
    nonblocking = True


class SyncBeforeSend:
    def __init__(self) -> None:
        self.threads: list[int] = []

    @hookimpl
    def notifycore_before_send(self, notifications: Notifications, event: Event) -> None:
        self.threads.append(threading.get_ident())


class AsyncBeforeSend:
    def __init__(self) -> None:
        self.threads: list[int] = []

    @hookimpl
    async def notifycore_before_send(self, notifications: Notifications, event: Event) -> None:
        self.threads.append(threading.get_ident())


@pytest.fixture
def without_sync_hooks() -> Iterator[None]:
    """The suite's installed test plugin (``tiny``) has a sync ``after_send``: off meanwhile."""
    plugins = get_plugins()
    tiny = plugins.pm.get_plugin("tiny")
    if tiny is not None:
        plugins.unregister(name="tiny")
    try:
        assert plugins.nonblocking_send_hooks
        yield
    finally:
        if tiny is not None:
            plugins.register(tiny, "tiny")


def post(client: httpx.Client, base: str) -> None:
    response = client.post(base + "/events", json=event("hello"))
    assert response.status_code == 202, response.text


@pytest.mark.usefixtures("without_sync_hooks")
def test_a_send_that_cannot_block_runs_on_the_loop(serve: Serve, client: httpx.Client) -> None:
    notifications = make_notifications()
    watcher = NonblockingWhere()
    notifications.create_hub("watched").register_consumer(watcher)
    hook = AsyncBeforeSend()
    notifications.plugins.register(hook, "test-async-before-send")
    try:
        assert notifications.nonblocking_send
        served = serve(notifications)
        post(client, served.base)
        loop_thread = served.server.thread.ident
        assert watcher.threads == [loop_thread]
        assert hook.threads == [loop_thread]
    finally:
        notifications.plugins.unregister(name="test-async-before-send")
        notifications.close()


@pytest.mark.usefixtures("without_sync_hooks")
def test_a_sync_consumer_sends_from_a_worker_thread(serve: Serve, client: httpx.Client) -> None:
    notifications = make_notifications()
    watcher, blocking = NonblockingWhere(), Where()
    notifications.create_hub("watched").register_consumer(watcher)
    notifications.create_hub("blocking").register_consumer(blocking)
    try:
        assert not notifications.nonblocking_send
        served = serve(notifications)
        post(client, served.base)
        loop_thread = served.server.thread.ident
        assert len(blocking.threads) == 1 and blocking.threads[0] != loop_thread
        # The whole send went to the thread: the nonblocking consumer too.
        assert watcher.threads == blocking.threads
    finally:
        notifications.close()


@pytest.mark.usefixtures("without_sync_hooks")
def test_a_sync_send_hook_sends_from_a_worker_thread(serve: Serve, client: httpx.Client) -> None:
    notifications = make_notifications()
    hook = SyncBeforeSend()
    notifications.plugins.register(hook, "test-sync-before-send")
    try:
        assert not notifications.nonblocking_send
        served = serve(notifications)
        post(client, served.base)
        assert len(hook.threads) == 1 and hook.threads[0] != served.server.thread.ident
    finally:
        notifications.plugins.unregister(name="test-sync-before-send")
        notifications.close()


@pytest.mark.usefixtures("without_sync_hooks")
def test_a_blocking_backend_publishes_off_the_loop(
    serve: Serve, client: httpx.Client, tmp_path: Path
) -> None:
    notifications = Notifications(
        config={"BACKEND": "sqlite", "BACKEND_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"},
        environ={},
    )
    notifications.create_hub("alerts").register_consumer(PushConsumer())
    backend: Any = notifications.backend
    publish = backend.publish
    threads: list[int] = []

    def recording_publish(stream: str, data: bytes) -> str:
        threads.append(threading.get_ident())
        return str(publish(stream, data))

    backend.publish = recording_publish
    try:
        assert notifications.nonblocking_send  # PushConsumer awaits apublish: a worker thread
        served = serve(notifications)
        post(client, served.base)
        assert len(threads) == 1 and threads[0] != served.server.thread.ident
        assert len(notifications.backend.read("event-hub-alerts").messages) == 1
    finally:
        notifications.close()
