"""Whether a send can run on an event loop: ``Notifications.nonblocking_send`` and ``Call.afunction``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from notifycore import Event, Notifications, PushConsumer, hookimpl
from notifycore.consumers import Consumer
from notifycore.plugins import get_plugins
from notifycore.web.calls import Call, Steps, arun, run


class Quiet(Consumer):
    def consume(self, event: Event) -> None:
        pass


class QuietNonblocking(Quiet):
    nonblocking = True


class SyncMetric:
    @hookimpl
    def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
        pass


class AsyncMetric:
    @hookimpl
    async def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
        pass


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    """A pushing hub; the suite's test plugin (``tiny``, a sync ``after_send``) off meanwhile."""
    plugins = get_plugins()
    tiny = plugins.pm.get_plugin("tiny")
    if tiny is not None:
        plugins.unregister(name="tiny")
    notes = Notifications(config={"BACKEND": "memory"}, environ={})
    notes.create_hub("alerts").register_consumer(PushConsumer())
    try:
        yield notes
    finally:
        notes.close()
        if tiny is not None:
            plugins.register(tiny, "tiny")


def test_push_consumers_alone_send_without_blocking(notifications: Notifications) -> None:
    assert PushConsumer.nonblocking and not Consumer.nonblocking
    assert notifications.nonblocking_send


def test_a_sync_inline_consumer_can_block(notifications: Notifications) -> None:
    hub = notifications.create_hub("mail")
    hub.register_consumer(Quiet(), name="quiet")
    assert not notifications.nonblocking_send
    hub.deregister_consumer("quiet")
    assert notifications.nonblocking_send
    hub.register_consumer(QuietNonblocking(), name="declared")
    assert notifications.nonblocking_send


def test_a_plain_function_consumer_can_block(notifications: Notifications) -> None:
    notifications.create_hub("fn").register_consumer(lambda event: None, name="fn")
    assert not notifications.nonblocking_send


def test_a_queued_consumer_never_blocks_the_sender(notifications: Notifications) -> None:
    # Its job goes through the backend's async face (a worker thread for a blocking client).
    notifications.create_hub("jobs").register_consumer(Quiet(), name="later", mode="queued")
    assert notifications.nonblocking_send


def test_a_sync_send_hook_can_block(notifications: Notifications) -> None:
    plugins = notifications.plugins
    plugins.register(SyncMetric(), "test-sync-metric")
    try:
        assert not notifications.nonblocking_send
    finally:
        plugins.unregister(name="test-sync-metric")
    assert notifications.nonblocking_send
    plugins.register(AsyncMetric(), "test-async-metric")
    try:
        assert notifications.nonblocking_send
    finally:
        plugins.unregister(name="test-async-metric")


def test_arun_awaits_the_async_twin_on_the_loop_and_run_ignores_it() -> None:
    def sync_where() -> tuple[str, int]:
        return "sync", threading.get_ident()

    async def async_where() -> tuple[str, int]:
        return "twin", threading.get_ident()

    def steps() -> Steps[tuple[str, int]]:
        answer: tuple[str, int] = yield Call(sync_where, afunction=async_where)
        return answer

    here = threading.get_ident()
    assert run(steps()) == ("sync", here)

    async def main() -> tuple[str, int]:
        return await arun(steps())

    assert asyncio.run(main()) == ("twin", here)
