"""Inboxes on Redis: one hash slot per user, and an exact unread count across processes."""

from __future__ import annotations

import uuid
from typing import Any

from notify_redis.inbox import InboxKeys
from notifycore.testing.inbox import check_unread_count_across_processes


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
    check_unread_count_across_processes(
        {"BACKEND": "redis", "BACKEND_URL": redis_server.url, "REDIS_PREFIX": prefix, "INBOX": "on"}
    )
