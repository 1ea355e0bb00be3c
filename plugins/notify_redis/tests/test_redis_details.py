"""Redis-specific behaviour beyond the contract suite."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notify_redis import scripts
from notify_redis.backend import RedisBackend, parse_id
from notifycore import InvalidStreamId


@pytest.fixture
def backend(redis_server: Any) -> Any:
    made = RedisBackend(redis_server.url, prefix=f"detail-{uuid.uuid4().hex[:6]}:")
    yield made
    made.close()


def test_a_retried_publish_is_recognised_and_not_added_twice(backend: RedisBackend) -> None:
    def publish(keys: list[str], args: list[Any]) -> Any:
        return backend.connection.evalsha(scripts.PUBLISH, keys, args)

    keys, args = backend._publish_call("s", [b"one", b"two"])
    first = publish(keys, args)
    again = publish(keys, args)  # what a retry after a lost reply sends
    assert again == first
    assert [m.data for m in backend.read("s").messages] == [b"one", b"two"]
    fresh = publish(keys, backend._publish_call("s", [b"one"])[1])
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
    backend.client.delete(backend.keys.stream("s").stream)
    assert backend.read("s", last).reset is True


def test_delayed_jobs_and_lost_groups(backend: RedisBackend) -> None:
    backend.enqueue("q", b"now")
    job = backend.reserve("q", visibility_timeout=30)
    assert job is not None
    backend.client.delete(backend.keys.queue("q").jobs)  # as after a restart without persistence
    backend.enqueue("q", b"after")
    again = backend.reserve("q", visibility_timeout=30)
    assert again is not None and again.payload == b"after"


def test_ack_many_of_thousands_of_jobs(backend: RedisBackend) -> None:
    backend.enqueue_many("q", [str(i).encode() for i in range(3000)])
    jobs = backend.reserve_many("q", 3000, visibility_timeout=60)
    assert len(jobs) == 3000
    assert backend.ack_many(jobs) == 3000
    assert backend.queue_length("q") == 0
    assert backend.client.hlen(backend.keys.queue("q").state) == 0, (
        "no lease or receipt left behind"
    )


def test_a_retried_enqueue_adds_one_job(backend: RedisBackend) -> None:
    keys = backend.keys.queue("q")
    args: list[Any] = ["publisher-1", "token-1", b"job"]
    first = backend.connection.evalsha(scripts.ENQUEUE, [keys.jobs, keys.publishers], args)
    # What a retry after a lost reply sends:
    again = backend.connection.evalsha(scripts.ENQUEUE, [keys.jobs, keys.publishers], args)
    assert again == first
    assert backend.queue_length("q") == 1


def test_async_reads_report_messages_lost_to_trimming(redis_server: Any) -> None:
    import asyncio

    small = RedisBackend(redis_server.url, prefix=f"trim-{uuid.uuid4().hex[:6]}:", stream_maxlen=2)
    first = small.publish("s", b"m0")

    async def scenario() -> Any:
        async def later() -> None:
            await asyncio.sleep(0.2)
            await small.apublish_many("s", [b"m1", b"m2", b"m3"])

        task = asyncio.create_task(later())
        batch = await small.aread("s", first, block=10)
        await task
        return batch

    batch = asyncio.run(scenario())
    small.close()
    assert [m.data for m in batch.messages] == [b"m2", b"m3"]
    assert batch.reset is True, "m1 was trimmed before it was read: the reader must be told"


def test_passwords_never_show_in_urls() -> None:
    from notify_redis.connection import safe_url as _safe

    assert _safe("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert "hunter2" not in _safe("redis://127.0.0.1:6379/0?password=hunter2")
    assert _safe("redis://u:pw@[::1]:6379/0") == "redis://u:***@[::1]:6379/0"
    assert repr(RedisBackend("redis://127.0.0.1:1/0?password=hunter2")).count("hunter2") == 0
