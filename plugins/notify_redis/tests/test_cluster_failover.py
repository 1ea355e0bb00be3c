"""notify-redis on a Redis Cluster of three masters, each with a replica (one cluster for
the module): a worker process killed mid-job loses nothing; a master killed mid-run is
replaced by its replica while jobs are sent and run and a stream is followed. With
``REDIS_WAIT_REPLICAS=1`` nothing acknowledged is lost; without, the test reports what
was lost and asserts only the recovery.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from redis_helpers import (
    check_a_worker_killed_mid_job_loses_nothing,
    check_the_traffic_went_on,
    running,
)

from notify_redis.backend import RedisBackend
from notify_redis.cluster_testing import RedisClusterServers, Traffic
from notify_redis.connection import ReplicationTimeout
from notifycore import BackendUnavailable


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    yield from running(servers)


def test_a_worker_killed_mid_job_loses_nothing(
    cluster: RedisClusterServers, tmp_path: Path
) -> None:
    check_a_worker_killed_mid_job_loses_nothing(cluster.url, tmp_path)


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
def test_a_killed_master_is_replaced_and_producers_worker_and_follower_go_on(
    cluster: RedisClusterServers, wait_replicas: int
) -> None:
    traffic = Traffic(
        cluster.url,
        name=f"traffic-{wait_replicas}",
        REDIS_WAIT_REPLICAS=wait_replicas,
        REDIS_WAIT_TIMEOUT=0.5,
    ).start()
    try:
        traffic.wait_stored(100)
        victim = cluster.master_of_key(traffic.backend.keys.queue(traffic.name).jobs)
        assert victim is cluster.master_of_key(traffic.backend.keys.stream(traffic.name).stream)
        cluster.kill(victim)
        promoted = cluster.wait_for_failover(victim)
        cluster.restart(victim)  # back as the replica of the promoted master
        assert cluster.replicas(promoted) == [victim]
        before = len(traffic.ran), len(traffic.followed)
        traffic.wait_stored(100)  # the producer's calls succeed again, by themselves
        check_the_traffic_went_on(traffic, before, "Cluster", wait_replicas)
    finally:
        traffic.close()


def test_writes_wait_for_the_replicas_asked_for(cluster: RedisClusterServers) -> None:
    """REDIS_WAIT_REPLICAS: 1 (each master has one) acknowledges once the replica has the
    write; 2 cannot be met, so the call fails with ReplicationTimeout (a
    BackendUnavailable) although the write is on the master."""
    prefix = f"wait-{uuid.uuid4().hex[:6]}:"
    one = RedisBackend(cluster.url, prefix=prefix, wait_replicas=1, wait_timeout=5)
    two = RedisBackend(cluster.url, prefix=prefix, wait_replicas=2, wait_timeout=0.2)
    try:
        for i in range(10):
            name = f"name-{i}"
            one.publish(name, b"a")
            one.enqueue(name, b"job")
            one.enqueue(name, b"later", delay=60)
            replica = cluster.replicas(cluster.master_of_key(one.keys.stream(name).stream))[0]
            direct = replica.client()
            # Acknowledged: the replica has it already.
            assert direct.execute_command("READONLY") is True
            assert direct.xlen(one.keys.stream(name).stream) == 1
            assert direct.xlen(one.keys.queue(name).jobs) == 1
            assert direct.zcard(one.keys.queue(name).delayed) == 1
            direct.close()
            for call in (
                partial(two.publish, name, b"b"),
                partial(two.enqueue, name, b"job"),
                partial(two.enqueue, name, b"later", delay=60),
            ):
                with pytest.raises(ReplicationTimeout) as info:
                    call()
                assert isinstance(info.value, BackendUnavailable)
                assert "1 of the 2 replicas" in str(info.value)
        assert [m.data for m in one.read("name-0").messages] == [b"a", b"b"]
        assert one.queue_length("name-0") == 4
    finally:
        one.close()
        two.close()
