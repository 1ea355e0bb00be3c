"""The fixtures notifycore publishes through its pytest11 entry point."""

from __future__ import annotations

import pytest

from notifycore import ConsumerError, Event, Notifications
from notifycore.backends.memory import MemoryBackend
from notifycore.testing import CapturedEvents


def test_notifications_fixture_is_memory_with_the_raise_policy(
    notifications: Notifications,
) -> None:
    assert isinstance(notifications.backend, MemoryBackend)
    hub = notifications.create_hub("H")

    @hub.register_consumer(name="bad")
    def bad(event: Event) -> None:
        raise RuntimeError("surfaced")

    with pytest.raises(ConsumerError):
        notifications.send(Event(None, "t"))


def test_captured_events_fixture(
    notifications: Notifications, captured_events: CapturedEvents
) -> None:
    sent = Event(None, "t", "hello")
    notifications.send(sent)
    assert list(captured_events) == [sent]
    assert captured_events.results[0].hubs == []
