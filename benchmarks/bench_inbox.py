"""The inbox: a page of 50 and the unread count, per request, as an inbox grows, and send() with it.

Each latency row times one ``inbox.list(limit=50)`` (or ``unread_count()``)
call through ``notifications.inbox(user)``, many times, and reports the p50
and p99 (µs); its baseline is the same call on a small inbox (1,000 items), so a
ratio near 100% means the cost stays flat as the inbox grows to 100,000 items.
The *10,000 users* rows ask a random user each time among 10,000 who hold 10
items each. The unread count is a counter kept with every change (SQLite: one
primary-key row; Redis: ``ZCARD``), never a scan. The last row sends an event
to one recipient with the inbox on (the item kept, its change published, the
recipient's preferences read) beside the same send with ``INBOX = "off"``,
on SQLite, the default; the one after it adds a daily ``DigestConsumer``
registered inline, so that collecting the event for the user's window is part
of ``send()`` (a queued digest would add one enqueue instead).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import Measurement, best_rate, percentile_ms
from notifycore import DigestConsumer, Event, Notifications, PushConsumer

NAME = "Inbox: list and unread count as inboxes grow, send() with the inbox"
DATA = b'{"event_id":"x","event_type":"comment","title":"' + b"x" * 150 + b'"}'


def _fill(store: Any, user: str, count: int) -> None:
    for n in range(count):
        store.inbox_add(user, f"{user}-{n}", DATA, max_items=count + 1, max_age=None)


def _latencies(call: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _rows(
    label: str, notifications: Notifications, big: int, users: int, calls: int
) -> list[Measurement]:
    store = notifications.centre.store
    _fill(store, "small", 1_000)
    _fill(store, "big", big)
    for u in range(users):
        _fill(store, f"u{u}", 10)
    small_inbox, big_inbox = notifications.inbox("small"), notifications.inbox("big")
    rows = []
    for what, small_call, big_call, many_call in (
        (
            "list 50",
            lambda: small_inbox.list(limit=50),
            lambda: big_inbox.list(limit=50),
            lambda: notifications.inbox(f"u{random.randrange(users)}").list(limit=50),
        ),
        (
            "unread count",
            small_inbox.unread_count,
            big_inbox.unread_count,
            lambda: notifications.inbox(f"u{random.randrange(users)}").unread_count(),
        ),
    ):
        base = _latencies(small_call, calls)
        grown = _latencies(big_call, calls)
        many = _latencies(many_call, calls)
        for q in (50, 99):
            baseline = percentile_ms(base, q) * 1000
            rows.append(
                Measurement(
                    f"{label} {what}, {big:,} items, p{q}",
                    percentile_ms(grown, q) * 1000,
                    "1,000 items",
                    baseline,
                    "µs",
                    "lower is better",
                )
            )
            rows.append(
                Measurement(
                    f"{label} {what}, {users:,} users, p{q}",
                    percentile_ms(many, q) * 1000,
                    "1,000 items, one user",
                    baseline,
                    "µs",
                    "lower is better",
                )
            )
    return rows


def _send_rows(directory: str, count: int) -> list[Measurement]:
    rates = {}
    for mode in ("on", "digest", "off"):
        path = os.path.join(directory, f"send-{mode}.db")
        inbox = "off" if mode == "off" else "on"
        config = {"BACKEND": "sqlite", "BACKEND_URL": f"sqlite:///{path}", "INBOX": inbox}
        notifications = Notifications(config=config, environ={})
        hub = notifications.create_hub("Bench")
        hub.register_consumer(PushConsumer(), name="push")
        if mode != "off":  # one entry: the send reads it, as it would a real user's
            notifications.set_preferences("alice", {"digest": {"mail": False}})
        if mode == "digest":  # inline: collecting the event is part of send()
            daily = DigestConsumer(lambda digest: None, notifications, every=86_400)
            hub.register_consumer(daily, name="mail.digest")

        def send(n: int, notifications: Notifications = notifications) -> None:
            for _ in range(n):
                notifications.send(Event(None, "comment", "hello", recipients=["alice"]))

        rates[mode] = best_rate(send, count)
        notifications.close()
    return [
        Measurement(
            "SQLite send() to one recipient, inbox and preferences on",
            rates["on"],
            'INBOX = "off"',
            rates["off"],
            "sends/s",
        ),
        Measurement(
            "SQLite send() to one recipient, inbox, preferences and a daily digest (inline)",
            rates["digest"],
            'INBOX = "off", no digest',
            rates["off"],
            "sends/s",
        ),
    ]


def run(quick: bool = False) -> list[Measurement]:
    big, users, calls = (10_000, 1_000, 200) if quick else (100_000, 10_000, 1_000)
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{os.path.join(directory, 'inbox.db')}"
        notifications = Notifications(
            config={"BACKEND": "sqlite", "BACKEND_URL": url, "INBOX": "on"}, environ={}
        )
        try:
            rows += _rows("SQLite", notifications, big, users, calls)
        finally:
            notifications.close()
        rows += _send_rows(directory, 300 if quick else 2_000)
    try:
        from benchmarks.bench_redis import redis_server
    except ImportError:  # notify-redis is not installed: the SQLite rows only
        return rows
    with redis_server() as server:
        config = {"BACKEND": "redis", "BACKEND_URL": server.url, "INBOX": "on"}
        notifications = Notifications(config=config, environ={})
        try:
            rows += _rows("Redis", notifications, big, users, calls)
        finally:
            notifications.close()
    return rows
