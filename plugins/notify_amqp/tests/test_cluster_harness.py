"""The three-node RabbitMQ cluster harness (notify_amqp.cluster_testing) with kombu alone.

One cluster for the whole module: it forms, places quorum queues and streams on all three
nodes, and a quorum queue keeps every confirmed message when the node that leads it stops,
read through kombu's failover URL from a survivor.
"""

from __future__ import annotations

import queue as stdlib_queue
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Queue

from notify_amqp.cluster_testing import RabbitClusterServers
from notifycore.testing import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitClusterServers]:
    servers = RabbitClusterServers(tmp_path_factory.mktemp("rabbit-cluster"))
    try:
        servers.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield servers
    servers.shutdown()


def _port(connection: Connection) -> int:
    return int(connection.as_uri().rsplit(":", 1)[1].split("/")[0])


def test_three_nodes_form_one_cluster_and_each_answers(cluster: RabbitClusterServers) -> None:
    names = {cluster.name(node) for node in cluster.nodes}
    assert len(names) == 3
    for node in cluster.nodes:
        assert cluster.running_nodes(node) == names
    # kombu's failover form: one URL per node, joined by ";".
    urls = cluster.url.split(";")
    assert urls == [node.url for node in cluster.nodes]
    for url in urls:
        with Connection(url, connect_timeout=5) as connection:
            connection.connect()
            assert connection.connected


def test_quorum_queues_and_streams_have_every_node_as_member(cluster: RabbitClusterServers) -> None:
    names = {cluster.name(node) for node in cluster.nodes}
    with Connection(cluster.url, connect_timeout=5) as connection:
        channel = connection.default_channel
        Queue("harness-quorum", durable=True, queue_arguments={"x-queue-type": "quorum"})(
            channel
        ).declare()
        Queue("harness-stream", durable=True, queue_arguments={"x-queue-type": "stream"})(
            channel
        ).declare()
    listed = cluster.queues()
    assert listed["harness-quorum"]["type"] == "quorum"
    assert listed["harness-stream"]["type"] == "stream"
    for name in ("harness-quorum", "harness-stream"):
        assert set(listed[name]["members"]) == names
        assert cluster.leader(name) in cluster.nodes


def test_a_quorum_queue_keeps_every_confirmed_message_when_its_leader_stops(
    cluster: RabbitClusterServers,
) -> None:
    jobs = Queue(
        "harness-failover",
        Exchange("harness", type="direct", durable=True),
        routing_key="jobs",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    sent = [str(i) for i in range(300)]
    with Connection(
        cluster.url, connect_timeout=5, transport_options={"confirm_publish": True}
    ) as connection:
        producer = connection.Producer()
        for body in sent:  # each publish returns once the queue's majority confirmed it
            producer.publish(body, exchange=jobs.exchange, routing_key="jobs", declare=[jobs])

    leader = cluster.leader("harness-failover")
    survivors = [node for node in cluster.nodes if node is not leader]
    # A consumer on the failover URL, connected to the leader first.
    consumer = Connection(";".join(n.url for n in [leader, *survivors]), connect_timeout=5)
    consumer.connect()
    assert _port(consumer) == leader.port
    try:
        cluster.stop(leader)
        new_leader = cluster.wait_for_leader("harness-failover", not_on=leader)
        assert new_leader in survivors

        consumer.close()
        consumer.ensure_connection(max_retries=5, interval_start=0.2, interval_step=0.2)
        assert _port(consumer) in {node.port for node in survivors}
        received: list[str] = []
        simple = consumer.SimpleQueue(jobs)

        def took_all() -> bool:
            try:
                message = simple.get(timeout=1)
            except stdlib_queue.Empty:
                return len(received) >= len(sent)
            received.append(message.payload)
            message.ack()
            return len(received) >= len(sent)

        wait_for(took_all, 60, "every confirmed message from a survivor")
        assert sorted(received, key=int) == sent
        with pytest.raises(stdlib_queue.Empty):
            simple.get(block=False)  # and nothing twice
        simple.close()
    finally:
        consumer.close()
        # The stopped node comes back, rejoins and is a member of the queue again.
        cluster.start_node(leader)
    names = {cluster.name(node) for node in cluster.nodes}
    assert cluster.running_nodes(leader) == names
    assert set(cluster.queues()["harness-failover"]["members"]) == names
