"""A web process follows as many streams as its users open, and still sends.

Each stream a process follows holds one Redis connection in a blocking read
(one per stream per process, however many browsers share it). redis-py 8
caps a client's pool at 100 connections by default: the 100th signed-in user
on ``me/stream`` left every route of the process, sending included, answering
503 "Too many connections". The backend's clients are not capped so.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from notifycore import Notifications

WAIT = 60.0  # the bound of every wait, never a pass/fail threshold
STREAMS = 150  # more than redis-py's default pool of 100 connections


def test_a_process_follows_more_streams_than_a_default_pool_holds(redis_server: Any) -> None:
    config = {
        "BACKEND": "redis",
        "REDIS_URL": redis_server.url,
        "REDIS_PREFIX": f"many-{uuid.uuid4().hex[:8]}:",
    }
    notifications = Notifications(config=config, environ={})
    subscriptions = []
    try:
        for number in range(STREAMS):
            subscriptions.append(notifications.fanout.subscribe(f"user:u{number}"))
        for number in range(STREAMS):
            notifications.backend.publish(f"user:u{number}", f'{{"n": {number}}}'.encode())
        for number, subscription in enumerate(subscriptions):
            batch = subscription.get(WAIT)
            assert batch is not None, f"stream {number} received its message"
            assert [m.data for m in batch.messages] == [f'{{"n": {number}}}'.encode()]

        async def async_waits() -> list[Any]:
            # As many blocking reads at once on the async client: each holds a connection.
            backend = notifications.backend
            last = [s.last_id for s in subscriptions]
            return await asyncio.gather(
                *(backend.aread(f"user:u{n}", last[n] or "0", block=1.0) for n in range(STREAMS))
            )

        assert [read.messages for read in asyncio.run(async_waits())] == [[]] * STREAMS
    finally:
        for subscription in subscriptions:
            subscription.close()
        notifications.close()
