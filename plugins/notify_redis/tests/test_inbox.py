"""Inboxes on Redis: one hash slot per user, and an exact unread count across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any

from notify_redis.backend import RedisBackend
from notify_redis.inbox import InboxKeys
from notifycore import Event, Notifications

SENDER = textwrap.dedent(
    """
    import sys
    from notifycore import Event, Notifications
    config = {"BACKEND": "redis", "BACKEND_URL": sys.argv[1], "REDIS_PREFIX": sys.argv[2], "INBOX": "on"}
    n = Notifications(config=config, environ={})
    n.create_hub("all")
    inbox = n.inbox("alice")
    for i in range(30):
        e = Event(None, "x", f"{sys.argv[3]}-{i}", recipients=["alice", "bob"])
        n.send(e)
        if i % 2:
            inbox.mark_read([e.event_id])
        if i % 7 == 0:
            inbox.mark_all_read()
        if i % 5 == 0:
            inbox.archive([e.event_id])
    n.close()
    """
)


def slot(key: str) -> str:
    """The part of a key Redis Cluster hashes: its first {...} tag, else the whole key."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


def test_a_users_keys_share_one_hash_slot() -> None:
    for user in ("alice", "a{b}c", "}x", "{", "é"):
        keys = InboxKeys("notifycore:", user).all()
        assert len({slot(k) for k in keys}) == 1, keys
    assert slot(InboxKeys("p:", "alice").data) != slot(InboxKeys("p:", "bob").data)


def test_the_unread_count_stays_exact_with_several_processes(redis_server: Any) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
    processes = [
        subprocess.Popen([sys.executable, "-c", SENDER, redis_server.url, prefix, f"p{n}"], env=env)
        for n in range(3)
    ]
    try:
        for process in processes:
            assert process.wait(180) == 0
    finally:
        for process in processes:
            process.kill()
    config = {
        "BACKEND": "redis",
        "BACKEND_URL": redis_server.url,
        "REDIS_PREFIX": prefix,
        "INBOX": "on",
    }
    notifications = Notifications(config=config, environ={})
    try:
        for user in ("alice", "bob"):
            inbox = notifications.inbox(user)
            listed = inbox.list(limit=200)
            archived = inbox.list(limit=200, archived=True)
            assert len(listed) + len(archived) == 90
            assert inbox.unread_count() == sum(i.unread for i in listed)
        assert notifications.inbox("bob").unread_count() == 90
        notifications.create_hub("all")
        event = Event(None, "x", "one more", recipients=["bob"])
        notifications.send(event)
        assert notifications.inbox("bob").is_unread(event.event_id)
    finally:
        notifications.close()


def test_the_backend_offers_inboxes(redis_server: Any) -> None:
    backend = RedisBackend(redis_server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:")
    try:
        change = backend.inbox_add("u", "e1", b"{}", max_items=10)
        assert change.unread == 1 and backend.inbox_unread("u") == 1
    finally:
        backend.close()
