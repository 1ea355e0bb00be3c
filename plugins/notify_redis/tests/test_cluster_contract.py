"""The backend contract on a real Redis Cluster of three masters (``redis+cluster://``).

One cluster for the module. Besides the contract: the keys of one stream or queue share
a hash slot, different names spread over the masters, and a ``MOVED`` after a slot
moved to another master is followed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis_helpers import RedisContract, running

from notify_redis.backend import RedisBackend
from notify_redis.cluster_testing import RedisClusterServers, RedisNode
from notifycore import Event, Notifications
from notifycore.worker import Worker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    yield from running(RedisClusterServers(tmp_path_factory.mktemp("cluster"), masters=3))


class TestRedisClusterContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _cluster(self, cluster: RedisClusterServers) -> None:
        self.url = cluster.url


def _myid(node: RedisNode) -> str:
    found = node.command("CLUSTER", "MYID")
    assert isinstance(found, str), node.log_tail()
    return found


@pytest.fixture
def backend(cluster: RedisClusterServers) -> Iterator[RedisBackend]:
    made = RedisBackend(cluster.url, prefix=f"c-{uuid.uuid4().hex[:6]}:")
    yield made
    made.close()


def test_the_keys_of_one_stream_or_queue_share_a_slot_and_names_spread(
    backend: RedisBackend, cluster: RedisClusterServers
) -> None:
    for i in range(30):
        backend.publish(f"stream-{i}", b"x")
        backend.enqueue(f"queue-{i}", b"job")
        backend.enqueue(f"queue-{i}", b"later", delay=60)
        job = backend.reserve(f"queue-{i}", visibility_timeout=60)
        assert job is not None
        assert backend.dead_letter(job, error="boom")
    client = backend.client
    holders = set()
    for i in range(30):
        stream = backend.keys.stream(f"stream-{i}")
        queue = backend.keys.queue(f"queue-{i}")
        stream_slots = {client.keyslot(k) for k in (stream.stream, stream.meta, stream.publishers)}
        queue_keys = [queue.jobs, queue.leases, queue.state, queue.delayed, queue.delayed_data]
        queue_slots = {client.keyslot(k) for k in [*queue_keys, queue.publishers, queue.dead]}
        assert len(stream_slots) == 1 and len(queue_slots) == 1
        holders.add(cluster.master_of_key(stream.stream).address)
        holders.add(cluster.master_of_key(queue.jobs).address)
        # The keys are really there, on the master that serves the slot.
        owner = cluster.master_of_key(queue.jobs).client()
        assert owner.exists(queue.jobs, queue.delayed, queue.dead) == 3
        owner.close()
    assert holders == {m.address for m in cluster.masters()}


def test_a_slot_moved_to_another_master_is_followed(
    backend: RedisBackend, cluster: RedisClusterServers
) -> None:
    """MOVED: the slot of a queue and a stream migrates while the backend uses it."""
    name = f"moving-{uuid.uuid4().hex[:6]}"
    backend.publish(name, b"before")
    backend.enqueue(name, b"job-1")
    keys = backend.keys.queue(name)
    stream_key = backend.keys.stream(name).stream
    assert backend.client.keyslot(keys.jobs) == backend.client.keyslot(stream_key)
    slot = backend.client.keyslot(keys.jobs)
    source = cluster.master_of_key(keys.jobs)
    target = next(m for m in cluster.masters() if m is not source)
    source_id = _myid(source)
    target_id = _myid(target)
    assert target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id) is not None
    assert source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id) is not None
    moved: list[str] = []
    while True:
        batch = source.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        assert isinstance(batch, list)
        if not batch:
            break
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *batch)
        moved += batch
    assert keys.jobs in moved and stream_key in moved
    for node in cluster.masters():
        node.command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    # The backend still believes the old master serves the slot: MOVED, then the new one.
    assert [m.data for m in backend.read(name).messages] == [b"before"]
    backend.publish(name, b"after")
    backend.enqueue(name, b"job-2")
    got = [backend.reserve(name, visibility_timeout=30) for _ in range(2)]
    assert [j.payload for j in got if j is not None] == [b"job-1", b"job-2"]
    assert all(j is not None and backend.ack(j) for j in got)
    assert [m.data for m in backend.read(name).messages] == [b"before", b"after"]
    owner = target.client()
    assert owner.xlen(stream_key) == 2
    owner.close()


def test_a_slot_half_way_through_a_migration_is_followed_with_asking(
    cluster: RedisClusterServers,
) -> None:
    """ASK: the slot is still MIGRATING (the old master serves it) but the stream's keys
    are on the new master already; the hot path sends ASKING there."""
    prefix = f"ask-{uuid.uuid4().hex[:6]}:"
    backend = RedisBackend(cluster.url, prefix=prefix, stream_maxlen=2)
    try:
        name = f"asked-{uuid.uuid4().hex[:6]}"
        for data in (b"one", b"two", b"three"):  # trimmed: the meta key exists too
            backend.publish(name, data)
        keys = backend.keys.stream(name)
        slot = backend.client.keyslot(keys.stream)
        source = cluster.master_of_key(keys.stream)
        target = next(m for m in cluster.masters() if m is not source)
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", _myid(source))
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", _myid(target))
        batch = source.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        assert isinstance(batch, list)
        # The slot may hold other tests' keys too (the cluster serves the whole module).
        ours = [key for key in batch if key.startswith(prefix)]
        assert sorted(ours) == sorted([keys.stream, keys.meta, keys.publishers])
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *batch)
        try:
            read = backend.read(name)
            assert [m.data for m in read.messages] == [b"two", b"three"]
            backend.publish(name, b"four")
            later = backend.read(name, read.messages[-1].id, block=5)
            assert [m.data for m in later.messages] == [b"four"]
        finally:
            for node in cluster.masters():
                node.command("CLUSTER", "SETSLOT", slot, "NODE", _myid(target))
        owner = target.client()
        assert owner.xlen(keys.stream) == 2  # written on the new master
        owner.close()
        assert [m.data for m in backend.read(name).messages] == [b"three", b"four"]
    finally:
        backend.close()


def test_a_worker_serving_queues_on_every_master_runs_them_all(
    cluster: RedisClusterServers,
) -> None:
    """One worker, six queues spread over the three masters: each queue is reserved
    with a script of its own slot, never a command across slots."""
    prefix = f"many-{uuid.uuid4().hex[:6]}:"
    n = Notifications(
        config={"BACKEND": "redis", "REDIS_URL": cluster.url, "REDIS_PREFIX": prefix},
        environ={},
    )
    try:
        ran: list[str] = []
        hub = n.create_hub("Many")
        queues = [f"queue-{i}" for i in range(6)]
        for queue in queues:
            hub.register_consumer(
                lambda e: ran.append(e.title), name=f"c-{queue}", mode="queued", queue=queue
            )
        keyspace = RedisBackend(cluster.url, prefix=prefix).keys
        masters = {cluster.master_of_key(keyspace.queue(q).jobs).address for q in queues}
        assert len(masters) >= 2, "the queues should spread over the masters"
        events = [Event(None, "t", f"event {i}") for i in range(10)]
        n.send_many(events)
        assert Worker(n, queues).drain() == 60
        assert sorted(ran) == sorted(e.title for e in events for _ in queues)
        assert all(n.backend.queue_length(q) == 0 for q in queues)
    finally:
        n.close()
