"""The lanes: each thread's own connection for the hot path (notify_redis.connection.Lane)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from notify_redis.backend import RedisBackend
from notifycore.testing import wait_for


@pytest.fixture
def backend(redis_server: Any) -> Iterator[RedisBackend]:
    made = RedisBackend(redis_server.url, prefix=f"lane-{uuid.uuid4().hex[:6]}:")
    yield made
    made.close()


def _connections(redis_server: Any) -> int:
    with redis.Redis.from_url(redis_server.url) as admin:
        return len(admin.client_list()) - 1  # without this one


def test_threads_that_end_give_their_connection_back(
    backend: RedisBackend, redis_server: Any
) -> None:
    before = _connections(redis_server)
    for _ in range(5):
        threads = [threading.Thread(target=backend.publish, args=("s", b"x")) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        gc.collect()
    assert len(backend.read("s").messages) == 40
    # The first round's eight connections went back to the pool and served the next rounds.
    wait_for(lambda: _connections(redis_server) - before <= 9, 30, "connections given back")


def test_a_script_the_server_lost_is_loaded_again(backend: RedisBackend) -> None:
    backend.publish("s", b"one")
    backend.enqueue("q", b"job")
    backend.client.script_flush()  # as after a restart
    assert [m.data for m in backend.read("s").messages] == [b"one"]
    backend.publish("s", b"two")
    job = backend.reserve("q", visibility_timeout=30)
    assert job is not None and job.payload == b"job"
    assert backend.ack(job) is True
    assert [m.data for m in backend.read("s").messages] == [b"one", b"two"]


def test_an_error_reply_in_a_pipelined_call_keeps_the_connection_in_step(
    backend: RedisBackend,
) -> None:
    key = f"{backend.prefix}text"
    backend.client.set(key, "not a number")
    (before,) = backend.connection.execute(("CLIENT", "ID"))
    with pytest.raises(redis.ResponseError):
        backend.connection.execute(("INCR", key), ("ECHO", b"after the error"))
    # The second reply was read with the first: the next call gets its own, on the same
    # connection (an error reply is an answer, not a broken connection).
    assert backend.connection.execute(("ECHO", b"next"), ("CLIENT", "ID")) == [b"next", before]


def _publish_in_child(backend: RedisBackend, done: Any) -> None:
    try:
        for i in range(50):
            backend.publish("s", f"child {i}".encode())
    finally:
        done.set()
    os._exit(0)


def test_a_forked_child_has_lanes_of_its_own(backend: RedisBackend) -> None:
    backend.publish("s", b"first")  # the parent's lane exists before the fork
    context = multiprocessing.get_context("fork")
    done = context.Event()
    child = context.Process(target=_publish_in_child, args=(backend, done))
    child.start()
    for i in range(50):  # at the same time, on the parent's own connection
        backend.publish("s", f"parent {i}".encode())
    child.join(60)
    assert child.exitcode == 0
    data = [m.data.decode() for m in backend.read("s").messages]
    assert len(data) == 101
    assert [d for d in data if d.startswith("child")] == [f"child {i}" for i in range(50)]
    assert [d for d in data if d.startswith("parent ")] == [f"parent {i}" for i in range(50)]


def test_the_resp2_protocol_reads_the_same(redis_server: Any) -> None:
    backend = RedisBackend(f"{redis_server.url}?protocol=2", prefix=f"r2-{uuid.uuid4().hex[:6]}:")
    try:
        first = backend.publish("s", b"one")
        later = threading.Timer(0.2, backend.publish, args=("s", b"two"))
        later.start()
        batch = backend.read_next("s", first, block=30)
        later.join()
        assert [m.data for m in batch.messages] == [b"two"] and not batch.reset
        assert [m.data for m in backend.read("s").messages] == [b"one", b"two"]
        backend.enqueue("q", b"job")
        job = backend.reserve("q", visibility_timeout=30)
        assert job is not None and job.payload == b"job" and backend.ack(job)
    finally:
        backend.close()
