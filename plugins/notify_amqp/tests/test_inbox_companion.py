"""RabbitMQ keeps no inboxes: a companion store does, and a clear error says so otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from notifycore import ConfigurationError, Event, Notifications, user_stream


def test_inboxes_need_a_companion_store_on_rabbitmq(rabbit_server: Any, tmp_path: Path) -> None:
    base = {"BACKEND": "amqp", "BACKEND_URL": rabbit_server.url}
    with pytest.raises(ConfigurationError, match="INBOX_BACKEND"):
        Notifications(config={**base, "INBOX": "on"}, environ={})
    config = {
        **base,
        "INBOX": "on",
        "INBOX_BACKEND": "sqlite",
        "INBOX_BACKEND_URL": f"sqlite:///{tmp_path / 'inbox.db'}",
    }
    notifications = Notifications(config=config, environ={})
    try:
        notifications.create_hub("all")
        notifications.set_preferences("bob", {"*": {"inbox": False}})
        event = Event(None, "x", "kept", recipients=["alice", "bob"])
        notifications.send(event)
        alice = notifications.inbox("alice")
        assert alice.is_unread(event.event_id) and alice.unread_count() == 1
        assert notifications.inbox("bob").unread_count() == 0
        alice.mark_read([event.event_id])
        # The changes go out on the RabbitMQ user stream.
        read = notifications.backend.read(user_stream("alice"))
        types = [json.loads(m.data)["event_type"] for m in read.messages]
        assert types == ["inbox.item", "inbox.read"]
    finally:
        notifications.close()
