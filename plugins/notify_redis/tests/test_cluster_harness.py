"""The multi-node Redis harnesses (notify_redis.cluster_testing) with redis-py alone.

One Redis Cluster (3 masters, 1 replica each) and one Sentinel setup (master, replica,
3 Sentinels) for the whole module: they form, spread keys, fail over and recover, and
redis-py's ``RedisCluster`` and ``Sentinel.master_for`` follow them.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from notify_redis.cluster_testing import (
    RedisClusterServers,
    RedisNode,
    RedisSentinelServers,
    parse_cluster_nodes,
)
from notifycore.testing import wait_for


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisClusterServers, RedisSentinelServers]]:
    """Both setups, started side by side."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    sentinel = RedisSentinelServers(tmp_path_factory.mktemp("sentinel"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(cluster.start), pool.submit(sentinel.start)]
    errors = [str(f.exception()) for f in futures if f.exception() is not None]
    if errors:
        cluster.shutdown()
        sentinel.shutdown()
        pytest.fail("\n".join(errors), pytrace=False)
    yield cluster, sentinel
    cluster.shutdown()
    sentinel.shutdown()


@pytest.fixture(scope="module")
def cluster(servers: tuple[RedisClusterServers, RedisSentinelServers]) -> RedisClusterServers:
    return servers[0]


@pytest.fixture(scope="module")
def sentinel(servers: tuple[RedisClusterServers, RedisSentinelServers]) -> RedisSentinelServers:
    return servers[1]


def _cluster_client(cluster: RedisClusterServers) -> RedisCluster:
    # The harness URL names every node; this is how a backend would read it.
    scheme, _, rest = cluster.url.partition("://")
    assert scheme == "redis+cluster" and rest.endswith("/")
    nodes = [
        ClusterNode(h, int(p)) for h, _, p in (a.rpartition(":") for a in rest[:-1].split(","))
    ]
    return RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=5)


# --- Redis Cluster -----------------------------------------------------------------------


def test_the_cluster_forms_with_three_masters_each_with_a_replica(
    cluster: RedisClusterServers,
) -> None:
    assert len(cluster.nodes) == 6
    masters = cluster.masters()
    assert len(masters) == 3
    for master in masters:
        assert len(cluster.replicas(master)) == 1
    for node in cluster.nodes:
        info = node.command("CLUSTER", "INFO")
        assert isinstance(info, str)
        assert "cluster_state:ok" in info
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:6" in info
    # Every node names only loopback addresses, so MOVED answers stay on 127.0.0.1.
    text = cluster.nodes[0].command("CLUSTER", "NODES")
    assert isinstance(text, str)
    assert set(parse_cluster_nodes(text).roles) == {n.address for n in cluster.nodes}
    assert cluster.url.count(",") == 5 and cluster.url.startswith("redis+cluster://127.0.0.1:")


def test_keys_spread_across_the_masters_and_hash_tags_keep_them_together(
    cluster: RedisClusterServers,
) -> None:
    client = _cluster_client(cluster)
    try:
        for i in range(300):
            client.set(f"spread:{i}", i)
        for i in range(20):
            client.set(f"{{one-queue}}:part{i}", i)
        holders = {cluster.master_of_key(f"spread:{i}").address for i in range(300)}
        assert holders == {m.address for m in cluster.masters()}
        counted = 0
        for master in cluster.masters():
            keys = master.client().keys("spread:*")
            assert keys, f"no key on {master.address}"
            counted += len(keys)
        assert counted == 300
        tagged = {cluster.master_of_key(f"{{one-queue}}:part{i}").address for i in range(20)}
        assert len(tagged) == 1
        # One slot for all of them: a multi-key command across them is allowed.
        assert client.mget([f"{{one-queue}}:part{i}" for i in range(20)]) == [
            str(i) for i in range(20)
        ]
    finally:
        client.close()


def test_a_killed_master_is_replaced_by_its_replica_and_the_client_follows(
    cluster: RedisClusterServers,
) -> None:
    client = _cluster_client(cluster)
    try:
        key = "failover:kept"
        victim = cluster.master_of_key(key)
        replica = cluster.replicas(victim)[0]
        direct = victim.client()
        direct.set(key, "before")
        # Replication is asynchronous: wait until the replica has it before the crash.
        assert direct.execute_command("WAIT", 1, 10_000) == 1
        direct.close()
        assert client.get(key) == "before"

        cluster.kill(victim)
        promoted = cluster.wait_for_failover(victim)
        assert promoted is replica
        assert promoted in cluster.masters() and victim not in cluster.masters()
        assert cluster.master_of_key(key) is promoted

        # The client made before the crash finds the new master by itself.
        def reads_through() -> bool:
            try:
                return client.get(key) == "before"
            except (redis.ConnectionError, redis.exceptions.ClusterDownError):
                return False

        wait_for(reads_through, 30, "the cluster client to follow the failover")
        client.set(key, "after")
        assert promoted.client().get(key) == "after"

        # The old master comes back as a replica of the node that replaced it.
        cluster.restart(victim)
        assert cluster.replicas(promoted) == [victim]
        assert len(cluster.masters()) == 3
        assert client.get(key) == "after"
    finally:
        client.close()


# --- Redis Sentinel ----------------------------------------------------------------------


def _sentinel_client(sentinel: RedisSentinelServers) -> tuple[Sentinel, str, int]:
    scheme, _, rest = sentinel.url(db=0).partition("://")
    hosts, service, db = rest.split("/")
    assert scheme == "redis+sentinel" and service == sentinel.service_name and db == "0"
    addresses = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in hosts.split(","))]
    assert addresses == sentinel.sentinel_addresses
    return Sentinel(addresses, socket_timeout=2), service, int(db)


def test_the_sentinels_watch_the_master_and_know_the_replica_and_each_other(
    sentinel: RedisSentinelServers,
) -> None:
    finder, service, _ = _sentinel_client(sentinel)
    master, replica = sentinel.data_nodes
    assert finder.discover_master(service) == ("127.0.0.1", master.port)
    assert finder.discover_slaves(service) == [("127.0.0.1", replica.port)]
    for watcher in sentinel.sentinels:
        others = watcher.client().execute_command("SENTINEL", "SENTINELS", service)
        assert len(others) == 2
    assert sentinel.current_master() is master


def test_sentinel_failover_is_followed_by_master_for(sentinel: RedisSentinelServers) -> None:
    finder, service, db = _sentinel_client(sentinel)
    client = finder.master_for(service, db=db, decode_responses=True, socket_timeout=2)
    old = sentinel.current_master()
    replica = next(n for n in sentinel.data_nodes if n is not old)
    client.set("sentinel:kept", "before")
    replica_client = replica.client()
    wait_for(
        lambda: replica_client.get("sentinel:kept") == "before", 30, "the replica to copy the key"
    )

    sentinel.kill(old)
    new = sentinel.wait_for_failover(old)
    assert new is replica
    role = new.command("ROLE")
    assert isinstance(role, list) and role[0] == "master"

    def follows() -> bool:
        try:
            return bool(client.get("sentinel:kept") == "before")
        except redis.ConnectionError:
            return False

    wait_for(follows, 30, "master_for to follow the failover")
    client.set("sentinel:kept", "after")
    assert replica_client.get("sentinel:kept") == "after"  # written on the new master
    assert finder.discover_master(service) == ("127.0.0.1", new.port)
    replica_client.close()

    # The old master comes back as a replica of the new one, and the Sentinels see it.
    sentinel.restart(old)
    assert finder.discover_slaves(service) == [("127.0.0.1", old.port)]
    wait_for(lambda: old.client().get("sentinel:kept") == "after", 30, "the old master to catch up")
    client.close()


def test_a_stale_master_is_turned_into_a_replica_by_the_sentinels(
    sentinel: RedisSentinelServers,
) -> None:
    finder, service, _ = _sentinel_client(sentinel)
    old = sentinel.current_master()
    sentinel.kill(old)
    new = sentinel.wait_for_failover(old)
    # Back as it was configured, a master: the Sentinels convert it.
    sentinel.restart(old, as_replica=False)
    role = old.command("ROLE")
    assert isinstance(role, list) and role[0] == "slave" and role[2] == new.port
    assert finder.discover_slaves(service) == [("127.0.0.1", old.port)]
    logs = "".join(s.log.read_text() for s in sentinel.sentinels)
    assert f"+convert-to-slave slave {old.address}" in logs


def test_a_node_that_is_not_running_answers_nothing(tmp_path: Path) -> None:
    node = RedisNode(tmp_path / "never")
    assert node.command("PING") is None
    assert not node.running
