"""Redis-specific behaviour beyond the contract suite."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notify_redis.backend import RedisBackend, parse_id
from notifycore import InvalidStreamId


@pytest.fixture
def backend(redis_server: Any) -> Any:
    made = RedisBackend(redis_server.url, prefix=f"detail-{uuid.uuid4().hex[:6]}:")
    yield made
    made.close()


def test_a_retried_publish_is_recognised_and_not_added_twice(backend: RedisBackend) -> None:
    args = backend._publish_args([b"one", b"two"])
    keys = backend._skeys("s")
    first = backend._publish(keys=keys, args=args)
    again = backend._publish(keys=keys, args=args)  # what a retry after a lost reply sends
    assert again == first
    assert [m.data for m in backend.read("s").messages] == [b"one", b"two"]
    fresh = backend._publish(keys=keys, args=backend._publish_args([b"one"]))
    assert fresh != first and len(backend.read("s").messages) == 3


def test_stream_ids_are_redis_ids(backend: RedisBackend) -> None:
    first = backend.publish("s", b"x")
    assert parse_id(first) > (0, 0)
    assert parse_id("1700000000000") == (1700000000000, 0)
    for bad in ("abc", "1-x", "-1", ""):
        with pytest.raises(InvalidStreamId):
            backend.read("s", bad)


def test_a_reader_of_a_vanished_stream_is_told(backend: RedisBackend) -> None:
    last = backend.publish("s", b"x")
    backend.client.delete(backend._skey("s"))
    assert backend.read("s", last).reset is True


def test_delayed_jobs_and_lost_groups(backend: RedisBackend) -> None:
    backend.enqueue("q", b"now")
    job = backend.reserve("q", visibility_timeout=30)
    assert job is not None
    backend.client.delete(backend._qkeys("q")[0])  # as after a restart without persistence
    backend.enqueue("q", b"after")
    again = backend.reserve("q", visibility_timeout=30)
    assert again is not None and again.payload == b"after"
