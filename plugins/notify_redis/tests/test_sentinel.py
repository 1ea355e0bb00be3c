"""notify-redis on ``redis+sentinel://``: a master, a replica, three Sentinels (one setup
for the module).

The contract suite passes through Sentinel; a master killed mid-run is replaced by its
replica and producers, the worker and a follower go on by themselves (a producer's calls
fail with ``BackendUnavailable`` meanwhile); a master demoted while clients are on it
(its ``READONLY`` answers) sends them to the new one. With ``REDIS_WAIT_REPLICAS=1``
nothing acknowledged is lost; without, the test reports what was lost and asserts only
the recovery.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis_helpers import RedisContract, check_the_traffic_went_on, running

from notify_redis.backend import RedisBackend
from notify_redis.cluster_testing import RedisSentinelServers, Traffic
from notifycore.testing import wait_for


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelServers]:
    yield from running(RedisSentinelServers(tmp_path_factory.mktemp("sentinel")))


class TestRedisSentinelContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _sentinel(self, sentinel: RedisSentinelServers) -> None:
        self.url = sentinel.url()


def _failover(sentinel: RedisSentinelServers, traffic: Traffic) -> tuple[int, int]:
    """Kill the master mid-run, wait for the replica to take over and the old master to
    come back as its replica, then for the traffic to go on. Returns how many jobs had
    run and messages had been followed when the failover was over."""
    traffic.wait_stored(100)
    old = sentinel.current_master()
    sentinel.kill(old)
    sentinel.wait_for_failover(old)
    sentinel.restart(old)  # a replica again: WAIT 1 can be answered again
    counts = len(traffic.ran), len(traffic.followed)
    traffic.wait_stored(100)  # the producer's calls succeed again, by themselves
    return counts


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
def test_a_killed_master_is_followed_by_producers_worker_and_follower(
    sentinel: RedisSentinelServers, wait_replicas: int
) -> None:
    traffic = Traffic(
        sentinel.url(), REDIS_WAIT_REPLICAS=wait_replicas, REDIS_WAIT_TIMEOUT=0.5
    ).start()
    try:
        check_the_traffic_went_on(traffic, _failover(sentinel, traffic), "Sentinel", wait_replicas)
    finally:
        traffic.close()


def test_a_demoted_master_answering_readonly_sends_clients_to_the_new_one(
    sentinel: RedisSentinelServers,
) -> None:
    """``SENTINEL FAILOVER``: the old master lives on as a replica; the connections still
    on it get ``READONLY`` for a write, and go to the new master."""
    backend = RedisBackend(sentinel.url(), prefix=f"ro-{uuid.uuid4().hex[:6]}:", retries=10)
    try:
        backend.publish("s", b"before")
        backend.enqueue("q", b"job-1")
        old = sentinel.current_master()
        asked = sentinel.sentinels[0].command("SENTINEL", "FAILOVER", sentinel.service_name)
        assert asked in (True, "OK"), sentinel.logs()
        new = sentinel.wait_for_failover(old)

        def demoted() -> bool:
            role = old.command("ROLE")
            return isinstance(role, list) and role[0] == "slave"

        wait_for(demoted, 30, "the old master to demote")
        # The lane's connection is still on the old master: a READONLY, then the new one.
        backend.publish("s", b"after")
        backend.enqueue("q", b"job-2")
        owner = new.client()
        assert owner.xlen(backend.keys.stream("s").stream) == 2
        owner.close()
        jobs = [backend.reserve("q", visibility_timeout=30) for _ in range(2)]
        assert [j.payload for j in jobs if j is not None] == [b"job-1", b"job-2"]
    finally:
        backend.close()
